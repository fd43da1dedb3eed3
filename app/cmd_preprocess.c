/* cmd_preprocess.c — `omni preprocess`: what the Hugging Face processor would hand the model for an audio or image
 * file, written as safetensors, so front ends can be checked against transformers tensor by tensor. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "media.h"
#include "safetensors.h"

static void usage(FILE *f) {
    fprintf(f, "usage: omni preprocess [-m DIR] (--audio FILE.wav | --image FILE) -o OUT.safetensors\n\n"
               "Audio: `input_features` [1,128,frames] float32 (Whisper log-mel of the 16 kHz signal) and\n"
               "`feature_attention_mask` [1,frames] int64, as WhisperFeatureExtractor gives them for Qwen3-Omni.\n"
               "Image: `pixel_values` [patches,1536] float32 and `image_grid_thw` [1,3] int64, as the Qwen2-VL image\n"
               "processor gives them (preprocessor_config.json of DIR when given, else Qwen3-Omni's values).\n\n"
               "  -m, --model DIR        checkpoint folder (only its preprocessor_config.json is read)\n"
               "      --audio FILE       a WAV file\n"
               "      --image FILE       an image file\n"
               "  -o, --output FILE      where to write the tensors\n");
}

int cmd_preprocess(int argc, char **argv) {
    const char *dir = NULL, *audio = NULL, *image = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        }
        const char **dst = NULL;
        if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) dst = &dir;
        else if (!strcmp(argv[i], "--audio")) dst = &audio;
        else if (!strcmp(argv[i], "--image")) dst = &image;
        else if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) dst = &out;
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "omni preprocess: %s '%s'\n", dst ? "missing value for" : "unknown option", argv[i]);
            usage(stderr);
            return CLI_USAGE;
        }
        *dst = argv[++i];
    }
    if ((!audio == !image) || !out) {
        fprintf(stderr, "omni preprocess: give exactly one of --audio/--image, and -o\n");
        usage(stderr);
        return CLI_USAGE;
    }
    char err[600];
    st_writer *w = st_writer_new();
    int rc;
    if (!w) return cli_err("preprocess", "out of memory");
    if (audio) {
        float *mel = NULL;
        int frames = 0;
        if ((rc = media_audio_features(audio, &mel, &frames, err, sizeof err))) {
            st_writer_free(w);
            return cli_err("preprocess", "%s", err);
        }
        int64_t *mask = malloc(sizeof *mask * (size_t)frames);
        for (int i = 0; mask && i < frames; i++) mask[i] = 1;
        int64_t s1[3] = { 1, 128, frames }, s2[2] = { 1, frames };
        rc = !mask || st_writer_add(w, "input_features", ST_F32, 3, s1, mel, sizeof(float) * 128 * (size_t)frames) ||
             st_writer_add(w, "feature_attention_mask", ST_I64, 2, s2, mask, sizeof *mask * (size_t)frames);
        free(mel);
        free(mask);
    } else {
        float *px = NULL;
        omni_grid g;
        if ((rc = media_image_patches(dir, image, &px, &g, err, sizeof err))) {
            st_writer_free(w);
            return cli_err("preprocess", "%s", err);
        }
        int64_t rows = (int64_t)g.t * g.h * g.w, s1[2] = { rows, 1536 }, s2[2] = { 1, 3 }, thw[3] = { g.t, g.h, g.w };
        rc = st_writer_add(w, "pixel_values", ST_F32, 2, s1, px, sizeof(float) * (size_t)rows * 1536) ||
             st_writer_add(w, "image_grid_thw", ST_I64, 2, s2, thw, sizeof thw);
        free(px);
    }
    omni_err e = { { 0 } };
    if (!rc) rc = st_writer_save(w, out, &e);
    st_writer_free(w);
    if (rc) return cli_err("preprocess", "%s", e.msg[0] ? e.msg : "cannot write the tensors");
    return CLI_OK;
}
