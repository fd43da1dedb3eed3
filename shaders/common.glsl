// common.glsl — pieces every kernel shares: buffer-reference types (all memory is reached through device
// addresses from push constants), weight element loads for every dtype at any legal alignment, the 16-byte
// vector dequantizers, and accurate exp / sin / cos (the built-ins are only loosely specified in Vulkan:
// exp is 3 + 2|x| ulp, sin/cos 2^-11 absolute and only on [-pi, pi]).
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_buffer_reference2 : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#extension GL_EXT_shader_explicit_arithmetic_types_int32 : require
#extension GL_EXT_control_flow_attributes : require
#extension GL_GOOGLE_include_directive : require

#include "vk_push.h"

layout(buffer_reference, std430, buffer_reference_align = 4) buffer BufF32 { float v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer BufI32 { int v[]; };
layout(buffer_reference, std430, buffer_reference_align = 4) buffer BufU32 { uint v[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) buffer BufV4 { vec4 v[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) readonly buffer BufUV4 { uvec4 v[]; };
layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer BufU64 { uint64_t v[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) buffer BufU4 { uvec4 v[]; };  // writable 16-byte words
layout(buffer_reference, std430, buffer_reference_align = 8) readonly buffer BufU2 { uvec2 v[]; };

// ---- weight elements ------------------------------------------------------------------------------------------
// 16-bit and 8-bit values are read from the aligned 32-bit word that holds them, so no 8/16-bit storage feature
// is needed and any 2-byte (f16/bf16) or 1-byte (q8 quants) alignment works.
uint ld_u16(uint64_t a) {
    uint w = BufU32(a & ~uint64_t(3)).v[0];
    return (uint(a) & 2u) != 0u ? (w >> 16) : (w & 0xffffu);
}
int ld_i8(uint64_t a) {
    uint w = BufU32(a & ~uint64_t(3)).v[0];
    return bitfieldExtract(int(w), int(uint(a) & 3u) * 8, 8);
}
float f16_bits(uint h) { return unpackHalf2x16(h).x; }
float bf16_bits(uint h) { return uintBitsToFloat(h << 16); }

// ---- the KV cache: fp32, or fp16 (IEEE half, see vk_ops.c) ---------------------------------------------------
// Cached values (post-k_norm/RoPE keys, values) are far inside fp16's range; a store clamps to ±65504 anyway, so an
// outlier becomes the largest finite half instead of inf. Two values as one 32-bit word of halves (x low):
uint kv_pack2(float x, float y) { return packHalf2x16(clamp(vec2(x, y), vec2(-65504.0f), vec2(65504.0f))); }
// x as the fp16 cache keeps it (what a later read of the stored value gives)
float kv_round(float x) { return unpackHalf2x16(kv_pack2(x, 0.0f)).x; }
// element e of a cache at base: fp16 (f16 = true) or fp32
float ld_kv(bool f16, uint64_t base, uint64_t e) {
    return f16 ? f16_bits(ld_u16(base + e * 2u)) : uintBitsToFloat(BufU32(base + e * 4u).v[0]);
}
// 8 halves of a 16-byte word as two vec4 (elements 0..3, 4..7)
void kv_unpack8(uvec4 u, out vec4 a, out vec4 b) {
    a = vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y));
    b = vec4(unpackHalf2x16(u.z), unpackHalf2x16(u.w));
}

// bytes of one row of `cols` elements
uint64_t row_bytes(uint wt, uint cols) {
    return uint64_t(cols) * (wt == VK_WT_F32 ? 4u : wt == VK_WT_Q8_0 ? 1u : 2u);
}
// element col of a row: wrow = address of the row's data, srow = address of the row's q8 scales
float ld_elem(uint wt, uint64_t wrow, uint64_t srow, uint col) {
    if (wt == VK_WT_F32) return uintBitsToFloat(BufU32(wrow + uint64_t(col) * 4u).v[0]);
    if (wt == VK_WT_F16) return f16_bits(ld_u16(wrow + uint64_t(col) * 2u));
    if (wt == VK_WT_BF16) return bf16_bits(ld_u16(wrow + uint64_t(col) * 2u));
    return float(ld_i8(wrow + uint64_t(col))) * f16_bits(ld_u16(srow + uint64_t(col / 32u) * 2u));
}

// ---- 16-byte vectors: 4 f32, 8 f16/bf16 or 16 q8 quants (scale applied by the caller) -----------------------
uint elems_per_vec(uint wt) { return wt == VK_WT_F32 ? 4u : wt == VK_WT_Q8_0 ? 16u : 8u; }

// dequantizes one uvec4 into w[0..elems_per_vec)
void dq_vec(uint wt, uvec4 u, out vec4 w0, out vec4 w1, out vec4 w2, out vec4 w3) {
    if (wt == VK_WT_F32) {
        w0 = uintBitsToFloat(u);
        w1 = w2 = w3 = vec4(0);
    } else if (wt == VK_WT_F16) {
        w0 = vec4(unpackHalf2x16(u.x), unpackHalf2x16(u.y));
        w1 = vec4(unpackHalf2x16(u.z), unpackHalf2x16(u.w));
        w2 = w3 = vec4(0);
    } else if (wt == VK_WT_BF16) {
        w0 = uintBitsToFloat(uvec4(u.x << 16, u.x & 0xffff0000u, u.y << 16, u.y & 0xffff0000u));
        w1 = uintBitsToFloat(uvec4(u.z << 16, u.z & 0xffff0000u, u.w << 16, u.w & 0xffff0000u));
        w2 = w3 = vec4(0);
    } else {
        ivec4 a = ivec4(u);
        w0 = vec4(bitfieldExtract(a.x, 0, 8), bitfieldExtract(a.x, 8, 8), bitfieldExtract(a.x, 16, 8),
                  bitfieldExtract(a.x, 24, 8));
        w1 = vec4(bitfieldExtract(a.y, 0, 8), bitfieldExtract(a.y, 8, 8), bitfieldExtract(a.y, 16, 8),
                  bitfieldExtract(a.y, 24, 8));
        w2 = vec4(bitfieldExtract(a.z, 0, 8), bitfieldExtract(a.z, 8, 8), bitfieldExtract(a.z, 16, 8),
                  bitfieldExtract(a.z, 24, 8));
        w3 = vec4(bitfieldExtract(a.w, 0, 8), bitfieldExtract(a.w, 8, 8), bitfieldExtract(a.w, 16, 8),
                  bitfieldExtract(a.w, 24, 8));
    }
}

// The same with integer/bit operations instead of the conversion instructions (which run at a fraction of the
// FMA rate on NVIDIA): f16 halves are moved into fp32 position and rescaled by 2^112 (exact for normal and
// subnormal halves; inf/NaN weights are not expected), int8 bytes become 2^23 + (b + 128) and lose the offset.
void dq_vec_bits(uint wt, uvec4 u, out vec4 w0, out vec4 w1, out vec4 w2, out vec4 w3) {
    if (wt == VK_WT_F16) {
        const float P112 = 5.192296858534828e33f;
        uvec4 lo = (u & 0x7fffu) << 13, hi = (u >> 3) & 0x0fffe000u;
        vec4 fl = uintBitsToFloat(lo) * P112, fh = uintBitsToFloat(hi) * P112;
        fl = uintBitsToFloat(floatBitsToUint(fl) | ((u & 0x8000u) << 16));
        fh = uintBitsToFloat(floatBitsToUint(fh) | (u & 0x80000000u));
        w0 = vec4(fl.x, fh.x, fl.y, fh.y);
        w1 = vec4(fl.z, fh.z, fl.w, fh.w);
        w2 = w3 = vec4(0);
    } else if (wt == VK_WT_Q8_0) {
        const float OFF = 8388736.0f; /* 2^23 + 128 */
        uvec4 t = u ^ 0x80808080u;
        w0 = uintBitsToFloat(uvec4(t.x & 0xffu, (t.x >> 8) & 0xffu, (t.x >> 16) & 0xffu, t.x >> 24) | 0x4b000000u) - OFF;
        w1 = uintBitsToFloat(uvec4(t.y & 0xffu, (t.y >> 8) & 0xffu, (t.y >> 16) & 0xffu, t.y >> 24) | 0x4b000000u) - OFF;
        w2 = uintBitsToFloat(uvec4(t.z & 0xffu, (t.z >> 8) & 0xffu, (t.z >> 16) & 0xffu, t.z >> 24) | 0x4b000000u) - OFF;
        w3 = uintBitsToFloat(uvec4(t.w & 0xffu, (t.w >> 8) & 0xffu, (t.w >> 16) & 0xffu, t.w >> 24) | 0x4b000000u) - OFF;
    } else {
        dq_vec(wt, u, w0, w1, w2, w3);
    }
}

// ---- accurate transcendental functions ------------------------------------------------------------------------
// exp(x) to about 1 ulp: x = n·ln2 + r with ln2 split in two (the high part has few bits, so n·C1 is exact),
// then a degree-6 minimax polynomial on |r| <= ln2/2 (the classic single-precision coefficients of Cephes expf).
float exp_acc(float x) {
    if (x > 88.72283f) return uintBitsToFloat(0x7f800000u);
    if (x < -103.0f) return 0.0f;
    float n = floor(x * 1.44269504088896341f + 0.5f);
    precise float r = x - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float z = r * r;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * z + r + 1.0f;
    // 2^n in two steps so that n down to -149 (subnormal results) and up to 128 stay representable
    int ni = int(n);
    int h = ni / 2;
    return p * uintBitsToFloat(uint(h + 127) << 23) * uintBitsToFloat(uint(ni - h + 127) << 23);
}

// sin and cos of an fp32 angle, accurate to about 1 ulp for |x| < 1e5. Cody–Waite reduction by pi/2 with three
// 8-bit pieces of pi/2 (each k·P_i is exact for k < 2^16, the first two differences are exact, the third
// rounds once at the size of the result) plus a full-precision tail, then the Cephes single-precision minimax
// polynomials on [-pi/4, pi/4].
void sincos_acc(float x, out float s, out float c) {
    float k = floor(x * 0.636619772367581343f + 0.5f);
    precise float r = x - k * 1.5703125f;            // 201/2^7: pi/2 to 8 bits
    r = r - k * 4.825592041015625e-4f;                 // 253/2^19: the next 8 bits
    r = r - k * 1.2665987014770508e-6f;                // 85/2^26: the next 8 bits
    r = r - k * 9.920935796805404e-10f;                // the rest of pi/2, rounded
    float z = r * r;
    float sp = ((-1.9515295891e-4f * z + 8.3321608736e-3f) * z - 1.6666654611e-1f) * z * r + r;
    float cp =
        ((2.443315711809948e-5f * z - 1.388731625493765e-3f) * z + 4.166664568298827e-2f) * z * z - 0.5f * z + 1.0f;
    int q = int(k) & 3;
    if (q == 0) { s = sp; c = cp; }
    else if (q == 1) { s = cp; c = -sp; }
    else if (q == 2) { s = -sp; c = -cp; }
    else { s = -cp; c = sp; }
}

float silu(float g) { return g / (1.0f + exp_acc(-g)); }
