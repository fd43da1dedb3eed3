#version 460
// mvq8.comp — decode matrix-vector products of Q8_0 weights against int8 activations, the Q8_0 decode kernel on
// devices with the integer dot product (OMNI_VK_Q8_INT8=0 turns it off; vk_ops.c picks it):
//   MODE 0: y (+)= x · Wᵀ for one x row, optionally with x RMS-normalised first (NORM, as mv.comp);
//   MODE 1: the MoE gate+up pair of one (token, slot) entry, h = silu(gate_e·x)⊙(up_e·x), written already quantized
//           (int8 per block of 16 rows, one fp32 scale per block) for MODE 2;
//   MODE 2: the MoE down projection y[token] += Σ_slot w·down_e·h from MODE 1's quantized h.
// With fp32 activations a Q8_0 kernel reads 4 bytes of x per weight byte and converts every quant to fp32, so it is
// bound by those instructions, not by memory. Here activations are int8 as llama.cpp's q8 activations: per block of
// 16 values (one 16-byte weight vector), d = max|x| / 127 and q = round(x / d) in [-127, 127]; a weight vector meets
// its 16 x quants in four packed 4×8-bit integer dot products (OpSDotKHR through GL_EXT_spirv_intrinsics: Debian 12's
// glslc has no GL_EXT_integer_dot_product) and adds float(Σ q_w·q_x) · d_w · d_x. The result differs from the
// fp32-activation kernels by the activations' rounding (up to a block's largest value / 254 per element; the tests
// state the tolerance).
//
// Built like mv.comp for memory-level parallelism (decode is a chain of short memory-bound kernels):
//  0. the x row is loaded first (it does not depend on the routed expert ids, whose lookup delays the weights);
//  1. every lane then issues the loads of its whole share of its rows (NPL 16-byte vectors per row and their
//     scales, all in flight at once; spec constants keep the arrays in registers and the loops unrolled);
//  2. only then are the activations quantized into shared memory (MODE 0/1; with NORM normalised first), so that
//     work hides behind the weight loads;
//  3. the integer dot products, one subgroup add per row.
// MODE 2 has no shared memory and no barrier: its activations (MODE 1's int8 h, 16 bytes per weight vector) come
// straight from L2, loaded before the expert lookup. A subgroup serves RSG output rows for all K slots of a token:
// lane L works on slot L / LPS and on every LPS-th vector of that slot's row (NPL of them), so each lane looks up one
// expert and the subgroup's loads cover whole 64-byte runs of K rows at once.
// Mirrors matvec.comp / mv.comp (and through them the CPU back-end's matmul, norm_matvec and MoE expert loop) up to
// the activation rounding. Requires subgroups with shuffle, cols % 32 == 0, 16-byte aligned rows and x.
#define PC_MATVEC
#include "common.glsl"
#extension GL_EXT_spirv_intrinsics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_shuffle : require

spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4450)
int sdot4x8(int a, int b, spirv_literal int fmt);

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint MODE = 0;  // 0 dense, 1 MoE gate+up (quantized h out), 2 MoE down (quantized h in)
layout(constant_id = 2) const uint RSG = 1;   // output rows per subgroup
layout(constant_id = 3) const uint NPL = 4;   // vectors per lane per row: ceil(cols/16/SG); MODE 2 ceil(cols/16/LPS)
layout(constant_id = 4) const uint XQ = 128;  // MODE 0/1: cols / 16 (shared x quants in uvec4, one scale each)
layout(constant_id = 5) const uint NORM = 0;  // MODE 0 (and MODE 1 with FOLD): 1 + dtype of an RMSNorm weight, 0: none
layout(constant_id = 6) const uint SG = 32;   // the subgroup size the host planned for
layout(constant_id = 7) const uint K = 8;     // MODE 2: slots per token (K <= SG)
layout(constant_id = 8) const uint HB = 16;   // MODE 1: rows per workgroup (a multiple of the 16-row h blocks)
layout(constant_id = 9) const uint SEQ = 1;   // groups of RSG rows per subgroup, one after another (loads pipelined)
// MODE 1: 0 = the slot's expert from pc.ids; otherwise the workgroup selects the experts from the router logits at
// pc.lg (route_rank.glsl; bits 0-15 the expert count, bit 16 renormalise), workgroup (0, 0) writes ids and weights.
// Bit 17 (FOLD, the folded router of vk_decode.c, as in matvec.comp): x is the residual row, lg the router's two raw
// halves, ranked as they are (the norm scale s > 0 keeps the order). The activations quantized are x ⊙ w (w the
// RMSNorm weight at pc.nw, NORM = 1 + its dtype; the int8 rounding is the same for any positive scale), the products
// are scaled by s = 1/sqrt(mean(x²) + eps) afterwards, and workgroup (0, 0) also writes the normalised row (pc.xn),
// the logits s·raw (pc.lo), ids and weights.
layout(constant_id = 10) const uint SEL = 0;
#define RR_ON SEL
#include "route_rank.glsl"

const uint NR = MODE == 1u ? 2u * RSG : RSG;       // rows in flight: gate+up loads a gate and an up row each
#define FOLD (MODE == 1u && (SEL & 0x20000u) != 0u)  // a macro, as in matvec.comp
#define PRE (FOLD && (SEL & 0x40000u) != 0u)            // selected beforehand (matvec.comp)
const uint LPS = MODE == 2u ? SG / K : 1u;         // MODE 2: lanes per slot
const uint XQS = MODE == 2u ? 1u : XQ;

shared uvec4 xq[XQS];
shared float xd[XQS];
shared float red[32];
shared float hsh[MODE == 1u ? HB : 1u];

// one 16-byte weight vector (16 quants) against 16 activation quants: Σ q_w·q_x
int qdot16(uvec4 w, uvec4 x) {
    return sdot4x8(int(w.x), int(x.x), 0) + sdot4x8(int(w.y), int(x.y), 0) + sdot4x8(int(w.z), int(x.z), 0) +
           sdot4x8(int(w.w), int(x.w), 0);
}

// four values rounded to int8 (clamped to [-127, 127]) in one word, the first in the low byte
uint pack_q8(ivec4 q) {
    q = clamp(q, ivec4(-127), ivec4(127));
    return (uint(q.x) & 0xffu) | ((uint(q.y) & 0xffu) << 8) | ((uint(q.z) & 0xffu) << 16) | ((uint(q.w) & 0xffu) << 24);
}

const uint NXT = MODE == 2u ? 1u : (4u * XQ + WG - 1u) / WG;  // MODE 0/1: x vec4s per invocation

// step 0: this invocation's vec4s of the x row (cols floats at xa), loaded before anything else
void load_x(uint64_t xa, out vec4 xr[NXT]) {
    uint t = gl_LocalInvocationID.x, nx = XQ * 4u;
    [[unroll]] for (uint j = 0; j < NXT; j++) {
        uint i = t + j * WG;
        xr[j] = i < nx ? BufV4(xa).v[i] : vec4(0);
    }
}

// the RMSNorm scale of the loaded x row, 1/sqrt(mean(x²) + eps) (rms_norm.comp's arithmetic; a barrier inside)
float x_scale(vec4 xr[NXT], uint cols) {
    float ss = 0.0f;
    [[unroll]] for (uint j = 0; j < NXT; j++) ss += dot(xr[j], xr[j]);
    ss = subgroupAdd(ss);
    if (gl_SubgroupInvocationID == 0u) red[gl_SubgroupID] = ss;
    barrier();
    float tot = 0.0f;
    for (uint g = 0; g < gl_NumSubgroups; g++) tot += red[g];
    return 1.0f / sqrt(tot / float(cols) + pc.eps);
}

// step 2: the loaded x row, with NORM normalised first ((x · scale) · w, w at nw), as int8 per block of 16 into
// xq/xd. Four consecutive invocations share a block (one vec4 each; WG % 4 == 0 keeps them in one subgroup).
// Workgroup (0, 0) writes the normalised row to xn when NORM and xn != 0. FOLD: x ⊙ w is quantized (the products
// take the scale afterwards); xn is still the normalised row.
void stage_x(vec4 xr[NXT], uint64_t xn, uint64_t nw, float scale) {
    uint t = gl_LocalInvocationID.x, nx = XQ * 4u;
    bool wout = NORM != 0u && gl_WorkGroupID.x == 0u && gl_WorkGroupID.y == 0u && xn != 0ul;
    [[unroll]] for (uint j = 0; j < NXT; j++) {
        uint i = t + j * WG;
        bool ok = i < nx;
        vec4 v = xr[j];
        if (NORM != 0u && ok) {
            vec4 w = vec4(ld_elem(NORM - 1u, nw, nw, 4u * i), ld_elem(NORM - 1u, nw, nw, 4u * i + 1u),
                          ld_elem(NORM - 1u, nw, nw, 4u * i + 2u), ld_elem(NORM - 1u, nw, nw, 4u * i + 3u));
            if (wout) BufV4(xn).v[i] = (v * scale) * w;
            v = FOLD ? v * w : (v * scale) * w;
        }
        vec4 a = abs(v);
        float m = max(max(a.x, a.y), max(a.z, a.w));
        m = max(m, subgroupShuffleXor(m, 1u));
        m = max(m, subgroupShuffleXor(m, 2u));
        float id = m > 0.0f ? 127.0f / m : 0.0f;
        if (ok) {
            xq[i / 4u][i % 4u] = pack_q8(ivec4(round(v * id)));
            if ((i & 3u) == 0u) xd[i / 4u] = m / 127.0f;
        }
    }
    barrier();
}

// address pair (data, scales) of expert e's matrix from a table of 16-byte entries
void expert(uint64_t table, int e, out uint64_t w, out uint64_t s) {
    uvec4 t = BufUV4(table + uint64_t(e) * 16u).v[0];
    w = packUint2x32(t.xy);
    s = packUint2x32(t.zw);
}

// the lane's NPL vectors (and scales) of the NR rows of row group g: MODE 0/1 rows row0 + g·RSG + r (MODE 1: gate rows
// from w0/s0, then the up rows from w1/s1)
void load_rows(uint64_t w0, uint64_t s0, uint64_t w1, uint64_t s1, uint row0, out uvec4 wq[NR][NPL],
               out float qs[NR][NPL]) {
    uint lane = gl_SubgroupInvocationID, nvec = pc.cols / 16u;
    uint64_t rb = uint64_t(pc.cols), sb = uint64_t(pc.cols / 32u) * 2u;
    [[unroll]] for (uint r = 0; r < NR; r++) {
        uint row = min(row0 + r % RSG, pc.rows - 1u);  // a tail row re-reads the last row, unwritten
        uint64_t wrow = (r < RSG ? w0 : w1) + uint64_t(row) * rb, srow = (r < RSG ? s0 : s1) + uint64_t(row) * sb;
        [[unroll]] for (uint i = 0; i < NPL; i++) {
            uint v = lane + i * SG;
            wq[r][i] = v < nvec ? BufUV4(wrow).v[v] : uvec4(0);
            qs[r][i] = v < nvec ? f16_bits(ld_u16(srow + uint64_t(v / 2u) * 2u)) : 0.0f;
        }
    }
}

// the NR row sums (after the subgroup add) of loaded rows against the staged x
void dot_rows(uvec4 wq[NR][NPL], float qs[NR][NPL], out float acc[NR]) {
    uint lane = gl_SubgroupInvocationID, nvec = pc.cols / 16u;
    [[unroll]] for (uint r = 0; r < NR; r++) {
        float a = 0.0f;
        [[unroll]] for (uint i = 0; i < NPL; i++) {
            uint v = lane + i * SG;
            if (v < nvec) a += float(qdot16(wq[r][i], xq[v])) * (qs[r][i] * xd[v]);
        }
        acc[r] = subgroupAdd(a);
    }
}

void dense_or_gate_up() {
    uint lane = gl_SubgroupInvocationID, sg = gl_SubgroupID;
    uint cols = pc.cols, rows = pc.rows;
    // the subgroup's SEQ groups of RSG rows: one group's loads are in flight while the previous one is summed
    uint row0 = (gl_WorkGroupID.x * gl_NumSubgroups + sg) * RSG * SEQ, entry = gl_WorkGroupID.y;

    // 0. x (MODE 1: the entry's token row): it does not depend on the routing, so it is loaded first
    vec4 xr[NXT];
    load_x(pc.x + (MODE == 1u ? uint64_t(entry / pc.k) * pc.x_stride * 4u : 0ul), xr);

    uint64_t w0 = pc.w, s0 = pc.s, w1 = 0ul, s1 = 0ul;
    float xscale = 1.0f;
    if (PRE) {  // ranked beforehand: only the writing workgroup needs the raw halves
        if (gl_WorkGroupID.x == 0u && gl_WorkGroupID.y == 0u) rr_pre(pc.lg, SEL & 0xffffu, pc.k, pc.ids);
    } else if (FOLD) {  // the router's raw halves, ranked as they are (the norm scale comes after the weight loads)
        rr_load(pc.lg, SEL & 0xffffu, true);
        rr_select_raw(SEL & 0xffffu, pc.k);
    } else if (MODE == 1u && SEL != 0u) {  // after x's loads are issued: the selection's latency overlaps them
        route_rank(pc.lg, SEL & 0xffffu, pc.k, (SEL & 0x10000u) != 0u,
                   gl_WorkGroupID.x == 0u && gl_WorkGroupID.y == 0u, pc.ids, pc.wts);
    }
    if (MODE == 1u) {
        int e = SEL != 0u && (SEL & 0x40000u) == 0u ? int(rr_top_e[entry % pc.k]) : BufI32(pc.ids).v[entry];
        expert(pc.w, e, w0, s0);
        expert(pc.w2, e, w1, s1);
    }

    // 1. the first row group's weight loads and scales, all in flight
    uvec4 wa[NR][NPL], wb[NR][NPL];
    float qa[NR][NPL], qb[NR][NPL];
    load_rows(w0, s0, w1, s1, row0, wa, qa);

    // 2. the activations as int8 in shared memory (with NORM: the scale after the weight loads are issued)
    if (NORM != 0u) xscale = x_scale(xr, cols);
    stage_x(xr, MODE == 0u ? pc.ids : pc.xn, MODE == 0u ? pc.w2 : pc.nw, xscale);

    // 3. dot products, group by group, the next group's loads issued first
    [[unroll]] for (uint g = 0; g < SEQ; g++) {
        if (g + 1u < SEQ) {
            if ((g & 1u) == 0u) load_rows(w0, s0, w1, s1, row0 + (g + 1u) * RSG, wb, qb);
            else load_rows(w0, s0, w1, s1, row0 + (g + 1u) * RSG, wa, qa);
        }
        float acc[NR];
        if ((g & 1u) == 0u) dot_rows(wa, qa, acc);
        else dot_rows(wb, qb, acc);
        if (lane != 0u) continue;
        [[unroll]] for (uint r = 0; r < RSG; r++) {
            uint row = row0 + g * RSG + r;
            if (MODE == 1u) {
                float gs = FOLD ? acc[r] * xscale : acc[r], us = FOLD ? acc[RSG + r] * xscale : acc[RSG + r];
                hsh[sg * RSG * SEQ + g * RSG + r] = silu(gs) * us;
            } else if (row < rows) {
                BufF32 y = BufF32(pc.y + uint64_t(row) * 4u);
                y.v[0] = pc.accumulate != 0u ? y.v[0] + acc[r] : acc[r];
            }
        }
    }
    if (MODE == 0u) return;

    // MODE 1: h = silu(g)·u for the workgroup's HB rows, quantized per block of 16 rows: quants at y + entry·rows
    // bytes, scales at s + (entry·rows/16 + block)·4. Four invocations per block (the first HB/4, in subgroup 0).
    barrier();
    uint t = gl_LocalInvocationID.x, row = gl_WorkGroupID.x * HB + 4u * t;
    if (t < HB / 4u) {
        vec4 h = vec4(hsh[4u * t], hsh[4u * t + 1u], hsh[4u * t + 2u], hsh[4u * t + 3u]);
        vec4 a = abs(h);
        float m = max(max(a.x, a.y), max(a.z, a.w));
        m = max(m, subgroupShuffleXor(m, 1u));
        m = max(m, subgroupShuffleXor(m, 2u));
        float id = m > 0.0f ? 127.0f / m : 0.0f;
        if (row < rows) {
            uint o = entry * rows + row;  // rows % 16 == 0: a block is all in range or all out
            BufU32(pc.y).v[o / 4u] = pack_q8(ivec4(round(h * id)));
            if ((t & 3u) == 0u) BufF32(pc.s).v[o / 16u] = m / 127.0f;
        }
    }
    if (FOLD && gl_WorkGroupID.x == 0u && gl_WorkGroupID.y == 0u)
        rr_finish(SEL & 0xffffu, pc.k, (SEL & 0x10000u) != 0u, (SEL & 0x40000u) != 0u ? 0ul : pc.ids, pc.wts,
                  xscale, pc.lo);
}

// MODE 2: the lane's NPL vectors (and scales) of rows row0 .. row0 + RSG - 1 of its slot's expert (dw, ds)
void load_down(uint64_t dw, uint64_t ds, uint row0, bool on, uint sub, out uvec4 wq[RSG][NPL],
               out float qs[RSG][NPL]) {
    uint nvec = pc.cols / 16u;
    uint64_t rb = uint64_t(pc.cols), sb = uint64_t(pc.cols / 32u) * 2u;
    [[unroll]] for (uint r = 0; r < RSG; r++) {
        uint row = min(row0 + r, pc.rows - 1u);
        uint64_t wrow = dw + uint64_t(row) * rb, srow = ds + uint64_t(row) * sb;
        [[unroll]] for (uint i = 0; i < NPL; i++) {
            uint v = sub + i * LPS;
            bool ok = on && v < nvec;
            wq[r][i] = ok ? BufUV4(wrow).v[v] : uvec4(0);
            qs[r][i] = ok ? f16_bits(ld_u16(srow + uint64_t(v / 2u) * 2u)) : 0.0f;
        }
    }
}

// MODE 2: y[tok][row] += Σ_slot wt·(down_e[row] · h[entry]) for the subgroup's SEQ groups of RSG rows (the next
// group's loads issued before the previous group is summed; x and the expert lookup shared by all groups)
void down() {
    uint lane = gl_SubgroupInvocationID, sg = gl_SubgroupID;
    uint cols = pc.cols, rows = pc.rows, nvec = cols / 16u, tok = gl_WorkGroupID.y;
    uint row0 = (gl_WorkGroupID.x * gl_NumSubgroups + sg) * RSG * SEQ;
    uint slot = min(lane / LPS, K - 1u), sub = lane % LPS, entry = tok * K + slot;
    bool on = lane < K * LPS;

    // the entry's int8 h (L2) first: it does not depend on the routing
    uint64_t xrow = pc.x + uint64_t(entry) * cols, xs = pc.s + uint64_t(entry) * nvec * 4u;
    uvec4 xv[NPL];
    float dx[NPL];
    [[unroll]] for (uint i = 0; i < NPL; i++) {
        uint v = sub + i * LPS;
        bool ok = on && v < nvec;
        xv[i] = ok ? BufUV4(xrow).v[v] : uvec4(0);
        dx[i] = ok ? BufF32(xs).v[v] : 0.0f;
    }
    uint64_t dw, ds;
    expert(pc.w, BufI32(pc.ids).v[entry], dw, ds);
    float wt = on ? BufF32(pc.wts).v[entry] : 0.0f;
    uvec4 wa[RSG][NPL], wb[RSG][NPL];
    float qa[RSG][NPL], qb[RSG][NPL];
    load_down(dw, ds, row0, on, sub, wa, qa);
    [[unroll]] for (uint g = 0; g < SEQ; g++) {
        if (g + 1u < SEQ) {
            if ((g & 1u) == 0u) load_down(dw, ds, row0 + (g + 1u) * RSG, on, sub, wb, qb);
            else load_down(dw, ds, row0 + (g + 1u) * RSG, on, sub, wa, qa);
        }
        [[unroll]] for (uint r = 0; r < RSG; r++) {
            float acc = 0.0f;
            [[unroll]] for (uint i = 0; i < NPL; i++) {
                uvec4 w = (g & 1u) == 0u ? wa[r][i] : wb[r][i];
                float d = (g & 1u) == 0u ? qa[r][i] : qb[r][i];
                acc += float(qdot16(w, xv[i])) * (d * dx[i]);
            }
            float s = subgroupAdd(acc * wt);
            uint row = row0 + g * RSG + r;
            if (lane == 0u && row < rows) {
                BufF32 y = BufF32(pc.y + (uint64_t(tok) * pc.y_stride + row) * 4u);
                y.v[0] = y.v[0] + s;
            }
        }
    }
}

void main() {
    if (MODE == 2u)
        down();
    else
        dense_or_gate_up();
}
