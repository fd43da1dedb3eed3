/* util.c — error formatting, the replaceable log sink, fp16 conversion and file helpers. */
#include "util.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

const char *omni_strerror(int code) {
    switch (code) {
    case OMNI_OK: return "ok";
    case OMNI_E_IO: return "i/o error";
    case OMNI_E_FORMAT: return "malformed file";
    case OMNI_E_CONFIG: return "invalid configuration";
    case OMNI_E_UNSUPPORTED: return "not supported";
    case OMNI_E_TENSOR: return "missing or mismatched tensor";
    case OMNI_E_NOMEM: return "out of memory";
    case OMNI_E_CONTEXT: return "context window full";
    case OMNI_E_ARG: return "invalid argument";
    case OMNI_E_CANCELLED: return "cancelled";
    case OMNI_E_BACKEND: return "back-end failure";
    default: return "unknown error";
    }
}

int omni_fail(omni_err *e, int code, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

static omni_log_fn g_log_fn;
static void *g_log_ud;
static int g_log_level = OMNI_LOG_INFO;

void omni_log_set_sink(omni_log_fn fn, void *user_data) {
    g_log_fn = fn;
    g_log_ud = user_data;
}
void omni_log_set_level(int level) { g_log_level = level; }

void omni_log(int level, const char *fmt, ...) {
    if (!g_log_fn || level < g_log_level) return;
    char buf[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    g_log_fn(level, buf, g_log_ud);
}

float omni_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
    if (exp == 0) {
        if (man == 0) u = sign;
        else { /* subnormal: renormalise */
            int e = -1;
            do { e++; man <<= 1; } while (!(man & 0x400));
            u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) u = sign | 0x7f800000u | (man << 13);
    else u = sign | ((exp + 127 - 15) << 23) | (man << 13);
    union { uint32_t u; float f; } v = { u };
    return v.f;
}

uint16_t omni_f32_to_f16(float f) { /* round to nearest even */
    union { uint32_t u; float f; } v = { .f = f };
    uint32_t sign = (v.u >> 16) & 0x8000, a = v.u & 0x7fffffff;
    if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00);
    if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* overflow (>= 65520) -> inf */
    if (a < 0x38800000u) {                                   /* subnormal or zero */
        float af = fabsf(f) * 16777216.0f;                    /* 2^24 */
        uint32_t m = (uint32_t)lrintf(af);
        return (uint16_t)(sign | m);
    }
    uint32_t r = a + 0xfffu + ((a >> 13) & 1u);
    return (uint16_t)(sign | ((r - (112u << 23)) >> 13));
}

char *omni_read_file(const char *path, size_t *len, omni_err *e) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        omni_fail(e, OMNI_E_IO, "%s: %s", path, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0) goto io;
    long n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) goto io;
    char *buf = malloc((size_t)n + 1);
    if (!buf) {
        fclose(f);
        omni_fail(e, OMNI_E_NOMEM, "%s: out of memory reading %ld bytes", path, n);
        return NULL;
    }
    if (fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        goto io;
    }
    fclose(f);
    buf[n] = 0;
    if (len) *len = (size_t)n;
    return buf;
io:
    omni_fail(e, OMNI_E_IO, "%s: read error", path);
    fclose(f);
    return NULL;
}

char *omni_path_join(char *out, size_t cap, const char *dir, const char *name) {
    size_t n = strlen(dir);
    snprintf(out, cap, "%s%s%s", dir, (n && dir[n - 1] == '/') ? "" : "/", name);
    return out;
}

int omni_file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

double omni_time_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}
