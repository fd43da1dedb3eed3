#version 460
// mv.comp — the decode matrix-vector kernel for one aligned x row on devices with subgroups (matvec.comp is the
// general kernel and the one for the MoE pair): y (+)= x · Wᵀ, optionally with x RMS-normalised first (NORM).
//
// Built for memory-level parallelism, since a decode step is a chain of short memory-bound kernels:
//  1. every lane first issues the loads of its whole share of its rows (NPL 16-byte vectors per row, all in
//     flight at once; spec constants keep the arrays in registers);
//  2. only then is x staged in shared memory (with NORM also normalised, so the norm's latency hides behind the
//     weight loads instead of delaying them — which made a separate rms_norm dispatch unnecessary);
//  3. the dot products read x from shared memory. x is stored "by phase": the P = EPV/4 vec4s of x that one 16-byte
//     weight vector needs sit nvec apart, so the lanes of a subgroup, which hold consecutive weight vectors, read
//     consecutive vec4s (no bank conflicts; P = 4 for q8_0, where the plain layout is 4-way conflicted).
// A subgroup owns RSG rows; the workgroup N_SG·RSG. MODE 1 (opt-in, OMNI_VK_MOE_MV=1): the MoE gate+up of the
// decode pair — grid y is the (token, slot) entry, a subgroup loads RSG gate rows and the same RSG up rows of the
// entry's expert (pc.w / pc.w2: tables of (data, scale) addresses, pc.ids: expert ids, pc.k slots per token) and
// writes h[entry][row] = silu(gate·x)·(up·x), x being the entry's token row. Mirrors matvec.comp and through it the
// CPU back-end's matmul and norm_matvec (rms_norm: (x · 1/sqrt(mean(x²) + eps)) · w, then Σ_c x[c]·W[r][c] in fp32).
#define PC_MATVEC
#include "common.glsl"
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint WTYPE = 2;
layout(constant_id = 2) const uint NPL = 8;   // 16-byte weight vectors per lane per row (ceil(cols / EPV / SG))
layout(constant_id = 3) const uint RSG = 1;   // rows per subgroup
layout(constant_id = 4) const uint XS = 512;  // shared x in vec4: cols / 4
layout(constant_id = 5) const uint NORM = 0;  // 1 + dtype of an RMSNorm weight applied to x first (0: none)
layout(constant_id = 6) const uint SG = 32;   // the subgroup size the host planned NPL for
layout(constant_id = 7) const uint MODE = 0;  // 0 dense, 1 MoE gate+up (NORM 0)
const uint NR = MODE == 1u ? 2u * RSG : RSG;  // rows in flight per subgroup (gate rows, then up rows)

const uint EPV = WTYPE == VK_WT_F32 ? 4u : WTYPE == VK_WT_Q8_0 ? 16u : 8u;  // elements per 16-byte vector
const uint P = EPV / 4u;                                                     // x vec4s per weight vector

shared vec4 xsh[XS];
shared float red[64];

// x vec4 j of a row of nvec weight vectors, in the by-phase layout
uint xpos(uint j, uint nvec) { return (j % P) * nvec + j / P; }

float vec_dot(uvec4 q, uint v, uint nvec) {
    vec4 w0, w1, w2, w3;
    dq_vec_bits(WTYPE, q, w0, w1, w2, w3);
    float s = dot(w0, xsh[v]);
    if (P >= 2u) s += dot(w1, xsh[nvec + v]);
    if (P == 4u) s += dot(w2, xsh[2u * nvec + v]) + dot(w3, xsh[3u * nvec + v]);
    return s;
}

void main() {
    uint lane = gl_SubgroupInvocationID, sg = gl_SubgroupID, t = gl_LocalInvocationID.x;
    uint cols = pc.cols, rows = pc.rows, nvec = cols / EPV, nx = cols / 4u;
    uint64_t rb = row_bytes(WTYPE, cols), sb = uint64_t(cols / 32u) * 2u;
    uint row0 = (gl_WorkGroupID.x * gl_NumSubgroups + sg) * RSG;
    // the matrices' data and scale addresses: the dense weight, or the entry's gate and up experts
    uint64_t wa0 = pc.w, sa0 = pc.s, wa1 = 0ul, sa1 = 0ul, xrow = pc.x;
    if (MODE == 1u) {
        uint entry = gl_WorkGroupID.y;
        int e = BufI32(pc.ids).v[entry];
        BufU64 tg = BufU64(pc.w + uint64_t(e) * 16u), tu = BufU64(pc.w2 + uint64_t(e) * 16u);
        wa0 = tg.v[0], sa0 = tg.v[1], wa1 = tu.v[0], sa1 = tu.v[1];
        xrow = pc.x + uint64_t(entry / pc.k) * pc.x_stride * 4u;
    }

    // 1. the weight loads (and q8 scales, two vectors per block of 32), all in flight
    uvec4 wq[NR][NPL];
    float qs[NR][NPL];
    [[unroll]] for (uint r = 0; r < NR; r++) {
        uint row = min(row0 + r % RSG, rows - 1u);  // a tail row re-reads the last row, unwritten
        bool up = r >= RSG;
        uint64_t wrow = (up ? wa1 : wa0) + uint64_t(row) * rb, srow = (up ? sa1 : sa0) + uint64_t(row) * sb;
        [[unroll]] for (uint i = 0; i < NPL; i++) {
            uint v = lane + i * SG;
            wq[r][i] = v < nvec ? BufUV4(wrow).v[v] : uvec4(0);
            qs[r][i] = WTYPE == VK_WT_Q8_0 && v < nvec ? f16_bits(ld_u16(srow + uint64_t(v / 2u) * 2u)) : 1.0f;
        }
    }

    // 2. x into shared memory (by phase), normalised with NORM; workgroup 0 writes the normalised row to pc.ids
    BufV4 xv = BufV4(xrow);
    if (NORM != 0u) {  // rms_norm.comp's arithmetic
        float ss = 0.0f;
        for (uint i = t; i < nx; i += WG) {
            vec4 a = xv.v[i];
            ss += dot(a, a);
        }
        ss = subgroupAdd(ss);
        if (lane == 0u) red[sg] = ss;
        barrier();
        float tot = 0.0f;
        for (uint g = 0; g < gl_NumSubgroups; g++) tot += red[g];
        float scale = 1.0f / sqrt(tot / float(cols) + pc.eps);
        bool wout = gl_WorkGroupID.x == 0u && pc.ids != 0ul;
        for (uint i = t; i < nx; i += WG) {
            vec4 nw = vec4(ld_elem(NORM - 1u, pc.w2, pc.w2, 4u * i), ld_elem(NORM - 1u, pc.w2, pc.w2, 4u * i + 1u),
                           ld_elem(NORM - 1u, pc.w2, pc.w2, 4u * i + 2u),
                           ld_elem(NORM - 1u, pc.w2, pc.w2, 4u * i + 3u));
            vec4 o = (xv.v[i] * scale) * nw;
            xsh[xpos(i, nvec)] = o;
            if (wout) BufV4(pc.ids).v[i] = o;
        }
    } else {
        for (uint i = t; i < nx; i += WG) xsh[xpos(i, nvec)] = xv.v[i];
    }
    barrier();

    // 3. dot products
    float acc[NR];
    [[unroll]] for (uint r = 0; r < NR; r++) {
        float a = 0.0f;
        [[unroll]] for (uint i = 0; i < NPL; i++) {
            uint v = lane + i * SG;
            if (v < nvec) {
                float s = vec_dot(wq[r][i], v, nvec);
                a += WTYPE == VK_WT_Q8_0 ? s * qs[r][i] : s;
            }
        }
        acc[r] = subgroupAdd(a);
    }
    [[unroll]] for (uint r = 0; r < RSG; r++) {
        uint row = row0 + r;
        if (lane != 0u || row >= rows) continue;
        if (MODE == 1u) {
            BufF32(pc.y).v[gl_WorkGroupID.y * pc.y_stride + row] = silu(acc[r]) * acc[RSG + r];
        } else {
            BufF32 y = BufF32(pc.y + uint64_t(row) * 4u);
            y.v[0] = pc.accumulate != 0u ? y.v[0] + acc[r] : acc[r];
        }
    }
}
