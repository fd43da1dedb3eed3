#version 460
// rms_norm.comp — per-row normalisation, one workgroup per row (rows may be attention heads). In place is fine:
// every thread writes only the elements it reads itself, after the reductions.
// MODE 0 RMSNorm: y = x / sqrt(mean(x²) + eps) * w (HF Qwen3RMSNorm in fp32, the CPU back-end's rms_norm).
// MODE 1 LayerNorm: y = (x - mean) / sqrt(var + eps) * w + b, biased variance from a second pass over x
// (torch.nn.LayerNorm, the CPU back-end's layer_norm).
#define PC_NORM
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint WTYPE = 0;
layout(constant_id = 2) const uint MODE = 0;
layout(constant_id = 3) const uint BTYPE = 0;  // bias weight type (MODE 1)

#include "reduce.glsl"

void main() {
    uint row = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (row >= pc.rows) return;  // uniform per workgroup
    uint dim = pc.dim, t = gl_LocalInvocationID.x;
    uint64_t xa = pc.x + uint64_t(row) * dim * 4u, ya = pc.y + uint64_t(row) * dim * 4u;
    float mean = 0.0f, scale;
    if (MODE == 0) {
        float ss = 0.0f;
        for (uint i = t; i < dim; i += WG) {
            float v = BufF32(xa).v[i];
            ss += v * v;
        }
        ss = wg_sum(ss);
        scale = 1.0f / sqrt(ss / float(dim) + pc.eps);
    } else {
        float s = 0.0f;
        for (uint i = t; i < dim; i += WG) s += BufF32(xa).v[i];
        mean = wg_sum(s) / float(dim);
        float q = 0.0f;
        for (uint i = t; i < dim; i += WG) {
            float d = BufF32(xa).v[i] - mean;
            q += d * d;
        }
        scale = 1.0f / sqrt(wg_sum(q) / float(dim) + pc.eps);
    }
    if (MODE == 0 && pc.y16 != 0ul) {  // two elements a thread, the fp16 pair as cm_x16.comp rounds it
        uint64_t ha = pc.y16 + uint64_t(row) * dim * 2u;
        for (uint j = t; 2u * j < dim; j += WG) {
            uint i = 2u * j;
            float v0 = BufF32(xa).v[i] * scale * ld_elem(WTYPE, pc.w, pc.s, i);
            float v1 = BufF32(xa).v[i + 1u] * scale * ld_elem(WTYPE, pc.w, pc.s, i + 1u);
            BufF32(ya).v[i] = v0;
            BufF32(ya).v[i + 1u] = v1;
            BufU32(ha).v[j] = packHalf2x16(clamp(vec2(v0, v1), vec2(-65504.0f), vec2(65504.0f)));
        }
        return;
    }
    for (uint i = t; i < dim; i += WG) {
        float v = (BufF32(xa).v[i] - mean) * scale * ld_elem(WTYPE, pc.w, pc.s, i);
        if (MODE == 1 && pc.has_bias != 0u) v += ld_elem(BTYPE, pc.b, pc.bs, i);
        BufF32(ya).v[i] = v;
    }
}
