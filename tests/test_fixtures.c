/* test_fixtures.c — the committed reference fixtures (tests/fixtures/<name>.tar.xz, made by tests/gen_fixtures.py)
 * are unpacked by the Makefile and hold what the golden tests expect: every file, a parseable config.json in the
 * rope style that fixture is meant to exercise, an all-bf16 model.safetensors with the real checkpoints' tensor
 * names, and the input/reference tensors under their documented names and shapes (tests/fixtures/README.md).
 *
 * Headers are read here with cJSON directly (8-byte length + JSON), so this test depends on nothing but the files. */
#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "util.h"

static char *fx_path(char *buf, size_t cap, const char *fixture, const char *file) {
    snprintf(buf, cap, "%s/%s/%s", FIXTURES, fixture, file);
    return buf;
}

static cJSON *fx_json(const char *fixture, const char *file) {
    char p[512];
    omni_err e = { { 0 } };
    char *text = omni_read_file(fx_path(p, sizeof p, fixture, file), NULL, &e);
    if (!text) {
        fprintf(stderr, "    %s\n", e.msg);
        return NULL;
    }
    cJSON *j = cJSON_Parse(text);
    free(text);
    if (!j) fprintf(stderr, "    %s: not valid JSON\n", p);
    return j;
}

/* The JSON header of a safetensors file (NULL if unreadable or malformed). */
static cJSON *fx_st_header(const char *fixture, const char *file) {
    char p[512];
    FILE *f = fopen(fx_path(p, sizeof p, fixture, file), "rb");
    if (!f) {
        fprintf(stderr, "    %s: cannot open\n", p);
        return NULL;
    }
    uint8_t len8[8];
    cJSON *j = NULL;
    if (fread(len8, 1, 8, f) == 8) {
        uint64_t n = 0;
        for (int i = 7; i >= 0; i--) n = n << 8 | len8[i];
        char *h = n > 0 && n < 100000000 ? malloc(n + 1) : NULL;
        if (h && fread(h, 1, n, f) == n) {
            h[n] = 0;
            j = cJSON_Parse(h);
        }
        free(h);
    }
    fclose(f);
    if (!j) fprintf(stderr, "    %s: bad safetensors header\n", p);
    return j;
}

/* Checks one tensor's dtype and shape; dims < 0 match anything. Returns the number of problems. */
static int fx_tensor(const cJSON *hdr, const char *file, const char *name, const char *dtype, int n_dims, ...) {
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(hdr, name);
    if (!t) {
        fprintf(stderr, "    %s: tensor '%s' missing\n", file, name);
        return 1;
    }
    const cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(t, "shape");
    int bad = !cJSON_IsString(dt) || strcmp(dt->valuestring, dtype) != 0 || !cJSON_IsArray(sh) ||
              cJSON_GetArraySize(sh) != n_dims;
    va_list ap;
    va_start(ap, n_dims);
    for (int i = 0; i < n_dims && !bad; i++) {
        int want = va_arg(ap, int);
        const cJSON *d = cJSON_GetArrayItem(sh, i);
        if (!cJSON_IsNumber(d) || (want >= 0 && (int)d->valuedouble != want)) bad = 1;
    }
    va_end(ap);
    if (bad) {
        char *s = cJSON_PrintUnformatted(t);
        fprintf(stderr, "    %s: tensor '%s' is %s, expected %s with %d dims\n", file, name, s ? s : "?", dtype, n_dims);
        free(s);
    }
    return bad;
}

static int fx_dim(const cJSON *hdr, const char *name, int i) {
    const cJSON *sh = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(hdr, name), "shape");
    const cJSON *d = cJSON_GetArrayItem(sh, i);
    return cJSON_IsNumber(d) ? (int)d->valuedouble : -1;
}

static int fx_has(const cJSON *obj, const char *key) { return cJSON_GetObjectItemCaseSensitive(obj, key) != NULL; }

/* Every file present; config.json model_type; all weights bf16; `want` model tensors present. Returns the model
 * header (caller frees) or NULL after reporting a failure. */
static cJSON *fx_common(const char *fixture, const char *model_type, const char *const *want) {
    static const char *files[] = { "config.json", "generation_config.json", "model.safetensors",
                                   "inputs.safetensors", "reference.safetensors", "meta.json" };
    char p[512];
    for (unsigned i = 0; i < sizeof files / sizeof *files; i++)
        if (!omni_file_exists(fx_path(p, sizeof p, fixture, files[i]))) {
            fprintf(stderr, "    %s missing (is tests/fixtures/%s.tar.xz committed and unpacked?)\n", p, fixture);
            th_failures++;
            return NULL;
        }
    cJSON *cfg = fx_json(fixture, "config.json");
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(cfg, "model_type");
    CHECK(cJSON_IsString(mt) && strcmp(mt->valuestring, model_type) == 0);
    cJSON_Delete(cfg);
    cJSON *gen = fx_json(fixture, "generation_config.json");
    CHECK(gen != NULL);
    cJSON_Delete(gen);
    cJSON *meta = fx_json(fixture, "meta.json");
    CHECK(meta != NULL && fx_has(meta, "versions"));
    cJSON_Delete(meta);

    cJSON *m = fx_st_header(fixture, "model.safetensors");
    if (!m) {
        th_failures++;
        return NULL;
    }
    int n = 0, not_bf16 = 0;
    for (const cJSON *t = m->child; t; t = t->next) {
        if (!strcmp(t->string, "__metadata__")) continue;
        n++;
        const cJSON *dt = cJSON_GetObjectItemCaseSensitive(t, "dtype");
        if (!cJSON_IsString(dt) || strcmp(dt->valuestring, "BF16") != 0) not_bf16++;
    }
    CHECK(n > 0);
    CHECK_EQ_INT(not_bf16, 0);
    for (int i = 0; want[i]; i++)
        if (!fx_has(m, want[i])) {
            fprintf(stderr, "    %s/model.safetensors: '%s' missing\n", fixture, want[i]);
            th_failures++;
        }
    return m;
}

/* input_ids [1,T], logits [T,vocab] f32, generated [8] i64. */
static void fx_text_refs(const char *fixture, int vocab) {
    cJSON *in = fx_st_header(fixture, "inputs.safetensors"), *ref = fx_st_header(fixture, "reference.safetensors");
    REQUIRE(in && ref);
    CHECK(fx_tensor(in, "inputs", "input_ids", "I64", 2, 1, -1) == 0);
    int T = fx_dim(in, "input_ids", 1);
    CHECK(T > 0);
    CHECK(fx_tensor(ref, "reference", "logits", "F32", 2, T, vocab) == 0);
    CHECK(fx_tensor(ref, "reference", "generated", "I64", 1, 8) == 0);
    cJSON_Delete(in);
    cJSON_Delete(ref);
}

TEST(fixture_qwen3_dense) {
    static const char *want[] = { "model.embed_tokens.weight", "lm_head.weight", "model.norm.weight",
                                  "model.layers.2.self_attn.q_proj.bias", "model.layers.0.self_attn.q_norm.weight",
                                  NULL };
    cJSON *m = fx_common("qwen3-dense", "qwen3", want);
    REQUIRE(m);
    CHECK(fx_tensor(m, "model", "model.layers.0.self_attn.q_proj.weight", "BF16", 2, 128, 64) == 0);
    CHECK(fx_tensor(m, "model", "model.layers.0.self_attn.k_proj.weight", "BF16", 2, 64, 64) == 0);
    cJSON_Delete(m);
    fx_text_refs("qwen3-dense", 4096);
}

TEST(fixture_qwen3_dense_tied) {
    static const char *want[] = { "model.embed_tokens.weight", "model.layers.1.mlp.down_proj.weight", NULL };
    cJSON *m = fx_common("qwen3-dense-tied", "qwen3", want);
    REQUIRE(m);
    CHECK(!fx_has(m, "lm_head.weight")); /* tied: the head is the embedding */
    cJSON_Delete(m);
    cJSON *cfg = fx_json("qwen3-dense-tied", "config.json");
    REQUIRE(cfg);
    const cJSON *rp = cJSON_GetObjectItemCaseSensitive(cfg, "rope_parameters");
    CHECK(cJSON_IsObject(rp) && fx_has(rp, "rope_theta")); /* the newer style */
    CHECK(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cfg, "tie_word_embeddings")));
    cJSON_Delete(cfg);
    fx_text_refs("qwen3-dense-tied", 4096);
}

TEST(fixture_qwen3_moe) {
    static const char *want[] = { "model.layers.0.mlp.gate.weight", "model.layers.0.mlp.experts.7.gate_proj.weight",
                                  "model.layers.2.mlp.experts.0.down_proj.weight",
                                  "model.layers.1.mlp.gate_proj.weight", NULL };
    cJSON *m = fx_common("qwen3-moe", "qwen3_moe", want);
    REQUIRE(m);
    CHECK(!fx_has(m, "model.layers.1.mlp.gate.weight")); /* layer 1 is dense (mlp_only_layers) */
    CHECK(fx_tensor(m, "model", "model.layers.0.mlp.experts.3.up_proj.weight", "BF16", 2, 32, 64) == 0);
    cJSON_Delete(m);
    cJSON *cfg = fx_json("qwen3-moe", "config.json");
    REQUIRE(cfg);
    CHECK(!fx_has(cfg, "rope_parameters")); /* the older style */
    CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(cfg, "rope_theta")));
    CHECK(cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(cfg, "rope_scaling")));
    CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(cfg, "num_experts")));
    cJSON_Delete(cfg);
    fx_text_refs("qwen3-moe", 4096);
}

TEST(fixture_qwen3_omni) {
    static const char *want[] = { "thinker.model.embed_tokens.weight", "thinker.lm_head.weight",
                                  "thinker.model.layers.0.mlp.experts.0.gate_proj.weight",
                                  "thinker.audio_tower.conv2d1.weight", "thinker.visual.patch_embed.proj.weight",
                                  "thinker.visual.merger_list.2.mlp.2.weight", "talker.codec_head.weight",
                                  "talker.model.layers.0.mlp.shared_expert_gate.weight",
                                  "talker.code_predictor.lm_head.2.weight", "code2wav.code_embedding.weight", NULL };
    const char *fx = "qwen3-omni";
    cJSON *m = fx_common(fx, "qwen3_omni_moe", want);
    REQUIRE(m);
    CHECK(fx_tensor(m, "model", "thinker.model.embed_tokens.weight", "BF16", 2, 152064, 32) == 0);
    cJSON_Delete(m);

    /* config.json: the published rope_theta + rope_scaling style; config.rope_parameters.json: the v5 style */
    cJSON *cfg = fx_json(fx, "config.json"), *cfg5 = fx_json(fx, "config.rope_parameters.json");
    REQUIRE(cfg && cfg5);
    const cJSON *tc = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cfg, "thinker_config"),
                                                       "text_config");
    const cJSON *rs = cJSON_GetObjectItemCaseSensitive(tc, "rope_scaling");
    CHECK(cJSON_IsNumber(cJSON_GetObjectItemCaseSensitive(tc, "rope_theta")));
    CHECK(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(rs, "mrope_section")) == 3);
    CHECK(!fx_has(tc, "rope_parameters"));
    tc = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(cfg5, "thinker_config"), "text_config");
    CHECK(cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(tc, "rope_parameters")));
    cJSON_Delete(cfg);
    cJSON_Delete(cfg5);

    cJSON *in = fx_st_header(fx, "inputs.safetensors"), *ref = fx_st_header(fx, "reference.safetensors");
    REQUIRE(in && ref);
    const int V = 152064, H = 32;
    static const struct { const char *ids, *logits, *pos; } prompts[] = {
        { "input_ids", "logits", NULL },
        { "audio_input_ids", "audio_logits", "audio_position_ids" },
        { "image_input_ids", "image_logits", "image_position_ids" },
        { "image2_input_ids", "image2_logits", "image2_position_ids" },
        { "mixed_input_ids", "mixed_logits", "mixed_position_ids" },
    };
    for (unsigned i = 0; i < sizeof prompts / sizeof *prompts; i++) {
        CHECK(fx_tensor(in, "inputs", prompts[i].ids, "I64", 2, 1, -1) == 0);
        int T = fx_dim(in, prompts[i].ids, 1);
        CHECK(fx_tensor(ref, "reference", prompts[i].logits, "F32", 2, T, V) == 0);
        if (prompts[i].pos) CHECK(fx_tensor(ref, "reference", prompts[i].pos, "I64", 2, 3, T) == 0);
    }
    CHECK(fx_tensor(ref, "reference", "generated", "I64", 1, 8) == 0);
    static const struct { int frames, tokens; } audios[] = { { 70, 9 }, { 200, 26 }, { 560, 73 } };
    for (unsigned i = 0; i < 3; i++) {
        char a[64], b[64], c[64];
        snprintf(a, sizeof a, "input_features_%d", audios[i].frames);
        snprintf(b, sizeof b, "feature_attention_mask_%d", audios[i].frames);
        snprintf(c, sizeof c, "audio_embeds_%d", audios[i].frames);
        CHECK(fx_tensor(in, "inputs", a, "F32", 3, 1, 128, audios[i].frames) == 0);
        CHECK(fx_tensor(in, "inputs", b, "I64", 2, 1, audios[i].frames) == 0);
        CHECK(fx_tensor(ref, "reference", c, "F32", 2, audios[i].tokens, H) == 0);
    }
    for (int img = 1; img <= 2; img++) {
        char a[64];
        snprintf(a, sizeof a, "pixel_values_%d", img);
        CHECK(fx_tensor(in, "inputs", a, "F32", 2, 24, 1536) == 0);
        snprintf(a, sizeof a, "image_grid_thw_%d", img);
        CHECK(fx_tensor(in, "inputs", a, "I64", 2, 1, 3) == 0);
        snprintf(a, sizeof a, "image_embeds_%d", img);
        CHECK(fx_tensor(ref, "reference", a, "F32", 2, 6, H) == 0);
        for (int j = 0; j < 3; j++) {
            snprintf(a, sizeof a, "deepstack_%d_%d", img, j);
            CHECK(fx_tensor(ref, "reference", a, "F32", 2, 6, H) == 0);
        }
    }
    /* talker + code2wav: 4 codebooks x frames, and 1920 * frames - 555 samples (one code2wav chunk) */
    if (fx_has(ref, "talker_codes")) {
        CHECK(fx_tensor(ref, "reference", "talker_codes", "I64", 2, 4, -1) == 0);
        int frames = fx_dim(ref, "talker_codes", 1);
        CHECK(frames > 0);
        CHECK(fx_tensor(ref, "reference", "wav", "F32", 1, 1920 * frames - 555) == 0);
    }
    cJSON_Delete(in);
    cJSON_Delete(ref);
}
