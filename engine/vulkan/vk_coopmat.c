/* vk_coopmat.c — the tensor-core matmul (shaders/matmul_cm.comp, GL_NV_cooperative_matrix) for prefill: when it
 * applies, and its dispatch for the dense matmul (vk_ops.c) and the grouped MoE (vk_moe.c).
 *
 * It applies to f16/bf16 weights on a device whose NV cooperative matrix survived OMNI_VK_NO_COOPMAT, with fp16
 * arithmetic and 32-wide subgroups (the kernel lays out 8 subgroups of 32 over its 128 x 64 tile), and to operands
 * that allow its 16-byte loads. Its products are of fp16-rounded operands (fp32 sums), so results differ from the
 * fp32 kernels by about 1e-3 relative; OMNI_VK_NO_COOPMAT=1 selects the fp32 tiled kernel (matmul.comp) instead.
 * The 16 x 16 x 16 fp16 -> fp32 shape it uses is the one every NV cooperative-matrix device lists.
 * Also here: when the tensor-core prefill attention (shaders/attn_flash_cm.comp) applies, and its dispatch. */
#include <stdlib.h>

#include "vk_internal.h"

/* shared memory the kernels declare: matmul_cm 128x72 + 64x72 halves + 8x256 floats; attn_flash_cm 64x136 +
 * 2x32x136 halves, 4x16x32 floats, 4x16x40 halves, 64 floats */
#define CM_MATMUL_SHARED 35840u
#define CM_ATTN_SHARED 48384u

int vk_cm_ok(vk_ctx *c, ob_dtype wt, int vec) {
    if (!c->caps.coopmat_nv || !c->caps.fp16 || c->caps.subgroup_size != 32) return 0;
    if (c->caps.max_shared < CM_MATMUL_SHARED) return 0;
    return vec && (wt == OB_F16 || wt == OB_BF16);
}

/* 16-byte operand loads: x 16-byte aligned with x_stride % 4 == 0, cols % 8 == 0 (rows of whole uvec4s of
 * weights; the weight's own alignment is the caller's `vec`) */
int vk_cm_operands_ok(const ob_pc_matmul *pc) { return pc->x % 16 == 0 && pc->x_stride % 4 == 0 && pc->cols % 8 == 0; }

void vk_matmul_cm_dispatch(vk_ctx *c, int grouped, ob_dtype wt, ob_pc_matmul *pc, uint32_t groups_y,
                           const vk_range *reads, int n_reads, const vk_range *writes, int n_writes) {
    uint32_t spec[7] = { 0, (uint32_t)wt, 0, 0, 0, 0, (uint32_t)grouped }; /* ids 1 and 6 used, as matmul.comp */
    VkPipeline p = vk_pipeline(c, SH_MATMUL_CM, spec, 7);
    uint32_t gx = (pc->rows + VK_CM_TILE_M - 1) / VK_CM_TILE_M;
    if (!grouped) groups_y = (pc->n + VK_CM_TILE_N - 1) / VK_CM_TILE_N;
    vk_dispatch(c, p, pc, sizeof *pc, gx, groups_y, 1, reads, n_reads, writes, n_writes);
}

/* attn_flash_cm.comp: head_dim 128 only (its fragments are laid out for it), 16-byte vector loads of q, k, v, out.
 * Opt-in (OMNI_VK_ATTN_CM=1) until it has been run on a GPU: it was written after the last device run of its
 * session, and it passes the shader compiler and validator only; test_vulkan_coopmat.c checks it where it can run. */
int vk_attn_cm_ok(vk_ctx *c, const ob_pc_attn *pc) {
    const char *on = getenv("OMNI_VK_ATTN_CM");
    if (!on || atoi(on) != 1) return 0;
    if (!c->caps.coopmat_nv || !c->caps.fp16 || c->caps.subgroup_size != 32) return 0;
    if (c->caps.max_shared < CM_ATTN_SHARED) return 0;
    return pc->head_dim == 128 && (pc->q | pc->kc | pc->vc | pc->dst) % 16 == 0;
}

void vk_attn_cm_dispatch(vk_ctx *c, ob_pc_attn *pc, const vk_range *reads, int n_reads, const vk_range *write) {
    uint32_t spec[1] = { 0 }; /* no specialization constants; the cache key needs one entry */
    VkPipeline p = vk_pipeline(c, SH_ATTN_FLASH_CM, spec, 1);
    vk_dispatch(c, p, pc, sizeof *pc, (pc->n + VK_CM_ATTN_BQ - 1) / VK_CM_ATTN_BQ, pc->n_heads, 1, reads, n_reads,
                write, 1);
}
