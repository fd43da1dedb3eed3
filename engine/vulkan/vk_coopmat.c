/* vk_coopmat.c — the tensor-core matmul (shaders/matmul_cm.comp, GL_NV_cooperative_matrix) for prefill: when it
 * applies, and its dispatch for the dense matmul (vk_ops.c) and the grouped MoE (vk_moe.c).
 *
 * It applies to f16, bf16 and Q8_0 weights (Q8_0 dequantized into shared memory as fp16: quant times block scale,
 * rounded once) on a device whose NV cooperative matrix survived OMNI_VK_NO_COOPMAT, with fp16
 * arithmetic and 32-wide subgroups (the kernel lays out 8 subgroups of 32 over its 128 x 64 tile), and to operands
 * that allow its 16-byte loads. Its products are of fp16-rounded operands (fp32 sums), so results differ from the
 * fp32 kernels by about 1e-3 relative; OMNI_VK_NO_COOPMAT=1 selects the fp32 tiled kernel (matmul.comp) instead.
 * The 16 x 16 x 16 fp16 -> fp32 shape it uses is the one every NV cooperative-matrix device lists.
 * Small dense products (too few 128 x 64 tiles to fill the device) are split over K (mm_ksum.comp adds the parts).
 * Also here: when the tensor-core prefill attention (shaders/attn_flash_cm.comp) applies, and its dispatch.
 * Measured on an H100 (docs/benchmarks.md, "prefill after tensor-core work"). */
#include <stdio.h>
#include <stdlib.h>

#include "vk_internal.h"

/* shared memory the kernels declare: matmul_cm (BM + BN) x 72 halves (the smallest shape, 128 x 32, is the
 * requirement; larger ones are used where they fit); attn_flash_cm (head dim 128) 64x136 halves, 4x512 floats,
 * 4x16x40 halves, 64 floats */
#define CM_MATMUL_SHARED(bm, bn) (((bm) + (bn)) * 144u)
#define CM_ATTN_SHARED 30976u
/* its opt-in fragment-softmax builds (padded head dim dp, bkv-key blocks): K and V tiles 2·bkv rows of dp/8 + 1
 * 16-byte words, 4x512 floats, 4x16 floats, 4x16 ints, 2x4x16 uints and one (no P tile); 44,036 bytes for 128 x 64 */
#define CM_ATTN_FR_SHARED(dp, bkv) (2u * (bkv) * ((dp) / 8u + 1u) * 16u + 8192u + 256u + 768u + 4u)

/* OMNI_VK_CM_SPLIT=0: no split-K for small matrices (comparisons) */
static int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

int vk_cm_ok(vk_ctx *c, ob_dtype wt, int vec) {
    if (!c->caps.coopmat_nv || !c->caps.fp16 || c->caps.subgroup_size != 32) return 0;
    if (c->caps.max_shared < CM_MATMUL_SHARED(128u, 32u)) return 0;
    /* Q8_0: 8-byte quant loads (vec: 16-byte aligned rows of a multiple of 16 bytes covers it), 2-byte scales */
    return vec && (wt == OB_F16 || wt == OB_BF16 || wt == OB_Q8_0);
}

/* 16-byte operand loads: x 16-byte aligned with x_stride % 4 == 0, cols % 8 == 0 (rows of whole uvec4s of
 * weights; the weight's own alignment is the caller's `vec`) */
int vk_cm_operands_ok(const ob_pc_matmul *pc) { return pc->x % 16 == 0 && pc->x_stride % 4 == 0 && pc->cols % 8 == 0; }

/* Tile shapes (weight rows BM x x rows BN; matmul_cm.comp built once per shape, shaders.mk). The dense form and
 * the grouped MoE pick separately: OMNI_VK_CM_DENSE / OMNI_VK_CM_MOE = "128x64" (the original), "128x32",
 * "256x32", "256x64" or "128x128"; a shape whose shared memory the device lacks falls back to 128x64. */
/* sh[db + 2·x16]: the default build and the opt-in ones (matmul_cm.comp's CM_DB / CM_X16, see below) */
/* pf: the register double-buffered build (OMNI_VK_CM_PF); dg[0], dg[1]: the diagnostic builds (OMNI_VK_CM_DIAG=1,
 * 2), where has_dg (the two default shapes) */
typedef struct {
    uint32_t bm, bn;
    vk_shader_id sh[4];
    vk_shader_id pf;
    int has_dg;
    vk_shader_id dg[2];
} cm_shape;
static const cm_shape cm_shapes[] = {
    { 128, 64, { SH_MATMUL_CM, SH_MATMUL_CM_128X64_DB, SH_MATMUL_CM_128X64_X16, SH_MATMUL_CM_128X64_DBX16 },
      SH_MATMUL_CM_128X64_PF, 1, { SH_MATMUL_CM_128X64_DG1, SH_MATMUL_CM_128X64_DG2 } },
    { 128, 32, { SH_MATMUL_CM_128X32, SH_MATMUL_CM_128X32_DB, SH_MATMUL_CM_128X32_X16, SH_MATMUL_CM_128X32_DBX16 },
      SH_MATMUL_CM_128X32_PF, 0, { SH_MATMUL_CM, SH_MATMUL_CM } },
    { 256, 32, { SH_MATMUL_CM_256X32, SH_MATMUL_CM_256X32_DB, SH_MATMUL_CM_256X32_X16, SH_MATMUL_CM_256X32_DBX16 },
      SH_MATMUL_CM_256X32_PF, 0, { SH_MATMUL_CM, SH_MATMUL_CM } },
    { 256, 64, { SH_MATMUL_CM_256X64, SH_MATMUL_CM_256X64_DB, SH_MATMUL_CM_256X64_X16, SH_MATMUL_CM_256X64_DBX16 },
      SH_MATMUL_CM_256X64_PF, 1, { SH_MATMUL_CM_256X64_DG1, SH_MATMUL_CM_256X64_DG2 } },
    { 128, 128,
      { SH_MATMUL_CM_128X128, SH_MATMUL_CM_128X128_DB, SH_MATMUL_CM_128X128_X16, SH_MATMUL_CM_128X128_DBX16 },
      SH_MATMUL_CM_128X128_PF, 0, { SH_MATMUL_CM, SH_MATMUL_CM } },
};
/* Measured on the H100 (docs/benchmarks.md, pp512 of the thinker): dense 128x64 projections 11.8 ms per pass
 * (256x64 and 128x128 16.2-16.3 ms); grouped 256x64 with the fused gate+up experts 24.9 ms (128x64 unfused 30.8,
 * 256x32 34.6, 128x32 28.1 and 256x64 unfused 29.6 with fragment skipping on) */
#define CM_DEFAULT_DENSE "128x64"
#define CM_DEFAULT_MOE "256x64"

static const cm_shape *cm_pick(vk_ctx *c, int grouped) {
    const char *v = getenv(grouped ? "OMNI_VK_CM_MOE" : "OMNI_VK_CM_DENSE");
    if (!v || !*v) v = grouped ? CM_DEFAULT_MOE : CM_DEFAULT_DENSE;
    unsigned bm = 0, bn = 0;
    if (sscanf(v, "%ux%u", &bm, &bn) == 2)
        for (unsigned i = 0; i < sizeof cm_shapes / sizeof *cm_shapes; i++)
            if (cm_shapes[i].bm == bm && cm_shapes[i].bn == bn && c->caps.max_shared >= CM_MATMUL_SHARED(bm, bn))
                return &cm_shapes[i];
    return &cm_shapes[0];
}

uint32_t vk_cm_tile_n(vk_ctx *c, int grouped) { return cm_pick(c, grouped)->bn; }

/* Split-K for the dense form when the tile grid alone would leave most of the device idle (fewer than
 * CM_SPLIT_BELOW workgroups, e.g. the MoE router's 128 rows): up to 16 splits of at least two 64-column slices
 * each, partial planes in scratch slot 5, summed (and accumulated) into y by mm_ksum.comp. Not used when other
 * independent matmuls could run alongside: only the lone small product pays for the extra dispatch. */
#define CM_SPLIT_BELOW 32u
#define CM_SPLIT_MAX 16u

/* Two more builds of every shape:
 *   OMNI_VK_CM_X16=2  (the default) fp16 activations: x converted once per call by cm_x16.comp instead of in every
 *                     tile's inner loop (half the x bytes read per tile); the grouped MoE's fused gate+up+swiglu
 *                     GEMM writes fp16 for the down projection, which reads it as is, and the dense projections'
 *                     fp16 copy is reused by the next products of the same x while no other command ran (q, k and
 *                     v share one conversion). =1 only the grouped MoE, =0 off. Measured on the H100
 *                     (`vulkan_bench model` pp512, BF16, one load, variants side by side): pass 43.05 ms -> 40.70
 *                     (experts 25.03 -> 22.77, projections 11.77 -> 11.10); Q8_0 unchanged (45.45 / 45.65 ms).
 *   OMNI_VK_CM_DB=1   (opt-in) the double-buffered shared-memory ring (CM_DB: 32-column slices in two stages of
 *                     the same shared rows, one barrier per slice, the stores of one subgroup overlapping the MMAs
 *                     of the others; same shared memory as the default build). Measured slower on the H100: BF16
 *                     pass 56.85 ms (experts 33.1, projections 16.9) against 43.05.
 * Both give the plain build's results exactly (the same fp16 rounding and clamp of x, the same products and
 * fp32 sums in the same order; the ring only changes when slices are staged). */
int vk_cm_x16(vk_ctx *c, int grouped) {
    (void)c;
    int v = env_int("OMNI_VK_CM_X16", 2);
    return grouped ? v >= 1 : v >= 2;
}

/* Round 3 (opt-in, not yet measured; tests/gpu_next/hpg3.sh times them): why the dense 128x64 GEMM runs at
 * ~85 TFLOP/s at n = 512 (H100: 132 SMs, ~4096 fp16 FLOP/clk/SM dense peak; 85 TFLOP/s is ~370 FLOP/clk/SM, ~9%):
 *  - not the tensor cores or shared memory: a subgroup loads 2 + 2 fragments (512 B each) per 16-column step for
 *    4 MMAs of 8192 FLOP, 16 FLOP per shared byte, so 128 B/clk of shared bandwidth caps it near 2048 FLOP/clk/SM
 *    (~50% of peak; 8 MMAs per 6 loads in the 256x64 / 128x128 builds: ~67%), 5x above what it does;
 *  - not HBM: Q8_0 weights (half the bytes) run as fast as bf16; a slice is 24 KB (16 KB weights, 8 KB fp16 x) per
 *    1.05 MFLOP, 0.023 B/FLOP: 2 TB/s of L2 traffic at 85 TFLOP/s;
 *  - the grid and latency: o [2048 x 4096] is 16 x 8 = 128 workgroups, one per SM (8 warps, 64 dependent slices
 *    each); q|k|v [5120 x 2048] is 320 workgroups for ~264 slots (2 per SM at ~100 registers a thread), a second
 *    wave 21% full. Each slice's global loads are issued after its second barrier and consumed at the next
 *    slice's staging: one slice of MMAs (16 per subgroup) covers an L2/HBM latency of ~600-1000 clocks, and the
 *    barriers stall every warp of the workgroup at once. The measurements agree: the ring (OMNI_VK_CM_DB, half
 *    the MMAs between a load and its use) was 1.45x slower; 256x64 / 128x128 (1.33 MMAs per fragment load) were
 *    slower for the dense products because o then has 64 workgroups for 132 SMs.
 * Hence: OMNI_VK_CM_PF=1 issues each slice's loads two slices ahead (twice the MMAs to cover the latency, +24
 * registers a thread at 128x64, +40 at 256x64: the cost is occupancy if the driver passes 128 registers);
 * OMNI_VK_CM_SPLIT_WG=W splits the big products to ~W workgroups (o in 2 at W = 256: 2 per SM; the partial planes
 * cost 2 x 4 MB written and read, ~8 us with y's accumulation, against ~100 us per o product; W = 512 also splits
 * q|k|v in 2: 640 workgroups, 2.4 waves instead of 1.2); OMNI_VK_CM_DENSE=256x64 with OMNI_VK_CM_SPLIT_WG=264
 * tests the 1.33 MMAs per load (and 0.019 B/FLOP) with the grid refilled; OMNI_VK_CM_DIAG=1 / 2 (wrong results)
 * time the loop without its in-loop global loads / with one MMA per slice, to attribute the rest. */

/* scratch slot 6 holds the fp16 copy of x (x_rows rows of pc->cols at pc->x, pc->x_stride) and nothing can have
 * written x since its last use: no dispatch other than the products that read it, no transfer (vk_ctx.x16) */
static int x16_valid(vk_ctx *c, const ob_pc_matmul *pc, uint32_t x_rows) {
    return c->x16.src == pc->x && c->x16.rows == x_rows && c->x16.cols == pc->cols &&
           c->x16.stride == pc->x_stride && c->x16.dispatches == c->n_dispatches &&
           c->x16.xfers == c->n_xfer_writes && c->scratch[6];
}

/* the fp16 copy of x: the cached one, else converted now (cm_x16.comp). Returns its address (0 after vk_fail);
 * *r_h = its range. */
static VkDeviceAddress x16_get(vk_ctx *c, const ob_pc_matmul *pc, uint32_t x_rows, vk_range *r_h) {
    size_t hb = (size_t)x_rows * pc->cols * 2;
    if (x16_valid(c, pc, x_rows)) {
        VkDeviceAddress h = c->scratch[6]->blk->addr + c->scratch[6]->off;
        *r_h = vk_rng(h, hb);
        return h;
    }
    c->x16.src = 0;
    ob_buf *buf = vk_scratch(c, 6, hb);
    if (!buf) return 0;
    VkDeviceAddress h = buf->blk->addr + buf->off;
    ob_pc_matmul pv = { .x = pc->x, .y = h, .n = x_rows, .cols = pc->cols, .x_stride = pc->x_stride,
                        .y_stride = pc->cols };
    uint32_t gx, gy, spec[1] = { 256 };
    vk_grid(c, (uint64_t)x_rows * (pc->cols / 8), 256, &gx, &gy);
    vk_range rd = vk_rng(pc->x, ((uint64_t)(x_rows - 1) * pc->x_stride + pc->cols) * 4);
    *r_h = vk_rng(h, hb);
    vk_dispatch(c, vk_pipeline(c, SH_CM_X16, spec, 1), &pv, sizeof pv, gx, gy, 1, &rd, 1, r_h, 1);
    c->x16.src = pc->x;
    c->x16.rows = x_rows;
    c->x16.cols = pc->cols;
    c->x16.stride = pc->x_stride;
    c->x16.dispatches = c->n_dispatches;
    c->x16.xfers = c->n_xfer_writes;
    return h;
}

void vk_matmul_cm_dispatch(vk_ctx *c, int grouped, ob_dtype wt, ob_pc_matmul *pc, uint32_t groups_y,
                           const vk_range *reads, int n_reads, const vk_range *writes, int n_writes) {
    int xform = !grouped && vk_cm_x16(c, 0) ? VK_CM_X_CONVERT : VK_CM_X32;
    vk_matmul_cm_dispatch_x(c, grouped, xform, pc->n, wt, pc, groups_y, reads, n_reads, writes, n_writes);
}

void vk_matmul_cm_dispatch_x(vk_ctx *c, int grouped, int xform, uint32_t x_rows, ob_dtype wt, ob_pc_matmul *pc,
                             uint32_t groups_y, const vk_range *reads, int n_reads, const vk_range *writes,
                             int n_writes) {
    const cm_shape *sh = cm_pick(c, grouped != 0);
    /* grouped 2: gate and up in one tile, BM/2 output rows each */
    uint32_t bm_out = grouped == 2 ? sh->bm / 2 : sh->bm, gx = (pc->rows + bm_out - 1) / bm_out;
    if (!grouped) groups_y = (pc->n + sh->bn - 1) / sh->bn;
    uint32_t slices = (pc->cols + 63) / 64, split = 1, wg_target = (uint32_t)env_int("OMNI_VK_CM_SPLIT_WG", 0);
    int small = 0; /* split as a small product (the router), not by OMNI_VK_CM_SPLIT_WG */
    if (!grouped && env_int("OMNI_VK_CM_SPLIT", 1) && gx * groups_y < CM_SPLIT_BELOW) {
        split = (2 * CM_SPLIT_BELOW + gx * groups_y - 1) / (gx * groups_y);
        if (split > CM_SPLIT_MAX) split = CM_SPLIT_MAX;
        if (split > slices / 2) split = slices / 2;
        small = 1;
    } else if (!grouped && env_int("OMNI_VK_CM_SPLIT", 1) && wg_target > 0 && gx * groups_y < wg_target) {
        /* OMNI_VK_CM_SPLIT_WG=W (opt-in): split the big products too, to about W workgroups. At n = 512 the o
         * projection [2048 x 4096] is 16 x 8 = 128 tiles of 128 x 64, one per SM of an H100 (8 warps per SM for
         * 64 dependent K slices each); split in 2 it is 256 workgroups of 32 slices, two per SM, for 2 x 4 MB of
         * partial planes written and read again by mm_ksum (~5 us at 3 TB/s against ~100 us for the product) */
        split = (wg_target + gx * groups_y - 1) / (gx * groups_y);
        if (split > CM_SPLIT_MAX) split = CM_SPLIT_MAX;
        if (split > slices / 2) split = slices / 2;
    }
    /* a small product split over K (the router) converts its x only if a copy is already there: the conversion
     * would cost as much as the product's own x reads */
    if (xform == VK_CM_X_CONVERT && ((split > 1 && small) || x_rows == 0) && !x16_valid(c, pc, x_rows))
        xform = VK_CM_X32;
    if (xform == VK_CM_X16_IN && (pc->x % 16 || pc->x_stride % 8)) {
        vk_fail(c, "matmul_cm: fp16 x needs 16-byte aligned rows");
        return;
    }
    if (xform != VK_CM_X32 && grouped == 2 && (pc->accumulate || pc->y % 4 || pc->y_stride % 8 || pc->rows % 8)) {
        vk_fail(c, "matmul_cm: fp16 gate+up output needs rows and y_stride multiples of 8, no accumulation");
        return;
    }
    vk_range rd[VK_MAX_RANGES / 4];
    if (n_reads + 1 > (int)(sizeof rd / sizeof *rd)) {
        vk_fail(c, "matmul_cm: %d read ranges", n_reads);
        return;
    }
    for (int i = 0; i < n_reads; i++) rd[i] = reads[i];
    ob_pc_matmul px = *pc;
    if (xform == VK_CM_X_CONVERT) { /* the GEMM reads the fp16 copy (rows as x's, stride = cols) */
        px.x = x16_get(c, pc, x_rows, &rd[n_reads++]);
        if (!px.x) return;
        px.x_stride = pc->cols;
    }
    int db = env_int("OMNI_VK_CM_DB", 0) != 0, x16 = xform != VK_CM_X32;
    /* ids 1 (weight type) and 6 (mode) as matmul.comp; 2: skip the fragments past a tile's x rows, grouped forms only
     * and opt-in (OMNI_VK_CM_SKIP=1): the grouped tiles are ~half full at 512 tokens, but the guards cost more than
     * the MMAs they save (H100, pp512: experts 28.3 ms with, 24.9 ms without; dense tiles 10-20% slower with them,
     * vulkan_bench prefill) */
    uint32_t skip = grouped && env_int("OMNI_VK_CM_SKIP", 0) != 0;
    uint32_t spec[7] = { 0, (uint32_t)wt, skip, 0, 0, 0, (uint32_t)grouped };
    /* the opt-in builds of the fp16-activation single-buffered loop (matmul_cm.comp CM_PF, CM_DIAG; the plain
     * x16 build where they do not apply): OMNI_VK_CM_PF=1 register double-buffered global loads (identical
     * results); OMNI_VK_CM_DIAG=1 / 2 (128x64 and 256x64 only) time the kernel without its in-loop global loads /
     * with one MMA per slice: WRONG RESULTS, for attributing the time in a benchmark only */
    vk_shader_id sid = sh->sh[db + 2 * x16];
    if (x16 && !db) {
        int diag = env_int("OMNI_VK_CM_DIAG", 0);
        if ((diag == 1 || diag == 2) && sh->has_dg) sid = sh->dg[diag - 1];
        else if (env_int("OMNI_VK_CM_PF", 0)) sid = sh->pf;
    }
    VkPipeline p = vk_pipeline(c, sid, spec, 7);
    if (split <= 1) {
        px.pad = 0;
        vk_dispatch(c, p, &px, sizeof px, gx, groups_y, 1, rd, n_reads, writes, n_writes);
    } else {
        size_t plane = (size_t)pc->n * pc->rows * 4, part_b = plane * split;
        ob_buf *part = vk_scratch(c, 5, part_b);
        if (!part) return;
        ob_pc_matmul pp = px;
        pp.y = part->blk->addr + part->off;
        pp.y_stride = pc->rows;
        pp.accumulate = 0;
        pp.pad = split;
        vk_range r_part = vk_rng(pp.y, part_b);
        vk_dispatch(c, p, &pp, sizeof pp, gx, groups_y, split, rd, n_reads, &r_part, 1);
        ob_pc_matmul ps = *pc;
        ps.x = pp.y;
        ps.pad = split;
        uint32_t sx, sy, spec_s[1] = { 256 };
        vk_grid(c, (uint64_t)pc->n * pc->rows, 256, &sx, &sy);
        vk_range rd_s[2] = { r_part, writes[0] };
        vk_dispatch(c, vk_pipeline(c, SH_MM_KSUM, spec_s, 1), &ps, sizeof ps, sx, sy, 1, rd_s, pc->accumulate ? 2 : 1,
                    writes, n_writes);
    }
    /* the fp16 copy stays valid across this product unless it wrote x itself */
    if (xform == VK_CM_X_CONVERT && c->x16.src == pc->x) {
        vk_range rx = vk_rng(pc->x, ((uint64_t)(x_rows - 1) * pc->x_stride + pc->cols) * 4);
        int hit = 0;
        for (int i = 0; i < n_writes; i++) hit |= writes[i].lo < rx.hi && rx.lo < writes[i].hi;
        if (hit) c->x16.src = 0;
        else c->x16.dispatches = c->n_dispatches;
    }
}

/* attn_flash_cm.comp: head_dim 128 (the thinker), and the builds padded to 64 and 80 dims for head dims 64..124
 * (multiples of 4: the audio encoder's 64, the vision encoder's 72; smaller heads would waste most of a padded
 * tile); 16-byte vector loads of q, k, v, out. On by default where NV cooperative matrix is (OMNI_VK_ATTN_CM=0: the
 * fp32 flash kernel, attn_flash.comp; OMNI_VK_ATTN_CM_SMALL=0: the padded builds off, head dim 128 only). The padded
 * builds were measured on an H100 (vision encoder 1024^2: 1.20 -> 0.34 s, audio unchanged; docs/benchmarks.md). */
int vk_attn_cm_ok(vk_ctx *c, const ob_pc_attn *pc) {
    if (!env_int("OMNI_VK_ATTN_CM", 1)) return 0;
    if (!c->caps.coopmat_nv || !c->caps.fp16 || c->caps.subgroup_size != 32) return 0;
    if (c->caps.max_shared < CM_ATTN_SHARED) return 0;
    int small =
        env_int("OMNI_VK_ATTN_CM_SMALL", 1) && pc->head_dim >= 64 && pc->head_dim < 128 && pc->head_dim % 4 == 0;
    return (pc->head_dim == 128 || small) && (pc->q | pc->kc | pc->vc | pc->dst) % 16 == 0;
}

/* A workgroup takes 64 (query, head) rows: 64 / HPW queries of HPW heads that share a kv head, so each K/V block
 * it stages (fp32 -> fp16) serves HPW heads. HPW is the largest of {4, 2, 1} that divides the group size
 * (n_heads / n_kv; 8 for the thinker, 1 for the encoders) unless OMNI_VK_ATTN_CM_HPW=1|2|4 asks for less (or a
 * divisor). OMNI_VK_ATTN_CM_TAU=N (0..16, default 8): the kernel's lazy-maximum slack in base-2 units (0: exact
 * online softmax, a rescale of O at every raise of a row maximum; the tests run both). OMNI_VK_ATTN_CM_PREFETCH=1:
 * the next K/V block is loaded one block ahead through registers (measured slower on the H100; comparisons).
 * Opt-in builds (the kernel's CM_FRAG / CM_BKV; not yet measured, see the shader's header):
 *   OMNI_VK_ATTN_CM_FRAG=1  the softmax on the S fragments: no S store / read-back, P store / load or subgroup
 *                           barrier per block, O rescaled in registers; 32-key blocks (=2: the row maxima through
 *                           shared atomics, the kernel's fallback for other fragment layouts, forced: tests)
 *   OMNI_VK_ATTN_CM_BKV=64  the same with 64-key blocks (half the workgroup barriers and K/V staging rounds per
 *                           key); implies FRAG; 32-key blocks where the device lacks its shared memory
 *   OMNI_VK_ATTN_CM_SPLIT=N  (FRAG builds) a query block's key range split over up to N workgroups (grid z) of at
 *                           least OMNI_VK_ATTN_CM_SPLIT_MIN key blocks (default 2) each, when the grid has fewer than
 *                           OMNI_VK_ATTN_CM_SPLIT_BELOW workgroups (default 1024: the pp512 thinker grid of 32 x 8
 *                           is split, the vision encoder's 64 x 16 not): the longest workgroup walks 1/N of the keys
 *                           and more workgroups fill the SMs; partials (O, m, l per row) go to scratch slot 0 and the
 *                           last split of a query block to finish merges them (an atomic counter, as attn_decode.comp)
 * PREFETCH applies to the default build only. */
void vk_attn_cm_dispatch(vk_ctx *c, ob_pc_attn *pc, const vk_range *reads, int n_reads, const vk_range *write) {
    uint32_t grp = pc->n_heads / pc->n_kv, hpw = (uint32_t)env_int("OMNI_VK_ATTN_CM_HPW", 4);
    if (hpw != 1 && hpw != 2 && hpw != 4) hpw = 4;
    while (hpw > 1 && grp % hpw) hpw /= 2;
    int tau = env_int("OMNI_VK_ATTN_CM_TAU", 8);
    /* spec[6]: the KV cache's format (1 fp16: its 16-byte words go to the tiles as they are; 0 fp32, converted) */
    int kv16 = vk_kv16(c, (int)pc->head_dim);
    uint32_t spec[7] = { hpw, (uint32_t)(tau < 0 ? 0 : tau > 16 ? 16 : tau),
                         (uint32_t)(env_int("OMNI_VK_ATTN_CM_PREFETCH", 0) != 0), 0, 1, 2, (uint32_t)kv16 };
    uint32_t dp = pc->head_dim <= 64 ? 64 : pc->head_dim <= 80 ? 80 : 128;
    int bkv = env_int("OMNI_VK_ATTN_CM_BKV", 32) == 64 ? 64 : 32;
    int ksplit = env_int("OMNI_VK_ATTN_CM_SPLIT", 1);
    ksplit = ksplit < 1 ? 1 : ksplit > 8 ? 8 : ksplit;
    /* the opt-in fragment builds read fp32 caches only (with fp16 ones they gave wrong results on the H100, not
     * investigated further: they are on their way out), so with an fp16 cache the default build runs */
    int fr_env = env_int("OMNI_VK_ATTN_CM_FRAG", 0), frag = !kv16 && (bkv == 64 || ksplit > 1 || fr_env != 0);
    if (bkv == 64 && c->caps.max_shared < CM_ATTN_FR_SHARED(dp, 64u)) bkv = 32;
    /* [padding][0 default, 1 fragments with 32-key blocks, 2 with 64-key blocks] */
    static const vk_shader_id shs[3][3] = {
        { SH_ATTN_FLASH_CM64, SH_ATTN_FLASH_CM64_FR, SH_ATTN_FLASH_CM64_FR64 },
        { SH_ATTN_FLASH_CM80, SH_ATTN_FLASH_CM80_FR, SH_ATTN_FLASH_CM80_FR64 },
        { SH_ATTN_FLASH_CM, SH_ATTN_FLASH_CM_FR, SH_ATTN_FLASH_CM_FR64 },
    };
    vk_shader_id sh = shs[dp == 64 ? 0 : dp == 80 ? 1 : 2][frag ? (bkv == 64 ? 2 : 1) : 0];
    uint32_t qpw = VK_CM_ATTN_BQ / hpw, gx = (pc->n + qpw - 1) / qpw, gy = pc->n_heads / hpw;
    if (ksplit > 1 && gx * gy >= (uint32_t)env_int("OMNI_VK_ATTN_CM_SPLIT_BELOW", 1024)) ksplit = 1;
    int split_min = env_int("OMNI_VK_ATTN_CM_SPLIT_MIN", 2);
    if (frag) { /* FRAG=2: the shared-atomic row maxima (tests) */
        spec[2] = 0, spec[3] = fr_env == 2;
        spec[4] = (uint32_t)ksplit, spec[5] = (uint32_t)(split_min < 1 ? 1 : split_min);
    }
    VkPipeline p = vk_pipeline(c, sh, spec, 7);
    if (ksplit <= 1) {
        vk_dispatch(c, p, pc, sizeof *pc, gx, gy, 1, reads, n_reads, write, 1);
        return;
    }
    /* partials: per workgroup (x, y) and split, 64 rows of O (padded head dim dp) then 64 (m, l) pairs */
    ob_pc_attn ps = *pc;
    size_t part_b = (size_t)gx * gy * (size_t)ksplit * 64u * (dp + 2u) * 4u;
    ob_buf *part = vk_scratch(c, 0, part_b);
    VkDeviceAddress cnt = part ? vk_counters(c, VK_CNT_ATTN_SPLIT, (int)(gx * gy)) : 0;
    if (!cnt) return;
    ps.part = part->blk->addr + part->off;
    ps.chunk = (uint32_t)cnt, ps.n_split = (uint32_t)(cnt >> 32); /* the kernel's counter address */
    vk_range wr[3] = { write[0], vk_rng(ps.part, part_b), vk_rng(cnt, (uint64_t)gx * gy * 4u) };
    vk_dispatch(c, p, &ps, sizeof ps, gx, gy, (uint32_t)ksplit, reads, n_reads, wr, 3);
}
