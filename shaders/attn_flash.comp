#version 460
// attn_flash.comp — attention for many queries (prefill), flash style: a workgroup takes BQ consecutive queries of
// one head, walks the visible keys in blocks of BKV staged in shared memory, and keeps a running max m, sum l and
// unnormalised output per query (online softmax: on a new max, old sums and outputs are scaled by e^(m_old-m_new)).
// Scores: two-dimensional over (query, key) pairs; softmax bookkeeping: one thread per query; output: each thread
// owns head dims t, t+WG, … for all BQ queries. Masks and GQA as in attn_split.comp.
// Mirrors the CPU back-end's attention (softmax(q·Kᵀ·scale + mask)·V, fp32). KV16: the caches hold fp16, widened
// as the blocks are staged.
#define PC_ATTN
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint DMAX = 128;
layout(constant_id = 2) const uint BQ = 16;
layout(constant_id = 3) const uint BKV = 16;
layout(constant_id = 4) const uint KV16 = 0;  // 1: the caches hold fp16
const uint DPT = (DMAX + WG - 1) / WG;  // head dims per thread
// Queries and keys as vec4 rows of DMAX/4 + 1 vectors (zero beyond head_dim): the score loop reads 16 bytes at a
// time, and the extra vector per row puts the rows that a quarter-warp reads at once in different banks (with a
// stride of DMAX floats, the 16 keys of one query all hit the same bank: a 16-way conflict).
const uint D4 = DMAX / 4u + 1u;

shared vec4 qs4[BQ * D4];
shared vec4 ks4[BKV * D4];
shared float vs[BKV * DMAX];
shared float ss[BQ * BKV];
shared float ms[BQ], ls[BQ], as_[BQ];

void main() {
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    uint qb = gl_WorkGroupID.x, h = gl_WorkGroupID.y, t = gl_LocalInvocationID.x;
    uint hd = pc.head_dim, n_keys = pc.pos0 + pc.n, g = h / (pc.n_heads / pc.n_kv);
    uint q0 = qb * BQ, nq = min(BQ, pc.n - q0);
    // queries of this block, and the key range any of them sees
    for (uint e = t; e < BQ * DMAX; e += WG) {
        uint qi = e / DMAX, d = e % DMAX;
        qs4[qi * D4 + d / 4u][d % 4u] =
            qi < nq && d < hd ? BufF32(pc.q + (uint64_t(q0 + qi) * pc.n_heads * hd + h * hd + d) * 4u).v[0] : 0.0f;
    }
    if (t < BQ) {
        ms[t] = NEG_INF;
        ls[t] = 0.0f;
    }
    uint p_first = pc.pos0 + q0, p_last = pc.pos0 + q0 + nq - 1u;
    int lo_all = pc.window > 0u ? max(0, int(p_first) - int(pc.window) + 1) : 0;
    int hi_all = pc.causal != 0u ? int(p_last) : int(n_keys) - 1;

    float o[BQ][DPT];
    [[unroll]] for (uint qi = 0; qi < BQ; qi++)
        [[unroll]] for (uint u = 0; u < DPT; u++) o[qi][u] = 0.0f;

    for (int kb = (lo_all / int(BKV)) * int(BKV); kb <= hi_all; kb += int(BKV)) {
        barrier();
        uint nk = min(BKV, n_keys - uint(kb));
        for (uint e = t; e < BKV * DMAX; e += WG) {
            uint kj = e / DMAX, d = e % DMAX;
            bool inside = kj < nk && d < hd;
            uint64_t a = (uint64_t(g) * pc.n_ctx + uint(kb) + kj) * hd + d;
            ks4[kj * D4 + d / 4u][d % 4u] = inside ? ld_kv(KV16 != 0u, pc.kc, a) : 0.0f;
            vs[kj * DMAX + d] = inside ? ld_kv(KV16 != 0u, pc.vc, a) : 0.0f;
        }
        barrier();
        for (uint e = t; e < BQ * BKV; e += WG) {
            uint qi = e / BKV, kj = e % BKV;
            int p = int(pc.pos0 + q0 + qi), j = kb + int(kj);
            int lo = pc.window > 0u ? p - int(pc.window) + 1 : 0;
            int hi = pc.causal != 0u ? p : int(n_keys) - 1;
            float sc = NEG_INF;
            if (qi < nq && kj < nk && j >= lo && j <= hi) {
                float acc = 0.0f;
                for (uint d4 = 0; d4 < (hd + 3u) / 4u; d4++) acc += dot(qs4[qi * D4 + d4], ks4[kj * D4 + d4]);
                sc = acc * pc.scale;
            }
            ss[qi * BKV + kj] = sc;
        }
        barrier();
        if (t < BQ) {
            float mo = ms[t], mn = mo;
            for (uint kj = 0; kj < BKV; kj++) mn = max(mn, ss[t * BKV + kj]);
            float alpha = 1.0f, sum = 0.0f;
            if (mn != NEG_INF) {
                alpha = mo == NEG_INF ? 0.0f : exp_acc(mo - mn);
                for (uint kj = 0; kj < BKV; kj++) {
                    float sc = ss[t * BKV + kj];
                    float pj = sc == NEG_INF ? 0.0f : exp_acc(sc - mn);
                    ss[t * BKV + kj] = pj;
                    sum += pj;
                }
            } else {
                for (uint kj = 0; kj < BKV; kj++) ss[t * BKV + kj] = 0.0f;
            }
            ms[t] = mn;
            ls[t] = ls[t] * alpha + sum;
            as_[t] = alpha;
        }
        barrier();
        [[unroll]] for (uint u = 0; u < DPT; u++) {
            uint d = t + u * WG;
            if (d >= hd) break;
            [[unroll]] for (uint qi = 0; qi < BQ; qi++) {
                float acc = o[qi][u] * as_[qi];
                for (uint kj = 0; kj < BKV; kj++) acc += ss[qi * BKV + kj] * vs[kj * DMAX + d];
                o[qi][u] = acc;
            }
        }
    }
    barrier();
    [[unroll]] for (uint u = 0; u < DPT; u++) {
        uint d = t + u * WG;
        if (d >= hd) break;
        [[unroll]] for (uint qi = 0; qi < BQ; qi++) {
            if (qi >= nq) break;
            float l = ls[qi];
            BufF32(pc.dst + (uint64_t(q0 + qi) * pc.n_heads * hd + h * hd + d) * 4u).v[0] =
                l > 0.0f ? o[qi][u] / l : 0.0f;
        }
    }
}
