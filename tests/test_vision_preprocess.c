/* test_vision_preprocess.c — smart_resize, the bicubic resize, normalisation and patch order against transformers
 * 5.17's Qwen2VLImageProcessor / Qwen2VLVideoProcessor (torchvision backend), configured by
 * tests/data/vision/preprocessor_config.json (Qwen3-Omni's values). Reference data: tests/gen_vision_ref.py.
 *
 * Tolerances: smart_resize sizes exact; resized uint8 pixels exact (0 differing bytes, CRC-32 over the whole image);
 * sampled pixel_values exact (max |diff| 0, the normalisation is the same float32 arithmetic); sums of
 * pixel_values within 1e-9 relative (they are double sums taken in a different order). */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "harness.h"
#include "vision_ref.h"
#include "image.h"
#include "preprocess.h"
#include "resize.h"

#define VREF TESTDATA "/vision"

/* ---- small helpers (CRC and case-list fields: vision_ref.h) ---- */


/* Whole output of `xz -dc path` (NUL-terminated), or NULL. */
static char *read_xz_all(const char *path, size_t *len) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "xz -dc '%s'", path);
    FILE *f = popen(cmd, "r");
    if (!f) return NULL;
    size_t cap = 1 << 16, n = 0;
    char *b = malloc(cap + 1);
    size_t got;
    while (b && (got = fread(b + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *nb = realloc(b, 2 * cap + 1);
            if (!nb) {
                free(b);
                b = NULL;
                break;
            }
            b = nb;
            cap *= 2;
        }
    }
    int st = pclose(f);
    if (!b || st != 0 || n == 0) {
        free(b);
        return NULL;
    }
    b[n] = 0;
    if (len) *len = n;
    return b;
}




static uint32_t kv_hex(const char *line, const char *key) {
    char b[64];
    return kv(line, key, b, sizeof b) ? (uint32_t)strtoul(b, NULL, 16) : 0;
}

/* Synthetic image, bit-identical to proc_image() in tests/gen_vision_ref.py. */
static vision_image *pattern(int32_t h, int32_t w, uint32_t seed) {
    vision_image *img = vision_image_new(w, h);
    if (!img) return NULL;
    uint8_t *p = img->rgb;
    for (uint32_t y = 0; y < (uint32_t)h; y++)
        for (uint32_t x = 0; x < (uint32_t)w; x++)
            for (uint32_t c = 0; c < 3; c++) {
                uint32_t k = (c + 1) * 3266489917u + seed * 668265263u;
                uint32_t hs = (x * 2654435761u) ^ (y * 2246822519u) ^ k;
                hs ^= hs >> 15;
                hs *= 2246822519u;
                hs ^= hs >> 13;
                *p++ = (uint8_t)((x * 3 + y * 5 + c * 85 + ((x ^ y) & 63) + (hs & 31)) & 255);
            }
    return img;
}

static int load_params(vision_params *p) {
    vision_default_params(p);
    FILE *f = fopen(VREF "/preprocessor_config.json", "rb");
    if (!f) return -1;
    char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    vision_err e = { { 0 } };
    int rc = vision_params_from_json(buf, p, &e);
    if (rc) fprintf(stderr, "    %s\n", e.msg);
    return rc;
}

/* Sampled reference pixel_values of one case: "name index value" lines. Returns max |diff| (or -1 if none). */
static double compare_samples(const char *samples, const char *name, const vision_patches *pv, int *count) {
    double maxd = -1;
    *count = 0;
    size_t nl = strlen(name);
    for (const char *l = samples; l && *l; l = strchr(l, '\n'), l = l ? l + 1 : NULL) {
        if (strncmp(l, name, nl) || l[nl] != ' ') continue;
        char *end;
        long long idx = strtoll(l + nl + 1, &end, 10);
        double ref = strtod(end, NULL);
        if (idx < 0 || idx >= pv->rows * pv->dim) return INFINITY;
        double d = fabs((double)pv->pixel_values[idx] - (double)(float)ref);
        if (d > maxd) maxd = d;
        (*count)++;
    }
    return maxd;
}

/* Resized frame f (of grid_t * 2) rebuilt from pixel_values with the documented layout (vision_patch_layout checks
 * it independently): x = (v * 127.5 + 127.5) undoes the mean = std = 0.5 normalisation exactly. HWC, malloc'd. */
static uint8_t *frame_from_patches(const vision_patches *pv, int f) {
    const int H = pv->resized_h, W = pv->resized_w, gw = pv->grid_w, gt = f / 2, t = f % 2;
    uint8_t *out = malloc((size_t)H * (size_t)W * 3);
    if (!out) return NULL;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            int ph = y / 16, pw = x / 16;
            int64_t row = (((int64_t)gt * (pv->grid_h / 2) + ph / 2) * (gw / 2) + pw / 2) * 4 + (ph % 2) * 2 + pw % 2;
            for (int c = 0; c < 3; c++) {
                float v = pv->pixel_values[row * pv->dim + ((c * 2 + t) * 16 + y % 16) * 16 + x % 16];
                out[((size_t)y * (size_t)W + (size_t)x) * 3 + (size_t)c] = (uint8_t)lrintf(v * 127.5f + 127.5f);
            }
        }
    return out;
}

static void sums(const vision_patches *pv, double *s, double *s2) {
    *s = *s2 = 0;
    for (int64_t i = 0; i < pv->rows * pv->dim; i++) {
        double v = pv->pixel_values[i];
        *s += v;
        *s2 += v * v;
    }
}

/* ---- smart_resize ---- */

TEST(vision_smart_resize_matches_reference) {
    char *txt = read_xz_all(VREF "/ref/smart_resize.txt.xz", NULL);
    REQUIRE(txt != NULL);
    int n = 0, bad = 0, errors = 0;
    for (char *l = strtok(txt, "\n"); l; l = strtok(NULL, "\n")) {
        long long h, w, mn, mx;
        char a[32], b[32];
        if (sscanf(l, "%lld %lld %lld %lld %31s %31s", &h, &w, &mn, &mx, a, b) != 6) continue;
        n++;
        int32_t rh = 0, rw = 0;
        vision_err e = { { 0 } };
        int rc = vision_smart_resize(h, w, 32, mn, mx, &rh, &rw, &e);
        int ok;
        if (a[0] == 'E') {
            errors++;
            ok = rc == VISION_E_SIZE && strstr(e.msg, "aspect ratio") != NULL;
        } else {
            ok = rc == VISION_OK && rh == atol(a) && rw == atol(b);
        }
        if (!ok && bad++ < 5)
            th_fail(__FILE__, __LINE__, "smart_resize(%lld, %lld, %lld..%lld): got rc %d %dx%d, want %s %s", h, w,
                    mn, mx, rc, rh, rw, a, b);
    }
    free(txt);
    CHECK(n > 7000 && errors > 100);
    CHECK_EQ_INT(bad, 0);
}

TEST(vision_smart_resize_rounds_half_to_even) {
    int32_t h, w;
    /* 48/32 = 1.5 -> 2, 80/32 = 2.5 -> 2 (Python round), 112/32 = 3.5 -> 4 */
    CHECK_EQ_INT(vision_smart_resize(48, 1000, 32, 0, 1 << 30, &h, &w, NULL), 0);
    CHECK_EQ_INT(h, 64);
    CHECK_EQ_INT(vision_smart_resize(80, 1000, 32, 0, 1 << 30, &h, &w, NULL), 0);
    CHECK_EQ_INT(h, 64);
    CHECK_EQ_INT(vision_smart_resize(112, 1000, 32, 0, 1 << 30, &h, &w, NULL), 0);
    CHECK_EQ_INT(h, 128);
    vision_err e = { { 0 } };
    CHECK_EQ_INT(vision_smart_resize(1, 201, 32, 3136, 12845056, &h, &w, &e), VISION_E_SIZE);
    CHECK_EQ_INT(vision_smart_resize(1, 200, 32, 3136, 12845056, &h, &w, &e), VISION_OK);
    CHECK(h == 32 && w == 800);
    CHECK_EQ_INT(vision_smart_resize(0, 10, 32, 3136, 12845056, &h, &w, &e), VISION_E_ARG);
    CHECK_EQ_INT(vision_smart_resize(10, 10, 32, 0, 12845056, &h, &w, &e), VISION_E_SIZE); /* rounds to 0x0 */
}

/* ---- the resize kernel alone ---- */

TEST(vision_resize_bit_exact_with_torch) {
    FILE *f = fopen(VREF "/ref/resize_probe.txt", "r");
    REQUIRE(f != NULL);
    size_t blen = 0;
    char *bin = read_xz_all(VREF "/ref/resize_probe.bin.xz", &blen);
    REQUIRE(bin != NULL);
    char line[512];
    int n = 0, bad = 0;
    while (fgets(line, sizeof line, f)) {
        int32_t ih = (int32_t)kv_long(line, "ih"), iw = (int32_t)kv_long(line, "iw");
        int32_t oh = (int32_t)kv_long(line, "oh"), ow = (int32_t)kv_long(line, "ow");
        long off = kv_long(line, "off");
        size_t nb = (size_t)oh * (size_t)ow * 3;
        REQUIRE(off >= 0 && (size_t)off + nb <= blen);
        vision_image *in = pattern(ih, iw, (uint32_t)kv_long(line, "seed"));
        uint8_t *out = malloc(nb);
        REQUIRE(in && out);
        CHECK_EQ_INT(vision_resize_bicubic(in->rgb, iw, ih, out, ow, oh, NULL), 0);
        int diff = 0, maxd = 0;
        for (size_t i = 0; i < nb; i++) {
            int d = abs((int)out[i] - (uint8_t)bin[off + (long)i]);
            diff += d != 0;
            if (d > maxd) maxd = d;
        }
        if (diff && bad++ < 5)
            th_fail(__FILE__, __LINE__, "resize %dx%d -> %dx%d: %d bytes differ (max %d)", iw, ih, ow, oh, diff, maxd);
        n++;
        free(out);
        vision_image_free(in);
    }
    fclose(f);
    free(bin);
    CHECK(n >= 59);
    CHECK_EQ_INT(bad, 0);
}

/* ---- whole images against the processor ---- */

/* Runs one cases.txt image line; returns 1 if it was checked. */
static int check_image_case(const char *line, const char *samples, const vision_params *p, double *max_pv_diff) {
    char name[64], file[256];
    kv(line, "name", name, sizeof name);
    vision_image *img = NULL;
    vision_err e = { { 0 } };
    if (kv(line, "file", file, sizeof file)) {
        char path[512];
        snprintf(path, sizeof path, VREF "/%s", file);
        if (vision_image_load(path, NULL, &img, &e)) {
            th_fail(__FILE__, __LINE__, "%s", e.msg);
            return 0;
        }
    } else {
        img = pattern((int32_t)kv_long(line, "h"), (int32_t)kv_long(line, "w"), (uint32_t)kv_long(line, "seed"));
        if (!img) return 0;
        CHECK(crc32_update(0, img->rgb, (size_t)img->w * (size_t)img->h * 3) == kv_hex(line, "dec_crc"));
    }
    vision_patches pv;
    int rc = vision_preprocess_image(img, p, &pv, &e);
    if (rc) {
        th_fail(__FILE__, __LINE__, "%s: %s", name, e.msg);
        vision_image_free(img);
        return 0;
    }
    CHECK_EQ_INT(pv.grid_t, kv_long(line, "gt"));
    CHECK_EQ_INT(pv.grid_h, kv_long(line, "gh"));
    CHECK_EQ_INT(pv.grid_w, kv_long(line, "gw"));
    CHECK_EQ_INT(pv.resized_h, kv_long(line, "rh"));
    CHECK_EQ_INT(pv.resized_w, kv_long(line, "rw"));
    CHECK_EQ_INT(pv.rows, kv_long(line, "rows"));
    CHECK_EQ_INT(pv.dim, 1536);
    CHECK(pv.second_per_grid == 0);
    const int known_diff = !strcmp(name, "gray16"); /* decoded differently on purpose, see test_vision_image.c */
    if (!known_diff && pv.resized_h == kv_long(line, "rh") && pv.resized_w == kv_long(line, "rw")) {
        size_t nb = (size_t)pv.resized_h * (size_t)pv.resized_w * 3;
        uint8_t *rs = frame_from_patches(&pv, 0);
        uint32_t crc = rs ? crc32_update(0, rs, nb) : 0;
        if (crc != kv_hex(line, "rs_crc"))
            th_fail(__FILE__, __LINE__, "%s: resized pixels differ from the reference (crc %08x vs %08x)", name, crc,
                    kv_hex(line, "rs_crc"));
        free(rs);
        int count;
        double d = compare_samples(samples, name, &pv, &count);
        CHECK(count > 40);
        if (!(d == 0)) th_fail(__FILE__, __LINE__, "%s: sampled pixel_values differ by up to %g", name, d);
        if (d > *max_pv_diff) *max_pv_diff = d;
        double s, s2, rs_ = kv_double(line, "pv_sum"), rs2 = kv_double(line, "pv_sumsq");
        sums(&pv, &s, &s2);
        CHECK_NEAR(s, rs_, 1e-9 * (fabs(rs_) + (double)pv.rows * pv.dim));
        CHECK_NEAR(s2, rs2, 1e-9 * rs2);
    }
    vision_patches_free(&pv);
    vision_image_free(img);
    return 1;
}

TEST(vision_images_match_processor) {
    vision_params p;
    REQUIRE(load_params(&p) == 0);
    char *samples = read_xz_all(VREF "/ref/samples.txt.xz", NULL);
    REQUIRE(samples != NULL);
    FILE *f = fopen(VREF "/ref/cases.txt", "r");
    REQUIRE(f != NULL);
    char line[4096];
    int n = 0;
    double maxd = 0;
    while (fgets(line, sizeof line, f)) {
        char kind[16], name[64];
        if (!strncmp(line, "error ", 6)) { /* the processor refused it: so must we, with the same reason */
            char file[256], path[512];
            kv(line, "file", file, sizeof file);
            snprintf(path, sizeof path, VREF "/%s", file);
            vision_image *img = NULL;
            vision_patches pv;
            vision_err e = { { 0 } };
            REQUIRE(vision_image_load(path, NULL, &img, &e) == 0);
            CHECK_EQ_INT(vision_preprocess_image(img, &p, &pv, &e), VISION_E_SIZE);
            CHECK(strstr(e.msg, "aspect ratio") != NULL && pv.pixel_values == NULL);
            vision_image_free(img);
            continue;
        }
        if (strncmp(line, "case ", 5) || !kv(line, "kind", kind, sizeof kind)) continue;
        kv(line, "name", name, sizeof name);
        if (!strcmp(kind, "video") || !strcmp(name, "proc_big")) continue; /* own tests below */
        n += check_image_case(line, samples, &p, &maxd);
    }
    fclose(f);
    free(samples);
    CHECK(n >= 28);
}

TEST(vision_large_image_over_max_pixels) {
    /* 4000x3600 (14.4 Mpx > max_pixels 12845056): smart_resize shrinks it to 3776x3392 */
    vision_params p;
    REQUIRE(load_params(&p) == 0);
    char *samples = read_xz_all(VREF "/ref/samples.txt.xz", NULL);
    FILE *f = fopen(VREF "/ref/cases.txt", "r");
    REQUIRE(samples && f);
    char line[4096];
    int found = 0;
    double maxd = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, " name=proc_big ")) found = check_image_case(line, samples, &p, &maxd);
    fclose(f);
    free(samples);
    CHECK(found);
}

TEST(vision_video_frames_match_processor) {
    vision_params base;
    REQUIRE(load_params(&base) == 0);
    char *samples = read_xz_all(VREF "/ref/samples.txt.xz", NULL);
    FILE *f = fopen(VREF "/ref/cases.txt", "r");
    REQUIRE(samples && f);
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char kind[16], name[64];
        if (strncmp(line, "case ", 5) || !kv(line, "kind", kind, sizeof kind) || strcmp(kind, "video")) continue;
        kv(line, "name", name, sizeof name);
        vision_params p = base;
        if (kv_long(line, "cap") == 1) {
            p.video_cap_pixels_per_frame = 1;
            p.video_max_tokens = kv_long(line, "max_video_tokens");
        }
        int nf = (int)kv_long(line, "frames");
        int32_t h = (int32_t)kv_long(line, "h"), w = (int32_t)kv_long(line, "w");
        uint32_t seed = (uint32_t)kv_long(line, "seed");
        vision_image *fr[8] = { 0 };
        REQUIRE(nf > 0 && nf <= 8);
        for (int i = 0; i < nf; i++) fr[i] = pattern(h, w, seed + (uint32_t)i);
        vision_patches pv;
        vision_err e = { { 0 } };
        int rc = vision_preprocess_frames((const vision_image *const *)fr, nf, 0, &p, &pv, &e);
        if (rc) th_fail(__FILE__, __LINE__, "%s: %s", name, e.msg);
        else {
            CHECK_EQ_INT(pv.grid_t, kv_long(line, "gt"));
            CHECK_EQ_INT(pv.grid_h, kv_long(line, "gh"));
            CHECK_EQ_INT(pv.grid_w, kv_long(line, "gw"));
            CHECK_EQ_INT(pv.rows, kv_long(line, "rows"));
            CHECK(pv.second_per_grid == 2.0); /* temporal_patch_size 2 / default fps 1.0 */
            /* CRC over every frame the processor patchified, the repeated last one included */
            uint32_t crc = 0;
            size_t nb = (size_t)pv.resized_h * (size_t)pv.resized_w * 3;
            for (int t = 0; t < pv.grid_t * 2; t++) {
                uint8_t *rs = frame_from_patches(&pv, t);
                REQUIRE(rs != NULL);
                crc = crc32_update(crc, rs, nb);
                free(rs);
            }
            CHECK(crc == kv_hex(line, "rs_crc"));
            int count;
            double d = compare_samples(samples, name, &pv, &count);
            CHECK(count > 40 && d == 0);
            double s, s2;
            sums(&pv, &s, &s2);
            CHECK_NEAR(s, kv_double(line, "pv_sum"), 1e-9 * (double)pv.rows * pv.dim);
            CHECK_NEAR(s2, kv_double(line, "pv_sumsq"), 1e-9 * s2);
            vision_patches_free(&pv);
            n++;
        }
        /* fps sets video_second_per_grid = temporal_patch_size / fps */
        if (!strcmp(name, "video3")) {
            CHECK_EQ_INT(vision_preprocess_frames((const vision_image *const *)fr, nf, 4.0, &p, &pv, &e), 0);
            CHECK(pv.second_per_grid == 0.5);
            vision_patches_free(&pv);
        }
        for (int i = 0; i < nf; i++) vision_image_free(fr[i]);
    }
    fclose(f);
    free(samples);
    CHECK_EQ_INT(n, 3);
}

/* ---- layout, config, folders, arguments ---- */

TEST(vision_patch_layout) {
    /* 64x96 needs no resize, so every value can be predicted: row = ((by*3 + bx)*2 + my)*2 + mx for patch
     * (2*by+my, 2*bx+mx), column = ((c*2 + t)*16 + py)*16 + px, value = (x - 127.5) / 127.5 */
    vision_params p;
    vision_default_params(&p);
    vision_image *img = pattern(64, 96, 7);
    REQUIRE(img != NULL);
    vision_patches pv;
    REQUIRE(vision_preprocess_image(img, &p, &pv, NULL) == 0);
    CHECK(pv.grid_t == 1 && pv.grid_h == 4 && pv.grid_w == 6 && pv.rows == 24 && pv.dim == 1536);
    int bad = 0;
    for (int y = 0; y < 64; y++)
        for (int x = 0; x < 96; x++)
            for (int c = 0; c < 3; c++)
                for (int t = 0; t < 2; t++) {
                    int ph = y / 16, pw = x / 16, by = ph / 2, my = ph % 2, bx = pw / 2, mx = pw % 2;
                    int row = ((by * 3 + bx) * 2 + my) * 2 + mx, col = ((c * 2 + t) * 16 + y % 16) * 16 + x % 16;
                    float want = ((float)img->rgb[(y * 96 + x) * 3 + c] - 127.5f) / 127.5f;
                    bad += pv.pixel_values[(size_t)row * 1536 + (size_t)col] != want;
                }
    CHECK_EQ_INT(bad, 0);
    vision_patches_free(&pv);
    vision_patches_free(&pv); /* freeing twice is harmless: the struct was zeroed */
    vision_patches_free(NULL);
    vision_image_free(img);
}

TEST(vision_params_json_parsing) {
    vision_params p;
    REQUIRE(load_params(&p) == 0);
    CHECK(p.patch_size == 16 && p.temporal_patch_size == 2 && p.merge_size == 2);
    CHECK(p.min_pixels == 3136 && p.max_pixels == 12845056);
    CHECK(p.image_mean[0] == 0.5f && p.image_std[2] == 0.5f);
    CHECK(p.video_min_pixels == 131072 && p.video_max_pixels == 786432);
    vision_err e = { { 0 } };
    vision_default_params(&p);
    CHECK_EQ_INT(vision_params_from_json("{\"size\": {\"shortest_edge\": 100, \"longest_edge\": 5000}}", &p, &e), 0);
    CHECK(p.min_pixels == 100 && p.max_pixels == 5000);
    CHECK_EQ_INT(vision_params_from_json("{\"size\": {\"shortest_edge\": 1}, \"min_pixels\": 7}", &p, &e), 0);
    CHECK(p.min_pixels == 7); /* min_pixels overrides size, as in Qwen2VLImageProcessor.__init__ */
    CHECK_EQ_INT(vision_params_from_json("{\"image_mean\": [0.1, 0.2, 0.3], \"image_std\": 0.25}", &p, &e), 0);
    CHECK(p.image_mean[1] == 0.2f && p.image_std[0] == 0.25f && p.image_std[2] == 0.25f);
    vision_params before = p;
    CHECK_EQ_INT(vision_params_from_json("{\"patch_size\": \"16\"}", &p, &e), VISION_E_CONFIG);
    CHECK(strstr(e.msg, "'patch_size'") != NULL);
    CHECK_EQ_INT(vision_params_from_json("{\"image_std\": [1, 2]}", &p, &e), VISION_E_CONFIG);
    CHECK(strstr(e.msg, "'image_std'") != NULL);
    CHECK_EQ_INT(vision_params_from_json("{\"image_std\": [1, 0, 2]}", &p, &e), VISION_E_CONFIG);
    CHECK_EQ_INT(vision_params_from_json("{\"min_pixels\": 10, \"max_pixels\": 5}", &p, &e), VISION_E_CONFIG);
    CHECK_EQ_INT(vision_params_from_json("{\"merge_size\": 1.5}", &p, &e), VISION_E_CONFIG);
    CHECK_EQ_INT(vision_params_from_json("{\"do_resize\": 1}", &p, &e), VISION_E_CONFIG);
    CHECK_EQ_INT(vision_params_from_json("{\"patch_size\": ", &p, &e), VISION_E_FORMAT);
    CHECK_EQ_INT(vision_params_from_json("[1, 2]", &p, &e), VISION_E_FORMAT);
    CHECK(memcmp(&before, &p, sizeof p) == 0); /* failures leave the params untouched */
}

TEST(vision_tiny_images_are_enlarged) {
    vision_params p;
    vision_default_params(&p);
    static const int sizes[][2] = { { 1, 1 }, { 1, 2 }, { 2, 1 }, { 3, 5 }, { 1, 200 }, { 9, 9 } };
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        vision_image *img = pattern(sizes[i][0], sizes[i][1], 1);
        vision_patches pv;
        vision_err e = { { 0 } };
        CHECK_EQ_INT(vision_preprocess_image(img, &p, &pv, &e), 0);
        CHECK(pv.resized_h * (int64_t)pv.resized_w >= 3136 && pv.resized_h % 32 == 0 && pv.resized_w % 32 == 0);
        vision_patches_free(&pv);
        vision_image_free(img);
    }
}

TEST(vision_frames_from_folder) {
    char dir[] = "/tmp/omni_vision_frames_XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    size_t len;
    char *png = NULL;
    {
        FILE *f = fopen(VREF "/img/tiny_rgb.png", "rb");
        REQUIRE(f != NULL);
        png = malloc(1 << 16);
        len = fread(png, 1, 1 << 16, f);
        fclose(f);
    }
    const char *names[] = { "b.png", "a.PNG", "c.png", "notes.txt" };
    for (int i = 0; i < 4; i++) {
        char path[256];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        FILE *f = fopen(path, "wb");
        REQUIRE(f != NULL);
        fwrite(png, 1, len, f);
        fclose(f);
    }
    vision_image **frames = NULL;
    int n = 0;
    vision_err e = { { 0 } };
    CHECK_EQ_INT(vision_frames_load_dir(dir, NULL, &frames, &n, &e), 0);
    CHECK_EQ_INT(n, 3);
    vision_params p;
    vision_default_params(&p);
    vision_patches pv;
    CHECK_EQ_INT(vision_preprocess_frames((const vision_image *const *)frames, n, 2.0, &p, &pv, &e), 0);
    /* 30x20 frames, video limits 131072..786432: smart_resize gives 448x320; 3 frames -> 4 -> grid_t 2 */
    CHECK(pv.grid_t == 2 && pv.resized_w == 448 && pv.resized_h == 320 && pv.second_per_grid == 1.0);
    vision_patches_free(&pv);
    vision_frames_free(frames, n);
    /* frames of different sizes are refused */
    vision_image *mixed[2] = { pattern(20, 30, 1), pattern(21, 30, 1) };
    CHECK_EQ_INT(vision_preprocess_frames((const vision_image *const *)mixed, 2, 1.0, &p, &pv, &e), VISION_E_ARG);
    CHECK(strstr(e.msg, "frame 1") != NULL);
    vision_image_free(mixed[0]);
    vision_image_free(mixed[1]);
    /* a folder with a broken image names the file */
    char path[256];
    snprintf(path, sizeof path, "%s/d.png", dir);
    FILE *f = fopen(path, "wb");
    fwrite(png, 1, len / 2, f);
    fclose(f);
    CHECK(vision_frames_load_dir(dir, NULL, &frames, &n, &e) == VISION_E_FORMAT && strstr(e.msg, "d.png"));
    CHECK(frames == NULL && n == 0);
    for (int i = 0; i < 4; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        unlink(path);
    }
    snprintf(path, sizeof path, "%s/d.png", dir);
    unlink(path);
    CHECK_EQ_INT(vision_frames_load_dir(dir, NULL, &frames, &n, &e), VISION_E_IO); /* empty now */
    rmdir(dir);
    CHECK_EQ_INT(vision_frames_load_dir(dir, NULL, &frames, &n, &e), VISION_E_IO); /* gone */
    free(png);
}

TEST(vision_preprocess_rejects_bad_arguments) {
    vision_params p;
    vision_default_params(&p);
    vision_patches pv;
    vision_err e = { { 0 } };
    CHECK_EQ_INT(vision_preprocess_image(NULL, &p, &pv, &e), VISION_E_ARG);
    vision_image *img = pattern(40, 40, 1);
    CHECK_EQ_INT(vision_preprocess_image(img, NULL, &pv, &e), VISION_E_ARG);
    p.patch_size = 0;
    CHECK_EQ_INT(vision_preprocess_image(img, &p, &pv, &e), VISION_E_ARG);
    vision_default_params(&p);
    p.do_resize = 0; /* 40x40 is not a multiple of 32 */
    CHECK_EQ_INT(vision_preprocess_image(img, &p, &pv, &e), VISION_E_SIZE);
    vision_default_params(&p);
    CHECK_EQ_INT(vision_preprocess_frames(NULL, 0, 1.0, &p, &pv, &e), VISION_E_ARG);
    CHECK(pv.pixel_values == NULL);
    vision_image_free(img);
}
