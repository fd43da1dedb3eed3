/* config.c — reads config.json / generation_config.json into omni_hparams, validating every field it uses.
 * Accepts both config styles of transformers: the older `rope_scaling` + `rope_theta` and the newer
 * `rope_parameters` (as normalised by transformers v5, `RotaryEmbeddingConfigMixin`). */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const cJSON *get(const cJSON *obj, const char *key) {
    return obj ? cJSON_GetObjectItemCaseSensitive(obj, key) : NULL;
}

int cfg_int(const cJSON *obj, const char *key, int32_t *out, int required, const char *path, omni_err *e) {
    const cJSON *v = get(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return omni_fail(e, OMNI_E_CONFIG, "%s: missing field '%s'", path, key);
        return 1; /* absent: *out unchanged */
    }
    if (cJSON_IsBool(v)) {
        *out = cJSON_IsTrue(v);
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || fabs(v->valuedouble) > 2147483647.0)
        return omni_fail(e, OMNI_E_CONFIG, "%s: field '%s' must be an integer", path, key);
    *out = (int32_t)v->valuedouble;
    return 0;
}

int cfg_float(const cJSON *obj, const char *key, float *out, int required, const char *path, omni_err *e) {
    const cJSON *v = get(obj, key);
    if (!v || cJSON_IsNull(v)) {
        if (required) return omni_fail(e, OMNI_E_CONFIG, "%s: missing field '%s'", path, key);
        return 1;
    }
    if (!cJSON_IsNumber(v)) return omni_fail(e, OMNI_E_CONFIG, "%s: field '%s' must be a number", path, key);
    *out = (float)v->valuedouble;
    return 0;
}

/* required positive integer */
static int pos_int(const cJSON *obj, const char *key, int32_t *out, const char *path, omni_err *e) {
    int rc = cfg_int(obj, key, out, 1, path, e);
    if (rc) return rc;
    if (*out <= 0) return omni_fail(e, OMNI_E_CONFIG, "%s: field '%s' must be positive (got %d)", path, key, *out);
    return 0;
}

/* Reads the RoPE description from the newer `rope_parameters` or the older `rope_scaling` + `rope_theta`. */
static int parse_rope(omni_text_hparams *t, const cJSON *tc, const cJSON *parent, int is_omni, const char *path,
                      omni_err *e) {
    const cJSON *rp = get(tc, "rope_parameters"), *rs = get(tc, "rope_scaling");
    const cJSON *src = cJSON_IsObject(rp) ? rp : (cJSON_IsObject(rs) ? rs : NULL);
    const char *field = src == rp ? "rope_parameters" : "rope_scaling";
    if (src) {
        const cJSON *ty = get(src, "rope_type");
        if (!ty) ty = get(src, "type");
        if (ty && !cJSON_IsString(ty))
            return omni_fail(e, OMNI_E_CONFIG, "%s: field '%s.rope_type' must be a string", path, field);
        const char *type = ty ? ty->valuestring : "default";
        /* "mrope" is the older name of default RoPE with multimodal sections (Qwen2-VL configs) */
        if (strcmp(type, "default") && strcmp(type, "mrope"))
            return omni_fail(e, OMNI_E_UNSUPPORTED, "%s: %s.rope_type '%s' is not supported (only 'default')", path,
                             field, type);
    }
    /* theta: inside rope_parameters (new), else rope_theta of the text config, else of the parent config, else the
     * transformers default of 10000 (RotaryEmbeddingConfigMixin.default_theta) */
    t->rope_theta = 10000.0f;
    int rc = 1;
    if (src == rp && src) rc = cfg_float(src, "rope_theta", &t->rope_theta, 0, path, e);
    if (rc == 1) rc = cfg_float(tc, "rope_theta", &t->rope_theta, 0, path, e);
    if (rc == 1 && parent) rc = cfg_float(parent, "rope_theta", &t->rope_theta, 0, path, e);
    if (rc < 0) return rc;
    if (!(t->rope_theta > 1.0f)) return omni_fail(e, OMNI_E_CONFIG, "%s: rope_theta must be > 1", path);
    memset(t->mrope_section, 0, sizeof t->mrope_section);
    const cJSON *ms = src ? get(src, "mrope_section") : NULL;
    if (ms && !cJSON_IsNull(ms)) {
        if (!cJSON_IsArray(ms) || cJSON_GetArraySize(ms) != 3)
            return omni_fail(e, OMNI_E_CONFIG, "%s: %s.mrope_section must be a list of 3 integers", path, field);
        int sum = 0;
        for (int i = 0; i < 3; i++) {
            const cJSON *v = cJSON_GetArrayItem(ms, i);
            if (!cJSON_IsNumber(v) || v->valuedouble < 0)
                return omni_fail(e, OMNI_E_CONFIG, "%s: %s.mrope_section[%d] must be a non-negative integer", path,
                                 field, i);
            t->mrope_section[i] = (int32_t)v->valuedouble;
            sum += t->mrope_section[i];
        }
        if (sum != t->head_dim / 2)
            return omni_fail(e, OMNI_E_CONFIG, "%s: %s.mrope_section sums to %d, expected head_dim/2 = %d", path, field,
                             sum, t->head_dim / 2);
        /* Qwen3-Omni always recomposes interleaved (`apply_interleaved_mrope`), whatever the flag says */
        const cJSON *il = get(src, "mrope_interleaved");
        if (!il) il = get(src, "interleaved");
        t->mrope_interleaved = is_omni || (il && cJSON_IsTrue(il));
    }
    return 0;
}

static int parse_text(omni_text_hparams *t, const cJSON *tc, const cJSON *parent, int is_omni, const char *path,
                      omni_err *e) {
    int rc;
    if ((rc = pos_int(tc, "vocab_size", &t->vocab_size, path, e)) ||
        (rc = pos_int(tc, "hidden_size", &t->hidden, path, e)) ||
        (rc = pos_int(tc, "num_hidden_layers", &t->n_layers, path, e)) ||
        (rc = pos_int(tc, "num_attention_heads", &t->n_heads, path, e)))
        return rc;
    t->n_kv_heads = t->n_heads;
    if ((rc = cfg_int(tc, "num_key_value_heads", &t->n_kv_heads, 0, path, e)) < 0) return rc;
    t->head_dim = t->hidden / t->n_heads;
    if ((rc = cfg_int(tc, "head_dim", &t->head_dim, 0, path, e)) < 0) return rc;
    if (t->n_kv_heads <= 0 || t->n_heads % t->n_kv_heads)
        return omni_fail(e, OMNI_E_CONFIG, "%s: num_attention_heads (%d) must be a multiple of num_key_value_heads (%d)",
                         path, t->n_heads, t->n_kv_heads);
    if (t->head_dim <= 0 || t->head_dim % 2 || t->head_dim > 1024)
        return omni_fail(e, OMNI_E_CONFIG, "%s: head_dim %d must be even and in 2..1024", path, t->head_dim);
    if (t->n_layers > OMNI_MAX_LAYERS)
        return omni_fail(e, OMNI_E_UNSUPPORTED, "%s: num_hidden_layers %d exceeds %d", path, t->n_layers,
                         OMNI_MAX_LAYERS);
    t->rms_eps = 1e-6f;
    if ((rc = cfg_float(tc, "rms_norm_eps", &t->rms_eps, 0, path, e)) < 0) return rc;
    t->max_pos = 32768;
    if ((rc = cfg_int(tc, "max_position_embeddings", &t->max_pos, 0, path, e)) < 0) return rc;
    if (t->max_pos <= 0) return omni_fail(e, OMNI_E_CONFIG, "%s: max_position_embeddings must be positive", path);
    t->tie_embeddings = 0;
    if ((rc = cfg_int(tc, "tie_word_embeddings", &t->tie_embeddings, 0, path, e)) == 1 && parent)
        rc = cfg_int(parent, "tie_word_embeddings", &t->tie_embeddings, 0, path, e);
    if (rc < 0) return rc;
    t->attention_bias = 0;
    if ((rc = cfg_int(tc, "attention_bias", &t->attention_bias, 0, path, e)) < 0) return rc;
    int32_t flag = 0;
    if ((rc = cfg_int(tc, "use_sliding_window", &flag, 0, path, e)) < 0) return rc;
    if (flag) return omni_fail(e, OMNI_E_UNSUPPORTED, "%s: use_sliding_window true is not supported", path);
    const cJSON *act = get(tc, "hidden_act");
    if (act && (!cJSON_IsString(act) || strcmp(act->valuestring, "silu")))
        return omni_fail(e, OMNI_E_UNSUPPORTED, "%s: hidden_act must be \"silu\"", path);

    t->intermediate = 0;
    if ((rc = cfg_int(tc, "intermediate_size", &t->intermediate, 0, path, e)) < 0) return rc;
    t->n_experts = 0;
    if ((rc = cfg_int(tc, "num_experts", &t->n_experts, 0, path, e)) < 0) return rc;
    if (t->n_experts < 0) return omni_fail(e, OMNI_E_CONFIG, "%s: num_experts must be >= 0", path);
    memset(t->layer_is_moe, 0, sizeof t->layer_is_moe);
    if (t->n_experts > 0) {
        if ((rc = pos_int(tc, "num_experts_per_tok", &t->n_experts_used, path, e)) ||
            (rc = pos_int(tc, "moe_intermediate_size", &t->moe_intermediate, path, e)))
            return rc;
        if (t->n_experts_used > t->n_experts)
            return omni_fail(e, OMNI_E_CONFIG, "%s: num_experts_per_tok %d exceeds num_experts %d", path,
                             t->n_experts_used, t->n_experts);
        t->norm_topk = 0; /* Qwen3MoeConfig default is false */
        if ((rc = cfg_int(tc, "norm_topk_prob", &t->norm_topk, 0, path, e)) < 0) return rc;
        t->decoder_sparse_step = 1;
        if ((rc = cfg_int(tc, "decoder_sparse_step", &t->decoder_sparse_step, 0, path, e)) < 0) return rc;
        if (t->decoder_sparse_step <= 0)
            return omni_fail(e, OMNI_E_CONFIG, "%s: decoder_sparse_step must be positive", path);
        int32_t shared = 0;
        if ((rc = cfg_int(tc, "shared_expert_intermediate_size", &shared, 0, path, e)) < 0) return rc;
        (void)shared; /* present in Qwen3-Omni's thinker config but unused by its decoder (no shared expert) */
        /* Qwen3MoeDecoderLayer: MoE iff layer not in mlp_only_layers and (idx+1) % decoder_sparse_step == 0 */
        for (int l = 0; l < t->n_layers; l++) t->layer_is_moe[l] = (uint8_t)((l + 1) % t->decoder_sparse_step == 0);
        const cJSON *mo = get(tc, "mlp_only_layers");
        if (mo && !cJSON_IsNull(mo)) {
            if (!cJSON_IsArray(mo)) return omni_fail(e, OMNI_E_CONFIG, "%s: mlp_only_layers must be a list", path);
            const cJSON *it;
            cJSON_ArrayForEach(it, mo) {
                if (!cJSON_IsNumber(it) || it->valuedouble < 0 || it->valuedouble >= t->n_layers)
                    return omni_fail(e, OMNI_E_CONFIG, "%s: mlp_only_layers has an invalid layer index", path);
                t->layer_is_moe[(int)it->valuedouble] = 0;
            }
        }
    }
    for (int l = 0; l < t->n_layers; l++)
        if (!t->layer_is_moe[l] && t->intermediate <= 0)
            return omni_fail(e, OMNI_E_CONFIG, "%s: missing field 'intermediate_size' (layer %d is dense)", path, l);
    return parse_rope(t, tc, parent, is_omni, path, e);
}

static void id_or(const cJSON *obj, const char *key, int32_t *out) {
    const cJSON *v = get(obj, key);
    if (cJSON_IsNumber(v)) *out = (int32_t)v->valuedouble;
}

static void add_eos_from(omni_hparams *hp, const cJSON *v) {
    if (cJSON_IsNumber(v)) {
        if (hp->n_eos < OMNI_MAX_EOS) hp->eos[hp->n_eos++] = (int32_t)v->valuedouble;
    } else if (cJSON_IsArray(v)) {
        const cJSON *it;
        cJSON_ArrayForEach(it, v) if (cJSON_IsNumber(it) && hp->n_eos < OMNI_MAX_EOS) hp->eos[hp->n_eos++] =
            (int32_t)it->valuedouble;
    }
}

int omni_hparams_parse(omni_hparams *hp, const char *text, const char *path, const char *gen_text,
                       const char *gen_path, omni_err *e) {
    memset(hp, 0, sizeof *hp);
    hp->root = cJSON_Parse(text);
    if (!hp->root || !cJSON_IsObject(hp->root)) {
        omni_hparams_free(hp);
        return omni_fail(e, OMNI_E_FORMAT, "%s: not a valid JSON object", path);
    }
    const cJSON *root = hp->root;
    const cJSON *archs = get(root, "architectures");
    const cJSON *a0 = cJSON_IsArray(archs) ? cJSON_GetArrayItem(archs, 0) : NULL;
    const cJSON *mt = get(root, "model_type");
    const char *arch = cJSON_IsString(a0) ? a0->valuestring : NULL;
    const char *model_type = cJSON_IsString(mt) ? mt->valuestring : "";
    if (!arch) {
        /* older or hand-written configs: fall back on model_type */
        if (!strcmp(model_type, "qwen3")) arch = "Qwen3ForCausalLM";
        else if (!strcmp(model_type, "qwen3_moe")) arch = "Qwen3MoeForCausalLM";
        else if (!strcmp(model_type, "qwen3_omni_moe")) arch = "Qwen3OmniMoeForConditionalGeneration";
        else {
            omni_hparams_free(hp);
            return omni_fail(e, OMNI_E_CONFIG, "%s: missing field 'architectures'", path);
        }
    }
    snprintf(hp->arch_name, sizeof hp->arch_name, "%s", arch);
    hp->bos_id = hp->pad_id = -1;
    hp->im_start_id = hp->im_end_id = -1;
    hp->audio_token_id = hp->audio_start_id = hp->audio_end_id = -1;
    hp->image_token_id = hp->video_token_id = hp->vision_start_id = hp->vision_end_id = -1;
    const cJSON *tc = root, *parent = NULL;
    int rc;
    if (!strcmp(arch, "Qwen3ForCausalLM")) {
        hp->arch = OMNI_ARCH_QWEN3;
    } else if (!strcmp(arch, "Qwen3MoeForCausalLM")) {
        hp->arch = OMNI_ARCH_QWEN3_MOE;
    } else if (!strcmp(arch, "Qwen3OmniMoeForConditionalGeneration") ||
               !strcmp(arch, "Qwen3OmniMoeThinkerForConditionalGeneration")) {
        hp->arch = OMNI_ARCH_QWEN3_OMNI;
        const cJSON *th = get(root, "thinker_config");
        if (!cJSON_IsObject(th)) {
            if (!strcmp(arch, "Qwen3OmniMoeThinkerForConditionalGeneration")) th = root;
            else {
                omni_hparams_free(hp);
                return omni_fail(e, OMNI_E_CONFIG, "%s: missing field 'thinker_config'", path);
            }
        }
        tc = get(th, "text_config");
        if (!cJSON_IsObject(tc)) {
            omni_hparams_free(hp);
            return omni_fail(e, OMNI_E_CONFIG, "%s: missing field 'thinker_config.text_config'", path);
        }
        parent = th;
        id_or(root, "im_start_token_id", &hp->im_start_id);
        id_or(root, "im_end_token_id", &hp->im_end_id);
        id_or(th, "audio_token_id", &hp->audio_token_id);
        id_or(th, "audio_start_token_id", &hp->audio_start_id);
        id_or(th, "audio_end_token_id", &hp->audio_end_id);
        id_or(th, "image_token_id", &hp->image_token_id);
        id_or(th, "video_token_id", &hp->video_token_id);
        id_or(th, "vision_start_token_id", &hp->vision_start_id);
        id_or(th, "vision_end_token_id", &hp->vision_end_id);
        hp->position_id_per_seconds = 25;
        id_or(th, "position_id_per_seconds", &hp->position_id_per_seconds);
        hp->has_audio_cfg = cJSON_IsObject(get(th, "audio_config"));
        hp->has_vision_cfg = cJSON_IsObject(get(th, "vision_config"));
        hp->has_talker_cfg = cJSON_IsObject(get(root, "talker_config"));
        const cJSON *eao = get(root, "enable_audio_output");
        hp->enable_audio_output = eao ? cJSON_IsTrue(eao) : hp->has_talker_cfg;
        snprintf(hp->prefix, sizeof hp->prefix, "thinker.model.");
        snprintf(hp->lm_head, sizeof hp->lm_head, "thinker.lm_head.weight");
    } else {
        omni_hparams_free(hp); /* arch pointed into the JSON: use the copy */
        return omni_fail(e, OMNI_E_UNSUPPORTED,
                         "%s: architecture '%s' is not supported (Qwen3ForCausalLM, Qwen3MoeForCausalLM, "
                         "Qwen3OmniMoeForConditionalGeneration)",
                         path, hp->arch_name);
    }
    if (hp->arch != OMNI_ARCH_QWEN3_OMNI) {
        snprintf(hp->prefix, sizeof hp->prefix, "model.");
        snprintf(hp->lm_head, sizeof hp->lm_head, "lm_head.weight");
    }
    if ((rc = parse_text(&hp->text, tc, parent, hp->arch == OMNI_ARCH_QWEN3_OMNI, path, e))) {
        omni_hparams_free(hp);
        return rc;
    }
    if (hp->arch == OMNI_ARCH_QWEN3 && hp->text.n_experts > 0) hp->text.n_experts = 0; /* not used by Qwen3 */
    if (hp->arch == OMNI_ARCH_QWEN3) memset(hp->text.layer_is_moe, 0, sizeof hp->text.layer_is_moe);
    if (hp->arch != OMNI_ARCH_QWEN3 && hp->text.n_experts == 0) {
        omni_hparams_free(hp);
        return omni_fail(e, OMNI_E_CONFIG, "%s: missing field 'num_experts' (a MoE architecture)", path);
    }
    id_or(tc, "bos_token_id", &hp->bos_id);
    id_or(tc, "pad_token_id", &hp->pad_id);

    /* EOS: generation_config.json's eos_token_id (int or list), else config.json's, else <|im_end|> */
    cJSON *gen = gen_text ? cJSON_Parse(gen_text) : NULL;
    if (gen_text && !cJSON_IsObject(gen)) {
        cJSON_Delete(gen);
        omni_hparams_free(hp);
        return omni_fail(e, OMNI_E_FORMAT, "%s: not a valid JSON object", gen_path ? gen_path : "generation_config.json");
    }
    add_eos_from(hp, get(gen, "eos_token_id"));
    if (!hp->n_eos) add_eos_from(hp, get(tc, "eos_token_id"));
    if (!hp->n_eos) add_eos_from(hp, get(root, "eos_token_id"));
    if (!hp->n_eos && hp->im_end_id >= 0) hp->eos[hp->n_eos++] = hp->im_end_id;
    if (gen) {
        const cJSON *v;
        if ((v = get(gen, "temperature")) && cJSON_IsNumber(v)) hp->gen_temperature = (float)v->valuedouble;
        if ((v = get(gen, "top_p")) && cJSON_IsNumber(v)) hp->gen_top_p = (float)v->valuedouble;
        if ((v = get(gen, "min_p")) && cJSON_IsNumber(v)) hp->gen_min_p = (float)v->valuedouble;
        if ((v = get(gen, "repetition_penalty")) && cJSON_IsNumber(v))
            hp->gen_repetition_penalty = (float)v->valuedouble;
        if ((v = get(gen, "top_k")) && cJSON_IsNumber(v)) hp->gen_top_k = (int32_t)v->valuedouble;
        if ((v = get(gen, "do_sample"))) hp->gen_do_sample = cJSON_IsTrue(v);
        cJSON_Delete(gen);
    }
    return 0;
}

void omni_hparams_free(omni_hparams *hp) {
    if (!hp) return;
    cJSON_Delete(hp->root);
    hp->root = NULL;
}
