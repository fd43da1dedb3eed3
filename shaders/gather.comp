#version 460
// gather.comp — data movement for the encoders, one thread per output element (MODE 2: per column).
// MODE 0 permute: dst (contiguous, shape d0×d1×d2×d3)[i0][i1][i2][i3] = src[i0·s0 + i1·s1 + i2·s2 + i3·s3].
// MODE 1 im2col: dst[(b·Ho + oy)·Wo + ox][(c·k + ky)·k + kx] = x[b, c, oy·stride - pad + ky, ox·stride - pad + kx]
//   (0 outside), x addressed with element strides s = (b, c, y, x).
// MODE 2 add_rows: dst[idx[i]][c] += src[i][c] for i < d0 rows of d1 columns; one thread per column walks the rows
//   in order, so repeated indices add up exactly as on the CPU.
// Mirrors the CPU back-end's permute, im2col and add_rows.
#define PC_GATHER
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;
layout(constant_id = 1) const uint MODE = 0;

void main() {
    uint t = (gl_WorkGroupID.y * pc.groups_x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    if (t >= pc.count) return;
    if (MODE == 0) {
        uint i3 = t % pc.d[3], r = t / pc.d[3];
        uint i2 = r % pc.d[2];
        r /= pc.d[2];
        uint i1 = r % pc.d[1], i0 = r / pc.d[1];
        uint64_t so = uint64_t(i0) * pc.s[0] + uint64_t(i1) * pc.s[1] + uint64_t(i2) * pc.s[2] + uint64_t(i3) * pc.s[3];
        BufF32(pc.dst).v[t] = BufF32(pc.src + so * 4u).v[0];
    } else if (MODE == 1) {
        uint kk = pc.k * pc.k, cols = pc.C * kk;
        uint row = t / cols, col = t % cols;
        uint ch = col / kk, ky = (col % kk) / pc.k, kx = col % pc.k;
        uint hw = pc.Ho * pc.Wo, b = row / hw, oy = (row % hw) / pc.Wo, ox = row % pc.Wo;
        int iy = int(oy * pc.stride) - int(pc.pad) + int(ky), ix = int(ox * pc.stride) - int(pc.pad) + int(kx);
        float v = 0.0f;
        if (iy >= 0 && iy < int(pc.H) && ix >= 0 && ix < int(pc.W)) {
            uint64_t so =
                uint64_t(b) * pc.s[0] + uint64_t(ch) * pc.s[1] + uint64_t(iy) * pc.s[2] + uint64_t(ix) * pc.s[3];
            v = BufF32(pc.src + so * 4u).v[0];
        }
        BufF32(pc.dst + uint64_t(t) * 4u).v[0] = v;
    } else {
        uint dim = pc.d[1];
        for (uint i = 0; i < pc.d[0]; i++) {
            int r = BufI32(pc.idx).v[i];
            BufF32 x = BufF32(pc.dst + (uint64_t(r) * dim + t) * 4u);
            x.v[0] = x.v[0] + BufF32(pc.src + (uint64_t(i) * dim + t) * 4u).v[0];
        }
    }
}
