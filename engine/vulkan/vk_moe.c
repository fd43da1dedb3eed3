/* vk_moe.c — mixture-of-experts routing and expert matmuls for the Vulkan back-end.
 *
 * The gate/up/down ob_mat arrays become device tables of (data address, q8 scale address) per expert, cached by
 * content, so a kernel finds expert e's matrix from the routed id without the host ever seeing the ids. Only the
 * selected experts' weights are read. Two paths (OMNI_VK_MOE forces either):
 *   - decode (n·k <= 32 entries): matvec.comp in gate+up mode writes h[entry] = silu(gate_e·x)⊙(up_e·x), one
 *     workgroup row per (token, slot); then in down mode y[token] += Σ_slot w·down_e·h[entry];
 *   - grouped (prefill): moe_plan.comp sorts the entries by expert and cuts each expert's run into tiles;
 *     matmul.comp in grouped mode computes gate and up for every tile (x rows gathered by token), ew.comp applies
 *     silu(g)·u, matmul.comp the down projection in sorted order, and moe_combine.comp adds Σ_slot w·d to y. On
 *     devices with NV cooperative matrix (f16/bf16/Q8_0 experts) matmul_cm.comp runs instead: gate, up and swiglu
 *     as one tensor-core GEMM per plan tile (64 entries of an expert by default, vk_coopmat.c), then the down one,
 *     which writes fp16 partials there for moe_combine (half the bytes written and read again).
 * Mirrors the CPU back-end's moe_route / moe_experts and HF Qwen3-Omni's sparse MoE block (fp32). */
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

#define DECODE_MAX_ENTRIES 32

/* one subgroup per token (moe_route.comp SGT = 1) where the subgroup build runs, the token's logits fit in 8 per
 * lane and k in a subgroup: no barriers (OMNI_VK_ROUTE_SG=0: one workgroup per token). H100 pp512: 0.59 -> 0.43
 * ms per pass */
static int route_sg_ok(vk_ctx *c, int n_exp, int k) {
    uint32_t sgs = c->caps.subgroup_size;
    return vk_use_subgroups(c) && sgs >= 4 && sgs <= 256 && (uint32_t)n_exp <= 8 * sgs && (uint32_t)k <= sgs &&
           vk_env_now("OMNI_VK_ROUTE_SG", 1);
}

/* The subgroup form for pc (ids, wts, logits, n, n_exp, k, norm set). The split-K sum the router product still owes
 * (vk_ksum_take) is done here, from its planes (the logits are written as well). plan != 0: moe_plan.comp's plan of
 * the ids made in the same dispatch (PLAN: pc's tile and max_tiles; plan_b bytes at plan). */
static void route_sg(vk_ctx *c, ob_pc_route *pc, VkDeviceAddress plan, size_t plan_b) {
    size_t lb = (size_t)pc->n * pc->n_exp * 4, kb = (size_t)pc->n * pc->k * 4;
    vk_range rd = vk_rng(pc->logits, lb), r_part = { 0, 0 };
    vk_range wr[5] = { vk_rng(pc->ids, kb), vk_rng(pc->wts, kb) };
    int n_wr = 2;
    pc->part = vk_ksum_take(c, pc->logits, pc->n, pc->n_exp, 0, &pc->nsplit, &r_part);
    if (pc->part)
        wr[n_wr++] = rd;
    else
        pc->nsplit = 0;
    if (plan) {
        pc->plan = plan;
        pc->cnt = vk_counters_plan(c, 1 + (int)pc->n_exp);
        if (!pc->cnt) return;
        wr[n_wr++] = vk_rng(plan, plan_b);
        wr[n_wr++] = vk_rng(pc->cnt, (1 + (size_t)pc->n_exp) * 4); /* the next user waits for the reset */
    }
    /* 256 threads; OMNI_VK_ROUTE_WG=N (whole subgroups, at most 64 of them) lets the tests give PLAN's last
     * workgroup several experts per thread on any device */
    uint32_t sgs = c->caps.subgroup_size, wg = (uint32_t)vk_env_now("OMNI_VK_ROUTE_WG", 256);
    if (wg < sgs || wg > 256 || wg % sgs || wg / sgs > 64) wg = 256;
    uint32_t spec[3] = { wg, 1, plan != 0 }, gx, gy;
    vk_grid(c, (uint64_t)pc->n, wg / sgs, &gx, &gy);
    vk_dispatch(c, vk_pipeline(c, SH_MOE_ROUTE, spec, 3), pc, sizeof *pc, gx, gy, 1, pc->part ? &r_part : &rd, 1, wr,
                n_wr);
}

void vk_op_moe_route(ob_backend *b, ob_ptr logits, int n, int n_exp, int k, int norm_topk, ob_ptr ids,
                     ob_ptr weights) {
    vk_ctx *c = vk_of(b);
    if (n <= 0 || c->base.failed) return;
    if (n_exp <= 0 || n_exp > 1024 || k <= 0 || k > 32 || k > n_exp) {
        vk_fail(c, "moe_route: %d experts, top-%d not supported (at most 1024 experts, k <= 32)", n_exp, k);
        return;
    }
    size_t lb = (size_t)n * (size_t)n_exp * 4, kb = (size_t)n * (size_t)k * 4;
    if (!logits.buf || !ids.buf || !weights.buf || logits.off + lb > logits.buf->size ||
        ids.off + kb > ids.buf->size || weights.off + kb > weights.buf->size) {
        vk_fail(c, "moe_route: tensors outside their buffers");
        return;
    }
    ob_pc_route pc = { .logits = vk_addr(logits), .ids = vk_addr(ids), .wts = vk_addr(weights), .n = (uint32_t)n,
                       .n_exp = (uint32_t)n_exp, .k = (uint32_t)k, .norm = (uint32_t)(norm_topk != 0) };
    vk_range rd = vk_rng(pc.logits, lb), wr[2] = { vk_rng(pc.ids, kb), vk_rng(pc.wts, kb) };
    if (route_sg_ok(c, n_exp, k)) {
        /* a prefill's top-k is left owed to the grouped moe_experts, whose plan it then makes in the same dispatch
         * (route_sg PLAN; OMNI_VK_ROUTE_PLAN=0: moe_plan.comp after it). Any other access to the ids or weights, or
         * a write to the logits, records it here first (vk_route_record). */
        if ((size_t)n * (size_t)k > DECODE_MAX_ENTRIES && !c->owe[VK_OWE_ROUTE].flushing &&
            vk_env_now("OMNI_VK_ROUTE_PLAN", 1) > 0) {
            vk_route_owe(c, logits, n, n_exp, k, norm_topk, ids, weights);
            return;
        }
        route_sg(c, &pc, 0, 0);
        return;
    }
    uint32_t spec[2] = { n_exp > 64 ? 128u : 64u, 0 }, gx, gy;
    vk_grid(c, (uint64_t)n, 1, &gx, &gy);
    vk_dispatch(c, vk_pipeline(c, SH_MOE_ROUTE, spec, 2), &pc, sizeof pc, gx, gy, 1, &rd, 1, wr, 2);
}

/* The device table of an expert array (cached by content); NULL after vk_fail. */
static vk_table *expert_table(vk_ctx *c, const ob_mat *m, int n_exp) {
    size_t bytes = sizeof(uint64_t) * 2 * (size_t)n_exp;
    uint64_t *addr = malloc(bytes);
    if (!addr) {
        vk_fail(c, "moe: out of memory");
        return NULL;
    }
    uint64_t h = 1469598103934665603ull; /* FNV-1a over the addresses */
    VkDeviceAddress lo = UINT64_MAX, hi = 0;
    for (int e = 0; e < n_exp; e++) {
        VkDeviceAddress a = vk_addr(m[e].data);
        size_t esz = m[e].dtype == OB_F32 ? 4 : m[e].dtype == OB_Q8_0 ? 1 : 2;
        size_t len = (size_t)m[e].rows * (size_t)m[e].cols * esz;
        if (m[e].dtype == OB_Q8_0 && m[e].scale_off + (size_t)m[e].rows * (size_t)(m[e].cols / 32) * 2 > len)
            len = m[e].scale_off + (size_t)m[e].rows * (size_t)(m[e].cols / 32) * 2;
        addr[2 * e] = a;
        addr[2 * e + 1] = a + m[e].scale_off;
        if (a < lo) lo = a;
        if (a + len > hi) hi = a + len;
        for (int i = 0; i < 2; i++) {
            h ^= addr[2 * e + i];
            h *= 1099511628211ull;
        }
    }
    for (int i = 0; i < c->n_tables; i++) {
        vk_table *t = &c->tables[i];
        if (t->hash == h && t->n_exp == n_exp && !memcmp(t->host, addr, bytes)) {
            free(addr);
            return t;
        }
    }
    if (c->n_tables == c->cap_tables) {
        int cap = c->cap_tables ? c->cap_tables * 2 : 64;
        vk_table *nt = realloc(c->tables, sizeof *nt * (size_t)cap);
        if (!nt) {
            free(addr);
            vk_fail(c, "moe: out of memory");
            return NULL;
        }
        c->tables = nt;
        c->cap_tables = cap;
    }
    ob_buf *buf = vk_alloc(&c->base, bytes);
    if (!buf) {
        free(addr);
        return NULL;
    }
    vk_upload(&c->base, buf, 0, addr, bytes);
    vk_table *t = &c->tables[c->n_tables++];
    *t = (vk_table){ h, n_exp, addr, buf, { lo, hi } };
    return t;
}

/* all experts of an array share dtype and shape (the kernels specialise on the dtype) */
static int experts_check(vk_ctx *c, const ob_mat *m, int n_exp, int64_t rows, int64_t cols, const char *what,
                         int *vec) {
    for (int e = 0; e < n_exp; e++) {
        if (vk_mat_check(c, &m[e], what) != 0) return -1;
        if (m[e].dtype != m[0].dtype || m[e].rows != rows || m[e].cols != cols) {
            vk_fail(c, "moe_experts: %s expert %d is %s [%lld, %lld], expected %s [%lld, %lld]", what, e,
                    ob_dtype_name(m[e].dtype), (long long)m[e].rows, (long long)m[e].cols, ob_dtype_name(m[0].dtype),
                    (long long)rows, (long long)cols);
            return -1;
        }
        if (!vk_mat_vec_ok(&m[e])) *vec = 0;
    }
    return 0;
}

static VkDeviceAddress buf_addr(ob_buf *b) { return b->blk->addr + b->off; }

/* one grouped expert matmul (4 read ranges, 1 written) on the kernel the plan was cut for; xform, x_rows: the
 * tensor-core kernel's activations (vk_matmul_cm_dispatch_x) */
static void mm_grouped(vk_ctx *c, int cm, int xform, uint32_t x_rows, ob_dtype wt, int vec, ob_pc_matmul *pc,
                       uint32_t tiles, const vk_range *rd, const vk_range *wr, int out16) {
    if (cm)
        vk_matmul_cm_dispatch_x(c, out16 ? 3 : 1, xform, x_rows, wt, pc, tiles, rd, 4, wr, 1);
    else
        vk_matmul_dispatch(c, 1, wt, vec, pc, tiles, rd, 4, wr, 1);
}

/* moe_plan.comp: ids [n·k] -> plan (layout in vk_push.h). One workgroup of wg threads; 0: 1024 where the device
 * allows (every entry of a pp512 top-8 chunk then has its id loaded in one batch of 4 per thread), else 256. */
static void plan_dispatch(vk_ctx *c, VkDeviceAddress ia, vk_range r_ids, VkDeviceAddress pa, vk_range r_plan,
                          uint32_t n, uint32_t k, uint32_t n_exp, uint32_t tile, uint32_t max_tiles, uint32_t wg) {
    ob_pc_plan pp = { .ids = ia, .plan = pa, .n = n, .k = k, .n_exp = n_exp, .tile = tile, .max_tiles = max_tiles };
    uint32_t spec_plan[1] = { wg ? wg : c->caps.max_wg_invocations >= 1024 ? 1024u : 256u };
    vk_dispatch(c, vk_pipeline(c, SH_MOE_PLAN, spec_plan, 1), &pp, sizeof pp, 1, 1, 1, &r_ids, 1, &r_plan, 1);
}

int ob_vulkan_moe_plan(ob_backend *b, ob_ptr ids, int n, int k, int n_exp, int tile, int max_tiles, int wg,
                       ob_ptr plan) {
    vk_ctx *c = vk_of(b);
    if (c->base.failed) return OMNI_E_BACKEND;
    if (n <= 0 || k <= 0 || n_exp <= 0 || n_exp > 1024 || tile <= 0 || max_tiles < 0 || wg < 0 ||
        (uint32_t)wg > c->caps.max_wg_invocations)
        return OMNI_E_ARG;
    size_t ne = (size_t)n * (size_t)k, ib = ne * 4, pb = (2 * ne + 1 + 3 * (size_t)max_tiles) * 4;
    if (!ids.buf || !plan.buf || ids.off + ib > ids.buf->size || plan.off + pb > plan.buf->size ||
        (ids.off | plan.off) % 4)
        return OMNI_E_ARG;
    VkDeviceAddress ia = vk_addr(ids), pa = vk_addr(plan);
    plan_dispatch(c, ia, vk_rng(ia, ib), pa, vk_rng(pa, pb), (uint32_t)n, (uint32_t)k, (uint32_t)n_exp,
                  (uint32_t)tile, (uint32_t)max_tiles, (uint32_t)wg);
    return c->base.failed ? OMNI_E_BACKEND : 0;
}

/* whether the decode gate+up can take the folded router's pending state (vk_decode.c): x must be the xn that
 * matmul_norm_route promised, the residual row and the norm weight aligned for the kernels' vector loads */
static int fold_consumable(vk_ctx *c, ob_ptr x, int64_t dim, int vec) {
    VkDeviceAddress nw = vk_addr(c->route_pend.norm.data);
    return vec && vk_addr(x) == vk_addr(c->route_pend.xn) && dim == c->route_pend.w.cols && dim % 4 == 0 &&
           vk_addr(c->route_pend.x) % 16 == 0 && nw % (c->route_pend.norm.dtype == OB_F32 ? 16 : 8) == 0;
}

void vk_op_moe_experts(ob_backend *b, ob_ptr x, int n, int k, ob_ptr ids, ob_ptr weights, const ob_mat *gate,
                       const ob_mat *up, const ob_mat *down, int n_exp, ob_ptr y) {
    vk_ctx *c = vk_of(b);
    if (n <= 0 || c->base.failed) return;
    if (n_exp <= 0 || n_exp > 1024 || k <= 0 || !gate || !up || !down) {
        vk_fail(c, "moe_experts: %d experts, k = %d", n_exp, k);
        return;
    }
    int64_t inter = gate[0].rows, dim = gate[0].cols;
    int vec = 1;
    if (experts_check(c, gate, n_exp, inter, dim, "gate", &vec) ||
        experts_check(c, up, n_exp, inter, dim, "up", &vec) || experts_check(c, down, n_exp, dim, inter, "down", &vec))
        return;
    if (gate[0].dtype != up[0].dtype) {
        vk_fail(c, "moe_experts: gate (%s) and up (%s) differ in dtype", ob_dtype_name(gate[0].dtype),
                ob_dtype_name(up[0].dtype));
        return;
    }
    size_t xb = (size_t)n * (size_t)dim * 4, kb = (size_t)n * (size_t)k * 4;
    if (!x.buf || !y.buf || !ids.buf || !weights.buf || x.off + xb > x.buf->size || y.off + xb > y.buf->size ||
        ids.off + kb > ids.buf->size || weights.off + kb > weights.buf->size || (x.off | y.off) % 4) {
        vk_fail(c, "moe_experts: tensors outside their buffers");
        return;
    }
    vk_table *tg = expert_table(c, gate, n_exp), *tu = tg ? expert_table(c, up, n_exp) : NULL;
    vk_table *td = tu ? expert_table(c, down, n_exp) : NULL;
    if (!td) return;
    uint32_t ne = (uint32_t)n * (uint32_t)k;
    VkDeviceAddress xa = vk_addr(x), ya = vk_addr(y), ia = vk_addr(ids), wa = vk_addr(weights);
    vk_range r_x = vk_rng(xa, xb), r_y = vk_rng(ya, xb), r_ids = vk_rng(ia, kb), r_w = vk_rng(wa, kb);
    vk_range r_tab[3] = {vk_rng(buf_addr(tg->buf), 16u * (size_t)n_exp), vk_rng(buf_addr(tu->buf), 16u * (size_t)n_exp),
                         vk_rng(buf_addr(td->buf), 16u * (size_t)n_exp)};

    int decode = c->env.moe == 1 || (c->env.moe == 0 && ne <= DECODE_MAX_ENTRIES);
    if (decode) {
        size_t hb = (size_t)ne * (size_t)inter * 4;
        ob_buf *h = vk_scratch(c, 2, hb);
        if (!h) return;
        VkDeviceAddress ha = buf_addr(h);
        vk_range r_h = vk_rng(ha, hb);
        /* two dispatches behind a barrier: the pair chained in one dispatch (chain.glsl) measured slower on the H100
         * (bf16 58 vs 34 µs, q8_0 119 vs 27: the waiting down-projection workgroups occupy the SMs while gate+up
         * still streams its weights; docs/architecture.md) */
        ob_pc_matvec pc = { .w = buf_addr(tg->buf), .w2 = buf_addr(tu->buf), .x = xa, .y = ha, .ids = ia, .wts = wa,
                            .rows = (uint32_t)inter, .cols = (uint32_t)dim, .n = ne, .k = (uint32_t)k,
                            .x_stride = (uint32_t)dim, .y_stride = (uint32_t)inter };
        vk_range rd1[8] = { r_x, r_ids, r_tab[0], r_tab[1], tg->span, tu->span };
        int n_rd1 = 6;
        ob_pc_matvec pd = { .w = buf_addr(td->buf), .x = ha, .y = ya, .ids = ia, .wts = wa, .rows = (uint32_t)dim,
                            .cols = (uint32_t)inter, .n = (uint32_t)n, .k = (uint32_t)k, .accumulate = 1,
                            .x_stride = (uint32_t)inter, .y_stride = (uint32_t)dim };
        vk_range rd2[6] = { r_h, r_ids, r_w, r_tab[2], td->span, r_y };
        int vec1 = vec && xa % 16 == 0 && dim % 4 == 0, vec2 = vec && inter % 4 == 0;
        /* the top-k of the router just before, left to these workgroups (vk_decode.c, route_defer): they read its
         * logits instead of the ids and write ids and weights themselves. The folded router (route_pend.fold) leaves
         * its raw halves and the residual instead: the workgroups read the residual and the norm weight (x is then
         * that row, not xn), apply the norm scale to their products, and write xn and the logits too. */
        uint32_t sel = 0, norm = 0;
        vk_range wr1[5] = { r_h, r_ids, r_w };
        int n_wr1 = 1;
        if (c->owe[VK_OWE_ROUTE].on && n == 1 && c->route_pend.n == 1 && c->route_pend.k == k &&
            c->route_pend.ne == n_exp &&
            c->route_pend.r_ids.lo == ia && c->route_pend.r_wts.lo == wa &&
            (!c->route_pend.fold || fold_consumable(c, x, dim, vec))) {
            sel = (uint32_t)n_exp | (c->route_pend.renorm ? 0x10000u : 0u);
            pc.lg = vk_addr(c->route_pend.lg);
            rd1[1] = c->route_pend.r_lg;
            n_wr1 = 3;
            if (c->route_pend.fold) {
                sel |= 0x20000u | (c->route_pend.pre ? 0x40000u : 0u);
                norm = 1u + (uint32_t)c->route_pend.norm.dtype;
                pc.x = vk_addr(c->route_pend.x);
                pc.nw = vk_addr(c->route_pend.norm.data);
                pc.xn = vk_addr(c->route_pend.xn);
                pc.lo = vk_addr(c->route_pend.lg);
                pc.lg = c->route_pend.raw;
                pc.eps = c->route_pend.eps;
                rd1[0] = c->route_pend.r_x, rd1[1] = c->route_pend.r_raw, rd1[6] = c->route_pend.r_nw;
                n_rd1 = 7;
                wr1[3] = c->route_pend.r_xn, wr1[4] = c->route_pend.r_lg;
                n_wr1 = 5;
                vec1 = vec; /* x comes from shared memory (the residual: 16-byte aligned, fold_consumable) */
            }
            vk_owed_take(c, VK_OWE_ROUTE); /* owed no longer: the gate+up writes them */
        }
        /* Q8_0 on int8 activations (vk_ops.c; h then holds int8 quants and scales) */
        if (vk_moe_q8_pair(c, gate[0].dtype, down[0].dtype, vec1, vec2, &pc, rd1, n_rd1, &pd, rd2, 6, wr1, n_wr1, &r_y,
                           sel, norm))
            return;
        vk_matvec_dispatch_sel(c, 1, gate[0].dtype, vec1, &pc, ne, rd1, n_rd1, wr1, n_wr1, (int)norm, sel);
        vk_matvec_dispatch(c, 2, down[0].dtype, vec2, &pd, (uint32_t)n, rd2, 6, &r_y, 1);
        return;
    }

    /* grouped: plan, gate and up per tile, silu·up, down in sorted order, weighted sum into y. With tensor cores
     * (matmul_cm.comp) every tile of an expert is one cooperative-matrix GEMM; the plan's tiles are then its
     * BN x rows (vk_cm_tile_n), otherwise the fp32 kernel's tile. */
    int vec_in = vec && dim % 32 == 0, vec_down = vec && inter % 32 == 0;
    int cm = vk_cm_ok(c, gate[0].dtype, vec && xa % 16 == 0 && dim % 8 == 0) &&
             vk_cm_ok(c, down[0].dtype, vec && inter % 8 == 0);
    /* OMNI_VK_CM_X16 (vk_coopmat.c): x converted to fp16 once, the fused gate+up GEMM's output fp16 */
    int x16 = cm && vk_cm_x16(c, 1), h16 = 0;
    int xin = x16 ? VK_CM_X_CONVERT : VK_CM_X32;
    /* NV cooperative matrix 2 (vk_coopmat.c, OMNI_VK_CM2_MOE): its own tile, fp16 h between the two GEMMs */
    uint32_t tile2 = cm ? vk_cm2_moe_tile_n(c, gate[0].dtype, down[0].dtype, vec, (uint32_t)dim, (uint32_t)inter, xa)
                        : 0;
    uint32_t tile = tile2 ? tile2 : cm ? vk_cm_tile_n(c, 1) : vk_matmul_tile_n(c);
    int fuse = vk_env_now("OMNI_VK_MOE_FUSE", 1) != 0;
    uint32_t max_tiles = (ne + tile - 1) / tile + (uint32_t)n_exp;
    size_t plan_b = ((size_t)2 * ne + 1 + 3 * (size_t)max_tiles) * 4;
    /* d16: the down projection writes fp16 partials for moe_combine (the fused fp16 path only, not on cm2;
     * OMNI_VK_MOE_D16=0 keeps fp32). One more fp16 rounding of each expert's output (2.4e-4..3.7e-4 relative to
     * fp32 partials in vk_coopmat_moe_combine_forms, the h between the GEMMs is fp16 already); H100 pp512 BF16
     * 35.9 -> 35.5 ms per pass (down GEMM 7.85 -> 7.73 ms, moe_combine 0.92 -> 0.51 with the 4-column form) */
    int d16 = !tile2 && x16 && dim % 8 == 0 && ya % 16 == 0 && n <= 65535 &&
              fuse && vk_env_now("OMNI_VK_MOE_D16", 1);
    size_t gu_b = (size_t)2 * ne * (size_t)inter * 4, d_b = (size_t)ne * (size_t)dim * (d16 ? 2 : 4);
    ob_buf *plan = vk_scratch(c, 1, plan_b), *gu = plan ? vk_scratch(c, 2, gu_b) : NULL;
    ob_buf *dd = gu ? vk_scratch(c, 3, d_b) : NULL;
    if (!dd) return;
    VkDeviceAddress pa = buf_addr(plan), ga = buf_addr(gu), ua = ga + (size_t)ne * (size_t)inter * 4, da = buf_addr(dd);
    vk_range r_plan = vk_rng(pa, plan_b), r_g = vk_rng(ga, gu_b / 2), r_u = vk_rng(ua, gu_b / 2), r_d = vk_rng(da, d_b);

    /* the prefill's top-k left owed by moe_route: made here with the plan, in one dispatch (one dependent dispatch
     * fewer per layer; H200, one load alternating: pp512 BF16 16,457 / 16,428 against 16,360 / 16,426 t/s, Q8_0
     * 15,928 / 15,906 against 15,855 / 15,899: +0.3%) */
    if (c->owe[VK_OWE_ROUTE].on && !c->route_pend.fold && c->route_pend.n == n && c->route_pend.k == k &&
        c->route_pend.ne == n_exp && c->route_pend.r_ids.lo == ia && c->route_pend.r_wts.lo == wa) {
        vk_owed_take(c, VK_OWE_ROUTE);
        ob_pc_route pr = { .logits = vk_addr(c->route_pend.lg), .ids = ia, .wts = wa, .n = (uint32_t)n,
                           .n_exp = (uint32_t)n_exp, .k = (uint32_t)k, .norm = (uint32_t)c->route_pend.renorm,
                           .tile = tile, .max_tiles = max_tiles };
        route_sg(c, &pr, pa, plan_b);
    } else
        plan_dispatch(c, ia, r_ids, pa, r_plan, (uint32_t)n, (uint32_t)k, (uint32_t)n_exp, tile, max_tiles, 0);

    ob_pc_matmul pm = { .w = buf_addr(tg->buf), .x = xa, .y = ga, .tiles = pa + (size_t)ne * 8, .tok = pa,
                        .rows = (uint32_t)inter, .cols = (uint32_t)dim, .n = ne, .x_stride = (uint32_t)dim,
                        .y_stride = (uint32_t)inter, .gather = 1 };
    uint32_t gx, gy;
    /* tensor cores: gate, up and swiglu in one GEMM (matmul_cm.comp MODE 2: x staged once, no separate swiglu
     * pass; H100 pp512 experts 30.8 ms for three 128x64 passes -> 24.9 ms fused in 256x64 tiles). OMNI_VK_MOE_FUSE=0:
     * three passes. */
    if (tile2) { /* gate+up+swiglu into fp16 h (ne rows of inter halves), then down from it */
        pm.s = buf_addr(tu->buf);
        vk_range rd_f[6] = { r_x, r_plan, r_tab[0], r_tab[1], tg->span, tu->span };
        vk_cm2_grouped(c, 2, gate[0].dtype, &pm, max_tiles, rd_f, 6, &r_g, 1);
        ob_pc_matmul p2 = { .w = buf_addr(td->buf), .x = ga, .y = da, .tiles = pa + (size_t)ne * 8,
                            .rows = (uint32_t)dim, .cols = (uint32_t)inter, .n = ne, .x_stride = (uint32_t)inter,
                            .y_stride = (uint32_t)dim };
        vk_range rd_2[4] = { r_g, r_plan, r_tab[2], td->span };
        vk_cm2_grouped(c, 1, down[0].dtype, &p2, max_tiles, rd_2, 4, &r_d, 1);
    } else if (cm && fuse) {
        pm.s = buf_addr(tu->buf);
        vk_range rd_f[6] = { r_x, r_plan, r_tab[0], r_tab[1], tg->span, tu->span };
        vk_matmul_cm_dispatch_x(c, 2, xin, (uint32_t)n, gate[0].dtype, &pm, max_tiles, rd_f, 6, &r_g, 1);
        h16 = x16; /* gu holds fp16 silu(gate)·up, ne rows of inter halves */
    } else {
        vk_range rd_g[4] = { r_x, r_plan, r_tab[0], tg->span };
        mm_grouped(c, cm, xin, (uint32_t)n, gate[0].dtype, vec_in, &pm, max_tiles, rd_g, &r_g, 0);
        pm.w = buf_addr(tu->buf);
        pm.y = ua;
        vk_range rd_u[4] = { r_x, r_plan, r_tab[1], tu->span };
        mm_grouped(c, cm, xin, (uint32_t)n, up[0].dtype, vec_in, &pm, max_tiles, rd_u, &r_u, 0);

        ob_pc_ew pe = { .a = ga, .b = ua, .dst = ga, .count = ne * (uint32_t)inter };
        uint32_t spec_ew[3] = { 256, 1, 1 };
        vk_grid(c, (uint64_t)pe.count, 1024, &gx, &gy);
        pe.groups_x = gx;
        vk_range rd_e[2] = { r_g, r_u };
        vk_dispatch(c, vk_pipeline(c, SH_EW, spec_ew, 3), &pe, sizeof pe, gx, gy, 1, rd_e, 2, &r_g, 1);
    }

    if (!tile2) {
        ob_pc_matmul pdn = { .w = buf_addr(td->buf), .x = ga, .y = da, .tiles = pa + (size_t)ne * 8, .tok = pa,
                             .rows = (uint32_t)dim, .cols = (uint32_t)inter, .n = ne, .x_stride = (uint32_t)inter,
                             .y_stride = (uint32_t)dim, .gather = 0 };
        vk_range rd_d[4] = { r_g, r_plan, r_tab[2], td->span };
        if (d16) pdn.y_stride = (uint32_t)dim; /* in halves */
        mm_grouped(c, cm, h16 ? VK_CM_X16_IN : xin, ne, down[0].dtype, vec_down, &pdn, max_tiles, rd_d, &r_d, d16);
    }

    ob_pc_combine pcb = { .d = da, .pos = pa + (size_t)ne * 4, .wts = wa, .y = ya, .n = (uint32_t)n, .k = (uint32_t)k,
                          .dim = (uint32_t)dim };
    vk_range rd_c[4] = { r_d, r_plan, r_w, r_y };
    /* 4 columns per thread, a token per grid row, the slot loop unrolled for k <= 16 (moe_combine.comp V = 4; the same
     * bits as one thread per element; OMNI_VK_COMBINE_V4=0 off) */
    if (d16 || (dim % 4 == 0 && da % 16 == 0 && ya % 16 == 0 && n <= 65535 && vk_env_now("OMNI_VK_COMBINE_V4", 1))) {
        uint32_t spec_cb[4] = { 128, 4, k <= 16 ? (uint32_t)k : 0u, (uint32_t)d16 };
        gx = (uint32_t)((dim / 4 + 127) / 128);
        vk_dispatch(c, vk_pipeline(c, SH_MOE_COMBINE, spec_cb, 4), &pcb, sizeof pcb, gx, (uint32_t)n, 1, rd_c, 4, &r_y,
                    1);
        return;
    }
    uint32_t spec_cb[3] = { 256, 1, 0 };
    vk_grid(c, (uint64_t)n * (uint64_t)dim, 256, &gx, &gy);
    vk_dispatch(c, vk_pipeline(c, SH_MOE_COMBINE, spec_cb, 3), &pcb, sizeof pcb, gx, gy, 1, rd_c, 4, &r_y, 1);
}
