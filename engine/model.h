/* model.h — internal structures shared by the loader, the thinker forward pass and sessions. */
#ifndef OMNI_MODEL_H
#define OMNI_MODEL_H

#include "backend.h"
#include "config.h"
#include "omni.h"
#include "safetensors.h"
#include "util.h"

#include "chat.h"

struct tok_tokenizer;

/* One decoder layer of the text model. Shapes are [rows=out, cols=in]. */
typedef struct {
    ob_mat attn_norm;   /* input_layernorm [hidden] */
    ob_mat wq;          /* q_proj [n_heads*head_dim, hidden] */
    ob_mat wk;          /* k_proj [n_kv_heads*head_dim, hidden] */
    ob_mat wv;          /* v_proj [n_kv_heads*head_dim, hidden] */
    ob_mat wo;          /* o_proj [hidden, n_heads*head_dim] */
    ob_mat q_norm;      /* [head_dim] */
    ob_mat k_norm;      /* [head_dim] */
    ob_mat bq, bk, bv, bo; /* projection biases when attention_bias (else data.buf == NULL) */
    ob_mat wqkv;        /* [QD + 2 KD, hidden]: wq, wk, wv as views of it (device back-ends), else data.buf NULL */
    ob_mat w_gate_up;   /* [2 intermediate, hidden]: w_gate, w_up as views of it (device back-ends, dense layers) */
    ob_mat ffn_norm;    /* post_attention_layernorm [hidden] */
    int is_moe;
    /* dense SwiGLU */
    ob_mat w_gate;      /* gate_proj [intermediate, hidden] */
    ob_mat w_up;        /* up_proj [intermediate, hidden] */
    ob_mat w_down;      /* down_proj [hidden, intermediate] */
    /* MoE */
    ob_mat router;      /* mlp.gate [n_experts, hidden] */
    ob_mat *exp_gate;   /* n_experts × [moe_intermediate, hidden] */
    ob_mat *exp_up;     /* n_experts × [moe_intermediate, hidden] */
    ob_mat *exp_down;   /* n_experts × [hidden, moe_intermediate] */
} omni_layer;

typedef struct {
    ob_mat embed;       /* embed_tokens [vocab, hidden] */
    ob_mat norm;        /* final norm [hidden] */
    ob_mat lm_head;     /* [vocab, hidden]; = embed when tied */
    omni_layer *layers;
} omni_text_weights;

struct omni_model {
    omni_hparams hp;
    omni_model_params params;
    char path[1024];
    st_set *st;                 /* NULL for synthetic models */
    ob_backend *be;
    omni_text_weights w;
    ob_buf **bufs;              /* every weight buffer, freed with the model */
    int n_bufs, cap_bufs;
    int64_t weight_bytes;       /* bytes of weights held by the back-end */
    struct tok_tokenizer *tok;  /* NULL when the folder has no tokenizer.json */
    chat_style chat;            /* which chat template the checkpoint's text matches */
    char *chat_template;        /* template text from chat_template.json / tokenizer_config.json, or NULL */
    int64_t params_part[5];     /* thinker text, audio, vision, talker, code2wav */
    int64_t bytes_bf16, bytes_q8; /* checkpoint weight bytes as BF16 / as Q8_0 */
    struct aenc_model *audio;   /* AuT audio encoder (audio_encoder.c); NULL when the checkpoint has none */
    struct venc_model *vision;  /* vision tower (vision_encoder.c); NULL when the checkpoint has none */
    omni_err err;
};

/* Weight binding for the encoders (model.c): tensor `name` checked against the shape config.json implies ([rows] if
 * cols == 0, else [rows, cols]) or synthetic random weights, and a matrix made from host data (mmapped tensor). */
int omni_model_bind(omni_model *m, ob_mat *out, const char *name, int64_t rows, int64_t cols, int quant_ok);
int omni_model_mat_from_host(omni_model *m, ob_mat *out, const void *data, ob_dtype t, int64_t rows, int64_t cols,
                             int quant_ok, const char *name);
/* The checkpoint's tensor `name` with a float dtype (BF16/F16/F32) as *dt, or a one-line error naming it. */
int omni_model_float_tensor(omni_model *m, const char *name, const st_tensor **t, ob_dtype *dt);
/* Rows [r0, r0 + r) of matrix f as a matrix of its own (Q8_0 views keep their scales through scale_off). */
ob_mat omni_mat_rows_view(const ob_mat *f, int64_t r0, int64_t r);

/* Thinker forward over n tokens at cache positions pos0.. (defined in thinker.c). Inputs are either ids (int32 on
 * the host) or embeddings [n, hidden] fp32; pos3 is [3][n] fp32. Writes logits for the rows selected by
 * `logit_rows` (-1 = none, 0 = last only, 1 = all) into logits (host). */
typedef struct omni_forward omni_forward;
struct omni_session;
int omni_thinker_forward(struct omni_session *s, const int32_t *ids, const float *embeds, const float *pos3, int n,
                         float *logits, int logit_rows);

#endif
