/* util.h — small shared pieces of the engine: error messages, logging, number formats, file helpers. */
#ifndef OMNI_UTIL_H
#define OMNI_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "omni.h"

/* Error message buffer carried by models, sessions and loaders: one line naming file/tensor/field. */
typedef struct {
    char msg[512];
} omni_err;
/* Formats into e->msg (if e != NULL) and returns code, so callers can `return omni_fail(e, code, ...)`. */
int omni_fail(omni_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

void omni_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- number formats ---- */
static inline float omni_bf16_to_f32(uint16_t h) {
    union { uint32_t u; float f; } v = { (uint32_t)h << 16 };
    return v.f;
}
static inline uint16_t omni_f32_to_bf16(float f) { /* round to nearest even, NaN kept quiet */
    union { uint32_t u; float f; } v = { .f = f };
    if ((v.u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((v.u >> 16) | 0x40);
    uint32_t r = v.u + 0x7fffu + ((v.u >> 16) & 1u);
    return (uint16_t)(r >> 16);
}
float omni_f16_to_f32(uint16_t h);
uint16_t omni_f32_to_f16(float f);

/* ---- files ---- */
/* Reads a whole file into a NUL-terminated malloc'd buffer. Returns NULL (and sets e) on failure. */
char *omni_read_file(const char *path, size_t *len, omni_err *e);
/* Joins dir and name into out (cap bytes); returns out. */
char *omni_path_join(char *out, size_t cap, const char *dir, const char *name);
int omni_file_exists(const char *path);

double omni_time_ms(void); /* monotonic clock */

/* xorshift-based PRNG for reproducible synthetic weights and sampling */
typedef struct { uint64_t s; } omni_rng;
static inline uint64_t omni_rng_next(omni_rng *r) {
    uint64_t x = r->s ? r->s : 0x9E3779B97F4A7C15ull;
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    r->s = x;
    return x * 0x2545F4914F6CDD1Dull;
}
static inline float omni_rng_uniform(omni_rng *r) { /* [0,1) */
    return (float)(omni_rng_next(r) >> 40) * (1.0f / 16777216.0f);
}

#endif
