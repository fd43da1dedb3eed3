// route.glsl — the MoE router's selection of moe_route.comp (one workgroup per token, logits in memory; the fused
// decode router, router.comp, ranks instead). The including shader declares WG and includes reduce.glsl first, and
// fills prob[0..ne) with the token's logits.
// route_select: probs = softmax(logits) in fp32, the k largest (ties -> lower expert index), optionally
// renormalised to sum 1, written to ids/wts (k entries each). Mirrors HF Qwen3-Omni's TopKRouter (softmax,
// torch.topk, renormalise) and the CPU back-end's moe_route. Call in uniform control flow of the workgroup.

const uint MAX_EXP = 1024;
const uint MAX_K = 32;
shared float prob[MAX_EXP];

void route_select(uint ne, uint k, bool renorm, uint64_t ids, uint64_t wts) {
    uint t = gl_LocalInvocationID.x;
    barrier();  // prob[] filled by all threads
    float m = uintBitsToFloat(0xff800000u);
    for (uint e = t; e < ne; e += WG) m = max(m, prob[e]);
    m = wg_max(m);
    float part = 0.0f;
    for (uint e = t; e < ne; e += WG) {
        float v = exp_acc(prob[e] - m);
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
            BufI32(ids + uint64_t(j) * 4u).v[0] = int(sel[j]);
            BufF32(wts + uint64_t(j) * 4u).v[0] = renorm ? val[j] / s : val[j];
        }
    }
}
