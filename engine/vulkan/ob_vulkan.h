/* ob_vulkan.h — what the Vulkan back-end offers beyond the ob_ops table: device listing (for `omni devices`),
 * validation counters for tests, and a matrix-vector micro-benchmark. Needs no Vulkan headers, so the app and the
 * tests include it whether or not the build has Vulkan; without Vulkan (engine/vulkan_stub.c) the listing finds
 * nothing and ob_vulkan_new returns NULL. */
#ifndef OMNI_OB_VULKAN_H
#define OMNI_OB_VULKAN_H

#include <stddef.h>
#include <stdint.h>

#include "backend.h"

#define OB_VK_MAX_HEAPS 8

typedef struct {
    char name[256];
    char type[16];          /* "discrete", "integrated", "virtual", "cpu", "other" */
    char driver[160];       /* driver name and info */
    uint32_t api_version;   /* VK_MAKE_API_VERSION encoded */
    uint32_t vendor_id, device_id;
    int32_t n_heaps;
    uint64_t heap_bytes[OB_VK_MAX_HEAPS];
    int32_t heap_device_local[OB_VK_MAX_HEAPS];
    uint32_t subgroup_size;
    int32_t subgroup_arith, subgroup_shuffle, subgroup_size_control;
    /* optional features as probed (before any OMNI_VK_NO_* switch) */
    int32_t fp16, int8, storage16, storage8, int64, fp64, bf16, int_dot, int_dot_accel;
    int32_t coopmat_nv, coopmat_khr, coopmat2_nv, bda;
    /* the flavour the tensor-core kernels (prefill GEMM and attention) would run in, with OMNI_VK_NO_COOPMAT and
     * OMNI_VK_CM_KHR applied: 0 none (fp32 kernels), 1 NV cooperative matrix, 2 KHR cooperative matrix */
    int32_t cm_kernels;
    /* KHR cooperative matrix lists a subgroup-scope 16 x 16 x 16 bf16 x bf16 -> fp32 shape (not used by omni yet) */
    int32_t cm_khr_bf16;
    int32_t timestamps;     /* timestamp queries on compute queues (the profiler and benchmark use them) */
    uint64_t max_alloc, max_storage_range;
    uint32_t max_shared, max_push, max_wg_invocations;
    /* streaming multiprocessors / compute units where the driver reports them (VK_NV_shader_sm_builtins,
     * VK_AMD_shader_core_properties), else 0: how many workgroups a resident kernel may keep running at once */
    uint32_t compute_units;
    int32_t usable;         /* meets omni's minimum (Vulkan 1.2, buffer device address, int64 in shaders) */
    char why_unusable[128];
} ob_vk_device_info;

/* Enumerates Vulkan devices into out (up to cap). Returns the number of devices (may exceed cap; 0 when there is no
 * Vulkan loader or device) or a negative OMNI_E_* code with a reason in err. */
int ob_vulkan_list_devices(ob_vk_device_info *out, int cap, char *err, size_t err_cap);

/* The index ob_vulkan_new(-1) would pick: first discrete, else integrated, else any usable device; -1 if none. */
int ob_vulkan_default_device(void);

/* Validation-layer messages of error severity seen by this back-end so far (0 when validation is off). */
int ob_vulkan_validation_errors(ob_backend *b);
/* 1 if the validation layer is active on this back-end. */
int ob_vulkan_validation_active(ob_backend *b);

/* Matrix-vector benchmark: y = x · Wᵀ with W [rows, cols] of dtype; with n_sel > 0 it runs the MoE decode pair
 * (gate+up then down) over n_sel experts picked at random per call from 128 of shape [rows, cols] / [cols, rows].
 * Dense calls cycle over enough copies of W (and MoE calls over enough experts) that the weights come from device
 * memory, not from cache. After a warm-up it times `iters` independent calls (distinct outputs, so the device may
 * overlap them) and `iters` chained calls (one output, so each waits for the previous, as in a decode step). */
typedef struct {
    double ms_per_call;         /* independent calls */
    double ms_per_call_chained; /* calls separated by barriers */
    double gbytes_per_s;        /* weight bytes per call / ms_per_call */
    double gbytes_per_s_chained;
    double weight_bytes;        /* per call */
    int timed_on_device;        /* 1 = timestamp queries, 0 = host clock around a sync */
} ob_vk_bench_result;
int ob_vulkan_bench_matvec(ob_backend *b, ob_dtype dtype, int rows, int cols, int n_sel, int iters,
                           ob_vk_bench_result *out);

/* Grid-barrier benchmark (gridbar.comp): µs per phase of a chain of phases that each stream `bytes` from memory
 * (regions beyond the L2), as one dispatch per phase with pipeline barriers (variant 0), as one dispatch of n_wg
 * workgroups with a grid barrier per phase (1), or the same with the next phase's first loads issued before the
 * wait (2). From a run of `phases` phases minus a run of one. n_wg must fit on the device at once (a spin on a
 * counter waits for every workgroup; the fence timeout turns a hang into an error). */
int ob_vulkan_bench_gridbar(ob_backend *b, int n_wg, size_t bytes, int variant, int phases, double *us_per_phase);

/* With OMNI_VK_PIPELINE_STATS=1 (read when the back-end opens) on a device with VK_KHR_pipeline_executable_properties:
 * the driver's statistics of every pipeline created so far (registers, shared memory, ...), one line per pipeline
 * executable ("shader [spec constants] name=value ..."), into out (truncated at cap). OMNI_E_UNSUPPORTED otherwise. */
int ob_vulkan_pipeline_stats(ob_backend *b, char *out, size_t cap);

/* With OMNI_VK_ATTN_PROF=1 (read when the back-end opens) on a device with VK_KHR_shader_clock, the fused decode
 * attention (attn_decode.comp) runs a build that notes clocks at its phase boundaries. This waits for queued work and
 * copies the records of the dispatches since the last call (while they fit in ATTND_PROF_CAP records) into out,
 * oldest first, each dispatch as [workgroups, 0, then ATTND_PROF_WORDS words per workgroup in the order they ended
 * (attn_decode.comp, prof_out)], and starts over. Returns the words written (dispatches that do not fit in cap are
 * left out), n_disp the dispatches; OMNI_E_UNSUPPORTED otherwise. */
#define ATTND_PROF_WORDS 32
#define OB_VK_ATTN_PROF_RECORDS 32767 /* at most this many records between calls (vk_push.h ATTND_PROF_CAP) */
int ob_vulkan_attn_prof(ob_backend *b, uint32_t *out, size_t cap, int *n_disp);

/* Runs the prefill MoE plan (moe_plan.comp) alone, for tests: ids [n·k] int32 -> plan, laid out as
 * [tok: n·k][pos: n·k][n_tiles][3 × max_tiles: expert, first sorted position, count <= tile] (vk_push.h), queued like
 * any op (download syncs). wg: workgroup size (0: what the MoE op uses). OMNI_E_ARG for bad sizes or buffers too
 * small. */
int ob_vulkan_moe_plan(ob_backend *b, ob_ptr ids, int n, int k, int n_exp, int tile, int max_tiles, int wg,
                       ob_ptr plan);

#endif
