/* vk_ops.c — the Vulkan back-end's table (ob_vulkan_new) and its ops: each fills a push-constant block, picks a
 * pipeline (kernel + specialization constants), states what memory it reads and writes, and records dispatches.
 * Sections: helpers, matrix multiplication, small ops, attention, encoder ops, the back-end. MoE is in vk_moe.c.
 *
 * Kernel choices: matmul with n <= 8 x rows runs the matrix-vector kernel (weights streamed once for all rows),
 * larger n the tiled kernel; both take the 16-byte vector path when the weight (and x) are 16-byte aligned with
 * row lengths a multiple of 16 bytes, and an element-wise path otherwise. OMNI_VK_MM forces either kernel. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

/* sizes as the GLSL std430 push-constant layout has them (64-bit fields first), all within the portable 128 bytes */
_Static_assert(sizeof(ob_pc_matvec) == 120, "ob_pc_matvec layout");
_Static_assert(sizeof(ob_pc_fold) == 72, "ob_pc_fold layout");
_Static_assert(sizeof(ob_pc_gridbar) == 48, "ob_pc_gridbar layout");
_Static_assert(sizeof(ob_pc_routerchain) == 128, "ob_pc_routerchain layout");
_Static_assert(sizeof(ob_pc_matmul) == 80, "ob_pc_matmul layout");
_Static_assert(sizeof(ob_pc_rows) == 48, "ob_pc_rows layout");
_Static_assert(sizeof(ob_pc_topk) == 24, "ob_pc_topk layout");
_Static_assert(OB_TOPK_CHUNK == 2048 && OB_TOPK_K == 64, "shaders/topk.comp's CH and K");
_Static_assert(sizeof(ob_pc_router) == 96, "ob_pc_router layout");
_Static_assert(sizeof(ob_pc_norm) == 72, "ob_pc_norm layout");
_Static_assert(sizeof(ob_pc_rope) == 56, "ob_pc_rope layout");
_Static_assert(sizeof(ob_pc_kv) == 56, "ob_pc_kv layout");
_Static_assert(sizeof(ob_pc_attn) == 88, "ob_pc_attn layout");
_Static_assert(sizeof(ob_pc_route) == 80, "ob_pc_route layout");
_Static_assert(sizeof(ob_pc_plan) == 40, "ob_pc_plan layout");
_Static_assert(sizeof(ob_pc_combine) == 48, "ob_pc_combine layout");
_Static_assert(sizeof(ob_pc_ew) == 40, "ob_pc_ew layout");
_Static_assert(sizeof(ob_pc_gather) == 96, "ob_pc_gather layout");
_Static_assert(sizeof(ob_pc_qkrope) == 128, "ob_pc_qkrope layout");
_Static_assert(sizeof(ob_pc_attnd) == 128, "ob_pc_attnd layout");

/* ---- shared helpers -------------------------------------------------------------------------------------------- */

static size_t elem_size(ob_dtype t) { return t == OB_F32 || t == OB_I32 ? 4 : t == OB_Q8_0 ? 1 : 2; }

uint32_t vk_norm_wg(int dim) { return dim >= 1024 ? 256 : dim >= 256 ? 128 : 64; }

int vk_mat_check(vk_ctx *c, const ob_mat *w, const char *op) {
    if (c->base.failed) return -1;
    if (!w || !w->data.buf) {
        vk_fail(c, "%s: weight without a buffer", op);
        return -1;
    }
    if (w->dtype != OB_F32 && w->dtype != OB_F16 && w->dtype != OB_BF16 && w->dtype != OB_Q8_0) {
        vk_fail(c, "%s: unsupported weight dtype %s", op, ob_dtype_name(w->dtype));
        return -1;
    }
    if (w->rows <= 0 || w->cols <= 0 || w->rows > 0x7fffffff || w->cols > 0x7fffffff ||
        (w->dtype == OB_Q8_0 && w->cols % 32)) {
        vk_fail(c, "%s: bad weight shape [%lld, %lld] for %s", op, (long long)w->rows, (long long)w->cols,
                ob_dtype_name(w->dtype));
        return -1;
    }
    VkDeviceAddress a = vk_addr(w->data);
    size_t need = (size_t)w->rows * (size_t)w->cols * elem_size(w->dtype);
    if (w->dtype == OB_Q8_0) {
        size_t send = w->scale_off + (size_t)w->rows * (size_t)(w->cols / 32) * 2;
        if (send > need) need = send;
        if ((a + w->scale_off) & 1) {
            vk_fail(c, "%s: q8_0 scales not 2-byte aligned", op);
            return -1;
        }
    }
    if (a % (w->dtype == OB_F32 ? 4 : w->dtype == OB_Q8_0 ? 1 : 2)) {
        vk_fail(c, "%s: %s weight at a misaligned offset", op, ob_dtype_name(w->dtype));
        return -1;
    }
    if (w->data.off + need > w->data.buf->size) {
        vk_fail(c, "%s: weight [%lld, %lld] %s runs past its buffer", op, (long long)w->rows, (long long)w->cols,
                ob_dtype_name(w->dtype));
        return -1;
    }
    return 0;
}

int vk_mat_vec_ok(const ob_mat *w) {
    VkDeviceAddress a = vk_addr(w->data);
    return a % 16 == 0 && ((size_t)w->cols * elem_size(w->dtype)) % 16 == 0;
}

/* the bytes of a weight matrix (data and q8 scales) as one range */
vk_range vk_mat_range(const ob_mat *w) {
    VkDeviceAddress a = vk_addr(w->data);
    size_t n = (size_t)w->rows * (size_t)w->cols * elem_size(w->dtype);
    if (w->dtype == OB_Q8_0) {
        size_t send = w->scale_off + (size_t)w->rows * (size_t)(w->cols / 32) * 2;
        if (send > n) n = send;
    }
    return vk_rng(a, n);
}

int vk_ptr_ok(vk_ctx *c, ob_ptr p, size_t bytes, const char *op) {
    if (c->base.failed) return 0;
    if (!p.buf || p.off > p.buf->size || bytes > p.buf->size - p.off) {
        vk_fail(c, "%s: tensor of %zu bytes at offset %zu outside its buffer", op, bytes, p.off);
        return 0;
    }
    if (p.off % 4) {
        vk_fail(c, "%s: fp32/int32 tensor at an offset not a multiple of 4", op);
        return 0;
    }
    return 1;
}

/* ---- matrix multiplication --------------------------------------------------------------------------------------- */

void vk_matvec_dispatch(vk_ctx *c, int mode, ob_dtype wt, int vec, ob_pc_matvec *pc, uint32_t groups_y,
                        const vk_range *reads, int n_reads, const vk_range *writes, int n_writes) {
    vk_matvec_dispatch_norm(c, mode, wt, vec, pc, groups_y, reads, n_reads, writes, n_writes, 0);
}

/* mv.comp, the decode kernel for aligned shapes on devices with subgroups: every lane issues all loads of its
 * share of its rows first (NPL 16-byte vectors per row, at most MV_MAX_VECS per lane in registers), then x is staged
 * (and normalised) in shared memory. Returns 0 where it does not apply (the caller then runs matvec.comp). */
#define MV_MAX_VECS 16
static int mv_fast(vk_ctx *c, int mode, ob_dtype wt, int vec, ob_pc_matvec *pc, const vk_range *reads, int n_reads,
                   const vk_range *writes, int n_writes, int norm) {
    /* dense single rows only: for the MoE pair matvec.comp measured faster (H100, 8 of 128 [768 x 2048] experts:
     * bf16 2.0 vs 1.3 TB/s, q8_0 1.4 vs 0.64 TB/s — staging each slot's h row costs the down projection more shared
     * memory and L2 traffic than its weights; the gate+up alone here, every lane's gate and up loads in flight,
     * was slower too: experts 35.46 vs 32.82 µs per token); the q8_0 and fused-norm dense rows gain (q8_0
     * [4096 x 2048]: 2.07 vs 1.85 TB/s; the input norm fused into q|k|v: projections 1.28 vs 1.42 ms per token).
     * Q8_0 reaches it only where int8 activations do not apply (mv_q8 is tried first): no integer dot product or
     * OMNI_VK_Q8_INT8=0. Plain f16/bf16 rows (o_proj, lm_head) too since session 6 (OMNI_VK_MV_PLAIN=0: matvec.comp):
     * H100 BF16 tg128 245.4 / 243.2 vs 235.4 / 238.3 t/s, the two alternating in one run */
    if (c->env.mv_old || !vec || !vk_use_subgroups(c) || mode != 0 || pc->n != 1 ||
        (wt != OB_Q8_0 && !norm && !c->env.mv_plain))
        return 0;
    uint32_t sgs = c->caps.subgroup_size, epv = wt == OB_F32 ? 4 : wt == OB_Q8_0 ? 16 : 8;
    if (sgs < 8 || sgs > 128 || pc->cols % epv || pc->cols % 4 || pc->x % 16 || (pc->x_stride * 4u) % 16 ||
        (norm && pc->ids % 16))
        return 0;
    uint32_t nvec = pc->cols / epv, npl = (nvec + sgs - 1) / sgs;
    uint32_t rsg = c->env.mv_rsg > 0 ? (uint32_t)c->env.mv_rsg : 1;
    if (rsg > 4) rsg = 4;
    while (rsg > 1 && npl * rsg > MV_MAX_VECS) rsg--;
    if (npl * rsg > MV_MAX_VECS) return 0;
    uint32_t wg = c->env.mv_wg > 0 ? (uint32_t)c->env.mv_wg : 256, xs = pc->cols / 4;
    if (wg < sgs) wg = sgs;
    uint32_t gx = (pc->rows + (wg / sgs) * rsg - 1) / ((wg / sgs) * rsg);
    if ((size_t)xs * 16 + 1024 > c->caps.max_shared || wg / sgs > 64) return 0;
    uint32_t spec[7] = { wg, (uint32_t)wt, npl, rsg, xs, (uint32_t)norm, sgs };
    vk_dispatch(c, vk_pipeline(c, SH_MV, spec, 7), pc, sizeof *pc, gx, 1, 1, reads, n_reads, writes, n_writes);
    return 1;
}

/* mvq8.comp, the Q8_0 decode kernel on devices with the integer dot product (OMNI_VK_Q8_INT8=0 turns it off): Q8_0
 * weights against activations quantized to int8 per block of 16 (as llama.cpp's q8 activations), packed 4x8-bit dot
 * products, all weight loads of a lane in flight before the activations are staged (mv.comp's design). It changes
 * the numerics by the activations' rounding (up to a block's largest value / 254 per element; 0.3-1% of the output's
 * largest value on the tests' random rows); with fp32 activations the Q8_0 kernels are bound by the conversions and
 * x reads (4 bytes per weight byte), not by memory. The MoE pair: vk_moe_q8_pair. */
#define Q8_MAX_VECS 16 /* 16-byte weight vectors per lane in flight (registers) */

static int q8_ok(vk_ctx *c) {
    uint32_t sgs = c->caps.subgroup_size;
    return c->env.q8_int8 && c->caps.int_dot && vk_use_subgroups(c) && sgs >= 8 && sgs <= 128;
}

int vk_q8_int8_on(vk_ctx *c) { return q8_ok(c); }

/* dense rows (MODE 0), also with the RMSNorm fused (norm: 1 + its weight's dtype); 0 where it does not apply */
static int mv_q8(vk_ctx *c, int mode, ob_dtype wt, int vec, ob_pc_matvec *pc, const vk_range *reads, int n_reads,
                 const vk_range *writes, int n_writes, int norm) {
    if (mode != 0 || wt != OB_Q8_0 || !vec || pc->n != 1 || !q8_ok(c)) return 0;
    uint32_t sgs = c->caps.subgroup_size;
    if (pc->cols % 32 || pc->x % 16 || (norm && pc->ids % 16)) return 0;
    uint32_t nvec = pc->cols / 16, npl = (nvec + sgs - 1) / sgs;
    /* rows per subgroup: 1 by default, 2 for matrices of many rows (lm_head: every workgroup's x staging is then
     * shared by more weight bytes, and there are workgroups enough). Measured on the H100 (vulkan_bench matvec, µs
     * per call): q-proj [4096 x 2048] 3.73 (2.39 TB/s) vs 3.82 with 2 rows; o-proj [2048 x 4096] 4.01 vs 5.32;
     * lm_head [152064 x 2048] 246 with 2 rows vs 268 (1) and 314 (4). Workgroups of 256 (512 the same, 128 slower);
     * SEQ (row groups one after another, loads pipelined) 2 and 4 were slower everywhere (q-proj 3.98 / 4.04,
     * o-proj 5.02, lm_head 529). */
    uint32_t rsg = c->env.q8_rsg > 0 ? (uint32_t)c->env.q8_rsg : pc->rows >= 32768 ? 2 : 1;
    if (rsg > 4) rsg = 4;
    while (rsg > 1 && npl * rsg > Q8_MAX_VECS) rsg--;
    if (npl * rsg > 2 * Q8_MAX_VECS) return 0;
    uint32_t wg = c->env.q8_wg > 0 ? (uint32_t)c->env.q8_wg : 256;
    if (wg < sgs) wg = sgs;
    wg = wg / sgs * sgs;
    if (wg / sgs > 32 || wg > c->caps.max_wg_invocations) return 0;
    if ((size_t)nvec * 20 + 1024 > c->caps.max_shared) return 0;
    uint32_t seq = c->env.q8_seq > 0 && c->env.q8_seq <= 8 ? (uint32_t)c->env.q8_seq : 1;
    uint32_t rows_wg = (wg / sgs) * rsg * seq, gx = (pc->rows + rows_wg - 1) / rows_wg;
    uint32_t spec[10] = { wg, 0, rsg, npl, nvec, (uint32_t)norm, sgs, 1, 16, seq };
    vk_dispatch(c, vk_pipeline(c, SH_MVQ8, spec, 10), pc, sizeof *pc, gx, 1, 1, reads, n_reads, writes, n_writes);
    return 1;
}

/* The MoE decode pair (vk_moe.c's decode branch) on int8 activations, two dispatches of mvq8.comp:
 *   gate+up (MODE 1): one workgroup per (16 rows, entry); it quantizes the token's x itself after issuing its weight
 *     loads, and writes h = silu(g)·u already as int8 per block of 16 rows (quants at h, fp32 scales after all
 *     entries' quants: 1.25 bytes per element, within the fp32 h buffer the caller sized);
 *   down (MODE 2): each subgroup serves RSG rows for all k slots of a token (one expert per lane, no shared memory or
 *     barrier), reading the int8 h straight from L2: 16 bytes of activations per 16 weight bytes instead of 64.
 * The pair decides for both dispatches, since the h format must match. Returns 0 where it does not apply (both
 * then run matvec.comp). gu/dn: the two push-constant blocks as vk_moe.c fills them for matvec.comp. */
int vk_moe_q8_pair(vk_ctx *c, ob_dtype gt, ob_dtype dt, int vec_gu, int vec_dn, ob_pc_matvec *gu,
                   const vk_range *rd_gu, int n_rd_gu, ob_pc_matvec *dn, const vk_range *rd_dn, int n_rd_dn,
                   const vk_range *wr_gu, int n_wr_gu, const vk_range *wr_y, uint32_t sel, uint32_t norm) {
    if (gt != OB_Q8_0 || dt != OB_Q8_0 || !vec_gu || !vec_dn || !q8_ok(c)) return 0;
    uint32_t sgs = c->caps.subgroup_size, inter = gu->rows, dim = gu->cols, k = gu->k, ne = gu->n;
    if (dim % 32 || inter % 32 || gu->x % 16 || dn->x % 16 || k < 1 || k > sgs || dn->cols != inter ||
        dn->rows != dim || dn->k != k)
        return 0;
    /* gate+up: HB rows per workgroup (16 or 32; the h blocks are 16 rows), RSG rows per subgroup */
    uint32_t nvec = dim / 16, npl = (nvec + sgs - 1) / sgs;
    uint32_t hb = c->env.q8_hb == 32 ? 32 : 16;
    uint32_t rsg = c->env.q8_rsg_gu > 0 ? (uint32_t)c->env.q8_rsg_gu : 1;
    rsg = rsg >= 4 ? 4 : rsg >= 2 ? 2 : 1; /* a divisor of hb */
    while (rsg > 1 && 2 * npl * rsg > Q8_MAX_VECS) rsg /= 2;
    if (2 * npl * rsg > 2 * Q8_MAX_VECS) return 0;
    uint32_t seq = c->env.q8_seq == 2 || c->env.q8_seq == 4 ? (uint32_t)c->env.q8_seq : 1; /* divisors of hb / rsg */
    if (seq > hb / rsg) seq = hb / rsg;
    uint32_t wg = hb / (rsg * seq) * sgs;
    if (hb / rsg > 32 || wg > c->caps.max_wg_invocations || (size_t)nvec * 20 + 1024 > c->caps.max_shared) return 0;
    /* down: lanes per slot sgs / k, all of a lane's vectors in flight */
    uint32_t lps = sgs / k, nvd = inter / 16, nper = (nvd + lps - 1) / lps;
    uint32_t rsg_d = c->env.q8_rsg_down > 0 ? (uint32_t)c->env.q8_rsg_down : 1;
    if (rsg_d > 4) rsg_d = 4;
    while (rsg_d > 1 && nper * rsg_d > 2 * Q8_MAX_VECS) rsg_d--;
    if (nper * rsg_d > Q8_MAX_VECS && (rsg_d == 1 || !c->env.q8_rsg_down)) return 0;
    uint32_t wg_d = c->env.q8_wg_down > 0 ? (uint32_t)c->env.q8_wg_down : 128;
    if (wg_d < sgs) wg_d = sgs;
    wg_d = wg_d / sgs * sgs;
    if (wg_d > c->caps.max_wg_invocations) return 0;

    gu->s = gu->y + (VkDeviceAddress)ne * inter; /* h scales after the quants */
    uint32_t spec1[11] = { wg, 1, rsg, npl, nvec, norm, sgs, k, hb, seq, sel }; /* sel: mvq8.comp's SEL (0: ids) */
    vk_dispatch(c, vk_pipeline(c, SH_MVQ8, spec1, sel ? 11 : 10), gu, sizeof *gu, (inter + hb - 1) / hb, ne, 1, rd_gu,
                n_rd_gu, wr_gu, n_wr_gu);
    dn->s = gu->s;
    /* two groups of rows per subgroup in the down projection (the second group's loads in flight while the first is
     * summed; x and the expert lookup shared). Measured on the H100, the expert pair (8 of 128 [768 x 2048] q8_0,
     * vulkan_bench matvec): 24.7 µs (1.62 TB/s) vs 26.7 with one group, 28.2 with four; down rows loaded together
     * (RSG 2) 25.8, workgroups of 64/256 threads 27.0/26.2. Gate+up: one row (gate and up) per subgroup, 16 rows per
     * workgroup (512 threads) measured best: 2 rows 32.6 µs, 32 rows per workgroup or SEQ 2/4 28.4-29.5. */
    uint32_t seq_d = c->env.q8_seq_down > 0 && c->env.q8_seq_down <= 8 ? (uint32_t)c->env.q8_seq_down : 2;
    uint32_t rows_wg = (wg_d / sgs) * rsg_d * seq_d;
    uint32_t spec2[10] = { wg_d, 2, rsg_d, nper, 1, 0, sgs, k, 16, seq_d };
    vk_dispatch(c, vk_pipeline(c, SH_MVQ8, spec2, 10), dn, sizeof *dn, (dim + rows_wg - 1) / rows_wg, dn->n, 1, rd_dn,
                n_rd_dn, wr_y, 1);
    return 1;
}

void vk_matvec_dispatch_norm(vk_ctx *c, int mode, ob_dtype wt, int vec, ob_pc_matvec *pc, uint32_t groups_y,
                             const vk_range *reads, int n_reads, const vk_range *writes, int n_writes, int norm) {
    vk_matvec_dispatch_sel(c, mode, wt, vec, pc, groups_y, reads, n_reads, writes, n_writes, norm, 0);
}

/* sel: MODE 1 only, matvec.comp's SEL constant (the experts selected from the logits at pc->lg; 0 = from pc->ids) */
void vk_matvec_dispatch_sel(vk_ctx *c, int mode, ob_dtype wt, int vec, ob_pc_matvec *pc, uint32_t groups_y,
                            const vk_range *reads, int n_reads, const vk_range *writes, int n_writes, int norm,
                            uint32_t sel) {
    if (mv_q8(c, mode, wt, vec, pc, reads, n_reads, writes, n_writes, norm)) return;
    if (mv_fast(c, mode, wt, vec, pc, reads, n_reads, writes, n_writes, norm)) return;
    int sg = vk_use_subgroups(c);
    uint32_t sgs = sg ? c->caps.subgroup_size : 1;
    /* x columns per workgroup: 1, 2, 4 or 8 (fewer pipeline variants; the kernel skips columns past n) */
    uint32_t nv = mode != 0 || pc->n <= 1 ? 1 : pc->n <= 2 ? 2 : pc->n <= 4 ? 4 : 8;
    /* One weight row per subgroup at a time, four subgroups per workgroup, two 16-byte loads per lane in flight.
     * Measured on the H100 (3.35 TB/s): bf16 [4096 x 2048] 2.99 TB/s (89%; 80% with two rows per subgroup), f16
     * 87%, q8_0 56%, bf16 lm_head [152064 x 2048] 94%; U = 1 or 4 and conversion instructions instead of bit
     * operations changed little. The MoE down projection gives each of the token's k experts its own subgroup,
     * and a workgroup one output row (the MoE pair reads 8 random [768 x 2048] bf16 experts at ~62%). */
    uint32_t rsg = c->env.mv_rsg > 0 ? (uint32_t)c->env.mv_rsg : 1;
    if (rsg > 2) rsg = 2;
    /* the MoE down projection: two output rows per workgroup (each of the token's k experts a subgroup). Measured on
     * the H100, the expert pair (8 of 128 [768 x 2048]): bf16 2.28 TB/s vs 2.08 with one row, 2.24 with four; q8_0
     * 1.47 vs 1.40 TB/s */
    if (mode == 2) rsg = c->env.mv_rsg_down > 0 ? (c->env.mv_rsg_down < 4 ? (uint32_t)c->env.mv_rsg_down : 4) : 2;
    uint32_t wg, rows_wg;
    if (mode == 2) {
        uint32_t k = pc->k < 8 ? pc->k : 8;
        wg = sg ? k * sgs : 128;
        if (wg < 32) wg = 32;
        rows_wg = rsg;
    } else {
        wg = c->env.mv_wg > 0 ? (uint32_t)c->env.mv_wg : sg ? (sgs >= 32 ? 128 : 64) : 128;
        if (sg && wg < sgs) wg = sgs;
        rows_wg = sg ? (wg / sgs) * rsg : rsg;
    }
    uint32_t unroll = c->env.mv_unroll > 0 ? (uint32_t)c->env.mv_unroll : 2;
    uint32_t cvt = c->env.mv_cvt >= 0 ? (uint32_t)c->env.mv_cvt : 1;
    /* norm: 1 + the RMSNorm weight's dtype (fused norm, x staged in shared memory as cols/4 vec4), 0 = none */
    uint32_t spec[12] = { wg, (uint32_t)wt, rsg, nv, (uint32_t)mode, (uint32_t)vec, rows_wg, unroll, cvt,
                          (uint32_t)norm, norm && mode == 0 ? (pc->cols + 3) / 4 : 1, mode == 1 ? sel : 0 };
    VkPipeline p = vk_pipeline(c, SH_MATVEC, spec, spec[11] ? 12 : 11);
    uint32_t gx = (pc->rows + rows_wg - 1) / rows_wg;
    if (mode == 0) groups_y = (pc->n + nv - 1) / nv;
    vk_dispatch(c, p, pc, sizeof *pc, gx, groups_y, 1, reads, n_reads, writes, n_writes);
}

/* the fp32 tiled matmul's split-K threshold (OMNI_VK_MM_SPLIT=0: off): fewer tiles than this */
#define MM_SPLIT_BELOW 32u

void vk_matmul_dispatch(vk_ctx *c, int grouped, ob_dtype wt, int vec, ob_pc_matmul *pc, uint32_t groups_y,
                        const vk_range *reads, int n_reads, const vk_range *writes, int n_writes) {
    /* tensor cores where the device has them (dense matmul; the grouped MoE decides in vk_moe.c, where the plan's
     * tile size depends on the kernel) */
    if (!grouped && vk_cm_ok(c, wt, vec) && vk_cm_operands_ok(pc)) {
        vk_matmul_cm_dispatch(c, 0, wt, pc, groups_y, reads, n_reads, writes, n_writes);
        return;
    }
    /* 128x128 tiles (8x8 per thread) where shared memory allows; 64x64 (4x4) otherwise */
    uint32_t bm = vk_matmul_tile_n(c);
    uint32_t spec[8] = { 0, (uint32_t)wt, 0, 0, 0, 0, (uint32_t)grouped, (uint32_t)vec }; /* ids 1, 6, 7 used */
    VkPipeline p = vk_pipeline(c, bm == 128 ? SH_MATMUL_BIG : SH_MATMUL, spec, 8);
    uint32_t gx = (pc->rows + bm - 1) / bm, split = 1;
    if (!grouped) groups_y = (pc->n + bm - 1) / bm;
    /* split over K below MM_SPLIT_BELOW tiles, as the tensor-core GEMMs (up to 16 parts of at least two 32-column
     * slices); vk_gemm_split sums the planes or leaves the sum to the next op. OMNI_VK_MM_SPLIT=0: never. Measured
     * on the H100 without its tensor cores (OMNI_VK_NO_COOPMAT=1, the path of a GPU without cooperative matrix),
     * pp512 BF16, one load alternating: 1,540 / 1,539 t/s against 1,443 / 1,444 unsplit (the MoE router, 4 tiles of
     * 128 x 128: 26.0 -> 3.1 ms per pass) */
    if (!grouped && vk_env_now("OMNI_VK_MM_SPLIT", 1) > 0 && gx * groups_y < MM_SPLIT_BELOW) {
        uint32_t slices = (pc->cols + 31) / 32;
        split = (2 * MM_SPLIT_BELOW + gx * groups_y - 1) / (gx * groups_y);
        if (split > 16) split = 16;
        if (split > slices / 2) split = slices / 2;
    }
    if (split > 1) {
        ob_pc_matmul px = *pc;
        vk_gemm_split(c, p, pc, &px, gx, groups_y, split, reads, n_reads, writes, n_writes);
        return;
    }
    vk_dispatch(c, p, pc, sizeof *pc, gx, groups_y, 1, reads, n_reads, writes, n_writes);
}

uint32_t vk_matmul_tile_n(vk_ctx *c) {
    const char *tile = getenv("OMNI_VK_MM_TILE");
    int big = tile ? atoi(tile) == 128 : c->caps.max_shared >= 48 * 1024;
    return big ? 128 : 64;
}

void vk_op_matmul(ob_backend *b, const ob_mat *w, ob_ptr x, ob_ptr y, int n, int accumulate) {
    vk_ctx *c = vk_of(b);
    if (n <= 0 || vk_mat_check(c, w, "matmul") != 0) return;
    size_t xb = (size_t)n * (size_t)w->cols * 4, yb = (size_t)n * (size_t)w->rows * 4;
    if (!vk_ptr_ok(c, x, xb, "matmul x") || !vk_ptr_ok(c, y, yb, "matmul y")) return;
    vk_range rd[3] = { vk_mat_range(w), vk_rng(vk_addr(x), xb), vk_rng(vk_addr(y), yb) };
    vk_range wr = vk_rng(vk_addr(y), yb);
    VkDeviceAddress wa = vk_addr(w->data);
    int use_vec = c->env.mm == 1 || (c->env.mm == 0 && n <= 8);
    if (use_vec) {
        int vec = vk_mat_vec_ok(w) && vk_addr(x) % 16 == 0 && w->cols % 4 == 0;
        ob_pc_matvec pc = {
            .w = wa, .s = wa + w->scale_off, .x = vk_addr(x), .y = vk_addr(y),
            .rows = (uint32_t)w->rows, .cols = (uint32_t)w->cols, .n = (uint32_t)n, .k = 1,
            .accumulate = (uint32_t)(accumulate != 0), .x_stride = (uint32_t)w->cols, .y_stride = (uint32_t)w->rows,
        };
        vk_matvec_dispatch(c, 0, w->dtype, vec, &pc, 1, rd, accumulate ? 3 : 2, &wr, 1);
    } else {
        int vec = vk_mat_vec_ok(w) && w->cols % 32 == 0;
        ob_pc_matmul pc = {
            .w = wa, .s = wa + w->scale_off, .x = vk_addr(x), .y = vk_addr(y),
            .rows = (uint32_t)w->rows, .cols = (uint32_t)w->cols, .n = (uint32_t)n,
            .accumulate = (uint32_t)(accumulate != 0), .x_stride = (uint32_t)w->cols, .y_stride = (uint32_t)w->rows,
        };
        c->ksum_defer = 1; /* a split-K sum may be left to the next op (vk_coopmat.c vk_gemm_split) */
        vk_matmul_dispatch(c, 0, w->dtype, vec, &pc, 1, rd, accumulate ? 3 : 2, &wr, 1);
        c->ksum_defer = 0;
    }
}

/* ---- small ops --------------------------------------------------------------------------------------------------- */

void vk_op_get_rows(ob_backend *b, const ob_mat *t, ob_ptr ids, int n, ob_ptr out) {
    vk_ctx *c = vk_of(b);
    if (n <= 0 || vk_mat_check(c, t, "get_rows") != 0) return;
    size_t ob = (size_t)n * (size_t)t->cols * 4;
    if (!vk_ptr_ok(c, ids, (size_t)n * 4, "get_rows ids") || !vk_ptr_ok(c, out, ob, "get_rows out")) return;
    VkDeviceAddress wa = vk_addr(t->data);
    ob_pc_rows pc = { .w = wa, .s = wa + t->scale_off, .ids = vk_addr(ids), .dst = vk_addr(out),
                      .rows = (uint32_t)t->rows, .cols = (uint32_t)t->cols, .n = (uint32_t)n };
    uint32_t spec[2] = { 256, (uint32_t)t->dtype }, gx, gy;
    vk_grid(c, (uint64_t)n * (uint64_t)t->cols, 256, &gx, &gy);
    vk_range rd[2] = { vk_mat_range(t), vk_rng(vk_addr(ids), (size_t)n * 4) }, wr = vk_rng(vk_addr(out), ob);
    vk_dispatch(c, vk_pipeline(c, SH_GET_ROWS, spec, 2), &pc, sizeof pc, gx, gy, 1, rd, 2, &wr, 1);
}

void vk_op_rms_norm(ob_backend *b, ob_ptr x, const ob_mat *w, ob_ptr y, int rows, int dim, float eps) {
    vk_ctx *c = vk_of(b);
    if (rows <= 0 || dim <= 0 || vk_mat_check(c, w, "rms_norm") != 0) return;
    if (w->rows * w->cols < dim) {
        vk_fail(c, "rms_norm: weight of %lld elements for rows of %d", (long long)(w->rows * w->cols), dim);
        return;
    }
    size_t bytes = (size_t)rows * (size_t)dim * 4;
    if (!vk_ptr_ok(c, x, bytes, "rms_norm x") || !vk_ptr_ok(c, y, bytes, "rms_norm y")) return;
    VkDeviceAddress wa = vk_addr(w->data);
    /* prefill rows for tensor-core GEMMs: the fp16 copy they read is written here too (vk_x16_offer) */
    VkDeviceAddress y16 = vk_x16_offer(c, (uint32_t)rows, (uint32_t)dim, vk_addr(y));
    ob_pc_norm pc = { .x = vk_addr(x), .w = wa, .s = wa + w->scale_off, .y = vk_addr(y), .y16 = y16,
                      .rows = (uint32_t)rows, .dim = (uint32_t)dim, .eps = eps };
    /* the split-K sum the product into x still owes (o_proj into the residual), done here first (rms_norm.comp
     * KSUM: x written back; not in place) */
    uint32_t ks = 0;
    vk_range r_ks = { 0, 0 };
    if (pc.x != pc.y && (size_t)dim * 4 + 1024 <= c->caps.max_shared) /* the row stays in shared memory */
        pc.b = vk_ksum_take(c, pc.x, (uint32_t)rows, (uint32_t)dim, 1, &ks, &r_ks);
    pc.has_bias = pc.b ? ks : 0;
    uint32_t gx, gy, spec[5] = { vk_norm_wg(dim), (uint32_t)w->dtype, 0, 0, pc.b ? (uint32_t)dim : 1 };
    vk_grid(c, (uint64_t)rows, 1, &gx, &gy);
    vk_range rd[3] = { vk_rng(vk_addr(x), bytes), vk_mat_range(w), r_ks },
             wr[3] = { vk_rng(vk_addr(y), bytes), vk_rng(y16, (size_t)rows * (size_t)dim * 2), rd[0] };
    if (!y16) wr[1] = rd[0];
    vk_dispatch(c, vk_pipeline(c, SH_RMS_NORM, spec, pc.b ? 5 : 4), &pc, sizeof pc, gx, gy, 1, rd, pc.b ? 3 : 2, wr,
                (y16 ? 2 : 1) + (pc.b != 0));
    if (y16) vk_x16_written(c, (uint32_t)rows, (uint32_t)dim, vk_addr(y));
}

/* inverse frequencies of a rope as HF computes them in fp32: 1 / theta^(2j / rot_dim), or with section_freqs
 * 1 / theta^(2j / (2·section)) restarting in every section (the ViT's 2-D rotary); cached per configuration.
 * Mirrors the CPU back-end's cpu_rope. */
ob_buf *vk_rope_freqs(vk_ctx *c, const ob_rope *r) {
    int rot_dim = r->rot_dim;
    for (int i = 0; i < c->n_freqs; i++)
        if (c->freqs[i].theta == r->theta && c->freqs[i].rot_dim == rot_dim &&
            c->freqs[i].section_freqs == (r->section_freqs != 0) &&
            (!r->section_freqs || !memcmp(c->freqs[i].section, r->section, sizeof r->section)))
            return c->freqs[i].buf;
    int half = rot_dim / 2;
    float *f = malloc(sizeof *f * (size_t)half);
    ob_buf *buf = vk_alloc(&c->base, sizeof *f * (size_t)half);
    if (!f || !buf) {
        free(f);
        if (buf) vk_buf_free(&c->base, buf);
        vk_fail(c, "rope: out of memory");
        return NULL;
    }
    for (int i = 0; i < half; i++) {
        if (r->section_freqs) {
            int j = i, s = 0;
            while (s < 2 && j >= r->section[s] && r->section[s] > 0) j -= r->section[s++];
            int sec = r->section[s] > 0 ? r->section[s] : half;
            f[i] = 1.0f / powf(r->theta, (float)(2 * j) / (float)(2 * sec));
        } else
            f[i] = 1.0f / powf(r->theta, (float)(2 * i) / (float)rot_dim);
    }
    vk_upload(&c->base, buf, 0, f, sizeof *f * (size_t)half);
    free(f);
    if (c->n_freqs == (int)(sizeof c->freqs / sizeof *c->freqs)) { /* full: drop the oldest */
        vk_buf_free(&c->base, c->freqs[0].buf);
        memmove(&c->freqs[0], &c->freqs[1], sizeof *c->freqs * (size_t)(c->n_freqs - 1));
        c->n_freqs--;
    }
    vk_freqs *e = &c->freqs[c->n_freqs++];
    *e = (vk_freqs){ r->theta, rot_dim, r->section_freqs != 0, { r->section[0], r->section[1], r->section[2] }, buf };
    return buf;
}

void vk_op_rope(ob_backend *b, ob_ptr x, ob_ptr pos3, int n, int n_heads, const ob_rope *r) {
    vk_ctx *c = vk_of(b);
    if (n <= 0 || n_heads <= 0 || c->base.failed) return;
    if (r->rot_dim <= 0 || r->rot_dim > r->head_dim || r->rot_dim % 2) {
        vk_fail(c, "rope: rot_dim %d with head_dim %d", r->rot_dim, r->head_dim);
        return;
    }
    size_t xb = (size_t)n * (size_t)n_heads * (size_t)r->head_dim * 4;
    if (!vk_ptr_ok(c, x, xb, "rope x") || !vk_ptr_ok(c, pos3, (size_t)3 * (size_t)n * 4, "rope pos")) return;
    ob_buf *fb = vk_rope_freqs(c, r);
    if (!fb) return;
    ob_pc_rope pc = {
        .x = vk_addr(x), .pos = vk_addr(pos3), .freqs = fb->blk->addr + fb->off,
        .n = (uint32_t)n, .n_heads = (uint32_t)n_heads, .head_dim = (uint32_t)r->head_dim,
        .rot_dim = (uint32_t)r->rot_dim, .sec0 = (uint32_t)r->section[0], .sec1 = (uint32_t)r->section[1],
        .sec2 = (uint32_t)r->section[2], .interleaved = (uint32_t)(r->interleaved != 0),
    };
    uint32_t spec[1] = { 256 }, gx, gy;
    vk_grid(c, (uint64_t)n * (uint64_t)n_heads * (uint64_t)(r->rot_dim / 2), 256, &gx, &gy);
    vk_range rd[3] = { vk_rng(vk_addr(x), xb), vk_rng(vk_addr(pos3), (size_t)3 * (size_t)n * 4),
                       vk_rng(pc.freqs, (size_t)r->rot_dim * 2) };
    vk_range wr = vk_rng(vk_addr(x), xb);
    vk_dispatch(c, vk_pipeline(c, SH_ROPE, spec, 1), &pc, sizeof pc, gx, gy, 1, rd, 3, &wr, 1);
}

void vk_elementwise(vk_ctx *c, int op, ob_ptr a, ob_ptr bb, ob_ptr out, int64_t count, const char *name) {
    if (count <= 0 || c->base.failed) return;
    if (count > 0xffffffffll) {
        vk_fail(c, "%s: %lld elements (at most 2^32 - 1)", name, (long long)count);
        return;
    }
    size_t bytes = (size_t)count * 4;
    if (!vk_ptr_ok(c, a, bytes, name) || !vk_ptr_ok(c, bb, bytes, name) || !vk_ptr_ok(c, out, bytes, name)) return;
    int vec = vk_addr(a) % 16 == 0 && vk_addr(bb) % 16 == 0 && vk_addr(out) % 16 == 0;
    ob_pc_ew pc = { .a = vk_addr(a), .b = vk_addr(bb), .dst = vk_addr(out), .count = (uint32_t)count, .dim = 1 };
    uint32_t gx, gy, spec[4] = { 256, (uint32_t)op, (uint32_t)vec, 0 };
    vk_grid(c, (uint64_t)count, vec ? 1024 : 256, &gx, &gy);
    pc.groups_x = gx;
    vk_range rd[2] = { vk_rng(vk_addr(a), bytes), vk_rng(vk_addr(bb), bytes) }, wr = vk_rng(vk_addr(out), bytes);
    vk_dispatch(c, vk_pipeline(c, SH_EW, spec, 4), &pc, sizeof pc, gx, gy, 1, rd, 2, &wr, 1);
}

void vk_op_swiglu(ob_backend *b, ob_ptr g, ob_ptr u, ob_ptr out, int64_t count) {
    vk_elementwise(vk_of(b), 1, g, u, out, count, "swiglu");
}

void vk_op_add(ob_backend *b, ob_ptr x, ob_ptr y, int64_t count) { vk_elementwise(vk_of(b), 0, x, y, y, count, "add"); }

void vk_op_copy(ob_backend *b, ob_ptr src, ob_ptr dst, size_t bytes) {
    vk_ctx *c = vk_of(b);
    if (!bytes || c->base.failed) return;
    if (!src.buf || !dst.buf || src.off + bytes > src.buf->size || dst.off + bytes > dst.buf->size) {
        vk_fail(c, "copy: %zu bytes outside a buffer", bytes);
        return;
    }
    vk_range rd = vk_rng(vk_addr(src), bytes), wr = vk_rng(vk_addr(dst), bytes);
    if (rd.lo < wr.hi && wr.lo < rd.hi) { /* overlapping (memmove semantics): go through a scratch buffer */
        ob_buf *tmp = vk_scratch(c, 4, bytes);
        if (!tmp) return;
        vk_op_copy(b, src, (ob_ptr){ tmp, 0 }, bytes);
        vk_op_copy(b, (ob_ptr){ tmp, 0 }, dst, bytes);
        return;
    }
    vk_hazard_for(c, &rd, 1, &wr, 1, 1);
    VkBufferCopy reg = { .srcOffset = src.buf->off + src.off, .dstOffset = dst.buf->off + dst.off, .size = bytes };
    vkCmdCopyBuffer(vk_cmd(c), src.buf->blk->buf, dst.buf->blk->buf, 1, &reg);
    if (++c->n_ops >= vk_batch_ops(c)) vk_submit(c);
}

/* ---- attention --------------------------------------------------------------------------------------------------- */

/* KV-cache writes and attention for the Vulkan back-end.
 *
 * The cache layout is the one backend.h describes: per layer [n_kv_heads][n_ctx][head_dim], here in fp16 (IEEE
 * half) for head dims that are multiples of 8, fp32 otherwise or with OMNI_VK_KV_F32=1 (vk_kv16). The cached keys
 * are post-k_norm/RoPE keys and the values are v projections: magnitudes of order 1..100, well inside fp16's range
 * (the stores clamp to ±65504 all the same, so an outlier becomes the largest half, not inf) and rounded to 11
 * significant bits, more than the reference's own bf16 cache keeps (transformers caches in the model dtype;
 * llama.cpp keeps an f16 cache by default). Decode reads the whole cache every token: fp16 halves those bytes
 * (4 kv heads x 128 dims: 2 instead of 4 KiB per token and layer). Kernels read halves from 32-bit words
 * (unpackHalf2x16) or 16-byte words of 8 (attn_decode.comp, attn_split.comp's keys, attn_flash_cm.comp), so no
 * 16-bit storage feature is needed; every kernel that writes or reads a cache takes the format as a
 * specialization constant (KV16). Attention picks one of two kernels (OMNI_VK_ATTN forces either):
 *   - split-K (attn_split.comp + attn_combine.comp) for n <= 4 queries (decode): the visible keys are cut into
 *     chunks of 128, one workgroup per (chunk, head, query), so a single query still fills the device; a second
 *     pass merges the chunks' partial softmax sums;
 *   - flash (attn_flash.comp) for longer runs of queries (prefill): BQ queries per workgroup walk the keys in
 *     blocks with an online softmax, skipping blocks that the causal/window mask hides entirely; on devices with
 *     NV cooperative matrix and head_dim 128, attn_flash_cm.comp (tensor cores, fp16 operands; vk_coopmat.c;
 *     the default there, OMNI_VK_ATTN_CM=0 turns it off; head dims 64..124 on padded builds, OMNI_VK_ATTN_CM_SMALL=0
 *     turns those off; a pp512 pass on an H100: 35.7 ms of attention with attn_flash.comp, ~3.3 ms with it).
 * Both handle causal and sliding-window masks and GQA (kv head = head / (n_heads / n_kv_heads)). */

#define SPLIT_CHUNK 128

static int attn_check(vk_ctx *c, const ob_attn *a, int n_ctx, int pos0, int n, const char *op) {
    if (c->base.failed) return -1;
    if (a->n_heads <= 0 || a->n_kv_heads <= 0 || a->n_heads % a->n_kv_heads || a->head_dim <= 0 ||
        a->head_dim > 256) {
        vk_fail(c, "%s: heads %d / kv heads %d / head_dim %d not supported (head_dim <= 256, heads a multiple of "
                   "kv heads)", op, a->n_heads, a->n_kv_heads, a->head_dim);
        return -1;
    }
    if (pos0 < 0 || n <= 0 || pos0 + n > n_ctx) {
        vk_fail(c, "%s: positions %d..%d outside a context of %d", op, pos0, pos0 + n - 1, n_ctx);
        return -1;
    }
    return 0;
}

static int in_buf(vk_ctx *c, ob_ptr p, size_t bytes, const char *what) {
    if (!p.buf || p.off > p.buf->size || bytes > p.buf->size - p.off || p.off % 4) {
        vk_fail(c, "%s: %zu bytes at offset %zu outside its buffer (or misaligned)", what, bytes, p.off);
        return 0;
    }
    return 1;
}

/* fp16 needs the head dim a multiple of 8: rows then start on 16-byte boundaries (the 8-half vector loads) and
 * every 32-bit word of two halves lies in one row (the stores write whole words, without 16-bit storage) */
int vk_kv16(const vk_ctx *c, int head_dim) { return !c->env.kv_f32 && head_dim > 0 && head_dim % 8 == 0; }

static int vk_kv_elem_bytes(ob_backend *b, int head_dim) { return vk_kv16(vk_of(b), head_dim) ? 2 : 4; }

void vk_op_kv_store(ob_backend *b, ob_ptr kcache, ob_ptr vcache, int n_ctx, ob_ptr k, ob_ptr v, int pos0, int n,
                    const ob_attn *a) {
    vk_ctx *c = vk_of(b);
    if (attn_check(c, a, n_ctx, pos0, n, "kv_store") != 0) return;
    int kv16 = vk_kv16(c, a->head_dim);
    size_t cache_b = vk_kv_bytes(c, a->n_kv_heads, n_ctx, a->head_dim);
    size_t kv_b = (size_t)n * (size_t)a->n_kv_heads * (size_t)a->head_dim * 4;
    if (!in_buf(c, kcache, cache_b, "kv_store k cache") || !in_buf(c, vcache, cache_b, "kv_store v cache") ||
        !in_buf(c, k, kv_b, "kv_store k") || !in_buf(c, v, kv_b, "kv_store v"))
        return;
    ob_pc_kv pc = { .kc = vk_addr(kcache), .vc = vk_addr(vcache), .k = vk_addr(k), .v = vk_addr(v),
                    .n_ctx = (uint32_t)n_ctx, .pos0 = (uint32_t)pos0, .n = (uint32_t)n,
                    .n_kv = (uint32_t)a->n_kv_heads, .head_dim = (uint32_t)a->head_dim };
    uint32_t spec[2] = { 256, (uint32_t)kv16 }, gx, gy;
    vk_grid(c, (uint64_t)kv_b / (kv16 ? 8 : 4), 256, &gx, &gy); /* a thread per cache word: 2 halves or 1 float */
    vk_range rd[2] = { vk_rng(pc.k, kv_b), vk_rng(pc.v, kv_b) };
    /* only rows pos0..pos0+n-1 of each head are written, but the heads' rows are strided: state the whole cache */
    vk_range wr[2] = { vk_rng(pc.kc, cache_b), vk_rng(pc.vc, cache_b) };
    vk_dispatch(c, vk_pipeline(c, SH_KV_STORE, spec, 2), &pc, sizeof pc, gx, gy, 1, rd, 2, wr, 2);
}

void vk_op_attention(ob_backend *b, ob_ptr q, ob_ptr kcache, ob_ptr vcache, int n_ctx, ob_ptr out, int pos0, int n,
                     const ob_attn *a) {
    vk_ctx *c = vk_of(b);
    if (attn_check(c, a, n_ctx, pos0, n, "attention") != 0) return;
    uint32_t kv16 = (uint32_t)vk_kv16(c, a->head_dim);
    size_t cache_b = vk_kv_bytes(c, a->n_kv_heads, n_ctx, a->head_dim);
    size_t q_b = (size_t)n * (size_t)a->n_heads * (size_t)a->head_dim * 4;
    if (!in_buf(c, kcache, cache_b, "attention k cache") || !in_buf(c, vcache, cache_b, "attention v cache") ||
        !in_buf(c, q, q_b, "attention q") || !in_buf(c, out, q_b, "attention out"))
        return;
    ob_pc_attn pc = {
        .q = vk_addr(q), .kc = vk_addr(kcache), .vc = vk_addr(vcache), .dst = vk_addr(out),
        .n_ctx = (uint32_t)n_ctx, .pos0 = (uint32_t)pos0, .n = (uint32_t)n, .n_heads = (uint32_t)a->n_heads,
        .n_kv = (uint32_t)a->n_kv_heads, .head_dim = (uint32_t)a->head_dim, .causal = (uint32_t)(a->causal != 0),
        .window = (uint32_t)(a->window > 0 ? a->window : 0), .scale = a->scale,
    };
    uint32_t dmax = a->head_dim <= 64 ? 64 : a->head_dim <= 128 ? 128 : 256;
    vk_range rd[3] = { vk_rng(pc.q, q_b), vk_rng(pc.kc, cache_b), vk_rng(pc.vc, cache_b) };
    vk_range wr_out = vk_rng(pc.dst, q_b);
    int split = c->env.attn == 1 || (c->env.attn == 0 && n <= 4);
    if (split) {
        uint32_t n_keys = (uint32_t)(pos0 + n);
        pc.chunk = SPLIT_CHUNK;
        pc.n_split = (n_keys + SPLIT_CHUNK - 1) / SPLIT_CHUNK;
        size_t part_b = (size_t)a->n_heads * (size_t)n * pc.n_split * (size_t)(a->head_dim + 2) * 4;
        ob_buf *part = vk_scratch(c, 0, part_b);
        if (!part) return;
        pc.part = part->blk->addr + part->off;
        vk_range wr_part = vk_rng(pc.part, part_b);
        uint32_t spec[3] = { SPLIT_CHUNK, dmax, kv16 };
        vk_dispatch(c, vk_pipeline(c, SH_ATTN_SPLIT, spec, 3), &pc, sizeof pc, pc.n_split, (uint32_t)a->n_heads,
                    (uint32_t)n, rd, 3, &wr_part, 1);
        uint32_t spec2[1] = { dmax < 128 ? dmax : 128 };
        vk_dispatch(c, vk_pipeline(c, SH_ATTN_COMBINE, spec2, 1), &pc, sizeof pc, (uint32_t)a->n_heads, (uint32_t)n,
                    1, &wr_part, 1, &wr_out, 1);
    } else if (vk_attn_cm_ok(c, &pc)) {
        /* the fp16 copy of the output that the o projection's tensor-core GEMM reads, written here too (its
         * conversion pass saved: vk_x16_offer; OMNI_VK_ATTN_X16=0 not) */
        uint32_t cols = (uint32_t)a->n_heads * (uint32_t)a->head_dim;
        pc.part = vk_env_now("OMNI_VK_ATTN_X16", 1) > 0 ? vk_x16_offer(c, (uint32_t)n, cols, pc.dst) : 0;
        vk_range wr[2] = { wr_out, vk_rng(pc.part, (size_t)n * cols * 2) };
        vk_attn_cm_dispatch(c, &pc, rd, 3, wr, pc.part ? 2 : 1); /* tensor cores (vk_coopmat.c) */
        if (pc.part) vk_x16_written(c, (uint32_t)n, cols, pc.dst);
    } else {
        /* BQ = BKV = 16 (8 for head_dim > 128), halved until qs/ks/vs/ss fit the device's shared memory */
        uint32_t bq = dmax > 128 ? 8 : 16, wg = dmax < 128 ? dmax : 128;
        while (bq > 1 && (bq * (dmax + 4) * 2 + bq * dmax + bq * bq + 3 * bq) * 4 > c->caps.max_shared) bq /= 2;
        uint32_t spec[5] = { wg, dmax, bq, bq, kv16 };
        vk_dispatch(c, vk_pipeline(c, SH_ATTN_FLASH, spec, 5), &pc, sizeof pc, ((uint32_t)n + bq - 1) / bq,
                    (uint32_t)a->n_heads, 1, rd, 3, &wr_out, 1);
    }
}

/* ---- encoder ops ------------------------------------------------------------------------------------------------- */

/* the ops the audio and vision encoders add to the decoder's set: Linear biases, LayerNorm, GELU,
 * 4-D permutes, im2col for convolutions, and row additions (DeepStack). Each fills a push-constant block and
 * records one dispatch of rms_norm.comp (layer-norm mode), ew.comp or gather.comp.
 * Mirrors the CPU back-end's add_bias, layer_norm, gelu, permute, im2col and add_rows. */

static int vec_ok(vk_ctx *c, const ob_mat *v, int dim, const char *op) {
    if (vk_mat_check(c, v, op) != 0) return 0;
    if (v->rows * v->cols < dim) {
        vk_fail(c, "%s: vector of %lld elements for rows of %d", op, (long long)(v->rows * v->cols), dim);
        return 0;
    }
    return 1;
}

static void dispatch_gather(vk_ctx *c, int mode, ob_pc_gather *pc, uint64_t threads, const vk_range *rd, int n_rd,
                            const vk_range *wr) {
    if (threads > 0xffffffffull) {
        vk_fail(c, "gather: %llu elements (at most 2^32 - 1)", (unsigned long long)threads);
        return;
    }
    uint32_t gx, gy, spec[2] = { 256, (uint32_t)mode };
    vk_grid(c, threads, 256, &gx, &gy);
    pc->count = (uint32_t)threads;
    pc->groups_x = gx;
    vk_dispatch(c, vk_pipeline(c, SH_GATHER, spec, 2), pc, sizeof *pc, gx, gy, 1, rd, n_rd, wr, 1);
}

void vk_op_add_bias(ob_backend *b, ob_ptr x, const ob_mat *bias, int rows, int dim) {
    vk_ctx *c = vk_of(b);
    if (rows <= 0 || dim <= 0 || !vec_ok(c, bias, dim, "add_bias")) return;
    size_t bytes = (size_t)rows * (size_t)dim * 4;
    if (!vk_ptr_ok(c, x, bytes, "add_bias x")) return;
    if ((uint64_t)rows * (uint64_t)dim > 0xffffffffull) {
        vk_fail(c, "add_bias: too many elements");
        return;
    }
    VkDeviceAddress ba = vk_addr(bias->data);
    ob_pc_ew pc = { .a = ba, .b = vk_addr(x), .dst = ba + bias->scale_off, .count = (uint32_t)(rows * dim),
                    .dim = (uint32_t)dim };
    uint32_t gx, gy, spec[4] = { 256, 2, 0, (uint32_t)bias->dtype };
    vk_grid(c, pc.count, 256, &gx, &gy);
    pc.groups_x = gx;
    vk_range rd[2] = { vk_mat_range(bias), vk_rng(pc.b, bytes) }, wr = vk_rng(pc.b, bytes);
    vk_dispatch(c, vk_pipeline(c, SH_EW, spec, 4), &pc, sizeof pc, gx, gy, 1, rd, 2, &wr, 1);
}

void vk_op_layer_norm(ob_backend *b, ob_ptr x, const ob_mat *w, const ob_mat *bias, ob_ptr y, int rows, int dim,
                      float eps) {
    vk_ctx *c = vk_of(b);
    if (rows <= 0 || dim <= 0 || !vec_ok(c, w, dim, "layer_norm weight")) return;
    int has_b = bias && bias->data.buf;
    if (has_b && !vec_ok(c, bias, dim, "layer_norm bias")) return;
    size_t bytes = (size_t)rows * (size_t)dim * 4;
    if (!vk_ptr_ok(c, x, bytes, "layer_norm x") || !vk_ptr_ok(c, y, bytes, "layer_norm y")) return;
    VkDeviceAddress wa = vk_addr(w->data), ba = has_b ? vk_addr(bias->data) : wa;
    ob_pc_norm pc = { .x = vk_addr(x), .w = wa, .s = wa + w->scale_off, .y = vk_addr(y), .b = ba,
                      .bs = ba + (has_b ? bias->scale_off : 0), .rows = (uint32_t)rows, .dim = (uint32_t)dim,
                      .eps = eps, .has_bias = (uint32_t)has_b };
    uint32_t gx, gy, spec[4] = { vk_norm_wg(dim), (uint32_t)w->dtype, 1, has_b ? (uint32_t)bias->dtype : 0 };
    vk_grid(c, (uint64_t)rows, 1, &gx, &gy);
    vk_range rd[3] = { vk_rng(pc.x, bytes), vk_mat_range(w), has_b ? vk_mat_range(bias) : vk_mat_range(w) };
    vk_range wr = vk_rng(pc.y, bytes);
    vk_dispatch(c, vk_pipeline(c, SH_RMS_NORM, spec, 4), &pc, sizeof pc, gx, gy, 1, rd, 3, &wr, 1);
}

void vk_op_gelu(ob_backend *b, ob_ptr x, ob_ptr y, int64_t count, int tanh_approx) {
    vk_elementwise(vk_of(b), tanh_approx ? 4 : 3, x, x, y, count, "gelu");
}

void vk_op_permute(ob_backend *b, ob_ptr src, ob_ptr dst, const int64_t d[4], const int64_t s[4]) {
    vk_ctx *c = vk_of(b);
    if (c->base.failed) return;
    uint64_t count = 1, reach = 0;
    ob_pc_gather pc = { .src = vk_addr(src), .dst = vk_addr(dst) };
    for (int i = 0; i < 4; i++) {
        if (d[i] <= 0) return;
        if (d[i] > 0xffffffffll || s[i] < 0 || s[i] > 0xffffffffll) {
            vk_fail(c, "permute: dimension %d (%lld, stride %lld) out of range", i, (long long)d[i], (long long)s[i]);
            return;
        }
        count *= (uint64_t)d[i];
        reach += (uint64_t)(d[i] - 1) * (uint64_t)s[i];
        pc.d[i] = (uint32_t)d[i];
        pc.s[i] = (uint32_t)s[i];
    }
    if (!vk_ptr_ok(c, src, (size_t)(reach + 1) * 4, "permute src") ||
        !vk_ptr_ok(c, dst, (size_t)count * 4, "permute dst"))
        return;
    vk_range rd = vk_rng(pc.src, (reach + 1) * 4), wr = vk_rng(pc.dst, count * 4);
    dispatch_gather(c, 0, &pc, count, &rd, 1, &wr);
}

void vk_op_im2col(ob_backend *b, ob_ptr x, int B, int C, int H, int W, const int64_t strides[4], int k, int stride,
                  int pad, ob_ptr out) {
    vk_ctx *c = vk_of(b);
    if (c->base.failed || B <= 0 || C <= 0 || H <= 0 || W <= 0) return;
    if (k <= 0 || stride <= 0 || pad < 0 || H + 2 * pad < k || W + 2 * pad < k) {
        vk_fail(c, "im2col: kernel %d, stride %d, pad %d on %dx%d", k, stride, pad, H, W);
        return;
    }
    int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    uint64_t reach = (uint64_t)(B - 1) * (uint64_t)strides[0] + (uint64_t)(C - 1) * (uint64_t)strides[1] +
                     (uint64_t)(H - 1) * (uint64_t)strides[2] + (uint64_t)(W - 1) * (uint64_t)strides[3];
    uint64_t count = (uint64_t)B * (uint64_t)Ho * (uint64_t)Wo * (uint64_t)C * (uint64_t)k * (uint64_t)k;
    for (int i = 0; i < 4; i++)
        if (strides[i] < 0 || strides[i] > 0xffffffffll) {
            vk_fail(c, "im2col: stride %d out of range", i);
            return;
        }
    if (!vk_ptr_ok(c, x, (size_t)(reach + 1) * 4, "im2col x") || !vk_ptr_ok(c, out, (size_t)count * 4, "im2col out"))
        return;
    ob_pc_gather pc = { .src = vk_addr(x), .dst = vk_addr(out), .C = (uint32_t)C, .H = (uint32_t)H, .W = (uint32_t)W,
                        .k = (uint32_t)k, .stride = (uint32_t)stride, .pad = (uint32_t)pad, .Ho = (uint32_t)Ho,
                        .Wo = (uint32_t)Wo };
    for (int i = 0; i < 4; i++) pc.s[i] = (uint32_t)strides[i];
    vk_range rd = vk_rng(pc.src, (reach + 1) * 4), wr = vk_rng(pc.dst, count * 4);
    dispatch_gather(c, 1, &pc, count, &rd, 1, &wr);
}

/* topk.comp: a workgroup per chunk (sorting its OB_TOPK_CHUNK keys in shared memory) */
void vk_op_topk_chunks(ob_backend *b, ob_ptr x, int n, ob_ptr out) {
    vk_ctx *c = vk_of(b);
    if (n <= 0 || c->base.failed) return;
    uint32_t chunks = (uint32_t)((n + OB_TOPK_CHUNK - 1) / OB_TOPK_CHUNK);
    size_t ob = (size_t)chunks * OB_TOPK_K * 8;
    if (!vk_ptr_ok(c, x, (size_t)n * 4, "topk_chunks x") || !vk_ptr_ok(c, out, ob, "topk_chunks out")) return;
    if (chunks > c->caps.max_wg_count[0] || c->caps.max_shared < OB_TOPK_CHUNK * 8) {
        vk_fail(c, "topk_chunks: %u chunks or %d bytes of shared memory exceed the device", chunks, OB_TOPK_CHUNK * 8);
        return;
    }
    ob_pc_topk pc = { .x = vk_addr(x), .dst = vk_addr(out), .n = (uint32_t)n };
    vk_range rd = vk_rng(pc.x, (size_t)n * 4), wr = vk_rng(pc.dst, ob);
    uint32_t spec[1] = { 0 }; /* (no constants) */
    vk_dispatch(c, vk_pipeline(c, SH_TOPK, spec, 0), &pc, sizeof pc, chunks, 1, 1, &rd, 1, &wr, 1);
}

void vk_op_add_rows(ob_backend *b, ob_ptr x, ob_ptr idx, ob_ptr src, int n, int dim) {
    vk_ctx *c = vk_of(b);
    if (c->base.failed || n <= 0 || dim <= 0) return;
    size_t sb = (size_t)n * (size_t)dim * 4;
    if (!vk_ptr_ok(c, idx, (size_t)n * 4, "add_rows idx") || !vk_ptr_ok(c, src, sb, "add_rows src") ||
        !vk_ptr_ok(c, x, (size_t)dim * 4, "add_rows x"))
        return;
    ob_pc_gather pc = { .src = vk_addr(src), .dst = vk_addr(x), .idx = vk_addr(idx) };
    pc.d[0] = (uint32_t)n;
    pc.d[1] = (uint32_t)dim;
    /* the target rows are only known on the device: state the rest of x's buffer as written */
    vk_range rd[3] = { vk_rng(pc.src, sb), vk_rng(pc.idx, (size_t)n * 4), vk_rng_buf(x) };
    vk_range wr = vk_rng_buf(x);
    dispatch_gather(c, 2, &pc, (uint64_t)dim, rd, 3, &wr);
}

/* ---- the back-end ------------------------------------------------------------------------------------------------ */

static const char *vk_device_name(ob_backend *b) { return vk_of(b)->name; }
static void *vk_host_ptr(ob_backend *b, ob_buf *buf) {
    (void)b;
    (void)buf;
    return NULL;
}

static void vk_destroy(ob_backend *b) {
    if (!b) return;
    vk_ctx *c = vk_of(b);
    if (c->dev) {
        if (!c->base.failed) vkDeviceWaitIdle(c->dev); /* after a device error it could wait forever */
        c->serial_done = c->serial_submitted;
        for (int i = 0; i < c->n_tables; i++) {
            vk_buf_free(b, c->tables[i].buf);
            free(c->tables[i].host);
        }
        free(c->tables);
        vk_fold_free_all(c);
        for (int i = 0; i < c->n_freqs; i++) vk_buf_free(b, c->freqs[i].buf);
        vk_prof_free(c);
        vk_memory_free(c);
        vk_exec_free(c);
    }
    vk_device_close(c);
    free(c);
}

static const ob_ops vk_ops_table = {
    .name = "vulkan",
    .destroy = vk_destroy,
    .device_name = vk_device_name,
    .alloc = vk_alloc,
    .buf_free = vk_buf_free,
    .wrap_host = vk_wrap_host,
    .upload = vk_upload,
    .download = vk_download,
    .sync = vk_sync,
    .host_ptr = vk_host_ptr,
    .kv_elem_bytes = vk_kv_elem_bytes,
    .get_rows = vk_op_get_rows,
    .matmul = vk_op_matmul,
    .rms_norm = vk_op_rms_norm,
    .rope = vk_op_rope,
    .kv_store = vk_op_kv_store,
    .attention = vk_op_attention,
    .moe_route = vk_op_moe_route,
    .moe_experts = vk_op_moe_experts,
    .swiglu = vk_op_swiglu,
    .add = vk_op_add,
    .add_bias = vk_op_add_bias,
    .layer_norm = vk_op_layer_norm,
    .gelu = vk_op_gelu,
    .permute = vk_op_permute,
    .im2col = vk_op_im2col,
    .add_rows = vk_op_add_rows,
    .copy = vk_op_copy,
    .qk_norm_rope_kv = vk_op_qk_norm_rope_kv,
    .qk_norm_rope_kv_attention = vk_op_qk_norm_rope_kv_attention,
    .norm_matvec = vk_op_norm_matvec,
    .norm_route = vk_op_norm_route,
    .matmul_norm_route = vk_op_matmul_norm_route,
    .topk_chunks = vk_op_topk_chunks,
    .prof_mark = vk_prof_mark,
    .prof_read = vk_prof_read,
    .prof_kernels = vk_prof_kernels,
};

ob_backend *ob_vulkan_new(int device, char *err, size_t err_cap) {
    vk_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        if (err && err_cap) snprintf(err, err_cap, "out of memory");
        return NULL;
    }
    c->base.ops = &vk_ops_table;
    c->prof_class = -1;
    c->owe_limit = UINT64_MAX; /* no owed work being recorded */
    vk_env_read(&c->env);
    if (vk_device_open(c, device, err, err_cap) != 0) {
        vk_destroy(&c->base);
        return NULL;
    }
    if (vk_exec_init(c) != 0 || vk_memory_init(c) != 0) {
        if (err && err_cap) snprintf(err, err_cap, "%s: %s", c->name, c->base.err);
        vk_destroy(&c->base);
        return NULL;
    }
    return &c->base;
}
