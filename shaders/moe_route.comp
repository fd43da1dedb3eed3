#version 460
// moe_route.comp — MoE router per token: probs = softmax(logits) in fp32, the k largest (ties -> lower expert
// index), optionally renormalised to sum 1. One workgroup per token; k rounds of a workgroup argmax over the
// probabilities kept in shared memory. Mirrors HF Qwen3-Omni's TopKRouter (softmax, torch.topk, renormalise) and
// the CPU back-end's moe_route.
#define PC_ROUTE
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;

#include "reduce.glsl"

const uint MAX_EXP = 1024;
const uint MAX_K = 32;
shared float prob[MAX_EXP];

void main() {
    uint tok = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (tok >= pc.n) return;  // uniform per workgroup
    uint t = gl_LocalInvocationID.x, ne = pc.n_exp, k = pc.k;
    BufF32 lg = BufF32(pc.logits + uint64_t(tok) * ne * 4u);
    float m = uintBitsToFloat(0xff800000u);
    for (uint e = t; e < ne; e += WG) m = max(m, lg.v[e]);
    m = wg_max(m);
    float part = 0.0f;
    for (uint e = t; e < ne; e += WG) {
        float v = exp_acc(lg.v[e] - m);
        prob[e] = v;
        part += v;
    }
    float sum = wg_sum(part);
    for (uint e = t; e < ne; e += WG) prob[e] = prob[e] / sum;
    barrier();

    float val[MAX_K];
    uint sel[MAX_K];
    for (uint j = 0; j < k; j++) {
        float best = -2.0f;  // below every probability and below the -1 of taken experts
        uint bi = 0xffffffffu;
        for (uint e = t; e < ne; e += WG)
            if (prob[e] > best) {  // strictly greater: the first (lowest) index wins among this thread's equals
                best = prob[e];
                bi = e;
            }
        wg_argmax(best, bi);
        val[j] = best;
        sel[j] = bi;
        barrier();
        if (t == 0) prob[bi] = -1.0f;
        barrier();
    }
    if (t == 0) {
        float s = 0.0f;
        for (uint j = 0; j < k; j++) s += val[j];
        for (uint j = 0; j < k; j++) {
            BufI32(pc.ids + (uint64_t(tok) * k + j) * 4u).v[0] = int(sel[j]);
            BufF32(pc.wts + (uint64_t(tok) * k + j) * 4u).v[0] = pc.norm != 0u ? val[j] / s : val[j];
        }
    }
}
