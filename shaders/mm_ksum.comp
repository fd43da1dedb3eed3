#version 460
// mm_ksum.comp — the second half of matmul_cm.comp's split-K: y[i][r] (+)= Σ_z part[z][i][r] over the pc.pad
// partial planes of n × rows floats at pc.x (plane z at x + z·n·rows), summed in plane order (fixed, so results do
// not depend on timing). pc.y_stride is y's row stride.
// V4 = 0: one thread per output element. V4 = 1 (the host's choice where rows and y_stride are multiples of 4 and x,
// y 16-byte aligned): one thread per 4 consecutive elements of a row, 16-byte loads and stores; the same sums in the
// same order per element, so the same bits.
#define PC_MATMUL
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint V4 = 0;

void main() {
    uint idx = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    uint rows = pc.rows, total = pc.n * rows;
    if (V4 != 0u) {
        uint e = idx * 4u;
        if (e >= total) return;
        vec4 s = vec4(0.0f);
        for (uint z = 0; z < pc.pad; z++) s += BufV4(pc.x + (uint64_t(z) * total + e) * 4u).v[0];
        BufV4 y = BufV4(pc.y + (uint64_t(e / rows) * pc.y_stride + e % rows) * 4u);
        y.v[0] = pc.accumulate != 0 ? y.v[0] + s : s;
        return;
    }
    if (idx >= total) return;
    float s = 0.0f;
    for (uint z = 0; z < pc.pad; z++) s += BufF32(pc.x + (uint64_t(z) * total + idx) * 4u).v[0];
    BufF32 y = BufF32(pc.y + (uint64_t(idx / rows) * pc.y_stride + idx % rows) * 4u);
    y.v[0] = pc.accumulate != 0 ? y.v[0] + s : s;
}
