/* vk_exec.c — how work reaches the device: command buffers, barriers, submission, pipelines.
 *
 * Ops are recorded into one command buffer at a time (a ring of VK_NCB, each with a fence). Every recorded command
 * states the device-address ranges it reads and writes; a global memory barrier is emitted only when a command
 * touches memory that a command since the last barrier wrote (read-after-write, write-after-write) or read
 * (write-after-read). Independent dispatches (q, k and v projections) therefore run without barriers between them.
 * The tracked ranges persist across submissions, since a pipeline barrier also orders work of earlier
 * submissions on the same queue. A command buffer is submitted at sync/download, when an upload staging half is
 * full, or after OMNI_VK_MAX_OPS commands (so the device starts while the host still records), and the host waits
 * on fences only at sync/download or to reuse a command buffer or staging half.
 *
 * Pipelines come from the SPIR-V embedded at build time (vk_shaders.c), one pipeline layout for all (push
 * constants only; memory is reached through buffer device addresses), created on first use and cached by shader
 * and specialization constants (workgroup size, tile sizes, weight type, subgroup-derived sizes). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "vk_internal.h"

#define PUSH_BYTES 128

/* ---- the on-disk pipeline cache ----------------------------------------------------------------------------------
 * The NV cooperative matrix 2 GEMMs take 2-6 s each to compile in the H100 driver (docs/benchmarks.md); a
 * VkPipelineCache kept on disk turns that into a lookup from the second start on. OMNI_VK_PIPELINE_CACHE=0 turns it
 * off, =PATH puts it elsewhere; the default file is $XDG_CACHE_HOME/omni/pipelines.bin (~/.cache without it). The
 * file is our header (magic, payload size, FNV-1a of the payload) and the driver's data; a file that is short,
 * damaged or for another device/driver (Vulkan's own header: vendor, device, cache UUID) is ignored, the cache then
 * starts empty and the file is rewritten (to a temporary name, then renamed, so a reader never sees half a file). */
#define PCACHE_MAGIC "omniPC01"
#define PCACHE_MAX ((size_t)1 << 30)

static uint64_t fnv1a(const unsigned char *p, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* the file's path into buf (0: no cache) */
static int pcache_path(char *buf, size_t n) {
    const char *v = getenv("OMNI_VK_PIPELINE_CACHE");
    if (v && !strcmp(v, "0")) return 0;
    if (v && *v && strcmp(v, "1")) return snprintf(buf, n, "%s", v) < (int)n;
    const char *x = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (x && *x) return snprintf(buf, n, "%s/omni/pipelines.bin", x) < (int)n;
    if (home && *home) return snprintf(buf, n, "%s/.cache/omni/pipelines.bin", home) < (int)n;
    return 0;
}

/* the payload of a cache file when it is whole and for this device and driver (NULL otherwise; *len its size) */
static unsigned char *pcache_read(vk_ctx *c, const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    unsigned char hdr[24];
    unsigned char *d = NULL;
    if (fread(hdr, 1, sizeof hdr, f) == sizeof hdr && !memcmp(hdr, PCACHE_MAGIC, 8)) {
        uint64_t n, h;
        memcpy(&n, hdr + 8, 8);
        memcpy(&h, hdr + 16, 8);
        if (n >= 32 && n <= PCACHE_MAX && (d = malloc((size_t)n)) && fread(d, 1, (size_t)n, f) == n &&
            fgetc(f) == EOF && fnv1a(d, (size_t)n) == h) {
            /* VkPipelineCacheHeaderVersionOne: header size, version, vendor, device, cache UUID */
            VkPhysicalDeviceProperties pp;
            vkGetPhysicalDeviceProperties(c->phys, &pp);
            uint32_t w[4];
            memcpy(w, d, sizeof w);
            if (w[0] >= 32 && w[0] <= n && w[1] == VK_PIPELINE_CACHE_HEADER_VERSION_ONE && w[2] == pp.vendorID &&
                w[3] == pp.deviceID && !memcmp(d + 16, pp.pipelineCacheUUID, VK_UUID_SIZE)) {
                *len = (size_t)n;
                fclose(f);
                return d;
            }
        }
    }
    free(d);
    fclose(f);
    return NULL;
}

static void pcache_load(vk_ctx *c) {
    char path[1024];
    if (!pcache_path(path, sizeof path)) return;
    size_t len = 0;
    unsigned char *d = pcache_read(c, path, &len);
    VkPipelineCacheCreateInfo ci = { .sType = VK_STRUCTURE_TYPE_PIPELINE_CACHE_CREATE_INFO,
                                     .initialDataSize = d ? len : 0, .pInitialData = d };
    if (vkCreatePipelineCache(c->dev, &ci, NULL, &c->pcache) != VK_SUCCESS) {
        ci.initialDataSize = 0, ci.pInitialData = NULL; /* the driver refused the data: start empty */
        if (vkCreatePipelineCache(c->dev, &ci, NULL, &c->pcache) != VK_SUCCESS) c->pcache = VK_NULL_HANDLE;
    }
    free(d);
    c->pcache_new = 0;
}

/* mkdir -p of path's directory (the last component is the file) */
static void mkdirs(char *path) {
    for (char *p = path + 1; *p; p++)
        if (*p == '/') {
            *p = 0;
            mkdir(path, 0755);
            *p = '/';
        }
}

static void pcache_save(vk_ctx *c) {
    if (!c->pcache) return;
    char path[1024], tmp[1100];
    size_t n = 0;
    unsigned char *d = NULL;
    if (c->pcache_new && !c->base.failed && pcache_path(path, sizeof path) &&
        vkGetPipelineCacheData(c->dev, c->pcache, &n, NULL) == VK_SUCCESS && n >= 32 && n <= PCACHE_MAX &&
        (d = malloc(n + 24)) && vkGetPipelineCacheData(c->dev, c->pcache, &n, d + 24) == VK_SUCCESS) {
        uint64_t n64 = n, h = fnv1a(d + 24, n);
        memcpy(d, PCACHE_MAGIC, 8);
        memcpy(d + 8, &n64, 8);
        memcpy(d + 16, &h, 8);
        mkdirs(path);
        snprintf(tmp, sizeof tmp, "%s.%ld.tmp", path, (long)getpid());
        FILE *f = fopen(tmp, "wb");
        int ok = f && fwrite(d, 1, n + 24, f) == n + 24;
        if (f && fclose(f) != 0) ok = 0;
        if (!ok || rename(tmp, path) != 0) remove(tmp);
    }
    free(d);
    vkDestroyPipelineCache(c->dev, c->pcache, NULL);
    c->pcache = VK_NULL_HANDLE;
}

int vk_exec_init(vk_ctx *c) {
    VkCommandPoolCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = c->qfam,
    };
    VkResult r = vkCreateCommandPool(c->dev, &pci, NULL, &c->pool);
    if (r != VK_SUCCESS) {
        vk_fail(c, "vkCreateCommandPool: %s", vk_result_str(r));
        return OMNI_E_BACKEND;
    }
    VkCommandBufferAllocateInfo ai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = c->pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = VK_NCB,
    };
    r = vkAllocateCommandBuffers(c->dev, &ai, c->cb);
    if (r != VK_SUCCESS) {
        vk_fail(c, "vkAllocateCommandBuffers: %s", vk_result_str(r));
        return OMNI_E_BACKEND;
    }
    for (int i = 0; i < VK_NCB; i++) {
        VkFenceCreateInfo fci = { .sType = VK_STRUCTURE_TYPE_FENCE_CREATE_INFO };
        r = vkCreateFence(c->dev, &fci, NULL, &c->fence[i]);
        if (r != VK_SUCCESS) {
            vk_fail(c, "vkCreateFence: %s", vk_result_str(r));
            return OMNI_E_BACKEND;
        }
    }
    /* every kernel takes at most 128 bytes of push constants and nothing else */
    VkPushConstantRange pr = { .stageFlags = VK_SHADER_STAGE_COMPUTE_BIT, .offset = 0, .size = PUSH_BYTES };
    VkPipelineLayoutCreateInfo lci = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_LAYOUT_CREATE_INFO,
        .pushConstantRangeCount = 1,
        .pPushConstantRanges = &pr,
    };
    r = vkCreatePipelineLayout(c->dev, &lci, NULL, &c->layout);
    if (r != VK_SUCCESS) {
        vk_fail(c, "vkCreatePipelineLayout: %s", vk_result_str(r));
        return OMNI_E_BACKEND;
    }
    pcache_load(c);
    return OMNI_OK;
}

void vk_exec_free(vk_ctx *c) {
    if (!c->dev) return;
    if (!c->base.failed) vkDeviceWaitIdle(c->dev); /* after a device error it could wait forever */
    pcache_save(c);
    for (int i = 0; i < c->n_pipes; i++) vkDestroyPipeline(c->dev, c->pipes[i].pipe, NULL);
    free(c->pipes);
    c->pipes = NULL;
    c->n_pipes = 0;
    for (int s = 0; s < SH_COUNT; s++)
        for (int v = 0; v < 3; v++)
            if (c->modules[s][v]) vkDestroyShaderModule(c->dev, c->modules[s][v], NULL);
    if (c->layout) vkDestroyPipelineLayout(c->dev, c->layout, NULL);
    for (int i = 0; i < VK_NCB; i++)
        if (c->fence[i]) vkDestroyFence(c->dev, c->fence[i], NULL);
    if (c->pool) vkDestroyCommandPool(c->dev, c->pool, NULL);
}

/* ---- recording --------------------------------------------------------------------------------------------------- */

static int64_t now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* Waits for the fence of ring slot i if it carries unfinished work. A thread asleep in vkWaitForFences wakes some
 * time after the signal, and in decode that time is the device's idle gap between tokens (the host then downloads
 * the logits and records the next token). So with OMNI_VK_SPIN_US > 0 the wait sleeps only until SPIN_MARGIN_US
 * before the previous wait's length, then polls the fence (at most OMNI_VK_SPIN_US) and sleeps only after that:
 * H100 tg128, three alternations in one run, always polling: BF16 247.4 / 249.0 / 249.7 -> 256.9 / 251.2 / 256.4,
 * Q8_0 316.8 / 325.0 / 323.2 -> 332.4 / 337.1 / 334.6 (docs/benchmarks.md, session 9). */
#define SPIN_MARGIN_US 250
static int wait_slot(vk_ctx *c, int i) {
    if (c->cb_serial[i] == 0 || c->cb_serial[i] <= c->serial_done) return 0;
    VkResult r = VK_NOT_READY;
    int64_t t0 = c->env.spin_us > 0 ? now_us() : 0;
    if (c->env.spin_us > 0) {
        int64_t pre = c->wait_last_us - SPIN_MARGIN_US;
        if (pre > 0) r = vkWaitForFences(c->dev, 1, &c->fence[i], VK_TRUE, (uint64_t)pre * 1000u);
        if (r != VK_SUCCESS) {
            int64_t t1 = now_us();
            while ((r = vkGetFenceStatus(c->dev, c->fence[i])) == VK_NOT_READY && now_us() - t1 < c->env.spin_us) {
            }
        }
    }
    if (r != VK_SUCCESS)
        r = vkWaitForFences(c->dev, 1, &c->fence[i], VK_TRUE, (uint64_t)c->env.fence_timeout_s * 1000000000ull);
    if (c->env.spin_us > 0 && r == VK_SUCCESS) c->wait_last_us = now_us() - t0;
    if (r != VK_SUCCESS) {
        vk_fail(c, "vkWaitForFences: %s%s (last kernel: %s)", vk_result_str(r),
                r == VK_TIMEOUT ? ", the device did not finish in OMNI_VK_FENCE_TIMEOUT_S" : "",
                c->last_kernel ? c->last_kernel : "none");
        return -1;
    }
    /* fence signals cover all earlier submissions on the queue, so everything up to this serial is done */
    if (c->cb_serial[i] > c->serial_done) c->serial_done = c->cb_serial[i];
    return 0;
}

VkCommandBuffer vk_cmd(vk_ctx *c) {
    if (c->recording) return c->cb[c->cb_cur];
    int i = c->cb_cur;
    wait_slot(c, i);
    vkResetFences(c->dev, 1, &c->fence[i]);
    vkResetCommandBuffer(c->cb[i], 0);
    VkCommandBufferBeginInfo bi = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
    };
    VkResult r = vkBeginCommandBuffer(c->cb[i], &bi);
    if (r != VK_SUCCESS) vk_fail(c, "vkBeginCommandBuffer: %s", vk_result_str(r));
    c->recording = 1;
    c->n_ops = 0;
    return c->cb[i];
}

int vk_overlaps(const vk_range *a, int n, vk_range r) {
    for (int i = 0; i < n; i++)
        if (a[i].lo < r.hi && r.lo < a[i].hi) return 1;
    return 0;
}

void vk_owe(vk_ctx *c, int kind, const vk_range *owed, int n_owed, const vk_range *src, int n_src) {
    vk_owed *o = &c->owe[kind];
    if (n_owed > VK_OWE_RANGES || n_src > VK_OWE_RANGES) { /* a programming error: never owe what cannot be tracked */
        vk_fail(c, "owed work: %d / %d ranges (at most %d)", n_owed, n_src, VK_OWE_RANGES);
        return;
    }
    o->on = 1;
    o->seq = ++c->owe_seq;
    o->n_owed = n_owed, o->n_src = n_src;
    memcpy(o->owed, owed, sizeof *owed * (size_t)n_owed);
    if (n_src) memcpy(o->src, src, sizeof *src * (size_t)n_src);
}

void vk_owed_flush(vk_ctx *c, int kind) {
    vk_owed *o = &c->owe[kind];
    if (!o->on || o->flushing) return;
    o->on = 0;
    o->flushing = 1;
    /* work owed after this one (e.g. a top-k of the logits this split-K sum writes) stays owed: it comes later */
    uint64_t limit = c->owe_limit;
    c->owe_limit = o->seq;
    if (kind == VK_OWE_ROUTE)
        vk_route_record(c);
    else
        vk_ksum_record(c);
    c->owe_limit = limit;
    o->flushing = 0;
}

int vk_owed_take(vk_ctx *c, int kind) {
    int on = c->owe[kind].on;
    c->owe[kind].on = 0;
    return on;
}

void vk_owed_settle(vk_ctx *c, const vk_range *reads, int n_reads, const vk_range *writes, int n_writes) {
    for (int k = 0; k < VK_OWE_N; k++) {
        const vk_owed *o = &c->owe[k];
        if (!o->on || o->flushing || o->seq > c->owe_limit) continue;
        int touch = 0;
        for (int i = 0; i < o->n_owed && !touch; i++)
            touch = vk_overlaps(reads, n_reads, o->owed[i]) || vk_overlaps(writes, n_writes, o->owed[i]);
        for (int i = 0; i < o->n_src && !touch; i++) touch = vk_overlaps(writes, n_writes, o->src[i]);
        if (touch) vk_owed_flush(c, k);
    }
}

void vk_hazard(vk_ctx *c, const vk_range *reads, int n_reads, const vk_range *writes, int n_writes) {
    vk_hazard_for(c, reads, n_reads, writes, n_writes, 0);
}

/* The barrier names only the stages involved: compute → compute unless a copy was recorded since the last barrier
 * (source side) or the next command is one (xfer, destination side), which is all a decode step's ~300 dependent
 * dispatches need. On the H100 the wider barrier cost the same (2.32 vs 2.33 µs per dependent dispatch,
 * `vulkan_bench latency`); the narrow one states the dependency exactly, which other drivers may reward. */
void vk_hazard_for(vk_ctx *c, const vk_range *reads, int n_reads, const vk_range *writes, int n_writes, int xfer) {
    /* owed work (a decode top-k, a split-K sum) is recorded before anything else touches what it owes or reads */
    vk_owed_settle(c, reads, n_reads, writes, n_writes);
    /* the folded router's tables (vk_decode.c) lapse when one of their source weights is written */
    for (int i = 0; i < n_writes && c->n_folds; i++) vk_fold_forget(c, writes[i]);
    /* the fp16 activation copy (vk_coopmat.c) lapses when its source or the copy itself is written */
    if (c->x16.src && (vk_overlaps(writes, n_writes, c->x16.r_src) || vk_overlaps(writes, n_writes, c->x16.r_h)))
        c->x16.src = 0;
    int need = c->n_rd + n_reads > VK_MAX_RANGES || c->n_wr + n_writes > VK_MAX_RANGES;
    for (int i = 0; i < n_reads && !need; i++) need = vk_overlaps(c->wr, c->n_wr, reads[i]);
    for (int i = 0; i < n_writes && !need; i++)
        need = vk_overlaps(c->wr, c->n_wr, writes[i]) || vk_overlaps(c->rd, c->n_rd, writes[i]);
    VkCommandBuffer cb = vk_cmd(c);
    if (need) {
        int wide = c->env.wide_barriers;
        int src_x = wide || c->seg_xfer, dst_x = wide || xfer;
        VkMemoryBarrier mb = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            .srcAccessMask = VK_ACCESS_SHADER_WRITE_BIT | (src_x ? VK_ACCESS_TRANSFER_WRITE_BIT : 0),
            .dstAccessMask = VK_ACCESS_SHADER_READ_BIT | VK_ACCESS_SHADER_WRITE_BIT |
                             (dst_x ? VK_ACCESS_TRANSFER_READ_BIT | VK_ACCESS_TRANSFER_WRITE_BIT : 0),
        };
        VkPipelineStageFlags src = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | (src_x ? VK_PIPELINE_STAGE_TRANSFER_BIT : 0);
        VkPipelineStageFlags dst = VK_PIPELINE_STAGE_COMPUTE_SHADER_BIT | (dst_x ? VK_PIPELINE_STAGE_TRANSFER_BIT : 0);
        vkCmdPipelineBarrier(cb, src, dst, 0, 1, &mb, 0, NULL, 0, NULL);
        c->n_rd = c->n_wr = 0;
        c->seg_xfer = 0;
        c->n_barriers++;
    }
    if (xfer) c->seg_xfer = 1;
    for (int i = 0; i < n_reads; i++) c->rd[c->n_rd++] = reads[i];
    for (int i = 0; i < n_writes; i++) c->wr[c->n_wr++] = writes[i];
}

int vk_submit(vk_ctx *c) {
    if (!c->recording) return c->base.failed ? -1 : 0;
    int i = c->cb_cur;
    c->recording = 0;
    VkResult r = vkEndCommandBuffer(c->cb[i]);
    if (r == VK_SUCCESS) {
        VkSubmitInfo si = {
            .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO, .commandBufferCount = 1, .pCommandBuffers = &c->cb[i]};
        r = vkQueueSubmit(c->queue, 1, &si, c->fence[i]);
    }
    if (r != VK_SUCCESS) {
        vk_fail(c, "vkQueueSubmit: %s", vk_result_str(r));
        return -1;
    }
    c->cb_serial[i] = ++c->serial_submitted;
    c->cb_cur = (i + 1) % VK_NCB;
    c->n_ops = 0;
    c->n_batches++;
    return 0;
}

/* Commands per submission: after a sync the device is idle, so the first batch is short (8 commands) to start it
 * early while the host records the rest; batches then double up to OMNI_VK_MAX_OPS. A decode step records ~300
 * dispatches at ~1 µs of host time each: one batch of 128 would leave the GPU idle for its whole recording. */
int vk_batch_ops(vk_ctx *c) {
    int n = 8 << (c->n_batches < 8 ? c->n_batches : 8);
    return n < c->env.max_ops ? n : c->env.max_ops;
}

int vk_wait_serial(vk_ctx *c, uint64_t serial) {
    if (serial == 0 || serial <= c->serial_done) return 0;
    for (int i = 0; i < VK_NCB; i++)
        if (c->cb_serial[i] == serial) return wait_slot(c, i);
    return 0; /* older than the ring: long done */
}

int vk_sync(ob_backend *b) {
    vk_ctx *c = vk_of(b);
    for (int k = 0; k < VK_OWE_N; k++) vk_owed_flush(c, k); /* all recorded work done includes owed work */
    if (vk_submit(c) != 0) return OMNI_E_BACKEND;
    if (vk_wait_serial(c, c->serial_submitted) != 0) return OMNI_E_BACKEND;
    c->n_rd = c->n_wr = 0; /* all done and visible (fence signal makes device writes available) */
    c->n_batches = 0;
    vk_release_deferred(c);
    return b->failed ? OMNI_E_BACKEND : OMNI_OK;
}

/* ---- pipelines --------------------------------------------------------------------------------------------------- */

VkPipeline vk_pipeline(vk_ctx *c, vk_shader_id sh, const uint32_t *spec, int n_spec) {
    if (n_spec < 0 || n_spec > VK_MAX_SPEC) { /* a programming error: the cache entry holds VK_MAX_SPEC constants */
        vk_fail(c, "shader %s: %d specialization constants (at most %d)", vk_shader_table[sh].name, n_spec,
                VK_MAX_SPEC);
        return VK_NULL_HANDLE;
    }
    /* variant: the KHR cooperative-matrix build, the one without subgroup operations, or the plain one */
    int var = c->cm_khr && vk_shader_table[sh].words_khr ? 2 : !vk_use_subgroups(c) && vk_shader_table[sh].words_nosg;
    for (int i = 0; i < c->n_pipes; i++) {
        vk_pipe *p = &c->pipes[i];
        if (p->shader == (int)sh * 3 + var && p->n_spec == n_spec &&
            !memcmp(p->spec, spec, sizeof *spec * (size_t)n_spec))
            return p->pipe;
    }
    if (c->base.failed) return VK_NULL_HANDLE;
    const vk_shader_src *src = &vk_shader_table[sh];
    if (!c->modules[sh][var]) {
        VkShaderModuleCreateInfo mci = {
            .sType = VK_STRUCTURE_TYPE_SHADER_MODULE_CREATE_INFO,
            .codeSize = var == 2 ? src->n_bytes_khr : var ? src->n_bytes_nosg : src->n_bytes,
            .pCode = var == 2 ? src->words_khr : var ? src->words_nosg : src->words,
        };
        VkResult r = vkCreateShaderModule(c->dev, &mci, NULL, &c->modules[sh][var]);
        if (r != VK_SUCCESS) {
            vk_fail(c, "shader %s: vkCreateShaderModule: %s", src->name, vk_result_str(r));
            return VK_NULL_HANDLE;
        }
    }
    VkSpecializationMapEntry map[VK_MAX_SPEC];
    for (int i = 0; i < n_spec; i++) map[i] = (VkSpecializationMapEntry){ (uint32_t)i, (uint32_t)(4 * i), 4 };
    VkSpecializationInfo si = {
        .mapEntryCount = (uint32_t)n_spec,
        .pMapEntries = map,
        .dataSize = sizeof *spec * (size_t)n_spec,
        .pData = spec,
    };
    VkComputePipelineCreateInfo ci = {
        .sType = VK_STRUCTURE_TYPE_COMPUTE_PIPELINE_CREATE_INFO,
        .flags = c->pipe_stats ? VK_PIPELINE_CREATE_CAPTURE_STATISTICS_BIT_KHR : 0,
        .stage = {
            .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_CREATE_INFO,
            .stage = VK_SHADER_STAGE_COMPUTE_BIT,
            .module = c->modules[sh][var],
            .pName = "main",
            .pSpecializationInfo = &si,
        },
        .layout = c->layout,
    };
    /* the KHR cooperative-matrix kernels lay out 8 (matmul) or 4 (attention) subgroups of 32 */
    VkPipelineShaderStageRequiredSubgroupSizeCreateInfo rss = {
        .sType = VK_STRUCTURE_TYPE_PIPELINE_SHADER_STAGE_REQUIRED_SUBGROUP_SIZE_CREATE_INFO,
        .requiredSubgroupSize = 32,
    };
    if (var == 2 && c->cm_sg32) ci.stage.pNext = &rss;
    VkPipeline pipe;
    if (c->env.sync_each) omni_log(OMNI_LOG_WARN, "vulkan: creating pipeline %s", src->name);
    double t0 = omni_time_ms();
    VkResult r = vkCreateComputePipelines(c->dev, c->pcache, 1, &ci, NULL, &pipe);
    c->pcache_new = 1;
    double dt = omni_time_ms() - t0;
    if (dt > 2000 || c->env.sync_each) omni_log(OMNI_LOG_WARN, "vulkan: pipeline %s took %.0f ms", src->name, dt);
    if (r != VK_SUCCESS) {
        vk_fail(c, "shader %s: vkCreateComputePipelines: %s", src->name, vk_result_str(r));
        return VK_NULL_HANDLE;
    }
    if (c->n_pipes == c->cap_pipes) {
        int cap = c->cap_pipes ? c->cap_pipes * 2 : 32;
        vk_pipe *np = realloc(c->pipes, sizeof *np * (size_t)cap);
        if (!np) {
            vkDestroyPipeline(c->dev, pipe, NULL);
            vk_fail(c, "out of memory for pipelines");
            return VK_NULL_HANDLE;
        }
        c->pipes = np;
        c->cap_pipes = cap;
    }
    vk_pipe *p = &c->pipes[c->n_pipes++];
    p->shader = (int)sh * 3 + var;
    p->n_spec = n_spec;
    memcpy(p->spec, spec, sizeof *spec * (size_t)n_spec);
    p->pipe = pipe;
    return pipe;
}

void vk_dispatch(vk_ctx *c, VkPipeline p, const void *push, size_t push_size, uint32_t gx, uint32_t gy,
                 uint32_t gz, const vk_range *reads, int n_reads, const vk_range *writes, int n_writes) {
    if (c->base.failed || !p) return;
    if (!gx || !gy || !gz) return;
    if (push_size > PUSH_BYTES || gx > c->caps.max_wg_count[0] || gy > c->caps.max_wg_count[1] ||
        gz > c->caps.max_wg_count[2]) {
        vk_fail(c, "dispatch %ux%ux%u (push %zu bytes) exceeds device limits", gx, gy, gz, push_size);
        return;
    }
    vk_hazard(c, reads, n_reads, writes, n_writes);
    VkCommandBuffer cb = vk_cmd(c);
    uint8_t pc[PUSH_BYTES] = { 0 };
    memcpy(pc, push, push_size);
    vkCmdBindPipeline(cb, VK_PIPELINE_BIND_POINT_COMPUTE, p);
    vkCmdPushConstants(cb, c->layout, VK_SHADER_STAGE_COMPUTE_BIT, 0, PUSH_BYTES, pc);
    vkCmdDispatch(cb, gx, gy, gz);
    c->n_dispatches++;
    if (c->env.trace && c->prof_class >= 0) vk_trace_dispatch(c, p, gx, gy, gz);
    if (c->env.sync_each) {
        for (int i = 0; i < c->n_pipes; i++)
            if (c->pipes[i].pipe == p) c->last_kernel = vk_shader_table[c->pipes[i].shader / 3].name;
        vk_sync(&c->base);
    } else if (++c->n_ops >= vk_batch_ops(c))
        vk_submit(c);
}

void vk_grid(vk_ctx *c, uint64_t count, uint32_t per_group, uint32_t *gx, uint32_t *gy) {
    uint64_t groups = (count + per_group - 1) / per_group;
    uint64_t maxx = c->caps.max_wg_count[0] < 65535 ? c->caps.max_wg_count[0] : 65535;
    if (groups <= maxx) {
        *gx = (uint32_t)groups;
        *gy = 1;
    } else {
        *gx = (uint32_t)maxx;
        *gy = (uint32_t)((groups + maxx - 1) / maxx);
    }
}
