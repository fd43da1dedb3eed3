#version 460
// ew.comp — element-wise ops, four elements per thread where alignment allows (VEC) and one otherwise.
// OP 0 add: b[i] += a[i].  OP 1 swiglu: dst[i] = silu(a[i]) * b[i] (dst may alias a).
// OP 2 add_bias: b[i] += bias[i % dim] (a = bias of weight type WTYPE, dst = its q8 scales; element-wise only).
// OP 3 gelu (erf): dst[i] = 0.5·a·(1 + erf(a/√2)).  OP 4 gelu (tanh): 0.5·a·(1 + tanh(√(2/π)(a + 0.044715a³))).
// Mirrors the CPU back-end's add, swiglu (silu(g) = g / (1 + exp(-g))), add_bias and gelu.
#define PC_EW
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint OP = 0;
layout(constant_id = 2) const uint VEC = 1;
layout(constant_id = 3) const uint WTYPE = 0;

// erfc to ~1.2e-7 relative everywhere: the Chebyshev fit t·exp(-z² + P(t)), t = 1/(1 + z/2), of Numerical
// Recipes' erfcc (the built-in GLSL library has no erf)
float erfc_acc(float x) {
    float z = abs(x), t = 1.0f / (1.0f + 0.5f * z);
    float p = -0.82215223f + t * 0.17087277f;
    p = 1.48851587f + t * p;
    p = -1.13520398f + t * p;
    p = 0.27886807f + t * p;
    p = -0.18628806f + t * p;
    p = 0.09678418f + t * p;
    p = 0.37409196f + t * p;
    p = 1.00002368f + t * p;
    p = -1.26551223f + t * p;
    float r = t * exp_acc(-z * z + p);
    return x >= 0.0f ? r : 2.0f - r;
}

float tanh_acc(float u) {
    float e = exp_acc(2.0f * abs(u));
    float r = 1.0f - 2.0f / (e + 1.0f);
    return u < 0.0f ? -r : r;
}

float apply(float a, float b) {
    if (OP == 0) return a + b;
    if (OP == 1) return silu(a) * b;
    if (OP == 3) return 0.5f * a * erfc_acc(-a * 0.70710678118654752f);
    return 0.5f * a * (1.0f + tanh_acc(0.7978845608028654f * (a + 0.044715f * a * a * a)));
}

void main() {
    uint t = (gl_WorkGroupID.y * pc.groups_x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    uint64_t o = OP == 0 || OP == 2 ? pc.b : pc.dst;
    if (VEC == 1) {
        uint i = t * 4u;
        if (i + 3u < pc.count) {
            vec4 a = BufV4(pc.a).v[t], b = OP >= 3 ? vec4(0) : BufV4(pc.b).v[t];
            BufV4(o).v[t] = vec4(apply(a.x, b.x), apply(a.y, b.y), apply(a.z, b.z), apply(a.w, b.w));
        } else {
            for (; i < pc.count; i++) BufF32(o).v[i] = apply(BufF32(pc.a).v[i], OP >= 3 ? 0.0f : BufF32(pc.b).v[i]);
        }
    } else if (t < pc.count) {
        if (OP == 2) {
            uint c = t % pc.dim;
            BufF32(pc.b).v[t] += ld_elem(WTYPE, pc.a, pc.dst, c);  // dst carries the bias's q8 scale address
        } else {
            BufF32(o).v[t] = apply(BufF32(pc.a).v[t], OP >= 3 ? 0.0f : BufF32(pc.b).v[t]);
        }
    }
}
