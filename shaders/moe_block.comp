#version 460
// moe_block.comp — the resident decode MoE block: one token's o_proj + residual, the folded router's two halves,
// the top-k, the experts' gate+up+SwiGLU and down + weighted sum + residual in ONE dispatch of P workgroups (one per
// compute unit, all resident at once), with grid barriers between the three phases instead of pipeline barriers
// between dispatches (docs/architecture.md, "persistent decode kernel"; vk_decode.c, "resident MoE block").
//
// Why: a decode layer is a chain of dependent kernels, and on the H100 each dependent dispatch costs ~3-5 µs of
// launch, ramp and tail beside its bytes, where a grid barrier costs ~1.3 µs (`vulkan_bench gridbar`, session 8).
//
// Phases (every physical workgroup w of P runs its share of each phase's jobs: subgroup jobs j = w·NSG + sg,
// j + P·NSG, ...):
//   A. o[r] = Wo[r]·a for the H rows of o_proj; raw[e] = Rw[e]·x and raw[E + e] = M[e]·a for the router's E rows
//      (the folded router of vk_decode.c: logits = s·(Rw·x + M·a), with x the residual before o_proj, a the
//      attention output and s the RMSNorm scale of x + o). a and x are staged in shared memory once per workgroup.
//   B. every workgroup stages x' = x + o (the residual after o_proj, as matmul with accumulate computes it),
//      xn = (x'·s)·w (rms_norm.comp's arithmetic), ranks the experts by raw[e] + raw[E + e] (s > 0 keeps the order;
//      route_rank.glsl), and computes h[j][r] = silu(gate_e[r]·xn)·(up_e[r]·xn) for its (slot j, row r) jobs;
//      workgroup 0 also writes xn.
//   C. every workgroup stages h and weighs its selection (softmax of s·raw; workgroup 0 writes the logits, ids and
//      weights: the rest of what matmul_norm_route promised); x[r] = x'[r] + Σ_j w_j·(down_ej[r]·h_j) for its rows.
// Inside a phase each subgroup loads its next job's weights before it uses the current ones (the weight stream does
// not pause while a subgroup reduces), and its first rows of phase C before the grid barrier in front of it.
// Data produced inside the dispatch (o, raw, h, the weights) is written with plain stores, made visible by the
// barrier's fence and release, and read back through coherent references (not cached per SM), once per workgroup
// into shared memory (session 5: coherent loads per weight vector cost a third of the speed).
// The grid barrier is a sense-reversing one on two counters in the scratch buffer (arrivals, generation): the last
// arrival resets the arrivals and advances the generation, the others poll the generation with atomic acquire loads
// in a loop the whole workgroup runs (chain.glsl: a plain load loop may be dropped by a compiler). It needs all P
// workgroups resident at once: the host gives one workgroup per compute unit (caps.compute_units), which every
// device can hold, and lavapipe (CI) runs it with P = 1 (OMNI_VK_RESIDENT_WGS).
// Mirrors the CPU back-end's matmul_norm_route followed by moe_experts (HF Qwen3OmniMoeThinkerTextSparseMoeBlock).
#define PC_MOEBLK
#include "common.glsl"
#extension GL_KHR_memory_scope_semantics : require

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint WO_T = 2;   // o_proj weight type (VK_WT_*)
layout(constant_id = 2) const uint EX_T = 2;   // gate and up experts' type
layout(constant_id = 3) const uint DN_T = 2;   // down experts' type
layout(constant_id = 4) const uint NW_T = 2;   // the RMSNorm weight's type (f32, f16, bf16)
layout(constant_id = 5) const uint SM4 = 1536; // vec4s of staging: max(H + HO, H, k·I) / 4
layout(constant_id = 6) const uint NPH = 3;    // phases run: 3; fewer only to time the phases (vulkan_bench)
layout(constant_id = 7) const uint POLL = 0;   // grid barrier: delay steps between polls (0: none)
layout(constant_id = 8) const uint SPLIT = 0;  // phase B: 1 = a job is one row (gate or up), h combined in phase C
layout(constant_id = 9) const uint PIPE = 1;   // 1: a subgroup's next job loaded before the current one is used

#include "reduce.glsl"
#include "route_rank.glsl"

layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer CohU { uint v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer CohF { float v[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) coherent buffer CohV4 { vec4 v[]; };

const uint U = 8u;   // 16-byte weight loads in flight per lane and row (gate+up: two rows)
const uint UA = 16u; // phase A's rows (o_proj 4096 bf16 columns: 16 per lane)
const uint DS = 4u;  // down projection: slots loaded together

shared vec4 sm[SM4];   // staging: A: a then x; B: xn; C: h
shared uint gb_sh;
shared float dn_w[RR_MAX_K];
// the selected experts' weight addresses (data, q8 scales) of gate, up and down, looked up once per workgroup: a
// lookup per job would put an L2 round trip in front of every job's weight loads
shared uint64_t ex_a[6u * RR_MAX_K];

// scratch layout (fp32 words): [0] arrivals, [1] generation, [4, 4 + 2E) raw, then o [H], then h [k][I]
uint64_t g_raw, g_o, g_h;

void grid_barrier() {
    memoryBarrierBuffer();
    barrier();
    CohU cnt = CohU(pc.scr);
    if (gl_LocalInvocationIndex == 0u) {
        // the generation before arriving: it cannot advance before this workgroup arrives
        uint gen = atomicLoad(cnt.v[1], gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsAcquire);
        uint prev = atomicAdd(cnt.v[0], 1u, gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsAcquireRelease);
        if (prev == gl_NumWorkGroups.x - 1u) {
            atomicStore(cnt.v[0], 0u, gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsRelaxed);
            atomicAdd(cnt.v[1], 1u, gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsRelease);
        }
        gb_sh = gen;
    }
    barrier();
    uint mine = gb_sh;
    barrier();
    for (;;) {
        if (POLL != 0u) {  // fewer polls of the one counter (its L2 slice also serves the other workgroups' weights)
            float d = float(mine);
            for (uint i = 0u; i < POLL; i++) d = d * 0.999f + 1.0f;
            if (d == -1.0f) gb_sh = 0u;
        }
        if (gl_LocalInvocationIndex == 0u)
            gb_sh = atomicLoad(cnt.v[1], gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsAcquire);
        barrier();
        uint seen = gb_sh;
        barrier();
        if (seen != mine) break;
    }
    memoryBarrierBuffer();
}

// one 16-byte weight vector (index vi of its row) against staged x at sm[xi..]: 4 (f32), 8 (f16/bf16) or 16 (q8_0,
// times the block scale at srow) elements
float vec_dot(uint wt, uvec4 q, uint64_t srow, uint vi, uint xi) {
    vec4 w0, w1, w2, w3;
    dq_vec_bits(wt, q, w0, w1, w2, w3);
    float s = dot(w0, sm[xi]);
    if (wt != VK_WT_F32) s += dot(w1, sm[xi + 1u]);
    if (wt == VK_WT_Q8_0) {
        s += dot(w2, sm[xi + 2u]) + dot(w3, sm[xi + 3u]);
        s *= f16_bits(ld_u16(srow + uint64_t(vi / 2u) * 2u));
    }
    return s;
}

// this lane's share of row · x (x staged at sm[xo..], 16-byte aligned rows of nvec vectors), UA loads in flight
float row_part(uint wt, uint64_t wrow, uint64_t srow, uint nvec, uint xo) {
    uint xpv = elems_per_vec(wt) / 4u;
    float acc = 0.0f;
    for (uint v0 = SG_LANE; v0 < nvec; v0 += UA * SG_SIZE) {
        uvec4 w[UA];
        [[unroll]] for (uint u = 0u; u < UA; u++) {
            uint vi = v0 + u * SG_SIZE;
            w[u] = vi < nvec ? BufUV4(wrow).v[vi] : uvec4(0u);
        }
        [[unroll]] for (uint u = 0u; u < UA; u++) {
            uint vi = v0 + u * SG_SIZE;
            if (vi < nvec) acc += vec_dot(wt, w[u], srow, vi, xo + vi * xpv);
        }
    }
    return acc;
}

// gate and up rows against the same staged x: both rows' loads in flight together
void row_pair(uint64_t gw, uint64_t gs, uint64_t uw, uint64_t us, uint nvec, out float g, out float u) {
    uint xpv = elems_per_vec(EX_T) / 4u;
    g = 0.0f;
    u = 0.0f;
    for (uint v0 = SG_LANE; v0 < nvec; v0 += U * SG_SIZE) {
        uvec4 wg[U], wu[U];
        [[unroll]] for (uint k = 0u; k < U; k++) {
            uint vi = v0 + k * SG_SIZE;
            wg[k] = vi < nvec ? BufUV4(gw).v[vi] : uvec4(0u);
            wu[k] = vi < nvec ? BufUV4(uw).v[vi] : uvec4(0u);
        }
        [[unroll]] for (uint k = 0u; k < U; k++) {
            uint vi = v0 + k * SG_SIZE;
            if (vi < nvec) {
                g += vec_dot(EX_T, wg[k], gs, vi, vi * xpv);
                u += vec_dot(EX_T, wu[k], us, vi, vi * xpv);
            }
        }
    }
}

void expert(uint64_t table, uint e, out uint64_t w, out uint64_t s) {
    BufU64 t = BufU64(table + uint64_t(e) * 16u);
    w = t.v[0];
    s = t.v[1];
}

// the RMSNorm weight's element i
float nw_at(uint i) { return ld_elem(NW_T, pc.nw, pc.nw, i); }

void phase_a(uint gsg, uint nsg) {
    uint t = gl_LocalInvocationIndex, H = pc.H, HO = pc.HO, E = pc.ek & 0xffffu;
    uint ho4 = HO / 4u, h4 = H / 4u;
    for (uint i = t; i < ho4; i += WG) sm[i] = BufV4(pc.a).v[i];
    for (uint i = t; i < h4; i += WG) sm[ho4 + i] = BufV4(pc.x).v[i];
    barrier();
    uint64_t rb = row_bytes(WO_T, HO), sb = uint64_t(HO / 32u) * 2u;
    uint nv_o = HO / elems_per_vec(WO_T);
    for (uint j = gsg; j < H + 2u * E; j += nsg) {
        float s;
        if (j < H) s = row_part(WO_T, pc.wo + uint64_t(j) * rb, pc.wo + pc.wo_soff + uint64_t(j) * sb, nv_o, 0u);
        else if (j < H + E) s = row_part(VK_WT_F32, pc.fold + uint64_t(j - H) * H * 4u, 0ul, h4, ho4);
        else s = row_part(VK_WT_F32, pc.fold + uint64_t(E) * H * 4u + uint64_t(j - H - E) * HO * 4u, 0ul, ho4, 0u);
        s = sg_sum(s);
        if (SG_LANE == 0u) BufF32(j < H ? g_o + uint64_t(j) * 4u : g_raw + uint64_t(j - H) * 4u).v[0] = s;
    }
}

// phase B's weight loads of job j (slot j / I, row j % I): the gate and up rows, UB vectors per lane
const uint UB = 8u;
// (SPLIT: job j is row j % (k·I) of gate (j < k·I) or up, into g alone)
void load_pair(uint j, uint I, uint nv, uint64_t rb, out uvec4 g[UB], out uvec4 u[UB]) {
    uint kI = (pc.ek >> 16 & 0xffu) * I, m = SPLIT != 0u && j >= kI ? 1u : 0u, jj = j - m * kI;
    uint slot = jj / I, r = jj - slot * I;
    uint64_t gw = ex_a[2u * m * RR_MAX_K + slot] + uint64_t(r) * rb, uw = ex_a[2u * RR_MAX_K + slot] + uint64_t(r) * rb;
    [[unroll]] for (uint q = 0u; q < UB; q++) {
        uint vi = SG_LANE + q * SG_SIZE;
        g[q] = vi < nv ? BufUV4(gw).v[vi] : uvec4(0u);
        u[q] = SPLIT == 0u && vi < nv ? BufUV4(uw).v[vi] : uvec4(0u);
    }
}

void phase_b(uint gsg, uint nsg, out float scale) {
    uint t = gl_LocalInvocationIndex, H = pc.H, I = pc.I, E = pc.ek & 0xffffu, k = (pc.ek >> 16) & 0xffu;
    uint h4 = H / 4u, n4 = (E + 3u) / 4u;
    // the raw router halves, summed (rr_load's fold form, through coherent loads)
    for (uint i = t; i < n4; i += WG) {
        vec4 l;
        [[unroll]] for (uint c = 0u; c < 4u; c++) {
            uint e = 4u * i + c;
            l[c] = e < E ? CohF(g_raw).v[e] + CohF(g_raw).v[E + e] : NEG_RR;
        }
        rr_p4[i] = l;
    }
    // x' = x + o, and Σ x'²
    float ss = 0.0f;
    for (uint i = t; i < h4; i += WG) {
        vec4 v = BufV4(pc.x).v[i] + CohV4(g_o).v[i];
        sm[i] = v;
        ss += dot(v, v);
    }
    ss = wg_sum(ss);
    scale = 1.0f / sqrt(ss / float(H) + pc.eps);
    for (uint i = t; i < h4; i += WG) {
        vec4 v = sm[i] * scale;
        [[unroll]] for (uint c = 0u; c < 4u; c++) v[c] *= nw_at(4u * i + c);
        sm[i] = v;
    }
    rr_select_raw(E, k);  // barriers on both sides: sm and rr_top_e are complete after it
    if (t < k) {
        uint e = rr_top_e[t];
        expert(pc.tg, e, ex_a[t], ex_a[RR_MAX_K + t]);
        expert(pc.tu, e, ex_a[2u * RR_MAX_K + t], ex_a[3u * RR_MAX_K + t]);
        expert(pc.td, e, ex_a[4u * RR_MAX_K + t], ex_a[5u * RR_MAX_K + t]);
    }
    barrier();
    uint64_t rb = row_bytes(EX_T, H), sb = uint64_t(H / 32u) * 2u;
    uint nv = H / elems_per_vec(EX_T), xpv = elems_per_vec(EX_T) / 4u, nj = k * I * (SPLIT != 0u ? 2u : 1u);
    if (nv <= UB * SG_SIZE) {
        // PIPE: the next job's weights are loaded before this one's are used, so the weight stream does not stop
        // while a subgroup reduces
        uvec4 cg[UB], cu[UB];
        uint j = gsg;
        if (j < nj) load_pair(j, I, nv, rb, cg, cu);
        for (; j < nj; j += nsg) {
            uvec4 ng[UB], nu[UB];
            if (PIPE != 0u && j + nsg < nj) load_pair(j + nsg, I, nv, rb, ng, nu);
            uint kI = k * I, m = SPLIT != 0u && j >= kI ? 1u : 0u, jj = j - m * kI;
            uint slot = jj / I, r = jj - slot * I;
            uint64_t gs = ex_a[(2u * m + 1u) * RR_MAX_K + slot] + uint64_t(r) * sb,
                     us = ex_a[3u * RR_MAX_K + slot] + uint64_t(r) * sb;
            float g = 0.0f, u = 0.0f;
            [[unroll]] for (uint q = 0u; q < UB; q++) {
                uint vi = SG_LANE + q * SG_SIZE;
                if (vi < nv) {
                    g += vec_dot(EX_T, cg[q], gs, vi, vi * xpv);
                    if (SPLIT == 0u) u += vec_dot(EX_T, cu[q], us, vi, vi * xpv);
                }
            }
            g = sg_sum(g);
            if (SPLIT != 0u) {
                if (SG_LANE == 0u) BufF32(g_h).v[j] = g;  // gate rows, then up rows; combined in phase C
            } else {
                u = sg_sum(u);
                if (SG_LANE == 0u) BufF32(g_h).v[j] = silu(g) * u;
            }
            if (PIPE != 0u) {
                cg = ng;
                cu = nu;
            } else if (j + nsg < nj)
                load_pair(j + nsg, I, nv, rb, cg, cu);
        }
    } else {
        for (uint j = gsg; j < nj; j += nsg) {
            uint slot = j / I, r = j - slot * I;
            float g, u;
            row_pair(ex_a[slot] + uint64_t(r) * rb, ex_a[RR_MAX_K + slot] + uint64_t(r) * sb,
                     ex_a[2u * RR_MAX_K + slot] + uint64_t(r) * rb, ex_a[3u * RR_MAX_K + slot] + uint64_t(r) * sb,
                     nv, g, u);
            g = sg_sum(g);
            u = sg_sum(u);
            if (SG_LANE == 0u) BufF32(g_h).v[j] = silu(g) * u;
        }
    }
    // workgroup 0 writes the normalised row (matmul_norm_route's xn); the rest of what the op owes comes in phase C
    if (gl_WorkGroupID.x == 0u)
        for (uint i = t; i < h4; i += WG) BufV4(pc.xn).v[i] = sm[i];
}

// phase C's unit u of this subgroup: row gsg + (u / ng)·nsg, slots DS·(u % ng) .. +DS-1, DU vectors per lane each
const uint DU = 4u;
uvec4 g_w[DS][DU];  // the loaded unit (global so that the first can be loaded before the grid barrier)
void load_unit(uint r, uint grp, uint k, uint nv, uint64_t rb, out uvec4 w[DS][DU]) {
    [[unroll]] for (uint s = 0u; s < DS; s++) {
        uint j = grp * DS + s;
        uint64_t dw = ex_a[4u * RR_MAX_K + min(j, k - 1u)] + uint64_t(r) * rb;
        [[unroll]] for (uint q = 0u; q < DU; q++) {
            uint vi = SG_LANE + q * SG_SIZE;
            w[s][q] = j < k && vi < nv ? BufUV4(dw).v[vi] : uvec4(0u);
        }
    }
}

bool c_pipelined() { return PIPE != 0u && pc.I / elems_per_vec(DN_T) <= DU * SG_SIZE; }

// before the grid barrier: this subgroup's first unit of phase C (its addresses are known since phase B's selection)
void phase_c_preload(uint gsg) {
    uint I = pc.I, k = (pc.ek >> 16) & 0xffu;
    if (c_pipelined() && gsg < pc.H) load_unit(gsg, 0u, k, I / elems_per_vec(DN_T), row_bytes(DN_T, I), g_w);
}

void phase_c(uint gsg, uint nsg, float scale) {
    uint t = gl_LocalInvocationIndex, H = pc.H, I = pc.I, E = pc.ek & 0xffffu, k = (pc.ek >> 16) & 0xffu;
    bool renorm = (pc.ek >> 24) != 0u;
    uint hk4 = k * I / 4u, i4 = I / 4u, n4 = (E + 3u) / 4u;
    for (uint i = t; i < hk4; i += WG) {
        if (SPLIT != 0u) {
            vec4 g = CohV4(g_h).v[i], u = CohV4(g_h).v[hk4 + i];
            sm[i] = vec4(silu(g.x) * u.x, silu(g.y) * u.y, silu(g.z) * u.z, silu(g.w) * u.w);
        } else
            sm[i] = CohV4(g_h).v[i];
    }
    // every workgroup weighs its own selection: softmax of s·raw over all experts (subgroup 0, route_rank.glsl;
    // workgroup 0 also writes the logits), the selected ones' probabilities, renormalised if asked (rr_finish's
    // arithmetic); workgroup 0 writes ids and weights
    rr_softmax(n4, t, E, scale, gl_WorkGroupID.x == 0u ? pc.lo : 0ul);
    barrier();
    if (t == 0u) {
        float sum = 0.0f;
        for (uint j = 0u; j < k; j++) {
            uint e = rr_top_e[j];
            dn_w[j] = rr_p4[e / 4u][e % 4u] / rr_ms[1];
            sum += dn_w[j];
        }
        for (uint j = 0u; j < k; j++) {
            if (renorm) dn_w[j] = dn_w[j] / sum;
            if (gl_WorkGroupID.x == 0u) {
                BufI32(pc.ids).v[j] = int(rr_top_e[j]);
                BufF32(pc.wts).v[j] = dn_w[j];
            }
        }
    }
    barrier();
    uint64_t rb = row_bytes(DN_T, I), sb = uint64_t(I / 32u) * 2u;
    uint nv = I / elems_per_vec(DN_T), xpv = elems_per_vec(DN_T) / 4u;
    if (c_pipelined()) {
        uint ng = (k + DS - 1u) / DS, nrow = gsg < H ? (H - gsg + nsg - 1u) / nsg : 0u, nu = nrow * ng;
        float acc = 0.0f, xo = 0.0f;
        for (uint u = 0u; u < nu; u++) {
            uint r = gsg + (u / ng) * nsg, grp = u % ng;
            uvec4 wn[DS][DU];
            if (u + 1u < nu) load_unit(gsg + ((u + 1u) / ng) * nsg, (u + 1u) % ng, k, nv, rb, wn);
            // the residual and o_proj's output of the row: loaded with its first unit's use, their latency
            // overlapping the rest of the row
            if (grp == 0u) xo = SG_LANE == 0u ? BufF32(pc.x).v[r] + CohF(g_o).v[r] : 0.0f;
            [[unroll]] for (uint s = 0u; s < DS; s++) {
                uint j = grp * DS + s;
                float part = 0.0f;
                uint64_t ds = ex_a[5u * RR_MAX_K + min(j, k - 1u)] + uint64_t(r) * sb;
                [[unroll]] for (uint q = 0u; q < DU; q++) {
                    uint vi = SG_LANE + q * SG_SIZE;
                    if (j < k && vi < nv) part += vec_dot(DN_T, g_w[s][q], ds, vi, j * i4 + vi * xpv);
                }
                if (j < k) acc += dn_w[j] * part;
            }
            if (grp == ng - 1u) {
                acc = sg_sum(acc);
                if (SG_LANE == 0u) BufF32(pc.x).v[r] = xo + acc;
                acc = 0.0f;
            }
            g_w = wn;
        }
        return;
    }
    for (uint r = gsg; r < H; r += nsg) {
        float xo = SG_LANE == 0u ? BufF32(pc.x).v[r] + CohF(g_o).v[r] : 0.0f;
        float acc = 0.0f;
        for (uint j0 = 0u; j0 < k; j0 += DS) {
            float part[DS];
            [[unroll]] for (uint s = 0u; s < DS; s++) part[s] = 0.0f;
            for (uint v0 = SG_LANE; v0 < nv; v0 += 4u * SG_SIZE) {
                uvec4 w[DS][4];
                [[unroll]] for (uint s = 0u; s < DS; s++)
                    [[unroll]] for (uint q = 0u; q < 4u; q++) {
                        uint vi = v0 + q * SG_SIZE;
                        uint64_t dw = ex_a[4u * RR_MAX_K + min(j0 + s, k - 1u)] + uint64_t(r) * rb;
                        w[s][q] = j0 + s < k && vi < nv ? BufUV4(dw).v[vi] : uvec4(0u);
                    }
                [[unroll]] for (uint s = 0u; s < DS; s++)
                    [[unroll]] for (uint q = 0u; q < 4u; q++) {
                        uint vi = v0 + q * SG_SIZE;
                        uint64_t ds = ex_a[5u * RR_MAX_K + min(j0 + s, k - 1u)] + uint64_t(r) * sb;
                        if (j0 + s < k && vi < nv) part[s] += vec_dot(DN_T, w[s][q], ds, vi, (j0 + s) * i4 + vi * xpv);
                    }
            }
            [[unroll]] for (uint s = 0u; s < DS; s++)
                if (j0 + s < k) acc += dn_w[j0 + s] * part[s];
        }
        acc = sg_sum(acc);
        if (SG_LANE == 0u) BufF32(pc.x).v[r] = xo + acc;
    }
}

void main() {
    uint E = pc.ek & 0xffffu;
    g_raw = pc.scr + 16u;
    g_o = g_raw + uint64_t((2u * E + 3u) / 4u) * 16u;
    g_h = g_o + uint64_t((pc.H + 3u) / 4u) * 16u;
    uint nsg = gl_NumWorkGroups.x * N_SG, gsg = gl_WorkGroupID.x * N_SG + SG_ID;
    phase_a(gsg, nsg);
    if (NPH < 2u) return;
    grid_barrier();
    float scale;
    phase_b(gsg, nsg, scale);
    if (NPH < 3u) return;
    phase_c_preload(gsg);
    grid_barrier();
    phase_c(gsg, nsg, scale);
}
