/* audio_encoder.h — the Qwen3-Omni AuT audio encoder (thinker.audio_tower), written against backend.h.
 *
 * Public entry points are omni_audio_n_tokens() and omni_encode_audio() in omni.h; this header is for the model
 * loader (model.c), which calls aenc_load() after the text weights are bound and aenc_free() when the model goes. */
#ifndef OMNI_AUDIO_ENCODER_H
#define OMNI_AUDIO_ENCODER_H

#include "model.h"

/* One Qwen3OmniMoeAudioEncoderLayer; matrices [rows=out, cols=in], every Linear with a bias. */
typedef struct {
    ob_mat ln1_w, ln1_b;      /* self_attn_layer_norm */
    ob_mat wq, bq, wk, bk, wv, bv, wo, bo; /* self_attn.{q,k,v,out}_proj */
    ob_mat ln2_w, ln2_b;      /* final_layer_norm */
    ob_mat fc1, fc1_b;        /* [ffn, d] */
    ob_mat fc2, fc2_b;        /* [d, ffn] */
} aenc_layer;

/* Hyper-parameters from thinker_config.audio_config. */
typedef struct {
    int32_t n_mels;           /* num_mel_bins */
    int32_t d_model;
    int32_t n_layers;         /* encoder_layers */
    int32_t n_heads;          /* encoder_attention_heads */
    int32_t ffn;              /* encoder_ffn_dim */
    int32_t ds;               /* downsample_hidden_size: conv channels */
    int32_t out_dim;          /* output_dim (= thinker hidden) */
    int32_t n_window;         /* chunks are 2·n_window mel frames */
    int32_t n_window_infer;   /* attention windows span n_window_infer frames' worth of tokens */
    int32_t conv_chunksize;   /* chunks per conv batch in the reference (we may use fewer) */
    int32_t max_pos;          /* max_source_positions: rows of the sinusoid table */
    int32_t f3;               /* frequency rows after the three stride-2 convs (16 for 128 mels) */
} aenc_hparams;

struct aenc_model {
    aenc_hparams hp;
    ob_mat conv1, conv1_b;    /* conv2d1 [ds, 1·3·3] */
    ob_mat conv2, conv2_b;    /* conv2d2 [ds, ds·3·3] */
    ob_mat conv3, conv3_b;    /* conv2d3 [ds, ds·3·3] */
    ob_mat conv_out;          /* [d, ds·f3], no bias */
    aenc_layer *layers;
    ob_mat ln_post_w, ln_post_b;
    ob_mat proj1, proj1_b;    /* [d, d] */
    ob_mat proj2, proj2_b;    /* [out_dim, d] */
};
typedef struct aenc_model aenc_model;

/* Reads audio_config and binds thinker.audio_tower.* into m->audio (synthetic weights for synthetic models). Leaves
 * m->audio NULL (and returns 0) when the checkpoint has no audio tower tensors at all. */
int aenc_load(omni_model *m);
void aenc_free(aenc_model *a); /* NULL ok; weight buffers belong to the model */

/* Peak bytes of back-end scratch omni_encode_audio allocates for the given audios (for reports and tests). */
size_t aenc_scratch_bytes(const omni_model *m, const int32_t *frames, int n_audios);

#endif
