#version 460
// attn_combine.comp — merges the split-K partials of attn_split.comp: with M = max_s m_s,
// out = Σ_s e^(m_s - M)·o_s / Σ_s e^(m_s - M)·l_s. One workgroup per (head, query), one output dim per thread.
#define PC_ATTN
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;

void main() {
    uint h = gl_WorkGroupID.x, i = gl_WorkGroupID.y, t = gl_LocalInvocationID.x, hd = pc.head_dim;
    uint64_t base = pc.part + uint64_t(h * pc.n + i) * pc.n_split * (hd + 2u) * 4u;
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    float M = NEG_INF;
    for (uint s = 0; s < pc.n_split; s++) M = max(M, BufF32(base + uint64_t(s) * (hd + 2u) * 4u).v[hd]);
    float L = 0.0f;
    for (uint s = 0; s < pc.n_split; s++) {
        BufF32 ps = BufF32(base + uint64_t(s) * (hd + 2u) * 4u);
        float m = ps.v[hd];
        if (m != NEG_INF) L += exp_acc(m - M) * ps.v[hd + 1];
    }
    for (uint d = t; d < hd; d += WG) {
        float o = 0.0f;
        for (uint s = 0; s < pc.n_split; s++) {
            BufF32 ps = BufF32(base + uint64_t(s) * (hd + 2u) * 4u);
            float m = ps.v[hd];
            if (m != NEG_INF) o += exp_acc(m - M) * ps.v[d];
        }
        BufF32(pc.dst + (uint64_t(i) * pc.n_heads * hd + h * hd + d) * 4u).v[0] = L > 0.0f ? o / L : 0.0f;
    }
}
