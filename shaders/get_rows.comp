#version 460
// get_rows.comp — out[i][c] = table[ids[i]][c] for any weight type (embedding lookup). One thread per element;
// an id outside the table yields a zero row rather than a read out of bounds.
// Mirrors the CPU back-end's get_rows (ob_row_to_f32 of row ids[i]).
#define PC_ROWS
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint WTYPE = 0;

void main() {
    uint idx = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    uint cols = pc.cols;
    if (idx >= pc.n * cols) return;
    uint i = idx / cols, c = idx % cols;
    int id = BufI32(pc.ids).v[i];
    float v = 0.0f;
    if (id >= 0 && uint(id) < pc.rows)
        v = ld_elem(WTYPE, pc.w + uint64_t(id) * row_bytes(WTYPE, cols), pc.s + uint64_t(id) * (cols / 32u) * 2u, c);
    BufF32(pc.dst).v[idx] = v;
}
