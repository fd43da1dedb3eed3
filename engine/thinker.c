/* thinker.c — the decoder forward pass shared by Qwen3, Qwen3-MoE and the Qwen3-Omni thinker, written against
 * backend.h. Reads top to bottom like Qwen3MoeDecoderLayer.forward / Qwen3OmniMoeThinkerTextDecoderLayer.forward:
 *   h = x + o_proj(attn(rope(q_norm(q)), rope(k_norm(k)), v))    with x normed by input_layernorm
 *   out = h + mlp(post_attention_layernorm(h))                     mlp = MoE (softmax top-k experts) or SwiGLU
 * then the final norm and lm_head. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"

#define AT(s, o) ((ob_ptr){ (s)->act, (o) })

/* profiler marks: no-ops unless the model was opened with profiling and the back-end supports it */
#define PROF(cls)                                                                                                     \
    do {                                                                                                              \
        if (prof) op->prof_mark(be, cls);                                                                             \
    } while (0)

static int aborted(omni_session *s) { return s->p.abort && s->p.abort(s->p.abort_user_data); }

/* a failed transfer or sync: the session's error names the back-end's (an op that failed earlier in the pass, e.g.
 * a tensor outside its buffer, surfaces here) */
static int backend_fail(omni_session *s, int rc) {
    return omni_fail(&s->err, rc, "back-end: %s", s->m->be->err[0] ? s->m->be->err : "transfer failed");
}

static int capture(omni_session *s, ob_ptr src, int pos0, int n) {
    if (!s->captured) return 0;
    ob_backend *be = s->m->be;
    size_t H = (size_t)s->m->hp.text.hidden;
    int rc = be->ops->download(be, src.buf, src.off, s->captured + (size_t)pos0 * H, (size_t)n * H * 4);
    return rc ? backend_fail(s, rc) : 0;
}

/* One chunk of n <= ubatch tokens at cache positions pos0..pos0+n-1. */
/* DeepStack rows of this chunk ([c0, c0+n) of the append): uploads their local indices and features once per chunk
 * into a scratch buffer laid out [idx (int32, padded)][level 0 rows][level 1 rows]... */
static int deepstack_upload(omni_session *s, int c0, int n, ob_buf **buf, int *first, int *count, size_t *rows_off) {
    *buf = NULL;
    *count = 0;
    if (!s->ds || s->ds_levels <= 0) return 0;
    int a = 0;
    while (a < s->ds_n && s->ds_pos[a] < c0) a++;
    int b = a;
    while (b < s->ds_n && s->ds_pos[b] < c0 + n) b++;
    if (b == a) return 0;
    ob_backend *be = s->m->be;
    size_t H = (size_t)s->m->hp.text.hidden, cnt = (size_t)(b - a);
    *rows_off = (cnt * 4 + 255) & ~(size_t)255;
    *buf = be->ops->alloc(be, *rows_off + (size_t)s->ds_levels * cnt * H * 4);
    if (!*buf) return omni_fail(&s->err, OMNI_E_NOMEM, "out of memory for DeepStack features");
    int32_t *idx = malloc(cnt * 4);
    if (!idx) return omni_fail(&s->err, OMNI_E_NOMEM, "out of memory");
    for (size_t i = 0; i < cnt; i++) idx[i] = s->ds_pos[a + (int)i] - c0;
    int rc = be->ops->upload(be, *buf, 0, idx, cnt * 4);
    free(idx);
    for (int l = 0; !rc && l < s->ds_levels; l++)
        rc = be->ops->upload(be, *buf, *rows_off + (size_t)l * cnt * H * 4, s->ds + ((size_t)l * s->ds_n + a) * H,
                             cnt * H * 4);
    *first = a;
    *count = (int)cnt;
    return rc;
}

static int forward_chunk(omni_session *s, int c0, const int32_t *ids, const float *embeds, const float *pos3, int n,
                         float *logits, int logit_rows) {
    omni_model *m = s->m;
    ob_backend *be = m->be;
    const ob_ops *op = be->ops;
    const omni_text_hparams *h = &m->hp.text;
    const int H = h->hidden, D = h->head_dim, Hq = h->n_heads, Hkv = h->n_kv_heads;
    const int pos0 = s->pos;
    int rc;
    ob_ptr x = AT(s, s->o_x), xn = AT(s, s->o_xn), q = AT(s, s->o_q), k = AT(s, s->o_k), v = AT(s, s->o_v),
           att = AT(s, s->o_att), g = AT(s, s->o_g), u = AT(s, s->o_u), rl = AT(s, s->o_rl), eid = AT(s, s->o_ids),
           ew = AT(s, s->o_wts), pos = AT(s, s->o_pos), tok = AT(s, s->o_tok);

    const int prof = m->params.profile && op->prof_mark;
    PROF(OB_PROF_EMBED);
    if ((rc = op->upload(be, s->act, s->o_pos, pos3, (size_t)3 * n * 4))) return backend_fail(s, rc);
    if (ids && !embeds) {
        if ((rc = op->upload(be, s->act, s->o_tok, ids, (size_t)n * 4))) return backend_fail(s, rc);
        op->get_rows(be, &m->w.embed, tok, n, x);
    } else if ((rc = op->upload(be, s->act, s->o_x, embeds, (size_t)n * H * 4))) return backend_fail(s, rc);
    if (s->p.capture_layer == 0 && (rc = capture(s, x, pos0, n))) return rc;
    ob_buf *dsb = NULL;
    int ds_first = 0, ds_count = 0;
    size_t ds_rows = 0;
    if ((rc = deepstack_upload(s, c0, n, &dsb, &ds_first, &ds_count, &ds_rows))) {
        if (dsb) be->ops->buf_free(be, dsb);
        return rc;
    }
    (void)ds_first;

    ob_rope rope = { h->rope_theta, D, D, { h->mrope_section[0], h->mrope_section[1], h->mrope_section[2] },
                     h->mrope_interleaved, 0 };
    ob_attn at = { Hq, Hkv, D, 1.0f / sqrtf((float)D), 1, 0, 0 };
    for (int l = 0; l < h->n_layers; l++) {
        if (aborted(s)) {
            if (dsb) op->buf_free(be, dsb);
            return omni_fail(&s->err, OMNI_E_CANCELLED, "cancelled");
        }
        const omni_layer *L = &m->w.layers[l];
        ob_ptr kc = { s->kv[2 * l], 0 }, vc = { s->kv[2 * l + 1], 0 };
        /* several tokens, no attention bias, a back-end with the fused per-head op: k and v from one product (one
         * GEMM instead of two: twice the tiles, one split-K sum, which the fused op may take into its kernel) */
        const int kv_one = n > 1 && L->wqkv.data.buf && !L->bq.data.buf && op->qk_norm_rope_kv && !s->kv_separate;
        at.kv_stride = kv_one ? 2 * Hkv * D : 0;
        /* attention block */
        if (n == 1 && L->wqkv.data.buf) { /* one token: q|k|v from a single matrix-vector product */
            k = ob_at(q, (size_t)Hq * D * 4);
            v = ob_at(k, (size_t)Hkv * D * 4);
            if (op->norm_matvec) { /* input_layernorm fused into the product */
                PROF(OB_PROF_PROJ);
                op->norm_matvec(be, x, &L->attn_norm, h->rms_eps, &L->wqkv, q, xn);
            } else {
                PROF(OB_PROF_NORM);
                op->rms_norm(be, x, &L->attn_norm, xn, n, H, h->rms_eps);
                PROF(OB_PROF_PROJ);
                op->matmul(be, &L->wqkv, xn, q, 1, 0);
            }
        } else {
            PROF(OB_PROF_NORM);
            op->rms_norm(be, x, &L->attn_norm, xn, n, H, h->rms_eps);
            PROF(OB_PROF_PROJ);
            k = AT(s, s->o_k), v = AT(s, s->o_v);
            op->matmul(be, &L->wq, xn, q, n, 0);
            if (kv_one) { /* k|v as one product [n][2·KD] (adjacent rows of wqkv): k and v rows 2·KD apart */
                ob_mat wkv = omni_mat_rows_view(&L->wqkv, (int64_t)Hq * D, 2 * (int64_t)Hkv * D);
                op->matmul(be, &wkv, xn, k, n, 0);
                v = ob_at(k, (size_t)Hkv * D * 4);
            } else {
                op->matmul(be, &L->wk, xn, k, n, 0);
                op->matmul(be, &L->wv, xn, v, n, 0);
            }
        }
        if (L->bq.data.buf) { /* attention_bias */
            op->add_bias(be, q, &L->bq, n, Hq * D);
            op->add_bias(be, k, &L->bk, n, Hkv * D);
            op->add_bias(be, v, &L->bv, n, Hkv * D);
        }
        const int fused_attn = n == 1 && op->qk_norm_rope_kv_attention != NULL;
        if (fused_attn) { /* decode: q/k norm, RoPE, cache update and attention in one op */
            PROF(OB_PROF_ATTN);
            op->qk_norm_rope_kv_attention(be, q, k, v, &L->q_norm, &L->k_norm, h->rms_eps, pos, &rope, kc, vc, s->n_ctx,
                                          pos0, n, &at, att);
        } else if (op->qk_norm_rope_kv) { /* the five ops below in one (a back-end's fused kernel) */
            PROF(OB_PROF_ROPE_KV);
            op->qk_norm_rope_kv(be, q, k, v, &L->q_norm, &L->k_norm, h->rms_eps, pos, &rope, kc, vc, s->n_ctx, pos0,
                                n, &at);
        } else {
            PROF(OB_PROF_NORM);
            op->rms_norm(be, q, &L->q_norm, q, n * Hq, D, h->rms_eps); /* per-head q/k norm before RoPE */
            op->rms_norm(be, k, &L->k_norm, k, n * Hkv, D, h->rms_eps);
            PROF(OB_PROF_ROPE_KV);
            op->rope(be, q, pos, n, Hq, &rope);
            op->rope(be, k, pos, n, Hkv, &rope);
            op->kv_store(be, kc, vc, s->n_ctx, k, v, pos0, n, &at);
        }
        if (!fused_attn) {
            PROF(OB_PROF_ATTN);
            op->attention(be, q, kc, vc, s->n_ctx, att, pos0, n, &at);
        }
        /* one decode row of a MoE layer without o_proj bias: o_proj, residual, norm, router and top-k in one call
         * (charged to the router class) */
        const int fuse_oroute = n == 1 && L->is_moe && !L->bo.data.buf && op->matmul_norm_route != NULL;
        if (!fuse_oroute) {
            PROF(OB_PROF_PROJ);
            op->matmul(be, &L->wo, att, x, n, 1); /* residual add fused */
            if (L->bo.data.buf) op->add_bias(be, x, &L->bo, n, H);
        }
        /* feed-forward block */
        int fuse_norm = n == 1 && op->norm_matvec && (L->is_moe || L->w_gate_up.data.buf);
        if (!fuse_norm && !fuse_oroute) {
            PROF(OB_PROF_NORM);
            op->rms_norm(be, x, &L->ffn_norm, xn, n, H, h->rms_eps);
        }
        if (L->is_moe) {
            PROF(OB_PROF_ROUTER);
            if (fuse_oroute)
                op->matmul_norm_route(be, &L->wo, att, x, &L->ffn_norm, h->rms_eps, &L->router, rl, xn,
                                      h->n_experts_used, h->norm_topk, eid, ew);
            else if (fuse_norm && op->norm_route) /* norm, router and top-k in one call; xn is written for the experts */
                op->norm_route(be, x, &L->ffn_norm, h->rms_eps, &L->router, rl, xn, h->n_experts_used, h->norm_topk,
                               eid, ew);
            else {
                if (fuse_norm) /* post_attention_layernorm fused into the router */
                    op->norm_matvec(be, x, &L->ffn_norm, h->rms_eps, &L->router, rl, xn);
                else
                    op->matmul(be, &L->router, xn, rl, n, 0);
                op->moe_route(be, rl, n, h->n_experts, h->n_experts_used, h->norm_topk, eid, ew);
            }
            PROF(OB_PROF_EXPERTS);
            op->moe_experts(be, xn, n, h->n_experts_used, eid, ew, L->exp_gate, L->exp_up, L->exp_down, h->n_experts,
                            x);
        } else {
            PROF(OB_PROF_FFN);
            ob_ptr uu = u;
            if (n == 1 && L->w_gate_up.data.buf) { /* gate|up in one product: up follows gate */
                uu = ob_at(g, (size_t)h->intermediate * 4);
                if (fuse_norm)
                    op->norm_matvec(be, x, &L->ffn_norm, h->rms_eps, &L->w_gate_up, g, xn);
                else
                    op->matmul(be, &L->w_gate_up, xn, g, 1, 0);
            } else {
                op->matmul(be, &L->w_gate, xn, g, n, 0);
                op->matmul(be, &L->w_up, xn, u, n, 0);
            }
            op->swiglu(be, g, uu, g, (int64_t)n * h->intermediate);
            op->matmul(be, &L->w_down, g, x, n, 1);
        }
        /* the captured hidden state is the layer output before the DeepStack add (output_capturing.py) */
        if (s->p.capture_layer == l + 1 && l + 1 < h->n_layers && (rc = capture(s, x, pos0, n))) break;
        PROF(OB_PROF_OTHER);
        if (dsb && l < s->ds_levels) /* _deepstack_process: visual rows += deepstack[l] after layer l */
            op->add_rows(be, x, (ob_ptr){ dsb, 0 }, (ob_ptr){ dsb, ds_rows + (size_t)l * ds_count * H * 4 }, ds_count, H);
    }
    if (dsb) {
        /* the buffer is referenced by queued work on a device back-end: sync before freeing it */
        int src = op->sync(be);
        op->buf_free(be, dsb);
        if (!rc && src) rc = src;
    }
    if (rc) return rc;
    PROF(OB_PROF_NORM);
    op->rms_norm(be, x, &m->w.norm, xn, n, H, h->rms_eps);
    PROF(OB_PROF_LM_HEAD);
    if (s->p.capture_layer == h->n_layers && (rc = capture(s, xn, pos0, n))) return rc;
    /* logits: all rows (in slices of the logits scratch) or just the last */
    ob_ptr lg = AT(s, s->o_logits);
    size_t V = (size_t)h->vocab_size;
    int first = logit_rows == 1 ? 0 : n - 1;
    /* omni_generate's decode steps: only the chunk candidates come to the host (the sampler draws from them where it
     * can show they suffice; else it fetches the row, left in lg: omni_session_logits) */
    int cand = s->want_cand && logit_rows == 0 && op->topk_chunks;
    s->cand_valid = s->logits_on_device = 0;
    for (int r = first; r < n && logit_rows >= 0; r += s->logit_rows) {
        int nr = n - r < s->logit_rows ? n - r : s->logit_rows;
        op->matmul(be, &m->w.lm_head, ob_at(xn, (size_t)r * H * 4), lg, nr, 0);
        if (cand) {
            ob_ptr cd = AT(s, s->o_cand);
            op->topk_chunks(be, lg, (int)V, cd);
            if ((rc = op->download(be, cd.buf, cd.off, s->cand, (size_t)s->n_cand * OB_TOPK_K * 8)))
                return backend_fail(s, rc);
            s->cand_valid = s->logits_on_device = 1;
            continue;
        }
        float *dst = logit_rows == 1 ? logits + (size_t)r * V : logits;
        if ((rc = op->download(be, lg.buf, lg.off, dst, (size_t)nr * V * 4))) return backend_fail(s, rc);
    }
    PROF(-1);
    if ((rc = op->sync(be))) return backend_fail(s, rc);
    return 0;
}

int omni_thinker_forward(omni_session *s, const int32_t *ids, const float *embeds, const float *pos3, int n,
                         float *logits, int logit_rows) {
    const size_t H = (size_t)s->m->hp.text.hidden, V = (size_t)s->m->hp.text.vocab_size;
    float *p3 = malloc((size_t)3 * s->ubatch * sizeof *p3);
    if (!p3) return omni_fail(&s->err, OMNI_E_NOMEM, "out of memory");
    int rc = 0;
    for (int c = 0; c < n; c += s->ubatch) {
        int nc = n - c < s->ubatch ? n - c : s->ubatch;
        for (int r = 0; r < 3; r++) memcpy(p3 + (size_t)r * nc, pos3 + (size_t)r * n + c, (size_t)nc * 4);
        int last = c + nc == n;
        int lr = logit_rows == 1 ? 1 : (logit_rows == 0 && last ? 0 : -1);
        float *dst = logit_rows == 1 ? logits + (size_t)c * V : logits;
        rc = forward_chunk(s, c, ids ? ids + c : NULL, embeds ? embeds + (size_t)c * H : NULL, p3, nc, dst, lr);
        if (rc) break;
        s->pos += nc;
    }
    free(p3);
    return rc;
}
