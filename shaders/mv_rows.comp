#version 460
// mv_rows.comp — y = W · x for a few long fp32 rows: the folded decode router's Rw·x and M·a (vk_decode.c, 128
// rows of 2048 / 4096). One workgroup per row: every invocation issues its NPL 16-byte loads of the row and of x at
// once, then one workgroup sum (fixed order). matvec.comp's layout (a subgroup per row, two loads per lane in flight) needs
// 16 round trips to memory for a 16 KB row and gives 128 rows only 32 workgroups; here a row is one round trip.
// Mirrors the CPU back-end's matmul (y[r] = Σ_c W[r][c]·x[c]) up to the order of the fp32 sum.
#define PC_MATVEC
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint NPL = 4;  // 16-byte words per invocation: ceil(cols / 4 / WG)

#include "reduce.glsl"

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
}
