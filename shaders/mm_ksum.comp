#version 460
// mm_ksum.comp — the second half of matmul_cm.comp's split-K: y[i][r] (+)= Σ_z part[z][i][r] over the pc.pad
// partial planes of n × rows floats at pc.x (plane z at x + z·n·rows), summed in plane order (fixed, so results do
// not depend on timing). One thread per output element; pc.y_stride is y's row stride.
#define PC_MATMUL
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

void main() {
    uint idx = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    uint rows = pc.rows, total = pc.n * rows;
    if (idx >= total) return;
    float s = 0.0f;
    for (uint z = 0; z < pc.pad; z++) s += BufF32(pc.x + (uint64_t(z) * total + idx) * 4u).v[0];
    BufF32 y = BufF32(pc.y + (uint64_t(idx / rows) * pc.y_stride + idx % rows) * 4u);
    y.v[0] = pc.accumulate != 0 ? y.v[0] + s : s;
}
