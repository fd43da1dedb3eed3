/* test_vulkan_ops.c — op parity: every op of backend.h on the Vulkan back-end against the CPU back-end, on random
 * inputs over many small shapes (odd sizes, one row, long rows, rows not a multiple of a workgroup, unaligned
 * weights that take the element-wise kernel paths), under the validation layer when it is installed. Each test
 * skips when there is no Vulkan device.
 *
 * Error measure: max |vk - cpu| / max |cpu| over the output. Tolerances: 1e-5 for fp32-accumulated dot products
 * and normalisations (different summation order only), 3e-6 for rope/element-wise ops (own exp/sin/cos, ~1 ulp
 * each), exact for data movement and routing ids. */
#include "test_vulkan.h"

/* ---- matmul ------------------------------------------------------------------------------------------------------ */

/* y = x·Wᵀ (+ y) with W at byte offset pad in its buffer; returns the relative error */
static double matmul_case(tv_env *e, omni_rng *r, ob_dtype t, int rows, int cols, int n, int acc, size_t pad) {
    size_t wb;
    void *w = tv_weights(r, t, rows, cols, &wb);
    float *x = malloc(sizeof *x * (size_t)n * cols), *y = malloc(sizeof *y * (size_t)n * rows);
    tv_rand(r, x, (size_t)n * cols, 1.0f);
    tv_rand(r, y, (size_t)n * rows, 1.0f);
    tv_buf W = tv_new(e, w, wb, pad), X = tv_new(e, x, sizeof *x * (size_t)n * cols, 0),
           Y = tv_new(e, y, sizeof *y * (size_t)n * rows, 0);
    ob_mat mv = ob_mat_make(tv_pv(W, pad), t, rows, cols), mc = ob_mat_make(tv_pc(W, pad), t, rows, cols);
    e->vk->ops->matmul(e->vk, &mv, tv_pv(X, 0), tv_pv(Y, 0), n, acc);
    e->cpu->ops->matmul(e->cpu, &mc, tv_pc(X, 0), tv_pc(Y, 0), n, acc);
    double err = tv_rel_err(e, Y, 0, (size_t)n * rows);
    tv_free(e, &W);
    tv_free(e, &X);
    tv_free(e, &Y);
    free(w);
    free(x);
    free(y);
    return err;
}

typedef struct {
    int rows, cols, n;
} mm_shape;

static void matmul_sweep(tv_env *e, const mm_shape *s, int ns, double tol) {
    omni_rng r = { 42 };
    const ob_dtype types[] = { OB_F32, OB_F16, OB_BF16, OB_Q8_0 };
    for (int i = 0; i < ns; i++)
        for (int ti = 0; ti < 4; ti++) {
            ob_dtype t = types[ti];
            if (t == OB_Q8_0 && s[i].cols % 32) continue;
            for (int v = 0; v < 2; v++) { /* v = 1: weight 2 (f32: 4) bytes off alignment, accumulate */
                size_t pad = v ? (t == OB_F32 ? 4 : 2) : 0;
                double err = matmul_case(e, &r, t, s[i].rows, s[i].cols, s[i].n, v, pad);
                if (!(err >= 0 && err <= tol))
                    th_fail(__FILE__, __LINE__, "matmul %s [%d x %d] n=%d pad=%zu: rel err %g > %g", ob_dtype_name(t),
                            s[i].rows, s[i].cols, s[i].n, pad, err, tol);
            }
        }
}

static const mm_shape vec_shapes[] = { { 1, 32, 1 }, { 7, 64, 1 }, { 33, 96, 3 }, { 130, 256, 1 }, { 65, 160, 8 },
                                       { 70, 2048, 2 }, { 5, 40, 4 },  { 16, 8, 1 } };
static const mm_shape tiled_shapes[] = { { 64, 64, 17 }, { 65, 96, 9 },  { 130, 160, 33 }, { 7, 32, 70 },
                                         { 96, 512, 40 }, { 5, 40, 12 }, { 1, 8, 9 } };

/* Q8_0 with fp32 activations here (exact up to summation order); the int8-activation default for Q8_0 decode
 * products (mvq8.comp) has its own tolerance: vk_q8_int8_activations */
TEST(vk_matmul_matvec) {
    setenv("OMNI_VK_Q8_INT8", "0", 1);
    TV_OPEN(e);
    matmul_sweep(&e, vec_shapes, (int)(sizeof vec_shapes / sizeof *vec_shapes), 1e-5);
    tv_close(&e);
}

TEST(vk_matmul_tiled) {
    setenv("OMNI_VK_NO_COOPMAT", "1", 1); /* fp32 kernels; the tensor-core path: test_vulkan_coopmat.c */
    setenv("OMNI_VK_MM", "tiled", 1);
    TV_OPEN(e);
    matmul_sweep(&e, tiled_shapes, (int)(sizeof tiled_shapes / sizeof *tiled_shapes), 1e-5);
    tv_close(&e);
}

TEST(vk_matmul_tiled_128) {
    setenv("OMNI_VK_NO_COOPMAT", "1", 1); /* fp32 kernels; the tensor-core path: test_vulkan_coopmat.c */
    setenv("OMNI_VK_MM", "tiled", 1);
    setenv("OMNI_VK_MM_TILE", "128", 1);
    TV_OPEN(e);
    mm_shape s[] = { { 130, 160, 33 }, { 129, 64, 130 } };
    matmul_sweep(&e, s, 2, 1e-5);
    tv_close(&e);
}

/* the matrix-vector kernel on every n up to 8 and past it, and its shared-memory (no subgroup) variant */
TEST(vk_matmul_matvec_no_subgroup) {
    setenv("OMNI_VK_NO_SUBGROUP", "1", 1);
    setenv("OMNI_VK_MM", "vec", 1);
    TV_OPEN(e);
    mm_shape s[] = { { 33, 96, 1 }, { 9, 64, 5 }, { 17, 40, 11 } };
    matmul_sweep(&e, s, 3, 1e-5);
    tv_close(&e);
}

/* ---- small ops --------------------------------------------------------------------------------------------------- */

TEST(vk_get_rows_and_norms) {
    TV_OPEN(e);
    omni_rng r = { 7 };
    const ob_dtype types[] = { OB_F32, OB_F16, OB_BF16, OB_Q8_0 };
    for (int ti = 0; ti < 4; ti++) { /* get_rows: a table of 50 rows, 9 lookups (repeats, first and last row) */
        int rows = 50, cols = 64, n = 9;
        int32_t ids[9] = { 0, 49, 3, 3, 17, 48, 1, 0, 25 };
        size_t wb;
        void *w = tv_weights(&r, types[ti], rows, cols, &wb);
        tv_buf T = tv_new(&e, w, wb, 0), I = tv_new(&e, ids, sizeof ids, 0),
               O = tv_new(&e, NULL, (size_t)n * cols * 4, 0);
        ob_mat mv = ob_mat_make(tv_pv(T, 0), types[ti], rows, cols),
               mc = ob_mat_make(tv_pc(T, 0), types[ti], rows, cols);
        e.vk->ops->get_rows(e.vk, &mv, tv_pv(I, 0), n, tv_pv(O, 0));
        e.cpu->ops->get_rows(e.cpu, &mc, tv_pc(I, 0), n, tv_pc(O, 0));
        CHECK_NEAR(tv_rel_err(&e, O, 0, (size_t)n * cols), 0, 0); /* exact: the same conversion */
        tv_free(&e, &T), tv_free(&e, &I), tv_free(&e, &O);
        free(w);
    }
    /* rms_norm over rows of several widths, weights in three types, in place and out of place */
    const int dims[] = { 7, 64, 128, 300, 2048 }, nrows[] = { 1, 5, 33, 2, 3 };
    for (int di = 0; di < 5; di++)
        for (int ti = 0; ti < 3; ti++) {
            int dim = dims[di], rows = nrows[di];
            float *x = malloc(sizeof *x * (size_t)rows * dim);
            tv_rand(&r, x, (size_t)rows * dim, 3.0f);
            size_t wb;
            void *w = tv_weights(&r, types[ti], 1, dim, &wb);
            tv_buf X = tv_new(&e, x, sizeof *x * (size_t)rows * dim, 0), W = tv_new(&e, w, wb, 0),
                   Y = tv_new(&e, NULL, sizeof *x * (size_t)rows * dim, 0);
            ob_mat mv = ob_mat_make(tv_pv(W, 0), types[ti], 1, dim), mc = ob_mat_make(tv_pc(W, 0), types[ti], 1, dim);
            int inplace = di % 2;
            e.vk->ops->rms_norm(e.vk, tv_pv(X, 0), &mv, inplace ? tv_pv(X, 0) : tv_pv(Y, 0), rows, dim, 1e-6f);
            e.cpu->ops->rms_norm(e.cpu, tv_pc(X, 0), &mc, inplace ? tv_pc(X, 0) : tv_pc(Y, 0), rows, dim, 1e-6f);
            double err = tv_rel_err(&e, inplace ? X : Y, 0, (size_t)rows * dim);
            if (!(err >= 0 && err <= 1e-5)) th_fail(__FILE__, __LINE__, "rms_norm dim %d: %g", dim, err);
            /* layer norm with and without bias */
            size_t bb;
            void *bias = tv_weights(&r, types[ti], 1, dim, &bb);
            tv_buf B = tv_new(&e, bias, bb, 0);
            ob_mat bv = ob_mat_make(tv_pv(B, 0), types[ti], 1, dim), bc = ob_mat_make(tv_pc(B, 0), types[ti], 1, dim);
            ob_mat none = { 0 };
            e.vk->ops->layer_norm(e.vk, tv_pv(X, 0), &mv, inplace ? &none : &bv, tv_pv(Y, 0), rows, dim, 1e-5f);
            e.cpu->ops->layer_norm(e.cpu, tv_pc(X, 0), &mc, inplace ? &none : &bc, tv_pc(Y, 0), rows, dim, 1e-5f);
            err = tv_rel_err(&e, Y, 0, (size_t)rows * dim);
            if (!(err >= 0 && err <= 1e-5)) th_fail(__FILE__, __LINE__, "layer_norm dim %d: %g", dim, err);
            /* bias add */
            e.vk->ops->add_bias(e.vk, tv_pv(Y, 0), &bv, rows, dim);
            e.cpu->ops->add_bias(e.cpu, tv_pc(Y, 0), &bc, rows, dim);
            err = tv_rel_err(&e, Y, 0, (size_t)rows * dim);
            if (!(err >= 0 && err <= 1e-5)) th_fail(__FILE__, __LINE__, "add_bias dim %d: %g", dim, err);
            tv_free(&e, &X), tv_free(&e, &W), tv_free(&e, &Y), tv_free(&e, &B);
            free(x), free(w), free(bias);
        }
    tv_close(&e);
}

TEST(vk_elementwise_and_copy) {
    TV_OPEN(e);
    omni_rng r = { 9 };
    const int64_t counts[] = { 1, 3, 4, 1000, 4099, 70000 };
    for (int ci = 0; ci < 6; ci++) {
        int64_t n = counts[ci];
        size_t off = ci % 2 ? 4 : 0; /* odd cases start 4 bytes in: the one-element-per-thread path */
        float *a = malloc(sizeof *a * (size_t)n), *b = malloc(sizeof *b * (size_t)n);
        tv_rand(&r, a, (size_t)n, 12.0f);
        tv_rand(&r, b, (size_t)n, 2.0f);
        tv_buf A = tv_new(&e, a, sizeof *a * (size_t)n, off), B = tv_new(&e, b, sizeof *b * (size_t)n, off),
               O = tv_new(&e, NULL, sizeof *a * (size_t)n, off);
        e.vk->ops->swiglu(e.vk, tv_pv(A, off), tv_pv(B, off), tv_pv(O, off), n);
        e.cpu->ops->swiglu(e.cpu, tv_pc(A, off), tv_pc(B, off), tv_pc(O, off), n);
        double err = tv_rel_err(&e, O, off, (size_t)n);
        if (!(err >= 0 && err <= 3e-6)) th_fail(__FILE__, __LINE__, "swiglu n=%lld: %g", (long long)n, err);
        e.vk->ops->add(e.vk, tv_pv(A, off), tv_pv(B, off), n);
        e.cpu->ops->add(e.cpu, tv_pc(A, off), tv_pc(B, off), n);
        CHECK_NEAR(tv_rel_err(&e, B, off, (size_t)n), 0, 0);
        for (int approx = 0; approx < 2; approx++) {
            e.vk->ops->gelu(e.vk, tv_pv(A, off), tv_pv(O, off), n, approx);
            e.cpu->ops->gelu(e.cpu, tv_pc(A, off), tv_pc(O, off), n, approx);
            err = tv_rel_err(&e, O, off, (size_t)n);
            if (!(err >= 0 && err <= 3e-6))
                th_fail(__FILE__, __LINE__, "gelu(%d) n=%lld: %g", approx, (long long)n, err);
        }
        /* byte copies: between buffers, and overlapping within one (memmove semantics) */
        e.vk->ops->copy(e.vk, tv_pv(A, off), tv_pv(O, off), (size_t)n * 4);
        e.cpu->ops->copy(e.cpu, tv_pc(A, off), tv_pc(O, off), (size_t)n * 4);
        CHECK_NEAR(tv_rel_err(&e, O, off, (size_t)n), 0, 0);
        if (n > 8) {
            size_t m = (size_t)(n - 3) * 4;
            e.vk->ops->copy(e.vk, tv_pv(O, off), tv_pv(O, off + 12), m);
            e.cpu->ops->copy(e.cpu, tv_pc(O, off), tv_pc(O, off + 12), m);
            CHECK_NEAR(tv_rel_err(&e, O, off, (size_t)n), 0, 0);
        }
        tv_free(&e, &A), tv_free(&e, &B), tv_free(&e, &O);
        free(a), free(b);
    }
    tv_close(&e);
}

TEST(vk_permute_im2col_add_rows) {
    TV_OPEN(e);
    omni_rng r = { 11 };
    float src[2 * 3 * 5 * 7];
    tv_rand(&r, src, 210, 1.0f);
    tv_buf S = tv_new(&e, src, sizeof src, 0), D = tv_new(&e, NULL, 4096 * 4, 0);
    /* permute [2][3][5][7] -> [7][2][5][3] (strides of the source) */
    int64_t d[4] = { 7, 2, 5, 3 }, s[4] = { 1, 105, 7, 35 };
    e.vk->ops->permute(e.vk, tv_pv(S, 0), tv_pv(D, 0), d, s);
    e.cpu->ops->permute(e.cpu, tv_pc(S, 0), tv_pc(D, 0), d, s);
    CHECK_NEAR(tv_rel_err(&e, D, 0, 210), 0, 0);
    /* im2col of [B=2][C=3][H=5][W=7], kernel 3, stride 2, pad 1: 2*3*4 rows of 27 */
    int64_t st[4] = { 105, 35, 7, 1 };
    e.vk->ops->im2col(e.vk, tv_pv(S, 0), 2, 3, 5, 7, st, 3, 2, 1, tv_pv(D, 0));
    e.cpu->ops->im2col(e.cpu, tv_pc(S, 0), 2, 3, 5, 7, st, 3, 2, 1, tv_pc(D, 0));
    CHECK_NEAR(tv_rel_err(&e, D, 0, 2 * 3 * 4 * 27), 0, 0);
    /* add_rows with a repeated index: rows 4, 0, 4 of an [8][13] matrix */
    int32_t idx[3] = { 4, 0, 4 };
    tv_buf I = tv_new(&e, idx, sizeof idx, 0);
    e.vk->ops->add_rows(e.vk, tv_pv(D, 0), tv_pv(I, 0), tv_pv(S, 0), 3, 13);
    e.cpu->ops->add_rows(e.cpu, tv_pc(D, 0), tv_pc(I, 0), tv_pc(S, 0), 3, 13);
    CHECK_NEAR(tv_rel_err(&e, D, 0, 8 * 13), 0, 0);
    tv_free(&e, &S), tv_free(&e, &D), tv_free(&e, &I);
    tv_close(&e);
}

/* ---- rope -------------------------------------------------------------------------------------------------------- */

TEST(vk_rope_variants) {
    TV_OPEN(e);
    omni_rng r = { 13 };
    struct {
        ob_rope rope;
        int n, heads;
        float pos_scale;
    } cases[] = {
        { { 1e6f, 128, 128, { 0, 0, 0 }, 0, 0 }, 5, 3, 4000.0f },      /* plain, large positions */
        { { 1e6f, 128, 128, { 24, 20, 20 }, 1, 0 }, 7, 2, 300.0f },    /* Qwen3-Omni interleaved MRoPE */
        { { 10000.f, 64, 64, { 8, 12, 12 }, 0, 0 }, 4, 5, 50.0f },     /* contiguous sections */
        { { 10000.f, 80, 40, { 0, 0, 0 }, 0, 0 }, 3, 2, 1000.0f },     /* partial rotation */
        { { 10000.f, 72, 72, { 18, 18, 0 }, 0, 1 }, 6, 2, 40.0f },     /* ViT 2-D rotary (section_freqs) */
    };
    for (unsigned ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        int n = cases[ci].n, H = cases[ci].heads, hd = cases[ci].rope.head_dim;
        size_t xn = (size_t)n * H * hd;
        float *x = malloc(xn * 4), *pos = malloc((size_t)3 * n * 4);
        tv_rand(&r, x, xn, 1.0f);
        for (int i = 0; i < 3 * n; i++) /* fractional positions, different per row */
            pos[i] = floorf(omni_rng_uniform(&r) * cases[ci].pos_scale) + (i % 3 == 2 ? 0.5f : 0.0f);
        tv_buf X = tv_new(&e, x, xn * 4, 0), P = tv_new(&e, pos, (size_t)3 * n * 4, 0);
        e.vk->ops->rope(e.vk, tv_pv(X, 0), tv_pv(P, 0), n, H, &cases[ci].rope);
        e.cpu->ops->rope(e.cpu, tv_pc(X, 0), tv_pc(P, 0), n, H, &cases[ci].rope);
        double err = tv_rel_err(&e, X, 0, xn);
        if (!(err >= 0 && err <= 3e-6)) th_fail(__FILE__, __LINE__, "rope case %u: rel err %g", ci, err);
        tv_free(&e, &X), tv_free(&e, &P);
        free(x), free(pos);
    }
    tv_close(&e);
}

/* ---- fused decode ops ------------------------------------------------------------------------------------------ */

/* qk_norm_rope_kv on the Vulkan back-end (fused kernel, or its fallback for q8 norms) against the CPU back-end's
 * (the unfused sequence rms_norm ×2, rope ×2, kv_store): q, k and both caches. Tolerance 1e-5 (a normalisation and
 * a rotation; the cache rows the op does not write stay exactly as they were). With an fp16 cache (the Vulkan
 * default for these head dims; the rows not written start from the same fp16 values on both sides) the new rows
 * are rounded to fp16: |x16 - x| <= 2^-11 |x| (round to nearest; also for subnormal halves relative to the largest
 * value, which is what the error measures), so the v cache (a copy) must be within 2^-11 and the k cache within
 * 2^-11 + 1e-5 (its fp32 value may differ by 1e-5 before rounding). */
#define KV16_U 0x1p-11
static void qk_rope_kv_cases(void) {
    TV_OPEN(e);
    omni_rng r = { 23 };
    struct {
        int hq, hkv, hd, rot, n, n_ctx, pos0;
        int sec[3], inter;
        ob_dtype wt;
        int kv1; /* k and v as the halves of rows [n][k | v] (one k|v product; ob_attn.kv_stride) */
    } cases[] = {
        { 4, 2, 128, 128, 1, 64, 10, { 24, 20, 20 }, 1, OB_BF16, 0 }, /* Qwen3-Omni decode: interleaved MRoPE */
        { 8, 1, 64, 64, 5, 40, 3, { 0, 0, 0 }, 0, OB_F32, 0 },        /* prefill chunk, MQA, plain RoPE */
        { 3, 3, 80, 40, 2, 9, 7, { 0, 0, 0 }, 0, OB_F16, 0 },         /* partial rotation, odd head_dim */
        { 2, 1, 256, 256, 1, 300, 299, { 48, 40, 40 }, 1, OB_BF16, 0 }, /* head_dim 256, last cache row */
        { 2, 2, 64, 64, 3, 16, 0, { 8, 12, 12 }, 0, OB_Q8_0, 0 },     /* q8 norms: the unfused fallback */
        { 4, 2, 128, 128, 7, 64, 10, { 24, 20, 20 }, 1, OB_BF16, 1 }, /* prefill chunk of a k|v product */
        { 3, 1, 80, 40, 4, 9, 2, { 0, 0, 0 }, 0, OB_F16, 1 },         /* the same, partial rotation */
        { 2, 2, 64, 64, 3, 16, 0, { 8, 12, 12 }, 0, OB_Q8_0, 1 },     /* strided rows in the unfused fallback */
    };
    for (unsigned ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        int Hq = cases[ci].hq, Hkv = cases[ci].hkv, D = cases[ci].hd, n = cases[ci].n, n_ctx = cases[ci].n_ctx;
        int kv1 = cases[ci].kv1;
        ob_rope rope = { 1e6f, D, cases[ci].rot, { cases[ci].sec[0], cases[ci].sec[1], cases[ci].sec[2] },
                         cases[ci].inter, 0 };
        ob_attn a = { Hq, Hkv, D, 1.0f / sqrtf((float)D), 1, 0, kv1 ? 2 * Hkv * D : 0 };
        /* kv1: K holds the rows [n][k | v] (kn covers both halves) and v is K's second half */
        size_t qn = (size_t)n * Hq * D, kn = (size_t)n * Hkv * D * (kv1 ? 2 : 1), cn = (size_t)Hkv * n_ctx * D;
        size_t vo = kv1 ? (size_t)Hkv * D * 4 : 0;
        float *q = malloc(qn * 4), *k = malloc(kn * 4), *v = malloc(kn * 4), *cache = malloc(cn * 4),
              *pos = malloc((size_t)3 * n * 4);
        tv_rand(&r, q, qn, 3.0f);
        tv_rand(&r, k, kn, 3.0f);
        tv_rand(&r, v, kn, 1.0f);
        tv_rand(&r, cache, cn, 1.0f);
        for (int i = 0; i < 3 * n; i++) pos[i] = floorf(omni_rng_uniform(&r) * 2000.0f);
        size_t wqb, wkb;
        void *wq = tv_weights(&r, cases[ci].wt, 1, D, &wqb), *wk = tv_weights(&r, cases[ci].wt, 1, D, &wkb);
        tv_buf Q = tv_new(&e, q, qn * 4, 0), K = tv_new(&e, k, kn * 4, 0), V = tv_new(&e, v, kn * 4, 0),
               KC = tv_new_cache(&e, cache, cn, D), VC = tv_new_cache(&e, cache, cn, D),
               P = tv_new(&e, pos, (size_t)3 * n * 4, 0), WQ = tv_new(&e, wq, wqb, 0), WK = tv_new(&e, wk, wkb, 0);
        ob_mat qv = ob_mat_make(tv_pv(WQ, 0), cases[ci].wt, 1, D), qc = ob_mat_make(tv_pc(WQ, 0), cases[ci].wt, 1, D),
               kv = ob_mat_make(tv_pv(WK, 0), cases[ci].wt, 1, D), kc = ob_mat_make(tv_pc(WK, 0), cases[ci].wt, 1, D);
        e.vk->ops->qk_norm_rope_kv(e.vk, tv_pv(Q, 0), tv_pv(K, 0), kv1 ? tv_pv(K, vo) : tv_pv(V, 0), &qv, &kv, 1e-6f,
                                   tv_pv(P, 0), &rope, tv_pv(KC, 0), tv_pv(VC, 0), n_ctx, cases[ci].pos0, n, &a);
        e.cpu->ops->qk_norm_rope_kv(e.cpu, tv_pc(Q, 0), tv_pc(K, 0), kv1 ? tv_pc(K, vo) : tv_pc(V, 0), &qc, &kc,
                                    1e-6f, tv_pc(P, 0), &rope, tv_pc(KC, 0), tv_pc(VC, 0), n_ctx, cases[ci].pos0, n,
                                    &a);
        double eq = tv_rel_err(&e, Q, 0, qn), ek = tv_rel_err(&e, K, 0, kn), ekc = tv_cache_err(&e, KC, cn, D),
               evc = tv_cache_err(&e, VC, cn, D), u = tv_kv16(&e, D) ? KV16_U : 0;
        if (!(eq >= 0 && eq <= 1e-5 && ek >= 0 && ek <= 1e-5 && ekc >= 0 && ekc <= u + 1e-5 && evc >= 0 && evc <= u))
            th_fail(__FILE__, __LINE__, "qk_norm_rope_kv case %u: q %g k %g k cache %g v cache %g (cache %s)", ci, eq,
                    ek, ekc, evc, u > 0 ? "fp16" : "fp32");
        tv_free(&e, &Q), tv_free(&e, &K), tv_free(&e, &V), tv_free(&e, &KC), tv_free(&e, &VC), tv_free(&e, &P);
        tv_free(&e, &WQ), tv_free(&e, &WK);
        free(q), free(k), free(v), free(cache), free(pos), free(wq), free(wk);
    }
    tv_close(&e);
}

TEST(vk_qk_norm_rope_kv) { qk_rope_kv_cases(); }
/* the fp32 cache (OMNI_VK_KV_F32=1): exact copies again */
TEST(vk_qk_norm_rope_kv_kv32) {
    setenv("OMNI_VK_KV_F32", "1", 1);
    qk_rope_kv_cases();
}

/* norm_matvec (RMSNorm fused into the matrix-vector kernel, or the unfused pair where the kernel does not apply)
 * against the CPU back-end's rms_norm + matmul: y and the normalised row xn. Tolerance 1e-5 (fp32 sums). */
TEST(vk_norm_matvec) {
    setenv("OMNI_VK_Q8_INT8", "0", 1); /* q8 weights with fp32 activations; int8: vk_q8_int8_activations */
    TV_OPEN(e);
    omni_rng r = { 29 };
    struct {
        int rows, cols;
        ob_dtype wt, nt;
    } cases[] = {
        { 37, 64, OB_BF16, OB_BF16 },   /* vector path */
        { 130, 2048, OB_BF16, OB_BF16 }, /* the thinker's hidden size (a router) */
        { 1100, 64, OB_BF16, OB_F32 },  /* many rows: the unfused pair */
        { 33, 96, OB_Q8_0, OB_F32 },    /* q8 weights */
        { 7, 100, OB_F16, OB_F16 },     /* rows of 200 bytes: the element-wise path */
        { 9, 4128, OB_F32, OB_BF16 },   /* wider than the shared-memory copy: the unfused pair */
        { 3, 30, OB_F32, OB_F32 },      /* cols not a multiple of 4: the unfused pair */
    };
    for (unsigned ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        int rows = cases[ci].rows, cols = cases[ci].cols;
        float *x = malloc((size_t)cols * 4);
        tv_rand(&r, x, (size_t)cols, 3.0f);
        size_t wb, nb;
        void *w = tv_weights(&r, cases[ci].wt, rows, cols, &wb), *nw = tv_weights(&r, cases[ci].nt, 1, cols, &nb);
        tv_buf X = tv_new(&e, x, (size_t)cols * 4, 0), W = tv_new(&e, w, wb, 0), N = tv_new(&e, nw, nb, 0),
               Y = tv_new(&e, NULL, (size_t)rows * 4, 0), XN = tv_new(&e, NULL, (size_t)cols * 4, 0);
        ob_dtype wt = cases[ci].wt, nt = cases[ci].nt;
        ob_mat wv = ob_mat_make(tv_pv(W, 0), wt, rows, cols), wc = ob_mat_make(tv_pc(W, 0), wt, rows, cols);
        ob_mat nv = ob_mat_make(tv_pv(N, 0), nt, 1, cols), nc = ob_mat_make(tv_pc(N, 0), nt, 1, cols);
        e.vk->ops->norm_matvec(e.vk, tv_pv(X, 0), &nv, 1e-6f, &wv, tv_pv(Y, 0), tv_pv(XN, 0));
        e.cpu->ops->norm_matvec(e.cpu, tv_pc(X, 0), &nc, 1e-6f, &wc, tv_pc(Y, 0), tv_pc(XN, 0));
        double ey = tv_rel_err(&e, Y, 0, (size_t)rows), en = tv_rel_err(&e, XN, 0, (size_t)cols);
        if (!(ey >= 0 && ey <= 1e-5 && en >= 0 && en <= 1e-5))
            th_fail(__FILE__, __LINE__, "norm_matvec case %u: y %g xn %g", ci, ey, en);
        tv_free(&e, &X), tv_free(&e, &W), tv_free(&e, &N), tv_free(&e, &Y), tv_free(&e, &XN);
        free(x), free(w), free(nw);
    }
    tv_close(&e);
}

/* norm_route (post-attention norm + router + top-k in one dispatch, the last workgroup selecting; or the unfused
 * sequence where the kernel does not apply) against the CPU's unfused sequence: expert ids exactly, logits, xn and
 * weights within 1e-5 relative. Every case runs twice with different rows, so the kernel's counter is shown to be
 * left at zero for the next call. Logits are spread (x scaled up) so the top-k has no near-ties to flip. */
TEST(vk_norm_route) {
    TV_OPEN(e);
    omni_rng r = { 31 };
    struct {
        int rows, cols, k, renorm;
        ob_dtype wt, nt;
    } cases[] = {
        { 128, 2048, 8, 1, OB_BF16, OB_BF16 }, /* the Qwen3-Omni thinker's router */
        { 8, 64, 2, 1, OB_BF16, OB_F32 },      /* fewer experts than one workgroup's rows */
        { 60, 96, 4, 0, OB_Q8_0, OB_F32 },     /* q8 weights, no renormalisation */
        { 256, 128, 32, 1, OB_F16, OB_F16 },   /* the most experts and the largest k of the kernel */
        { 1000, 128, 4, 1, OB_BF16, OB_F16 },  /* more experts than the kernel takes: the unfused sequence */
        { 37, 100, 3, 1, OB_F32, OB_BF16 },    /* rows of 400 bytes: f32 vectors */
        { 128, 512, 8, 1, OB_F32, OB_BF16 },   /* 32 f32 vectors per row */
        { 12, 30, 2, 1, OB_F32, OB_F32 },      /* cols not a multiple of 4: the unfused sequence */
        { 16, 4160, 4, 1, OB_BF16, OB_BF16 },  /* a row wider than the shared copy: the unfused sequence */
    };
    for (unsigned ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        int rows = cases[ci].rows, cols = cases[ci].cols, k = cases[ci].k;
        size_t wb, nb;
        ob_dtype wt = cases[ci].wt, nt = cases[ci].nt;
        void *w = tv_weights(&r, wt, rows, cols, &wb), *nw = tv_weights(&r, nt, 1, cols, &nb);
        tv_buf W = tv_new(&e, w, wb, 0), N = tv_new(&e, nw, nb, 0);
        ob_mat wv = ob_mat_make(tv_pv(W, 0), wt, rows, cols), wc = ob_mat_make(tv_pc(W, 0), wt, rows, cols);
        ob_mat nv = ob_mat_make(tv_pv(N, 0), nt, 1, cols), nc = ob_mat_make(tv_pc(N, 0), nt, 1, cols);
        for (int rep = 0; rep < 2; rep++) {
            float *x = malloc((size_t)cols * 4);
            tv_rand(&r, x, (size_t)cols, 40.0f);
            tv_buf X = tv_new(&e, x, (size_t)cols * 4, 0), L = tv_new(&e, NULL, (size_t)rows * 4, 0),
                   XN = tv_new(&e, NULL, (size_t)cols * 4, 0), I = tv_new(&e, NULL, (size_t)k * 4, 0),
                   Wt = tv_new(&e, NULL, (size_t)k * 4, 0);
            e.vk->ops->norm_route(e.vk, tv_pv(X, 0), &nv, 1e-6f, &wv, tv_pv(L, 0), tv_pv(XN, 0), k, cases[ci].renorm,
                                  tv_pv(I, 0), tv_pv(Wt, 0));
            e.cpu->ops->norm_route(e.cpu, tv_pc(X, 0), &nc, 1e-6f, &wc, tv_pc(L, 0), tv_pc(XN, 0), k,
                                   cases[ci].renorm, tv_pc(I, 0), tv_pc(Wt, 0));
            int32_t iv[32], ic[32];
            int dl = e.vk->ops->download(e.vk, I.v, 0, iv, (size_t)k * 4) | e.cpu->ops->download(e.cpu, I.c, 0, ic,
                                                                                                  (size_t)k * 4);
            double el = tv_rel_err(&e, L, 0, (size_t)rows), en = tv_rel_err(&e, XN, 0, (size_t)cols),
                   ew = tv_rel_err(&e, Wt, 0, (size_t)k);
            if (dl || memcmp(iv, ic, (size_t)k * 4) || !(el >= 0 && el <= 1e-5 && en >= 0 && en <= 1e-5 && ew >= 0 &&
                                                         ew <= 1e-5))
                th_fail(__FILE__, __LINE__, "norm_route case %u rep %d: ids %s, logits %g xn %g weights %g", ci, rep,
                        memcmp(iv, ic, (size_t)k * 4) ? "differ" : "equal", el, en, ew);
            tv_free(&e, &X), tv_free(&e, &L), tv_free(&e, &XN), tv_free(&e, &I), tv_free(&e, &Wt);
            free(x);
        }
        tv_free(&e, &W), tv_free(&e, &N);
        free(w), free(nw);
    }
    tv_close(&e);
}

/* matmul_norm_route (o_proj + residual chained in front of the router in one dispatch, router_chain; or matmul then
 * norm_route) against the CPU's unfused pair: the residual x, logits, xn and weights within 1e-5 relative, expert ids
 * exactly; each case twice (the chain and router counters must be back at zero), with OMNI_VK_CHAIN on and off.
 * Which cases chain depends on the subgroup size: with lavapipe's 8 lanes the thinker's rows are too wide for the
 * router kernel (the pair runs), with 32 (NVIDIA) all but the last chain. */
TEST(vk_matmul_norm_route) {
    struct {
        int rows, cols, o_cols, k;
        ob_dtype wt, ot;
    } cases[] = {
        { 128, 2048, 4096, 8, OB_BF16, OB_BF16 }, /* the Qwen3-Omni thinker: router [128 x 2048], o_proj [2048 x 4096] */
        { 60, 96, 64, 4, OB_Q8_0, OB_Q8_0 },      /* q8 weights */
        { 8, 64, 100, 2, OB_BF16, OB_F32 },       /* f32 o_proj, fewer experts than one workgroup's rows */
        { 16, 128, 1048, 2, OB_F16, OB_F16 },     /* odd vectors per lane (131 over 8 lanes) */
        { 16, 128, 8192, 2, OB_BF16, OB_BF16 },   /* an o_proj row too wide for the chained kernel: the pair */
    };
    setenv("OMNI_VK_Q8_INT8", "0", 1); /* fp32 activations for the q8_0 case (exact tolerance) */
    for (int chain = 1; chain >= 0; chain--) {
        setenv("OMNI_VK_CHAIN", chain ? "1" : "0", 1);
        TV_OPEN(e);
        omni_rng r = { 57 };
        for (unsigned ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
            int rows = cases[ci].rows, cols = cases[ci].cols, oc = cases[ci].o_cols, k = cases[ci].k;
            size_t wb, nb, ob;
            void *w = tv_weights(&r, cases[ci].wt, rows, cols, &wb), *nw = tv_weights(&r, OB_BF16, 1, cols, &nb);
            void *wo = tv_weights(&r, cases[ci].ot, cols, oc, &ob);
            tv_buf W = tv_new(&e, w, wb, 0), N = tv_new(&e, nw, nb, 0), O = tv_new(&e, wo, ob, 0);
            ob_mat wv = ob_mat_make(tv_pv(W, 0), cases[ci].wt, rows, cols),
                   wc = ob_mat_make(tv_pc(W, 0), cases[ci].wt, rows, cols);
            ob_mat nv = ob_mat_make(tv_pv(N, 0), OB_BF16, 1, cols), nc = ob_mat_make(tv_pc(N, 0), OB_BF16, 1, cols);
            ob_mat ov = ob_mat_make(tv_pv(O, 0), cases[ci].ot, cols, oc),
                   ocm = ob_mat_make(tv_pc(O, 0), cases[ci].ot, cols, oc);
            for (int rep = 0; rep < 2; rep++) {
                float *x = malloc((size_t)cols * 4), *a = malloc((size_t)oc * 4);
                tv_rand(&r, x, (size_t)cols, 40.0f);
                tv_rand(&r, a, (size_t)oc, 1.0f);
                tv_buf X = tv_new(&e, x, (size_t)cols * 4, 0), A = tv_new(&e, a, (size_t)oc * 4, 0),
                       L = tv_new(&e, NULL, (size_t)rows * 4, 0), XN = tv_new(&e, NULL, (size_t)cols * 4, 0),
                       I = tv_new(&e, NULL, (size_t)k * 4, 0), Wt = tv_new(&e, NULL, (size_t)k * 4, 0);
                e.vk->ops->matmul_norm_route(e.vk, &ov, tv_pv(A, 0), tv_pv(X, 0), &nv, 1e-6f, &wv, tv_pv(L, 0),
                                             tv_pv(XN, 0), k, 1, tv_pv(I, 0), tv_pv(Wt, 0));
                e.cpu->ops->matmul_norm_route(e.cpu, &ocm, tv_pc(A, 0), tv_pc(X, 0), &nc, 1e-6f, &wc, tv_pc(L, 0),
                                              tv_pc(XN, 0), k, 1, tv_pc(I, 0), tv_pc(Wt, 0));
                int32_t iv[32], ic[32];
                int dl = e.vk->ops->download(e.vk, I.v, 0, iv, (size_t)k * 4) |
                         e.cpu->ops->download(e.cpu, I.c, 0, ic, (size_t)k * 4);
                double ex = tv_rel_err(&e, X, 0, (size_t)cols), el = tv_rel_err(&e, L, 0, (size_t)rows),
                       en = tv_rel_err(&e, XN, 0, (size_t)cols), ew = tv_rel_err(&e, Wt, 0, (size_t)k);
                if (dl || memcmp(iv, ic, (size_t)k * 4) || !(ex >= 0 && ex <= 1e-5 && el >= 0 && el <= 1e-5 &&
                                                             en >= 0 && en <= 1e-5 && ew >= 0 && ew <= 1e-5))
                    th_fail(__FILE__, __LINE__, "matmul_norm_route chain %d case %u rep %d: ids %s, x %g logits %g "
                            "xn %g weights %g", chain, ci, rep, memcmp(iv, ic, (size_t)k * 4) ? "differ" : "equal", ex,
                            el, en, ew);
                tv_free(&e, &X), tv_free(&e, &A), tv_free(&e, &L), tv_free(&e, &XN), tv_free(&e, &I),
                    tv_free(&e, &Wt);
                free(x), free(a);
            }
            tv_free(&e, &W), tv_free(&e, &N), tv_free(&e, &O);
            free(w), free(nw), free(wo);
        }
        tv_close(&e);
    }
    unsetenv("OMNI_VK_CHAIN");
}

/* qk_norm_rope_kv_attention (attn_decode.comp: one dispatch; or its fallback, qk_norm_rope_kv + attention) against
 * the CPU back-end's (its definition: rms_norm ×2, rope ×2, kv_store, attention): the attention output and both
 * caches, over head_dim 64/80/128/256, GQA ratios 1, 2, 8, 16, depths 0, 1, 37, 300 and past many chunks, sliding
 * windows, and `steps` consecutive tokens (the per-kv-head merge counters must be back at zero for each). Cache rows
 * not yet written hold random values. Tolerance 1e-5 relative (fp32 dot products and sums in another order, own
 * exp/sin/cos); the v cache is a copy and must match exactly.
 * With an fp16 cache (the Vulkan default for these head dims) both sides start from the same fp16 values, and the
 * Vulkan side rounds each new k and v row (k after norm and RoPE) to fp16, relative error u = 2^-11 per element;
 * the caches are checked as in vk_qk_norm_rope_kv. The output then differs from the CPU's fp32 result by at most
 * (kv16_bound):
 *   scores s_j = scale·q·k_j move by |δ_j| <= u·scale·Σ_d |q_d k_jd| <= u·S (S the largest such sum over the
 *   visible keys and the q heads of this query), so p = softmax(s) becomes p' with e^(-2uS) <= p'_j / p_j <=
 *   e^(2uS), i.e. |p'_j - p_j| <= p_j·(e^(2uS) - 1); with |v'_j - v_j| <= u·|v_j| <= u·V (V = max |v| visible),
 *   |o' - o| <= Σ_j |p'_j - p_j|·|v_j| + Σ_j p'_j·|v'_j - v_j| <= V·(e^(2uS) - 1 + u),
 * taken relative to max |o| (the error measure) plus the fp32 allowance 1e-5. q, k and v here are those of the CPU
 * (after its norm and rotation). */
typedef struct {
    int hq, hkv, hd, rot, n_ctx, pos0, steps, window, n;
    ob_dtype wt;
} decode_case;

/* the fp16-cache bound above for n queries at pos0.. (q [n][hq][hd], caches [hkv][n_ctx][hd] fp32, out the
 * reference output [n][hq][hd]), relative to max |out| */
static double kv16_bound(const float *q, const float *kc, const float *vc, const float *out, int n, int hq, int hkv,
                         int hd, int n_ctx, int pos0, int window, float scale) {
    double S = 0, V = 0, O = 0;
    for (int i = 0; i < n; i++) {
        int p = pos0 + i, lo = window > 0 && p - window + 1 > 0 ? p - window + 1 : 0;
        for (int h = 0; h < hq; h++) {
            int g = h / (hq / hkv);
            const float *qh = q + ((size_t)i * hq + h) * hd;
            for (int j = lo; j <= p; j++) {
                const float *kj = kc + ((size_t)g * n_ctx + j) * hd, *vj = vc + ((size_t)g * n_ctx + j) * hd;
                double sj = 0;
                for (int d = 0; d < hd; d++) {
                    sj += fabs((double)qh[d] * kj[d]);
                    V = fmax(V, fabs((double)vj[d]));
                }
                S = fmax(S, sj * scale);
            }
            for (int d = 0; d < hd; d++) O = fmax(O, fabs((double)out[((size_t)i * hq + h) * hd + d]));
        }
    }
    return V * (expm1(2 * KV16_U * S) + KV16_U) / (O > 0 ? O : 1) + 1e-5;
}
static void decode_attn_sweep(const char *chunk, unsigned case_mask) {
    if (chunk) setenv("OMNI_VK_ATTN_CHUNK", chunk, 1);
    else unsetenv("OMNI_VK_ATTN_CHUNK");
    TV_OPEN(e);
    omni_rng r = { 31 };
    const decode_case cases[] = {
        { 16, 2, 128, 128, 64, 0, 2, 0, 1, OB_BF16 },     /* depth 0 and 1, GQA 8 (the thinker's ratio) */
        { 4, 2, 64, 64, 80, 37, 2, 0, 1, OB_F32 },        /* GQA 2 */
        { 3, 3, 128, 128, 320, 300, 3, 0, 1, OB_F16 },    /* GQA 1, several chunks */
        { 8, 1, 64, 64, 1100, 1030, 2, 0, 1, OB_BF16 },   /* MQA, many chunks */
        { 16, 2, 128, 128, 700, 650, 2, 100, 1, OB_BF16 }, /* sliding window over chunk boundaries */
        { 4, 4, 80, 40, 90, 40, 1, 3, 1, OB_F32 },        /* odd head_dim, partial rotation, tiny window */
        { 4, 2, 256, 256, 200, 150, 1, 0, 1, OB_BF16 },   /* head_dim 256 */
        { 4, 2, 64, 64, 60, 20, 1, 0, 1, OB_Q8_0 },       /* q8 norms: the unfused fallback */
        { 4, 2, 64, 64, 60, 20, 1, 0, 3, OB_F32 },        /* three tokens: the unfused fallback */
        { 16, 1, 256, 256, 200, 150, 2, 0, 1, OB_BF16 }, /* GQA 16 x 256 dims: several output vec4s per thread */
    };
    for (unsigned ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        if (!(case_mask >> ci & 1)) continue;
        decode_case dc = cases[ci];
        int Hq = dc.hq, Hkv = dc.hkv, D = dc.hd, n = dc.n, n_ctx = dc.n_ctx;
        ob_rope rope = { 1e6f, D, dc.rot, { 0, 0, 0 }, 0, 0 };
        if (D == 128) rope.section[0] = 24, rope.section[1] = 20, rope.section[2] = 20, rope.interleaved = 1;
        ob_attn a = { Hq, Hkv, D, 1.0f / sqrtf((float)D), 1, dc.window, 0 };
        size_t qn = (size_t)n * Hq * D, kn = (size_t)n * Hkv * D, cn = (size_t)Hkv * n_ctx * D;
        float *q = malloc(qn * 4), *k = malloc(kn * 4), *v = malloc(kn * 4), *cache = malloc(cn * 4),
              *pos = malloc((size_t)3 * n * 4);
        tv_rand(&r, cache, cn, 1.0f);
        size_t wqb, wkb;
        void *wq = tv_weights(&r, dc.wt, 1, D, &wqb), *wk = tv_weights(&r, dc.wt, 1, D, &wkb);
        int kv16 = tv_kv16(&e, D);
        float *hq = kv16 ? malloc(qn * 4) : NULL, *hk = kv16 ? malloc(cn * 4) : NULL,
              *hv = kv16 ? malloc(cn * 4) : NULL, *ho = kv16 ? malloc(qn * 4) : NULL;
        tv_buf KC = tv_new_cache(&e, cache, cn, D), VC = tv_new_cache(&e, cache, cn, D), WQ = tv_new(&e, wq, wqb, 0),
               WK = tv_new(&e, wk, wkb, 0), O = tv_new(&e, NULL, qn * 4, 0);
        ob_mat qv = ob_mat_make(tv_pv(WQ, 0), dc.wt, 1, D), qc = ob_mat_make(tv_pc(WQ, 0), dc.wt, 1, D),
               kv = ob_mat_make(tv_pv(WK, 0), dc.wt, 1, D), kc = ob_mat_make(tv_pc(WK, 0), dc.wt, 1, D);
        for (int st = 0; st < dc.steps; st++) {
            int pos0 = dc.pos0 + st * n;
            tv_rand(&r, q, qn, 3.0f);
            tv_rand(&r, k, kn, 3.0f);
            tv_rand(&r, v, kn, 1.0f);
            for (int i = 0; i < 3 * n; i++) pos[i] = (float)(pos0 + i % n) + (float)(i / n) * 0.25f * (float)(i % 2);
            tv_buf Q = tv_new(&e, q, qn * 4, 0), K = tv_new(&e, k, kn * 4, 0), V = tv_new(&e, v, kn * 4, 0),
                   P = tv_new(&e, pos, (size_t)3 * n * 4, 0);
            e.vk->ops->qk_norm_rope_kv_attention(e.vk, tv_pv(Q, 0), tv_pv(K, 0), tv_pv(V, 0), &qv, &kv, 1e-6f,
                                                 tv_pv(P, 0), &rope, tv_pv(KC, 0), tv_pv(VC, 0), n_ctx, pos0, n, &a,
                                                 tv_pv(O, 0));
            e.cpu->ops->qk_norm_rope_kv_attention(e.cpu, tv_pc(Q, 0), tv_pc(K, 0), tv_pc(V, 0), &qc, &kc, 1e-6f,
                                                  tv_pc(P, 0), &rope, tv_pc(KC, 0), tv_pc(VC, 0), n_ctx, pos0, n, &a,
                                                  tv_pc(O, 0));
            double eo = tv_rel_err(&e, O, 0, qn), ekc = tv_cache_err(&e, KC, cn, D), evc = tv_cache_err(&e, VC, cn, D);
            double tol = 1e-5, u = 0;
            if (kv16) { /* the CPU's rotated q (its op leaves it in place), caches and output */
                u = KV16_U, tol = -1;
                if (hq && hk && hv && ho && e.cpu->ops->download(e.cpu, Q.c, 0, hq, qn * 4) == 0 &&
                    tv_cache_get(&e, KC, cn, D, 0, hk) == 0 && tv_cache_get(&e, VC, cn, D, 0, hv) == 0 &&
                    e.cpu->ops->download(e.cpu, O.c, 0, ho, qn * 4) == 0)
                    tol = kv16_bound(hq, hk, hv, ho, n, Hq, Hkv, D, n_ctx, pos0, dc.window, a.scale);
                printf("    case %u step %d (fp16 cache): out %.3g (bound %.3g), k cache %.3g, v cache %.3g\n", ci, st,
                       eo, tol, ekc, evc);
            }
            if (!(eo >= 0 && eo <= tol && ekc >= 0 && ekc <= u + 1e-5 && evc >= 0 && evc <= u))
                th_fail(__FILE__, __LINE__, "qk_norm_rope_kv_attention (chunk %s) case %u step %d: out %g (tol %g) k "
                        "cache %g v cache %g", chunk ? chunk : "auto", ci, st, eo, tol, ekc, evc);
            tv_free(&e, &Q), tv_free(&e, &K), tv_free(&e, &V), tv_free(&e, &P);
        }
        tv_free(&e, &KC), tv_free(&e, &VC), tv_free(&e, &WQ), tv_free(&e, &WK), tv_free(&e, &O);
        free(q), free(k), free(v), free(cache), free(pos), free(wq), free(wk);
        free(hq), free(hk), free(hv), free(ho);
    }
    tv_close(&e);
}

TEST(vk_qk_norm_rope_kv_attention) { decode_attn_sweep(NULL, ~0u); }
/* the other chunk sizes (each a pipeline that lavapipe compiles slowly: a few cases only) */
TEST(vk_qk_norm_rope_kv_attention_chunk32) { decode_attn_sweep("32", 1u << 2 | 1u << 4); }
TEST(vk_qk_norm_rope_kv_attention_chunk128) { decode_attn_sweep("128", 1u << 3); }
/* both value passes of attn_decode.comp on every case (the default picks PV 1, shared V rows and two head sets per
 * kv head, for up to 16 chunks and PV 0, key groups, past that), also with the fp32 cache: the same tolerances */
TEST(vk_qk_norm_rope_kv_attention_pv0) {
    setenv("OMNI_VK_ATTN_PV", "0", 1);
    decode_attn_sweep(NULL, ~0u);
}
TEST(vk_qk_norm_rope_kv_attention_pv1) {
    setenv("OMNI_VK_ATTN_PV", "1", 1);
    decode_attn_sweep(NULL, ~0u);
}
TEST(vk_qk_norm_rope_kv_attention_pv1_kv32) {
    setenv("OMNI_VK_ATTN_PV", "1", 1);
    setenv("OMNI_VK_KV_F32", "1", 1);
    decode_attn_sweep(NULL, ~0u);
}
/* the two-level merge (by default from 40 chunks, groups of 8) forced with groups of 3 chunks on the cases with
 * several chunks (10, 17 and 4), so that groups are uneven and a group may hold one chunk; both value passes and the
 * fp32 cache: the same tolerances */
TEST(vk_qk_norm_rope_kv_attention_tree3) {
    setenv("OMNI_VK_ATTN_TREE", "3", 1);
    decode_attn_sweep(NULL, 1u << 2 | 1u << 3 | 1u << 4);
    setenv("OMNI_VK_ATTN_PV", "1", 1);
    decode_attn_sweep(NULL, 1u << 3);
    unsetenv("OMNI_VK_ATTN_PV");
    setenv("OMNI_VK_KV_F32", "1", 1);
    decode_attn_sweep(NULL, 1u << 2 | 1u << 3);
}
/* the fp32 cache (OMNI_VK_KV_F32=1): the 1e-5 tolerance and exact v copies again */
TEST(vk_qk_norm_rope_kv_attention_kv32) {
    setenv("OMNI_VK_KV_F32", "1", 1);
    decode_attn_sweep(NULL, ~0u);
}

/* OMNI_VK_ATTN_PROF=1 (the bench's phase clocks, attn_decode_prof): the same outputs as the CPU on the cases with
 * several chunks (one and two merge levels), and the records ob_vulkan_attn_prof returns: one per workgroup of each
 * dispatch since the last read, every chunk of the grid once, one final merger per head set and, with groups of 4
 * over 17 chunks, a group merger for each of the 5 groups (the final merger among them). Clock values are not
 * checked (lavapipe's are the CPU's). */
TEST(vk_attn_decode_prof) {
    setenv("OMNI_VK_ATTN_PROF", "1", 1);
    decode_attn_sweep(NULL, 1u << 2 | 1u << 3);
    setenv("OMNI_VK_ATTN_TREE", "4", 1);
    decode_attn_sweep(NULL, 1u << 3);
    TV_OPEN(e);
    unsetenv("OMNI_VK_ATTN_PROF");
    enum { HQ = 8, HKV = 1, D = 64, CTX = 1100, POS = 1030, NCH = POS / 64 + 1 };
    omni_rng r = { 77 };
    float q[HQ * D], k[D], v[D], pos[3] = { POS, POS, POS }, *cache = malloc(sizeof(float) * CTX * D);
    tv_rand(&r, q, HQ * D, 3.0f), tv_rand(&r, k, D, 3.0f), tv_rand(&r, v, D, 1.0f), tv_rand(&r, cache, CTX * D, 1.0f);
    size_t wb;
    void *w = tv_weights(&r, OB_BF16, 1, D, &wb);
    tv_buf Q = tv_new(&e, q, sizeof q, 0), K = tv_new(&e, k, sizeof k, 0), V = tv_new(&e, v, sizeof v, 0),
           P = tv_new(&e, pos, sizeof pos, 0), W = tv_new(&e, w, wb, 0), KC = tv_new_cache(&e, cache, CTX * D, D),
           VC = tv_new_cache(&e, cache, CTX * D, D), O = tv_new(&e, NULL, sizeof q, 0);
    ob_mat wm = ob_mat_make(tv_pv(W, 0), OB_BF16, 1, D);
    ob_rope rope = { 1e6f, D, D, { 0, 0, 0 }, 0, 0 };
    ob_attn a = { HQ, HKV, D, 0.125f, 1, 0, 0 };
    for (int i = 0; i < 2; i++)
        e.vk->ops->qk_norm_rope_kv_attention(e.vk, tv_pv(Q, 0), tv_pv(K, 0), tv_pv(V, 0), &wm, &wm, 1e-6f,
                                             tv_pv(P, 0), &rope, tv_pv(KC, 0), tv_pv(VC, 0), CTX, POS, 1, &a,
                                             tv_pv(O, 0));
    uint32_t rec[2 * (2 + NCH * ATTND_PROF_WORDS)];
    int nd = -1, len = ob_vulkan_attn_prof(e.vk, rec, sizeof rec / sizeof *rec, &nd);
    if (len == OMNI_E_UNSUPPORTED) {
        printf("    no VK_KHR_shader_clock: records not checked\n");
    } else {
        CHECK_EQ_INT(nd, 2);
        CHECK_EQ_INT(len, 2 * (2 + NCH * ATTND_PROF_WORDS));
        for (int d = 0; d < nd && len > 0; d++) {
            const uint32_t *h = rec + d * (2 + NCH * ATTND_PROF_WORDS), *x = h + 2;
            CHECK_EQ_INT((int)h[0], NCH);
            int seen[NCH] = { 0 }, groups = 0, finals = 0;
            for (int i = 0; i < NCH; i++, x += ATTND_PROF_WORDS) {
                uint32_t id = x[29], cx = id & 0xffff;
                CHECK(cx < NCH && id >> 16 == 0);
                if (cx < NCH) seen[cx]++;
                groups += (x[28] & 1) != 0, finals += (x[28] & 2) != 0;
            }
            for (int i = 0; i < NCH; i++) CHECK_EQ_INT(seen[i], 1);
            CHECK_EQ_INT(groups, (NCH + 3) / 4);
            CHECK_EQ_INT(finals, 1);
        }
        CHECK_EQ_INT(ob_vulkan_attn_prof(e.vk, rec, sizeof rec / sizeof *rec, &nd), 0); /* read: starts over */
        CHECK_EQ_INT(nd, 0);
    }
    unsetenv("OMNI_VK_ATTN_TREE");
    tv_free(&e, &Q), tv_free(&e, &K), tv_free(&e, &V), tv_free(&e, &P), tv_free(&e, &W), tv_free(&e, &KC);
    tv_free(&e, &VC), tv_free(&e, &O);
    free(cache), free(w);
    tv_close(&e);
}

/* ---- attention --------------------------------------------------------------------------------------------------- */

typedef struct {
    int heads, kv, hd, n_ctx, pos0, n, causal, window;
} attn_case;

/* the caches' sizes: fp16 on Vulkan for head dims that are multiples of 8, fp32 otherwise, on the CPU and with
 * OMNI_VK_KV_F32=1 */
TEST(vk_kv_cache_bytes) {
    TV_OPEN(e);
    CHECK_EQ_INT(ob_kv_cache_bytes(e.vk, 4, 10, 128), 4 * 10 * 128 * 2);
    CHECK_EQ_INT(ob_kv_cache_bytes(e.vk, 2, 7, 72), 2 * 7 * 72 * 2);
    CHECK_EQ_INT(ob_kv_cache_bytes(e.vk, 3, 5, 36), 3 * 5 * 36 * 4);
    CHECK_EQ_INT(ob_kv_cache_bytes(e.cpu, 4, 10, 128), 4 * 10 * 128 * 4);
    CHECK_EQ_INT(ob_kv_cache_bytes(NULL, 4, 10, 128), 4 * 10 * 128 * 4);
    tv_close(&e);
    setenv("OMNI_VK_KV_F32", "1", 1);
    TV_OPEN(e2);
    CHECK_EQ_INT(ob_kv_cache_bytes(e2.vk, 4, 10, 128), 4 * 10 * 128 * 4);
    tv_close(&e2);
}

/* kv_store + attention against the CPU back-end. With an fp16 cache the new k and v rows are rounded to fp16 on the
 * host first (and the earlier rows start from the same fp16 values, tv_new_cache), so both back-ends hold the same
 * cache: the caches must match exactly and the output to 1e-5 (fp32 sums in another order) with either format;
 * rounding error itself is bounded in the decode test above. */
static void attention_sweep(tv_env *e) {
    const attn_case cases[] = {
        { 4, 2, 64, 160, 100, 1, 1, 0 },  /* decode, GQA */
        { 4, 2, 64, 160, 0, 37, 1, 0 },   /* prefill */
        { 8, 1, 32, 300, 50, 20, 1, 0 },  /* chunked prefill after a cached prefix, MQA */
        { 2, 2, 128, 64, 0, 64, 1, 0 },   /* full context, head_dim 128 */
        { 3, 3, 40, 90, 10, 23, 1, 16 },  /* sliding window, odd head_dim */
        { 2, 1, 64, 48, 0, 48, 0, 0 },    /* bidirectional (encoder) */
        { 4, 4, 256, 140, 130, 3, 1, 0 }, /* head_dim 256, decode of 3 */
        { 2, 2, 16, 300, 258, 2, 1, 5 },  /* window smaller than the split chunk */
    };
    omni_rng r = { 17 };
    for (unsigned ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        attn_case c = cases[ci];
        ob_attn a = { c.heads, c.kv, c.hd, 1.0f / sqrtf((float)c.hd), c.causal, c.window, 0 };
        size_t cache_n = (size_t)c.kv * c.n_ctx * c.hd, kv_n = (size_t)c.n * c.kv * c.hd,
               q_n = (size_t)c.n * c.heads * c.hd;
        float *cache = malloc(cache_n * 4), *k = malloc(kv_n * 4), *v = malloc(kv_n * 4), *q = malloc(q_n * 4);
        tv_rand(&r, cache, cache_n, 1.0f); /* earlier positions: random; the rest is overwritten by kv_store */
        tv_rand(&r, k, kv_n, 1.0f);
        tv_rand(&r, v, kv_n, 1.0f);
        tv_rand(&r, q, q_n, 2.0f);
        if (tv_kv16(e, c.hd)) tv_round_f16(k, kv_n), tv_round_f16(v, kv_n);
        tv_buf KC = tv_new_cache(e, cache, cache_n, c.hd), VC = tv_new_cache(e, cache, cache_n, c.hd),
               K = tv_new(e, k, kv_n * 4, 0), V = tv_new(e, v, kv_n * 4, 0), Q = tv_new(e, q, q_n * 4, 0),
               O = tv_new(e, NULL, q_n * 4, 0);
        e->vk->ops->kv_store(e->vk, tv_pv(KC, 0), tv_pv(VC, 0), c.n_ctx, tv_pv(K, 0), tv_pv(V, 0), c.pos0, c.n, &a);
        e->cpu->ops->kv_store(e->cpu, tv_pc(KC, 0), tv_pc(VC, 0), c.n_ctx, tv_pc(K, 0), tv_pc(V, 0), c.pos0, c.n, &a);
        e->vk->ops->attention(e->vk, tv_pv(Q, 0), tv_pv(KC, 0), tv_pv(VC, 0), c.n_ctx, tv_pv(O, 0), c.pos0, c.n, &a);
        e->cpu->ops->attention(e->cpu, tv_pc(Q, 0), tv_pc(KC, 0), tv_pc(VC, 0), c.n_ctx, tv_pc(O, 0), c.pos0, c.n, &a);
        CHECK_NEAR(tv_cache_err(e, KC, cache_n, c.hd), 0, 0);
        CHECK_NEAR(tv_cache_err(e, VC, cache_n, c.hd), 0, 0);
        double err = tv_rel_err(e, O, 0, q_n);
        if (!(err >= 0 && err <= 1e-5)) th_fail(__FILE__, __LINE__, "attention case %u: rel err %g", ci, err);
        tv_free(e, &KC), tv_free(e, &VC), tv_free(e, &K), tv_free(e, &V), tv_free(e, &Q), tv_free(e, &O);
        free(cache), free(k), free(v), free(q);
    }
}

TEST(vk_attention_default) {
    setenv("OMNI_VK_NO_COOPMAT", "1", 1); /* fp32 kernels; the tensor-core path: test_vulkan_coopmat.c */
    TV_OPEN(e);
    attention_sweep(&e);
    tv_close(&e);
}

TEST(vk_attention_split) {
    setenv("OMNI_VK_ATTN", "split", 1);
    TV_OPEN(e);
    attention_sweep(&e);
    tv_close(&e);
}

TEST(vk_attention_flash) {
    setenv("OMNI_VK_ATTN", "flash", 1);
    setenv("OMNI_VK_NO_COOPMAT", "1", 1); /* fp32 kernels; the tensor-core path: test_vulkan_coopmat.c */
    TV_OPEN(e);
    attention_sweep(&e);
    tv_close(&e);
}

/* both kernels on the fp32 cache (OMNI_VK_KV_F32=1) */
TEST(vk_attention_kv32) {
    setenv("OMNI_VK_KV_F32", "1", 1);
    setenv("OMNI_VK_NO_COOPMAT", "1", 1);
    static const char *const kinds[] = { "split", "flash" };
    for (int i = 0; i < 2; i++) {
        setenv("OMNI_VK_ATTN", kinds[i], 1);
        TV_OPEN(e);
        CHECK(!tv_kv16(&e, 64));
        attention_sweep(&e);
        tv_close(&e);
    }
}

/* ---- MoE --------------------------------------------------------------------------------------------------------- */

TEST(vk_moe_route) {
    TV_OPEN(e);
    omni_rng r = { 19 };
    const int cfg[][4] = { { 1, 128, 8, 1 }, { 5, 64, 2, 0 }, { 33, 60, 6, 1 }, { 3, 8, 1, 1 }, { 2, 200, 8, 0 } };
    for (unsigned ci = 0; ci < sizeof cfg / sizeof *cfg; ci++) {
        int n = cfg[ci][0], ne = cfg[ci][1], k = cfg[ci][2], norm = cfg[ci][3];
        float *lg = malloc(sizeof *lg * (size_t)n * ne);
        tv_rand(&r, lg, (size_t)n * ne, 4.0f);
        for (int i = 0; i < n; i++) /* ties: the lower index must win */
            lg[(size_t)i * ne + ne - 1] = lg[(size_t)i * ne + 1] = lg[(size_t)i * ne + 2] = 5.0f;
        tv_buf L = tv_new(&e, lg, sizeof *lg * (size_t)n * ne, 0), I = tv_new(&e, NULL, (size_t)n * k * 4, 0),
               W = tv_new(&e, NULL, (size_t)n * k * 4, 0);
        e.vk->ops->moe_route(e.vk, tv_pv(L, 0), n, ne, k, norm, tv_pv(I, 0), tv_pv(W, 0));
        e.cpu->ops->moe_route(e.cpu, tv_pc(L, 0), n, ne, k, norm, tv_pc(I, 0), tv_pc(W, 0));
        CHECK_NEAR(tv_rel_err(&e, I, 0, (size_t)n * k), 0, 0); /* int32 bit patterns compare equal */
        double err = tv_rel_err(&e, W, 0, (size_t)n * k);
        if (!(err >= 0 && err <= 2e-6)) th_fail(__FILE__, __LINE__, "moe_route case %u: weights rel err %g", ci, err);
        tv_free(&e, &L), tv_free(&e, &I), tv_free(&e, &W);
        free(lg);
    }
    tv_close(&e);
}

/* moe_route.comp's two forms: one subgroup per token (the default where it applies) against one workgroup per token
 * (OMNI_VK_ROUTE_SG=0), bit for bit where the workgroup form sums the softmax in the same subgroup-sized blocks (up to
 * 128 experts), and both against the CPU; a prefill-sized case (600 tokens) runs over several grid rows. */
TEST(vk_moe_route_forms) {
    TV_OPEN(e);
    omni_rng r = { 37 };
    const int cfg[][4] = { { 600, 128, 8, 1 }, { 37, 64, 4, 0 }, { 9, 30, 3, 1 }, { 5, 128, 1, 0 } };
    for (unsigned ci = 0; ci < sizeof cfg / sizeof *cfg; ci++) {
        int n = cfg[ci][0], ne = cfg[ci][1], k = cfg[ci][2], norm = cfg[ci][3];
        size_t lb = sizeof(float) * (size_t)n * ne, kb = (size_t)n * k * 4;
        float *lg = malloc(lb);
        tv_rand(&r, lg, (size_t)n * ne, 4.0f);
        for (int i = 0; i < n; i += 3) /* ties on some tokens: the lower index must win */
            lg[(size_t)i * ne + ne - 1] = lg[(size_t)i * ne + 3] = 6.0f;
        tv_buf L = tv_new(&e, lg, lb, 0), I = tv_new(&e, NULL, kb, 0), W = tv_new(&e, NULL, kb, 0);
        uint32_t *got[2][2];
        for (int f = 0; f < 2; f++) {
            setenv("OMNI_VK_ROUTE_SG", f ? "1" : "0", 1);
            e.vk->ops->moe_route(e.vk, tv_pv(L, 0), n, ne, k, norm, tv_pv(I, 0), tv_pv(W, 0));
            got[f][0] = malloc(kb), got[f][1] = malloc(kb);
            CHECK_EQ_INT(e.vk->ops->download(e.vk, I.v, 0, got[f][0], kb), 0);
            CHECK_EQ_INT(e.vk->ops->download(e.vk, W.v, 0, got[f][1], kb), 0);
        }
        e.cpu->ops->moe_route(e.cpu, tv_pc(L, 0), n, ne, k, norm, tv_pc(I, 0), tv_pc(W, 0));
        CHECK_NEAR(tv_rel_err(&e, I, 0, (size_t)n * k), 0, 0);
        double err = tv_rel_err(&e, W, 0, (size_t)n * k);
        if (!(err >= 0 && err <= 2e-6)) th_fail(__FILE__, __LINE__, "moe_route case %u: weights rel err %g", ci, err);
        if (memcmp(got[0][0], got[1][0], kb) || memcmp(got[0][1], got[1][1], kb))
            th_fail(__FILE__, __LINE__, "moe_route case %u: the two forms differ", ci);
        for (int f = 0; f < 2; f++) free(got[f][0]), free(got[f][1]);
        tv_free(&e, &L), tv_free(&e, &I), tv_free(&e, &W);
        free(lg);
    }
    unsetenv("OMNI_VK_ROUTE_SG");
    tv_close(&e);
}

/* returns the relative error; fails the test above tol */
static double moe_case_tol(tv_env *e, omni_rng *r, ob_dtype t, int n, int k, int n_exp, int dim, int inter,
                           double tol) {
    size_t xb = sizeof(float) * (size_t)n * dim;
    float *x = malloc(xb), *y = malloc(xb), *wts = malloc(sizeof *wts * (size_t)n * k);
    int32_t *ids = malloc(sizeof *ids * (size_t)n * k);
    tv_rand(r, x, (size_t)n * dim, 1.0f);
    tv_rand(r, y, (size_t)n * dim, 1.0f);
    tv_rand_routing(r, ids, wts, n, k, n_exp);
    /* all experts in one buffer, gate/up/down interleaved per expert */
    size_t gb, db;
    void *g = tv_weights(r, t, inter, dim, &gb), *u = tv_weights(r, t, inter, dim, &gb),
         *d = tv_weights(r, t, dim, inter, &db);
    size_t per = gb * 2 + db, per_al = (per + 255) / 256 * 256;
    uint8_t *all = calloc((size_t)n_exp, per_al);
    for (int ex = 0; ex < n_exp; ex++) { /* same values per expert but scaled, so a wrong expert shows */
        memcpy(all + ex * per_al, g, gb);
        memcpy(all + ex * per_al + gb, u, gb);
        memcpy(all + ex * per_al + 2 * gb, d, db);
        if (t == OB_F32) {
            float *f = (float *)(all + ex * per_al);
            for (size_t i = 0; i < per / 4; i++) f[i] *= 1.0f + 0.1f * ex;
        } else if (t != OB_Q8_0) {
            uint16_t *h = (uint16_t *)(all + ex * per_al);
            for (size_t i = 0; i < per / 2; i++) h[i] ^= (uint16_t)(ex & 3); /* perturb the low mantissa bits */
        } else {
            int8_t *qv = (int8_t *)(all + ex * per_al);
            qv[ex % 32] = (int8_t)(qv[ex % 32] / 2);
        }
    }
    tv_buf A = tv_new(e, all, (size_t)n_exp * per_al, 0), X = tv_new(e, x, xb, 0), Y = tv_new(e, y, xb, 0),
           I = tv_new(e, ids, sizeof *ids * (size_t)n * k, 0), Wt = tv_new(e, wts, sizeof *wts * (size_t)n * k, 0);
    ob_mat *m = tv_expert_mats(A, per_al, gb, t, n_exp, dim, inter);
    e->vk->ops->moe_experts(e->vk, tv_pv(X, 0), n, k, tv_pv(I, 0), tv_pv(Wt, 0), m, m + n_exp, m + 2 * n_exp, n_exp,
                            tv_pv(Y, 0));
    ob_mat *mc = m + 3 * n_exp;
    e->cpu->ops->moe_experts(e->cpu, tv_pc(X, 0), n, k, tv_pc(I, 0), tv_pc(Wt, 0), mc, mc + n_exp, mc + 2 * n_exp,
                             n_exp, tv_pc(Y, 0));
    double err = tv_rel_err(e, Y, 0, (size_t)n * dim);
    if (!(err >= 0 && err <= tol))
        th_fail(__FILE__, __LINE__, "moe_experts %s n=%d k=%d experts=%d [%d, %d]: rel err %g", ob_dtype_name(t), n, k,
                n_exp, dim, inter, err);
    tv_free(e, &A), tv_free(e, &X), tv_free(e, &Y), tv_free(e, &I), tv_free(e, &Wt);
    free(x), free(y), free(wts), free(ids), free(g), free(u), free(d), free(all), free(m);
    return err;
}

static void moe_case(tv_env *e, omni_rng *r, ob_dtype t, int n, int k, int n_exp, int dim, int inter) {
    moe_case_tol(e, r, t, n, k, n_exp, dim, inter, 1e-5);
}

static void moe_sweep(tv_env *e) {
    omni_rng r = { 23 };
    const ob_dtype types[] = { OB_BF16, OB_Q8_0, OB_F32, OB_F16 };
    for (int ti = 0; ti < 4; ti++) {
        moe_case(e, &r, types[ti], 1, 4, 8, 64, 32);
        moe_case(e, &r, types[ti], 3, 2, 6, 96, 64);
        moe_case(e, &r, types[ti], 19, 3, 8, 64, 32);
    }
    moe_case(e, &r, OB_BF16, 70, 4, 16, 128, 96); /* several tiles per expert */
}

TEST(vk_moe_experts_default) {
    setenv("OMNI_VK_NO_COOPMAT", "1", 1); /* fp32 kernels; the tensor-core path: test_vulkan_coopmat.c */
    setenv("OMNI_VK_Q8_INT8", "0", 1);    /* q8 with fp32 activations; int8: vk_q8_int8_activations */
    TV_OPEN(e);
    moe_sweep(&e);
    tv_close(&e);
}

TEST(vk_moe_experts_grouped) {
    setenv("OMNI_VK_NO_COOPMAT", "1", 1); /* fp32 kernels; the tensor-core path: test_vulkan_coopmat.c */
    setenv("OMNI_VK_MOE", "grouped", 1);
    TV_OPEN(e);
    moe_sweep(&e);
    tv_close(&e);
}

TEST(vk_moe_experts_decode_path) {
    setenv("OMNI_VK_MOE", "vec", 1);
    setenv("OMNI_VK_Q8_INT8", "0", 1); /* q8 with fp32 activations; int8: vk_q8_int8_activations */
    TV_OPEN(e);
    moe_sweep(&e);
    tv_close(&e);
}

/* n_exp experts of random [inter x dim] gate and up and [dim x inter] down weights of dtype t, one after another
 * per_al bytes apart (gb bytes for gate and up each), all from the same values but perturbed per expert, so that
 * a wrong selection shows in the output; malloc'd, NULL when out of memory */
static uint8_t *distinct_experts(omni_rng *r, ob_dtype t, int n_exp, int dim, int inter, size_t *per_al, size_t *gb) {
    size_t db;
    void *g = tv_weights(r, t, inter, dim, gb), *u = tv_weights(r, t, inter, dim, gb);
    void *d = tv_weights(r, t, dim, inter, &db);
    size_t per = *gb * 2 + db;
    *per_al = (per + 255) / 256 * 256;
    uint8_t *all = g && u && d ? calloc((size_t)n_exp, *per_al) : NULL;
    for (int ex = 0; all && ex < n_exp; ex++) {
        uint8_t *p = all + ex * *per_al;
        memcpy(p, g, *gb);
        memcpy(p + *gb, u, *gb);
        memcpy(p + 2 * *gb, d, db);
        if (t == OB_Q8_0) ((int8_t *)p)[ex % 32] /= 2;
        else for (size_t i = 0; i < per / 2; i++) ((uint16_t *)p)[i] ^= (uint16_t)(ex & 7);
    }
    free(g), free(u), free(d);
    return all;
}

/* The decode routing's top-k left to the MoE gate+up (vk_decode.c route_defer, shaders/route_rank.glsl): norm_route
 * then moe_experts on one token against the CPU back-end, with the deferral on (the gate+up workgroups select and
 * write ids and weights) and off (router.comp selects); afterwards the ids must equal the CPU's exactly and the
 * weights and output agree to fp32 rounding (BF16: 1e-5; Q8_0 on int8 activations where the device has them:
 * 2e-2, vk_q8_int8_activations' bound). */
static void route_defer_case(tv_env *e, omni_rng *r, ob_dtype t, int n_exp, int k, int dim, int inter, double tol) {
    size_t wb, nb, gb, per_al;
    void *w = tv_weights(r, OB_BF16, n_exp, dim, &wb), *nw = tv_weights(r, OB_BF16, 1, dim, &nb);
    uint8_t *all = distinct_experts(r, t, n_exp, dim, inter, &per_al, &gb);
    float *x = malloc((size_t)dim * 4), *y = malloc((size_t)dim * 4);
    tv_rand(r, x, (size_t)dim, 4.0f);
    tv_rand(r, y, (size_t)dim, 1.0f);
    tv_buf W = tv_new(e, w, wb, 0), N = tv_new(e, nw, nb, 0), A = tv_new(e, all, (size_t)n_exp * per_al, 0),
           X = tv_new(e, x, (size_t)dim * 4, 0), Y = tv_new(e, y, (size_t)dim * 4, 0),
           L = tv_new(e, NULL, (size_t)n_exp * 4, 0), XN = tv_new(e, NULL, (size_t)dim * 4, 0),
           I = tv_new(e, NULL, (size_t)k * 4, 0), Wt = tv_new(e, NULL, (size_t)k * 4, 0);
    ob_mat wv = ob_mat_make(tv_pv(W, 0), OB_BF16, n_exp, dim), wc = ob_mat_make(tv_pc(W, 0), OB_BF16, n_exp, dim);
    ob_mat nv = ob_mat_make(tv_pv(N, 0), OB_BF16, 1, dim), nc = ob_mat_make(tv_pc(N, 0), OB_BF16, 1, dim);
    ob_mat *m = tv_expert_mats(A, per_al, gb, t, n_exp, dim, inter), *mc = m + 3 * n_exp;
    e->vk->ops->norm_route(e->vk, tv_pv(X, 0), &nv, 1e-6f, &wv, tv_pv(L, 0), tv_pv(XN, 0), k, 1, tv_pv(I, 0),
                           tv_pv(Wt, 0));
    e->vk->ops->moe_experts(e->vk, tv_pv(XN, 0), 1, k, tv_pv(I, 0), tv_pv(Wt, 0), m, m + n_exp, m + 2 * n_exp, n_exp,
                            tv_pv(Y, 0));
    e->cpu->ops->norm_route(e->cpu, tv_pc(X, 0), &nc, 1e-6f, &wc, tv_pc(L, 0), tv_pc(XN, 0), k, 1, tv_pc(I, 0),
                            tv_pc(Wt, 0));
    e->cpu->ops->moe_experts(e->cpu, tv_pc(XN, 0), 1, k, tv_pc(I, 0), tv_pc(Wt, 0), mc, mc + n_exp, mc + 2 * n_exp,
                             n_exp, tv_pc(Y, 0));
    int32_t iv[32], ic[32];
    int dl = e->vk->ops->download(e->vk, I.v, 0, iv, (size_t)k * 4) | e->cpu->ops->download(e->cpu, I.c, 0, ic, (size_t)k * 4);
    double ey = tv_rel_err(e, Y, 0, (size_t)dim), ew = tv_rel_err(e, Wt, 0, (size_t)k);
    if (dl || memcmp(iv, ic, (size_t)k * 4) || !(ey >= 0 && ey <= tol && ew >= 0 && ew <= 1e-5))
        th_fail(__FILE__, __LINE__, "route + experts %s experts=%d k=%d [%d, %d]: ids %s, y rel err %g, weights %g",
                ob_dtype_name(t), n_exp, k, dim, inter, memcmp(iv, ic, (size_t)k * 4) ? "differ" : "equal", ey, ew);
    tv_buf bufs[] = { W, N, A, X, Y, L, XN, I, Wt };
    for (unsigned i = 0; i < sizeof bufs / sizeof *bufs; i++) tv_free(e, &bufs[i]);
    free(w), free(nw), free(all), free(x), free(y), free(m);
}

/* The folded router (vk_decode.c: Rw·x beside the attention, M·a beside o_proj, norm and top-k in the MoE gate+up):
 * matmul_norm_route then moe_experts on one token, as the thinker's decode calls them (the experts add into the
 * residual x), against the CPU back-end, with OMNI_VK_ROUTE_FOLD on and off. Afterwards the ids must equal the CPU's
 * exactly, and the residual, weights, logits and xn agree within tol relative (BF16 1e-5: the fold sums in another
 * order; Q8_0 on int8 activations where the device has them 2e-2, o_proj's activations rounded to int8). The second
 * round reads the logits between the two calls (the owed outputs are then computed the direct way, vk_route_record);
 * the third replaces the router weights in place first (the cached fold must lapse). */
static void fold_case(tv_env *e, omni_rng *r, ob_dtype t, ob_dtype ot, ob_dtype nt, int n_exp, int k, int dim,
                      int inter, int oc, double tol, const char *what) {
    size_t wb, nb, ob, gb, per_al;
    void *w = tv_weights(r, OB_BF16, n_exp, dim, &wb), *nw = tv_weights(r, nt, 1, dim, &nb);
    void *wo = tv_weights(r, ot, dim, oc, &ob);
    uint8_t *all = distinct_experts(r, t, n_exp, dim, inter, &per_al, &gb);
    tv_buf W = tv_new(e, w, wb, 0), N = tv_new(e, nw, nb, 0), O = tv_new(e, wo, ob, 0),
           A = tv_new(e, all, (size_t)n_exp * per_al, 0);
    ob_mat wv = ob_mat_make(tv_pv(W, 0), OB_BF16, n_exp, dim), wc = ob_mat_make(tv_pc(W, 0), OB_BF16, n_exp, dim);
    ob_mat nv = ob_mat_make(tv_pv(N, 0), nt, 1, dim), nc = ob_mat_make(tv_pc(N, 0), nt, 1, dim);
    ob_mat ov = ob_mat_make(tv_pv(O, 0), ot, dim, oc), ocm = ob_mat_make(tv_pc(O, 0), ot, dim, oc);
    ob_mat *m = tv_expert_mats(A, per_al, gb, t, n_exp, dim, inter), *mc = m + 3 * n_exp;
    for (int round = 0; round < 3; round++) {
        if (round == 2) { /* new router weights in the same buffer */
            free(w);
            w = tv_weights(r, OB_BF16, n_exp, dim, &wb);
            e->vk->ops->upload(e->vk, W.v, 0, w, wb);
            e->cpu->ops->upload(e->cpu, W.c, 0, w, wb);
        }
        float *x = malloc((size_t)dim * 4), *a = malloc((size_t)oc * 4);
        tv_rand(r, x, (size_t)dim, 4.0f);
        tv_rand(r, a, (size_t)oc, 1.0f);
        tv_buf X = tv_new(e, x, (size_t)dim * 4, 0), Av = tv_new(e, a, (size_t)oc * 4, 0),
               L = tv_new(e, NULL, (size_t)n_exp * 4, 0), XN = tv_new(e, NULL, (size_t)dim * 4, 0),
               I = tv_new(e, NULL, (size_t)k * 4, 0), Wt = tv_new(e, NULL, (size_t)k * 4, 0);
        e->vk->ops->matmul_norm_route(e->vk, &ov, tv_pv(Av, 0), tv_pv(X, 0), &nv, 1e-6f, &wv, tv_pv(L, 0),
                                      tv_pv(XN, 0), k, 1, tv_pv(I, 0), tv_pv(Wt, 0));
        float *lg = NULL; /* round 1: the logits as read before the experts ran */
        if (round == 1) { /* the logits read before the experts: the owed outputs are computed the direct way first */
            lg = malloc((size_t)n_exp * 4);
            if (!lg || e->vk->ops->download(e->vk, L.v, 0, lg, (size_t)n_exp * 4))
                th_fail(__FILE__, __LINE__, "%s: logits download", what);
        }
        e->vk->ops->moe_experts(e->vk, tv_pv(XN, 0), 1, k, tv_pv(I, 0), tv_pv(Wt, 0), m, m + n_exp, m + 2 * n_exp,
                                n_exp, tv_pv(X, 0));
        e->cpu->ops->matmul_norm_route(e->cpu, &ocm, tv_pc(Av, 0), tv_pc(X, 0), &nc, 1e-6f, &wc, tv_pc(L, 0),
                                       tv_pc(XN, 0), k, 1, tv_pc(I, 0), tv_pc(Wt, 0));
        e->cpu->ops->moe_experts(e->cpu, tv_pc(XN, 0), 1, k, tv_pc(I, 0), tv_pc(Wt, 0), mc, mc + n_exp,
                                 mc + 2 * n_exp, n_exp, tv_pc(X, 0));
        double ex = tv_rel_err(e, X, 0, (size_t)dim), el = tv_rel_err(e, L, 0, (size_t)n_exp),
               en = tv_rel_err(e, XN, 0, (size_t)dim), ew = tv_rel_err(e, Wt, 0, (size_t)k);
        int32_t iv[32], ic[32];
        int dl = e->vk->ops->download(e->vk, I.v, 0, iv, (size_t)k * 4) |
                 e->cpu->ops->download(e->cpu, I.c, 0, ic, (size_t)k * 4);
        if (dl || memcmp(iv, ic, (size_t)k * 4) || !(ex >= 0 && ex <= tol && el >= 0 && el <= tol && en >= 0 &&
                                                     en <= tol && ew >= 0 && ew <= tol))
            th_fail(__FILE__, __LINE__, "%s %s experts=%d k=%d [%d, %d] o %d round %d: ids %s, x %g logits %g xn %g "
                    "weights %g", what, ob_dtype_name(t), n_exp, k, dim, inter, oc, round,
                    memcmp(iv, ic, (size_t)k * 4) ? "differ" : "equal", ex, el, en, ew);
        if (lg) { /* what that early read saw must be the logits themselves, not what the buffer held before */
            float *lc = malloc((size_t)n_exp * 4);
            if (!lc || e->cpu->ops->download(e->cpu, L.c, 0, lc, (size_t)n_exp * 4))
                th_fail(__FILE__, __LINE__, "%s: logits download", what);
            double el1 = lc ? th_rel_err(lg, lc, (size_t)n_exp) : -1;
            if (!(el1 >= 0 && el1 <= tol))
                th_fail(__FILE__, __LINE__, "%s %s round 1: logits read early: rel err %g", what, ob_dtype_name(t),
                        el1);
            free(lc), free(lg);
        }
        tv_buf bufs[] = { X, Av, L, XN, I, Wt };
        for (unsigned i = 0; i < sizeof bufs / sizeof *bufs; i++) tv_free(e, &bufs[i]);
        free(x), free(a);
    }
    tv_buf bufs[] = { W, N, O, A };
    for (unsigned i = 0; i < sizeof bufs / sizeof *bufs; i++) tv_free(e, &bufs[i]);
    free(w), free(nw), free(wo), free(all), free(m);
}

TEST(vk_route_fold) {
    setenv("OMNI_VK_MOE", "vec", 1);
    /* folded with the experts selected by the router's M·a dispatch (OMNI_VK_ROUTE_PRE=1, mv_rows.comp RANK) and by
     * the gate+up workgroups (0), then unfolded */
    for (int pass = 0; pass < 3; pass++) {
        int fold = pass < 2;
        setenv("OMNI_VK_ROUTE_FOLD", fold ? "1" : "0", 1);
        setenv("OMNI_VK_ROUTE_PRE", pass == 0 ? "1" : "0", 1);
        TV_OPEN(e);
        omni_rng r = { 93 };
        const char *what = pass == 0 ? "fold, selected by M·a" : fold ? "fold" : "no fold";
        /* the thinker's routing (o_proj twice as wide); few experts, an odd o_proj width and norm weights in f32 and
         * f16; q8_0 experts; q8_0 experts and o_proj. The last only folded: with int8 activations o_proj's output
         * is ~1% off the CPU's, which the unfolded router ranks (a near tie may flip), while the folded one ranks
         * Rw·x + M·a in fp32 and takes o_proj's output only for the norm scale, which keeps the order */
        fold_case(&e, &r, OB_BF16, OB_BF16, OB_BF16, 128, 8, 256, 64, 512, 1e-5, what);
        fold_case(&e, &r, OB_BF16, OB_F32, OB_F32, 12, 3, 64, 32, 100, 1e-5, what);
        fold_case(&e, &r, OB_BF16, OB_F16, OB_F16, 12, 3, 64, 32, 96, 1e-5, what);
        fold_case(&e, &r, OB_Q8_0, OB_BF16, OB_BF16, 128, 8, 256, 64, 512, 2e-2, what);
        if (fold) fold_case(&e, &r, OB_Q8_0, OB_Q8_0, OB_BF16, 128, 8, 256, 64, 512, 2e-2, what);
        tv_close(&e);
    }
    unsetenv("OMNI_VK_ROUTE_PRE");
    unsetenv("OMNI_VK_ROUTE_FOLD");
    unsetenv("OMNI_VK_MOE");
}

/* the same on the kernels' builds without subgroup operations (matvec.comp and mv_rows.comp reduce through shared
 * memory; the Q8_0 int8 kernels need subgroups and are not used) */
TEST(vk_route_fold_no_subgroup) {
    setenv("OMNI_VK_NO_SUBGROUP", "1", 1);
    setenv("OMNI_VK_MOE", "vec", 1);
    for (int pre = 0; pre < 2; pre++) { /* the gate+up ranks, or the router's M·a dispatch (mv_rows.comp RANK) */
        setenv("OMNI_VK_ROUTE_PRE", pre ? "1" : "0", 1);
        TV_OPEN(e);
        omni_rng r = { 94 };
        const char *what = pre ? "no subgroups, selected by M·a" : "no subgroups";
        fold_case(&e, &r, OB_BF16, OB_BF16, OB_BF16, 128, 8, 256, 64, 512, 1e-5, what);
        fold_case(&e, &r, OB_BF16, OB_F32, OB_F16, 12, 3, 64, 32, 100, 1e-5, what);
        tv_close(&e);
    }
    unsetenv("OMNI_VK_ROUTE_PRE");
    unsetenv("OMNI_VK_MOE");
    unsetenv("OMNI_VK_NO_SUBGROUP");
}

TEST(vk_route_defer) {
    setenv("OMNI_VK_MOE", "vec", 1);
    for (int defer = 1; defer >= 0; defer--) {
        setenv("OMNI_VK_ROUTE_DEFER", defer ? "1" : "0", 1);
        TV_OPEN(e);
        omni_rng r = { 91 };
        for (int rep = 0; rep < 2; rep++) {
            route_defer_case(&e, &r, OB_BF16, 128, 8, 256, 64, 1e-5); /* the thinker's 128 experts, top-8 */
            route_defer_case(&e, &r, OB_BF16, 12, 3, 64, 32, 1e-5);   /* fewer experts than a workgroup */
            route_defer_case(&e, &r, OB_Q8_0, 128, 8, 256, 64, 2e-2);
        }
        tv_close(&e);
    }
    unsetenv("OMNI_VK_ROUTE_DEFER");
}

/* The prefill's top-k left owed by moe_route and made by the grouped moe_experts together with its plan
 * (moe_route.comp PLAN, one dispatch): ids, weights and the experts' output must be bit-identical to moe_route
 * followed by moe_plan.comp (OMNI_VK_ROUTE_PLAN=0; each output row is computed on its own and moe_combine sums the
 * slots in fixed order, so the order of entries within an expert does not show), and the output within 1e-5 of the
 * CPU's. Twice on one back-end (the kernel's counters must be left at zero), with more entries than the last
 * workgroup's batch (8 x 256), and with the ids read between the two calls (the owed top-k is then recorded on its
 * own first and moe_plan.comp runs). fp32 kernels (the tensor-core GEMMs: test_vulkan_coopmat.c). */
static void route_plan_run(tv_env *e, int fused, int peek, int n, int k, int n_exp, float *y, int32_t *ids,
                           float *wts) {
    const int dim = 64, inter = 32;
    omni_rng r = { 1000u + (uint64_t)n };
    setenv("OMNI_VK_ROUTE_PLAN", fused ? "1" : "0", 1);
    size_t lb = (size_t)n * n_exp * 4, kb = (size_t)n * k * 4, xb = (size_t)n * dim * 4, per_al, gb;
    float *lg = malloc(lb), *x = malloc(xb);
    tv_rand(&r, lg, (size_t)n * n_exp, 3.0f);
    tv_rand(&r, x, (size_t)n * dim, 1.0f);
    uint8_t *all = distinct_experts(&r, OB_BF16, n_exp, dim, inter, &per_al, &gb);
    tv_buf L = tv_new(e, lg, lb, 0), X = tv_new(e, x, xb, 0), Y = tv_new(e, x, xb, 0), I = tv_new(e, NULL, kb, 0),
           W = tv_new(e, NULL, kb, 0), A = tv_new(e, all, (size_t)n_exp * per_al, 0);
    ob_mat *m = tv_expert_mats(A, per_al, gb, OB_BF16, n_exp, dim, inter), *mc = m + 3 * n_exp;
    e->vk->ops->moe_route(e->vk, tv_pv(L, 0), n, n_exp, k, 1, tv_pv(I, 0), tv_pv(W, 0));
    int32_t first = -1;
    if (peek) CHECK_EQ_INT(e->vk->ops->download(e->vk, I.v, 0, &first, 4), 0);
    e->vk->ops->moe_experts(e->vk, tv_pv(X, 0), n, k, tv_pv(I, 0), tv_pv(W, 0), m, m + n_exp, m + 2 * n_exp, n_exp,
                            tv_pv(Y, 0));
    e->cpu->ops->moe_route(e->cpu, tv_pc(L, 0), n, n_exp, k, 1, tv_pc(I, 0), tv_pc(W, 0));
    e->cpu->ops->moe_experts(e->cpu, tv_pc(X, 0), n, k, tv_pc(I, 0), tv_pc(W, 0), mc, mc + n_exp, mc + 2 * n_exp,
                             n_exp, tv_pc(Y, 0));
    double err = tv_rel_err(e, Y, 0, (size_t)n * dim);
    CHECK_EQ_INT(e->vk->ops->download(e->vk, Y.v, 0, y, xb), 0);
    CHECK_EQ_INT(e->vk->ops->download(e->vk, I.v, 0, ids, kb), 0);
    CHECK_EQ_INT(e->vk->ops->download(e->vk, W.v, 0, wts, kb), 0);
    if (!(err >= 0 && err <= 1e-5) || (peek && first != ids[0]))
        th_fail(__FILE__, __LINE__, "route+plan fused %d peek %d n=%d k=%d experts=%d: rel err %g, first id %d / %d",
                fused, peek, n, k, n_exp, err, first, ids[0]);
    tv_buf bufs[] = { L, X, Y, I, W, A };
    for (unsigned i = 0; i < sizeof bufs / sizeof *bufs; i++) tv_free(e, &bufs[i]);
    free(lg), free(x), free(all), free(m);
}

TEST(vk_moe_route_plan) {
    setenv("OMNI_VK_NO_COOPMAT", "1", 1);
    setenv("OMNI_VK_MOE", "grouped", 1);
    TV_OPEN(e);
    /* n, k, experts, threads per workgroup (32: more experts than threads, so the last workgroup scans several per
     * thread; 0: the default) */
    const int cases[][4] = { { 300, 8, 64, 0 }, { 300, 8, 64, 0 }, { 40, 3, 12, 0 }, { 11, 4, 5, 0 }, { 90, 6, 64, 32 } };
    for (unsigned ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        int n = cases[ci][0], k = cases[ci][1], ne = cases[ci][2];
        char wg[16];
        snprintf(wg, sizeof wg, "%d", cases[ci][3]);
        setenv("OMNI_VK_ROUTE_WG", wg, 1);
        size_t yb = (size_t)n * 64 * 4, kb = (size_t)n * k * 4;
        float *y[3] = { malloc(yb), malloc(yb), malloc(yb) }, *w[3] = { malloc(kb), malloc(kb), malloc(kb) };
        int32_t *id[3] = { malloc(kb), malloc(kb), malloc(kb) };
        route_plan_run(&e, 0, 0, n, k, ne, y[0], id[0], w[0]);
        route_plan_run(&e, 1, 0, n, k, ne, y[1], id[1], w[1]);
        route_plan_run(&e, 1, 1, n, k, ne, y[2], id[2], w[2]);
        for (int v = 1; v < 3; v++)
            if (memcmp(y[0], y[v], yb) || memcmp(id[0], id[v], kb) || memcmp(w[0], w[v], kb))
                th_fail(__FILE__, __LINE__, "n=%d k=%d experts=%d: %s differs from moe_plan.comp's (form %d)", n, k,
                        ne, memcmp(id[0], id[v], kb) ? "ids" : memcmp(w[0], w[v], kb) ? "weights" : "output", v);
        for (int v = 0; v < 3; v++) free(y[v]), free(w[v]), free(id[v]);
    }
    unsetenv("OMNI_VK_ROUTE_WG");
    /* two routings owed one after the other (no experts between): the first is recorded before the second
     * replaces it, so both sets of ids and weights equal the CPU's */
    setenv("OMNI_VK_ROUTE_PLAN", "1", 1);
    omni_rng r = { 77 };
    const int n = 40, k = 4, ne = 16;
    size_t lb = (size_t)n * ne * 4, kb = (size_t)n * k * 4;
    float *lg = malloc(lb);
    tv_buf L[2], I[2], W[2];
    for (int j = 0; j < 2; j++) {
        tv_rand(&r, lg, (size_t)n * ne, 3.0f);
        L[j] = tv_new(&e, lg, lb, 0), I[j] = tv_new(&e, NULL, kb, 0), W[j] = tv_new(&e, NULL, kb, 0);
    }
    for (int j = 0; j < 2; j++) {
        e.vk->ops->moe_route(e.vk, tv_pv(L[j], 0), n, ne, k, 1, tv_pv(I[j], 0), tv_pv(W[j], 0));
        e.cpu->ops->moe_route(e.cpu, tv_pc(L[j], 0), n, ne, k, 1, tv_pc(I[j], 0), tv_pc(W[j], 0));
    }
    for (int j = 0; j < 2; j++) {
        int32_t *iv = malloc(kb), *ic = malloc(kb);
        double ew = tv_rel_err(&e, W[j], 0, (size_t)n * k);
        CHECK_EQ_INT(e.vk->ops->download(e.vk, I[j].v, 0, iv, kb) | e.cpu->ops->download(e.cpu, I[j].c, 0, ic, kb), 0);
        if (memcmp(iv, ic, kb) || !(ew >= 0 && ew <= 1e-6))
            th_fail(__FILE__, __LINE__, "routing %d of two owed in a row: ids %s, weights rel err %g", j,
                    memcmp(iv, ic, kb) ? "differ" : "equal", ew);
        free(iv), free(ic);
        tv_free(&e, &L[j]), tv_free(&e, &I[j]), tv_free(&e, &W[j]);
    }
    free(lg);
    unsetenv("OMNI_VK_ROUTE_PLAN");
    tv_close(&e);
}

/* The prefill MoE plan (moe_plan.comp) itself, exactly: every in-range entry gets a distinct sorted position inside
 * its expert's run (runs in expert order, sized by the entries routed there), tok maps it back to its token,
 * out-of-range ids get pos -1, and the tile list is the reference's (each run cut into tiles of at most `tile`, in
 * expert order, the list cut after max_tiles), with nothing written past n_tiles. Shapes: n·k not a multiple of the
 * workgroup, more entries than the registers batch of a workgroup (8192 at 1024 threads, 2048 at 256) so the
 * spill path runs, one hot expert with many tiles, tile 1, max_tiles limiting and 0, 1 and 1024 experts, and both
 * workgroup sizes (256 gives the threads several experts each when there are more than 256). */
static void moe_plan_case(tv_env *e, omni_rng *r, int n, int k, int n_exp, int tile, int max_tiles, int wg, int hot) {
    int ne = n * k, pn = 2 * ne + 1 + 3 * max_tiles;
    const int32_t SENT = 0x5a5a5a5a;
    int32_t *ids = malloc((size_t)ne * 4), *plan = malloc((size_t)pn * 4), *cnt = calloc((size_t)n_exp, 4),
            *first = calloc((size_t)n_exp, 4), *seen = calloc((size_t)ne + 1, 4);
    const int32_t bad[4] = { -1, n_exp, n_exp + 1000, INT32_MIN };
    for (int i = 0; i < ne; i++) {
        float u = omni_rng_uniform(r);
        ids[i] = u < 0.05f ? bad[omni_rng_next(r) % 4]
                 : hot && u < 0.35f ? n_exp / 2
                                    : (int32_t)(omni_rng_next(r) % (uint64_t)n_exp);
        if (ids[i] >= 0 && ids[i] < n_exp) cnt[ids[i]]++;
    }
    for (int i = 0; i < pn; i++) plan[i] = SENT;
    tv_buf I = tv_new(e, ids, (size_t)ne * 4, 0), P = tv_new(e, plan, (size_t)pn * 4, 0);
    int rc = ob_vulkan_moe_plan(e->vk, tv_pv(I, 0), n, k, n_exp, tile, max_tiles, wg, tv_pv(P, 0));
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(e->vk->ops->download(e->vk, P.v, 0, plan, (size_t)pn * 4), 0);
    int acc = 0, nt = 0, bad_pos = 0, bad_tile = 0;
    for (int x = 0; x < n_exp; x++) {
        first[x] = acc;
        for (int s = 0; s < cnt[x] && nt < max_tiles; s += tile, nt++) {
            const int32_t *tl = plan + 2 * ne + 1 + 3 * nt;
            if (tl[0] != x || tl[1] != acc + s || tl[2] != (cnt[x] - s < tile ? cnt[x] - s : tile)) bad_tile++;
        }
        acc += cnt[x];
    }
    for (int i = 3 * nt; i < 3 * max_tiles; i++)
        if (plan[2 * ne + 1 + i] != SENT) bad_tile++;
    for (int i = 0; i < ne; i++) {
        int32_t x = ids[i], p = plan[ne + i];
        if (x < 0 || x >= n_exp) {
            bad_pos += p != -1;
            continue;
        }
        if (p < first[x] || p >= first[x] + cnt[x] || seen[p]++ || plan[p] != i / k) bad_pos++;
    }
    if (plan[2 * ne] != nt || bad_tile || bad_pos)
        th_fail(__FILE__, __LINE__,
                "moe_plan n=%d k=%d experts=%d tile=%d max_tiles=%d wg=%d: n_tiles %d (want %d), %d wrong tile words, "
                "%d wrong positions",
                n, k, n_exp, tile, max_tiles, wg, plan[2 * ne], nt, bad_tile, bad_pos);
    tv_free(e, &I), tv_free(e, &P);
    free(ids), free(plan), free(cnt), free(first), free(seen);
}

TEST(vk_moe_plan) {
    TV_OPEN(e);
    omni_rng r = { 11 };
    for (int w = 0; w < 2; w++) {
        int wg = w ? 256 : 0; /* 0: the size the MoE op uses (1024 on lavapipe and the H100) */
        moe_plan_case(&e, &r, 1, 1, 1, 64, 2, wg, 0);
        moe_plan_case(&e, &r, 19, 3, 8, 4, 19 * 3 / 4 + 8, wg, 0);
        moe_plan_case(&e, &r, 70, 4, 16, 16, 70 * 4 / 16 + 16, wg, 1);
        moe_plan_case(&e, &r, 512, 8, 128, 64, 4096 / 64 + 128, wg, 1); /* pp512 of the model */
        moe_plan_case(&e, &r, 1100, 8, 128, 64, 8800 / 64 + 128, wg, 1); /* beyond the register batch */
        moe_plan_case(&e, &r, 300, 7, 300, 5, 2100 / 5 + 300, wg, 0);
        moe_plan_case(&e, &r, 333, 5, 1024, 1, 333 * 5 + 1024, wg, 1); /* tile 1, most experts */
        moe_plan_case(&e, &r, 200, 8, 64, 8, 37, wg, 1);                /* max_tiles cuts the list */
        moe_plan_case(&e, &r, 50, 2, 16, 8, 0, wg, 0);
    }
    tv_close(&e);
}

/* norm_matvec with one weight type against the CPU: returns the error of y, fails when xn (fp32 in both) differs */
static double norm_matvec_q8_case(tv_env *e, omni_rng *r, int rows, int cols) {
    float *x = malloc((size_t)cols * 4);
    tv_rand(r, x, (size_t)cols, 3.0f);
    size_t wb, nb;
    void *w = tv_weights(r, OB_Q8_0, rows, cols, &wb), *nw = tv_weights(r, OB_BF16, 1, cols, &nb);
    tv_buf X = tv_new(e, x, (size_t)cols * 4, 0), W = tv_new(e, w, wb, 0), N = tv_new(e, nw, nb, 0),
           Y = tv_new(e, NULL, (size_t)rows * 4, 0), XN = tv_new(e, NULL, (size_t)cols * 4, 0);
    ob_mat wv = ob_mat_make(tv_pv(W, 0), OB_Q8_0, rows, cols), wc = ob_mat_make(tv_pc(W, 0), OB_Q8_0, rows, cols);
    ob_mat nv = ob_mat_make(tv_pv(N, 0), OB_BF16, 1, cols), nc = ob_mat_make(tv_pc(N, 0), OB_BF16, 1, cols);
    e->vk->ops->norm_matvec(e->vk, tv_pv(X, 0), &nv, 1e-6f, &wv, tv_pv(Y, 0), tv_pv(XN, 0));
    e->cpu->ops->norm_matvec(e->cpu, tv_pc(X, 0), &nc, 1e-6f, &wc, tv_pc(Y, 0), tv_pc(XN, 0));
    double ey = tv_rel_err(e, Y, 0, (size_t)rows), en = tv_rel_err(e, XN, 0, (size_t)cols);
    if (!(en >= 0 && en <= 1e-5)) th_fail(__FILE__, __LINE__, "norm_matvec q8_0 x int8: xn rel err %g", en);
    tv_free(e, &X), tv_free(e, &W), tv_free(e, &N), tv_free(e, &Y), tv_free(e, &XN);
    free(x), free(w), free(nw);
    return ey;
}

/* Q8_0 decode products against int8 activations (mvq8.comp, the default on devices with integer dot products)
 * against the CPU's fp32 activations: the activations are rounded to 8 bits per block of 16 (error up to max|x|/254
 * per element; the MoE pair rounds x and h), so the outputs agree to about 0.3-1% of their largest value on these
 * random rows; the tolerance is 3e-2. The error must also be above zero: otherwise the fp32 kernels ran and the test
 * would prove nothing (skipped without integer dot). Shapes: dense rows (tail workgroups, long rows), the fused
 * RMSNorm, the MoE pair with 1 token of top-8 (the model's k), 3 tokens of top-2 and k = 3 (lanes per slot not a
 * power of two). */
TEST(vk_q8_int8_activations) {
    ob_vk_device_info info[8];
    int nd = ob_vulkan_list_devices(info, 8, NULL, 0), di = ob_vulkan_default_device();
    if (nd <= 0 || di < 0 || di >= 8 || !info[di].int_dot) SKIP("no Vulkan device with integer dot products");
    setenv("OMNI_VK_Q8_INT8", "1", 1);
    TV_OPEN(e);
    omni_rng r = { 77 };
    const mm_shape shapes[] = { { 300, 2048, 1 }, { 37, 64, 1 }, { 130, 256, 1 }, { 1, 32, 1 }, { 70, 4096, 1 },
                                { 32800, 64, 1 } }; /* many rows: 4 per subgroup */
    for (unsigned i = 0; i < sizeof shapes / sizeof *shapes; i++)
        for (int acc = 0; acc < 2; acc++) {
            double err = matmul_case(&e, &r, OB_Q8_0, shapes[i].rows, shapes[i].cols, 1, acc, 0);
            printf("    q8_0 x int8 [%d x %d] accumulate %d: rel err %.3g\n", shapes[i].rows, shapes[i].cols, acc, err);
            if (!(err > 0 && err <= 3e-2))
                th_fail(__FILE__, __LINE__, "q8_0 x int8 [%d x %d]: rel err %g (want 0 < err <= 3e-2)", shapes[i].rows,
                        shapes[i].cols, err);
        }
    for (int ci = 0; ci < 2; ci++) {
        int rows = ci ? 33 : 260, cols = ci ? 96 : 2048;
        double err = norm_matvec_q8_case(&e, &r, rows, cols);
        printf("    norm + q8_0 x int8 [%d x %d]: rel err %.3g\n", rows, cols, err);
        if (!(err > 0 && err <= 3e-2))
            th_fail(__FILE__, __LINE__, "norm + q8_0 x int8 [%d x %d]: rel err %g", rows, cols, err);
    }
    /* the MoE decode pair: gate+up (h quantized by the kernel), then down */
    double e1 = moe_case_tol(&e, &r, OB_Q8_0, 1, 8, 16, 256, 96, 3e-2);
    double e3 = moe_case_tol(&e, &r, OB_Q8_0, 3, 2, 6, 96, 64, 3e-2);
    double ek3 = moe_case_tol(&e, &r, OB_Q8_0, 2, 3, 8, 64, 160, 3e-2);
    printf("    moe q8_0 x int8: rel err %.3g (1 token, top-8), %.3g (3 tokens, top-2), %.3g (2 tokens, top-3)\n", e1,
           e3, ek3);
    CHECK(e1 > 0 && e3 > 0 && ek3 > 0);
    tv_close(&e);
    unsetenv("OMNI_VK_Q8_INT8");
}

/* topk_chunks (the sampler's candidates): the Vulkan kernel and the CPU back-end must give the same lists bit for bit,
 * and the CPU's must be each chunk's true best OB_TOPK_K (a full sort of the chunk here), on rows that end inside a
 * chunk, one element, a whole vocabulary, many tied values and -inf (masked) entries */
static const float *topk_vals;
static int topk_cmp(const void *a, const void *b) {
    int32_t i = *(const int32_t *)a, j = *(const int32_t *)b;
    if (topk_vals[i] != topk_vals[j]) return topk_vals[i] > topk_vals[j] ? -1 : 1;
    return i - j;
}

TEST(vk_topk_chunks) {
    TV_OPEN(e);
    omni_rng r = { 77 };
    const int sizes[] = { 1, 100, 2048, 2049, 5000, 152064 };
    for (int si = 0; si < 6; si++) {
        int n = sizes[si], chunks = (n + OB_TOPK_CHUNK - 1) / OB_TOPK_CHUNK;
        size_t ob = (size_t)chunks * OB_TOPK_K * 8;
        float *x = malloc((size_t)n * 4);
        int32_t *ov = malloc(ob), *oc = malloc(ob), *ids = malloc((size_t)OB_TOPK_CHUNK * 4);
        REQUIRE(x && ov && oc && ids);
        tv_rand(&r, x, (size_t)n, 8.0f);
        for (int i = 0; i < n; i++) {
            if (si % 2) x[i] = roundf(x[i] * 2.0f) / 2.0f; /* ties */
            if (i % 37 == 5) x[i] = -INFINITY;
        }
        tv_buf X = tv_new(&e, x, (size_t)n * 4, 0), O = tv_new(&e, NULL, ob, 0);
        e.vk->ops->topk_chunks(e.vk, tv_pv(X, 0), n, tv_pv(O, 0));
        e.cpu->ops->topk_chunks(e.cpu, tv_pc(X, 0), n, tv_pc(O, 0));
        REQUIRE(e.vk->ops->download(e.vk, O.v, 0, ov, ob) == 0 && e.cpu->ops->download(e.cpu, O.c, 0, oc, ob) == 0);
        for (size_t i = 0; i < ob / 4; i++)
            if (ov[i] != oc[i]) {
                th_fail(__FILE__, __LINE__, "topk_chunks n=%d: word %zu differs: Vulkan %d, CPU %d", n, i, ov[i], oc[i]);
                break;
            }
        int bad = 0;
        topk_vals = x;
        for (int c = 0; c < chunks; c++) {
            int m = n - c * OB_TOPK_CHUNK < OB_TOPK_CHUNK ? n - c * OB_TOPK_CHUNK : OB_TOPK_CHUNK;
            for (int i = 0; i < m; i++) ids[i] = c * OB_TOPK_CHUNK + i;
            qsort(ids, (size_t)m, 4, topk_cmp);
            for (int j = 0; j < OB_TOPK_K; j++) {
                const int32_t *p = oc + ((size_t)c * OB_TOPK_K + j) * 2;
                float v;
                memcpy(&v, &p[1], 4);
                if (j < m ? p[0] != ids[j] || memcmp(&v, &x[ids[j]], 4) : p[0] != -1) bad++;
            }
        }
        if (bad) th_fail(__FILE__, __LINE__, "topk_chunks n=%d: %d entries differ from the sorted chunks", n, bad);
        tv_free(&e, &X), tv_free(&e, &O);
        free(x), free(ov), free(oc), free(ids);
    }
    tv_close(&e);
}
