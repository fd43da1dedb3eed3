/* vk_coopmat.c — the tensor-core matmul (shaders/matmul_cm.comp, NV or KHR cooperative matrix through cm.glsl) for
 * prefill: when it applies, and its dispatch for the dense matmul (vk_ops.c) and the grouped MoE (vk_moe.c).
 *
 * It applies to f16, bf16 and Q8_0 weights (Q8_0 dequantized into shared memory as fp16: quant times block scale,
 * rounded once) on a device whose NV or KHR cooperative matrix survived OMNI_VK_NO_COOPMAT (the KHR builds wherever
 * they run, AMD on RADV and NVIDIA alike: vk_device.c cm_flavour, OMNI_VK_CM_KHR), with fp16 arithmetic and 32-wide
 * subgroups (the kernel lays out 8 subgroups of 32 over its 128 x 64 tile; required per pipeline for KHR), and to
 * operands that allow its 16-byte loads. Its products are of fp16-rounded operands (fp32 sums), so results differ
 * from the fp32 kernels by about 1e-3 relative; OMNI_VK_NO_COOPMAT=1 selects the fp32 tiled kernel (matmul.comp).
 * The 16 x 16 x 16 fp16 -> fp32 shape it uses is the one every NV cooperative-matrix device lists (for KHR,
 * vk_device.c checks the list).
 * Small dense products (too few 128 x 64 tiles to fill the device) are split over K (mm_ksum.comp adds the parts).
 * Also here: when the tensor-core prefill attention (shaders/attn_flash_cm.comp) applies, and its dispatch.
 * Measured on an H100 (docs/benchmarks.md, "prefill after tensor-core work"). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

/* shared memory the kernels declare: matmul_cm (BM + BN) x 72 halves (the smallest shape, 128 x 32, is the
 * requirement; larger ones are used where they fit); attn_flash_cm (head dim 128) 64x136 halves, 4x512 floats,
 * 4x16x40 halves, 64 floats */
#define CM_MATMUL_SHARED(bm, bn) (((bm) + (bn)) * 144u)
#define CM_ATTN_SHARED 30976u


/* the subgroup-scope fragments of cm.glsl: NV cooperative matrix on 32-wide subgroups, or the KHR builds (which
 * vk_device.c chose only with the 16 x 16 x 16 fp16 shape and 32-wide subgroups, required where not the default) */
static int cm_fragments_ok(vk_ctx *c) {
    return c->caps.fp16 && ((c->caps.coopmat_nv && c->caps.subgroup_size == 32) || c->cm_khr);
}

int vk_cm_ok(vk_ctx *c, ob_dtype wt, int vec) {
    if (!cm_fragments_ok(c)) return 0;
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
/* sh[x16]: the plain build and the fp16-activation one (matmul_cm.comp's CM_X16, see below) */
typedef struct {
    uint32_t bm, bn;
    vk_shader_id sh[2];
} cm_shape;
static const cm_shape cm_shapes[] = {
    { 128, 64, { SH_MATMUL_CM, SH_MATMUL_CM_128X64_X16 } },
    { 128, 32, { SH_MATMUL_CM_128X32, SH_MATMUL_CM_128X32_X16 } },
    { 256, 32, { SH_MATMUL_CM_256X32, SH_MATMUL_CM_256X32_X16 } },
    { 256, 64, { SH_MATMUL_CM_256X64, SH_MATMUL_CM_256X64_X16 } },
    { 128, 128, { SH_MATMUL_CM_128X128, SH_MATMUL_CM_128X128_X16 } },
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

/* One more build of every shape:
 *   OMNI_VK_CM_X16=2  (the default) fp16 activations: x converted once per call by cm_x16.comp instead of in every
 *                     tile's inner loop (half the x bytes read per tile); the grouped MoE's fused gate+up+swiglu
 *                     GEMM writes fp16 for the down projection, which reads it as is, and the dense projections'
 *                     fp16 copy is reused by the next products of the same x while no other command ran (q, k and
 *                     v share one conversion). =1 only the grouped MoE, =0 off. Measured on the H100
 *                     (`vulkan_bench model` pp512, BF16, one load, variants side by side): pass 43.05 ms -> 40.70
 *                     (experts 25.03 -> 22.77, projections 11.77 -> 11.10); Q8_0 unchanged (45.45 / 45.65 ms).
 * It gives the plain build's results exactly (the same fp16 rounding and clamp of x, the same products and fp32
 * sums in the same order).
 * Tried on the H100 and removed again (pp512 of the thinker, BF16, GEMM pass): a double-buffered shared-memory ring
 * (32-column slices, one barrier each: 56.85 vs 43.05 ms), the global loads issued two K slices ahead through a
 * second register set (43.06 vs 40.95 ms) and split-K of the big dense products to fill the grid (41.39 vs 40.95). */
int vk_cm_x16(vk_ctx *c, int grouped) {
    (void)c;
    int v = vk_env_now("OMNI_VK_CM_X16", 2);
    return grouped ? v >= 1 : v >= 2;
}

/* scratch slot 6 holds the fp16 copy of x (x_rows rows of pc->cols at pc->x, pc->x_stride), and no command has
 * written x or the copy since (vk_hazard_for clears vk_ctx.x16.src then) */
static int x16_valid(vk_ctx *c, const ob_pc_matmul *pc, uint32_t x_rows) {
    return c->x16.src == pc->x && c->x16.rows == x_rows && c->x16.cols == pc->cols &&
           c->x16.stride == pc->x_stride && c->scratch[6] && c->x16.h == c->scratch[6]->blk->addr + c->scratch[6]->off;
}

static void x16_register(vk_ctx *c, VkDeviceAddress src, uint32_t rows, uint32_t cols, uint32_t stride,
                         VkDeviceAddress h) {
    c->x16.src = src;
    c->x16.h = h;
    c->x16.rows = rows;
    c->x16.cols = cols;
    c->x16.stride = stride;
    c->x16.r_src = vk_rng(src, ((uint64_t)(rows - 1) * stride + cols) * 4);
    c->x16.r_h = vk_rng(h, (uint64_t)rows * cols * 2);
}

/* the fp16 copy of x: the cached one, else converted now (cm_x16.comp). Returns its address (0 after vk_fail);
 * *r_h = its range. */
static VkDeviceAddress x16_get(vk_ctx *c, const ob_pc_matmul *pc, uint32_t x_rows, vk_range *r_h) {
    size_t hb = (size_t)x_rows * pc->cols * 2;
    if (x16_valid(c, pc, x_rows)) {
        *r_h = vk_rng(c->x16.h, hb);
        return c->x16.h;
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
    x16_register(c, pc->x, x_rows, pc->cols, pc->x_stride, h);
    return h;
}

/* Prefill RMSNorm rows (more than a matrix-vector product's 8, whole 16-byte fp16 rows) on a device whose dense and
 * grouped tensor-core GEMMs read fp16 copies: the norm writes the copy itself, saving the GEMMs' conversion pass
 * (OMNI_VK_NORM_X16=0: not). H100, the same run alternating two builds, `omni bench … -p 512 -n 0 -r 3`: BF16 pp512
 * 13,810 / 13,795 -> 13,969 / 13,979, Q8_0 12,877 / 12,879 -> 13,031 / 13,050 (pass 37.6-37.9 -> 37.1 ms). */
VkDeviceAddress vk_x16_offer(vk_ctx *c, uint32_t rows, uint32_t cols, VkDeviceAddress y) {
    if (rows <= 8 || cols % 8 || y % 16 || !vk_cm_ok(c, OB_BF16, 1) || !vk_cm_x16(c, 0) || !vk_cm_x16(c, 1) ||
        vk_env_now("OMNI_VK_NORM_X16", 1) <= 0)
        return 0;
    ob_buf *buf = vk_scratch(c, 6, (size_t)rows * cols * 2);
    return buf ? buf->blk->addr + buf->off : 0;
}

void vk_x16_written(vk_ctx *c, uint32_t rows, uint32_t cols, VkDeviceAddress y) {
    if (!c->base.failed && c->scratch[6])
        x16_register(c, y, rows, cols, cols, c->scratch[6]->blk->addr + c->scratch[6]->off);
}

/* mm_ksum.comp: y (+)= the split planes at part (pc as the caller gave the product) */
static void ksum_record(vk_ctx *c, const ob_pc_matmul *pc, VkDeviceAddress part, uint32_t split,
                        const vk_range *writes, int n_writes) {
    size_t part_b = (size_t)pc->n * pc->rows * 4 * split;
    vk_range r_part = vk_rng(part, part_b);
    ob_pc_matmul ps = *pc;
    ps.x = part;
    ps.pad = split;
    /* 4 elements per thread in 16-byte loads and stores where rows, y's stride and address allow (mm_ksum.comp V4:
     * the same sums in the same order; OMNI_VK_KSUM_V4=0 one element per thread). H100, BF16 pp512 trace per pass:
     * o_proj's sum 0.493 -> 0.411 ms, k/v's 0.559 -> 0.554, the router's 0.217 -> 0.238 (docs/benchmarks.md,
     * "session 7: prefill") */
    uint32_t v4 = pc->rows % 4 == 0 && pc->y_stride % 4 == 0 && pc->y % 16 == 0 && part % 16 == 0 &&
                  vk_env_now("OMNI_VK_KSUM_V4", 1) > 0;
    uint32_t sx, sy, spec_s[2] = { 256, v4 };
    vk_grid(c, (uint64_t)pc->n * pc->rows / (v4 ? 4 : 1), 256, &sx, &sy);
    vk_range rd_s[2] = { r_part, writes[0] };
    vk_dispatch(c, vk_pipeline(c, SH_MM_KSUM, spec_s, v4 ? 2 : 1), &ps, sizeof ps, sx, sy, 1, rd_s,
                pc->accumulate ? 2 : 1, writes, n_writes);
}

void vk_ksum_record(vk_ctx *c) {
    ksum_record(c, &c->ksum_pend.pc, c->ksum_pend.part, c->ksum_pend.split, &c->ksum_pend.r_y, 1);
}

VkDeviceAddress vk_ksum_take(vk_ctx *c, VkDeviceAddress y, uint32_t n, uint32_t rows, int accumulate,
                             uint32_t *split, vk_range *r_part) {
    const ob_pc_matmul *pc = &c->ksum_pend.pc;
    if (!c->owe[VK_OWE_KSUM].on || c->base.failed || pc->y != y || pc->n != n || pc->rows != rows ||
        pc->y_stride != rows || (pc->accumulate != 0) != (accumulate != 0))
        return 0;
    vk_owed_take(c, VK_OWE_KSUM);
    *split = c->ksum_pend.split;
    *r_part = c->ksum_pend.r_part;
    return c->ksum_pend.part;
}

/* A tensor-core GEMM (pipeline p, push constants px as the kernel takes them, pc as the caller gave them) over a
 * gx x gy grid: in one pass, or split over K in `split` parts (grid z) that write partial planes into scratch slot 5,
 * which mm_ksum.comp then adds into y (accumulating where pc asks). Shared by matmul_cm.comp, matmul_cm2.comp and
 * matmul.comp (OMNI_VK_MM_SPLIT, vk_ops.c).
 * Where the caller allows it (vk_ctx.ksum_defer: vk_op_matmul's products) the sum is left owed (ksum_pend) for the
 * next op to take into its own kernel: the post-attention RMSNorm of the residual o_proj adds into, the router's
 * top-k of its logits, the per-head q/k norm, RoPE and cache update of the prefill k|v product (qk_rope_kv.comp;
 * OMNI_VK_KSUM_DEFER=0: never). */
void vk_gemm_split(vk_ctx *c, VkPipeline p, const ob_pc_matmul *pc, ob_pc_matmul *px, uint32_t gx, uint32_t gy,
                   uint32_t split, const vk_range *rd, int n_reads, const vk_range *writes, int n_writes) {
    if (split <= 1) {
        px->pad = 0;
        vk_dispatch(c, p, px, sizeof *px, gx, gy, 1, rd, n_reads, writes, n_writes);
        return;
    }
    size_t plane = (size_t)pc->n * pc->rows * 4, part_b = plane * split;
    ob_buf *part = vk_scratch(c, 5, part_b);
    if (!part) return;
    ob_pc_matmul pp = *px;
    pp.y = part->blk->addr + part->off;
    pp.y_stride = pc->rows;
    pp.accumulate = 0;
    pp.pad = split;
    vk_range r_part = vk_rng(pp.y, part_b);
    vk_dispatch(c, p, &pp, sizeof pp, gx, gy, split, rd, n_reads, &r_part, 1);
    if (c->ksum_defer && n_writes == 1 && !c->base.failed && vk_env_now("OMNI_VK_KSUM_DEFER", 1) > 0) {
        vk_owed_flush(c, VK_OWE_KSUM); /* (none is owed here: the planes' write above recorded any earlier one) */
        /* y is as good as written: an fp16 copy of it lapses now (the hazard tracker sees only the planes) */
        if (c->x16.src && (vk_overlaps(writes, 1, c->x16.r_src) || vk_overlaps(writes, 1, c->x16.r_h)))
            c->x16.src = 0;
        vk_range owed[2] = { writes[0], r_part };
        vk_owe(c, VK_OWE_KSUM, owed, 2, NULL, 0);
        c->ksum_pend.pc = *pc;
        c->ksum_pend.part = pp.y;
        c->ksum_pend.split = split;
        c->ksum_pend.r_part = r_part;
        c->ksum_pend.r_y = writes[0];
        return;
    }
    ksum_record(c, pc, pp.y, split, writes, n_writes);
}

/* ---- the NV cooperative matrix 2 GEMM (matmul_cm2.comp) for the dense products ------------------------------------
 * Dense MODE-0 products of 512..2048 x rows (CM2_MIN_N, CM2_MAX_N) with f16/bf16 or Q8_0 weights (OMNI_VK_CM2_Q8,
 * below) go to it (OMNI_VK_CM2=0: matmul_cm.comp) where the device has what it needs (vk_caps.cm2: workgroup-scope,
 * flexible-dimension fp16 matrices with tensor addressing; the build has the shader only with GLSLC2, shaders.mk).
 * Activations go through the same cached fp16 copy as OMNI_VK_CM_X16=2 (cm_x16.comp), y must allow 16-byte rows.
 * Tile OMNI_VK_CM2_TILE=BMxBNxBK (weight rows x x rows x columns per step; multiples of the device's granularity),
 * default CM2_TILE. Products with fewer than CM2_SPLIT_BELOW tiles are
 * split over K as matmul_cm's (partial planes, mm_ksum.comp). */
/* on by default (where the device and build have it): on the H100 every dense projection is faster than on
 * matmul_cm (vulkan_bench gemm, n = 512, ms: q 0.0531 vs 0.0894, k/v 0.0188 vs 0.0393, o 0.0699 vs 0.0860 split 4
 * ways), and `omni bench` pp512 BF16 of the thinker 13,736 vs 12,691 t/s in the same run (projections 7.98 vs 11.05
 * ms per pass; docs/benchmarks.md). Its pipeline takes 3-5 s to compile, once: the on-disk pipeline cache
 * (vk_exec.c) keeps it from the second start on. */
#define CM2_DEFAULT 1
#define CM2_TILE "128x128x64"
#define CM2_SPLIT_BELOW 128u
/* Only products of 512..2048 x rows take it; the others stay on matmul_cm.comp (OMNI_VK_CM2_MIN_N / _MAX_N=N other
 * bounds, MAX 0 = none). Measured on the H100 (omni bench-audio -s 30 / bench-vision --size 1024, ms, two runs): cm2
 * everywhere audio 34-39 and 25-26, vision 236-240 and 232-243; matmul_cm everywhere 23-29 / 23, vision 249-257 /
 * 226-234 (run-to-run noise of a few %); cm2 from 512 rows 26-32 / 25-26 with vision 239-245 / 231-245; 512..2048 rows
 * audio 25, vision 233-239 (vision is then all matmul_cm). The gain is in the thinker's prefill chunks (512 rows:
 * projections 11.05 -> 7.98 ms per pp512 pass); the encoders' products did not gain. */
#define CM2_MIN_N 512
#define CM2_MAX_N 2048
/* Threads per workgroup (OMNI_VK_CM2_WG=256|512 for all types): 512 for Q8_0, 256 for f16/bf16. Measured on the
 * H100 (session 6, docs/benchmarks.md): `omni bench … -p 512 -n 0 -r 3`, main's build and OMNI_VK_CM2_WG=512
 * alternating in one run, Q8_0 pp512 13,903 / 13,913 -> 14,289 / 14,279 t/s (projections 10.78 -> 10.00 ms per
 * pass), BF16 14,405 / 14,429 -> 14,442 / 14,405 (projections 7.66-7.77 -> 7.91-8.02 ms: no gain); vulkan_bench
 * gemm n = 512, ms: q-q8 0.0786 -> 0.0722, q bf16 0.0566 -> 0.0549, q f16 0.0558 -> 0.0636 (worse). */
#define CM2_WG 256u
#define CM2_WG_Q8 512u
#define CM2_UNROLL 4 /* K steps unrolled in its inner loop (OMNI_VK_CM2_UNROLL=1..8) */
/* fp16 operands through block loads (OMNI_VK_CM2_BLK=0: plain tensor loads). Measured on the H100 (vulkan_bench
 * gemm, n = 512, 128x128x64): q [4096 x 2048] 0.0505 ms with block loads against 0.1115 plain (matmul_cm 0.0885),
 * o [2048 x 4096] 0.0967 against 0.2129 (matmul_cm 0.0858). */
#define CM2_BLK 1

/* Products with fewer than CM2_SPLIT_BELOW tiles (a wave of workgroups on the H100's 132 SMs) are split over K;
 * where the threshold is lowered (OMNI_VK_CM2_SPLIT_BELOW=N), products between it and CM2_FILL tiles take the
 * CM2_TILE_SMALL tile instead (OMNI_VK_CM2_SMALL=BMxBNxBK another, =0 none), which doubles their grid. For o
 * [2048 x 4096] x 512 (64 tiles of 128 x 128: half the SMs idle) the split won on the H100 (vulkan_bench gemm,
 * n = 512, ms: split 4 ways 0.0699, 128 x 64 tiles 0.0734, unsplit 0.0967, matmul_cm 0.0860). */
#define CM2_FILL 128u
#define CM2_TILE_SMALL "128x64x64"

/* Q8_0 weights on it too (OMNI_VK_CM2_Q8=0: they stay on matmul_cm), dequantized by the tensor block loads' decode
 * function (q·d in fp32, rounded once to fp16: matmul_cm's numerics). The decode function's block is
 * OMNI_VK_CM2_Q8BLK = 4, 8, 16 or 32 quants of a row (default CM2_Q8_BLOCK). Needs cols % 32 == 0 (the format),
 * quants 16-byte aligned, scales 2-byte aligned. On by default: on the H100 (vulkan_bench gemm, n = 512, ms, one
 * run) q [4096 x 2048] 0.0755 vs matmul_cm 0.1083, k/v [512 x 2048] 0.0215 vs 0.0586, o [2048 x 4096] (split 4
 * ways, +=) 0.0934 vs 0.1064 with 16-quant blocks (4: q 0.0852, o 0.1061; 8: 0.0791, 0.0982; 32: 0.0793, 0.0998),
 * and `omni bench --quant q8_0` pp512 of the thinker 12,536 vs 11,572 t/s in the same run (projections 10.97 vs
 * 15.56 ms per pass; docs/benchmarks.md). */
#define CM2_Q8_DEFAULT 1
#define CM2_Q8_BLOCK 16

/* a tile "BMxBNxBK" the device's granularity allows (0: not one) */
static int cm2_parse(vk_ctx *c, const char *v, uint32_t t[3]) {
    if (!v || sscanf(v, "%ux%ux%u", &t[0], &t[1], &t[2]) != 3) return 0;
    for (int i = 0; i < 3; i++)
        if (!t[i] || t[i] > 256 || (c->caps.cm2_gran[i] && t[i] % c->caps.cm2_gran[i])) return 0;
    return 1;
}

/* the dense product's tile (t) and its grid (*gx, *gy): OMNI_VK_CM2_TILE for every product if set, else by size */
static int cm2_tile(vk_ctx *c, const ob_pc_matmul *pc, uint32_t t[3], uint32_t *gx, uint32_t *gy) {
    const char *v = getenv("OMNI_VK_CM2_TILE");
    int forced = v && *v;
    if (!cm2_parse(c, forced ? v : CM2_TILE, t)) return 0;
    *gx = (pc->rows + t[0] - 1) / t[0], *gy = (pc->n + t[1] - 1) / t[1];
    uint32_t tiles = *gx * *gy, below = (uint32_t)vk_env_now("OMNI_VK_CM2_SPLIT_BELOW", CM2_SPLIT_BELOW);
    const char *sv = getenv("OMNI_VK_CM2_SMALL");
    uint32_t ts[3];
    if (!forced && tiles < CM2_FILL && tiles >= below && !(sv && !strcmp(sv, "0")) &&
        cm2_parse(c, sv && *sv ? sv : CM2_TILE_SMALL, ts)) {
        for (int i = 0; i < 3; i++) t[i] = ts[i];
        *gx = (pc->rows + t[0] - 1) / t[0], *gy = (pc->n + t[1] - 1) / t[1];
    }
    return 1;
}

int vk_cm2_on(vk_ctx *c, ob_dtype wt) {
    int t = wt == OB_F16 || wt == OB_BF16 || (wt == OB_Q8_0 && vk_env_now("OMNI_VK_CM2_Q8", CM2_Q8_DEFAULT) > 0);
    return c->caps.cm2 && t && vk_env_now("OMNI_VK_CM2", CM2_DEFAULT) > 0;
}

/* the Q8_0 decode function's block (quants of one row): 4, 8, 16 or 32 */
static uint32_t cm2_q8_block(void) {
    int q = vk_env_now("OMNI_VK_CM2_Q8BLK", CM2_Q8_BLOCK);
    return q == 4 || q == 8 || q == 16 || q == 32 ? (uint32_t)q : CM2_Q8_BLOCK;
}

/* products of fewer or more x rows than CM2_MIN_N..CM2_MAX_N stay on matmul_cm */
static int cm2_n_ok(const ob_pc_matmul *pc) {
    uint32_t min_n = (uint32_t)vk_env_now("OMNI_VK_CM2_MIN_N", CM2_MIN_N);
    uint32_t max_n = (uint32_t)vk_env_now("OMNI_VK_CM2_MAX_N", CM2_MAX_N);
    return pc->n >= min_n && (!max_n || pc->n <= max_n);
}

/* returns 0 (nothing recorded) where the product is not for it */
static int cm2_dispatch(vk_ctx *c, ob_dtype wt, const ob_pc_matmul *pc, const vk_range *reads, int n_reads,
                        const vk_range *writes, int n_writes) {
    uint32_t t[3], gx, gy;
    if (!cm2_n_ok(pc)) return 0;
    if (!vk_cm2_on(c, wt) || pc->y % 16 || pc->y_stride % 4 || pc->n == 0 || !cm2_tile(c, pc, t, &gx, &gy)) return 0;
    if (wt == OB_Q8_0 && (pc->cols % 32 || pc->w % 16 || pc->s % 2)) return 0;
    if (n_reads + 1 > VK_MAX_RANGES / 4) return 0;
    uint32_t slices = (pc->cols + t[2] - 1) / t[2], split = 1;
    uint32_t below = (uint32_t)vk_env_now("OMNI_VK_CM2_SPLIT_BELOW", CM2_SPLIT_BELOW);
    if (vk_env_now("OMNI_VK_CM_SPLIT", 1) && gx * gy < below) {
        /* about OMNI_VK_CM2_SPLIT_FILL workgroups, default one wave (`below`): H100, pp512 BF16, one load
         * alternating, 16,319 / 16,238 t/s against 15,948 with two waves (k|v split 4 ways instead of 8, o_proj 2
         * instead of 4: half the partial planes to write and read; vulkan_bench gemm ms, k|v 0.0254 vs 0.0301, o
         * 0.0645 vs 0.0694; three waves 0.0335 / 0.0834) */
        uint32_t fill = (uint32_t)vk_env_now("OMNI_VK_CM2_SPLIT_FILL", (int)below);
        split = (fill + gx * gy - 1) / (gx * gy);
        if (split > CM_SPLIT_MAX) split = CM_SPLIT_MAX;
        if (split > slices / 4) split = slices / 4; /* at least 4 steps each */
        if (split < 1) split = 1;
    }
    vk_range rd[VK_MAX_RANGES / 4];
    for (int i = 0; i < n_reads; i++) rd[i] = reads[i];
    ob_pc_matmul px = *pc;
    px.x = x16_get(c, pc, pc->n, &rd[n_reads++]);
    if (!px.x) return 1; /* vk_fail'ed */
    px.x_stride = pc->cols;
    int unroll = vk_env_now("OMNI_VK_CM2_UNROLL", CM2_UNROLL), wg = vk_env_now("OMNI_VK_CM2_WG", 0);
    /* threads per workgroup (the driver spreads the tile over them): OMNI_VK_CM2_WG=256|512, else CM2_WG_Q8 for
     * Q8_0 and CM2_WG for the others */
    uint32_t wgs = wg == 256 || wg == 512 ? (uint32_t)wg : wt == OB_Q8_0 ? CM2_WG_Q8 : CM2_WG;
    /* spec 7 (the Q8_0 block) only for Q8_0: the other types keep their pipelines */
    uint32_t spec[8] = { wgs, (uint32_t)wt, t[0], t[1], t[2], (uint32_t)(unroll < 1 ? 1 : unroll > 8 ? 8 : unroll),
                         (uint32_t)(vk_env_now("OMNI_VK_CM2_BLK", CM2_BLK) > 0), cm2_q8_block() };
    VkPipeline p = vk_pipeline(c, SH_MATMUL_CM2, spec, wt == OB_Q8_0 ? 8 : 7);
    vk_gemm_split(c, p, pc, &px, gx, gy, split, rd, n_reads, writes, n_writes);
    return 1;
}

/* ---- the grouped MoE on NV cooperative matrix 2 (matmul_cm2_moe.comp) ----------------------------------------------
 * OMNI_VK_CM2_MOE=1 (default CM2_MOE_DEFAULT) runs the grouped experts' gate+up+swiglu (MODE 2) and down (MODE 1)
 * GEMMs on it where the device has cm2 (vk_caps.cm2, the shader built) and the experts are f16/bf16 with rows of
 * whole 16-byte words; x is gathered into the plan's sorted order as fp16 first (cm2_gather.comp: the tensor loads
 * take contiguous rows). Tile OMNI_VK_CM2_MOE_TILE=BMxBNxBK (default CM2_MOE_TILE); BN is the plan's tile. */
/* off by default: on the H100 (vulkan_bench gemm, 128 experts [768 x 2048] bf16, top-8 of 512 tokens) its best
 * tile, 256x64x64 with 4 K steps unrolled, took 0.737 ms against matmul_cm's 0.687 (128x64x64: 0.856, 256x32x64:
 * 0.740, 256x64x32: 0.817, 256x128x64: 2.36) */
#define CM2_MOE_DEFAULT 0
#define CM2_MOE_TILE "128x64x64"
#define CM2_MOE_UNROLL 2 /* K steps per unrolled iteration (OMNI_VK_CM2_MOE_UNROLL=1..8) */

static int cm2_moe_tile(vk_ctx *c, uint32_t t[3]) {
    const char *v = getenv("OMNI_VK_CM2_MOE_TILE");
    return cm2_parse(c, v && *v ? v : CM2_MOE_TILE, t);
}

uint32_t vk_cm2_moe_tile_n(vk_ctx *c, ob_dtype gate_t, ob_dtype down_t, int vec, uint32_t dim, uint32_t inter,
                           VkDeviceAddress xa) {
    uint32_t t[3];
    if (!c->caps.cm2 || !vk_shader_table[SH_MATMUL_CM2_MOE].words || vk_env_now("OMNI_VK_CM2_MOE", CM2_MOE_DEFAULT) <= 0)
        return 0;
    if ((gate_t != OB_F16 && gate_t != OB_BF16) || (down_t != OB_F16 && down_t != OB_BF16)) return 0;
    if (!vec || dim % 8 || inter % 8 || xa % 16 || !cm2_moe_tile(c, t)) return 0;
    return t[1];
}

void vk_cm2_grouped(vk_ctx *c, int mode, ob_dtype wt, const ob_pc_matmul *pc, uint32_t tiles, const vk_range *reads,
                    int n_reads, const vk_range *writes, int n_writes) {
    uint32_t t[3];
    vk_range rd[VK_MAX_RANGES / 4];
    if (!cm2_moe_tile(c, t) || n_reads + 1 > (int)(sizeof rd / sizeof *rd)) {
        vk_fail(c, "matmul_cm2_moe: tile or %d read ranges", n_reads);
        return;
    }
    for (int i = 0; i < n_reads; i++) rd[i] = reads[i];
    ob_pc_matmul px = *pc;
    if (mode == 2) { /* x[tok[j]] as fp16 rows j = 0 .. n-1, in scratch slot 6 (the dense fp16 copy is gone) */
        size_t gb = (size_t)pc->n * pc->cols * 2;
        c->x16.src = 0;
        ob_buf *buf = vk_scratch(c, 6, gb);
        if (!buf) return;
        VkDeviceAddress g = buf->blk->addr + buf->off;
        ob_pc_matmul pg = { .x = pc->x, .y = g, .tok = pc->tok, .n = pc->n, .cols = pc->cols,
                            .x_stride = pc->x_stride, .y_stride = pc->cols };
        uint32_t sx, sy, spec_g[1] = { 256 };
        vk_grid(c, (uint64_t)pc->n * (pc->cols / 8), 256, &sx, &sy);
        vk_range r_g = vk_rng(g, gb);
        vk_dispatch(c, vk_pipeline(c, SH_CM2_GATHER, spec_g, 1), &pg, sizeof pg, sx, sy, 1, rd, n_reads, &r_g, 1);
        px.x = g;
        px.x_stride = pc->cols;
        px.gather = 0;
        rd[n_reads++] = r_g;
    }
    int unroll = vk_env_now("OMNI_VK_CM2_MOE_UNROLL", CM2_MOE_UNROLL);
    uint32_t spec[7] = { 256, (uint32_t)wt, t[0], t[1], t[2], (uint32_t)(unroll < 1 ? 1 : unroll > 8 ? 8 : unroll),
                         (uint32_t)mode };
    VkPipeline p = vk_pipeline(c, SH_MATMUL_CM2_MOE, spec, 7);
    vk_dispatch(c, p, &px, sizeof px, (pc->rows + t[0] - 1) / t[0], tiles, 1, rd, n_reads, writes, n_writes);
}

static void cm_dispatch_shape(vk_ctx *c, const cm_shape *sh, int grouped, int xform, uint32_t x_rows, ob_dtype wt,
                              ob_pc_matmul *pc, uint32_t groups_y, const vk_range *reads, int n_reads,
                              const vk_range *writes, int n_writes);

/* Of the dense products cm2 would take, those that fill the device with matmul_cm's own tiles unsplit (at least
 * CM_BIG_TILES of 128 x 128, or for Q8_0 of 128 x 64) run on the KHR build of matmul_cm instead, where cm2's
 * workgroup-scope tiles and (Q8_0) decode functions are slower (OMNI_VK_CM_BIG=0: cm2 for them too). H100,
 * vulkan_bench gemm, n = 512, ms per call, cm2 vs the KHR matmul_cm: q [4096 x 2048] bf16 0.0524 vs 0.0469 (128 x
 * 128), q8_0 0.0747 vs 0.0571; o [2048 x 4096] q8_0 0.0896 vs 0.0714 (128 x 64); o bf16 0.0691 vs 0.0827 and k/v
 * [512 x 2048] 0.0184 vs 0.0231 stay on cm2 (split over K there). Only within cm2's range of x rows (the thinker's
 * prefill chunks, where it was measured): the products cm2 never takes (the encoders') keep the usual dense tile.
 * Returns the shape, or NULL for cm2's turn.
 * Measured and not kept (session 13, vulkan_bench gemm, ms per call / TFLOP/s): builds of matmul_cm.comp with 64 x
 * 64 outputs per subgroup and 32-column slices (CM_NSG, CM_BK): 128 x 128 on 4 subgroups (234 registers) q [4096 x
 * 2048] at n = 512 0.0860 / 100 against 0.0484 / 178, at n = 4096 0.404 / 170 against 0.330 / 208; 256 x 128 on 8
 * (222 registers) 0.1085 / 79 at n = 512 (64 workgroups), 0.473 / 145 at n = 4096. Fewer fragment loads per product
 * did not help: this kernel is bound by latency (2 subgroups per SM quarter, a barrier per slice), not by shared
 * memory bandwidth. cm2 on a full grid (OMNI_VK_CM2_MAX_N=0): 0.382 / 180, below matmul_cm's 208. */
#define CM_BIG_TILES 128u
static const cm_shape *cm_big(vk_ctx *c, ob_dtype wt, const ob_pc_matmul *pc) {
    if (!c->cm_khr || !vk_cm2_on(c, wt) || !cm2_n_ok(pc) || vk_env_now("OMNI_VK_CM_BIG", 1) <= 0 ||
        getenv("OMNI_VK_CM_DENSE"))
        return NULL;
    uint32_t gx = (pc->rows + 127) / 128, t128 = gx * ((pc->n + 127) / 128), t64 = gx * ((pc->n + 63) / 64);
    if (t128 >= CM_BIG_TILES) return &cm_shapes[4];
    if (wt == OB_Q8_0 && t64 >= CM_BIG_TILES) return &cm_shapes[0];
    return NULL;
}

void vk_matmul_cm_dispatch(vk_ctx *c, int grouped, ob_dtype wt, ob_pc_matmul *pc, uint32_t groups_y,
                           const vk_range *reads, int n_reads, const vk_range *writes, int n_writes) {
    const cm_shape *big = grouped ? NULL : cm_big(c, wt, pc);
    if (big && c->caps.max_shared >= CM_MATMUL_SHARED(big->bm, big->bn)) {
        int xform = vk_cm_x16(c, 0) ? VK_CM_X_CONVERT : VK_CM_X32;
        cm_dispatch_shape(c, big, 0, xform, pc->n, wt, pc, groups_y, reads, n_reads, writes, n_writes);
        return;
    }
    if (!grouped && cm2_dispatch(c, wt, pc, reads, n_reads, writes, n_writes)) return;
    int xform = !grouped && vk_cm_x16(c, 0) ? VK_CM_X_CONVERT : VK_CM_X32;
    vk_matmul_cm_dispatch_x(c, grouped, xform, pc->n, wt, pc, groups_y, reads, n_reads, writes, n_writes);
}

void vk_matmul_cm_dispatch_x(vk_ctx *c, int grouped, int xform, uint32_t x_rows, ob_dtype wt, ob_pc_matmul *pc,
                             uint32_t groups_y, const vk_range *reads, int n_reads, const vk_range *writes,
                             int n_writes) {
    cm_dispatch_shape(c, cm_pick(c, grouped != 0), grouped, xform, x_rows, wt, pc, groups_y, reads,
                      n_reads, writes, n_writes);
}

static void cm_dispatch_shape(vk_ctx *c, const cm_shape *sh, int grouped, int xform, uint32_t x_rows, ob_dtype wt,
                              ob_pc_matmul *pc, uint32_t groups_y, const vk_range *reads, int n_reads,
                              const vk_range *writes, int n_writes) {
    /* grouped 3: the grouped down projection (MODE 1) writing fp16 (matmul_cm.comp OUT16; fp16 x only) */
    uint32_t out16 = grouped == 3;
    if (out16) {
        grouped = 1;
        if (xform == VK_CM_X32 || pc->accumulate || pc->y % 16 || pc->y_stride % 8 || pc->rows % 8) {
            vk_fail(c, "matmul_cm: fp16 output needs fp16 x, 16-byte aligned rows of a multiple of 8, no accumulation");
            return;
        }
    }
    /* grouped 2: gate and up in one tile, BM/2 output rows each */
    uint32_t bm_out = grouped == 2 ? sh->bm / 2 : sh->bm, gx = (pc->rows + bm_out - 1) / bm_out;
    if (!grouped) groups_y = (pc->n + sh->bn - 1) / sh->bn;
    uint32_t slices = (pc->cols + 63) / 64, split = 1;
    if (!grouped && vk_env_now("OMNI_VK_CM_SPLIT", 1) && gx * groups_y < CM_SPLIT_BELOW) {
        split = (2 * CM_SPLIT_BELOW + gx * groups_y - 1) / (gx * groups_y);
        if (split > CM_SPLIT_MAX) split = CM_SPLIT_MAX;
        if (split > slices / 2) split = slices / 2;
    }
    /* a small product split over K (the router) converts its x only if a copy is already there: the conversion
     * would cost as much as the product's own x reads */
    if (xform == VK_CM_X_CONVERT && (split > 1 || x_rows == 0) && !x16_valid(c, pc, x_rows))
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
    int x16 = xform != VK_CM_X32;
    /* ids 1 (weight type) and 6 (mode) as matmul.comp; 2 (SKIP) stays 0 (see matmul_cm.comp) */
    /* id 4: Q8_0 quants decoded in packed fp16 (matmul_cm.comp Q8H; the same fp16 weights; OMNI_VK_CM_Q8H=0 the fp32
     * products). H100, pp512 Q8_0, one load alternating: experts 22.3 -> 20.6 ms per pass (docs/benchmarks.md) */
    uint32_t q8h = wt == OB_Q8_0 && vk_env_now("OMNI_VK_CM_Q8H", 1) > 0;
    /* id 2 (SKIP): OMNI_VK_CM_SKIP=1 lets subgroups skip fragments past the tile's rows; slower with either build
     * on the H100 (KHR, one load alternating: pp512 BF16 15,850 vs 15,079-15,190 t/s, Q8_0 15,838 vs 14,566-14,631;
     * experts 19.7 -> 20.2 ms, projections 7.3 -> 8.4 ms per pass), kept as a switch for other devices */
    uint32_t skip = vk_env_now("OMNI_VK_CM_SKIP", 0) > 0;
    uint32_t spec[7] = { 0, (uint32_t)wt, skip, out16, q8h, 0, (uint32_t)grouped };
    VkPipeline p = vk_pipeline(c, sh->sh[x16], spec, 7);
    vk_gemm_split(c, p, pc, &px, gx, groups_y, split, rd, n_reads, writes, n_writes);
}

/* attn_flash_cm.comp: head_dim 128 (the thinker), and the builds padded to 64 and 80 dims for head dims 64..124
 * (multiples of 4: the audio encoder's 64, the vision encoder's 72; smaller heads would waste most of a padded
 * tile); 16-byte vector loads of q, k, v, out. On by default where NV cooperative matrix is (OMNI_VK_ATTN_CM=0: the
 * fp32 flash kernel, attn_flash.comp; OMNI_VK_ATTN_CM_SMALL=0: the padded builds off, head dim 128 only). The padded
 * builds were measured on an H100 (vision encoder 1024^2: 1.20 -> 0.34 s, audio unchanged; docs/benchmarks.md). */
int vk_attn_cm_ok(vk_ctx *c, const ob_pc_attn *pc) {
    if (!vk_env_now("OMNI_VK_ATTN_CM", 1)) return 0;
    if (!cm_fragments_ok(c)) return 0;
    if (c->caps.max_shared < CM_ATTN_SHARED) return 0;
    int small =
        vk_env_now("OMNI_VK_ATTN_CM_SMALL", 1) && pc->head_dim >= 64 && pc->head_dim < 128 && pc->head_dim % 4 == 0;
    return (pc->head_dim == 128 || small) && (pc->q | pc->kc | pc->vc | pc->dst) % 16 == 0;
}

/* A workgroup takes 64 (query, head) rows: 64 / HPW queries of HPW heads that share a kv head, so each K/V block
 * it stages (fp32 -> fp16) serves HPW heads. HPW is the largest of {4, 2, 1} that divides the group size
 * (n_heads / n_kv; 8 for the thinker, 1 for the encoders) unless OMNI_VK_ATTN_CM_HPW=1|2|4 asks for less (or a
 * divisor). OMNI_VK_ATTN_CM_TAU=N (0..16, default 8): the kernel's lazy-maximum slack in base-2 units (0: exact
 * online softmax, a rescale of O at every raise of a row maximum; the tests run both).
 * Tried on the H100 and removed again: the next K/V block loaded one block ahead through registers (slower, see
 * the kernel's header), the softmax on the S fragments (wrong there: rel err 1.5-5.9), 64-key blocks and key ranges
 * split over several workgroups (pp512 attention 3.31 / 4.53 vs 3.26 ms). Session 13: a flash-attention kernel on NV
 * cooperative matrix 2 (workgroup-scope Q, K, V, S, O tiles of 256 invocations; row maximum by coopMatReduceNV,
 * row sums by a product with ones, the rescale of O by a smeared reduction) was right (rel err 2.5e-4 on these
 * tests) and slower: pp512 BF16 attention 3.94-4.00 ms per pass with 64 queries x 64 keys against this kernel's
 * 2.44 (128 x 64 4.62, 64 x 32 5.19, 64 x 128 4.03, 128 x 128 4.72, 32 x 64 4.66). The next block's fp16 K/V
 * loads issued right after the current block is staged (8 uvec4 more a thread; KHR build) were slower as well:
 * 2.61 / 2.62 ms against 2.41 / 2.45 (right: the attention tests passed). */
void vk_attn_cm_dispatch(vk_ctx *c, ob_pc_attn *pc, const vk_range *reads, int n_reads, const vk_range *writes,
                         int n_writes) {
    uint32_t grp = pc->n_heads / pc->n_kv, hpw = (uint32_t)vk_env_now("OMNI_VK_ATTN_CM_HPW", 4);
    if (hpw != 1 && hpw != 2 && hpw != 4) hpw = 4;
    while (hpw > 1 && grp % hpw) hpw /= 2;
    int tau = vk_env_now("OMNI_VK_ATTN_CM_TAU", 8);
    /* spec[2]: the KV cache's format (1 fp16: its 16-byte words go to the tiles as they are; 0 fp32, converted) */
    uint32_t spec[3] = { hpw, (uint32_t)(tau < 0 ? 0 : tau > 16 ? 16 : tau), (uint32_t)vk_kv16(c, (int)pc->head_dim) };
    vk_shader_id sh = pc->head_dim <= 64   ? SH_ATTN_FLASH_CM64
                      : pc->head_dim <= 80 ? SH_ATTN_FLASH_CM80
                                           : SH_ATTN_FLASH_CM;
    VkPipeline p = vk_pipeline(c, sh, spec, 3);
    uint32_t qpw = VK_CM_ATTN_BQ / hpw;
    vk_dispatch(c, p, pc, sizeof *pc, (pc->n + qpw - 1) / qpw, pc->n_heads / hpw, 1, reads, n_reads, writes,
                n_writes);
}
