/* cmd_bench_audio.c — `omni bench-audio`: how long the AuT audio encoder takes for S seconds of audio (100 mel
 * frames per second), on a real checkpoint or on synthetic random weights at the shape of a config.json's
 * audio_config. For synthetic runs the thinker is shrunk to one small layer first (and the vision tower, talker and
 * code2wav are dropped from the config), so only the audio encoder costs memory and load time. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "audio_encoder.h" /* aenc_scratch_bytes */
#include "bench_config.h"
#include "cli.h"

#define BENCH_AUDIO_DEFAULT_CONFIG "assets/qwen3-omni-30b-a3b.config.json"

static void usage(FILE *f) {
    fprintf(f, "usage: omni bench-audio [-m DIR | --config CONFIG.json] [-s 30] [-r 1] [options]\n\n"
               "Times omni_encode_audio on S seconds of random log-mel features (100 frames per second), R times.\n"
               "With --config (default " BENCH_AUDIO_DEFAULT_CONFIG ") the weights are synthetic: the audio\n"
               "encoder at the config's real shape, the thinker shrunk to one tiny layer.\n\n"
               "  -s, --seconds S        audio length in seconds (0.01..3600), default 30\n"
               "  -r, --reps R           repetitions, default 1 (0: only load and print the plan)\n\n");
    cli_help_common(f, 0);
}

static double clock_s(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}
static double now_s(void) { return clock_s(CLOCK_MONOTONIC); }

int cmd_bench_audio(int argc, char **argv) {
    cli_opts o;
    cli_opts_init(&o);
    double seconds = 30;
    int reps = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            usage(stdout);
            return CLI_OK;
        }
        if ((!strcmp(a, "-s") || !strcmp(a, "--seconds") || !strcmp(a, "-r") || !strcmp(a, "--reps")) && i + 1 < argc) {
            char *end;
            double v = strtod(argv[++i], &end);
            int is_s = a[1] == 's' || a[2] == 's';
            if (*end || end == argv[i] || !(is_s ? v >= 0.01 && v <= 3600 : v >= 0 && v <= 100 && v == (int)v)) {
                fprintf(stderr, "omni bench-audio: option %s: invalid value '%s'\n", a, argv[i]);
                return CLI_USAGE;
            }
            if (is_s) seconds = v;
            else reps = (int)v;
            continue;
        }
        int r = cli_parse_common(&o, argc, argv, &i);
        if (r < 0) return CLI_USAGE;
        if (r == 0) {
            fprintf(stderr, "omni bench-audio: unknown option '%s'\n", a);
            usage(stderr);
            return CLI_USAGE;
        }
    }
    double t_load;
    omni_model *m = bench_open_encoder_model(&o, BENCH_AUDIO_DEFAULT_CONFIG, "audio_config", &t_load);
    if (!m) return CLI_ERR;
    int32_t frames = (int32_t)(seconds * 100 + 0.5);
    if (frames < 1) frames = 1;
    float *feat = malloc(sizeof(float) * 128 * (size_t)frames);
    if (!feat) {
        omni_model_free(m);
        return cli_err("bench-audio", "out of memory");
    }
    /* log-mel-like values: the processor's features lie in about [-1.5, 1.5] */
    uint64_t s = 0x9E3779B97F4A7C15ull;
    for (size_t i = 0; i < (size_t)128 * frames; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        feat[i] = (float)((s >> 40) * (1.0 / 16777216.0)) * 2.0f - 1.0f;
    }
    omni_model_info in;
    omni_model_get_info(m, &in);
    printf("audio encoder %s%s on %s, %d threads\n", o.mp.synthetic ? "[synthetic] " : "",
           o.mp.weights == OMNI_WEIGHTS_Q8_0 ? "q8_0" : "as stored", in.device_name, o.mp.n_threads);
    printf("load %.2f s; %.2f s of audio = %d frames -> %d tokens; back-end scratch %.1f MiB\n", t_load, seconds,
           frames, omni_audio_n_tokens(frames), aenc_scratch_bytes(m, &frames, 1) / (1024.0 * 1024.0));
    int rc = 0;
    for (int r = 0; r < reps && !rc; r++) {
        const float *fp[1] = { feat };
        int32_t nt[1];
        float *emb = NULL;
        double t = now_s(), cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        rc = omni_encode_audio(m, fp, &frames, 1, &emb, nt);
        t = now_s() - t;
        cpu = clock_s(CLOCK_PROCESS_CPUTIME_ID) - cpu;
        free(emb);
        /* CPU time is reported too: on a shared machine the wall time says more about the neighbours */
        if (rc) cli_err("bench-audio", "%s", omni_model_error(m));
        else printf("run %d: %.3f s wall, %.3f s CPU (%.1f tokens/s, %.2fx real time)\n", r + 1, t, cpu, nt[0] / t,
                    seconds / t);
    }
    free(feat);
    omni_model_free(m);
    return rc ? CLI_ERR : CLI_OK;
}
