#version 460
// attn_flash_cm.comp — prefill attention on tensor cores (GL_NV_cooperative_matrix): a workgroup of 4 subgroups
// takes 64 (query, head) rows — QPW = 64 / HPW consecutive queries of HPW heads that share one kv head (GQA: the
// K/V tile staged once serves them all) — and walks the visible keys in blocks of BKV = 32, staged in shared memory
// as fp16. Subgroup sg owns 16 rows (16 queries of one head): S = Q·Kᵀ (16 × 32) from 16 × 16 × 16 fp16 MMAs with
// fp32 sums, then O += P·V likewise with P = 2^(S − m) rounded to fp16 (the softmax scale and log2(e) are folded
// into Q, so S is in base-2 units).
// One pass with an online softmax whose running maximum m is only raised when a block's row maximum passes it by
// more than TAU (2^TAU bounds p, far inside fp16): an NV cooperative-matrix fragment cannot be scaled row by row,
// so rescaling O goes through shared memory, and with the lazy maximum that happens for a few blocks per row at
// most (the first block with visible keys sets m without a rescale: O is still zero). TAU = 0 is the exact online
// softmax (every raise rescales; the tests run it too). O / l is the same either way: p and l share the scale.
// Blocks the causal / window mask hides from every row of the workgroup are not visited; a subgroup skips the
// blocks hidden from its own rows; blocks visible to every row of a subgroup skip the per-element mask. Workgroups
// are issued in reverse query order so the longest (latest queries under a causal mask) start first.
// K and V blocks are loaded (fp32) when they are staged; PREFETCH = 1 issues the next block's loads before the
// current one is multiplied instead, which costs 64 registers a thread and measured slower on the H100 (pp512
// 0.074 vs 0.071 ms, vision 2.27 vs 1.72 ms: other workgroups on the SM hide the latency better). Tiles are
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
// Opt-in builds (shaders.mk: attn_flash_cm[_d64|_d80]_fr and _fr64; vk_coopmat.c, OMNI_VK_ATTN_CM_FRAG /
// OMNI_VK_ATTN_CM_BKV): CM_FRAG = 1 does the softmax on the S fragments themselves instead of through shared memory.
// Where element k of a 16 x 16 fp32 fragment lies is the implementation's choice but the same for every fragment of
// that type (the API's component-wise operations depend on it), so fragments loaded from tables of row and column
// indices (rf, cf) tell it; masks, the running maximum m and sum l and the rescale of O are then element-wise
// (m, l as fragments of per-element copies: every element of a row sees the same row maximum, so their copies
// agree), and P goes to the P·V product by conversion (fp32 -> fp16 fragment) rather than a store and a load. The
// row maximum needs the lanes that share a row: where the layout keeps each row inside one quad of lanes with the
// same rows at the same element indices (checked once at the start; NVIDIA's MMA layouts do) two shuffles per
// row do it, else shared-memory atomics on order-preserving integers. That leaves no subgroup barrier in the key
// loop. l is reduced over each row once at the end. CM_BKV = 64 (FRAG builds only): 64-key blocks, half the
// workgroup barriers per key; K/V staged as two 32-key chunks so the load registers stay as in the 32-key build.
// PREFETCH applies to the default build only.
// Host requirements (vk_coopmat.c): head_dim % 4 == 0 and <= HD_PAD, q/kc/vc/dst 16-byte aligned, NV cooperative
// matrix, subgroups of 32, HPW in {1, 2, 4} dividing n_heads / n_kv; the grid is (ceil(n / QPW), n_heads / HPW).
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#extension GL_KHR_shader_subgroup_vote : require
#define PC_ATTN
#include "common.glsl"

#ifndef HD_PAD
#define HD_PAD 128
#endif
#if HD_PAD != 64 && HD_PAD != 80 && HD_PAD != 128
#error "HD_PAD: 64, 80 or 128 (the output is written per fragment pair)"
#endif
#ifndef CM_FRAG
#define CM_FRAG 0
#endif
#ifndef CM_BKV
#define CM_BKV 32
#endif
#if CM_BKV != 32 && !(CM_BKV == 64 && CM_FRAG != 0)
#error "CM_BKV: 32, or 64 with CM_FRAG (the shared-memory softmax of 64 keys would not fit 48 KiB)"
#endif
layout(constant_id = 0) const uint HPW = 1;  // heads per workgroup (of one kv group)
layout(constant_id = 1) const uint TAU = 8;  // lazy-maximum slack in base-2 units (p <= 2^TAU)
layout(constant_id = 2) const uint PREFETCH = 0; // 1: the next block's K/V loaded one block ahead
layout(constant_id = 6) const uint KV16 = 0;     // 1: the caches hold fp16 (head_dim % 8 == 0; default build only)
#if CM_FRAG != 0
layout(constant_id = 3) const uint FRAG_ATOMIC = 0; // 1: the row maxima by shared atomics even where quads would do
layout(constant_id = 4) const uint KSPLIT = 1;      // split keys: at most this many workgroups per query block (1..8)
layout(constant_id = 5) const uint SPLIT_MIN = 2;   // ... of at least this many key blocks each
#define KSPLIT_MAX 8u
// the partials and the counters are exchanged between workgroups of one dispatch: coherent (not cached per SM)
layout(buffer_reference, std430, buffer_reference_align = 16) coherent buffer PartV4 { vec4 v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer PartF { float v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer Cnt { uint v[]; };
#endif
const uint D = HD_PAD, BKV = CM_BKV;
const uint KC = 32u;                // keys per staging chunk (one per block in the 32-key builds)
const uint NF = D / 16u;            // 16-wide fragments across the head
const uint DW = D / 8u;             // 16-byte words (8 halves) per tile row
const uint STRW = DW + 1u;          // tile row stride in words: the 8 rows of a fragment load hit distinct banks
const uint KVW = (KC * DW + 127u) / 128u; // tile words per thread per chunk (K, and as many of V)
const uint PSTR = BKV + 8u;         // fp16 row stride of P (80 bytes)
layout(local_size_x = 128) in;

// K rows 0..31 then V rows 0..31; before the key loop the 64 Q rows are staged in the same words
shared uvec4 kvs[2u * BKV * STRW];
shared float ssh[4u * 512u];         // per subgroup: S (16 × 32, column-major), O fragments on their way
#if CM_FRAG == 0
shared float16_t psh[4u * 16u * PSTR]; // per subgroup: P (16 × 32, row-major)
#else
shared int mxsh[4u * 16u];           // per subgroup: row maxima (the atomic fallback)
shared uint qlo[4u * 16u], qhi[4u * 16u]; // per subgroup: lowest and highest quad holding a row (the layout check)
#endif
shared float lsh[4u * 16u];          // per subgroup: row factors, then row sums
#if CM_FRAG != 0
shared uint last;                    // split keys: this workgroup merges the partials
#endif

#define FRAG16 fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define FRAG32 fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>

void sg_sync() {
    subgroupMemoryBarrierShared();
    subgroupBarrier();
}

// 8 fp32 values as one word of 8 halves (clamped to the fp16 range)
uvec4 pack8(vec4 a, vec4 b) {
    f16vec4 x = f16vec4(clamp(a, -65504.0f, 65504.0f)), y = f16vec4(clamp(b, -65504.0f, 65504.0f));
    return uvec4(packFloat2x16(x.xy), packFloat2x16(x.zw), packFloat2x16(y.xy), packFloat2x16(y.zw));
}

#if CM_FRAG != 0
// floats as integers in the same order (atomicMax on shared memory): negative values' magnitude bits flipped
int fenc(float x) {
    int i = floatBitsToInt(x);
    return i >= 0 ? i : i ^ 0x7fffffff;
}
float fdec(int i) { return intBitsToFloat(i >= 0 ? i : i ^ 0x7fffffff); }
#endif

void main() {
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    const uint QPW = 64u / HPW;
    uint qb = gl_NumWorkGroups.x - 1u - gl_WorkGroupID.x, hg = gl_WorkGroupID.y, t = gl_LocalInvocationID.x;
    uint sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
    uint n_keys = pc.pos0 + pc.n, grp = pc.n_heads / pc.n_kv, g = (hg * HPW) / grp;
    uint q0 = qb * QPW, nq = min(QPW, pc.n - q0);
    uint DR = pc.head_dim;             // the real head dim (memory); D is the padded one (tiles)
    uint row_stride = pc.n_heads * DR;  // floats between consecutive queries in q and dst
#if CM_FRAG != 0
    // split keys (KSPLIT > 1; grid z = split): the workgroup's key blocks cut into ns <= KSPLIT contiguous runs of
    // at least SPLIT_MIN blocks; split zs walks blocks kbs .. kbe. Workgroup-uniform, so z >= ns leaves at once.
    // The counters' address rides in pc.chunk (low) and pc.n_split (high), fields this kernel has no other use for.
    uint ns = 1u, zs = gl_WorkGroupID.z;
    int kbs, kbe;
    uint64_t cnt_addr = uint64_t(pc.chunk) | (uint64_t(pc.n_split) << 32);
    {
        int lo = pc.window > 0u ? max(0, int(pc.pos0 + q0) - int(pc.window) + 1) : 0;
        int hi = pc.causal != 0u ? int(pc.pos0 + q0 + nq - 1u) : int(n_keys) - 1;
        int k0 = (lo / int(BKV)) * int(BKV);
        uint nb = uint(hi - k0) / BKV + 1u;
        if (KSPLIT > 1u) ns = clamp(nb / max(SPLIT_MIN, 1u), 1u, min(KSPLIT, KSPLIT_MAX));
        if (zs >= ns) return;
        uint per = (nb + ns - 1u) / ns;
        kbs = k0 + int(zs * per * BKV);
        kbe = min(hi, kbs + int(per * BKV) - 1);
    }
#endif
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
    FRAG16 qf[NF];
    [[unroll]] for (uint i = 0; i < NF; i++) coopMatLoadNV(qf[i], kvs, (sg * 16u) * STRW + 2u * i, STRW, false);

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

    FRAG32 of[NF];
    [[unroll]] for (uint i = 0; i < NF; i++) of[i] = FRAG32(0.0f);

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
#if CM_FRAG == 0
    if (PREFETCH != 0u && kb0 <= hi_all) LOAD_KV(kb0)
    for (int kb = kb0; kb <= hi_all; kb += int(BKV)) {
        barrier(); // every subgroup is done with the previous block (and with Q)
        if (PREFETCH == 0u) LOAD_KV(kb)
        [[unroll]] for (uint i = 0; i < KVW; i++) {
            uint e = t + 128u * i, kj = e / DW, w = e % DW;
            if (e < BKV * DW) {
                kvs[kj * STRW + w] = KV16 != 0u ? kw[i] : pack8(kr[2u * i], kr[2u * i + 1u]);
                kvs[(BKV + kj) * STRW + w] = KV16 != 0u ? vw[i] : pack8(vr[2u * i], vr[2u * i + 1u]);
            }
        }
        barrier();
        if (PREFETCH != 0u && kb + int(BKV) <= hi_all) LOAD_KV(kb + int(BKV))
        if (snq == 0u || kb > s_hi || kb + int(BKV) - 1 < s_lo) continue; // hidden from every row of this subgroup

        // S = Q·Kᵀ for keys kb .. kb + 31: B(d, key) = K[key][d], column-major
        FRAG32 s0 = FRAG32(0.0f), s1 = FRAG32(0.0f);
        [[unroll]] for (uint i = 0; i < NF; i++) {
            FRAG16 k0, k1;
            coopMatLoadNV(k0, kvs, 2u * i, STRW, true);
            coopMatLoadNV(k1, kvs, 16u * STRW + 2u * i, STRW, true);
            s0 = coopMatMulAddNV(qf[i], k0, s0);
            s1 = coopMatMulAddNV(qf[i], k1, s1);
        }
        // column-major, 16 floats a column: lane (r, hf) reads S(r, 2j + hf) at (2j + hf)·16 + r, conflict-free
        coopMatStoreNV(s0, ssh, sb, 16u, true);
        coopMatStoreNV(s1, ssh, sb + 256u, 16u, true);
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
                coopMatStoreNV(of[i], ssh, sb, 16u, false);
                sg_sync();
                [[unroll]] for (uint k = 0; k < 8u; k++) ssh[sb + lane + 32u * k] *= lsh[sg * 16u + lane / 16u + 2u * k];
                sg_sync();
                coopMatLoadNV(of[i], ssh, sb, 16u, false);
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
        FRAG16 p0, p1;
        coopMatLoadNV(p0, psh, pb, PSTR, false);
        coopMatLoadNV(p1, psh, pb + 16u, PSTR, false);
        [[unroll]] for (uint i = 0; i < NF; i++) {
            FRAG16 v0, v1;
            coopMatLoadNV(v0, kvs, BKV * STRW + 2u * i, STRW, false);
            coopMatLoadNV(v1, kvs, (BKV + 16u) * STRW + 2u * i, STRW, false);
            of[i] = coopMatMulAddNV(p0, v0, of[i]);
            of[i] = coopMatMulAddNV(p1, v1, of[i]);
        }
        sg_sync(); // ssh / psh are rewritten by the next block
    }

    // out = O / l: the two lanes of a row hold halves of its sum; two fragments (16 × 32) at a time
    l += subgroupShuffleXor(l, 16u);
    if (hf == 0u) lsh[sg * 16u + r] = l;
    sg_sync();
#else // CM_FRAG: the softmax on the S fragments (see the header)
    // where element k of a 16 x 16 fp32 fragment lies: row rf[k], column cf[k] (index tables in this subgroup's ssh
    // loaded as fragments of that type; every FRAG32 below shares the mapping). The tables stay there through the
    // key loop (which does not otherwise touch ssh) and are reloaded where needed instead of held in registers.
    for (uint e = lane; e < 256u; e += 32u) {
        ssh[sb + e] = float(e / 16u);
        ssh[sb + 256u + e] = float(e % 16u);
    }
    if (lane < 16u) {
        qlo[sg * 16u + lane] = 0xffffffffu;
        qhi[sg * 16u + lane] = 0u;
    }
    sg_sync();
    FRAG32 rf;
    coopMatLoadNV(rf, ssh, sb, 16u, false);
    // the quad layout: a lane's elements lie in at most two rows (ra, rb; the element indices of ra flagged in
    // amask), the four lanes of its quad hold the same rows at the same indices, and no other quad holds them
    float ra = rf[0], rb = ra;
    for (int k = 1; k < rf.length(); k++)
        if (rf[k] != ra) rb = rf[k];
    bool ok = rf.length() <= 32;
    uint amask = 0u, quad = lane >> 2;
    for (int k = 0; k < rf.length(); k++) {
        float x = rf[k], x1 = subgroupShuffleXor(x, 1u), x2 = subgroupShuffleXor(x, 2u);
        ok = ok && (x == ra || x == rb) && x1 == x && x2 == x;
        if (x == ra && k < 32) amask |= 1u << uint(k);
    }
    atomicMin(qlo[sg * 16u + uint(ra)], quad);
    atomicMax(qhi[sg * 16u + uint(ra)], quad);
    atomicMin(qlo[sg * 16u + uint(rb)], quad);
    atomicMax(qhi[sg * 16u + uint(rb)], quad);
    sg_sync();
    ok = ok && qlo[sg * 16u + uint(ra)] == quad && qhi[sg * 16u + uint(ra)] == quad &&
         qlo[sg * 16u + uint(rb)] == quad && qhi[sg * 16u + uint(rb)] == quad;
    bool quads = subgroupAll(ok) && FRAG_ATOMIC == 0u;
    const uint NS = BKV / 16u;          // S fragments per block (16 keys each; each also one k-step of P·V)
    FRAG32 mf = FRAG32(NEG_INF), lf = FRAG32(0.0f); // per element: its row's running maximum, a part of its sum

#define LOAD_KVC(kc_)                                                                                          \
    {                                                                                                          \
        uint nk_ = uint(kc_) < n_keys ? min(KC, n_keys - uint(kc_)) : 0u;                                      \
        [[unroll]] for (uint i = 0; i < KVW; i++) {                                                            \
            uint e = t + 128u * i, kj = e / DW, d = (e % DW) * 8u;                                             \
            uint64_t a = ((uint64_t(g) * pc.n_ctx + uint(kc_) + kj) * DR + d) * 4u;                            \
            bool in_ = e < KC * DW && kj < nk_, in2_ = in_ && d + 4u < DR;                                     \
            in_ = in_ && d < DR;                                                                               \
            kr[2u * i] = in_ ? BufV4(pc.kc + a).v[0] : vec4(0);                                                \
            kr[2u * i + 1u] = in2_ ? BufV4(pc.kc + a + 16u).v[0] : vec4(0);                                    \
            vr[2u * i] = in_ ? BufV4(pc.vc + a).v[0] : vec4(0);                                                \
            vr[2u * i + 1u] = in2_ ? BufV4(pc.vc + a + 16u).v[0] : vec4(0);                                    \
        }                                                                                                      \
    }
    for (int kb = kbs; kb <= kbe; kb += int(BKV)) {
        barrier(); // every subgroup is done with the previous block (and with Q, and the index tables)
        [[unroll]] for (uint c = 0; c < BKV / KC; c++) {
            LOAD_KVC(kb + int(c * KC))
            [[unroll]] for (uint i = 0; i < KVW; i++) {
                uint e = t + 128u * i, kj = c * KC + e / DW, w = e % DW;
                if (e < KC * DW) {
                    kvs[kj * STRW + w] = pack8(kr[2u * i], kr[2u * i + 1u]);
                    kvs[(BKV + kj) * STRW + w] = pack8(vr[2u * i], vr[2u * i + 1u]);
                }
            }
        }
        barrier();
        if (snq == 0u || kb > s_hi || kb + int(BKV) - 1 < s_lo) continue; // hidden from every row of this subgroup

        // S = Q·Kᵀ, fragment f for keys kb + 16f .. kb + 16f + 15: B(d, key) = K[key][d], column-major
        FRAG32 sf[NS];
        [[unroll]] for (uint f = 0; f < NS; f++) sf[f] = FRAG32(0.0f);
        [[unroll]] for (uint i = 0; i < NF; i++) {
            [[unroll]] for (uint f = 0; f < NS; f++) {
                FRAG16 kf;
                coopMatLoadNV(kf, kvs, f * 16u * STRW + 2u * i, STRW, true);
                sf[f] = coopMatMulAddNV(qf[i], kf, sf[f]);
            }
        }
        bool full = kb >= a_lo && kb + int(BKV) - 1 <= a_hi && kb + int(BKV) <= int(n_keys);
        if (!full) {
            FRAG32 rm, cm;
            coopMatLoadNV(rm, ssh, sb, 16u, false);
            coopMatLoadNV(cm, ssh, sb + 256u, 16u, false);
            [[unroll]] for (uint f = 0; f < NS; f++) {
                for (int k = 0; k < rm.length(); k++) {
                    int pq = sp_first + int(rm[k]), key = kb + int(16u * f) + int(cm[k]);
                    int lo = pc.window > 0u ? pq - int(pc.window) + 1 : 0;
                    int hi = pc.causal != 0u ? pq : int(n_keys) - 1;
                    if (key >= int(n_keys) || key < lo || key > hi) sf[f][k] = NEG_INF;
                }
            }
        }
        // xf[k] = the row maximum of element k's row over this block
        FRAG32 xf = sf[0];
        [[unroll]] for (uint f = 1; f < NS; f++)
            for (int k = 0; k < xf.length(); k++) xf[k] = max(xf[k], sf[f][k]);
        if (quads) {
            float ma = NEG_INF, mb = NEG_INF;
            for (int k = 0; k < xf.length(); k++) {
                if ((amask >> uint(k) & 1u) != 0u) ma = max(ma, xf[k]);
                else mb = max(mb, xf[k]);
            }
            ma = max(ma, subgroupShuffleXor(ma, 1u));
            mb = max(mb, subgroupShuffleXor(mb, 1u));
            ma = max(ma, subgroupShuffleXor(ma, 2u));
            mb = max(mb, subgroupShuffleXor(mb, 2u));
            for (int k = 0; k < xf.length(); k++) xf[k] = (amask >> uint(k) & 1u) != 0u ? ma : mb;
        } else {
            // (the previous block's reads are ordered before this by the workgroup barriers above)
            FRAG32 rm;
            coopMatLoadNV(rm, ssh, sb, 16u, false);
            if (lane < 16u) mxsh[sg * 16u + lane] = fenc(NEG_INF);
            sg_sync();
            for (int k = 0; k < xf.length(); k++) atomicMax(mxsh[sg * 16u + uint(rm[k])], fenc(xf[k]));
            sg_sync();
            for (int k = 0; k < xf.length(); k++) xf[k] = fdec(mxsh[sg * 16u + uint(rm[k])]);
        }
        // lazy maximum as in the default build, per element; xf becomes the rescale factor alpha
        bool resc = false;
        for (int k = 0; k < xf.length(); k++) {
            float mx = xf[k], mo = mf[k];
            bool raise = mx > mo + float(TAU) || (TAU == 0u && mx > mo);
            bool rs = raise && mo != NEG_INF; // O and l are zero while m is -inf: nothing to rescale
            xf[k] = rs ? exp2(mo - mx) : 1.0f;
            if (raise) mf[k] = mx;
            resc = resc || rs;
        }
        if (subgroupAny(resc)) {
            [[unroll]] for (uint i = 0; i < NF; i++)
                for (int k = 0; k < xf.length(); k++) of[i][k] *= xf[k];
            for (int k = 0; k < xf.length(); k++) lf[k] *= xf[k];
        }
        // P = 2^(S - m) (0 where masked; a row with nothing visible yet has m = -inf and every s = -inf)
        [[unroll]] for (uint f = 0; f < NS; f++) {
            for (int k = 0; k < xf.length(); k++) {
                float mm = mf[k] == NEG_INF ? 0.0f : mf[k], p = exp2(sf[f][k] - mm);
                sf[f][k] = p;
                lf[k] += p;
            }
        }
        // O += P·V: A = P fragment f (16 rows x keys 16f..16f+15, converted to fp16), B(key, d) = V[key][d]
        [[unroll]] for (uint f = 0; f < NS; f++) {
            FRAG16 pf = FRAG16(sf[f]);
            [[unroll]] for (uint i = 0; i < NF; i++) {
                FRAG16 vf;
                coopMatLoadNV(vf, kvs, (BKV + 16u * f) * STRW + 2u * i, STRW, false);
                of[i] = coopMatMulAddNV(pf, vf, of[i]);
            }
        }
    }

    // the row sums: lf through shared memory (row-major), each row summed by one lane
    sg_sync(); // (the last block's index-table loads are done)
    coopMatStoreNV(lf, ssh, sb, 16u, false);
    sg_sync();
    if (lane < 16u) {
        float s = 0.0f;
        [[unroll]] for (uint j = 0; j < 16u; j++) s += ssh[sb + lane * 16u + j];
        lsh[sg * 16u + lane] = s;
    }
    sg_sync();
    if (ns > 1u) {
        // split keys: this split's partial (rows w = sg·16 + i of the workgroup: O unnormalized [64][D], then
        // (m, l) [64][2]) goes to pc.part; the last of the ns splits of this (query block, head group) to arrive
        // (an atomic counter, which it resets) merges them into dst
        const uint PSPLIT = 64u * (D + 2u) * 4u; // bytes per split
        uint64_t pbase =
            pc.part + (uint64_t(gl_WorkGroupID.y) * gl_NumWorkGroups.x + gl_WorkGroupID.x) * KSPLIT * PSPLIT;
        uint64_t pz = pbase + uint64_t(zs) * PSPLIT;
        coopMatStoreNV(mf, ssh, sb, 16u, false);
        sg_sync();
        if (lane < 16u && lane < snq) {
            PartF(pz + 64u * D * 4u).v[(sg * 16u + lane) * 2u] = ssh[sb + lane * 16u]; // every column has the row's m
            PartF(pz + 64u * D * 4u).v[(sg * 16u + lane) * 2u + 1u] = lsh[sg * 16u + lane];
        }
        sg_sync();
#define PART_PAIR(fa, fb, I, TWO)                                                                              \
    {                                                                                                          \
        coopMatStoreNV(fa, ssh, sb, 32u, false);                                                               \
        if (TWO) coopMatStoreNV(fb, ssh, sb + 16u, 32u, false);                                                \
        sg_sync();                                                                                             \
        const uint nc4 = TWO ? 8u : 4u;                                                                        \
        [[unroll]] for (uint k = 0; k < nc4 / 2u; k++) {                                                       \
            uint e = lane + 32u * k, rr = e / nc4, c4 = e % nc4, dd = (I) * 16u + c4 * 4u;                     \
            if (rr < snq && dd < DR) {                                                                         \
                uint o = sb + rr * 32u + c4 * 4u;                                                              \
                vec4 v = vec4(ssh[o], ssh[o + 1u], ssh[o + 2u], ssh[o + 3u]);                                  \
                PartV4(pz).v[((sg * 16u + rr) * D + dd) / 4u] = v;                                             \
            }                                                                                                  \
        }                                                                                                      \
        sg_sync();                                                                                             \
    }
        PART_PAIR(of[0], of[1], 0u, true)
        PART_PAIR(of[2], of[3], 2u, true)
#if HD_PAD == 80
        PART_PAIR(of[4], of[4], 4u, false)
#elif HD_PAD == 128
        PART_PAIR(of[4], of[5], 4u, true)
        PART_PAIR(of[6], of[7], 6u, true)
#endif
        memoryBarrierBuffer(); // the partial is visible before the count says so
        barrier();
        uint ci = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
        if (t == 0u) last = atomicAdd(Cnt(cnt_addr).v[ci], 1u) == ns - 1u ? 1u : 0u;
        barrier();
        if (last == 0u) return;
        memoryBarrierBuffer();
        // merge: out = sum_z 2^(m_z - M)·O_z / sum_z 2^(m_z - M)·l_z per row (M the rows' largest m_z; a split
        // that saw no key of a row has m = -inf and weight 0)
        const uint D4 = D / 4u;
        for (uint e = t; e < 64u * D4; e += 128u) {
            uint w = e / D4, c4 = e % D4, rs = w / 16u, ri = w % 16u;
            uint rq = q0 + (rs / HPW) * 16u + ri, rh = hg * HPW + rs % HPW;
            if (rq >= q0 + nq || c4 * 4u >= DR) continue;
            float mz[KSPLIT_MAX], M = NEG_INF;
            [[unroll]] for (uint z = 0; z < KSPLIT_MAX; z++) {
                mz[z] = z < ns ? PartF(pbase + z * PSPLIT + 64u * D * 4u).v[w * 2u] : NEG_INF;
                M = max(M, mz[z]);
            }
            vec4 acc = vec4(0.0f);
            float L = 0.0f;
            [[unroll]] for (uint z = 0; z < KSPLIT_MAX; z++) {
                if (z < ns && mz[z] != NEG_INF) {
                    float wz = exp2(mz[z] - M);
                    acc += wz * PartV4(pbase + z * PSPLIT).v[w * D4 + c4];
                    L += wz * PartF(pbase + z * PSPLIT + 64u * D * 4u).v[w * 2u + 1u];
                }
            }
            BufV4(pc.dst + (uint64_t(rq) * row_stride + rh * DR + c4 * 4u) * 4u).v[0] = L > 0.0f ? acc / L : vec4(0);
        }
        if (t == 0u) Cnt(cnt_addr).v[ci] = 0u; // ready for the next dispatch (ordered after this one by a barrier)
        return;
    }
#endif
    if (snq == 0u) return;
    // written out per pair: a loop over the fragments is not unrolled by the SPIR-V optimizer, and one indexed at
    // run time keeps the whole O array in local memory (the NVIDIA driver cannot keep it in registers)
#define OUT_PAIR(fa, fb, I, TWO)                                                                               \
    {                                                                                                          \
        coopMatStoreNV(fa, ssh, sb, 32u, false);                                                               \
        if (TWO) coopMatStoreNV(fb, ssh, sb + 16u, 32u, false);                                                \
        sg_sync();                                                                                             \
        const uint nc4 = TWO ? 8u : 4u; /* vec4s per row */                                                    \
        [[unroll]] for (uint k = 0; k < nc4 / 2u; k++) {                                                       \
            uint e = lane + 32u * k, rr = e / nc4, c4 = e % nc4, dd = (I) * 16u + c4 * 4u;                     \
            float lr = lsh[sg * 16u + rr];                                                                     \
            if (rr < snq && dd < DR) {                                                                         \
                uint o = sb + rr * 32u + c4 * 4u;                                                              \
                vec4 v = vec4(ssh[o], ssh[o + 1u], ssh[o + 2u], ssh[o + 3u]);                                  \
                BufV4(pc.dst + (uint64_t(sq0 + rr) * row_stride + h * DR + dd) * 4u).v[0] =                    \
                    lr > 0.0f ? v / lr : vec4(0);                                                              \
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
