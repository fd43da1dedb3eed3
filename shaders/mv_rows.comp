#version 460
// mv_rows.comp — y = W · x for a few long fp32 rows: the folded decode router's Rw·x and M·a (vk_decode.c, 128
// rows of 2048 / 4096). One workgroup per row: every invocation issues its NPL 16-byte loads of the row and of x at
// once, then one workgroup sum (fixed order). matvec.comp's layout (a subgroup per row, two loads per lane in
// flight) needs 16 round trips to memory for a 16 KB row and gives 128 rows only 32 workgroups; here a row is one
// round trip.
// RANK (the M·a half, which runs beside o_proj): the last workgroup to finish (an atomic counter at pc.s, which it
// resets) also selects the experts: it ranks the raw sums Rw·x + M·a (the halves at pc.lg, this dispatch's rows the
// second; the norm scale s > 0 of the folded router keeps their order) as route_rank.glsl does and writes the top
// pc.k ids to pc.ids, so the MoE gate+up workgroups only read them (matvec.comp / mvq8.comp PRE) instead of each
// ranking 128 logits on the layer's critical path.
// Mirrors the CPU back-end's matmul (y[r] = Σ_c W[r][c]·x[c]) up to the order of the fp32 sum, and moe_route's
// ranking (torch.topk order, ties to the lower index).
#define PC_MATVEC
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint NPL = 4;  // 16-byte words per invocation: ceil(cols / 4 / WG)
layout(constant_id = 2) const uint RANK = 0;

#include "reduce.glsl"
#define RR_ON RANK
#include "route_rank.glsl"

// the counter is shared by this dispatch's workgroups: coherent (not cached per SM); the halves are read as such
// by rr_load_from
layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer CohU { uint v[]; };
shared uint last;

void main() {
    uint t = gl_LocalInvocationID.x, row = gl_WorkGroupID.x, c4 = pc.cols / 4u;
    BufV4 w = BufV4(pc.w + uint64_t(row) * pc.cols * 4u), x = BufV4(pc.x);
    vec4 wv[NPL], xv[NPL];
    [[unroll]] for (uint i = 0; i < NPL; i++) {
        uint j = t + i * WG;
        wv[i] = j < c4 ? w.v[j] : vec4(0.0f);
        xv[i] = j < c4 ? x.v[j] : vec4(0.0f);
    }
    float s = 0.0f;
    [[unroll]] for (uint i = 0; i < NPL; i++) s += dot(wv[i], xv[i]);
    s = wg_sum(s);
    if (t == 0u) BufF32(pc.y).v[row] = s;
    if (RANK == 0u) return;
    // the classic last-workgroup pattern (router.comp): the sum is visible before the count says so
    memoryBarrierBuffer();
    barrier();
    if (t == 0u) last = atomicAdd(CohU(pc.s).v[0], 1u) == gl_NumWorkGroups.x - 1u ? 1u : 0u;
    barrier();
    if (last == 0u) return;
    memoryBarrierBuffer();
    rr_load_from(pc.lg, pc.rows, true, true);
    rr_select_raw(pc.rows, pc.k);
    if (t < pc.k) BufI32(pc.ids).v[t] = int(rr_top_e[t]);
    if (t == 0u) CohU(pc.s).v[0] = 0u;  // ready for the next dispatch (ordered after this one by a barrier)
}
