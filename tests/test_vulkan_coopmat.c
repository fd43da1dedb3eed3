/* test_vulkan_coopmat.c — prefill on tensor cores (NV cooperative matrix): shaders/matmul_cm.comp for the
 * dense matmul and grouped MoE with f16/bf16 weights against the CPU back-end, over shapes with partial tiles
 * (rows not a multiple of 128, x rows not a multiple of 64, cols not a multiple of 64), with and without
 * accumulation; shaders/attn_flash_cm.comp (head dims 128, 72, 64: GQA, MQA, causal, sliding window, bidirectional,
 * chunks after a cached prefix; also the exact online softmax, 1, 2 or 4 heads per workgroup); and the
 * same cases with OMNI_VK_NO_COOPMAT=1, which must select the fp32 kernels.
 *
 * Q8_0 weights take the same tensor-core kernel (quants times block scale, rounded to fp16 in shared memory).
 * On a device without NV cooperative matrix (lavapipe) both runs take the fp32 kernel; each test prints which
 * path the device offers. Tolerances (error = max |vk - cpu| / max |cpu|): 2e-3 with cooperative matrix (operands
 * rounded to fp16: x to 11 significant bits, bf16 weights are exact in fp16 at these magnitudes; fp32 sums),
 * 5e-3 for attention (q, k, v and p in fp16), 1e-5 for the fp32 kernels (summation order only). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "test_vulkan.h"

#define CM_TOL 2e-3
#define F32_TOL 1e-5
/* attention: q, k, v and the softmax weights p rounded to fp16 (fp32 sums) */
#define CM_ATTN_TOL 5e-3

/* 1 when the default device runs the tensor-core kernels (NV or KHR cooperative matrix, OMNI_VK_CM_KHR) and the
 * environment leaves them on */
static int cm_offered(void) {
    ob_vk_device_info info[8];
    char err[256];
    int nd = ob_vulkan_list_devices(info, 8, err, sizeof err), d = ob_vulkan_default_device();
    const char *off = getenv("OMNI_VK_NO_COOPMAT");
    int on = nd > 0 && d >= 0 && d < nd && info[d].cm_kernels && !(off && atoi(off) != 0);
    printf("    cooperative matrix path: %s\n", !on ? "off (fp32 tiled kernel)" : info[d].cm_kernels == 2 ? "on (KHR)"
                                                                                                  : "on (NV)");
    return on;
}

/* out (optional): the Vulkan result, malloc'd, for comparisons between kernel builds */
static double mm_case_out(tv_env *e, omni_rng *r, ob_dtype t, int rows, int cols, int n, int acc, float **out) {
    size_t wb;
    void *w = tv_weights(r, t, rows, cols, &wb);
    float *x = malloc(sizeof *x * (size_t)n * cols), *y = malloc(sizeof *y * (size_t)n * rows);
    tv_rand(r, x, (size_t)n * cols, 1.0f);
    tv_rand(r, y, (size_t)n * rows, 1.0f);
    tv_buf W = tv_new(e, w, wb, 0), X = tv_new(e, x, sizeof *x * (size_t)n * cols, 0),
           Y = tv_new(e, y, sizeof *y * (size_t)n * rows, 0);
    ob_mat mv = ob_mat_make(tv_pv(W, 0), t, rows, cols), mc = ob_mat_make(tv_pc(W, 0), t, rows, cols);
    e->vk->ops->matmul(e->vk, &mv, tv_pv(X, 0), tv_pv(Y, 0), n, acc);
    e->cpu->ops->matmul(e->cpu, &mc, tv_pc(X, 0), tv_pc(Y, 0), n, acc);
    double err = tv_rel_err(e, Y, 0, (size_t)n * rows);
    if (out && (*out = malloc(sizeof **out * (size_t)n * rows)))
        e->vk->ops->download(e->vk, Y.v, 0, *out, sizeof **out * (size_t)n * rows);
    tv_free(e, &W), tv_free(e, &X), tv_free(e, &Y);
    free(w), free(x), free(y);
    return err;
}

static double mm_case(tv_env *e, omni_rng *r, ob_dtype t, int rows, int cols, int n, int acc) {
    return mm_case_out(e, r, t, rows, cols, n, acc, NULL);
}

/* Shapes: whole tiles (every fragment stored straight to y), ragged rows/x rows/cols, and small matrices with
 * long rows that the tensor-core kernel splits over K ({128, 2048, 100}: 2 tiles -> 16 splits; {130, 520, 129}:
 * 4 splits with a ragged last one; {256, 2048, 100}). Q8_0 needs cols % 32 == 0: it skips the other shapes. */
static void mm_sweep(double tol) {
    TV_OPEN(e);
    omni_rng r = { 7 };
    const int shapes[][3] = { { 128, 64, 64 }, { 200, 72, 70 }, { 130, 520, 129 }, { 256, 2048, 100 },
                              { 64, 8, 9 },    { 384, 136, 17 }, { 128, 2048, 100 }, { 256, 128, 192 },
                              { 96, 544, 40 } };
    const ob_dtype types[] = { OB_F16, OB_BF16, OB_Q8_0 };
    for (unsigned i = 0; i < sizeof shapes / sizeof *shapes; i++)
        for (int ti = 0; ti < 3; ti++)
            for (int acc = 0; acc < 2; acc++) {
                if (types[ti] == OB_Q8_0 && shapes[i][1] % 32) continue;
                double err = mm_case(&e, &r, types[ti], shapes[i][0], shapes[i][1], shapes[i][2], acc);
                if (!(err >= 0 && err <= tol))
                    th_fail(__FILE__, __LINE__, "matmul %s [%d x %d] n=%d acc=%d: rel err %g > %g",
                            ob_dtype_name(types[ti]), shapes[i][0], shapes[i][1], shapes[i][2], acc, err, tol);
            }
    tv_close(&e);
}

TEST(vk_coopmat_matmul) {
    setenv("OMNI_VK_MM", "tiled", 1);
    mm_sweep(cm_offered() ? CM_TOL : F32_TOL);
}

/* the fp32 tiled kernel split over K where its grid is small (the default; {256, 2048, 100}: 8 tiles of 64 -> 8
 * parts, {130, 520, 129}: ragged last slice, ...) against the CPU, each sum owed until the read-back records it;
 * and never split (OMNI_VK_MM_SPLIT=0) */
TEST(vk_matmul_split) {
    setenv("OMNI_VK_MM", "tiled", 1);
    setenv("OMNI_VK_NO_COOPMAT", "1", 1);
    setenv("OMNI_VK_MM_SPLIT", "1", 1);
    mm_sweep(F32_TOL);
    setenv("OMNI_VK_MM_SPLIT", "0", 1);
    mm_sweep(F32_TOL);
    unsetenv("OMNI_VK_MM_SPLIT");
}

TEST(vk_coopmat_matmul_off) {
    setenv("OMNI_VK_MM", "tiled", 1);
    setenv("OMNI_VK_NO_COOPMAT", "1", 1);
    CHECK(!cm_offered());
    mm_sweep(F32_TOL);
}

/* grouped MoE: n tokens, top-k of n_exp experts (distinct random weights each), y += Σ w·down(silu(gate)·up) */
static void moe_case_out(tv_env *e, omni_rng *r, ob_dtype t, int n, int k, int n_exp, int dim, int inter, double tol,
                         float **out) {
    size_t xb = sizeof(float) * (size_t)n * dim;
    float *x = malloc(xb), *y = malloc(xb), *wts = malloc(sizeof *wts * (size_t)n * k);
    int32_t *ids = malloc(sizeof *ids * (size_t)n * k);
    tv_rand(r, x, (size_t)n * dim, 1.0f);
    tv_rand(r, y, (size_t)n * dim, 1.0f);
    tv_rand_routing(r, ids, wts, n, k, n_exp);
    size_t gb = ob_dtype_bytes(t, (int64_t)inter * dim), per = 3 * gb, per_al = (per + 255) / 256 * 256;
    uint8_t *all = calloc((size_t)n_exp, per_al);
    for (int ex = 0; ex < n_exp; ex++)
        for (int p = 0; p < 3; p++) {
            size_t b;
            void *w = p < 2 ? tv_weights(r, t, inter, dim, &b) : tv_weights(r, t, dim, inter, &b);
            memcpy(all + (size_t)ex * per_al + (size_t)p * gb, w, b);
            free(w);
        }
    tv_buf A = tv_new(e, all, (size_t)n_exp * per_al, 0), X = tv_new(e, x, xb, 0), Y = tv_new(e, y, xb, 0),
           I = tv_new(e, ids, sizeof *ids * (size_t)n * k, 0), Wt = tv_new(e, wts, sizeof *wts * (size_t)n * k, 0);
    ob_mat *m = tv_expert_mats(A, per_al, gb, t, n_exp, dim, inter);
    ob_mat *mc = m + 3 * n_exp;
    e->vk->ops->moe_experts(e->vk, tv_pv(X, 0), n, k, tv_pv(I, 0), tv_pv(Wt, 0), m, m + n_exp, m + 2 * n_exp, n_exp,
                            tv_pv(Y, 0));
    e->cpu->ops->moe_experts(e->cpu, tv_pc(X, 0), n, k, tv_pc(I, 0), tv_pc(Wt, 0), mc, mc + n_exp, mc + 2 * n_exp,
                             n_exp, tv_pc(Y, 0));
    double err = tv_rel_err(e, Y, 0, (size_t)n * dim);
    if (!(err >= 0 && err <= tol))
        th_fail(__FILE__, __LINE__, "moe_experts %s n=%d k=%d experts=%d [%d, %d]: rel err %g > %g", ob_dtype_name(t),
                n, k, n_exp, dim, inter, err, tol);
    if (out && (*out = malloc(xb))) e->vk->ops->download(e->vk, Y.v, 0, *out, xb);
    tv_free(e, &A), tv_free(e, &X), tv_free(e, &Y), tv_free(e, &I), tv_free(e, &Wt);
    free(x), free(y), free(wts), free(ids), free(all), free(m);
}

static void moe_case(tv_env *e, omni_rng *r, ob_dtype t, int n, int k, int n_exp, int dim, int inter, double tol) {
    moe_case_out(e, r, t, n, k, n_exp, dim, inter, tol, NULL);
}

static void moe_sweep(double tol) {
    TV_OPEN(e);
    omni_rng r = { 11 };
    moe_case(&e, &r, OB_BF16, 70, 4, 16, 128, 96, tol);  /* several 64-entry tiles for the popular experts */
    moe_case(&e, &r, OB_F16, 40, 2, 6, 200, 136, tol);   /* rows and cols off the 128 / 64 tile grid */
    moe_case(&e, &r, OB_BF16, 150, 8, 32, 256, 64, tol);  /* many experts, a few empty */
    moe_case(&e, &r, OB_Q8_0, 90, 4, 8, 256, 96, tol);    /* Q8_0 experts (dequantized into shared memory) */
    tv_close(&e);
}

TEST(vk_coopmat_moe_grouped) {
    setenv("OMNI_VK_MOE", "grouped", 1);
    moe_sweep(cm_offered() ? CM_TOL : F32_TOL);
}

TEST(vk_coopmat_moe_grouped_off) {
    setenv("OMNI_VK_MOE", "grouped", 1);
    setenv("OMNI_VK_NO_COOPMAT", "1", 1);
    CHECK(!cm_offered());
    moe_sweep(F32_TOL);
}

/* Every GEMM tile shape (OMNI_VK_CM_DENSE / OMNI_VK_CM_MOE), each with the grouped MoE's fused gate+up+swiglu form
 * (the default) and its three-pass form (OMNI_VK_MOE_FUSE=0), against the CPU, same shapes and tolerance as above; where the device has no cooperative
 * matrix (lavapipe) every shape is the same fp32 kernel, so the test only runs with it. */
TEST(vk_coopmat_tile_shapes) {
    if (!cm_offered()) return;
    static const char *const shapes[] = { "128x64", "128x32", "256x32", "256x64", "128x128" };
    setenv("OMNI_VK_MM", "tiled", 1);
    setenv("OMNI_VK_MOE", "grouped", 1);
    for (unsigned i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        printf("    tile shape %s\n", shapes[i]);
        setenv("OMNI_VK_CM_DENSE", shapes[i], 1);
        setenv("OMNI_VK_CM_MOE", shapes[i], 1);
        mm_sweep(CM_TOL);
        for (int fuse = 0; fuse < 2; fuse++) {
            setenv("OMNI_VK_MOE_FUSE", fuse ? "1" : "0", 1);
            moe_sweep(CM_TOL);
        }
    }
    unsetenv("OMNI_VK_CM_DENSE");
    unsetenv("OMNI_VK_CM_MOE");
    unsetenv("OMNI_VK_MOE_FUSE");
}

/* ---- the fp16-activation GEMM builds (OMNI_VK_CM_X16) against the plain ones ------------------------------------ */

/* max |a - b| / max |b| over n values (0 when identical) */
static double rel_diff(const float *a, const float *b, size_t n) {
    double md = 0, mr = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= md)) md = d; /* NaN too */
        if (fabs(b[i]) > mr) mr = fabs(b[i]);
    }
    return mr > 0 ? md / mr : md;
}

/* matmul_cm.comp's Q8_0 staging in packed fp16 arithmetic (Q8H, the default) against the fp32 products rounded once
 * (OMNI_VK_CM_Q8H=0): the same fp16 weights, so the same bits, on the grouped experts (the only Q8_0 products left
 * on matmul_cm where cm2 runs) with ragged rows (Q8_0 rows are whole 32-quant blocks), several tiles per expert and
 * k = 8. Tensor-core devices only. */
TEST(vk_coopmat_q8_decode_forms) {
    if (!cm_offered()) return;
    static const int cs[][5] = { { 90, 4, 8, 256, 96 }, { 150, 8, 32, 256, 64 }, { 40, 2, 6, 192, 160 } };
    setenv("OMNI_VK_MOE", "grouped", 1);
    TV_OPEN(e);
    for (unsigned ci = 0; ci < sizeof cs / sizeof *cs; ci++) {
        float *out[2] = { NULL, NULL };
        for (int f = 0; f < 2; f++) {
            setenv("OMNI_VK_CM_Q8H", f ? "1" : "0", 1);
            omni_rng r = { 41 + ci };
            moe_case_out(&e, &r, OB_Q8_0, cs[ci][0], cs[ci][1], cs[ci][2], cs[ci][3], cs[ci][4], CM_TOL, &out[f]);
        }
        if (out[0] && out[1]) {
            double d = rel_diff(out[1], out[0], (size_t)cs[ci][0] * cs[ci][3]);
            printf("    q8_0 n=%d k=%d: the two decodes differ by %.3g\n", cs[ci][0], cs[ci][1], d);
            CHECK(d == 0);
        } else {
            CHECK(0);
        }
        free(out[0]), free(out[1]);
    }
    tv_close(&e);
    unsetenv("OMNI_VK_CM_Q8H");
}

/* The grouped MoE's last steps in their forms: moe_combine.comp with 4 columns per thread (the default) gives the same
 * bits as one thread per element (OMNI_VK_COMBINE_V4=0; same slot order, same fp32 operations), both with fp32
 * partials (OMNI_VK_MOE_D16=0); the fp16 partials of the down projection (OMNI_VK_MOE_D16, the default where the
 * fp16 tensor-core path runs) stay within the tensor-core tolerance of the CPU. On lavapipe (no cooperative matrix)
 * only the combine forms differ. Shapes as moe_sweep's plus the thinker's k = 8. */
TEST(vk_coopmat_moe_combine_forms) {
    static const int cs[][5] = { { 70, 4, 16, 128, 96 }, { 40, 2, 6, 200, 136 }, { 150, 8, 32, 256, 64 } };
    static const ob_dtype ts[] = { OB_BF16, OB_F16, OB_Q8_0 };
    int cm = cm_offered();
    setenv("OMNI_VK_MOE", "grouped", 1);
    TV_OPEN(e);
    for (unsigned ci = 0; ci < sizeof cs / sizeof *cs; ci++) {
        float *out[3] = { NULL, NULL, NULL };
        static const char *const v4[3] = { "0", "1", "1" }, *const d16[3] = { "0", "0", "1" };
        for (int f = 0; f < 3; f++) {
            setenv("OMNI_VK_COMBINE_V4", v4[f], 1);
            setenv("OMNI_VK_MOE_D16", d16[f], 1);
            omni_rng r = { 29 + ci };
            moe_case_out(&e, &r, ts[ci], cs[ci][0], cs[ci][1], cs[ci][2], cs[ci][3], cs[ci][4], cm ? CM_TOL : F32_TOL,
                         &out[f]);
        }
        size_t ny = (size_t)cs[ci][0] * cs[ci][3];
        if (out[0] && out[1] && out[2]) {
            double same = rel_diff(out[1], out[0], ny), half = rel_diff(out[2], out[0], ny);
            printf("    %s n=%d k=%d: combine forms differ by %.3g, fp16 partials by %.3g\n", ob_dtype_name(ts[ci]),
                   cs[ci][0], cs[ci][1], same, half);
            CHECK(same == 0);
        } else {
            CHECK(0);
        }
        for (int f = 0; f < 3; f++) free(out[f]);
    }
    tv_close(&e);
    unsetenv("OMNI_VK_COMBINE_V4");
    unsetenv("OMNI_VK_MOE_D16");
}

/* the GEMM build switches the comparisons below set: every one is unset, then a list "NAME=VALUE,..." applied;
 * the NV cooperative matrix 2 GEMM (on by default where the device has it) is off unless the list turns it on, so
 * the comparisons of matmul_cm.comp's builds compare those */
static const char *const cm_switch_names[] = { "OMNI_VK_CM_X16",    "OMNI_VK_CM2",          "OMNI_VK_CM2_MOE",
                                               "OMNI_VK_CM2_SMALL", "OMNI_VK_CM2_SPLIT_BELOW", "OMNI_VK_CM2_Q8",
                                               "OMNI_VK_CM2_Q8BLK", "OMNI_VK_MOE_D16",  "OMNI_VK_KSUM_V4" };
static void apply_switches(const char *list) {
    for (unsigned i = 0; i < sizeof cm_switch_names / sizeof *cm_switch_names; i++) unsetenv(cm_switch_names[i]);
    setenv("OMNI_VK_CM2", "0", 1);
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');
        if (!eq) continue;
        *eq = 0;
        setenv(tok, eq + 1, 1);
    }
}

/* The dense sweep's shapes (mm_sweep's), and every form of the grouped MoE (moe_sweep's cases, fused and three-pass)
 * with the switches `var` on, each against the CPU (CM_TOL), and against the same inputs with the switches `base`
 * on. The builds compared here stage the same fp16 operands and sum the same 16-column MMAs in the same order, so
 * the results should match exactly; the largest difference is printed, and anything past 1e-4 (a few fp16 ulps of
 * silu(gate)·up rounded by a different instruction, at most) fails. One back-end per call. */
#define CM_VS_DEFAULT_TOL 1e-4
/* the weight types the dense sweep takes (bit i: types[i] of sweep_vs_tol; the Q8_0 tests narrow it) */
static unsigned g_sweep_types = 7u;
static const int sweep_shapes[][3] = { { 128, 64, 64 }, { 200, 72, 70 }, { 130, 520, 129 }, { 256, 2048, 100 },
                                       { 64, 8, 9 },    { 384, 136, 17 }, { 128, 2048, 100 }, { 256, 128, 192 },
                                       { 96, 544, 40 } };
static void sweep_vs_tol(const char *base, const char *var, const int (*shapes)[3], unsigned n_shapes, int moe,
                         const char *what, double tol_vs) {
    TV_OPEN(e);
    omni_rng r = { 7 };
    const ob_dtype types[] = { OB_F16, OB_BF16, OB_Q8_0 };
    double worst = 0;
    for (unsigned i = 0; i < n_shapes; i++)
        for (int ti = 0; ti < 3; ti++)
            for (int acc = 0; acc < 2; acc++) {
                if ((types[ti] == OB_Q8_0 && shapes[i][1] % 32) || !(g_sweep_types >> ti & 1u)) continue;
                omni_rng r0 = r;
                float *a = NULL, *b = NULL;
                apply_switches(base);
                mm_case_out(&e, &r0, types[ti], shapes[i][0], shapes[i][1], shapes[i][2], acc, &a);
                apply_switches(var);
                double err = mm_case_out(&e, &r, types[ti], shapes[i][0], shapes[i][1], shapes[i][2], acc, &b);
                double d = a && b ? rel_diff(b, a, (size_t)shapes[i][0] * shapes[i][2]) : 1e30;
                if (d > worst) worst = d;
                if (!(err >= 0 && err <= CM_TOL) || !(d <= tol_vs))
                    th_fail(__FILE__, __LINE__, "%s: matmul %s [%d x %d] n=%d acc=%d: rel err %g (tol %g), vs [%s] %g",
                            what, ob_dtype_name(types[ti]), shapes[i][0], shapes[i][1], shapes[i][2], acc, err, CM_TOL,
                            base, d);
                free(a), free(b);
            }
    static const struct {
        ob_dtype t;
        int n, k, n_exp, dim, inter;
    } mc[] = { { OB_BF16, 70, 4, 16, 128, 96 }, { OB_F16, 40, 2, 6, 200, 136 }, { OB_BF16, 150, 8, 32, 256, 64 },
               { OB_Q8_0, 90, 4, 8, 256, 96 } };
    omni_rng rm = { 11 };
    for (int fuse = 0; fuse < 2 * (moe != 0); fuse++) {
        setenv("OMNI_VK_MOE_FUSE", fuse ? "1" : "0", 1);
        for (unsigned i = 0; i < sizeof mc / sizeof *mc; i++) {
            omni_rng r0 = rm;
            float *a = NULL, *b = NULL;
            apply_switches(base);
            moe_case_out(&e, &r0, mc[i].t, mc[i].n, mc[i].k, mc[i].n_exp, mc[i].dim, mc[i].inter, CM_TOL, &a);
            apply_switches(var);
            moe_case_out(&e, &rm, mc[i].t, mc[i].n, mc[i].k, mc[i].n_exp, mc[i].dim, mc[i].inter, CM_TOL, &b);
            double d = a && b ? rel_diff(b, a, (size_t)mc[i].n * mc[i].dim) : 1e30;
            if (d > worst) worst = d;
            if (!(d <= tol_vs))
                th_fail(__FILE__, __LINE__, "%s: moe %s fuse=%d case %u: vs [%s] %g", what, ob_dtype_name(mc[i].t),
                        fuse, i, base, d);
            free(a), free(b);
        }
    }
    unsetenv("OMNI_VK_MOE_FUSE");
    for (unsigned i = 0; i < sizeof cm_switch_names / sizeof *cm_switch_names; i++) unsetenv(cm_switch_names[i]);
    printf("    %s: largest difference to [%s] %.3g%s\n", what, base, worst, worst == 0 ? " (identical)" : "");
    tv_close(&e);
}

static void sweep_vs(const char *base, const char *var, const int (*shapes)[3], unsigned n_shapes, int moe,
                     const char *what) {
    sweep_vs_tol(base, var, shapes, n_shapes, moe, what, CM_VS_DEFAULT_TOL);
}

/* Every tile shape with OMNI_VK_CM_X16=2 (the grouped MoE and the dense form on fp16 activations, the default)
 * against OMNI_VK_CM_X16=0 (x converted in every tile), over the dense (odd shapes, split-K, accumulation,
 * f16/bf16/Q8_0) and grouped (fused gate+up and three-pass) sweeps; on a device without NV cooperative matrix
 * (lavapipe) there is nothing to switch: skipped. */
TEST(vk_coopmat_x16) {
    if (!cm_offered()) {
        printf("    SKIP: no NV cooperative matrix (the builds run only on tensor cores)\n");
        return;
    }
    static const char *const shapes[] = { "128x64", "128x32", "256x32", "256x64", "128x128" };
    setenv("OMNI_VK_MM", "tiled", 1);
    setenv("OMNI_VK_MOE", "grouped", 1);
    for (unsigned i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        setenv("OMNI_VK_CM_DENSE", shapes[i], 1);
        setenv("OMNI_VK_CM_MOE", shapes[i], 1);
        char what[96];
        snprintf(what, sizeof what, "tile %s, OMNI_VK_CM_X16=2", shapes[i]);
        /* fp32 expert partials on both sides (the fp16 ones: vk_coopmat_moe_combine_forms) */
        sweep_vs("OMNI_VK_CM_X16=0", "OMNI_VK_CM_X16=2,OMNI_VK_MOE_D16=0", sweep_shapes,
                 sizeof sweep_shapes / sizeof *sweep_shapes, 1, what);
    }
    unsetenv("OMNI_VK_CM_DENSE");
    unsetenv("OMNI_VK_CM_MOE");
}

/* OMNI_VK_CM_X16=2 reuses the fp16 copy of x across products while nothing else ran: products of one x in a row
 * (as q, k, v; a small one split over K included) must be right, and so must a product after x changed through a
 * kernel (add), a transfer (upload) or a tensor-core product. Shapes: [1024 x 256] x 256 rows fill 32 tiles (no
 * split-K, so x is converted); [128 x 256] is split over K (it only takes an fp16 copy already there). Runs on
 * lavapipe too (fp32 kernel) for the test's own sake. */
TEST(vk_coopmat_x16_reuse) {
    double tol = cm_offered() ? CM_TOL : F32_TOL; /* lavapipe: the fp32 kernel, the switch changes nothing */
    setenv("OMNI_VK_MM", "tiled", 1);
    setenv("OMNI_VK_CM_X16", "2", 1);
    TV_OPEN(e);
    omni_rng r = { 31 };
    enum { N = 256, COLS = 256, BIG = 1024, SMALL = 128 };
    size_t wb, wbs;
    void *w1 = tv_weights(&r, OB_BF16, BIG, COLS, &wb), *w2 = tv_weights(&r, OB_BF16, BIG, COLS, &wb);
    void *w3 = tv_weights(&r, OB_BF16, SMALL, COLS, &wbs), *w4 = tv_weights(&r, OB_BF16, COLS, COLS, &wbs);
    size_t xb = sizeof(float) * N * COLS;
    float *x = malloc(xb), *dx = malloc(xb);
    tv_rand(&r, x, (size_t)N * COLS, 1.0f);
    tv_rand(&r, dx, (size_t)N * COLS, 1.0f);
    tv_buf W1 = tv_new(&e, w1, wb, 0), W2 = tv_new(&e, w2, wb, 0), W3 = tv_new(&e, w3, ob_dtype_bytes(OB_BF16, SMALL * COLS), 0),
           W4 = tv_new(&e, w4, ob_dtype_bytes(OB_BF16, COLS * COLS), 0), X = tv_new(&e, x, xb, 0),
           X2 = tv_new(&e, x, xb, 0), D = tv_new(&e, dx, xb, 0), Y = tv_new(&e, NULL, sizeof(float) * N * BIG, 0);
    ob_mat mv[4] = { ob_mat_make(tv_pv(W1, 0), OB_BF16, BIG, COLS), ob_mat_make(tv_pv(W2, 0), OB_BF16, BIG, COLS),
                     ob_mat_make(tv_pv(W3, 0), OB_BF16, SMALL, COLS), ob_mat_make(tv_pv(W4, 0), OB_BF16, COLS, COLS) };
    ob_mat mc[4] = { ob_mat_make(tv_pc(W1, 0), OB_BF16, BIG, COLS), ob_mat_make(tv_pc(W2, 0), OB_BF16, BIG, COLS),
                     ob_mat_make(tv_pc(W3, 0), OB_BF16, SMALL, COLS), ob_mat_make(tv_pc(W4, 0), OB_BF16, COLS, COLS) };
    /* per step: the weight, and what happens to x before it (0 nothing, 1 add, 2 upload, 3 a product into x) */
    static const int steps[][2] = { { 0, 0 }, { 1, 0 }, { 2, 0 }, { 0, 1 }, { 1, 0 }, { 2, 0 }, { 0, 2 }, { 1, 3 } };
    for (unsigned st = 0; st < sizeof steps / sizeof *steps; st++) {
        int wi = steps[st][0], rows = (int)mv[wi].rows;
        if (steps[st][1] == 1) { /* x += d by a kernel */
            e.vk->ops->add(e.vk, tv_pv(D, 0), tv_pv(X, 0), (int64_t)N * COLS);
            e.cpu->ops->add(e.cpu, tv_pc(D, 0), tv_pc(X, 0), (int64_t)N * COLS);
        } else if (steps[st][1] == 2) { /* x = d by a transfer */
            e.vk->ops->upload(e.vk, X.v, 0, dx, xb);
            e.cpu->ops->upload(e.cpu, X.c, 0, dx, xb);
        } else if (steps[st][1] == 3) { /* x += w4 · x2 by a tensor-core product (x2's copy replaces x's) */
            e.vk->ops->matmul(e.vk, &mv[3], tv_pv(X2, 0), tv_pv(X, 0), N, 1);
            e.cpu->ops->matmul(e.cpu, &mc[3], tv_pc(X2, 0), tv_pc(X, 0), N, 1);
        }
        e.vk->ops->matmul(e.vk, &mv[wi], tv_pv(X, 0), tv_pv(Y, 0), N, 0);
        e.cpu->ops->matmul(e.cpu, &mc[wi], tv_pc(X, 0), tv_pc(Y, 0), N, 0);
        double err = tv_rel_err(&e, Y, 0, (size_t)N * rows);
        printf("    step %u ([%d x %d], x change %d): rel err %.3g\n", st, rows, COLS, steps[st][1], err);
        if (!(err >= 0 && err <= tol)) th_fail(__FILE__, __LINE__, "x16 reuse step %u: rel err %g", st, err);
    }
    tv_free(&e, &W1), tv_free(&e, &W2), tv_free(&e, &W3), tv_free(&e, &W4), tv_free(&e, &X), tv_free(&e, &X2);
    tv_free(&e, &D), tv_free(&e, &Y);
    free(w1), free(w2), free(w3), free(w4), free(x), free(dx);
    tv_close(&e);
    unsetenv("OMNI_VK_CM_X16");
}

/* ---- prefill attention (attn_flash_cm.comp: head_dim 128, and 64 / 72 on the padded builds) --------------------- */

typedef struct {
    int heads, kv, n_ctx, pos0, n, causal, window;
} cm_attn_case;

static void attn_cases(tv_env *ep, double tol, int hd) {
    tv_env e = *ep; /* the two back-end handles, copied */
    const cm_attn_case cases[] = {
        { 8, 2, 300, 0, 200, 1, 0 },    /* prefill from position 0, GQA, n not a multiple of 64 */
        { 4, 4, 300, 100, 150, 1, 64 }, /* after a cached prefix, sliding window */
        { 4, 1, 128, 0, 70, 0, 0 },     /* bidirectional, MQA */
        { 2, 2, 400, 331, 65, 1, 0 },   /* a short chunk late in the context */
        { 4, 2, 200, 30, 100, 1, 0 },   /* GQA groups of 2 (two heads per workgroup) after a prefix */
        { 8, 1, 64, 10, 5, 1, 0 },      /* 5 queries: one workgroup of 16 queries x 4 heads, 11 of them empty */
    };
    omni_rng r = { 23 };
    for (unsigned ci = 0; ci < sizeof cases / sizeof *cases; ci++) {
        cm_attn_case c = cases[ci];
        ob_attn a = { c.heads, c.kv, hd, 1.0f / sqrtf((float)hd), c.causal, c.window, 0 };
        size_t cache_n = (size_t)c.kv * c.n_ctx * hd, kv_n = (size_t)c.n * c.kv * hd, q_n = (size_t)c.n * c.heads * hd;
        float *cache = malloc(cache_n * 4), *k = malloc(kv_n * 4), *v = malloc(kv_n * 4), *q = malloc(q_n * 4);
        tv_rand(&r, cache, cache_n, 1.0f);
        tv_rand(&r, k, kv_n, 1.0f);
        tv_rand(&r, v, kv_n, 1.0f);
        tv_rand(&r, q, q_n, 2.0f);
        /* an fp16 cache (the Vulkan default for these head dims): k and v rounded to fp16 on the host, so both
         * back-ends attend over the same values (the tensor-core kernel rounds them to fp16 either way) */
        if (tv_kv16(&e, hd)) tv_round_f16(k, kv_n), tv_round_f16(v, kv_n);
        tv_buf KC = tv_new_cache(&e, cache, cache_n, hd), VC = tv_new_cache(&e, cache, cache_n, hd),
               K = tv_new(&e, k, kv_n * 4, 0), V = tv_new(&e, v, kv_n * 4, 0), Q = tv_new(&e, q, q_n * 4, 0),
               O = tv_new(&e, NULL, q_n * 4, 0);
        e.vk->ops->kv_store(e.vk, tv_pv(KC, 0), tv_pv(VC, 0), c.n_ctx, tv_pv(K, 0), tv_pv(V, 0), c.pos0, c.n, &a);
        e.cpu->ops->kv_store(e.cpu, tv_pc(KC, 0), tv_pc(VC, 0), c.n_ctx, tv_pc(K, 0), tv_pc(V, 0), c.pos0, c.n, &a);
        e.vk->ops->attention(e.vk, tv_pv(Q, 0), tv_pv(KC, 0), tv_pv(VC, 0), c.n_ctx, tv_pv(O, 0), c.pos0, c.n, &a);
        e.cpu->ops->attention(e.cpu, tv_pc(Q, 0), tv_pc(KC, 0), tv_pc(VC, 0), c.n_ctx, tv_pc(O, 0), c.pos0, c.n, &a);
        double err = tv_rel_err(&e, O, 0, q_n);
        printf("    attention head_dim %d case %u: rel err %.3g\n", hd, ci, err);
        if (!(err >= 0 && err <= tol))
            th_fail(__FILE__, __LINE__, "attention head_dim %d case %u: rel err %g > %g", hd, ci, err, tol);
        tv_free(&e, &KC), tv_free(&e, &VC), tv_free(&e, &K), tv_free(&e, &V), tv_free(&e, &Q), tv_free(&e, &O);
        free(cache), free(k), free(v), free(q);
    }
}

static void attn_sweep_hd(double tol, int hd) {
    TV_OPEN(e);
    attn_cases(&e, tol, hd);
    tv_close(&e);
}

/* the thinker's head dim, and the vision (72, padded to 80) and audio (64) encoders' */
static void attn_sweep(double tol) {
    static const int hds[] = { 128, 72, 64 };
    for (unsigned i = 0; i < sizeof hds / sizeof *hds; i++) attn_sweep_hd(tol, hds[i]);
}

/* one kernel variant (an OMNI_VK_ATTN_CM_* switch) over some head dims; each new variant costs the NVIDIA driver
 * seconds of pipeline compilation per head dim, so the variants that do not depend on it take 128 only */
static void attn_variant(const char *name, const char *val, int all_dims) {
    setenv(name, val, 1);
    printf("    %s=%s\n", name, val);
    if (all_dims) attn_sweep(CM_ATTN_TOL);
    else attn_sweep_hd(CM_ATTN_TOL, 128);
    unsetenv(name);
}

TEST(vk_coopmat_attention) {
    setenv("OMNI_VK_ATTN_CM", "1", 1); /* the default; set in case the environment turned it off */
    unsetenv("OMNI_VK_ATTN_CM_SMALL"); /* the padded builds for head dims 64 and 72: on by default */
    unsetenv("OMNI_VK_ATTN_CM_HPW");
    unsetenv("OMNI_VK_ATTN_CM_TAU");
    int cm = cm_offered();
    attn_sweep(cm ? CM_ATTN_TOL : F32_TOL);
    if (!cm) return; /* lavapipe: the fp32 kernel, the variants below would repeat it */
    /* the exact online softmax (O rescaled at every raise of a row maximum: the rescaling path, which the default
     * lazy maximum rarely takes on these scores), one and two heads per workgroup */
    attn_variant("OMNI_VK_ATTN_CM_TAU", "0", 1);
    attn_variant("OMNI_VK_ATTN_CM_HPW", "1", 0);
    attn_variant("OMNI_VK_ATTN_CM_HPW", "2", 0);
    attn_variant("OMNI_VK_KV_F32", "1", 1); /* fp32 caches, converted as the blocks are staged */
}

TEST(vk_coopmat_attention_off) {
    setenv("OMNI_VK_ATTN_CM", "1", 1);
    setenv("OMNI_VK_NO_COOPMAT", "1", 1);
    CHECK(!cm_offered());
    attn_sweep(F32_TOL);
}

/* Dense products large enough that the KHR matmul_cm takes them from cm2 (vk_coopmat.c cm_big: 128 tiles of 128 x
 * 128, or for Q8_0 of 128 x 64), with OMNI_VK_CM_BIG on and off, against the CPU. Tensor-core devices only. */
TEST(vk_coopmat_big) {
    if (!cm_offered()) SKIP("no cooperative matrix: the fp32 kernel takes every product");
    setenv("OMNI_VK_MM", "tiled", 1);
    static const struct { ob_dtype t; int rows, cols, n; } cs[] = {
        { OB_BF16, 4096, 96, 512 }, { OB_F16, 4096, 160, 520 }, { OB_Q8_0, 4096, 128, 512 }, { OB_Q8_0, 2048, 96, 512 },
        { OB_BF16, 2048, 64, 512 },
    };
    for (int big = 0; big < 2; big++) {
        setenv("OMNI_VK_CM_BIG", big ? "1" : "0", 1);
        TV_OPEN(e);
        omni_rng r = { 5 };
        for (unsigned i = 0; i < sizeof cs / sizeof *cs; i++)
            for (int acc = 0; acc < 2; acc++) {
                double err = mm_case(&e, &r, cs[i].t, cs[i].rows, cs[i].cols, cs[i].n, acc);
                if (!(err >= 0 && err <= CM_TOL))
                    th_fail(__FILE__, __LINE__, "OMNI_VK_CM_BIG=%d matmul %s [%d x %d] n=%d acc=%d: rel err %g > %g",
                            big, ob_dtype_name(cs[i].t), cs[i].rows, cs[i].cols, cs[i].n, acc, err, CM_TOL);
            }
        tv_close(&e);
    }
}

/* The NV cooperative-matrix builds of the tensor-core kernels (OMNI_VK_CM_KHR=0) where the device also runs the KHR
 * ones (NVIDIA; the KHR twins are its default): the dense and grouped GEMMs and the prefill attention against the
 * CPU with the same tolerances as the default tests above. Skipped on devices with one flavour or none. */
TEST(vk_coopmat_nv_builds) {
    ob_vk_device_info info[8];
    char err[256];
    int nd = ob_vulkan_list_devices(info, 8, err, sizeof err), d = ob_vulkan_default_device();
    if (!(nd > 0 && d >= 0 && d < nd && info[d].cm_kernels == 2 && info[d].coopmat_nv))
        SKIP("the device does not offer both NV and KHR cooperative matrix");
    setenv("OMNI_VK_CM_KHR", "0", 1);
    ob_vulkan_list_devices(info, 8, err, sizeof err);
    CHECK(info[d].cm_kernels == 1);
    setenv("OMNI_VK_MM", "tiled", 1);
    setenv("OMNI_VK_CM2", "0", 1); /* the dense products on matmul_cm too */
    mm_sweep(CM_TOL);
    setenv("OMNI_VK_MOE", "grouped", 1);
    moe_sweep(CM_TOL);
    setenv("OMNI_VK_ATTN_CM", "1", 1);
    attn_sweep(CM_ATTN_TOL);
}

/* ---- the NV cooperative matrix 2 GEMM (matmul_cm2.comp, OMNI_VK_CM2=1) ------------------------------------------ */

/* the device-open log line says whether the back-end took it ("nv2-gemm 1": the device has workgroup-scope fp16
 * shapes and the build has the shader, GLSLC2) */
static int g_cm2_seen = -1;
static void cm2_log(int level, const char *msg, void *ud) {
    const char *p = strstr(msg, "nv2-gemm ");
    if (p) g_cm2_seen = atoi(p + 9);
    tv_log(level, msg, ud);
}
static int cm2_offered(void) {
    if (!cm_offered()) return 0;
    g_cm2_seen = -1;
    char why[256] = "";
    omni_log_set_sink(cm2_log, NULL);
    ob_backend *b = ob_vulkan_new(-1, why, sizeof why);
    if (b) b->ops->destroy(b);
    omni_log_set_sink(tv_log, NULL);
    printf("    NV cooperative matrix 2 GEMM: %s\n",
           g_cm2_seen > 0 ? "on" : "off (no device support or no GLSLC2 build)");
    return g_cm2_seen > 0;
}

/* the cm2 tests below skip (reported as skipped) where the device or the build lacks the GEMM; they keep every
 * dense product on it (OMNI_VK_CM_BIG=0: none handed to matmul_cm for its size) */
#define REQUIRE_CM2()                                                                                            \
    do {                                                                                                        \
        if (!cm2_offered()) SKIP("no NV cooperative matrix 2 GEMM on this device/build");                      \
        setenv("OMNI_VK_CM_BIG", "0", 1);                                                                       \
    } while (0)

/* The dense sweep's shapes plus one of projection size ([1024 x 2048] x 512: whole 128 x 128 tiles, the unclamped
 * path), every x row count (OMNI_VK_CM2_MIN_N=0), with OMNI_VK_CM2=1 against the CPU (CM_TOL: the same fp16 operands
 * as matmul_cm, bf16 weights rounded to fp16 once, fp32 sums) and against matmul_cm's result (OMNI_VK_CM2=0): the
 * driver sums the same products in its own order, so a few fp32 ulps of the largest value differ (bound 1e-4 relative,
 * as the x16 comparison). Ragged tiles (clamped loads and stores), cols not a multiple of the K step, split-K planes
 * ({256, 2048, 100}) and accumulation are all in the sweep; each tile shape the switch offers once. Skipped where the
 * device or build lacks it. */
TEST(vk_coopmat_cm2) {
    REQUIRE_CM2();
    static const int shapes[][3] = { { 128, 64, 64 },  { 200, 72, 70 },   { 130, 520, 129 }, { 256, 2048, 100 },
                                     { 64, 8, 9 },     { 384, 136, 17 },  { 128, 2048, 100 }, { 256, 128, 192 },
                                     { 96, 544, 40 },  { 1024, 2048, 512 } };
    static const char *const tiles[] = { "128x128x64", "128x128x32", "128x64x32", "256x128x64" };
    setenv("OMNI_VK_MM", "tiled", 1);
    setenv("OMNI_VK_CM2_MIN_N", "0", 1); /* the small products too (by default they stay on matmul_cm) */
    for (unsigned i = 0; i < sizeof tiles / sizeof *tiles; i++) {
        setenv("OMNI_VK_CM2_TILE", tiles[i], 1);
        char what[96];
        snprintf(what, sizeof what, "OMNI_VK_CM2=1 tile %s", tiles[i]);
        sweep_vs_tol("OMNI_VK_CM2=0", "OMNI_VK_CM2=1", shapes, sizeof shapes / sizeof *shapes, 0, what, 1e-4);
    }
    /* the plain tensor loads of the fp16 operands (OMNI_VK_CM2_BLK=0; block loads are the default) */
    setenv("OMNI_VK_CM2_TILE", "128x128x64", 1);
    setenv("OMNI_VK_CM2_BLK", "0", 1);
    sweep_vs_tol("OMNI_VK_CM2=0", "OMNI_VK_CM2=1", shapes, sizeof shapes / sizeof *shapes, 0,
                 "OMNI_VK_CM2=1 OMNI_VK_CM2_BLK=0 tile 128x128x64", 1e-4);
    unsetenv("OMNI_VK_CM2_BLK");
    unsetenv("OMNI_VK_CM2_TILE");
}

/* The split-K sum 4 elements per thread (mm_ksum.comp V4, OMNI_VK_KSUM_V4=1, the default) against one per thread
 * (=0): the same planes summed in the same order, so identical results (tolerance 0), on matmul_cm and (where the
 * device has it) matmul_cm2, with and without accumulation; products split over K (router-, k/v- and o-like shapes
 * at small scale) and one whose rows are not a multiple of 4 (the scalar form either way). */
TEST(vk_coopmat_ksum_v4) {
    if (!cm_offered()) SKIP("no NV cooperative matrix: no split-K GEMM on this device");
    static const int shapes[][3] = { { 256, 2048, 100 }, { 128, 2048, 512 }, { 512, 2048, 512 }, { 1024, 256, 1024 },
                                     { 130, 520, 129 } };
    const unsigned ns = sizeof shapes / sizeof *shapes;
    setenv("OMNI_VK_MM", "tiled", 1);
    setenv("OMNI_VK_CM2_MIN_N", "0", 1);
    sweep_vs_tol("OMNI_VK_KSUM_V4=0", "OMNI_VK_KSUM_V4=1", shapes, ns, 0, "split-K sum V4 on matmul_cm", 0);
    if (cm2_offered())
        sweep_vs_tol("OMNI_VK_CM2=1,OMNI_VK_KSUM_V4=0", "OMNI_VK_CM2=1,OMNI_VK_KSUM_V4=1", shapes, ns, 0,
                     "split-K sum V4 on matmul_cm2", 0);
    unsetenv("OMNI_VK_CM2_MIN_N");
}

/* The tile chosen by size (no OMNI_VK_CM2_TILE): products with fewer 128 x 128 tiles than a wave ({1024, 256,
 * 1024}: 64 tiles; {1000, 136, 1000} ragged; {512, 2048, 512}: 16) split over K where their columns allow, and with
 * the threshold lowered to 64 (OMNI_VK_CM2_SPLIT_BELOW=64) the first two take 128 x 64 tiles instead. Against the
 * CPU (CM_TOL) and matmul_cm (1e-4, as vk_coopmat_cm2). */
TEST(vk_coopmat_cm2_fill) {
    REQUIRE_CM2();
    static const int shapes[][3] = { { 1024, 256, 1024 }, { 1000, 136, 1000 }, { 512, 2048, 512 } };
    setenv("OMNI_VK_MM", "tiled", 1);
    setenv("OMNI_VK_CM2_MIN_N", "0", 1); /* 136 rows: below the default bound */
    sweep_vs_tol("OMNI_VK_CM2=0", "OMNI_VK_CM2=1", shapes, 3, 0, "OMNI_VK_CM2=1 (tile by size)", 1e-4);
    sweep_vs_tol("OMNI_VK_CM2=0", "OMNI_VK_CM2=1,OMNI_VK_CM2_SPLIT_BELOW=64", shapes, 3, 0,
                 "OMNI_VK_CM2=1 128 x 64 tiles from 64 tiles", 1e-4);
}

/* Q8_0 weights on NV cooperative matrix 2 (OMNI_VK_CM2_Q8=1: the tensor block loads dequantize q·d to fp16 in a
 * decode function): against the CPU (CM_TOL: the same fp16 operands as matmul_cm's Q8_0, q·d rounded once, fp32
 * sums) and against matmul_cm's Q8_0 result (OMNI_VK_CM2=0; identical operands, the driver's summation order: bound
 * 1e-4 relative, as vk_coopmat_cm2). Shapes: the dense sweep's with cols % 32 == 0 (ragged rows and x rows, cols
 * not a multiple of the K step, split-K planes, accumulation) plus whole 128 x 128 tiles ([1024 x 2048] x 512: the
 * unclamped path) and the tile-by-size ones of vk_coopmat_cm2_fill (split over K); each decode block (4, 8, 16, 32
 * quants) with the default tile, the default block with each tile of the switch. */
TEST(vk_coopmat_cm2_q8) {
    REQUIRE_CM2();
    static const int shapes[][3] = { { 128, 64, 64 },   { 130, 520, 129 },    { 256, 2048, 100 }, { 64, 32, 9 },
                                     { 128, 2048, 100 }, { 256, 128, 192 },   { 96, 544, 40 },    { 1024, 2048, 512 },
                                     { 1024, 256, 1024 }, { 1000, 160, 1000 }, { 512, 2048, 512 } };
    static const char *const blocks[] = { "4", "8", "16", "32" };
    static const char *const tiles[] = { "128x128x32", "128x64x32", "256x128x64" };
    const unsigned ns = sizeof shapes / sizeof *shapes;
    setenv("OMNI_VK_MM", "tiled", 1);
    setenv("OMNI_VK_CM2_MIN_N", "0", 1); /* every x row count (by default 512..2048 take cm2) */
    g_sweep_types = 1u << 2; /* Q8_0 only */
    for (unsigned i = 0; i < sizeof blocks / sizeof *blocks; i++) {
        char var[128], what[96];
        snprintf(var, sizeof var, "OMNI_VK_CM2=1,OMNI_VK_CM2_Q8=1,OMNI_VK_CM2_Q8BLK=%s", blocks[i]);
        snprintf(what, sizeof what, "Q8_0 on cm2, decode block %s", blocks[i]);
        sweep_vs_tol("OMNI_VK_CM2=0", var, shapes, ns, 0, what, 1e-4);
    }
    for (unsigned i = 0; i < sizeof tiles / sizeof *tiles; i++) {
        setenv("OMNI_VK_CM2_TILE", tiles[i], 1);
        char what[96];
        snprintf(what, sizeof what, "Q8_0 on cm2, tile %s", tiles[i]);
        sweep_vs_tol("OMNI_VK_CM2=0", "OMNI_VK_CM2=1,OMNI_VK_CM2_Q8=1", shapes, ns, 0, what, 1e-4);
    }
    unsetenv("OMNI_VK_CM2_TILE");
    g_sweep_types = 7u;
}

/* The grouped MoE on NV cooperative matrix 2 (matmul_cm2_moe.comp, OMNI_VK_CM2_MOE=1): moe_sweep's cases (ragged
 * expert rows, inter and dim off the tile grid, empty experts, Q8_0 left to matmul_cm) against the CPU (CM_TOL)
 * and against matmul_cm's fused fp16 path; the fp16 h of silu(gate)·up is rounded from fp32 sums taken in another
 * order, so an element may round one fp16 ulp (5e-4 relative) apart: bound 1e-3. One case of whole tiles (gate and
 * up [256 x 512], down [512 x 256]: the unclamped weight loads) against the CPU. */
TEST(vk_coopmat_cm2_moe) {
    REQUIRE_CM2();
    /* matmul_cm's side with fp32 partials, as cm2's (its fp16 ones: vk_coopmat_moe_combine_forms) */
    sweep_vs_tol("OMNI_VK_CM2_MOE=0,OMNI_VK_MOE_D16=0", "OMNI_VK_CM2_MOE=1", NULL, 0, 1, "OMNI_VK_CM2_MOE=1", 1e-3);
    setenv("OMNI_VK_CM2_MOE", "1", 1);
    TV_OPEN(e);
    omni_rng r = { 5 };
    moe_case(&e, &r, OB_BF16, 300, 8, 16, 512, 256, CM_TOL);
    moe_case(&e, &r, OB_F16, 300, 8, 16, 512, 256, CM_TOL);
    tv_close(&e);
    unsetenv("OMNI_VK_CM2_MOE");
}

/* ---- the on-disk pipeline cache (vk_exec.c, OMNI_VK_PIPELINE_CACHE) -------------------------------------------- */

static uint64_t pc_fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* a cache file: our header (magic, payload size, FNV-1a) over `payload` with `len` in the header */
static void pc_write(const char *path, const void *payload, size_t n, uint64_t len, int good_sum) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f) return;
    uint64_t h = pc_fnv1a(payload, n) ^ (good_sum ? 0u : 1u);
    fwrite("omniPC01", 1, 8, f);
    fwrite(&len, 8, 1, f);
    fwrite(&h, 8, 1, f);
    fwrite(payload, 1, n, f);
    fclose(f);
}

/* one back-end on the cache file: a matmul comes out right and the file is rewritten whole (our magic) */
static void pc_round(const char *path, const char *what) {
    TV_OPEN(e);
    omni_rng r = { 3 };
    double tol = cm_offered() ? CM_TOL : F32_TOL, err = mm_case(&e, &r, OB_BF16, 96, 64, 40, 0);
    if (!(err >= 0 && err <= tol)) th_fail(__FILE__, __LINE__, "%s: matmul rel err %g > %g", what, err, tol);
    tv_close(&e);
    FILE *f = fopen(path, "rb");
    char magic[8] = "";
    size_t got = f ? fread(magic, 1, 8, f) : 0;
    if (f) fclose(f);
    if (got != 8 || memcmp(magic, "omniPC01", 8)) th_fail(__FILE__, __LINE__, "%s: cache file not rewritten", what);
}

/* Damaged and foreign cache files are ignored (no crash, correct results, the file rewritten), and a file the
 * previous back-end wrote is taken. */
TEST(vk_pipeline_cache) {
    char path[] = "/tmp/omni_pcache_XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    close(fd);
    setenv("OMNI_VK_PIPELINE_CACHE", path, 1);
    pc_round(path, "empty file");
    pc_round(path, "the file just written");
    unsigned char junk[4096];
    for (size_t i = 0; i < sizeof junk; i++) junk[i] = (unsigned char)(i * 131u + 7u);
    FILE *f = fopen(path, "wb"); /* no header of ours */
    if (f) fwrite(junk, 1, sizeof junk, f), fclose(f);
    pc_round(path, "garbage");
    pc_write(path, junk, sizeof junk, sizeof junk, 0); /* checksum off by one bit */
    pc_round(path, "bad checksum");
    pc_write(path, junk, sizeof junk, sizeof junk + 100, 1); /* truncated */
    pc_round(path, "truncated");
    /* whole and checksummed, but Vulkan's header names another device (vendor 0xdead, device 0xbeef) */
    uint32_t hdr[8] = { 32, 1, 0xdeadu, 0xbeefu, 0, 0, 0, 0 };
    memcpy(junk, hdr, sizeof hdr);
    pc_write(path, junk, sizeof junk, sizeof junk, 1);
    pc_round(path, "foreign device");
    unsetenv("OMNI_VK_PIPELINE_CACHE");
    remove(path);
}

/* The prefill RMSNorm writes the fp16 copy that the tensor-core GEMMs read (vk_x16_offer): norm then three products
 * of its output (the copy reused), then a write into the normalised rows (an elementwise add, which must retire the
 * copy) and a fourth product, all against the CPU. Weights bf16 and Q8_0, 64 rows of 256 (the copy applies from 9
 * rows). CM_TOL where the tensor cores run (fp16 operands), F32_TOL elsewhere. */
TEST(vk_coopmat_norm_x16) {
    TV_OPEN(e);
    omni_rng r = { 19 };
    const int n = 64, d = 256, rows = 96;
    double tol = cm_offered() ? CM_TOL : F32_TOL;
    const ob_dtype types[] = { OB_BF16, OB_Q8_0 };
    for (int ti = 0; ti < 2; ti++) {
        size_t xb = sizeof(float) * (size_t)n * d, yb = sizeof(float) * (size_t)n * rows, wb, nb;
        float *x = malloc(xb), *a = malloc(xb);
        tv_rand(&r, x, (size_t)n * d, 2.0f);
        tv_rand(&r, a, (size_t)n * d, 1.0f);
        void *nw = tv_weights(&r, OB_BF16, 1, d, &nb), *w[4];
        tv_buf X = tv_new(&e, x, xb, 0), A = tv_new(&e, a, xb, 0), XN = tv_new(&e, NULL, xb, 0),
               N = tv_new(&e, nw, nb, 0), W[4], Y[4];
        ob_mat nv = ob_mat_make(tv_pv(N, 0), OB_BF16, 1, d), nc = ob_mat_make(tv_pc(N, 0), OB_BF16, 1, d);
        e.vk->ops->rms_norm(e.vk, tv_pv(X, 0), &nv, tv_pv(XN, 0), n, d, 1e-6f);
        e.cpu->ops->rms_norm(e.cpu, tv_pc(X, 0), &nc, tv_pc(XN, 0), n, d, 1e-6f);
        for (int i = 0; i < 4; i++) {
            w[i] = tv_weights(&r, types[ti], rows, d, &wb);
            W[i] = tv_new(&e, w[i], wb, 0);
            Y[i] = tv_new(&e, NULL, yb, 0);
            ob_mat mv = ob_mat_make(tv_pv(W[i], 0), types[ti], rows, d),
                   mc = ob_mat_make(tv_pc(W[i], 0), types[ti], rows, d);
            if (i == 3) { /* xn changes: the copy must not serve the next product */
                e.vk->ops->add(e.vk, tv_pv(A, 0), tv_pv(XN, 0), (int64_t)n * d);
                e.cpu->ops->add(e.cpu, tv_pc(A, 0), tv_pc(XN, 0), (int64_t)n * d);
            }
            e.vk->ops->matmul(e.vk, &mv, tv_pv(XN, 0), tv_pv(Y[i], 0), n, 0);
            e.cpu->ops->matmul(e.cpu, &mc, tv_pc(XN, 0), tv_pc(Y[i], 0), n, 0);
        }
        for (int i = 0; i < 4; i++) {
            double err = tv_rel_err(&e, Y[i], 0, (size_t)n * rows);
            if (!(err >= 0 && err <= tol))
                th_fail(__FILE__, __LINE__, "%s product %d after the norm: rel err %g > %g", ob_dtype_name(types[ti]),
                        i, err, tol);
        }
        double en = tv_rel_err(&e, XN, 0, (size_t)n * d);
        if (!(en >= 0 && en <= F32_TOL)) th_fail(__FILE__, __LINE__, "normalised rows: rel err %g", en);
        for (int i = 0; i < 4; i++) tv_free(&e, &W[i]), tv_free(&e, &Y[i]), free(w[i]);
        tv_free(&e, &X), tv_free(&e, &A), tv_free(&e, &XN), tv_free(&e, &N);
        free(x), free(a), free(nw);
    }
    tv_close(&e);
}

/* The split-K sum left owed by a product (vk_coopmat.c vk_gemm_split, OMNI_VK_KSUM_DEFER=1, the default) and taken
 * into the next op's kernel: the residual o-projection-like product (accumulating, split over K) followed by the
 * RMSNorm of that residual (rms_norm.comp KSUM, with and without the fp16 copy), and a router-like product followed
 * by its top-k (moe_route.comp); and the owed sum recorded by other accesses: a download of the destination, an
 * in-place norm, and a second split product that reuses the planes. Every result must be bit-identical to the
 * separate sum (OMNI_VK_KSUM_DEFER=0: the same planes added in the same order), and the residual and norm agree
 * with the CPU back-end (CM_TOL; F32_TOL on a device without tensor cores, where the fp32 tiled kernel splits the
 * products: OMNI_VK_MM_SPLIT=1). */
#define KD_N 64
#define KD_D 256
#define KD_K 2048
#define KD_E 64 /* n_exp <= 8 lanes x 8: the top-k's subgroup form (which takes the sum) on 8-wide subgroups too */
#define KD_TOP 8
typedef struct {
    float *x, *xn, *lg, *wts, *y2, *x2;
    int32_t *ids;
} kd_out;

static void kd_run(tv_env *e, int defer, int y16, kd_out *o) {
    omni_rng r = { 29 };
    setenv("OMNI_VK_KSUM_DEFER", defer ? "1" : "0", 1);
    setenv("OMNI_VK_NORM_X16", y16 ? "1" : "0", 1);
    size_t xb = sizeof(float) * KD_N * KD_D, ab = sizeof(float) * KD_N * KD_K, lb = sizeof(float) * KD_N * KD_E,
           kb = sizeof(float) * KD_N * KD_TOP, wb, rb, nb;
    float *x = malloc(xb), *a = malloc(ab);
    tv_rand(&r, x, KD_N * KD_D, 1.0f);
    tv_rand(&r, a, KD_N * KD_K, 1.0f);
    void *wo = tv_weights(&r, OB_BF16, KD_D, KD_K, &wb), *wr = tv_weights(&r, OB_BF16, KD_E, KD_D, &rb),
         *nw = tv_weights(&r, OB_BF16, 1, KD_D, &nb);
    tv_buf X = tv_new(e, x, xb, 0), A = tv_new(e, a, ab, 0), XN = tv_new(e, NULL, xb, 0), WO = tv_new(e, wo, wb, 0),
           WR = tv_new(e, wr, rb, 0), N = tv_new(e, nw, nb, 0), LG = tv_new(e, NULL, lb, 0),
           I = tv_new(e, NULL, kb, 0), W = tv_new(e, NULL, kb, 0), X2 = tv_new(e, x, xb, 0),
           Y2 = tv_new(e, NULL, xb, 0);
    ob_mat mo = ob_mat_make(tv_pv(WO, 0), OB_BF16, KD_D, KD_K), mr = ob_mat_make(tv_pv(WR, 0), OB_BF16, KD_E, KD_D),
           mn = ob_mat_make(tv_pv(N, 0), OB_BF16, 1, KD_D);
    ob_backend *b = e->vk;
    /* o_proj into the residual, its norm, the router and its top-k */
    b->ops->matmul(b, &mo, tv_pv(A, 0), tv_pv(X, 0), KD_N, 1);
    b->ops->rms_norm(b, tv_pv(X, 0), &mn, tv_pv(XN, 0), KD_N, KD_D, 1e-6f);
    b->ops->matmul(b, &mr, tv_pv(XN, 0), tv_pv(LG, 0), KD_N, 0);
    b->ops->moe_route(b, tv_pv(LG, 0), KD_N, KD_E, KD_TOP, 1, tv_pv(I, 0), tv_pv(W, 0));
    /* owed sums recorded by other accesses: a second split product while one is owed (its planes reuse the
     * scratch), an in-place norm of an owed destination, then the destination read back directly */
    b->ops->matmul(b, &mo, tv_pv(A, 0), tv_pv(X2, 0), KD_N, 1);
    b->ops->matmul(b, &mo, tv_pv(A, 0), tv_pv(Y2, 0), KD_N, 0);
    b->ops->rms_norm(b, tv_pv(X2, 0), &mn, tv_pv(X2, 0), KD_N, KD_D, 1e-6f);
    b->ops->matmul(b, &mo, tv_pv(A, 0), tv_pv(Y2, 0), KD_N, 1);
    o->x = malloc(xb), o->xn = malloc(xb), o->lg = malloc(lb), o->wts = malloc(kb), o->y2 = malloc(xb);
    o->x2 = malloc(xb), o->ids = malloc(kb);
    b->ops->download(b, Y2.v, 0, o->y2, xb);
    b->ops->download(b, X.v, 0, o->x, xb);
    b->ops->download(b, XN.v, 0, o->xn, xb);
    b->ops->download(b, LG.v, 0, o->lg, lb);
    b->ops->download(b, I.v, 0, o->ids, kb);
    b->ops->download(b, W.v, 0, o->wts, kb);
    b->ops->download(b, X2.v, 0, o->x2, xb);
    if (defer) { /* the CPU's residual and norm */
        ob_mat co = ob_mat_make(tv_pc(WO, 0), OB_BF16, KD_D, KD_K), cn = ob_mat_make(tv_pc(N, 0), OB_BF16, 1, KD_D);
        e->cpu->ops->matmul(e->cpu, &co, tv_pc(A, 0), tv_pc(X, 0), KD_N, 1);
        e->cpu->ops->rms_norm(e->cpu, tv_pc(X, 0), &cn, tv_pc(XN, 0), KD_N, KD_D, 1e-6f);
        double ex = tv_rel_err(e, X, 0, KD_N * KD_D), en = tv_rel_err(e, XN, 0, KD_N * KD_D);
        double tol = getenv("OMNI_VK_MM_SPLIT") ? F32_TOL : CM_TOL;
        printf("    y16 %d: residual rel err %.3g, norm %.3g (tolerance %g)\n", y16, ex, en, tol);
        if (!(ex >= 0 && ex <= tol && en >= 0 && en <= tol))
            th_fail(__FILE__, __LINE__, "residual / norm against the CPU: %g / %g", ex, en);
    }
    tv_free(e, &X), tv_free(e, &A), tv_free(e, &XN), tv_free(e, &WO), tv_free(e, &WR), tv_free(e, &N);
    tv_free(e, &LG), tv_free(e, &I), tv_free(e, &W), tv_free(e, &X2), tv_free(e, &Y2);
    free(x), free(a), free(wo), free(wr), free(nw);
}

static void kd_free(kd_out *o) {
    free(o->x), free(o->xn), free(o->lg), free(o->wts), free(o->y2), free(o->x2), free(o->ids);
}

TEST(vk_coopmat_ksum_defer) {
    /* without tensor cores the fp32 tiled kernel splits the same products (OMNI_VK_MM_SPLIT=1) */
    if (!cm_offered()) setenv("OMNI_VK_MM_SPLIT", "1", 1);
    TV_OPEN(e);
    setenv("OMNI_VK_MM", "tiled", 1);
    for (int y16 = 0; y16 < 2; y16++) {
        kd_out a, b;
        kd_run(&e, 0, y16, &a);
        kd_run(&e, 1, y16, &b);
        size_t xb = sizeof(float) * KD_N * KD_D, lb = sizeof(float) * KD_N * KD_E, kb = sizeof(float) * KD_N * KD_TOP;
        const char *bad = memcmp(a.x, b.x, xb)       ? "residual"
                          : memcmp(a.xn, b.xn, xb)   ? "norm"
                          : memcmp(a.lg, b.lg, lb)   ? "router logits"
                          : memcmp(a.ids, b.ids, kb) ? "expert ids"
                          : memcmp(a.wts, b.wts, kb) ? "expert weights"
                          : memcmp(a.y2, b.y2, xb)   ? "product read back"
                          : memcmp(a.x2, b.x2, xb)   ? "in-place norm"
                                                     : NULL;
        if (bad) th_fail(__FILE__, __LINE__, "y16 %d: %s differs with the sum deferred", y16, bad);
        kd_free(&a), kd_free(&b);
    }
    unsetenv("OMNI_VK_KSUM_DEFER");
    unsetenv("OMNI_VK_NORM_X16");
    unsetenv("OMNI_VK_MM_SPLIT");
    tv_close(&e);
}

/* The prefill k|v product (one GEMM of the k and v rows, as the thinker runs it) split over K, its sum left owed,
 * then qk_norm_rope_kv on its strided halves (ob_attn.kv_stride), which takes the sum into its kernel: q, the k|v
 * rows (k rotated, v as summed) and both caches must be bit-identical to the sum done at once (OMNI_VK_KSUM_DEFER=0)
 * and, deferred, within the product's tolerance of the CPU (plus 2^-11 where the caches are fp16). */
#define KQ_N 48
#define KQ_HQ 4
#define KQ_HKV 2
#define KQ_D 64
#define KQ_K 2048
#define KQ_CTX 64
typedef struct {
    float *q, *kv, *kc, *vc;
} kq_out;

static void kq_run(tv_env *e, int defer, kq_out *o) {
    omni_rng r = { 31 };
    setenv("OMNI_VK_KSUM_DEFER", defer ? "1" : "0", 1);
    const int KD = KQ_HKV * KQ_D, QN = KQ_N * KQ_HQ * KQ_D, KVN = KQ_N * 2 * KD, CN = KQ_HKV * KQ_CTX * KQ_D;
    float *x = malloc(sizeof *x * KQ_N * KQ_K), *q = malloc(sizeof *q * QN), *cache = malloc(sizeof *cache * CN),
          *pos = malloc(sizeof *pos * 3 * KQ_N);
    tv_rand(&r, x, (size_t)KQ_N * KQ_K, 1.0f);
    tv_rand(&r, q, QN, 2.0f);
    tv_rand(&r, cache, CN, 1.0f);
    for (int i = 0; i < 3 * KQ_N; i++) pos[i] = (float)(5 + i % KQ_N);
    size_t wb, nb;
    void *w = tv_weights(&r, OB_BF16, 2 * KD, KQ_K, &wb), *nq = tv_weights(&r, OB_BF16, 1, KQ_D, &nb),
         *nk = tv_weights(&r, OB_BF16, 1, KQ_D, &nb);
    tv_buf X = tv_new(e, x, sizeof *x * KQ_N * KQ_K, 0), Q = tv_new(e, q, sizeof *q * QN, 0),
           KV = tv_new(e, NULL, sizeof(float) * KVN, 0), KC = tv_new_cache(e, cache, CN, KQ_D),
           VC = tv_new_cache(e, cache, CN, KQ_D), P = tv_new(e, pos, sizeof *pos * 3 * KQ_N, 0),
           W = tv_new(e, w, wb, 0), NQ = tv_new(e, nq, nb, 0), NK = tv_new(e, nk, nb, 0);
    ob_rope rope = { 1e6f, KQ_D, KQ_D, { 12, 10, 10 }, 1, 0 };
    ob_attn a = { KQ_HQ, KQ_HKV, KQ_D, 0.125f, 1, 0, 2 * KD };
    for (int side = 0; side < (defer ? 2 : 1); side++) { /* the Vulkan back-end, then (deferred run) the CPU */
        ob_backend *b = side ? e->cpu : e->vk;
        ob_ptr (*at)(tv_buf, size_t) = side ? tv_pc : tv_pv;
        ob_mat mw = ob_mat_make(at(W, 0), OB_BF16, 2 * KD, KQ_K), mq = ob_mat_make(at(NQ, 0), OB_BF16, 1, KQ_D),
               mk = ob_mat_make(at(NK, 0), OB_BF16, 1, KQ_D);
        b->ops->matmul(b, &mw, at(X, 0), at(KV, 0), KQ_N, 0);
        b->ops->qk_norm_rope_kv(b, at(Q, 0), at(KV, 0), at(KV, (size_t)KD * 4), &mq, &mk, 1e-6f, at(P, 0), &rope,
                                at(KC, 0), at(VC, 0), KQ_CTX, 3, KQ_N, &a);
    }
    o->q = malloc(sizeof(float) * QN), o->kv = malloc(sizeof(float) * KVN), o->kc = malloc(sizeof(float) * CN);
    o->vc = malloc(sizeof(float) * CN);
    e->vk->ops->download(e->vk, Q.v, 0, o->q, sizeof(float) * QN);
    e->vk->ops->download(e->vk, KV.v, 0, o->kv, sizeof(float) * KVN);
    tv_cache_get(e, KC, CN, KQ_D, 1, o->kc);
    tv_cache_get(e, VC, CN, KQ_D, 1, o->vc);
    if (defer) {
        double tol = cm_offered() ? CM_TOL : F32_TOL, u = tv_kv16(e, KQ_D) ? 0x1p-11 : 0;
        double eq = tv_rel_err(e, Q, 0, QN), ekv = tv_rel_err(e, KV, 0, KVN), ekc = tv_cache_err(e, KC, CN, KQ_D),
               evc = tv_cache_err(e, VC, CN, KQ_D);
        printf("    against the CPU: q %.3g, k|v %.3g, k cache %.3g, v cache %.3g (tolerance %g + %g)\n", eq, ekv,
               ekc, evc, tol, u);
        if (!(eq >= 0 && eq <= tol && ekv >= 0 && ekv <= tol && ekc >= 0 && ekc <= tol + u && evc >= 0 &&
              evc <= tol + u))
            th_fail(__FILE__, __LINE__, "k|v product + qk_norm_rope_kv against the CPU: %g %g %g %g", eq, ekv, ekc,
                    evc);
    }
    tv_free(e, &X), tv_free(e, &Q), tv_free(e, &KV), tv_free(e, &KC), tv_free(e, &VC), tv_free(e, &P);
    tv_free(e, &W), tv_free(e, &NQ), tv_free(e, &NK);
    free(x), free(q), free(cache), free(pos), free(w), free(nq), free(nk);
}

/* both cache formats (the kernel writes v on two paths): fp16, the default, then fp32 (OMNI_VK_KV_F32=1) */
TEST(vk_coopmat_ksum_qkrope) {
    if (!cm_offered()) setenv("OMNI_VK_MM_SPLIT", "1", 1);
    for (int f32 = 0; f32 < 2; f32++) {
        setenv("OMNI_VK_KV_F32", f32 ? "1" : "0", 1);
        TV_OPEN(e);
        setenv("OMNI_VK_MM", "tiled", 1);
        kq_out a, b;
        kq_run(&e, 0, &a);
        kq_run(&e, 1, &b);
        const int KD = KQ_HKV * KQ_D, CN = KQ_HKV * KQ_CTX * KQ_D;
        const char *bad = memcmp(a.q, b.q, sizeof(float) * KQ_N * KQ_HQ * KQ_D)  ? "q"
                          : memcmp(a.kv, b.kv, sizeof(float) * KQ_N * 2 * KD) ? "k|v rows"
                          : memcmp(a.kc, b.kc, sizeof(float) * CN)            ? "k cache"
                          : memcmp(a.vc, b.vc, sizeof(float) * CN)            ? "v cache"
                                                                              : NULL;
        if (bad) th_fail(__FILE__, __LINE__, "%s cache: %s differs with the k|v sum taken by qk_norm_rope_kv",
                         f32 ? "fp32" : "fp16", bad);
        free(a.q), free(a.kv), free(a.kc), free(a.vc), free(b.q), free(b.kv), free(b.kc), free(b.vc);
        tv_close(&e);
    }
    unsetenv("OMNI_VK_KV_F32");
    unsetenv("OMNI_VK_KSUM_DEFER");
    unsetenv("OMNI_VK_MM_SPLIT");
}
