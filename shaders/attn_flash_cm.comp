#version 460
// attn_flash_cm.comp — prefill attention on tensor cores (GL_NV_cooperative_matrix): a workgroup
// of 4 subgroups takes BQ = 64 consecutive queries of one head (16 per subgroup) and walks the visible keys in
// blocks of BKV = 32 staged in shared memory as fp16. Per subgroup, S = Q·Kᵀ (16 × 32) comes from 16 × 16 × 16
// fp16 MMAs with fp32 sums, and O += P·V likewise with P = exp(S·scale − m) rounded to fp16.
// Two passes over the keys instead of the online rescaling of attn_flash.comp: an NV cooperative-matrix fragment
// cannot be scaled row by row, so pass 1 finds each query's maximum score m, and pass 2 accumulates P·V and the
// row sums l with that final m (Q·Kᵀ is computed twice; O stays in fragments). The output is O / l.
// Masks (causal, sliding window) and GQA as in attn_split.comp; q, k, v, out are fp32 in memory.
// Head dims: built once per padded size HD_PAD (shaders.mk: 128, and 64 / 80 as attn_flash_cm_d64 / _d80 for the
// audio (64) and vision (72) encoders; fixed sizes, as specialization-constant array sizes make the NVIDIA compiler
// take minutes): the real pc.head_dim (a multiple of 4, at most HD_PAD) addresses memory, and the dims past it are
// zero in the fp16 tiles, so they add nothing to Q·Kᵀ and their output columns are not written.
// Mirrors the CPU back-end's attention softmax(q·Kᵀ·scale + mask)·V up to fp16 rounding of q, k, v and p.
// Host requirements (vk_coopmat.c): head_dim % 4 == 0 and <= HD_PAD, q/kc/vc/dst 16-byte aligned, NV cooperative
// matrix, subgroups of 32.
#extension GL_NV_cooperative_matrix : require
#extension GL_KHR_memory_scope_semantics : require
#extension GL_EXT_shader_explicit_arithmetic_types_float16 : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_shuffle : require
#define PC_ATTN
#include "common.glsl"

#ifndef HD_PAD
#define HD_PAD 128
#endif
const uint D = HD_PAD, BQ = 64, BKV = 32;
const uint NF = D / 16u;         // 16-wide fragments across the head
const uint KVT = BKV * D / 512u; // K (and V) vec4s per thread per block: BKV rows of D/4 over 128 threads
const uint STR = D + 8;   // fp16 row stride of q/k/v tiles: 272 bytes, rows of a fragment load in distinct banks
const uint PSTR = BKV + 8; // fp16 row stride of P
layout(local_size_x = 128) in;

shared float16_t qsh[BQ * STR];
shared float16_t ksh[BKV * STR];
shared float16_t vsh[BKV * STR];
shared float ssh[4 * 16 * BKV];     // per subgroup: S (16 × BKV fp32), later one 16 × 16 output fragment
shared float16_t psh[4 * 16 * PSTR]; // per subgroup: P (16 × BKV fp16)
shared float lsh[4 * 16];            // per subgroup: row sums

#define FRAG16 fcoopmatNV<16, gl_ScopeSubgroup, 16, 16>
#define FRAG32 fcoopmatNV<32, gl_ScopeSubgroup, 16, 16>

void sg_sync() {
    subgroupMemoryBarrierShared();
    subgroupBarrier();
}

// 4 fp32 values to 4 halves at dst[o..o+3] (clamped to the fp16 range)
#define PUT4(dst, o, v)                                                                                        \
    {                                                                                                          \
        f16vec4 h_ = f16vec4(clamp(v, -65504.0f, 65504.0f));                                                   \
        dst[(o)] = h_.x; dst[(o) + 1] = h_.y; dst[(o) + 2] = h_.z; dst[(o) + 3] = h_.w;                        \
    }

void main() {
    const float NEG_INF = uintBitsToFloat(0xff800000u);
    uint qb = gl_WorkGroupID.x, h = gl_WorkGroupID.y, t = gl_LocalInvocationID.x;
    uint sg = gl_SubgroupID, lane = gl_SubgroupInvocationID;
    uint n_keys = pc.pos0 + pc.n, g = h / (pc.n_heads / pc.n_kv);
    uint q0 = qb * BQ, nq = min(BQ, pc.n - q0);
    uint DR = pc.head_dim;             // the real head dim (memory); D is the padded one (tiles)
    uint row_stride = pc.n_heads * DR;  // floats between consecutive queries in q and dst

    // queries of this block as fp16 (rows past nq are zero)
    for (uint e = t; e < BQ * D / 4u; e += 128u) {
        uint qi = e / (D / 4u), d = (e % (D / 4u)) * 4u;
        vec4 v = qi < nq && d < DR ? BufV4(pc.q + (uint64_t(q0 + qi) * row_stride + h * DR + d) * 4u).v[0] : vec4(0);
        PUT4(qsh, qi * STR + d, v)
    }
    uint p_first = pc.pos0 + q0, p_last = pc.pos0 + q0 + nq - 1u;
    int lo_all = pc.window > 0u ? max(0, int(p_first) - int(pc.window) + 1) : 0;
    int hi_all = pc.causal != 0u ? int(p_last) : int(n_keys) - 1;
    int kb0 = (lo_all / int(BKV)) * int(BKV);
    barrier();
    FRAG16 qf[NF];
    [[unroll]] for (uint i = 0; i < NF; i++) coopMatLoadNV(qf[i], qsh, (sg * 16u) * STR + i * 16u, STR, false);

    // softmax bookkeeping: lane owns row r = lane / 2 of this subgroup's 16 queries, columns hf·16 .. +16
    uint r = lane >> 1, hf = lane & 1u;
    uint qi_r = sg * 16u + r;
    int p_r = int(pc.pos0 + q0 + qi_r);
    int lo_r = pc.window > 0u ? p_r - int(pc.window) + 1 : 0;
    int hi_r = pc.causal != 0u ? p_r : int(n_keys) - 1;
    bool row_ok = qi_r < nq;
    uint sb = sg * 16u * BKV, pb = sg * 16u * PSTR;
    float m = NEG_INF, l = 0.0f;

    FRAG32 of[NF];
    [[unroll]] for (uint i = 0; i < NF; i++) of[i] = FRAG32(0.0f);

    // K (and in pass 2 V) blocks go through registers: the next block's loads are issued before the current one
    // is multiplied, so their latency overlaps the tensor-core and softmax work
    vec4 kr[KVT], vr[KVT];
#define LOAD_KV(kb_, withv)                                                                                    \
    {                                                                                                          \
        uint nk_ = min(BKV, n_keys - uint(kb_));                                                               \
        [[unroll]] for (uint i = 0; i < KVT; i++) {                                                            \
            uint e = t + 128u * i, kj = e / (D / 4u), d = (e % (D / 4u)) * 4u;                                 \
            uint64_t a = ((uint64_t(g) * pc.n_ctx + uint(kb_) + kj) * DR + d) * 4u;                            \
            bool in_ = kj < nk_ && d < DR;                                                                     \
            kr[i] = in_ ? BufV4(pc.kc + a).v[0] : vec4(0);                                                     \
            if (withv) vr[i] = in_ ? BufV4(pc.vc + a).v[0] : vec4(0);                                          \
        }                                                                                                      \
    }
    for (uint pass = 0; pass < 2u; pass++) {
        if (kb0 <= hi_all) LOAD_KV(kb0, pass == 1u)
        for (int kb = kb0; kb <= hi_all; kb += int(BKV)) {
            barrier();
            uint nk = min(BKV, n_keys - uint(kb));
            [[unroll]] for (uint i = 0; i < KVT; i++) {
                uint e = t + 128u * i, kj = e / (D / 4u), d = (e % (D / 4u)) * 4u;
                PUT4(ksh, kj * STR + d, kr[i])
                if (pass == 1u) PUT4(vsh, kj * STR + d, vr[i])
            }
            barrier();
            if (kb + int(BKV) <= hi_all) LOAD_KV(kb + int(BKV), pass == 1u)
            // S = Q·Kᵀ for keys kb .. kb + 31: B(d, key) = ksh[key][d], column-major
            FRAG32 s0 = FRAG32(0.0f), s1 = FRAG32(0.0f);
            [[unroll]] for (uint i = 0; i < NF; i++) {
                FRAG16 k0, k1;
                coopMatLoadNV(k0, ksh, i * 16u, STR, true);
                coopMatLoadNV(k1, ksh, 16u * STR + i * 16u, STR, true);
                s0 = coopMatMulAddNV(qf[i], k0, s0);
                s1 = coopMatMulAddNV(qf[i], k1, s1);
            }
            coopMatStoreNV(s0, ssh, sb, BKV, false);
            coopMatStoreNV(s1, ssh, sb + 16u, BKV, false);
            sg_sync();
            uint c0 = hf * 16u;
            if (pass == 0u) {
                float mx = NEG_INF;
                for (uint c = 0; c < 16u; c++) {
                    int j = kb + int(c0 + c);
                    if (row_ok && c0 + c < nk && j >= lo_r && j <= hi_r)
                        mx = max(mx, ssh[sb + r * BKV + c0 + c] * pc.scale);
                }
                mx = max(mx, subgroupShuffleXor(mx, 1u));
                m = max(m, mx);
            } else {
                float sum = 0.0f;
                for (uint c = 0; c < 16u; c++) {
                    int j = kb + int(c0 + c);
                    float p = 0.0f;
                    if (row_ok && m != NEG_INF && c0 + c < nk && j >= lo_r && j <= hi_r)
                        p = exp_acc(ssh[sb + r * BKV + c0 + c] * pc.scale - m);
                    sum += p;
                    psh[pb + r * PSTR + c0 + c] = float16_t(p);
                }
                l += sum;
                sg_sync();
                // O += P·V: A = P (16 × 32 keys, two k-steps), B(key, d) = vsh[key][d], row-major
                FRAG16 p0, p1;
                coopMatLoadNV(p0, psh, pb, PSTR, false);
                coopMatLoadNV(p1, psh, pb + 16u, PSTR, false);
                [[unroll]] for (uint i = 0; i < NF; i++) {
                    FRAG16 v0, v1;
                    coopMatLoadNV(v0, vsh, i * 16u, STR, false);
                    coopMatLoadNV(v1, vsh, 16u * STR + i * 16u, STR, false);
                    of[i] = coopMatMulAddNV(p0, v0, of[i]);
                    of[i] = coopMatMulAddNV(p1, v1, of[i]);
                }
            }
            sg_sync();
        }
    }

    // out = O / l: the two lanes of a row hold halves of its sum
    l += subgroupShuffleXor(l, 1u);
    if (hf == 0u) lsh[sg * 16u + r] = l;
    sg_sync();
    [[unroll]] for (uint i = 0; i < NF; i++) {
        coopMatStoreNV(of[i], ssh, sb, 16u, false);
        sg_sync();
        for (uint e = lane; e < 256u; e += 32u) {
            uint rr = e / 16u, qi = sg * 16u + rr, dd = i * 16u + e % 16u;
            float lr = lsh[sg * 16u + rr];
            if (qi < nq && dd < DR)
                BufF32(pc.dst + (uint64_t(q0 + qi) * row_stride + h * DR + dd) * 4u).v[0] =
                    lr > 0.0f ? ssh[sb + e] / lr : 0.0f;
        }
        sg_sync();
    }
}
