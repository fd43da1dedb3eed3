#version 460
// moe_route.comp — MoE router per token (route.glsl's selection), one workgroup per token, logits from memory.
// Mirrors HF Qwen3-Omni's TopKRouter and the CPU back-end's moe_route.
#define PC_ROUTE
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;

#include "reduce.glsl"
#include "route.glsl"

void main() {
    uint tok = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (tok >= pc.n) return;  // uniform per workgroup
    uint ne = pc.n_exp;
    BufF32 lg = BufF32(pc.logits + uint64_t(tok) * ne * 4u);
    for (uint e = gl_LocalInvocationID.x; e < ne; e += WG) prob[e] = lg.v[e];
    route_select(ne, pc.k, pc.norm != 0u, pc.ids + uint64_t(tok) * pc.k * 4u, pc.wts + uint64_t(tok) * pc.k * 4u);
}
