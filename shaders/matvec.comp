#version 460
// matvec.comp — y = x · Wᵀ for a few x rows (decode), memory-bound: each subgroup owns RSG weight rows at a time
// and streams them with 16-byte loads (VEC=1; VEC=0 reads element by element for unaligned or odd shapes), U loads
// per row in flight per lane, accumulating in fp32 and reducing with one subgroup add per output. A workgroup
// covers ROWS_WG rows; grid y picks the x columns (dense), the (token, slot) entry (MoE gate+up) or the token
// (MoE down, where the workgroup's subgroups split the token's k experts and add their sums in a fixed order).
// NORM (dense, one x row): the workgroup first computes x's RMSNorm itself (x is short and shared by all rows, so
// recomputing it per workgroup costs less than a separate dispatch and barrier) and keeps the normalised row in
// shared memory, where the dot products read it; workgroup 0 also writes it out for later users (pc.ids).
// Mirrors the CPU back-end's matmul (y[i][r] = Σ_c x[i][c]·W[r][c]), its MoE expert loop and its norm_matvec
// (rms_norm: (x · 1/sqrt(mean(x²) + eps)) · w, then the matmul).
#define PC_MATVEC
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint WTYPE = 0;
layout(constant_id = 2) const uint RSG = 1;     // weight rows per subgroup pass (1 or 2)
layout(constant_id = 3) const uint NV = 1;      // x columns per workgroup (dense; 1..8)
layout(constant_id = 4) const uint MODE = 0;    // 0 dense, 1 MoE gate+up, 2 MoE down
layout(constant_id = 5) const uint VEC = 1;
layout(constant_id = 6) const uint ROWS_WG = 4; // rows per workgroup
layout(constant_id = 7) const uint U = 2;       // 16-byte loads per row in flight per lane (1, 2 or 4)
layout(constant_id = 8) const uint CVT = 1;     // 1: f16/q8 dequantized with bit operations (dq_vec_bits)
layout(constant_id = 9) const uint NORM = 0;    // 0: none; 1 + dtype of the RMSNorm weight (MODE 0, NV 1)
layout(constant_id = 10) const uint XS = 1;     // NORM: cols / 4 (the shared copy of the normalised x)
// MODE 1, one token: 0 = the expert of each slot from pc.ids; otherwise every workgroup selects the experts itself
// from the router logits at pc.lg (route_rank.glsl; bits 0-15 the expert count, bit 16 renormalise) and workgroup
// (0, 0) writes ids and weights (pc.ids, pc.wts) for the down projection. Bit 17 (FOLD, the folded router of
// vk_decode.c): pc.x is the residual row, not yet normalised, and pc.lg the router's two raw halves. The experts are
// ranked by the raw sums (the norm scale s > 0 keeps the order); the products take x ⊙ w (w the RMSNorm weight at
// pc.nw, NORM = 1 + its dtype) with Σx² gathered on the way, and are scaled by s = 1/sqrt(mean(x²) + eps) at the
// end (gate·xn = s·(gate·(x ⊙ w))), so no workgroup waits for the norm before its weight loads. Every workgroup
// writes its slice of the normalised row (pc.xn), and workgroup (0, 0) the logits s·raw (pc.lo), ids and weights.
layout(constant_id = 11) const uint SEL = 0;

#include "reduce.glsl"
#define RR_ON SEL
#include "route_rank.glsl"

const uint RMAX = 4;
const uint NVMAX = 8;
const uint UMAX = 4;
const uint NR = MODE == 1 ? 2 * RSG : RSG;  // rows in flight: gate+up computes a gate and an up row each
// FOLD is a macro: Debian 12's glslc mis-optimises a named spec-constant bool used in other constant expressions
#define FOLD (MODE == 1 && (SEL & 0x20000u) != 0u)
// bit 18 (PRE, with FOLD): the experts were selected beforehand and are in pc.ids (route_rank.glsl, rr_pre). Its
// negation is written out as (SEL & 0x40000u) == 0u below: Debian 12's glslc fails on a LogicalNot of this constant
#define PRE (FOLD && (SEL & 0x40000u) != 0u)

float part[RMAX][NVMAX];
shared float down_part[64 * RMAX];  // MODE 2: per-subgroup sums
shared vec4 xsh[XS];                // NORM: the normalised x row
uint64_t wr[RMAX], sr[RMAX], xr[NVMAX];
// the operands (the push constants) and the workgroup
uint64_t g_w, g_s, g_w2, g_x, g_y;
uint g_rows, g_cols, g_xs, g_ys, g_wgx, g_wgy;
float g_ss;     // FOLD: this lane's share of Σ x² (gathered in the first row group's pass)
bool g_first;   // FOLD: the first row group's pass

// FOLD: the RMSNorm weight's elements 4·i4 .. 4·i4 + 3 (f32, f16 or bf16; 16- or 8-byte aligned, the host checks)
vec4 nw4(uint i4) {
    if (NORM - 1u == VK_WT_F32) return BufV4(pc.nw).v[i4];
    uvec2 h = BufU2(pc.nw).v[i4];
    if (NORM - 1u == VK_WT_F16) return vec4(unpackHalf2x16(h.x), unpackHalf2x16(h.y));
    return vec4(uintBitsToFloat(h.x << 16), uintBitsToFloat(h.x & 0xffff0000u), uintBitsToFloat(h.y << 16),
                uintBitsToFloat(h.y & 0xffff0000u));
}

// FOLD: x's 16 bytes at word i as the products take them (x ⊙ w), Σx² gathered in the first pass
vec4 fold_x(vec4 x, uint i) {
    if (g_first) g_ss += dot(x, x);
    return x * nw4(i);
}

// one 16-byte weight vector v of row r against the x columns
void accumulate_vec(uint r, uint v, uvec4 wq, uint epv, uint nv) {
    vec4 w0, w1, w2, w3;
    if (CVT == 1) dq_vec_bits(WTYPE, wq, w0, w1, w2, w3);
    else dq_vec(WTYPE, wq, w0, w1, w2, w3);
    float d = WTYPE == VK_WT_Q8_0 ? f16_bits(ld_u16(sr[r] + uint64_t(v / 2) * 2u)) : 1.0f;
    if (NORM != 0) {
        uint xi = v * (epv / 4);
        float s = dot(w0, xsh[xi]);
        if (epv >= 8) s += dot(w1, xsh[xi + 1]);
        if (epv == 16) s += dot(w2, xsh[xi + 2]) + dot(w3, xsh[xi + 3]);
        part[r][0] += s * d;
        return;
    }
    [[unroll]] for (uint c = 0; c < NV; c++) {
        if (c >= nv) break;
        BufV4 xv = BufV4(xr[c]);
        uint xi = v * (epv / 4);
        float s = dot(w0, xv.v[xi]);
        if (epv >= 8) s += dot(w1, xv.v[xi + 1]);
        if (epv == 16) s += dot(w2, xv.v[xi + 2]) + dot(w3, xv.v[xi + 3]);
        part[r][c] += s * d;
    }
}

// one 16-byte weight vector of row r against x values already in registers (one x column, no NORM)
void accumulate_vec_x(uint r, uint v, uvec4 wq, uint epv, vec4 x0, vec4 x1, vec4 x2, vec4 x3) {
    vec4 w0, w1, w2, w3;
    if (CVT == 1) dq_vec_bits(WTYPE, wq, w0, w1, w2, w3);
    else dq_vec(WTYPE, wq, w0, w1, w2, w3);
    float d = WTYPE == VK_WT_Q8_0 ? f16_bits(ld_u16(sr[r] + uint64_t(v / 2) * 2u)) : 1.0f;
    float s = dot(w0, x0);
    if (epv >= 8) s += dot(w1, x1);
    if (epv == 16) s += dot(w2, x2) + dot(w3, x3);
    part[r][0] += s * d;
}

// part[r][c] += (lane's share of) W_row(wr[r]) · x(xr[c]) for r < NR, c < nv. The vector loop takes U strides per
// iteration, issuing all rows' loads before using them, to keep more memory requests in flight. With one x column
// (decode, the MoE pair) the x values of a weight vector are loaded once for all NR rows: gate and up, or the down
// projection's rows, share them (q8_0 needs 64 bytes of x per 16 bytes of weights, so x loads, not weight loads,
// bound the kernel otherwise).
void accumulate(uint cols, uint nv) {
    uint lane = SG_LANE, step = SG_SIZE;
    if (VEC == 1 && NV == 1 && (NORM == 0 || FOLD)) {
        uint epv = elems_per_vec(WTYPE);
        uint nvec = cols / epv, xpv = epv / 4;
        BufV4 xb = BufV4(xr[0]);
        uint v = lane;
        for (; v + (U - 1) * step < nvec; v += U * step) {
            uvec4 wq[RMAX][UMAX];
            vec4 xq[UMAX][4];
            [[unroll]] for (uint u = 0; u < U; u++)
                [[unroll]] for (uint r = 0; r < NR; r++) wq[r][u] = BufUV4(wr[r]).v[v + u * step];
            [[unroll]] for (uint u = 0; u < U; u++) {
                uint xi = (v + u * step) * xpv;
                xq[u][0] = xb.v[xi];
                xq[u][1] = xpv >= 2 ? xb.v[xi + 1] : vec4(0);
                xq[u][2] = xpv == 4 ? xb.v[xi + 2] : vec4(0);
                xq[u][3] = xpv == 4 ? xb.v[xi + 3] : vec4(0);
                if (FOLD)
                    [[unroll]] for (uint q = 0; q < xpv; q++) xq[u][q] = fold_x(xq[u][q], xi + q);
            }
            [[unroll]] for (uint u = 0; u < U; u++)
                [[unroll]] for (uint r = 0; r < NR; r++)
                    accumulate_vec_x(r, v + u * step, wq[r][u], epv, xq[u][0], xq[u][1], xq[u][2], xq[u][3]);
        }
        for (; v < nvec; v += step) {
            uint xi = v * xpv;
            vec4 x0 = xb.v[xi], x1 = xpv >= 2 ? xb.v[xi + 1] : vec4(0);
            vec4 x2 = xpv == 4 ? xb.v[xi + 2] : vec4(0), x3 = xpv == 4 ? xb.v[xi + 3] : vec4(0);
            if (FOLD) {
                x0 = fold_x(x0, xi);
                if (xpv >= 2) x1 = fold_x(x1, xi + 1);
                if (xpv == 4) x2 = fold_x(x2, xi + 2), x3 = fold_x(x3, xi + 3);
            }
            [[unroll]] for (uint r = 0; r < NR; r++) accumulate_vec_x(r, v, BufUV4(wr[r]).v[v], epv, x0, x1, x2, x3);
        }
    } else if (VEC == 1) {
        uint epv = elems_per_vec(WTYPE);
        uint nvec = cols / epv;
        uint v = lane;
        for (; v + (U - 1) * step < nvec; v += U * step) {
            uvec4 wq[RMAX][UMAX];
            [[unroll]] for (uint u = 0; u < U; u++)
                [[unroll]] for (uint r = 0; r < NR; r++) wq[r][u] = BufUV4(wr[r]).v[v + u * step];
            [[unroll]] for (uint u = 0; u < U; u++)
                [[unroll]] for (uint r = 0; r < NR; r++) accumulate_vec(r, v + u * step, wq[r][u], epv, nv);
        }
        for (; v < nvec; v += step) {
            [[unroll]] for (uint r = 0; r < NR; r++) accumulate_vec(r, v, BufUV4(wr[r]).v[v], epv, nv);
        }
    } else {
        for (uint col = lane; col < cols; col += step) {
            [[unroll]] for (uint r = 0; r < NR; r++) {
                float w = ld_elem(WTYPE, wr[r], sr[r], col);
                if (NORM != 0) {
                    part[r][0] += w * xsh[col / 4u][col % 4u];
                    continue;
                }
                [[unroll]] for (uint c = 0; c < NV; c++) {
                    if (c >= nv) break;
                    part[r][c] += w * BufF32(xr[c]).v[col];
                }
            }
        }
    }
}

void zero_part() {
    [[unroll]] for (uint r = 0; r < RMAX; r++)
        [[unroll]] for (uint c = 0; c < NVMAX; c++) part[r][c] = 0.0f;
}

// data and scale address of expert e's matrix from a table of (data, scale) address pairs
void expert(uint64_t table, int e, out uint64_t w, out uint64_t s) {
    BufU64 t = BufU64(table + uint64_t(e) * 16u);
    w = t.v[0];
    s = t.v[1];
}

// MODE 2 (MoE down): y[token][row] += Σ_slot weight · down_e[row] · h[entry] for the workgroup's RSG rows; the
// subgroups split the token's k slots, then their sums are added in subgroup order (deterministic)
void down_rows(uint rows, uint cols, uint64_t rb, uint64_t sb, uint row0) {
    uint tok = g_wgy;
    float total[RMAX];
    [[unroll]] for (uint r = 0; r < RMAX; r++) total[r] = 0.0f;
    for (uint j = SG_ID; j < pc.k; j += N_SG) {
        uint entry = tok * pc.k + j;
        int e = BufI32(pc.ids).v[entry];
        float wt = BufF32(pc.wts).v[entry];
        uint64_t dw, ds;
        expert(g_w, e, dw, ds);
        [[unroll]] for (uint r = 0; r < RSG; r++) {
            uint row = min(row0 + r, rows - 1);
            wr[r] = dw + uint64_t(row) * rb;
            sr[r] = ds + uint64_t(row) * sb;
            part[r][0] = 0.0f;
        }
        xr[0] = g_x + uint64_t(entry) * g_xs * 4u;
        accumulate(cols, 1);
        [[unroll]] for (uint r = 0; r < RSG; r++) total[r] += wt * part[r][0];
    }
    [[unroll]] for (uint r = 0; r < RSG; r++) {
        float s = sg_sum(total[r]);
        if (SG_LANE == 0) down_part[SG_ID * RSG + r] = s;
    }
    barrier();
    if (gl_LocalInvocationID.x < RSG) {
        uint r = gl_LocalInvocationID.x, row = row0 + r;
        float s = 0.0f;
        for (uint g = 0; g < N_SG; g++) s += down_part[g * RSG + r];
        if (row < rows) {
            BufF32 y = BufF32(g_y + (uint64_t(tok) * g_ys + row) * 4u);
            y.v[0] = y.v[0] + s;
        }
    }
}

// one workgroup's rows of a dense product (MODE 0) or of the MoE gate+up (MODE 1)
void rows_main(uint rows_wg, uint rsg) {
    uint rows = g_rows, cols = g_cols;
    uint64_t rb = row_bytes(WTYPE, cols), sb = uint64_t(cols / 32u) * 2u;
    uint row0 = g_wgx * rows_wg;
    if (PRE) {  // ranked beforehand: only the writing workgroup needs the raw halves
        if (g_wgx == 0u && g_wgy == 0u) rr_pre(pc.lg, SEL & 0xffffu, pc.k, pc.ids);
    } else if (FOLD) {  // the router's raw halves, ranked as they are (s > 0 comes later)
        rr_load(pc.lg, SEL & 0xffffu, true);
        rr_select_raw(SEL & 0xffffu, pc.k);
    } else if (MODE == 1 && SEL != 0)
        route_rank(pc.lg, SEL & 0xffffu, pc.k, (SEL & 0x10000u) != 0u, g_wgx == 0u && g_wgy == 0u, pc.ids, pc.wts);
    if (NORM != 0 && MODE == 0) {  // rms_norm.comp's arithmetic: scale = 1/sqrt(mean(x²) + eps), (x · scale) · w
        uint t = gl_LocalInvocationID.x;
        BufF32 x = BufF32(g_x);
        float ss = 0.0f;
        for (uint i = t; i < cols; i += WG) {
            float v = x.v[i];
            ss += v * v;
        }
        ss = wg_sum(ss);
        float scale = 1.0f / sqrt(ss / float(cols) + pc.eps);
        bool wout = g_wgx == 0u && g_wgy == 0u && pc.ids != 0ul;
        for (uint i = t; i < cols; i += WG) {
            float v = (x.v[i] * scale) * ld_elem(NORM - 1u, g_w2, g_w2, i);
            xsh[i / 4u][i % 4u] = v;
            if (wout) BufF32(pc.ids).v[i] = v;
        }
        barrier();
    }
    g_ss = 0.0f;
    g_first = true;
    float fscale = 1.0f;  // FOLD: the norm scale, known after the first row group
    for (uint rbase = SG_ID * rsg; rbase < rows_wg; rbase += N_SG * rsg) {
        zero_part();
        uint nv = 1;
        if (MODE == 0) {
            uint col0 = g_wgy * NV;
            nv = min(NV, pc.n - col0);
            [[unroll]] for (uint r = 0; r < NR; r++) {
                uint row = min(row0 + rbase + r, rows - 1);  // a tail row re-reads the last row, unwritten
                wr[r] = g_w + uint64_t(row) * rb;
                sr[r] = g_s + uint64_t(row) * sb;
            }
            [[unroll]] for (uint c = 0; c < NV; c++)
                xr[c] = g_x + uint64_t(min(col0 + c, pc.n - 1)) * g_xs * 4u;
            accumulate(cols, nv);
        } else {
            uint entry = g_wgy, tok = entry / pc.k;
            int e = SEL != 0 && (SEL & 0x40000u) == 0u ? int(rr_top_e[entry % pc.k]) : BufI32(pc.ids).v[entry];
            uint64_t gw, gs, uw, us;
            expert(g_w, e, gw, gs);
            expert(g_w2, e, uw, us);
            [[unroll]] for (uint r = 0; r < RSG; r++) {
                uint row = min(row0 + rbase + r, rows - 1);
                wr[r] = gw + uint64_t(row) * rb;
                sr[r] = gs + uint64_t(row) * sb;
                wr[r + RSG] = uw + uint64_t(row) * rb;
                sr[r + RSG] = us + uint64_t(row) * sb;
            }
            xr[0] = g_x + uint64_t(tok) * g_xs * 4u;
            accumulate(cols, 1);
        }

        // reduce and write
        uint lane = SG_LANE;
        if (FOLD && g_first) {  // every lane of every subgroup summed the same x in the same order: the same scale
            fscale = 1.0f / sqrt(sg_sum(g_ss) / float(cols) + pc.eps);
            g_first = false;
        }
        if (MODE != 0) {
            [[unroll]] for (uint r = 0; r < RSG; r++) {
                float g = sg_sum(part[r][0]) * fscale;
                float u = sg_sum(part[r + RSG][0]) * fscale;
                uint row = row0 + rbase + r;
                if (lane == 0 && row < rows) BufF32(g_y).v[g_wgy * g_ys + row] = silu(g) * u;
            }
        } else {
            uint col0 = g_wgy * NV;
            [[unroll]] for (uint r = 0; r < RSG; r++) {
                [[unroll]] for (uint c = 0; c < NV; c++) {
                    if (c >= nv) break;
                    float s = sg_sum(part[r][c]);
                    uint row = row0 + rbase + r;
                    if (lane == 0 && row < rows) {
                        BufF32 y = BufF32(g_y + (uint64_t(col0 + c) * g_ys + row) * 4u);
                        y.v[0] = pc.accumulate != 0 ? y.v[0] + s : s;
                    }
                }
            }
        }
    }
    if (FOLD) {
        // this workgroup's slice of the normalised row (rms_norm.comp's arithmetic: (x · scale) · w), then the
        // routing's outputs from workgroup (0, 0)
        uint nwg = gl_NumWorkGroups.x * gl_NumWorkGroups.y, wid = g_wgy * gl_NumWorkGroups.x + g_wgx;
        uint per = (cols + nwg - 1u) / nwg, end = min(cols, (wid + 1u) * per);
        if (SG_ID == 0u)  // subgroup 0 always had a row group, so its scale is set
            for (uint i = wid * per + SG_LANE; i < end; i += SG_SIZE)
                BufF32(pc.xn).v[i] = (BufF32(g_x).v[i] * fscale) * ld_elem(NORM - 1u, pc.nw, pc.nw, i);
        if (g_wgx == 0u && g_wgy == 0u)
            rr_finish(SEL & 0xffffu, pc.k, (SEL & 0x10000u) != 0u, (SEL & 0x40000u) != 0u ? 0ul : pc.ids, pc.wts,
                      fscale, pc.lo);
    }
}

void main() {
    g_w = pc.w, g_s = pc.s, g_w2 = pc.w2, g_x = pc.x, g_y = pc.y;
    g_rows = pc.rows, g_cols = pc.cols, g_xs = pc.x_stride, g_ys = pc.y_stride;
    g_wgx = gl_WorkGroupID.x, g_wgy = gl_WorkGroupID.y;
    if (MODE == 2) {
        down_rows(g_rows, g_cols, row_bytes(WTYPE, g_cols), uint64_t(g_cols / 32u) * 2u, g_wgx * ROWS_WG);
        return;
    }
    rows_main(ROWS_WG, RSG);
}
