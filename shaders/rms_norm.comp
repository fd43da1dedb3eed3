#version 460
// rms_norm.comp — per-row normalisation, one workgroup per row (rows may be attention heads). In place is fine:
// every thread writes only the elements it reads itself, after the reductions.
// MODE 0 RMSNorm: y = x / sqrt(mean(x²) + eps) * w (HF Qwen3RMSNorm in fp32, the CPU back-end's rms_norm); with
// has_bias != 0 (KSUM, below) x first takes an owed split-K sum.
// MODE 1 LayerNorm: y = (x - mean) / sqrt(var + eps) * w + b, biased variance from a second pass over x
// (torch.nn.LayerNorm, the CPU back-end's layer_norm).
#define PC_NORM
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint WTYPE = 0;
layout(constant_id = 2) const uint MODE = 0;
layout(constant_id = 3) const uint BTYPE = 0;  // bias weight type (MODE 1)

// KSD: the row length (dim) the KSUM form (below) keeps in shared memory; 1 in the plain pipeline (the host sets it
// exactly when it passes has_bias != 0 in MODE 0)
layout(constant_id = 4) const uint KSD = 1;
shared float xrow[KSD];
#define XIN(i) (KSD > 1u ? xrow[i] : BufF32(xa).v[i])

#include "reduce.glsl"

void main() {
    uint row = gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x;
    if (row >= pc.rows) return;  // uniform per workgroup
    uint dim = pc.dim, t = gl_LocalInvocationID.x;
    uint64_t xa = pc.x + uint64_t(row) * dim * 4u, ya = pc.y + uint64_t(row) * dim * 4u;
    float mean = 0.0f, scale;
    if (MODE == 0 && pc.has_bias != 0u) {
        // KSUM (the owed split-K sum of the product that added into x, vk_ksum_take): x += the has_bias partial
        // planes at pc.b first (planes of rows × dim floats), summed in plane order and then added to x as
        // mm_ksum.comp does (the same bits), written back and kept in xrow for the output loops below (which may
        // take other elements per thread); the sum of squares in the same order as the plain form
        uint64_t pa = pc.b + uint64_t(row) * dim * 4u, plane = uint64_t(pc.rows) * dim * 4u;
        float ss = 0.0f;
        for (uint i = t; i < dim; i += WG) {
            float s = 0.0f;
            for (uint z = 0; z < pc.has_bias; z++) s += BufF32(pa + z * plane).v[i];
            float v = BufF32(xa).v[i] + s;
            BufF32(xa).v[i] = v;
            if (KSD > 1u) xrow[i] = v;
            ss += v * v;
        }
        ss = wg_sum(ss);  // (its barriers make xrow visible)
        scale = 1.0f / sqrt(ss / float(dim) + pc.eps);
    } else if (MODE == 0) {
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
            float v0 = XIN(i) * scale * ld_elem(WTYPE, pc.w, pc.s, i);
            float v1 = XIN(i + 1u) * scale * ld_elem(WTYPE, pc.w, pc.s, i + 1u);
            BufF32(ya).v[i] = v0;
            BufF32(ya).v[i + 1u] = v1;
            BufU32(ha).v[j] = packHalf2x16(clamp(vec2(v0, v1), vec2(-65504.0f), vec2(65504.0f)));
        }
        return;
    }
    for (uint i = t; i < dim; i += WG) {
        float v = (XIN(i) - mean) * scale * ld_elem(WTYPE, pc.w, pc.s, i);
        if (MODE == 1 && pc.has_bias != 0u) v += ld_elem(BTYPE, pc.b, pc.bs, i);
        BufF32(ya).v[i] = v;
    }
}
