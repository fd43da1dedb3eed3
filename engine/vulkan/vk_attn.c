/* vk_attn.c — KV-cache writes and attention for the Vulkan back-end.
 *
 * The cache layout is the one backend.h describes: per layer [n_kv_heads][n_ctx][head_dim] fp32. Attention picks
 * one of two kernels (OMNI_VK_ATTN forces either):
 *   - split-K (attn_split.comp + attn_combine.comp) for n <= 4 queries (decode): the visible keys are cut into
 *     chunks of 128, one workgroup per (chunk, head, query), so a single query still fills the device; a second
 *     pass merges the chunks' partial softmax sums;
 *   - flash (attn_flash.comp) for longer runs of queries (prefill): BQ queries per workgroup walk the keys in
 *     blocks with an online softmax, skipping blocks that the causal/window mask hides entirely.
 * Both handle causal and sliding-window masks and GQA (kv head = head / (n_heads / n_kv_heads)). */
#include "vk_internal.h"

#define SPLIT_CHUNK 128

static int attn_check(vk_ctx *c, const ob_attn *a, int n_ctx, int pos0, int n, const char *op) {
    if (c->base.failed) return -1;
    if (a->n_heads <= 0 || a->n_kv_heads <= 0 || a->n_heads % a->n_kv_heads || a->head_dim <= 0 ||
        a->head_dim > 256) {
        vk_fail(c, "%s: heads %d / kv heads %d / head_dim %d not supported (head_dim <= 256, heads a multiple of "
                   "kv heads)", op, a->n_heads, a->n_kv_heads, a->head_dim);
        return -1;
    }
    if (pos0 < 0 || n <= 0 || pos0 + n > n_ctx) {
        vk_fail(c, "%s: positions %d..%d outside a context of %d", op, pos0, pos0 + n - 1, n_ctx);
        return -1;
    }
    return 0;
}

static int in_buf(vk_ctx *c, ob_ptr p, size_t bytes, const char *what) {
    if (!p.buf || p.off > p.buf->size || bytes > p.buf->size - p.off || p.off % 4) {
        vk_fail(c, "%s: %zu bytes at offset %zu outside its buffer (or misaligned)", what, bytes, p.off);
        return 0;
    }
    return 1;
}

void vk_op_kv_store(ob_backend *b, ob_ptr kcache, ob_ptr vcache, int n_ctx, ob_ptr k, ob_ptr v, int pos0, int n,
                    const ob_attn *a) {
    vk_ctx *c = vk_of(b);
    if (attn_check(c, a, n_ctx, pos0, n, "kv_store") != 0) return;
    size_t cache_b = (size_t)a->n_kv_heads * (size_t)n_ctx * (size_t)a->head_dim * 4;
    size_t kv_b = (size_t)n * (size_t)a->n_kv_heads * (size_t)a->head_dim * 4;
    if (!in_buf(c, kcache, cache_b, "kv_store k cache") || !in_buf(c, vcache, cache_b, "kv_store v cache") ||
        !in_buf(c, k, kv_b, "kv_store k") || !in_buf(c, v, kv_b, "kv_store v"))
        return;
    ob_pc_kv pc = { .kc = vk_addr(kcache), .vc = vk_addr(vcache), .k = vk_addr(k), .v = vk_addr(v),
                    .n_ctx = (uint32_t)n_ctx, .pos0 = (uint32_t)pos0, .n = (uint32_t)n,
                    .n_kv = (uint32_t)a->n_kv_heads, .head_dim = (uint32_t)a->head_dim };
    uint32_t spec[1] = { 256 }, gx, gy;
    vk_grid(c, (uint64_t)kv_b / 4, 256, &gx, &gy);
    vk_range rd[2] = { vk_rng(pc.k, kv_b), vk_rng(pc.v, kv_b) };
    /* only rows pos0..pos0+n-1 of each head are written, but the heads' rows are strided: state the whole cache */
    vk_range wr[2] = { vk_rng(pc.kc, cache_b), vk_rng(pc.vc, cache_b) };
    vk_dispatch(c, vk_pipeline(c, SH_KV_STORE, spec, 1), &pc, sizeof pc, gx, gy, 1, rd, 2, wr, 2);
}

void vk_op_attention(ob_backend *b, ob_ptr q, ob_ptr kcache, ob_ptr vcache, int n_ctx, ob_ptr out, int pos0, int n,
                     const ob_attn *a) {
    vk_ctx *c = vk_of(b);
    if (attn_check(c, a, n_ctx, pos0, n, "attention") != 0) return;
    size_t cache_b = (size_t)a->n_kv_heads * (size_t)n_ctx * (size_t)a->head_dim * 4;
    size_t q_b = (size_t)n * (size_t)a->n_heads * (size_t)a->head_dim * 4;
    if (!in_buf(c, kcache, cache_b, "attention k cache") || !in_buf(c, vcache, cache_b, "attention v cache") ||
        !in_buf(c, q, q_b, "attention q") || !in_buf(c, out, q_b, "attention out"))
        return;
    ob_pc_attn pc = {
        .q = vk_addr(q), .kc = vk_addr(kcache), .vc = vk_addr(vcache), .dst = vk_addr(out),
        .n_ctx = (uint32_t)n_ctx, .pos0 = (uint32_t)pos0, .n = (uint32_t)n, .n_heads = (uint32_t)a->n_heads,
        .n_kv = (uint32_t)a->n_kv_heads, .head_dim = (uint32_t)a->head_dim, .causal = (uint32_t)(a->causal != 0),
        .window = (uint32_t)(a->window > 0 ? a->window : 0), .scale = a->scale,
    };
    uint32_t dmax = a->head_dim <= 64 ? 64 : a->head_dim <= 128 ? 128 : 256;
    vk_range rd[3] = { vk_rng(pc.q, q_b), vk_rng(pc.kc, cache_b), vk_rng(pc.vc, cache_b) };
    vk_range wr_out = vk_rng(pc.dst, q_b);
    int split = c->env.attn == 1 || (c->env.attn == 0 && n <= 4);
    if (split) {
        uint32_t n_keys = (uint32_t)(pos0 + n);
        pc.chunk = SPLIT_CHUNK;
        pc.n_split = (n_keys + SPLIT_CHUNK - 1) / SPLIT_CHUNK;
        size_t part_b = (size_t)a->n_heads * (size_t)n * pc.n_split * (size_t)(a->head_dim + 2) * 4;
        ob_buf *part = vk_scratch(c, 0, part_b);
        if (!part) return;
        pc.part = part->blk->addr + part->off;
        vk_range wr_part = vk_rng(pc.part, part_b);
        uint32_t spec[2] = { SPLIT_CHUNK, dmax };
        vk_dispatch(c, vk_pipeline(c, SH_ATTN_SPLIT, spec, 2), &pc, sizeof pc, pc.n_split, (uint32_t)a->n_heads,
                    (uint32_t)n, rd, 3, &wr_part, 1);
        uint32_t spec2[1] = { dmax < 128 ? dmax : 128 };
        vk_dispatch(c, vk_pipeline(c, SH_ATTN_COMBINE, spec2, 1), &pc, sizeof pc, (uint32_t)a->n_heads, (uint32_t)n,
                    1, &wr_part, 1, &wr_out, 1);
    } else {
        /* BQ = BKV = 16 (8 for head_dim > 128), halved until qs/ks/vs/ss fit the device's shared memory */
        uint32_t bq = dmax > 128 ? 8 : 16, wg = dmax < 128 ? dmax : 128;
        while (bq > 1 && (bq * dmax * 3 + bq * bq + 3 * bq) * 4 > c->caps.max_shared) bq /= 2;
        uint32_t spec[4] = { wg, dmax, bq, bq };
        vk_dispatch(c, vk_pipeline(c, SH_ATTN_FLASH, spec, 4), &pc, sizeof pc, ((uint32_t)n + bq - 1) / bq,
                    (uint32_t)a->n_heads, 1, rd, 3, &wr_out, 1);
    }
}
