// plan.glsl — moe_plan.comp's plan as a function of one workgroup (plan_build), shared by moe_plan.comp and
// moe_route.comp's PLAN build (the route's last workgroup builds the plan of the ids the route just wrote).
// The includer defines WG (threads of the workgroup), PLAN_IDS (the buffer-reference type the ids are read through:
// a coherent one where other workgroups of the same dispatch wrote them) and PLAN_MAX_EXP (experts at most).
// What it computes and how: see moe_plan.comp.

bool plan_in_range(int x, uint n_exp) { return x >= 0 && uint(x) < n_exp; }

const uint PLAN_B = 8; // entries per thread held in registers: PLAN_B·WG = 8192 with 1024 threads (pp512 top-8: 4096)

shared uint cnt[PLAN_MAX_EXP];    // entries per expert; after the scan, the expert's first sorted position
shared uvec2 scan[PLAN_MAX_EXP];  // per scanning thread: (entries, tiles) of its experts, scanned in place


void plan_build(uint64_t ids_a, uint64_t plan_a, uint n, uint k, uint n_exp, uint tile, uint max_tiles) {
    uint t = gl_LocalInvocationID.x, ne = n * k;
    uint64_t tok_a = plan_a, pos_a = plan_a + uint64_t(ne) * 4u, tiles_a = plan_a + uint64_t(ne) * 8u;
    PLAN_IDS ids = PLAN_IDS(ids_a);
    BufI32 tok = BufI32(tok_a), pos = BufI32(pos_a);
    for (uint e = t; e < n_exp; e += WG) cnt[e] = 0u;
    barrier();

    // ranks: the first batch kept in registers
    int xs[PLAN_B], rs[PLAN_B];
    [[unroll]] for (uint j = 0; j < PLAN_B; j++) {
        uint i = t + j * WG;
        xs[j] = i < ne ? ids.v[i] : -1;
    }
    [[unroll]] for (uint j = 0; j < PLAN_B; j++) rs[j] = plan_in_range(xs[j], n_exp) ? int(atomicAdd(cnt[xs[j]], 1u)) : -1;
    // further batches (only when ne > B·WG): ranks parked in pos, re-read by the same invocation below
    for (uint base = PLAN_B * WG; base < ne; base += PLAN_B * WG) {
        int ys[PLAN_B];
        [[unroll]] for (uint j = 0; j < PLAN_B; j++) {
            uint i = base + t + j * WG;
            ys[j] = i < ne ? ids.v[i] : -1;
        }
        [[unroll]] for (uint j = 0; j < PLAN_B; j++) {
            uint i = base + t + j * WG;
            if (i < ne) pos.v[i] = plan_in_range(ys[j], n_exp) ? int(atomicAdd(cnt[ys[j]], 1u)) : -1;
        }
    }
    barrier();

    // exclusive prefix sums of entries and tiles over experts: thread t owns experts [t·E, t·E + E)
    uint E = max((n_exp + WG - 1u) / WG, 1u), P = (n_exp + E - 1u) / E, e0 = min(t * E, n_exp),
         e1 = min(e0 + E, n_exp);
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
            for (uint s = 0u; s < c && at.y < max_tiles; s += tile, at.y++) {
                BufI32 tl = BufI32(tiles_a + uint64_t(1u + 3u * at.y) * 4u);
                tl.v[0] = int(e);
                tl.v[1] = int(at.x + s);
                tl.v[2] = int(min(tile, c - s));
            }
            at.x += c;
        }
    }
    if (t == 0u) BufI32(tiles_a).v[0] = int(P > 0u ? min(scan[P - 1u].y, max_tiles) : 0u);
    barrier();

    // sorted positions: pos[i] = first[expert] + rank, tok[sorted] = token
    [[unroll]] for (uint j = 0; j < PLAN_B; j++) {
        uint i = t + j * WG;
        if (i >= ne) continue;
        int p = -1;
        if (rs[j] >= 0) {
            p = int(cnt[xs[j]]) + rs[j];
            tok.v[p] = int(i / k);
        }
        pos.v[i] = p;
    }
    for (uint base = PLAN_B * WG; base < ne; base += PLAN_B * WG) {
        int ys[PLAN_B], qs[PLAN_B];
        [[unroll]] for (uint j = 0; j < PLAN_B; j++) {
            uint i = base + t + j * WG;
            ys[j] = i < ne ? ids.v[i] : -1;
            qs[j] = i < ne ? pos.v[i] : -1;
        }
        [[unroll]] for (uint j = 0; j < PLAN_B; j++) {
            uint i = base + t + j * WG;
            if (qs[j] < 0) continue;
            int p = int(cnt[ys[j]]) + qs[j];
            pos.v[i] = p;
            tok.v[p] = int(i / k);
        }
    }
}
