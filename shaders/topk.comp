#version 460
// topk.comp — the K best entries of each CH-element chunk of one fp32 row (a logits row) for the host's sampler
// (backend.h topk_chunks; engine/sampler.c omni_sampler_sample_cand): workgroup c loads its chunk as 64-bit keys
// (the value's bits made order-preserving as an unsigned integer, then the inverted id, so a larger key is a larger
// value or, on a tie, the lower id: the sampler's order), sorts them in shared memory (a bitonic sort, descending)
// and writes the first K as (id, value) pairs (the value as read); keys past the row's end are 0 and written as id -1. Mirrors the CPU
// back-end's cpu_topk_chunks exactly (an order, no arithmetic).
#define PC_TOPK
#include "common.glsl"

const uint CH = 2048u, K = 64u, WG = 256u;  // OB_TOPK_CHUNK, OB_TOPK_K
layout(local_size_x = 256) in;

shared uint64_t key[CH];

// f's bits as an unsigned integer that orders like f (negatives inverted, positives above them; -0 taken as +0,
// which compares equal to it, so the two tie and the id decides)
uint orderable(float f) {
    uint b = f == 0.0f ? 0u : floatBitsToUint(f);
    return (b & 0x80000000u) != 0u ? ~b : b | 0x80000000u;
}

void main() {
    uint c = gl_WorkGroupID.x, t = gl_LocalInvocationID.x, base = c * CH;
    for (uint i = t; i < CH; i += WG) {
        uint id = base + i;
        key[i] = id < pc.n ? (uint64_t(orderable(BufF32(pc.x).v[id])) << 32) | uint64_t(0xffffffffu - id) : 0ul;
    }
    barrier();
    for (uint size = 2u; size <= CH; size <<= 1)
        for (uint stride = size >> 1; stride > 0u; stride >>= 1) {
            for (uint i = t; i < CH; i += WG) {
                uint j = i ^ stride;
                if (j > i) {
                    uint64_t a = key[i], b = key[j];
                    if ((i & size) == 0u ? a < b : a > b) {  // descending runs where bit `size` of i is 0
                        key[i] = b;
                        key[j] = a;
                    }
                }
            }
            barrier();
        }
    for (uint r = t; r < K; r += WG) {
        uint64_t k = key[r];
        bool ok = k != 0ul;  // (a real key never is: its low word is 0xffffffff - id > 0)
        BufU32(pc.dst).v[2u * (c * K + r)] = ok ? 0xffffffffu - uint(k & 0xffffffffu) : 0xffffffffu;
        uint id = 0xffffffffu - uint(k & 0xffffffffu);
        BufU32(pc.dst).v[2u * (c * K + r) + 1u] = ok ? floatBitsToUint(BufF32(pc.x).v[id]) : 0u;  // its own bits
    }
}
