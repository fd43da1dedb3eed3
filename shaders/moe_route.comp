#version 460
// moe_route.comp — MoE router per token (route.glsl's selection), logits from memory.
// Mirrors HF Qwen3-Omni's TopKRouter and the CPU back-end's moe_route.
//
// Two forms (spec constant 1, SGT):
//   SGT = 0: one workgroup per token, route.glsl's route_select (any expert count up to 1024, k <= 32).
//   SGT = 1 (prefill, the subgroup build only): one subgroup per token, the token's logits in registers (lane l holds
//     experts l, l + S, l + 2S, ... for subgroup size S; n_exp <= PL·S, k <= S). No shared memory and no barriers:
//     route_select's softmax and k argmax rounds each cost several workgroup barriers, here a subgroup reduction.
//     The same numbers as route_select where the subgroup build runs it (workgroups of whole subgroups, experts in
//     subgroup-sized blocks): the max, each block's sum by subgroupAdd and the blocks' sums added in block order, the
//     same division, the largest probability with ties to the lower index, taken ones set to -1, the renormalising
//     sum in slot order.
#define PC_ROUTE
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint SGT = 0;

#include "reduce.glsl"
#include "route.glsl"

#ifndef NO_SUBGROUP
const uint PL = 8;  // logits per lane: n_exp <= 8·S (256 experts with 32-wide subgroups)

// tokens wg·(subgroups per workgroup) + subgroup, then further ones a grid's stride on (the host sizes the grid for
// its subgroup size; a device that picks other subgroups still covers every token)
void route_subgroup() {
    uint S = gl_SubgroupSize, lane = gl_SubgroupInvocationID, ne = pc.n_exp, k = pc.k;
    uint nwg = gl_NumWorkGroups.x * gl_NumWorkGroups.y;
    uint wg = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    for (uint tok = wg * gl_NumSubgroups + gl_SubgroupID; tok < pc.n; tok += nwg * gl_NumSubgroups) {
        BufF32 lg = BufF32(pc.logits + uint64_t(tok) * ne * 4u);
        float v[PL];
        float m = uintBitsToFloat(0xff800000u);
        // nsplit != 0: the logits as mm_ksum.comp would have summed the split planes first (the same bits), written
        uint64_t pa = pc.part + uint64_t(tok) * ne * 4u, plane = uint64_t(pc.n) * ne * 4u;
        [[unroll]] for (uint i = 0; i < PL; i++) {
            uint e = lane + i * S;
            float s = 0.0f;
            if (e < ne && pc.nsplit != 0u) {
                for (uint z = 0; z < pc.nsplit; z++) s += BufF32(pa + z * plane).v[e];
                lg.v[e] = s;  // the logits as the product promised them
            } else if (e < ne)
                s = lg.v[e];
            v[i] = e < ne ? s : uintBitsToFloat(0xff800000u);
            m = max(m, v[i]);
        }
        m = subgroupMax(m);
        float sum = 0.0f;
        [[unroll]] for (uint i = 0; i < PL; i++) {
            if (i * S >= ne) break;  // subgroup-uniform
            uint e = lane + i * S;
            v[i] = e < ne ? exp_acc(v[i] - m) : 0.0f;
            sum += subgroupAdd(v[i]);
        }
        [[unroll]] for (uint i = 0; i < PL; i++) v[i] = lane + i * S < ne ? v[i] / sum : -2.0f;

        float myv = 0.0f, s = 0.0f;
        int mye = 0;
        for (uint j = 0; j < k; j++) {
            float best = -2.0f;  // below every probability and below the -1 of taken experts
            uint bi = 0xffffffffu;
            [[unroll]] for (uint i = 0; i < PL; i++)
                if (v[i] > best) {  // strictly greater: the lowest index wins among this lane's equals
                    best = v[i];
                    bi = lane + i * S;
                }
            float bm = subgroupMax(best);
            uint mi = subgroupMin(best == bm ? bi : 0xffffffffu);
            [[unroll]] for (uint i = 0; i < PL; i++)
                if (lane + i * S == mi) v[i] = -1.0f;
            if (lane == j) {
                myv = bm;
                mye = int(mi);
            }
            s += bm;
        }
        if (lane < k) {
            BufI32(pc.ids + (uint64_t(tok) * k + lane) * 4u).v[0] = mye;
            BufF32(pc.wts + (uint64_t(tok) * k + lane) * 4u).v[0] = pc.norm != 0u ? myv / s : myv;
        }
    }
}
#endif

void main() {
#ifndef NO_SUBGROUP
    if (SGT != 0u) {
        route_subgroup();
        return;
    }
#endif
    uint tok = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (tok >= pc.n) return;  // uniform per workgroup
    uint ne = pc.n_exp;
    BufF32 lg = BufF32(pc.logits + uint64_t(tok) * ne * 4u);
    for (uint e = gl_LocalInvocationID.x; e < ne; e += WG) prob[e] = lg.v[e];
    route_select(ne, pc.k, pc.norm != 0u, pc.ids + uint64_t(tok) * pc.k * 4u, pc.wts + uint64_t(tok) * pc.k * 4u);
}
