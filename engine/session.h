/* session.h — internal state of a session: KV cache and scratch buffers on the back-end, positions, history. */
#ifndef OMNI_SESSION_H
#define OMNI_SESSION_H

#include "model.h"

struct omni_session {
    omni_model *m;
    omni_session_params p;
    int32_t n_ctx;          /* KV cache capacity in tokens */
    int32_t pos;            /* tokens in the cache */
    float next_rope;        /* RoPE position of the next text token (max position so far + 1) */
    int32_t ubatch;         /* most tokens per forward chunk */
    int32_t kv_separate;    /* OMNI_KV_SEPARATE: prefill k and v as two products, not one (thinker.c) */
    int32_t logit_rows;     /* rows of the logits scratch */
    ob_buf **kv;            /* per layer: K then V, each [n_kv_heads][n_ctx][head_dim] fp32 */
    ob_buf *act;            /* activation scratch */
    /* byte offsets into act */
    size_t o_x, o_xn, o_q, o_k, o_v, o_att, o_g, o_u, o_rl, o_ids, o_wts, o_pos, o_tok, o_logits, o_cand;
    int32_t *hist;          /* every id appended (or -1 for embeddings), for the repetition penalty */
    float *hist_rope;       /* largest RoPE position of each appended position (for truncation) */
    int32_t n_hist, cap_hist;
    float *last_logits;     /* [vocab] of the last appended position */
    int have_logits;
    /* omni_generate's decode steps (want_cand, where the back-end has topk_chunks): the forward downloads only the
     * chunk candidates (cand: n_cand lists of OB_TOPK_K (id, logit) pairs) and leaves the logits row on the device
     * (logits_on_device) until omni_session_logits fetches it into last_logits */
    int want_cand, cand_valid, logits_on_device;
    int32_t *cand, n_cand;
    float *captured;        /* [n_ctx][hidden] hidden states at p.capture_layer, or NULL */
    /* DeepStack features of the append in progress (set by prompt.c): added after layer j < ds_levels to the rows at
     * ds_pos (ascending positions within the appended tokens) */
    const float *ds;        /* [ds_levels][ds_n][hidden] */
    const int32_t *ds_pos;
    int32_t ds_levels, ds_n;
    omni_err err;
};

/* last_logits, fetched from the device first where the last decode step left them there (session.c) */
int omni_session_logits(omni_session *s, const float **logits);

/* the append shared by tokens, embeddings and multimodal prompts (session.c) */
int omni_session_append_internal(omni_session *s, const int32_t *ids, const float *embeds, const float *pos3, int n,
                                 float *logits, int all_logits);

#endif
