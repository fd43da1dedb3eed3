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
// A subgroup owns RSG rows; the workgroup N_SG·RSG. Mirrors matvec.comp and through it the CPU back-end's matmul and
// norm_matvec (rms_norm: (x · 1/sqrt(mean(x²) + eps)) · w, then Σ_c x[c]·W[r][c] in fp32).
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

    // 1. the weight loads (and q8 scales, two vectors per block of 32), all in flight
    uvec4 wq[RSG][NPL];
    float qs[RSG][NPL];
    [[unroll]] for (uint r = 0; r < RSG; r++) {
        uint row = min(row0 + r, rows - 1u);  // a tail row re-reads the last row, unwritten
        uint64_t wrow = pc.w + uint64_t(row) * rb, srow = pc.s + uint64_t(row) * sb;
        [[unroll]] for (uint i = 0; i < NPL; i++) {
            uint v = lane + i * SG;
            wq[r][i] = v < nvec ? BufUV4(wrow).v[v] : uvec4(0);
            qs[r][i] = WTYPE == VK_WT_Q8_0 && v < nvec ? f16_bits(ld_u16(srow + uint64_t(v / 2u) * 2u)) : 1.0f;
        }
    }

    // 2. x into shared memory (by phase), normalised with NORM; workgroup 0 writes the normalised row to pc.ids
    BufV4 xv = BufV4(pc.x);
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
    [[unroll]] for (uint r = 0; r < RSG; r++) {
        float acc = 0.0f;
        [[unroll]] for (uint i = 0; i < NPL; i++) {
            uint v = lane + i * SG;
            if (v < nvec) {
                float s = vec_dot(wq[r][i], v, nvec);
                acc += WTYPE == VK_WT_Q8_0 ? s * qs[r][i] : s;
            }
        }
        acc = subgroupAdd(acc);
        uint row = row0 + r;
        if (lane == 0u && row < rows) {
            BufF32 y = BufF32(pc.y + uint64_t(row) * 4u);
            y.v[0] = pc.accumulate != 0u ? y.v[0] + acc : acc;
        }
    }
}
