/* vk_prof.c — the optional per-op-class profiler of backend.h (prof_mark / prof_read) on the Vulkan back-end:
 * every mark writes a GPU timestamp (after all earlier work completes) into a query pool, and the time between
 * consecutive marks is charged to the class of the first. Results are read after a sync; when the pool fills up
 * between reads, it is synced and harvested early. Devices without timestamps on the compute queue charge nothing. */
#include <stdlib.h>

#include "vk_internal.h"

#define PROF_QUERIES 8192

/* adds the closed intervals of the pool to c->prof_ms and empties it (the work must be complete) */
static void harvest(vk_ctx *c) {
    if (c->prof_n > 1) {
        uint64_t *ts = malloc(sizeof *ts * c->prof_n);
        if (ts && vkGetQueryPoolResults(c->dev, c->prof_pool, 0, c->prof_n, sizeof *ts * c->prof_n, ts, sizeof *ts,
                                        VK_QUERY_RESULT_64_BIT | VK_QUERY_RESULT_WAIT_BIT) == VK_SUCCESS)
            for (uint32_t i = 0; i + 1 < c->prof_n; i++)
                if (c->prof_cls[i] >= 0 && c->prof_cls[i] < OB_PROF_N)
                    c->prof_ms[c->prof_cls[i]] += (double)(ts[i + 1] - ts[i]) * c->caps.timestamp_period * 1e-6;
        free(ts);
    }
    c->prof_n = 0;
}

void vk_prof_mark(ob_backend *b, int cls) {
    vk_ctx *c = vk_of(b);
    if (c->base.failed || c->caps.timestamp_period <= 0) return;
    if (!c->prof_pool) {
        VkQueryPoolCreateInfo qi = { .sType = VK_STRUCTURE_TYPE_QUERY_POOL_CREATE_INFO,
                                     .queryType = VK_QUERY_TYPE_TIMESTAMP, .queryCount = PROF_QUERIES };
        c->prof_cls = malloc(sizeof *c->prof_cls * PROF_QUERIES);
        if (!c->prof_cls || vkCreateQueryPool(c->dev, &qi, NULL, &c->prof_pool) != VK_SUCCESS) {
            free(c->prof_cls);
            c->prof_cls = NULL;
            c->prof_pool = VK_NULL_HANDLE;
            c->caps.timestamp_period = 0; /* give up profiling */
            return;
        }
    }
    if (c->prof_n == PROF_QUERIES) { /* full: finish the work, harvest, and continue the open interval */
        int open = c->prof_cls[c->prof_n - 1];
        if (vk_sync(b) != 0) return;
        harvest(c);
        vk_prof_mark(b, open);
    }
    VkCommandBuffer cb = vk_cmd(c);
    if (c->prof_n == 0) vkCmdResetQueryPool(cb, c->prof_pool, 0, PROF_QUERIES);
    vkCmdWriteTimestamp(cb, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT, c->prof_pool, c->prof_n);
    c->prof_cls[c->prof_n++] = cls;
}

void vk_prof_read(ob_backend *b, double *ms) {
    vk_ctx *c = vk_of(b);
    if (c->prof_n && vk_sync(b) == 0) {
        int open = c->prof_cls[c->prof_n - 1];
        harvest(c);
        if (open >= 0) vk_prof_mark(b, open); /* an interval still open keeps charging its class */
    }
    for (int i = 0; i < OB_PROF_N; i++) {
        ms[i] += c->prof_ms[i];
        c->prof_ms[i] = 0;
    }
}

void vk_prof_free(vk_ctx *c) {
    if (c->prof_pool) vkDestroyQueryPool(c->dev, c->prof_pool, NULL);
    free(c->prof_cls);
    c->prof_pool = VK_NULL_HANDLE;
    c->prof_cls = NULL;
}
