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

// Tiles in shared memory as vec4s: ws4[k][m/4], xs4[k][n/4], so a thread reads its 4 or 8 rows (tokens) of one k
// as whole vectors. Accumulators are mat4s updated with outerProduct: registers, no arrays (NVIDIA kept an
// acc[TM][TN] array in local memory, at 0.1 TFLOP/s).
shared vec4 ws4[BK * BM / 4];
shared vec4 xs4[BK * BN / 4];
#define WS(k, m) ws4[(k) * (BM / 4) + ((m) >> 2)][(m) & 3]
#define XS(k, n) xs4[(k) * (BN / 4) + ((n) >> 2)][(n) & 3]

// 4 consecutive k values of weight row m
void put_w4(uint k, uint m, vec4 w) {
    WS(k, m) = w.x;
    WS(k + 1, m) = w.y;
    WS(k + 2, m) = w.z;
    WS(k + 3, m) = w.w;
}

uint g_rows, g_cnt, g_j0;
uint64_t g_y;

// y[j0 + t][row + i] (+)= v[i] for the rows and tokens that exist
void store1(uint t, uint row, float v) {
    if (t >= g_cnt || row >= g_rows) return;
    BufF32 y = BufF32(g_y + (uint64_t(g_j0 + t) * pc.y_stride + row) * 4u);
    y.v[0] = pc.accumulate != 0 ? y.v[0] + v : v;
}
void store4(uint t, uint row, vec4 v) {
    store1(t, row, v.x);
    store1(t, row + 1, v.y);
    store1(t, row + 2, v.z);
    store1(t, row + 3, v.w);
}
// the four token columns of an accumulator: rows row..row+3, tokens t..t+3
#define STORE_MAT(acc, t, row)                                                                                  \
    store4((t), (row), acc[0]);                                                                                 \
    store4((t) + 1, (row), acc[1]);                                                                             \
    store4((t) + 2, (row), acc[2]);                                                                             \
    store4((t) + 3, (row), acc[3]);

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

    // split-K (MODE 0, pc.pad = number of splits > 1, grid z = split), as matmul_cm.comp: this workgroup sums only
    // its share of the columns (whole BK slices) into partial plane z at y + z·n·y_stride, without accumulation;
    // mm_ksum.comp (or the next op, vk_ksum_take) adds the planes
    uint kbeg = 0u, kend = cols;
    g_y = pc.y;
    if (MODE == 0 && pc.pad > 1u) {
        uint slices = (cols + BK - 1u) / BK, per = (slices + pc.pad - 1u) / pc.pad;
        kbeg = min(cols, gl_WorkGroupID.z * per * BK);
        kend = min(cols, kbeg + per * BK);
        g_y += uint64_t(gl_WorkGroupID.z) * pc.n * pc.y_stride * 4u;
    }
    g_rows = rows;
    g_cnt = cnt;
    g_j0 = j0;
    mat4 acc00 = mat4(0.0f);
#if MM_T == 8
    mat4 acc01 = mat4(0.0f), acc10 = mat4(0.0f), acc11 = mat4(0.0f);
#endif

    for (uint k0 = kbeg; k0 < kend; k0 += BK) {
        barrier();
        // weights: BM rows × BK columns
        if (VEC == 1) {
            uint epv = elems_per_vec(WTYPE), vpr = BK / epv;
            for (uint idx = tid; idx < BM * vpr; idx += WG) {
                uint r = idx % BM, p = idx / BM, row = m0 + r;
                vec4 w0 = vec4(0), w1 = vec4(0), w2 = vec4(0), w3 = vec4(0);
                if (row < rows) {
                    uint64_t ra = wbase + uint64_t(row) * rb;
                    dq_vec_bits(WTYPE, BufUV4(ra + uint64_t(k0 + p * epv) * esz).v[0], w0, w1, w2, w3);
                    if (WTYPE == VK_WT_Q8_0) {
                        float d = f16_bits(ld_u16(sbase + uint64_t(row) * sb + uint64_t(k0 / 32u) * 2u));
                        w0 *= d; w1 *= d; w2 *= d; w3 *= d;
                    }
                }
                uint kb = p * epv;
                put_w4(kb, r, w0);
                if (epv >= 8) put_w4(kb + 4, r, w1);
                if (epv == 16) {
                    put_w4(kb + 8, r, w2);
                    put_w4(kb + 12, r, w3);
                }
            }
        } else {
            for (uint idx = tid; idx < BM * BK; idx += WG) {
                uint r = idx % BM, kk = idx / BM, row = m0 + r, col = k0 + kk;
                float v = 0.0f;
                if (row < rows && col < kend)
                    v = ld_elem(WTYPE, wbase + uint64_t(row) * rb, sbase + uint64_t(row) * sb, col);
                WS(kk, r) = v;
            }
        }
        // activations: BN rows × BK columns
        for (uint idx = tid; idx < BN * BK; idx += WG) {
            uint t = idx % BN, kk = idx / BN, col = k0 + kk;
            float v = 0.0f;
            if (t < cnt && col < kend) {
                uint j = j0 + t;
                uint xrow = (MODE == 1 && pc.gather != 0) ? uint(BufI32(pc.tok).v[j]) : j;
                v = BufF32(pc.x + (uint64_t(xrow) * pc.x_stride + col) * 4u).v[0];
            }
            XS(kk, t) = v;
        }
        barrier();
        for (uint kk = 0; kk < BK; kk++) {
            uint ab = kk * (BM / 4) + tm * (TM / 4), bb = kk * (BN / 4) + tn * (TN / 4);
            vec4 a0 = ws4[ab], b0 = xs4[bb];
            acc00 += outerProduct(a0, b0);  // column j: rows a0 times token b0[j]
#if MM_T == 8
            vec4 a1 = ws4[ab + 1], b1 = xs4[bb + 1];
            acc01 += outerProduct(a0, b1);
            acc10 += outerProduct(a1, b0);
            acc11 += outerProduct(a1, b1);
#endif
        }
    }
    uint t0 = tn * TN, r0 = m0 + tm * TM;
    STORE_MAT(acc00, t0, r0)
#if MM_T == 8
    STORE_MAT(acc01, t0 + 4, r0)
    STORE_MAT(acc10, t0, r0 + 4)
    STORE_MAT(acc11, t0 + 4, r0 + 4)
#endif
}
