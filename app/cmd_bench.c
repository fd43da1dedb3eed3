/* cmd_bench.c — `omni bench`: prefill (ppN) and decode (tgN, at one or more context depths) speed in the manner of
 * llama-bench, on a real checkpoint or on synthetic random weights built from any config.json (so the real
 * Qwen3-Omni-30B-A3B shape can be measured without its 66 GB of weights). With --profile, one extra decode pass
 * and one extra prefill pass after the timed ones split the time by op class (the timed numbers are not disturbed). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: omni bench (-m DIR | --config CONFIG.json) [-p 512] [-n 128] [-d 0[,4096...]] [-r 3] [options]\n\n"
               "Measures prompt processing (ppP: P tokens in one prefill) and text generation (tgN: N tokens one\n"
               "at a time, each with full logits) in tokens/s, as mean ± standard deviation over R repetitions;\n"
               "genN is generation as `omni generate` runs it: each token sampled on the host (temperature 0.7,\n"
               "top-k 20, top-p 0.8, repetition penalty 1.05) and fed back.\n"
               "With --config, weights are random (synthetic) and nothing but the config is read.\n\n"
               "  -m, --model DIR        checkpoint folder (weights loaded as for generate)\n"
               "      --config FILE      a config.json: synthetic weights of that shape (e.g. assets/*.config.json)\n"
               "  -p, --prompt N         prefill length (0 = skip), default 512\n"
               "  -n, --gen N            decode length (0 = skip), default 128\n"
               "  -d, --depth D[,D...]   context already in the cache before decoding, default 0\n"
               "  -r, --reps R           repetitions, default 3\n"
               "      --profile          after the timed runs, one decode and one prefill pass split by op class\n\n");
    cli_help_common(f, 0);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* the per-kernel split of a profiled pass, where the back-end traces dispatches (OMNI_VK_TRACE=1), largest first */
#define BENCH_KERNELS 64
typedef struct {
    char name[48];
    double ms;
    int calls;
} bench_kernel;

static int read_kernels(omni_model *m, bench_kernel *k) {
    const char *names[BENCH_KERNELS];
    double ms[BENCH_KERNELS];
    int calls[BENCH_KERNELS];
    int n = omni_model_profile_kernels(m, names, ms, calls, BENCH_KERNELS);
    for (int i = 0; i < n; i++) {
        snprintf(k[i].name, sizeof k[i].name, "%s", names[i]);
        k[i].ms = ms[i], k[i].calls = calls[i];
        for (int j = i; j > 0 && k[j].ms > k[j - 1].ms; j--) {
            bench_kernel t = k[j];
            k[j] = k[j - 1], k[j - 1] = t;
        }
    }
    return n;
}

static void print_kernels(const bench_kernel *k, int n, double per, const char *unit) {
    for (int i = 0; i < n; i++)
        printf("    %-40s %8.3f ms %7.1f calls%s\n", k[i].name, k[i].ms / per, k[i].calls / per, unit);
}

static void stats(const double *v, int n, double *mean, double *sd) {
    double s = 0, q = 0;
    for (int i = 0; i < n; i++) s += v[i];
    *mean = s / n;
    for (int i = 0; i < n; i++) q += (v[i] - *mean) * (v[i] - *mean);
    *sd = n > 1 ? sqrt(q / (n - 1)) : 0;
}

static int parse_count(const char *s, long *out) {
    char *end;
    *out = strtol(s, &end, 10);
    return *end || end == s || *out < 0 || *out > (1L << 22);
}

/* decode N tokens one at a time on top of D tokens of context; returns tokens/s or < 0 on error */
/* The host's sampler on the session's logits after one more token, ms per call (its repetition penalty over 64
 * seen ids): greedy, transformers-style top-k 20 / top-p 0.8 at temperature 0.7, and top-p 0.95 alone (a whole
 * vocabulary's mass); <0 where it failed */
static void sampling_run(omni_session *s, const int32_t *ids, int32_t V, double out[3]) {
    float *lg = malloc((size_t)V * 4), *t = malloc((size_t)V * 4);
    out[0] = out[1] = out[2] = -1;
    if (!lg || !t || omni_session_append(s, ids, 1, lg, 0)) {
        free(lg), free(t);
        return;
    }
    for (int c = 0; c < 3; c++) {
        omni_sampling_params p = omni_sampling_default_params();
        p.repetition_penalty = 1.05f;
        if (c > 0) p.temperature = 0.7f, p.top_p = c == 1 ? 0.8f : 0.95f, p.top_k = c == 1 ? 20 : 0;
        omni_sampler *smp = omni_sampler_new(&p, V);
        if (!smp) continue;
        for (int i = 0; i < 64; i++) omni_sampler_accept(smp, (int32_t)((i * 2654435761u) % (uint32_t)V));
        const int R = 20;
        double t0 = now_s();
        for (int r = 0; r < R; r++) {
            memcpy(t, lg, (size_t)V * 4);
            omni_sampler_sample(smp, t);
        }
        out[c] = (now_s() - t0) * 1e3 / R;
        omni_sampler_free(smp);
    }
    free(lg), free(t);
}

/* N tokens generated after a one-token prompt, each sampled and fed back (omni_generate), tokens/s (an end of
 * text drawn early ends it; the rate counts what was generated) */
static double generate_run(omni_session *s, const int32_t *ids, long N, int *rc) {
    omni_session_reset(s);
    if ((*rc = omni_session_append(s, ids, 1, NULL, 0))) return -1;
    omni_sampling_params p = omni_sampling_default_params();
    p.temperature = 0.7f, p.top_k = 20, p.top_p = 0.8f, p.repetition_penalty = 1.05f, p.seed = 1;
    int n_out = 0;
    double t0 = now_s();
    *rc = omni_generate(s, &p, (int)N, NULL, NULL, NULL, &n_out);
    return *rc || n_out < 1 ? -1 : n_out / (now_s() - t0);
}

static double decode_run(omni_session *s, const int32_t *ids, long D, long N, int *rc) {
    omni_session_reset(s);
    if (D && (*rc = omni_session_append(s, ids, (int)D, NULL, 0))) return -1;
    double t0 = now_s();
    for (long i = 0; i < N && !*rc; i++) *rc = omni_session_append(s, &ids[D + i], 1, NULL, 0);
    return *rc ? -1 : N / (now_s() - t0);
}

int cmd_bench(int argc, char **argv) {
    cli_opts o;
    cli_opts_init(&o);
    long P = 512, N = 128, R = 3, depths[16] = { 0 };
    int n_depth = 1, profile = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        }
        if (!strcmp(argv[i], "--profile")) {
            profile = 1;
            continue;
        }
        if (!strcmp(argv[i], "-d") || !strcmp(argv[i], "--depth")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "omni bench: %s needs a depth list (e.g. 0,4096)\n", argv[i]);
                return CLI_USAGE;
            }
            char buf[256];
            snprintf(buf, sizeof buf, "%s", argv[++i]);
            n_depth = 0;
            for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
                if (n_depth == 16 || parse_count(tok, &depths[n_depth])) {
                    fprintf(stderr, "omni bench: -d wants up to 16 comma-separated token counts\n");
                    return CLI_USAGE;
                }
                n_depth++;
            }
            if (!n_depth) return CLI_USAGE;
            continue;
        }
        long *dst = NULL;
        if (!strcmp(argv[i], "-p") || !strcmp(argv[i], "--prompt")) dst = &P;
        else if (!strcmp(argv[i], "-n") || !strcmp(argv[i], "--gen")) dst = &N;
        else if (!strcmp(argv[i], "-r") || !strcmp(argv[i], "--reps")) dst = &R;
        if (dst) {
            if (i + 1 >= argc || parse_count(argv[++i], dst)) {
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
    long need = P + 1;
    for (int d = 0; d < n_depth; d++)
        if (depths[d] + N + 1 > need) need = depths[d] + N + 1;
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
    for (long i = 0; ids && i < need; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        ids[i] = (int32_t)(x % (uint64_t)in.vocab_size);
    }
    double *pp = calloc((size_t)R, sizeof *pp), *tg = calloc((size_t)R * n_depth, sizeof *tg);
    int rc = ids && pp && tg ? 0 : OMNI_E_NOMEM;
    /* one untimed warm-up (pipeline creation, first-touch faults) of both paths. The prefill warm-up is as long as
     * the timed prompt: a GPU back-end grows its scratch buffers to the largest chunk on first use, and a 64-token
     * warm-up left that (~55 ms at pp512 on an H100) in the first timed run, the cause of a large spread */
    if (!rc) {
        omni_session_reset(s);
        rc = omni_session_append(s, ids, P >= 2 ? (int)P : 2, NULL, 0);
        if (!rc) rc = omni_session_append(s, ids, 1, NULL, 0);
        /* and a decode step at every depth: a GPU kernel may specialise on the context length (chunk sizes) */
        for (int d = 0; d < n_depth && N && !rc; d++) {
            omni_session_reset(s);
            if (depths[d]) rc = omni_session_append(s, ids, (int)depths[d], NULL, 0);
            if (!rc) rc = omni_session_append(s, ids + depths[d], 1, NULL, 0);
        }
        /* then half a second of decode steps: an idle GPU runs at low clocks and raises them only under sustained
         * load (H100: 345 MHz idle, 1980 MHz after ~0.2 s of work); without this the first timed repetition ran
         * ~10% slower and the spread hid the differences we measure (OMNI_BENCH_WARMUP_S=seconds changes it) */
        const char *ws = getenv("OMNI_BENCH_WARMUP_S");
        double tw = now_s(), warm_s = ws ? atof(ws) : 0.5;
        omni_session_reset(s);
        for (long i = 0; !rc && now_s() - tw < warm_s; i++) {
            if (!N || i + 1 >= need) omni_session_reset(s), i = 0; /* prefill only: whole prompts again */
            rc = omni_session_append(s, ids, N ? 1 : (P >= 2 ? (int)P : 2), NULL, 0);
        }
    }
    for (long r = 0; r < R && !rc; r++) {
        if (P) {
            omni_session_reset(s);
            double t0 = now_s();
            rc = omni_session_append(s, ids, (int)P, NULL, 0);
            pp[r] = P / (now_s() - t0);
        }
        for (int d = 0; d < n_depth && N && !rc; d++) tg[d * R + r] = decode_run(s, ids, depths[d], N, &rc);
    }
    double *gen = calloc((size_t)R, sizeof *gen);
    for (long r = 0; r < R && N && gen && !rc; r++) gen[r] = generate_run(s, ids, N, &rc);
    double samp_ms[3] = { -1, -1, -1 };
    if (N && !rc) {
        omni_session_reset(s);
        sampling_run(s, ids, in.vocab_size, samp_ms);
    }
    /* profiled pass: decode at the first depth with op-class marks */
    double prof_ms[OMNI_PROFILE_MAX] = { 0 }, junk[OMNI_PROFILE_MAX] = { 0 };
    const char *const *prof_names = NULL;
    int n_prof = 0, n_dec_k = 0, n_pf_k = 0;
    bench_kernel dec_k[BENCH_KERNELS], pf_k[BENCH_KERNELS];
    if (profile && N && !rc) {
        omni_model_set_profile(m, 1);
        omni_session_reset(s);
        if (depths[0]) rc = omni_session_append(s, ids, (int)depths[0], NULL, 0);
        omni_model_profile(m, junk, NULL);
        read_kernels(m, dec_k);
        for (long i = 0; i < N && !rc; i++) rc = omni_session_append(s, &ids[depths[0] + i], 1, NULL, 0);
        n_prof = omni_model_profile(m, prof_ms, &prof_names);
        n_dec_k = read_kernels(m, dec_k);
        omni_model_set_profile(m, 0);
    }
    /* profiled pass: one prefill of P tokens with op-class marks */
    double pf_ms[OMNI_PROFILE_MAX] = { 0 };
    int n_pf = 0;
    if (profile && P && !rc) {
        omni_model_set_profile(m, 1);
        omni_session_reset(s);
        omni_model_profile(m, junk, NULL);
        read_kernels(m, pf_k);
        rc = omni_session_append(s, ids, (int)P, NULL, 0);
        n_pf = omni_model_profile(m, pf_ms, &prof_names);
        n_pf_k = read_kernels(m, pf_k);
        omni_model_set_profile(m, 0);
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
        printf("| %-14s | %16s |\n", "test", "t/s");
        printf("|----------------|------------------|\n");
        double mean, sd;
        char name[64];
        if (P) {
            stats(pp, (int)R, &mean, &sd);
            snprintf(name, sizeof name, "pp%ld", P);
            printf("| %-14s | %9.2f ± %4.1f |\n", name, mean, sd);
        }
        /* weights read per decoded token: the active parameters at the stored bytes per parameter */
        double bytes_tok = (double)in.active_params * (double)in.weight_bytes / (double)(in.params_thinker ? in.params_thinker : 1);
        for (int d = 0; d < n_depth && N; d++) {
            stats(tg + d * R, (int)R, &mean, &sd);
            snprintf(name, sizeof name, depths[d] ? "tg%ld @ d%ld" : "tg%ld", N, depths[d]);
            printf("| %-14s | %9.2f ± %4.1f |   %.1f GB/s of weights\n", name, mean, sd, bytes_tok * mean / 1e9);
        }
        if (N && gen) {
            stats(gen, (int)R, &mean, &sd);
            snprintf(name, sizeof name, "gen%ld", N);
            printf("| %-14s | %9.2f ± %4.1f |   sampled on the host (T 0.7, top-k 20, top-p 0.8)\n", name, mean, sd);
        }
        if (N) printf("decode reads ~%.2f GB of weights per token\n", bytes_tok / 1e9);
        if (samp_ms[0] >= 0)
            printf("host sampling per token (%d logits): greedy %.3f ms, T 0.7 top-k 20 top-p 0.8 %.3f ms, top-p 0.95 "
                   "%.3f ms%s\n", in.vocab_size, samp_ms[0], samp_ms[1], samp_ms[2],
                   o.mp.synthetic ? " (random weights give flat logits: top-p alone at its slowest)" : "");
        if (profile && n_prof) {
            double tot = 0;
            for (int c = 0; c < n_prof; c++) tot += prof_ms[c];
            printf("decode time per token by op class (one profiled pass of %ld tokens at depth %ld):\n", N, depths[0]);
            for (int c = 0; c < n_prof; c++)
                if (prof_ms[c] > 0)
                    printf("  %-12s %8.3f ms  %5.1f%%\n", prof_names[c], prof_ms[c] / (double)N, 100 * prof_ms[c] / tot);
            if (n_dec_k) printf("  by kernel and grid (each from the previous dispatch's end to its own):\n");
            print_kernels(dec_k, n_dec_k, (double)N, "/token");
        } else if (profile && N) printf("(the %s back-end cannot profile)\n", in.backend_name);
        if (profile && n_pf) {
            double tot = 0;
            for (int c = 0; c < n_pf; c++) tot += pf_ms[c];
            printf("prefill time by op class (one profiled pass of %ld tokens, %.1f ms):\n", P, tot);
            for (int c = 0; c < n_pf; c++)
                if (pf_ms[c] > 0) printf("  %-12s %8.3f ms  %5.1f%%\n", prof_names[c], pf_ms[c], 100 * pf_ms[c] / tot);
            if (n_pf_k) printf("  by kernel and grid (each from the previous dispatch's end to its own):\n");
            print_kernels(pf_k, n_pf_k, 1.0, "");
        }
    }
    free(pp);
    free(tg);
    free(gen);
    free(ids);
    omni_session_free(s);
    omni_model_free(m);
    return rc ? CLI_ERR : CLI_OK;
}
