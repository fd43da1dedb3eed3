/* media.c — files to model inputs: WAV → 16 kHz mono → Whisper log-mel (audio/), image files → pixel_values
 * (vision/), and the expansion of the chat template's single placeholders into one token per audio/visual token, as
 * Qwen3OmniMoeProcessor.replace_multimodal_special_tokens does. */
#include "media.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef OMNI_HEADLESS
/* Built without the audio and vision libraries (make HEADLESS=1): files cannot be read. */
static const char *headless_msg = "this omni was built headless (make HEADLESS=1): no audio or image files";
int media_audio_features(const char *path, float **mel, int *frames, char *err, size_t err_cap) {
    (void)path, (void)frames;
    *mel = NULL;
    snprintf(err, err_cap, "%s", headless_msg);
    return OMNI_E_UNSUPPORTED;
}
int media_image_patches(const char *model_dir, const char *path, float **pixels, omni_grid *grid, char *err,
                        size_t err_cap) {
    (void)model_dir, (void)path, (void)grid;
    *pixels = NULL;
    snprintf(err, err_cap, "%s", headless_msg);
    return OMNI_E_UNSUPPORTED;
}
int media_video_patches(const char *model_dir, const char *dir, double fps, float **pixels, omni_grid *grid,
                        float *second_per_grid, char *err, size_t err_cap) {
    (void)model_dir, (void)dir, (void)fps, (void)grid, (void)second_per_grid;
    *pixels = NULL;
    snprintf(err, err_cap, "%s", headless_msg);
    return OMNI_E_UNSUPPORTED;
}
static int audio_mel_compute(const float *pcm, int64_t n, float **out, int *frames) {
    (void)pcm, (void)n, (void)frames;
    *out = NULL;
    return OMNI_E_UNSUPPORTED;
}
#else
#include "image.h"
#include "mel.h"
#include "preprocess.h"
#include "resample.h"
#include "wav.h"

int media_audio_features(const char *path, float **mel, int *frames, char *err, size_t err_cap) {
    audio_wav w;
    audio_err e = { { 0 } };
    *mel = NULL;
    int rc = audio_wav_read_file(path, &w, &e);
    if (rc) {
        snprintf(err, err_cap, "%s", e.msg);
        return rc;
    }
    if (w.n == 0) {
        audio_wav_clear(&w);
        snprintf(err, err_cap, "%s: the file holds no audio", path);
        return OMNI_E_FORMAT;
    }
    float *pcm = w.samples;
    int64_t n = w.n;
    float *res = NULL;
    if (w.rate != 16000) {
        int64_t nr;
        if ((rc = audio_resample(w.samples, w.n, w.rate, 16000, 0, &res, &nr, &e))) {
            audio_wav_clear(&w);
            snprintf(err, err_cap, "%s: %s", path, e.msg);
            return rc;
        }
        pcm = res;
        n = nr;
    }
    rc = audio_mel_compute(pcm, n, mel, frames);
    free(res);
    audio_wav_clear(&w);
    if (rc) snprintf(err, err_cap, "%s: cannot compute log-mel features", path);
    else if (*frames < 1) {
        free(*mel);
        *mel = NULL;
        snprintf(err, err_cap, "%s: shorter than one 10 ms feature frame", path);
        return OMNI_E_FORMAT;
    }
    return rc;
}

/* the checkpoint's preprocessor_config.json, else the Qwen3-Omni defaults */
static int load_params(const char *model_dir, vision_params *vp, char *err, size_t err_cap) {
    vision_default_params(vp);
    if (!model_dir) return 0;
    char p[1200];
    snprintf(p, sizeof p, "%s/preprocessor_config.json", model_dir);
    FILE *f = fopen(p, "rb");
    if (!f) return 0;
    char *text = NULL;
    size_t len = 0;
    if (fseek(f, 0, SEEK_END) == 0) {
        long sz = ftell(f);
        rewind(f);
        text = sz >= 0 ? malloc((size_t)sz + 1) : NULL;
        if (text) len = fread(text, 1, (size_t)sz, f);
    }
    fclose(f);
    if (!text) return 0;
    text[len] = 0;
    vision_err e = { { 0 } };
    int rc = vision_params_from_json(text, vp, &e);
    free(text);
    if (rc) snprintf(err, err_cap, "%s: %s", p, e.msg);
    return rc;
}

int media_image_patches(const char *model_dir, const char *path, float **pixels, omni_grid *grid, char *err,
                        size_t err_cap) {
    vision_params vp;
    vision_err e = { { 0 } };
    int rc = load_params(model_dir, &vp, err, err_cap);
    if (rc) return rc;
    vision_image *img = NULL;
    if ((rc = vision_image_load(path, NULL, &img, &e))) {
        snprintf(err, err_cap, "%s", e.msg);
        return rc;
    }
    vision_patches pt;
    memset(&pt, 0, sizeof pt);
    rc = vision_preprocess_image(img, &vp, &pt, &e);
    vision_image_free(img);
    if (rc) {
        snprintf(err, err_cap, "%s: %s", path, e.msg);
        return rc;
    }
    *pixels = pt.pixel_values;
    grid->t = pt.grid_t;
    grid->h = pt.grid_h;
    grid->w = pt.grid_w;
    return 0;
}

int media_video_patches(const char *model_dir, const char *dir, double fps, float **pixels, omni_grid *grid,
                        float *second_per_grid, char *err, size_t err_cap) {
    vision_params vp;
    vision_err e = { { 0 } };
    int rc = load_params(model_dir, &vp, err, err_cap);
    if (rc) return rc;
    vision_image **frames = NULL;
    int n = 0;
    if ((rc = vision_frames_load_dir(dir, NULL, &frames, &n, &e))) {
        snprintf(err, err_cap, "%s", e.msg);
        return rc;
    }
    vision_patches pt;
    memset(&pt, 0, sizeof pt);
    rc = vision_preprocess_frames((const vision_image *const *)frames, n, fps > 0 ? fps : vp.video_fps, &vp, &pt, &e);
    vision_frames_free(frames, n);
    if (rc) {
        snprintf(err, err_cap, "%s: %s", dir, e.msg);
        return rc;
    }
    *pixels = pt.pixel_values;
    grid->t = pt.grid_t;
    grid->h = pt.grid_h;
    grid->w = pt.grid_w;
    *second_per_grid = (float)pt.second_per_grid;
    return 0;
}
#endif

void media_prompt_free(media_prompt *p) {
    if (!p) return;
    free(p->ids);
    free(p->audio_tokens);
    free(p->audio_embeds);
    free(p->image_embeds);
    free(p->deepstack);
    free(p->grids);
    free(p->second_per_grid);
    memset(p, 0, sizeof *p);
}

int media_prompt_build(omni_model *m, const char *model_dir, const omni_message *msgs, int n_msgs,
                       const media_audio *audios, int n_audio, const media_visual *visuals, int n_image,
                       media_prompt *out, char *err, size_t err_cap) {
    memset(out, 0, sizeof *out);
    omni_model_info info;
    omni_model_get_info(m, &info);
    int rc = 0;
    int32_t hidden = info.hidden;
    /* audio: features of every file, encoded in one call like the reference does for one prompt */
    if (n_audio) {
        float **mels = calloc((size_t)n_audio, sizeof *mels);
        int32_t *frames = calloc((size_t)n_audio, sizeof *frames);
        out->audio_tokens = calloc((size_t)n_audio, sizeof *out->audio_tokens);
        if (!mels || !frames || !out->audio_tokens) rc = OMNI_E_NOMEM, snprintf(err, err_cap, "out of memory");
        for (int a = 0; a < n_audio && !rc; a++) {
            int fr = 0;
            if (audios[a].path) rc = media_audio_features(audios[a].path, &mels[a], &fr, err, err_cap);
            else if ((rc = audio_mel_compute(audios[a].pcm16k, audios[a].n, &mels[a], &fr)) || fr < 1)
                rc = rc ? rc : OMNI_E_ARG, snprintf(err, err_cap, "audio %d: too short for one feature frame", a);
            frames[a] = fr;
        }
        if (!rc && (rc = omni_encode_audio(m, (const float *const *)mels, frames, n_audio, &out->audio_embeds,
                                           out->audio_tokens)))
            snprintf(err, err_cap, "audio encoder: %s", omni_model_error(m));
        for (int a = 0; a < n_audio; a++) free(mels ? mels[a] : NULL);
        free(mels);
        free(frames);
        out->mm.n_audios = n_audio;
        out->mm.audio_tokens = out->audio_tokens;
        out->mm.audio_embeds = out->audio_embeds;
    }
    /* images: each encoded alone (the reference's vision tower has no cross-image dependence) */
    int64_t vis_total = 0;
    int32_t levels = 0;
    float **embs = n_image ? calloc((size_t)n_image, sizeof *embs) : NULL, **dss = n_image ? calloc((size_t)n_image, sizeof *dss) : NULL;
    int32_t *ntok = n_image ? calloc((size_t)n_image, sizeof *ntok) : NULL;
    if (n_image && !rc) {
        out->grids = calloc((size_t)n_image, sizeof *out->grids);
        out->second_per_grid = calloc((size_t)n_image, sizeof *out->second_per_grid);
        if (!embs || !dss || !ntok || !out->grids || !out->second_per_grid)
            rc = OMNI_E_NOMEM, snprintf(err, err_cap, "out of memory");
        for (int i = 0; i < n_image && !rc; i++) {
            float *px = NULL;
            if (visuals[i].is_video)
                rc = media_video_patches(model_dir, visuals[i].path, visuals[i].fps, &px, &out->grids[i],
                                         &out->second_per_grid[i], err, err_cap);
            else rc = media_image_patches(model_dir, visuals[i].path, &px, &out->grids[i], err, err_cap);
            int32_t lv = 0;
            if (!rc && (rc = omni_encode_image(m, px, out->grids[i], &embs[i], &dss[i], &ntok[i], &lv)))
                snprintf(err, err_cap, "vision encoder: %s", omni_model_error(m));
            free(px);
            if (!rc && i && lv != levels) rc = OMNI_E_ARG, snprintf(err, err_cap, "inconsistent DeepStack levels");
            levels = lv;
            vis_total += ntok[i];
        }
        if (!rc) {
            out->image_embeds = malloc(sizeof(float) * (size_t)vis_total * hidden);
            out->deepstack = levels ? malloc(sizeof(float) * (size_t)levels * vis_total * hidden) : NULL;
            if (!out->image_embeds || (levels && !out->deepstack)) rc = OMNI_E_NOMEM, snprintf(err, err_cap, "out of memory");
        }
        if (!rc) { /* concatenate images; DeepStack per level */
            int64_t off = 0;
            for (int i = 0; i < n_image; i++) {
                memcpy(out->image_embeds + off * hidden, embs[i], sizeof(float) * (size_t)ntok[i] * hidden);
                for (int l = 0; l < levels; l++)
                    memcpy(out->deepstack + ((size_t)l * vis_total + off) * hidden, dss[i] + (size_t)l * ntok[i] * hidden,
                           sizeof(float) * (size_t)ntok[i] * hidden);
                off += ntok[i];
            }
        }
        out->mm.n_images = n_image;
        out->mm.grids = out->grids;
        out->mm.second_per_grid = out->second_per_grid;
        out->mm.image_embeds = out->image_embeds;
        out->mm.deepstack = out->deepstack;
        out->mm.n_levels = levels;
    }
    for (int i = 0; i < n_image; i++) free(embs[i]), free(dss[i]);
    free(embs);
    free(dss);
    if (rc) {
        free(ntok);
        media_prompt_free(out);
        return rc;
    }
    /* render, tokenize, expand placeholders */
    char *text = omni_chat_render(m, msgs, n_msgs, 1);
    if (!text) {
        free(ntok);
        media_prompt_free(out);
        snprintf(err, err_cap, "chat template: %s", omni_model_error(m));
        return OMNI_E_ARG;
    }
    int cap = (int)strlen(text) + 16;
    int32_t *raw = malloc(sizeof *raw * (size_t)cap);
    int n = raw ? omni_tokenize(m, text, strlen(text), raw, cap) : OMNI_E_NOMEM;
    free(text);
    if (n < 0) {
        free(raw), free(ntok);
        media_prompt_free(out);
        snprintf(err, err_cap, "%s", omni_model_error(m));
        return n;
    }
    int64_t total = n;
    for (int a = 0; a < n_audio; a++) total += out->audio_tokens[a] - 1;
    for (int i = 0; i < n_image; i++) total += ntok[i] - 1;
    out->ids = malloc(sizeof *out->ids * (size_t)(total > 0 ? total : 1));
    int a = 0, im = 0, k = 0;
    for (int i = 0; out->ids && i < n; i++) {
        int reps = 1;
        if (raw[i] == info.audio_token_id && a < n_audio) reps = out->audio_tokens[a++];
        else if ((raw[i] == info.image_token_id || raw[i] == info.video_token_id) && im < n_image) {
            if ((raw[i] == info.video_token_id) != (visuals[im].is_video != 0)) break; /* order mismatch */
            reps = ntok[im++];
        }
        for (int r = 0; r < reps && k < total; r++) out->ids[k++] = raw[i];
    }
    free(raw);
    free(ntok);
    if (!out->ids || a != n_audio || im != n_image) {
        media_prompt_free(out);
        snprintf(err, err_cap, "the chat template did not place every audio/image placeholder");
        return OMNI_E_ARG;
    }
    out->n = k;
    return 0;
}
