#version 460
// qk_rope_kv.comp — the attention block's per-head work of one decode step in one dispatch: for every head of q
// and k, RMSNorm over head_dim (q_norm / k_norm), then RoPE; k heads are also written to the k cache, and the
// matching v head to the v cache. One workgroup per (head, token): x = workgroup id (q heads, then k heads),
// y = token. Replaces rms_norm.comp (twice), rope.comp (twice) and kv_store.comp with the same fp32 arithmetic:
// y = (x * scale) * w with scale = 1/sqrt(mean(x²) + eps), angle = pos·inv_freq, sin/cos from sincos_acc.
// Mirrors the CPU back-end's qk_norm_rope_kv (= its rms_norm, rope and kv_store in sequence) and HF
// Qwen3OmniMoeThinkerTextAttention.forward (q_norm/k_norm, apply_rotary_pos_emb with interleaved MRoPE,
// past_key_values.update). KV16: the caches hold fp16; the k head is staged rotated in shared memory and written
// (with v) a word of two halves per thread (kv_pack2).
// k and v rows are pc.kv_stride floats apart (2·n_kv·head_dim when they are the halves of one k|v product). With
// pc.nsplit > 0 that product still owes its split-K sum: k and v are read as the sums of its partial planes (in
// plane order, as mm_ksum.comp: the same bits) and written to k and v as well (k rotated, as always).
#define PC_QKROPE
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 64;
layout(constant_id = 1) const uint QTYPE = 0;  // weight type of w_q (f32, f16, bf16)
layout(constant_id = 2) const uint KTYPE = 0;  // weight type of w_k
layout(constant_id = 3) const uint KV16 = 0;   // 1: the caches hold fp16 (head_dim even)

#include "reduce.glsl"

shared float xs[256];  // the normalised head (head_dim <= 256)

// element e of the k|v product's rows (e = i·kv_stride + column): its owed split-K sum
float ksum(uint64_t e) {
    uint64_t total = uint64_t(pc.n) * pc.kv_stride;
    float s = 0.0f;
    for (uint z = 0; z < pc.nsplit; z++) s += BufF32(pc.part + (uint64_t(z) * total + e) * 4u).v[0];
    return s;
}

void main() {
    uint hh = gl_WorkGroupID.x, i = gl_WorkGroupID.y, t = gl_LocalInvocationID.x, hd = pc.head_dim;
    bool is_k = hh >= pc.n_heads;  // uniform per workgroup
    uint h = is_k ? hh - pc.n_heads : hh;
    uint64_t ke = uint64_t(i) * pc.kv_stride + h * hd;  // this k head's first element (k rows kv_stride apart)
    uint64_t xa = is_k ? pc.k + ke * 4u : pc.q + (uint64_t(i) * pc.n_heads + h) * hd * 4u;
    BufF32 x = BufF32(xa);
    bool owed = is_k && pc.nsplit > 0u;
    float ss = 0.0f;
    for (uint d = t; d < hd; d += WG) {
        float v = owed ? ksum(ke + d) : x.v[d];
        xs[d] = v;
        ss += v * v;
    }
    ss = wg_sum(ss);  // its barriers also make xs visible to the workgroup
    float scale = 1.0f / sqrt(ss / float(hd) + pc.eps);
    for (uint d = t; d < hd; d += WG)
        xs[d] = (xs[d] * scale) * (is_k ? ld_elem(KTYPE, pc.w_k, pc.w_k, d) : ld_elem(QTYPE, pc.w_q, pc.w_q, d));
    barrier();

    // RoPE pair j = (j, j + rot_dim/2), the position row chosen as in rope.comp; dims past rot_dim pass through
    uint half_rot = pc.rot_dim / 2u;
    uint64_t ca = (uint64_t(h) * pc.n_ctx + pc.pos0 + i) * hd * 4u;
    for (uint j = t; j < half_rot; j += WG) {
        uint sel = 0;
        uint sec0 = pc.secs & 0xffu, sec1 = (pc.secs >> 8u) & 0xffu, sec2 = (pc.secs >> 16u) & 0xffu;
        if (sec0 + sec1 + sec2 != 0u) {
            if ((pc.secs >> 24u) != 0u) {
                if (j % 3u == 1u && j < 3u * sec1) sel = 1u;
                else if (j % 3u == 2u && j < 3u * sec2) sel = 2u;
            } else {
                sel = j < sec0 ? 0u : j < sec0 + sec1 ? 1u : j < sec0 + sec1 + sec2 ? 2u : 0u;
            }
        }
        float pos = BufF32(pc.pos).v[sel * pc.n + i];
        precise float ang = pos * BufF32(pc.freqs).v[j];
        float s, c;
        sincos_acc(ang, s, c);
        float a = xs[j], b = xs[j + half_rot];
        float ra = a * c - b * s, rb = b * c + a * s;
        x.v[j] = ra;
        x.v[j + half_rot] = rb;
        if (is_k && KV16 != 0u) {  // (this thread alone touches the pair)
            xs[j] = ra;
            xs[j + half_rot] = rb;
        } else if (is_k) {
            BufF32(pc.kc + ca).v[j] = ra;
            BufF32(pc.kc + ca).v[j + half_rot] = rb;
        }
    }
    for (uint d = pc.rot_dim + t; d < hd; d += WG) {
        x.v[d] = xs[d];
        if (is_k && KV16 == 0u) BufF32(pc.kc + ca).v[d] = xs[d];
    }
    // v's element d: its owed sum (then also written to v), or as the product left it
    uint64_t ve = ke + (pc.v - pc.k) / 4u;  // (owed: v is k's row plus n_kv·head_dim, the host checks)
    BufF32 v = BufF32(pc.v + ke * 4u);
#define VIN(d) (owed ? ksum(ve + (d)) : v.v[d])
    if (is_k && KV16 != 0u) {  // (is_k is uniform per workgroup)
        barrier();
        uint64_t ch = ca / 2u;  // the row's byte offset in halves
        for (uint w = t; w < hd / 2u; w += WG) {
            BufU32(pc.kc + ch).v[w] = kv_pack2(xs[2u * w], xs[2u * w + 1u]);
            float a = VIN(2u * w), b = VIN(2u * w + 1u);
            BufU32(pc.vc + ch).v[w] = kv_pack2(a, b);
            if (owed) {
                v.v[2u * w] = a;
                v.v[2u * w + 1u] = b;
            }
        }
    } else if (is_k) {
        for (uint d = t; d < hd; d += WG) {
            float a = VIN(d);
            BufF32(pc.vc + ca).v[d] = a;
            if (owed) v.v[d] = a;
        }
    }
}
