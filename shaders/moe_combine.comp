#version 460
// moe_combine.comp — y[i][c] += Σ_slot weight[i][slot] · d[pos[i·k + slot]][c], the slots summed in order, from the
// expert outputs d in sorted order (grouped MoE path). One thread per output element.
// Mirrors the CPU back-end's moe_experts accumulation (Σ_k w_k · y_e_k added to y).
#define PC_COMBINE
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

void main() {
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
