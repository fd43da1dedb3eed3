#version 460
// attn_split.comp — attention for a few queries (decode), split-K: workgroup (s, h, i) handles keys
// [s·WG, (s+1)·WG) of query i (position pos0 + i) and head h, one key per thread for the scores, one output dim per
// thread for the weighted sum of values. It writes the chunk's unnormalised output with its max and sum
// (part[h][i][s][0..hd) = Σ_j e^(s_j - m)·v_j, [hd] = m, [hd+1] = Σ_j e^(s_j - m)); attn_combine.comp merges chunks.
// Mask: key j is seen by query position p when j <= p (causal) and j > p - window (window > 0); GQA maps head h to
// kv head h / (n_heads / n_kv). Mirrors the CPU back-end's attention (softmax(q·Kᵀ·scale + mask)·V, fp32).
// KV16: the caches hold fp16 (head_dim a multiple of 8): key rows read as 16-byte words of 8 halves, values one
// half at a time from their 32-bit words; all arithmetic stays fp32.
#define PC_ATTN
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint DMAX = 128;
layout(constant_id = 2) const uint KV16 = 0;  // 1: the caches hold fp16

#include "reduce.glsl"

shared float qs[DMAX];
shared float ps[WG];

void main() {
    uint s = gl_WorkGroupID.x, h = gl_WorkGroupID.y, i = gl_WorkGroupID.z, t = gl_LocalInvocationID.x;
    uint hd = pc.head_dim, n_keys = pc.pos0 + pc.n, p = pc.pos0 + i;
    uint g = h / (pc.n_heads / pc.n_kv);
    int lo = pc.window > 0u ? max(0, int(p) - int(pc.window) + 1) : 0;
    int hi = pc.causal != 0u ? int(p) : int(n_keys) - 1;
    for (uint d = t; d < hd; d += WG) qs[d] = BufF32(pc.q + (uint64_t(i) * pc.n_heads * hd + h * hd + d) * 4u).v[0];
    barrier();

    uint j = s * WG + t;
    float score = uintBitsToFloat(0xff800000u);  // -inf: masked or past the end
    if (int(j) >= lo && int(j) <= hi) {
        uint64_t ka = pc.kc + (uint64_t(g) * pc.n_ctx + j) * hd * (KV16 != 0u ? 2u : 4u);
        float acc = 0.0f;
        if (KV16 != 0u) {
            for (uint d = 0; d < hd; d += 8) {
                vec4 k0, k1;
                kv_unpack8(BufUV4(ka + d * 2u).v[0], k0, k1);
                acc += dot(k0, vec4(qs[d], qs[d + 1], qs[d + 2], qs[d + 3])) +
                       dot(k1, vec4(qs[d + 4], qs[d + 5], qs[d + 6], qs[d + 7]));
            }
        } else if ((hd & 3u) == 0u) {
            for (uint d = 0; d < hd; d += 4)
                acc += dot(BufV4(ka + d * 4u).v[0], vec4(qs[d], qs[d + 1], qs[d + 2], qs[d + 3]));
        } else {
            for (uint d = 0; d < hd; d++) acc += BufF32(ka).v[d] * qs[d];
        }
        score = acc * pc.scale;
    }
    float m = wg_max(score);
    float e = m == uintBitsToFloat(0xff800000u) ? 0.0f : exp_acc(score - m);
    ps[t] = e;
    float l = wg_sum(e);  // its barriers also publish ps[]

    uint first = s * WG, cnt = min(WG, n_keys - min(first, n_keys));
    uint64_t po = pc.part + (uint64_t(h * pc.n + i) * pc.n_split + s) * (hd + 2u) * 4u;
    for (uint d = t; d < hd; d += WG) {
        float o = 0.0f;
        uint64_t ve = (uint64_t(g) * pc.n_ctx + first) * hd + d;  // element index
        for (uint jj = 0; jj < cnt; jj++)
            if (ps[jj] != 0.0f) o += ps[jj] * ld_kv(KV16 != 0u, pc.vc, ve + uint64_t(jj) * hd);
        BufF32(po).v[d] = o;
    }
    if (t == 0) {
        BufF32(po).v[hd] = m;
        BufF32(po).v[hd + 1] = l;
    }
}
