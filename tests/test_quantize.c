/* test_quantize.c — `omni quantize` writes a Q8_0 checkpoint (int8 NAME + fp16 NAME_scale, valid safetensors) that
 * loads to exactly the numbers of quantizing at load time (--quant q8_0): same quantizer, same tensors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "omni.h"
#include "safetensors.h"

static float *logits_of(const char *dir, int q8, const int32_t *ids, int n, int *V) {
    omni_model_params p = omni_model_default_params();
    p.backend = OMNI_BACKEND_CPU;
    p.weights = q8 ? OMNI_WEIGHTS_Q8_0 : OMNI_WEIGHTS_AS_STORED;
    omni_model *m = NULL;
    char err[600];
    if (omni_model_load(dir, &p, &m, err, sizeof err)) {
        th_fail(__FILE__, __LINE__, "%s", err);
        return NULL;
    }
    omni_model_info in;
    omni_model_get_info(m, &in);
    *V = in.vocab_size;
    omni_session *s;
    float *lg = malloc(sizeof(float) * (size_t)n * in.vocab_size);
    if (omni_session_new(m, NULL, &s) || omni_session_append(s, ids, n, lg, 1)) {
        th_fail(__FILE__, __LINE__, "run failed");
        free(lg);
        lg = NULL;
    }
    omni_session_free(s);
    omni_model_free(m);
    return lg;
}

TEST(quantize_checkpoint_matches_load_time_q8) {
    const char *bin = getenv("OMNI_BIN");
    if (!bin) SKIP("OMNI_BIN not set (make test sets it)");
    const char *fx[] = { "qwen3-moe", "qwen3-dense" };
    for (int f = 0; f < 2; f++) {
        char tmpl[] = "/tmp/omni-q8-XXXXXX";
        char *out = mkdtemp(tmpl);
        REQUIRE(out);
        char cmd[1200], src[600];
        snprintf(src, sizeof src, "%s/%s", FIXTURES, fx[f]);
        snprintf(cmd, sizeof cmd, "%s quantize -m %s -o %s/q 2>/dev/null", bin, src, out);
        REQUIRE(system(cmd) == 0);
        char qdir[600], qfile[700];
        snprintf(qdir, sizeof qdir, "%s/q", out);
        snprintf(qfile, sizeof qfile, "%s/model.safetensors", qdir);
        st_set *st = NULL;
        omni_err e;
        REQUIRE(st_open_file(qfile, &st, &e) == 0);
        const st_tensor *w = st_find(st, "model.layers.0.self_attn.q_proj.weight"),
                        *sc = st_find(st, "model.layers.0.self_attn.q_proj.weight_scale"),
                        *nrm = st_find(st, "model.norm.weight");
        CHECK(w && w->dtype == ST_I8 && sc && sc->dtype == ST_F16 && sc->shape[1] * 32 == w->shape[1]);
        CHECK(nrm && nrm->dtype == ST_BF16);
        if (!strcmp(fx[f], "qwen3-moe")) {
            const st_tensor *router = st_find(st, "model.layers.0.mlp.gate.weight");
            CHECK(router && router->dtype == ST_BF16); /* routers stay as stored */
        }
        st_close(st);
        int32_t ids[6] = { 1, 200, 3000, 45, 7, 4095 };
        int V1, V2;
        float *a = logits_of(src, 1, ids, 6, &V1), *b = logits_of(qdir, 0, ids, 6, &V2);
        REQUIRE(a && b && V1 == V2);
        CHECK(memcmp(a, b, sizeof(float) * 6 * (size_t)V1) == 0);
        free(a), free(b);
        /* a second run refuses to overwrite */
        snprintf(cmd, sizeof cmd, "%s quantize -m %s -o %s/q 2>/dev/null", bin, src, out);
        CHECK(WEXITSTATUS(system(cmd)) == 1);
        snprintf(cmd, sizeof cmd, "rm -rf %s", out);
        CHECK(system(cmd) == 0);
    }
}

/* The whole Qwen3-Omni fixture (thinker, audio and vision towers; talker and code2wav copied along): the Q8_0
 * checkpoint loads and its towers give exactly what load-time quantization gives (Q8_0 blocks lie within rows, so
 * quantizing q|k|v as one matrix or in parts is the same). */
TEST(quantize_omni_checkpoint_towers) {
    const char *bin = getenv("OMNI_BIN");
    if (!bin) SKIP("OMNI_BIN not set (make test sets it)");
    char tmpl[] = "/tmp/omni-q8o-XXXXXX";
    char *out = mkdtemp(tmpl);
    REQUIRE(out);
    char cmd[2400], src[600], qdir[700];
    snprintf(src, sizeof src, "%s/qwen3-omni", FIXTURES);
    snprintf(qdir, sizeof qdir, "%s/q", out);
    snprintf(cmd, sizeof cmd, "%s quantize -m %s -o %s 2>/dev/null", bin, src, qdir);
    REQUIRE(system(cmd) == 0);
    omni_model *m[2] = { NULL, NULL };
    for (int k = 0; k < 2; k++) {
        omni_model_params p = omni_model_default_params();
        p.backend = OMNI_BACKEND_CPU;
        p.weights = k ? OMNI_WEIGHTS_AS_STORED : OMNI_WEIGHTS_Q8_0;
        char err[600];
        if (omni_model_load(k ? qdir : src, &p, &m[k], err, sizeof err)) th_fail(__FILE__, __LINE__, "%s", err);
    }
    REQUIRE(m[0] && m[1]);
    /* image: a random 4x6 patch grid */
    float *px = malloc(sizeof(float) * 24 * 1536);
    for (int i = 0; i < 24 * 1536; i++) px[i] = (float)((i * 7919) % 1000) / 500.0f - 1.0f;
    omni_grid g = { 1, 4, 6 };
    float *e[2], *d[2];
    int32_t nt[2], nl[2];
    for (int k = 0; k < 2; k++) REQUIRE(omni_encode_image(m[k], px, g, &e[k], &d[k], &nt[k], &nl[k]) == 0);
    CHECK(nt[0] == nt[1] && nl[0] == nl[1]);
    CHECK(memcmp(e[0], e[1], sizeof(float) * (size_t)nt[0] * 32) == 0);
    CHECK(memcmp(d[0], d[1], sizeof(float) * (size_t)nl[0] * nt[0] * 32) == 0);
    /* audio: 120 frames */
    float *mel = malloc(sizeof(float) * 128 * 120);
    for (int i = 0; i < 128 * 120; i++) mel[i] = (float)((i * 104729) % 1000) / 1000.0f - 0.5f;
    const float *fp[1] = { mel };
    int32_t fr = 120, at[2];
    float *ae[2];
    for (int k = 0; k < 2; k++) REQUIRE(omni_encode_audio(m[k], fp, &fr, 1, &ae[k], &at[k]) == 0);
    CHECK(at[0] == at[1] && memcmp(ae[0], ae[1], sizeof(float) * (size_t)at[0] * 32) == 0);
    for (int k = 0; k < 2; k++) free(e[k]), free(d[k]), free(ae[k]), omni_model_free(m[k]);
    free(px);
    free(mel);
    snprintf(cmd, sizeof cmd, "rm -rf %s", out);
    CHECK(system(cmd) == 0);
}
