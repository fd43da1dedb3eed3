#version 460
// matmul_cm2_moe.comp — the grouped MoE GEMMs of prefill (matmul_cm.comp MODE 1 and 2) on tensor cores through NV
// cooperative matrix 2, as matmul_cm2.comp does the dense products: one workgroup-scope BM x BN fp32 accumulator
// (two in MODE 2) per workgroup, operands as tensors through coopMatLoadTensorNV with 1 x 2 blocks (one 32-bit word)
// and a decode function (bf16 widened exactly and rounded once to fp16, as matmul_cm.comp's bf2h; fp16 as is).
// Grid y walks the plan's tiles (vk_push.h: expert, first sorted entry j0, count cnt; the plan is cut into tiles of
// BN entries), grid x the weight rows in BM steps. The tile's x rows are the sorted entries j0 .. j0 + cnt of an
// fp16 x that is already in sorted order: MODE 2 reads the gathered copy cm2_gather.comp makes (x[tok[j]] as fp16),
// MODE 1 the fp16 h MODE 2 wrote. Tensor layouts end at j0 + cnt, so rows past the tile read as 0 and their stores
// are dropped (the ragged token counts need no paths of our own; the next tile's entries are never touched).
//   MODE 1 (down):      y[j][r]  = Σ_c x[j][c]·W_e[r][c]                            fp32, y_stride in floats
//   MODE 2 (gate, up):  y[j][r]  = fp16(clamp(silu(Σ x·G_e[r]) · (Σ x·U_e[r])))     fp16, y_stride in halves
// pc.w (and in MODE 2 pc.s): the experts' tables (per expert 16 bytes: weight address, scale address); rows, cols:
// one expert's weight shape; x_stride in halves. MODE 2 mirrors matmul_cm.comp's CM_X16 MODE 2 (silu of common.glsl,
// the CPU back-end's swiglu), with fp32 sums in the driver's order.
// Host requirements (vk_coopmat.c, vk_cm2_grouped): as matmul_cm2.comp; cols % 8 == 0, x and y 16-byte aligned
// rows, f16 or bf16 weights. Needs GLSLC2 (shaders.mk).
#extension GL_KHR_cooperative_matrix : require
#extension GL_NV_cooperative_matrix2 : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_shader_16bit_storage : require
#define PC_MATMUL
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint WTYPE = VK_WT_BF16;
layout(constant_id = 2) const uint BM = 128;
layout(constant_id = 3) const uint BN = 64;
layout(constant_id = 4) const uint BK = 64;
layout(constant_id = 5) const uint UNROLL = 2;
layout(constant_id = 6) const uint MODE = 1;

layout(buffer_reference, std430, buffer_reference_align = 16) readonly buffer BufW32 { uint v[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) buffer BufY { float v[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) buffer BufYH { float16_t v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer Blk2 { uint b; };

float16_t dec_h2(const in Blk2 bl, const in uint blockCoords[2], const in uint coordInBlock[2]) {
    return float16_t(unpackHalf2x16(bl.b)[coordInBlock[1]]);
}

float16_t dec_bf16(const in Blk2 bl, const in uint blockCoords[2], const in uint coordInBlock[2]) {
    uint w = bl.b;
    return float16_t(uintBitsToFloat(coordInBlock[1] == 0u ? w << 16 : w & 0xffff0000u));
}

// silu(gate) element by element (MODE 2), then, after the product with up, the clamp to the fp16 range (as f2h)
float silu_e(const in uint r, const in uint c, const in float v) { return silu(v); }
float clamp_e(const in uint r, const in uint c, const in float v) { return clamp(v, -65504.0f, 65504.0f); }

#define MAT_A coopmat<float16_t, gl_ScopeWorkgroup, BM, BK, gl_MatrixUseA>
#define MAT_B coopmat<float16_t, gl_ScopeWorkgroup, BK, BN, gl_MatrixUseB>
#define MAT_C coopmat<float, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator>
#define MAT_H coopmat<float16_t, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator>

#define LOADW(m, base, LA, k)                                                                                   \
    if (WTYPE == VK_WT_BF16)                                                                                    \
        coopMatLoadTensorNV(m, BufW32(base).v, 0u, sliceTensorLayoutNV(LA, m0, BM, k, BK), dec_bf16);           \
    else                                                                                                        \
        coopMatLoadTensorNV(m, BufW32(base).v, 0u, sliceTensorLayoutNV(LA, m0, BM, k, BK), dec_h2);

// one K step at column k: weights through LA
#define STEP(LA, k)                                                                                             \
    {                                                                                                           \
        MAT_B b;                                                                                                \
        coopMatLoadTensorNV(b, BufW32(pc.x).v, 0u, sliceTensorLayoutNV(lb, j0, BN, k, BK), vt, dec_h2);         \
        MAT_A a;                                                                                                \
        LOADW(a, wg, LA, k)                                                                                     \
        acc = coopMatMulAdd(a, b, acc);                                                                         \
        if (MODE == 2) {                                                                                        \
            MAT_A au;                                                                                           \
            LOADW(au, wu, LA, k)                                                                                \
            accu = coopMatMulAdd(au, b, accu);                                                                  \
        }                                                                                                       \
    }

void main() {
    uint tile = gl_WorkGroupID.y;
    BufI32 plan = BufI32(pc.tiles);
    if (tile >= uint(plan.v[0])) return;  // the grid is sized for the worst case (the whole workgroup leaves)
    int e = plan.v[1 + 3 * tile];
    uint j0 = uint(plan.v[2 + 3 * tile]), cnt = uint(plan.v[3 + 3 * tile]);
    uint64_t wg = BufU64(pc.w + uint64_t(e) * 16u).v[0];
    uint64_t wu = MODE == 2 ? BufU64(pc.s + uint64_t(e) * 16u).v[0] : wg;
    uint m0 = gl_WorkGroupID.x * BM;
    uint rows = pc.rows, cols = pc.cols, jend = j0 + cnt;

    // weights: rows x cols in 1 x 2 blocks (row stride cols / 2 words); unclamped where the tile lies inside
    tensorLayoutNV<2> la = createTensorLayoutNV(2);
    tensorLayoutNV<2, gl_CooperativeMatrixClampModeConstantNV> lac =
        createTensorLayoutNV(2, gl_CooperativeMatrixClampModeConstantNV);
    la = setTensorLayoutBlockSizeNV(la, 1, 2);
    lac = setTensorLayoutBlockSizeNV(lac, 1, 2);
    la = setTensorLayoutDimensionNV(la, rows, cols);
    lac = setTensorLayoutDimensionNV(lac, rows, cols);
    lac = setTensorLayoutStrideNV(lac, cols / 2u, 1);
    // the stride hint of matmul_cm2.comp (16-byte rows: cols % 8 == 0)
    la = setTensorLayoutStrideNV(la, (cols / 2u) & ~3u, 1);
    // x: the sorted fp16 rows up to the tile's end, in blocks as the weights
    tensorLayoutNV<2, gl_CooperativeMatrixClampModeConstantNV> lb =
        createTensorLayoutNV(2, gl_CooperativeMatrixClampModeConstantNV);
    lb = setTensorLayoutBlockSizeNV(lb, 1, 2);
    lb = setTensorLayoutDimensionNV(lb, jend, cols);
    lb = setTensorLayoutStrideNV(lb, pc.x_stride / 2u, 1);
    // y: rows up to the tile's end (the next tile's rows are another workgroup's)
    tensorLayoutNV<2, gl_CooperativeMatrixClampModeConstantNV> ld =
        createTensorLayoutNV(2, gl_CooperativeMatrixClampModeConstantNV);
    ld = setTensorLayoutDimensionNV(ld, jend, rows);
    ld = setTensorLayoutStrideNV(ld, pc.y_stride, 1);
    tensorViewNV<2, false, 1, 0> vt = createTensorViewNV(2, false, 1, 0);

    MAT_C acc = MAT_C(0.0f), accu = MAT_C(0.0f);
    if (m0 + BM <= rows && cols % BK == 0u) {
        uint k = 0u;
        for (; k + UNROLL * BK <= cols; k += UNROLL * BK) [[unroll]] for (uint u = 0u; u < UNROLL; u++)
            STEP(la, k + u * BK)
        for (; k < cols; k += BK) STEP(la, k)
    } else {
        for (uint k = 0u; k < cols; k += BK) STEP(lac, k)
    }
    if (MODE == 2) {
        coopMatPerElementNV(acc, acc, silu_e);
        acc = acc * accu;
        coopMatPerElementNV(acc, acc, clamp_e);
        MAT_H h = MAT_H(acc);
        coopMatStoreTensorNV(h, BufYH(pc.y).v, 0u, sliceTensorLayoutNV(ld, j0, BN, m0, BM), vt);
    } else {
        coopMatStoreTensorNV(acc, BufY(pc.y).v, 0u, sliceTensorLayoutNV(ld, j0, BN, m0, BM), vt);
    }
}
