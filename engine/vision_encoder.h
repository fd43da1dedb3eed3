/* vision_encoder.h — the Qwen3-Omni vision tower (thinker.visual: patch embedding, learned position table, ViT
 * blocks with 2-D rotary, the final patch merger and the DeepStack mergers), written against backend.h.
 *
 * Public entry points are omni_encode_image() / omni_encode_image_n() in omni.h; this header is for the model loader
 * (model.c), which calls venc_load() after the text weights are bound and venc_free() when the model goes, and for
 * tests. */
#ifndef OMNI_VISION_ENCODER_H
#define OMNI_VISION_ENCODER_H

#include "model.h"

#define VENC_MAX_LEVELS 16 /* DeepStack levels we accept in a config */

/* One Qwen3OmniMoeVisionBlock; matrices [rows=out, cols=in], every Linear with a bias. */
typedef struct {
    ob_mat ln1_w, ln1_b;      /* norm1 [hidden] */
    ob_mat wq, wk, wv;        /* attn.qkv.weight [3*hidden, hidden] split into rows [0,h), [h,2h), [2h,3h) */
    ob_mat bq, bk, bv;        /* views of attn.qkv.bias [3*hidden] */
    ob_mat wo, bo;            /* attn.proj [hidden, hidden] */
    ob_mat ln2_w, ln2_b;      /* norm2 [hidden] */
    ob_mat fc1, fc1_b;        /* mlp.linear_fc1 [ffn, hidden] */
    ob_mat fc2, fc2_b;        /* mlp.linear_fc2 [hidden, ffn] */
} venc_block;

/* Qwen3OmniMoeVisionPatchMerger: LayerNorm (per patch of `hidden`, or after the view to merge²·hidden when
 * postshuffle), then Linear(merge²·hidden) -> exact GELU -> Linear(out_hidden). */
typedef struct {
    int postshuffle;          /* use_postshuffle_norm: 1 for the DeepStack mergers */
    ob_mat ln_w, ln_b;        /* ln_q [hidden] or [merge²·hidden] */
    ob_mat fc1, fc1_b;        /* mlp.0 [merge²·hidden, merge²·hidden] */
    ob_mat fc2, fc2_b;        /* mlp.2 [out_hidden, merge²·hidden] */
} venc_merger;

/* Hyper-parameters from thinker_config.vision_config. */
typedef struct {
    int32_t depth;            /* ViT blocks */
    int32_t hidden;           /* hidden_size */
    int32_t n_heads;          /* num_heads */
    int32_t head_dim;         /* hidden / n_heads (a multiple of 4: rows and columns each rotate head_dim/4 pairs) */
    int32_t ffn;              /* intermediate_size */
    int32_t patch;            /* patch_size (pixels per patch side) */
    int32_t tpatch;           /* temporal_patch_size (frames per temporal group) */
    int32_t merge;            /* spatial_merge_size: merge×merge patches become one token */
    int32_t in_ch;            /* in_channels */
    int32_t out_hidden;       /* out_hidden_size (= thinker hidden) */
    int32_t n_pos;            /* num_position_embeddings (side² rows of the learned table) */
    int32_t side;             /* sqrt(n_pos) */
    int32_t patch_dim;        /* in_ch * tpatch * patch² floats per pixel_values row */
    float rope_theta;         /* rope_parameters.rope_theta, default 10000 */
    float eps;                /* LayerNorm eps (1e-6, fixed in the reference) */
    int32_t n_levels;         /* len(deepstack_visual_indexes) */
    int32_t ds_index[VENC_MAX_LEVELS]; /* deepstack_visual_indexes as written */
} venc_hparams;

struct venc_model {
    venc_hparams hp;
    char prefix[32];          /* "thinker.visual." */
    ob_mat patch_w, patch_b;  /* patch_embed.proj: Conv3d weight [hidden, C, T, P, P] as [hidden, patch_dim] */
    ob_mat pos_embed;         /* pos_embed.weight [n_pos, hidden] */
    venc_block *blocks;       /* [depth] */
    venc_merger merger;       /* final merger */
    venc_merger *ds;          /* [n_levels] merger_list */
    int8_t *block_merger;     /* [depth]: index into ds for blocks in deepstack_visual_indexes, else -1 */
    int32_t chunk_patches;    /* frames are batched up to this many patches per pass (VENC_CHUNK_PATCHES; tests lower
                                 it to exercise several passes) */
};
typedef struct venc_model venc_model;

/* Reads vision_config and binds thinker.visual.* into m->vision (synthetic weights for synthetic models). Leaves
 * m->vision NULL (and returns 0) when the checkpoint has no vision tower tensors at all. */
int venc_load(omni_model *m);
void venc_free(venc_model *v); /* NULL ok; weight buffers belong to the model */

/* Patches per frame the encoder accepts (larger frames are refused with OMNI_E_ARG; the processor's max_pixels gives
 * at most 50176), and the default batch of patches per pass (a 1024×1024 image is one pass of 4096). */
#define VENC_MAX_FRAME_PATCHES 65536
#define VENC_CHUNK_PATCHES 4096

/* Back-end scratch bytes omni_encode_image allocates for one call on this grid (for reports and tests). */
size_t venc_scratch_bytes(const omni_model *m, omni_grid g);

#endif
