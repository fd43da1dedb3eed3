#version 460
// route_fold.comp — the tables of the folded decode router (vk_decode.c, "folded router"), once per layer:
//   rw[e][i] = r[e][i] · nw[i]             the router with the post-attention RMSNorm weight folded in
//   m[e][j]  = Σ_i rw[e][i] · wo[i][j]     rw times o_proj, fp32 sums over i in increasing order
// so that the router's logits of the normalised residual after o_proj, r · ((x + wo·a) · s ⊙ nw), are
// s · (rw·x + m·a): the router then needs neither o_proj's result nor the norm. Any weight dtype (ld_elem); a
// workgroup computes a TE x TJ tile of m from TI-deep slices of rw and wo staged in shared memory; the x = 0 column
// of workgroups also writes its rw rows.
#define PC_FOLD
#include "common.glsl"

layout(local_size_x = 256) in;
layout(constant_id = 0) const uint OTYPE = 2;  // wo's dtype
layout(constant_id = 1) const uint RTYPE = 2;  // the router's dtype
layout(constant_id = 2) const uint NTYPE = 2;  // the norm weight's dtype

const uint TE = 32u, TJ = 64u, TI = 32u;  // 256 invocations: each TE·TJ/256 = 8 outputs, j strided by 8
shared float rsh[TE][TI + 1u];
shared float wsh[TI][TJ];

void main() {
    uint t = gl_LocalInvocationID.x, j0 = gl_WorkGroupID.x * TJ, e0 = gl_WorkGroupID.y * TE;
    uint te = t / 8u, tj = t % 8u;
    uint64_t rrb = row_bytes(RTYPE, pc.H), rsb = uint64_t(pc.H / 32u) * 2u;
    uint64_t orb = row_bytes(OTYPE, pc.HO), osb = uint64_t(pc.HO / 32u) * 2u;
    float acc[8];
    [[unroll]] for (uint q = 0u; q < 8u; q++) acc[q] = 0.0f;
    for (uint i0 = 0u; i0 < pc.H; i0 += TI) {
        for (uint q = t; q < TE * TI; q += 256u) {
            uint e = e0 + q / TI, i = i0 + q % TI;
            float v = 0.0f;
            if (e < pc.E && i < pc.H) {
                v = ld_elem(RTYPE, pc.r + uint64_t(e) * rrb, pc.rs + uint64_t(e) * rsb, i) *
                    ld_elem(NTYPE, pc.nw, pc.nw, i);
                if (gl_WorkGroupID.x == 0u) BufF32(pc.rw).v[e * pc.H + i] = v;
            }
            rsh[q / TI][q % TI] = v;
        }
        for (uint q = t; q < TI * TJ; q += 256u) {
            uint i = i0 + q / TJ, j = j0 + q % TJ;
            wsh[q / TJ][q % TJ] = i < pc.H && j < pc.HO
                                      ? ld_elem(OTYPE, pc.wo + uint64_t(i) * orb, pc.wos + uint64_t(i) * osb, j)
                                      : 0.0f;
        }
        barrier();
        for (uint i = 0u; i < TI; i++) {
            float r = rsh[te][i];
            [[unroll]] for (uint q = 0u; q < 8u; q++) acc[q] = fma(r, wsh[i][tj + 8u * q], acc[q]);
        }
        barrier();
    }
    uint e = e0 + te;
    if (e < pc.E)
        [[unroll]] for (uint q = 0u; q < 8u; q++) {
            uint j = j0 + tj + 8u * q;
            if (j < pc.HO) BufF32(pc.m).v[e * pc.HO + j] = acc[q];
        }
}
