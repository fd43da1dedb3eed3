#version 460
// matmul_cm.comp — y[n][rows] (+)= x[n][cols] · Wᵀ on tensor cores (NV or KHR cooperative matrix, cm.glsl): the
// prefill form of matmul.comp for f16, bf16 and Q8_0 weights on devices with cooperative matrix and 32-wide subgroups.
// A workgroup of 8 subgroups computes a BM (weight rows) × BN (x rows) tile (128 × 64 unless built otherwise, see
// CM_BM below); each BK = 64 columns of both operands are staged in shared memory as fp16, eight halves per 16-byte
// shared word (one store per 8 elements; bf16 weights and fp32 activations are converted on the way in, activations
// clamped to the fp16 range; Q8_0 quants are multiplied by their block scale in fp32 and then rounded to fp16).
// Each subgroup accumulates its block as fp32 16 × 16 fragments (CM_MAD: fp16 products, fp32 sums; 2 × 2
// of them at 128 × 64). The next BK slice is
// read from global memory into registers while the tensor cores work on the current one.
// Fragments that lie wholly inside y are stored straight to global memory (and, when accumulating, start from y's
// values); the ragged edges go element by element through shared memory.
// Split-K (pc.pad = number of splits > 1, grid z = split): workgroup z sums only its share of the columns and
// writes a partial plane y + z·n·y_stride (no accumulation); mm_ksum.comp adds the planes into the destination.
// It gives small matrices (the MoE router, 128 rows) enough workgroups to fill the device.
// MODE 1 is the grouped MoE form, exactly as in matmul.comp: grid y walks the plan's tiles (expert, first sorted
// entry, count) with the plan cut into tiles of BN entries; x rows are gathered through tok[] when gather != 0.
// MODE 2 is MODE 1 for the gate and up projections at once (pc.w: the gate table, pc.s: the up table): the tile's
// first BM/2 weight rows are gate rows, the others the same up rows, each subgroup holds both halves of its output
// rows and writes y = silu(gate·x)·(up·x) (the CPU back-end's swiglu, as ew.comp), so x is staged once for both and
// the separate gate, up and swiglu passes over y are not needed.
// Mirrors the CPU back-end's matmul y[i][r] = Σ_c x[i][c]·W[r][c] up to fp16 rounding of both operands.
// A second build of each shape, _x16 (vk_coopmat.c, OMNI_VK_CM_X16; the default wherever x can be converted once):
//   CM_X16 = 1: x is fp16 (x_stride in halves, rows 16-byte aligned): staged as loaded, no conversion in the
//     loop and half the x bytes (the host converts fp32 activations once, cm_x16.comp, with the same clamp and
//     rounding as f2h below, so results are identical); and MODE 2 writes y = silu(gate)·up as fp16 (y_stride in
//     halves, a multiple of 8; rows a multiple of 8), which the down projection then reads as its x.
// Host requirements (vk_coopmat.c): weights 16-byte aligned with rows a multiple of 16 bytes (Q8_0: 8 bytes, scales
// 2-byte aligned), cols % 8 == 0, x 16-byte aligned with x_stride % 4 == 0, subgroup size 32.
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require
#define PC_MATMUL
#include "common.glsl"
#include "cm.glsl"

layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer BufUV2 { uvec2 v[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) buffer BufF32A { float v[]; };
#ifndef CM_X16
#define CM_X16 0
#endif
#if CM_X16
layout(buffer_reference, std430, buffer_reference_align = 16) writeonly buffer BufUV4W { uvec4 v[]; };
#endif

// Tile shape (compile-time, one SPIR-V per shape, see shaders.mk): BM weight rows x BN x rows per workgroup of 8
// subgroups laid out WM (along weight rows) x 8/WM (along x rows); each subgroup accumulates an SR x ST block as
// FI x FJ fp32 16 x 16 fragments. Compile-time rather than specialization constants: the staging registers and
// fragment arrays must be sized and their loops unrolled before the driver allocates registers (a spec-constant
// version measured 2.5x slower, docs/benchmarks.md).
#ifndef CM_BM
#define CM_BM 128
#endif
#ifndef CM_BN
#define CM_BN 64
#endif
#ifndef CM_WM
#define CM_WM 4
#endif
// CM_NSG subgroups per workgroup (8) and CM_BK columns per shared-memory slice (64): every build uses these; other
// values compile (e.g. 4 subgroups of 64 x 64 outputs with 32-column slices: 8 fragment loads per 16 products
// instead of 6 per 8) but measured slower on the H100 (vk_coopmat.c, above cm_big).
#ifndef CM_NSG
#define CM_NSG 8
#endif
#ifndef CM_BK
#define CM_BK 64
#endif
const uint NSG = CM_NSG, NT = 32u * NSG;
const uint BM = CM_BM, BN = CM_BN, BK = CM_BK;
const uint WM = CM_WM, WN = NSG / WM, SR = BM / WM, ST = BN / WN, FJ = SR / 16u, FI = ST / 16u;
// staging: TPR threads read one row's BK columns (8 each, 16 bytes), RPP rows per pass of the workgroup's threads;
// each thread stages NW weight rows and NX x rows
const uint TPR = BK / 8u, RPP = NT / TPR, NW = BM / RPP, NX = BN / RPP;
// shared row stride in 16-byte words (8 halves): BK/8 + 1 words (144 bytes at BK 64, 80 at 32), so the 8 rows of
// a fragment load fall in distinct banks
const uint STR = BK / 8u + 1u;
layout(local_size_x = CM_NSG * 32) in;
layout(constant_id = 1) const uint WTYPE = 0;
// SKIP = 1 would make a subgroup skip the fragments whose x rows all lie past the tile's count; the host passes 0
// unless OMNI_VK_CM_SKIP=1 (the guards measured slower than the MMAs they save: grouped experts 28.3 vs 24.9 ms per
// pp512 pass with the NV build, 20.2 vs 19.7 ms with the KHR build).
// The guarded form stays in the source all the same: with the spec constant folded it is the same program, but the
// NVIDIA compiler turns this SPIR-V into faster code than the unguarded loop's (H100, pp512 BF16 12,708 vs 11,886
// t/s, same card and run; the experts' GEMMs 7% slower without it). Do not "simplify" without measuring.
layout(constant_id = 2) const uint SKIP = 0;
layout(constant_id = 6) const uint MODE = 0;
// OUT16 = 1 (MODE 1 of the fp16 builds: the grouped experts' down projection): y is written as fp16 (y_stride in
// halves), clamped to the fp16 range as f2h, never accumulated; moe_combine.comp reads it (half the bytes of fp32
// partials written here and read there)
layout(constant_id = 3) const uint OUT16 = 0;
// Q8H = 1: Q8_0 quants decoded in packed fp16 arithmetic (below, w_half)
layout(constant_id = 4) const uint Q8H = 0;

shared uvec4 ws[BM * STR];  // ws[r][k]: read as the column-major K × N operand
shared uvec4 xs[BN * STR];  // xs[t][k]: the row-major M × K operand
// ragged edges: one 16 × 16 fp32 fragment per subgroup on its way out, in ws (64 words per subgroup) after the loop


uint g_rows, g_cnt, g_j0;
uint64_t g_y;

void store1(uint t, uint row, float v) {
    if (t >= g_cnt || row >= g_rows) return;
    BufF32 y = BufF32(g_y + (uint64_t(g_j0 + t) * pc.y_stride + row) * 4u);
    y.v[0] = pc.accumulate != 0 ? y.v[0] + v : v;
}

#if CM_X16
// MODE 2's fp16 output: elements (t, row) and (t, row + 1), row even (rows and y_stride even: one 32-bit word
// that no other fragment writes)
void store2h(uint t, uint row, vec2 v) {
    if (t >= g_cnt || row >= g_rows) return;
    BufU32 y = BufU32(g_y + (uint64_t(g_j0 + t) * pc.y_stride + row) * 2u);
    y.v[0] = packHalf2x16(clamp(v, vec2(-65504.0f), vec2(65504.0f)));
}
#endif

// two bf16 (one 32-bit word) -> two halves in one word: exact widening to fp32, then one rounding to fp16
uint bf2h(uint u) { return packHalf2x16(vec2(uintBitsToFloat(u << 16), uintBitsToFloat(u & 0xffff0000u))); }
uint f2h(vec2 v) { return packHalf2x16(clamp(v, vec2(-65504.0f), vec2(65504.0f))); }

// 8 weights as staged in shared memory: f16 as is, bf16 converted; Q8_0: 8 quants (q.xy) times the scale d
uvec4 w_half(uvec4 u) {
    if (WTYPE == VK_WT_F16) return u;
    if (WTYPE == VK_WT_BF16) return uvec4(bf2h(u.x), bf2h(u.y), bf2h(u.z), bf2h(u.w));
    if (Q8H != 0u) {
        // Each quant byte b becomes the fp16 1024 + (b ^ 0x80) = 1152 + q by placing it under the exponent bits of
        // 1024 (0x6400), exactly; minus 1152 gives q exactly, and one fp16 multiply by d rounds q·d once to nearest
        // even, which is what the fp32 product below (exact: 8 x 11 significant bits) rounded by packHalf2x16 gives.
        // Four packed fp16 operations per 8 quants instead of 8 conversions, 8 fp32 products and 4 packs.
        f16vec2 d2 = f16vec2(unpackFloat2x16(u.z).x);
        const f16vec2 off = f16vec2(1152.0hf);
        uvec2 t = u.xy ^ 0x80808080u;
        uvec4 m = uvec4((t.x & 0xffu) | ((t.x & 0xff00u) << 8u), ((t.x >> 16u) & 0xffu) | ((t.x >> 8u) & 0xff0000u),
                        (t.y & 0xffu) | ((t.y & 0xff00u) << 8u), ((t.y >> 16u) & 0xffu) | ((t.y >> 8u) & 0xff0000u)) |
                  0x64006400u;
        return uvec4(packFloat2x16((unpackFloat2x16(m.x) - off) * d2),
                     packFloat2x16((unpackFloat2x16(m.y) - off) * d2),
                     packFloat2x16((unpackFloat2x16(m.z) - off) * d2),
                     packFloat2x16((unpackFloat2x16(m.w) - off) * d2));
    }
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
    uint wm = sg % WM, wn = sg / WM;  // this subgroup's SR weight rows and ST x rows of the tile
    uint rows = pc.rows, cols = pc.cols;
    uint m0 = gl_WorkGroupID.x * BM, mh = gl_WorkGroupID.x * (BM / 2u);
    uint64_t wbase = pc.w, sbase = pc.s, ybase = pc.y, wbase_u = 0, sbase_u = 0;
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
        if (MODE == 2) {
            BufU64 tab_u = BufU64(pc.s + uint64_t(e) * 16u);
            wbase_u = tab_u.v[0];
            sbase_u = tab_u.v[1];
        }
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

    // This thread stages weight rows r8 + RPP·i (i < NW) and x rows r8 + RPP·i (i < NX), 8 columns each at seg of
    // the slice: TPR threads read BK·2 contiguous bytes of one weight row (Q8_0: BK bytes).
    uint seg = (tid % TPR) * 8u, r8 = tid / TPR;
    uint64_t rb = row_bytes(WTYPE, cols), sb = uint64_t(cols / 32u) * 2u;
    uint mw = MODE == 2 ? mh : m0;  // first weight row of the tile (MODE 2: of each half)
    uint64_t wa0 = wbase + uint64_t(mw + r8) * rb, wstep = RPP * rb;
    uint64_t sa0 = sbase + uint64_t(mw + r8) * sb, sstep = RPP * sb;
    uint64_t wa0u = wbase_u + uint64_t(mw + r8) * rb, sa0u = sbase_u + uint64_t(mw + r8) * sb;
    uint64_t xa[NX];
    [[unroll]] for (uint i = 0; i < NX; i++) {
        uint t = r8 + RPP * i;
        xa[i] = 0;
        if (t < cnt) {
            uint xrow = (MODE != 0 && pc.gather != 0) ? uint(BufI32(pc.tok).v[j0 + t]) : j0 + t;
#if CM_X16
            xa[i] = pc.x + uint64_t(xrow) * pc.x_stride * 2u;  // fp16 x: x_stride in halves
#else
            xa[i] = pc.x + uint64_t(xrow) * pc.x_stride * 4u;
#endif
        }
    }

    uvec4 wr[NW];
#if CM_X16
    uvec4 xr[NX];  // 8 fp16 x values, staged as loaded
#else
    vec4 xr[NX][2];
#endif
// one weight load: 16 bytes of f16/bf16, or 8 Q8_0 quants plus their block's scale bits in .z
// staged row i: MODE 2 puts up rows in the second half (HALF(i): its index within the half)
#define UPROW(i) (MODE == 2 && (i) >= NW / 2u)
#define HALF(i) (MODE == 2 ? (i) % (NW / 2u) : (i))
#define LDW(ok, i, o, col)                                                                                      \
    ((ok) ? (WTYPE == VK_WT_Q8_0                                                                                \
                 ? uvec4(BufUV2((UPROW(i) ? wa0u : wa0) + HALF(i) * wstep + (o)).v[0],                          \
                         ld_u16((UPROW(i) ? sa0u : sa0) + HALF(i) * sstep + uint64_t((col) / 32u) * 2u), 0u)    \
                 : BufUV4((UPROW(i) ? wa0u : wa0) + HALF(i) * wstep + (o)).v[0])                                \
          : uvec4(0))
#if CM_X16
#define LOAD_SLICE(k0)                                                                                          \
    {                                                                                                           \
        uint col = (k0) + seg;                                                                                  \
        bool kin = col < kend;                                                                                  \
        uint64_t o = WTYPE == VK_WT_Q8_0 ? uint64_t(col) : uint64_t(col) * 2u;                                  \
        [[unroll]] for (uint i = 0; i < NW; i++) wr[i] = LDW(kin && mw + r8 + RPP * HALF(i) < rows, i, o, col); \
        [[unroll]] for (uint i = 0; i < NX; i++)                                                                \
            xr[i] = kin && r8 + RPP * i < cnt ? BufUV4(xa[i] + uint64_t(col) * 2u).v[0] : uvec4(0);             \
    }
#else
#define LOAD_SLICE(k0)                                                                                          \
    {                                                                                                           \
        uint col = (k0) + seg;                                                                                  \
        bool kin = col < kend;                                                                                  \
        uint64_t o = WTYPE == VK_WT_Q8_0 ? uint64_t(col) : uint64_t(col) * 2u;                                  \
        [[unroll]] for (uint i = 0; i < NW; i++) wr[i] = LDW(kin && mw + r8 + RPP * HALF(i) < rows, i, o, col);       \
        uint64_t ox = uint64_t(col) * 4u;                                                                       \
        [[unroll]] for (uint i = 0; i < NX; i++) {                                                              \
            bool xin = kin && r8 + RPP * i < cnt;                                                               \
            xr[i][0] = xin ? BufV4(xa[i] + ox).v[0] : vec4(0);                                                  \
            xr[i][1] = xin ? BufV4(xa[i] + ox + 16u).v[0] : vec4(0);                                            \
        }                                                                                                       \
    }
#endif

    // fragment (i, j): x rows wn·ST + 16·i, weight rows m0 + wm·SR + 16·j. Whole fragments go straight to y (which
    // needs 16-byte aligned rows there); when accumulating they start from y's values.
#if CM_X16
    // MODE 2 (and MODE 1 with OUT16) writes fp16 (16-byte aligned rows: y_stride a multiple of 8 halves) and never
    // accumulates
    // (a variable: Debian's glslc fails to optimize this as a constant expression of spec constants; the driver
    // folds it once they are specialised)
    bool H16 = MODE == 2;
    if (MODE == 1 && OUT16 != 0u) H16 = true;
    bool direct_ok = (ybase & 15u) == 0u && (pc.y_stride & (H16 ? 7u : 3u)) == 0u;
#else
    bool direct_ok = (ybase & 15u) == 0u && (pc.y_stride & 3u) == 0u;
#endif
    // MODE 2: the subgroup's output rows are rr .. rr + SR/2 (gate fragments j < FJ/2, up fragments j >= FJ/2)
    uint tr = wn * ST, rr = MODE == 2 ? mh + wm * (SR / 2u) : m0 + wm * SR;
#if CM_X16
#define YA(i, j) (ybase + (uint64_t(j0 + tr + 16u * (i)) * pc.y_stride + rr + 16u * (j)) * (H16 ? 2u : 4u))
#else
#define YA(i, j) (ybase + (uint64_t(j0 + tr + 16u * (i)) * pc.y_stride + rr + 16u * (j)) * 4u)
#endif
#define FULL(i, j) (direct_ok && tr + 16u * (i) + 16u <= cnt && rr + 16u * (j) + 16u <= rows)
    CM_C32 acc[FI][FJ];
    [[unroll]] for (uint i = 0; i < FI; i++) [[unroll]] for (uint j = 0; j < FJ; j++) {
        acc[i][j] = CM_C32(0.0f);
#if CM_X16
        if (!H16 && pc.accumulate != 0 && FULL(i, j))
            CM_LOAD(acc[i][j], BufF32A(YA(i, j)).v, 0u, pc.y_stride, false);
#else
        if (pc.accumulate != 0 && FULL(i, j)) CM_LOAD(acc[i][j], BufF32A(YA(i, j)).v, 0u, pc.y_stride, false);
#endif
    }
    // fragments this subgroup multiplies: x-row blocks below cnt, weight-row blocks below rows (subgroup-uniform)
    uint ni = SKIP != 0 ? min(FI, (cnt > tr ? cnt - tr + 15u : 0u) / 16u) : FI;
    uint nj = SKIP != 0 && MODE != 2 ? min(FJ, (rows > rr ? rows - rr + 15u : 0u) / 16u) : FJ;

    LOAD_SLICE(kbeg)
    uint sw = seg / 8u;
    for (uint k0 = kbeg; k0 < kend; k0 += BK) {
        barrier();
        [[unroll]] for (uint i = 0; i < NW; i++) ws[(r8 + RPP * i) * STR + sw] = w_half(wr[i]);
#if CM_X16
        [[unroll]] for (uint i = 0; i < NX; i++) xs[(r8 + RPP * i) * STR + sw] = xr[i];
#else
        [[unroll]] for (uint i = 0; i < NX; i++)
            xs[(r8 + RPP * i) * STR + sw] =
                uvec4(f2h(xr[i][0].xy), f2h(xr[i][0].zw), f2h(xr[i][1].xy), f2h(xr[i][1].zw));
#endif
        barrier();
        if (k0 + BK < kend) LOAD_SLICE(k0 + BK)
        if (ni > 0u && nj > 0u) {
            [[unroll]] for (uint kk = 0; kk < BK / 8u; kk += 2u) {  // 16 columns = 2 shared words per step
                CM_A16 a[FI];
                CM_B16 b[FJ];
                [[unroll]] for (uint i = 0; i < FI; i++)
                    if (i < ni) CM_LOAD(a[i], xs, (tr + 16u * i) * STR + kk, STR, false);
                [[unroll]] for (uint j = 0; j < FJ; j++)
                    if (j < nj) {
                        uint wrow = MODE == 2 ? (j < FJ / 2u ? wm * (SR / 2u) + 16u * j
                                                             : BM / 2u + wm * (SR / 2u) + 16u * (j - FJ / 2u))
                                              : wm * SR + 16u * j;
                        CM_LOAD(b[j], ws, wrow * STR + kk, STR, true);
                    }
                [[unroll]] for (uint i = 0; i < FI; i++) [[unroll]] for (uint j = 0; j < FJ; j++)
                    if (i < ni && j < nj) acc[i][j] = CM_MAD(a[i], b[j], acc[i][j]);
            }
        }
    }

    // ragged fragments through this subgroup's 64 words of ws (free once every subgroup is past its last MMA),
    // element by element
    barrier();
    uint cb = sg * 64u;
    if (MODE == 2) {  // y = silu(gate)·up element by element (both fragments share one layout)
        [[unroll]] for (uint i = 0; i < FI; i++) [[unroll]] for (uint j = 0; j < FJ / 2u; j++)
            for (int q = 0; q < acc[i][j].length(); q++)
                acc[i][j][q] = silu(acc[i][j][q]) * acc[i][j + FJ / 2u][q];
    }
#if CM_X16
    if (H16) {  // fp16 out: clamped to the fp16 range as f2h, whole fragments straight to y, ragged in pairs
        [[unroll]] for (uint i = 0; i < FI; i++) [[unroll]] for (uint j = 0; j < (MODE == 2 ? FJ / 2u : FJ); j++) {
            if (FULL(i, j)) {
                for (int q = 0; q < acc[i][j].length(); q++)
                    acc[i][j][q] = clamp(acc[i][j][q], -65504.0f, 65504.0f);
                CM_C16 h = CM_C16(acc[i][j]);
                CM_STORE(h, BufUV4W(YA(i, j)).v, 0u, pc.y_stride / 8u, false);
            } else if (tr + 16u * i < cnt && rr + 16u * j < rows) {
                CM_STORE(acc[i][j], ws, cb, 4u, false);
                subgroupMemoryBarrierShared();
                subgroupBarrier();
                for (uint q = lane; q < 128u; q += 32u)  // elements 2q, 2q + 1: row q / 8, columns (q % 8)·2 + 0, 1
                    store2h(tr + 16u * i + q / 8u, rr + 16u * j + (q % 8u) * 2u,
                            vec2(uintBitsToFloat(ws[cb + q / 2u][(q % 2u) * 2u]),
                                 uintBitsToFloat(ws[cb + q / 2u][(q % 2u) * 2u + 1u])));
                subgroupMemoryBarrierShared();
                subgroupBarrier();
            }
        }
        return;
    }
#endif
    [[unroll]] for (uint i = 0; i < FI; i++) [[unroll]] for (uint j = 0; j < FJ; j++) {
        if (MODE == 2 && j >= FJ / 2u) {  // the up halves: already folded into the gate fragments
        } else if (FULL(i, j)) {
            CM_STORE(acc[i][j], BufF32A(YA(i, j)).v, 0u, pc.y_stride, false);
        } else if (tr + 16u * i < cnt && rr + 16u * j < rows) {
            CM_STORE(acc[i][j], ws, cb, 4u, false);
            subgroupMemoryBarrierShared();
            subgroupBarrier();
            for (uint q = lane; q < 256u; q += 32u)
                store1(tr + 16u * i + q / 16u, rr + 16u * j + q % 16u, uintBitsToFloat(ws[cb + q / 4u][q % 4u]));
            subgroupMemoryBarrierShared();
            subgroupBarrier();
        }
    }
}
