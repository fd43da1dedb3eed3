#version 460
// matmul_cm.comp — y[n][rows] (+)= x[n][cols] · Wᵀ on tensor cores (GL_NV_cooperative_matrix): the prefill form
// of matmul.comp for f16/bf16 weights on devices with NV cooperative matrix and 32-wide subgroups (NVIDIA).
// A workgroup of 8 subgroups computes a BM = 128 (weight rows) × BN = 64 (x rows) tile; each BK = 64 columns of
// both operands are staged in shared memory as fp16 (bf16 weights and fp32 activations are converted on the way
// in; activations are clamped to the fp16 range), and each subgroup accumulates a 32 × 32 block as 2 × 2 fp32
// 16 × 16 fragments (coopMatMulAddNV: fp16 products, fp32 sums). The next BK slice is read from global memory into
// registers while the tensor cores work on the current one.
// MODE 1 is the grouped MoE form, exactly as in matmul.comp: grid y walks the plan's tiles (expert, first sorted
// entry, count) with the plan cut into tiles of BN entries; x rows are gathered through tok[] when gather != 0.
// Mirrors the CPU back-end's matmul y[i][r] = Σ_c x[i][c]·W[r][c] up to fp16 rounding of both operands.
// Host requirements (vk_coopmat.c): weights 16-byte aligned with rows a multiple of 16 bytes, cols % 8 == 0, x
// 16-byte aligned with x_stride % 4 == 0, subgroup size 32.
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require
#define PC_MATMUL
#include "common.glsl"

const uint BM = 128, BN = 64, BK = 64;
const uint STR = BK + 8;  // shared row stride in halves: 144 bytes, so 8 rows' 16-byte pieces hit distinct banks
layout(local_size_x = 256) in;
layout(constant_id = 1) const uint WTYPE = 0;
layout(constant_id = 6) const uint MODE = 0;

shared float16_t ws[BM * STR];  // ws[r][k]: read as the column-major K × N operand
shared float16_t xs[BN * STR];  // xs[t][k]: the row-major M × K operand
shared float cs[8 * 256];       // one 16 × 16 fp32 fragment per subgroup on its way out

#define FRAG_A fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define FRAG_C fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>

uint g_rows, g_cnt, g_j0;

void store1(uint t, uint row, float v) {
    if (t >= g_cnt || row >= g_rows) return;
    BufF32 y = BufF32(pc.y + (uint64_t(g_j0 + t) * pc.y_stride + row) * 4u);
    y.v[0] = pc.accumulate != 0 ? y.v[0] + v : v;
}

// 8 weights (one uvec4 of f16 or bf16) to 8 halves at ws[r][k..k+7]
void put_w(uint r, uint k, uvec4 u) {
    uint b = r * STR + k;
    if (WTYPE == VK_WT_F16) {
        f16vec2 p0 = unpackFloat2x16(u.x), p1 = unpackFloat2x16(u.y), p2 = unpackFloat2x16(u.z),
                p3 = unpackFloat2x16(u.w);
        ws[b] = p0.x; ws[b + 1] = p0.y; ws[b + 2] = p1.x; ws[b + 3] = p1.y;
        ws[b + 4] = p2.x; ws[b + 5] = p2.y; ws[b + 6] = p3.x; ws[b + 7] = p3.y;
    } else {
        // bf16 -> fp32 exactly (shift into the high half), then rounded to fp16
        vec4 lo = uintBitsToFloat(u << 16), hi = uintBitsToFloat(u & 0xffff0000u);
        f16vec4 l = f16vec4(lo), h = f16vec4(hi);
        ws[b] = l.x; ws[b + 1] = h.x; ws[b + 2] = l.y; ws[b + 3] = h.y;
        ws[b + 4] = l.z; ws[b + 5] = h.z; ws[b + 6] = l.w; ws[b + 7] = h.w;
    }
}
void put_x(uint t, uint k, vec4 a, vec4 b) {
    uint o = t * STR + k;
    f16vec4 p = f16vec4(clamp(a, -65504.0f, 65504.0f)), q = f16vec4(clamp(b, -65504.0f, 65504.0f));
    xs[o] = p.x; xs[o + 1] = p.y; xs[o + 2] = p.z; xs[o + 3] = p.w;
    xs[o + 4] = q.x; xs[o + 5] = q.y; xs[o + 6] = q.z; xs[o + 7] = q.w;
}

void main() {
    uint tid = gl_LocalInvocationID.x;
    uint sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
    uint wm = sg % 4u, wn = sg / 4u;  // this subgroup's 32 weight rows and 32 x rows of the tile
    uint rows = pc.rows, cols = pc.cols;
    uint m0 = gl_WorkGroupID.x * BM;
    uint64_t wbase = pc.w;
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
        wbase = BufU64(pc.w + uint64_t(e) * 16u).v[0];
    }
    g_rows = rows;
    g_cnt = cnt;
    g_j0 = j0;

    // This thread stages weight rows r_i = tid/8 + 32·i (i < 4) and x rows t_i = tid/8 + 32·i (i < 2), 8 columns
    // each at seg·8 of the slice: 8 threads read 128 contiguous bytes of one weight row.
    uint seg = (tid & 7u) * 8u, r8 = tid >> 3;
    uint64_t rb = uint64_t(cols) * 2u;
    uint64_t wa0 = wbase + uint64_t(m0 + r8) * rb, wstep = 32u * rb;
    bool wv0 = m0 + r8 < rows, wv1 = m0 + r8 + 32u < rows, wv2 = m0 + r8 + 64u < rows, wv3 = m0 + r8 + 96u < rows;
    uint64_t xa0 = 0, xa1 = 0;
    bool xv0 = r8 < cnt, xv1 = r8 + 32u < cnt;
    if (xv0) {
        uint xrow = (MODE == 1 && pc.gather != 0) ? uint(BufI32(pc.tok).v[j0 + r8]) : j0 + r8;
        xa0 = pc.x + uint64_t(xrow) * pc.x_stride * 4u;
    }
    if (xv1) {
        uint xrow = (MODE == 1 && pc.gather != 0) ? uint(BufI32(pc.tok).v[j0 + r8 + 32u]) : j0 + r8 + 32u;
        xa1 = pc.x + uint64_t(xrow) * pc.x_stride * 4u;
    }

    uvec4 w0, w1, w2, w3;
    vec4 x0a, x0b, x1a, x1b;
#define LOAD_SLICE(k0)                                                                                          \
    {                                                                                                           \
        uint col = (k0) + seg;                                                                                  \
        bool kin = col < cols;                                                                                  \
        uint64_t o = uint64_t(col) * 2u;                                                                        \
        w0 = (kin && wv0) ? BufUV4(wa0 + o).v[0] : uvec4(0);                                                    \
        w1 = (kin && wv1) ? BufUV4(wa0 + wstep + o).v[0] : uvec4(0);                                            \
        w2 = (kin && wv2) ? BufUV4(wa0 + 2u * wstep + o).v[0] : uvec4(0);                                       \
        w3 = (kin && wv3) ? BufUV4(wa0 + 3u * wstep + o).v[0] : uvec4(0);                                       \
        uint64_t ox = uint64_t(col) * 4u;                                                                       \
        x0a = (kin && xv0) ? BufV4(xa0 + ox).v[0] : vec4(0);                                                    \
        x0b = (kin && xv0) ? BufV4(xa0 + ox + 16u).v[0] : vec4(0);                                              \
        x1a = (kin && xv1) ? BufV4(xa1 + ox).v[0] : vec4(0);                                                    \
        x1b = (kin && xv1) ? BufV4(xa1 + ox + 16u).v[0] : vec4(0);                                              \
    }

    FRAG_C c00 = FRAG_C(0.0f), c01 = FRAG_C(0.0f), c10 = FRAG_C(0.0f), c11 = FRAG_C(0.0f);
    LOAD_SLICE(0u)
    for (uint k0 = 0; k0 < cols; k0 += BK) {
        barrier();
        put_w(r8, seg, w0);
        put_w(r8 + 32u, seg, w1);
        put_w(r8 + 64u, seg, w2);
        put_w(r8 + 96u, seg, w3);
        put_x(r8, seg, x0a, x0b);
        put_x(r8 + 32u, seg, x1a, x1b);
        barrier();
        if (k0 + BK < cols) LOAD_SLICE(k0 + BK)
        [[unroll]] for (uint kk = 0; kk < BK; kk += 16u) {
            FRAG_A a0, a1, b0, b1;
            coopMatLoadNV(a0, xs, (wn * 32u) * STR + kk, STR, false);
            coopMatLoadNV(a1, xs, (wn * 32u + 16u) * STR + kk, STR, false);
            coopMatLoadNV(b0, ws, (wm * 32u) * STR + kk, STR, true);
            coopMatLoadNV(b1, ws, (wm * 32u + 16u) * STR + kk, STR, true);
            c00 = coopMatMulAddNV(a0, b0, c00);
            c01 = coopMatMulAddNV(a0, b1, c01);
            c10 = coopMatMulAddNV(a1, b0, c10);
            c11 = coopMatMulAddNV(a1, b1, c11);
        }
    }

    // fragment (i, j): x rows wn·32 + 16·i, weight rows m0 + wm·32 + 16·j; written through this subgroup's slice
    // of cs so that partial tiles and accumulation are handled per element
    uint cb = sg * 256u;
#define STORE_FRAG(frag, i, j)                                                                                  \
    coopMatStoreNV(frag, cs, cb, 16u, false);                                                                   \
    subgroupMemoryBarrierShared();                                                                              \
    subgroupBarrier();                                                                                          \
    for (uint q = lane; q < 256u; q += 32u)                                                                     \
        store1(wn * 32u + 16u * (i) + q / 16u, m0 + wm * 32u + 16u * (j) + q % 16u, cs[cb + q]);                \
    subgroupMemoryBarrierShared();                                                                              \
    subgroupBarrier();
    STORE_FRAG(c00, 0u, 0u)
    STORE_FRAG(c01, 0u, 1u)
    STORE_FRAG(c10, 1u, 0u)
    STORE_FRAG(c11, 1u, 1u)
}
