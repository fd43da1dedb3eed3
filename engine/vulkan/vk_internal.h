/* vk_internal.h — the Vulkan back-end's private state, shared by its files:
 *   vk_device.c   instance, validation, device probing/selection/creation, environment switches, listing
 *   vk_memory.c   device-local blocks and sub-allocation, staging upload/download
 *   vk_exec.c     command recording, hazard-tracked barriers, submission, pipelines from embedded SPIR-V
 *   vk_ops.c      the ops of ob_ops (one short function each: dense, attention, encoder) and the back-end table
 *   vk_moe.c      MoE routing and expert matmuls
 *   vk_coopmat.c  tensor-core (NV cooperative matrix) prefill matmul and attention: applicability, dispatch
 *   vk_timing.c   per-op-class GPU profiler and the matrix-vector micro-benchmark
 *   vk_shaders.c  the table of embedded SPIR-V
 * Only these files include vulkan.h. */
#ifndef OMNI_VK_INTERNAL_H
#define OMNI_VK_INTERNAL_H

#include <vulkan/vulkan.h>

#include "backend.h"
#include "ob_vulkan.h"
#include "util.h"
#include "vk_push.h"

/* ---- capabilities ------------------------------------------------------------------------------------------------ */
typedef struct {
    uint32_t api;
    uint32_t subgroup_size;
    int sg_arith, sg_shuffle, sg_size_control;
    /* subgroup size control: the sizes a pipeline may require, and whether compute shaders may (the KHR
     * cooperative-matrix builds need 32-wide subgroups, e.g. wave32 on AMD, whose default is 64) */
    uint32_t sg_min, sg_max;
    int sg_req_compute;
    /* VK_KHR_cooperative_matrix lists the subgroup-scope 16 x 16 x 16 fp16 x fp16 -> fp32 shape that matmul_cm.comp
     * and attn_flash_cm.comp use (cm.glsl) */
    int cm_khr16;
    int fp16, int8, storage16, storage8, int64, fp64, bf16, int_dot, int_dot_accel;
    int coopmat_nv, coopmat_khr, coopmat2_nv, bda;
    /* NV cooperative matrix 2 as matmul_cm2.comp uses it (vk_device.c): workgroup scope, flexible dimensions,
     * tensor addressing and block loads with KHR cooperative matrix, an fp16 x fp16 -> fp32 workgroup shape for 256
     * invocations, fp16 and 16-bit storage, and the shader built (GLSLC2); cm2_bf16: a bf16 workgroup shape too */
    int cm2, cm2_bf16, vmm;
    uint32_t cm2_gran[3]; /* that shape's M, N, K granularity */
    VkDeviceSize max_alloc, max_storage_range;
    uint32_t max_shared, max_push, max_wg_invocations, max_wg_count[3];
    uint32_t compute_units; /* SMs / CUs as the driver reports them (VK_NV_shader_sm_builtins, VK_AMD_shader_core_
                             * properties), 0 unknown */
    float timestamp_period; /* ns per tick; 0 = no timestamps on the compute queue */
} vk_caps;

/* Environment switches (read once per back-end). Each OMNI_VK_NO_* turns an optional feature off, so a driver
 * problem can be bisected without rebuilding:
 *   OMNI_VK_VALIDATION=1   enable VK_LAYER_KHRONOS_validation (messages go to omni_log; errors are counted);
 *                          =2 also validates every pipeline's shader (slow on lavapipe)
 *   OMNI_VK_NO_FP16        no shaderFloat16             OMNI_VK_NO_INT8        no shaderInt8
 *   OMNI_VK_NO_16BIT       no 16-bit storage            OMNI_VK_NO_8BIT        no 8-bit storage
 *   OMNI_VK_NO_BF16        no VK_KHR_shader_bfloat16    OMNI_VK_NO_INT_DOT     no integer dot product
 *   OMNI_VK_NO_COOPMAT     no cooperative matrix (NV, KHR, NV2): prefill matmuls run the fp32 tiled kernel
 *   OMNI_VK_CM_KHR=0       the tensor-core kernels (matmul_cm, attn_flash_cm) in their NV cooperative-matrix builds
 *                          instead of the KHR ones (the default wherever KHR is: faster on the H100 too; vk_device.c
 *                          cm_flavour)
 *   OMNI_VK_ATTN_CM=0      prefill attention on the fp32 flash kernel instead of tensor cores (attn_flash_cm.comp,
 *                          the default where NV cooperative matrix is; see vk_coopmat.c)
 *   OMNI_VK_ATTN_CM_SMALL=0  head dims 64..124 (the encoders) off tensor cores: the fp32 flash kernel (comparisons)
 *   OMNI_VK_ATTN_CM_HPW=N  heads per workgroup of attn_flash_cm.comp (1, 2 or 4; default 4 where the GQA group allows)
 *   OMNI_VK_ATTN_CM_TAU=N  its lazy softmax-maximum slack in base-2 units (default 8; 0 = exact online softmax)
 *   OMNI_VK_CM_SPLIT=0     no split-K in the tensor-core matmul for small matrices (the MoE router; vk_coopmat.c)
 *   OMNI_VK_CM_DENSE / OMNI_VK_CM_MOE=BMxBN  tensor-core GEMM tile shape of the dense / grouped MoE form
 *   OMNI_VK_CM_X16=N       tensor-core GEMMs on fp16 activations (x converted once by cm_x16.comp; CM_X16 build):
 *                          2 (default) the grouped MoE (gate+up+swiglu writes fp16 for the down projection) and the
 *                          dense projections (the conversion reused while nothing else ran, e.g. by q, k, v);
 *                          1 only the grouped MoE; 0 off (x converted in every tile)
 *   OMNI_VK_CM2=N          dense prefill products (MODE 0, f16/bf16 weights) on the NV cooperative matrix 2 GEMM
 *                          (matmul_cm2.comp, workgroup-scope tensor-core tiles; vk_coopmat.c) where the device and
 *                          the build have it: 1 on (default), 0 off (matmul_cm.comp); OMNI_VK_CM2_TILE=BMxBNxBK its
 *                          tile for every product, OMNI_VK_CM2_SPLIT_BELOW=N split-K below N tiles (default 128)
 *                          into about OMNI_VK_CM2_SPLIT_FILL=N workgroups (default that N),
 *                          OMNI_VK_CM2_SMALL=BMxBNxBK|0 the tile between that and 128 tiles,
 *                          OMNI_VK_CM2_UNROLL=N K steps per unrolled iteration (1..8), OMNI_VK_CM2_BLK=0 fp16
 *                          operands through plain tensor loads instead of block loads with a decode function
 *   OMNI_VK_CM2_MOE=1      the grouped MoE GEMMs on it too (matmul_cm2_moe.comp; off by default, slower on the H100);
 *                          OMNI_VK_CM2_MOE_TILE=BMxBNxBK, OMNI_VK_CM2_MOE_UNROLL=N
 *   OMNI_VK_CM2_MIN_N=N / OMNI_VK_CM2_MAX_N=N  dense products of fewer / more x rows stay on matmul_cm.comp
 *                          (defaults 512 / 2048, the thinker's prefill chunks; 0 = no upper bound; vk_coopmat.c)
 *   OMNI_VK_NORM_X16=0     the prefill RMSNorm does not write the tensor-core GEMMs' fp16 copy of its output
 *                          (they convert it themselves, cm_x16.comp; vk_x16_offer)
 *   OMNI_VK_ATTN_X16=0     likewise the tensor-core prefill attention (the o projection converts its input itself)
 *   OMNI_VK_MM_SPLIT=0     the fp32 tiled prefill matmul (matmul.comp, devices without cooperative matrix) not split
 *                          over K when its tiles would fill less than a wave (split by default, as the tensor-core
 *                          GEMMs are: the MoE router 8x faster on the H100 without tensor cores)
 *   OMNI_VK_KSUM_DEFER=0   every split-K sum recorded as mm_ksum.comp right after its GEMM, instead of being left to
 *                          the next op (the RMSNorm of the residual, the router's top-k, the k|v product's
 *                          qk_norm_rope_kv: vk_ksum_take)
 *   OMNI_VK_PIPELINE_CACHE=0|PATH  the on-disk pipeline cache (vk_exec.c): off, or this file instead of
 *                          $XDG_CACHE_HOME/omni/pipelines.bin (~/.cache/omni/pipelines.bin)
 *   OMNI_VK_MOE_FUSE=0     grouped MoE gate, up and swiglu as three passes instead of one fused GEMM
 *   OMNI_VK_NO_SUBGROUP    no subgroup arithmetic: reductions go through shared memory (the *_nosg kernels)
 *   OMNI_VK_NO_FP64        no shaderFloat64
 *   OMNI_VK_MAX_OPS=N      dispatches recorded before a command buffer is submitted (default 128)
 *   OMNI_VK_ATTN=split|flash  force one attention kernel (default: split-K for n <= 4 queries, flash otherwise)
 *   OMNI_VK_MM=vec|tiled   force the matrix-vector or the tiled matmul kernel (default: vec for n <= 8)
 *   OMNI_VK_MOE=vec|grouped  force the MoE decode or grouped path (default: vec for n*k <= 32)
 *   OMNI_VK_MV_WG / _RSG / _U / _CVT   matrix-vector tuning: workgroup size, rows per subgroup, loads in
 *                          flight per row, dequantization by conversion instructions (0) or bit operations (1)
 *   OMNI_VK_MV_RSG_DOWN=N  output rows per workgroup of the MoE down projection (1..4; default 2)
 *   OMNI_VK_ATTN_FUSE=0    decode attention as qk_norm_rope_kv + split-K attention instead of attn_decode.comp
 *   OMNI_VK_KV_F32=1       KV caches in fp32 instead of fp16 (the default for head dims that are multiples of 8;
 *                          vk_kv16), for comparisons: the engine sizes its caches by asking (ob_kv_cache_bytes)
 *   OMNI_VK_ATTN_CHUNK=N   keys per workgroup of attn_decode.comp (32, 64 or 128; default 64, 128 past 16384 keys)
 *   OMNI_VK_ATTN_WG=128    attn_decode.comp workgroups of 128 threads instead of 256 (comparisons)
 *   OMNI_VK_FENCE_TIMEOUT_S=N  give up on a submission after N seconds (default 120): a hung kernel becomes an error
 *   OMNI_VK_SYNC=1         wait for every dispatch (debugging: an error then names the kernel that caused it)
 *   OMNI_VK_WIDE_BARRIERS=1  every barrier covers compute and transfer stages (the old behaviour, for comparisons)
 *   OMNI_VK_MV_OLD=1       decode matrix-vector products on matvec.comp only (mv.comp off, for comparisons)
 *   OMNI_VK_MV_PLAIN=0     plain f16/bf16/f32 decode rows (o_proj, lm_head) on matvec.comp instead of mv.comp
 *   OMNI_VK_ROUTER_ROWS=N  router rows per workgroup of the fused decode router (router.comp; default 4)
 *   OMNI_VK_Q8_INT8=0      Q8_0 decode products against fp32 activations (mv.comp / matvec.comp) instead of int8 ones
 *                          (mvq8.comp, the default where the device has the integer dot product)
 *   OMNI_VK_Q8_RSG=N, OMNI_VK_Q8_WG=N, OMNI_VK_Q8_SEQ=N, OMNI_VK_Q8_RSG_GU=N, OMNI_VK_Q8_HB=N,
 *   OMNI_VK_Q8_RSG_DOWN=N, OMNI_VK_Q8_WG_DOWN=N, OMNI_VK_Q8_SEQ_DOWN=N   mvq8.comp tuning: rows loaded together per
 *                          subgroup (dense, gate+up, down), workgroup sizes (dense, down; gate+up: rows per workgroup,
 *                          16 or 32), groups of rows per subgroup one after another (dense and gate+up, down)
 *                          (0 = defaults, see vk_ops.c)
 *   OMNI_VK_ROUTE_DEFER=0  the decode router (router.comp) selects the experts itself instead of leaving the top-k to
 *                          the MoE gate+up workgroups (route_rank.glsl; see vk_route_owe in vk_decode.c)
 *   OMNI_VK_TRACE=1        while profiling (omni bench --profile), also time every dispatch on its own: per kernel and
 *                          grid, the time from the previous dispatch's end to its end (launch and barrier included)
 *   OMNI_VK_ROUTE_FOLD=0   the decode router after o_proj (router_chain) instead of folded beside it (vk_decode.c,
 *                          "folded router")
 *   OMNI_VK_CHAIN=0        dependent decode stages as separate dispatches instead of chained in one (chain.glsl: o_proj
 *                          in front of the router)
 *   OMNI_VK_ROUTE_PRE=0|1  the folded router's experts selected by the last workgroup of its M·a dispatch
 *                          (mv_rows.comp RANK) instead of by every MoE gate+up workgroup (default: on for Q8_0 layers on
 *                          int8 activations; vk_decode.c)
 *   OMNI_VK_ATTN_TREE=N    decode attention: chunk partials merged in groups of N first, then the groups (0: one merge
 *                          of all chunks; default groups of 8 from 40 chunks on; vk_decode.c)
 *   OMNI_VK_ATTN_PROF=1    the decode attention runs attn_decode_prof, which notes clocks at its phase boundaries
 *                          (needs VK_KHR_shader_clock; read by ob_vulkan_attn_prof; vulkan_bench prints them) */
typedef struct {
    int validation, no_fp16, no_int8, no_16bit, no_8bit, no_bf16, no_int_dot, no_coopmat, no_subgroup, no_fp64;
    int cm_khr; /* OMNI_VK_CM_KHR: 0 never the KHR cooperative-matrix builds; else (default -1) wherever they run */
    int max_ops;
    int attn;  /* 0 auto, 1 split, 2 flash */
    int mm;    /* 0 auto, 1 vec, 2 tiled */
    int moe;   /* 0 auto, 1 vec, 2 grouped */
    int mv_wg, mv_rsg, mv_unroll, mv_cvt, mv_rsg_down;
    int fence_timeout_s, sync_each;
    int fuse;  /* fused decode ops (vk_decode.c): 1 on (default), 0 off (OMNI_VK_FUSE=0, for comparisons) */
    int wide_barriers;
    int router_rows; /* OMNI_VK_ROUTER_ROWS: router rows (subgroups) per workgroup of router.comp (0 = 4) */
    int q8_int8; /* Q8_0 decode products with int8 activations (mvq8.comp): 1 (default), OMNI_VK_Q8_INT8=0 off */
    int q8_rsg, q8_wg, q8_seq, q8_rsg_gu, q8_hb, q8_rsg_down, q8_wg_down, q8_seq_down; /* OMNI_VK_Q8_*: mvq8.comp tuning (0 = default) */
    int mv_old; /* OMNI_VK_MV_OLD=1: decode matrix-vector products on matvec.comp only (not mv.comp) */
    int mv_plain; /* OMNI_VK_MV_PLAIN: 1 (default) f16/bf16/f32 rows without a fused norm on mv.comp too (o_proj,
                   * lm_head; H100 BF16 tg128 245.4/243.2 vs 235.4/238.3 t/s with 0, alternating in one run) */
    int attn_fuse, attn_chunk; /* the fused decode attention (vk_decode.c): on/off, keys per chunk (0 auto) */
    int attn_wg;               /* OMNI_VK_ATTN_WG: its workgroup size (256 default, 128) */
    int kv_f32;                /* OMNI_VK_KV_F32=1: fp32 KV caches (default fp16, see vk_kv16) */
    int trace; /* OMNI_VK_TRACE=1: the profiler also times every dispatch (vk_timing.c) */
    int route_defer; /* OMNI_VK_ROUTE_DEFER: 1 (default) the decode MoE gate+up selects the experts (vk_decode.c) */
    int chain; /* OMNI_VK_CHAIN: 1 (default) o_proj chained in front of the router, 0 none */
    int route_fold; /* OMNI_VK_ROUTE_FOLD: 1 (default) the decode router folded beside o_proj (vk_decode.c) */
    int pipe_stats; /* OMNI_VK_PIPELINE_STATS=1: pipelines capture the driver's statistics (registers, ...) */
    int attn_prof;  /* OMNI_VK_ATTN_PROF=1: the decode attention notes its phases' clocks (ob_vulkan_attn_prof) */
    int spin_us;    /* OMNI_VK_SPIN_US: poll a fence at most this long before sleeping on it (vk_exec.c; 0 never) */
} vk_env;
void vk_env_read(vk_env *e);
/* a tuning switch read at each call (an integer, dflt when unset or empty): the prefill paths of vk_coopmat.c and
 * vk_moe.c read theirs this way so that `vulkan_bench model` variants can change them between passes of one load */
int vk_env_now(const char *name, int dflt);

/* ---- memory ------------------------------------------------------------------------------------------------------ */
typedef struct {
    VkDeviceSize off, size;
} vk_span;

typedef struct vk_block {
    VkDeviceMemory mem;
    VkBuffer buf;
    VkDeviceAddress addr;
    VkDeviceSize size;
    int dedicated;
    vk_span *free; /* free ranges sorted by offset */
    int n_free, cap_free;
    struct vk_block *next;
} vk_block;

struct ob_buf {
    vk_block *blk;
    VkDeviceSize off, size; /* sub-range of the block */
};

/* ---- shaders and pipelines --------------------------------------------------------------------------------------- */
typedef enum {
    SH_MATVEC,
    SH_MATMUL,
    SH_MATMUL_BIG,
    SH_MATMUL_CM,
    SH_MM_KSUM,
    SH_MATMUL_CM_128X32,
    SH_MATMUL_CM_256X32,
    SH_MATMUL_CM_256X64,
    SH_MATMUL_CM_128X128,
    /* the fp16-activation builds of every shape (OMNI_VK_CM_X16) */
    SH_MATMUL_CM_128X64_X16,
    SH_MATMUL_CM_128X32_X16,
    SH_MATMUL_CM_256X32_X16,
    SH_MATMUL_CM_256X64_X16,
    SH_MATMUL_CM_128X128_X16,
    SH_CM_X16,
    SH_CM2_GATHER,
    SH_GET_ROWS,
    SH_RMS_NORM,
    SH_ROPE,
    SH_KV_STORE,
    SH_ATTN_SPLIT,
    SH_ATTN_COMBINE,
    SH_ATTN_FLASH,
    SH_ATTN_FLASH_CM,
    SH_ATTN_FLASH_CM64,
    SH_ATTN_FLASH_CM80,
    SH_MOE_ROUTE,
    SH_MOE_PLAN,
    SH_MOE_COMBINE,
    SH_EW,
    SH_GATHER,
    SH_QK_ROPE_KV,
    SH_ROUTER,
    SH_MV,
    SH_MVQ8,
    SH_ATTN_DECODE,
    SH_ROUTER_CHAIN,
    SH_ROUTE_FOLD,
    SH_MV_ROWS,
    SH_GRIDBAR,
    SH_TOPK,
    SH_ATTN_DECODE_PROF, /* attn_decode.comp with its phase clocks (OMNI_VK_ATTN_PROF=1) */
    SH_MATMUL_CM2, /* NV cooperative matrix 2 GEMM: only in builds with GLSLC2 (shaders.mk), else no words */
    SH_MATMUL_CM2_MOE, /* its grouped MoE form (matmul_cm2_moe.comp), likewise */
    SH_COUNT
} vk_shader_id;

typedef struct {
    const char *name;
    const uint32_t *words, *words_nosg; /* nosg: the variant without subgroup operations (NULL if not needed) */
    size_t n_bytes, n_bytes_nosg;
    /* the KHR cooperative-matrix twin of an NV cooperative-matrix kernel (cm.glsl -DCM_KHR, GLSLC2 builds only;
     * NULL otherwise), run instead when vk_ctx.cm_khr */
    const uint32_t *words_khr;
    size_t n_bytes_khr;
} vk_shader_src;
extern const vk_shader_src vk_shader_table[SH_COUNT];

#define VK_MAX_SPEC 12
typedef struct {
    int shader; /* 3 * vk_shader_id + variant (0 plain, 1 no-subgroup, 2 KHR cooperative matrix) */
    uint32_t spec[VK_MAX_SPEC];
    int n_spec;
    VkPipeline pipe;
} vk_pipe;

/* ---- the back-end ------------------------------------------------------------------------------------------------ */
#define VK_NCB 8     /* command buffers in flight */
#define VK_MAX_RANGES 64
#define VK_ATTN_PROF_DISP 4096 /* attn_decode_prof: dispatches tracked between reads */

typedef struct {
    VkDeviceAddress lo, hi; /* [lo, hi) */
} vk_range;

/* Owed work (vk_exec.c): an op may leave part of its work to the next op that can do it inside its own kernel (a
 * split-K sum, a decode top-k). Until taken, the entry names what is owed (not written yet) and what the work still
 * reads; vk_owed_settle records the work first wherever another command would touch them. */
enum { VK_OWE_ROUTE, VK_OWE_KSUM, VK_OWE_N };
#define VK_OWE_RANGES 4
typedef struct {
    int on, flushing;
    uint64_t seq; /* program order: work owed later comes after this one's and never has to be recorded first */
    vk_range owed[VK_OWE_RANGES]; /* not written yet: any read or write of them records the work first */
    vk_range src[VK_OWE_RANGES];  /* still to be read by the work: a write to them records it first */
    int n_owed, n_src;
} vk_owed;

/* an expert table on the device (16 bytes per expert: data address, q8 scale address), cached by its content so
 * that ob_mat arrays built afresh for every call still find it */
typedef struct {
    uint64_t hash;
    int n_exp;
    uint64_t *host; /* the 2 * n_exp addresses */
    ob_buf *buf;
    vk_range span;  /* from the lowest to the highest byte of all experts' weights (for hazard tracking) */
} vk_table;

typedef struct {
    float theta;
    int rot_dim, section_freqs, section[3];
    ob_buf *buf;
} vk_freqs;

typedef struct vk_ctx {
    ob_backend base; /* first: the ob_backend handed out is this struct */
    vk_env env;
    VkInstance inst;
    VkDebugUtilsMessengerEXT messenger;
    int validation_active, validation_errors;
    VkPhysicalDevice phys;
    VkDevice dev;
    VkQueue queue;
    uint32_t qfam;
    vk_caps caps;
    char name[256];
    VkPhysicalDeviceMemoryProperties memprops;

    /* memory */
    vk_block *blocks;
    VkDeviceSize block_size, next_block;
    uint32_t mt_device, mt_upload, mt_download;
    VkBuffer up_buf, dn_buf;
    VkDeviceMemory up_mem, dn_mem;
    uint8_t *up_map, *dn_map;
    VkDeviceSize up_half, up_pos, dn_size;
    int up_cur, dn_coherent;
    uint64_t up_serial[2];
    ob_buf **deferred; /* buffers whose memory is released after the next full wait */
    int n_deferred, cap_deferred;

    /* execution */
    VkCommandPool pool;
    VkCommandBuffer cb[VK_NCB];
    VkFence fence[VK_NCB];
    uint64_t cb_serial[VK_NCB];
    int cb_cur, recording, n_ops;
    uint64_t serial_submitted, serial_done;
    vk_range rd[VK_MAX_RANGES], wr[VK_MAX_RANGES];
    int n_rd, n_wr;
    uint64_t n_barriers, n_dispatches; /* statistics */
    int seg_xfer;                      /* a copy was recorded since the last barrier */
    int n_batches;                     /* submissions since the last sync (vk_batch_ops) */
    const char *last_kernel;           /* name of the last dispatched shader, for error messages */

    /* pipelines */
    VkPipelineLayout layout;
    VkShaderModule modules[SH_COUNT][3]; /* per variant, as vk_pipe.shader */
    /* the tensor-core kernels run their KHR cooperative-matrix builds (vk_device.c cm_flavour), with 32-wide
     * subgroups required when cm_sg32 */
    int cm_khr, cm_sg32;
    /* the on-disk pipeline cache (vk_exec.c, OMNI_VK_PIPELINE_CACHE): loaded at init, saved at free when pipelines
     * were created since (pcache_new) */
    VkPipelineCache pcache;
    int pcache_new;
    vk_pipe *pipes;
    int n_pipes, cap_pipes;
    int pipe_stats; /* VK_KHR_pipeline_executable_properties enabled (OMNI_VK_PIPELINE_STATS=1 and supported) */
    int shader_clock; /* VK_KHR_shader_clock enabled (OMNI_VK_ATTN_PROF=1 and supported) */
    /* attn_decode_prof (vk_decode.c): the scratch buffer its records are in, and the workgroups of each dispatch
     * since they were last read */
    ob_buf *attn_prof_buf;
    int attn_prof_n;
    uint32_t attn_prof_wg[VK_ATTN_PROF_DISP];
    int64_t wait_last_us; /* the last fence wait's length (vk_exec.c wait_slot: sleep until shortly before, then poll) */

    /* scratch and caches */
    ob_buf *scratch[8]; /* 0 attention partials, 1 MoE plan, 2 MoE gate/up, 3 MoE down, 4 overlapping copies,
                        * 5 split-K partial sums of the tensor-core matmul, 6 fp16 activations (OMNI_VK_CM_X16),
                        * 7 dense copies of strided k/v rows (qk_norm_rope_kv without its fused kernel) */
    /* what scratch slot 6 holds (vk_coopmat.c): the fp16 copy of src (rows x cols, stride) at h; src = 0 once any
     * command writes src's range or the copy's (vk_hazard_for) */
    struct {
        VkDeviceAddress src, h;
        uint32_t rows, cols, stride;
        vk_range r_src, r_h;
    } x16;
    ob_buf *counters[2]; /* zeroed uints for kernels that find their last workgroup (vk_counters: set 0; the
                          * prefill's MoE plan: set 1, apart so that decode's counters keep their places) */
    int n_counters[2];
    vk_table *tables;
    int n_tables, cap_tables;
    vk_freqs freqs[16];
    int n_freqs;

    /* profiler (vk_timing.c) */
    VkQueryPool prof_pool;
    int *prof_cls; /* query i: a class mark (>= -1) or, when tracing, the dispatch of trace entry -2 - prof_cls[i] */
    uint32_t prof_n;
    int prof_class; /* the class being charged (the last mark's), -1 none */
    double prof_ms[OB_PROF_N];
    /* OMNI_VK_TRACE=1: each dispatch while profiling is timed on its own, keyed by pipeline and grid */
    /* work an op left owed for the next op to take into its own kernel (vk_owe): any other access to what it owes
     * (reads or writes) or to what it still reads (writes) records it first (vk_owed_settle, vk_owed_flush); so does
     * a sync, or freeing a buffer it touches. One entry per kind; a kind's own state is in its struct below. */
    vk_owed owe[VK_OWE_N];
    uint64_t owe_seq, owe_limit; /* the last seq handed out; while recording owed work, that work's seq (else max) */
    /* VK_OWE_ROUTE: a decode routing whose top-k is left to the next MoE gate+up (vk_decode.c vk_route_owe): the
     * logits are in lg, the ids and weights not written yet; recorded the direct way by vk_route_record */
    /* fold: the folded router (vk_decode.c): the logits are not written either, only the router's raw halves (raw:
     * Rw·x then M·a, 2·ne floats); xn is owed too, and the gate+up normalises the residual x itself */
    /* n > 1: a prefill routing (vk_moe.c), whose top-k the grouped moe_experts takes into its plan's dispatch */
    struct {
        int n, ne, k, renorm, fold;
        ob_ptr lg, ids, wts;
        vk_range r_lg, r_ids, r_wts;
        ob_ptr x, xn;
        ob_mat norm, w;
        float eps;
        VkDeviceAddress raw;
        vk_range r_x, r_xn, r_raw, r_nw;
        int pre; /* fold: the router's M·a dispatch selected the experts already (ids written; mv_rows.comp RANK) */
    } route_pend;
    /* VK_OWE_KSUM: a split-K sum (vk_coopmat.c vk_gemm_split, for a product vk_op_matmul let it defer: ksum_defer):
     * y (+)= the sum of the partial planes at part, which the next op that takes it does in its own kernel (rms_norm
     * of y, moe_route of y, qk_rope_kv of a k|v product: vk_ksum_take); else mm_ksum.comp (vk_ksum_record) */
    struct {
        ob_pc_matmul pc; /* the product as the caller gave it (y, rows, n, y_stride, accumulate) */
        VkDeviceAddress part;
        uint32_t split;
        vk_range r_part, r_y;
    } ksum_pend;
    int ksum_defer;
    /* the folded router's per-layer tables (vk_decode.c: Rw and M, fp32), dropped when a source weight changes */
    struct vk_fold *folds;
    int n_folds, cap_folds;
    vk_range fold_span; /* from the lowest to the highest byte of all folds' source weights */
    ob_buf *fold_raw;   /* the raw halves, 2 x 256 floats */
    struct vk_trace {
        VkPipeline pipe;
        uint32_t gx, gy, gz;
        double ms;
        int calls;
        char name[48];
    } *trace;
    int n_trace;
} vk_ctx;

static inline vk_ctx *vk_of(ob_backend *b) { return (vk_ctx *)b; }
/* marks the back-end failed (sticky) with a one-line reason; later ops are skipped */
void vk_fail(vk_ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *vk_result_str(VkResult r);

/* vk_device.c */
int vk_device_open(vk_ctx *c, int index, char *err, size_t cap);
void vk_device_close(vk_ctx *c);

/* vk_memory.c */
int vk_memory_init(vk_ctx *c);
void vk_memory_free(vk_ctx *c);
ob_buf *vk_alloc(ob_backend *b, size_t bytes);
void vk_buf_free(ob_backend *b, ob_buf *buf);
ob_buf *vk_wrap_host(ob_backend *b, const void *data, size_t bytes, int *copied);
int vk_upload(ob_backend *b, ob_buf *dst, size_t off, const void *src, size_t n);
int vk_download(ob_backend *b, ob_buf *src, size_t off, void *dst, size_t n);
void vk_release_deferred(vk_ctx *c);
/* device address of (buf, off) */
static inline VkDeviceAddress vk_addr(ob_ptr p) { return p.buf->blk->addr + p.buf->off + p.off; }
/* a scratch buffer of at least bytes (slot 0..6); contents do not survive growth */
ob_buf *vk_scratch(vk_ctx *c, int slot, size_t bytes);
/* device address of n zeroed uint counters from index first on, for kernels that find their last workgroup with an
 * atomic counter and leave it at zero again; 0 after vk_fail. Indices: VK_CNT_ROUTER (router.comp), VK_CNT_ATTN + kv
 * head (attn_decode.comp), VK_CNT_CHAIN (two: tickets and finished workgroups of a chained dispatch, chain.glsl). */
#define VK_CNT_ROUTER 0
#define VK_CNT_CHAIN 2
#define VK_CNT_PRE 4 /* the folded router's M·a dispatch, whose last workgroup selects the experts (mv_rows.comp) */
#define VK_CNT_ATTN 8

VkDeviceAddress vk_counters(vk_ctx *c, int first, int n);
/* the same from set 1: moe_route.comp PLAN's 1 + n_exp (workgroups done, entries per expert) */
VkDeviceAddress vk_counters_plan(vk_ctx *c, int n);

/* vk_exec.c */
int vk_exec_init(vk_ctx *c);
void vk_exec_free(vk_ctx *c);
VkCommandBuffer vk_cmd(vk_ctx *c); /* the command buffer being recorded (begun on demand) */
/* declare the device-address ranges the next command reads and writes; emits a barrier on a hazard */
void vk_hazard(vk_ctx *c, const vk_range *reads, int n_reads, const vk_range *writes, int n_writes);
/* the same before a transfer command (xfer = 1): the barrier then also covers the transfer stage */
void vk_hazard_for(vk_ctx *c, const vk_range *reads, int n_reads, const vk_range *writes, int n_writes, int xfer);
int vk_submit(vk_ctx *c);            /* submits what is recorded (no wait) */
/* commands to record before the next submission */
int vk_batch_ops(vk_ctx *c);
int vk_wait_serial(vk_ctx *c, uint64_t serial);
int vk_sync(ob_backend *b);          /* submits and waits for everything */
/* pipeline for shader with specialization constants (cached; created on first use) */
VkPipeline vk_pipeline(vk_ctx *c, vk_shader_id sh, const uint32_t *spec, int n_spec);
/* records a dispatch: push constants, groups, and the ranges it reads/writes */
void vk_dispatch(vk_ctx *c, VkPipeline p, const void *push, size_t push_size, uint32_t gx, uint32_t gy,
                 uint32_t gz, const vk_range *reads, int n_reads, const vk_range *writes, int n_writes);
static inline vk_range vk_rng(VkDeviceAddress a, uint64_t bytes) { return (vk_range){ a, a + bytes }; }
/* the range of a whole buffer, for accesses whose extent is not worth computing */
static inline vk_range vk_rng_buf(ob_ptr p) {
    VkDeviceAddress a = p.buf->blk->addr + p.buf->off;
    return (vk_range){ a, a + p.buf->size };
}
/* 1 when this back-end's kernels use subgroup operations */
static inline int vk_use_subgroups(vk_ctx *c) { return c->caps.sg_arith && c->caps.sg_shuffle && !c->env.no_subgroup; }

/* vk_timing.c */
void vk_prof_mark(ob_backend *b, int cls);
void vk_prof_read(ob_backend *b, double *ms);
int vk_prof_kernels(ob_backend *b, const char **names, double *ms, int *calls, int cap);
/* after a dispatch: its own timestamp when tracing (OMNI_VK_TRACE) and profiling */
void vk_trace_dispatch(vk_ctx *c, VkPipeline p, uint32_t gx, uint32_t gy, uint32_t gz);
void vk_prof_free(vk_ctx *c);

/* vk_ops.c / vk_moe.c */
void vk_op_get_rows(ob_backend *b, const ob_mat *table, ob_ptr ids, int n, ob_ptr out);
void vk_op_matmul(ob_backend *b, const ob_mat *w, ob_ptr x, ob_ptr y, int n, int accumulate);
void vk_op_rms_norm(ob_backend *b, ob_ptr x, const ob_mat *w, ob_ptr y, int rows, int dim, float eps);
void vk_op_rope(ob_backend *b, ob_ptr x, ob_ptr pos3, int n, int n_heads, const ob_rope *r);
void vk_op_swiglu(ob_backend *b, ob_ptr g, ob_ptr u, ob_ptr out, int64_t count);
void vk_op_add(ob_backend *b, ob_ptr x, ob_ptr y, int64_t count);
void vk_op_copy(ob_backend *b, ob_ptr src, ob_ptr dst, size_t bytes);
void vk_op_kv_store(ob_backend *b, ob_ptr kcache, ob_ptr vcache, int n_ctx, ob_ptr k, ob_ptr v, int pos0, int n,
                    const ob_attn *a);
void vk_op_attention(ob_backend *b, ob_ptr q, ob_ptr kcache, ob_ptr vcache, int n_ctx, ob_ptr out, int pos0, int n,
                     const ob_attn *a);
/* vk_decode.c: the top-k of n tokens' logits left owed (VK_OWE_ROUTE, route_pend: ids and weights owed, the logits
 * still read), and recorded the direct way (vk_owed_flush calls vk_route_record) */
void vk_route_owe(vk_ctx *c, ob_ptr logits, int n, int ne, int k, int norm_topk, ob_ptr ids, ob_ptr weights);
void vk_route_record(vk_ctx *c);
/* vk_coopmat.c: a GEMM (pipeline p, push constants px as the kernel takes them, pc as the caller gave them) over a gx x
 * gy grid, in one pass or split over K in `split` parts whose sum is recorded (mm_ksum.comp) or left owed */
void vk_gemm_split(vk_ctx *c, VkPipeline p, const ob_pc_matmul *pc, ob_pc_matmul *px, uint32_t gx, uint32_t gy,
                   uint32_t split, const vk_range *rd, int n_reads, const vk_range *writes, int n_writes);
/* vk_coopmat.c: the owed split-K sum recorded as mm_ksum.comp (vk_owed_flush calls it) */
void vk_ksum_record(vk_ctx *c);
/* the owed split-K sum, when it is exactly y (+)= planes for y = [n][rows] rows of `rows` floats at y with the given
 * accumulation: taken over by the caller's kernel (no longer owed); returns the planes' address (0: none), *split
 * their count, *r_part their range */
VkDeviceAddress vk_ksum_take(vk_ctx *c, VkDeviceAddress y, uint32_t n, uint32_t rows, int accumulate,
                             uint32_t *split, vk_range *r_part);
/* the folded router's tables whose source weights overlap r are dropped (a write to r, or r freed) */
void vk_fold_forget(vk_ctx *c, vk_range r);
void vk_fold_free_all(vk_ctx *c);
/* whether any of the n ranges a overlaps r (vk_exec.c) */
int vk_overlaps(const vk_range *a, int n, vk_range r);
/* vk_exec.c: owed work (vk_owed). vk_owe: kind now owes `owed` and still reads `src`; vk_owed_settle: records every
 * owed work that these accesses touch; vk_owed_flush: records kind's work now (nothing if none is owed, or while it
 * is being recorded); vk_owed_take: the caller's kernel does the work (0 when none was owed) */
void vk_owe(vk_ctx *c, int kind, const vk_range *owed, int n_owed, const vk_range *src, int n_src);
void vk_owed_settle(vk_ctx *c, const vk_range *reads, int n_reads, const vk_range *writes, int n_writes);
void vk_owed_flush(vk_ctx *c, int kind);
int vk_owed_take(vk_ctx *c, int kind);
void vk_op_moe_route(ob_backend *b, ob_ptr logits, int n, int n_exp, int k, int norm_topk, ob_ptr ids,
                     ob_ptr weights);
void vk_op_moe_experts(ob_backend *b, ob_ptr x, int n, int k, ob_ptr ids, ob_ptr weights, const ob_mat *gate,
                       const ob_mat *up, const ob_mat *down, int n_exp, ob_ptr y);
void vk_op_add_bias(ob_backend *b, ob_ptr x, const ob_mat *bias, int rows, int dim);
void vk_op_layer_norm(ob_backend *b, ob_ptr x, const ob_mat *w, const ob_mat *bias, ob_ptr y, int rows, int dim,
                      float eps);
void vk_op_gelu(ob_backend *b, ob_ptr x, ob_ptr y, int64_t count, int tanh_approx);
void vk_op_permute(ob_backend *b, ob_ptr src, ob_ptr dst, const int64_t d[4], const int64_t s[4]);
void vk_op_im2col(ob_backend *b, ob_ptr x, int B, int C, int H, int W, const int64_t strides[4], int k, int stride,
                  int pad, ob_ptr out);
void vk_op_add_rows(ob_backend *b, ob_ptr x, ob_ptr idx, ob_ptr src, int n, int dim);
void vk_op_topk_chunks(ob_backend *b, ob_ptr x, int n, ob_ptr out);
/* vk_decode.c: fused decode ops (backend.h, optional section) */
void vk_op_qk_norm_rope_kv(ob_backend *b, ob_ptr q, ob_ptr k, ob_ptr v, const ob_mat *q_norm, const ob_mat *k_norm,
                           float eps, ob_ptr pos3, const ob_rope *r, ob_ptr kcache, ob_ptr vcache, int n_ctx, int pos0,
                           int n, const ob_attn *a);
void vk_op_qk_norm_rope_kv_attention(ob_backend *b, ob_ptr q, ob_ptr k, ob_ptr v, const ob_mat *q_norm,
                                     const ob_mat *k_norm, float eps, ob_ptr pos3, const ob_rope *r, ob_ptr kcache,
                                     ob_ptr vcache, int n_ctx, int pos0, int n, const ob_attn *a, ob_ptr out);
/* the inverse-frequency table of a rope on the device (cached per configuration); NULL after vk_fail */
ob_buf *vk_rope_freqs(vk_ctx *c, const ob_rope *r);
void vk_op_norm_matvec(ob_backend *b, ob_ptr x, const ob_mat *norm, float eps, const ob_mat *w, ob_ptr y, ob_ptr xn);
void vk_op_norm_route(ob_backend *b, ob_ptr x, const ob_mat *norm, float eps, const ob_mat *w, ob_ptr logits,
                      ob_ptr xn, int k, int norm_topk, ob_ptr ids, ob_ptr weights);
void vk_op_matmul_norm_route(ob_backend *b, const ob_mat *wo, ob_ptr a, ob_ptr x, const ob_mat *norm, float eps,
                             const ob_mat *w, ob_ptr logits, ob_ptr xn, int k, int norm_topk, ob_ptr ids,
                             ob_ptr weights);
/* shared helpers of the op files */
/* 1 when this back-end keeps KV caches of heads of head_dim in fp16 (IEEE half), else fp32 (vk_ops.c) */
int vk_kv16(const vk_ctx *c, int head_dim);
/* bytes of one layer's K (or V) cache: n_kv heads × n_ctx × head_dim elements of fp16 or fp32 (vk_kv16) */
static inline size_t vk_kv_bytes(const vk_ctx *c, int n_kv, int n_ctx, int head_dim) {
    return (size_t)n_kv * (size_t)n_ctx * (size_t)head_dim * (vk_kv16(c, head_dim) ? 2u : 4u);
}
vk_range vk_mat_range(const ob_mat *w);
/* 1 if p holds bytes at a 4-byte aligned offset; otherwise fails the back-end naming op */
int vk_ptr_ok(vk_ctx *c, ob_ptr p, size_t bytes, const char *op);
/* ew.comp over count elements (op: 0 add, 1 swiglu, 3 gelu erf, 4 gelu tanh) */
void vk_elementwise(vk_ctx *c, int op, ob_ptr a, ob_ptr bb, ob_ptr out, int64_t count, const char *name);
uint32_t vk_norm_wg(int dim);
int vk_mat_check(vk_ctx *c, const ob_mat *w, const char *op);
/* 1 when a weight matrix (and x with x_stride) allow the 16-byte vector loads of the fast kernels */
int vk_mat_vec_ok(const ob_mat *w);
/* matrix-vector dispatch shared by matmul and the MoE decode path (vk_ops.c) */
void vk_matvec_dispatch(vk_ctx *c, int mode, ob_dtype wt, int vec, ob_pc_matvec *pc, uint32_t groups_y,
                        const vk_range *reads, int n_reads, const vk_range *writes, int n_writes);
/* the same with the RMSNorm of x fused in front (norm = 1 + the norm weight's dtype; mode 0, one x row) */
void vk_matvec_dispatch_norm(vk_ctx *c, int mode, ob_dtype wt, int vec, ob_pc_matvec *pc, uint32_t groups_y,
                             const vk_range *reads, int n_reads, const vk_range *writes, int n_writes, int norm);
/* whether Q8_0 decode products run against int8 activations (mvq8.comp) on this device and settings */
int vk_q8_int8_on(vk_ctx *c);
/* the MoE decode pair (gate+up, down) on int8 activations where the device has the integer dot product (vk_ops.c);
 * returns 0 where it does not apply. sel: mvq8.comp's SEL; norm: 1 + the norm weight's dtype with SEL's fold bit */
int vk_moe_q8_pair(vk_ctx *c, ob_dtype gt, ob_dtype dt, int vec_gu, int vec_dn, ob_pc_matvec *gu,
                   const vk_range *rd_gu, int n_rd_gu, ob_pc_matvec *dn, const vk_range *rd_dn, int n_rd_dn,
                   const vk_range *wr_gu, int n_wr_gu, const vk_range *wr_y, uint32_t sel, uint32_t norm);
void vk_matvec_dispatch_sel(vk_ctx *c, int mode, ob_dtype wt, int vec, ob_pc_matvec *pc, uint32_t groups_y,
                            const vk_range *reads, int n_reads, const vk_range *writes, int n_writes, int norm,
                            uint32_t sel);
/* tiled matmul dispatch shared by matmul and the grouped MoE path (vk_ops.c) */
void vk_matmul_dispatch(vk_ctx *c, int grouped, ob_dtype wt, int vec, ob_pc_matmul *pc, uint32_t groups_y,
                        const vk_range *reads, int n_reads, const vk_range *writes, int n_writes);
/* x rows per tile of the tiled matmul (the MoE plan cuts expert groups into tiles of this size) */
uint32_t vk_matmul_tile_n(vk_ctx *c);
/* vk_coopmat.c: the tensor-core matmul (matmul_cm.comp) in BM x BN tiles (weight rows x x rows; vk_cm_tile_n gives
 * BN for the dense or grouped form, which the MoE plan cuts expert groups into); vk_cm_ok says whether it serves
 * weights of dtype wt (f16, bf16, Q8_0; vec: 16-byte aligned rows), vk_cm_operands_ok whether pc's x and cols allow
 * it */
int vk_cm_ok(vk_ctx *c, ob_dtype wt, int vec);
uint32_t vk_cm_tile_n(vk_ctx *c, int grouped);
/* grouped: 0 dense, 1 grouped MoE, 2 grouped gate+up with swiglu (pc->w gate table, pc->s up table) */
int vk_cm_operands_ok(const ob_pc_matmul *pc);
/* x fp32; the dense form (grouped 0) converts it to fp16 first where OMNI_VK_CM_X16=2 asks */
void vk_matmul_cm_dispatch(vk_ctx *c, int grouped, ob_dtype wt, ob_pc_matmul *pc, uint32_t groups_y,
                           const vk_range *reads, int n_reads, const vk_range *writes, int n_writes);
/* 1 when dense products with weights of dtype wt go to the NV cooperative matrix 2 GEMM (matmul_cm2.comp,
 * OMNI_VK_CM2; vk_matmul_cm_dispatch routes them) */
int vk_cm2_on(vk_ctx *c, ob_dtype wt);
/* the grouped MoE on the NV cooperative matrix 2 GEMM (matmul_cm2_moe.comp, OMNI_VK_CM2_MOE): its plan tile (x rows
 * per tile) where it takes experts of these dtypes and shapes with x at xa (0: not for it, matmul_cm.comp's path) */
uint32_t vk_cm2_moe_tile_n(vk_ctx *c, ob_dtype gate_t, ob_dtype down_t, int vec, uint32_t dim, uint32_t inter,
                           VkDeviceAddress xa);
/* mode 2: gate+up+swiglu (pc as matmul_cm.comp's MODE 2 with gather: x fp32, pc->n sorted entries; y fp16), after
 * gathering x into sorted fp16 rows (cm2_gather.comp, scratch slot 6); mode 1: down (x the fp16 h, x_stride in
 * halves; y fp32). tiles: the plan's worst-case tile count (grid y). */
void vk_cm2_grouped(vk_ctx *c, int mode, ob_dtype wt, const ob_pc_matmul *pc, uint32_t tiles, const vk_range *reads,
                    int n_reads, const vk_range *writes, int n_writes);
/* 1 when OMNI_VK_CM_X16 puts this form (grouped 0 dense, else the grouped MoE) on fp16 activations */
int vk_cm_x16(vk_ctx *c, int grouped);
/* For a kernel that writes fp32 rows (rows x cols, contiguous) at y which tensor-core GEMMs will read next (the
 * prefill RMSNorm): the address where it may also write them as fp16, 0 where that does not apply; after recording
 * that dispatch, vk_x16_written registers the copy, so the GEMMs skip their conversion (cm_x16.comp). */
VkDeviceAddress vk_x16_offer(vk_ctx *c, uint32_t rows, uint32_t cols, VkDeviceAddress y);
void vk_x16_written(vk_ctx *c, uint32_t rows, uint32_t cols, VkDeviceAddress y);
/* the same with the activations' form explicit: VK_CM_X32 fp32 x on the fp32-activation build; VK_CM_X_CONVERT
 * fp32 x (x_rows rows from pc->x) converted to fp16 first (cached, see vk_ctx.x16) for the CM_X16 build;
 * VK_CM_X16_IN x already fp16 (x_stride in halves). With either fp16 form, grouped 2 writes fp16 y (y_stride in
 * halves, a multiple of 8; rows a multiple of 8). */
#define VK_CM_X32 0
#define VK_CM_X_CONVERT 1
#define VK_CM_X16_IN 2
void vk_matmul_cm_dispatch_x(vk_ctx *c, int grouped, int xform, uint32_t x_rows, ob_dtype wt, ob_pc_matmul *pc,
                             uint32_t groups_y, const vk_range *reads, int n_reads, const vk_range *writes,
                             int n_writes);
/* vk_coopmat.c: prefill attention on tensor cores (attn_flash_cm.comp, 64 (query, head) rows per workgroup) */
#define VK_CM_ATTN_BQ 64u
int vk_attn_cm_ok(vk_ctx *c, const ob_pc_attn *pc);
/* writes: the output, and with pc->part != 0 its fp16 copy there (attn_flash_cm.comp) */
void vk_attn_cm_dispatch(vk_ctx *c, ob_pc_attn *pc, const vk_range *reads, int n_reads, const vk_range *writes,
                         int n_writes);
/* workgroups for count items of `per_group`, spread over x and y so that x stays within the device limit */
void vk_grid(vk_ctx *c, uint64_t count, uint32_t per_group, uint32_t *gx, uint32_t *gy);

#endif
