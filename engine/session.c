/* session.c — sessions over a loaded model: KV cache allocation, incremental prefill (tokens or embeddings with
 * explicit multimodal positions), the context limit, and the generation loop with its streaming callback. */
#include "session.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

omni_session_params omni_session_default_params(void) {
    omni_session_params p;
    memset(&p, 0, sizeof p);
    p.capture_layer = -1;
    return p;
}

const char *omni_session_error(const omni_session *s) { return s ? s->err.msg : ""; }
int32_t omni_session_pos(const omni_session *s) { return s->pos; }
int32_t omni_session_n_ctx(const omni_session *s) { return s->n_ctx; }

const float *omni_session_captured(const omni_session *s, int32_t *n_rows) {
    if (n_rows) *n_rows = s->captured ? s->pos : 0;
    return s->captured;
}

static size_t align256(size_t x) { return (x + 255) & ~(size_t)255; }

int omni_session_new(omni_model *m, const omni_session_params *p, omni_session **out) {
    *out = NULL;
    omni_session *s = calloc(1, sizeof *s);
    if (!s) return OMNI_E_NOMEM;
    s->m = m;
    s->p = p ? *p : omni_session_default_params();
    const omni_text_hparams *h = &m->hp.text;
    int n_ctx = s->p.n_ctx > 0 ? s->p.n_ctx : (m->params.n_ctx > 0 ? m->params.n_ctx : 4096);
    if (n_ctx > h->max_pos) n_ctx = h->max_pos;
    s->n_ctx = n_ctx;
    /* 512 tokens per forward chunk: a MoE layer's experts are read once per chunk, and at 512 tokens (4096
     * routed entries over 128 experts) every expert is already hit by ~32 of them, so a 512-token prompt reads the
     * expert weights once instead of twice (at 256 the prefill is bound by reading them). OMNI_UBATCH=N overrides
     * (comparisons; N >= 16). */
    s->ubatch = 512;
    const char *ub = getenv("OMNI_UBATCH");
    if (ub && atoi(ub) >= 16) s->ubatch = atoi(ub);
    s->logit_rows = 16;
    s->kv_separate = getenv("OMNI_KV_SEPARATE") != NULL; /* (comparisons: k and v as two products, thinker.c) */
    if (s->p.capture_layer > h->n_layers) {
        omni_fail(&m->err, OMNI_E_ARG, "capture_layer %d exceeds the %d layers", s->p.capture_layer, h->n_layers);
        free(s);
        return OMNI_E_ARG;
    }
    ob_backend *be = m->be;
    size_t kvb = ob_kv_cache_bytes(be, h->n_kv_heads, n_ctx, h->head_dim); /* fp32, or fp16 (Vulkan) */
    s->kv = calloc((size_t)h->n_layers * 2, sizeof *s->kv);
    if (!s->kv) goto nomem;
    for (int i = 0; i < h->n_layers * 2; i++)
        if (!(s->kv[i] = be->ops->alloc(be, kvb))) goto nomem;
    size_t B = (size_t)s->ubatch, H = (size_t)h->hidden, QD = (size_t)h->n_heads * h->head_dim,
           KD = (size_t)h->n_kv_heads * h->head_dim, I = (size_t)(h->intermediate > 0 ? h->intermediate : 1),
           E = (size_t)(h->n_experts > 0 ? h->n_experts : 1), K = (size_t)(h->n_experts_used > 0 ? h->n_experts_used : 1);
    size_t o = 0;
#define SLOT(field, bytes) (s->field = o, o = align256(o + (bytes)))
    SLOT(o_x, B * H * 4);
    SLOT(o_xn, B * H * 4);
    SLOT(o_q, B * QD * 4);
    SLOT(o_k, 2 * B * KD * 4); /* k, then v at o_v; or one k|v product [B][2·KD] (thinker.c) */
    s->o_v = s->o_k + B * KD * 4;
    SLOT(o_att, B * QD * 4);
    SLOT(o_g, B * I * 4);
    SLOT(o_u, B * I * 4);
    SLOT(o_rl, B * E * 4);
    SLOT(o_ids, B * K * 4);
    SLOT(o_wts, B * K * 4);
    SLOT(o_pos, 3 * B * 4);
    SLOT(o_tok, B * 4);
    SLOT(o_logits, (size_t)s->logit_rows * h->vocab_size * 4);
    s->n_cand = (h->vocab_size + OB_TOPK_CHUNK - 1) / OB_TOPK_CHUNK;
    SLOT(o_cand, (size_t)s->n_cand * OB_TOPK_K * 8);
#undef SLOT
    if (!(s->act = be->ops->alloc(be, o))) goto nomem;
    s->last_logits = malloc((size_t)h->vocab_size * 4);
    s->cand = malloc((size_t)s->n_cand * OB_TOPK_K * 8);
    if (!s->last_logits || !s->cand) goto nomem;
    if (s->p.capture_layer >= 0 && !(s->captured = calloc((size_t)n_ctx * H, 4))) goto nomem;
    *out = s;
    return 0;
nomem:
    omni_fail(&m->err, OMNI_E_NOMEM, "cannot allocate a session of %d tokens (KV cache %.1f MiB)", n_ctx,
              (double)h->n_layers * 2 * (double)kvb / 1048576.0);
    omni_session_free(s);
    return OMNI_E_NOMEM;
}

void omni_session_free(omni_session *s) {
    if (!s) return;
    ob_backend *be = s->m->be;
    if (s->kv)
        for (int i = 0; i < s->m->hp.text.n_layers * 2; i++)
            if (s->kv[i]) be->ops->buf_free(be, s->kv[i]);
    free(s->kv);
    if (s->act) be->ops->buf_free(be, s->act);
    free(s->hist);
    free(s->hist_rope);
    free(s->cand);
    free(s->last_logits);
    free(s->captured);
    free(s);
}

const int32_t *omni_session_history(const omni_session *s, int32_t *n) {
    if (n) *n = s->n_hist;
    return s->hist;
}

int omni_session_truncate(omni_session *s, int32_t n) {
    if (n < 0 || n > s->pos) return omni_fail(&s->err, OMNI_E_ARG, "cannot truncate to %d of %d positions", n, s->pos);
    s->pos = n;
    s->n_hist = n;
    float mx = -1;
    for (int i = 0; i < n; i++) mx = fmaxf(mx, s->hist_rope[i]);
    s->next_rope = mx + 1;
    s->have_logits = s->cand_valid = s->logits_on_device = 0;
    return 0;
}

int omni_session_reset(omni_session *s) {
    s->pos = 0;
    s->next_rope = 0;
    s->n_hist = 0;
    s->have_logits = s->cand_valid = s->logits_on_device = 0;
    return 0;
}

static int hist_push(omni_session *s, const int32_t *ids, const float *p3, int n) {
    if (s->n_hist + n > s->cap_hist) {
        int cap = s->cap_hist ? s->cap_hist : 256;
        while (cap < s->n_hist + n) cap *= 2;
        int32_t *p = realloc(s->hist, sizeof *p * (size_t)cap);
        if (!p) return OMNI_E_NOMEM;
        s->hist = p;
        float *r = realloc(s->hist_rope, sizeof *r * (size_t)cap);
        if (!r) return OMNI_E_NOMEM;
        s->hist_rope = r;
        s->cap_hist = cap;
    }
    for (int i = 0; i < n; i++) {
        s->hist[s->n_hist + i] = ids ? ids[i] : -1;
        s->hist_rope[s->n_hist + i] = fmaxf(p3[i], fmaxf(p3[n + i], p3[2 * n + i]));
    }
    s->n_hist += n;
    return 0;
}

int omni_session_logits(omni_session *s, const float **logits) {
    if (s->logits_on_device) {
        ob_backend *be = s->m->be;
        int rc = be->ops->download(be, s->act, s->o_logits, s->last_logits, (size_t)s->m->hp.text.vocab_size * 4);
        if (rc) return omni_fail(&s->err, rc, "back-end: %s", be->err);
        s->logits_on_device = 0;
    }
    *logits = s->last_logits;
    return 0;
}

/* Shared by token and embedding appends. pos3 NULL = consecutive text positions from next_rope. */
int omni_session_append_internal(omni_session *s, const int32_t *ids, const float *embeds, const float *pos3, int n, float *logits,
                  int all_logits) {
    if (n <= 0) return omni_fail(&s->err, OMNI_E_ARG, "nothing to append");
    if (s->pos + n > s->n_ctx)
        return omni_fail(&s->err, OMNI_E_CONTEXT, "context full: %d tokens in the cache + %d new exceed %d", s->pos, n,
                         s->n_ctx);
    const omni_text_hparams *h = &s->m->hp.text;
    if (ids && !embeds)
        for (int i = 0; i < n; i++)
            if (ids[i] < 0 || ids[i] >= h->vocab_size)
                return omni_fail(&s->err, OMNI_E_ARG, "token id %d at position %d is outside the vocabulary (0..%d)",
                                 ids[i], i, h->vocab_size - 1);
    float *p3 = malloc((size_t)3 * n * sizeof *p3);
    if (!p3) return omni_fail(&s->err, OMNI_E_NOMEM, "out of memory");
    float mx = s->next_rope - 1;
    if (pos3) {
        memcpy(p3, pos3, (size_t)3 * n * 4);
        for (int i = 0; i < 3 * n; i++) mx = fmaxf(mx, p3[i]);
    } else {
        for (int i = 0; i < n; i++) p3[i] = p3[n + i] = p3[2 * n + i] = s->next_rope + (float)i;
        mx = s->next_rope + (float)(n - 1);
    }
    int rc = hist_push(s, ids, p3, n);
    if (rc) {
        free(p3);
        return omni_fail(&s->err, rc, "out of memory");
    }
    /* logits of the last row always go to last_logits; all rows go to the caller on request */
    size_t V = (size_t)h->vocab_size;
    float *all = NULL;
    if (all_logits && logits) all = logits;
    rc = omni_thinker_forward(s, ids, embeds, p3, n, all ? all : s->last_logits, all ? 1 : 0);
    free(p3);
    if (rc) {
        s->n_hist -= n;
        s->have_logits = 0;
        return rc;
    }
    if (all) memcpy(s->last_logits, all + (size_t)(n - 1) * V, V * 4);
    else if (logits) memcpy(logits, s->last_logits, V * 4);
    s->have_logits = 1;
    s->next_rope = mx + 1; /* text resumes after the largest position (fractional for some videos) */
    return 0;
}

int omni_session_append(omni_session *s, const int32_t *ids, int n, float *logits, int all_logits) {
    if (!ids) return omni_fail(&s->err, OMNI_E_ARG, "no token ids");
    return omni_session_append_internal(s, ids, NULL, NULL, n, logits, all_logits);
}

int omni_session_append_embeds(omni_session *s, const float *embeds, const int32_t *ids, const float *pos3, int n,
                               float *logits, int all_logits) {
    if (!embeds) return omni_fail(&s->err, OMNI_E_ARG, "no embeddings");
    return omni_session_append_internal(s, ids, embeds, pos3, n, logits, all_logits);
}

static int is_eos(const omni_model *m, int32_t id) {
    for (int i = 0; i < m->hp.n_eos; i++)
        if (m->hp.eos[i] == id) return 1;
    return 0;
}

int omni_generate(omni_session *s, const omni_sampling_params *sp, int max_tokens, omni_token_fn cb, void *user_data,
                  int32_t *out_ids, int *n_out) {
    if (n_out) *n_out = 0;
    if (!s->have_logits) return omni_fail(&s->err, OMNI_E_ARG, "nothing to continue: append a prompt first");
    omni_sampling_params def = omni_sampling_default_params();
    omni_sampler *smp = omni_sampler_new(sp ? sp : &def, s->m->hp.text.vocab_size);
    if (!smp) return omni_fail(&s->err, OMNI_E_NOMEM, "out of memory");
    for (int i = 0; i < s->n_hist; i++)
        if (s->hist[i] >= 0) omni_sampler_accept(smp, s->hist[i]);
    tok_detok *dt = (cb && s->m->tok) ? tok_detok_new(s->m->tok) : NULL;
    float *lg = malloc((size_t)s->m->hp.text.vocab_size * 4);
    int rc = lg ? 0 : OMNI_E_NOMEM, n = 0;
    const char *rv = getenv("OMNI_GEN_ROWS"); /* =1: every draw from the whole row (comparisons) */
    int rows = rv && atoi(rv) > 0;
    char piece[512];
    while (!rc && n < max_tokens) {
        /* the decode steps below leave only the chunk candidates on the host: the draw from them where it is exact
         * (omni_sampler_sample_cand), else from the whole row */
        int32_t id = s->cand_valid && !rows ? omni_sampler_sample_cand(smp, s->cand, s->n_cand, OB_TOPK_K) : -1;
        if (id < 0) {
            const float *row;
            if ((rc = omni_session_logits(s, &row))) break;
            memcpy(lg, row, (size_t)s->m->hp.text.vocab_size * 4);
            id = omni_sampler_sample(smp, lg);
        }
        omni_sampler_accept(smp, id);
        if (out_ids) out_ids[n] = id;
        n++;
        int stop = is_eos(s->m, id);
        if (cb) {
            int len = 0;
            if (dt && !stop) len = tok_detok_push(dt, id, piece, sizeof piece - 1);
            if (len < 0) len = 0;
            piece[len] = 0;
            if (cb(id, piece, user_data)) stop = 1;
        }
        if (stop) break;
        if (s->pos >= s->n_ctx) {
            rc = omni_fail(&s->err, OMNI_E_CONTEXT, "context full after %d generated tokens (%d)", n, s->n_ctx);
            break;
        }
        s->want_cand = !rows;
        rc = omni_session_append_internal(s, &id, NULL, NULL, 1, NULL, 0);
        s->want_cand = 0;
    }
    if (dt && cb) { /* whatever bytes are still pending (an incomplete character at the end) */
        int len = tok_detok_flush(dt, piece, sizeof piece - 1);
        if (len > 0) {
            piece[len] = 0;
            cb(-1, piece, user_data);
        }
    }
    tok_detok_free(dt);
    free(lg);
    omni_sampler_free(smp);
    if (n_out) *n_out = n;
    return rc;
}
