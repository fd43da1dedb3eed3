/* backend_cpu.c — the reference back-end: every op of backend.h in fp32 on the host, threaded over a pool and
 * vectorised (AVX2/FMA/F16C, chosen at run time; a portable scalar path otherwise). Weights stay in the mmapped
 * checkpoint (wrap_host never copies). Numerics mirror transformers' fp32 path: fp32 accumulation everywhere,
 * softmax with max subtraction, RoPE angles computed in fp32 as pos * inv_freq. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "threadpool.h"
#include "util.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define OB_X86 1
#endif

struct ob_buf {
    void *p;
    size_t size;
    int owned;
};

typedef struct {
    ob_backend base;
    tp_pool *tp;
    int simd;          /* 1 = AVX2+FMA+F16C available */
    float **scratch;   /* per-thread scratch (attention scores) */
    size_t *scratch_n;
    int n_threads;
    float **panel;     /* per-thread GEMM weight panels */
    size_t *panel_n;
    float *moe_buf;    /* MoE gather/intermediate scratch */
    int prof_cls;      /* class being charged, -1 none */
    double prof_t0, prof_ms[OB_PROF_N];
    size_t moe_n;
} cpu_backend;

#define CB(b) ((cpu_backend *)(b))
#define PTR(v) ((void *)((char *)(v).buf->p + (v).off))

/* ---- memory ------------------------------------------------------------------------------------------------------ */

static ob_buf *cpu_alloc(ob_backend *b, size_t bytes) {
    (void)b;
    ob_buf *buf = calloc(1, sizeof *buf);
    if (!buf) return NULL;
    /* 64-byte alignment for vector loads; at least one byte so zero-size buffers are valid */
    size_t n = (bytes + 63) & ~(size_t)63;
    if (posix_memalign(&buf->p, 64, n ? n : 64) != 0) {
        free(buf);
        return NULL;
    }
    memset(buf->p, 0, n ? n : 64);
    buf->size = bytes;
    buf->owned = 1;
    return buf;
}

static void cpu_buf_free(ob_backend *b, ob_buf *buf) {
    (void)b;
    if (!buf) return;
    if (buf->owned) free(buf->p);
    free(buf);
}

static ob_buf *cpu_wrap_host(ob_backend *b, const void *data, size_t bytes, int *copied) {
    (void)b;
    ob_buf *buf = calloc(1, sizeof *buf);
    if (!buf) return NULL;
    buf->p = (void *)data;
    buf->size = bytes;
    if (copied) *copied = 0;
    return buf;
}

static int cpu_upload(ob_backend *b, ob_buf *dst, size_t off, const void *src, size_t n) {
    (void)b;
    if (off + n > dst->size) return OMNI_E_ARG;
    memcpy((char *)dst->p + off, src, n);
    return 0;
}

static int cpu_download(ob_backend *b, ob_buf *src, size_t off, void *dst, size_t n) {
    (void)b;
    if (off + n > src->size) return OMNI_E_ARG;
    memcpy(dst, (char *)src->p + off, n);
    return 0;
}

static int cpu_sync(ob_backend *b) { return b->failed ? OMNI_E_BACKEND : 0; }
static void *cpu_host_ptr(ob_backend *b, ob_buf *buf) {
    (void)b;
    return buf->p;
}
static const char *cpu_device_name(ob_backend *b) { return CB(b)->simd ? "CPU (AVX2)" : "CPU"; }

/* ---- dot products: one weight row against nx (1..4) activation rows ---------------------------------------------- */

typedef struct {
    const void *base;  /* weight data */
    const uint16_t *scales; /* q8_0 */
    ob_dtype t;
    int64_t cols;
} wrow_src;

static void dot_scalar(const wrow_src *w, int64_t row, const float *const *x, int nx, float *out) {
    int64_t K = w->cols;
    double acc[4] = { 0, 0, 0, 0 };
    switch (w->t) {
    case OB_F32: {
        const float *r = (const float *)w->base + row * K;
        for (int64_t i = 0; i < K; i++)
            for (int j = 0; j < nx; j++) acc[j] += (double)r[i] * x[j][i];
        break;
    }
    case OB_BF16: {
        const uint16_t *r = (const uint16_t *)w->base + row * K;
        for (int64_t i = 0; i < K; i++) {
            float v = omni_bf16_to_f32(r[i]);
            for (int j = 0; j < nx; j++) acc[j] += (double)v * x[j][i];
        }
        break;
    }
    case OB_F16: {
        const uint16_t *r = (const uint16_t *)w->base + row * K;
        for (int64_t i = 0; i < K; i++) {
            float v = omni_f16_to_f32(r[i]);
            for (int j = 0; j < nx; j++) acc[j] += (double)v * x[j][i];
        }
        break;
    }
    case OB_Q8_0: {
        const int8_t *r = (const int8_t *)w->base + row * K;
        const uint16_t *sc = w->scales + row * (K / 32);
        for (int64_t b = 0; b < K / 32; b++) {
            float d = omni_f16_to_f32(sc[b]);
            for (int j = 0; j < nx; j++) {
                float s = 0;
                for (int i = 0; i < 32; i++) s += (float)r[b * 32 + i] * x[j][b * 32 + i];
                acc[j] += (double)s * d;
            }
        }
        break;
    }
    case OB_I32: break;
    }
    for (int j = 0; j < nx; j++) out[j] = (float)acc[j];
}

#ifdef OB_X86
__attribute__((target("avx2,fma"))) static inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma,f16c"))) static inline __m256 load8(const wrow_src *w, const void *r, int64_t i) {
    switch (w->t) {
    case OB_BF16: {
        __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)((const uint16_t *)r + i)));
        return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
    }
    case OB_F16: return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)r + i)));
    default: return _mm256_loadu_ps((const float *)r + i);
    }
}

/* q8_0: 8 quants at r as fp32 */
__attribute__((target("avx2,fma"))) static inline __m256 q8_load8(const int8_t *r) {
    return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)r)));
}

/* q8_0: Σ of 32 dequantized weights (w0..w3, without the block scale) times x, in the order w0·x0 + w1·x1 + ...
 * (named vectors, not an array: GCC kept an array on the stack) */
__attribute__((target("avx2,fma"))) static inline __m256 q8_sum(__m256 w0, __m256 w1, __m256 w2, __m256 w3,
                                                                 const float *xj) {
    __m256 s = _mm256_mul_ps(w0, _mm256_loadu_ps(xj));
    s = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xj + 8), s);
    s = _mm256_fmadd_ps(w2, _mm256_loadu_ps(xj + 16), s);
    return _mm256_fmadd_ps(w3, _mm256_loadu_ps(xj + 24), s);
}

/* acc + d · Σ_32 w·x for one q8_0 block (r: 32 quants, x: 32 activations) */
__attribute__((target("avx2,fma"))) static inline __m256 q8_block(const int8_t *r, const float *x, float d, __m256 acc) {
    __m256 s = q8_sum(q8_load8(r), q8_load8(r + 8), q8_load8(r + 16), q8_load8(r + 24), x);
    return _mm256_fmadd_ps(s, _mm256_set1_ps(d), acc);
}

__attribute__((target("avx2,fma,f16c"))) static void dot_avx2(const wrow_src *w, int64_t row, const float *const *x,
                                                               int nx, float *out) {
    int64_t K = w->cols;
    if (w->t == OB_Q8_0) {
        /* Accumulators are named variables (an array indexed by the row loop was kept on the stack: a store and a
         * reload per block), scales convert with F16C, and a single x row (decode) alternates two accumulators so
         * consecutive blocks do not wait on each other's FMA. Per block: s = Σ_32 w·x in fp32, acc += s·d. */
        const int8_t *r = (const int8_t *)w->base + row * K;
        const uint16_t *sc = w->scales + row * (K / 32);
        int64_t nb = K / 32;
        if (nx == 1) {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0;
            const float *x0 = x[0];
            int64_t b = 0;
            for (; b + 2 <= nb; b += 2) {
                a0 = q8_block(r + b * 32, x0 + b * 32, _cvtsh_ss(sc[b]), a0);
                a1 = q8_block(r + b * 32 + 32, x0 + b * 32 + 32, _cvtsh_ss(sc[b + 1]), a1);
            }
            if (b < nb) a0 = q8_block(r + b * 32, x0 + b * 32, _cvtsh_ss(sc[b]), a0);
            out[0] = hsum8(_mm256_add_ps(a0, a1));
            return;
        }
        __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
        for (int64_t b = 0; b < nb; b++) {
            __m256 d = _mm256_set1_ps(_cvtsh_ss(sc[b]));
            const int8_t *rb = r + b * 32;
            __m256 w0 = q8_load8(rb), w1 = q8_load8(rb + 8), w2 = q8_load8(rb + 16), w3 = q8_load8(rb + 24);
            c0 = _mm256_fmadd_ps(q8_sum(w0, w1, w2, w3, x[0] + b * 32), d, c0);
            if (nx > 1) c1 = _mm256_fmadd_ps(q8_sum(w0, w1, w2, w3, x[1] + b * 32), d, c1);
            if (nx > 2) c2 = _mm256_fmadd_ps(q8_sum(w0, w1, w2, w3, x[2] + b * 32), d, c2);
            if (nx > 3) c3 = _mm256_fmadd_ps(q8_sum(w0, w1, w2, w3, x[3] + b * 32), d, c3);
        }
        out[0] = hsum8(c0);
        if (nx > 1) out[1] = hsum8(c1);
        if (nx > 2) out[2] = hsum8(c2);
        if (nx > 3) out[3] = hsum8(c3);
        return;
    }
    const void *r = w->t == OB_F32 ? (const void *)((const float *)w->base + row * K)
                                   : (const void *)((const uint16_t *)w->base + row * K);
    int64_t K8 = K & ~(int64_t)7;
    if (nx == 4) {
        __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t i = 0; i < K8; i += 8) {
            __m256 v = load8(w, r, i);
            a0 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x[0] + i), a0);
            a1 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x[1] + i), a1);
            a2 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x[2] + i), a2);
            a3 = _mm256_fmadd_ps(v, _mm256_loadu_ps(x[3] + i), a3);
        }
        out[0] = hsum8(a0), out[1] = hsum8(a1), out[2] = hsum8(a2), out[3] = hsum8(a3);
    } else {
        for (int j = 0; j < nx; j++) {
            __m256 a0 = _mm256_setzero_ps(), a1 = a0;
            int64_t i = 0;
            for (; i + 16 <= K8; i += 16) {
                a0 = _mm256_fmadd_ps(load8(w, r, i), _mm256_loadu_ps(x[j] + i), a0);
                a1 = _mm256_fmadd_ps(load8(w, r, i + 8), _mm256_loadu_ps(x[j] + i + 8), a1);
            }
            for (; i < K8; i += 8) a0 = _mm256_fmadd_ps(load8(w, r, i), _mm256_loadu_ps(x[j] + i), a0);
            out[j] = hsum8(_mm256_add_ps(a0, a1));
        }
    }
    if (K8 < K) { /* tail */
        float tmp[8];
        for (int64_t i = K8; i < K; i++) {
            float v;
            if (w->t == OB_F32) v = ((const float *)r)[i];
            else if (w->t == OB_BF16) v = omni_bf16_to_f32(((const uint16_t *)r)[i]);
            else v = omni_f16_to_f32(((const uint16_t *)r)[i]);
            tmp[i - K8] = v;
        }
        for (int j = 0; j < nx; j++)
            for (int64_t i = K8; i < K; i++) out[j] += tmp[i - K8] * x[j][i];
    }
}

__attribute__((target("avx2,fma"))) static float dotf_avx2(const float *a, const float *b, int64_t n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0;
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    for (; i + 8 <= n; i += 8) s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
    float s = hsum8(_mm256_add_ps(s0, s1));
    for (; i < n; i++) s += a[i] * b[i];
    return s;
}

__attribute__((target("avx2,fma"))) static void axpy_avx2(float *y, const float *x, float a, int64_t n) {
    __m256 av = _mm256_set1_ps(a);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}
#endif

static int g_simd;

static inline void dot_rows(const wrow_src *w, int64_t row, const float *const *x, int nx, float *out) {
#ifdef OB_X86
    if (g_simd && (w->t != OB_Q8_0 || w->cols % 32 == 0)) {
        dot_avx2(w, row, x, nx, out);
        return;
    }
#endif
    dot_scalar(w, row, x, nx, out);
}

static inline float dotf(const float *a, const float *b, int64_t n) {
#ifdef OB_X86
    if (g_simd) return dotf_avx2(a, b, n);
#endif
    float s = 0;
    for (int64_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

static inline void axpy(float *y, const float *x, float a, int64_t n) {
#ifdef OB_X86
    if (g_simd) {
        axpy_avx2(y, x, a, n);
        return;
    }
#endif
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

/* ---- matmul ------------------------------------------------------------------------------------------------------ */

typedef struct {
    wrow_src w;
    int64_t rows;
    const float *x;
    float *y;
    int n, acc;
    float **panel; /* per-thread scratch: 4 weight rows expanded to fp32 (the GEMM path) */
} mm_ctx;

static wrow_src wsrc(const ob_mat *m) {
    wrow_src s = { PTR(m->data), NULL, m->dtype, m->cols };
    if (m->dtype == OB_Q8_0) s.scales = (const uint16_t *)((const char *)PTR(m->data) + m->scale_off);
    return s;
}

/* One weight row expanded to fp32. Q8_0 scales are read through w->scales (the matrix's scale_off), so row views of
 * a larger quantized matrix (fused projections) work. */
#ifdef OB_X86
/* wrow_to_f32 for rows of a multiple of 8 (bf16/f16) or 32 (q8_0) elements: the same values, 8 at a time */
__attribute__((target("avx2,fma,f16c"))) static void wrow_to_f32_avx2(const wrow_src *w, int64_t row, float *out) {
    int64_t K = w->cols;
    if (w->t == OB_Q8_0) {
        const int8_t *q = (const int8_t *)w->base + row * K;
        const uint16_t *sc = w->scales + row * (K / 32);
        for (int64_t b = 0; b < K / 32; b++) {
            __m256 d = _mm256_set1_ps(_cvtsh_ss(sc[b]));
            for (int k = 0; k < 32; k += 8)
                _mm256_storeu_ps(out + b * 32 + k, _mm256_mul_ps(q8_load8(q + b * 32 + k), d));
        }
        return;
    }
    const uint16_t *r = (const uint16_t *)w->base + row * K;
    for (int64_t i = 0; i < K; i += 8) _mm256_storeu_ps(out + i, load8(w, r, i));
}
#endif

static void wrow_to_f32(const wrow_src *w, int64_t row, float *out) {
    int64_t K = w->cols;
#ifdef OB_X86
    if (g_simd && ((w->t == OB_Q8_0 && K % 32 == 0) || ((w->t == OB_BF16 || w->t == OB_F16) && K % 8 == 0))) {
        wrow_to_f32_avx2(w, row, out);
        return;
    }
#endif
    if (w->t == OB_Q8_0) {
        const int8_t *q = (const int8_t *)w->base + row * K;
        const uint16_t *sc = w->scales + row * (K / 32);
        for (int64_t i = 0; i < K; i++) out[i] = (float)q[i] * omni_f16_to_f32(sc[i / 32]);
    } else ob_row_to_f32(w->base, w->t, 0, K, row, out);
}

static inline void store_out(const mm_ctx *c, int64_t t, int64_t r, float v) {
    float *dst = c->y + t * c->rows + r;
    *dst = c->acc ? *dst + v : v;
}

#ifdef OB_X86
/* 4 weight rows (fp32 panel) × 3 token rows: 12 accumulators in named registers (with 3 x vectors and a weight
 * vector that is all 16 ymm registers; as an array GCC kept them on the stack, a store and reload per FMA) */
__attribute__((target("avx2,fma"))) static void gemm_4x3(const float *w, int64_t K, const float *const *x, float *out) {
    __m256 a00 = _mm256_setzero_ps(), a01 = a00, a02 = a00, a10 = a00, a11 = a00, a12 = a00;
    __m256 a20 = a00, a21 = a00, a22 = a00, a30 = a00, a31 = a00, a32 = a00;
    const float *w0 = w, *w1 = w + K, *w2 = w + 2 * K, *w3 = w + 3 * K;
    for (int64_t k = 0; k < K; k += 8) {
        __m256 x0 = _mm256_loadu_ps(x[0] + k), x1 = _mm256_loadu_ps(x[1] + k), x2 = _mm256_loadu_ps(x[2] + k);
        __m256 wv = _mm256_loadu_ps(w0 + k);
        a00 = _mm256_fmadd_ps(wv, x0, a00), a01 = _mm256_fmadd_ps(wv, x1, a01), a02 = _mm256_fmadd_ps(wv, x2, a02);
        wv = _mm256_loadu_ps(w1 + k);
        a10 = _mm256_fmadd_ps(wv, x0, a10), a11 = _mm256_fmadd_ps(wv, x1, a11), a12 = _mm256_fmadd_ps(wv, x2, a12);
        wv = _mm256_loadu_ps(w2 + k);
        a20 = _mm256_fmadd_ps(wv, x0, a20), a21 = _mm256_fmadd_ps(wv, x1, a21), a22 = _mm256_fmadd_ps(wv, x2, a22);
        wv = _mm256_loadu_ps(w3 + k);
        a30 = _mm256_fmadd_ps(wv, x0, a30), a31 = _mm256_fmadd_ps(wv, x1, a31), a32 = _mm256_fmadd_ps(wv, x2, a32);
    }
    out[0] = hsum8(a00), out[1] = hsum8(a01), out[2] = hsum8(a02);
    out[3] = hsum8(a10), out[4] = hsum8(a11), out[5] = hsum8(a12);
    out[6] = hsum8(a20), out[7] = hsum8(a21), out[8] = hsum8(a22);
    out[9] = hsum8(a30), out[10] = hsum8(a31), out[11] = hsum8(a32);
}
#endif

static void mm_task(void *vctx, int64_t b, int64_t e, int thread) {
    mm_ctx *c = vctx;
    int64_t K = c->w.cols;
    int64_t r = b;
#ifdef OB_X86
    /* many tokens: blocks of tokens whose x rows fit in ~192 KB (L2), and for each block the thread's rows 4 at a
     * time expanded to fp32 (a panel that stays in L1) under a register-tiled kernel. Without the token blocks every
     * panel streamed all of x from memory: 19 MB per panel for a 1024² image in the vision encoder. */
    if (g_simd && c->n >= 6 && K % 8 == 0 && c->panel && c->panel[thread]) {
        float *pw = c->panel[thread];
        int tb = (int)((192 * 1024) / (4 * K));
        tb = tb < 6 ? 6 : tb - tb % 3;
        int64_t r_end = b + (e - b) / 4 * 4;
        for (int t0 = 0; t0 < c->n; t0 += tb) {
            int t1 = c->n - t0 < tb ? c->n : t0 + tb;
            for (r = b; r < r_end; r += 4) {
                for (int i = 0; i < 4; i++) wrow_to_f32(&c->w, r + i, pw + i * K);
                int t = t0;
                for (; t + 3 <= t1; t += 3) {
                    const float *xs[3] = { c->x + (int64_t)t * K, c->x + (int64_t)(t + 1) * K,
                                           c->x + (int64_t)(t + 2) * K };
                    float out[12];
                    gemm_4x3(pw, K, xs, out);
                    for (int i = 0; i < 4; i++)
                        for (int j = 0; j < 3; j++) store_out(c, t + j, r + i, out[i * 3 + j]);
                }
                for (; t < t1; t++)
                    for (int i = 0; i < 4; i++) store_out(c, t, r + i, dotf_avx2(pw + i * K, c->x + (int64_t)t * K, K));
            }
        }
        r = r_end;
    }
#endif
    for (; r < e; r++) {
        for (int t = 0; t < c->n; t += 4) {
            int nx = c->n - t < 4 ? c->n - t : 4;
            const float *xs[4];
            float out[4];
            for (int j = 0; j < nx; j++) xs[j] = c->x + (int64_t)(t + j) * K;
            dot_rows(&c->w, r, xs, nx, out);
            for (int j = 0; j < nx; j++) store_out(c, t + j, r, out[j]);
        }
    }
}

static void matmul_host(cpu_backend *cb, const ob_mat *w, const float *x, float *y, int n, int acc) {
    mm_ctx c = { wsrc(w), w->rows, x, y, n, acc, NULL };
    if (n >= 6) { /* per-thread panels of 4 expanded rows */
        size_t need = (size_t)w->cols * 4;
        for (int t = 0; t < cb->n_threads; t++)
            if (cb->panel_n[t] < need) {
                float *p = realloc(cb->panel[t], need * sizeof(float));
                if (!p) break;
                cb->panel[t] = p;
                cb->panel_n[t] = need;
            }
        int ok = 1;
        for (int t = 0; t < cb->n_threads; t++) ok &= cb->panel_n[t] >= need;
        if (ok) c.panel = cb->panel;
    }
    int64_t grain = w->cols * (n < 4 ? n : 4) < 4096 ? 64 : 4;
    tp_parallel_for(cb->tp, w->rows, grain, mm_task, &c);
}

static void cpu_matmul(ob_backend *b, const ob_mat *w, ob_ptr x, ob_ptr y, int n, int accumulate) {
    matmul_host(CB(b), w, PTR(x), PTR(y), n, accumulate);
}

/* ---- small ops --------------------------------------------------------------------------------------------------- */

static void cpu_get_rows(ob_backend *b, const ob_mat *table, ob_ptr ids, int n, ob_ptr out) {
    (void)b;
    const int32_t *id = PTR(ids);
    float *o = PTR(out);
    for (int i = 0; i < n; i++) {
        int32_t r = id[i];
        if (r < 0 || r >= table->rows) { /* the model layer validates ids; never read out of bounds */
            memset(o + (int64_t)i * table->cols, 0, (size_t)table->cols * 4);
            continue;
        }
        wrow_src w = wsrc(table);
        wrow_to_f32(&w, r, o + (int64_t)i * table->cols);
    }
}

typedef struct {
    const float *x;
    float *y;
    const float *w; /* expanded weight */
    int dim;
    float eps;
} rms_ctx;

static void rms_task(void *vctx, int64_t b, int64_t e, int thread) {
    (void)thread;
    rms_ctx *c = vctx;
    for (int64_t r = b; r < e; r++) {
        const float *x = c->x + r * c->dim;
        float *y = c->y + r * c->dim;
        /* Qwen3RMSNorm: variance = mean(x²) in fp32; x * rsqrt(var + eps) * w */
        double ss = 0;
        for (int i = 0; i < c->dim; i++) ss += (double)x[i] * x[i];
        float inv = 1.0f / sqrtf((float)(ss / c->dim) + c->eps);
        for (int i = 0; i < c->dim; i++) y[i] = (x[i] * inv) * c->w[i];
    }
}

static void cpu_rms_norm(ob_backend *b, ob_ptr x, const ob_mat *w, ob_ptr y, int rows, int dim, float eps) {
    float wbuf[4096];
    float *wf = dim <= 4096 ? wbuf : malloc((size_t)dim * 4);
    if (!wf) {
        b->failed = 1;
        return;
    }
    ob_row_to_f32(PTR(w->data), w->dtype, 1, dim, 0, wf);
    rms_ctx c = { PTR(x), PTR(y), wf, dim, eps };
    tp_parallel_for(CB(b)->tp, rows, 64, rms_task, &c);
    if (wf != wbuf) free(wf);
}

/* Frequency slot -> position row for multimodal RoPE. Interleaved (Qwen3-Omni, `apply_interleaved_mrope`):
 * slot i uses h if i%3==1 and i < 3*sec[1], w if i%3==2 and i < 3*sec[2], else t. Contiguous (Qwen2-VL style):
 * the first sec[0] slots t, the next sec[1] h, the next sec[2] w. Plain RoPE: always row 0. */
static int rope_row(const ob_rope *r, int i) {
    if (!r->section[0] && !r->section[1] && !r->section[2]) return 0;
    if (r->interleaved) {
        if (i % 3 == 1 && i < 3 * r->section[1]) return 1;
        if (i % 3 == 2 && i < 3 * r->section[2]) return 2;
        return 0;
    }
    if (i < r->section[0]) return 0;
    if (i < r->section[0] + r->section[1]) return 1;
    if (i < r->section[0] + r->section[1] + r->section[2]) return 2;
    return 0;
}

typedef struct {
    float *x;
    const float *pos;
    int n, n_heads;
    const ob_rope *r;
    const float *inv_freq;
} rope_ctx;

static void rope_task(void *vctx, int64_t b, int64_t e, int thread) {
    (void)thread;
    rope_ctx *c = vctx;
    int hd = c->r->head_dim, half = c->r->rot_dim / 2;
    float cs[512], sn[512];
    for (int64_t t = b; t < e; t++) {
        for (int i = 0; i < half; i++) {
            /* fp32 angle as in the reference (inv_freq @ position_ids in float32), then cos/sin in fp32 */
            float ang = c->pos[(int64_t)rope_row(c->r, i) * c->n + t] * c->inv_freq[i];
            cs[i] = cosf(ang);
            sn[i] = sinf(ang);
        }
        for (int h = 0; h < c->n_heads; h++) {
            float *v = c->x + (t * c->n_heads + h) * hd;
            for (int i = 0; i < half; i++) { /* rotate_half: [a, b] -> [a cos - b sin, b cos + a sin] */
                float a = v[i], bb = v[i + half];
                v[i] = a * cs[i] - bb * sn[i];
                v[i + half] = bb * cs[i] + a * sn[i];
            }
        }
    }
}

static void cpu_rope(ob_backend *b, ob_ptr x, ob_ptr pos3, int n, int n_heads, const ob_rope *r) {
    int half = r->rot_dim / 2;
    if (half > 512 || r->rot_dim > r->head_dim) {
        b->failed = 1;
        snprintf(b->err, sizeof b->err, "rope: rot_dim %d unsupported", r->rot_dim);
        return;
    }
    float inv[512];
    /* inv_freq = 1 / theta^(2i/d) computed in fp32 like compute_default_rope_parameters; with section_freqs each
     * section restarts (VisionRotaryEmbedding: 1 / theta^(2j/dim) with dim = 2 * section) */
    for (int i = 0; i < half; i++) {
        if (r->section_freqs) {
            int j = i, s = 0;
            while (s < 2 && j >= r->section[s] && r->section[s] > 0) j -= r->section[s++];
            int sec = r->section[s] > 0 ? r->section[s] : half;
            inv[i] = 1.0f / powf(r->theta, (float)(2 * j) / (float)(2 * sec));
        } else inv[i] = 1.0f / powf(r->theta, (float)(2 * i) / (float)r->rot_dim);
    }
    rope_ctx c = { PTR(x), PTR(pos3), n, n_heads, r, inv };
    tp_parallel_for(CB(b)->tp, n, 1, rope_task, &c);
}

static void cpu_kv_store(ob_backend *b, ob_ptr kcache, ob_ptr vcache, int n_ctx, ob_ptr k, ob_ptr v, int pos0, int n,
                         const ob_attn *a) {
    (void)b;
    float *kc = PTR(kcache), *vc = PTR(vcache);
    const float *kk = PTR(k), *vv = PTR(v);
    int D = a->head_dim, H = a->n_kv_heads;
    for (int i = 0; i < n; i++)
        for (int h = 0; h < H; h++) {
            size_t dst = ((size_t)h * n_ctx + pos0 + i) * D, src = ((size_t)i * H + h) * D;
            memcpy(kc + dst, kk + src, (size_t)D * 4);
            memcpy(vc + dst, vv + src, (size_t)D * 4);
        }
}

typedef struct {
    cpu_backend *cb;
    const float *q, *kc, *vc;
    float *out;
    int n_ctx, pos0, n;
    const ob_attn *a;
} attn_ctx;

static void attn_task(void *vctx, int64_t b, int64_t e, int thread) {
    attn_ctx *c = vctx;
    const ob_attn *a = c->a;
    int D = a->head_dim, Hq = a->n_heads, group = a->n_heads / a->n_kv_heads;
    int total = c->pos0 + c->n;
    float *s = c->cb->scratch[thread];
    for (int64_t it = b; it < e; it++) {
        int i = (int)(it / Hq), h = (int)(it % Hq), kvh = h / group;
        int qpos = c->pos0 + i;
        int kmax = a->causal ? qpos : total - 1;
        int kmin = a->window > 0 ? qpos - a->window + 1 : 0;
        if (kmin < 0) kmin = 0;
        const float *q = c->q + ((int64_t)i * Hq + h) * D;
        const float *K = c->kc + (size_t)kvh * c->n_ctx * D, *V = c->vc + (size_t)kvh * c->n_ctx * D;
        float mx = -INFINITY;
        for (int j = kmin; j <= kmax; j++) {
            s[j] = dotf(q, K + (size_t)j * D, D) * a->scale;
            if (s[j] > mx) mx = s[j];
        }
        double sum = 0;
        for (int j = kmin; j <= kmax; j++) {
            s[j] = expf(s[j] - mx);
            sum += s[j];
        }
        float inv = (float)(1.0 / sum);
        float *o = c->out + ((int64_t)i * Hq + h) * D;
        memset(o, 0, (size_t)D * 4);
        for (int j = kmin; j <= kmax; j++) axpy(o, V + (size_t)j * D, s[j] * inv, D);
    }
}

#ifdef OB_X86
/* expf on 8 lanes: Cephes-style range reduction x = k ln2 + r, degree-5 polynomial for e^r, scale by 2^k
 * (about 1 ulp; inputs are <= 0 here, underflow flushes to 0) */
__attribute__((target("avx2,fma"))) static inline __m256 exp8(__m256 x) {
    x = _mm256_max_ps(x, _mm256_set1_ps(-87.3f));
    __m256 k = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(k, _mm256_set1_ps(0.693359375f), x);
    r = _mm256_fnmadd_ps(k, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127)), 23);
    return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

/* Many queries (prefill, encoders): 4 queries of one head at a time against K transposed ([D][keys]), so 8 scores
 * accumulate per register without horizontal sums; vectorised softmax; P·V with V rows shared by the 4 queries.
 * Same math as attn_task (fp32, max-subtracted softmax); summation order differs. */
typedef struct {
    cpu_backend *cb;
    const float *q, *kt, *v; /* kt: [n_kv_heads][total/8][D][8] (8-key tiles, contiguous per tile); v: the cache */
    const float *k;          /* the cache's K, for the keys past the last whole tile */
    float *out;
    int n_ctx, pos0, n, total;
    const ob_attn *a;
} attn4_ctx;

__attribute__((target("avx2,fma"))) static void attn4_task(void *vctx, int64_t b, int64_t e, int thread) {
    attn4_ctx *c = vctx;
    const ob_attn *a = c->a;
    const int D = a->head_dim, Hq = a->n_heads, group = a->n_heads / a->n_kv_heads, T = c->total;
    const int nqb = (c->n + 3) / 4, T8 = T & ~7;
    float *s = c->cb->scratch[thread]; /* 4 rows of T */
    for (int64_t it = b; it < e; it++) {
        int h = (int)(it / nqb), q0 = (int)(it % nqb) * 4, nq = c->n - q0 < 4 ? c->n - q0 : 4, kvh = h / group;
        const float *KT = c->kt + (size_t)kvh * D * T8, *V = c->v + (size_t)kvh * c->n_ctx * D,
                    *K = c->k + (size_t)kvh * c->n_ctx * D;
        const float *qr[4];
        for (int i = 0; i < 4; i++) qr[i] = c->q + ((size_t)(q0 + (i < nq ? i : 0)) * Hq + h) * D;
        /* scores */
        /* (accumulators in named registers: as arrays GCC kept them on the stack, a store and reload per FMA) */
        const __m256 vscale = _mm256_set1_ps(a->scale);
        for (int j = 0; j < T8; j += 8) {
            __m256 c0 = _mm256_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
            const float *tile = KT + (size_t)(j / 8) * D * 8;
            for (int d = 0; d < D; d++) {
                __m256 kv = _mm256_loadu_ps(tile + (size_t)d * 8);
                c0 = _mm256_fmadd_ps(_mm256_set1_ps(qr[0][d]), kv, c0);
                c1 = _mm256_fmadd_ps(_mm256_set1_ps(qr[1][d]), kv, c1);
                c2 = _mm256_fmadd_ps(_mm256_set1_ps(qr[2][d]), kv, c2);
                c3 = _mm256_fmadd_ps(_mm256_set1_ps(qr[3][d]), kv, c3);
            }
            _mm256_storeu_ps(s + j, _mm256_mul_ps(c0, vscale));
            _mm256_storeu_ps(s + (size_t)T + j, _mm256_mul_ps(c1, vscale));
            _mm256_storeu_ps(s + (size_t)2 * T + j, _mm256_mul_ps(c2, vscale));
            _mm256_storeu_ps(s + (size_t)3 * T + j, _mm256_mul_ps(c3, vscale));
        }
        for (int j = T8; j < T; j++)
            for (int i = 0; i < 4; i++) {
                float d0 = 0;
                for (int d = 0; d < D; d++) d0 += qr[i][d] * K[(size_t)j * D + d];
                s[(size_t)i * T + j] = d0 * a->scale;
            }
        /* masked softmax per query: keys outside [lo, hi] get probability 0 */
        int lo[4] = { 0, 0, 0, 0 }, hi[4] = { 0, 0, 0, 0 };
        for (int i = 0; i < nq; i++) {
            float *row = s + (size_t)i * T;
            int qpos = c->pos0 + q0 + i;
            hi[i] = a->causal ? qpos : T - 1;
            lo[i] = a->window > 0 ? qpos - a->window + 1 : 0;
            if (lo[i] < 0) lo[i] = 0;
            __m256 vm = _mm256_set1_ps(-INFINITY);
            int jm = lo[i];
            for (; jm + 8 <= hi[i] + 1; jm += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(row + jm));
            __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(vm), _mm256_extractf128_ps(vm, 1));
            m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
            m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
            float mx = _mm_cvtss_f32(m4);
            for (; jm <= hi[i]; jm++) mx = row[jm] > mx ? row[jm] : mx;
            for (int j = 0; j < lo[i]; j++) row[j] = 0;
            for (int j = hi[i] + 1; j < T; j++) row[j] = 0;
            __m256 vsum = _mm256_setzero_ps(), vmx = _mm256_set1_ps(mx);
            int j = lo[i];
            for (; j + 8 <= hi[i] + 1; j += 8) {
                __m256 ex = exp8(_mm256_sub_ps(_mm256_loadu_ps(row + j), vmx));
                _mm256_storeu_ps(row + j, ex);
                vsum = _mm256_add_ps(vsum, ex);
            }
            double sum = hsum8(vsum);
            for (; j <= hi[i]; j++) sum += (row[j] = expf(row[j] - mx));
            float inv = (float)(1.0 / sum);
            for (j = lo[i]; j <= hi[i]; j++) row[j] *= inv;
        }
        /* O = P·V, 8 output dims × 4 queries per pass over the keys */
        int jlo = lo[0], jhi = hi[0];
        for (int i = 1; i < nq; i++) jlo = lo[i] < jlo ? lo[i] : jlo, jhi = hi[i] > jhi ? hi[i] : jhi;
        for (int d0 = 0; d0 < D; d0 += 8) { /* 8 output dims × 4 queries per pass over V, named accumulators */
            __m256 o0 = _mm256_setzero_ps(), o1 = o0, o2 = o0, o3 = o0;
            for (int j = jlo; j <= jhi; j++) {
                __m256 vv = _mm256_loadu_ps(V + (size_t)j * D + d0);
                o0 = _mm256_fmadd_ps(_mm256_set1_ps(s[j]), vv, o0);
                o1 = _mm256_fmadd_ps(_mm256_set1_ps(s[(size_t)T + j]), vv, o1);
                o2 = _mm256_fmadd_ps(_mm256_set1_ps(s[(size_t)2 * T + j]), vv, o2);
                o3 = _mm256_fmadd_ps(_mm256_set1_ps(s[(size_t)3 * T + j]), vv, o3);
            }
            __m256 o[4] = { o0, o1, o2, o3 };
            for (int i = 0; i < nq; i++) _mm256_storeu_ps(c->out + ((size_t)(q0 + i) * Hq + h) * D + d0, o[i]);
        }
    }
}
#endif

static void cpu_attention(ob_backend *b, ob_ptr q, ob_ptr kcache, ob_ptr vcache, int n_ctx, ob_ptr out, int pos0, int n,
                          const ob_attn *a) {
    cpu_backend *cb = CB(b);
#ifdef OB_X86
    if (g_simd && n >= 16 && a->head_dim % 8 == 0 && !getenv("OMNI_CPU_ATTN_SIMPLE")) {
        int T = pos0 + n, D = a->head_dim;
        size_t need = (size_t)4 * T;
        int T8 = T & ~7;
        float *kt = malloc(sizeof(float) * ((size_t)a->n_kv_heads * D * T8 + 8));
        int ok = kt != NULL;
        for (int t = 0; ok && t < cb->n_threads; t++)
            if (cb->scratch_n[t] < need) {
                float *p = realloc(cb->scratch[t], need * 4);
                if (!p) ok = 0;
                else cb->scratch[t] = p, cb->scratch_n[t] = need;
            }
        if (!ok) {
            free(kt);
            b->failed = 1;
            return;
        }
        const float *K = PTR(kcache);
        for (int kh = 0; kh < a->n_kv_heads; kh++) /* K in 8-key tiles, transposed within the tile: [T/8][D][8] */
            for (int j = 0; j < T8; j++)
                for (int d = 0; d < D; d++)
                    kt[(size_t)kh * D * T8 + ((size_t)(j / 8) * D + d) * 8 + (j % 8)] = K[((size_t)kh * n_ctx + j) * D + d];
        attn4_ctx c4 = { cb, PTR(q), kt, PTR(vcache), K, PTR(out), n_ctx, pos0, n, T, a };
        tp_parallel_for(cb->tp, (int64_t)a->n_heads * ((n + 3) / 4), 1, attn4_task, &c4);
        free(kt);
        return;
    }
#endif
    for (int t = 0; t < cb->n_threads; t++) {
        if (cb->scratch_n[t] < (size_t)n_ctx) {
            float *p = realloc(cb->scratch[t], (size_t)n_ctx * 4);
            if (!p) {
                b->failed = 1;
                return;
            }
            cb->scratch[t] = p;
            cb->scratch_n[t] = (size_t)n_ctx;
        }
    }
    attn_ctx c = { cb, PTR(q), PTR(kcache), PTR(vcache), PTR(out), n_ctx, pos0, n, a };
    tp_parallel_for(cb->tp, (int64_t)n * a->n_heads, 1, attn_task, &c);
}

/* Qwen3MoeSparseMoeBlock routing: softmax in fp32, top-k (torch.topk: larger first, ties -> lower index),
 * renormalised when norm_topk_prob. */
static void cpu_moe_route(ob_backend *b, ob_ptr logits, int n, int n_exp, int k, int norm_topk, ob_ptr ids,
                          ob_ptr weights) {
    (void)b;
    const float *lg = PTR(logits);
    int32_t *id = PTR(ids);
    float *w = PTR(weights);
    float *p = malloc((size_t)n_exp * sizeof *p);
    if (!p) {
        b->failed = 1;
        return;
    }
    for (int t = 0; t < n; t++) {
        const float *l = lg + (int64_t)t * n_exp;
        float mx = -INFINITY;
        for (int e = 0; e < n_exp; e++) mx = fmaxf(mx, l[e]);
        double sum = 0;
        for (int e = 0; e < n_exp; e++) sum += (p[e] = expf(l[e] - mx));
        for (int e = 0; e < n_exp; e++) p[e] = (float)(p[e] / sum);
        double tot = 0;
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int e = 0; e < n_exp; e++)
                if (p[e] >= 0 && (best < 0 || p[e] > p[best])) best = e;
            id[t * k + j] = best;
            w[t * k + j] = p[best];
            tot += p[best];
            p[best] = -1.0f; /* taken */
        }
        if (norm_topk)
            for (int j = 0; j < k; j++) w[t * k + j] = (float)(w[t * k + j] / tot);
    }
    free(p);
}

static void cpu_moe_experts(ob_backend *b, ob_ptr x, int n, int k, ob_ptr ids, ob_ptr weights, const ob_mat *gate,
                            const ob_mat *up, const ob_mat *down, int n_exp, ob_ptr y) {
    cpu_backend *cb = CB(b);
    const float *X = PTR(x);
    const int32_t *id = PTR(ids);
    const float *w = PTR(weights);
    float *Y = PTR(y);
    int64_t dim = gate[0].cols, inter = gate[0].rows;
    size_t need = (size_t)n * (size_t)(dim + 2 * inter + dim) + (size_t)n * 2;
    if (cb->moe_n < need) {
        float *p = realloc(cb->moe_buf, need * sizeof(float));
        if (!p) {
            b->failed = 1;
            return;
        }
        cb->moe_buf = p;
        cb->moe_n = need;
    }
    float *xg = cb->moe_buf, *g = xg + (size_t)n * dim, *u = g + (size_t)n * inter, *d = u + (size_t)n * inter;
    int32_t *rows = (int32_t *)(d + (size_t)n * dim);
    float *rw = (float *)(rows + n);
    /* experts in ascending id order, like the reference loop (index_add_ per expert) */
    for (int e = 0; e < n_exp; e++) {
        int m = 0;
        for (int t = 0; t < n; t++)
            for (int j = 0; j < k; j++)
                if (id[t * k + j] == e) {
                    rows[m] = t;
                    rw[m] = w[t * k + j];
                    memcpy(xg + (size_t)m * dim, X + (size_t)t * dim, (size_t)dim * 4);
                    m++;
                }
        if (!m) continue;
        matmul_host(cb, &gate[e], xg, g, m, 0);
        matmul_host(cb, &up[e], xg, u, m, 0);
        for (int64_t i = 0; i < (int64_t)m * inter; i++) g[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
        matmul_host(cb, &down[e], g, d, m, 0);
        for (int r = 0; r < m; r++) axpy(Y + (size_t)rows[r] * dim, d + (size_t)r * dim, rw[r], dim);
    }
}

/* The fused attention-block op of backend.h: on the CPU simply the unfused sequence (the reference the device
 * back-ends' fused kernels are tested against). Mirrors Qwen3OmniMoeThinkerTextAttention.forward: q_norm / k_norm
 * per head, apply_rotary_pos_emb, then the cache update. */
static void cpu_qk_norm_rope_kv(ob_backend *b, ob_ptr q, ob_ptr k, ob_ptr v, const ob_mat *q_norm,
                                const ob_mat *k_norm, float eps, ob_ptr pos3, const ob_rope *r, ob_ptr kcache,
                                ob_ptr vcache, int n_ctx, int pos0, int n, const ob_attn *a) {
    int D = a->head_dim;
    size_t KD = (size_t)a->n_kv_heads * D;
    if (a->kv_stride && (size_t)a->kv_stride != KD) { /* strided k, v rows: the same on dense copies, k copied back */
        ob_buf *kb = cpu_alloc(b, (size_t)n * KD * 4), *vb = cpu_alloc(b, (size_t)n * KD * 4);
        if (!kb || !vb) {
            b->failed = 1;
            snprintf(b->err, sizeof b->err, "qk_norm_rope_kv: out of memory");
        } else {
            float *kd = kb->p, *vd = vb->p, *ks = PTR(k), *vs = PTR(v);
            for (int i = 0; i < n; i++) {
                memcpy(kd + i * KD, ks + (size_t)i * a->kv_stride, KD * 4);
                memcpy(vd + i * KD, vs + (size_t)i * a->kv_stride, KD * 4);
            }
            ob_attn dense = *a;
            dense.kv_stride = 0;
            cpu_qk_norm_rope_kv(b, q, (ob_ptr){ kb, 0 }, (ob_ptr){ vb, 0 }, q_norm, k_norm, eps, pos3, r, kcache, vcache,
                                n_ctx, pos0, n, &dense);
            for (int i = 0; i < n; i++) memcpy(ks + (size_t)i * a->kv_stride, kd + i * KD, KD * 4);
        }
        cpu_buf_free(b, kb);
        cpu_buf_free(b, vb);
        return;
    }
    cpu_rms_norm(b, q, q_norm, q, n * a->n_heads, D, eps);
    cpu_rms_norm(b, k, k_norm, k, n * a->n_kv_heads, D, eps);
    cpu_rope(b, q, pos3, n, a->n_heads, r);
    cpu_rope(b, k, pos3, n, a->n_kv_heads, r);
    cpu_kv_store(b, kcache, vcache, n_ctx, k, v, pos0, n, a);
}

/* The fused decode attention of backend.h: on the CPU its definition, qk_norm_rope_kv then attention. */
static void cpu_qk_norm_rope_kv_attention(ob_backend *b, ob_ptr q, ob_ptr k, ob_ptr v, const ob_mat *q_norm,
                                          const ob_mat *k_norm, float eps, ob_ptr pos3, const ob_rope *r,
                                          ob_ptr kcache, ob_ptr vcache, int n_ctx, int pos0, int n, const ob_attn *a,
                                          ob_ptr out) {
    cpu_qk_norm_rope_kv(b, q, k, v, q_norm, k_norm, eps, pos3, r, kcache, vcache, n_ctx, pos0, n, a);
    cpu_attention(b, q, kcache, vcache, n_ctx, out, pos0, n, a);
}

/* The fused norm + matrix-vector op of backend.h: on the CPU the unfused pair (Qwen3RMSNorm, then the Linear). */
static void cpu_norm_matvec(ob_backend *b, ob_ptr x, const ob_mat *norm, float eps, const ob_mat *w, ob_ptr y,
                            ob_ptr xn) {
    cpu_rms_norm(b, x, norm, xn, 1, (int)w->cols, eps);
    cpu_matmul(b, w, xn, y, 1, 0);
}

/* The fused MoE routing op of backend.h: on the CPU the unfused sequence (norm, router Linear, TopKRouter). */
static void cpu_norm_route(ob_backend *b, ob_ptr x, const ob_mat *norm, float eps, const ob_mat *w, ob_ptr logits,
                           ob_ptr xn, int k, int norm_topk, ob_ptr ids, ob_ptr weights) {
    cpu_norm_matvec(b, x, norm, eps, w, logits, xn);
    cpu_moe_route(b, logits, 1, (int)w->rows, k, norm_topk, ids, weights);
}

/* The fused o_proj + routing op of backend.h: on the CPU the unfused pair. */
static void cpu_matmul_norm_route(ob_backend *b, const ob_mat *wo, ob_ptr a, ob_ptr x, const ob_mat *norm, float eps,
                                  const ob_mat *w, ob_ptr logits, ob_ptr xn, int k, int norm_topk, ob_ptr ids,
                                  ob_ptr weights) {
    cpu_matmul(b, wo, a, x, 1, 1);
    cpu_norm_route(b, x, norm, eps, w, logits, xn, k, norm_topk, ids, weights);
}

static void cpu_swiglu(ob_backend *b, ob_ptr g, ob_ptr u, ob_ptr out, int64_t count) {
    (void)b;
    const float *G = PTR(g), *U = PTR(u);
    float *O = PTR(out);
    for (int64_t i = 0; i < count; i++) O[i] = G[i] / (1.0f + expf(-G[i])) * U[i]; /* silu(g) * u */
}

static void cpu_add(ob_backend *b, ob_ptr x, ob_ptr y, int64_t count) {
    (void)b;
    const float *X = PTR(x);
    float *Y = PTR(y);
    for (int64_t i = 0; i < count; i++) Y[i] += X[i];
}

static void cpu_add_bias(ob_backend *b, ob_ptr x, const ob_mat *bias, int rows, int dim) {
    float wbuf[4096];
    float *bf = dim <= 4096 ? wbuf : malloc((size_t)dim * 4);
    if (!bf) {
        b->failed = 1;
        return;
    }
    ob_row_to_f32(PTR(bias->data), bias->dtype, 1, dim, 0, bf);
    float *X = PTR(x);
    for (int r = 0; r < rows; r++)
        for (int c = 0; c < dim; c++) X[(size_t)r * dim + c] += bf[c];
    if (bf != wbuf) free(bf);
}

typedef struct {
    const float *x, *w, *bias;
    float *y;
    int dim;
    float eps;
} ln_ctx;

static void ln_task(void *vctx, int64_t b, int64_t e, int thread) {
    (void)thread;
    ln_ctx *c = vctx;
    for (int64_t r = b; r < e; r++) {
        const float *x = c->x + r * c->dim;
        float *y = c->y + r * c->dim;
        double s = 0, q = 0;
        for (int i = 0; i < c->dim; i++) s += x[i];
        double mean = s / c->dim;
        for (int i = 0; i < c->dim; i++) q += (x[i] - mean) * (x[i] - mean);
        float inv = (float)(1.0 / sqrt(q / c->dim + c->eps)), m = (float)mean;
        for (int i = 0; i < c->dim; i++) y[i] = (x[i] - m) * inv * c->w[i] + (c->bias ? c->bias[i] : 0.0f);
    }
}

static void cpu_layer_norm(ob_backend *b, ob_ptr x, const ob_mat *w, const ob_mat *bias, ob_ptr y, int rows, int dim,
                           float eps) {
    float *wf = malloc((size_t)dim * 8);
    if (!wf) {
        b->failed = 1;
        return;
    }
    float *bf = wf + dim;
    ob_row_to_f32(PTR(w->data), w->dtype, 1, dim, 0, wf);
    int has_b = bias && bias->data.buf;
    if (has_b) ob_row_to_f32(PTR(bias->data), bias->dtype, 1, dim, 0, bf);
    ln_ctx c = { PTR(x), wf, has_b ? bf : NULL, PTR(y), dim, eps };
    tp_parallel_for(CB(b)->tp, rows, 16, ln_task, &c);
    free(wf);
}

typedef struct {
    const float *x;
    float *y;
    int tanh_approx;
} gelu_ctx;

static void gelu_task(void *vctx, int64_t b, int64_t e, int thread) {
    (void)thread;
    gelu_ctx *c = vctx;
    for (int64_t i = b; i < e; i++) {
        float v = c->x[i];
        if (c->tanh_approx) /* GELUTanh: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) */
            c->y[i] = 0.5f * v * (1.0f + tanhf(0.7978845608028654f * (v + 0.044715f * v * v * v)));
        else c->y[i] = 0.5f * v * (1.0f + erff(v * 0.7071067811865476f)); /* exact: 0.5 x (1 + erf(x / sqrt 2)) */
    }
}

static void cpu_gelu(ob_backend *b, ob_ptr x, ob_ptr y, int64_t count, int tanh_approx) {
    gelu_ctx c = { PTR(x), PTR(y), tanh_approx };
    tp_parallel_for(CB(b)->tp, count, 4096, gelu_task, &c);
}

static void cpu_permute(ob_backend *b, ob_ptr src, ob_ptr dst, const int64_t d[4], const int64_t st[4]) {
    (void)b;
    const float *S = PTR(src);
    float *D = PTR(dst);
    size_t o = 0;
    for (int64_t i0 = 0; i0 < d[0]; i0++)
        for (int64_t i1 = 0; i1 < d[1]; i1++)
            for (int64_t i2 = 0; i2 < d[2]; i2++)
                for (int64_t i3 = 0; i3 < d[3]; i3++) D[o++] = S[i0 * st[0] + i1 * st[1] + i2 * st[2] + i3 * st[3]];
}

typedef struct {
    const float *x;
    float *out;
    int C, H, W, k, stride, pad, Ho, Wo;
    const int64_t *st;
} im2col_ctx;

static void im2col_task(void *vctx, int64_t b, int64_t e, int thread) {
    (void)thread;
    im2col_ctx *c = vctx;
    int64_t cols = (int64_t)c->C * c->k * c->k;
    for (int64_t r = b; r < e; r++) {
        int64_t bi = r / ((int64_t)c->Ho * c->Wo), rem = r % ((int64_t)c->Ho * c->Wo);
        int oy = (int)(rem / c->Wo), ox = (int)(rem % c->Wo);
        float *o = c->out + r * cols;
        for (int ch = 0; ch < c->C; ch++)
            for (int ky = 0; ky < c->k; ky++)
                for (int kx = 0; kx < c->k; kx++) {
                    int iy = oy * c->stride - c->pad + ky, ix = ox * c->stride - c->pad + kx;
                    *o++ = (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W)
                               ? 0.0f
                               : c->x[bi * c->st[0] + ch * c->st[1] + iy * c->st[2] + ix * c->st[3]];
                }
    }
}

static void cpu_im2col(ob_backend *b, ob_ptr x, int B, int C, int H, int W, const int64_t strides[4], int k, int stride,
                       int pad, ob_ptr out) {
    int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    im2col_ctx c = { PTR(x), PTR(out), C, H, W, k, stride, pad, Ho, Wo, strides };
    tp_parallel_for(CB(b)->tp, (int64_t)B * Ho * Wo, 16, im2col_task, &c);
}

/* topk_chunks: per chunk, a list of the best K kept sorted by insertion (the order of topk.comp: larger value first,
 * ties to the lower id; ids ascend within a chunk, so a tie never displaces an earlier entry) */
static void cpu_topk_chunks(ob_backend *b, ob_ptr x, int n, ob_ptr out) {
    (void)b;
    const float *v = PTR(x);
    int32_t *o = PTR(out);
    for (int c = 0; c * OB_TOPK_CHUNK < n; c++) {
        int32_t *e = o + (size_t)c * OB_TOPK_K * 2;
        int m = 0;
        for (int i = c * OB_TOPK_CHUNK; i < n && i < (c + 1) * OB_TOPK_CHUNK; i++) {
            float f = v[i];
            if (m == OB_TOPK_K) {
                float last;
                memcpy(&last, &e[2 * (m - 1) + 1], 4);
                if (!(f > last)) continue;
                m--;
            }
            int j = m++;
            for (; j > 0; j--) {
                float p;
                memcpy(&p, &e[2 * (j - 1) + 1], 4);
                if (!(f > p)) break;
                e[2 * j] = e[2 * (j - 1)], e[2 * j + 1] = e[2 * (j - 1) + 1];
            }
            e[2 * j] = i;
            memcpy(&e[2 * j + 1], &f, 4);
        }
        for (; m < OB_TOPK_K; m++) e[2 * m] = -1, e[2 * m + 1] = 0;
    }
}

static void cpu_add_rows(ob_backend *b, ob_ptr x, ob_ptr idx, ob_ptr src, int n, int dim) {
    (void)b;
    float *X = PTR(x);
    const int32_t *I = PTR(idx);
    const float *S = PTR(src);
    for (int i = 0; i < n; i++)
        for (int c = 0; c < dim; c++) X[(size_t)I[i] * dim + c] += S[(size_t)i * dim + c];
}

static void cpu_copy(ob_backend *b, ob_ptr src, ob_ptr dst, size_t bytes) {
    (void)b;
    memmove(PTR(dst), PTR(src), bytes);
}

/* Ops run synchronously here, so the wall time between marks is the class's time. */
static void cpu_prof_mark(ob_backend *b, int cls) {
    cpu_backend *cb = CB(b);
    double t = omni_time_ms();
    if (cb->prof_cls >= 0 && cb->prof_cls < OB_PROF_N) cb->prof_ms[cb->prof_cls] += t - cb->prof_t0;
    cb->prof_cls = cls;
    cb->prof_t0 = t;
}

static void cpu_prof_read(ob_backend *b, double *ms) {
    cpu_backend *cb = CB(b);
    for (int i = 0; i < OB_PROF_N; i++) ms[i] += cb->prof_ms[i], cb->prof_ms[i] = 0;
}

static void cpu_destroy(ob_backend *b) {
    cpu_backend *cb = CB(b);
    tp_free(cb->tp);
    for (int t = 0; cb->scratch && t < cb->n_threads; t++) free(cb->scratch[t]);
    for (int t = 0; cb->panel && t < cb->n_threads; t++) free(cb->panel[t]);
    free(cb->panel);
    free(cb->panel_n);
    free(cb->scratch);
    free(cb->scratch_n);
    free(cb->moe_buf);
    free(cb);
}

static const ob_ops cpu_ops = {
    .name = "cpu",
    .destroy = cpu_destroy,
    .device_name = cpu_device_name,
    .alloc = cpu_alloc,
    .buf_free = cpu_buf_free,
    .wrap_host = cpu_wrap_host,
    .upload = cpu_upload,
    .download = cpu_download,
    .sync = cpu_sync,
    .host_ptr = cpu_host_ptr,
    .get_rows = cpu_get_rows,
    .matmul = cpu_matmul,
    .rms_norm = cpu_rms_norm,
    .rope = cpu_rope,
    .kv_store = cpu_kv_store,
    .attention = cpu_attention,
    .moe_route = cpu_moe_route,
    .moe_experts = cpu_moe_experts,
    .swiglu = cpu_swiglu,
    .add = cpu_add,
    .add_bias = cpu_add_bias,
    .layer_norm = cpu_layer_norm,
    .gelu = cpu_gelu,
    .permute = cpu_permute,
    .im2col = cpu_im2col,
    .add_rows = cpu_add_rows,
    .copy = cpu_copy,
    .qk_norm_rope_kv = cpu_qk_norm_rope_kv,
    .qk_norm_rope_kv_attention = cpu_qk_norm_rope_kv_attention,
    .norm_matvec = cpu_norm_matvec,
    .norm_route = cpu_norm_route,
    .matmul_norm_route = cpu_matmul_norm_route,
    .topk_chunks = cpu_topk_chunks,
    .prof_mark = cpu_prof_mark,
    .prof_read = cpu_prof_read,
};

ob_backend *ob_cpu_new(int n_threads) {
    cpu_backend *cb = calloc(1, sizeof *cb);
    if (!cb) return NULL;
    cb->base.ops = &cpu_ops;
    cb->tp = tp_new(n_threads);
    if (!cb->tp) {
        free(cb);
        return NULL;
    }
    cb->n_threads = tp_threads(cb->tp);
    cb->prof_cls = -1;
    cb->scratch = calloc((size_t)cb->n_threads, sizeof *cb->scratch);
    cb->scratch_n = calloc((size_t)cb->n_threads, sizeof *cb->scratch_n);
    cb->panel = calloc((size_t)cb->n_threads, sizeof *cb->panel);
    cb->panel_n = calloc((size_t)cb->n_threads, sizeof *cb->panel_n);
    if (!cb->scratch || !cb->scratch_n || !cb->panel || !cb->panel_n) {
        cpu_destroy(&cb->base);
        return NULL;
    }
#ifdef OB_X86
    __builtin_cpu_init();
    /* F16C is read from CPUID leaf 1 (ECX bit 29): not every compiler's __builtin_cpu_supports knows "f16c" */
    unsigned a, bx, c, d;
    int f16c = __get_cpuid(1, &a, &bx, &c, &d) && (c & (1u << 29));
    cb->simd = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && f16c && !getenv("OMNI_CPU_NO_SIMD");
#endif
    g_simd = cb->simd;
    return &cb->base;
}
