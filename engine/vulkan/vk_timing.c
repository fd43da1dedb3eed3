/* vk_timing.c — GPU timing for the Vulkan back-end, with timestamp queries:
 *   - the optional per-op-class profiler of backend.h (prof_mark / prof_read): every mark writes a timestamp (after
 *     all earlier work completes) and the time between consecutive marks is charged to the class of the first;
 *     results are read after a sync, and a full query pool is synced and harvested early. Devices without
 *     timestamps on the compute queue charge nothing;
 *   - the matrix-vector micro-benchmark behind `omni devices --bench-matvec` (and tests/bench/vulkan_bench.c): the
 *     memory-bound kernels of a decode step (a dense projection, the MoE expert pair) at real shapes, reported as
 *     weight bytes read per second against the device's memory bandwidth. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

/* ---- profiler ---------------------------------------------------------------------------------------------------- */

#define PROF_QUERIES 8192
#define TRACE_MAX 512

/* adds the closed intervals of the pool to c->prof_ms (and, for dispatch stamps, to their trace entries) and empties
 * it (the work must be complete). The class charged runs on from one harvest to the next in c->prof_class' value at
 * the pool's first query, which is always a class mark (vk_prof_mark starts every pool with one). */
static void harvest(vk_ctx *c) {
    if (c->prof_n > 1) {
        uint64_t *ts = malloc(sizeof *ts * c->prof_n);
        if (ts && vkGetQueryPoolResults(c->dev, c->prof_pool, 0, c->prof_n, sizeof *ts * c->prof_n, ts, sizeof *ts,
                                        VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT) == VK_SUCCESS) {
            int cls = -1;
            for (uint32_t i = 0; i + 1 < c->prof_n; i++) {
                if (c->prof_cls[i] >= -1) cls = c->prof_cls[i];
                double ms = (double)(ts[i + 1] - ts[i]) * c->caps.timestamp_period * 1e-6;
                if (cls >= 0 && cls < OB_PROF_N) c->prof_ms[cls] += ms;
                int t = -2 - c->prof_cls[i + 1];
                if (t >= 0 && t < c->n_trace) c->trace[t].ms += ms, c->trace[t].calls++;
            }
        }
        free(ts);
    }
    c->prof_n = 0;
}

/* writes one timestamp (after all earlier work completes) tagged code; a full pool is synced and harvested first,
 * and the new pool opens with a mark of the class being charged */
static void stamp_query(vk_ctx *c, int code) {
    if (c->prof_n == PROF_QUERIES) {
        if (vk_sync(&c->base) != 0) return;
        harvest(c);
        VkCommandBuffer cb = vk_cmd(c);
        vkCmdResetQueryPool(cb, c->prof_pool, 0, PROF_QUERIES);
        vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, c->prof_pool, 0);
        c->prof_cls[c->prof_n++] = c->prof_class;
        if (code >= -1) return; /* that mark was the one asked for */
    }
    VkCommandBuffer cb = vk_cmd(c);
    if (c->prof_n == 0) vkCmdResetQueryPool(cb, c->prof_pool, 0, PROF_QUERIES);
    vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, c->prof_pool, c->prof_n);
    c->prof_cls[c->prof_n++] = code;
}

void vk_prof_mark(ob_backend *b, int cls) {
    vk_ctx *c = vk_of(b);
    if (c->base.failed || c->caps.timestamp_period <= 0) return;
    if (!c->prof_pool) {
        VkQueryPoolCreateInfo qi = { .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                     .queryType = VK_QUERY_TYPE_TIMESTAMP, .queryCount = PROF_QUERIES };
        c->prof_cls = malloc(sizeof *c->prof_cls * PROF_QUERIES);
        if (!c->prof_cls || vkCreateQueryPool(c->dev, &qi, NULL, &c->prof_pool) != VK_SUCCESS) {
            free(c->prof_cls);
            c->prof_cls = NULL;
            c->prof_pool = VK_NULL_HANDLE;
            c->caps.timestamp_period = 0; /* give up profiling */
            return;
        }
    }
    c->prof_class = cls;
    stamp_query(c, cls);
}

void vk_trace_dispatch(vk_ctx *c, VkPipeline p, uint32_t gx, uint32_t gy, uint32_t gz) {
    if (c->base.failed || !c->prof_pool || c->prof_n == 0) return;
    int t = 0;
    while (t < c->n_trace && !(c->trace[t].pipe == p && c->trace[t].gx == gx && c->trace[t].gy == gy &&
                               c->trace[t].gz == gz))
        t++;
    if (t == c->n_trace) {
        if (t == TRACE_MAX) return;
        if (!c->trace && !(c->trace = calloc(TRACE_MAX, sizeof *c->trace))) return;
        const char *name = "?";
        for (int i = 0; i < c->n_pipes; i++)
            if (c->pipes[i].pipe == p) name = vk_shader_table[c->pipes[i].shader / 3].name;
        c->trace[t] = (struct vk_trace){ .pipe = p, .gx = gx, .gy = gy, .gz = gz };
        snprintf(c->trace[t].name, sizeof c->trace[t].name, "%s %ux%ux%u", name, gx, gy, gz);
        c->n_trace++;
    }
    stamp_query(c, -2 - t);
}

void vk_prof_read(ob_backend *b, double *ms) {
    vk_ctx *c = vk_of(b);
    if (c->prof_n && vk_sync(b) == 0) {
        int open = c->prof_class;
        harvest(c);
        if (open >= 0) vk_prof_mark(b, open); /* an interval still open keeps charging its class */
    }
    for (int i = 0; i < OB_PROF_N; i++) {
        ms[i] += c->prof_ms[i];
        c->prof_ms[i] = 0;
    }
}

int vk_prof_kernels(ob_backend *b, const char **names, double *ms, int *calls, int cap) {
    vk_ctx *c = vk_of(b);
    int n = 0;
    for (int t = 0; t < c->n_trace && n < cap; t++) {
        if (!c->trace[t].calls) continue;
        names[n] = c->trace[t].name, ms[n] = c->trace[t].ms, calls[n] = c->trace[t].calls;
        c->trace[t].ms = 0, c->trace[t].calls = 0;
        n++;
    }
    return n;
}

void vk_prof_free(vk_ctx *c) {
    if (c->prof_pool) vkDestroyQueryPool(c->dev, c->prof_pool, NULL);
    free(c->prof_cls);
    free(c->trace);
    c->prof_pool = VK_NULL_HANDLE;
    c->prof_cls = NULL;
    c->trace = NULL;
}

/* ---- matrix-vector benchmark ------------------------------------------------------------------------------------- */

#define BENCH_EXPERTS 128
#define BENCH_BYTES_MIN ((size_t)256 << 20) /* cycle over at least this much weight memory (L2 is 50 MB on H100) */

static size_t mat_bytes(ob_dtype t, int rows, int cols) { return ob_dtype_bytes(t, (int64_t)rows * cols); }

/* random weights in dtype, host side */
static void *make_weights(ob_dtype t, int rows, int cols, uint64_t seed) {
    size_t n = (size_t)rows * (size_t)cols;
    float *f = malloc(n * sizeof *f);
    void *w = malloc(mat_bytes(t, rows, cols));
    if (!f || !w) {
        free(f);
        free(w);
        return NULL;
    }
    omni_rng r = { seed };
    for (size_t i = 0; i < n; i++) f[i] = (omni_rng_uniform(&r) - 0.5f) * 0.1f;
    ob_weights_from_f32(f, t, rows, cols, w);
    free(f);
    return w;
}

typedef struct {
    vk_ctx *c;
    VkQueryPool qp;
} timer;

static void stamp(timer *t, uint32_t q) {
    VkCommandBuffer cb = vk_cmd(t->c);
    if (q == 0) vkCmdResetQueryPool(cb, t->qp, 0, 2);
    vkCmdWriteTimestamp(cb, q == 0 ? VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT : VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, t->qp,
                        q);
}

/* the two-stamp query pool, where the device has timestamps (t->qp stays null otherwise: host clock) */
static void timer_open(timer *t) {
    if (t->c->caps.timestamp_period <= 0) return;
    VkQueryPoolCreateInfo qi = { .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                 .queryType = VK_QUERY_TYPE_TIMESTAMP, .queryCount = 2 };
    if (vkCreateQueryPool(t->c->dev, &qi, NULL, &t->qp) != VK_SUCCESS) t->qp = VK_NULL_HANDLE;
}

/* ms between the two stamps (device clock), or -1 */
static double elapsed(timer *t) {
    uint64_t ts[2];
    if (vkGetQueryPoolResults(t->c->dev, t->qp, 0, 2, sizeof ts, ts, sizeof ts[0],
                              VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT) != VK_SUCCESS)
        return -1;
    return (double)(ts[1] - ts[0]) * t->c->caps.timestamp_period * 1e-6;
}

/* the device's time between the stamps where it has them, else the host's wall_ms */
static double timer_ms(timer *t, double wall_ms) {
    double d = t->qp ? elapsed(t) : -1;
    return d > 0 ? d : wall_ms;
}

int ob_vulkan_bench_matvec(ob_backend *b, ob_dtype dtype, int rows, int cols, int n_sel, int iters,
                           ob_vk_bench_result *out) {
    vk_ctx *c = vk_of(b);
    const ob_ops *op = b->ops;
    memset(out, 0, sizeof *out);
    if (rows <= 0 || cols <= 0 || iters <= 0 || n_sel < 0 || n_sel > BENCH_EXPERTS ||
        (dtype == OB_Q8_0 && (cols % 32 || rows % 32)))
        return OMNI_E_ARG;
    size_t mb = mat_bytes(dtype, rows, cols);
    int n_mats = n_sel ? 3 * BENCH_EXPERTS : (int)((BENCH_BYTES_MIN + mb - 1) / mb);
    if (n_mats < 2) n_mats = 2;
    ob_buf **w = calloc((size_t)n_mats, sizeof *w);
    ob_mat *m = calloc((size_t)n_mats, sizeof *m);
    void *host = make_weights(dtype, rows, cols, 1);
    void *host_t = n_sel ? make_weights(dtype, cols, rows, 2) : NULL; /* down projections [cols, rows] */
    int rc = OMNI_E_NOMEM;
    int xdim = rows > cols ? rows : cols, nout = iters + 1;
    ob_buf *x = NULL, *y = NULL, *ids = NULL, *wts = NULL;
    timer t = { c, VK_NULL_HANDLE };
    if (!w || !m || !host || (n_sel && !host_t)) goto done;
    for (int i = 0; i < n_mats; i++) {
        int down = n_sel && i >= 2 * BENCH_EXPERTS;
        int r = down ? cols : rows, k = down ? rows : cols;
        if (!(w[i] = op->alloc(b, mb)) || op->upload(b, w[i], 0, down ? host_t : host, mb) != 0) goto done;
        m[i] = ob_mat_make((ob_ptr){ w[i], 0 }, dtype, r, k);
    }
    x = op->alloc(b, (size_t)xdim * 4);
    y = op->alloc(b, (size_t)nout * (size_t)xdim * 4);
    ids = op->alloc(b, (size_t)nout * (size_t)(n_sel ? n_sel : 1) * 4);
    wts = op->alloc(b, (size_t)nout * (size_t)(n_sel ? n_sel : 1) * 4);
    if (!x || !y || !ids || !wts) goto done;
    {
        float *hx = calloc((size_t)xdim, 4);
        int32_t *hid = calloc((size_t)nout * (size_t)(n_sel ? n_sel : 1), 4);
        float *hw = calloc((size_t)nout * (size_t)(n_sel ? n_sel : 1), 4);
        if (!hx || !hid || !hw) {
            free(hx);
            free(hid);
            free(hw);
            goto done;
        }
        omni_rng r = { 7 };
        for (int i = 0; i < xdim; i++) hx[i] = omni_rng_uniform(&r) - 0.5f;
        for (int i = 0; i < nout; i++) /* n_sel distinct experts per call */
            for (int j = 0; j < n_sel; j++) {
                int e, dup;
                do {
                    e = (int)(omni_rng_next(&r) % BENCH_EXPERTS);
                    dup = 0;
                    for (int q = 0; q < j; q++) dup |= hid[i * n_sel + q] == e;
                } while (dup);
                hid[i * n_sel + j] = e;
                hw[i * n_sel + j] = 1.0f / (float)n_sel;
            }
        op->upload(b, x, 0, hx, (size_t)xdim * 4);
        op->upload(b, ids, 0, hid, (size_t)nout * (size_t)(n_sel ? n_sel : 1) * 4);
        op->upload(b, wts, 0, hw, (size_t)nout * (size_t)(n_sel ? n_sel : 1) * 4);
        free(hx);
        free(hid);
        free(hw);
    }
    timer_open(&t);
    out->timed_on_device = t.qp != VK_NULL_HANDLE;
    out->weight_bytes = (double)mb * (n_sel ? 3.0 * n_sel : 1.0);
    for (int pass = 0; pass < 3; pass++) { /* 0 warm-up, 1 independent, 2 chained */
        int n_calls = pass == 0 ? 3 : iters;
        if (op->sync(b) != 0) break;
        double t0 = omni_time_ms();
        if (pass && t.qp) stamp(&t, 0);
        for (int i = 0; i < n_calls; i++) {
            int slot = pass == 2 ? nout - 1 : i; /* chained: every call writes the same output */
            ob_ptr yo = { y, (size_t)slot * (size_t)xdim * 4 };
            if (!n_sel) {
                op->matmul(b, &m[i % n_mats], (ob_ptr){ x, 0 }, yo, 1, 0);
            } else {
                ob_ptr id = { ids, (size_t)i * (size_t)n_sel * 4 }, wt = { wts, (size_t)i * (size_t)n_sel * 4 };
                op->moe_experts(b, (ob_ptr){ x, 0 }, 1, n_sel, id, wt, &m[0], &m[BENCH_EXPERTS],
                                &m[2 * BENCH_EXPERTS], BENCH_EXPERTS, yo);
            }
        }
        if (pass && t.qp) stamp(&t, 1);
        if (op->sync(b) != 0) break;
        double ms = (pass ? timer_ms(&t, omni_time_ms() - t0) : omni_time_ms() - t0) / n_calls;
        if (pass == 1) out->ms_per_call = ms;
        if (pass == 2) out->ms_per_call_chained = ms;
    }
    if (out->ms_per_call > 0) out->gbytes_per_s = out->weight_bytes / (out->ms_per_call * 1e6);
    if (out->ms_per_call_chained > 0) out->gbytes_per_s_chained = out->weight_bytes / (out->ms_per_call_chained * 1e6);
    rc = b->failed ? OMNI_E_BACKEND : OMNI_OK;
done:
    if (t.qp) vkDestroyQueryPool(c->dev, t.qp, NULL);
    if (w)
        for (int i = 0; i < n_mats; i++) op->buf_free(b, w[i]);
    op->buf_free(b, x);
    op->buf_free(b, y);
    op->buf_free(b, ids);
    op->buf_free(b, wts);
    free(w);
    free(m);
    free(host);
    free(host_t);
    return rc;
}

/* ---- the grid-barrier micro-benchmark ---------------------------------------------------------------------------
 * The premise of the persistent decode kernel (docs/architecture.md): a phase boundary inside one resident dispatch
 * (gridbar.comp: a device counter every workgroup adds to and then waits on) costs less than a pipeline barrier and a
 * new dispatch, and loads of the next phase issued before the wait hide the ramp of the next phase. Each variant
 * streams `bytes` per phase from regions that together exceed the L2 cache. */
int ob_vulkan_bench_gridbar(ob_backend *b, int n_wg, size_t bytes, int variant, int phases, double *us_per_phase) {
    vk_ctx *c = vk_of(b);
    const ob_ops *op = b->ops;
    *us_per_phase = 0;
    if (n_wg <= 0 || (uint32_t)n_wg > c->caps.max_wg_count[0] || phases < 2 || variant < 0 || variant > 2 ||
        bytes / 16 > UINT32_MAX / 2)
        return OMNI_E_ARG;
    uint32_t n16 = (uint32_t)(bytes / 16), n_reg = 1;
    if (n16) {
        size_t want = (size_t)192 << 20, cap = c->caps.max_storage_range; /* > the L2 of any current GPU */
        n_reg = (uint32_t)((want + (size_t)n16 * 16 - 1) / ((size_t)n16 * 16));
        if (n_reg < 2) n_reg = 2;
        while (n_reg > 1 && (size_t)n16 * 16 * n_reg > cap) n_reg--;
    }
    size_t buf_b = n16 ? (size_t)n16 * 16 * n_reg : 16;
    ob_buf *buf = op->alloc(b, buf_b), *cnt = op->alloc(b, 16), *sink = op->alloc(b, 16);
    timer t = { c, VK_NULL_HANDLE };
    int rc = OMNI_E_NOMEM;
    double ms[3] = { 0 };
    if (!buf || !cnt || !sink) goto done;
    timer_open(&t);
    const uint32_t wg = 256, zero[4] = { 0 };
    uint32_t spec[2] = { wg, variant == 2 };
    VkPipeline p = vk_pipeline(c, SH_GRIDBAR, spec, 2);
    ob_pc_gridbar pc = { .cnt = cnt->blk->addr + cnt->off, .buf = buf->blk->addr + buf->off,
                         .sink = sink->blk->addr + sink->off, .n16 = n16, .n_reg = n_reg, .key = 0x9e3779b9u };
    vk_range rd[2] = { vk_rng(pc.buf, buf_b), vk_rng(pc.cnt, 4) }, wr = vk_rng(pc.cnt, 4);
    for (int run = 0; run < 3; run++) { /* 0 warm-up, 1 one phase, 2 all phases */
        int P = run == 1 ? 1 : phases;
        if (op->sync(b) != 0) break;
        double t0 = omni_time_ms();
        if (t.qp) stamp(&t, 0);
        if (variant == 0) { /* one phase per dispatch; the counter write puts a barrier between every two */
            for (int i = 0; i < P; i++) {
                pc.phases = 1, pc.p0 = (uint32_t)i, pc.bar = 0;
                vk_dispatch(c, p, &pc, sizeof pc, (uint32_t)n_wg, 1, 1, rd, 2, &wr, 1);
            }
        } else {
            if (op->upload(b, cnt, 0, zero, sizeof zero) != 0) break;
            pc.phases = (uint32_t)P, pc.p0 = 0, pc.bar = 1;
            vk_dispatch(c, p, &pc, sizeof pc, (uint32_t)n_wg, 1, 1, rd, 2, &wr, 1);
        }
        if (t.qp) stamp(&t, 1);
        if (op->sync(b) != 0) break;
        ms[run] = timer_ms(&t, omni_time_ms() - t0);
    }
    if (!b->failed) *us_per_phase = (ms[2] - ms[1]) * 1e3 / (phases - 1);
    rc = b->failed ? OMNI_E_BACKEND : OMNI_OK;
done:
    if (t.qp) vkDestroyQueryPool(c->dev, t.qp, NULL);
    op->buf_free(b, buf);
    op->buf_free(b, cnt);
    op->buf_free(b, sink);
    return rc;
}

/* ---- the driver's pipeline statistics ---------------------------------------------------------------------------
 * With OMNI_VK_PIPELINE_STATS=1 on a device with VK_KHR_pipeline_executable_properties, every pipeline is created
 * with statistics capture; this lists them (registers per thread, shared memory, ... as the driver names them) for
 * the pipelines created so far, one line per executable: the shader, its specialization constants, then name=value
 * pairs. Register counts decide how many workgroups of a kernel an SM keeps resident, which the decode kernels'
 * latency and a resident (persistent) kernel's grid depend on. */
static void sbuf_add(char *out, size_t cap, size_t *len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void sbuf_add(char *out, size_t cap, size_t *len, const char *fmt, ...) {
    if (*len + 1 >= cap) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n > 0) *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

int ob_vulkan_pipeline_stats(ob_backend *b, char *out, size_t cap) {
    vk_ctx *c = vk_of(b);
    if (!out || !cap) return OMNI_E_ARG;
    out[0] = 0;
    if (!c->pipe_stats) return OMNI_E_UNSUPPORTED;
    PFN_vkGetPipelineExecutablePropertiesKHR get_exe =
        (PFN_vkGetPipelineExecutablePropertiesKHR)vkGetDeviceProcAddr(c->dev, "vkGetPipelineExecutablePropertiesKHR");
    PFN_vkGetPipelineExecutableStatisticsKHR get_stats =
        (PFN_vkGetPipelineExecutableStatisticsKHR)vkGetDeviceProcAddr(c->dev, "vkGetPipelineExecutableStatisticsKHR");
    if (!get_exe || !get_stats) return OMNI_E_UNSUPPORTED;
    size_t len = 0;
    for (int i = 0; i < c->n_pipes; i++) {
        const vk_pipe *p = &c->pipes[i];
        VkPipelineInfoKHR pi = { .sType = VK_STRUCTURE_TYPE_PIPELINE_INFO_KHR, .pipeline = p->pipe };
        uint32_t n_exe = 0;
        if (get_exe(c->dev, &pi, &n_exe, NULL) != VK_SUCCESS) continue;
        for (uint32_t x = 0; x < n_exe; x++) {
            VkPipelineExecutableInfoKHR xi = { .sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_INFO_KHR,
                                               .pipeline = p->pipe, .executableIndex = x };
            VkPipelineExecutableStatisticKHR st[32];
            uint32_t n_st = 32;
            for (uint32_t k = 0; k < n_st; k++)
                st[k] = (VkPipelineExecutableStatisticKHR){ .sType = VK_STRUCTURE_TYPE_PIPELINE_EXECUTABLE_STATISTIC_KHR };
            VkResult r = get_stats(c->dev, &xi, &n_st, st); /* VK_INCOMPLETE: the first 32 */
            if (r != VK_SUCCESS && r != VK_INCOMPLETE) continue;
            sbuf_add(out, cap, &len, "%s%s [", vk_shader_table[p->shader / 3].name,
                     p->shader % 3 == 2 ? "_khr" : p->shader % 3 ? "_nosg" : "");
            for (int k = 0; k < p->n_spec; k++) sbuf_add(out, cap, &len, "%s%u", k ? "," : "", p->spec[k]);
            sbuf_add(out, cap, &len, "]");
            for (uint32_t k = 0; k < n_st; k++) {
                const VkPipelineExecutableStatisticKHR *s = &st[k];
                switch (s->format) {
                case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_BOOL32_KHR:
                    sbuf_add(out, cap, &len, " %s=%s", s->name, s->value.b32 ? "yes" : "no");
                    break;
                case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_INT64_KHR:
                    sbuf_add(out, cap, &len, " %s=%lld", s->name, (long long)s->value.i64);
                    break;
                case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_UINT64_KHR:
                    sbuf_add(out, cap, &len, " %s=%llu", s->name, (unsigned long long)s->value.u64);
                    break;
                case VK_PIPELINE_EXECUTABLE_STATISTIC_FORMAT_FLOAT64_KHR:
                    sbuf_add(out, cap, &len, " %s=%g", s->name, s->value.f64);
                    break;
                default: break;
                }
            }
            sbuf_add(out, cap, &len, "\n");
        }
    }
    return OMNI_OK;
}
