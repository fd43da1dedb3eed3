#version 460
// kv_store.comp — writes n new keys and values ([n][n_kv*head_dim]) into the caches ([n_kv][n_ctx][head_dim])
// at positions pos0..pos0+n-1. One thread per element of k (and the same element of v).
#define PC_KV
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

void main() {
    uint idx = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    uint hd = pc.head_dim, width = pc.n_kv * hd;
    if (idx >= pc.n * width) return;
    uint i = idx / width, r = idx % width, h = r / hd, d = r % hd;
    uint64_t dst = (uint64_t(h) * pc.n_ctx + pc.pos0 + i) * hd + d;
    BufF32(pc.kc + dst * 4u).v[0] = BufF32(pc.k).v[idx];
    BufF32(pc.vc + dst * 4u).v[0] = BufF32(pc.v).v[idx];
}
