/* test_golden_mm.c — multimodal prompts on the tiny Qwen3-Omni fixture, independent of the encoders: the reference's
 * own audio/image features (audio_embeds_*, image_embeds_*, deepstack_*) are fed to omni_session_append_mm, which
 * must reproduce get_rope_index's position ids exactly and the reference logits (audio prompt, one image, two
 * images, audio + image) within 1e-4 × max |ref|. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "omni.h"
#include "safetensors.h"

static st_set *g_in, *g_ref;
static omni_model *g_m;

static omni_backend_kind g_be = OMNI_BACKEND_CPU;

static int setup(void) {
    if (g_m) return 1;
    char p[600];
    omni_err e;
    snprintf(p, sizeof p, "%s/qwen3-omni/inputs.safetensors", FIXTURES);
    if (st_open_file(p, &g_in, &e)) return th_fail(__FILE__, __LINE__, "%s", e.msg), 0;
    snprintf(p, sizeof p, "%s/qwen3-omni/reference.safetensors", FIXTURES);
    if (st_open_file(p, &g_ref, &e)) return th_fail(__FILE__, __LINE__, "%s", e.msg), 0;
    snprintf(p, sizeof p, "%s/qwen3-omni", FIXTURES);
    omni_model_params mp = omni_model_default_params();
    mp.backend = g_be;
    char err[600];
    if (omni_model_load(p, &mp, &g_m, err, sizeof err)) {
        if (g_be == OMNI_BACKEND_VULKAN && (strstr(err, "no Vulkan") || strstr(err, "without Vulkan"))) return -1;
        return th_fail(__FILE__, __LINE__, "%s", err), 0;
    }
    return 1;
}

static const float *f32(st_set *s, const char *name, int64_t *rows) {
    const st_tensor *t = st_find(s, name);
    if (!t || t->dtype != ST_F32) return NULL;
    if (rows) *rows = t->shape[0];
    return t->data;
}

static int32_t *ids_of(const char *name, int *n) {
    const st_tensor *t = st_find(g_in, name);
    if (!t) return NULL;
    *n = (int)t->shape[t->n_dims - 1];
    int32_t *ids = malloc(sizeof *ids * (size_t)*n);
    for (int i = 0; i < *n; i++) {
        int64_t v;
        memcpy(&v, (const char *)t->data + 8 * (size_t)i, 8);
        ids[i] = (int32_t)v;
    }
    return ids;
}

/* features of several sources concatenated row-wise (per level for DeepStack) */
static float *concat(const char *const *names, int k, int64_t *rows_out) {
    int64_t rows = 0, r;
    for (int i = 0; i < k; i++) {
        if (!f32(g_ref, names[i], &r)) return NULL;
        rows += r;
    }
    float *out = malloc(sizeof(float) * (size_t)rows * 32), *o = out;
    for (int i = 0; i < k; i++) {
        const float *d = f32(g_ref, names[i], &r);
        memcpy(o, d, sizeof(float) * (size_t)r * 32);
        o += r * 32;
    }
    *rows_out = rows;
    return out;
}

static void run_case(const char *ids_name, const char *logits_name, const char *pos_name, omni_mm *mm) {
    int n;
    int32_t *ids = ids_of(ids_name, &n);
    REQUIRE(ids);
    /* positions */
    float *pos = malloc(sizeof(float) * 3 * (size_t)n);
    char err[300] = "";
    int rc = omni_rope_index(g_m, ids, n, mm, 0, pos, err, sizeof err);
    if (rc) th_fail(__FILE__, __LINE__, "%s: rope index: %s", ids_name, err);
    const st_tensor *tp = st_find(g_ref, pos_name);
    REQUIRE(tp && tp->shape[0] == 3 && tp->shape[1] == n);
    for (int i = 0; i < 3 * n && !rc; i++) {
        int64_t want;
        memcpy(&want, (const char *)tp->data + 8 * (size_t)i, 8);
        if (pos[i] != (float)want) {
            th_fail(__FILE__, __LINE__, "%s: position row %d col %d = %g, reference %lld", pos_name, i / n, i % n,
                    pos[i], (long long)want);
            break;
        }
    }
    /* logits */
    omni_session *s;
    REQUIRE(omni_session_new(g_m, NULL, &s) == 0);
    float *lg = malloc(sizeof(float) * (size_t)n * 152064);
    rc = omni_session_append_mm(s, ids, n, mm, lg, 1);
    if (rc) th_fail(__FILE__, __LINE__, "%s: %s", ids_name, omni_session_error(s));
    else {
        int64_t rows;
        const float *ref = f32(g_ref, logits_name, &rows);
        REQUIRE(ref && rows == n);
        double md = 0, mx = 0;
        for (size_t i = 0; i < (size_t)n * 152064; i++) md = fmax(md, fabs(lg[i] - ref[i])), mx = fmax(mx, fabs(ref[i]));
        printf("    %s: max |diff| %.3g, max |ref| %.3g, relative %.3g\n", logits_name, md, mx, md / mx);
        double tol = g_be == OMNI_BACKEND_VULKAN ? 2e-3 : 1e-4;
        if (md > tol * mx) th_fail(__FILE__, __LINE__, "%s differ: %g (max %g)", logits_name, md, mx);
    }
    free(lg);
    omni_session_free(s);
    free(pos);
    free(ids);
}

TEST(golden_mm_audio_prompt) {
    REQUIRE(setup() == 1);
    int64_t rows;
    const float *emb = f32(g_ref, "audio_embeds_200", &rows);
    REQUIRE(emb);
    int32_t nt = (int32_t)rows;
    omni_mm mm = { .n_audios = 1, .audio_tokens = &nt, .audio_embeds = emb };
    run_case("audio_input_ids", "audio_logits", "audio_position_ids", &mm);
}

TEST(golden_mm_one_image) {
    REQUIRE(setup() == 1);
    int64_t rows, r2;
    const char *e1[] = { "image_embeds_1" }, *ds[] = { "deepstack_1_0", "deepstack_1_1", "deepstack_1_2" };
    float *emb = concat(e1, 1, &rows), *dsf = concat(ds, 3, &r2);
    REQUIRE(emb && dsf);
    omni_grid g = { 1, 4, 6 };
    omni_mm mm = { .n_images = 1, .grids = &g, .image_embeds = emb, .deepstack = dsf, .n_levels = 3 };
    run_case("image_input_ids", "image_logits", "image_position_ids", &mm);
    free(emb), free(dsf);
}

TEST(golden_mm_two_images) {
    REQUIRE(setup() == 1);
    int64_t rows, r2;
    const char *e[] = { "image_embeds_1", "image_embeds_2" };
    /* per level: image 1's rows then image 2's */
    const char *ds[] = { "deepstack_1_0", "deepstack_2_0", "deepstack_1_1", "deepstack_2_1", "deepstack_1_2", "deepstack_2_2" };
    float *emb = concat(e, 2, &rows), *dsf = concat(ds, 6, &r2);
    REQUIRE(emb && dsf);
    omni_grid g[2] = { { 1, 4, 6 }, { 1, 6, 4 } };
    omni_mm mm = { .n_images = 2, .grids = g, .image_embeds = emb, .deepstack = dsf, .n_levels = 3 };
    run_case("image2_input_ids", "image2_logits", "image2_position_ids", &mm);
    free(emb), free(dsf);
}

static void audio_and_image(void) {
    int64_t rows, r2, ra;
    const char *e1[] = { "image_embeds_1" }, *ds[] = { "deepstack_1_0", "deepstack_1_1", "deepstack_1_2" };
    float *emb = concat(e1, 1, &rows), *dsf = concat(ds, 3, &r2);
    const float *aemb = f32(g_ref, "audio_embeds_200", &ra);
    REQUIRE(emb && dsf && aemb);
    int32_t nt = (int32_t)ra;
    omni_grid g = { 1, 4, 6 };
    omni_mm mm = { .n_audios = 1, .audio_tokens = &nt, .audio_embeds = aemb, .n_images = 1, .grids = &g,
                   .image_embeds = emb, .deepstack = dsf, .n_levels = 3 };
    run_case("mixed_input_ids", "mixed_logits", "mixed_position_ids", &mm);
    free(emb), free(dsf);
}

TEST(golden_mm_audio_and_image) {
    REQUIRE(setup() == 1);
    audio_and_image();
}

/* DeepStack rows, scattered features and MRoPE positions through the Vulkan back-end (lavapipe in CI) */
TEST(golden_mm_vulkan_audio_and_image) {
    g_be = OMNI_BACKEND_VULKAN;
    int r = setup();
    if (r < 0) SKIP("no Vulkan device");
    REQUIRE(r == 1);
    audio_and_image();
}

TEST(mm_placeholder_count_errors) {
    REQUIRE(setup() == 1);
    int n;
    int32_t *ids = ids_of("image_input_ids", &n);
    REQUIRE(ids);
    float *pos = malloc(sizeof(float) * 3 * (size_t)n);
    char err[300];
    omni_grid g = { 1, 4, 4 }; /* 4 tokens, the prompt has 6 */
    omni_mm mm = { .n_images = 1, .grids = &g };
    CHECK_EQ_INT(omni_rope_index(g_m, ids, n, &mm, 0, pos, err, sizeof err), OMNI_E_ARG);
    CHECK(strstr(err, "6 placeholder") != NULL);
    CHECK_EQ_INT(omni_rope_index(g_m, ids, n, NULL, 0, pos, err, sizeof err), OMNI_E_ARG);
    omni_grid odd = { 1, 3, 6 };
    mm.grids = &odd;
    CHECK_EQ_INT(omni_rope_index(g_m, ids, n, &mm, 0, pos, err, sizeof err), OMNI_E_ARG);
    CHECK(strstr(err, "merge size") != NULL);
    free(pos);
    free(ids);
}
