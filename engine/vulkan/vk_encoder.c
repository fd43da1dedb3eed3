/* vk_encoder.c — the ops the audio and vision encoders add to the decoder's set: Linear biases, LayerNorm, GELU,
 * 4-D permutes, im2col for convolutions, and row additions (DeepStack). Each fills a push-constant block and
 * records one dispatch of rms_norm.comp (layer-norm mode), ew.comp or gather.comp.
 * Mirrors the CPU back-end's add_bias, layer_norm, gelu, permute, im2col and add_rows. */
#include "vk_internal.h"

static int vec_ok(vk_ctx *c, const ob_mat *v, int dim, const char *op) {
    if (vk_mat_check(c, v, op) != 0) return 0;
    if (v->rows * v->cols < dim) {
        vk_fail(c, "%s: vector of %lld elements for rows of %d", op, (long long)(v->rows * v->cols), dim);
        return 0;
    }
    return 1;
}

static void dispatch_gather(vk_ctx *c, int mode, ob_pc_gather *pc, uint64_t threads, const vk_range *rd, int n_rd,
                            const vk_range *wr) {
    if (threads > 0xffffffffull) {
        vk_fail(c, "gather: %llu elements (at most 2^32 - 1)", (unsigned long long)threads);
        return;
    }
    uint32_t gx, gy, spec[2] = { 256, (uint32_t)mode };
    vk_grid(c, threads, 256, &gx, &gy);
    pc->count = (uint32_t)threads;
    pc->groups_x = gx;
    vk_dispatch(c, vk_pipeline(c, SH_GATHER, spec, 2), pc, sizeof *pc, gx, gy, 1, rd, n_rd, wr, 1);
}

void vk_op_add_bias(ob_backend *b, ob_ptr x, const ob_mat *bias, int rows, int dim) {
    vk_ctx *c = vk_of(b);
    if (rows <= 0 || dim <= 0 || !vec_ok(c, bias, dim, "add_bias")) return;
    size_t bytes = (size_t)rows * (size_t)dim * 4;
    if (!vk_ptr_ok(c, x, bytes, "add_bias x")) return;
    if ((uint64_t)rows * (uint64_t)dim > 0xffffffffull) {
        vk_fail(c, "add_bias: too many elements");
        return;
    }
    VkDeviceAddress ba = vk_addr(bias->data);
    ob_pc_ew pc = { .a = ba, .b = vk_addr(x), .dst = ba + bias->scale_off, .count = (uint32_t)(rows * dim),
                    .dim = (uint32_t)dim };
    uint32_t gx, gy, spec[4] = { 256, 2, 0, (uint32_t)bias->dtype };
    vk_grid(c, pc.count, 256, &gx, &gy);
    pc.groups_x = gx;
    vk_range rd[2] = { vk_mat_range(bias), vk_rng(pc.b, bytes) }, wr = vk_rng(pc.b, bytes);
    vk_dispatch(c, vk_pipeline(c, SH_EW, spec, 4), &pc, sizeof pc, gx, gy, 1, rd, 2, &wr, 1);
}

void vk_op_layer_norm(ob_backend *b, ob_ptr x, const ob_mat *w, const ob_mat *bias, ob_ptr y, int rows, int dim,
                      float eps) {
    vk_ctx *c = vk_of(b);
    if (rows <= 0 || dim <= 0 || !vec_ok(c, w, dim, "layer_norm weight")) return;
    int has_b = bias && bias->data.buf;
    if (has_b && !vec_ok(c, bias, dim, "layer_norm bias")) return;
    size_t bytes = (size_t)rows * (size_t)dim * 4;
    if (!vk_ptr_ok(c, x, bytes, "layer_norm x") || !vk_ptr_ok(c, y, bytes, "layer_norm y")) return;
    VkDeviceAddress wa = vk_addr(w->data), ba = has_b ? vk_addr(bias->data) : wa;
    ob_pc_norm pc = { .x = vk_addr(x), .w = wa, .s = wa + w->scale_off, .y = vk_addr(y), .b = ba,
                      .bs = ba + (has_b ? bias->scale_off : 0), .rows = (uint32_t)rows, .dim = (uint32_t)dim,
                      .eps = eps, .has_bias = (uint32_t)has_b };
    uint32_t gx, gy, spec[4] = { vk_norm_wg(dim), (uint32_t)w->dtype, 1, has_b ? (uint32_t)bias->dtype : 0 };
    vk_grid(c, (uint64_t)rows, 1, &gx, &gy);
    vk_range rd[3] = { vk_rng(pc.x, bytes), vk_mat_range(w), has_b ? vk_mat_range(bias) : vk_mat_range(w) };
    vk_range wr = vk_rng(pc.y, bytes);
    vk_dispatch(c, vk_pipeline(c, SH_RMS_NORM, spec, 4), &pc, sizeof pc, gx, gy, 1, rd, 3, &wr, 1);
}

void vk_op_gelu(ob_backend *b, ob_ptr x, ob_ptr y, int64_t count, int tanh_approx) {
    vk_elementwise(vk_of(b), tanh_approx ? 4 : 3, x, x, y, count, "gelu");
}

void vk_op_permute(ob_backend *b, ob_ptr src, ob_ptr dst, const int64_t d[4], const int64_t s[4]) {
    vk_ctx *c = vk_of(b);
    if (c->base.failed) return;
    uint64_t count = 1, reach = 0;
    ob_pc_gather pc = { .src = vk_addr(src), .dst = vk_addr(dst) };
    for (int i = 0; i < 4; i++) {
        if (d[i] <= 0) return;
        if (d[i] > 0xffffffffll || s[i] < 0 || s[i] > 0xffffffffll) {
            vk_fail(c, "permute: dimension %d (%lld, stride %lld) out of range", i, (long long)d[i], (long long)s[i]);
            return;
        }
        count *= (uint64_t)d[i];
        reach += (uint64_t)(d[i] - 1) * (uint64_t)s[i];
        pc.d[i] = (uint32_t)d[i];
        pc.s[i] = (uint32_t)s[i];
    }
    if (!vk_ptr_ok(c, src, (size_t)(reach + 1) * 4, "permute src") || !vk_ptr_ok(c, dst, (size_t)count * 4, "permute dst"))
        return;
    vk_range rd = vk_rng(pc.src, (reach + 1) * 4), wr = vk_rng(pc.dst, count * 4);
    dispatch_gather(c, 0, &pc, count, &rd, 1, &wr);
}

void vk_op_im2col(ob_backend *b, ob_ptr x, int B, int C, int H, int W, const int64_t strides[4], int k, int stride,
                  int pad, ob_ptr out) {
    vk_ctx *c = vk_of(b);
    if (c->base.failed || B <= 0 || C <= 0 || H <= 0 || W <= 0) return;
    if (k <= 0 || stride <= 0 || pad < 0 || H + 2 * pad < k || W + 2 * pad < k) {
        vk_fail(c, "im2col: kernel %d, stride %d, pad %d on %dx%d", k, stride, pad, H, W);
        return;
    }
    int Ho = (H + 2 * pad - k) / stride + 1, Wo = (W + 2 * pad - k) / stride + 1;
    uint64_t reach = (uint64_t)(B - 1) * (uint64_t)strides[0] + (uint64_t)(C - 1) * (uint64_t)strides[1] +
                     (uint64_t)(H - 1) * (uint64_t)strides[2] + (uint64_t)(W - 1) * (uint64_t)strides[3];
    uint64_t count = (uint64_t)B * (uint64_t)Ho * (uint64_t)Wo * (uint64_t)C * (uint64_t)k * (uint64_t)k;
    for (int i = 0; i < 4; i++)
        if (strides[i] < 0 || strides[i] > 0xffffffffll) {
            vk_fail(c, "im2col: stride %d out of range", i);
            return;
        }
    if (!vk_ptr_ok(c, x, (size_t)(reach + 1) * 4, "im2col x") || !vk_ptr_ok(c, out, (size_t)count * 4, "im2col out"))
        return;
    ob_pc_gather pc = { .src = vk_addr(x), .dst = vk_addr(out), .C = (uint32_t)C, .H = (uint32_t)H, .W = (uint32_t)W,
                        .k = (uint32_t)k, .stride = (uint32_t)stride, .pad = (uint32_t)pad, .Ho = (uint32_t)Ho,
                        .Wo = (uint32_t)Wo };
    for (int i = 0; i < 4; i++) pc.s[i] = (uint32_t)strides[i];
    vk_range rd = vk_rng(pc.src, (reach + 1) * 4), wr = vk_rng(pc.dst, count * 4);
    dispatch_gather(c, 1, &pc, count, &rd, 1, &wr);
}

void vk_op_add_rows(ob_backend *b, ob_ptr x, ob_ptr idx, ob_ptr src, int n, int dim) {
    vk_ctx *c = vk_of(b);
    if (c->base.failed || n <= 0 || dim <= 0) return;
    size_t sb = (size_t)n * (size_t)dim * 4;
    if (!vk_ptr_ok(c, idx, (size_t)n * 4, "add_rows idx") || !vk_ptr_ok(c, src, sb, "add_rows src") ||
        !vk_ptr_ok(c, x, (size_t)dim * 4, "add_rows x"))
        return;
    ob_pc_gather pc = { .src = vk_addr(src), .dst = vk_addr(x), .idx = vk_addr(idx) };
    pc.d[0] = (uint32_t)n;
    pc.d[1] = (uint32_t)dim;
    /* the target rows are only known on the device: state the rest of x's buffer as written */
    vk_range rd[3] = { vk_rng(pc.src, sb), vk_rng(pc.idx, (size_t)n * 4), vk_rng_buf(x) };
    vk_range wr = vk_rng_buf(x);
    dispatch_gather(c, 2, &pc, (uint64_t)dim, rd, 3, &wr);
}
