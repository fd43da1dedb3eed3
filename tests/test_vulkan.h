/* test_vulkan.h — helpers of the Vulkan tests: open the Vulkan back-end beside the CPU reference (under the
 * validation layer when it is installed), mirror tensors on both, compare results, count validation errors. */
#ifndef TEST_VULKAN_H
#define TEST_VULKAN_H

#include <stdlib.h>
#include <string.h>

#include "backend.h"
#include "harness.h"
#include "util.h"
#include "vulkan/ob_vulkan.h"

typedef struct {
    ob_backend *vk, *cpu;
} tv_env;

typedef struct {
    ob_buf *v, *c;
    size_t bytes;
} tv_buf;

static inline void tv_log(int level, const char *msg, void *ud) {
    (void)ud;
    if (level >= OMNI_LOG_WARN) fprintf(stderr, "    [%s] %s\n", level >= OMNI_LOG_ERROR ? "error" : "warn", msg);
}

/* Opens both back-ends; returns 0 (and a reason in why) when there is no Vulkan device. Environment settings
 * (OMNI_VK_*) apply to the Vulkan one: set them before. Validation is on unless OMNI_VK_VALIDATION says 0. */
static inline int tv_open(tv_env *e, char *why, size_t cap) {
    omni_log_set_sink(tv_log, NULL);
    setenv("OMNI_VK_VALIDATION", "1", 0);
    e->vk = ob_vulkan_new(-1, why, cap);
    if (!e->vk) return 0;
    e->cpu = ob_cpu_new(2);
    return e->cpu != NULL;
}

/* Closes both; checks that the device saw no error and the validation layer reported nothing */
static inline void tv_close(tv_env *e) {
    if (e->vk) {
        CHECK_EQ_INT(e->vk->ops->sync(e->vk), 0);
        if (e->vk->failed) fprintf(stderr, "    vulkan back-end failed: %s\n", e->vk->err);
        CHECK(!e->vk->failed);
        CHECK_EQ_INT(ob_vulkan_validation_errors(e->vk), 0);
        e->vk->ops->destroy(e->vk);
    }
    if (e->cpu) e->cpu->ops->destroy(e->cpu);
    e->vk = e->cpu = NULL;
}

#define TV_OPEN(e)                                                                                              \
    tv_env e = { 0 };                                                                                           \
    do {                                                                                                        \
        char tv_why_[256] = "";                                                                                 \
        if (!tv_open(&e, tv_why_, sizeof tv_why_)) {                                                            \
            char tv_msg_[300];                                                                                  \
            snprintf(tv_msg_, sizeof tv_msg_, "no Vulkan device (%s)", tv_why_);                                \
            tv_close(&e);                                                                                       \
            SKIP(tv_msg_);                                                                                      \
        }                                                                                                       \
    } while (0)

/* a buffer on both back-ends holding the same bytes (zeros when data is NULL), starting at byte `pad` */
static inline tv_buf tv_new(tv_env *e, const void *data, size_t bytes, size_t pad) {
    tv_buf t = { e->vk->ops->alloc(e->vk, bytes + pad), e->cpu->ops->alloc(e->cpu, bytes + pad), bytes };
    uint8_t *tmp = calloc(1, bytes + pad);
    if (tmp && data) memcpy(tmp + pad, data, bytes);
    if (tmp && t.v && t.c) {
        e->vk->ops->upload(e->vk, t.v, 0, tmp, bytes + pad);
        e->cpu->ops->upload(e->cpu, t.c, 0, tmp, bytes + pad);
    }
    free(tmp);
    return t;
}

static inline void tv_free(tv_env *e, tv_buf *t) {
    if (t->v) e->vk->ops->buf_free(e->vk, t->v);
    if (t->c) e->cpu->ops->buf_free(e->cpu, t->c);
    t->v = t->c = NULL;
}

static inline ob_ptr tv_pv(tv_buf t, size_t off) { return (ob_ptr){ t.v, off }; }
static inline ob_ptr tv_pc(tv_buf t, size_t off) { return (ob_ptr){ t.c, off }; }

/* max |vk - cpu| / max |cpu| over n floats at byte offset off (0 when both are all zero); -1 on download error */
static inline double tv_rel_err(tv_env *e, tv_buf t, size_t off, size_t n) {
    float *a = malloc(n * 4), *b = malloc(n * 4);
    double err = -1;
    if (a && b && e->vk->ops->download(e->vk, t.v, off, a, n * 4) == 0 &&
        e->cpu->ops->download(e->cpu, t.c, off, b, n * 4) == 0) {
        double md = 0, mr = 0;
        int nan = 0;
        for (size_t i = 0; i < n; i++) {
            if (a[i] != a[i]) nan = 1;
            double d = fabs((double)a[i] - b[i]);
            if (d > md) md = d;
            if (fabs(b[i]) > mr) mr = fabs(b[i]);
        }
        err = nan ? 1e30 : mr > 0 ? md / mr : md;
    }
    free(a);
    free(b);
    return err;
}

/* ---- KV caches: fp32 on the CPU; on Vulkan fp16 for head dims that are multiples of 8 (fp32 with OMNI_VK_KV_F32=1
 * or other head dims; ob_kv_cache_bytes tells) ---- */

/* 1 when the Vulkan back-end keeps caches of heads of head_dim in fp16 */
static inline int tv_kv16(tv_env *e, int head_dim) {
    return ob_kv_cache_bytes(e->vk, 1, 1, head_dim) == (size_t)head_dim * 2;
}

/* x rounded to fp16 and back, in place (round to nearest even: what the kernels' stores do) */
static inline void tv_round_f16(float *x, size_t n) {
    for (size_t i = 0; i < n; i++) x[i] = omni_f16_to_f32(omni_f32_to_f16(x[i]));
}

/* a cache of n elements (heads of head_dim) on both back-ends holding x: fp32 on the CPU, the Vulkan back-end's
 * format there. Where that is fp16, x is first rounded to fp16 in place, so that both hold the same values. */
static inline tv_buf tv_new_cache(tv_env *e, float *x, size_t n, int head_dim) {
    int h = tv_kv16(e, head_dim);
    tv_buf t = { e->vk->ops->alloc(e->vk, n * (h ? 2 : 4)), e->cpu->ops->alloc(e->cpu, n * 4), n * 4 };
    if (h) tv_round_f16(x, n);
    uint16_t *x16 = h ? malloc(n * 2) : NULL;
    for (size_t i = 0; x16 && i < n; i++) x16[i] = omni_f32_to_f16(x[i]);
    if (t.v && t.c && (x16 || !h)) {
        e->vk->ops->upload(e->vk, t.v, 0, h ? (const void *)x16 : (const void *)x, n * (h ? 2 : 4));
        e->cpu->ops->upload(e->cpu, t.c, 0, x, n * 4);
    }
    free(x16);
    return t;
}

/* a cache's n elements as fp32 (vk = 1: the Vulkan copy, widened from fp16 where it is that; 0: the CPU copy) into
 * out; 0 on success */
static inline int tv_cache_get(tv_env *e, tv_buf t, size_t n, int head_dim, int vk, float *out) {
    if (!vk) return e->cpu->ops->download(e->cpu, t.c, 0, out, n * 4);
    if (!tv_kv16(e, head_dim)) return e->vk->ops->download(e->vk, t.v, 0, out, n * 4);
    uint16_t *x16 = malloc(n * 2 + 2);
    int rc = x16 ? e->vk->ops->download(e->vk, t.v, 0, x16, n * 2) : -1;
    for (size_t i = 0; rc == 0 && i < n; i++) out[i] = omni_f16_to_f32(x16[i]);
    free(x16);
    return rc;
}

/* max |vk - cpu| / max |cpu| over a cache of n elements (the Vulkan one widened from fp16 where it is that); -1 on
 * download error */
static inline double tv_cache_err(tv_env *e, tv_buf t, size_t n, int head_dim) {
    float *a = malloc(n * 4), *b = malloc(n * 4);
    double err = -1;
    if (a && b && tv_cache_get(e, t, n, head_dim, 1, a) == 0 && tv_cache_get(e, t, n, head_dim, 0, b) == 0) {
        double md = 0, mr = 0;
        int nan = 0;
        for (size_t i = 0; i < n; i++) {
            if (a[i] != a[i]) nan = 1;
            md = fmax(md, fabs((double)a[i] - b[i]));
            mr = fmax(mr, fabs((double)b[i]));
        }
        err = nan ? 1e30 : mr > 0 ? md / mr : md;
    }
    free(a);
    free(b);
    return err;
}

static inline void tv_rand(omni_rng *r, float *x, size_t n, float scale) {
    for (size_t i = 0; i < n; i++) x[i] = (omni_rng_uniform(r) * 2.0f - 1.0f) * scale;
}

/* a random routing of n tokens to k distinct experts each out of n_exp, skewed towards low ids so that the experts'
 * groups differ in size, with weights in [0, 1) */
static inline void tv_rand_routing(omni_rng *r, int32_t *ids, float *wts, int n, int k, int n_exp) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < k; j++) {
            int ex, dup;
            do {
                float u = omni_rng_uniform(r);
                ex = (int)(u * u * (float)n_exp);
                dup = 0;
                for (int q = 0; q < j; q++) dup |= ids[i * k + q] == ex;
            } while (dup);
            ids[i * k + j] = ex;
            wts[i * k + j] = omni_rng_uniform(r);
        }
}

/* host bytes of a rows×cols weight in dtype t made from random fp32 values */
static inline void *tv_weights(omni_rng *r, ob_dtype t, int rows, int cols, size_t *bytes) {
    size_t n = (size_t)rows * (size_t)cols;
    *bytes = 0;
    float *f = malloc(n * 4);
    void *w = malloc(ob_dtype_bytes(t, (int64_t)n) + 4);
    if (!f || !w) {
        free(f);
        free(w);
        return NULL;
    }
    tv_rand(r, f, n, 1.0f);
    ob_weights_from_f32(f, t, rows, cols, w);
    free(f);
    *bytes = ob_dtype_bytes(t, (int64_t)n);
    return w;
}

/* The MoE expert arrays over one buffer on both back-ends that holds, per expert (per_al bytes apart), gate, up (gb
 * bytes each, [inter, dim]) and down ([dim, inter]): [vk gate][vk up][vk down][cpu gate][cpu up][cpu down], n_exp
 * matrices each (malloc'd; NULL when out of memory). */
static inline ob_mat *tv_expert_mats(tv_buf A, size_t per_al, size_t gb, ob_dtype t, int n_exp, int dim, int inter) {
    ob_mat *m = malloc(sizeof *m * 6 * (size_t)n_exp);
    for (int side = 0; m && side < 2; side++)
        for (int ex = 0; ex < n_exp; ex++) {
            ob_buf *bf = side ? A.c : A.v;
            size_t o = (size_t)ex * per_al;
            m[side * 3 * n_exp + ex] = ob_mat_make((ob_ptr){ bf, o }, t, inter, dim);
            m[side * 3 * n_exp + n_exp + ex] = ob_mat_make((ob_ptr){ bf, o + gb }, t, inter, dim);
            m[side * 3 * n_exp + 2 * n_exp + ex] = ob_mat_make((ob_ptr){ bf, o + 2 * gb }, t, dim, inter);
        }
    return m;
}

#endif
