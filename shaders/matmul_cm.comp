#version 460
// matmul_cm.comp — y[n][rows] (+)= x[n][cols] · Wᵀ on tensor cores (GL_NV_cooperative_matrix): the prefill form
// of matmul.comp for f16, bf16 and Q8_0 weights on devices with NV cooperative matrix and 32-wide subgroups.
// A workgroup of 8 subgroups computes a BM = 128 (weight rows) × BN = 64 (x rows) tile; each BK = 64 columns of
// both operands are staged in shared memory as fp16, eight halves per 16-byte shared word (one store per 8
// elements; bf16 weights and fp32 activations are converted on the way in, activations clamped to the fp16 range;
// Q8_0 quants are multiplied by their block scale in fp32 and then rounded to fp16). Each subgroup accumulates a
// 32 × 32 block as 2 × 2 fp32 16 × 16 fragments (coopMatMulAddNV: fp16 products, fp32 sums). The next BK slice is
// read from global memory into registers while the tensor cores work on the current one.
// Fragments that lie wholly inside y are stored straight to global memory (and, when accumulating, start from y's
// values); the ragged edges go element by element through shared memory.
// Split-K (pc.pad = number of splits > 1, grid z = split): workgroup z sums only its share of the columns and
// writes a partial plane y + z·n·y_stride (no accumulation); mm_ksum.comp adds the planes into the destination.
// It gives small matrices (the MoE router, 128 rows) enough workgroups to fill the device.
// MODE 1 is the grouped MoE form, exactly as in matmul.comp: grid y walks the plan's tiles (expert, first sorted
// entry, count) with the plan cut into tiles of BN entries; x rows are gathered through tok[] when gather != 0.
// Mirrors the CPU back-end's matmul y[i][r] = Σ_c x[i][c]·W[r][c] up to fp16 rounding of both operands.
// Host requirements (vk_coopmat.c): weights 16-byte aligned with rows a multiple of 16 bytes (Q8_0: 8 bytes, scales
// 2-byte aligned), cols % 8 == 0, x 16-byte aligned with x_stride % 4 == 0, subgroup size 32.
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require
#define PC_MATMUL
#include "common.glsl"

layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer BufUV2 { uvec2 v[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) buffer BufF32A { float v[]; };

const uint BM = 128, BK = 64, BNMAX = 128;
// shared row stride in 16-byte words (8 halves): 9 words = 144 bytes, so the 8 rows of a fragment load (and 8
// threads' 16-byte stores) fall in distinct banks
const uint STR = BK / 8u + 1u;
layout(local_size_x = 256) in;
layout(constant_id = 1) const uint WTYPE = 0;
// BN: x rows per tile, 64 or 128 (each subgroup then covers BN/2 x rows: NI = BN/32 fragments);
// DEPTH: BK slices in flight in registers ahead of the one being multiplied, 1 or 2
layout(constant_id = 2) const uint BN = 64;
layout(constant_id = 3) const uint DEPTH = 1;
layout(constant_id = 6) const uint MODE = 0;
const uint NI = BN / 32u;

shared uvec4 ws[BM * STR];     // ws[r][k]: read as the column-major K × N operand
shared uvec4 xs[BNMAX * STR];  // xs[t][k]: the row-major M × K operand
shared float cs[8 * 256];      // one 16 × 16 fp32 fragment per subgroup on its way out (ragged edges)

#define FRAG_A fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define FRAG_C fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>

uint g_rows, g_cnt, g_j0;
uint64_t g_y;

void store1(uint t, uint row, float v) {
    if (t >= g_cnt || row >= g_rows) return;
    BufF32 y = BufF32(g_y + (uint64_t(g_j0 + t) * pc.y_stride + row) * 4u);
    y.v[0] = pc.accumulate != 0 ? y.v[0] + v : v;
}

// two bf16 (one 32-bit word) -> two halves in one word: exact widening to fp32, then one rounding to fp16
uint bf2h(uint u) { return packHalf2x16(vec2(uintBitsToFloat(u << 16), uintBitsToFloat(u & 0xffff0000u))); }
uint f2h(vec2 v) { return packHalf2x16(clamp(v, vec2(-65504.0f), vec2(65504.0f))); }

// 8 weights as staged in shared memory: f16 as is, bf16 converted; Q8_0: 8 quants (u.xy) times the scale in u.z
uvec4 w_half(uvec4 u) {
    if (WTYPE == VK_WT_F16) return u;
    if (WTYPE == VK_WT_BF16) return uvec4(bf2h(u.x), bf2h(u.y), bf2h(u.z), bf2h(u.w));
    float d = unpackHalf2x16(u.z).x;
    ivec2 q = ivec2(u.xy);
    vec4 a = vec4(bitfieldExtract(q.x, 0, 8), bitfieldExtract(q.x, 8, 8), bitfieldExtract(q.x, 16, 8),
                  bitfieldExtract(q.x, 24, 8)) * d;
    vec4 b = vec4(bitfieldExtract(q.y, 0, 8), bitfieldExtract(q.y, 8, 8), bitfieldExtract(q.y, 16, 8),
                  bitfieldExtract(q.y, 24, 8)) * d;
    return uvec4(packHalf2x16(a.xy), packHalf2x16(a.zw), packHalf2x16(b.xy), packHalf2x16(b.zw));
}

void main() {
    uint tid = gl_LocalInvocationID.x;
    uint sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
    uint wm = sg % 4u, wn = sg / 4u;  // this subgroup's 32 weight rows and BN/2 x rows of the tile
    uint rows = pc.rows, cols = pc.cols;
    uint m0 = gl_WorkGroupID.x * BM;
    uint64_t wbase = pc.w, sbase = pc.s, ybase = pc.y;
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
        BufU64 tab = BufU64(pc.w + uint64_t(e) * 16u);
        wbase = tab.v[0];
        sbase = tab.v[1];
    }
    // this workgroup's columns [kbeg, kend): all of them, or one split's share (whole BK slices)
    uint kbeg = 0u, kend = cols;
    if (MODE == 0 && pc.pad > 1u) {
        uint slices = (cols + BK - 1u) / BK, per = (slices + pc.pad - 1u) / pc.pad;
        kbeg = min(cols, gl_WorkGroupID.z * per * BK);
        kend = min(cols, kbeg + per * BK);
        ybase += uint64_t(gl_WorkGroupID.z) * pc.n * pc.y_stride * 4u;
    }
    g_rows = rows;
    g_cnt = cnt;
    g_j0 = j0;
    g_y = ybase;

    // This thread stages weight rows r_i = tid/8 + 32·i (i < 4) and x rows t_i = tid/8 + 32·i (i < NI), 8 columns
    // each at seg·8 of the slice: 8 threads read 128 contiguous bytes of one weight row (Q8_0: 64 bytes).
    uint seg = (tid & 7u) * 8u, r8 = tid >> 3;
    uint64_t rb = row_bytes(WTYPE, cols), sb = uint64_t(cols / 32u) * 2u;
    uint64_t wa0 = wbase + uint64_t(m0 + r8) * rb, wstep = 32u * rb;
    uint64_t sa0 = sbase + uint64_t(m0 + r8) * sb, sstep = 32u * sb;
    bool wv[4];
    [[unroll]] for (uint i = 0; i < 4u; i++) wv[i] = m0 + r8 + 32u * i < rows;
    uint64_t xa[4];
    bool xv[4];
    [[unroll]] for (uint i = 0; i < 4u; i++) {
        uint t = r8 + 32u * i;
        xv[i] = i < NI && t < cnt;
        xa[i] = 0;
        if (xv[i]) {
            uint xrow = (MODE == 1 && pc.gather != 0) ? uint(BufI32(pc.tok).v[j0 + t]) : j0 + t;
            xa[i] = pc.x + uint64_t(xrow) * pc.x_stride * 4u;
        }
    }

    // register sets A and B of slices in flight (B only with DEPTH 2)
    uvec4 wA[4], wB[4];
    vec4 xA[8], xB[8];
// one weight load: 16 bytes of f16/bf16, or 8 Q8_0 quants plus their block's scale bits in .z
#define LDW(ok, i, o, col)                                                                                      \
    ((ok) ? (WTYPE == VK_WT_Q8_0                                                                                \
                 ? uvec4(BufUV2(wa0 + (i) * wstep + (o)).v[0], ld_u16(sa0 + (i) * sstep + uint64_t((col) / 32u) * 2u), 0u) \
                 : BufUV4(wa0 + (i) * wstep + (o)).v[0])                                                        \
          : uvec4(0))
#define LOAD_SLICE(W, X, k0)                                                                                    \
    {                                                                                                           \
        uint col = (k0) + seg;                                                                                  \
        bool kin = col < kend;                                                                                  \
        uint64_t o = WTYPE == VK_WT_Q8_0 ? uint64_t(col) : uint64_t(col) * 2u;                                  \
        [[unroll]] for (uint i = 0; i < 4u; i++) W[i] = LDW(kin && wv[i], uint64_t(i), o, col);                \
        uint64_t ox = uint64_t(col) * 4u;                                                                       \
        [[unroll]] for (uint i = 0; i < NI; i++) {                                                              \
            X[2u * i] = (kin && xv[i]) ? BufV4(xa[i] + ox).v[0] : vec4(0);                                      \
            X[2u * i + 1u] = (kin && xv[i]) ? BufV4(xa[i] + ox + 16u).v[0] : vec4(0);                           \
        }                                                                                                       \
    }
#define STORE_SLICE(W, X)                                                                                       \
    {                                                                                                           \
        uint sw = seg / 8u;                                                                                     \
        [[unroll]] for (uint i = 0; i < 4u; i++) ws[(r8 + 32u * i) * STR + sw] = w_half(W[i]);                 \
        [[unroll]] for (uint i = 0; i < NI; i++)                                                                \
            xs[(r8 + 32u * i) * STR + sw] = uvec4(f2h(X[2u * i].xy), f2h(X[2u * i].zw), f2h(X[2u * i + 1u].xy), \
                                                  f2h(X[2u * i + 1u].zw));                                      \
    }

    // fragment (i, j): x rows tr + 16·i, weight rows rr + 16·j. Whole fragments go straight to y (which needs
    // 16-byte aligned rows there); when accumulating they start from y's values.
    bool direct_ok = (ybase & 15u) == 0u && (pc.y_stride & 3u) == 0u;
    uint tr = wn * (BN / 2u), rr = m0 + wm * 32u;
    bool full[8];
    FRAG_C acc[8];
    [[unroll]] for (uint i = 0; i < NI; i++)
        [[unroll]] for (uint j = 0; j < 2u; j++) {
            full[2u * i + j] = direct_ok && tr + 16u * (i + 1u) <= cnt && rr + 16u * (j + 1u) <= rows;
            acc[2u * i + j] = FRAG_C(0.0f);
            if (pc.accumulate != 0 && full[2u * i + j])
                coopMatLoadNV(acc[2u * i + j],
                              BufF32A(ybase + (uint64_t(j0 + tr + 16u * i) * pc.y_stride + rr + 16u * j) * 4u).v,
                              0u, pc.y_stride, false);
        }

#define MMA_SLICE()                                                                                             \
    [[unroll]] for (uint kk = 0; kk < BK / 8u; kk += 2u) { /* 16 columns = 2 shared words per step */          \
        FRAG_A b0, b1;                                                                                          \
        coopMatLoadNV(b0, ws, (wm * 32u) * STR + kk, STR, true);                                                \
        coopMatLoadNV(b1, ws, (wm * 32u + 16u) * STR + kk, STR, true);                                          \
        [[unroll]] for (uint i = 0; i < NI; i++) {                                                              \
            FRAG_A a;                                                                                           \
            coopMatLoadNV(a, xs, (tr + 16u * i) * STR + kk, STR, false);                                        \
            acc[2u * i] = coopMatMulAddNV(a, b0, acc[2u * i]);                                                  \
            acc[2u * i + 1u] = coopMatMulAddNV(a, b1, acc[2u * i + 1u]);                                        \
        }                                                                                                       \
    }

    if (DEPTH == 1u) {
        LOAD_SLICE(wA, xA, kbeg)
        for (uint k0 = kbeg; k0 < kend; k0 += BK) {
            barrier();
            STORE_SLICE(wA, xA)
            barrier();
            if (k0 + BK < kend) LOAD_SLICE(wA, xA, k0 + BK)
            MMA_SLICE()
        }
    } else {
        // two slices in flight: while slice k is multiplied, k + 1 and k + 2 are on their way (sets alternate)
        LOAD_SLICE(wA, xA, kbeg)
        if (kbeg + BK < kend) LOAD_SLICE(wB, xB, kbeg + BK)
        for (uint k0 = kbeg; k0 < kend; k0 += 2u * BK) {
            barrier();
            STORE_SLICE(wA, xA)
            barrier();
            if (k0 + 2u * BK < kend) LOAD_SLICE(wA, xA, k0 + 2u * BK)
            MMA_SLICE()
            if (k0 + BK >= kend) break;
            barrier();
            STORE_SLICE(wB, xB)
            barrier();
            if (k0 + 3u * BK < kend) LOAD_SLICE(wB, xB, k0 + 3u * BK)
            MMA_SLICE()
        }
    }

    // ragged fragments through this subgroup's slice of cs, element by element
    uint cb = sg * 256u;
    [[unroll]] for (uint i = 0; i < NI; i++)
        [[unroll]] for (uint j = 0; j < 2u; j++) {
            if (full[2u * i + j]) {
                coopMatStoreNV(acc[2u * i + j],
                               BufF32A(ybase + (uint64_t(j0 + tr + 16u * i) * pc.y_stride + rr + 16u * j) * 4u).v,
                               0u, pc.y_stride, false);
            } else {
                coopMatStoreNV(acc[2u * i + j], cs, cb, 16u, false);
                subgroupMemoryBarrierShared();
                subgroupBarrier();
                for (uint q = lane; q < 256u; q += 32u)
                    store1(tr + 16u * i + q / 16u, rr + 16u * j + q % 16u, cs[cb + q]);
                subgroupMemoryBarrierShared();
                subgroupBarrier();
            }
        }
}
