/* vulkan_bench.c — a stand-alone benchmark of the Vulkan back-end for machines where only libvulkan and libcjson
 * are installed (the omni binary also needs PortAudio, SDL2 and ncurses): the decode matrix-vector kernels (the
 * same table as `omni devices --bench-matvec`), the prefill kernels (tiled matmul, grouped MoE, attention), and a
 * whole synthetic model through the public API. Not part of the test suite (only tests/ itself is).
 *
 *   make BUILD=build-vk HEADLESS=1 build-vk/vulkan_bench
 *   build-vk/vulkan_bench [devices] [latency] [gridbar] [decode] [layers] [matvec] [prefill] [attention] [gemm]
 *                         [model CONFIG.json [N_PROMPT N_GEN]] [--peak GB/s] [--only NAME]
 * OMNI_BENCH_VARIANTS="A=1,B=2;C=0;..." runs the model (and the attention rows) once per item.
 * OMNI_VK_PIPELINE_STATS=1: after the kernel modes, the driver's statistics of their pipelines (registers, ...).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "model.h"
#include "omni.h"
#include "util.h"
#include "vulkan/ob_vulkan.h"

static double g_peak;
static const char *g_only; /* run only matrix-vector cases whose name contains this */

static void matvec_row(ob_backend *b, const char *what, const char *tag, ob_dtype t, int rows, int cols, int sel) {
    char name[96];
    snprintf(name, sizeof name, "%s%s", what, tag);
    ob_vk_bench_result r;
    if (ob_vulkan_bench_matvec(b, t, rows, cols, sel, 50, &r) != 0) {
        printf("%-44s failed: %s\n", name, b->err);
        b->failed = 0;
        return;
    }
    printf("%-44s %8.2f %9.2f %8.0f %9.2f %8.0f", name, r.weight_bytes / 1e6, r.ms_per_call * 1e3, r.gbytes_per_s,
           r.ms_per_call_chained * 1e3, r.gbytes_per_s_chained);
    if (g_peak > 0) printf("  %3.0f%% %3.0f%%", 100 * r.gbytes_per_s / g_peak, 100 * r.gbytes_per_s_chained / g_peak);
    printf("\n");
    fflush(stdout);
}

/* Q8_0 rows run twice: with the back-end's default (int8 activations, mvq8.comp, where the device has integer dot
 * products) and on a second back-end opened with OMNI_VK_Q8_INT8=0 (fp32 activations: mv.comp / matvec.comp;
 * OMNI_BENCH_Q8_FP32=0 skips those) */
static void matvec(ob_backend *b) {
    struct {
        const char *what;
        ob_dtype t;
        int rows, cols, sel;
    } cases[] = {
        { "q-proj [4096 x 2048] bf16", OB_BF16, 4096, 2048, 0 },
        { "o-proj [2048 x 4096] bf16", OB_BF16, 2048, 4096, 0 },
        { "k/v-proj [512 x 2048] bf16", OB_BF16, 512, 2048, 0 },
        { "lm_head [152064 x 2048] bf16", OB_BF16, 152064, 2048, 0 },
        { "experts 8 of 128 [768 x 2048] bf16", OB_BF16, 768, 2048, 8 },
        { "q-proj [4096 x 2048] q8_0", OB_Q8_0, 4096, 2048, 0 },
        { "o-proj [2048 x 4096] q8_0", OB_Q8_0, 2048, 4096, 0 },
        { "lm_head [152064 x 2048] q8_0", OB_Q8_0, 152064, 2048, 0 },
        { "experts 8 of 128 [768 x 2048] q8_0", OB_Q8_0, 768, 2048, 8 },
        { "o-proj [2048 x 4096] f16", OB_F16, 2048, 4096, 0 },
        { "o-proj [2048 x 4096] f32", OB_F32, 2048, 4096, 0 },
    };
    unsigned n = sizeof cases / sizeof *cases;
    printf("%-44s %8s %9s %8s %9s %8s\n", "matrix-vector", "MB/call", "us", "GB/s", "us chain", "GB/s ch");
    for (unsigned i = 0; i < n; i++)
        if (!g_only || strstr(cases[i].what, g_only))
            matvec_row(b, cases[i].what, cases[i].t == OB_Q8_0 ? " (default)" : "", cases[i].t, cases[i].rows,
                       cases[i].cols, cases[i].sel);
    const char *fp32 = getenv("OMNI_BENCH_Q8_FP32"); /* 0: skip the fp32-activation rows */
    if (fp32 && !atoi(fp32)) return;
    const char *old = getenv("OMNI_VK_Q8_INT8");
    char keep[32];
    snprintf(keep, sizeof keep, "%s", old ? old : "");
    setenv("OMNI_VK_Q8_INT8", "0", 1);
    char err[256];
    ob_backend *b2 = ob_vulkan_new(-1, err, sizeof err);
    if (old) setenv("OMNI_VK_Q8_INT8", keep, 1);
    else unsetenv("OMNI_VK_Q8_INT8");
    if (!b2) return;
    for (unsigned i = 0; i < n; i++)
        if (cases[i].t == OB_Q8_0 && (!g_only || strstr(cases[i].what, g_only)))
            matvec_row(b2, cases[i].what, " (fp32 x)", cases[i].t, cases[i].rows, cases[i].cols, cases[i].sel);
    b2->ops->destroy(b2);
}

static ob_buf *rand_buf(ob_backend *b, size_t n_floats, float scale, uint64_t seed) {
    float *h = malloc(n_floats * 4);
    ob_buf *d = b->ops->alloc(b, n_floats * 4);
    omni_rng r = { seed };
    for (size_t i = 0; h && i < n_floats; i++) h[i] = (omni_rng_uniform(&r) * 2 - 1) * scale;
    if (h && d) b->ops->upload(b, d, 0, h, n_floats * 4);
    free(h);
    return d;
}

/* a KV cache of n_kv x n_ctx x head_dim random values in [-1, 1) in the back-end's format (ob_kv_cache_bytes: fp32,
 * or fp16 on Vulkan unless OMNI_VK_KV_F32=1), so the attention rows read as many bytes as the model's caches */
static ob_buf *rand_cache(ob_backend *b, int n_kv, int n_ctx, int head_dim, uint64_t seed) {
    size_t n = (size_t)n_kv * n_ctx * head_dim, bytes = ob_kv_cache_bytes(b, n_kv, n_ctx, head_dim);
    if (bytes == n * 4) return rand_buf(b, n, 1, seed);
    uint16_t *h = malloc(n * 2);
    ob_buf *d = b->ops->alloc(b, bytes);
    omni_rng r = { seed };
    for (size_t i = 0; h && i < n; i++) h[i] = omni_f32_to_f16(omni_rng_uniform(&r) * 2 - 1);
    if (h && d) b->ops->upload(b, d, 0, h, bytes);
    free(h);
    return d;
}

static ob_buf *rand_weight(ob_backend *b, ob_dtype t, int rows, int cols, uint64_t seed) {
    size_t n = (size_t)rows * cols;
    float *f = malloc(n * 4);
    void *w = malloc(ob_dtype_bytes(t, (int64_t)n));
    omni_rng r = { seed };
    for (size_t i = 0; f && i < n; i++) f[i] = (omni_rng_uniform(&r) * 2 - 1) * 0.05f;
    if (!f || !w) return NULL;
    if (t == OB_BF16)
        for (size_t i = 0; i < n; i++) ((uint16_t *)w)[i] = omni_f32_to_bf16(f[i]);
    else if (t == OB_F16)
        for (size_t i = 0; i < n; i++) ((uint16_t *)w)[i] = omni_f32_to_f16(f[i]);
    else if (t == OB_Q8_0) ob_quantize_q8_0(f, rows, cols, w);
    else memcpy(w, f, n * 4);
    ob_buf *d = b->ops->alloc(b, ob_dtype_bytes(t, (int64_t)n));
    if (d) b->ops->upload(b, d, 0, w, ob_dtype_bytes(t, (int64_t)n));
    free(f);
    free(w);
    return d;
}

/* OMNI_VK_ATTN_PROF=1: where the decode attention's time goes, from the phase clocks of the attn_decode dispatches
 * since the last call (ob_vulkan_attn_prof; the record layout is attn_decode.comp's prof_out). Per dispatch the
 * span from the first workgroup's start to the last one's end (device clock, ns), and per phase the mean SM cycles
 * from the previous point over the workgroups that reached it. */
static void attn_prof_print(ob_backend *b, const char *label) {
    enum { NP = 23 };
    static const char *const ph[NP + 1] = {
        "", "q,k loads", "rope angles", "barrier", "norm+rope", "K (thread 0)", "scores", "sc", "softmax", "P.V",
        "write", "count1", "m1 loads+sums", "m1 shares", "m1 write", "", "m1 end", "count2", "m2 loads+sums",
        "m2 shares", "m2 write", "", "m2 end", ""
    };
    size_t cap = (size_t)OB_VK_ATTN_PROF_RECORDS * ATTND_PROF_WORDS + 2 * 4096;
    uint32_t *w = malloc(cap * 4);
    int nd = 0, len = w ? ob_vulkan_attn_prof(b, w, cap, &nd) : -1;
    if (len <= 0 || nd == 0) {
        printf("  attention phases (%s): no records (OMNI_VK_ATTN_PROF=1 and VK_KHR_shader_clock needed)\n", label);
        free(w);
        return;
    }
    /* per dispatch, times from its first workgroup's start (device clock, ns): the workgroups' starts, the ends of
     * those that merged nothing, of the group mergers and of the final merger (the critical path) */
    double cyc[NP + 1] = { 0 }, span = 0, st = 0, st_max = 0, end_chunk = 0, end_grp = 0, end_fin = 0, ns = 0, cy = 0;
    long cnt[NP + 1] = { 0 }, n_wg = 0, n_chunk = 0, n_grp = 0, n_fin = 0;
    size_t at = 0;
    for (int d = 0; d < nd; d++) {
        uint32_t nw = w[at];
        const uint32_t *r = w + at + 2;
        int64_t t0 = INT64_MAX, t1 = INT64_MIN;
        for (uint32_t i = 0; i < nw; i++) {
            const uint32_t *x = r + (size_t)i * ATTND_PROF_WORDS;
            int64_t s0 = (int64_t)(x[0] | (uint64_t)x[1] << 32), e = (int64_t)(x[26] | (uint64_t)x[27] << 32);
            t0 = s0 < t0 ? s0 : t0;
            t1 = e > t1 ? e : t1;
        }
        span += (double)(t1 - t0);
        for (uint32_t i = 0; i < nw; i++) {
            const uint32_t *x = r + (size_t)i * ATTND_PROF_WORDS;
            int64_t s0 = (int64_t)(x[0] | (uint64_t)x[1] << 32), e = (int64_t)(x[26] | (uint64_t)x[27] << 32);
            double off = (double)(s0 - t0), end = (double)(e - t0);
            st += off;
            st_max = off > st_max ? off : st_max;
            if (x[28] & 2) end_fin += end, n_fin++;
            else if (x[28] & 1) end_grp += end, n_grp++;
            else end_chunk += end, n_chunk++;
            uint32_t prev = 0, last = 0;
            for (int k = 1; k <= NP; k++) {
                if (!x[1 + k]) continue;
                cyc[k] += (double)(x[1 + k] - prev);
                cnt[k]++;
                prev = last = x[1 + k];
            }
            if (e > s0 && last) ns += (double)(e - s0), cy += last;
            n_wg++;
        }
        at += 2 + (size_t)nw * ATTND_PROF_WORDS;
    }
    double ghz = ns > 0 ? cy / ns : 0; /* SM cycles per ns, from the workgroups' own spans */
    printf("  attention phases (%s): %d dispatches, %.0f workgroups each; span %.2f µs; starts %.2f µs after the "
           "first (max %.2f); ends: %.2f µs (merged nothing), %.2f (group mergers), %.2f (final); SM clock ~%.2f GHz\n"
           "   ", label, nd, (double)n_wg / nd, span / nd / 1e3, st / (double)n_wg / 1e3, st_max / 1e3,
           n_chunk ? end_chunk / (double)n_chunk / 1e3 : 0, n_grp ? end_grp / (double)n_grp / 1e3 : 0,
           n_fin ? end_fin / (double)n_fin / 1e3 : 0, ghz);
    for (int k = 1; k <= NP; k++)
        if (cnt[k]) printf("%s %s %.2f µs (%ld wg)", k == 11 ? "\n   " : "", ph[k],
                           ghz > 0 ? cyc[k] / (double)cnt[k] / ghz / 1e3 : 0, cnt[k] / nd);
    printf("\n");
    free(w);
}

/* host clock around `reps` calls and a sync, after one warm-up call */
#define TIME_MS(reps, call)                                                                                         \
    ({                                                                                                              \
        call;                                                                                                       \
        b->ops->sync(b);                                                                                            \
        double t0_ = omni_time_ms();                                                                                \
        for (int r_ = 0; r_ < (reps); r_++) call;                                                                   \
        b->ops->sync(b);                                                                                            \
        (omni_time_ms() - t0_) / (reps);                                                                            \
    })


/* Half a second of small dependent dispatches: an idle GPU runs at low clocks (H100: 345 MHz against 1980) and
 * raises them only under sustained load; the timed loops of a mode are too short to do it themselves, and weight
 * generation on the host before them leaves the device idle. */
static void clock_warmup(ob_backend *b) {
    ob_buf *x = rand_buf(b, 1024, 1, 1), *y = rand_buf(b, 1024, 1, 2);
    for (double t0 = omni_time_ms(); x && y && omni_time_ms() - t0 < 500;) {
        for (int i = 0; i < 256; i++) b->ops->add(b, (ob_ptr){ x, 0 }, (ob_ptr){ y, 0 }, 1024);
        b->ops->sync(b);
    }
    if (x) b->ops->buf_free(b, x);
    if (y) b->ops->buf_free(b, y);
}

/* Cost of a dispatch: N element-wise adds that each depend on the previous one (a barrier between every two) or
 * that are independent (no barriers), with 1 element (one workgroup) or 1 Mi elements (4096 workgroups). The
 * dependent case is the per-dispatch floor of a decode step, which chains ~500 of them per token. */
static void latency(ob_backend *b) {
    const int N = 2000;
    const int64_t counts[2] = { 1, 1 << 20 };
    ob_buf *x = rand_buf(b, (size_t)1 << 20, 1, 7), *y = rand_buf(b, (size_t)N * 64 + (1 << 20), 1, 8);
    clock_warmup(b);
    printf("%-36s %9s %9s\n", "dispatch cost (add)", "elements", "us each");
    for (int ci = 0; ci < 2; ci++) {
        int64_t n = counts[ci];
        double ms = TIME_MS(1, for (int i = 0; i < N; i++) b->ops->add(b, (ob_ptr){ x, 0 }, (ob_ptr){ y, 0 }, n));
        printf("%-36s %9lld %9.2f\n", "dependent (barrier each)", (long long)n, ms * 1e3 / N);
        if (n == 1) {
            ms = TIME_MS(1, for (int i = 0; i < N; i++)
                                b->ops->add(b, (ob_ptr){ x, 0 }, (ob_ptr){ y, (size_t)i * 256 }, n));
            printf("%-36s %9lld %9.2f\n", "independent (no barriers)", (long long)n, ms * 1e3 / N);
        }
    }
    b->ops->buf_free(b, x);
    b->ops->buf_free(b, y);
}

/* gridbar: the premise of a persistent decode kernel (docs/architecture.md), µs per phase of a chain of phases that
 * each stream B bytes (as a decode step's projections stream their weights): one dispatch per phase with a pipeline
 * barrier between (as now), one resident dispatch with a grid barrier per phase, and the same with the next phase's
 * first loads issued before the wait. OMNI_BENCH_GRID_WG workgroups of 256 threads (default: one per compute unit as
 * the driver reports them, else 8; all must be resident at once). */
static void gridbar(ob_backend *b) {
    const char *e = getenv("OMNI_BENCH_GRID_WG");
    ob_vk_device_info d[8];
    int nd = ob_vulkan_list_devices(d, 8, NULL, 0), di = ob_vulkan_default_device();
    int cu = di >= 0 && di < nd && di < 8 ? (int)d[di].compute_units : 0;
    int n_wg = e && atoi(e) > 0 ? atoi(e) : cu > 0 ? cu : 8;
    printf("gridbar: %d workgroups of 256 threads\n", n_wg);
    const size_t sizes[4] = { 0, (size_t)4 << 20, (size_t)16 << 20, (size_t)48 << 20 };
    const char *names[3] = { "dispatch per phase", "grid barrier", "grid barrier, next loads early" };
    printf("%-34s %9s %10s %10s\n", "phase boundary", "MiB/phase", "us/phase", "GB/s");
    for (int si = 0; si < 4; si++)
        for (int v = 0; v < 3; v++) {
            double us = 0;
            int rc = ob_vulkan_bench_gridbar(b, n_wg, sizes[si], v, 201, &us);
            if (rc) {
                printf("%-34s %9zu failed (%d)%s%s\n", names[v], sizes[si] >> 20, rc, b->failed ? ": " : "",
                       b->failed ? b->err : "");
                return;
            }
            printf("%-34s %9zu %10.2f %10.1f\n", names[v], sizes[si] >> 20, us,
                   us > 0 ? (double)sizes[si] / (us * 1e3) : 0.0);
        }
}

/* The decode step's kernels one at a time, each call chained to the previous one (a barrier between every two, as
 * in a decode step), at the Qwen3-Omni thinker's shapes (bf16): µs per call against the bare dependent-dispatch cost
 * of `latency`. This separates a kernel's own critical path from the launch cost. */
static void decode_ops(ob_backend *b) {
    const int N = 200, H = 2048, QKV = 5120, E = 128, I = 768, K = 8;
    ob_buf *x = rand_buf(b, H, 1, 11), *xn = rand_buf(b, H, 1, 12), *y = rand_buf(b, 152064, 1, 13);
    ob_buf *nw = rand_weight(b, OB_BF16, 1, H, 14), *wqkv = rand_weight(b, OB_BF16, QKV, H, 15);
    ob_buf *wo = rand_weight(b, OB_BF16, H, 4096, 16), *wr = rand_weight(b, OB_BF16, E, H, 17);
    ob_buf *att = rand_buf(b, 4096, 1, 18), *ids = b->ops->alloc(b, 64 * 4), *wts = rand_buf(b, 64, 1, 19);
    ob_mat mn = ob_mat_make((ob_ptr){ nw, 0 }, OB_BF16, 1, H), mqkv = ob_mat_make((ob_ptr){ wqkv, 0 }, OB_BF16, QKV, H);
    ob_mat mo = ob_mat_make((ob_ptr){ wo, 0 }, OB_BF16, H, 4096), mr = ob_mat_make((ob_ptr){ wr, 0 }, OB_BF16, E, H);
    clock_warmup(b);
    printf("%-44s %9s\n", "decode kernel, chained (Qwen3-Omni shapes)", "us each");
    double ms = TIME_MS(1, for (int i = 0; i < N; i++) b->ops->add(b, (ob_ptr){ x, 0 }, (ob_ptr){ y, 0 }, 1));
    printf("%-44s %9.2f\n", "add of one element (launch + barrier)", ms * 1e3 / N);
    ob_buf *gw = NULL, *uw = NULL, *dw = NULL;
    ob_mat *em = NULL;
    if (g_only && strstr(g_only, "attention")) goto attention; /* --only attention: the attention rows alone */
    ms = TIME_MS(1, for (int i = 0; i < N; i++) b->ops->norm_matvec(b, (ob_ptr){ x, 0 }, &mn, 1e-6f, &mqkv,
                                                                    (ob_ptr){ y, 0 }, (ob_ptr){ xn, 0 }));
    printf("%-44s %9.2f\n", "input norm + q|k|v [5120 x 2048]", ms * 1e3 / N);
    ms = TIME_MS(1, for (int i = 0; i < N; i++) b->ops->matmul(b, &mo, (ob_ptr){ att, 0 }, (ob_ptr){ y, 0 }, 1, 1));
    printf("%-44s %9.2f\n", "o_proj [2048 x 4096] + residual", ms * 1e3 / N);
    if (b->ops->norm_route) {
        ms = TIME_MS(1, for (int i = 0; i < N; i++) b->ops->norm_route(b, (ob_ptr){ x, 0 }, &mn, 1e-6f, &mr,
                                                                       (ob_ptr){ y, 0 }, (ob_ptr){ xn, 0 }, K, 1,
                                                                       (ob_ptr){ ids, 0 }, (ob_ptr){ wts, 0 }));
        printf("%-44s %9.2f\n", "norm + router [128 x 2048] + top-8", ms * 1e3 / N);
    }
    /* experts: 8 of 32 [768 x 2048] gate/up/down (32, not 128, so that each array stays under 128 MiB, the smallest
     * maxStorageBufferRange; the kernels only see the 8 selected), ids spread over the table */
    int32_t hid[8];
    const int NX = 32;
    for (int j = 0; j < K; j++) hid[j] = j * 4 + 1;
    b->ops->upload(b, ids, 0, hid, sizeof hid);
    gw = rand_weight(b, OB_BF16, NX * I, H, 20), uw = rand_weight(b, OB_BF16, NX * I, H, 21);
    dw = rand_weight(b, OB_BF16, NX * H, I, 22);
    em = malloc(sizeof *em * 3 * (size_t)NX);
    size_t eb = (size_t)I * H * 2;
    for (int e = 0; em && e < NX; e++) {
        em[e] = ob_mat_make((ob_ptr){ gw, (size_t)e * eb }, OB_BF16, I, H);
        em[NX + e] = ob_mat_make((ob_ptr){ uw, (size_t)e * eb }, OB_BF16, I, H);
        em[2 * NX + e] = ob_mat_make((ob_ptr){ dw, (size_t)e * eb }, OB_BF16, H, I);
    }
    if (em && gw && uw && dw) {
        ms = TIME_MS(1, for (int i = 0; i < N; i++) b->ops->moe_experts(b, (ob_ptr){ xn, 0 }, 1, K, (ob_ptr){ ids, 0 },
                                                                         (ob_ptr){ wts, 0 }, em, em + NX, em + 2 * NX,
                                                                         NX, (ob_ptr){ x, 0 }));
        printf("%-44s %9.2f\n", "experts 8 [768 x 2048] (gate+up, down)", ms * 1e3 / N);
    }
attention:
    /* attention: 32 q / 4 kv heads x 128, the back-end's cache format (fp16 on Vulkan), at depths 0, 64, 1024 and
     * 4096 */
    if (b->ops->qk_norm_rope_kv_attention) {
        const int D = 128, HQ = 32, HKV = 4, CTX = 4160, depths[4] = { 0, 64, 1024, 4096 };
        ob_buf *q = rand_buf(b, (size_t)HQ * D, 1, 23), *k = rand_buf(b, (size_t)HKV * D, 1, 24);
        ob_buf *v = rand_buf(b, (size_t)HKV * D, 1, 25), *kc = rand_cache(b, HKV, CTX, D, 26);
        ob_buf *vc = rand_cache(b, HKV, CTX, D, 27), *qn = rand_weight(b, OB_BF16, 1, D, 28);
        ob_buf *pos = b->ops->alloc(b, 16);
        ob_mat mqn = ob_mat_make((ob_ptr){ qn, 0 }, OB_BF16, 1, D);
        ob_rope rp = { 1e6f, D, D, { 24, 20, 20 }, 1, 0 };
        ob_attn at = { HQ, HKV, D, 1.0f / sqrtf((float)D), 1, 0, 0 };
        for (int di = 0; di < 4 && q && k && v && kc && vc && qn && pos; di++) {
            float p3[3] = { (float)depths[di], (float)depths[di], (float)depths[di] };
            b->ops->upload(b, pos, 0, p3, sizeof p3);
            ms = TIME_MS(1, for (int i = 0; i < N; i++) b->ops->qk_norm_rope_kv_attention(
                                b, (ob_ptr){ q, 0 }, (ob_ptr){ k, 0 }, (ob_ptr){ v, 0 }, &mqn, &mqn, 1e-6f,
                                (ob_ptr){ pos, 0 }, &rp, (ob_ptr){ kc, 0 }, (ob_ptr){ vc, 0 }, CTX, depths[di], 1, &at,
                                (ob_ptr){ att, 0 }));
            printf("q/k norm + rope + kv + attention, depth %-5d      %9.2f\n", depths[di], ms * 1e3 / N);
            if (getenv("OMNI_VK_ATTN_PROF")) attn_prof_print(b, "L2-warm");
        }
        /* the same with the caches read from memory, as in a model pass (where the layer's weights evict them from
         * L2): NKV cache pairs of ~8.5 MB in turn, more than the 50 MB L2 of an H100 */
        enum { NKV = 12 };
        ob_buf *kcs[NKV] = { 0 }, *vcs[NKV] = { 0 };
        int ok = q && k && v && qn && pos;
        for (int i = 0; i < NKV && ok; i++) {
            kcs[i] = rand_cache(b, HKV, CTX, D, 40 + 2 * (uint64_t)i);
            vcs[i] = rand_cache(b, HKV, CTX, D, 41 + 2 * (uint64_t)i);
            ok = kcs[i] && vcs[i];
        }
        if (ok) clock_warmup(b); /* (the device idled while the host made the caches) */
        for (int di = 1; di < 4 && ok; di++) {
            float p3[3] = { (float)depths[di], (float)depths[di], (float)depths[di] };
            b->ops->upload(b, pos, 0, p3, sizeof p3);
            ms = TIME_MS(1, for (int i = 0; i < N; i++) b->ops->qk_norm_rope_kv_attention(
                                b, (ob_ptr){ q, 0 }, (ob_ptr){ k, 0 }, (ob_ptr){ v, 0 }, &mqn, &mqn, 1e-6f,
                                (ob_ptr){ pos, 0 }, &rp, (ob_ptr){ kcs[i % NKV], 0 }, (ob_ptr){ vcs[i % NKV], 0 },
                                CTX, depths[di], 1, &at, (ob_ptr){ att, 0 }));
            printf("the same, depth %-5d, KV from memory (%d caches) %9.2f\n", depths[di], NKV, ms * 1e3 / N);
            if (getenv("OMNI_VK_ATTN_PROF")) attn_prof_print(b, "KV from memory");
        }
        for (int i = 0; i < NKV; i++) {
            if (kcs[i]) b->ops->buf_free(b, kcs[i]);
            if (vcs[i]) b->ops->buf_free(b, vcs[i]);
        }
        ob_buf *ab[] = { q, k, v, kc, vc, qn, pos };
        for (unsigned i = 0; i < sizeof ab / sizeof *ab; i++)
            if (ab[i]) b->ops->buf_free(b, ab[i]);
    }
    free(em);
    ob_buf *bufs[] = { x, xn, y, nw, wqkv, wo, wr, att, ids, wts, gw, uw, dw };
    for (unsigned i = 0; i < sizeof bufs / sizeof *bufs; i++)
        if (bufs[i]) b->ops->buf_free(b, bufs[i]);
}

/* The dense part of a decode layer over 48 layers' own weights, as in a model pass (every weight read from memory,
 * not from the cache that `decode` warms by repeating one call): input norm + q|k|v, o_proj + residual, norm +
 * router + top-8, each alone and then in the model's order (separate, and with o_proj chained into the router).
 * The sequence minus the sum of its parts is what the order itself costs (pipeline switches, cold caches). */
static void decode_layers(ob_backend *b) {
    enum { NL = 48, PASSES = 4, H = 2048, QKV = 5120, E = 128, K = 8 };
    ob_buf *wqkv[NL], *wo[NL], *wr[NL], *nw[NL];
    ob_mat mqkv[NL], mo[NL], mr[NL], mn[NL];
    int ok = 1;
    for (int l = 0; l < NL; l++) {
        wqkv[l] = rand_weight(b, OB_BF16, QKV, H, 100 + l), wo[l] = rand_weight(b, OB_BF16, H, 4096, 200 + l);
        wr[l] = rand_weight(b, OB_BF16, E, H, 300 + l), nw[l] = rand_weight(b, OB_BF16, 1, H, 400 + l);
        ok = ok && wqkv[l] && wo[l] && wr[l] && nw[l];
        mqkv[l] = ob_mat_make((ob_ptr){ wqkv[l], 0 }, OB_BF16, QKV, H);
        mo[l] = ob_mat_make((ob_ptr){ wo[l], 0 }, OB_BF16, H, 4096);
        mr[l] = ob_mat_make((ob_ptr){ wr[l], 0 }, OB_BF16, E, H);
        mn[l] = ob_mat_make((ob_ptr){ nw[l], 0 }, OB_BF16, 1, H);
    }
    ob_buf *x = rand_buf(b, H, 1, 11), *xn = rand_buf(b, H, 1, 12), *y = rand_buf(b, QKV, 1, 13);
    ob_buf *lg = rand_buf(b, E, 1, 14), *ids = b->ops->alloc(b, 64 * 4), *wts = rand_buf(b, 64, 1, 19);
    if (!ok || !x || !xn || !y || !lg || !ids || !wts || !b->ops->norm_route || !b->ops->matmul_norm_route) {
        printf("decode layers: skipped (allocation or ops missing)\n");
        return;
    }
    ob_ptr X = { x, 0 }, XN = { xn, 0 }, Y = { y, 0 }, LG = { lg, 0 }, ID = { ids, 0 }, WT = { wts, 0 };
    const double per = 1e3 / (PASSES * NL);
    printf("%-52s %9s\n", "decode layer, 48 layers' weights (bf16)", "us/layer");
#define LAYERS(body) TIME_MS(1, for (int p_ = 0; p_ < PASSES; p_++) for (int l = 0; l < NL; l++) { body; })
    clock_warmup(b); /* the weight generation above left the device idle */
    double q = LAYERS(b->ops->norm_matvec(b, X, &mn[l], 1e-6f, &mqkv[l], Y, XN)) * per;
    double o = LAYERS(b->ops->matmul(b, &mo[l], Y, X, 1, 1)) * per;
    double r = LAYERS(b->ops->norm_route(b, X, &mn[l], 1e-6f, &mr[l], LG, XN, K, 1, ID, WT)) * per;
    double r0 = LAYERS(b->ops->norm_route(b, X, &mn[0], 1e-6f, &mr[0], LG, XN, K, 1, ID, WT)) * per;
    double oc = LAYERS(b->ops->matmul_norm_route(b, &mo[l], Y, X, &mn[l], 1e-6f, &mr[l], LG, XN, K, 1, ID, WT)) * per;
    double seq = LAYERS(b->ops->norm_matvec(b, X, &mn[l], 1e-6f, &mqkv[l], Y, XN);
                        b->ops->matmul(b, &mo[l], Y, X, 1, 1);
                        b->ops->norm_route(b, X, &mn[l], 1e-6f, &mr[l], LG, XN, K, 1, ID, WT)) * per;
    double seqc = LAYERS(b->ops->norm_matvec(b, X, &mn[l], 1e-6f, &mqkv[l], Y, XN);
                         b->ops->matmul_norm_route(b, &mo[l], Y, X, &mn[l], 1e-6f, &mr[l], LG, XN, K, 1, ID, WT)) * per;
    double pair = LAYERS(b->ops->matmul(b, &mo[l], Y, X, 1, 1);
                         b->ops->norm_route(b, X, &mn[l], 1e-6f, &mr[l], LG, XN, K, 1, ID, WT)) * per;
    if (b->ops->prof_mark && b->ops->prof_kernels) { /* the device's own times (with OMNI_VK_TRACE=1: per dispatch) */
        double cls[OB_PROF_N] = { 0 };
        const char *kn[16];
        double kms[16];
        int kc[16];
        b->ops->prof_mark(b, OB_PROF_ROUTER);
        LAYERS(b->ops->norm_matvec(b, X, &mn[l], 1e-6f, &mqkv[l], Y, XN);
               b->ops->matmul(b, &mo[l], Y, X, 1, 1);
               b->ops->norm_route(b, X, &mn[l], 1e-6f, &mr[l], LG, XN, K, 1, ID, WT));
        b->ops->prof_mark(b, -1);
        b->ops->sync(b);
        b->ops->prof_read(b, cls);
        int n = b->ops->prof_kernels(b, kn, kms, kc, 16);
        printf("  device time of the q|k|v, o_proj, router sequence (warm-up included): %.2f us/layer\n",
               cls[OB_PROF_ROUTER] * 1e3 / (2 * PASSES * NL));
        for (int i = 0; i < n; i++) printf("    %-40s %8.2f us x %d\n", kn[i], kms[i] * 1e3 / kc[i], kc[i]);
    }
#undef LAYERS
    printf("%-52s %9.2f\n", "input norm + q|k|v [5120 x 2048]", q);
    printf("%-52s %9.2f\n", "o_proj [2048 x 4096] + residual", o);
    printf("%-52s %9.2f\n", "norm + router [128 x 2048] + top-8", r);
    printf("%-52s %9.2f\n", "norm + router, one layer's weights (cache-warm)", r0);
    printf("%-52s %9.2f\n", "o_proj chained into the router", oc);
    printf("%-52s %9.2f  (parts %.2f)\n", "o_proj, router in turn", pair, o + r);
    printf("%-52s %9.2f  (parts %.2f)\n", "q|k|v, o_proj, router in turn", seq, q + o + r);
    printf("%-52s %9.2f  (parts %.2f)\n", "q|k|v, o_proj chained into the router, in turn", seqc, q + oc);
    for (int l = 0; l < NL; l++) {
        b->ops->buf_free(b, wqkv[l]), b->ops->buf_free(b, wo[l]);
        b->ops->buf_free(b, wr[l]), b->ops->buf_free(b, nw[l]);
    }
    ob_buf *bufs[] = { x, xn, y, lg, ids, wts };
    for (unsigned i = 0; i < sizeof bufs / sizeof *bufs; i++) b->ops->buf_free(b, bufs[i]);
    fflush(stdout);
}

/* prefill attention: the thinker's 32 q / 4 kv heads of 128 (causal; a pp512 pass from position 0, and a chunk
 * after a cached prefix; the 1-query rows are the decode kernel) and the vision encoder's 16 heads of 72 over 4096
 * tokens (bidirectional). FLOP/s count the visible (query, key) pairs: 4 x head_dim flops each (Q.K and P.V). */
static void attention_rows(ob_backend *b) {
    printf("%-36s %8s %9s %9s\n", "attention 32/4 heads x 128", "n@pos0", "ms", "TFLOP/s");
    int n_ctx = 4096;
    ob_attn a = { 32, 4, 128, 1.0f / sqrtf(128.0f), 1, 0, 0 };
    ob_buf *kc = rand_cache(b, 4, n_ctx, 128, 8), *vc = rand_cache(b, 4, n_ctx, 128, 9);
    ob_buf *q = rand_buf(b, (size_t)1024 * 32 * 128, 1, 10), *o = b->ops->alloc(b, (size_t)1024 * 32 * 128 * 4);
    const int cfg[][2] = { { 1, 511 }, { 1, 4095 }, { 512, 0 }, { 1024, 3072 } };
    for (int i = 0; i < 4; i++) {
        int n = cfg[i][0], pos0 = cfg[i][1];
        double ms = TIME_MS(10, b->ops->attention(b, (ob_ptr){ q, 0 }, (ob_ptr){ kc, 0 }, (ob_ptr){ vc, 0 }, n_ctx,
                                                  (ob_ptr){ o, 0 }, pos0, n, &a));
        double keys = (double)n * pos0 + (double)n * (n + 1) / 2; /* visible (query, key) pairs */
        printf("%-36s %4d@%-4d %9.3f %9.2f\n", "", n, pos0, ms, 4.0 * keys * 32 * 128 / (ms * 1e9));
    }
    b->ops->buf_free(b, kc), b->ops->buf_free(b, vc), b->ops->buf_free(b, q), b->ops->buf_free(b, o);
    /* the vision encoder's attention: q/k/v rows of 16 x 72 for 4096 patches, the cache holding exactly them */
    int nv = 4096, hv = 16, dv = 72;
    ob_attn av = { hv, hv, dv, 1.0f / sqrtf((float)dv), 0, 0, 0 };
    kc = rand_cache(b, hv, nv, dv, 11), vc = rand_cache(b, hv, nv, dv, 12);
    q = rand_buf(b, (size_t)nv * hv * dv, 1, 13), o = b->ops->alloc(b, (size_t)nv * hv * dv * 4);
    double ms = TIME_MS(5, b->ops->attention(b, (ob_ptr){ q, 0 }, (ob_ptr){ kc, 0 }, (ob_ptr){ vc, 0 }, nv,
                                             (ob_ptr){ o, 0 }, 0, nv, &av));
    printf("%-36s %4d@%-4d %9.3f %9.2f\n", "attention 16 heads x 72, bidirectional", nv, 0, ms,
           4.0 * nv * nv * hv * dv / (ms * 1e9));
    b->ops->buf_free(b, kc), b->ops->buf_free(b, vc), b->ops->buf_free(b, q), b->ops->buf_free(b, o);
    fflush(stdout);
}

/* E random bf16 experts [inter x dim] gate, up and [dim x inter] down: the gate, up and down ob_mat arrays one after
 * another (free with free()); the three weight buffers through gw, uw, dw */
static ob_mat *moe_weights(ob_backend *b, int E, int inter, int dim, ob_buf **gw, ob_buf **uw, ob_buf **dw) {
    size_t eb = ob_dtype_bytes(OB_BF16, (int64_t)inter * dim);
    *gw = rand_weight(b, OB_BF16, E * inter, dim, 3), *uw = rand_weight(b, OB_BF16, E * inter, dim, 4);
    *dw = rand_weight(b, OB_BF16, E * dim, inter, 5);
    ob_mat *gm = malloc(sizeof *gm * 3 * (size_t)E);
    for (int e = 0; gm && e < E; e++) {
        gm[e] = ob_mat_make((ob_ptr){ *gw, (size_t)e * eb }, OB_BF16, inter, dim);
        gm[E + e] = ob_mat_make((ob_ptr){ *uw, (size_t)e * eb }, OB_BF16, inter, dim);
        gm[2 * E + e] = ob_mat_make((ob_ptr){ *dw, (size_t)e * eb }, OB_BF16, dim, inter);
    }
    return gm;
}

static void prefill(ob_backend *b) {
    const int ns[] = { 16, 128, 512 };
    const ob_dtype ts[] = { OB_BF16, OB_Q8_0 };
    printf("%-36s %8s %9s %9s\n", "tiled matmul [4096 x 2048]", "n", "ms", "TFLOP/s");
    for (int ti = 0; ti < 2; ti++) {
        ob_buf *w = rand_weight(b, ts[ti], 4096, 2048, 1);
        ob_mat m = ob_mat_make((ob_ptr){ w, 0 }, ts[ti], 4096, 2048);
        for (int ni = 0; ni < 3; ni++) {
            int n = ns[ni];
            ob_buf *x = rand_buf(b, (size_t)n * 2048, 1, 2), *y = b->ops->alloc(b, (size_t)n * 4096 * 4);
            double ms = TIME_MS(10, b->ops->matmul(b, &m, (ob_ptr){ x, 0 }, (ob_ptr){ y, 0 }, n, 0));
            printf("%-36s %8d %9.3f %9.2f\n", ob_dtype_name(ts[ti]), n, ms, 2.0 * n * 4096 * 2048 / (ms * 1e9));
            b->ops->buf_free(b, x);
            b->ops->buf_free(b, y);
        }
        b->ops->buf_free(b, w);
    }
    /* the thinker's other prefill products at 512 tokens (bf16): q|k|v, k/v, o (accumulating), the MoE router */
    const struct {
        const char *what;
        int rows, cols, acc;
    } pm[] = { { "q|k|v-proj [5120 x 2048] bf16", 5120, 2048, 0 }, { "k/v-proj [512 x 2048] bf16", 512, 2048, 0 },
               { "o-proj [2048 x 4096] bf16 acc", 2048, 4096, 1 }, { "router [128 x 2048] bf16", 128, 2048, 0 } };
    for (unsigned i = 0; i < sizeof pm / sizeof *pm; i++) {
        int n = 512;
        ob_buf *w = rand_weight(b, OB_BF16, pm[i].rows, pm[i].cols, 1);
        ob_mat m = ob_mat_make((ob_ptr){ w, 0 }, OB_BF16, pm[i].rows, pm[i].cols);
        ob_buf *x = rand_buf(b, (size_t)n * pm[i].cols, 1, 2), *y = b->ops->alloc(b, (size_t)n * pm[i].rows * 4);
        double ms = TIME_MS(10, b->ops->matmul(b, &m, (ob_ptr){ x, 0 }, (ob_ptr){ y, 0 }, n, pm[i].acc));
        printf("%-36s %8d %9.3f %9.2f\n", pm[i].what, n, ms, 2.0 * n * pm[i].rows * pm[i].cols / (ms * 1e9));
        b->ops->buf_free(b, x), b->ops->buf_free(b, y), b->ops->buf_free(b, w);
    }
    /* MoE: 128 experts [768 x 2048] bf16, top-8 of n tokens */
    printf("%-36s %8s %9s %9s\n", "moe_experts 128 x [768 x 2048] bf16", "n", "ms", "TFLOP/s");
    int E = 128, inter = 768, dim = 2048, k = 8;
    ob_buf *gw, *uw, *dw;
    ob_mat *gm = moe_weights(b, E, inter, dim, &gw, &uw, &dw);
    for (int ni = 0; ni < 3; ni++) {
        int n = ns[ni];
        ob_buf *x = rand_buf(b, (size_t)n * dim, 1, 6), *y = b->ops->alloc(b, (size_t)n * dim * 4);
        ob_buf *lg = rand_buf(b, (size_t)n * E, 3, 7), *ids = b->ops->alloc(b, (size_t)n * k * 4),
               *wt = b->ops->alloc(b, (size_t)n * k * 4);
        b->ops->moe_route(b, (ob_ptr){ lg, 0 }, n, E, k, 1, (ob_ptr){ ids, 0 }, (ob_ptr){ wt, 0 });
        double ms = TIME_MS(10, b->ops->moe_experts(b, (ob_ptr){x, 0}, n, k, (ob_ptr){ids, 0}, (ob_ptr){wt, 0}, gm,
                                                    gm + E, gm + 2 * E, E, (ob_ptr){y, 0}));
        printf("%-36s %8d %9.3f %9.2f\n", "", n, ms, 2.0 * 3 * n * k * inter * dim / (ms * 1e9));
        b->ops->buf_free(b, x), b->ops->buf_free(b, y), b->ops->buf_free(b, lg), b->ops->buf_free(b, ids),
            b->ops->buf_free(b, wt);
    }
    free(gm);
    b->ops->buf_free(b, gw), b->ops->buf_free(b, uw), b->ops->buf_free(b, dw);
    attention_rows(b);
    fflush(stdout);
}

/* sets (or with set == 0 unsets) the NAME=VALUE pairs of a comma-separated list */
static void env_list(const char *list, int set) {
    char buf[512];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');
        if (!eq) continue;
        *eq = 0;
        if (set) setenv(tok, eq + 1, 1);
        else unsetenv(tok);
    }
}

/* gemm: the thinker's prefill GEMMs at 512 tokens once per OMNI_BENCH_VARIANTS item ("A=1,B=2;C=0;..." as in
 * model mode; "X=0" stands for the defaults), all on one back-end, so the variants of the tensor-core GEMM
 * (vk_coopmat.c: tile shapes OMNI_VK_CM_DENSE / OMNI_VK_CM_MOE, OMNI_VK_CM_X16, the NV cooperative matrix 2 GEMM
 * OMNI_VK_CM2 / OMNI_VK_CM2_TILE) are timed side by side: q [4096 x 2048], k or v [512 x 2048], k|v (the
 * prefill's one product of both, also in q8_0) [1024 x 2048] and q|k|v [5120 x 2048] in bf16, o [2048 x 4096]
 * (accumulating) in bf16 and q8_0, q, k/v and q|k|v in q8_0 (OMNI_VK_CM2_Q8
 * / OMNI_VK_CM2_Q8BLK: Q8_0 on cm2), q and o in f16, and the grouped MoE (128 experts [768 x 2048],
 * top-8 of 512 tokens, fused gate+up, down) in bf16. Each row: ms per call (mean of 20, after one untimed call that
 * also compiles the variant's pipelines) and TFLOP/s (MoE: of the useful products, 2 x 3 x 512 x 8 x 768 x 2048).
 * Repeated products of one x reuse its fp16 copy (OMNI_VK_CM_X16=2), so the rows time the GEMM itself. */
/* OMNI_BENCH_GEMM_ONLY="q,o,experts,...": only these rows (a tile sweep compiles fewer pipelines); unset: all.
 * OMNI_BENCH_GEMM_N: x rows other than 512 (e.g. 4096: the kernel's throughput on a grid that fills the device) */
static int gemm_row_on(const char *what) {
    const char *f = getenv("OMNI_BENCH_GEMM_ONLY");
    if (!f || !*f) return 1;
    size_t l = strlen(what);
    for (const char *p = f; (p = strstr(p, what)) != NULL; p += l)
        if ((p == f || p[-1] == ',') && (p[l] == 0 || p[l] == ',')) return 1;
    return 0;
}

static void gemm_variants(ob_backend *b) {
    /* OMNI_BENCH_GEMM_REPS / OMNI_BENCH_EXPERTS: fewer calls / experts (a smoke run on a small device) */
    const char *re = getenv("OMNI_BENCH_GEMM_REPS"), *ee = getenv("OMNI_BENCH_EXPERTS"),
               *ne = getenv("OMNI_BENCH_GEMM_N");
    const int n = ne && atoi(ne) > 0 ? atoi(ne) : 512, inter = 768, dim = 2048, k = 8, reps = re && atoi(re) > 0 ? atoi(re) : 20;
    const int E = ee && atoi(ee) >= k ? atoi(ee) : 128;
    const char *vars = getenv("OMNI_BENCH_VARIANTS");
    char list[2048];
    snprintf(list, sizeof list, "%s", vars && *vars ? vars : "X=0");
    struct {
        const char *what;
        ob_dtype t;
        int rows, cols, acc;
        ob_buf *w;
    } pm[] = { { "q", OB_BF16, 4096, 2048, 0, NULL },    { "kv", OB_BF16, 512, 2048, 0, NULL },
               { "k|v", OB_BF16, 1024, 2048, 0, NULL },  { "k|v-q8", OB_Q8_0, 1024, 2048, 0, NULL },
               { "qkv", OB_BF16, 5120, 2048, 0, NULL },  { "o", OB_BF16, 2048, 4096, 1, NULL },
               { "q-q8", OB_Q8_0, 4096, 2048, 0, NULL },   { "kv-q8", OB_Q8_0, 512, 2048, 0, NULL },
               { "qkv-q8", OB_Q8_0, 5120, 2048, 0, NULL }, { "o-q8", OB_Q8_0, 2048, 4096, 1, NULL },
               { "q-f16", OB_F16, 4096, 2048, 0, NULL },  { "o-f16", OB_F16, 2048, 4096, 1, NULL } };
    const unsigned np = sizeof pm / sizeof *pm;
    for (unsigned i = 0; i < np; i++) pm[i].w = rand_weight(b, pm[i].t, pm[i].rows, pm[i].cols, 20 + (int)i);
    ob_buf *x = rand_buf(b, (size_t)n * 4096, 1, 2), *y = b->ops->alloc(b, (size_t)n * 5120 * 4);
    ob_buf *gw, *uw, *dw;
    ob_mat *gm = moe_weights(b, E, inter, dim, &gw, &uw, &dw);
    ob_buf *xm = rand_buf(b, (size_t)n * dim, 1, 6), *ym = b->ops->alloc(b, (size_t)n * dim * 4);
    ob_buf *lg = rand_buf(b, (size_t)n * E, 3, 7), *ids = b->ops->alloc(b, (size_t)n * k * 4),
           *wt = b->ops->alloc(b, (size_t)n * k * 4);
    b->ops->moe_route(b, (ob_ptr){ lg, 0 }, n, E, k, 1, (ob_ptr){ ids, 0 }, (ob_ptr){ wt, 0 });
    printf("gemm n=%d (ms per call, TFLOP/s):", n);
    for (unsigned i = 0; i < np; i++) printf(" %s [%d x %d]", pm[i].what, pm[i].rows, pm[i].cols);
    printf(" experts bf16 top-%d of %d x [%d x %d]\n", k, E, inter, dim);
    char *save = NULL;
    for (char *item = strtok_r(list, ";", &save); item; item = strtok_r(NULL, ";", &save)) {
        env_list(item, 1);
        printf("gemm [%s]", item);
        /* every product once first (the variant's pipelines compile: seconds for a workgroup-scope cooperative
         * matrix 2 GEMM, which leaves the device idle and its clocks low), then the clocks up again */
        for (unsigned i = 0; i < np; i++) {
            if (!gemm_row_on(pm[i].what)) continue;
            ob_mat m = ob_mat_make((ob_ptr){ pm[i].w, 0 }, pm[i].t, pm[i].rows, pm[i].cols);
            b->ops->matmul(b, &m, (ob_ptr){ x, 0 }, (ob_ptr){ y, 0 }, n, pm[i].acc);
        }
        if (gemm_row_on("experts"))
            b->ops->moe_experts(b, (ob_ptr){ xm, 0 }, n, k, (ob_ptr){ ids, 0 }, (ob_ptr){ wt, 0 }, gm, gm + E,
                                gm + 2 * E, E, (ob_ptr){ ym, 0 });
        b->ops->sync(b);
        clock_warmup(b);
        for (unsigned i = 0; i < np; i++) {
            if (!gemm_row_on(pm[i].what)) continue;
            ob_mat m = ob_mat_make((ob_ptr){ pm[i].w, 0 }, pm[i].t, pm[i].rows, pm[i].cols);
            double ms = TIME_MS(reps, b->ops->matmul(b, &m, (ob_ptr){ x, 0 }, (ob_ptr){ y, 0 }, n, pm[i].acc));
            printf(" %s %.4f %.1f", pm[i].what, ms, 2.0 * n * pm[i].rows * pm[i].cols / (ms * 1e9));
        }
        if (gemm_row_on("experts")) {
            double ms = TIME_MS(reps, b->ops->moe_experts(b, (ob_ptr){ xm, 0 }, n, k, (ob_ptr){ ids, 0 },
                                                        (ob_ptr){ wt, 0 }, gm, gm + E, gm + 2 * E, E,
                                                        (ob_ptr){ ym, 0 }));
            printf(" experts %.4f %.1f", ms, 2.0 * 3 * n * k * inter * dim / (ms * 1e9));
        }
        printf("\n");
        if (b->failed) {
            printf("back-end error: %s\n", b->err);
            b->failed = 0;
        }
        env_list(item, 0);
    }
    free(gm);
    for (unsigned i = 0; i < np; i++) b->ops->buf_free(b, pm[i].w);
    b->ops->buf_free(b, x), b->ops->buf_free(b, y), b->ops->buf_free(b, gw), b->ops->buf_free(b, uw);
    b->ops->buf_free(b, dw), b->ops->buf_free(b, xm), b->ops->buf_free(b, ym), b->ops->buf_free(b, lg);
    b->ops->buf_free(b, ids), b->ops->buf_free(b, wt);
    fflush(stdout);
}

/* one configuration: a fresh session, a warm-up prefill (OMNI_BENCH_WARM=N: only N tokens, as `omni bench` warms up
 * with 64), OMNI_BENCH_PASSES timed prefills (each printed), n_gen decode steps, then one profiled prefill */
static void model_variant(omni_model *m, const omni_model_info *info, const int32_t *ids, int n_prompt, int n_gen) {
    omni_session *s;
    omni_session_params sp = omni_session_default_params();
    if (omni_session_new(m, &sp, &s) != 0) {
        printf("session: %s\n", omni_model_error(m));
        return;
    }
    float *logits = malloc(sizeof *logits * (size_t)info->vocab_size);
    omni_rng r = { 11 };
    const char *reps_env = getenv("OMNI_BENCH_PASSES");
    int reps = reps_env && atoi(reps_env) > 0 ? atoi(reps_env) : 1;
    const char *warm = getenv("OMNI_BENCH_WARM");
    double sum = 0, best = 1e30;
    for (int rep = 0; rep < 1 + reps; rep++) {
        omni_session_reset(s);
        int np = rep == 0 && warm && atoi(warm) > 0 && atoi(warm) < n_prompt ? atoi(warm) : n_prompt;
        double t0 = omni_time_ms();
        int rc = omni_session_append(s, ids, np, logits, 0);
        double pp = omni_time_ms() - t0;
        if (rc) {
            printf("prefill: %s\n", omni_session_error(s));
            break;
        }
        t0 = omni_time_ms();
        for (int i = 0; i < n_gen && rc == 0; i++) {
            int32_t id = (int32_t)(omni_rng_next(&r) % (uint64_t)info->vocab_size);
            rc = omni_session_append(s, &id, 1, logits, 0);
        }
        double tg = omni_time_ms() - t0;
        if (rc) printf("decode: %s\n", omni_session_error(s));
        if (n_gen && getenv("OMNI_VK_ATTN_PROF")) attn_prof_print(m->be, "model decode, the last 64 layers");
        if (rep) sum += pp, best = pp < best ? pp : best;
        printf("  %s pp%d %.1f tok/s (%.1f ms)", rep ? "timed:  " : "warm-up:", np, np / (pp / 1e3), pp);
        if (n_gen) printf("   tg%d %.2f tok/s (%.2f ms/token)", n_gen, n_gen / (tg / 1e3), tg / n_gen);
        printf("\n");
    }
    printf("  pp%d mean %.1f tok/s, best %.1f tok/s\n", n_prompt, n_prompt / (sum / reps / 1e3),
           n_prompt / (best / 1e3));
    /* where a prefill's time goes (GPU timestamps per op class) */
    omni_model_set_profile(m, 1);
    double ms[OMNI_PROFILE_MAX] = { 0 }, junk[OMNI_PROFILE_MAX] = { 0 };
    const char *const *names = NULL;
    omni_model_profile(m, junk, NULL);
    omni_session_reset(s);
    omni_session_append(s, ids, n_prompt, logits, 0);
    int nc = omni_model_profile(m, ms, &names);
    omni_model_set_profile(m, 0);
    double tot = 0;
    for (int i = 0; i < nc; i++) tot += ms[i];
    printf("  prefill profile (ms, total %.2f):", tot);
    for (int i = 0; i < nc; i++)
        if (ms[i] > 0) printf(" %s %.2f", names[i], ms[i]);
    printf("\n");
    free(logits);
    omni_session_free(s);
}

/* a synthetic model from a config.json on the Vulkan back-end: prefill (and decode) speed and the prefill profile,
 * once per configuration of OMNI_BENCH_VARIANTS ("A=1,B=2;C=0;..." — each ;-separated item a set of environment
 * switches read per op or per session, e.g. OMNI_VK_ATTN_CM, OMNI_UBATCH; empty item = defaults) on one load;
 * OMNI_BENCH_Q8=1 quantizes the weights at load */
static int model(const char *config, int n_prompt, int n_gen) {
    omni_model_params p = omni_model_default_params();
    p.backend = OMNI_BACKEND_VULKAN;
    p.synthetic = 1;
    p.n_ctx = n_prompt + n_gen + 16;
    const char *q8 = getenv("OMNI_BENCH_Q8");
    if (q8 && atoi(q8)) p.weights = OMNI_WEIGHTS_Q8_0;
    omni_model *m;
    char err[512];
    double t0 = omni_time_ms();
    if (omni_model_load(config, &p, &m, err, sizeof err) != 0) {
        printf("model: %s\n", err);
        return 1;
    }
    omni_model_info info;
    omni_model_get_info(m, &info);
    printf("model %s: %d layers, %.2f GB of weights on %s, loaded in %.1f s\n", config, info.n_layers,
           info.weight_bytes / 1e9, info.device_name, (omni_time_ms() - t0) / 1e3);
    int32_t *ids = malloc(sizeof *ids * (size_t)n_prompt);
    omni_rng r = { 11 };
    for (int i = 0; i < n_prompt; i++) ids[i] = (int32_t)(omni_rng_next(&r) % (uint64_t)info.vocab_size);
    const char *vars = getenv("OMNI_BENCH_VARIANTS");
    char list[2048];
    snprintf(list, sizeof list, "%s", vars ? vars : "");
    char *save = NULL, *item = strtok_r(list, ";", &save);
    if (!item) item = list;
    for (; item; item = strtok_r(NULL, ";", &save)) {
        printf("variant [%s]\n", item);
        env_list(item, 1);
        model_variant(m, &info, ids, n_prompt, n_gen);
        env_list(item, 0);
        fflush(stdout);
    }
    free(ids);
    omni_model_free(m);
    return 0;
}

/* the attention rows once per item of OMNI_BENCH_VARIANTS (as in model mode: switches read per call, e.g.
 * OMNI_VK_ATTN_CM_TAU=0;OMNI_VK_ATTN_CM_HPW=2), on one back-end; unset: once with the defaults */
static void attention_variants(ob_backend *b) {
    const char *vars = getenv("OMNI_BENCH_VARIANTS");
    if (!vars || !*vars) {
        attention_rows(b);
        return;
    }
    char list[2048];
    snprintf(list, sizeof list, "%s", vars);
    char *save = NULL;
    for (char *item = strtok_r(list, ";", &save); item; item = strtok_r(NULL, ";", &save)) {
        printf("variant [%s]\n", item);
        env_list(item, 1);
        attention_rows(b);
        env_list(item, 0);
        if (b->failed) break;
    }
}

static void devices(void) {
    ob_vk_device_info d[8];
    int n = ob_vulkan_list_devices(d, 8, NULL, 0);
    for (int i = 0; i < n && i < 8; i++)
        printf("[%d] %s (%s) %s | api %u.%u | subgroup %u arith %d shuffle %d sizectl %d | fp16 %d int8 %d bf16 %d "
               "fp64 %d | intdot %d accel %d | coopmat nv %d khr %d nv2 %d (kernels %s) | ts %d | alloc %.1f GiB "
               "storage %.1f GiB shared %u KiB push %u | usable %d %s\n",
               i, d[i].name, d[i].type, d[i].driver, (d[i].api_version >> 22) & 0x7f, (d[i].api_version >> 12) & 0x3ff,
               d[i].subgroup_size, d[i].subgroup_arith, d[i].subgroup_shuffle, d[i].subgroup_size_control, d[i].fp16,
               d[i].int8, d[i].bf16, d[i].fp64, d[i].int_dot, d[i].int_dot_accel, d[i].coopmat_nv, d[i].coopmat_khr,
               d[i].coopmat2_nv, d[i].cm_kernels == 2 ? "KHR" : d[i].cm_kernels == 1 ? "NV" : "none", d[i].timestamps, d[i].max_alloc / 1073741824.0, d[i].max_storage_range / 1073741824.0,
               d[i].max_shared / 1024, d[i].max_push, d[i].usable, d[i].why_unusable);
    printf("default device: %d\n", ob_vulkan_default_device());
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* lines reach a pipe at once, also when a timeout kills us */
    int do_mv = 0, do_pf = 0, do_lat = 0, do_dec = 0, do_at = 0, do_gemm = 0, do_layers = 0, do_grid = 0;
    const char *config = NULL;
    int n_prompt = 512, n_gen = 64;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "devices")) devices();
        else if (!strcmp(argv[i], "matvec")) do_mv = 1;
        else if (!strcmp(argv[i], "prefill")) do_pf = 1;
        else if (!strcmp(argv[i], "gemm")) do_gemm = 1;
        else if (!strcmp(argv[i], "attention")) do_at = 1;
        else if (!strcmp(argv[i], "latency")) do_lat = 1;
        else if (!strcmp(argv[i], "gridbar")) do_grid = 1;
        else if (!strcmp(argv[i], "decode")) do_dec = 1;
        else if (!strcmp(argv[i], "layers")) do_layers = 1;
        else if (!strcmp(argv[i], "model") && i + 1 < argc) {
            config = argv[++i];
            if (i + 2 < argc && atoi(argv[i + 1]) > 0) {
                n_prompt = atoi(argv[++i]);
                n_gen = atoi(argv[++i]);
            }
        }
        else if (!strcmp(argv[i], "--peak") && i + 1 < argc) g_peak = atof(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc) g_only = argv[++i];
    }
    if (do_mv || do_pf || do_lat || do_dec || do_at || do_gemm || do_layers || do_grid) {
        char err[256];
        ob_backend *b = ob_vulkan_new(-1, err, sizeof err);
        if (!b) {
            printf("no Vulkan device: %s\n", err);
            return 1;
        }
        printf("device: %s\n", b->ops->device_name(b));
        if (do_lat) latency(b);
        if (do_grid) gridbar(b);
        if (do_dec) decode_ops(b);
        if (do_layers) decode_layers(b);
        if (do_mv) matvec(b);
        if (do_pf) prefill(b);
        if (do_at && !do_pf) attention_variants(b);
        if (do_gemm) gemm_variants(b);
        if (b->failed) printf("back-end error: %s\n", b->err);
        if (getenv("OMNI_VK_PIPELINE_STATS")) { /* the driver's statistics of the pipelines the modes above made */
            size_t cap = (size_t)1 << 20;
            char *st = malloc(cap);
            int rc = st ? ob_vulkan_pipeline_stats(b, st, cap) : OMNI_E_NOMEM;
            if (rc == OMNI_OK) printf("pipeline statistics (the driver's):\n%s", st);
            else printf("pipeline statistics: not available (%d)\n", rc);
            free(st);
        }
        b->ops->destroy(b);
    }
    if (config) return model(config, n_prompt, n_gen);
    return 0;
}
