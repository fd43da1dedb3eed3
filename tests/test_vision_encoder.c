/* test_vision_encoder.c — the Qwen3-Omni vision tower (engine/vision_encoder.c) on the CPU back-end.
 *
 * Golden: the tiny qwen3-omni fixture (ViT hidden 32, depth 4, 2 heads, 8×8 position table resampled to 4×6 and 6×4
 * grids, DeepStack after blocks 1, 2, 3) must reproduce transformers' fp32 merger output and the three DeepStack
 * features per image within max |ours − ref| ≤ 1e-4 × max |ref| (fp32 against fp32 on the same bf16 weights; the
 * rest is summation order), and, fed to the thinker, the reference logits of the one-image prompt within the same
 * relative bound. Properties without a reference: a 2-frame video attends within each frame only (each frame equals
 * that frame encoded alone), Q8_0 weights stay close (3e-2 relative) to the reference. Errors: bad grids, a model without a
 * vision tower, bad vision configs. OMNI_BENCH_VISION=<side> runs the informational timing of a side×side patch grid
 * at the real shape with synthetic weights. */
#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "harness.h"
#include "omni.h"
#include "safetensors.h"
#include "util.h"
#include "vision_encoder.h"

#define VIS_REL_TOL 1e-4
/* on the Vulkan back-end: the golden tests' Vulkan bound (tensor-core matmuls round operands to fp16) */
#define VIS_VK_REL_TOL 2e-3

static st_set *g_in, *g_ref;
static omni_model *g_m;

static int g_profile; /* the bench opens its model with profiling */

static omni_backend_kind g_backend = OMNI_BACKEND_CPU;

static omni_model *load(const char *path, omni_weight_mode wm, int synthetic, char *err, size_t cap, int *rc) {
    omni_model_params p = omni_model_default_params();
    p.profile = g_profile;
    p.backend = g_backend;
    p.weights = wm;
    p.synthetic = synthetic;
    omni_model *m = NULL;
    *rc = omni_model_load(path, &p, &m, err, cap);
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
    int rc;
    g_m = load(p, OMNI_WEIGHTS_AS_STORED, 0, err, sizeof err, &rc);
    if (rc) return th_fail(__FILE__, __LINE__, "%s", err), 0;
    return 1;
}

static const float *f32(st_set *s, const char *name, int64_t *rows, int64_t *cols) {
    const st_tensor *t = st_find(s, name);
    if (!t || t->dtype != ST_F32 || t->n_dims != 2) return NULL;
    if (rows) *rows = t->shape[0];
    if (cols) *cols = t->shape[1];
    return t->data;
}

/* image_grid_thw_N: [[t, h, w]] int64 */
static omni_grid grid_of(const char *name) {
    omni_grid g = { 0, 0, 0 };
    const st_tensor *t = st_find(g_in, name);
    if (!t || t->dtype != ST_I64 || t->nbytes != 24) return g;
    int64_t v[3];
    memcpy(v, t->data, 24);
    g.t = (int32_t)v[0], g.h = (int32_t)v[1], g.w = (int32_t)v[2];
    return g;
}

/* max |a − ref| and max |ref| over n floats */
static double max_diff(const float *a, const float *ref, size_t n, double *mx) {
    double md = 0;
    *mx = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        md = isnan(d) ? INFINITY : fmax(md, d); /* fmax would drop a NaN */
        *mx = fmax(*mx, fabs((double)ref[i]));
    }
    return md;
}

static void check_close(const char *label, const float *a, const float *ref, size_t n, double rel_tol) {
    double mx, md = max_diff(a, ref, n, &mx);
    printf("    %s: max |diff| %.3g, max |ref| %.3g, relative %.3g\n", label, md, mx, md / mx);
    if (!(md <= rel_tol * mx)) th_fail(__FILE__, __LINE__, "%s: max |diff| %g > %g × max |ref| %g", label, md, rel_tol, mx);
}

static void golden_image(int idx) {
    REQUIRE(setup());
    char name[64];
    int64_t rows, cols;
    snprintf(name, sizeof name, "pixel_values_%d", idx);
    const float *px = f32(g_in, name, &rows, &cols);
    snprintf(name, sizeof name, "image_grid_thw_%d", idx);
    omni_grid g = grid_of(name);
    REQUIRE(px && g.t == 1 && cols == 1536);
    float *emb = NULL, *ds = NULL;
    int32_t nt = 0, nl = 0;
    int rc = omni_encode_image_n(g_m, px, rows, g, &emb, &ds, &nt, &nl);
    if (rc) th_fail(__FILE__, __LINE__, "encode image %d: %s", idx, omni_model_error(g_m));
    REQUIRE(rc == 0);
    CHECK_EQ_INT(nt, g.h * g.w / 4);
    CHECK_EQ_INT(nl, 3);
    int64_t rr, rc2;
    snprintf(name, sizeof name, "image_embeds_%d", idx);
    const float *ref = f32(g_ref, name, &rr, &rc2);
    REQUIRE(ref && rr == nt && rc2 == 32);
    check_close(name, emb, ref, (size_t)nt * 32, g_backend == OMNI_BACKEND_VULKAN ? VIS_VK_REL_TOL : VIS_REL_TOL);
    for (int j = 0; j < 3 && nl == 3; j++) {
        snprintf(name, sizeof name, "deepstack_%d_%d", idx, j);
        ref = f32(g_ref, name, &rr, &rc2);
        REQUIRE(ref && rr == nt && rc2 == 32);
        check_close(name, ds + (size_t)j * nt * 32, ref, (size_t)nt * 32,
                    g_backend == OMNI_BACKEND_VULKAN ? VIS_VK_REL_TOL : VIS_REL_TOL);
    }
    /* the entry point without a row count gives the same numbers */
    float *emb2 = NULL;
    int32_t nt2 = 0;
    CHECK_EQ_INT(omni_encode_image(g_m, px, g, &emb2, NULL, &nt2, NULL), 0);
    CHECK(emb2 && nt2 == nt && !memcmp(emb, emb2, (size_t)nt * 32 * 4));
    free(emb2);
    free(emb);
    free(ds);
}

TEST(vision_golden_image_1) { golden_image(1); } /* grid 1×4×6 */
TEST(vision_golden_image_2) { golden_image(2); } /* grid 1×6×4 */

/* the same encoder through the Vulkan back-end (lavapipe in CI): LayerNorm, tanh-GELU, 2-D rotary, per-frame
 * attention and the mergers as device kernels */
TEST(vision_golden_vulkan) {
    g_backend = OMNI_BACKEND_VULKAN;
    char p[600], err[600];
    snprintf(p, sizeof p, "%s/qwen3-omni", FIXTURES);
    int rc;
    omni_model *m = load(p, OMNI_WEIGHTS_AS_STORED, 0, err, sizeof err, &rc);
    if (!m && (strstr(err, "no Vulkan") || strstr(err, "without Vulkan"))) SKIP("no Vulkan device");
    REQUIRE(m);
    omni_model_free(m);
    REQUIRE(setup());
    golden_image(1);
    golden_image(2);
}

/* Our features through the thinker: the one-image prompt's logits against the reference (which used the reference's
 * own features; test_golden_mm checks the thinker with those). */
TEST(vision_image_prompt_logits) {
    REQUIRE(setup());
    int64_t rows, cols;
    const float *px = f32(g_in, "pixel_values_1", &rows, &cols);
    omni_grid g = grid_of("image_grid_thw_1");
    REQUIRE(px);
    float *emb = NULL, *ds = NULL;
    int32_t nt = 0, nl = 0;
    REQUIRE(omni_encode_image_n(g_m, px, rows, g, &emb, &ds, &nt, &nl) == 0);
    const st_tensor *ti = st_find(g_in, "image_input_ids");
    REQUIRE(ti && ti->dtype == ST_I64);
    int n = (int)ti->shape[ti->n_dims - 1];
    int32_t *ids = malloc(sizeof *ids * (size_t)n);
    for (int i = 0; i < n; i++) {
        int64_t v;
        memcpy(&v, (const char *)ti->data + 8 * (size_t)i, 8);
        ids[i] = (int32_t)v;
    }
    omni_mm mm = { .n_images = 1, .grids = &g, .image_embeds = emb, .deepstack = ds, .n_levels = nl };
    omni_session *s = NULL;
    REQUIRE(omni_session_new(g_m, NULL, &s) == 0);
    const int V = 152064;
    float *lg = malloc(sizeof(float) * (size_t)n * V);
    int rc = omni_session_append_mm(s, ids, n, &mm, lg, 1);
    if (rc) th_fail(__FILE__, __LINE__, "append: %s", omni_session_error(s));
    int64_t lr;
    const float *ref = f32(g_ref, "image_logits", &lr, NULL);
    if (!rc && ref && lr == n) check_close("image_logits", lg, ref, (size_t)n * V, VIS_REL_TOL);
    else CHECK(ref && lr == n);
    free(lg);
    omni_session_free(s);
    free(ids);
    free(emb);
    free(ds);
}

/* A video of three temporal groups: every ViT block attends within its own frame (cu_seqlens per frame) and the
 * position table is the same for every frame, so each frame's tokens equal that frame encoded as an image. Frame 0 is
 * image 1, frame 1 the same pixels reversed, frame 2 image 1 at half contrast. The frames go through in one pass, in
 * passes of 2 + 1 frames and of one frame each (chunk_patches lowered): all the same within 1e-5 relative (only the
 * matmul kernel choice, which depends on the row count, may change summation order). */
TEST(vision_video_frames_attend_within_themselves) {
    REQUIRE(setup());
    int64_t rows, cols;
    const float *px = f32(g_in, "pixel_values_1", &rows, &cols);
    omni_grid g = grid_of("image_grid_thw_1");
    REQUIRE(px && g.t == 1);
    size_t per = (size_t)rows * (size_t)cols;
    float *video = malloc(3 * per * sizeof(float));
    for (size_t i = 0; i < per; i++) {
        video[i] = px[i];
        video[per + i] = px[per - 1 - i];
        video[2 * per + i] = 0.5f * px[i];
    }
    float *e[3] = { 0 }, *d[3] = { 0 };
    int32_t n1, l1;
    for (int f = 0; f < 3; f++) REQUIRE(omni_encode_image_n(g_m, video + f * per, rows, g, &e[f], &d[f], &n1, &l1) == 0);
    size_t t = (size_t)n1 * 32;
    omni_grid gv = { 3, g.h, g.w };
    const int chunks[3] = { VENC_CHUNK_PATCHES, 2 * g.h * g.w, g.h * g.w };
    for (int c = 0; c < 3; c++) {
        g_m->vision->chunk_patches = chunks[c];
        float *ev = NULL, *dv = NULL;
        int32_t nv, lv;
        int rc = omni_encode_image_n(g_m, video, 3 * rows, gv, &ev, &dv, &nv, &lv);
        if (rc) th_fail(__FILE__, __LINE__, "video: %s", omni_model_error(g_m));
        REQUIRE(rc == 0);
        CHECK(nv == 3 * n1 && lv == l1);
        for (int f = 0; f < 3 && nv == 3 * n1 && lv == l1; f++) {
            char label[96];
            snprintf(label, sizeof label, "chunk %d patches, frame %d", chunks[c], f);
            check_close(label, ev + f * t, e[f], t, 1e-5);
            for (int j = 0; j < lv; j++) {
                snprintf(label, sizeof label, "chunk %d patches, frame %d, DeepStack %d", chunks[c], f, j);
                check_close(label, dv + (size_t)j * 3 * t + f * t, d[f] + (size_t)j * t, t, 1e-5);
            }
        }
        free(ev), free(dv);
    }
    g_m->vision->chunk_patches = VENC_CHUNK_PATCHES;
    /* the frames differ, so mixing frames up would be visible */
    double mx, md = max_diff(e[0], e[1], t, &mx);
    CHECK(md > 1e-2 * mx);
    free(video);
    for (int f = 0; f < 3; f++) free(e[f]), free(d[f]);
}

/* Q8_0 weights (the q/k/v thirds of attn.qkv and the 5-D patch kernel are quantized from slices of the mmapped
 * tensors) stay within 3e-2 × max |ref| of the reference (measured 1.1e-2). */
TEST(vision_q8_0_weights) {
    REQUIRE(setup());
    char p[600], err[600];
    snprintf(p, sizeof p, "%s/qwen3-omni", FIXTURES);
    int rc;
    omni_model *m = load(p, OMNI_WEIGHTS_Q8_0, 0, err, sizeof err, &rc);
    if (rc) th_fail(__FILE__, __LINE__, "%s", err);
    REQUIRE(m);
    int64_t rows = 0;
    const float *px = f32(g_in, "pixel_values_1", &rows, NULL);
    float *emb = NULL, *ds = NULL;
    int32_t nt, nl;
    rc = omni_encode_image_n(m, px, rows, grid_of("image_grid_thw_1"), &emb, &ds, &nt, &nl);
    CHECK_EQ_INT(rc, 0);
    const float *ref = f32(g_ref, "image_embeds_1", NULL, NULL);
    if (!rc && ref) check_close("image_embeds_1 (q8_0)", emb, ref, (size_t)nt * 32, 3e-2);
    free(emb);
    free(ds);
    omni_model_free(m);
}

TEST(vision_bad_grids) {
    REQUIRE(setup());
    int64_t rows;
    const float *px = f32(g_in, "pixel_values_1", &rows, NULL);
    REQUIRE(px && rows == 24);
    float *emb = (float *)1, *ds = (float *)1;
    int32_t nt = 7, nl = 7;
    struct {
        omni_grid g;
        int64_t rows;
        const char *why;
    } cases[] = {
        { { 1, 3, 8 }, 24, "multiples of the merge size" }, /* h odd */
        { { 1, 8, 3 }, 24, "multiples of the merge size" }, /* w odd */
        { { 1, 4, 4 }, 24, "has 16 patches but pixel_values has 24 rows" },
        { { 2, 4, 6 }, 24, "has 48 patches but pixel_values has 24 rows" },
        { { 0, 4, 6 }, 24, "must be positive" },
        { { 1, 0, 6 }, 24, "must be positive" },
        { { 1, 4, -6 }, 24, "must be positive" },
        { { 1, 512, 512 }, 24, "exceed the limit" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int rc = omni_encode_image_n(g_m, px, cases[i].rows, cases[i].g, &emb, &ds, &nt, &nl);
        CHECK_EQ_INT(rc, OMNI_E_ARG);
        if (!strstr(omni_model_error(g_m), cases[i].why))
            th_fail(__FILE__, __LINE__, "grid %d: message '%s' lacks '%s'", (int)i, omni_model_error(g_m), cases[i].why);
        CHECK(emb == NULL && ds == NULL && nt == 0 && nl == 0);
    }
    /* the entry point without a row count still rejects the grid itself */
    CHECK_EQ_INT(omni_encode_image(g_m, px, (omni_grid){ 1, 4, 5 }, &emb, &ds, &nt, &nl), OMNI_E_ARG);
    CHECK_EQ_INT(omni_encode_image(g_m, px, (omni_grid){ 1, 0, 0 }, &emb, &ds, &nt, &nl), OMNI_E_ARG);
    /* missing arguments */
    CHECK_EQ_INT(omni_encode_image(g_m, NULL, (omni_grid){ 1, 4, 6 }, &emb, &ds, &nt, &nl), OMNI_E_ARG);
    CHECK_EQ_INT(omni_encode_image(g_m, px, (omni_grid){ 1, 4, 6 }, NULL, &ds, &nt, &nl), OMNI_E_ARG);
    CHECK_EQ_INT(omni_encode_image(g_m, px, (omni_grid){ 1, 4, 6 }, &emb, &ds, &nt, NULL), OMNI_E_ARG);
    CHECK_EQ_INT(omni_encode_image(NULL, px, (omni_grid){ 1, 4, 6 }, &emb, &ds, &nt, &nl), OMNI_E_ARG);
}

TEST(vision_model_without_tower_is_unsupported) {
    char p[600], err[600];
    snprintf(p, sizeof p, "%s/qwen3-dense", FIXTURES);
    int rc;
    omni_model *m = load(p, OMNI_WEIGHTS_AS_STORED, 0, err, sizeof err, &rc);
    if (rc) th_fail(__FILE__, __LINE__, "%s", err);
    REQUIRE(m);
    float px[1536] = { 0 }, *emb = NULL, *ds = NULL;
    int32_t nt, nl;
    CHECK_EQ_INT(omni_encode_image(m, px, (omni_grid){ 1, 2, 2 }, &emb, &ds, &nt, &nl), OMNI_E_UNSUPPORTED);
    CHECK(strstr(omni_model_error(m), "no vision encoder") != NULL);
    CHECK(emb == NULL && ds == NULL);
    omni_model_free(m);
}

/* ---- synthetic models from an edited fixture config -------------------------------------------------------------- */

typedef void (*cfg_edit)(cJSON *vision_config);

/* Writes the fixture's config.json with vision_config edited into a temporary folder; returns the config path. */
static int write_config(cfg_edit edit, char *path, size_t cap) {
    char src[600];
    snprintf(src, sizeof src, "%s/qwen3-omni/config.json", FIXTURES);
    omni_err e;
    char *text = omni_read_file(src, NULL, &e);
    if (!text) return th_fail(__FILE__, __LINE__, "%s", e.msg), 0;
    cJSON *root = cJSON_Parse(text);
    free(text);
    cJSON *vc = cJSON_GetObjectItem(cJSON_GetObjectItem(root, "thinker_config"), "vision_config");
    if (!vc) return cJSON_Delete(root), th_fail(__FILE__, __LINE__, "fixture config lacks vision_config"), 0;
    edit(vc);
    char tmpl[] = "/tmp/omni-venc-XXXXXX";
    char *dir = mkdtemp(tmpl);
    if (!dir) return cJSON_Delete(root), th_fail(__FILE__, __LINE__, "mkdtemp failed"), 0;
    snprintf(path, cap, "%s/config.json", dir);
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    FILE *f = fopen(path, "w");
    int ok = f && out && fputs(out, f) >= 0;
    if (f) fclose(f);
    free(out);
    return ok ? 1 : (th_fail(__FILE__, __LINE__, "cannot write %s", path), 0);
}

static void remove_config(const char *path) {
    char dir[700];
    snprintf(dir, sizeof dir, "%s", path);
    unlink(path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0, rmdir(dir);
}

static void set_num(cJSON *o, const char *k, double v) { cJSON_ReplaceItemInObject(o, k, cJSON_CreateNumber(v)); }
static void e_not_square(cJSON *vc) { set_num(vc, "num_position_embeddings", 60); }
static void e_act(cJSON *vc) { cJSON_ReplaceItemInObject(vc, "hidden_act", cJSON_CreateString("quick_gelu")); }
static void e_ds_range(cJSON *vc) {
    cJSON *a = cJSON_CreateArray();
    cJSON_AddItemToArray(a, cJSON_CreateNumber(1));
    cJSON_AddItemToArray(a, cJSON_CreateNumber(4)); /* depth is 4 */
    cJSON_ReplaceItemInObject(vc, "deepstack_visual_indexes", a);
}
static void e_no_depth(cJSON *vc) { cJSON_DeleteItemFromObject(vc, "depth"); }
static void e_heads(cJSON *vc) { set_num(vc, "num_heads", 3); } /* 32 / 3 */
static void e_head_dim(cJSON *vc) { set_num(vc, "num_heads", 16); } /* head dim 2: not a multiple of 4 */
static void e_none(cJSON *vc) { (void)vc; }

TEST(vision_config_errors) {
    struct {
        cfg_edit edit;
        int rc;
        const char *why;
    } cases[] = {
        { e_not_square, OMNI_E_CONFIG, "not a square" },
        { e_act, OMNI_E_UNSUPPORTED, "quick_gelu" },
        { e_ds_range, OMNI_E_CONFIG, "deepstack_visual_indexes" },
        { e_no_depth, OMNI_E_CONFIG, "missing field 'depth'" },
        { e_heads, OMNI_E_CONFIG, "not a multiple of num_heads" },
        { e_head_dim, OMNI_E_UNSUPPORTED, "multiple of 4" },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[700], err[600] = "";
        REQUIRE(write_config(cases[i].edit, path, sizeof path));
        int rc;
        omni_model *m = load(path, OMNI_WEIGHTS_AS_STORED, 1, err, sizeof err, &rc);
        CHECK_EQ_INT(rc, cases[i].rc);
        CHECK(m == NULL);
        if (!strstr(err, cases[i].why) || !strstr(err, "vision_config"))
            th_fail(__FILE__, __LINE__, "case %d: message '%s' lacks '%s'", (int)i, err, cases[i].why);
        omni_model_free(m);
        remove_config(path);
    }
    /* the unedited config loads, synthetic weights and all, and encodes */
    char path[700], err[600];
    REQUIRE(write_config(e_none, path, sizeof path));
    int rc;
    omni_model *m = load(path, OMNI_WEIGHTS_AS_STORED, 1, err, sizeof err, &rc);
    if (rc) th_fail(__FILE__, __LINE__, "%s", err);
    if (m) {
        float px[4 * 1536], *emb = NULL;
        for (int i = 0; i < 4 * 1536; i++) px[i] = (float)((i * 37) % 101) / 50.0f - 1.0f;
        int32_t nt;
        CHECK_EQ_INT(omni_encode_image(m, px, (omni_grid){ 1, 2, 2 }, &emb, NULL, &nt, NULL), 0);
        CHECK_EQ_INT(nt, 1);
        free(emb);
    }
    omni_model_free(m);
    remove_config(path);
}

/* The fixture's weights under config.rope_parameters.json (transformers 5 spelling: vision_config.rope_parameters
 * {rope_type: axial, rope_theta}) in a temporary folder: theta 10000 reproduces the reference, theta 100 must not —
 * so the value is read from there. */
static void theta_case(double theta, int expect_match) {
    REQUIRE(setup());
    char src[600], cwd[400], dir_t[] = "/tmp/omni-venc-XXXXXX";
    snprintf(src, sizeof src, "%s/qwen3-omni/config.rope_parameters.json", FIXTURES);
    REQUIRE(getcwd(cwd, sizeof cwd));
    omni_err e;
    char *text = omni_read_file(src, NULL, &e);
    REQUIRE(text);
    cJSON *root = cJSON_Parse(text);
    free(text);
    cJSON *rp = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(root, "thinker_config"), "vision_config"), "rope_parameters");
    REQUIRE(rp && cJSON_GetObjectItem(rp, "rope_theta"));
    set_num(rp, "rope_theta", theta);
    char *dir = mkdtemp(dir_t), cfg[700], st[700], target[1100];
    REQUIRE(dir);
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(st, sizeof st, "%s/model.safetensors", dir);
    snprintf(target, sizeof target, "%s/%s/qwen3-omni/model.safetensors", cwd, FIXTURES);
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    FILE *f = fopen(cfg, "w");
    int ok = f && out && fputs(out, f) >= 0 && symlink(target, st) == 0;
    if (f) fclose(f);
    free(out);
    int rc = -1;
    omni_model *m = NULL;
    char err[600] = "";
    if (ok) m = load(dir, OMNI_WEIGHTS_AS_STORED, 0, err, sizeof err, &rc);
    unlink(st), unlink(cfg), rmdir(dir);
    REQUIRE(ok);
    if (rc) th_fail(__FILE__, __LINE__, "%s", err);
    REQUIRE(m);
    int64_t rows = 0;
    const float *px = f32(g_in, "pixel_values_1", &rows, NULL), *ref = f32(g_ref, "image_embeds_1", NULL, NULL);
    float *emb = NULL;
    int32_t nt;
    CHECK_EQ_INT(omni_encode_image_n(m, px, rows, grid_of("image_grid_thw_1"), &emb, NULL, &nt, NULL), 0);
    if (emb && ref) {
        double mx, md = max_diff(emb, ref, (size_t)nt * 32, &mx);
        printf("    rope_theta %g: max |diff| %.3g (relative %.3g)\n", theta, md, md / mx);
        if (expect_match) CHECK(md <= VIS_REL_TOL * mx);
        else CHECK(md > 1e-2 * mx);
    }
    free(emb);
    omni_model_free(m);
}

TEST(vision_rope_theta_from_rope_parameters) {
    theta_case(10000, 1);
    theta_case(100, 0);
}

/* ---- informational timing at the real shape ---------------------------------------------------------------------- */

static void e_real(cJSON *vc) { /* Qwen3-Omni-30B-A3B's vision_config */
    set_num(vc, "depth", 27);
    set_num(vc, "hidden_size", 1152);
    set_num(vc, "num_heads", 16);
    set_num(vc, "intermediate_size", 4304);
    set_num(vc, "out_hidden_size", 2048);
    set_num(vc, "num_position_embeddings", 2304);
    cJSON *a = cJSON_CreateArray();
    for (int i = 8; i <= 24; i += 8) cJSON_AddItemToArray(a, cJSON_CreateNumber(i));
    cJSON_ReplaceItemInObject(vc, "deepstack_visual_indexes", a);
}

/* CPU time of the whole process (all threads): on a shared machine, wall time mostly measures the neighbours */
static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

TEST(vision_bench_real_shape) {
    const char *env = getenv("OMNI_BENCH_VISION");
    if (!env) SKIP("set OMNI_BENCH_VISION=<grid side> (64 = a 1024x1024 image) to time the encoder");
    int side = atoi(env);
    if (side < 2 || side % 2) side = 64;
    char path[700], err[600];
    REQUIRE(write_config(e_real, path, sizeof path));
    g_profile = 1;
    double t0 = omni_time_ms();
    int rc;
    omni_model *m = load(path, OMNI_WEIGHTS_AS_STORED, 1, err, sizeof err, &rc);
    remove_config(path);
    if (rc) th_fail(__FILE__, __LINE__, "%s", err);
    REQUIRE(m);
    double t1 = omni_time_ms();
    omni_grid g = { 1, side, side };
    size_t n = (size_t)side * side * 1536;
    float *px = malloc(n * sizeof(float)), *emb = NULL, *ds = NULL;
    omni_rng r = { 42 };
    for (size_t i = 0; i < n; i++) px[i] = omni_rng_uniform(&r) * 2 - 1;
    int32_t nt, nl;
    double t2 = omni_time_ms(), c2 = cpu_ms();
    rc = omni_encode_image(m, px, g, &emb, &ds, &nt, &nl);
    double t3 = omni_time_ms(), c3 = cpu_ms();
    CHECK_EQ_INT(rc, 0);
    omni_model_info info;
    omni_model_get_info(m, &info);
    printf("    vision encoder, real shape, synthetic bf16 weights, %s: grid 1x%dx%d (%d patches -> %d tokens, %d "
           "DeepStack levels): load %.0f ms, encode %.0f ms wall, %.0f ms CPU time of the process, scratch %.1f "
           "MiB\n",
           info.device_name, side, side, side * side, nt, nl, t1 - t0, t3 - t2, c3 - c2,
           (double)venc_scratch_bytes(m, g) / (1 << 20));
    double ms[32] = { 0 };
    const char *const *names = NULL;
    int nc = omni_model_profile(m, ms, &names);
    for (int i = 0; i < nc && i < 32; i++)
        if (ms[i] > 0) printf("      %-10s %9.0f ms\n", names[i], ms[i]);
    free(px);
    free(emb);
    free(ds);
    omni_model_free(m);
}
