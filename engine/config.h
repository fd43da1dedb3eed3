/* config.h — hyper-parameters of a checkpoint, read from config.json (+ generation_config.json).
 * Every size and token id comes from the file; nothing is assumed from the published models. */
#ifndef OMNI_CONFIG_H
#define OMNI_CONFIG_H

#include <cJSON.h>

#include "omni.h"
#include "util.h"

#define OMNI_MAX_LAYERS 512
#define OMNI_MAX_EOS 4

typedef struct {
    /* the decoder ("text model"): Qwen3, Qwen3-MoE, or the Qwen3-Omni thinker's text_config */
    int32_t vocab_size;
    int32_t hidden;           /* hidden_size */
    int32_t n_layers;         /* num_hidden_layers */
    int32_t n_heads;          /* num_attention_heads */
    int32_t n_kv_heads;       /* num_key_value_heads */
    int32_t head_dim;         /* head_dim (default hidden / n_heads) */
    int32_t intermediate;     /* intermediate_size: dense SwiGLU width */
    int32_t moe_intermediate; /* moe_intermediate_size */
    int32_t n_experts;        /* num_experts (0 = dense model) */
    int32_t n_experts_used;   /* num_experts_per_tok */
    int32_t norm_topk;        /* norm_topk_prob */
    int32_t decoder_sparse_step;
    uint8_t layer_is_moe[OMNI_MAX_LAYERS];
    float rms_eps;
    int32_t max_pos;          /* max_position_embeddings */
    int32_t tie_embeddings;   /* tie_word_embeddings */
    int32_t attention_bias;   /* q/k/v/o projections have biases */
    /* RoPE */
    float rope_theta;
    int32_t mrope_section[3]; /* zeros for plain 1-D RoPE */
    int32_t mrope_interleaved;
} omni_text_hparams;

typedef struct {
    omni_arch arch;
    char arch_name[96];
    omni_text_hparams text;
    char prefix[32];          /* tensor name prefix of the decoder: "model." or "thinker.model." */
    char lm_head[48];         /* "lm_head.weight" or "thinker.lm_head.weight" */
    int32_t eos[OMNI_MAX_EOS];
    int32_t n_eos;
    int32_t bos_id, pad_id;   /* -1 if unset */
    /* Qwen3-Omni token ids (-1 when absent) */
    int32_t im_start_id, im_end_id;
    int32_t audio_token_id, audio_start_id, audio_end_id;
    int32_t image_token_id, video_token_id, vision_start_id, vision_end_id;
    int32_t position_id_per_seconds;
    int32_t has_audio_cfg, has_vision_cfg, has_talker_cfg, enable_audio_output;
    /* sampling defaults from generation_config.json (0/absent = not given) */
    float gen_temperature, gen_top_p, gen_min_p, gen_repetition_penalty;
    int32_t gen_top_k, gen_do_sample;
    cJSON *root;              /* the whole config.json, kept for later stages (audio/vision/talker) */
} omni_hparams;

/* Parses config text (`path` names the file in errors). gen_text (generation_config.json) may be NULL. */
int omni_hparams_parse(omni_hparams *hp, const char *text, const char *path, const char *gen_text,
                       const char *gen_path, omni_err *e);
void omni_hparams_free(omni_hparams *hp);

/* JSON helpers with error messages naming file and field */
int cfg_int(const cJSON *obj, const char *key, int32_t *out, int required, const char *path, omni_err *e);
int cfg_float(const cJSON *obj, const char *key, float *out, int required, const char *path, omni_err *e);

#endif
