/* cmd_bench_vision.c — `omni bench-vision`: how long preprocessing and the vision encoder take for one image of
 * W×H pixels, on a real checkpoint or on synthetic random weights at the shape of a config.json's vision_config
 * (the thinker shrunk to one tiny layer). Preprocessing is timed on a synthetic image through the same resize /
 * normalise / patchify path as image files (unless built headless). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_config.h"
#include "cli.h"
#ifndef OMNI_HEADLESS
#include "image.h"
#include "preprocess.h"
#endif

#define BENCH_VISION_DEFAULT_CONFIG "assets/qwen3-omni-30b-a3b.config.json"

static void usage(FILE *f) {
    fprintf(f, "usage: omni bench-vision [-m DIR | --config CONFIG.json] [--size 1024] [-r 3] [options]\n\n"
               "Times preprocessing and omni_encode_image for one SIZE×SIZE image (synthetic pixels), R times.\n"
               "With --config (default " BENCH_VISION_DEFAULT_CONFIG ") the weights are synthetic: the vision\n"
               "encoder at the config's real shape, the thinker shrunk to one tiny layer.\n\n"
               "      --size N           image side in pixels (32..8192), default 1024\n"
               "  -r, --reps R           repetitions, default 3\n\n");
    cli_help_common(f, 0);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

int cmd_bench_vision(int argc, char **argv) {
    cli_opts o;
    cli_opts_init(&o);
    long size = 1024, reps = 3;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            usage(stdout);
            return CLI_OK;
        }
        if ((!strcmp(a, "--size") || !strcmp(a, "-r") || !strcmp(a, "--reps")) && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            int is_size = a[2] == 's';
            if (*end || (is_size ? v < 32 || v > 8192 : v < 1 || v > 100)) {
                fprintf(stderr, "omni bench-vision: option %s: invalid value '%s'\n", a, argv[i]);
                return CLI_USAGE;
            }
            if (is_size) size = v;
            else reps = v;
            continue;
        }
        int r = cli_parse_common(&o, argc, argv, &i);
        if (r < 0) return CLI_USAGE;
        if (r == 0) {
            fprintf(stderr, "omni bench-vision: unknown option '%s'\n", a);
            usage(stderr);
            return CLI_USAGE;
        }
    }
    double t_load;
    omni_model *m = bench_open_encoder_model(&o, BENCH_VISION_DEFAULT_CONFIG, "vision_config", &t_load);
    if (!m) return CLI_ERR;
    /* pixel_values of a size×size image: through the real preprocessor when available, else random patches of the
     * same grid (the factor-32 grid of smart_resize for a square multiple of 32) */
    omni_grid g = { 1, (int32_t)((size + 16) / 32 * 2), (int32_t)((size + 16) / 32 * 2) };
    float *px = NULL;
    double t_pre = -1;
#ifndef OMNI_HEADLESS
    vision_image *img = vision_image_new((int32_t)size, (int32_t)size);
    if (img) {
        for (long i = 0; i < size * size * 3; i++) img->rgb[i] = (uint8_t)((i * 2654435761u) >> 24);
        vision_params vp;
        vision_default_params(&vp);
        vision_patches pt;
        vision_err e;
        memset(&pt, 0, sizeof pt);
        double tp = now_s();
        if (!vision_preprocess_image(img, &vp, &pt, &e)) {
            t_pre = now_s() - tp;
            px = pt.pixel_values;
            g.t = pt.grid_t, g.h = pt.grid_h, g.w = pt.grid_w;
        }
        vision_image_free(img);
    }
#endif
    size_t rows = (size_t)g.t * g.h * g.w;
    if (!px) {
        px = malloc(sizeof(float) * rows * 1536);
        uint64_t s = 0x9E3779B97F4A7C15ull;
        for (size_t i = 0; px && i < rows * 1536; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            px[i] = (float)((s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
        }
    }
    if (!px) {
        omni_model_free(m);
        return cli_err("bench-vision", "out of memory");
    }
    omni_model_info in;
    omni_model_get_info(m, &in);
    printf("vision encoder %s%s on %s\n", o.mp.synthetic ? "[synthetic] " : "",
           o.mp.weights == OMNI_WEIGHTS_Q8_0 ? "q8_0" : "as stored", in.device_name);
    printf("load %.2f s; image %ldx%ld -> grid %dx%dx%d = %zu patches -> %zu tokens", t_load, size, size, g.t, g.h, g.w,
           rows, rows / 4);
    if (t_pre >= 0) printf("; preprocessing %.1f ms", t_pre * 1e3);
    printf("\n");
    int rc = 0;
    for (long r = 0; r < reps + 1 && !rc; r++) { /* the first run is a warm-up (pipelines, first-touch) */
        float *emb = NULL, *ds = NULL;
        int32_t nt, nl;
        double t = now_s();
        rc = omni_encode_image(m, px, g, &emb, &ds, &nt, &nl);
        t = now_s() - t;
        free(emb);
        free(ds);
        if (rc) cli_err("bench-vision", "%s", omni_model_error(m));
        else if (r) printf("run %ld: encode %.1f ms (%d tokens, %d DeepStack levels)\n", r, t * 1e3, nt, nl);
        else printf("warm-up: encode %.1f ms\n", t * 1e3);
    }
    free(px);
    omni_model_free(m);
    return rc ? CLI_ERR : CLI_OK;
}
