/* vk_ops.c — the Vulkan back-end's table (ob_vulkan_new) and its dense ops: each fills a push-constant block,
 * picks a pipeline (kernel + specialization constants), states what memory it reads and writes, and records one
 * dispatch. Attention is in vk_attn.c, MoE in vk_moe.c.
 *
 * Kernel choices: matmul with n <= 8 x rows runs the matrix-vector kernel (weights streamed once for all rows),
 * larger n the tiled kernel; both take the 16-byte vector path when the weight (and x) are 16-byte aligned with
 * row lengths a multiple of 16 bytes, and an element-wise path otherwise. OMNI_VK_MM forces either kernel. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vk_internal.h"

/* sizes as the GLSL std430 push-constant layout has them (64-bit fields first), all within the portable 128 bytes */
_Static_assert(sizeof(ob_pc_matvec) == 88, "ob_pc_matvec layout");
_Static_assert(sizeof(ob_pc_matmul) == 80, "ob_pc_matmul layout");
_Static_assert(sizeof(ob_pc_rows) == 48, "ob_pc_rows layout");
_Static_assert(sizeof(ob_pc_norm) == 64, "ob_pc_norm layout");
_Static_assert(sizeof(ob_pc_rope) == 56, "ob_pc_rope layout");
_Static_assert(sizeof(ob_pc_kv) == 56, "ob_pc_kv layout");
_Static_assert(sizeof(ob_pc_attn) == 88, "ob_pc_attn layout");
_Static_assert(sizeof(ob_pc_route) == 40, "ob_pc_route layout");
_Static_assert(sizeof(ob_pc_plan) == 40, "ob_pc_plan layout");
_Static_assert(sizeof(ob_pc_combine) == 48, "ob_pc_combine layout");
_Static_assert(sizeof(ob_pc_ew) == 40, "ob_pc_ew layout");
_Static_assert(sizeof(ob_pc_gather) == 96, "ob_pc_gather layout");

/* ---- shared helpers -------------------------------------------------------------------------------------------- */

static size_t elem_size(ob_dtype t) { return t == OB_F32 || t == OB_I32 ? 4 : t == OB_Q8_0 ? 1 : 2; }

uint32_t vk_norm_wg(int dim) { return dim >= 1024 ? 256 : dim >= 256 ? 128 : 64; }

int vk_mat_check(vk_ctx *c, const ob_mat *w, const char *op) {
    if (c->base.failed) return -1;
    if (!w || !w->data.buf) {
        vk_fail(c, "%s: weight without a buffer", op);
        return -1;
    }
    if (w->dtype != OB_F32 && w->dtype != OB_F16 && w->dtype != OB_BF16 && w->dtype != OB_Q8_0) {
        vk_fail(c, "%s: unsupported weight dtype %s", op, ob_dtype_name(w->dtype));
        return -1;
    }
    if (w->rows <= 0 || w->cols <= 0 || w->rows > 0x7fffffff || w->cols > 0x7fffffff ||
        (w->dtype == OB_Q8_0 && w->cols % 32)) {
        vk_fail(c, "%s: bad weight shape [%lld, %lld] for %s", op, (long long)w->rows, (long long)w->cols,
                ob_dtype_name(w->dtype));
        return -1;
    }
    VkDeviceAddress a = vk_addr(w->data);
    size_t need = (size_t)w->rows * (size_t)w->cols * elem_size(w->dtype);
    if (w->dtype == OB_Q8_0) {
        size_t send = w->scale_off + (size_t)w->rows * (size_t)(w->cols / 32) * 2;
        if (send > need) need = send;
        if ((a + w->scale_off) & 1) {
            vk_fail(c, "%s: q8_0 scales not 2-byte aligned", op);
            return -1;
        }
    }
    if (a % (w->dtype == OB_F32 ? 4 : w->dtype == OB_Q8_0 ? 1 : 2)) {
        vk_fail(c, "%s: %s weight at a misaligned offset", op, ob_dtype_name(w->dtype));
        return -1;
    }
    if (w->data.off + need > w->data.buf->size) {
        vk_fail(c, "%s: weight [%lld, %lld] %s runs past its buffer", op, (long long)w->rows, (long long)w->cols,
                ob_dtype_name(w->dtype));
        return -1;
    }
    return 0;
}

int vk_mat_vec_ok(const ob_mat *w) {
    VkDeviceAddress a = vk_addr(w->data);
    return a % 16 == 0 && ((size_t)w->cols * elem_size(w->dtype)) % 16 == 0;
}

/* the bytes of a weight matrix (data and q8 scales) as one range */
vk_range vk_mat_range(const ob_mat *w) {
    VkDeviceAddress a = vk_addr(w->data);
    size_t n = (size_t)w->rows * (size_t)w->cols * elem_size(w->dtype);
    if (w->dtype == OB_Q8_0) {
        size_t send = w->scale_off + (size_t)w->rows * (size_t)(w->cols / 32) * 2;
        if (send > n) n = send;
    }
    return vk_rng(a, n);
}

int vk_ptr_ok(vk_ctx *c, ob_ptr p, size_t bytes, const char *op) {
    if (c->base.failed) return 0;
    if (!p.buf || p.off > p.buf->size || bytes > p.buf->size - p.off) {
        vk_fail(c, "%s: tensor of %zu bytes at offset %zu outside its buffer", op, bytes, p.off);
        return 0;
    }
    if (p.off % 4) {
        vk_fail(c, "%s: fp32/int32 tensor at an offset not a multiple of 4", op);
        return 0;
    }
    return 1;
}

/* ---- matrix multiplication --------------------------------------------------------------------------------------- */

void vk_matvec_dispatch(vk_ctx *c, int mode, ob_dtype wt, int vec, ob_pc_matvec *pc, uint32_t groups_y,
                        const vk_range *reads, int n_reads, const vk_range *writes, int n_writes) {
    int sg = vk_use_subgroups(c);
    uint32_t sgs = sg ? c->caps.subgroup_size : 1;
    uint32_t wg = c->env.mv_wg > 0 ? (uint32_t)c->env.mv_wg : sg ? (sgs >= 32 ? 128 : 64) : 128;
    if (sg && wg < sgs) wg = sgs;
    /* x columns per workgroup: 1, 2, 4 or 8 (fewer pipeline variants; the kernel skips columns past n) */
    uint32_t nv = mode != 0 || pc->n <= 1 ? 1 : pc->n <= 2 ? 2 : pc->n <= 4 ? 4 : 8;
    uint32_t rsg = c->env.mv_rsg > 0 ? (uint32_t)c->env.mv_rsg : (mode == 1 || nv > 2) ? 1 : 2;
    if (rsg > 2) rsg = 2;
    uint32_t rows_wg = sg ? (wg / sgs) * rsg : rsg;
    uint32_t spec[7] = { wg, (uint32_t)wt, rsg, nv, (uint32_t)mode, (uint32_t)vec, rows_wg };
    VkPipeline p = vk_pipeline(c, SH_MATVEC, spec, 7);
    uint32_t gx = (pc->rows + rows_wg - 1) / rows_wg;
    if (mode == 0) groups_y = (pc->n + nv - 1) / nv;
    vk_dispatch(c, p, pc, sizeof *pc, gx, groups_y, 1, reads, n_reads, writes, n_writes);
}

void vk_matmul_dispatch(vk_ctx *c, int grouped, ob_dtype wt, int vec, ob_pc_matmul *pc, uint32_t groups_y,
                        const vk_range *reads, int n_reads, const vk_range *writes, int n_writes) {
    /* 128x128 tiles (8x8 per thread) where shared memory allows and the device is a GPU; 64x64 (4x4) otherwise */
    const char *tile = getenv("OMNI_VK_MM_TILE");
    int big = tile ? atoi(tile) == 128 : c->caps.max_shared >= 48 * 1024;
    uint32_t bm = big ? 128 : 64, tm = big ? 8 : 4;
    uint32_t spec[8] = { 256, (uint32_t)wt, bm, bm, tm, tm, (uint32_t)grouped, (uint32_t)vec };
    VkPipeline p = vk_pipeline(c, SH_MATMUL, spec, 8);
    uint32_t gx = (pc->rows + bm - 1) / bm;
    if (!grouped) groups_y = (pc->n + bm - 1) / bm;
    vk_dispatch(c, p, pc, sizeof *pc, gx, groups_y, 1, reads, n_reads, writes, n_writes);
}

uint32_t vk_matmul_tile_n(vk_ctx *c) {
    const char *tile = getenv("OMNI_VK_MM_TILE");
    int big = tile ? atoi(tile) == 128 : c->caps.max_shared >= 48 * 1024;
    return big ? 128 : 64;
}

void vk_op_matmul(ob_backend *b, const ob_mat *w, ob_ptr x, ob_ptr y, int n, int accumulate) {
    vk_ctx *c = vk_of(b);
    if (n <= 0 || vk_mat_check(c, w, "matmul") != 0) return;
    size_t xb = (size_t)n * (size_t)w->cols * 4, yb = (size_t)n * (size_t)w->rows * 4;
    if (!vk_ptr_ok(c, x, xb, "matmul x") || !vk_ptr_ok(c, y, yb, "matmul y")) return;
    vk_range rd[3] = { vk_mat_range(w), vk_rng(vk_addr(x), xb), vk_rng(vk_addr(y), yb) };
    vk_range wr = vk_rng(vk_addr(y), yb);
    VkDeviceAddress wa = vk_addr(w->data);
    int use_vec = c->env.mm == 1 || (c->env.mm == 0 && n <= 8);
    if (use_vec) {
        int vec = vk_mat_vec_ok(w) && vk_addr(x) % 16 == 0 && w->cols % 4 == 0;
        ob_pc_matvec pc = {
            .w = wa, .s = wa + w->scale_off, .x = vk_addr(x), .y = vk_addr(y),
            .rows = (uint32_t)w->rows, .cols = (uint32_t)w->cols, .n = (uint32_t)n, .k = 1,
            .accumulate = (uint32_t)(accumulate != 0), .x_stride = (uint32_t)w->cols, .y_stride = (uint32_t)w->rows,
        };
        vk_matvec_dispatch(c, 0, w->dtype, vec, &pc, 1, rd, accumulate ? 3 : 2, &wr, 1);
    } else {
        int vec = vk_mat_vec_ok(w) && w->cols % 32 == 0;
        ob_pc_matmul pc = {
            .w = wa, .s = wa + w->scale_off, .x = vk_addr(x), .y = vk_addr(y),
            .rows = (uint32_t)w->rows, .cols = (uint32_t)w->cols, .n = (uint32_t)n,
            .accumulate = (uint32_t)(accumulate != 0), .x_stride = (uint32_t)w->cols, .y_stride = (uint32_t)w->rows,
        };
        vk_matmul_dispatch(c, 0, w->dtype, vec, &pc, 1, rd, accumulate ? 3 : 2, &wr, 1);
    }
}

/* ---- small ops --------------------------------------------------------------------------------------------------- */

void vk_op_get_rows(ob_backend *b, const ob_mat *t, ob_ptr ids, int n, ob_ptr out) {
    vk_ctx *c = vk_of(b);
    if (n <= 0 || vk_mat_check(c, t, "get_rows") != 0) return;
    size_t ob = (size_t)n * (size_t)t->cols * 4;
    if (!vk_ptr_ok(c, ids, (size_t)n * 4, "get_rows ids") || !vk_ptr_ok(c, out, ob, "get_rows out")) return;
    VkDeviceAddress wa = vk_addr(t->data);
    ob_pc_rows pc = { .w = wa, .s = wa + t->scale_off, .ids = vk_addr(ids), .dst = vk_addr(out),
                      .rows = (uint32_t)t->rows, .cols = (uint32_t)t->cols, .n = (uint32_t)n };
    uint32_t spec[2] = { 256, (uint32_t)t->dtype }, gx, gy;
    vk_grid(c, (uint64_t)n * (uint64_t)t->cols, 256, &gx, &gy);
    vk_range rd[2] = { vk_mat_range(t), vk_rng(vk_addr(ids), (size_t)n * 4) }, wr = vk_rng(vk_addr(out), ob);
    vk_dispatch(c, vk_pipeline(c, SH_GET_ROWS, spec, 2), &pc, sizeof pc, gx, gy, 1, rd, 2, &wr, 1);
}

void vk_op_rms_norm(ob_backend *b, ob_ptr x, const ob_mat *w, ob_ptr y, int rows, int dim, float eps) {
    vk_ctx *c = vk_of(b);
    if (rows <= 0 || dim <= 0 || vk_mat_check(c, w, "rms_norm") != 0) return;
    if (w->rows * w->cols < dim) {
        vk_fail(c, "rms_norm: weight of %lld elements for rows of %d", (long long)(w->rows * w->cols), dim);
        return;
    }
    size_t bytes = (size_t)rows * (size_t)dim * 4;
    if (!vk_ptr_ok(c, x, bytes, "rms_norm x") || !vk_ptr_ok(c, y, bytes, "rms_norm y")) return;
    VkDeviceAddress wa = vk_addr(w->data);
    ob_pc_norm pc = { .x = vk_addr(x), .w = wa, .s = wa + w->scale_off, .y = vk_addr(y),
                      .rows = (uint32_t)rows, .dim = (uint32_t)dim, .eps = eps };
    uint32_t gx, gy, spec[4] = { vk_norm_wg(dim), (uint32_t)w->dtype, 0, 0 };
    vk_grid(c, (uint64_t)rows, 1, &gx, &gy);
    vk_range rd[2] = { vk_rng(vk_addr(x), bytes), vk_mat_range(w) }, wr = vk_rng(vk_addr(y), bytes);
    vk_dispatch(c, vk_pipeline(c, SH_RMS_NORM, spec, 4), &pc, sizeof pc, gx, gy, 1, rd, 2, &wr, 1);
}

/* inverse frequencies of a rope as HF computes them in fp32: 1 / theta^(2j / rot_dim), or with section_freqs
 * 1 / theta^(2j / (2·section)) restarting in every section (the ViT's 2-D rotary); cached per configuration.
 * Mirrors the CPU back-end's cpu_rope. */
static ob_buf *rope_freqs(vk_ctx *c, const ob_rope *r) {
    int rot_dim = r->rot_dim;
    for (int i = 0; i < c->n_freqs; i++)
        if (c->freqs[i].theta == r->theta && c->freqs[i].rot_dim == rot_dim &&
            c->freqs[i].section_freqs == (r->section_freqs != 0) &&
            (!r->section_freqs || !memcmp(c->freqs[i].section, r->section, sizeof r->section)))
            return c->freqs[i].buf;
    int half = rot_dim / 2;
    float *f = malloc(sizeof *f * (size_t)half);
    ob_buf *buf = vk_alloc(&c->base, sizeof *f * (size_t)half);
    if (!f || !buf) {
        free(f);
        if (buf) vk_buf_free(&c->base, buf);
        vk_fail(c, "rope: out of memory");
        return NULL;
    }
    for (int i = 0; i < half; i++) {
        if (r->section_freqs) {
            int j = i, s = 0;
            while (s < 2 && j >= r->section[s] && r->section[s] > 0) j -= r->section[s++];
            int sec = r->section[s] > 0 ? r->section[s] : half;
            f[i] = 1.0f / powf(r->theta, (float)(2 * j) / (float)(2 * sec));
        } else
            f[i] = 1.0f / powf(r->theta, (float)(2 * i) / (float)rot_dim);
    }
    vk_upload(&c->base, buf, 0, f, sizeof *f * (size_t)half);
    free(f);
    if (c->n_freqs == (int)(sizeof c->freqs / sizeof *c->freqs)) { /* full: drop the oldest */
        vk_buf_free(&c->base, c->freqs[0].buf);
        memmove(&c->freqs[0], &c->freqs[1], sizeof *c->freqs * (size_t)(c->n_freqs - 1));
        c->n_freqs--;
    }
    vk_freqs *e = &c->freqs[c->n_freqs++];
    *e = (vk_freqs){ r->theta, rot_dim, r->section_freqs != 0, { r->section[0], r->section[1], r->section[2] }, buf };
    return buf;
}

void vk_op_rope(ob_backend *b, ob_ptr x, ob_ptr pos3, int n, int n_heads, const ob_rope *r) {
    vk_ctx *c = vk_of(b);
    if (n <= 0 || n_heads <= 0 || c->base.failed) return;
    if (r->rot_dim <= 0 || r->rot_dim > r->head_dim || r->rot_dim % 2) {
        vk_fail(c, "rope: rot_dim %d with head_dim %d", r->rot_dim, r->head_dim);
        return;
    }
    size_t xb = (size_t)n * (size_t)n_heads * (size_t)r->head_dim * 4;
    if (!vk_ptr_ok(c, x, xb, "rope x") || !vk_ptr_ok(c, pos3, (size_t)3 * (size_t)n * 4, "rope pos")) return;
    ob_buf *fb = rope_freqs(c, r);
    if (!fb) return;
    ob_pc_rope pc = {
        .x = vk_addr(x), .pos = vk_addr(pos3), .freqs = fb->blk->addr + fb->off,
        .n = (uint32_t)n, .n_heads = (uint32_t)n_heads, .head_dim = (uint32_t)r->head_dim,
        .rot_dim = (uint32_t)r->rot_dim, .sec0 = (uint32_t)r->section[0], .sec1 = (uint32_t)r->section[1],
        .sec2 = (uint32_t)r->section[2], .interleaved = (uint32_t)(r->interleaved != 0),
    };
    uint32_t spec[1] = { 256 }, gx, gy;
    vk_grid(c, (uint64_t)n * (uint64_t)n_heads * (uint64_t)(r->rot_dim / 2), 256, &gx, &gy);
    vk_range rd[3] = { vk_rng(vk_addr(x), xb), vk_rng(vk_addr(pos3), (size_t)3 * (size_t)n * 4),
                       vk_rng(pc.freqs, (size_t)r->rot_dim * 2) };
    vk_range wr = vk_rng(vk_addr(x), xb);
    vk_dispatch(c, vk_pipeline(c, SH_ROPE, spec, 1), &pc, sizeof pc, gx, gy, 1, rd, 3, &wr, 1);
}

void vk_elementwise(vk_ctx *c, int op, ob_ptr a, ob_ptr bb, ob_ptr out, int64_t count, const char *name) {
    if (count <= 0 || c->base.failed) return;
    if (count > 0xffffffffll) {
        vk_fail(c, "%s: %lld elements (at most 2^32 - 1)", name, (long long)count);
        return;
    }
    size_t bytes = (size_t)count * 4;
    if (!vk_ptr_ok(c, a, bytes, name) || !vk_ptr_ok(c, bb, bytes, name) || !vk_ptr_ok(c, out, bytes, name)) return;
    int vec = vk_addr(a) % 16 == 0 && vk_addr(bb) % 16 == 0 && vk_addr(out) % 16 == 0;
    ob_pc_ew pc = { .a = vk_addr(a), .b = vk_addr(bb), .dst = vk_addr(out), .count = (uint32_t)count, .dim = 1 };
    uint32_t gx, gy, spec[4] = { 256, (uint32_t)op, (uint32_t)vec, 0 };
    vk_grid(c, (uint64_t)count, vec ? 1024 : 256, &gx, &gy);
    pc.groups_x = gx;
    vk_range rd[2] = { vk_rng(vk_addr(a), bytes), vk_rng(vk_addr(bb), bytes) }, wr = vk_rng(vk_addr(out), bytes);
    vk_dispatch(c, vk_pipeline(c, SH_EW, spec, 4), &pc, sizeof pc, gx, gy, 1, rd, 2, &wr, 1);
}

void vk_op_swiglu(ob_backend *b, ob_ptr g, ob_ptr u, ob_ptr out, int64_t count) {
    vk_elementwise(vk_of(b), 1, g, u, out, count, "swiglu");
}

void vk_op_add(ob_backend *b, ob_ptr x, ob_ptr y, int64_t count) { vk_elementwise(vk_of(b), 0, x, y, y, count, "add"); }

void vk_op_copy(ob_backend *b, ob_ptr src, ob_ptr dst, size_t bytes) {
    vk_ctx *c = vk_of(b);
    if (!bytes || c->base.failed) return;
    if (!src.buf || !dst.buf || src.off + bytes > src.buf->size || dst.off + bytes > dst.buf->size) {
        vk_fail(c, "copy: %zu bytes outside a buffer", bytes);
        return;
    }
    vk_range rd = vk_rng(vk_addr(src), bytes), wr = vk_rng(vk_addr(dst), bytes);
    if (rd.lo < wr.hi && wr.lo < rd.hi) { /* overlapping (memmove semantics): go through a scratch buffer */
        ob_buf *tmp = vk_scratch(c, 4, bytes);
        if (!tmp) return;
        vk_op_copy(b, src, (ob_ptr){ tmp, 0 }, bytes);
        vk_op_copy(b, (ob_ptr){ tmp, 0 }, dst, bytes);
        return;
    }
    vk_hazard(c, &rd, 1, &wr, 1);
    VkBufferCopy reg = { .srcOffset = src.buf->off + src.off, .dstOffset = dst.buf->off + dst.off, .size = bytes };
    vkCmdCopyBuffer(vk_cmd(c), src.buf->blk->buf, dst.buf->blk->buf, 1, &reg);
    if (++c->n_ops >= c->env.max_ops) vk_submit(c);
}

/* ---- the back-end ------------------------------------------------------------------------------------------------ */

static const char *vk_device_name(ob_backend *b) { return vk_of(b)->name; }
static void *vk_host_ptr(ob_backend *b, ob_buf *buf) {
    (void)b;
    (void)buf;
    return NULL;
}

static void vk_destroy(ob_backend *b) {
    if (!b) return;
    vk_ctx *c = vk_of(b);
    if (c->dev) {
        vkDeviceWaitIdle(c->dev);
        c->serial_done = c->serial_submitted;
        for (int i = 0; i < c->n_tables; i++) {
            vk_buf_free(b, c->tables[i].buf);
            free(c->tables[i].host);
        }
        free(c->tables);
        for (int i = 0; i < c->n_freqs; i++) vk_buf_free(b, c->freqs[i].buf);
        vk_prof_free(c);
        vk_memory_free(c);
        vk_exec_free(c);
    }
    vk_device_close(c);
    free(c);
}

static const ob_ops vk_ops_table = {
    .name = "vulkan",
    .destroy = vk_destroy,
    .device_name = vk_device_name,
    .alloc = vk_alloc,
    .buf_free = vk_buf_free,
    .wrap_host = vk_wrap_host,
    .upload = vk_upload,
    .download = vk_download,
    .sync = vk_sync,
    .host_ptr = vk_host_ptr,
    .get_rows = vk_op_get_rows,
    .matmul = vk_op_matmul,
    .rms_norm = vk_op_rms_norm,
    .rope = vk_op_rope,
    .kv_store = vk_op_kv_store,
    .attention = vk_op_attention,
    .moe_route = vk_op_moe_route,
    .moe_experts = vk_op_moe_experts,
    .swiglu = vk_op_swiglu,
    .add = vk_op_add,
    .add_bias = vk_op_add_bias,
    .layer_norm = vk_op_layer_norm,
    .gelu = vk_op_gelu,
    .permute = vk_op_permute,
    .im2col = vk_op_im2col,
    .add_rows = vk_op_add_rows,
    .copy = vk_op_copy,
    .prof_mark = vk_prof_mark,
    .prof_read = vk_prof_read,
};

ob_backend *ob_vulkan_new(int device, char *err, size_t err_cap) {
    vk_ctx *c = calloc(1, sizeof *c);
    if (!c) {
        if (err && err_cap) snprintf(err, err_cap, "out of memory");
        return NULL;
    }
    c->base.ops = &vk_ops_table;
    vk_env_read(&c->env);
    if (vk_device_open(c, device, err, err_cap) != 0) {
        vk_destroy(&c->base);
        return NULL;
    }
    if (vk_exec_init(c) != 0 || vk_memory_init(c) != 0) {
        if (err && err_cap) snprintf(err, err_cap, "%s: %s", c->name, c->base.err);
        vk_destroy(&c->base);
        return NULL;
    }
    return &c->base;
}
