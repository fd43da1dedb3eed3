/* cmd_info.c — `omni info`: what a checkpoint is, which parts it has, how big they are, what it needs in memory. */
#include <stdio.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: omni info -m DIR [options]\n\n"
               "Describes a checkpoint without running it: architecture, the parts present (thinker, audio and\n"
               "vision encoders, talker, code2wav), parameter counts per part, and the memory the weights need\n"
               "at BF16 and at Q8_0. DIR may also be a config.json alone (sizes computed from the config).\n\n");
    cli_help_common(f, 0);
}

static void human(char *out, size_t cap, double v, const char *unit) {
    const char *sfx[] = { "", " K", " M", " B", " T" };
    int i = 0;
    while (v >= 1000 && i < 4) v /= 1000, i++;
    snprintf(out, cap, "%.2f%s%s", v, sfx[i], unit);
}

static void gib(char *out, size_t cap, double bytes) { snprintf(out, cap, "%.2f GiB", bytes / (1024.0 * 1024 * 1024)); }

int cmd_info(int argc, char **argv) {
    cli_opts o;
    cli_opts_init(&o);
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        }
        int r = cli_parse_common(&o, argc, argv, &i);
        if (r < 0) return CLI_USAGE;
        if (r == 0) {
            fprintf(stderr, "omni info: unknown option '%s'\n", argv[i]);
            usage(stderr);
            return CLI_USAGE;
        }
    }
    o.mp.vocab_only = 1; /* describe from the tensor table; nothing is loaded */
    omni_model *m = cli_open_model(&o);
    if (!m) return CLI_ERR;
    omni_model_info in;
    omni_model_get_info(m, &in);
    char a[64], b[64], c[64];
    printf("architecture   %s\n", in.arch_name);
    printf("parts          thinker%s%s%s%s\n", in.has_audio ? ", audio encoder" : "", in.has_vision ? ", vision encoder" : "",
           in.has_talker ? ", talker + code predictor" : "", in.has_code2wav ? ", code2wav" : "");
    printf("text model     %d layers, hidden %d, %d heads (%d KV, head_dim %d), vocab %d, context %d\n", in.n_layers,
           in.hidden, in.n_heads, in.n_kv_heads, in.head_dim, in.vocab_size, in.max_ctx);
    if (in.n_experts) printf("experts        %d per layer, %d active per token\n", in.n_experts, in.n_experts_used);
    printf("parameters\n");
    struct { const char *name; int64_t n; } parts[] = { { "thinker", in.params_thinker }, { "audio encoder", in.params_audio },
        { "vision encoder", in.params_vision }, { "talker", in.params_talker }, { "code2wav", in.params_code2wav } };
    int64_t total = 0;
    for (int i = 0; i < 5; i++) {
        if (!parts[i].n) continue;
        human(a, sizeof a, (double)parts[i].n, "");
        printf("  %-14s %s (%lld)\n", parts[i].name, a, (long long)parts[i].n);
        total += parts[i].n;
    }
    human(a, sizeof a, (double)total, "");
    printf("  %-14s %s (%lld)\n", "total", a, (long long)total);
    human(a, sizeof a, (double)in.active_params, "");
    printf("active/token   %s (thinker, incl. embedding row and lm_head)\n", a);
    gib(a, sizeof a, (double)in.bytes_bf16);
    gib(b, sizeof b, (double)in.bytes_q8_0);
    gib(c, sizeof c, (double)in.kv_bytes_per_token * 4096);
    printf("memory         BF16 %s, Q8_0 %s (weights); KV cache %s per 4096 tokens (fp32)\n", a, b, c);
    printf("eos ids       ");
    for (int i = 0; i < in.n_eos; i++) printf(" %d", in.eos_ids[i]);
    printf("\n");
    omni_model_free(m);
    return CLI_OK;
}
