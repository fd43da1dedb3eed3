#version 460
// mvq8.comp — decode matrix-vector products of Q8_0 weights against int8 activations (opt-in: OMNI_VK_Q8_INT8=1,
// see vk_ops.c): y = x · Wᵀ for one x row (MODE 0), the MoE gate+up pair h = silu(gate_e·x)⊙(up_e·x) per (token,
// slot) entry (MODE 1) and the MoE down projection y[token] += Σ_slot w·down_e·h (MODE 2), the modes of matvec.comp.
// With fp32 activations a Q8_0 kernel reads 4 bytes of x per weight byte and converts every quant to fp32, so it is
// bound by those instructions, not by memory. Here every workgroup first quantizes its x row(s) into shared memory as
// llama.cpp's q8 activations do: per block of 32, d = max|x| / 127 and q = round(x / d) in [-127, 127]; then a
// 16-byte weight vector meets its 16 x quants in four packed 4×8-bit integer dot products (OpSDotKHR through
// GL_EXT_spirv_intrinsics: Debian 12's glslc has no GL_EXT_integer_dot_product), and each half block adds
// float(Σ q_w·q_x) · d_w · d_x. The result differs from the fp32-activation kernels by the activations' rounding
// (about 0.4% of a block's largest value per element; the tests state the tolerance).
// Requires subgroups with shuffle (the block maximum over 8 lanes), cols % 32 == 0, 16-byte aligned rows and x.
#define PC_MATVEC
#include "common.glsl"
#extension GL_EXT_spirv_intrinsics : require
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#extension GL_KHR_shader_subgroup_shuffle : require

spirv_instruction(extensions = ["SPV_KHR_integer_dot_product"], capabilities = [6019, 6018], id = 4450)
int sdot4x8(int a, int b, spirv_literal int fmt);

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 128;
layout(constant_id = 1) const uint MODE = 0;  // 0 dense, 1 MoE gate+up, 2 MoE down
layout(constant_id = 2) const uint RSG = 1;   // rows per subgroup (MODE 2: per workgroup)
layout(constant_id = 3) const uint XQ = 128;  // shared x quants in uvec4 (16 quants each): cols/16 per x row
layout(constant_id = 4) const uint XB = 64;   // shared x block scales: cols/32 per x row

const uint NR = MODE == 1u ? 2u * RSG : RSG;
const uint RMAX = 8u;

shared uvec4 xq[XQ];
shared float xd[XB];
shared float down_part[32 * 4];

void expert(uint64_t table, int e, out uint64_t w, out uint64_t s) {
    BufU64 t = BufU64(table + uint64_t(e) * 16u);
    w = t.v[0];
    s = t.v[1];
}

// quantizes n_rows x rows of cols floats (row j at xa + j·stride floats) into xq/xd (row j at j·cols/16, j·cols/32);
// 8 consecutive invocations share a block of 32 (4 values each)
void quantize_x(uint64_t xa, uint stride, uint n_rows, uint cols) {
    uint n4 = cols / 4u;
    for (uint i = gl_LocalInvocationID.x; i < n_rows * n4; i += WG) {
        uint j = i / n4, c4 = i % n4;
        vec4 v = BufV4(xa + (uint64_t(j) * stride + c4 * 4u) * 4u).v[0];
        vec4 a = abs(v);
        float m = max(max(a.x, a.y), max(a.z, a.w));
        m = max(m, subgroupShuffleXor(m, 1u));
        m = max(m, subgroupShuffleXor(m, 2u));
        m = max(m, subgroupShuffleXor(m, 4u));
        float d = m / 127.0f, id = m > 0.0f ? 127.0f / m : 0.0f;
        ivec4 q = clamp(ivec4(round(v * id)), ivec4(-127), ivec4(127));
        uint packed = (uint(q.x) & 0xffu) | ((uint(q.y) & 0xffu) << 8) | ((uint(q.z) & 0xffu) << 16) |
                      ((uint(q.w) & 0xffu) << 24);
        uint o = j * (cols / 4u) + c4;  // packed int index: uvec4 o/4, component o%4
        xq[o / 4u][o % 4u] = packed;
        if ((c4 & 7u) == 0u) xd[j * (cols / 32u) + c4 / 8u] = d;
    }
    barrier();
}

// one 16-byte weight vector (16 quants) against the 16 x quants of the same columns: Σ q_w·q_x
int qdot16(uvec4 w, uvec4 x) {
    return sdot4x8(int(w.x), int(x.x), 0) + sdot4x8(int(w.y), int(x.y), 0) + sdot4x8(int(w.z), int(x.z), 0) +
           sdot4x8(int(w.w), int(x.w), 0);
}

// the lane's share of row a (weights wa, scales sa) — and with TWO of row b (the MoE up row next to its gate row,
// loaded in the same iterations) — against x row xr of the shared copy
void rows_dot(uint64_t wa, uint64_t sa, uint64_t wb, uint64_t sb, const bool TWO, uint xr, uint cols, out float ra,
              out float rb) {
    uint nvec = cols / 16u, q0 = xr * (cols / 16u), b0 = xr * (cols / 32u);
    ra = 0.0f;
    rb = 0.0f;
    for (uint v = gl_SubgroupInvocationID; v < nvec; v += gl_SubgroupSize) {
        uvec4 w1 = BufUV4(wa).v[v], w2 = TWO ? BufUV4(wb).v[v] : uvec4(0);
        float d1 = f16_bits(ld_u16(sa + uint64_t(v / 2u) * 2u));
        float d2 = TWO ? f16_bits(ld_u16(sb + uint64_t(v / 2u) * 2u)) : 0.0f;
        uvec4 x = xq[q0 + v];
        float dx = xd[b0 + v / 2u];
        ra += float(qdot16(w1, x)) * (d1 * dx);
        if (TWO) rb += float(qdot16(w2, x)) * (d2 * dx);
    }
}

void main() {
    uint cols = pc.cols, rows = pc.rows, lane = gl_SubgroupInvocationID, sg = gl_SubgroupID;
    uint64_t rb = uint64_t(cols), sb = uint64_t(cols / 32u) * 2u;
    if (MODE == 2u) {
        uint tok = gl_WorkGroupID.y, row0 = gl_WorkGroupID.x * RSG;
        quantize_x(pc.x + uint64_t(tok * pc.k) * pc.x_stride * 4u, pc.x_stride, pc.k, cols);
        float total[RMAX];
        [[unroll]] for (uint r = 0; r < RSG; r++) total[r] = 0.0f;
        for (uint j = sg; j < pc.k; j += gl_NumSubgroups) {
            uint entry = tok * pc.k + j;
            uint64_t dw, ds;
            expert(pc.w, BufI32(pc.ids).v[entry], dw, ds);
            float wt = BufF32(pc.wts).v[entry];
            [[unroll]] for (uint r = 0; r < RSG; r++) {
                uint row = min(row0 + r, rows - 1u);
                float a, unused;
                rows_dot(dw + uint64_t(row) * rb, ds + uint64_t(row) * sb, 0ul, 0ul, false, j, cols, a, unused);
                total[r] += wt * a;
            }
        }
        [[unroll]] for (uint r = 0; r < RSG; r++) {
            float s = subgroupAdd(total[r]);
            if (lane == 0u) down_part[sg * RSG + r] = s;
        }
        barrier();
        uint t = gl_LocalInvocationID.x;
        if (t < RSG && row0 + t < rows) {
            float s = 0.0f;
            for (uint g = 0; g < gl_NumSubgroups; g++) s += down_part[g * RSG + t];
            BufF32 y = BufF32(pc.y + (uint64_t(tok) * pc.y_stride + row0 + t) * 4u);
            y.v[0] = y.v[0] + s;
        }
        return;
    }
    uint entry = gl_WorkGroupID.y;
    quantize_x(pc.x + uint64_t(MODE == 1u ? entry / pc.k : 0u) * pc.x_stride * 4u, pc.x_stride, 1u, cols);
    uint64_t w0 = pc.w, s0 = pc.s, w1 = 0ul, s1 = 0ul;
    if (MODE == 1u) {
        int e = BufI32(pc.ids).v[entry];
        expert(pc.w, e, w0, s0);
        expert(pc.w2, e, w1, s1);
    }
    uint row0 = (gl_WorkGroupID.x * gl_NumSubgroups + sg) * RSG;
    float acc[NR];
    [[unroll]] for (uint r = 0; r < RSG; r++) {
        uint row = min(row0 + r, rows - 1u);  // a tail row re-reads the last row, unwritten
        float a, b;
        rows_dot(w0 + uint64_t(row) * rb, s0 + uint64_t(row) * sb, w1 + uint64_t(row) * rb, s1 + uint64_t(row) * sb,
                 MODE == 1u, 0u, cols, a, b);
        acc[r] = subgroupAdd(a);
        if (MODE == 1u) acc[RSG + r] = subgroupAdd(b);
    }
    if (lane != 0u) return;
    [[unroll]] for (uint r = 0; r < RSG; r++) {
        uint row = row0 + r;
        if (row >= rows) break;
        if (MODE == 1u) {
            BufF32(pc.y).v[entry * pc.y_stride + row] = silu(acc[r]) * acc[RSG + r];
        } else {
            BufF32 y = BufF32(pc.y + uint64_t(row) * 4u);
            y.v[0] = pc.accumulate != 0u ? y.v[0] + acc[r] : acc[r];
        }
    }
}
