#version 460
// moe_plan.comp — groups the n·k (token, slot) entries of a prefill by expert, for the grouped expert matmuls.
// One workgroup: count entries per expert (the atomic's return value is the entry's rank within its expert), an
// exclusive prefix sum gives each expert's first sorted slot, then every entry learns its sorted position.
// Output (int32, at plan): tok[n·k] (sorted position -> token), pos[n·k] (entry -> sorted position, -1 if its
// expert id is out of range), then n_tiles and n_tiles × (expert, first sorted position, count <= tile).
// The order of entries within an expert depends on timing, but every output row is computed independently and
// moe_combine.comp sums the slots in fixed order, so results do not.
#define PC_PLAN
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

const uint MAX_EXP = 1024;
shared uint cnt[MAX_EXP];
shared uint first[MAX_EXP];

void main() {
    uint t = gl_LocalInvocationID.x, ne = pc.n * pc.k, n_exp = pc.n_exp;
    uint64_t tok_a = pc.plan, pos_a = pc.plan + uint64_t(ne) * 4u, tiles_a = pc.plan + uint64_t(ne) * 8u;
    for (uint e = t; e < n_exp; e += WG) cnt[e] = 0u;
    barrier();
    for (uint i = t; i < ne; i += WG) {
        int x = BufI32(pc.ids).v[i];
        int r = -1;
        if (x >= 0 && uint(x) < n_exp) r = int(atomicAdd(cnt[x], 1u));
        BufI32(pos_a).v[i] = r;
    }
    barrier();
    if (t == 0) {
        uint acc = 0u, nt = 0u;
        for (uint e = 0; e < n_exp; e++) {
            first[e] = acc;
            for (uint s = 0; s < cnt[e] && nt < pc.max_tiles; s += pc.tile) {
                BufI32 tl = BufI32(tiles_a + uint64_t(1u + 3u * nt) * 4u);
                tl.v[0] = int(e);
                tl.v[1] = int(acc + s);
                tl.v[2] = int(min(pc.tile, cnt[e] - s));
                nt++;
            }
            acc += cnt[e];
        }
        BufI32(tiles_a).v[0] = int(nt);
    }
    barrier();
    for (uint i = t; i < ne; i += WG) {
        int r = BufI32(pos_a).v[i];
        if (r < 0) continue;
        int x = BufI32(pc.ids).v[i];
        uint j = first[x] + uint(r);
        BufI32(pos_a).v[i] = int(j);
        BufI32(tok_a).v[j] = int(i / pc.k);
    }
}
