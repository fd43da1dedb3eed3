#version 460
// attn_flash_cm.comp — prefill attention on tensor cores (NV or KHR cooperative matrix, cm.glsl): a workgroup of 4
// subgroups takes 64 (query, head) rows — QPW = 64 / HPW consecutive queries of HPW heads that share one kv head
// (GQA: the K/V tile staged once serves them all) — and walks the visible keys in blocks of BKV = 32, staged in
// shared memory as fp16. Subgroup sg owns 16 rows (16 queries of one head): S = Q·Kᵀ (16 × 32) from 16 × 16 × 16
// fp16 MMAs with fp32 sums, then O += P·V likewise with P = 2^(S − m) rounded to fp16 (the softmax scale and
// log2(e) are folded into Q, so S is in base-2 units).
// One pass with an online softmax whose running maximum m is only raised when a block's row maximum passes it by
// more than TAU (2^TAU bounds p, far inside fp16): a cooperative-matrix fragment cannot be scaled row by row,
// so rescaling O goes through shared memory, and with the lazy maximum that happens for a few blocks per row at
// most (the first block with visible keys sets m without a rescale: O is still zero). TAU = 0 is the exact online
// softmax (every raise rescales; the tests run it too). O / l is the same either way: p and l share the scale.
// Blocks the causal / window mask hides from every row of the workgroup are not visited; a subgroup skips the
// blocks hidden from its own rows; blocks visible to every row of a subgroup skip the per-element mask. Workgroups
// are issued in reverse query order so the longest (latest queries under a causal mask) start first.
// K and V blocks are loaded (fp32) when they are staged; issuing the next block's loads before the current one is
// multiplied instead costs 64 registers a thread and measured slower on the H100 (pp512 0.074 vs 0.071 ms, vision
// 2.27 vs 1.72 ms: other workgroups on the SM hide the latency better). Tiles are
// 16-byte words of 8 halves. Fragment arrays are indexed with constants only (unrolled loops, the output written
// per pair): an array indexed at run time anywhere stays in local memory on the NVIDIA driver (as O did in the
// first version of this kernel: pp512 0.087 -> 0.074 ms once it was in registers).
// Masks (causal, sliding window) and GQA as in attn_split.comp; q, out are fp32 in memory, the caches fp32 or
// (KV16) fp16, whose 16-byte words of 8 halves go to the tiles as they are.
// Head dims: built once per padded size HD_PAD (shaders.mk: 128, and 64 / 80 as attn_flash_cm_d64 / _d80 for the
// audio (64) and vision (72) encoders; fixed sizes, as specialization-constant array sizes make the NVIDIA compiler
// take minutes): the real pc.head_dim (a multiple of 4, at most HD_PAD) addresses memory, and the dims past it are
// zero in the fp16 tiles, so they add nothing to Q·Kᵀ and their output columns are not written.
// Mirrors the CPU back-end's attention softmax(q·Kᵀ·scale + mask)·V up to fp16 rounding of q·scale·log2(e), k, v
// and p (fp32 sums, an fp32 running sum l).
// Host requirements (vk_coopmat.c): head_dim % 4 == 0 and <= HD_PAD, q/kc/vc/dst 16-byte aligned, NV or KHR
// cooperative matrix (the build's flavour), subgroups of 32, HPW in {1, 2, 4} dividing n_heads / n_kv; the grid is
// (ceil(n / QPW), n_heads / HPW).
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_KHR_shader_subgroup_vote : require
#define PC_ATTN
#include "common.glsl"
#include "cm.glsl"

#ifndef HD_PAD
#define HD_PAD 128
#endif
#if HD_PAD != 64 && HD_PAD != 80 && HD_PAD != 128
#error "HD_PAD: 64, 80 or 128 (the output is written per fragment pair)"
#endif
layout(constant_id = 0) const uint HPW = 1;  // heads per workgroup (of one kv group)
layout(constant_id = 1) const uint TAU = 8;  // lazy-maximum slack in base-2 units (p <= 2^TAU)
layout(constant_id = 2) const uint KV16 = 0;  // 1: the caches hold fp16 (head_dim % 8 == 0)
const uint D = HD_PAD, BKV = 32;
const uint NF = D / 16u;            // 16-wide fragments across the head
const uint DW = D / 8u;             // 16-byte words (8 halves) per tile row
const uint STRW = DW + 1u;          // tile row stride in words: the 8 rows of a fragment load hit distinct banks
const uint KVW = (BKV * DW + 127u) / 128u; // tile words per thread per block (K, and as many of V)
const uint PSTR = BKV + 8u;         // fp16 row stride of P (80 bytes)
layout(local_size_x = 128) in;

// K rows 0..31 then V rows 0..31; before the key loop the 64 Q rows are staged in the same words
shared uvec4 kvs[2u * BKV * STRW];
shared float ssh[4u * 512u];         // per subgroup: S (16 × 32, column-major), O fragments on their way
shared float16_t psh[4u * 16u * PSTR]; // per subgroup: P (16 × 32, row-major)
shared float lsh[4u * 16u];          // per subgroup: row factors, then row sums


// pc.part != 0: the output also as fp16 rows there (row_stride halves apart; clamped and rounded as cm_x16.comp),
// the copy the o projection's tensor-core GEMM reads (vk_x16_offer)
layout(buffer_reference, std430, buffer_reference_align = 8) writeonly buffer BufU2W { uvec2 v[]; };
uint f2h(vec2 v) { return packHalf2x16(clamp(v, vec2(-65504.0f), vec2(65504.0f))); }

void sg_sync() {
    subgroupMemoryBarrierShared();
    subgroupBarrier();
}

// 8 fp32 values as one word of 8 halves (clamped to the fp16 range)
uvec4 pack8(vec4 a, vec4 b) {
    f16vec4 x = f16vec4(clamp(a, -65504.0f, 65504.0f)), y = f16vec4(clamp(b, -65504.0f, 65504.0f));
    return uvec4(packFloat2x16(x.xy), packFloat2x16(x.zw), packFloat2x16(y.xy), packFloat2x16(y.zw));
}

void main() {
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    const uint QPW = 64u / HPW;
    uint qb = gl_NumWorkGroups.x - 1u - gl_WorkGroupID.x, hg = gl_WorkGroupID.y, t = gl_LocalInvocationID.x;
    uint sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
    uint n_keys = pc.pos0 + pc.n, grp = pc.n_heads / pc.n_kv, g = (hg * HPW) / grp;
    uint q0 = qb * QPW, nq = min(QPW, pc.n - q0);
    uint DR = pc.head_dim;             // the real head dim (memory); D is the padded one (tiles)
    uint row_stride = pc.n_heads * DR;  // floats between consecutive queries in q and dst
    // this subgroup's rows: head h, queries sq0 .. sq0 + snq - 1
    uint h = hg * HPW + sg % HPW, sq0 = q0 + (sg / HPW) * 16u;
    uint snq = sq0 < q0 + nq ? min(16u, q0 + nq - sq0) : 0u;

    // Q rows (row sg·16 + i: query sq0 + i of head h, zero past snq) as fp16, times scale·log2(e)
    float qscale = pc.scale * 1.44269504088896341f;
    for (uint e = t; e < 64u * DW; e += 128u) {
        uint row = e / DW, w = e % DW, rs = row / 16u, ri = row % 16u, d = w * 8u;
        uint rq = q0 + (rs / HPW) * 16u + ri, rh = hg * HPW + rs % HPW;
        vec4 a = vec4(0), b = vec4(0);
        if (rq < q0 + nq) {
            uint64_t base = pc.q + (uint64_t(rq) * row_stride + rh * DR + d) * 4u;
            if (d < DR) a = BufV4(base).v[0] * qscale;
            if (d + 4u < DR) b = BufV4(base + 16u).v[0] * qscale;
        }
        kvs[row * STRW + w] = pack8(a, b);
    }
    uint p_first = pc.pos0 + q0, p_last = pc.pos0 + q0 + nq - 1u;
    int lo_all = pc.window > 0u ? max(0, int(p_first) - int(pc.window) + 1) : 0;
    int hi_all = pc.causal != 0u ? int(p_last) : int(n_keys) - 1;
    int kb0 = (lo_all / int(BKV)) * int(BKV);
    barrier();
    CM_A16 qf[NF];
    [[unroll]] for (uint i = 0; i < NF; i++) CM_LOAD(qf[i], kvs, (sg * 16u) * STRW + 2u * i, STRW, false);

    // the subgroup's visible keys: any row's (s_lo .. s_hi) and every row's (a_lo .. a_hi)
    int sp_first = int(pc.pos0 + sq0), sp_last = sp_first + int(snq) - 1;
    int s_lo = pc.window > 0u ? sp_first - int(pc.window) + 1 : 0;
    int a_lo = pc.window > 0u ? sp_last - int(pc.window) + 1 : 0;
    int s_hi = pc.causal != 0u ? sp_last : int(n_keys) - 1;
    int a_hi = pc.causal != 0u ? sp_first : int(n_keys) - 1;
    // softmax bookkeeping: lane owns row r = lane % 16 of the subgroup's 16, columns 2j + hf (j = 0..15)
    uint r = lane & 15u, hf = lane >> 4;
    int p_r = sp_first + int(r);
    int lo_r = pc.window > 0u ? p_r - int(pc.window) + 1 : 0;
    int hi_r = pc.causal != 0u ? p_r : int(n_keys) - 1;
    uint sb = sg * 512u, pb = sg * 16u * PSTR;
    float m = NEG_INF, l = 0.0f;

    CM_C32 of[NF];
    [[unroll]] for (uint i = 0; i < NF; i++) of[i] = CM_C32(0.0f);

    vec4 kr[2u * KVW], vr[2u * KVW];
    uvec4 kw[KVW], vw[KVW]; // KV16: the words as loaded
#define LOAD_KV(kb_)                                                                                           \
    {                                                                                                          \
        uint nk_ = min(BKV, n_keys - uint(kb_));                                                               \
        [[unroll]] for (uint i = 0; i < KVW; i++) {                                                            \
            uint e = t + 128u * i, kj = e / DW, d = (e % DW) * 8u;                                             \
            uint64_t a = ((uint64_t(g) * pc.n_ctx + uint(kb_) + kj) * DR + d) * 4u;                            \
            bool in_ = e < BKV * DW && kj < nk_, in2_ = in_ && d + 4u < DR;                                    \
            in_ = in_ && d < DR;                                                                               \
            if (KV16 != 0u) {                                                                                  \
                kw[i] = in_ ? BufUV4(pc.kc + a / 2u).v[0] : uvec4(0);                                          \
                vw[i] = in_ ? BufUV4(pc.vc + a / 2u).v[0] : uvec4(0);                                          \
            } else {                                                                                           \
                kr[2u * i] = in_ ? BufV4(pc.kc + a).v[0] : vec4(0);                                            \
                kr[2u * i + 1u] = in2_ ? BufV4(pc.kc + a + 16u).v[0] : vec4(0);                                \
                vr[2u * i] = in_ ? BufV4(pc.vc + a).v[0] : vec4(0);                                            \
                vr[2u * i + 1u] = in2_ ? BufV4(pc.vc + a + 16u).v[0] : vec4(0);                                \
            }                                                                                                  \
        }                                                                                                      \
    }
    for (int kb = kb0; kb <= hi_all; kb += int(BKV)) {
        barrier(); // every subgroup is done with the previous block (and with Q)
        LOAD_KV(kb)
        [[unroll]] for (uint i = 0; i < KVW; i++) {
            uint e = t + 128u * i, kj = e / DW, w = e % DW;
            if (e < BKV * DW) {
                kvs[kj * STRW + w] = KV16 != 0u ? kw[i] : pack8(kr[2u * i], kr[2u * i + 1u]);
                kvs[(BKV + kj) * STRW + w] = KV16 != 0u ? vw[i] : pack8(vr[2u * i], vr[2u * i + 1u]);
            }
        }
        barrier();
        if (snq == 0u || kb > s_hi || kb + int(BKV) - 1 < s_lo) continue; // hidden from every row of this subgroup

        // S = Q·Kᵀ for keys kb .. kb + 31: B(d, key) = K[key][d], column-major
        CM_C32 s0 = CM_C32(0.0f), s1 = CM_C32(0.0f);
        [[unroll]] for (uint i = 0; i < NF; i++) {
            CM_B16 k0, k1;
            CM_LOAD(k0, kvs, 2u * i, STRW, true);
            CM_LOAD(k1, kvs, 16u * STRW + 2u * i, STRW, true);
            s0 = CM_MAD(qf[i], k0, s0);
            s1 = CM_MAD(qf[i], k1, s1);
        }
        // column-major, 16 floats a column: lane (r, hf) reads S(r, 2j + hf) at (2j + hf)·16 + r, conflict-free
        CM_STORE(s0, ssh, sb, 16u, true);
        CM_STORE(s1, ssh, sb + 256u, 16u, true);
        sg_sync();
        float s[16];
        [[unroll]] for (uint j = 0; j < 16u; j++) s[j] = ssh[sb + (2u * j + hf) * 16u + r];
        bool full = kb >= a_lo && kb + int(BKV) - 1 <= a_hi && kb + int(BKV) <= int(n_keys);
        if (!full) {
            [[unroll]] for (uint j = 0; j < 16u; j++) {
                int key = kb + int(2u * j + hf);
                if (key >= int(n_keys) || key < lo_r || key > hi_r) s[j] = NEG_INF;
            }
        }
        float mx = s[0];
        [[unroll]] for (uint j = 1; j < 16u; j++) mx = max(mx, s[j]);
        mx = max(mx, subgroupShuffleXor(mx, 16u));
        // lazy maximum: m is raised (to the block's row maximum) only when that passes it by more than TAU
        bool raise = mx > m + float(TAU) || (TAU == 0u && mx > m);
        bool resc = raise && m != NEG_INF; // O and l are zero while m is -inf: nothing to rescale
        float alpha = resc ? exp2(m - mx) : 1.0f;
        if (raise) m = mx;
        l *= alpha;
        if (subgroupAny(resc)) {
            // O row r *= alpha: through shared memory, one fragment at a time (S is in registers by now)
            if (hf == 0u) lsh[sg * 16u + r] = alpha;
            sg_sync();
            [[unroll]] for (uint i = 0; i < NF; i++) {
                CM_STORE(of[i], ssh, sb, 16u, false);
                sg_sync();
                [[unroll]] for (uint k = 0; k < 8u; k++) ssh[sb + lane + 32u * k] *= lsh[sg * 16u + lane / 16u + 2u * k];
                sg_sync();
                CM_LOAD(of[i], ssh, sb, 16u, false);
                sg_sync();
            }
        }
        float mm = m == NEG_INF ? 0.0f : m; // a row with nothing visible yet: every s is -inf, p = 0
        float sum = 0.0f;
        [[unroll]] for (uint j = 0; j < 16u; j++) {
            float p = exp2(s[j] - mm);
            sum += p;
            psh[pb + r * PSTR + 2u * j + hf] = float16_t(p);
        }
        l += sum;
        sg_sync();
        // O += P·V: A = P (16 × 32 keys, two k-steps), B(key, d) = V[key][d], row-major
        CM_A16 p0, p1;
        CM_LOAD(p0, psh, pb, PSTR, false);
        CM_LOAD(p1, psh, pb + 16u, PSTR, false);
        [[unroll]] for (uint i = 0; i < NF; i++) {
            CM_B16 v0, v1;
            CM_LOAD(v0, kvs, BKV * STRW + 2u * i, STRW, false);
            CM_LOAD(v1, kvs, (BKV + 16u) * STRW + 2u * i, STRW, false);
            of[i] = CM_MAD(p0, v0, of[i]);
            of[i] = CM_MAD(p1, v1, of[i]);
        }
        sg_sync(); // ssh / psh are rewritten by the next block
    }

    // out = O / l: the two lanes of a row hold halves of its sum; two fragments (16 × 32) at a time
    l += subgroupShuffleXor(l, 16u);
    if (hf == 0u) lsh[sg * 16u + r] = l;
    sg_sync();
    if (snq == 0u) return;
    // written out per pair: a loop over the fragments is not unrolled by the SPIR-V optimizer, and one indexed at
    // run time keeps the whole O array in local memory (the NVIDIA driver cannot keep it in registers)
#define OUT_PAIR(fa, fb, I, TWO)                                                                               \
    {                                                                                                          \
        CM_STORE(fa, ssh, sb, 32u, false);                                                               \
        if (TWO) CM_STORE(fb, ssh, sb + 16u, 32u, false);                                                \
        sg_sync();                                                                                             \
        const uint nc4 = TWO ? 8u : 4u; /* vec4s per row */                                                    \
        [[unroll]] for (uint k = 0; k < nc4 / 2u; k++) {                                                       \
            uint e = lane + 32u * k, rr = e / nc4, c4 = e % nc4, dd = (I) * 16u + c4 * 4u;                     \
            float lr = lsh[sg * 16u + rr];                                                                     \
            if (rr < snq && dd < DR) {                                                                         \
                uint o = sb + rr * 32u + c4 * 4u;                                                              \
                vec4 v = vec4(ssh[o], ssh[o + 1u], ssh[o + 2u], ssh[o + 3u]);                                  \
                v = lr > 0.0f ? v / lr : vec4(0);                                                              \
                BufV4(pc.dst + (uint64_t(sq0 + rr) * row_stride + h * DR + dd) * 4u).v[0] = v;                 \
                if (pc.part != 0ul)                                                                            \
                    BufU2W(pc.part + (uint64_t(sq0 + rr) * row_stride + h * DR + dd) * 2u).v[0] =              \
                        uvec2(f2h(v.xy), f2h(v.zw));                                                           \
            }                                                                                                  \
        }                                                                                                      \
        sg_sync();                                                                                             \
    }
    OUT_PAIR(of[0], of[1], 0u, true)
    OUT_PAIR(of[2], of[3], 2u, true)
#if HD_PAD == 80
    OUT_PAIR(of[4], of[4], 4u, false)
#elif HD_PAD == 128
    OUT_PAIR(of[4], of[5], 4u, true)
    OUT_PAIR(of[6], of[7], 6u, true)
#endif
}
