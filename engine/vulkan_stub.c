/* vulkan_stub.c — the Vulkan entry points for builds without Vulkan (no libvulkan or glslc at build time, the fuzz
 * targets): no devices, and ob_vulkan_new says why. With Vulkan the real ones live in engine/vulkan/. */
#ifndef OMNI_HAVE_VULKAN
#include <stdio.h>

#include "backend.h"
#include "omni.h"
#include "vulkan/ob_vulkan.h"

ob_backend *ob_vulkan_new(int device, char *err, size_t err_cap) {
    (void)device;
    if (err && err_cap) snprintf(err, err_cap, "this omni was built without Vulkan");
    return NULL;
}

int ob_vulkan_list_devices(ob_vk_device_info *out, int cap, char *err, size_t err_cap) {
    (void)out;
    (void)cap;
    (void)err;
    (void)err_cap;
    return 0;
}

int ob_vulkan_default_device(void) { return -1; }
int ob_vulkan_validation_errors(ob_backend *b) {
    (void)b;
    return 0;
}
int ob_vulkan_validation_active(ob_backend *b) {
    (void)b;
    return 0;
}
int ob_vulkan_bench_matvec(ob_backend *b, ob_dtype dtype, int rows, int cols, int n_sel, int iters,
                           ob_vk_bench_result *out) {
    (void)b, (void)dtype, (void)rows, (void)cols, (void)n_sel, (void)iters, (void)out;
    return OMNI_E_UNSUPPORTED;
}
int ob_vulkan_bench_gridbar(ob_backend *b, int n_wg, size_t bytes, int variant, int phases, double *us_per_phase) {
    (void)b, (void)n_wg, (void)bytes, (void)variant, (void)phases;
    *us_per_phase = 0;
    return OMNI_E_UNSUPPORTED;
}
int ob_vulkan_pipeline_stats(ob_backend *b, char *out, size_t cap) {
    (void)b;
    if (out && cap) out[0] = 0;
    return OMNI_E_UNSUPPORTED;
}

int ob_vulkan_attn_prof(ob_backend *b, uint32_t *out, size_t cap, int *n_disp) {
    (void)b, (void)out, (void)cap;
    if (n_disp) *n_disp = 0;
    return OMNI_E_UNSUPPORTED;
}
int ob_vulkan_moe_plan(ob_backend *b, ob_ptr ids, int n, int k, int n_exp, int tile, int max_tiles, int wg,
                       ob_ptr plan) {
    (void)b, (void)ids, (void)n, (void)k, (void)n_exp, (void)tile, (void)max_tiles, (void)wg, (void)plan;
    return OMNI_E_UNSUPPORTED;
}
#else
typedef int omni_vulkan_stub_unused_; /* ISO C wants a declaration in every translation unit */
#endif
