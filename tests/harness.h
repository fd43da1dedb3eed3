/* harness.h — the test harness: tests register themselves, run each in its own process (a crash fails one test,
 * not the suite), and the runner ends with the line `N passed, N failed`.
 *
 *   TEST(name) { CHECK(x == 1); REQUIRE(p != NULL); CHECK_NEAR(a, b, 1e-5); if (!have) SKIP("no device"); }
 */
#ifndef TEST_HARNESS_H
#define TEST_HARNESS_H

#include <math.h>
#include <stdio.h>

typedef void (*th_fn)(void);
void th_register(const char *name, const char *file, th_fn fn);
void th_fail(const char *file, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void th_skip(const char *reason);
/* max |a[i] − b[i]| / max |b[i]| over n values (the absolute difference where b is all zero; NaN propagates) */
double th_rel_err(const float *a, const float *b, size_t n);
extern int th_failures;

#define TEST(name)                                                                                              \
    static void name(void);                                                                                     \
    __attribute__((constructor)) static void th_reg_##name(void) { th_register(#name, __FILE__, name); }       \
    static void name(void)

#define CHECK(c)                                                                                                \
    do {                                                                                                        \
        if (!(c)) th_fail(__FILE__, __LINE__, "CHECK(%s)", #c);                                                 \
    } while (0)
#define REQUIRE(c)                                                                                              \
    do {                                                                                                        \
        if (!(c)) {                                                                                             \
            th_fail(__FILE__, __LINE__, "REQUIRE(%s)", #c);                                                     \
            return;                                                                                             \
        }                                                                                                       \
    } while (0)
#define CHECK_EQ_INT(a, b)                                                                                      \
    do {                                                                                                        \
        long long th_a = (long long)(a), th_b = (long long)(b);                                                 \
        if (th_a != th_b) th_fail(__FILE__, __LINE__, "%s == %s (%lld vs %lld)", #a, #b, th_a, th_b);           \
    } while (0)
#define CHECK_NEAR(a, b, tol)                                                                                   \
    do {                                                                                                        \
        double th_a = (double)(a), th_b = (double)(b);                                                          \
        if (!(fabs(th_a - th_b) <= (tol)))                                                                      \
            th_fail(__FILE__, __LINE__, "%s ~ %s (%.9g vs %.9g, tol %g)", #a, #b, th_a, th_b, (double)(tol));  \
    } while (0)
#define SKIP(reason)                                                                                            \
    do {                                                                                                        \
        th_skip(reason);                                                                                        \
        return;                                                                                                 \
    } while (0)

/* Paths of test data, relative to the repository root (tests run from there). FIXTURES_DIR is where the Makefile
 * unpacked tests/fixtures/<name>.tar.xz (one folder per tiny checkpoint). */
#ifndef FIXTURES_DIR
#define FIXTURES_DIR "build/fixtures"
#endif
#define FIXTURES FIXTURES_DIR
#define TESTDATA "tests/data"

#endif
