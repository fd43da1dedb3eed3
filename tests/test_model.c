/* test_model.c — loading and running small checkpoints written by the test itself: config validation (both rope
 * styles, missing/malformed fields, unknown architectures), tensor checks (missing, wrong shape), sessions
 * (incremental prefill = one-shot prefill, truncation, the context limit, cancellation), Q8_0 at load time, and
 * the sampler. Reference-accuracy tests against transformers live in test_golden.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "omni.h"
#include "safetensors.h"
#include "util.h"

typedef struct {
    int moe;            /* Qwen3-MoE instead of dense Qwen3 */
    int new_rope_style; /* rope_parameters instead of rope_theta */
    int skip_tensor;    /* leave out layers.1.self_attn.k_norm.weight */
    int bad_shape;      /* q_proj with one row too many */
    const char *config_override; /* full config text */
} tiny_opts;

enum { V = 64, H = 32, L = 2, NH = 2, NKV = 1, HD = 8, I = 32, E = 4, K = 2, MI = 32 };

static void add_rand(st_writer *w, const char *name, int64_t r, int64_t c, uint64_t seed, float scale, float base) {
    int64_t n = c ? r * c : r;
    uint16_t *d = malloc((size_t)n * 2);
    omni_rng g = { seed };
    for (int64_t i = 0; i < n; i++) d[i] = omni_f32_to_bf16(base + (omni_rng_uniform(&g) * 2 - 1) * scale);
    int64_t shape[2] = { r, c };
    st_writer_add(w, name, ST_BF16, c ? 2 : 1, shape, d, (size_t)n * 2);
    free(d);
}

static char *make_tiny(const tiny_opts *o) {
    char tmpl[] = "/tmp/omni-test-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) return NULL;
    dir = strdup(dir);
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (o->config_override) fputs(o->config_override, f);
    else {
        fprintf(f, "{\"architectures\": [\"%s\"], \"vocab_size\": %d, \"hidden_size\": %d, \"num_hidden_layers\": %d,"
                   " \"num_attention_heads\": %d, \"num_key_value_heads\": %d, \"head_dim\": %d,"
                   " \"intermediate_size\": %d, \"rms_norm_eps\": 1e-6, \"max_position_embeddings\": 128,"
                   " \"tie_word_embeddings\": false, \"hidden_act\": \"silu\", \"eos_token_id\": 3",
                o->moe ? "Qwen3MoeForCausalLM" : "Qwen3ForCausalLM", V, H, L, NH, NKV, HD, I);
        if (o->moe)
            fprintf(f, ", \"num_experts\": %d, \"num_experts_per_tok\": %d, \"moe_intermediate_size\": %d,"
                       " \"norm_topk_prob\": true, \"decoder_sparse_step\": 1, \"mlp_only_layers\": [1]", E, K, MI);
        if (o->new_rope_style) fprintf(f, ", \"rope_parameters\": {\"rope_type\": \"default\", \"rope_theta\": 10000.0}}");
        else fprintf(f, ", \"rope_theta\": 10000.0, \"rope_scaling\": null}");
    }
    fclose(f);
    st_writer *w = st_writer_new();
    char n[128];
    uint64_t seed = 1;
    add_rand(w, "model.embed_tokens.weight", V, H, seed++, 1.0f, 0);
    add_rand(w, "lm_head.weight", V, H, seed++, 0.5f, 0);
    add_rand(w, "model.norm.weight", H, 0, seed++, 0.1f, 1.0f);
    for (int l = 0; l < L; l++) {
#define T(suffix, r, c, sc, b)                                                                                        \
    do {                                                                                                              \
        snprintf(n, sizeof n, "model.layers.%d.%s", l, suffix);                                                       \
        add_rand(w, n, r, c, seed++, sc, b);                                                                          \
    } while (0)
        T("input_layernorm.weight", H, 0, 0.1f, 1.0f);
        T("post_attention_layernorm.weight", H, 0, 0.1f, 1.0f);
        T("self_attn.q_proj.weight", NH * HD + (o->bad_shape && l == 1), H, 0.3f, 0);
        T("self_attn.k_proj.weight", NKV * HD, H, 0.3f, 0);
        T("self_attn.v_proj.weight", NKV * HD, H, 0.3f, 0);
        T("self_attn.o_proj.weight", H, NH * HD, 0.3f, 0);
        T("self_attn.q_norm.weight", HD, 0, 0.1f, 1.0f);
        if (!(o->skip_tensor && l == 1)) T("self_attn.k_norm.weight", HD, 0, 0.1f, 1.0f);
        if (o->moe && l == 0) {
            T("mlp.gate.weight", E, H, 0.5f, 0);
            for (int e = 0; e < E; e++) {
                char s[96];
                snprintf(s, sizeof s, "mlp.experts.%d.gate_proj.weight", e);
                T(s, MI, H, 0.3f, 0);
                snprintf(s, sizeof s, "mlp.experts.%d.up_proj.weight", e);
                T(s, MI, H, 0.3f, 0);
                snprintf(s, sizeof s, "mlp.experts.%d.down_proj.weight", e);
                T(s, H, MI, 0.3f, 0);
            }
        } else {
            T("mlp.gate_proj.weight", I, H, 0.3f, 0);
            T("mlp.up_proj.weight", I, H, 0.3f, 0);
            T("mlp.down_proj.weight", H, I, 0.3f, 0);
        }
#undef T
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    omni_err e;
    st_writer_save(w, path, &e);
    st_writer_free(w);
    return dir;
}

static void rm_dir(char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd)) {
    }
    free(dir);
}

static omni_model *load(const char *dir, int q8, int *rc, char *err) {
    omni_model_params p = omni_model_default_params();
    p.backend = OMNI_BACKEND_CPU;
    p.n_threads = 2;
    p.weights = q8 ? OMNI_WEIGHTS_Q8_0 : OMNI_WEIGHTS_AS_STORED;
    omni_model *m = NULL;
    char buf[600];
    *rc = omni_model_load(dir, &p, &m, err ? err : buf, 600);
    return m;
}

static float *run_logits(omni_model *m, const int32_t *ids, int n) {
    omni_session *s;
    if (omni_session_new(m, NULL, &s)) return NULL;
    float *lg = malloc(sizeof(float) * V * n);
    if (omni_session_append(s, ids, n, lg, 1)) {
        free(lg);
        lg = NULL;
    }
    omni_session_free(s);
    return lg;
}

static const int32_t prompt[10] = { 5, 17, 3, 60, 22, 9, 1, 0, 41, 33 };

TEST(model_both_rope_styles_load_and_agree) {
    tiny_opts a = { 0 }, b = { .new_rope_style = 1 };
    char *da = make_tiny(&a), *db = make_tiny(&b);
    int rc;
    omni_model *ma = load(da, 0, &rc, NULL), *mb = load(db, 0, &rc, NULL);
    REQUIRE(ma && mb);
    float *la = run_logits(ma, prompt, 10), *lb = run_logits(mb, prompt, 10);
    REQUIRE(la && lb);
    CHECK(memcmp(la, lb, sizeof(float) * V * 10) == 0);
    omni_model_info in;
    omni_model_get_info(ma, &in);
    CHECK_EQ_INT(in.n_layers, L);
    CHECK_EQ_INT(in.head_dim, HD);
    CHECK_EQ_INT(in.n_eos, 1);
    CHECK_EQ_INT(in.eos_ids[0], 3);
    free(la), free(lb);
    omni_model_free(ma), omni_model_free(mb);
    rm_dir(da), rm_dir(db);
}

TEST(model_missing_tensor_and_wrong_shape) {
    tiny_opts a = { .skip_tensor = 1 }, b = { .bad_shape = 1 };
    char *da = make_tiny(&a), *db = make_tiny(&b);
    int rc;
    char err[600];
    omni_model *m = load(da, 0, &rc, err);
    CHECK(!m);
    CHECK_EQ_INT(rc, OMNI_E_TENSOR);
    CHECK(strstr(err, "model.layers.1.self_attn.k_norm.weight") && strstr(err, "missing"));
    m = load(db, 0, &rc, err);
    CHECK(!m);
    CHECK_EQ_INT(rc, OMNI_E_TENSOR);
    CHECK(strstr(err, "model.layers.1.self_attn.q_proj.weight") && strstr(err, "[17,32]") && strstr(err, "[16,32]"));
    CHECK(strstr(err, "model.safetensors") != NULL);
    rm_dir(da), rm_dir(db);
}

TEST(model_config_errors) {
    struct {
        const char *cfg, *expect;
        int code;
    } cases[] = {
        { "{not json", "not a valid JSON", OMNI_E_FORMAT },
        { "{\"architectures\": [\"LlamaForCausalLM\"]}", "LlamaForCausalLM", OMNI_E_UNSUPPORTED },
        { "{\"architectures\": [\"Qwen3ForCausalLM\"], \"vocab_size\": 64}", "hidden_size", OMNI_E_CONFIG },
        { "{\"architectures\": [\"Qwen3ForCausalLM\"], \"vocab_size\": 64, \"hidden_size\": \"big\"}", "hidden_size", OMNI_E_CONFIG },
        { "{\"architectures\": [\"Qwen3ForCausalLM\"], \"vocab_size\": 64, \"hidden_size\": 16, \"num_hidden_layers\": 2,"
          "\"num_attention_heads\": 3, \"num_key_value_heads\": 2, \"intermediate_size\": 8}", "num_key_value_heads", OMNI_E_CONFIG },
        { "{\"architectures\": [\"Qwen3ForCausalLM\"], \"vocab_size\": 64, \"hidden_size\": 16, \"num_hidden_layers\": 2,"
          "\"num_attention_heads\": 2, \"intermediate_size\": 8, \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 4}}",
          "yarn", OMNI_E_UNSUPPORTED },
        { "{\"architectures\": [\"Qwen3MoeForCausalLM\"], \"vocab_size\": 64, \"hidden_size\": 16, \"num_hidden_layers\": 2,"
          "\"num_attention_heads\": 2, \"num_experts\": 4, \"moe_intermediate_size\": 8}", "num_experts_per_tok", OMNI_E_CONFIG },
        { "{\"architectures\": [\"Qwen3OmniMoeForConditionalGeneration\"], \"thinker_config\": {}}", "text_config", OMNI_E_CONFIG },
        { "{\"architectures\": [\"Qwen3OmniMoeForConditionalGeneration\"], \"thinker_config\": {\"text_config\": {"
          "\"vocab_size\": 64, \"hidden_size\": 16, \"num_hidden_layers\": 1, \"num_attention_heads\": 2, \"head_dim\": 8,"
          "\"num_experts\": 2, \"num_experts_per_tok\": 1, \"moe_intermediate_size\": 8,"
          "\"rope_scaling\": {\"mrope_section\": [2, 1, 2], \"interleaved\": true}}}}", "mrope_section", OMNI_E_CONFIG },
    };
    for (unsigned i = 0; i < sizeof cases / sizeof *cases; i++) {
        tiny_opts o = { .config_override = cases[i].cfg };
        char *d = make_tiny(&o);
        int rc;
        char err[600];
        omni_model *m = load(d, 0, &rc, err);
        if (m || rc != cases[i].code || !strstr(err, cases[i].expect) || !strstr(err, "config.json"))
            th_fail(__FILE__, __LINE__, "case %u: rc %d, message '%s'", i, rc, err);
        omni_model_free(m);
        rm_dir(d);
    }
}

TEST(model_incremental_prefill_and_truncate) {
    for (int moe = 0; moe <= 1; moe++) {
        tiny_opts o = { .moe = moe };
        char *d = make_tiny(&o);
        int rc;
        omni_model *m = load(d, 0, &rc, NULL);
        REQUIRE(m);
        float *full = run_logits(m, prompt, 10);
        REQUIRE(full);
        omni_session *s;
        REQUIRE(omni_session_new(m, NULL, &s) == 0);
        float part[10 * V];
        CHECK(omni_session_append(s, prompt, 4, part, 1) == 0);
        CHECK(omni_session_append(s, prompt + 4, 1, part + 4 * V, 0) == 0);
        CHECK(omni_session_append(s, prompt + 5, 5, part + 5 * V, 1) == 0);
        double md = 0;
        for (int i = 0; i < 10 * V; i++) md = fmax(md, fabs(part[i] - full[i]));
        CHECK(md < 1e-5);
        /* truncate to 6 and re-append a different tail, then the original tail: same logits as the full run */
        CHECK(omni_session_truncate(s, 6) == 0);
        CHECK_EQ_INT(omni_session_pos(s), 6);
        int32_t other[2] = { 7, 8 };
        CHECK(omni_session_append(s, other, 2, NULL, 0) == 0);
        CHECK(omni_session_truncate(s, 6) == 0);
        float tail[4 * V];
        CHECK(omni_session_append(s, prompt + 6, 4, tail, 1) == 0);
        md = 0;
        for (int i = 0; i < 4 * V; i++) md = fmax(md, fabs(tail[i] - full[6 * V + i]));
        CHECK(md < 1e-5);
        CHECK(omni_session_truncate(s, 11) == OMNI_E_ARG);
        omni_session_free(s);
        free(full);
        omni_model_free(m);
        rm_dir(d);
    }
}

static int count_tokens(int32_t id, const char *piece, void *ud) {
    (void)id, (void)piece;
    ++*(int *)ud;
    return 0;
}

TEST(model_context_limit) {
    tiny_opts o = { 0 };
    char *d = make_tiny(&o);
    int rc;
    omni_model *m = load(d, 0, &rc, NULL);
    REQUIRE(m);
    omni_session_params sp = omni_session_default_params();
    sp.n_ctx = 12;
    omni_session *s;
    REQUIRE(omni_session_new(m, &sp, &s) == 0);
    CHECK_EQ_INT(omni_session_n_ctx(s), 12);
    CHECK_EQ_INT(omni_session_append(s, prompt, 10, NULL, 0), 0);
    /* a prompt that does not fit is refused whole, the session is unchanged */
    CHECK_EQ_INT(omni_session_append(s, prompt, 3, NULL, 0), OMNI_E_CONTEXT);
    CHECK(strstr(omni_session_error(s), "context") != NULL);
    CHECK_EQ_INT(omni_session_pos(s), 10);
    /* generation stops with OMNI_E_CONTEXT when the cache is full, after emitting what fit; no EOS in this model's
     * greedy path is assumed, so accept either a natural stop or the context error */
    int calls = 0, n = 0;
    int32_t out[64];
    omni_sampling_params g = omni_sampling_default_params();
    rc = omni_generate(s, &g, 50, count_tokens, &calls, out, &n);
    if (rc == OMNI_E_CONTEXT) CHECK_EQ_INT(omni_session_pos(s), 12);
    else CHECK(rc == 0 && out[n - 1] == 3);
    CHECK(n >= 1 && n <= 3);
    omni_session_free(s);
    /* a session larger than max_position_embeddings is clamped to it */
    sp.n_ctx = 100000;
    REQUIRE(omni_session_new(m, &sp, &s) == 0);
    CHECK_EQ_INT(omni_session_n_ctx(s), 128);
    int32_t *big = calloc(129, sizeof *big);
    CHECK_EQ_INT(omni_session_append(s, big, 129, NULL, 0), OMNI_E_CONTEXT);
    int32_t bad = V;
    CHECK_EQ_INT(omni_session_append(s, &bad, 1, NULL, 0), OMNI_E_ARG); /* id outside the vocabulary */
    free(big);
    omni_session_free(s);
    omni_model_free(m);
    rm_dir(d);
}

static int abort_after(void *ud) { return --*(int *)ud < 0; }

TEST(model_cancellation_between_layers) {
    tiny_opts o = { 0 };
    char *d = make_tiny(&o);
    int rc;
    omni_model *m = load(d, 0, &rc, NULL);
    REQUIRE(m);
    int budget = 1; /* allow one layer, then stop */
    omni_session_params sp = omni_session_default_params();
    sp.abort = abort_after;
    sp.abort_user_data = &budget;
    omni_session *s;
    REQUIRE(omni_session_new(m, &sp, &s) == 0);
    CHECK_EQ_INT(omni_session_append(s, prompt, 5, NULL, 0), OMNI_E_CANCELLED);
    CHECK_EQ_INT(omni_session_pos(s), 0);
    budget = 1000;
    CHECK_EQ_INT(omni_session_append(s, prompt, 5, NULL, 0), 0);
    omni_session_free(s);
    omni_model_free(m);
    rm_dir(d);
}

TEST(model_q8_0_close_to_bf16) {
    for (int moe = 0; moe <= 1; moe++) {
        tiny_opts o = { .moe = moe };
        char *d = make_tiny(&o);
        int rc;
        omni_model *a = load(d, 0, &rc, NULL), *b = load(d, 1, &rc, NULL);
        REQUIRE(a && b);
        float *la = run_logits(a, prompt, 10), *lb = run_logits(b, prompt, 10);
        REQUIRE(la && lb);
        double md = 0, mx = 0, dot = 0, na = 0, nb = 0;
        for (int i = 0; i < 10 * V; i++) {
            md = fmax(md, fabs(la[i] - lb[i])), mx = fmax(mx, fabs(la[i]));
            dot += (double)la[i] * lb[i], na += (double)la[i] * la[i], nb += (double)lb[i] * lb[i];
        }
        double cosine = dot / sqrt(na * nb);
        /* 8-bit weights: dense within a few per cent of the logit range; with MoE a perturbed hidden state can flip
         * a near-tied expert choice (random tiny router), so only require the logits to stay strongly aligned */
        if (!moe && md > 0.05 * mx) th_fail(__FILE__, __LINE__, "q8_0 max diff %g of range %g", md, mx);
        if (cosine < (moe ? 0.95 : 0.999)) th_fail(__FILE__, __LINE__, "q8_0 cosine %g (moe %d)", cosine, moe);
        CHECK(md > 0); /* it really quantized */
        omni_model_info in;
        omni_model_get_info(b, &in);
        omni_model_info ia;
        omni_model_get_info(a, &ia);
        CHECK(in.weight_bytes < ia.weight_bytes);
        free(la), free(lb);
        omni_model_free(a), omni_model_free(b);
        rm_dir(d);
    }
}

TEST(sampler_semantics) {
    float lg[6] = { 1.0f, 3.0f, -2.0f, 3.0f, 0.5f, 2.9f };
    float t[6];
    omni_sampling_params p = omni_sampling_default_params();
    omni_sampler *s = omni_sampler_new(&p, 6);
    memcpy(t, lg, sizeof t);
    CHECK_EQ_INT(omni_sampler_sample(s, t), 1); /* greedy, tie -> lower id */
    omni_sampler_free(s);
    /* repetition penalty: HF divides positive logits of seen ids (3 -> 1.5) and multiplies negative ones */
    p.repetition_penalty = 2.0f;
    s = omni_sampler_new(&p, 6);
    omni_sampler_accept(s, 1);
    omni_sampler_accept(s, 3);
    omni_sampler_accept(s, 2);
    memcpy(t, lg, sizeof t);
    CHECK_EQ_INT(omni_sampler_sample(s, t), 5);
    CHECK_NEAR(t[1], 1.5, 1e-6);
    CHECK_NEAR(t[2], -4.0, 1e-6);
    omni_sampler_free(s);
    /* top-k 1 and tiny top-p reduce to the argmax; same seed, same draws */
    p = omni_sampling_default_params();
    p.temperature = 1.0f;
    p.top_k = 1;
    s = omni_sampler_new(&p, 6);
    for (int i = 0; i < 20; i++) {
        memcpy(t, lg, sizeof t);
        CHECK_EQ_INT(omni_sampler_sample(s, t), 1);
    }
    omni_sampler_free(s);
    p.top_k = 0;
    p.top_p = 0.01f;
    s = omni_sampler_new(&p, 6);
    memcpy(t, lg, sizeof t);
    CHECK_EQ_INT(omni_sampler_sample(s, t), 1);
    omni_sampler_free(s);
    p.top_p = 1.0f;
    p.seed = 42;
    int hist[6] = { 0 }, a[50], b[50];
    for (int rep = 0; rep < 2; rep++) {
        s = omni_sampler_new(&p, 6);
        for (int i = 0; i < 50; i++) {
            memcpy(t, lg, sizeof t);
            int id = omni_sampler_sample(s, t);
            (rep ? b : a)[i] = id;
            if (!rep) hist[id]++;
        }
        omni_sampler_free(s);
    }
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(hist[1] + hist[3] + hist[5] > hist[0] + hist[2] + hist[4]); /* follows the distribution */
    CHECK(hist[2] < 5);
    /* min-p 0.5 keeps only ids within half of the top probability: 1, 3, 5 */
    p.min_p = 0.5f;
    s = omni_sampler_new(&p, 6);
    for (int i = 0; i < 50; i++) {
        memcpy(t, lg, sizeof t);
        int id = omni_sampler_sample(s, t);
        CHECK(id == 1 || id == 3 || id == 5);
    }
    omni_sampler_free(s);
}

/* Device back-ends bind q|k|v and gate|up row-concatenated and decode single tokens through the fused matrix:
 * forcing that layout on the CPU back-end must give the same logits token by token (bf16 and q8_0). */
TEST(model_fused_projections_decode) {
    for (int q8 = 0; q8 <= 1; q8++)
        for (int moe = 0; moe <= 1; moe++) {
            tiny_opts o = { .moe = moe };
            char *d = make_tiny(&o);
            int rc;
            omni_model *a = load(d, q8, &rc, NULL);
            setenv("OMNI_FUSE", "1", 1);
            omni_model *b = load(d, q8, &rc, NULL);
            unsetenv("OMNI_FUSE");
            REQUIRE(a && b);
            omni_session *sa, *sb;
            REQUIRE(omni_session_new(a, NULL, &sa) == 0 && omni_session_new(b, NULL, &sb) == 0);
            float la[V], lb[V];
            double md = 0;
            for (int i = 0; i < 10; i++) { /* one token at a time: the fused path */
                CHECK(omni_session_append(sa, &prompt[i], 1, la, 0) == 0);
                CHECK(omni_session_append(sb, &prompt[i], 1, lb, 0) == 0);
                for (int v = 0; v < V; v++) md = fmax(md, fabs(la[v] - lb[v]));
            }
            if (md > 1e-5) th_fail(__FILE__, __LINE__, "fused decode differs by %g (q8 %d moe %d)", md, q8, moe);
            /* prefill (>= 6 tokens: the CPU GEMM path) reads q, k, v and gate, up as row views of the fused matrices */
            float *fa = run_logits(a, prompt, 10), *fb = run_logits(b, prompt, 10);
            REQUIRE(fa && fb);
            md = 0;
            for (int i = 0; i < 10 * V; i++) md = fmax(md, fabs(fa[i] - fb[i]));
            if (md > 1e-5) th_fail(__FILE__, __LINE__, "fused-view prefill differs by %g (q8 %d moe %d)", md, q8, moe);
            free(fa), free(fb);
            omni_session_free(sa), omni_session_free(sb);
            omni_model_free(a), omni_model_free(b);
            rm_dir(d);
        }
}
