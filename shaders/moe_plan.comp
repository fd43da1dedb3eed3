#version 460
// moe_plan.comp — groups the n·k (token, slot) entries of a prefill by expert, for the grouped expert matmuls.
// One workgroup: count entries per expert (the atomic's return value is the entry's rank within its expert), an
// exclusive prefix sum gives each expert's first sorted slot, then every entry learns its sorted position.
// Output (int32, at plan): tok[n·k] (sorted position -> token), pos[n·k] (entry -> sorted position, -1 if its
// expert id is out of range), then n_tiles and n_tiles × (expert, first sorted position, count <= tile): the tiles
// in expert order, each expert's entries cut into runs of `tile`, the list cut after max_tiles.
// The order of entries within an expert depends on timing, but every output row is computed independently and
// moe_combine.comp sums the slots in fixed order, so results do not.
//
// Speed (one workgroup, so latency is all that counts): a thread's first B entries are loaded in one unrolled batch
// (B independent loads: one global round trip instead of one per entry) and their ids and ranks stay in registers
// until the final stores, so nothing is read back from memory. Entries beyond B·WG (larger chunks than the model's)
// go round in further batches, their ranks parked in pos and re-read at the end. The prefix sums over experts of
// both entries and tiles are one shared-memory scan (Hillis–Steele, log2 of the experts' threads steps), and every
// thread writes the tiles of its own experts, where one thread used to walk all experts and tiles serially.
#define PC_PLAN
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 1024;

const uint MAX_EXP = 1024;
const uint B = 8; // entries per thread held in registers: B·WG = 8192 with 1024 threads (pp512 top-8: 4096)

shared uint cnt[MAX_EXP];    // entries per expert; after the scan, the expert's first sorted position
shared uvec2 scan[MAX_EXP];  // per scanning thread: (entries, tiles) of its experts, scanned in place

bool in_range(int x) { return x >= 0 && uint(x) < pc.n_exp; }

void main() {
    uint t = gl_LocalInvocationID.x, ne = pc.n * pc.k, n_exp = pc.n_exp;
    uint64_t tok_a = pc.plan, pos_a = pc.plan + uint64_t(ne) * 4u, tiles_a = pc.plan + uint64_t(ne) * 8u;
    BufI32 ids = BufI32(pc.ids), tok = BufI32(tok_a), pos = BufI32(pos_a);
    for (uint e = t; e < n_exp; e += WG) cnt[e] = 0u;
    barrier();

    // ranks: the first batch kept in registers
    int xs[B], rs[B];
    [[unroll]] for (uint j = 0; j < B; j++) {
        uint i = t + j * WG;
        xs[j] = i < ne ? ids.v[i] : -1;
    }
    [[unroll]] for (uint j = 0; j < B; j++) rs[j] = in_range(xs[j]) ? int(atomicAdd(cnt[xs[j]], 1u)) : -1;
    // further batches (only when ne > B·WG): ranks parked in pos, re-read by the same invocation below
    for (uint base = B * WG; base < ne; base += B * WG) {
        int ys[B];
        [[unroll]] for (uint j = 0; j < B; j++) {
            uint i = base + t + j * WG;
            ys[j] = i < ne ? ids.v[i] : -1;
        }
        [[unroll]] for (uint j = 0; j < B; j++) {
            uint i = base + t + j * WG;
            if (i < ne) pos.v[i] = in_range(ys[j]) ? int(atomicAdd(cnt[ys[j]], 1u)) : -1;
        }
    }
    barrier();

    // exclusive prefix sums of entries and tiles over experts: thread t owns experts [t·E, t·E + E)
    uint E = max((n_exp + WG - 1u) / WG, 1u), P = (n_exp + E - 1u) / E, e0 = min(t * E, n_exp),
         e1 = min(e0 + E, n_exp), tile = pc.tile;
    uvec2 own = uvec2(0u);
    for (uint e = e0; e < e1; e++) own += uvec2(cnt[e], (cnt[e] + tile - 1u) / tile);
    if (t < P) scan[t] = own;
    barrier();
    for (uint off = 1u; off < P; off <<= 1) {
        uvec2 v = t < P && t >= off ? scan[t - off] : uvec2(0u);
        barrier();
        if (t < P) scan[t] += v;
        barrier();
    }
    if (t < P) {
        uvec2 at = scan[t] - own; // (first sorted position, first tile) of this thread's experts
        for (uint e = e0; e < e1; e++) {
            uint c = cnt[e];
            cnt[e] = at.x; // only this thread reads cnt[e] until the barrier
            for (uint s = 0u; s < c && at.y < pc.max_tiles; s += tile, at.y++) {
                BufI32 tl = BufI32(tiles_a + uint64_t(1u + 3u * at.y) * 4u);
                tl.v[0] = int(e);
                tl.v[1] = int(at.x + s);
                tl.v[2] = int(min(tile, c - s));
            }
            at.x += c;
        }
    }
    if (t == 0u) BufI32(tiles_a).v[0] = int(P > 0u ? min(scan[P - 1u].y, pc.max_tiles) : 0u);
    barrier();

    // sorted positions: pos[i] = first[expert] + rank, tok[sorted] = token
    [[unroll]] for (uint j = 0; j < B; j++) {
        uint i = t + j * WG;
        if (i >= ne) continue;
        int p = -1;
        if (rs[j] >= 0) {
            p = int(cnt[xs[j]]) + rs[j];
            tok.v[p] = int(i / pc.k);
        }
        pos.v[i] = p;
    }
    for (uint base = B * WG; base < ne; base += B * WG) {
        int ys[B], qs[B];
        [[unroll]] for (uint j = 0; j < B; j++) {
            uint i = base + t + j * WG;
            ys[j] = i < ne ? ids.v[i] : -1;
            qs[j] = i < ne ? pos.v[i] : -1;
        }
        [[unroll]] for (uint j = 0; j < B; j++) {
            uint i = base + t + j * WG;
            if (qs[j] < 0) continue;
            int p = int(cnt[ys[j]]) + qs[j];
            pos.v[i] = p;
            tok.v[p] = int(i / pc.k);
        }
    }
}
