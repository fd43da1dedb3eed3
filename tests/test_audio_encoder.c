/* test_audio_encoder.c — the AuT audio encoder (engine/audio_encoder.c) on the tiny Qwen3-Omni fixture against
 * transformers 5.17 (tests/fixtures/README.md: input_features_70/_200/_560 → audio_embeds_70/_200/_560, fp32 math
 * on the bf16 weights, eager attention).
 *
 * Tolerance: max |ours − ref| ≤ 1e-4 × max |ref| per audio (fp32 against fp32; the rest is summation order), the
 * same bound as the golden logits tests. Token counts must equal _get_feat_extract_output_lengths exactly.
 * Consistency checks (same engine, different call shapes) allow 1e-5 × max |x|. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "audio_encoder.h"
#include "harness.h"
#include "omni.h"
#include "safetensors.h"
#include "util.h"

#define AENC_REL_TOL 1e-4
#define AENC_SELF_TOL 1e-5

static st_set *g_in, *g_ref;
static omni_model *g_m;

static omni_model *load(const char *dir, char *err, size_t cap) {
    omni_model_params mp = omni_model_default_params();
    mp.backend = OMNI_BACKEND_CPU;
    omni_model *m = NULL;
    if (omni_model_load(dir, &mp, &m, err, cap)) return NULL;
    return m;
}

static int setup(void) {
    if (g_m) return 1;
    char p[600], err[600];
    omni_err e;
    snprintf(p, sizeof p, "%s/qwen3-omni/inputs.safetensors", FIXTURES);
    if (st_open_file(p, &g_in, &e)) return th_fail(__FILE__, __LINE__, "%s", e.msg), 0;
    snprintf(p, sizeof p, "%s/qwen3-omni/reference.safetensors", FIXTURES);
    if (st_open_file(p, &g_ref, &e)) return th_fail(__FILE__, __LINE__, "%s", e.msg), 0;
    snprintf(p, sizeof p, "%s/qwen3-omni", FIXTURES);
    if (!(g_m = load(p, err, sizeof err))) return th_fail(__FILE__, __LINE__, "%s", err), 0;
    return 1;
}

/* A float tensor copied out of the mapping (its alignment is the file's). */
static float *tensor_f32(st_set *s, const char *name, int64_t *n_elems, int64_t *rows) {
    const st_tensor *t = st_find(s, name);
    if (!t || t->dtype != ST_F32) {
        th_fail(__FILE__, __LINE__, "fixture lacks F32 tensor %s", name);
        return NULL;
    }
    float *d = malloc(t->nbytes);
    memcpy(d, t->data, t->nbytes);
    if (n_elems) *n_elems = (int64_t)(t->nbytes / 4);
    if (rows) *rows = t->shape[0];
    return d;
}

/* input_features_<F> is [1, 128, F]: exactly the [n_mels][frames] layout omni_encode_audio takes */
static float *features(int frames) {
    char name[64];
    snprintf(name, sizeof name, "input_features_%d", frames);
    int64_t n;
    float *f = tensor_f32(g_in, name, &n, NULL);
    if (f && n != 128LL * frames) {
        th_fail(__FILE__, __LINE__, "%s has %lld elements", name, (long long)n);
        free(f);
        return NULL;
    }
    return f;
}

static float *reference(int frames, int64_t *rows) {
    char name[64];
    snprintf(name, sizeof name, "audio_embeds_%d", frames);
    return tensor_f32(g_ref, name, NULL, rows);
}

TEST(audio_encoder_token_counts) {
    /* _get_feat_extract_output_lengths (Python floor division) evaluated in Python for these inputs */
    const int in[] = { 0, 1, 2, 3, 5, 9, 70, 99, 100, 101, 200, 250, 560, 800, 1000, 3000, 60000 };
    const int want[] = { 0, 1, 1, 1, 1, 2, 9, 13, 13, 14, 26, 33, 73, 104, 130, 390, 7800 };
    for (size_t i = 0; i < sizeof in / sizeof in[0]; i++) CHECK_EQ_INT(omni_audio_n_tokens(in[i]), want[i]);
    CHECK_EQ_INT(omni_audio_n_tokens(-1), OMNI_E_ARG);
}

/* Each fixture audio alone in a call, as the reference ran it. */
TEST(audio_encoder_matches_reference) {
    REQUIRE(setup());
    const int sizes[] = { 70, 200, 560 };
    for (int i = 0; i < 3; i++) {
        int64_t rows;
        float *f = features(sizes[i]), *ref = reference(sizes[i], &rows), *out = NULL;
        REQUIRE(f && ref);
        const float *fp[1] = { f };
        int32_t fr[1] = { sizes[i] }, nt[1] = { -1 };
        int rc = omni_encode_audio(g_m, fp, fr, 1, &out, nt);
        CHECK_EQ_INT(rc, 0);
        if (rc) fprintf(stderr, "  %s\n", omni_model_error(g_m));
        CHECK_EQ_INT(nt[0], rows);
        CHECK_EQ_INT(nt[0], omni_audio_n_tokens(sizes[i]));
        if (!rc && nt[0] == rows) {
            double r = th_rel_err(out, ref, (size_t)rows * 32);
            printf("  audio %d frames: %d tokens, max|diff|/max|ref| = %.3g (tol %g)\n", sizes[i], nt[0], r,
                   AENC_REL_TOL);
            CHECK(r <= AENC_REL_TOL);
        }
        free(out);
        free(f);
        free(ref);
    }
}

/* The three audios in one call: tail chunks are padded to the longest chunk of the call (100 frames), so the 200 and
 * 560 outputs (full chunks only) are unchanged, while the 70-frame audio now sees 30 frames of zero padding — as the
 * reference does — so its tokens differ from its solo run but are the same in any call whose longest chunk is 100. */
TEST(audio_encoder_batch_of_three) {
    REQUIRE(setup());
    const int sizes[] = { 70, 200, 560 };
    float *f[3], *ref[3];
    int64_t rows[3];
    for (int i = 0; i < 3; i++) {
        f[i] = features(sizes[i]);
        ref[i] = reference(sizes[i], &rows[i]);
        REQUIRE(f[i] && ref[i]);
    }
    const float *fp[3] = { f[0], f[1], f[2] };
    int32_t fr[3] = { 70, 200, 560 }, nt[3] = { 0, 0, 0 };
    float *out = NULL;
    int rc = omni_encode_audio(g_m, fp, fr, 3, &out, nt);
    REQUIRE(rc == 0);
    for (int i = 0; i < 3; i++) CHECK_EQ_INT(nt[i], rows[i]);
    double r200 = th_rel_err(out + 9 * 32, ref[1], 26 * 32), r560 = th_rel_err(out + 35 * 32, ref[2], 73 * 32);
    printf("  batch: 200 -> %.3g, 560 -> %.3g of max|ref|; 70 vs solo reference %.3g (padding changes it)\n", r200,
           r560, th_rel_err(out, ref[0], 9 * 32));
    CHECK(r200 <= AENC_REL_TOL);
    CHECK(r560 <= AENC_REL_TOL);
    CHECK(th_rel_err(out, ref[0], 9 * 32) > 1e-3); /* padding reached the 70-frame audio */
    /* [70, 200] pads to 100 as well: the 70-frame audio's tokens must equal those of the three-audio call */
    float *out2 = NULL;
    int32_t nt2[2];
    REQUIRE(omni_encode_audio(g_m, fp, fr, 2, &out2, nt2) == 0);
    CHECK_EQ_INT(nt2[0], 9);
    CHECK_EQ_INT(nt2[1], 26);
    CHECK(th_rel_err(out2, out, 9 * 32) <= AENC_SELF_TOL);
    free(out2);
    free(out);
    for (int i = 0; i < 3; i++) free(f[i]), free(ref[i]);
}

/* A long audio spans many attention windows (26 tokens = 200 frames in the fixture) and more than one pass through
 * the layers (AENC_SEG_ROWS tokens): window w of it must equal frames [200w, 200w + 200) encoded alone. */
TEST(audio_encoder_long_audio_is_windowed) {
    REQUIRE(setup());
    const int F = 7030; /* 71 chunks, tail of 30 frames: 35 windows, the last one short */
    float *x = malloc(sizeof(float) * 128 * F);
    omni_rng rg = { 99 };
    for (int i = 0; i < 128 * F; i++) x[i] = (float)(omni_rng_uniform(&rg) - 0.5);
    const float *fp[1] = { x };
    int32_t fr[1] = { F }, nt[1];
    float *out = NULL;
    REQUIRE(omni_encode_audio(g_m, fp, fr, 1, &out, nt) == 0);
    CHECK_EQ_INT(nt[0], omni_audio_n_tokens(F));
    const int wins[] = { 0, 1, 19, 20, 33 };
    float *slice = malloc(sizeof(float) * 128 * 200);
    for (size_t k = 0; k < sizeof wins / sizeof wins[0]; k++) {
        int w = wins[k];
        for (int m = 0; m < 128; m++) memcpy(slice + m * 200, x + (size_t)m * F + 200 * w, 200 * sizeof(float));
        const float *sp[1] = { slice };
        int32_t sf[1] = { 200 }, sn[1];
        float *so = NULL;
        REQUIRE(omni_encode_audio(g_m, sp, sf, 1, &so, sn) == 0);
        CHECK_EQ_INT(sn[0], 26);
        double r = th_rel_err(out + (size_t)w * 26 * 32, so, 26 * 32);
        if (r > AENC_SELF_TOL) printf("  window %d differs: %.3g\n", w, r);
        CHECK(r <= AENC_SELF_TOL);
        free(so);
    }
    /* the last window: frames 6800..7029 = one full chunk and the 30-frame tail (padded to 100 in both calls) */
    int tail = F - 6800;
    float *t2 = malloc(sizeof(float) * 128 * tail);
    for (int m = 0; m < 128; m++) memcpy(t2 + m * tail, x + (size_t)m * F + 6800, (size_t)tail * sizeof(float));
    const float *tp[1] = { t2 };
    int32_t tf[1] = { tail }, tn[1];
    float *to = NULL;
    REQUIRE(omni_encode_audio(g_m, tp, tf, 1, &to, tn) == 0);
    CHECK_EQ_INT(tn[0], nt[0] - 34 * 26);
    CHECK(th_rel_err(out + (size_t)34 * 26 * 32, to, (size_t)tn[0] * 32) <= AENC_SELF_TOL);
    free(to);
    free(t2);
    free(slice);
    free(out);
    free(x);
}

TEST(audio_encoder_bad_arguments) {
    REQUIRE(setup());
    float dummy[128] = { 0 };
    const float *fp[2] = { dummy, dummy };
    int32_t nt[2];
    float *out = (float *)1;
    int32_t zero[1] = { 0 }, neg[2] = { 1, -5 };
    CHECK_EQ_INT(omni_encode_audio(g_m, fp, zero, 1, &out, nt), OMNI_E_ARG);
    CHECK(out == NULL);
    CHECK(strstr(omni_model_error(g_m), "frames") != NULL);
    CHECK_EQ_INT(omni_encode_audio(g_m, fp, neg, 2, &out, nt), OMNI_E_ARG);
    CHECK(strstr(omni_model_error(g_m), "audio 1") != NULL);
    CHECK_EQ_INT(omni_encode_audio(g_m, fp, neg, 0, &out, nt), OMNI_E_ARG);
    CHECK_EQ_INT(omni_encode_audio(g_m, NULL, neg, 1, &out, nt), OMNI_E_ARG);
    const float *nullf[1] = { NULL };
    CHECK_EQ_INT(omni_encode_audio(g_m, nullf, neg, 1, &out, nt), OMNI_E_ARG);
    CHECK_EQ_INT(omni_encode_audio(NULL, fp, neg, 1, &out, nt), OMNI_E_ARG);
    /* one frame is a valid (tiny) audio */
    int32_t one[1] = { 1 };
    CHECK_EQ_INT(omni_encode_audio(g_m, fp, one, 1, &out, nt), 0);
    CHECK_EQ_INT(nt[0], 1);
    free(out);
}

TEST(audio_encoder_unsupported_without_tower) {
    char p[600], err[600];
    snprintf(p, sizeof p, "%s/qwen3-dense", FIXTURES);
    omni_model *m = load(p, err, sizeof err);
    REQUIRE(m);
    float dummy[128 * 10] = { 0 };
    const float *fp[1] = { dummy };
    int32_t fr[1] = { 10 }, nt[1];
    float *out = (float *)1;
    CHECK_EQ_INT(omni_encode_audio(m, fp, fr, 1, &out, nt), OMNI_E_UNSUPPORTED);
    CHECK(out == NULL);
    CHECK(strstr(omni_model_error(m), "audio") != NULL);
    omni_model_free(m);
}

/* A copy of the fixture folder (weights linked, not copied) whose config.json has audio_config[key] = value. */
static int fixture_with_audio_cfg(char *dir, size_t cap, const char *key, cJSON *value) {
    snprintf(dir, cap, "/tmp/omni-aenc-XXXXXX");
    if (!mkdtemp(dir)) return 0;
    char src[600], dst[700];
    const char *files[] = { "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json" };
    for (int i = 0; i < 4; i++) {
        snprintf(src, sizeof src, "%s/qwen3-omni/%s", FIXTURES, files[i]);
        if (access(src, F_OK)) continue;
        char *abs = realpath(src, NULL);
        snprintf(dst, sizeof dst, "%s/%s", dir, files[i]);
        int ok = abs && symlink(abs, dst) == 0;
        free(abs);
        if (!ok) return 0;
    }
    snprintf(src, sizeof src, "%s/qwen3-omni/config.json", FIXTURES);
    FILE *f = fopen(src, "rb");
    if (!f) return 0;
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = 0;
    cJSON *root = cJSON_Parse(text);
    cJSON *ac = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "thinker_config"), "audio_config");
    if (!ac) return cJSON_Delete(root), 0;
    cJSON_ReplaceItemInObject(ac, key, value);
    char *out = cJSON_Print(root);
    snprintf(dst, sizeof dst, "%s/config.json", dir);
    f = fopen(dst, "wb");
    int ok = f && fputs(out, f) >= 0;
    if (f) fclose(f);
    free(out);
    cJSON_Delete(root);
    return ok;
}

static void remove_dir(const char *dir) {
    char p[700];
    const char *files[] = { "model.safetensors", "tokenizer.json", "tokenizer_config.json", "generation_config.json",
                            "config.json" };
    for (int i = 0; i < 5; i++) {
        snprintf(p, sizeof p, "%s/%s", dir, files[i]);
        unlink(p);
    }
    rmdir(dir);
}

TEST(audio_encoder_config_errors) {
    struct { const char *key; cJSON *v; int code; const char *needle; } cases[] = {
        { "activation_function", cJSON_CreateString("relu"), OMNI_E_UNSUPPORTED, "activation_function" },
        { "n_window", cJSON_CreateNumber(40), OMNI_E_UNSUPPORTED, "n_window" },
        { "n_window_infer", cJSON_CreateNumber(50), OMNI_E_CONFIG, "n_window_infer" },
        { "d_model", cJSON_CreateNumber(-32), OMNI_E_CONFIG, "d_model" },
        { "encoder_attention_heads", cJSON_CreateNumber(3), OMNI_E_CONFIG, "encoder_attention_heads" },
        { "downsample_hidden_size", cJSON_CreateNumber(8), OMNI_E_TENSOR, "conv2d1.weight" },
        { "encoder_ffn_dim", cJSON_CreateNumber(65), OMNI_E_TENSOR, "fc1.weight" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char dir[64], err[600] = "";
        REQUIRE(fixture_with_audio_cfg(dir, sizeof dir, cases[i].key, cases[i].v));
        omni_model_params mp = omni_model_default_params();
        mp.backend = OMNI_BACKEND_CPU;
        omni_model *m = NULL;
        int rc = omni_model_load(dir, &mp, &m, err, sizeof err);
        CHECK_EQ_INT(rc, cases[i].code);
        CHECK(m == NULL);
        if (!strstr(err, cases[i].needle)) th_fail(__FILE__, __LINE__, "%s: error '%s'", cases[i].key, err);
        omni_model_free(m);
        remove_dir(dir);
    }
}

/* conv_chunksize 3 splits every segment's chunks into batches of three (the last one shorter): same numbers. */
TEST(audio_encoder_small_conv_batches) {
    REQUIRE(setup());
    char dir[64], err[600];
    REQUIRE(fixture_with_audio_cfg(dir, sizeof dir, "conv_chunksize", cJSON_CreateNumber(3)));
    omni_model *m = load(dir, err, sizeof err);
    if (!m) th_fail(__FILE__, __LINE__, "%s", err);
    if (m) {
        int64_t rows;
        float *f = features(560), *ref = reference(560, &rows), *out = NULL;
        const float *fp[1] = { f };
        int32_t fr[1] = { 560 }, nt[1];
        CHECK_EQ_INT(omni_encode_audio(m, fp, fr, 1, &out, nt), 0);
        CHECK_EQ_INT(nt[0], rows);
        if (out) CHECK(th_rel_err(out, ref, (size_t)rows * 32) <= AENC_REL_TOL);
        free(out);
        free(f);
        free(ref);
        omni_model_free(m);
    }
    remove_dir(dir);
}

/* Scratch memory does not grow with the audio's length: segments of whole windows and batches of chunks are bounded,
 * so ten minutes and an hour need the same back-end scratch: below the conv budget (32 MiB) plus the layer rows. */
TEST(audio_encoder_scratch_is_bounded) {
    REQUIRE(setup());
    int32_t ten_min[1] = { 60000 }, hour[1] = { 360000 }, three[3] = { 70, 200, 560 };
    size_t a = aenc_scratch_bytes(g_m, ten_min, 1), b = aenc_scratch_bytes(g_m, hour, 1);
    printf("  fixture scratch: 10 min %zu bytes, 1 h %zu bytes\n", a, b);
    CHECK(a > 0);
    CHECK_EQ_INT(a, b);
    CHECK(b < (40u << 20));
    CHECK(aenc_scratch_bytes(g_m, three, 3) > 0);
    CHECK_EQ_INT(aenc_scratch_bytes(g_m, three, 0), 0);
}

/* `omni bench-audio` on the fixture's config (synthetic weights of that tiny shape): it runs and reports. */
TEST(audio_encoder_cli_bench) {
    const char *bin = getenv("OMNI_BIN");
    if (!bin || access(bin, X_OK)) SKIP("OMNI_BIN not set (run through make test)");
    char cmd[1200], out[4096] = "";
    snprintf(cmd, sizeof cmd, "%s bench-audio --config %s/qwen3-omni/config.json -s 3 -r 1 --backend cpu 2>&1", bin,
             FIXTURES);
    FILE *p = popen(cmd, "r");
    REQUIRE(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    CHECK_EQ_INT(pclose(p), 0);
    CHECK(strstr(out, "[synthetic]") != NULL);
    CHECK(strstr(out, "300 frames -> 39 tokens") != NULL);
    CHECK(strstr(out, "run 1:") != NULL);
    snprintf(cmd, sizeof cmd, "%s bench-audio -s 0 2>&1", bin);
    p = popen(cmd, "r");
    REQUIRE(p);
    n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    CHECK_EQ_INT(WEXITSTATUS(pclose(p)), 2); /* usage error */
    CHECK(strstr(out, "-s") != NULL);
}

/* The same model code on the Vulkan back-end (lavapipe here, a GPU where present). The tolerance is the golden tests'
 * Vulkan bound (2e-3 × max |ref|): device matmuls may round through 16-bit formats. */
#define AENC_VK_REL_TOL 2e-3
TEST(audio_encoder_vulkan_matches_reference) {
    REQUIRE(setup());
    char p[600], err[600] = "";
    snprintf(p, sizeof p, "%s/qwen3-omni", FIXTURES);
    omni_model_params mp = omni_model_default_params();
    mp.backend = OMNI_BACKEND_VULKAN;
    omni_model *m = NULL;
    if (omni_model_load(p, &mp, &m, err, sizeof err)) {
        if (strstr(err, "Vulkan")) SKIP("no Vulkan device or back-end");
        th_fail(__FILE__, __LINE__, "%s", err);
        return;
    }
    const int sizes[] = { 70, 560 };
    for (int i = 0; i < 2; i++) {
        int64_t rows;
        float *f = features(sizes[i]), *ref = reference(sizes[i], &rows), *out = NULL;
        const float *fp[1] = { f };
        int32_t fr[1] = { sizes[i] }, nt[1] = { 0 };
        int rc = omni_encode_audio(m, fp, fr, 1, &out, nt);
        CHECK_EQ_INT(rc, 0);
        if (rc) fprintf(stderr, "  %s\n", omni_model_error(m));
        CHECK_EQ_INT(nt[0], rows);
        if (!rc && nt[0] == rows) {
            double r = th_rel_err(out, ref, (size_t)rows * 32);
            printf("  vulkan, audio %d frames: max|diff|/max|ref| = %.3g (tol %g)\n", sizes[i], r, AENC_VK_REL_TOL);
            CHECK(r <= AENC_VK_REL_TOL);
        }
        free(out);
        free(f);
        free(ref);
    }
    omni_model_free(m);
}
