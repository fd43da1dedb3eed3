#version 460
// rope.comp — rotary embedding in place on x[n][n_heads][head_dim], rotate-half (NeoX) over the first rot_dim
// dims: pair j (< rot_dim/2) is (x[j], x[j + rot_dim/2]). Position of pair j: plain RoPE uses row 0 of pos3;
// MRoPE picks the t/h/w row per frequency slot — interleaved (Qwen3-Omni): slot j%3==1 with j < 3·sec1 -> h,
// j%3==2 with j < 3·sec2 -> w, else t; contiguous (Qwen2-VL, the ViT's 2-D rotary): the first sec0 slots t, the
// next sec1 h, the next sec2 w, the rest t. The host computes the per-slot inverse frequencies (freqs[]).
// The angle is pos·inv_freq in fp32 (as HF computes freqs), its sin/cos accurate (see sincos_acc).
// Mirrors HF apply_rotary_pos_emb with Qwen3OmniMoe's interleaved MRoPE recomposition, in fp32.
#define PC_ROPE
#include "common.glsl"

layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

void main() {
    uint half_rot = pc.rot_dim / 2u;
    uint idx = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    if (idx >= pc.n * pc.n_heads * half_rot) return;
    uint j = idx % half_rot, hi = idx / half_rot, i = hi / pc.n_heads;
    uint sel = 0;
    if (pc.sec0 + pc.sec1 + pc.sec2 != 0u) {
        if (pc.interleaved != 0u) {
            if (j % 3u == 1u && j < 3u * pc.sec1) sel = 1u;
            else if (j % 3u == 2u && j < 3u * pc.sec2) sel = 2u;
        } else {
            sel = j < pc.sec0 ? 0u : j < pc.sec0 + pc.sec1 ? 1u : j < pc.sec0 + pc.sec1 + pc.sec2 ? 2u : 0u;
        }
    }
    float pos = BufF32(pc.pos).v[sel * pc.n + i];
    precise float ang = pos * BufF32(pc.freqs).v[j];
    float s, c;
    sincos_acc(ang, s, c);
    BufF32 x = BufF32(pc.x + uint64_t(hi) * pc.head_dim * 4u);
    float a = x.v[j], b = x.v[j + half_rot];
    x.v[j] = a * c - b * s;
    x.v[j + half_rot] = b * c + a * s;
}
