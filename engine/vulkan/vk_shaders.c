/* vk_shaders.c — the SPIR-V of every kernel, embedded at build time (shaders/shaders.mk turns each
 * shaders/<name>.comp into $(BUILD)/shaders/<name>.h), in the order of vk_shader_id. */
#include "vk_internal.h"

#include "attn_combine.h"
#include "attn_decode.h"
#include "attn_flash.h"
#include "attn_flash_cm.h"
#include "attn_flash_cm_d64.h"
#include "attn_flash_cm_d80.h"
#include "attn_split.h"
#include "attn_split_nosg.h"
#include "ew.h"
#include "gather.h"
#include "get_rows.h"
#include "kv_store.h"
#include "matmul.h"
#include "matmul_big.h"
#include "matmul_cm.h"
#include "matmul_cm_128x128.h"
#include "matmul_cm_128x32.h"
#include "matmul_cm_256x32.h"
#include "matmul_cm_256x64.h"
#include "matmul_cm_128x64_x16.h"
#include "matmul_cm_128x32_x16.h"
#include "matmul_cm_256x32_x16.h"
#include "matmul_cm_256x64_x16.h"
#include "matmul_cm_128x128_x16.h"
#include "cm_x16.h"
#include "cm2_gather.h"
#include "mm_ksum.h"
#include "matvec.h"
#include "matvec_nosg.h"
#include "moe_combine.h"
#include "mv.h"
#include "mvq8.h"
#include "moe_plan.h"
#include "moe_route.h"
#include "moe_route_nosg.h"
#include "qk_rope_kv.h"
#include "qk_rope_kv_nosg.h"
#include "rms_norm.h"
#include "rms_norm_nosg.h"
#include "rope.h"
#include "router.h"
#include "router_chain.h"
#include "route_fold.h"
#include "gridbar.h"
#include "mv_rows.h"
#include "mv_rows_nosg.h"
#include "topk.h"
#include "attn_decode_prof.h"
#if OMNI_HAVE_SHADERS2 /* built by the newer compiler (GLSLC2) when the build has it */
#include "matmul_cm2.h"
#include "matmul_cm2_moe.h"
#include "matmul_cm_khr.h"
#include "matmul_cm_128x32_khr.h"
#include "matmul_cm_256x32_khr.h"
#include "matmul_cm_256x64_khr.h"
#include "matmul_cm_128x128_khr.h"
#include "matmul_cm_128x64_x16_khr.h"
#include "matmul_cm_128x32_x16_khr.h"
#include "matmul_cm_256x32_x16_khr.h"
#include "matmul_cm_256x64_x16_khr.h"
#include "matmul_cm_128x128_x16_khr.h"
#include "attn_flash_cm_khr.h"
#include "attn_flash_cm_d64_khr.h"
#include "attn_flash_cm_d80_khr.h"
#define SPV_NEW(name) SPV(name)
/* an NV cooperative-matrix kernel with its KHR twin (cm.glsl) */
#define SPVK(name)                                                                                              \
    #name, omni_spv_##name, NULL, sizeof omni_spv_##name, 0, omni_spv_##name##_khr, sizeof omni_spv_##name##_khr
#else
#define SPV_NEW(name) #name, NULL, NULL, 0, 0
#define SPVK(name) SPV(name)
#endif

#define SPV(name) #name, omni_spv_##name, NULL, sizeof omni_spv_##name, 0
#define SPV2(name) #name, omni_spv_##name, omni_spv_##name##_nosg, sizeof omni_spv_##name, sizeof omni_spv_##name##_nosg

const vk_shader_src vk_shader_table[SH_COUNT] = {
    [SH_MATVEC] = { SPV2(matvec) },
    [SH_MATMUL] = { SPV(matmul) },
    [SH_MATMUL_BIG] = { SPV(matmul_big) },
    [SH_MATMUL_CM] = { SPVK(matmul_cm) },
    [SH_MM_KSUM] = { SPV(mm_ksum) },
    [SH_MATMUL_CM_128X32] = { SPVK(matmul_cm_128x32) },
    [SH_MATMUL_CM_256X32] = { SPVK(matmul_cm_256x32) },
    [SH_MATMUL_CM_256X64] = { SPVK(matmul_cm_256x64) },
    [SH_MATMUL_CM_128X128] = { SPVK(matmul_cm_128x128) },
    [SH_MATMUL_CM_128X64_X16] = { SPVK(matmul_cm_128x64_x16) },
    [SH_MATMUL_CM_128X32_X16] = { SPVK(matmul_cm_128x32_x16) },
    [SH_MATMUL_CM_256X32_X16] = { SPVK(matmul_cm_256x32_x16) },
    [SH_MATMUL_CM_256X64_X16] = { SPVK(matmul_cm_256x64_x16) },
    [SH_MATMUL_CM_128X128_X16] = { SPVK(matmul_cm_128x128_x16) },
    [SH_CM_X16] = { SPV(cm_x16) },
    [SH_CM2_GATHER] = { SPV(cm2_gather) },
    [SH_GET_ROWS] = { SPV(get_rows) },
    [SH_RMS_NORM] = { SPV2(rms_norm) },
    [SH_ROPE] = { SPV(rope) },
    [SH_KV_STORE] = { SPV(kv_store) },
    [SH_ATTN_SPLIT] = { SPV2(attn_split) },
    [SH_ATTN_COMBINE] = { SPV(attn_combine) },
    [SH_ATTN_FLASH] = { SPV(attn_flash) },
    [SH_ATTN_FLASH_CM] = { SPVK(attn_flash_cm) },
    [SH_ATTN_FLASH_CM64] = { SPVK(attn_flash_cm_d64) },
    [SH_ATTN_FLASH_CM80] = { SPVK(attn_flash_cm_d80) },
    [SH_MOE_ROUTE] = { SPV2(moe_route) },
    [SH_MOE_PLAN] = { SPV(moe_plan) },
    [SH_MOE_COMBINE] = { SPV(moe_combine) },
    [SH_EW] = { SPV(ew) },
    [SH_GATHER] = { SPV(gather) },
    [SH_QK_ROPE_KV] = { SPV2(qk_rope_kv) },
    [SH_ROUTER] = { SPV(router) },
    [SH_MV] = { SPV(mv) },
    [SH_MVQ8] = { SPV(mvq8) },
    [SH_ATTN_DECODE] = { SPV(attn_decode) },
    [SH_ROUTER_CHAIN] = { SPV(router_chain) },
    [SH_ROUTE_FOLD] = { SPV(route_fold) },
    [SH_MV_ROWS] = { SPV2(mv_rows) },
    [SH_GRIDBAR] = { SPV(gridbar) },
    [SH_TOPK] = { SPV(topk) },
    [SH_ATTN_DECODE_PROF] = { SPV(attn_decode_prof) },
    [SH_MATMUL_CM2] = { SPV_NEW(matmul_cm2) },
    [SH_MATMUL_CM2_MOE] = { SPV_NEW(matmul_cm2_moe) },
};
