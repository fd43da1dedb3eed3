/* harness.c — runner of the test suite: forks one process per test, with a timeout, and prints a summary.
 * Usage: omni_tests [-l] [SUBSTRING...]   (-l lists tests; substrings select tests by name or file) */
#include "harness.h"

#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    const char *name, *file;
    th_fn fn;
} th_test;

static th_test *g_tests;
static int g_n, g_cap;
int th_failures;
static int g_skip_fd = -1;

void th_register(const char *name, const char *file, th_fn fn) {
    if (g_n == g_cap) {
        g_cap = g_cap ? g_cap * 2 : 64;
        g_tests = realloc(g_tests, sizeof *g_tests * (size_t)g_cap);
        if (!g_tests) abort();
    }
    g_tests[g_n++] = (th_test){ name, file, fn };
}

void th_fail(const char *file, int line, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "    %s:%d: ", file, line);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    th_failures++;
}

void th_skip(const char *reason) {
    fprintf(stderr, "    skipped: %s\n", reason);
    if (g_skip_fd >= 0) {
        ssize_t r = write(g_skip_fd, "s", 1);
        (void)r;
    }
}

double th_rel_err(const float *a, const float *b, size_t n) {
    double md = 0, mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        md = d > md || d != d ? d : md;
        mx = fmax(mx, fabs((double)b[i]));
    }
    return mx > 0 ? md / mx : md;
}

static int cmp_test(const void *a, const void *b) {
    const th_test *x = a, *y = b;
    int c = strcmp(x->file, y->file);
    return c ? c : strcmp(x->name, y->name);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv) {
    int list = 0, nsel = 0;
    char **sel = calloc((size_t)argc + 1, sizeof *sel);
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-l")) list = 1;
        else sel[nsel++] = argv[i];
    }
    qsort(g_tests, (size_t)g_n, sizeof *g_tests, cmp_test);
    /* tests leave the user's on-disk Vulkan pipeline cache alone (the test of the cache names its own file) */
    setenv("OMNI_VK_PIPELINE_CACHE", "0", 0);
    const char *to = getenv("OMNI_TEST_TIMEOUT");
    int timeout_s = to ? atoi(to) : 600;
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < g_n; i++) {
        th_test *t = &g_tests[i];
        if (nsel) {
            int hit = 0;
            for (int j = 0; j < nsel; j++)
                if (strstr(t->name, sel[j]) || strstr(t->file, sel[j])) hit = 1;
            if (!hit) continue;
        }
        if (list) {
            printf("%s  (%s)\n", t->name, t->file);
            continue;
        }
        fflush(stdout);
        fflush(stderr);
        int pfd[2];
        if (pipe(pfd) != 0) return 2;
        double t0 = now_s();
        pid_t pid = fork();
        if (pid == 0) {
            close(pfd[0]);
            g_skip_fd = pfd[1];
            alarm((unsigned)timeout_s);
            t->fn();
            fflush(stdout);
            fflush(stderr);
            _exit(th_failures ? 1 : 0);
        }
        close(pfd[1]);
        int st = 0;
        waitpid(pid, &st, 0);
        char c;
        int was_skipped = read(pfd[0], &c, 1) == 1;
        close(pfd[0]);
        double dt = now_s() - t0;
        if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
            if (was_skipped) {
                skipped++;
                printf("SKIP %-44s %7.2fs  %s\n", t->name, dt, t->file);
            } else {
                passed++;
                printf("ok   %-44s %7.2fs  %s\n", t->name, dt, t->file);
            }
        } else {
            failed++;
            if (WIFSIGNALED(st))
                printf("FAIL %-44s %7.2fs  %s (signal %d%s)\n", t->name, dt, t->file, WTERMSIG(st),
                       WTERMSIG(st) == SIGALRM ? ": timeout" : "");
            else printf("FAIL %-44s %7.2fs  %s\n", t->name, dt, t->file);
        }
    }
    free(sel);
    if (list) return 0;
    if (skipped) printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    else printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
