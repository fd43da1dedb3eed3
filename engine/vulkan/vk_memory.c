/* vk_memory.c — device memory for the Vulkan back-end.
 *
 * Buffers are sub-allocated from device-local blocks (one VkDeviceMemory + one VkBuffer with a device address
 * each), first fit with coalescing free lists. Blocks start at 32 MiB and double up to 1 GiB (never more than a
 * quarter of maxMemoryAllocationSize); a buffer larger than half a block gets a dedicated block of its own, up to
 * maxMemoryAllocationSize. A single buffer may not exceed maxStorageBufferRange.
 *
 * Uploads go through a fixed host-visible staging buffer split in two halves: the host fills one half while the
 * device copies out of the other, so any amount (60 GB of weights) streams through a few tens of MiB. Downloads go
 * through a second, host-cached staging buffer in chunks. Freed memory is reused at once: every later device
 * access of that memory is recorded in the same command stream, whose hazard tracking orders it after earlier
 * uses; only dedicated blocks (whose VkDeviceMemory is destroyed) wait for the next full wait. */
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

#define MIB ((VkDeviceSize)1 << 20)
#define ALIGN 256

static VkDeviceSize round_up(VkDeviceSize v, VkDeviceSize a) { return (v + a - 1) / a * a; }

/* first memory type in bits with all `want` flags; prefers types that also have `prefer` */
static int find_type(vk_ctx *c, uint32_t bits, VkMemoryPropertyFlags want, VkMemoryPropertyFlags prefer) {
    int fallback = -1;
    for (uint32_t i = 0; i < c->memprops.memoryTypeCount; i++) {
        VkMemoryPropertyFlags f = c->memprops.memoryTypes[i].propertyFlags;
        if (!(bits & (1u << i)) || (f & want) != want) continue;
        if ((f & prefer) == prefer) return (int)i;
        if (fallback < 0) fallback = (int)i;
    }
    return fallback;
}

/* A VkBuffer over new memory; device = 1 for a device-local storage block with a device address, 0 for a
 * host-visible staging buffer (type picked with `host_flags`). */
static VkResult make_buffer(vk_ctx *c, VkDeviceSize size, int device, VkMemoryPropertyFlags host_flags, VkBuffer *buf,
                            VkDeviceMemory *mem, uint32_t *type_out) {
    VkBufferCreateInfo bci = {
        .sType = VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO,
        .size = size,
        .usage = VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT |
                 (device ? VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_SHADER_DEVICE_ADDRESS_BIT : 0),
        .sharingMode = VK_SHARING_MODE_EXCLUSIVE,
    };
    VkResult r = vkCreateBuffer(c->dev, &bci, NULL, buf);
    if (r != VK_SUCCESS) return r;
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(c->dev, *buf, &req);
    int type = device ? find_type(c, req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT, 0)
                      : find_type(c, req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT, host_flags);
    if (device && type < 0) type = find_type(c, req.memoryTypeBits, 0, 0);
    if (type < 0) {
        vkDestroyBuffer(c->dev, *buf, NULL);
        return VK_ERROR_FEATURE_NOT_PRESENT;
    }
    VkMemoryAllocateFlagsInfo fl = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_FLAGS_INFO,
        .flags = VK_MEMORY_ALLOCATE_DEVICE_ADDRESS_BIT,
    };
    VkMemoryAllocateInfo mai = {
        .sType = VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO,
        .pNext = device ? &fl : NULL,
        .allocationSize = req.size,
        .memoryTypeIndex = (uint32_t)type,
    };
    r = vkAllocateMemory(c->dev, &mai, NULL, mem);
    if (r == VK_SUCCESS) r = vkBindBufferMemory(c->dev, *buf, *mem, 0);
    if (r != VK_SUCCESS) {
        vkDestroyBuffer(c->dev, *buf, NULL);
        if (*mem) vkFreeMemory(c->dev, *mem, NULL);
        *buf = VK_NULL_HANDLE;
        *mem = VK_NULL_HANDLE;
        return r;
    }
    if (type_out) *type_out = (uint32_t)type;
    return VK_SUCCESS;
}

static vk_block *block_new(vk_ctx *c, VkDeviceSize size, int dedicated) {
    vk_block *b = calloc(1, sizeof *b);
    if (!b) return NULL;
    VkResult r = make_buffer(c, size, 1, 0, &b->buf, &b->mem, &c->mt_device);
    if (r != VK_SUCCESS) {
        omni_log(OMNI_LOG_WARN, "vulkan: allocating %llu MiB of device memory: %s",
                 (unsigned long long)(size / MIB), vk_result_str(r));
        free(b);
        return NULL;
    }
    VkBufferDeviceAddressInfo ai = { .sType = VK_STRUCTURE_TYPE_BUFFER_DEVICE_ADDRESS_INFO, .buffer = b->buf };
    b->addr = vkGetBufferDeviceAddress(c->dev, &ai);
    b->size = size;
    b->dedicated = dedicated;
    if (!dedicated) {
        b->cap_free = 8;
        b->free = malloc(sizeof *b->free * (size_t)b->cap_free);
        if (!b->free) {
            vkDestroyBuffer(c->dev, b->buf, NULL);
            vkFreeMemory(c->dev, b->mem, NULL);
            free(b);
            return NULL;
        }
        b->free[0] = (vk_span){ 0, size };
        b->n_free = 1;
    }
    b->next = c->blocks;
    c->blocks = b;
    return b;
}

static void block_destroy(vk_ctx *c, vk_block *b) {
    vk_block **p = &c->blocks;
    while (*p && *p != b) p = &(*p)->next;
    if (*p) *p = b->next;
    vkDestroyBuffer(c->dev, b->buf, NULL);
    vkFreeMemory(c->dev, b->mem, NULL);
    free(b->free);
    free(b);
}

/* first fit in one block; returns 0 and the offset, or -1 */
static int block_take(vk_block *b, VkDeviceSize size, VkDeviceSize *off) {
    for (int i = 0; i < b->n_free; i++) {
        if (b->free[i].size < size) continue;
        *off = b->free[i].off;
        b->free[i].off += size;
        b->free[i].size -= size;
        if (!b->free[i].size) {
            memmove(&b->free[i], &b->free[i + 1], sizeof *b->free * (size_t)(b->n_free - i - 1));
            b->n_free--;
        }
        return 0;
    }
    return -1;
}

/* returns a range to the free list, merging with its neighbours; -1 if out of memory for the list */
static int block_give(vk_block *b, VkDeviceSize off, VkDeviceSize size) {
    int i = 0;
    while (i < b->n_free && b->free[i].off < off) i++;
    int merge_prev = i > 0 && b->free[i - 1].off + b->free[i - 1].size == off;
    int merge_next = i < b->n_free && off + size == b->free[i].off;
    if (merge_prev && merge_next) {
        b->free[i - 1].size += size + b->free[i].size;
        memmove(&b->free[i], &b->free[i + 1], sizeof *b->free * (size_t)(b->n_free - i - 1));
        b->n_free--;
    } else if (merge_prev) {
        b->free[i - 1].size += size;
    } else if (merge_next) {
        b->free[i].off = off;
        b->free[i].size += size;
    } else {
        if (b->n_free == b->cap_free) {
            vk_span *nf = realloc(b->free, sizeof *nf * (size_t)b->cap_free * 2);
            if (!nf) return -1;
            b->free = nf;
            b->cap_free *= 2;
        }
        memmove(&b->free[i + 1], &b->free[i], sizeof *b->free * (size_t)(b->n_free - i));
        b->free[i] = (vk_span){ off, size };
        b->n_free++;
    }
    return 0;
}

ob_buf *vk_alloc(ob_backend *be, size_t bytes) {
    vk_ctx *c = vk_of(be);
    VkDeviceSize size = round_up(bytes ? bytes : 1, ALIGN);
    if (size > c->caps.max_storage_range) {
        vk_fail(c, "buffer of %zu bytes exceeds maxStorageBufferRange (%llu)", bytes,
                (unsigned long long)c->caps.max_storage_range);
        return NULL;
    }
    if (size > c->caps.max_alloc) {
        vk_fail(c, "buffer of %zu bytes exceeds maxMemoryAllocationSize (%llu)", bytes,
                (unsigned long long)c->caps.max_alloc);
        return NULL;
    }
    ob_buf *buf = calloc(1, sizeof *buf);
    if (!buf) return NULL;
    buf->size = size;
    if (size > c->block_size / 2) {
        buf->blk = block_new(c, size, 1);
        if (!buf->blk) {
            free(buf);
            vk_fail(c, "out of device memory allocating %zu bytes", bytes);
            return NULL;
        }
        return buf;
    }
    for (vk_block *b = c->blocks; b; b = b->next)
        if (!b->dedicated && block_take(b, size, &buf->off) == 0) {
            buf->blk = b;
            return buf;
        }
    VkDeviceSize bs = c->next_block;
    while (bs < size) bs *= 2;
    vk_block *b = block_new(c, bs, 0);
    if (!b) {
        free(buf);
        vk_fail(c, "out of device memory allocating a %llu MiB block", (unsigned long long)(bs / MIB));
        return NULL;
    }
    if (c->next_block < c->block_size) c->next_block *= 2;
    if (c->next_block > c->block_size) c->next_block = c->block_size;
    block_take(b, size, &buf->off);
    buf->blk = b;
    return buf;
}

void vk_buf_free(ob_backend *be, ob_buf *buf) {
    if (!buf) return;
    vk_ctx *c = vk_of(be);
    /* owed work (a decode top-k, a split-K sum) that reads this buffer or owes into it is recorded first */
    vk_range r = vk_rng(buf->blk->addr + buf->off, (size_t)buf->size);
    vk_owed_settle(c, &r, 1, &r, 1);
    /* the folded router's tables computed from weights in this buffer go with it (vk_decode.c) */
    vk_fold_forget(c, r);
    if (buf->blk->dedicated) { /* the memory is destroyed: wait until queued work is done with it */
        if (c->n_deferred == c->cap_deferred) {
            int cap = c->cap_deferred ? c->cap_deferred * 2 : 16;
            ob_buf **d = realloc(c->deferred, sizeof *d * (size_t)cap);
            if (!d) { /* cannot defer: wait now */
                vk_sync(be);
                block_destroy(c, buf->blk);
                free(buf);
                return;
            }
            c->deferred = d;
            c->cap_deferred = cap;
        }
        c->deferred[c->n_deferred++] = buf;
        return;
    }
    if (block_give(buf->blk, buf->off, buf->size) != 0) omni_log(OMNI_LOG_WARN, "vulkan: free list full, leaking");
    free(buf);
}

void vk_release_deferred(vk_ctx *c) {
    for (int i = 0; i < c->n_deferred; i++) {
        block_destroy(c, c->deferred[i]->blk);
        free(c->deferred[i]);
    }
    c->n_deferred = 0;
}

/* ---- staging ----------------------------------------------------------------------------------------------------- */

int vk_memory_init(vk_ctx *c) {
    /* blocks: 1 GiB at most, a quarter of the allocation limit, and a sixteenth of the largest device-local heap */
    VkDeviceSize heap = 0;
    for (uint32_t i = 0; i < c->memprops.memoryHeapCount; i++)
        if ((c->memprops.memoryHeaps[i].flags & VK_MEMORY_HEAP_DEVICE_LOCAL_BIT) &&
            c->memprops.memoryHeaps[i].size > heap)
            heap = c->memprops.memoryHeaps[i].size;
    VkDeviceSize bs = 1024 * MIB;
    if (bs > c->caps.max_alloc / 4) bs = c->caps.max_alloc / 4;
    if (heap && bs > heap / 16) bs = heap / 16;
    if (bs > c->caps.max_storage_range) bs = c->caps.max_storage_range;
    if (bs < 16 * MIB) bs = 16 * MIB;
    c->block_size = bs;
    c->next_block = bs < 32 * MIB ? bs : 32 * MIB;

    /* upload staging: two halves of 32 MiB (8 MiB on CPU devices, where it is plain host memory anyway) */
    VkPhysicalDeviceProperties p;
    vkGetPhysicalDeviceProperties(c->phys, &p);
    c->up_half = p.deviceType == VK_PHYSICAL_DEVICE_TYPE_CPU ? 8 * MIB : 32 * MIB;
    VkResult r = make_buffer(c, 2 * c->up_half, 0, VK_MEMORY_PROPERTY_HOST_COHERENT_BIT, &c->up_buf, &c->up_mem,
                             &c->mt_upload);
    if (r == VK_SUCCESS) r = vkMapMemory(c->dev, c->up_mem, 0, VK_WHOLE_SIZE, 0, (void **)&c->up_map);
    if (r != VK_SUCCESS) {
        vk_fail(c, "upload staging buffer: %s", vk_result_str(r));
        return OMNI_E_BACKEND;
    }
    if (!(c->memprops.memoryTypes[c->mt_upload].propertyFlags & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT)) {
        vk_fail(c, "no host-coherent memory type for staging");
        return OMNI_E_BACKEND;
    }
    c->dn_size = c->up_half;
    r = make_buffer(c, c->dn_size, 0, VK_MEMORY_PROPERTY_HOST_CACHED_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT,
                    &c->dn_buf, &c->dn_mem, &c->mt_download);
    if (r == VK_SUCCESS) r = vkMapMemory(c->dev, c->dn_mem, 0, VK_WHOLE_SIZE, 0, (void **)&c->dn_map);
    if (r != VK_SUCCESS) {
        vk_fail(c, "download staging buffer: %s", vk_result_str(r));
        return OMNI_E_BACKEND;
    }
    c->dn_coherent =
        (c->memprops.memoryTypes[c->mt_download].propertyFlags & VK_MEMORY_PROPERTY_HOST_COHERENT_BIT) != 0;
    return OMNI_OK;
}

void vk_memory_free(vk_ctx *c) {
    vk_release_deferred(c);
    free(c->deferred);
    c->deferred = NULL;
    for (int i = 0; i < (int)(sizeof c->scratch / sizeof *c->scratch); i++) {
        if (c->scratch[i]) vk_buf_free(&c->base, c->scratch[i]);
        c->scratch[i] = NULL;
    }
    for (int i = 0; i < 2; i++) {
        if (c->counters[i]) vk_buf_free(&c->base, c->counters[i]);
        c->counters[i] = NULL;
    }
    c->attn_prof_buf = NULL;
    vk_release_deferred(c);
    while (c->blocks) block_destroy(c, c->blocks);
    if (c->up_buf) vkDestroyBuffer(c->dev, c->up_buf, NULL);
    if (c->up_mem) vkFreeMemory(c->dev, c->up_mem, NULL);
    if (c->dn_buf) vkDestroyBuffer(c->dev, c->dn_buf, NULL);
    if (c->dn_mem) vkFreeMemory(c->dev, c->dn_mem, NULL);
}

static int check_range(vk_ctx *c, ob_buf *buf, size_t off, size_t n, const char *what) {
    if (!buf || off > buf->size || n > buf->size - off) {
        vk_fail(c, "%s: range [%zu, +%zu) outside a buffer of %llu bytes", what, off, n,
                buf ? (unsigned long long)buf->size : 0ull);
        return -1;
    }
    return 0;
}

int vk_upload(ob_backend *be, ob_buf *dst, size_t off, const void *src, size_t n) {
    vk_ctx *c = vk_of(be);
    if (be->failed) return OMNI_E_BACKEND;
    if (check_range(c, dst, off, n, "upload") != 0) return OMNI_E_ARG;
    const uint8_t *s = src;
    while (n > 0) {
        if (c->up_pos >= c->up_half) { /* this half is full: hand it to the device and take the other */
            if (vk_submit(c) != 0) return OMNI_E_BACKEND;
            c->up_cur ^= 1;
            if (vk_wait_serial(c, c->up_serial[c->up_cur]) != 0) return OMNI_E_BACKEND;
            c->up_pos = 0;
        }
        size_t chunk = (size_t)(c->up_half - c->up_pos);
        if (chunk > n) chunk = n;
        VkDeviceSize soff = (VkDeviceSize)c->up_cur * c->up_half + c->up_pos;
        memcpy(c->up_map + soff, s, chunk);
        VkDeviceAddress a = dst->blk->addr + dst->off + off;
        vk_range w = vk_rng(a, chunk);
        vk_hazard_for(c, NULL, 0, &w, 1, 1);
        VkBufferCopy reg = { .srcOffset = soff, .dstOffset = dst->off + off, .size = chunk };
        vkCmdCopyBuffer(vk_cmd(c), c->up_buf, dst->blk->buf, 1, &reg);
        c->up_serial[c->up_cur] = c->serial_submitted + 1; /* the command buffer being recorded */
        c->up_pos = round_up(c->up_pos + chunk, 16);
        c->n_ops++;
        s += chunk;
        off += chunk;
        n -= chunk;
    }
    if (c->n_ops >= vk_batch_ops(c) && vk_submit(c) != 0) return OMNI_E_BACKEND;
    return be->failed ? OMNI_E_BACKEND : OMNI_OK;
}

int vk_download(ob_backend *be, ob_buf *src, size_t off, void *dst, size_t n) {
    vk_ctx *c = vk_of(be);
    if (be->failed) return OMNI_E_BACKEND;
    if (check_range(c, src, off, n, "download") != 0) return OMNI_E_ARG;
    uint8_t *d = dst;
    while (n > 0) {
        size_t chunk = n < c->dn_size ? n : (size_t)c->dn_size;
        vk_range rd = vk_rng(src->blk->addr + src->off + off, chunk);
        vk_hazard_for(c, &rd, 1, NULL, 0, 1);
        VkCommandBuffer cb = vk_cmd(c);
        VkBufferCopy reg = { .srcOffset = src->off + off, .dstOffset = 0, .size = chunk };
        vkCmdCopyBuffer(cb, src->blk->buf, c->dn_buf, 1, &reg);
        VkMemoryBarrier mb = {
            .sType = VK_STRUCTURE_TYPE_MEMORY_BARRIER,
            .srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
            .dstAccessMask = VK_ACCESS_HOST_READ_BIT,
        };
        vkCmdPipelineBarrier(cb, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_HOST_BIT, 0, 1, &mb, 0, NULL, 0,
                             NULL);
        int rc = vk_sync(be);
        if (rc != 0) return rc;
        if (!c->dn_coherent) {
            VkMappedMemoryRange mr = { .sType = VK_STRUCTURE_TYPE_MAPPED_MEMORY_RANGE, .memory = c->dn_mem,
                                       .size = VK_WHOLE_SIZE };
            vkInvalidateMappedMemoryRanges(c->dev, 1, &mr);
        }
        memcpy(d, c->dn_map, chunk);
        d += chunk;
        off += chunk;
        n -= chunk;
    }
    return OMNI_OK;
}

ob_buf *vk_wrap_host(ob_backend *be, const void *data, size_t bytes, int *copied) {
    ob_buf *b = vk_alloc(be, bytes);
    if (!b) return NULL;
    if (vk_upload(be, b, 0, data, bytes) != 0) {
        vk_buf_free(be, b);
        return NULL;
    }
    if (copied) *copied = 1;
    return b;
}

ob_buf *vk_scratch(vk_ctx *c, int slot, size_t bytes) {
    if (c->scratch[slot] && c->scratch[slot]->size >= bytes) return c->scratch[slot];
    if (c->scratch[slot]) {
        vk_buf_free(&c->base, c->scratch[slot]);
        c->scratch[slot] = NULL;
    }
    size_t want = bytes + bytes / 4; /* some head room so growth is rare */
    if (want > c->caps.max_storage_range) want = bytes;
    c->scratch[slot] = vk_alloc(&c->base, want);
    return c->scratch[slot];
}

static VkDeviceAddress counters_in(vk_ctx *c, int set, int first, int n) {
    if (first < 0 || n < 1) return 0;
    int need = first + n;
    if (!c->counters[set] || c->n_counters[set] < need) {
        /* kernels leave their counters at zero, so a fresh zeroed buffer is equivalent to the old one */
        int want = need < 64 ? 64 : need;
        uint32_t *zero = calloc((size_t)want, 4);
        ob_buf *nb = zero ? vk_alloc(&c->base, (size_t)want * 4) : NULL;
        if (!nb || vk_upload(&c->base, nb, 0, zero, (size_t)want * 4) != OMNI_OK) {
            free(zero);
            if (nb) vk_buf_free(&c->base, nb);
            vk_fail(c, "out of memory for %d kernel counters", want);
            return 0;
        }
        free(zero);
        if (c->counters[set]) vk_buf_free(&c->base, c->counters[set]);
        c->counters[set] = nb;
        c->n_counters[set] = want;
    }
    return c->counters[set]->blk->addr + c->counters[set]->off + (VkDeviceAddress)first * 4u;
}

VkDeviceAddress vk_counters(vk_ctx *c, int first, int n) { return counters_in(c, 0, first, n); }

VkDeviceAddress vk_counters_plan(vk_ctx *c, int n) { return counters_in(c, 1, 0, n); }
