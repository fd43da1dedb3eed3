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
//   PLAN = 1 (spec constant 2; SGT = 1 only): the prefill's MoE plan as moe_plan.comp makes it, in the same
//     dispatch. Each (token, slot) entry takes its rank within its expert from a global counter per expert (the
//     atomic's return value) and parks it in pos; the last workgroup to finish (a counter; everything stored
//     coherent and fenced before it) scans the experts' counts into first positions and tiles, writes the tiles,
//     and turns every entry's rank into its sorted position (pos) and the position's token (tok), then leaves the
//     counters at zero. The order of entries within an expert depends on timing, as in moe_plan.comp.
#define PC_ROUTE
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint SGT = 0;
layout(constant_id = 2) const uint PLAN = 0;

#include "reduce.glsl"
#include "route.glsl"

#ifndef NO_SUBGROUP
layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer CohU32 { uint v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer CohI32 { int v[]; };

const uint PMAX = 1024; // experts (the host keeps n_exp <= 8·S, at most 1024)
const uint PB = 8;      // entries per thread per batch of the last workgroup's final pass (loads in flight)
shared uint p_first[PMAX];
shared uvec2 p_sg[64];  // per subgroup: (entries, tiles) of its experts (the host keeps WG / S <= 64)
shared uint p_last;

// PLAN: the last workgroup turns the counts and ranks into moe_plan.comp's plan (layout in vk_push.h)
void plan_tail() {
    uint t = gl_LocalInvocationID.x, ne = pc.n * pc.k, n_exp = pc.n_exp, tile = pc.tile;
    uint64_t tok_a = pc.plan, pos_a = pc.plan + uint64_t(ne) * 4u, tiles_a = pc.plan + uint64_t(ne) * 8u;
    CohU32 cnt = CohU32(pc.cnt); // [0]: workgroups done; [1 + e]: entries of expert e
    memoryBarrierBuffer();
    barrier();
    if (t == 0u) p_last = atomicAdd(cnt.v[0], 1u) == gl_NumWorkGroups.x * gl_NumWorkGroups.y - 1u ? 1u : 0u;
    barrier();
    if (p_last == 0u) return; // uniform per workgroup
    memoryBarrierBuffer();
    // exclusive prefix sums of entries and tiles over experts: thread t owns experts [t·E, t·E + E)
    uint E = (n_exp + WG - 1u) / WG, e0 = min(t * E, n_exp), e1 = min(e0 + E, n_exp);
    uvec2 own = uvec2(0u);
    for (uint e = e0; e < e1; e++) {
        uint c = cnt.v[1u + e];
        cnt.v[1u + e] = 0u; // every workgroup has counted: left at zero for the next dispatch
        p_first[e] = c;
        own += uvec2(c, (c + tile - 1u) / tile);
    }
    uvec2 inc = subgroupInclusiveAdd(own);
    if (gl_SubgroupInvocationID == gl_SubgroupSize - 1u) p_sg[gl_SubgroupID] = inc;
    barrier();
    uvec2 at = inc - own;
    for (uint s = 0u; s < gl_SubgroupID; s++) at += p_sg[s];
    for (uint e = e0; e < e1; e++) {
        uint c = p_first[e];
        p_first[e] = at.x; // only this thread touches p_first[e] until the barrier
        for (uint s = 0u; s < c && at.y < pc.max_tiles; s += tile, at.y++) {
            BufI32 tl = BufI32(tiles_a + uint64_t(1u + 3u * at.y) * 4u);
            tl.v[0] = int(e);
            tl.v[1] = int(at.x + s);
            tl.v[2] = int(min(tile, c - s));
        }
        at.x += c;
    }
    if (t == WG - 1u) BufI32(tiles_a).v[0] = int(min(at.y, pc.max_tiles)); // past every expert: the tile count
    barrier();
    // sorted positions: pos[i] = first[expert] + rank, tok[sorted] = token
    CohI32 ids = CohI32(pc.ids), pos = CohI32(pos_a);
    BufI32 tok = BufI32(tok_a);
    for (uint base = 0u; base < ne; base += PB * WG) {
        int xs[PB], rs[PB];
        [[unroll]] for (uint j = 0; j < PB; j++) {
            uint i = base + t + j * WG;
            xs[j] = i < ne ? ids.v[i] : 0;
            rs[j] = i < ne ? pos.v[i] : 0;
        }
        [[unroll]] for (uint j = 0; j < PB; j++) {
            uint i = base + t + j * WG;
            if (i >= ne) continue;
            int p = int(p_first[xs[j]]) + rs[j];
            pos.v[i] = p;
            tok.v[p] = int(i / pc.k);
        }
    }
    if (t == 0u) cnt.v[0] = 0u;
}

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
            uint i = tok * k + lane;
            if (PLAN != 0u) { // the entry's rank within its expert, parked in pos for plan_tail
                CohI32(pc.ids).v[i] = mye;
                CohI32(pc.plan + uint64_t(pc.n * k) * 4u).v[i] = int(atomicAdd(CohU32(pc.cnt).v[1u + uint(mye)], 1u));
            } else
                BufI32(pc.ids).v[i] = mye;
            BufF32(pc.wts).v[i] = pc.norm != 0u ? myv / s : myv;
        }
    }
    if (PLAN != 0u) plan_tail();
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
