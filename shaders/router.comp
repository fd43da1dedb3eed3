#version 460
// router.comp — the decode MoE router in one dispatch: post_attention_layernorm of the token's row, the router
// logits (one row per subgroup, x read from shared memory), and — in the last workgroup to finish — the softmax
// and top-k of route.glsl. Every workgroup normalises x itself (8 KB from L2: cheaper than a dispatch and a
// barrier); workgroup 0 writes the normalised row for the experts. The last workgroup is found with an atomic
// counter (zero between dispatches: that workgroup resets it) after each workgroup's logits are made visible
// (coherent stores, memoryBarrierBuffer, then the atomic: the classic threadfence reduction).
// Mirrors rms_norm.comp (x · 1/sqrt(mean(x²) + eps)) · w, matvec.comp's dot products and moe_route.comp, i.e. the
// CPU back-end's rms_norm, matmul and moe_route (HF Qwen3-Omni's sparse MoE block: norm, gate Linear, TopKRouter).
#define PC_ROUTER
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint WTYPE = 2;  // router weight type
layout(constant_id = 2) const uint NTYPE = 2;  // norm weight type
layout(constant_id = 3) const uint XS = 512;   // cols / 4: the shared copy of the normalised row
layout(constant_id = 4) const uint VEC = 1;    // 16-byte weight loads (aligned rows, cols % elems_per_vec == 0)

#include "reduce.glsl"
#include "route.glsl"

layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer CohF32 { float v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer CohU32 { uint v[]; };

shared vec4 xsh[XS];
shared uint last_wg;

// the lane's share of the dot product of one 16-byte weight vector v with the shared row
float vec_dot(uvec4 wq, uint v, uint64_t srow) {
    uint epv = elems_per_vec(WTYPE);
    vec4 w0, w1, w2, w3;
    dq_vec_bits(WTYPE, wq, w0, w1, w2, w3);
    uint xi = v * (epv / 4u);
    float s = dot(w0, xsh[xi]);
    if (epv >= 8u) s += dot(w1, xsh[xi + 1u]);
    if (epv == 16u) s += dot(w2, xsh[xi + 2u]) + dot(w3, xsh[xi + 3u]);
    return WTYPE == VK_WT_Q8_0 ? s * f16_bits(ld_u16(srow + uint64_t(v / 2u) * 2u)) : s;
}

void main() {
    uint t = gl_LocalInvocationID.x, cols = pc.cols;
    BufF32 x = BufF32(pc.x);
    float ss = 0.0f;
    for (uint i = t; i < cols; i += WG) {
        float v = x.v[i];
        ss += v * v;
    }
    ss = wg_sum(ss);
    float scale = 1.0f / sqrt(ss / float(cols) + pc.eps);
    bool wout = gl_WorkGroupID.x == 0u;
    for (uint i = t; i < cols; i += WG) {
        float v = (x.v[i] * scale) * ld_elem(NTYPE, pc.nw, pc.nw, i);
        xsh[i / 4u][i % 4u] = v;
        if (wout) BufF32(pc.xn).v[i] = v;
    }
    barrier();

    uint row = gl_WorkGroupID.x * N_SG + SG_ID;
    if (row < pc.rows) {  // uniform per subgroup (per workgroup without subgroups)
        uint64_t wrow = pc.w + uint64_t(row) * row_bytes(WTYPE, cols), srow = pc.s + uint64_t(row) * (cols / 32u) * 2u;
        float acc = 0.0f;
        if (VEC == 1u) {
            uint nvec = cols / elems_per_vec(WTYPE), step = SG_SIZE, v = SG_LANE;
            BufUV4 w = BufUV4(wrow);
            for (; v + 3u * step < nvec; v += 4u * step) {  // four loads in flight per lane
                uvec4 a = w.v[v], b = w.v[v + step], c = w.v[v + 2u * step], d = w.v[v + 3u * step];
                acc += vec_dot(a, v, srow) + vec_dot(b, v + step, srow) + vec_dot(c, v + 2u * step, srow) +
                       vec_dot(d, v + 3u * step, srow);
            }
            for (; v < nvec; v += step) acc += vec_dot(w.v[v], v, srow);
        } else {
            for (uint c = SG_LANE; c < cols; c += SG_SIZE) acc += ld_elem(WTYPE, wrow, srow, c) * xsh[c / 4u][c % 4u];
        }
        acc = sg_sum(acc);
        if (SG_LANE == 0u) CohF32(pc.logits).v[row] = acc;
    }

    // the last workgroup to arrive selects the experts
    memoryBarrierBuffer();
    barrier();
    if (t == 0u) last_wg = atomicAdd(CohU32(pc.counter).v[0], 1u) == gl_NumWorkGroups.x - 1u ? 1u : 0u;
    barrier();
    if (last_wg == 0u) return;  // uniform per workgroup
    memoryBarrierBuffer();
    for (uint e = t; e < pc.rows; e += WG) prob[e] = CohF32(pc.logits).v[e];
    route_select(pc.rows, pc.k, pc.renorm != 0u, pc.ids, pc.wts);
    if (t == 0u) CohU32(pc.counter).v[0] = 0u;
}
