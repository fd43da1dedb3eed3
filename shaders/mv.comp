#version 460
// mv.comp — the decode matrix-vector kernel for aligned shapes on devices with subgroups (matvec.comp is the general
// fallback): y = x · Wᵀ for one x row (MODE 0), the MoE gate+up pair h = silu(gate_e·x)⊙(up_e·x) for one (token,
// slot) entry per workgroup row (MODE 1), and the MoE down projection y[token] += Σ_slot w·down_e·h (MODE 2).
//
// Built for memory-level parallelism, since a decode step is a chain of short memory-bound kernels:
//  1. every lane first issues the loads of its whole share of its rows (NPL 16-byte vectors per row, all in
//     flight at once, spec constants so the arrays stay in registers);
//  2. only then is x staged in shared memory (and, with NORM, RMS-normalised: the norm's latency hides behind the
//     weight loads instead of delaying them);
//  3. the dot products read x from shared memory. x is stored "by phase": the P = EPV/4 vec4s of x that one 16-byte
//     weight vector needs sit P·nvec apart, so the 32 lanes of a subgroup, which hold consecutive weight vectors,
//     read consecutive vec4s (no bank conflicts; P = 4 for q8_0, where a naive layout would be 4-way conflicted).
// A subgroup owns RSG rows (MODE 0/1: the workgroup covers N_SG·RSG rows; MODE 2: the workgroup's subgroups split
// the token's k slots for RSG rows and add their sums in subgroup order, which is deterministic).
// Mirrors matvec.comp and through it the CPU back-end's matmul, moe_experts and norm_matvec (fp32 sums).
#define PC_MATVEC
#include "common.glsl"
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint WTYPE = 2;
layout(constant_id = 2) const uint MODE = 0;   // 0 dense, 1 MoE gate+up, 2 MoE down
layout(constant_id = 3) const uint NPL = 8;    // 16-byte weight vectors per lane per row (ceil(cols / EPV / SG))
layout(constant_id = 4) const uint RSG = 1;    // rows per subgroup
layout(constant_id = 5) const uint XS = 512;   // shared x in vec4: cols/4 (MODE 0/1) or k·cols/4 (MODE 2)
layout(constant_id = 6) const uint NORM = 0;   // MODE 0: 1 + dtype of an RMSNorm weight applied to x first
layout(constant_id = 7) const uint SG = 32;    // the subgroup size the host planned NPL for

const uint EPV = WTYPE == VK_WT_F32 ? 4u : WTYPE == VK_WT_Q8_0 ? 16u : 8u;  // elements per 16-byte vector
const uint P = EPV / 4u;                                                     // x vec4s per weight vector
const uint NR = MODE == 1u ? 2u * RSG : RSG;                                 // rows in flight per subgroup

shared vec4 xsh[XS];
shared float red[64];
shared float down_part[32 * 4];

// x vec4 j of a row of nvec weight vectors, in the by-phase layout
uint xpos(uint j, uint nvec) { return (j % P) * nvec + j / P; }

float vec_dot(uvec4 q, uint v, uint nvec, uint base) {
    vec4 w0, w1, w2, w3;
    dq_vec_bits(WTYPE, q, w0, w1, w2, w3);
    float s = dot(w0, xsh[base + v]);
    if (P >= 2u) s += dot(w1, xsh[base + nvec + v]);
    if (P == 4u) s += dot(w2, xsh[base + 2u * nvec + v]) + dot(w3, xsh[base + 3u * nvec + v]);
    return s;
}

// the q8 scale of weight vector v (two vectors per block of 32) from the row's scale array
float q8_scale(uint64_t srow, uint v) { return f16_bits(ld_u16(srow + uint64_t(v / 2u) * 2u)); }

void expert(uint64_t table, int e, out uint64_t w, out uint64_t s) {
    BufU64 t = BufU64(table + uint64_t(e) * 16u);
    w = t.v[0];
    s = t.v[1];
}

void main() {
    uint lane = gl_SubgroupInvocationID, sg = gl_SubgroupID, t = gl_LocalInvocationID.x;
    uint cols = pc.cols, rows = pc.rows, nvec = cols / EPV;
    uint64_t rb = row_bytes(WTYPE, cols), sb = uint64_t(cols / 32u) * 2u;

    // rows of this subgroup and where they live
    uint64_t wrow[NR], srow[NR];
    uint row0, tok = 0u, slot = 0u;
    if (MODE == 2u) {
        tok = gl_WorkGroupID.y;
        slot = sg;  // the first slot this subgroup handles (more in the loop below when k > subgroups)
        row0 = gl_WorkGroupID.x * RSG;
    } else {
        row0 = (gl_WorkGroupID.x * gl_NumSubgroups + sg) * RSG;
    }
    uint64_t w0 = pc.w, s0 = pc.s, w1 = 0ul, s1 = 0ul;
    if (MODE == 1u) {
        int e = BufI32(pc.ids).v[gl_WorkGroupID.y];
        expert(pc.w, e, w0, s0);
        expert(pc.w2, e, w1, s1);
    } else if (MODE == 2u && slot < pc.k) {
        expert(pc.w, BufI32(pc.ids).v[tok * pc.k + slot], w0, s0);
    }
    [[unroll]] for (uint r = 0; r < RSG; r++) {
        uint row = min(row0 + r, rows - 1u);  // a tail row re-reads the last row, unwritten
        wrow[r] = w0 + uint64_t(row) * rb;
        srow[r] = s0 + uint64_t(row) * sb;
        if (MODE == 1u) {
            wrow[RSG + r] = w1 + uint64_t(row) * rb;
            srow[RSG + r] = s1 + uint64_t(row) * sb;
        }
    }

    // 1. the weight loads, all in flight
    uvec4 wq[NR][NPL];
    float qs[NR][NPL];  // q8 scales
    bool have = MODE != 2u || slot < pc.k;
    [[unroll]] for (uint r = 0; r < NR; r++)
        [[unroll]] for (uint i = 0; i < NPL; i++) {
            uint v = lane + i * SG;
            bool ok = have && v < nvec;
            wq[r][i] = ok ? BufUV4(wrow[r]).v[v] : uvec4(0);
            qs[r][i] = WTYPE == VK_WT_Q8_0 && ok ? q8_scale(srow[r], v) : 1.0f;
        }

    // 2. x into shared memory (by phase), normalised with NORM
    if (MODE == 2u) {
        uint nx = cols / 4u;
        for (uint j = 0; j < pc.k; j++) {
            BufV4 h = BufV4(pc.x + uint64_t(tok * pc.k + j) * pc.x_stride * 4u);
            for (uint i = t; i < nx; i += WG) xsh[j * nx + xpos(i, nvec)] = h.v[i];
        }
    } else {
        uint nx = cols / 4u;
        BufV4 xv = BufV4(pc.x + uint64_t(MODE == 1u ? gl_WorkGroupID.y / pc.k : 0u) * pc.x_stride * 4u);
        if (NORM != 0u) {  // rms_norm.comp's arithmetic: (x · 1/sqrt(mean(x²) + eps)) · w
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
                vec4 a = xv.v[i];
                vec4 nw = vec4(ld_elem(NORM - 1u, pc.w2, pc.w2, 4u * i), ld_elem(NORM - 1u, pc.w2, pc.w2, 4u * i + 1u),
                               ld_elem(NORM - 1u, pc.w2, pc.w2, 4u * i + 2u),
                               ld_elem(NORM - 1u, pc.w2, pc.w2, 4u * i + 3u));
                vec4 o = (a * scale) * nw;
                xsh[xpos(i, nvec)] = o;
                if (wout) BufV4(pc.ids).v[i] = o;
            }
        } else {
            for (uint i = t; i < nx; i += WG) xsh[xpos(i, nvec)] = xv.v[i];
        }
    }
    barrier();

    // 3. dot products
    if (MODE == 2u) {
        float total[RSG];
        [[unroll]] for (uint r = 0; r < RSG; r++) total[r] = 0.0f;
        for (uint j = slot; j < pc.k; j += gl_NumSubgroups) {
            uint entry = tok * pc.k + j;
            if (j != slot) {  // a later slot of this subgroup: load its rows now
                uint64_t dw, ds;
                expert(pc.w, BufI32(pc.ids).v[entry], dw, ds);
                [[unroll]] for (uint r = 0; r < RSG; r++) {
                    uint row = min(row0 + r, rows - 1u);
                    wrow[r] = dw + uint64_t(row) * rb;
                    srow[r] = ds + uint64_t(row) * sb;
                    [[unroll]] for (uint i = 0; i < NPL; i++) {
                        uint v = lane + i * SG;
                        wq[r][i] = v < nvec ? BufUV4(wrow[r]).v[v] : uvec4(0);
                        qs[r][i] = WTYPE == VK_WT_Q8_0 && v < nvec ? q8_scale(srow[r], v) : 1.0f;
                    }
                }
            }
            float wt = BufF32(pc.wts).v[entry];
            [[unroll]] for (uint r = 0; r < RSG; r++) {
                float acc = 0.0f;
                [[unroll]] for (uint i = 0; i < NPL; i++) {
                    uint v = lane + i * SG;
                    if (v < nvec) {
                        float s = vec_dot(wq[r][i], v, nvec, j * (cols / 4u));
                        acc += WTYPE == VK_WT_Q8_0 ? s * qs[r][i] : s;
                    }
                }
                total[r] += wt * acc;
            }
        }
        [[unroll]] for (uint r = 0; r < RSG; r++) {
            float s = subgroupAdd(total[r]);
            if (lane == 0u) down_part[sg * RSG + r] = s;
        }
        barrier();
        if (t < RSG && row0 + t < rows) {
            float s = 0.0f;
            for (uint g = 0; g < gl_NumSubgroups; g++) s += down_part[g * RSG + t];
            BufF32 y = BufF32(pc.y + (uint64_t(tok) * pc.y_stride + row0 + t) * 4u);
            y.v[0] = y.v[0] + s;
        }
        return;
    }

    float acc[NR];
    [[unroll]] for (uint r = 0; r < NR; r++) {
        acc[r] = 0.0f;
        [[unroll]] for (uint i = 0; i < NPL; i++) {
            uint v = lane + i * SG;
            if (v < nvec) {
                float s = vec_dot(wq[r][i], v, nvec, 0u);
                acc[r] += WTYPE == VK_WT_Q8_0 ? s * qs[r][i] : s;
            }
        }
        acc[r] = subgroupAdd(acc[r]);
    }
    if (lane != 0u) return;
    [[unroll]] for (uint r = 0; r < RSG; r++) {
        uint row = row0 + r;
        if (row >= rows) break;
        if (MODE == 1u) {
            BufF32(pc.y).v[gl_WorkGroupID.y * pc.y_stride + row] = silu(acc[r]) * acc[RSG + r];
        } else {
            BufF32 y = BufF32(pc.y + uint64_t(row) * 4u);
            y.v[0] = pc.accumulate != 0u ? y.v[0] + acc[r] : acc[r];
        }
    }
}
