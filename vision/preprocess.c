/* preprocess.c — resize, normalise and patchify images and frame sequences for the vision encoder.
 *
 * Mirrors transformers 5.17: Qwen2VLImageProcessor._preprocess / .patchify (images) and
 * Qwen2VLVideoProcessor._preprocess / .resize / .patchify (videos), with TorchvisionBackend.rescale_and_normalize
 * (rescale folded into mean and std: mean' = float32(mean) * float32(1/rescale_factor), then
 * (float32(x) - mean') / std' per element, as tvF.normalize does). A per-channel 256-entry table holds those
 * values, so the floats are bit-identical to the reference whenever the resized uint8 pixels are. */
#include <ctype.h>
#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "preprocess.h"
#include "resize.h"

void vision_default_params(vision_params *p) {
    memset(p, 0, sizeof *p);
    p->patch_size = 16;
    p->temporal_patch_size = 2;
    p->merge_size = 2;
    p->min_pixels = 3136;
    p->max_pixels = 12845056;
    p->video_min_pixels = 128 * 32 * 32;
    p->video_max_pixels = 768 * 32 * 32;
    p->video_cap_pixels_per_frame = 0;
    p->video_max_tokens = 128000;
    p->video_fps = 1.0;
    for (int c = 0; c < 3; c++) {
        p->image_mean[c] = 0.5f;
        p->image_std[c] = 0.5f;
    }
    p->rescale_factor = 1.0 / 255.0;
    p->do_resize = p->do_rescale = p->do_normalize = 1;
}

/* ---- preprocessor_config.json ---- */

static int json_int(const cJSON *root, const char *key, int64_t lo, int64_t hi, int64_t *out, vision_err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < (double)lo ||
        v->valuedouble > (double)hi)
        return vision_fail(e, VISION_E_CONFIG, "preprocessor config: field '%s' must be an integer in %lld..%lld", key,
                           (long long)lo, (long long)hi);
    *out = (int64_t)v->valuedouble;
    return 0;
}

static int json_bool(const cJSON *root, const char *key, int32_t *out, vision_err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (!cJSON_IsBool(v)) return vision_fail(e, VISION_E_CONFIG, "preprocessor config: field '%s' must be true/false", key);
    *out = cJSON_IsTrue(v) ? 1 : 0;
    return 0;
}

/* A number or a list of 3 numbers (image_mean / image_std). */
static int json_triple(const cJSON *root, const char *key, float out[3], vision_err *e) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, key);
    if (!v || cJSON_IsNull(v)) return 0;
    if (cJSON_IsNumber(v)) {
        out[0] = out[1] = out[2] = (float)v->valuedouble;
        return 0;
    }
    if (!cJSON_IsArray(v) || cJSON_GetArraySize(v) != 3)
        return vision_fail(e, VISION_E_CONFIG, "preprocessor config: field '%s' must be a number or 3 numbers", key);
    for (int i = 0; i < 3; i++) {
        const cJSON *x = cJSON_GetArrayItem(v, i);
        if (!cJSON_IsNumber(x))
            return vision_fail(e, VISION_E_CONFIG, "preprocessor config: field '%s'[%d] is not a number", key, i);
        out[i] = (float)x->valuedouble; /* torch.tensor(list) makes float32 */
    }
    return 0;
}

int vision_params_from_json(const char *json_text, vision_params *p, vision_err *e) {
    if (!json_text || !p) return vision_fail(e, VISION_E_ARG, "vision_params_from_json: NULL argument");
    cJSON *root = cJSON_Parse(json_text);
    if (!root || !cJSON_IsObject(root)) {
        cJSON_Delete(root);
        return vision_fail(e, VISION_E_FORMAT, "preprocessor config: not a JSON object");
    }
    vision_params q = *p;
    int rc = 0;
    const int64_t big = (int64_t)1 << 40;
    int64_t ps = q.patch_size, tps = q.temporal_patch_size, ms = q.merge_size;
    rc = json_int(root, "patch_size", 1, 1024, &ps, e);
    if (!rc) rc = json_int(root, "temporal_patch_size", 1, 64, &tps, e);
    if (!rc) rc = json_int(root, "merge_size", 1, 64, &ms, e);
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(root, "size");
    if (!rc && size && cJSON_IsObject(size)) { /* 5.x style; explicit min_pixels/max_pixels override it */
        rc = json_int(size, "shortest_edge", 0, big, &q.min_pixels, e);
        if (!rc) rc = json_int(size, "longest_edge", 1, big, &q.max_pixels, e);
    }
    if (!rc) rc = json_int(root, "min_pixels", 0, big, &q.min_pixels, e);
    if (!rc) rc = json_int(root, "max_pixels", 1, big, &q.max_pixels, e);
    q.patch_size = (int32_t)ps;
    q.temporal_patch_size = (int32_t)tps;
    q.merge_size = (int32_t)ms;
    if (!rc) rc = json_triple(root, "image_mean", q.image_mean, e);
    if (!rc) rc = json_triple(root, "image_std", q.image_std, e);
    if (!rc) {
        const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "rescale_factor");
        if (r && !cJSON_IsNull(r)) {
            if (!cJSON_IsNumber(r) || !(r->valuedouble > 0) || !isfinite(r->valuedouble))
                rc = vision_fail(e, VISION_E_CONFIG, "preprocessor config: field 'rescale_factor' must be > 0");
            else
                q.rescale_factor = r->valuedouble;
        }
    }
    if (!rc) rc = json_bool(root, "do_resize", &q.do_resize, e);
    if (!rc) rc = json_bool(root, "do_rescale", &q.do_rescale, e);
    if (!rc) rc = json_bool(root, "do_normalize", &q.do_normalize, e);
    cJSON_Delete(root);
    if (rc) return rc;
    if (q.min_pixels > q.max_pixels)
        return vision_fail(e, VISION_E_CONFIG, "preprocessor config: min_pixels %lld > max_pixels %lld",
                           (long long)q.min_pixels, (long long)q.max_pixels);
    for (int c = 0; c < 3; c++)
        if (q.image_std[c] == 0.0f || !isfinite(q.image_std[c]) || !isfinite(q.image_mean[c]))
            return vision_fail(e, VISION_E_CONFIG, "preprocessor config: image_std/image_mean[%d] invalid", c);
    *p = q;
    return VISION_OK;
}

/* ---- shared core ---- */

static int check_params(const vision_params *p, vision_err *e) {
    if (!p || p->patch_size <= 0 || p->temporal_patch_size <= 0 || p->merge_size <= 0 || p->patch_size > 1024 ||
        p->temporal_patch_size > 64 || p->merge_size > 64)
        return vision_fail(e, VISION_E_ARG, "vision params: invalid patch/temporal/merge size");
    for (int c = 0; c < 3; c++)
        if (p->image_std[c] == 0.0f) return vision_fail(e, VISION_E_ARG, "vision params: image_std[%d] is 0", c);
    return VISION_OK;
}

/* value[c][x] = what TorchvisionBackend.rescale_and_normalize gives for uint8 x in channel c */
static void build_lut(const vision_params *p, float lut[3][256]) {
    const float inv = (float)(1.0 / p->rescale_factor);
    const float scale = (float)p->rescale_factor;
    for (int c = 0; c < 3; c++) {
        float m = p->image_mean[c], s = p->image_std[c];
        if (p->do_rescale && p->do_normalize) { /* _fuse_mean_std_and_rescale_factor */
            m = m * inv;
            s = s * inv;
        }
        for (int x = 0; x < 256; x++) {
            float v = (float)x;
            if (p->do_normalize) lut[c][x] = (v - m) / s;
            else if (p->do_rescale) lut[c][x] = v * scale;
            else lut[c][x] = v;
        }
    }
}

/* frames: nfr = grid_t * tps resized RGB images of rh x rw. Writes rows in merge-block order (patchify). */
static void patchify(uint8_t *const *frames, int32_t grid_t, int32_t rh, int32_t rw, const vision_params *p,
                     const float lut[3][256], float *out) {
    const int32_t ps = p->patch_size, ms = p->merge_size, tps = p->temporal_patch_size;
    const int32_t gh = rh / ps, gw = rw / ps;
    const size_t dim = (size_t)3 * (size_t)tps * (size_t)ps * (size_t)ps;
    float *row = out;
    for (int32_t gt = 0; gt < grid_t; gt++)
        for (int32_t by = 0; by < gh / ms; by++)
            for (int32_t bx = 0; bx < gw / ms; bx++)
                for (int32_t my = 0; my < ms; my++)
                    for (int32_t mx = 0; mx < ms; mx++, row += dim) {
                        const int32_t py0 = (by * ms + my) * ps, px0 = (bx * ms + mx) * ps;
                        float *o = row;
                        for (int c = 0; c < 3; c++)
                            for (int32_t t = 0; t < tps; t++) {
                                const uint8_t *f = frames[gt * tps + t];
                                for (int32_t y = 0; y < ps; y++) {
                                    const uint8_t *s = f + ((size_t)(py0 + y) * (size_t)rw + (size_t)px0) * 3 + c;
                                    for (int32_t x = 0; x < ps; x++) *o++ = lut[c][s[3 * x]];
                                }
                            }
                    }
}

/* Resizes n same-sized images to rh x rw, repeats the last to a multiple of tps frames and patchifies. */
static int run(const vision_image *const *imgs, int n, int32_t rh, int32_t rw, const vision_params *p,
               vision_patches *out, vision_err *e) {
    const int32_t ps = p->patch_size, tps = p->temporal_patch_size, unit = ps * p->merge_size;
    if (rh % unit || rw % unit)
        return vision_fail(e, VISION_E_SIZE, "image %dx%d is not a multiple of %d pixels (do_resize is off)", rw, rh,
                           unit);
    const int nfr = n + (tps - n % tps) % tps;
    const int32_t grid_t = nfr / tps, gh = rh / ps, gw = rw / ps;
    const size_t plane = (size_t)rh * (size_t)rw * 3;
    const size_t dim = (size_t)3 * (size_t)tps * (size_t)ps * (size_t)ps;
    const size_t rows = (size_t)grid_t * (size_t)gh * (size_t)gw;
    if (rows > SIZE_MAX / dim / sizeof(float) || plane > SIZE_MAX / (size_t)n)
        return vision_fail(e, VISION_E_SIZE, "%d frames of %dx%d are too many values", n, rw, rh);
    uint8_t **frames = calloc((size_t)nfr, sizeof *frames);
    uint8_t *pix = malloc(plane * (size_t)n);
    float *pv = malloc(rows * dim * sizeof(float));
    int rc = VISION_OK;
    if (!frames || !pix || !pv) {
        rc = vision_fail(e, VISION_E_NOMEM, "out of memory for %zu x %zu pixel values", rows, dim);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        frames[i] = pix + plane * (size_t)i;
        if ((rc = vision_resize_bicubic(imgs[i]->rgb, imgs[i]->w, imgs[i]->h, frames[i], rw, rh, e))) goto done;
    }
    for (int i = n; i < nfr; i++) frames[i] = frames[n - 1]; /* the processor repeats the last frame */
    float lut[3][256];
    build_lut(p, lut);
    patchify(frames, grid_t, rh, rw, p, (const float(*)[256])lut, pv);
    out->pixel_values = pv;
    pv = NULL;
    out->rows = (int64_t)rows;
    out->dim = (int32_t)dim;
    out->grid_t = grid_t;
    out->grid_h = gh;
    out->grid_w = gw;
    out->resized_h = rh;
    out->resized_w = rw;
done:
    free(frames);
    free(pix);
    free(pv);
    return rc;
}

int vision_preprocess_image(const vision_image *img, const vision_params *p, vision_patches *out, vision_err *e) {
    if (!out) return vision_fail(e, VISION_E_ARG, "vision_preprocess_image: out is NULL");
    memset(out, 0, sizeof *out);
    if (!img || !img->rgb || img->w <= 0 || img->h <= 0)
        return vision_fail(e, VISION_E_ARG, "vision_preprocess_image: empty image");
    int rc = check_params(p, e);
    if (rc) return rc;
    int32_t rh = img->h, rw = img->w;
    if (p->do_resize &&
        (rc = vision_smart_resize(img->h, img->w, (int64_t)p->patch_size * p->merge_size, p->min_pixels,
                                  p->max_pixels, &rh, &rw, e)))
        return rc;
    return run(&img, 1, rh, rw, p, out, e);
}

int vision_preprocess_frames(const vision_image *const *frames, int n, double fps, const vision_params *p,
                             vision_patches *out, vision_err *e) {
    if (!out) return vision_fail(e, VISION_E_ARG, "vision_preprocess_frames: out is NULL");
    memset(out, 0, sizeof *out);
    if (!frames || n <= 0) return vision_fail(e, VISION_E_ARG, "vision_preprocess_frames: no frames");
    int rc = check_params(p, e);
    if (rc) return rc;
    for (int i = 0; i < n; i++) {
        if (!frames[i] || !frames[i]->rgb || frames[i]->w <= 0 || frames[i]->h <= 0)
            return vision_fail(e, VISION_E_ARG, "video frame %d is empty", i);
        if (frames[i]->w != frames[0]->w || frames[i]->h != frames[0]->h)
            return vision_fail(e, VISION_E_ARG, "video frame %d is %dx%d but frame 0 is %dx%d", i, frames[i]->w,
                               frames[i]->h, frames[0]->w, frames[0]->h);
    }
    if (!(fps > 0)) fps = p->video_fps;
    if (!(fps > 0) || !isfinite(fps)) return vision_fail(e, VISION_E_ARG, "video fps must be > 0");
    int32_t rh = frames[0]->h, rw = frames[0]->w;
    const int64_t factor = (int64_t)p->patch_size * p->merge_size;
    int64_t max_pixels = p->video_max_pixels;
    if (p->video_cap_pixels_per_frame) { /* Qwen2VLVideoProcessor.resize with cap_pixels_per_frame */
        int64_t total = (int64_t)((double)p->video_max_tokens * (double)factor * (double)factor * 0.9);
        int64_t capped = total * p->temporal_patch_size / n;
        if (capped < max_pixels) max_pixels = capped;
        int64_t floor_px = (int64_t)((double)p->video_min_pixels * 1.05);
        if (max_pixels < floor_px) max_pixels = floor_px;
    }
    if (p->do_resize &&
        (rc = vision_smart_resize(rh, rw, factor, p->video_min_pixels, max_pixels, &rh, &rw, e)))
        return rc;
    rc = run(frames, n, rh, rw, p, out, e);
    if (!rc) out->second_per_grid = (double)p->temporal_patch_size / fps;
    return rc;
}

void vision_patches_free(vision_patches *out) {
    if (!out) return;
    free(out->pixel_values);
    memset(out, 0, sizeof *out);
}

/* ---- frames from a folder ---- */

static int is_image_name(const char *name) {
    static const char *exts[] = { ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".webp", ".tif", ".tiff" };
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name) return 0;
    for (size_t i = 0; i < sizeof exts / sizeof *exts; i++) {
        const char *a = dot, *b = exts[i];
        while (*a && *b && tolower((unsigned char)*a) == *b) a++, b++;
        if (!*a && !*b) return 1;
    }
    return 0;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

void vision_frames_free(vision_image **frames, int n) {
    if (!frames) return;
    for (int i = 0; i < n; i++) vision_image_free(frames[i]);
    free(frames);
}

int vision_frames_load_dir(const char *dir, const vision_limits *lim, vision_image ***frames, int *n, vision_err *e) {
    if (!dir || !frames || !n) return vision_fail(e, VISION_E_ARG, "vision_frames_load_dir: NULL argument");
    *frames = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) return vision_fail(e, VISION_E_IO, "%s: cannot open folder", dir);
    char **names = NULL;
    int count = 0, cap = 0, rc = VISION_OK;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !is_image_name(de->d_name)) continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 64;
            char **nn = realloc(names, sizeof *names * (size_t)cap);
            if (!nn) {
                rc = vision_fail(e, VISION_E_NOMEM, "%s: out of memory listing files", dir);
                break;
            }
            names = nn;
        }
        if (!(names[count] = strdup(de->d_name))) {
            rc = vision_fail(e, VISION_E_NOMEM, "%s: out of memory listing files", dir);
            break;
        }
        count++;
    }
    closedir(d);
    if (!rc && count == 0) rc = vision_fail(e, VISION_E_IO, "%s: no image files in the folder", dir);
    vision_image **imgs = NULL;
    if (!rc) {
        qsort(names, (size_t)count, sizeof *names, cmp_names);
        imgs = calloc((size_t)count, sizeof *imgs);
        if (!imgs) rc = vision_fail(e, VISION_E_NOMEM, "%s: out of memory", dir);
    }
    for (int i = 0; !rc && i < count; i++) {
        size_t len = strlen(dir) + strlen(names[i]) + 2;
        char *path = malloc(len);
        if (!path) {
            rc = vision_fail(e, VISION_E_NOMEM, "%s: out of memory", dir);
            break;
        }
        snprintf(path, len, "%s/%s", dir, names[i]);
        rc = vision_image_load(path, lim, &imgs[i], e);
        free(path);
    }
    for (int i = 0; i < count; i++) free(names[i]);
    free(names);
    if (rc) {
        vision_frames_free(imgs, count);
        return rc;
    }
    *frames = imgs;
    *n = count;
    return VISION_OK;
}
