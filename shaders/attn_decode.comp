#version 460
// attn_decode.comp — the attention core of one decode step (one query at position pos0) in one dispatch:
//   q_norm / k_norm per head -> RoPE(q, k) -> k/v cache store -> softmax(q·Kᵀ·scale + mask)·V.
// Workgroup (x, y) = (key chunk chunk0 + x, head set y): head set y holds G q heads (y·G .. y·G+G-1) of kv head
// g = y / GS (GS sets per kv head; GS = 1: all n_heads / n_kv q heads, so each K and V row is read once per token;
// more sets shorten each workgroup's chain at the cost of reading K and V once per set), and handles keys
// [c·C, (c+1)·C):
//   1. loads this chunk's K rows (PV 1: and V rows; all at once, first, so that their latency overlaps the head
//      preparation), the G q heads and k head g from the q|k|v projection, normalises and rotates them in shared
//      memory (every workgroup does this for itself: 9 heads of 128 floats from L2 cost less than a dispatch);
//   2. the chunk that holds pos0 stores the rotated k and v into the caches (set 0 of the kv head) and uses them
//      from shared memory;
//   3. scores: S = WG/C threads per key, 16-byte loads of K rows, partial dot products for all G heads;
//   4. softmax within the chunk (max m per head), e = e^(s - m), then P·V, one of two ways (PV, host's choice):
//      PV 0: D4 threads per V row load it (after the softmax) and keep sums for all G heads; the KG key groups' sums
//            are added in group order through shared memory (KG barriers), l per head from partial sums;
//      PV 1: the V rows loaded in step 1 go to shared memory, and one thread per output vec4 (head, 4 dims) runs
//            over the keys (KS threads per output, each a share of the keys, when there are fewer outputs than
//            threads) and also sums its head's l = Σ e: no key-group sums, fewer barriers, but every V word is read
//            G times from shared memory (the shorter chain wins for few chunks; vk_decode.c has the numbers);
//   5. one chunk: the normalised output goes straight to dst. Several: the chunk writes (o, m, l) to part, and the
//      last workgroup of set y to finish (an atomic counter per set, which it resets) merges them as
//      attn_combine.comp does: with M = max m_c, out = Σ e^(m_c - M)·o_c / Σ e^(m_c - M)·l_c. With TB != 0 and more
//      than TB chunks, two levels: the last of each group of TB chunks merges the group into an unnormalised
//      partial (o, M, L) of its own (a counter per group), and the last group merger merges the groups the same
//      way; no workgroup ever waits for another.
// Arithmetic mirrors qk_rope_kv.comp (y = (x·scale)·w with scale = 1/sqrt(mean(x²) + eps), angle = pos·inv_freq,
// sincos_acc) and attn_split.comp + attn_combine.comp (fp32 scores, exp_acc), i.e. the CPU back-end's rms_norm,
// rope, kv_store and attention in sequence (HF Qwen3OmniMoeThinkerTextAttention.forward with past_key_values).
// No subgroup operations: reductions go through shared memory or run in one thread in a fixed order, so results do
// not depend on timing or on which workgroup merges.
// KV16: the caches hold fp16 (vk_ops.c; D a multiple of 8): K rows are read as 16-byte words of 8 halves (each
// thread of the score pass holds half as many words), V rows as 8-byte words of 4 halves (kept as halves in shared
// memory); the new key and value are rounded to fp16 in shared memory before anything uses them, so this token
// attends to its own key as later tokens will read it from the cache (and as the unfused pair does).
// PROF (the attn_decode_prof build, OMNI_VK_ATTN_PROF=1; vulkan_bench): thread 0 of every workgroup notes its SM's
// clock at the phase boundaries below (PT) and the device's clock at its start and end, and appends one record of
// 32 words before pc.part (prof_out; vk_decode.c reads them for the bench); the kernel's work is unchanged.
#define PC_ATTND
#include "common.glsl"
#ifdef PROF
#extension GL_ARB_shader_clock : require
#extension GL_EXT_shader_realtime_clock : require
shared uint tp[24];
shared uvec2 t_start;
#define PT(i) if (gl_LocalInvocationID.x == 0u) tp[i] = clock2x32ARB().x
#else
#define PT(i)
#endif

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint G = 8;        // q heads per workgroup (G + 1 <= WG)
layout(constant_id = 2) const uint D = 128;      // head_dim, a multiple of 4, <= 256
layout(constant_id = 3) const uint C = 64;       // keys per chunk: a power of two dividing WG
layout(constant_id = 4) const uint QTYPE = 0;    // weight type of w_q (f32, f16, bf16)
layout(constant_id = 5) const uint KTYPE = 0;    // weight type of w_k
layout(constant_id = 6) const uint ROT = 128;    // rotated dims (even, <= D)
layout(constant_id = 7) const uint SEC0 = 0;     // mrope sections (all 0: plain RoPE), interleaved layout
layout(constant_id = 8) const uint SEC1 = 0;
layout(constant_id = 9) const uint SEC2 = 0;
layout(constant_id = 10) const uint INTER = 0;
// (vk_pipeline keys at most 12 constants: the last packs the cache format, the value pass and the head sets)
layout(constant_id = 11) const uint MODE = 0x100;
const uint KV16 = MODE & 1u;          // 1: the caches hold fp16
const uint PV = (MODE >> 1) & 1u;     // value pass: 1 V rows in shared memory, a thread per output; 0 key groups
const uint GS = (MODE >> 8) & 0xffu;  // head sets per kv head
const uint TB = MODE >> 16;           // chunks per merge group (0: one merge of all chunks)

// the partials and the counters are exchanged between workgroups of one dispatch: coherent (not cached per SM)
layout(buffer_reference, std430, buffer_reference_align = 16) coherent buffer PartV4 { vec4 v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer PartF { float v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer Cnt { uint v[]; };

const uint D4 = D / 4u;
const uint NH = G + 1u;            // the q heads, then the k head
const uint S = WG / C;             // threads per key in the score pass
const uint HR = ROT / 2u;
const uint OT = G * D4;            // output vec4s of a workgroup
const uint KS = OT < WG ? WG / OT : 1u;   // threads per output vec4 (value pass and merge), each a share
const uint OV = (OT + WG - 1u) / WG;      // output vec4s per thread
const uint KPT = (D4 + S - 1u) / S;       // K vec4s per thread in the score pass
const uint D8 = D / 8u;                   // KV16: 16-byte words of 8 halves per K row
const uint KPH = (D8 + S - 1u) / S;       // KV16: K words per thread in the score pass
const uint VW = C * D4;                   // the chunk's V rows in words of 4 elements
const uint VPT = (VW + WG - 1u) / WG;     // V words per thread in the load
const uint KG = WG / D4;                  // PV 0: key groups (D4 threads per V row)
const uint KI = (C + KG - 1u) / KG;       // PV 0: keys per thread
// merge: partials per batch (each an output vec4 and its head's (m, l) pair: 6 registers in flight); 9, so that
// the 65 chunks of depth 4096 (9 groups of up to 8) merge in one batch per level (H100, vulkan_bench model at depth
// 4096, alternating on one load: BF16 tg64 228.4 / 227.7 / 230.5 t/s against 8's 225.3 / 205.9; 81 registers
// against 80)
const uint MBO = 9u / OV > 0u ? 9u / OV : 1u;
// ps floats: score partials [G][WG], the merge's share states [KS-1][OT] x (4 + 1)
const uint PSN = WG * (G > 5u ? G : 5u);

shared vec4 xs[NH * D4];  // the normalised, rotated heads
shared vec4 vn[D4];       // the new v row (chunk of pos0)
shared float wn[2u * D];  // the q_norm and k_norm weights
shared float ps[PSN];     // norm partials; score partials [G][WG]; PV 1 split sums [KS-1][OT]; merge share states
// PV 1: the chunk's V rows (KV16: a uvec2 of 4 halves per word, else two uvec2 of float bits)
shared uvec2 vw[PV == 0u ? 1u : KV16 != 0u ? VW : 2u * VW];
shared float sc[G * C];   // scores, then e^(s - m)
shared float sn[HR], cs[HR];
shared float red[WG];
shared float mh[G], lh[G], scl[NH];
shared uint last;

float xget(uint e) { return xs[e >> 2][e & 3u]; }
void xset(uint e, float v) { xs[e >> 2][e & 3u] = v; }
float wnorm(uint h, uint d) { return wn[(h < G ? 0u : D) + d]; }
// PV 1: V word i of the chunk (key i / D4, dims 4·(i % D4)..)
vec4 vget(uint i) {
    if (KV16 != 0u) return vec4(unpackHalf2x16(vw[i].x), unpackHalf2x16(vw[i].y));
    return uintBitsToFloat(uvec4(vw[2u * i], vw[2u * i + 1u]));
}
void vset(uint i, vec4 v) {  // (KV16: v is fp16 already, the packing is exact)
    if (KV16 != 0u) vw[i] = uvec2(kv_pack2(v.x, v.y), kv_pack2(v.z, v.w));
    else vw[2u * i] = floatBitsToUint(v.xy), vw[2u * i + 1u] = floatBitsToUint(v.zw);
}
// PV 1: the split sums of output vec4 u from thread share s (1 <= s < KS), 4 floats each
void pset4(uint s, uint u, vec4 v) {
    uint b = ((s - 1u) * OT + u) * 4u;
    ps[b] = v.x, ps[b + 1u] = v.y, ps[b + 2u] = v.z, ps[b + 3u] = v.w;
}
vec4 pget4(uint s, uint u) {
    uint b = ((s - 1u) * OT + u) * 4u;
    return vec4(ps[b], ps[b + 1u], ps[b + 2u], ps[b + 3u]);
}

// Merges n partials (outputs o_c at po + c·G·D floats, (m_c, l_c) pairs at pm + c·G pairs) as attn_combine.comp
// does, o = Σ e^(m_c - M)·o_c and L = Σ e^(m_c - M)·l_c with M = max m_c; fin: o / L to qo; else the unnormalised
// (o, M, L) as one more partial to qo and qm (a group of the two-level merge). In one pass without barriers: each
// thread loads, for each of its output vec4s, the partials' outputs and its head's (m_c, l_c) pairs, MBO partials
// at a time with all loads in flight, and keeps a running max M with o and L rescaled by e^(M_old - M_new) when a
// batch raises it (online softmax, as attn_flash.comp's rows); with one batch (n <= MBO·KS) that is the sums
// above in partial order. With KS shares per output (few outputs), the shares' (M, L, o) are combined in share
// order. (Before, a (m, l) pass, the weights through shared memory and an output pass: three dependent L2 round
// trips and four barriers; at depth 4096 on the H100 a merge level took 3.7 -> 2.1 µs, BF16 tg64 at depth 4096
// 216 -> 224 t/s, Q8_0 281 -> 291, alternating on one load, vulkan_bench model.)
// e^(from - to), the factor that moves a sum kept against max `from` to the larger max `to` (exactly 1 when they are
// equal, 0 from an empty state)
float rescale(float from, float to) {
    return from == to ? 1.0f : from == uintBitsToFloat(0xff800000u) ? 0.0f : exp_acc(from - to);
}
void merge(uint64_t po, uint64_t pm, uint n, bool fin, uint64_t qo, uint64_t qm, uint pb) {
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    uint t = gl_LocalInvocationID.x, ks = KS > 1u ? t / OT : 0u;
    vec4 acc[OV];
    float M[OV], L[OV];
    [[unroll]] for (uint r = 0u; r < OV; r++) acc[r] = vec4(0.0f), M[r] = NEG_INF, L[r] = 0.0f;
    if (ks < KS)
        for (uint c0 = ks; c0 < n; c0 += MBO * KS) {
            vec4 x[MBO * OV];
            float mm[MBO * OV], ll[MBO * OV];
            [[unroll]] for (uint i = 0u; i < MBO; i++) {
                uint c = c0 + i * KS;
                [[unroll]] for (uint r = 0u; r < OV; r++) {
                    uint u = KS > 1u ? t % OT : t + r * WG;
                    bool ok = c < n && u < OT;
                    uint h = min(u, OT - 1u) / D4;
                    x[i * OV + r] = ok ? PartV4(po + uint64_t(c) * G * D * 4u).v[u] : vec4(0.0f);
                    mm[i * OV + r] = ok ? PartF(pm).v[(c * G + h) * 2u] : NEG_INF;
                    ll[i * OV + r] = ok ? PartF(pm).v[(c * G + h) * 2u + 1u] : 0.0f;
                }
            }
            [[unroll]] for (uint r = 0u; r < OV; r++) {
                float mb = M[r];
                [[unroll]] for (uint i = 0u; i < MBO; i++) mb = max(mb, mm[i * OV + r]);
                if (mb == NEG_INF) continue;  // nothing but empty partials so far
                float f = rescale(M[r], mb);
                acc[r] *= f;
                L[r] *= f;
                M[r] = mb;
                [[unroll]] for (uint i = 0u; i < MBO; i++) {
                    float m = mm[i * OV + r], w = m == NEG_INF ? 0.0f : exp_acc(m - mb);
                    acc[r] += w * x[i * OV + r];
                    L[r] += w * ll[i * OV + r];
                }
            }
        }
    PT(pb);
    if (KS > 1u) {  // (OV = 1) the shares' states in share order; ps and red are free (the merge follows a barrier)
        if (ks > 0u && ks < KS) {
            pset4(ks, t % OT, acc[0]);
            red[(ks - 1u) * OT + t % OT] = M[0];
            ps[4u * (KS - 1u) * OT + (ks - 1u) * OT + t % OT] = L[0];
        }
        barrier();
        if (ks == 0u)
            for (uint s = 1u; s < KS; s++) {
                float Ms = red[(s - 1u) * OT + t], mb = max(M[0], Ms);
                if (mb == NEG_INF) continue;
                float f0 = rescale(M[0], mb), f1 = rescale(Ms, mb);
                acc[0] = acc[0] * f0 + pget4(s, t) * f1;
                L[0] = L[0] * f0 + ps[4u * (KS - 1u) * OT + (s - 1u) * OT + t] * f1;
                M[0] = mb;
            }
    }
    PT(pb + 1u);
    if (ks == 0u)
        [[unroll]] for (uint r = 0u; r < OV; r++) {
            uint u = KS > 1u ? t : t + r * WG;
            if (u < OT) {
                if (fin) {
                    BufV4(qo).v[u] = L[r] > 0.0f ? acc[r] / L[r] : vec4(0.0f);
                } else {
                    PartV4(qo).v[u] = acc[r];
                    if (u % D4 == 0u) {
                        PartF(qm).v[(u / D4) * 2u] = M[r];
                        PartF(qm).v[(u / D4) * 2u + 1u] = L[r];
                    }
                }
            }
        }
    PT(pb + 2u);
}

#ifdef PROF
// the record of this workgroup, appended (dispatches are ordered by barriers, so each one's records follow the
// previous one's): [0..1] device clock at the start, [2..24] SM clock at points 1..23 less point 0 (0: not
// reached), [26..27] device clock at the end, [28] the merges it did (bit 0 group, bit 1 final), [29] its
// workgroup id (x | y << 16)
void prof_out(uint flags) {
    if (gl_LocalInvocationID.x != 0u) return;
    uvec2 te = clockRealtime2x32EXT();
    uint64_t base = pc.part - ATTND_PROF_BYTES;
    uint idx = atomicAdd(BufU32(base).v[0], 1u);
    if (idx >= ATTND_PROF_CAP) return;
    uint64_t a = base + 128u + uint64_t(idx) * 128u;
    BufU32(a).v[0] = t_start.x;
    BufU32(a).v[1] = t_start.y;
    for (uint i = 1u; i < 24u; i++) BufU32(a).v[1u + i] = tp[i] != 0u ? tp[i] - tp[0] : 0u;
    BufU32(a).v[26] = te.x;
    BufU32(a).v[27] = te.y;
    BufU32(a).v[28] = flags;
    BufU32(a).v[29] = gl_WorkGroupID.x | gl_WorkGroupID.y << 16;
}
#define PROF_OUT(f) prof_out(f)
#else
#define PROF_OUT(f)
#endif

void main() {
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    uint t = gl_LocalInvocationID.x, y = gl_WorkGroupID.y, g = y / GS, ci = gl_WorkGroupID.x, N = pc.n_chunks;
    uint p = pc.pos0, j0 = (pc.chunk0 + ci) * C;
    int lo = pc.window > 0u ? max(0, int(p) - int(pc.window) + 1) : 0;
    bool has_new = p >= j0 && p < j0 + C;  // uniform: this chunk holds the new key
#ifdef PROF
    if (t == 0u) {
        t_start = clockRealtime2x32EXT();
        for (uint i = 1u; i < 24u; i++) tp[i] = 0u;
    }
    PT(0);
#endif

    // this thread's part of its key's K row, loaded first so that its latency overlaps the head preparation (a row
    // past the context end is clamped; the new key's row is not read from memory, masked keys are ignored)
    uint kk = t / S, sp = t % S, jk = j0 + kk;
    vec4 kr[KPT];
    uvec4 kh[KPH];  // KV16
    if (KV16 != 0u) {
        uint64_t ka = pc.kc + (uint64_t(g) * pc.n_ctx + min(jk, pc.n_ctx - 1u)) * D * 2u;
        [[unroll]] for (uint i = 0u; i < KPH; i++) kh[i] = sp + i * S < D8 ? BufUV4(ka).v[sp + i * S] : uvec4(0u);
    } else {
        uint64_t ka = pc.kc + (uint64_t(g) * pc.n_ctx + min(jk, pc.n_ctx - 1u)) * D * 4u;
        [[unroll]] for (uint i = 0u; i < KPT; i++) kr[i] = sp + i * S < D4 ? BufV4(ka).v[sp + i * S] : vec4(0.0f);
    }
    // and its words of the chunk's V rows (word i = key i / D4, dims 4·(i % D4)..): rows outside [lo, p] get weight
    // 0; their address is clamped to a row already in the cache (finite values), and the new row is taken from
    // shared memory when the words are stored there, so the loads need no branch
    uint last_old = p > 0u ? p - 1u : 0u;
    uvec2 vq[VPT];  // KV16
    vec4 vr[VPT];
    if (PV != 0u) {
        [[unroll]] for (uint r = 0u; r < VPT; r++) {
            uint i = min(t + r * WG, VW - 1u);
            uint jr = uint(clamp(int(j0 + i / D4), lo, int(p)));
            uint64_t vrow = uint64_t(g) * pc.n_ctx + min(jr, last_old);
            if (KV16 != 0u) vq[r] = BufU2(pc.vc + vrow * D * 2u).v[i % D4];
            else vr[r] = BufV4(pc.vc + vrow * D * 4u).v[i % D4];
        }
    }

    // ---- 1. heads: raw values, sin/cos of the rotation angles ----
    // Every load of this step is issued before any result is stored (loops of loads and stores ran one L2 round
    // trip per iteration; in the model at depth 4096 the preparation went 3.9 -> 3.8 µs, vulkan_bench with
    // OMNI_VK_ATTN_PROF=1).
    const uint NE = (NH * D + WG - 1u) / WG, NV = (D + WG - 1u) / WG, NW = (2u * D + WG - 1u) / WG;
    const uint NJ = (HR + WG - 1u) / WG;
    float hx[NE], vx[NV], wx[NW], px[NJ], fx[NJ];
    [[unroll]] for (uint i = 0u; i < NE; i++) {
        uint e = t + i * WG;
        hx[i] = e < G * D ? BufF32(pc.q).v[y * G * D + e] : e < NH * D ? BufF32(pc.k).v[g * D + e - G * D] : 0.0f;
    }
    [[unroll]] for (uint i = 0u; i < NV; i++) {
        uint d = t + i * WG;
        vx[i] = has_new && d < D ? BufF32(pc.v).v[g * D + d] : 0.0f;
    }
    [[unroll]] for (uint i = 0u; i < NW; i++) {
        uint d = t + i * WG;
        wx[i] = d < D ? ld_elem(QTYPE, pc.w_q, pc.w_q, d) : d < 2u * D ? ld_elem(KTYPE, pc.w_k, pc.w_k, d - D) : 0.0f;
    }
    [[unroll]] for (uint i = 0u; i < NJ; i++) {  // frequency slot -> position row as in qk_rope_kv.comp / rope.comp
        uint j = t + i * WG, sel = 0u;
        if (SEC0 + SEC1 + SEC2 != 0u) {
            if (INTER != 0u) {
                if (j % 3u == 1u && j < 3u * SEC1) sel = 1u;
                else if (j % 3u == 2u && j < 3u * SEC2) sel = 2u;
            } else {
                sel = j < SEC0 ? 0u : j < SEC0 + SEC1 ? 1u : j < SEC0 + SEC1 + SEC2 ? 2u : 0u;
            }
        }
        px[i] = j < HR ? BufF32(pc.pos).v[sel] : 0.0f;  // pos3 is [3][1]
        fx[i] = j < HR ? BufF32(pc.freqs).v[j] : 0.0f;
    }
    PT(1);
    [[unroll]] for (uint i = 0u; i < NE; i++)
        if (t + i * WG < NH * D) xset(t + i * WG, hx[i]);
    [[unroll]] for (uint i = 0u; i < NV; i++) {
        uint d = t + i * WG;
        if (has_new && d < D) vn[d >> 2][d & 3u] = KV16 != 0u ? kv_round(vx[i]) : vx[i];
    }
    [[unroll]] for (uint i = 0u; i < NW; i++)
        if (t + i * WG < 2u * D) wn[t + i * WG] = wx[i];
    [[unroll]] for (uint i = 0u; i < NJ; i++) {
        uint j = t + i * WG;
        if (j < HR) {
            precise float ang = px[i] * fx[i];
            float s, c;
            sincos_acc(ang, s, c);
            sn[j] = s;
            cs[j] = c;
        }
    }
    PT(2);
    barrier();
    PT(3);
    // sum of squares per head: P threads per head, then one thread per head adds the P partials (fixed order)
    uint P = 1u;
    while (P * 2u * NH <= WG) P *= 2u;
    for (uint u = t; u < NH * P; u += WG) {
        uint h = u / P;
        float ss = 0.0f;
        for (uint d = u % P; d < D; d += P) {
            float x = xget(h * D + d);
            ss += x * x;
        }
        ps[u] = ss;
    }
    barrier();
    for (uint h = t; h < NH; h += WG) {
        float ss = 0.0f;
        for (uint i = 0u; i < P; i++) ss += ps[h * P + i];
        scl[h] = 1.0f / sqrt(ss / float(D) + pc.eps);
    }
    barrier();
    // normalise and rotate in place: rotation pair (j, j + ROT/2); dims past ROT are only normalised
    // (KV16: the k head, h = G, as the fp16 cache keeps it)
    for (uint u = t; u < NH * HR; u += WG) {
        uint h = u / HR, j = u % HR, ea = h * D + j, eb = ea + HR;
        float a = (xget(ea) * scl[h]) * wnorm(h, j), b = (xget(eb) * scl[h]) * wnorm(h, j + HR);
        float ra = a * cs[j] - b * sn[j], rb = b * cs[j] + a * sn[j];
        bool r16 = KV16 != 0u && h == G;
        xset(ea, r16 ? kv_round(ra) : ra);
        xset(eb, r16 ? kv_round(rb) : rb);
    }
    if (ROT < D) {
        const uint R = D > ROT ? D - ROT : 1u;
        for (uint u = t; u < NH * R; u += WG) {
            uint h = u / R, e = h * D + ROT + u % R;
            float x = (xget(e) * scl[h]) * wnorm(h, ROT + u % R);
            xset(e, KV16 != 0u && h == G ? kv_round(x) : x);
        }
    }
    barrier();
    PT(4);

    // ---- 2. the new key and value into the caches (by set 0 of the kv head) ----
    if (has_new && y % GS == 0u && KV16 != 0u) {  // (the values are fp16 already: the packing is exact)
        uint64_t row = (uint64_t(g) * pc.n_ctx + p) * D * 2u;
        for (uint d8 = t; d8 < D8; d8 += WG) {
            vec4 k0 = xs[G * D4 + 2u * d8], k1 = xs[G * D4 + 2u * d8 + 1u], v0 = vn[2u * d8], v1 = vn[2u * d8 + 1u];
            BufU4(pc.kc + row).v[d8] = uvec4(kv_pack2(k0.x, k0.y), kv_pack2(k0.z, k0.w), kv_pack2(k1.x, k1.y),
                                             kv_pack2(k1.z, k1.w));
            BufU4(pc.vc + row).v[d8] = uvec4(kv_pack2(v0.x, v0.y), kv_pack2(v0.z, v0.w), kv_pack2(v1.x, v1.y),
                                             kv_pack2(v1.z, v1.w));
        }
    } else if (has_new && y % GS == 0u) {
        uint64_t row = (uint64_t(g) * pc.n_ctx + p) * D * 4u;
        for (uint d4 = t; d4 < D4; d4 += WG) {
            BufV4(pc.kc + row).v[d4] = xs[G * D4 + d4];
            BufV4(pc.vc + row).v[d4] = vn[d4];
        }
    }

    // ---- 3. scores: key j0 + t/S, dims (t % S) + S·i (the 16-byte loads above) ----
    {
        float acc[G];
        [[unroll]] for (uint h = 0u; h < G; h++) acc[h] = 0.0f;
        bool is_new = jk == p;
        if (KV16 != 0u) {
            [[unroll]] for (uint i = 0u; i < KPH; i++) {
                uint d8 = sp + i * S;
                if (d8 < D8) {
                    vec4 k0, k1;
                    kv_unpack8(kh[i], k0, k1);
                    if (is_new) k0 = xs[G * D4 + 2u * d8], k1 = xs[G * D4 + 2u * d8 + 1u];
                    [[unroll]] for (uint h = 0u; h < G; h++)
                        acc[h] += dot(k0, xs[h * D4 + 2u * d8]) + dot(k1, xs[h * D4 + 2u * d8 + 1u]);
                }
            }
        } else {
            [[unroll]] for (uint i = 0u; i < KPT; i++) {
                uint d4 = sp + i * S;
                if (d4 < D4) {
                    vec4 kv = is_new ? xs[G * D4 + d4] : kr[i];  // the new key from shared memory
                    [[unroll]] for (uint h = 0u; h < G; h++) acc[h] += dot(kv, xs[h * D4 + d4]);
                }
            }
        }
        PT(5);
        [[unroll]] for (uint h = 0u; h < G; h++) ps[h * WG + t] = acc[h];
    }
    barrier();
    PT(6);
    for (uint u = t; u < G * C; u += WG) {
        uint h = u / C, k2 = u % C, j = j0 + k2;
        float s = NEG_INF;
        if (int(j) >= lo && j <= p) {
            float a = 0.0f;
            for (uint i = 0u; i < S; i++) a += ps[h * WG + k2 * S + i];
            s = a * pc.scale;
        }
        sc[u] = s;
    }
    barrier();
    PT(7);

    // ---- 4. softmax within the chunk (max: P2 threads per head, then one thread per head), PV 1: the V rows into
    // shared memory; then P·V ----
    uint P2 = 1u;
    while (P2 * 2u * G <= WG) P2 *= 2u;
    if (t < G * P2) {
        uint h = t / P2;
        float m = NEG_INF;
        for (uint k2 = t % P2; k2 < C; k2 += P2) m = max(m, sc[h * C + k2]);
        red[t] = m;
    }
    barrier();
    if (t < G) {
        float m = NEG_INF;
        for (uint i = 0u; i < P2; i++) m = max(m, red[t * P2 + i]);
        mh[t] = m;
    }
    barrier();
    for (uint u = t; u < G * C; u += WG) {
        float s = sc[u], m = mh[u / C];
        sc[u] = s == NEG_INF ? 0.0f : exp_acc(s - m);  // masked keys weigh exactly 0
    }
    if (PV != 0u) [[unroll]] for (uint r = 0u; r < VPT; r++) {
        uint i = t + r * WG;
        if (i < VW) {
            bool is_new = uint(clamp(int(j0 + i / D4), lo, int(p))) == p;
            if (is_new) vset(i, vn[i % D4]);  // (vn is set in the chunk of pos0, the only one with is_new)
            else if (KV16 != 0u) vw[i] = vq[r];
            else vw[2u * i] = floatBitsToUint(vr[r].xy), vw[2u * i + 1u] = floatBitsToUint(vr[r].zw);
        }
    }
    barrier();
    PT(8);
    // ---- 5 (below). output: directly, or through the partials and the last workgroup's merge ----
    uint64_t dst = pc.dst + uint64_t(y) * G * D * 4u;
    // partials: chunk outputs [n_sets][N][G·D], group outputs [n_sets][NGT][G·D], then the (m, l) pairs of the
    // chunks [n_sets][N][G] and of the groups [n_sets][NGT][G]
    uint NGT = TB != 0u && N > TB ? (N + TB - 1u) / TB : 0u;  // merge groups (0: one level)
    uint64_t ml = pc.part + uint64_t(pc.n_sets) * (N + NGT) * G * D * 4u;
    uint64_t gml = ml + uint64_t(pc.n_sets) * N * G * 8u;
    uint ks = KS > 1u ? t / OT : 0u;
    if (PV == 0u) {
        // PV 0: D4 threads per V row (key group kg = t / D4, keys kg, kg + KG, ...) hold all G heads' sums, added
        // over the key groups in group order through xs (the heads are no longer needed); l per head from P2
        // threads' partial sums
        if (t < G * P2) {
            uint h = t / P2;
            float s = 0.0f;
            for (uint k2 = t % P2; k2 < C; k2 += P2) s += sc[h * C + k2];
            red[t] = s;
        }
        {
            uint kg = t / D4, lane = t % D4;
            vec4 og[G];
            [[unroll]] for (uint h = 0u; h < G; h++) og[h] = vec4(0.0f);
            if (kg < KG)
                [[unroll]] for (uint i = 0u; i < KI; i++) {
                    uint k2 = kg + i * KG;
                    if (k2 < C) {
                        uint jr = uint(clamp(int(j0 + k2), lo, int(p)));
                        uint64_t vrow = uint64_t(g) * pc.n_ctx + min(jr, last_old);
                        vec4 vg;
                        if (KV16 != 0u) {
                            uvec2 u = BufU2(pc.vc + vrow * D * 2u).v[lane];
                            vg = vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y));
                        } else {
                            vg = BufV4(pc.vc + vrow * D * 4u).v[lane];
                        }
                        vec4 vv = jr == p ? vn[lane] : vg;
                        [[unroll]] for (uint h = 0u; h < G; h++) og[h] += sc[h * C + k2] * vv;
                    }
                }
            for (uint r = 0u; r < KG; r++) {
                barrier();
                if (kg == r)
                    [[unroll]] for (uint h = 0u; h < G; h++)
                        xs[h * D4 + lane] = r == 0u ? og[h] : xs[h * D4 + lane] + og[h];
            }
        }
        barrier();
        if (t < G) {
            float s = 0.0f;
            for (uint i = 0u; i < P2; i++) s += red[t * P2 + i];
            lh[t] = s;
        }
        barrier();
        PT(9);
        if (N == 1u) {
            for (uint u = t; u < OT; u += WG) {
                float L = lh[u / D4];
                BufV4(dst).v[u] = L > 0.0f ? xs[u] / L : vec4(0.0f);
            }
            PROF_OUT(0u);
            return;
        }
        uint64_t ob = pc.part + (uint64_t(y) * N + ci) * G * D * 4u;
        for (uint u = t; u < OT; u += WG) PartV4(ob).v[u] = xs[u];
        if (t < G) {
            PartF(ml).v[((y * N + ci) * G + t) * 2u] = mh[t];
            PartF(ml).v[((y * N + ci) * G + t) * 2u + 1u] = lh[t];
        }
    } else {
        // PV 1: output vec4 u = (head h, dims 4·lane..) of share ks: keys ks, ks + KS, ... in order; l = Σ e over
        // them
        vec4 o[OV];
        float l[OV];
        [[unroll]] for (uint r = 0u; r < OV; r++) {
            uint u = KS > 1u ? t % OT : t + r * WG;
            o[r] = vec4(0.0f), l[r] = 0.0f;
            if (u < OT && ks < KS) {
                uint h = u / D4, lane = u % D4;
                for (uint k2 = ks; k2 < C; k2 += KS) {
                    float e = sc[h * C + k2];
                    o[r] += e * vget(k2 * D4 + lane);
                    l[r] += e;
                }
            }
        }
        if (KS > 1u) {  // the shares' sums in share order (ps and red are free: their last readers passed a barrier)
            if (ks > 0u && ks < KS) {
                pset4(ks, t % OT, o[0]);
                red[(ks - 1u) * OT + t % OT] = l[0];
            }
            barrier();
            if (ks == 0u)
                for (uint s = 1u; s < KS; s++) {
                    o[0] += pget4(s, t);
                    l[0] += red[(s - 1u) * OT + t];
                }
        }
        PT(9);
        if (N == 1u) {
            PROF_OUT(0u);
            if (ks == 0u)
                [[unroll]] for (uint r = 0u; r < OV; r++) {
                    uint u = KS > 1u ? t : t + r * WG;
                    if (u < OT) BufV4(dst).v[u] = l[r] > 0.0f ? o[r] / l[r] : vec4(0.0f);
                }
            return;
        }
        if (ks == 0u) {
            uint64_t ob = pc.part + (uint64_t(y) * N + ci) * G * D * 4u;
            [[unroll]] for (uint r = 0u; r < OV; r++) {
                uint u = KS > 1u ? t : t + r * WG;
                if (u < OT) {
                    PartV4(ob).v[u] = o[r];
                    if (u % D4 == 0u) {
                        PartF(ml).v[((y * N + ci) * G + u / D4) * 2u] = mh[u / D4];
                        PartF(ml).v[((y * N + ci) * G + u / D4) * 2u + 1u] = l[r];
                    }
                }
            }
        }
    }
    memoryBarrierBuffer();  // the partials are visible before the count says so
    barrier();
    // two levels when there are more than TB chunks: the last chunk of each group of TB to finish merges the group's
    // partials into a group partial, and the last group merger merges the groups (the last arrival does the work at
    // each level, so no workgroup waits for another, which may not have started). One call site of merge for both
    // levels (its loads in flight set the register count, which decides how many workgroups share an SM).
    PT(10);
    bool grp = NGT != 0u;
    uint gi = ci / TB;
#ifdef PROF
    uint lv = 0u, pf = 0u;
#define PLV lv
#else
#define PLV 0u
#endif
    for (;;) {
        uint cc = grp ? pc.n_sets + y * NGT + gi : y, cn = grp ? min(TB, N - gi * TB) : NGT != 0u ? NGT : N;
        if (t == 0u) last = atomicAdd(Cnt(pc.cnt).v[cc], 1u) == cn - 1u ? 1u : 0u;
        barrier();
        PT(11u + 6u * lv);
        if (last == 0u) {
            PROF_OUT(pf);
            return;
        }
        memoryBarrierBuffer();
        // inputs: this group's chunks, the set's groups or the set's chunks; output: the group partial or dst
        uint64_t first = grp ? uint64_t(y) * N + gi * TB : NGT != 0u ? uint64_t(y) * NGT : uint64_t(y) * N;
        uint64_t po = pc.part + (grp || NGT == 0u ? first : uint64_t(pc.n_sets) * N + first) * G * D * 4u;
        uint64_t pm = (grp || NGT == 0u ? ml : gml) + first * G * 8u;
        uint64_t go = uint64_t(y) * NGT + gi;
        uint64_t qo = grp ? pc.part + (uint64_t(pc.n_sets) * N + go) * G * D * 4u : dst;
        merge(po, pm, cn, !grp, qo, gml + go * G * 8u, 12u + 6u * PLV);
        if (t == 0u) Cnt(pc.cnt).v[cc] = 0u;  // ready for the next dispatch (ordered after this one by a barrier)
#ifdef PROF
        PT(16u + 6u * lv);
        pf |= grp ? 1u : 2u;
        lv++;
#endif
        if (!grp) break;
        memoryBarrierBuffer();  // the group partial is visible before the count says so
        barrier();
        grp = false;
    }
    PROF_OUT(pf);
}
