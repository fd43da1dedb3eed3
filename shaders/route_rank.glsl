// route_rank.glsl — the MoE top-k selection of router.comp, computed by a workgroup for itself from the router's
// logits in memory: the decode gate+up kernels (matvec.comp MODE 1, mvq8.comp MODE 1) select their own experts, so
// the router dispatch writes only logits and its last-workgroup tail (fence, atomic, a second round of loads) leaves
// the critical path of the layer. Every workgroup computes the same selection from the same logits in the same
// order, so they agree; the one that writes (write = true) stores ids and weights for the down projection.
// probs = softmax(logits) in fp32 (max and sum by one subgroup's reductions, the same in every workgroup), expert
// e's rank = the number of experts with a larger probability or an equal one at a lower index (torch.topk's order,
// ties to the lower index), the first k by rank, optionally renormalised to sum 1: router.comp's ranking, i.e. the
// CPU back-end's moe_route (HF Qwen3-Omni's TopKRouter) up to fp32 rounding order. Call in uniform control flow of
// the workgroup; afterwards rr_top_e[0..k) holds the experts. ne <= RR_MAX, k <= RR_MAX_K. The including shader may
// define RR_ON (a constant expression, e.g. of a specialisation constant) as 0 where it never selects: the shared
// arrays shrink to one element.
const uint RR_MAX = 256u;
const uint RR_MAX_K = 32u;
#ifndef RR_ON
#define RR_ON 1u
#endif
shared vec4 rr_p4[RR_ON != 0u ? RR_MAX / 4u : 1u];  // probabilities, 4 experts a word (past ne: -1, never chosen)
shared float rr_top_p[RR_ON != 0u ? RR_MAX_K : 1u];
shared uint rr_top_e[RR_ON != 0u ? RR_MAX_K : 1u];
shared float rr_ms[2];
#define NEG_RR uintBitsToFloat(0xff800000u)

// The softmax's maximum and sum over the n4 words of logits s·rr_p4 (s = 1 but for the folded router, whose raw
// logits wait for the norm scale; lo != 0: these logits are also written there, the ne of them): subgroup 0 alone
// with subgroup reductions (every workgroup the same order, so all select alike), or invocation 0 serially in the
// builds without subgroup operations
void rr_softmax(uint n4, uint t, uint ne, float s, uint64_t lo) {
#ifndef NO_SUBGROUP
    if (gl_SubgroupID == 0u) {
        uint lane = gl_SubgroupInvocationID, ns = gl_SubgroupSize;
        float m = uintBitsToFloat(0xff800000u);
        for (uint i = lane; i < n4; i += ns) {
            vec4 l = rr_p4[i] * s;
            m = max(m, max(max(l.x, l.y), max(l.z, l.w)));
        }
        m = subgroupMax(m);
        float sum = 0.0f;
        for (uint i = lane; i < n4; i += ns) {
            vec4 l = rr_p4[i] * s, q;
            if (lo != 0ul)
                [[unroll]] for (uint c = 0u; c < 4u; c++)
                    if (4u * i + c < ne) BufF32(lo).v[4u * i + c] = l[c];
            [[unroll]] for (uint c = 0u; c < 4u; c++) q[c] = l[c] == NEG_RR ? 0.0f : exp_acc(l[c] - m);
            rr_p4[i] = q;
            sum += (q.x + q.y) + (q.z + q.w);
        }
        sum = subgroupAdd(sum);
        if (lane == 0u) rr_ms[1] = sum;
    }
#else
    if (t == 0u) {
        float m = uintBitsToFloat(0xff800000u);
        for (uint i = 0u; i < n4; i++) {
            vec4 l = rr_p4[i] * s;
            m = max(m, max(max(l.x, l.y), max(l.z, l.w)));
        }
        float sum = 0.0f;
        for (uint i = 0u; i < n4; i++) {
            vec4 l = rr_p4[i] * s, q;
            if (lo != 0ul)
                for (uint c = 0u; c < 4u; c++)
                    if (4u * i + c < ne) BufF32(lo).v[4u * i + c] = l[c];
            for (uint c = 0u; c < 4u; c++) q[c] = l[c] == NEG_RR ? 0.0f : exp_acc(l[c] - m);
            rr_p4[i] = q;
            sum += (q.x + q.y) + (q.z + q.w);
        }
        rr_ms[1] = sum;
    }
#endif
}

// logits written earlier in the same dispatch (mv_rows.comp RANK) are read through this type: not cached per SM
layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer RrCohF { float v[]; };
float rr_at(uint64_t logits, uint e, bool coh) { return coh ? RrCohF(logits).v[e] : BufF32(logits).v[e]; }

// step 1: the logits into rr_p4 (no barrier). fold: the folded router's raw halves, logits[e] + logits[ne + e]
// (vk_decode.c), ranked as they are and scaled by the norm scale in rr_finish. coh: written by other workgroups of
// the running dispatch (a constant at every call, so the load type is chosen when compiling)
void rr_load_from(uint64_t logits, uint ne, bool fold, bool coh) {
    uint t = gl_LocalInvocationIndex, nt = gl_WorkGroupSize.x * gl_WorkGroupSize.y * gl_WorkGroupSize.z;
    uint n4 = (ne + 3u) / 4u;
    for (uint i = t; i < n4; i += nt) {
        vec4 l;
        [[unroll]] for (uint c = 0u; c < 4u; c++) {
            uint e = 4u * i + c;
            l[c] = e < ne ? (fold ? rr_at(logits, e, coh) + rr_at(logits, ne + e, coh) : rr_at(logits, e, coh))
                          : NEG_RR;
        }
        rr_p4[i] = l;
    }
}
void rr_load(uint64_t logits, uint ne, bool fold) { rr_load_from(logits, ne, fold, false); }

// rank of expert e over the values in rr_p4: the experts with a larger value, or an equal one at a lower index
// (16-byte shared loads, four words per step so their latencies overlap); the first k into rr_top_p / rr_top_e
void rr_rank(uint ne, uint k) {
    uint t = gl_LocalInvocationIndex, nt = gl_WorkGroupSize.x * gl_WorkGroupSize.y * gl_WorkGroupSize.z;
    uint n4 = (ne + 3u) / 4u;
    for (uint e = t; e < ne; e += nt) {
        float p = rr_p4[e / 4u][e % 4u];
        uint rank = 0u;
        uint o = 0u;
        for (; o + 4u <= n4; o += 4u) {
            [[unroll]] for (uint j = 0u; j < 4u; j++) {
                vec4 q = rr_p4[o + j];
                uvec4 oi = uvec4(4u * (o + j)) + uvec4(0u, 1u, 2u, 3u);
                uvec4 before = uvec4(greaterThan(q, vec4(p))) |
                               (uvec4(equal(q, vec4(p))) & uvec4(lessThan(oi, uvec4(e))));
                rank += (before.x + before.y) + (before.z + before.w);
            }
        }
        for (; o < n4; o++) {
            vec4 q = rr_p4[o];
            uvec4 oi = uvec4(4u * o) + uvec4(0u, 1u, 2u, 3u);
            uvec4 before = uvec4(greaterThan(q, vec4(p))) |
                           (uvec4(equal(q, vec4(p))) & uvec4(lessThan(oi, uvec4(e))));
            rank += (before.x + before.y) + (before.z + before.w);
        }
        if (rank < k) {
            rr_top_p[rank] = p;
            rr_top_e[rank] = e;
        }
    }
}

// The folded router (vk_decode.c) in the gate+up kernels (matvec.comp, mvq8.comp FOLD): the experts are ranked by
// the raw logits straight from rr_load, since the norm scale s > 0 keeps their order (softmax too, up to ties that
// exp's rounding would create); the scale is known only after the products. Then the writing workgroup alone
// (rr_finish, uniform control flow): softmax of s·raw, the logits to lo, ids and weights of the selection.
void rr_select_raw(uint ne, uint k) {
    barrier();
    rr_rank(ne, k);
    barrier();
}

void rr_finish(uint ne, uint k, bool renorm, uint64_t ids, uint64_t wts, float s, uint64_t lo) {
    uint t = gl_LocalInvocationIndex, n4 = (ne + 3u) / 4u;
    barrier();
    rr_softmax(n4, t, ne, s, lo);  // rr_p4 = e^(s·raw - m), rr_ms[1] = the sum
    barrier();
    if (t == 0u) {
        float p[RR_ON != 0u ? RR_MAX_K : 1u];
        float sum = 0.0f;
        for (uint j = 0u; j < k; j++) {
            uint e = rr_top_e[j];
            p[j] = rr_p4[e / 4u][e % 4u] / rr_ms[1];
            sum += p[j];
        }
        for (uint j = 0u; j < k; j++) {
            if (ids != 0ul) BufI32(ids).v[j] = int(rr_top_e[j]);
            BufF32(wts).v[j] = renorm ? p[j] / sum : p[j];
        }
    }
}

// The folded router with the selection made beforehand (PRE: the last workgroup of the router's M·a dispatch,
// mv_rows.comp RANK, ranked the raw sums and wrote the ids): the writing workgroup loads the raw halves for the
// softmax and takes the ranking from ids (rr_finish then writes only the weights and the logits); the others
// read their expert from ids directly.
void rr_pre(uint64_t logits, uint ne, uint k, uint64_t ids) {
    rr_load(logits, ne, true);
    uint t = gl_LocalInvocationIndex;
    if (t < k) rr_top_e[t] = uint(BufI32(ids).v[t]);
    barrier();
}

// step 1 (rr_load), then softmax and the top-k; the writing workgroup stores ids and weights
void route_rank(uint64_t logits, uint ne, uint k, bool renorm, bool write, uint64_t ids, uint64_t wts) {
    rr_load(logits, ne, false);
    uint t = gl_LocalInvocationIndex, nt = gl_WorkGroupSize.x * gl_WorkGroupSize.y * gl_WorkGroupSize.z;
    uint n4 = (ne + 3u) / 4u;
    barrier();
    rr_softmax(n4, t, ne, 1.0f, 0ul);
    barrier();
    for (uint i = t; i < n4; i += nt) {
        vec4 q = rr_p4[i] / rr_ms[1];
        [[unroll]] for (uint c = 0u; c < 4u; c++) q[c] = 4u * i + c < ne ? q[c] : -1.0f;
        rr_p4[i] = q;
    }
    barrier();
    rr_rank(ne, k);
    barrier();
    if (write && t == 0u) {
        float sum = 0.0f;
        for (uint j = 0u; j < k; j++) sum += rr_top_p[j];
        for (uint j = 0u; j < k; j++) {
            BufI32(ids).v[j] = int(rr_top_e[j]);
            BufF32(wts).v[j] = renorm ? rr_top_p[j] / sum : rr_top_p[j];
        }
    }
}

