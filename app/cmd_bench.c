/* cmd_bench.c — `omni bench`: prefill (ppN) and decode (tgN, optionally at a context depth) speed in the manner of
 * llama-bench, on a real checkpoint or on synthetic random weights built from any config.json (so the real
 * Qwen3-Omni-30B-A3B shape can be measured without its 66 GB of weights). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: omni bench (-m DIR | --config CONFIG.json) [-p 512] [-n 128] [-d 0] [-r 3] [options]\n\n"
               "Measures prompt processing (ppP: P tokens in one prefill) and text generation (tgN: N tokens one\n"
               "at a time, each with full logits) in tokens/s, as mean ± standard deviation over R repetitions.\n"
               "With --config, weights are random (synthetic) and nothing but the config is read.\n\n"
               "  -m, --model DIR        checkpoint folder (weights loaded as for generate)\n"
               "      --config FILE      a config.json: synthetic weights of that shape (e.g. assets/*.config.json)\n"
               "  -p, --prompt N         prefill length (0 = skip), default 512\n"
               "  -n, --gen N            decode length (0 = skip), default 128\n"
               "  -d, --depth D          context already in the cache before decoding, default 0\n"
               "  -r, --reps R           repetitions, default 3\n"
               "      --profile          split decode time per token by op class (adds synchronisation)\n\n");
    cli_help_common(f, 0);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void stats(const double *v, int n, double *mean, double *sd) {
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) q += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? __builtin_sqrt(q / (n - 1)) : 0;
}

int cmd_bench(int argc, char **argv) {
    cli_opts o;
    cli_opts_init(&o);
    long P = 512, N = 128, Dp = 0, R = 3;
    int profile = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        }
        if (!strcmp(argv[i], "--profile")) {
            profile = 1;
            o.mp.profile = 1;
            continue;
        }
        long *dst = NULL;
        if (!strcmp(argv[i], "-p") || !strcmp(argv[i], "--prompt")) dst = &P;
        else if (!strcmp(argv[i], "-n") || !strcmp(argv[i], "--gen")) dst = &N;
        else if (!strcmp(argv[i], "-d") || !strcmp(argv[i], "--depth")) dst = &Dp;
        else if (!strcmp(argv[i], "-r") || !strcmp(argv[i], "--reps")) dst = &R;
        if (dst) {
            char *end;
            if (i + 1 >= argc || (*dst = strtol(argv[++i], &end, 10), *end) || *dst < 0 || *dst > (1 << 22)) {
                fprintf(stderr, "omni bench: %s needs a non-negative count\n", argv[i - 1]);
                return CLI_USAGE;
            }
            continue;
        }
        int r = cli_parse_common(&o, argc, argv, &i);
        if (r < 0) return CLI_USAGE;
        if (r == 0) {
            fprintf(stderr, "omni bench: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return CLI_USAGE;
        }
    }
    if (R < 1) R = 1;
    long need = (P > Dp + N ? P : Dp + N) + 1;
    if (!o.mp.n_ctx) o.mp.n_ctx = (int32_t)need;
    double tl0 = now_s();
    omni_model *m = cli_open_model(&o);
    if (!m) return CLI_ERR;
    double t_load = now_s() - tl0;
    omni_model_info in;
    omni_model_get_info(m, &in);
    omni_session *s = NULL;
    if (omni_session_new(m, NULL, &s)) {
        fprintf(stderr, "omni: %s\n", omni_model_error(m));
        omni_model_free(m);
        return CLI_ERR;
    }
    int32_t *ids = malloc(sizeof *ids * (size_t)need);
    uint64_t x = 88172645463325252ull;
    for (long i = 0; i < need; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = (int32_t)(x % (uint64_t)in.vocab_size);
    }
    double *pp = calloc((size_t)R, sizeof *pp), *tg = calloc((size_t)R, sizeof *tg);
    int rc = 0;
    /* one untimed warm-up pass (first-touch page faults, pipeline creation) */
    if (P || N) {
        omni_session_reset(s);
        int32_t wn = P ? (P < 16 ? (int32_t)P : 16) : 1;
        rc = omni_session_append(s, ids, wn, NULL, 0);
    }
    double prof_ms[OMNI_PROFILE_MAX] = { 0 }, junk[OMNI_PROFILE_MAX] = { 0 };
    const char *const *prof_names = NULL;
    int n_prof = 0;
    if (profile) omni_model_profile(m, junk, NULL); /* drop the warm-up's share */
    for (long r = 0; r < R && !rc; r++) {
        if (P) {
            omni_session_reset(s);
            double t0 = now_s();
            rc = omni_session_append(s, ids, (int)P, NULL, 0);
            pp[r] = P / (now_s() - t0);
        }
        if (N && !rc) {
            omni_session_reset(s);
            if (Dp) rc = omni_session_append(s, ids, (int)Dp, NULL, 0);
            if (profile) omni_model_profile(m, junk, NULL);
            double t0 = now_s();
            for (long i = 0; i < N && !rc; i++) rc = omni_session_append(s, &ids[Dp + i], 1, NULL, 0);
            tg[r] = N / (now_s() - t0);
            if (profile) n_prof = omni_model_profile(m, prof_ms, &prof_names);
        }
    }
    if (rc) fprintf(stderr, "omni bench: %s\n", omni_session_error(s));
    else {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        printf("model: %s%s, %.2f B params (%.2f B active/token), weights %.2f GiB (%s), load %.1f s\n", in.arch_name,
               o.mp.synthetic ? " [synthetic]" : "", in.params_thinker / 1e9, in.active_params / 1e9,
               in.weight_bytes / 1073741824.0, o.mp.weights == OMNI_WEIGHTS_Q8_0 ? "q8_0" : "as stored", t_load);
        printf("backend: %s (%s), KV cache %.1f MiB for %ld tokens, peak RSS %.2f GiB\n", in.backend_name,
               in.device_name, (double)in.kv_bytes_per_token * need / 1048576.0, need, ru.ru_maxrss / 1048576.0);
        printf("| %-12s | %14s |\n", "test", "t/s");
        printf("|--------------|----------------|\n");
        double mean, sd;
        char name[64];
        if (P) {
            stats(pp, (int)R, &mean, &sd);
            snprintf(name, sizeof name, "pp%ld", P);
            printf("| %-12s | %8.2f ± %3.1f |\n", name, mean, sd);
        }
        if (N) {
            stats(tg, (int)R, &mean, &sd);
            snprintf(name, sizeof name, Dp ? "tg%ld @ d%ld" : "tg%ld", N, Dp);
            printf("| %-12s | %8.2f ± %3.1f |\n", name, mean, sd);
            /* bytes of weights read per decoded token vs wall time: the memory-bound figure of merit */
            double bytes_tok = (double)in.active_params * (double)in.weight_bytes / (double)(in.params_thinker ? in.params_thinker : 1);
            printf("decode reads ~%.2f GB of weights per token: %.1f GB/s effective\n", bytes_tok / 1e9, bytes_tok * mean / 1e9);
            if (profile && n_prof) {
                double tot = 0;
                for (int c = 0; c < n_prof; c++) tot += prof_ms[c];
                printf("decode time per token by op class (profiled run, %s):\n", in.backend_name);
                for (int c = 0; c < n_prof; c++)
                    if (prof_ms[c] > 0)
                        printf("  %-12s %8.3f ms  %5.1f%%\n", prof_names[c], prof_ms[c] / (double)(N * R),
                               100 * prof_ms[c] / tot);
            } else if (profile) printf("(the %s back-end cannot profile)\n", in.backend_name);
        }
    }
    free(pp);
    free(tg);
    free(ids);
    omni_session_free(s);
    omni_model_free(m);
    return rc ? CLI_ERR : CLI_OK;
}
