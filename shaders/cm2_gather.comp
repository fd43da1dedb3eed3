#version 460
// cm2_gather.comp — the grouped MoE's x rows in the plan's sorted order, as fp16, for matmul_cm2_moe.comp (whose
// tensor loads take contiguous rows, not a gather): y[j][c] = fp16(clamp(x[tok[j]][c], ±65504)) for the pc.n sorted
// entries j (tok: the plan's first n ints, vk_push.h). The clamp and rounding are cm_x16.comp's (matmul_cm.comp's
// f2h), so the GEMM multiplies the operands matmul_cm.comp stages. pc.x / pc.x_stride: fp32 rows (16-byte aligned,
// stride % 4 == 0); pc.y / pc.y_stride: fp16 rows (stride in halves, % 8 == 0); pc.cols % 8 == 0. One thread per 8
// columns (two 16-byte loads, one 16-byte store).
#define PC_MATMUL
#include "common.glsl"

layout(buffer_reference, std430, buffer_reference_align = 16) writeonly buffer BufUV4W { uvec4 v[]; };
layout(local_size_x_id = 0) in;
layout(constant_id = 0) const uint WG = 256;

uint f2h(vec2 v) { return packHalf2x16(clamp(v, vec2(-65504.0f), vec2(65504.0f))); }

void main() {
    uint idx = (gl_WorkGroupID.y * gl_NumWorkGroups.x + gl_WorkGroupID.x) * WG + gl_LocalInvocationID.x;
    uint per = pc.cols / 8u;
    if (idx >= pc.n * per) return;
    uint j = idx / per, c = (idx % per) * 8u;
    uint r = uint(BufI32(pc.tok).v[j]);
    uint64_t src = pc.x + (uint64_t(r) * pc.x_stride + c) * 4u;
    vec4 a = BufV4(src).v[0], b = BufV4(src + 16u).v[0];
    BufUV4W(pc.y + (uint64_t(j) * pc.y_stride + c) * 2u).v[0] = uvec4(f2h(a.xy), f2h(a.zw), f2h(b.xy), f2h(b.zw));
}
