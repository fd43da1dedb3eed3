#version 460
// matmul.comp — tiled y[n][rows] (+)= x[n][cols] · Wᵀ for prefill: a workgroup computes a BM (weight rows) × BN
// (x rows) tile, staging BK = 32 columns of both operands in shared memory per step (weights dequantized to fp32
// on the way in), and each thread accumulates a TM × TN block in registers in fp32.
// MODE 1 is the grouped MoE form: grid y walks the plan's tiles (expert, first sorted entry, count); the weight
// is that expert's matrix from the address table, x rows are gathered through tok[] (gather = 1) or taken in
// sorted order, and outputs are written in sorted order.
// Mirrors the CPU back-end's matmul: y[i][r] = Σ_c x[i][c]·W[r][c].
// The tile shape is fixed at compile time (MM_T = TM = TN; shaders.mk builds 4 as matmul, 8 as matmul_big): with
// specialization-constant array sizes and a fully unrolled k loop, NVIDIA's compiler took minutes per pipeline.
#define PC_MATMUL
#include "common.glsl"

#ifndef MM_T
#define MM_T 4
#endif
const uint WG = 256;
const uint TM = MM_T, TN = MM_T;
const uint BM = 16 * TM, BN = 16 * TN;  // a 16 x 16 grid of threads, TM x TN outputs each
const uint BK = 32;
layout(local_size_x = 256) in;
layout(constant_id = 1) const uint WTYPE = 0;
layout(constant_id = 6) const uint MODE = 0;
layout(constant_id = 7) const uint VEC = 1;

shared float ws[BK * BM];  // [k][m]
shared float xs[BK * BN];  // [k][n]

void main() {
    uint tid = gl_LocalInvocationID.x;
    uint tm = tid % (BM / TM), tn = tid / (BM / TM);
    uint rows = pc.rows, cols = pc.cols;
    uint m0 = gl_WorkGroupID.x * BM;
    uint64_t wbase = pc.w, sbase = pc.s;
    uint j0, cnt;
    if (MODE == 0) {
        j0 = gl_WorkGroupID.y * BN;
        cnt = min(BN, pc.n - j0);
    } else {
        uint tile = gl_WorkGroupID.y;
        BufI32 plan = BufI32(pc.tiles);
        if (tile >= uint(plan.v[0])) return;  // the grid is sized for the worst case
        int e = plan.v[1 + 3 * tile];
        j0 = uint(plan.v[2 + 3 * tile]);
        cnt = uint(plan.v[3 + 3 * tile]);
        BufU64 t = BufU64(pc.w + uint64_t(e) * 16u);
        wbase = t.v[0];
        sbase = t.v[1];
    }
    uint64_t rb = row_bytes(WTYPE, cols), sb = uint64_t(cols / 32u) * 2u;
    uint esz = WTYPE == VK_WT_F32 ? 4u : WTYPE == VK_WT_Q8_0 ? 1u : 2u;

    float acc[TM][TN];
    [[unroll]] for (uint i = 0; i < TM; i++)
        [[unroll]] for (uint j = 0; j < TN; j++) acc[i][j] = 0.0f;

    for (uint k0 = 0; k0 < cols; k0 += BK) {
        barrier();
        // weights: BM rows × BK columns
        if (VEC == 1) {
            uint epv = elems_per_vec(WTYPE), vpr = BK / epv;
            for (uint idx = tid; idx < BM * vpr; idx += WG) {
                uint r = idx % BM, p = idx / BM, row = m0 + r;
                vec4 w0 = vec4(0), w1 = vec4(0), w2 = vec4(0), w3 = vec4(0);
                if (row < rows) {
                    uint64_t ra = wbase + uint64_t(row) * rb;
                    dq_vec(WTYPE, BufUV4(ra + uint64_t(k0 + p * epv) * esz).v[0], w0, w1, w2, w3);
                    if (WTYPE == VK_WT_Q8_0) {
                        float d = f16_bits(ld_u16(sbase + uint64_t(row) * sb + uint64_t(k0 / 32u) * 2u));
                        w0 *= d; w1 *= d; w2 *= d; w3 *= d;
                    }
                }
                uint kb = p * epv;
                [[unroll]] for (uint e = 0; e < 4; e++) ws[(kb + e) * BM + r] = w0[e];
                if (epv >= 8) [[unroll]] for (uint e = 0; e < 4; e++) ws[(kb + 4 + e) * BM + r] = w1[e];
                if (epv == 16) {
                    [[unroll]] for (uint e = 0; e < 4; e++) ws[(kb + 8 + e) * BM + r] = w2[e];
                    [[unroll]] for (uint e = 0; e < 4; e++) ws[(kb + 12 + e) * BM + r] = w3[e];
                }
            }
        } else {
            for (uint idx = tid; idx < BM * BK; idx += WG) {
                uint r = idx % BM, kk = idx / BM, row = m0 + r, col = k0 + kk;
                float v = 0.0f;
                if (row < rows && col < cols)
                    v = ld_elem(WTYPE, wbase + uint64_t(row) * rb, sbase + uint64_t(row) * sb, col);
                ws[kk * BM + r] = v;
            }
        }
        // activations: BN rows × BK columns
        for (uint idx = tid; idx < BN * BK; idx += WG) {
            uint t = idx % BN, kk = idx / BN, col = k0 + kk;
            float v = 0.0f;
            if (t < cnt && col < cols) {
                uint j = j0 + t;
                uint xrow = (MODE == 1 && pc.gather != 0) ? uint(BufI32(pc.tok).v[j]) : j;
                v = BufF32(pc.x + (uint64_t(xrow) * pc.x_stride + col) * 4u).v[0];
            }
            xs[kk * BN + t] = v;
        }
        barrier();
        for (uint kk = 0; kk < BK; kk++) {
            float a[TM], b[TN];
            [[unroll]] for (uint i = 0; i < TM; i++) a[i] = ws[kk * BM + tm * TM + i];
            [[unroll]] for (uint j = 0; j < TN; j++) b[j] = xs[kk * BN + tn * TN + j];
            [[unroll]] for (uint i = 0; i < TM; i++)
                [[unroll]] for (uint j = 0; j < TN; j++) acc[i][j] += a[i] * b[j];
        }
    }
    [[unroll]] for (uint j = 0; j < TN; j++) {
        uint t = tn * TN + j;
        if (t >= cnt) continue;
        uint64_t yrow = uint64_t(j0 + t) * pc.y_stride;
        [[unroll]] for (uint i = 0; i < TM; i++) {
            uint row = m0 + tm * TM + i;
            if (row >= rows) continue;
            BufF32 y = BufF32(pc.y + (yrow + row) * 4u);
            y.v[0] = pc.accumulate != 0 ? y.v[0] + acc[i][j] : acc[i][j];
        }
    }
}
