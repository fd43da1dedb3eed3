/* omni.h — the public API of libomni, the inference engine.
 *
 * A model (read-only weights, shared) is separate from a session (KV cache, positions, conversation state).
 * Everything returns int: 0 on success, a negative OMNI_E_* code on failure; the human-readable reason (naming the
 * file, tensor or field) is kept per model/session and read with omni_model_error()/omni_session_error().
 * The library never prints; callers choose where messages go (omni_log_set_sink). */
#ifndef OMNI_H
#define OMNI_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- errors ---------------------------------------------------------------------------------------------------- */
enum {
    OMNI_OK = 0,
    OMNI_E_IO = -1,          /* file missing, unreadable, truncated */
    OMNI_E_FORMAT = -2,      /* malformed file content (safetensors header, JSON, tokenizer) */
    OMNI_E_CONFIG = -3,      /* missing or invalid config field */
    OMNI_E_UNSUPPORTED = -4, /* valid but not supported (architecture, dtype, feature) */
    OMNI_E_TENSOR = -5,      /* missing tensor or wrong shape/dtype */
    OMNI_E_NOMEM = -6,       /* allocation failed */
    OMNI_E_CONTEXT = -7,     /* context window full */
    OMNI_E_ARG = -8,         /* bad argument from the caller */
    OMNI_E_CANCELLED = -9,   /* abort callback asked to stop */
    OMNI_E_BACKEND = -10,    /* device/back-end failure */
};
const char *omni_strerror(int code);

/* ---- logging --------------------------------------------------------------------------------------------------- */
enum { OMNI_LOG_DEBUG = 0, OMNI_LOG_INFO = 1, OMNI_LOG_WARN = 2, OMNI_LOG_ERROR = 3 };
typedef void (*omni_log_fn)(int level, const char *msg, void *user_data);
/* Replace the log sink (NULL = discard, the default). The library never writes to stdout/stderr itself. */
void omni_log_set_sink(omni_log_fn fn, void *user_data);
void omni_log_set_level(int level);

/* ---- model ----------------------------------------------------------------------------------------------------- */
typedef struct omni_model omni_model;
typedef struct omni_session omni_session;

typedef enum {
    OMNI_ARCH_QWEN3 = 1,     /* Qwen3ForCausalLM */
    OMNI_ARCH_QWEN3_MOE = 2, /* Qwen3MoeForCausalLM */
    OMNI_ARCH_QWEN3_OMNI = 3 /* Qwen3OmniMoeForConditionalGeneration (thinker text path in this stage) */
} omni_arch;

typedef enum { OMNI_BACKEND_AUTO = 0, OMNI_BACKEND_CPU = 1, OMNI_BACKEND_VULKAN = 2 } omni_backend_kind;
typedef enum { OMNI_WEIGHTS_AS_STORED = 0, OMNI_WEIGHTS_Q8_0 = 1 } omni_weight_mode;

/* progress: done/total in arbitrary units (bytes for loading); return nonzero to cancel. */
typedef int (*omni_progress_fn)(const char *stage, int64_t done, int64_t total, void *user_data);

typedef struct {
    omni_backend_kind backend;
    int32_t device;           /* Vulkan device index, -1 = first suitable */
    int32_t n_threads;        /* CPU threads, 0 = all online cores */
    omni_weight_mode weights; /* quantize at load time */
    int32_t n_ctx;            /* default session context length, 0 = min(max_position_embeddings, 4096) */
    int32_t synthetic;        /* 1 = no weight files: random weights built from config.json (benchmarks) */
    int32_t vocab_only;       /* 1 = config, tokenizer and chat template only (no weights, no sessions) */
    int32_t profile;          /* 1 = charge back-end time to op classes (omni_model_profile); slows device back-ends */
    uint64_t synthetic_seed;
    omni_progress_fn progress;
    void *progress_user_data;
} omni_model_params;
omni_model_params omni_model_default_params(void);

/* Opens a Hugging Face checkpoint folder (config.json, safetensors, tokenizer files). With params.synthetic the
 * folder (or the config path given) needs only config.json. On failure *out is NULL; if err_msg is non-NULL it gets
 * a one-line reason (naming file/tensor/field) copied into it (err_cap bytes). */
int omni_model_load(const char *path, const omni_model_params *params, omni_model **out, char *err_msg,
                    size_t err_cap);
void omni_model_free(omni_model *m);
const char *omni_model_error(const omni_model *m);

typedef struct {
    omni_arch arch;
    const char *arch_name;       /* the architectures[0] string */
    int32_t vocab_size, hidden, n_layers, n_heads, n_kv_heads, head_dim;
    int32_t n_experts, n_experts_used; /* 0 for dense */
    int32_t max_ctx;
    int32_t eos_ids[4], n_eos;   /* ids that end generation */
    int32_t has_audio, has_vision, has_talker, has_code2wav; /* parts present in the checkpoint */
    int64_t params_thinker, params_audio, params_vision, params_talker, params_code2wav; /* parameter counts */
    int64_t active_params;       /* thinker parameters used per token */
    int64_t bytes_bf16, bytes_q8_0; /* whole checkpoint's weight bytes stored as BF16 / as Q8_0 (vectors stay BF16) */
    int64_t weight_bytes;        /* bytes of weights this model holds on its back-end now */
    int64_t kv_bytes_per_token;  /* KV cache bytes per context token (fp16 elements on Vulkan, fp32 on the CPU) */
    int32_t audio_token_id, image_token_id, video_token_id; /* placeholder ids (-1 if the model has none) */
    const char *backend_name;
    const char *device_name;
} omni_model_info;
void omni_model_get_info(const omni_model *m, omni_model_info *info);
/* With params.profile: adds the milliseconds spent per op class since the last call into ms[] (room for
 * OMNI_PROFILE_MAX entries; class names in *names if non-NULL); returns the number of classes, 0 if the back-end
 * cannot profile. */
#define OMNI_PROFILE_MAX 16
/* Turns profiling marks on or off for later forward passes (same as params.profile at load). */
void omni_model_set_profile(omni_model *m, int on);
int omni_model_profile(omni_model *m, double *ms, const char *const **names);
/* After omni_model_profile: the same time by kernel where the back-end traces dispatches (Vulkan with
 * OMNI_VK_TRACE=1): up to cap (name, ms, calls) entries since the last call; returns how many (0 if none). */
int omni_model_profile_kernels(omni_model *m, const char **names, double *ms, int *calls, int cap);

/* ---- tokenizer and chat template (owned by the model) ------------------------------------------------------------ */
/* Encodes UTF-8 text like Hugging Face tokenizers' encode(text, add_special_tokens=False); added/special tokens that
 * appear in the text are matched whole. Returns the number of ids (may exceed cap: then call again with more room),
 * or a negative error. */
int omni_tokenize(const omni_model *m, const char *text, size_t len, int32_t *ids, int cap);
/* Streaming-safe decoding: appends the bytes of `id` to the decoder state and returns in out only complete UTF-8
 * characters (never half a character); returns bytes written or a negative error. */
typedef struct omni_detok omni_detok;
omni_detok *omni_detok_new(const omni_model *m);
int omni_detok_push(omni_detok *d, int32_t id, char *out, size_t cap);
int omni_detok_flush(omni_detok *d, char *out, size_t cap); /* whatever is pending (invalid bytes as U+FFFD) */
void omni_detok_free(omni_detok *d);
int32_t omni_token_id(const omni_model *m, const char *token_text); /* exact vocab/added-token lookup, -1 if none */

/* Chat messages for the ChatML template. A content item is text, or an audio/image/video placeholder. */
typedef enum { OMNI_ITEM_TEXT = 0, OMNI_ITEM_AUDIO = 1, OMNI_ITEM_IMAGE = 2, OMNI_ITEM_VIDEO = 3 } omni_item_kind;
typedef struct {
    omni_item_kind kind;
    const char *text; /* for OMNI_ITEM_TEXT */
} omni_item;
typedef struct {
    const char *role; /* "system", "user", "assistant" */
    const omni_item *items;
    int32_t n_items;
} omni_message;
/* Renders messages as the checkpoint's chat template does (ChatML). Returns a malloc'd string or NULL. */
char *omni_chat_render(const omni_model *m, const omni_message *msgs, int n_msgs, int add_generation_prompt);
/* Qwen3 "enable_thinking" for the generation prompt: 0 = off (an empty <think></think> block), 1 = on, -1 = the
 * template's default. */
void omni_chat_set_thinking(omni_model *m, int enable);

/* ---- audio and image encoders (Qwen3-Omni) ------------------------------------------------------------------- */
/* Audio tokens the encoder makes from n_frames log-mel frames (_get_feat_extract_output_lengths, n_window 50). */
int omni_audio_n_tokens(int n_frames);
/* Encodes n_audios log-mel inputs (features[a] is [n_mels][frames[a]] row-major, as the processor's input_features
 * without padding) in one call, exactly as the reference does for the audios of one prompt (tail chunks are padded to
 * the longest chunk of the call). *embeds gets a malloc'd [Σ tokens][hidden] (audios in order), n_tokens[a] each
 * audio's count. OMNI_E_UNSUPPORTED if the model has no audio encoder. */
int omni_encode_audio(omni_model *m, const float *const *features, const int32_t *frames, int n_audios, float **embeds,
                      int32_t *n_tokens);

typedef struct {
    int32_t t, h, w; /* image_grid_thw: temporal groups and patch rows/columns (before the 2x2 merge) */
} omni_grid;
/* Encodes one image or video: pixel_values [t*h*w][C*T*P*P] as the processor makes them. *embeds gets a malloc'd
 * [t*h*w/merge²][hidden]; *deepstack a malloc'd [n_levels][tokens][hidden] (the DeepStack features, level j added
 * after thinker layer j). */
int omni_encode_image(omni_model *m, const float *pixel_values, omni_grid grid, float **embeds, float **deepstack,
                      int32_t *n_tokens, int32_t *n_levels);
/* The same with the number of rows pixel_values holds (the preprocessor's count), checked against t*h*w. deepstack
 * and n_levels may both be NULL (no DeepStack features computed). OMNI_E_ARG for a bad grid (a size <= 0, h or w not a
 * multiple of the merge size, too many patches per frame) with the reason in omni_model_error(m). */
int omni_encode_image_n(omni_model *m, const float *pixel_values, int64_t n_rows, omni_grid grid, float **embeds,
                        float **deepstack, int32_t *n_tokens, int32_t *n_levels);

/* Multimodal prompt inputs: features for the placeholder runs of input_ids, in order of appearance (the processor's
 * expansion: one <|audio_pad|> per audio token, one <|image_pad|>/<|video_pad|> per merged patch). */
typedef struct {
    int32_t n_audios;
    const int32_t *audio_tokens;   /* [n_audios] tokens per audio */
    const float *audio_embeds;     /* [Σ audio tokens][hidden] */
    int32_t n_images;              /* images and videos together, in order of appearance */
    const omni_grid *grids;        /* [n_images] */
    const float *second_per_grid;  /* [n_images] seconds per temporal group for videos (NULL = 2.0, images ignore) */
    const float *image_embeds;     /* [Σ visual tokens][hidden] */
    const float *deepstack;        /* [n_levels][Σ visual tokens][hidden] or NULL */
    int32_t n_levels;
} omni_mm;
/* The 3-row (t, h, w) multimodal RoPE positions of ids as the reference's get_rope_index computes them, starting at
 * `start` (0 for a fresh prompt); pos3 is [3][n]. Checks placeholder counts against mm. */
int omni_rope_index(const omni_model *m, const int32_t *ids, int n, const omni_mm *mm, float start, float *pos3,
                    char *err, size_t err_cap);
/* Appends a multimodal prompt: text embeddings with the audio/image features scattered into their placeholders,
 * positions from omni_rope_index, DeepStack features added after the first thinker layers at visual positions. */
int omni_session_append_mm(omni_session *s, const int32_t *ids, int n, const omni_mm *mm, float *logits,
                           int all_logits);

/* ---- sampling -------------------------------------------------------------------------------------------------- */
typedef struct {
    float temperature;        /* <= 0: greedy */
    int32_t top_k;            /* 0 = off */
    float top_p;              /* 1 = off */
    float min_p;              /* 0 = off */
    float repetition_penalty; /* 1 = off; HF semantics: divide positive, multiply negative logits of seen ids */
    uint64_t seed;
} omni_sampling_params;
omni_sampling_params omni_sampling_default_params(void); /* greedy */
/* The checkpoint's generation_config.json sampling values (greedy if it has none or do_sample is false). */
omni_sampling_params omni_model_sampling_defaults(const omni_model *m);

/* ---- session --------------------------------------------------------------------------------------------------- */
typedef int (*omni_abort_fn)(void *user_data); /* nonzero = stop; checked between layers */

typedef struct {
    int32_t n_ctx;           /* 0 = model default */
    omni_abort_fn abort;
    void *abort_user_data;
    int32_t capture_layer;   /* >= 0: keep the hidden state entering layer `capture_layer` for every position
                                (0 = embeddings, k = output of layer k-1, n_layers = final-normed); -1 off */
} omni_session_params;
omni_session_params omni_session_default_params(void);

int omni_session_new(omni_model *m, const omni_session_params *p, omni_session **out);
void omni_session_free(omni_session *s);
const char *omni_session_error(const omni_session *s);
int omni_session_reset(omni_session *s);
/* Drops everything after the first n positions (n <= pos): later appends overwrite the KV cache from there. */
int omni_session_truncate(omni_session *s, int32_t n);
/* Ids appended so far (-1 where embeddings were appended without ids); valid until the next append. */
const int32_t *omni_session_history(const omni_session *s, int32_t *n);
int32_t omni_session_pos(const omni_session *s);   /* tokens in the KV cache */
int32_t omni_session_n_ctx(const omni_session *s);

/* Appends tokens (prefill, incremental). If logits is non-NULL it receives [n, vocab] logits for every appended
 * position (all_logits=1) or [vocab] for the last one (all_logits=0). Returns OMNI_E_CONTEXT (and appends nothing)
 * when pos + n would exceed n_ctx. */
int omni_session_append(omni_session *s, const int32_t *ids, int n, float *logits, int all_logits);
/* Appends embeddings ([n, hidden] fp32) at the next positions with explicit 3-row multimodal positions
 * (pos3 = [3][n] as float; NULL = consecutive). ids (may be NULL) are recorded for repetition penalty/talker. */
int omni_session_append_embeds(omni_session *s, const float *embeds, const int32_t *ids, const float *pos3, int n,
                               float *logits, int all_logits);
/* Hidden states captured at capture_layer: pointer to [pos, hidden] fp32 or NULL. */
const float *omni_session_captured(const omni_session *s, int32_t *n_rows);

/* Called for every generated id with its text (complete UTF-8 characters only; the EOS token gives ""), and once
 * with id -1 for bytes still pending at the end. Return nonzero to stop. */
typedef int (*omni_token_fn)(int32_t id, const char *piece, void *user_data);

/* Greedy/sampled generation continuing from the session's last logits. Stops at EOS, max_tokens, the callback's
 * request, cancellation, or a full context (then returns OMNI_E_CONTEXT after emitting what fit). out_ids may be NULL.
 * *n_out gets the number of generated ids (the EOS id included when it ended the reply). */
int omni_generate(omni_session *s, const omni_sampling_params *sp, int max_tokens, omni_token_fn cb,
                  void *user_data, int32_t *out_ids, int *n_out);

/* Sampler (also usable on its own). */
typedef struct omni_sampler omni_sampler;
omni_sampler *omni_sampler_new(const omni_sampling_params *p, int32_t vocab);
void omni_sampler_free(omni_sampler *s);
void omni_sampler_accept(omni_sampler *s, int32_t id); /* record a token for the repetition penalty */
int32_t omni_sampler_sample(omni_sampler *s, float *logits); /* logits are modified */
/* The same draw from candidates instead of the whole row: n_lists lists of k (int32 id, fp32 raw logit) pairs, each
 * the best of one chunk of the row, best first, padded with id -1 (ob_ops.topk_chunks). Returns the id, or -1 where
 * the candidates cannot be shown to hold everything the draw may keep (then sample the whole row): it needs greedy
 * decoding or a top-k, and no repetition penalty below 1. */
int32_t omni_sampler_sample_cand(omni_sampler *s, const int32_t *cand, int n_lists, int k);

#ifdef __cplusplus
}
#endif
#endif
