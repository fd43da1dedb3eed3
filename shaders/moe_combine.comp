#version 460
// moe_combine.comp — y[i][c] += Σ_slot weight[i][slot] · d[pos[i·k + slot]][c], the slots summed in order, from the
// expert outputs d in sorted order (grouped MoE path).
// Mirrors the CPU back-end's moe_experts accumulation (Σ_k w_k · y_e_k added to y).
//
// V = 4 (dim % 4 == 0, every row 16-byte aligned): one thread per 4 consecutive columns of one token (grid y walks
// the tokens, so the token's k positions and weights are workgroup-uniform loads), and with K (spec constant 2) the
// host's k the slot loop is unrolled: all k rows' 16-byte loads are issued before the sums need them. V = 1: one
// thread per element, as before. Both add the slots to s in slot order, element by element, so the two forms give
// the same bits.
#define PC_COMBINE
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint V = 1;
layout(constant_id = 2) const uint K = 0;  // 0: pc.k, any; else pc.k == K (the loop unrolled)
// D16 = 1 (with V = 4): d holds fp16 (matmul_cm.comp's OUT16 down projection), widened exactly to fp32 here
layout(constant_id = 3) const uint D16 = 0;
layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer BufUV2 { uvec2 v[]; };

void main() {
    if (V == 4u) {
        uint i = gl_WorkGroupID.y, c4 = gl_WorkGroupID.x * WG + gl_LocalInvocationID.x;
        if (i >= pc.n || c4 * 4u >= pc.dim) return;
        uint k = K != 0u ? K : pc.k;
        vec4 s = vec4(0.0f);
        [[unroll]] for (uint j = 0; j < k; j++) {
            int p = BufI32(pc.pos).v[i * k + j];
            if (p < 0) continue;
            vec4 d;
            if (D16 != 0u) {
                uvec2 h = BufUV2(pc.d + (uint64_t(p) * pc.dim + c4 * 4u) * 2u).v[0];
                d = vec4(unpackHalf2x16(h.x), unpackHalf2x16(h.y));
            } else {
                d = BufV4(pc.d + (uint64_t(p) * pc.dim + c4 * 4u) * 4u).v[0];
            }
            s += BufF32(pc.wts).v[i * k + j] * d;
        }
        BufV4 y = BufV4(pc.y + (uint64_t(i) * pc.dim + c4 * 4u) * 4u);
        y.v[0] = y.v[0] + s;
        return;
    }
    uint idx = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    if (idx >= pc.n * pc.dim) return;
    uint i = idx / pc.dim, c = idx % pc.dim;
    float s = 0.0f;
    for (uint j = 0; j < pc.k; j++) {
        int p = BufI32(pc.pos).v[i * pc.k + j];
        if (p < 0) continue;
        s += BufF32(pc.wts).v[i * pc.k + j] * BufF32(pc.d + (uint64_t(p) * pc.dim + c) * 4u).v[0];
    }
    BufF32 y = BufF32(pc.y + uint64_t(idx) * 4u);
    y.v[0] = y.v[0] + s;
}
