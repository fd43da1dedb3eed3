#version 460
// matmul_cm2.comp — y[n][rows] (+)= x[n][cols] · Wᵀ on tensor cores through NV cooperative matrix 2
// (GL_NV_cooperative_matrix2 on top of GL_KHR_cooperative_matrix): the dense prefill projections (MODE 0 of
// matmul.comp / matmul_cm.comp) for f16 and bf16 weights against fp16 activations (the copy cm_x16.comp makes once
// per x, as matmul_cm.comp's CM_X16 build reads it), fp32 sums and output.
//
// Unlike matmul_cm.comp (subgroup-scope 16 x 16 fragments, our own shared-memory staging) the whole workgroup owns
// one BM x BN accumulator (gl_ScopeWorkgroup): the driver decides how the tile is split over the subgroups and
// stages the operands itself. Operands are addressed as tensors (tensorLayoutNV: dimensions and row stride), so a
// K slice is one coopMatLoadTensorNV per operand:
//   A = W[m0 .. m0+BM) [k .. k+BK)         rows x cols, row-major (stride cols)
//   B = x[j0 .. j0+BN) [k .. k+BK)ᵀ        n x cols row-major, read through a transposing view as the K x N operand
//   y[j0 .. j0+BN) [m0 .. m0+BM)           stored through the same transposing view (y is n x rows)
// Tiles that reach past rows, n or cols use the clamping layouts (out-of-range elements read as 0, stores dropped),
// so there are no ragged-edge paths of our own; tiles wholly inside use unclamped layouts (fewer checks).
// Split-K as matmul_cm.comp (pc.pad = splits > 1, grid z): workgroup z sums whole BK slices of its share of the
// columns into the partial plane y + z·n·y_stride (no accumulation); mm_ksum.comp adds the planes.
// bf16 weights go through a decode function: each element widened exactly to fp32 and rounded once to fp16, as
// matmul_cm.comp's bf2h does, so both kernels multiply the same fp16 operands (fp32 sums, in another order).
// Q8_0 weights (our layout, vk_push.h: pc.w an int8 tensor rows x cols, pc.s its fp16 scales rows x cols/32, one
// per block of 32 along a row) go through a decode function too: the quants are read in blocks of QB (4, 8, 16 or
// 32 bytes of one row: the decode function's block type), the scale from pc.s at the block's coordinates (row,
// column / 32), and each element is q·d taken in fp32 (exact: 8 x 11 significant bits) and rounded once to fp16, as
// matmul_cm.comp's w_half does, so both kernels again multiply the same fp16 operands. (The idea of dequantizing in
// the tensor block load is llama.cpp's coopmat2 path, vulkan-shaders/dequant_funcs_cm2.glsl; its Q8_0 blocks hold
// scale and quants together, ours are two tensors, so the code is our own.)
// Mirrors the CPU back-end's matmul y[i][r] = Σ_c x[i][c]·W[r][c] up to fp16 rounding of both operands.
// Host requirements (vk_coopmat.c, vk_cm2_*): VK_NV_cooperative_matrix2 with workgroup scope, flexible dimensions,
// tensor addressing and block loads; x fp16 (x_stride in halves) 16-byte aligned; cols % 8 == 0 (Q8_0: cols % 32
// == 0, quants 16-byte aligned, scales 2-byte aligned).
// Needs a glslang that knows GL_NV_cooperative_matrix2 (16.x: tools/newglslc.sh, GLSLC2 in shaders/shaders.mk).
#extension GL_KHR_cooperative_matrix : require
#extension GL_NV_cooperative_matrix2 : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_EXT_shader_16bit_storage : require
#define PC_MATMUL
#include "common.glsl"

// tile shape as specialization constants (workgroup-scope matrices take them; the driver sizes its staging from
// them at pipeline creation): BM weight rows x BN x rows, BK columns per step, WG threads
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint WTYPE = VK_WT_BF16;
layout(constant_id = 2) const uint BM = 128;
layout(constant_id = 3) const uint BN = 128;
layout(constant_id = 4) const uint BK = 32;
// K steps per iteration of the unclamped loop, unrolled (independent loads the driver can issue ahead of the MMAs)
layout(constant_id = 5) const uint UNROLL = 4;
// BLK = 1 (the host's default): fp16 operands (x, f16 weights) also through block loads of two halves per 32-bit
// word and a decode function, as the bf16 weights. On the H100 this runs 2.2x faster than plain fp16 tensor loads
// (q [4096 x 2048] x 512: 0.0505 vs 0.1115 ms; docs/benchmarks.md); BLK = 0 keeps the plain form for comparisons.
layout(constant_id = 6) const uint BLK = 0;
// Q8_0: quants per block of the decode function (4, 8, 16 or 32; the host's default 16 was the fastest on the H100:
// q [4096 x 2048] x 512 0.0755 ms against 0.0852 / 0.0791 / 0.0793 for 4 / 8 / 32, vk_coopmat.c CM2_Q8_BLOCK)
layout(constant_id = 7) const uint QB = 16;

layout(buffer_reference, std430, buffer_reference_align = 16) readonly buffer BufH { float16_t v[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) readonly buffer BufW32 { uint v[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) buffer BufY { float v[]; };
// two bf16 weights of a row in one 32-bit word (low half first): the block the decode function is handed (block
// size 1 x 2 elements; no 16-bit integer type, so no shaderInt16)
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer BlkBF16 { uint b; };

// Q8_0: QB quants of one row (4 per 32-bit word, the first in the low byte) and the fp16 scales of the tensor
layout(buffer_reference, std430, buffer_reference_align = 4) readonly buffer BlkQ4 { uint b; };
layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer BlkQ8 { uvec2 b; };
layout(buffer_reference, std430, buffer_reference_align = 16) readonly buffer BlkQ16 { uvec4 b; };
layout(buffer_reference, std430, buffer_reference_align = 16) readonly buffer BlkQ32 { uvec4 b[2]; };
layout(buffer_reference, std430, buffer_reference_align = 2) readonly buffer BufS16 { float16_t v[]; };

// q (the byte of word w at element c of the block) times the scale of block (row, col / 32), in fp32, rounded once
float16_t q8_elem(uint w, const in uint blockCoords[2], uint c) {
    float d = float(BufS16(pc.s).v[blockCoords[0] * (pc.cols / 32u) + blockCoords[1] / (32u / QB)]);
    return float16_t(float(bitfieldExtract(int(w), int((c & 3u) * 8u), 8)) * d);
}
float16_t dec_q4(const in BlkQ4 bl, const in uint blockCoords[2], const in uint coordInBlock[2]) {
    return q8_elem(bl.b, blockCoords, coordInBlock[1]);
}
float16_t dec_q8(const in BlkQ8 bl, const in uint blockCoords[2], const in uint coordInBlock[2]) {
    uint c = coordInBlock[1];
    return q8_elem(bl.b[c >> 2], blockCoords, c);
}
float16_t dec_q16(const in BlkQ16 bl, const in uint blockCoords[2], const in uint coordInBlock[2]) {
    uint c = coordInBlock[1];
    return q8_elem(bl.b[c >> 2], blockCoords, c);
}
float16_t dec_q32(const in BlkQ32 bl, const in uint blockCoords[2], const in uint coordInBlock[2]) {
    uint c = coordInBlock[1];
    return q8_elem(bl.b[c >> 4][(c >> 2) & 3u], blockCoords, c);
}

float16_t dec_h2(const in BlkBF16 bl, const in uint blockCoords[2], const in uint coordInBlock[2]) {
    return float16_t(unpackHalf2x16(bl.b)[coordInBlock[1]]);
}

float16_t dec_bf16(const in BlkBF16 bl, const in uint blockCoords[2], const in uint coordInBlock[2]) {
    uint w = bl.b;
    return float16_t(uintBitsToFloat(coordInBlock[1] == 0u ? w << 16 : w & 0xffff0000u));
}

#define MAT_A coopmat<float16_t, gl_ScopeWorkgroup, BM, BK, gl_MatrixUseA>
#define MAT_B coopmat<float16_t, gl_ScopeWorkgroup, BK, BN, gl_MatrixUseB>
#define MAT_C coopmat<float, gl_ScopeWorkgroup, BM, BN, gl_MatrixUseAccumulator>

// one K step at column k with layouts LA (weights) and LB (x)
#define STEP(LA, LB, k)                                                                                         \
    {                                                                                                           \
        MAT_A a;                                                                                                \
        MAT_B b;                                                                                                \
        if (WTYPE == VK_WT_Q8_0 && QB == 4u)                                                                    \
            coopMatLoadTensorNV(a, BufW32(pc.w).v, 0u, sliceTensorLayoutNV(LA, m0, BM, k, BK), dec_q4);         \
        else if (WTYPE == VK_WT_Q8_0 && QB == 8u)                                                               \
            coopMatLoadTensorNV(a, BufW32(pc.w).v, 0u, sliceTensorLayoutNV(LA, m0, BM, k, BK), dec_q8);         \
        else if (WTYPE == VK_WT_Q8_0 && QB == 32u)                                                              \
            coopMatLoadTensorNV(a, BufW32(pc.w).v, 0u, sliceTensorLayoutNV(LA, m0, BM, k, BK), dec_q32);        \
        else if (WTYPE == VK_WT_Q8_0)                                                                           \
            coopMatLoadTensorNV(a, BufW32(pc.w).v, 0u, sliceTensorLayoutNV(LA, m0, BM, k, BK), dec_q16);        \
        else if (WTYPE == VK_WT_BF16)                                                                           \
            coopMatLoadTensorNV(a, BufW32(pc.w).v, 0u, sliceTensorLayoutNV(LA, m0, BM, k, BK), dec_bf16);       \
        else if (BLK != 0u)                                                                                     \
            coopMatLoadTensorNV(a, BufW32(pc.w).v, 0u, sliceTensorLayoutNV(LA, m0, BM, k, BK), dec_h2);         \
        else                                                                                                    \
            coopMatLoadTensorNV(a, BufH(pc.w).v, 0u, sliceTensorLayoutNV(LA, m0, BM, k, BK));                   \
        if (BLK != 0u)                                                                                          \
            coopMatLoadTensorNV(b, BufW32(pc.x).v, 0u, sliceTensorLayoutNV(LB, j0, BN, k, BK), vt, dec_h2);     \
        else                                                                                                    \
            coopMatLoadTensorNV(b, BufH(pc.x).v, 0u, sliceTensorLayoutNV(LB, j0, BN, k, BK), vt);               \
        acc = coopMatMulAdd(a, b, acc);                                                                         \
    }

void main() {
    uint m0 = gl_WorkGroupID.x * BM, j0 = gl_WorkGroupID.y * BN;
    uint rows = pc.rows, cols = pc.cols, n = pc.n;

    tensorLayoutNV<2> la = createTensorLayoutNV(2);
    tensorLayoutNV<2> lb = createTensorLayoutNV(2);
    tensorLayoutNV<2, gl_CooperativeMatrixClampModeConstantNV> lac =
        createTensorLayoutNV(2, gl_CooperativeMatrixClampModeConstantNV);
    tensorLayoutNV<2, gl_CooperativeMatrixClampModeConstantNV> lbc =
        createTensorLayoutNV(2, gl_CooperativeMatrixClampModeConstantNV);
    tensorLayoutNV<2, gl_CooperativeMatrixClampModeConstantNV> ld =
        createTensorLayoutNV(2, gl_CooperativeMatrixClampModeConstantNV);
    bool q8 = WTYPE == VK_WT_Q8_0, wblk = q8 || WTYPE == VK_WT_BF16 || BLK != 0u;
    uint wb = q8 ? QB : 2u;  // weights per block: Q8_0 QB quants; else 1 x 2 elements (one 32-bit word)
    if (wblk) {
        la = setTensorLayoutBlockSizeNV(la, 1, wb);
        lac = setTensorLayoutBlockSizeNV(lac, 1, wb);
    }
    if (BLK != 0u) {
        lb = setTensorLayoutBlockSizeNV(lb, 1, 2);
        lbc = setTensorLayoutBlockSizeNV(lbc, 1, 2);
    }
    uint xstride = BLK != 0u ? pc.x_stride / 2u : pc.x_stride;
    la = setTensorLayoutDimensionNV(la, rows, cols);
    uint wstride = wblk ? cols / wb : cols;  // row stride in blocks
    la = setTensorLayoutStrideNV(la, wstride, 1);
    lac = setTensorLayoutDimensionNV(lac, rows, cols);
    lac = setTensorLayoutStrideNV(lac, wstride, 1);
    lb = setTensorLayoutDimensionNV(lb, n, cols);
    lb = setTensorLayoutStrideNV(lb, xstride, 1);
    lbc = setTensorLayoutDimensionNV(lbc, n, cols);
    lbc = setTensorLayoutStrideNV(lbc, xstride, 1);
    ld = setTensorLayoutDimensionNV(ld, n, rows);
    ld = setTensorLayoutStrideNV(ld, pc.y_stride, 1);
    tensorViewNV<2, false, 1, 0> vt = createTensorViewNV(2, false, 1, 0);

    // this workgroup's columns [kbeg, kend) and its output plane (element offset yo)
    uint kbeg = 0u, kend = cols, yo = 0u;
    if (pc.pad > 1u) {
        uint slices = (cols + BK - 1u) / BK, per = (slices + pc.pad - 1u) / pc.pad;
        kbeg = min(cols, gl_WorkGroupID.z * per * BK);
        kend = min(cols, kbeg + per * BK);
        yo = gl_WorkGroupID.z * n * pc.y_stride;
    }

    MAT_C acc = MAT_C(0.0f);
    if (pc.accumulate != 0u) coopMatLoadTensorNV(acc, BufY(pc.y).v, 0u, sliceTensorLayoutNV(ld, j0, BN, m0, BM), vt);

    if (m0 + BM <= rows && j0 + BN <= n && cols % BK == 0u) {
        // strides known to keep 16-byte rows (the host guarantees cols % 8 == 0 and x_stride == cols; Q8_0 rows
        // of cols % 32 == 0 bytes), as a hint that lets the driver use 16-byte loads
        la = setTensorLayoutStrideNV(la, wstride & (q8 ? ~(32u / QB - 1u) : wblk ? ~3u : ~7u), 1);
        lb = setTensorLayoutStrideNV(lb, xstride & (BLK != 0u ? ~3u : ~7u), 1);
        uint k = kbeg;
        for (; k + UNROLL * BK <= kend; k += UNROLL * BK) [[unroll]] for (uint u = 0u; u < UNROLL; u++)
            STEP(la, lb, k + u * BK)
        for (; k < kend; k += BK) STEP(la, lb, k)
    } else {
        for (uint k = kbeg; k < kend; k += BK) STEP(lac, lbc, k)
    }
    coopMatStoreTensorNV(acc, BufY(pc.y).v, yo, sliceTensorLayoutNV(ld, j0, BN, m0, BM), vt);
}
