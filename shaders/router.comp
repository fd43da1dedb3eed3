#version 460
// router.comp — the decode MoE router in one dispatch with as few dependent memory round trips as possible
// (each costs ~0.5 µs, and the router sits on the critical path of every layer):
//  - one router row per subgroup; every lane issues all loads of its share at once: NPL 16-byte weight vectors
//    and the matching x and RMSNorm-weight elements. No shared-memory staging, no workgroup barrier before the
//    dot products: the subgroup covers all columns of its row, so it also has Σx² for the norm's scale itself, and
//    logit = scale · Σ_c (x_c·w_c)·W_rc (the norm is linear in x);
//  - subgroup 0 of workgroup 0 writes the normalised row xn = (x·scale)·w for the experts (rms_norm's arithmetic);
//  - the last workgroup to finish (an atomic counter, zero between dispatches: that workgroup resets it; logits
//    stored coherent and fenced before the atomic — the classic threadfence reduction) takes softmax(logits) in fp32
//    and selects the top k by rank: expert e's rank is the number of experts with a larger probability or an equal
//    one at a lower index (torch.topk's order with ties to the lower index, as the CPU back-end), so the selection
//    is one pass over shared memory instead of k rounds of workgroup argmax; optionally renormalised to sum 1.
// Mirrors rms_norm.comp + matvec.comp + moe_route.comp, i.e. the CPU back-end's rms_norm, matmul and moe_route (HF
// Qwen3-Omni's sparse MoE block: post_attention_layernorm, the gate Linear, TopKRouter) up to fp32 rounding order.
// Built a second time with -DCHAIN (router_chain): the o_proj product and residual (x += a · Woᵀ, one row per
// subgroup, loads first) run in the same dispatch by the workgroups with the first tickets, and the router's
// workgroups issue their weight and norm-weight loads, then wait for them (shaders/chain.glsl) before loading x.
#ifdef CHAIN
#define PC_ROUTERCHAIN
#else
#define PC_ROUTER
#endif
#include "common.glsl"
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint WTYPE = 2;  // router weight type
layout(constant_id = 2) const uint NTYPE = 2;  // norm weight type
layout(constant_id = 3) const uint NPL = 8;    // 16-byte weight vectors per lane (ceil(cols / EPV / SG))
layout(constant_id = 4) const uint SG = 32;    // the subgroup size the host planned NPL for
layout(constant_id = 5) const uint NE = 128;   // experts (rows), at most MAX_NE
layout(constant_id = 6) const uint OTYPE = 2;  // CHAIN: o_proj weight type
layout(constant_id = 7) const uint NPL_O = 16; // CHAIN: o_proj 16-byte vectors per lane (ceil(o_cols / EPV_O / SG))
layout(constant_id = 8) const uint SEL = 1;    // 0: logits (and xn) only, the top-k left to the MoE gate+up (vk_decode.c)

const uint EPV = WTYPE == VK_WT_F32 ? 4u : WTYPE == VK_WT_Q8_0 ? 16u : 8u;
const uint MAX_NE = 256;
const uint MAX_K = 32;

layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer CohF32 { float v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer CohU32 { uint v[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) coherent buffer CohV4 { vec4 v[]; };
#ifdef CHAIN
#include "chain.glsl"
#define XLOAD CohV4  // x is written by the o_proj workgroups of this dispatch
#else
#define XLOAD BufV4
#endif

shared vec4 probv[MAX_NE / 4];
#define prob_at(e) probv[(e) / 4u][(e) % 4u]
shared float red[32];
shared float top_p[MAX_K];
shared uint top_e[MAX_K];
shared uint last_wg;

float wg_reduce(float v, bool is_max) {
    v = is_max ? subgroupMax(v) : subgroupAdd(v);
    barrier();
    if (subgroupElect()) red[gl_SubgroupID] = v;
    barrier();
    float r = red[0];
    for (uint i = 1; i < gl_NumSubgroups; i++) r = is_max ? max(r, red[i]) : r + red[i];
    return r;
}

#ifdef CHAIN
// o_proj: x[row] += Wo[row] · a for one row per subgroup (x has pc.cols rows, a has pc.o_cols elements); every
// weight load of the lane is issued before a is read (a is shared by the workgroup's rows: L1 hits after the first)
void oproj_row(uint row) {
    const uint EPVO = OTYPE == VK_WT_F32 ? 4u : OTYPE == VK_WT_Q8_0 ? 16u : 8u;
    uint lane = gl_SubgroupInvocationID, ocols = pc.o_cols, nvec = ocols / EPVO;
    uint64_t wrow = pc.wo + uint64_t(row) * row_bytes(OTYPE, ocols);
    uint64_t srow = pc.wo + uint64_t(pc.o_soff) + uint64_t(row) * (ocols / 32u) * 2u;
    uvec4 wq[NPL_O];
    float qs[NPL_O];
    [[unroll]] for (uint i = 0; i < NPL_O; i++) {
        uint v = lane + i * SG;
        wq[i] = v < nvec ? BufUV4(wrow).v[v] : uvec4(0);
        qs[i] = OTYPE == VK_WT_Q8_0 && v < nvec ? f16_bits(ld_u16(srow + uint64_t(v / 2u) * 2u)) : 1.0f;
    }
    BufV4 av = BufV4(pc.ao);
    float acc = 0.0f;
    [[unroll]] for (uint i = 0; i < NPL_O; i++) {
        uint v = lane + i * SG;
        if (v < nvec) {
            vec4 w[4];
            dq_vec_bits(OTYPE, wq[i], w[0], w[1], w[2], w[3]);
            float s = 0.0f;
            [[unroll]] for (uint j = 0; j < EPVO / 4u; j++) s += dot(w[j], av.v[v * (EPVO / 4u) + j]);
            acc += s * qs[i];
        }
    }
    acc = subgroupAdd(acc);
    if (lane == 0u) {
        CohF32 y = CohF32(pc.x + uint64_t(row) * 4u);  // read by the router's workgroups
        y.v[0] = y.v[0] + acc;
    }
}
#endif

void main() {
    uint lane = gl_SubgroupInvocationID, t = gl_LocalInvocationID.x, cols = pc.cols, nvec = cols / EPV;
    uint wg = gl_WorkGroupID.x, n_wg = gl_NumWorkGroups.x;
#ifdef CHAIN
    // tickets [0, n_o): o_proj rows, gl_NumSubgroups per workgroup; the rest: the router
    uint n_o = (cols + gl_NumSubgroups - 1u) / gl_NumSubgroups;
    n_wg = (NE + gl_NumSubgroups - 1u) / gl_NumSubgroups;
    uint ticket = chain_ticket(pc.cnt);
    if (ticket < n_o) {
        uint orow = ticket * gl_NumSubgroups + gl_SubgroupID;
        if (orow < cols) oproj_row(orow);
        chain_done(pc.cnt, n_o + n_wg);
        return;
    }
    wg = ticket - n_o;
#endif
    uint row = min(wg * gl_NumSubgroups + gl_SubgroupID, NE - 1u);  // a tail subgroup redoes the last
    uint64_t wrow = pc.w + uint64_t(row) * row_bytes(WTYPE, cols), srow = pc.s + uint64_t(row) * (cols / 32u) * 2u;

    // every load of the lane at once (with CHAIN the weights before the wait, x after it)
    uvec4 wq[NPL];
    vec4 xa[NPL][EPV / 4u], na[NPL][EPV / 4u];
    float qs[NPL];
    [[unroll]] for (uint i = 0; i < NPL; i++) {
        uint v = lane + i * SG;
        bool ok = v < nvec;
        wq[i] = ok ? BufUV4(wrow).v[v] : uvec4(0);
        qs[i] = WTYPE == VK_WT_Q8_0 && ok ? f16_bits(ld_u16(srow + uint64_t(v / 2u) * 2u)) : 1.0f;
        [[unroll]] for (uint j = 0; j < EPV / 4u; j++) {
            uint c = v * EPV + 4u * j;
            na[i][j] = ok ? vec4(ld_elem(NTYPE, pc.nw, pc.nw, c), ld_elem(NTYPE, pc.nw, pc.nw, c + 1u),
                                 ld_elem(NTYPE, pc.nw, pc.nw, c + 2u), ld_elem(NTYPE, pc.nw, pc.nw, c + 3u))
                         : vec4(0);
        }
    }
#ifdef CHAIN
    chain_wait(pc.cnt, n_o);
#endif
    [[unroll]] for (uint i = 0; i < NPL; i++) {
        uint v = lane + i * SG;
        [[unroll]] for (uint j = 0; j < EPV / 4u; j++)
            xa[i][j] = v < nvec ? XLOAD(pc.x).v[(v * EPV + 4u * j) / 4u] : vec4(0);
    }
    float ss = 0.0f, acc = 0.0f;
    [[unroll]] for (uint i = 0; i < NPL; i++) {
        vec4 w[4];
        dq_vec_bits(WTYPE, wq[i], w[0], w[1], w[2], w[3]);
        float s = 0.0f;
        [[unroll]] for (uint j = 0; j < EPV / 4u; j++) {
            ss += dot(xa[i][j], xa[i][j]);
            s += dot(w[j], xa[i][j] * na[i][j]);
        }
        acc += s * qs[i];
    }
    float scale = 1.0f / sqrt(subgroupAdd(ss) / float(cols) + pc.eps);
    acc = subgroupAdd(acc) * scale;
    if (wg == 0u && gl_SubgroupID == 0u) {
        [[unroll]] for (uint i = 0; i < NPL; i++) {
            uint v = lane + i * SG;
            if (v < nvec)
                [[unroll]] for (uint j = 0; j < EPV / 4u; j++)
                    BufV4(pc.xn).v[v * (EPV / 4u) + j] = (xa[i][j] * scale) * na[i][j];
        }
    }
    if (lane == 0u) CohF32(pc.logits).v[row] = acc;
    if (SEL == 0u) {  // the MoE gate+up workgroups select (route_rank.glsl)
#ifdef CHAIN
        chain_done(pc.cnt, n_o + n_wg);
#endif
        return;
    }

    // the last workgroup to arrive selects the experts
    memoryBarrierBuffer();
    barrier();
    if (t == 0u) last_wg = atomicAdd(CohU32(pc.counter).v[0], 1u) == n_wg - 1u ? 1u : 0u;
    barrier();
    if (last_wg == 0u) {  // uniform per workgroup
#ifdef CHAIN
        chain_done(pc.cnt, n_o + n_wg);
#endif
        return;
    }
    memoryBarrierBuffer();
    float m = uintBitsToFloat(0xff800000u);
    for (uint e = t; e < NE; e += WG) {
        float l = CohF32(pc.logits).v[e];
        prob_at(e) = l;
        m = max(m, l);
    }
    m = wg_reduce(m, true);
    float part = 0.0f;
    for (uint e = t; e < NE; e += WG) {
        float v = exp_acc(prob_at(e) - m);
        prob_at(e) = v;
        part += v;
    }
    float sum = wg_reduce(part, false);  // its barriers also publish probv[]
    for (uint e = t; e < NE; e += WG) prob_at(e) = prob_at(e) / sum;
    barrier();
    for (uint e = t; e < NE; e += WG) {
        float p = prob_at(e);
        uint rank = 0u;
        for (uint o = 0; o < NE / 4u; o++) {  // four at a time (16-byte shared loads, a quarter of the iterations)
            vec4 q = probv[o];
            uvec4 oi = uvec4(4u * o) + uvec4(0u, 1u, 2u, 3u);
            uvec4 tie = uvec4(equal(q, vec4(p))) & uvec4(lessThan(oi, uvec4(e)));
            bvec4 before = bvec4(uvec4(greaterThan(q, vec4(p))) | tie);
            rank += uint(before.x) + uint(before.y) + uint(before.z) + uint(before.w);
        }
        for (uint o = NE & ~3u; o < NE; o++) {
            float q = prob_at(o);
            rank += q > p || (q == p && o < e) ? 1u : 0u;
        }
        if (rank < pc.k) {
            top_p[rank] = p;
            top_e[rank] = e;
        }
    }
    barrier();
    if (t == 0u) {
        float s = 0.0f;
        for (uint j = 0; j < pc.k; j++) s += top_p[j];
        for (uint j = 0; j < pc.k; j++) {
            BufI32(pc.ids).v[j] = int(top_e[j]);
            BufF32(pc.wts).v[j] = pc.renorm != 0u ? top_p[j] / s : top_p[j];
        }
        CohU32(pc.counter).v[0] = 0u;
    }
#ifdef CHAIN
    chain_done(pc.cnt, n_o + n_wg);
#endif
}
