/* cli.c — the table of subcommands and the pieces they share: option parsing for the model, back-end and sampling
 * flags, a loading progress bar, and error printing. */
#include "cli.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const cli_command cli_commands[] = {
    { "info", cmd_info, "describe a checkpoint: architecture, parts, parameters, memory" },
    { "generate", cmd_generate, "answer one prompt, streaming the reply" },
    { "chat", cmd_chat, "line-mode text chat" },
    { "listen", cmd_listen, "answer one spoken question from the microphone (line mode)" },
    { "tokenize", cmd_tokenize, "text -> token ids (or --decode ids -> text)" },
    { "preprocess", cmd_preprocess, "audio/image file -> the model inputs the reference processor makes" },
    { "quantize", cmd_quantize, "write a Q8_0 copy of a checkpoint (valid safetensors)" },
    { "eval", cmd_eval, "run a checkpoint on reference inputs and write its outputs (validation)" },
    { "bench", cmd_bench, "prefill/decode speed, also with synthetic weights from a config.json" },
    { "bench-vision", cmd_bench_vision, "preprocessing + vision encoder speed for one image, also synthetic" },
    { "bench-audio", cmd_bench_audio, "audio encoder speed on S seconds of audio, also with synthetic weights" },
    { "devices", cmd_devices, "list the Vulkan devices and the features omni uses" },
    { NULL, NULL, NULL },
};

int cli_is_help(const char *a) { return !strcmp(a, "-h") || !strcmp(a, "--help"); }

int cli_err(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "omni %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return CLI_ERR;
}

void cli_opts_init(cli_opts *o) {
    memset(o, 0, sizeof *o);
    o->mp = omni_model_default_params();
    o->sp = omni_sampling_default_params();
    o->max_tokens = 512;
    o->think = -1;
}

static int parse_int(const char *s, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_float(const char *s, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !(v >= lo && v <= hi)) return -1;
    *out = v;
    return 0;
}

int cli_parse_common(cli_opts *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    const char *v = *i + 1 < argc ? argv[*i + 1] : NULL;
    long n;
    double d;
#define NEED()                                                                                                         \
    do {                                                                                                               \
        if (!v) {                                                                                                      \
            fprintf(stderr, "omni: option %s needs a value\n", a);                                                     \
            return -1;                                                                                                 \
        }                                                                                                              \
        (*i)++;                                                                                                        \
    } while (0)
#define BAD(what)                                                                                                      \
    do {                                                                                                               \
        fprintf(stderr, "omni: option %s: invalid value '%s' (%s)\n", a, v, what);                                     \
        return -1;                                                                                                     \
    } while (0)
    if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
        NEED();
        o->model = v;
    } else if (!strcmp(a, "--config")) {
        NEED();
        o->model = v;
        o->mp.synthetic = 1;
    } else if (!strcmp(a, "--backend")) {
        NEED();
        if (!strcmp(v, "cpu")) o->mp.backend = OMNI_BACKEND_CPU;
        else if (!strcmp(v, "vulkan")) o->mp.backend = OMNI_BACKEND_VULKAN;
        else if (!strcmp(v, "auto")) o->mp.backend = OMNI_BACKEND_AUTO;
        else BAD("cpu, vulkan or auto");
    } else if (!strcmp(a, "--device")) {
        NEED();
        if (parse_int(v, 0, 64, &n)) BAD("a device index from `omni devices`");
        o->mp.device = (int32_t)n;
    } else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) {
        NEED();
        if (parse_int(v, 0, 1024, &n)) BAD("0..1024, 0 = all cores");
        o->mp.n_threads = (int32_t)n;
    } else if (!strcmp(a, "--quant")) {
        NEED();
        if (!strcmp(v, "q8_0")) o->mp.weights = OMNI_WEIGHTS_Q8_0;
        else if (!strcmp(v, "none") || !strcmp(v, "bf16")) o->mp.weights = OMNI_WEIGHTS_AS_STORED;
        else BAD("q8_0 or none");
    } else if (!strcmp(a, "-c") || !strcmp(a, "--ctx")) {
        NEED();
        if (parse_int(v, 16, 1 << 22, &n)) BAD("16..4194304 tokens");
        o->mp.n_ctx = (int32_t)n;
    } else if (!strcmp(a, "-n") || !strcmp(a, "--max-tokens")) {
        NEED();
        if (parse_int(v, 0, 1 << 22, &n)) BAD("a token count");
        o->max_tokens = (int)n;
    } else if (!strcmp(a, "--temp") || !strcmp(a, "--temperature")) {
        NEED();
        if (parse_float(v, 0, 100, &d)) BAD("0..100, 0 = greedy");
        o->sp.temperature = (float)d;
        o->sampling_given = 1;
    } else if (!strcmp(a, "--top-k")) {
        NEED();
        if (parse_int(v, 0, 1 << 24, &n)) BAD("0 = off");
        o->sp.top_k = (int32_t)n;
        o->sampling_given = 1;
    } else if (!strcmp(a, "--top-p")) {
        NEED();
        if (parse_float(v, 0, 1, &d) || d == 0) BAD("(0, 1], 1 = off");
        o->sp.top_p = (float)d;
        o->sampling_given = 1;
    } else if (!strcmp(a, "--min-p")) {
        NEED();
        if (parse_float(v, 0, 1, &d)) BAD("[0, 1], 0 = off");
        o->sp.min_p = (float)d;
        o->sampling_given = 1;
    } else if (!strcmp(a, "--repeat-penalty")) {
        NEED();
        if (parse_float(v, 0.01, 100, &d)) BAD("> 0, 1 = off");
        o->sp.repetition_penalty = (float)d;
        o->sampling_given = 1;
    } else if (!strcmp(a, "--seed")) {
        NEED();
        if (parse_int(v, 0, 0x7fffffffL, &n)) BAD("a non-negative integer");
        o->sp.seed = (uint64_t)n;
    } else if (!strcmp(a, "--greedy")) {
        o->sp = omni_sampling_default_params();
        o->sampling_given = 1;
    } else if (!strcmp(a, "--think")) {
        NEED();
        if (!strcmp(v, "on")) o->think = 1;
        else if (!strcmp(v, "off")) o->think = 0;
        else BAD("on or off");
    } else if (!strcmp(a, "-v") || !strcmp(a, "--verbose")) {
        o->verbose = 1;
    } else return 0;
    return 1;
#undef NEED
#undef BAD
}

void cli_help_common(FILE *f, int with_sampling) {
    fprintf(f, "model and back-end:\n"
               "  -m, --model DIR        Hugging Face checkpoint folder (config.json, *.safetensors, tokenizer.json)\n"
               "      --config FILE      a config.json alone: synthetic random weights of that shape\n"
               "      --backend B        auto (default: a Vulkan GPU if present, else CPU), cpu or vulkan\n"
               "      --device N         Vulkan device index (see `omni devices`)\n"
               "  -t, --threads N        CPU threads (default: all cores)\n"
               "      --quant q8_0       quantize weights to Q8_0 while loading (default: as stored)\n"
               "  -c, --ctx N            context length in tokens (default: min(4096, model maximum))\n"
               "  -v, --verbose          log loading and timing details to stderr\n");
    if (with_sampling)
        fprintf(f, "sampling (default: the checkpoint's generation_config.json, else greedy):\n"
                   "  -n, --max-tokens N     stop after N generated tokens (default 512)\n"
                   "      --greedy           always take the most likely token\n"
                   "      --temp T           temperature (0 = greedy)\n"
                   "      --top-k K          keep the K most likely tokens (0 = off)\n"
                   "      --top-p P          keep the smallest set with probability mass P (1 = off)\n"
                   "      --min-p P          drop tokens below P x the top probability (0 = off)\n"
                   "      --repeat-penalty R penalise tokens already seen (1 = off)\n"
                   "      --seed S           random seed for sampling\n"
                   "      --think on|off     Qwen3 thinking mode for the reply (default: the template's)\n");
}

typedef struct {
    int tty;
    int last_pct;
    double t0;
} progress_state;

static int on_progress(const char *stage, int64_t done, int64_t total, void *ud) {
    progress_state *p = ud;
    if (!p->tty || total <= 0) return 0;
    int pct = (int)(100 * done / total);
    if (pct == p->last_pct) return 0;
    p->last_pct = pct;
    int w = 30, fill = pct * w / 100;
    fprintf(stderr, "\r%s [", stage);
    for (int i = 0; i < w; i++) fputc(i < fill ? '#' : '.', stderr);
    fprintf(stderr, "] %3d%%", pct);
    if (done >= total) fputc('\n', stderr);
    fflush(stderr);
    return 0;
}

static void log_sink(int level, const char *msg, void *ud) {
    (void)ud;
    static const char *names[] = { "debug", "info", "warning", "error" };
    fprintf(stderr, "omni: %s: %s\n", names[level < 0 ? 0 : level > 3 ? 3 : level], msg);
}

omni_model *cli_open_model(cli_opts *o) {
    if (!o->model) {
        fprintf(stderr, "omni: no model given (use -m DIR)\n");
        return NULL;
    }
    omni_log_set_sink(log_sink, NULL);
    omni_log_set_level(o->verbose ? OMNI_LOG_DEBUG : OMNI_LOG_WARN);
    static progress_state ps;
    ps.tty = isatty(2);
    ps.last_pct = -1;
    o->mp.progress = on_progress;
    o->mp.progress_user_data = &ps;
    omni_model *m = NULL;
    char err[600];
    int rc = omni_model_load(o->model, &o->mp, &m, err, sizeof err);
    if (rc) {
        if (ps.tty && ps.last_pct >= 0 && ps.last_pct < 100) fputc('\n', stderr);
        fprintf(stderr, "omni: %s\n", err);
        return NULL;
    }
    if (o->think >= 0) omni_chat_set_thinking(m, o->think);
    return m;
}

void cli_sampling_defaults(cli_opts *o, const omni_model *m) {
    if (o->sampling_given) return;
    uint64_t seed = o->sp.seed;
    o->sp = omni_model_sampling_defaults(m);
    o->sp.seed = seed;
}
