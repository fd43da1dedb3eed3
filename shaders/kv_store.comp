#version 460
// kv_store.comp — writes n new keys and values ([n][n_kv*head_dim] fp32) into the caches ([n_kv][n_ctx][head_dim])
// at positions pos0..pos0+n-1. One thread per word of the cache: an fp32 element, or (KV16) a pair of elements as
// two halves (head_dim even, so a pair never straddles rows; rounded to nearest and clamped, kv_pack2).
#define PC_KV
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint KV16 = 0;  // 1: the caches hold fp16

void main() {
    uint idx = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    uint hd = pc.head_dim, width = pc.n_kv * hd, per = KV16 != 0u ? 2u : 1u;
    if (idx >= pc.n * width / per) return;
    uint e = idx * per, i = e / width, r = e % width, h = r / hd, d = r % hd;
    uint64_t dst = (uint64_t(h) * pc.n_ctx + pc.pos0 + i) * hd + d;
    if (KV16 != 0u) {
        BufU32(pc.kc + dst * 2u).v[0] = kv_pack2(BufF32(pc.k).v[e], BufF32(pc.k).v[e + 1u]);
        BufU32(pc.vc + dst * 2u).v[0] = kv_pack2(BufF32(pc.v).v[e], BufF32(pc.v).v[e + 1u]);
    } else {
        BufF32(pc.kc + dst * 4u).v[0] = BufF32(pc.k).v[e];
        BufF32(pc.vc + dst * 4u).v[0] = BufF32(pc.v).v[e];
    }
}
