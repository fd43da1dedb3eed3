/* vk_decode.c — fused ops of the decode path (backend.h, "optional fused ops") for the Vulkan back-end.
 *
 * A decode step is memory-bound and short (a few ms for 48 layers), so every dependent dispatch costs its launch
 * and a pipeline barrier (~3 µs on the H100) on top of the work. The ops here do in one dispatch what the unfused
 * sequence does in several, with the same fp32 arithmetic, and fall back to that sequence for shapes or weight
 * types their kernels do not take. OMNI_VK_FUSE=0 turns them off (the unfused sequence), for comparisons.
 *
 *   qk_norm_rope_kv: q_norm and k_norm per head, RoPE of q and k, and the k/v cache update — five dispatches
 *   (rms_norm.comp ×2, rope.comp ×2, kv_store.comp) become one of qk_rope_kv.comp, one workgroup per (head,
 *   token).
 *   norm_matvec: RMSNorm of one row fused in front of a matrix-vector product: every workgroup normalises x itself
 *   into shared memory (2048 floats from L2: cheaper than a dispatch and a barrier), workgroup 0 writes the
 *   normalised row out for later users. On devices with subgroups mv.comp does it after issuing all its weight
 *   loads, which hides the norm (the input norm + q|k|v of every layer); matvec.comp with NORM only for few rows
 *   (see NORM_MATVEC_MAX_ROWS for the measurement).
 *   norm_route: post_attention_layernorm + router + softmax/top-k in one dispatch of router.comp (the last
 *   workgroup to finish selects the experts); otherwise norm_matvec and moe_route.
 *   matmul_norm_route: the folded router (below): the router's rows beside the attention and beside o_proj, the
 *   norm and the top-k in the MoE gate+up; otherwise (OMNI_VK_ROUTE_FOLD=0, shapes it does not take) o_proj +
 *   residual chained in front of norm_route in the same dispatch (router_chain, shaders/chain.glsl: the router's
 *   workgroups wait inside the dispatch); OMNI_VK_CHAIN=0: matmul, then norm_route.
 *   qk_norm_rope_kv_attention: for one decode token, qk_norm_rope_kv and attention (qk_rope_kv.comp, attn_split.comp,
 *   attn_combine.comp: three dependent dispatches) in one of attn_decode.comp: split-K over the context with one
 *   workgroup per (key chunk, kv head) serving all q heads of that kv head, the last workgroup of a kv head merging
 *   the chunks (see the shader). OMNI_VK_ATTN_FUSE=0 turns only this one off.
 *
 * Mirrors the CPU back-end's fused ops, which run the unfused sequence. */
#include <stdio.h>
#include <stdlib.h>

#include "vk_internal.h"

/* the unfused sequence of qk_norm_rope_kv (the CPU back-end's definition of the op) */
static void qk_unfused(ob_backend *b, ob_ptr q, ob_ptr k, ob_ptr v, const ob_mat *q_norm, const ob_mat *k_norm,
                       float eps, ob_ptr pos3, const ob_rope *r, ob_ptr kcache, ob_ptr vcache, int n_ctx, int pos0,
                       int n, const ob_attn *a) {
    int D = a->head_dim;
    size_t kd = (size_t)a->n_kv_heads * D * 4, st = (size_t)a->kv_stride * 4;
    if (a->kv_stride && st != kd) { /* strided rows: the sequence on dense copies (scratch slot 7), k copied back */
        vk_ctx *c = vk_of(b);
        ob_buf *t = vk_scratch(c, 7, 2 * (size_t)n * kd);
        if (!t) return;
        ob_ptr tk = { t, 0 }, tv = { t, (size_t)n * kd };
        for (int i = 0; i < n; i++) {
            vk_op_copy(b, ob_at(k, i * st), ob_at(tk, i * kd), kd);
            vk_op_copy(b, ob_at(v, i * st), ob_at(tv, i * kd), kd);
        }
        ob_attn dense = *a;
        dense.kv_stride = 0;
        qk_unfused(b, q, tk, tv, q_norm, k_norm, eps, pos3, r, kcache, vcache, n_ctx, pos0, n, &dense);
        for (int i = 0; i < n; i++) vk_op_copy(b, ob_at(tk, i * kd), ob_at(k, i * st), kd);
        return;
    }
    vk_op_rms_norm(b, q, q_norm, q, n * a->n_heads, D, eps);
    vk_op_rms_norm(b, k, k_norm, k, n * a->n_kv_heads, D, eps);
    vk_op_rope(b, q, pos3, n, a->n_heads, r);
    vk_op_rope(b, k, pos3, n, a->n_kv_heads, r);
    vk_op_kv_store(b, kcache, vcache, n_ctx, k, v, pos0, n, a);
}

/* a per-head norm weight the fused kernel reads element by element: f32, f16 or bf16, at least dim elements */
static int norm_weight_ok(const ob_mat *w, int dim) {
    return w && w->data.buf && (w->dtype == OB_F32 || w->dtype == OB_F16 || w->dtype == OB_BF16) &&
           w->rows * w->cols >= dim;
}

void vk_op_qk_norm_rope_kv(ob_backend *b, ob_ptr q, ob_ptr k, ob_ptr v, const ob_mat *q_norm, const ob_mat *k_norm,
                           float eps, ob_ptr pos3, const ob_rope *r, ob_ptr kcache, ob_ptr vcache, int n_ctx, int pos0,
                           int n, const ob_attn *a) {
    vk_ctx *c = vk_of(b);
    if (n <= 0 || c->base.failed) return;
    int D = a->head_dim, Hq = a->n_heads, Hkv = a->n_kv_heads;
    int stride = a->kv_stride ? a->kv_stride : Hkv * D;
    if (stride < Hkv * D) {
        vk_fail(c, "qk_norm_rope_kv: k/v row stride %d below %d x %d", stride, Hkv, D);
        return;
    }
    int secs_ok = 1; /* the sections travel as a byte each */
    for (int i = 0; i < 3; i++) secs_ok &= r->section[i] >= 0 && r->section[i] <= 255;
    int fusable = c->env.fuse && D > 0 && D <= 256 && r->head_dim == D && r->rot_dim > 0 && r->rot_dim <= D &&
                  r->rot_dim % 2 == 0 && Hq > 0 && Hkv > 0 && Hq % Hkv == 0 && (uint32_t)n <= c->caps.max_wg_count[1] &&
                  (uint32_t)(Hq + Hkv) <= c->caps.max_wg_count[0] && norm_weight_ok(q_norm, D) &&
                  norm_weight_ok(k_norm, D) && secs_ok;
    if (!fusable) {
        qk_unfused(b, q, k, v, q_norm, k_norm, eps, pos3, r, kcache, vcache, n_ctx, pos0, n, a);
        return;
    }
    if (vk_mat_check(c, q_norm, "qk_norm_rope_kv q_norm") != 0 || vk_mat_check(c, k_norm, "qk_norm_rope_kv k_norm"))
        return;
    if (pos0 < 0 || pos0 + n > n_ctx) {
        vk_fail(c, "qk_norm_rope_kv: positions %d..%d outside a context of %d", pos0, pos0 + n - 1, n_ctx);
        return;
    }
    size_t qb = (size_t)n * (size_t)Hq * (size_t)D * 4, kb = ((size_t)(n - 1) * stride + (size_t)Hkv * D) * 4;
    size_t cache_b = vk_kv_bytes(c, Hkv, n_ctx, D), pb = (size_t)3 * (size_t)n * 4;
    if (!vk_ptr_ok(c, q, qb, "qk_norm_rope_kv q") || !vk_ptr_ok(c, k, kb, "qk_norm_rope_kv k") ||
        !vk_ptr_ok(c, v, kb, "qk_norm_rope_kv v") || !vk_ptr_ok(c, pos3, pb, "qk_norm_rope_kv pos") ||
        !vk_ptr_ok(c, kcache, cache_b, "qk_norm_rope_kv k cache") ||
        !vk_ptr_ok(c, vcache, cache_b, "qk_norm_rope_kv v cache"))
        return;
    ob_buf *fb = vk_rope_freqs(c, r);
    if (!fb) return;
    ob_pc_qkrope pc = {
        .q = vk_addr(q), .k = vk_addr(k), .v = vk_addr(v), .w_q = vk_addr(q_norm->data), .w_k = vk_addr(k_norm->data),
        .pos = vk_addr(pos3), .freqs = fb->blk->addr + fb->off, .kc = vk_addr(kcache), .vc = vk_addr(vcache),
        .n = (uint32_t)n, .n_heads = (uint32_t)Hq, .n_kv = (uint32_t)Hkv, .head_dim = (uint32_t)D,
        .rot_dim = (uint32_t)r->rot_dim,
        .secs = (uint32_t)r->section[0] | (uint32_t)r->section[1] << 8 | (uint32_t)r->section[2] << 16 |
                (uint32_t)(r->interleaved != 0) << 24,
        .n_ctx = (uint32_t)n_ctx, .pos0 = (uint32_t)pos0, .eps = eps, .kv_stride = (uint32_t)stride,
    };
    /* k and v as the halves of one product [n][k | v] that still owes its split-K sum (vk_coopmat.c): the kernel
     * takes the sum itself (OMNI_VK_KSUM_DEFER=0: never owed) */
    vk_range r_part = { 0 };
    if (stride == 2 * Hkv * D && pc.v == pc.k + (size_t)Hkv * D * 4)
        pc.part = vk_ksum_take(c, pc.k, (uint32_t)n, (uint32_t)stride, 0, &pc.nsplit, &r_part);
    /* 64 threads: head_dim 128 gives each thread two elements and one rotation pair */
    uint32_t spec[4] = { 64, (uint32_t)q_norm->dtype, (uint32_t)k_norm->dtype, (uint32_t)vk_kv16(c, D) };
    vk_range rd[8] = { vk_rng(pc.q, qb),        vk_rng(pc.k, kb),      vk_rng(pc.v, kb),
                       vk_mat_range(q_norm),    vk_mat_range(k_norm),  vk_rng(pc.pos, pb),
                       vk_rng(pc.freqs, (size_t)r->rot_dim * 2), r_part };
    /* only rows pos0..pos0+n-1 of each cache head are written, but they are strided: state the whole caches */
    vk_range wr[5] = { vk_rng(pc.q, qb), vk_rng(pc.k, kb), vk_rng(pc.kc, cache_b), vk_rng(pc.vc, cache_b),
                       vk_rng(pc.v, kb) };
    vk_dispatch(c, vk_pipeline(c, SH_QK_ROPE_KV, spec, 4), &pc, sizeof pc, (uint32_t)(Hq + Hkv), (uint32_t)n, 1, rd,
                pc.part ? 8 : 7, wr, pc.part ? 5 : 4);
}

/* ---- norm_matvec ------------------------------------------------------------------------------------------------ */

/* the largest row the fused kernel stages in shared memory (16 KiB of fp32) */
#define NORM_MATVEC_MAX_COLS 4096
/* matvec.comp fuses the norm only for matrices of few rows (few workgroups): every workgroup pays the norm's latency
 * (two passes over x and a workgroup reduction) before its weight loads start (mv.comp issues them first). Measured on an H200 (tg128, synthetic Qwen3-Omni
 * thinker, bf16): input_layernorm + q|k|v [5120 x 2048] fused cost 0.15 ms/token more than the separate rms_norm
 * and matvec (projections 1.41 vs 1.26 ms, 183.5 vs 188.0 tok/s); post_attention_layernorm + router [128 x 2048]
 * was slightly ahead (router class 0.95 vs 0.98 ms with the norm). */
#define NORM_MATVEC_MAX_ROWS 1024

void vk_op_norm_matvec(ob_backend *b, ob_ptr x, const ob_mat *norm, float eps, const ob_mat *w, ob_ptr y,
                       ob_ptr xn) {
    vk_ctx *c = vk_of(b);
    if (c->base.failed) return;
    if (vk_mat_check(c, w, "norm_matvec") != 0) return;
    int cols = (int)w->cols;
    /* mv.comp (subgroups) hides the norm behind its weight loads, so any number of rows is worth fusing there */
    int mv = vk_use_subgroups(c) && !c->env.mv_old;
    int fusable = c->env.fuse && cols <= NORM_MATVEC_MAX_COLS && cols % 4 == 0 && norm_weight_ok(norm, cols) &&
                  c->env.mm != 2 && (w->rows <= NORM_MATVEC_MAX_ROWS || mv);
    if (!fusable) { /* the unfused pair (also where OMNI_VK_MM forces the tiled kernel) */
        vk_op_rms_norm(b, x, norm, xn, 1, cols, eps);
        vk_op_matmul(b, w, xn, y, 1, 0);
        return;
    }
    if (vk_mat_check(c, norm, "norm_matvec norm") != 0) return;
    size_t xb = (size_t)cols * 4, yb = (size_t)w->rows * 4;
    if (!vk_ptr_ok(c, x, xb, "norm_matvec x") || !vk_ptr_ok(c, y, yb, "norm_matvec y") ||
        !vk_ptr_ok(c, xn, xb, "norm_matvec xn"))
        return;
    VkDeviceAddress wa = vk_addr(w->data);
    ob_pc_matvec pc = {
        .w = wa, .s = wa + w->scale_off, .w2 = vk_addr(norm->data), .x = vk_addr(x), .y = vk_addr(y),
        .ids = vk_addr(xn), .rows = (uint32_t)w->rows, .cols = (uint32_t)cols, .n = 1, .k = 1, .accumulate = 0,
        .x_stride = (uint32_t)cols, .y_stride = (uint32_t)w->rows, .eps = eps,
    };
    vk_range rd[3] = { vk_mat_range(w), vk_rng(pc.x, xb), vk_mat_range(norm) };
    vk_range wr[2] = { vk_rng(pc.y, yb), vk_rng(pc.ids, xb) };
    /* x is read from shared memory, so only the weight's alignment picks the vector path */
    vk_matvec_dispatch_norm(c, 0, w->dtype, vk_mat_vec_ok(w), &pc, 1, rd, 3, wr, 2, 1 + (int)norm->dtype);
}

/* ---- norm_route ------------------------------------------------------------------------------------------------- */

/* router.comp: one dispatch for norm + router + top-k on devices with subgroups, for aligned rows of at most
 * 16 vectors per lane and up to 256 experts (k <= 32); otherwise norm_matvec and moe_route. Returns the vectors
 * per lane (the NPL constant), 0 where the kernel does not apply. */
static uint32_t route_npl(vk_ctx *c, ob_ptr x, const ob_mat *norm, const ob_mat *w, ob_ptr xn, int k) {
    int cols = (int)w->cols, rows = (int)w->rows;
    uint32_t sgs = c->caps.subgroup_size, epv = w->dtype == OB_F32 ? 4 : w->dtype == OB_Q8_0 ? 16 : 8;
    uint32_t npl = sgs ? ((uint32_t)cols / epv + sgs - 1) / sgs : 0;
    int fusable = c->env.fuse && vk_use_subgroups(c) && sgs >= 8 && sgs <= 128 && cols > 0 && cols % (int)epv == 0 &&
                  npl <= 16 && vk_mat_vec_ok(w) && vk_addr(x) % 16 == 0 && vk_addr(xn) % 16 == 0 &&
                  norm_weight_ok(norm, cols) && rows >= 1 && rows <= 256 && k >= 1 && k <= 32 && k <= rows;
    return fusable ? npl : 0;
}

/* the router's push constants and ranges (shared by norm_route and matmul_norm_route); 0 after a failure */
static int route_setup(vk_ctx *c, ob_ptr x, const ob_mat *norm, float eps, const ob_mat *w, ob_ptr logits, ob_ptr xn,
                       int k, int norm_topk, ob_ptr ids, ob_ptr weights, ob_pc_router *pc, vk_range *rd,
                       vk_range *wr) {
    if (vk_mat_check(c, norm, "norm_route norm") != 0) return 0;
    int cols = (int)w->cols, rows = (int)w->rows;
    size_t xb = (size_t)cols * 4, lb = (size_t)rows * 4, kb = (size_t)k * 4;
    if (!vk_ptr_ok(c, x, xb, "norm_route x") || !vk_ptr_ok(c, xn, xb, "norm_route xn") ||
        !vk_ptr_ok(c, logits, lb, "norm_route logits") || !vk_ptr_ok(c, ids, kb, "norm_route ids") ||
        !vk_ptr_ok(c, weights, kb, "norm_route weights"))
        return 0;
    VkDeviceAddress cnt = vk_counters(c, VK_CNT_ROUTER, 1);
    if (!cnt) return 0;
    VkDeviceAddress wa = vk_addr(w->data);
    *pc = (ob_pc_router){
        .x = vk_addr(x), .nw = vk_addr(norm->data), .w = wa, .s = wa + w->scale_off, .xn = vk_addr(xn),
        .logits = vk_addr(logits), .ids = vk_addr(ids), .wts = vk_addr(weights), .counter = cnt,
        .rows = (uint32_t)rows, .cols = (uint32_t)cols, .k = (uint32_t)k, .renorm = (uint32_t)(norm_topk != 0),
        .eps = eps,
    };
    rd[0] = vk_mat_range(w), rd[1] = vk_rng(pc->x, xb), rd[2] = vk_mat_range(norm);
    wr[0] = vk_rng(pc->xn, xb), wr[1] = vk_rng(pc->logits, lb), wr[2] = vk_rng(pc->ids, kb);
    wr[3] = vk_rng(pc->wts, kb), wr[4] = vk_rng(cnt, 4);
    return 1;
}

/* ---- deferred top-k ----------------------------------------------------------------------------------------------
 * With OMNI_VK_ROUTE_DEFER (default on) the fused decode router writes only logits (and xn): the top-k is left to the
 * workgroups of the next MoE gate+up, which each select the experts themselves from the 128 logits
 * (shaders/route_rank.glsl; workgroup (0, 0) writes ids and weights for the down projection). That takes the
 * router's last-workgroup tail (fence, counter atomic, a second round of loads, the ranking: ~8 µs of the router's
 * ~16 per layer on the H100) off the layer's critical path, for ~1 µs more per gate+up workgroup. The ids and
 * weights are owed until then: any other access to them, or a write to the logits, first records the selection as
 * moe_route (vk_owed_settle in the hazard tracker, vk_route_record), so every op still sees exactly what norm_route
 * promised. */
void vk_route_owe(vk_ctx *c, ob_ptr logits, int n, int ne, int k, int norm_topk, ob_ptr ids, ob_ptr weights) {
    if (c->base.failed) return;
    vk_owed_flush(c, VK_OWE_ROUTE); /* a routing still owed is recorded before its state is replaced */
    c->route_pend.n = n;
    c->route_pend.fold = 0;
    c->route_pend.pre = 0;
    c->route_pend.ne = ne, c->route_pend.k = k, c->route_pend.renorm = norm_topk != 0;
    c->route_pend.lg = logits, c->route_pend.ids = ids, c->route_pend.wts = weights;
    c->route_pend.r_lg = vk_rng(vk_addr(logits), (size_t)n * (size_t)ne * 4);
    c->route_pend.r_ids = vk_rng(vk_addr(ids), (size_t)n * (size_t)k * 4);
    c->route_pend.r_wts = vk_rng(vk_addr(weights), (size_t)n * (size_t)k * 4);
    /* owed: ids and weights; still read: the logits */
    vk_range owed[2] = { c->route_pend.r_ids, c->route_pend.r_wts };
    vk_owe(c, VK_OWE_ROUTE, owed, 2, &c->route_pend.r_lg, 1);
}

void vk_route_record(vk_ctx *c) {
    if (c->route_pend.fold) { /* all the op promised, the direct way (norm_route does not defer while flushing) */
        ob_mat nm = c->route_pend.norm, wm = c->route_pend.w;
        vk_op_norm_route(&c->base, c->route_pend.x, &nm, c->route_pend.eps, &wm, c->route_pend.lg, c->route_pend.xn,
                         c->route_pend.k, c->route_pend.renorm, c->route_pend.ids, c->route_pend.wts);
    } else {
        vk_op_moe_route(&c->base, c->route_pend.lg, c->route_pend.n, c->route_pend.ne, c->route_pend.k,
                        c->route_pend.renorm, c->route_pend.ids, c->route_pend.wts);
    }
}

/* router rows (subgroups) per workgroup: 4 by default, OMNI_VK_ROUTER_ROWS=1..16 for tuning */
static uint32_t route_rows(vk_ctx *c) {
    return c->env.router_rows >= 1 && c->env.router_rows <= 16 ? (uint32_t)c->env.router_rows : 4;
}

void vk_op_norm_route(ob_backend *b, ob_ptr x, const ob_mat *norm, float eps, const ob_mat *w, ob_ptr logits,
                      ob_ptr xn, int k, int norm_topk, ob_ptr ids, ob_ptr weights) {
    vk_ctx *c = vk_of(b);
    if (c->base.failed) return;
    if (vk_mat_check(c, w, "norm_route") != 0) return;
    uint32_t npl = route_npl(c, x, norm, w, xn, k);
    if (!npl) {
        vk_op_norm_matvec(b, x, norm, eps, w, logits, xn);
        vk_op_moe_route(b, logits, 1, (int)w->rows, k, norm_topk, ids, weights);
        return;
    }
    ob_pc_router pc;
    vk_range rd[3], wr[5];
    if (!route_setup(c, x, norm, eps, w, logits, xn, k, norm_topk, ids, weights, &pc, rd, wr)) return;
    uint32_t rpw = route_rows(c), sgs = c->caps.subgroup_size;
    int defer = c->env.route_defer != 0 && !c->owe[VK_OWE_ROUTE].flushing;
    uint32_t spec[9] = { rpw * sgs, (uint32_t)w->dtype, (uint32_t)norm->dtype, npl, sgs, pc.rows, 2, 16, !defer };
    vk_dispatch(c, vk_pipeline(c, SH_ROUTER, spec, 9), &pc, sizeof pc, (pc.rows + rpw - 1) / rpw, 1, 1, rd, 3, wr,
                5);
    if (defer) vk_route_owe(c, logits, 1, (int)w->rows, k, norm_topk, ids, weights);
}

/* ---- the folded router -----------------------------------------------------------------------------------------
 * The decode router's logits are linear in the normalised residual. With x' = x + Wo·a (o_proj and the residual),
 * s = 1/sqrt(mean(x'²) + eps) and w the post-attention RMSNorm weight:
 *     logits = R · ((x' · s) ⊙ w) = s · (Rw·x + M·a),   Rw = R ⊙ w (every row times w),  M = Rw · Wo.
 * So the router needs neither o_proj's result nor the norm: Rw·x (x before o_proj, which nothing writes until then)
 * runs beside the attention, whose few workgroups leave the GPU mostly idle; M·a beside o_proj, both reading only the
 * attention output; and the MoE gate+up workgroups, which normalise x' for their own products anyway, scale the raw
 * sum by s and select the experts (matvec.comp / mvq8.comp FOLD). The router's serial stage after o_proj (norm, then
 * router rows: router_chain's tail, or a dispatch of its own) leaves the layer's critical path.
 * Rw and M (fp32: E x (H + Ho), 3 MB per thinker layer) are computed on the device the first time a layer routes
 * (route_fold.comp), kept per (o_proj, norm, router) and dropped when any of the three is written or freed. The
 * logits differ from the direct ones by fp32 rounding (sums in another order); the tests compare against the CPU.
 * The op's promises (logits, xn, ids, weights) stay owed until the gate+up writes them; any other access first
 * records norm_route (vk_route_record), which computes them the direct way. OMNI_VK_ROUTE_FOLD=0 turns it off. */
struct vk_fold {
    VkDeviceAddress wo, r, nw; /* the source weights */
    ob_dtype wo_t, r_t, nw_t;
    uint32_t E, H, HO;
    ob_buf *buf;     /* Rw [E][H], then M [E][HO], fp32 */
    vk_range src[3]; /* the source weights' bytes */
};

static void fold_span(vk_ctx *c) {
    c->fold_span = (vk_range){ UINT64_MAX, 0 };
    for (int i = 0; i < c->n_folds; i++)
        for (int j = 0; j < 3; j++) {
            if (c->folds[i].src[j].lo < c->fold_span.lo) c->fold_span.lo = c->folds[i].src[j].lo;
            if (c->folds[i].src[j].hi > c->fold_span.hi) c->fold_span.hi = c->folds[i].src[j].hi;
        }
}

void vk_fold_forget(vk_ctx *c, vk_range r) {
    if (!c->n_folds || !(r.lo < c->fold_span.hi && c->fold_span.lo < r.hi)) return;
    for (int i = 0; i < c->n_folds;) {
        if (!vk_overlaps(c->folds[i].src, 3, r)) {
            i++;
            continue;
        }
        /* out of the list before its buffer is freed (vk_buf_free comes back here) */
        ob_buf *buf = c->folds[i].buf;
        c->folds[i] = c->folds[--c->n_folds];
        fold_span(c);
        vk_buf_free(&c->base, buf);
    }
}

void vk_fold_free_all(vk_ctx *c) {
    while (c->n_folds > 0) {
        ob_buf *buf = c->folds[--c->n_folds].buf;
        vk_buf_free(&c->base, buf);
    }
    free(c->folds);
    c->folds = NULL;
    c->cap_folds = 0;
    if (c->fold_raw) vk_buf_free(&c->base, c->fold_raw);
    c->fold_raw = NULL;
}

/* the tables of (wo, norm, w), computed on first use; NULL after vk_fail */
static struct vk_fold *fold_get(vk_ctx *c, const ob_mat *wo, const ob_mat *norm, const ob_mat *w) {
    VkDeviceAddress wa = vk_addr(wo->data), ra = vk_addr(w->data), na = vk_addr(norm->data);
    uint32_t E = (uint32_t)w->rows, H = (uint32_t)w->cols, HO = (uint32_t)wo->cols;
    for (int i = 0; i < c->n_folds; i++) {
        struct vk_fold *f = &c->folds[i];
        if (f->wo == wa && f->r == ra && f->nw == na && f->wo_t == wo->dtype && f->r_t == w->dtype &&
            f->nw_t == norm->dtype && f->E == E && f->H == H && f->HO == HO)
            return f;
    }
    if (c->n_folds == c->cap_folds) {
        int cap = c->cap_folds ? 2 * c->cap_folds : 64;
        struct vk_fold *nf = realloc(c->folds, sizeof *nf * (size_t)cap);
        if (!nf) {
            vk_fail(c, "matmul_norm_route: out of memory");
            return NULL;
        }
        c->folds = nf;
        c->cap_folds = cap;
    }
    size_t bytes = (size_t)E * ((size_t)H + HO) * 4;
    ob_buf *buf = vk_alloc(&c->base, bytes);
    if (!buf) return NULL;
    VkDeviceAddress ba = buf->blk->addr + buf->off;
    ob_pc_fold pc = { .wo = wa, .wos = wa + wo->scale_off, .r = ra, .rs = ra + w->scale_off, .nw = na, .rw = ba,
                      .m = ba + (size_t)E * H * 4, .E = E, .H = H, .HO = HO };
    vk_range rd[3] = { vk_mat_range(wo), vk_mat_range(w), vk_mat_range(norm) }, wr = vk_rng(ba, bytes);
    uint32_t spec[3] = { (uint32_t)wo->dtype, (uint32_t)w->dtype, (uint32_t)norm->dtype };
    vk_dispatch(c, vk_pipeline(c, SH_ROUTE_FOLD, spec, 3), &pc, sizeof pc, (HO + 63) / 64, (E + 31) / 32, 1, rd, 3,
                &wr, 1);
    struct vk_fold *f = &c->folds[c->n_folds++];
    *f = (struct vk_fold){ wa, ra, na, wo->dtype, w->dtype, norm->dtype, E, H, HO, buf, { rd[0], rd[1], rd[2] } };
    fold_span(c);
    return f;
}

/* whether the folded router takes this call (the gate+up kernels' limits: route_rank.glsl's 256 experts and 32
 * slots, x staged as 16-byte words) */
static int fold_ok(vk_ctx *c, const ob_mat *wo, ob_ptr a, ob_ptr x, const ob_mat *norm, const ob_mat *w, ob_ptr xn,
                   int k) {
    if (!(c->env.route_fold && c->env.route_defer && c->env.fuse && !c->owe[VK_OWE_ROUTE].flushing && w->rows >= 1 &&
          w->rows <= 256 && k >= 1 && k <= 32 && k <= w->rows && w->cols % 4 == 0 && wo->rows == w->cols &&
          wo->cols > 0 && norm_weight_ok(norm, (int)w->cols) && x.buf && xn.buf && a.buf && vk_addr(x) % 16 == 0 &&
          (size_t)w->rows * (size_t)(w->cols + wo->cols) * 4 <= c->caps.max_storage_range))
        return 0;
    /* the gate+up reads x while it writes xn */
    vk_range rx = vk_rng(vk_addr(x), (size_t)w->cols * 4);
    return !vk_overlaps(&rx, 1, vk_rng(vk_addr(xn), (size_t)w->cols * 4));
}

/* y[r] = W[r] · x for the rows fp32 rows of W at wa (mv_rows.comp: a workgroup per row; matmul where x is not
 * 16-byte aligned) */
static int fold_rows(vk_ctx *c, VkDeviceAddress wa, ob_buf *wbuf, size_t woff, uint32_t rows, uint32_t cols,
                     ob_ptr x, ob_ptr y, VkDeviceAddress raw, ob_ptr ids, int k) {
    uint32_t wg = 256, npl = (cols / 4 + wg - 1) / wg;
    if (vk_addr(x) % 16 || cols % 4 || npl > 16) {
        ob_mat m = ob_mat_make((ob_ptr){ wbuf, woff }, OB_F32, rows, cols);
        vk_op_matmul(&c->base, &m, x, y, 1, 0);
        return 0;
    }
    /* raw != 0: the M·a half, whose last workgroup also selects the experts into ids (mv_rows.comp RANK) */
    VkDeviceAddress cnt = raw ? vk_counters(c, VK_CNT_PRE, 1) : 0;
    ob_pc_matvec pc = { .w = wa, .x = vk_addr(x), .y = vk_addr(y), .rows = rows, .cols = cols, .n = 1, .k = 1 };
    vk_range rd[4] = { vk_rng(wa, (size_t)rows * cols * 4), vk_rng(pc.x, (size_t)cols * 4) };
    vk_range wr[3] = { vk_rng(pc.y, (size_t)rows * 4) };
    int n_rd = 2, n_wr = 1;
    if (cnt) {
        pc.s = cnt, pc.lg = raw, pc.ids = vk_addr(ids), pc.k = (uint32_t)k;
        rd[n_rd++] = vk_rng(raw, (size_t)rows * 4), rd[n_rd++] = vk_rng(cnt, 4);
        wr[n_wr++] = vk_rng(pc.ids, (size_t)k * 4), wr[n_wr++] = vk_rng(cnt, 4);
    }
    uint32_t spec[3] = { wg, npl, cnt != 0 };
    vk_dispatch(c, vk_pipeline(c, SH_MV_ROWS, spec, 3), &pc, sizeof pc, rows, 1, 1, rd, n_rd, wr, n_wr);
    return cnt != 0;
}

static void fold_route(vk_ctx *c, const ob_mat *wo, ob_ptr a, ob_ptr x, const ob_mat *norm, float eps,
                       const ob_mat *w, ob_ptr logits, ob_ptr xn, int k, int norm_topk, ob_ptr ids, ob_ptr weights) {
    size_t E = (size_t)w->rows, H = (size_t)w->cols;
    if (!vk_ptr_ok(c, x, H * 4, "matmul_norm_route x") || !vk_ptr_ok(c, xn, H * 4, "matmul_norm_route xn") ||
        !vk_ptr_ok(c, logits, E * 4, "matmul_norm_route logits") ||
        !vk_ptr_ok(c, ids, (size_t)k * 4, "matmul_norm_route ids") ||
        !vk_ptr_ok(c, weights, (size_t)k * 4, "matmul_norm_route weights"))
        return;
    struct vk_fold *f = fold_get(c, wo, norm, w);
    if (!f) return;
    if (!c->fold_raw && !(c->fold_raw = vk_alloc(&c->base, 2 * 256 * 4))) return;
    ob_ptr raw = { c->fold_raw, 0 };
    VkDeviceAddress fa = f->buf->blk->addr + f->buf->off;
    /* Rw·x (no barrier after the attention: beside it), o_proj + residual (after the attention), M·a (beside it) */
    /* and, for Q8_0 layers on int8 activations, the selection at the end of M·a (mv_rows.comp RANK), instead of by
     * every MoE gate+up workgroup. Measured on the H100 (tg128, A/B in one run, t/s): Q8_0 331.6 / 331.4 against
     * 320.7 / 317.2 (mvq8.comp's ranking sat between its x loads and its weight loads), a second, noisier A/B even;
     * the trace: gate+up -2.0 µs, this M·a +1.7 µs per layer. BF16 250.3 / 250.4 against 252.0 / 253.7 (matvec.comp;
     * M·a +4.2 µs on the critical path), so there the gate+up keeps ranking. OMNI_VK_ROUTE_PRE=0|1 forces either. The
     * o_proj's type stands for the layer's (quantize converts all of a layer's matrices). */
    int pre_env = vk_env_now("OMNI_VK_ROUTE_PRE", -1);
    int pre_on = pre_env >= 0 ? pre_env != 0 : wo->dtype == OB_Q8_0 && vk_q8_int8_on(c);
    fold_rows(c, fa, f->buf, 0, (uint32_t)E, (uint32_t)H, x, raw, 0, ids, k);
    vk_op_matmul(&c->base, wo, a, x, 1, 1);
    int pre = fold_rows(c, fa + E * H * 4, f->buf, E * H * 4, (uint32_t)E, (uint32_t)wo->cols, a, ob_at(raw, E * 4),
                        pre_on ? vk_addr(raw) : 0, ids, k);
    if (c->base.failed) return;
    vk_owed_flush(c, VK_OWE_ROUTE); /* a routing still owed is recorded before its state is replaced */
    c->route_pend.pre = pre;
    c->route_pend.n = 1;
    c->route_pend.fold = 1;
    c->route_pend.ne = (int)E, c->route_pend.k = k, c->route_pend.renorm = norm_topk != 0;
    c->route_pend.lg = logits, c->route_pend.ids = ids, c->route_pend.wts = weights;
    c->route_pend.r_lg = vk_rng(vk_addr(logits), E * 4);
    c->route_pend.r_ids = vk_rng(vk_addr(ids), (size_t)k * 4);
    c->route_pend.r_wts = vk_rng(vk_addr(weights), (size_t)k * 4);
    c->route_pend.x = x, c->route_pend.xn = xn, c->route_pend.norm = *norm, c->route_pend.w = *w;
    c->route_pend.eps = eps;
    c->route_pend.raw = vk_addr(raw);
    c->route_pend.r_x = vk_rng(vk_addr(x), H * 4), c->route_pend.r_xn = vk_rng(vk_addr(xn), H * 4);
    c->route_pend.r_raw = vk_rng(vk_addr(raw), E * 8), c->route_pend.r_nw = vk_mat_range(norm);
    /* owed: ids, weights, the logits and xn; still read: the residual, the raw halves and the norm weight */
    vk_range owed[4] = { c->route_pend.r_ids, c->route_pend.r_wts, c->route_pend.r_lg, c->route_pend.r_xn };
    vk_range src[3] = { c->route_pend.r_x, c->route_pend.r_raw, c->route_pend.r_nw };
    vk_owe(c, VK_OWE_ROUTE, owed, 4, src, 3);
}

/* ---- matmul_norm_route ------------------------------------------------------------------------------------------ */

/* o_proj + residual chained in front of the router in one dispatch (router_chain: router.comp with -DCHAIN,
 * shaders/chain.glsl): its workgroups compute x += a · Woᵀ one row per subgroup while the router's workgroups load
 * their weights, then wait for them instead of a pipeline barrier. Where it does not apply (OMNI_VK_CHAIN=0, the
 * router kernel does not, an o_proj row of more than 32 vectors per lane): matmul, then norm_route. */
void vk_op_matmul_norm_route(ob_backend *b, const ob_mat *wo, ob_ptr a, ob_ptr x, const ob_mat *norm, float eps,
                             const ob_mat *w, ob_ptr logits, ob_ptr xn, int k, int norm_topk, ob_ptr ids,
                             ob_ptr weights) {
    vk_ctx *c = vk_of(b);
    if (c->base.failed) return;
    if (vk_mat_check(c, w, "matmul_norm_route router") != 0 || vk_mat_check(c, wo, "matmul_norm_route o_proj") != 0)
        return;
    if (fold_ok(c, wo, a, x, norm, w, xn, k)) {
        fold_route(c, wo, a, x, norm, eps, w, logits, xn, k, norm_topk, ids, weights);
        return;
    }
    uint32_t npl = route_npl(c, x, norm, w, xn, k), sgs = c->caps.subgroup_size;
    uint32_t epv_o = wo->dtype == OB_F32 ? 4 : wo->dtype == OB_Q8_0 ? 16 : 8;
    uint32_t npl_o = sgs ? ((uint32_t)wo->cols / epv_o + sgs - 1) / sgs : 0;
    /* a Q8_0 o_proj on the int8-activation kernel (mvq8.comp) is faster alone than chained with fp32 activations
     * (H100: 3.98 vs 6.04 µs, against ~1 µs saved by the chain) */
    uint32_t rpw = route_rows(c), n_o = ((uint32_t)w->cols + rpw - 1) / rpw, n_r = ((uint32_t)w->rows + rpw - 1) / rpw;
    int ok = npl && c->env.chain && !(wo->dtype == OB_Q8_0 && vk_q8_int8_on(c)) && wo->rows == w->cols &&
             wo->cols > 0 && wo->cols % (int64_t)epv_o == 0 && npl_o <= 32 && vk_mat_vec_ok(wo) && a.buf &&
             vk_addr(a) % 16 == 0 && wo->scale_off <= UINT32_MAX && n_o + n_r <= c->caps.max_wg_count[0];
    if (!ok) {
        vk_op_matmul(b, wo, a, x, 1, 1);
        vk_op_norm_route(b, x, norm, eps, w, logits, xn, k, norm_topk, ids, weights);
        return;
    }
    size_t ab = (size_t)wo->cols * 4;
    if (!vk_ptr_ok(c, a, ab, "matmul_norm_route a")) return;
    ob_pc_router r;
    vk_range rd[5], wr[7];
    if (!route_setup(c, x, norm, eps, w, logits, xn, k, norm_topk, ids, weights, &r, rd, wr)) return;
    VkDeviceAddress cnt = vk_counters(c, VK_CNT_CHAIN, 2);
    if (!cnt) return;
    ob_pc_routerchain pc = {
        .x = r.x, .nw = r.nw, .w = r.w, .s = r.s, .xn = r.xn, .logits = r.logits, .ids = r.ids, .wts = r.wts,
        .counter = r.counter, .wo = vk_addr(wo->data), .ao = vk_addr(a), .cnt = cnt, .rows = r.rows, .cols = r.cols,
        .k = r.k, .renorm = r.renorm, .eps = r.eps, .o_cols = (uint32_t)wo->cols, .o_soff = (uint32_t)wo->scale_off,
    };
    rd[3] = vk_mat_range(wo), rd[4] = vk_rng(pc.ao, ab);
    wr[5] = vk_rng(cnt, 8);
    wr[6] = vk_rng(pc.x, (size_t)r.cols * 4); /* the residual stream, written by the o_proj workgroups */
    int defer = c->env.route_defer != 0;
    uint32_t spec[9] = { rpw * sgs, (uint32_t)w->dtype, (uint32_t)norm->dtype, npl, sgs, r.rows, (uint32_t)wo->dtype,
                         npl_o, !defer };
    vk_dispatch(c, vk_pipeline(c, SH_ROUTER_CHAIN, spec, 9), &pc, sizeof pc, n_o + n_r, 1, 1, rd, 5, wr, 7);
    if (defer) vk_route_owe(c, logits, 1, (int)w->rows, k, norm_topk, ids, weights);
}

/* ---- qk_norm_rope_kv_attention ----------------------------------------------------------------------------------- */

/* attn_decode.comp: workgroup size, which is also the most chunks per kv head (its merge keeps one weight per chunk
 * and head in shared memory). Chunks are 64 keys, 128 past 256 chunks (past 512 chunks the unfused pair runs).
 * Measured on the H100 (synthetic Qwen3-Omni thinker, 4 kv heads, tg128 at depth 4096, attention per token, with
 * 128-thread workgroups): 64 keys 164.5 t/s (1.40 ms), 128 keys 141.8 t/s (2.15 ms: half the workgroups, each twice
 * as long), unfused 129.9 t/s (2.94 ms). Smaller chunks mean more partials for the one merging workgroup (its reads
 * are latency-bound): 32 keys only for short contexts. Workgroups of 256 threads (each thread half the keys' loads,
 * the merge twice the threads) against 128 (`vulkan_bench decode`, the op alone, chained): depth 0 7.54 vs 7.93 µs,
 * depth 4096 20.15 vs 23.26 µs; the model, BF16 tg128 219.9 vs 210.5 t/s, at depth 4096 184.5 vs 168.8 t/s
 * (OMNI_VK_ATTN_WG=128 for the smaller workgroups). */
#define DECODE_WG 256
#define DECODE_CHUNK 64
/* Up to 16 chunks of 32 keys (512 keys) the chunks are 32 keys. Measured on the H100 (vulkan_bench decode, the op
 * alone, chained, 32/4 heads x 128): depth 0 8.0 µs with 32-key chunks vs 10.5 (64) and 15.2 (128); depth 64 11.1
 * vs 13.0 and 15.1; at depth 4096 64 keys 24.6 µs, 128 keys 23.5 (past 128 chunks 32 keys fall back: 50.7). */
#define DECODE_SHORT_CHUNKS 16
/* Up to 16 chunks (1024 keys) the value pass keeps the chunk's V rows in shared memory with one thread per output
 * vec4 (PV 1, V loaded with K) and each kv head's 8 q heads are split over two workgroups (two head sets): shorter
 * chains, twice the workgroups. Past that the key-group pass (PV 0, one workgroup per kv head and chunk). Measured on
 * the H100 (session 7, `vulkan_bench decode --only attention`, the op alone, chained, 32/4 heads x 128, fp16 cache,
 * µs; before = the kernel with PV 0 only): depth 0 6.45-6.75 (once 9.0) vs 7.7-8.8, depth 64 10.1-10.5 vs
 * 11.3-11.6, depth 1024 (17 chunks) PV 1 + two sets 12.7-13.1 vs PV 0 13.8; at depth 4096 PV 1 loses: 24.1 (21.9
 * with two sets, 17.7 with 128-key chunks, which lost in the model: BF16 tg128 @ d4096 207.6/205.7 vs 215.8/213.0
 * t/s) vs 19.4. In the model at depth 0 (BF16 tg128, spread ±3-5%): 251.1/252.2 vs 247.9/248.7 t/s. More in
 * docs/benchmarks.md, session 7. */
#define DECODE_PV1_CHUNKS 16
/* From DECODE_TREE_MIN chunks the partials merge in two levels (attn_decode.comp): the last chunk of each group of
 * DECODE_TREE merges its group, the last group merger merges the groups, each merge with 8 loads in flight per
 * thread (80 registers against the one-level kernel's 82; a first version at 96 registers lost 6-7 µs per layer in
 * the model, though not alone: the workgroups that share an SM decide it). Measured on the H100 (session 8,
 * `vulkan_bench decode --only attention`, 32/4 heads x 128, fp16 cache, µs): depth 4096 (65 chunks) 18.6-18.8 vs
 * 19.2-19.6 L2-warm, 20.3 vs 22.9 with the caches from memory; the model (-p 0 -n 128 -d 0,4096 -r 3, base and
 * this alternating) BF16 tg128 @ d4096 217.3/218.4 vs 217.1/212.1/215.4 t/s, Q8_0 270.9/272.8 vs 267.0/267.6,
 * depth 0 unchanged. At 17 chunks (depth 1024) a second level lost ~3 µs (16.3 vs 13.1-13.9 µs, the 96-register
 * version): a merge level costs about that much in round trips (write, fence, count, loads), so two levels pay only
 * for many partials; the crossover between 17 and 65 chunks was not measured. These numbers are of the three-pass
 * merge; session 10's one-pass merge (one L2 round trip per batch of 9 partials) costs ~2 µs per level plus ~0.9 µs
 * for the second counter, and the crossover was not measured again. OMNI_VK_ATTN_TREE=n forces groups of n whenever
 * there are more than n chunks (0: one level; tests). */
#define DECODE_TREE 8
#define DECODE_TREE_MIN 40

/* bytes of shared memory attn_decode.comp declares for these shapes (mirrors its shared arrays; with PV 1 the
 * chunk's V rows, C·D halves or floats) */
static size_t decode_shared_bytes(uint32_t G, uint32_t D, uint32_t C, uint32_t rot, uint32_t wg, int kv16, int pv) {
    size_t vrows = pv ? (size_t)C * D * (kv16 ? 2 : 4) : 8;
    return (size_t)(G + 1) * D * 4 + (size_t)D * 4 + (size_t)D * 8 + (size_t)wg * (G > 5 ? G : 5) * 4 + vrows +
           (size_t)G * C * 4 + (size_t)rot * 4 + (size_t)wg * 4 + (size_t)(3 * G + 1) * 4 + 4;
}

static void attn_unfused(ob_backend *b, ob_ptr q, ob_ptr k, ob_ptr v, const ob_mat *q_norm, const ob_mat *k_norm,
                         float eps, ob_ptr pos3, const ob_rope *r, ob_ptr kcache, ob_ptr vcache, int n_ctx, int pos0,
                         int n, const ob_attn *a, ob_ptr out) {
    vk_op_qk_norm_rope_kv(b, q, k, v, q_norm, k_norm, eps, pos3, r, kcache, vcache, n_ctx, pos0, n, a);
    vk_op_attention(b, q, kcache, vcache, n_ctx, out, pos0, n, a);
}

void vk_op_qk_norm_rope_kv_attention(ob_backend *b, ob_ptr q, ob_ptr k, ob_ptr v, const ob_mat *q_norm,
                                     const ob_mat *k_norm, float eps, ob_ptr pos3, const ob_rope *r, ob_ptr kcache,
                                     ob_ptr vcache, int n_ctx, int pos0, int n, const ob_attn *a, ob_ptr out) {
    vk_ctx *c = vk_of(b);
    if (n <= 0 || c->base.failed) return;
    int D = a->head_dim, Hq = a->n_heads, Hkv = a->n_kv_heads;
    int fusable = c->env.fuse && c->env.attn_fuse && c->env.attn == 0 && n == 1 && D > 0 && D <= 256 && D % 4 == 0 &&
                  r->head_dim == D && r->rot_dim > 0 && r->rot_dim <= D && r->rot_dim % 2 == 0 && Hkv > 0 &&
                  Hq % Hkv == 0 &&
                  norm_weight_ok(q_norm, D) && norm_weight_ok(k_norm, D) && pos0 >= 0 && pos0 < n_ctx &&
                  kcache.buf && vcache.buf && out.buf && vk_addr(kcache) % 16 == 0 && vk_addr(vcache) % 16 == 0 &&
                  vk_addr(out) % 16 == 0;
    uint32_t G = fusable ? (uint32_t)(Hq / Hkv) : 1, C = DECODE_CHUNK, c_lo = 0, n_chunks = 0;
    uint32_t wg = c->env.attn_wg == 128 ? 128u : DECODE_WG; /* OMNI_VK_ATTN_WG=128: the smaller workgroups */
    /* the value pass: OMNI_VK_ATTN_PV=0 or 1 forces one (tests), else 1 up to DECODE_PV1_CHUNKS chunks */
    int pv_env = vk_env_now("OMNI_VK_ATTN_PV", -1);
    uint32_t pv = 0, gs = 1, tb = 0;
    int kv16 = vk_kv16(c, D);
    int tb_env = vk_env_now("OMNI_VK_ATTN_TREE", -1);
    if (fusable) {
        int lo = a->window > 0 && pos0 - a->window + 1 > 0 ? pos0 - a->window + 1 : 0;
        int forced = c->env.attn_chunk == 32 || c->env.attn_chunk == 64 || c->env.attn_chunk == 128;
        if (forced)
            C = (uint32_t)c->env.attn_chunk;
        else if ((uint32_t)pos0 / C - (uint32_t)lo / C + 1 > wg)
            C = 2 * DECODE_CHUNK;
        else if ((uint32_t)pos0 / 32u - (uint32_t)lo / 32u + 1 <= DECODE_SHORT_CHUNKS)
            C = 32; /* short contexts: a shorter critical path per workgroup and few partials to merge */
        n_chunks = (uint32_t)pos0 / C - (uint32_t)lo / C + 1;
        pv = pv_env >= 0 ? pv_env > 0 : n_chunks <= DECODE_PV1_CHUNKS;
        gs = pv && G % 2 == 0 ? 2 : 1; /* with PV 1: two head sets per kv head */
        G /= gs;
        /* PV 1 keeps the chunk's V rows in shared memory: shorter chunks where they do not fit (fp32 caches,
         * lavapipe's 32 KiB) */
        while (!forced && C > 16 &&
               decode_shared_bytes(G, (uint32_t)D, C, (uint32_t)r->rot_dim, wg, kv16, pv) > c->caps.max_shared)
            C /= 2;
        c_lo = (uint32_t)lo / C;
        n_chunks = (uint32_t)pos0 / C - c_lo + 1;
        tb = tb_env >= 0 ? (uint32_t)tb_env : n_chunks >= DECODE_TREE_MIN ? DECODE_TREE : 0;
        if (tb < 2 || tb > 255 || n_chunks <= tb) tb = 0; /* one merge level */
        fusable = n_chunks <= wg && C <= wg && G + 1 <= wg && (uint32_t)Hkv * gs <= c->caps.max_wg_count[1] &&
                  decode_shared_bytes(G, (uint32_t)D, C, (uint32_t)r->rot_dim, wg, kv16, pv) <= c->caps.max_shared;
    }
    if (!fusable) {
        attn_unfused(b, q, k, v, q_norm, k_norm, eps, pos3, r, kcache, vcache, n_ctx, pos0, n, a, out);
        return;
    }
    if (vk_mat_check(c, q_norm, "qk_norm_rope_kv_attention q_norm") != 0 ||
        vk_mat_check(c, k_norm, "qk_norm_rope_kv_attention k_norm") != 0)
        return;
    size_t qb = (size_t)Hq * (size_t)D * 4, kb = (size_t)Hkv * (size_t)D * 4;
    size_t cache_b = vk_kv_bytes(c, Hkv, n_ctx, D);
    if (!vk_ptr_ok(c, q, qb, "qk_norm_rope_kv_attention q") || !vk_ptr_ok(c, k, kb, "qk_norm_rope_kv_attention k") ||
        !vk_ptr_ok(c, v, kb, "qk_norm_rope_kv_attention v") ||
        !vk_ptr_ok(c, pos3, 12, "qk_norm_rope_kv_attention pos") ||
        !vk_ptr_ok(c, kcache, cache_b, "qk_norm_rope_kv_attention k cache") ||
        !vk_ptr_ok(c, vcache, cache_b, "qk_norm_rope_kv_attention v cache") ||
        !vk_ptr_ok(c, out, qb, "qk_norm_rope_kv_attention out"))
        return;
    ob_buf *fb = vk_rope_freqs(c, r);
    uint32_t sets = (uint32_t)Hkv * gs, groups = tb ? (n_chunks + tb - 1) / tb : 0;
    /* one counter per head set, then (two-level merge) one per merge group of each set */
    VkDeviceAddress cnt = fb ? vk_counters(c, VK_CNT_ATTN, (int)(sets * (1 + groups))) : 0;
    if (!cnt) return;
    /* partials: chunk outputs [sets][n_chunks][G·D], group outputs [sets][groups][G·D], then the (max, sum) pairs
     * of the chunks [sets][n_chunks][G] and of the groups [sets][groups][G] */
    size_t part_b = (size_t)sets * (n_chunks + groups) * G * ((size_t)D + 2) * 4;
    /* OMNI_VK_ATTN_PROF=1: the records of attn_decode_prof before the partials (a new scratch buffer starts over) */
    size_t prof_b = c->shader_clock ? ATTND_PROF_BYTES : 0;
    ob_buf *part = vk_scratch(c, 0, prof_b + part_b);
    if (!part) return;
    if (prof_b && part != c->attn_prof_buf) {
        uint32_t zero = 0;
        if (vk_upload(&c->base, part, 0, &zero, 4) != OMNI_OK) return;
        c->attn_prof_buf = part;
        c->attn_prof_n = 0;
    }
    ob_pc_attnd pc = {
        .q = vk_addr(q), .k = vk_addr(k), .v = vk_addr(v), .w_q = vk_addr(q_norm->data), .w_k = vk_addr(k_norm->data),
        .pos = vk_addr(pos3), .freqs = fb->blk->addr + fb->off, .kc = vk_addr(kcache), .vc = vk_addr(vcache),
        .dst = vk_addr(out), .part = part->blk->addr + part->off + prof_b, .cnt = cnt,
        .n_ctx = (uint32_t)n_ctx, .pos0 = (uint32_t)pos0, .n_sets = sets,
        .window = (uint32_t)(a->window > 0 ? a->window : 0), .chunk0 = c_lo, .n_chunks = n_chunks, .eps = eps,
        .scale = a->scale,
    };
    uint32_t spec[12] = { wg, G, (uint32_t)D, C, (uint32_t)q_norm->dtype, (uint32_t)k_norm->dtype,
                          (uint32_t)r->rot_dim, (uint32_t)r->section[0], (uint32_t)r->section[1],
                          (uint32_t)r->section[2], (uint32_t)(r->interleaved != 0),
                          (uint32_t)kv16 | pv << 1 | gs << 8 | tb << 16 };
    vk_range rd[11] = { vk_rng(pc.q, qb),       vk_rng(pc.k, kb),        vk_rng(pc.v, kb),
                        vk_mat_range(q_norm),   vk_mat_range(k_norm),    vk_rng(pc.pos, 12),
                        vk_rng(pc.freqs, (size_t)r->rot_dim * 2), vk_rng(pc.kc, cache_b), vk_rng(pc.vc, cache_b),
                        vk_rng(pc.part, part_b), vk_rng(pc.cnt, (size_t)sets * (1 + groups) * 4) };
    vk_range wr[6] = { vk_rng(pc.kc, cache_b), vk_rng(pc.vc, cache_b), vk_rng(pc.dst, qb), vk_rng(pc.part, part_b),
                       vk_rng(pc.cnt, (size_t)sets * (1 + groups) * 4), vk_rng(pc.part - prof_b, prof_b) };
    vk_dispatch(c, vk_pipeline(c, c->shader_clock ? SH_ATTN_DECODE_PROF : SH_ATTN_DECODE, spec, 12), &pc,
                sizeof pc, n_chunks, sets, 1, rd, 11, wr, prof_b ? 6 : 5);
    if (c->shader_clock && c->attn_prof_n < VK_ATTN_PROF_DISP) c->attn_prof_wg[c->attn_prof_n++] = n_chunks * sets;
}

_Static_assert(OB_VK_ATTN_PROF_RECORDS == ATTND_PROF_CAP, "attn_decode_prof records");

int ob_vulkan_attn_prof(ob_backend *b, uint32_t *out, size_t cap, int *n_disp) {
    vk_ctx *c = vk_of(b);
    *n_disp = 0;
    if (!c->shader_clock) return OMNI_E_UNSUPPORTED;
    ob_buf *sb = c->scratch[0];
    if (!sb || sb != c->attn_prof_buf) return 0;
    uint32_t n_rec = 0;
    int rc = vk_download(b, sb, 0, &n_rec, 4);
    if (rc) return rc;
    if (n_rec > ATTND_PROF_CAP) n_rec = ATTND_PROF_CAP;
    size_t len = 0, used = 0;
    for (int i = 0; i < c->attn_prof_n; i++) {
        size_t nw = c->attn_prof_wg[i];
        if (used + nw > n_rec || len + 2 + nw * ATTND_PROF_WORDS > cap) break;
        out[len] = (uint32_t)nw;
        out[len + 1] = 0;
        rc = vk_download(b, sb, 128 + used * 128, out + len + 2, nw * 128);
        if (rc) return rc;
        len += 2 + nw * ATTND_PROF_WORDS;
        used += nw;
        ++*n_disp;
    }
    /* start over: the counter back to zero (queued before any later dispatch) */
    uint32_t zero = 0;
    rc = vk_upload(b, sb, 0, &zero, 4);
    c->attn_prof_n = 0;
    return rc ? rc : (int)len;
}
