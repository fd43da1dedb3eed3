/* test_cli.c — the omni binary as a user meets it: --help on every subcommand, usage errors (exit 2), bad models
 * (exit 1 with one clear line on stderr), and info/bench on a synthetic config. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "cli_run.h"
#include "harness.h"


#define NEED_BIN()                                                                                                    \
    do {                                                                                                              \
        if (!getenv("OMNI_BIN")) SKIP("OMNI_BIN not set (make test sets it)");                                       \
    } while (0)

TEST(cli_help_everywhere) {
    NEED_BIN();
    static char out[16384];
    CHECK_EQ_INT(cli_run("--help", out, sizeof out), 0);
    CHECK(strstr(out, "usage: omni") != NULL);
    const char *cmds[] = { "info", "generate", "chat", "tokenize", "eval", "bench" };
    for (unsigned i = 0; i < sizeof cmds / sizeof *cmds; i++) {
        char a[64];
        snprintf(a, sizeof a, "%s --help", cmds[i]);
        int rc = cli_run(a, out, sizeof out);
        if (rc != 0 || !strstr(out, "usage: omni") || !strstr(out, cmds[i]))
            th_fail(__FILE__, __LINE__, "%s --help: exit %d, output '%.80s'", cmds[i], rc, out);
    }
}

TEST(cli_usage_errors_exit_2) {
    NEED_BIN();
    static char out[16384];
    CHECK_EQ_INT(cli_run("", out, sizeof out), 2);
    CHECK_EQ_INT(cli_run("frobnicate", out, sizeof out), 2);
    CHECK(strstr(out, "unknown command 'frobnicate'") != NULL);
    CHECK_EQ_INT(cli_run("generate -m x", out, sizeof out), 2); /* no prompt */
    CHECK(strstr(out, "no prompt") != NULL);
    CHECK_EQ_INT(cli_run("info --threads lots -m x", out, sizeof out), 2);
    CHECK(strstr(out, "--threads") != NULL);
    CHECK_EQ_INT(cli_run("bench --config assets/qwen3-0.6b.config.json -p -5", out, sizeof out), 2);
    CHECK_EQ_INT(cli_run("info --bogus", out, sizeof out), 2);
}

TEST(cli_bad_model_exit_1) {
    NEED_BIN();
    static char out[16384];
    CHECK_EQ_INT(cli_run("info -m /nonexistent/model", out, sizeof out), 1);
    CHECK(strstr(out, "/nonexistent/model") != NULL);
    CHECK(strchr(out, '\n') == out + strlen(out) - 1); /* one line */
    CHECK_EQ_INT(cli_run("generate -m /nonexistent/model -p hi", out, sizeof out), 1);
    CHECK_EQ_INT(cli_run("info -m tests", out, sizeof out), 1); /* a folder without config.json */
    CHECK(strstr(out, "config.json") != NULL);
}

TEST(cli_info_synthetic_omni_shape) {
    NEED_BIN();
    static char out[16384];
    CHECK_EQ_INT(cli_run("info --config assets/qwen3-omni-30b-a3b.config.json", out, sizeof out), 0);
    CHECK(strstr(out, "Qwen3OmniMoeForConditionalGeneration") != NULL);
    CHECK(strstr(out, "48 layers") != NULL);
    CHECK(strstr(out, "128 per layer, 8 active") != NULL);
    CHECK(strstr(out, "30532646912") != NULL); /* thinker: embedding + 48 layers + norm + lm_head */
    CHECK(strstr(out, "3.04 B") != NULL);      /* read per token */
}

TEST(cli_info_fixture_counts_parts) {
    NEED_BIN();
    static char out[16384];
    char a[512];
    snprintf(a, sizeof a, "info -m %s/qwen3-omni", FIXTURES);
    CHECK_EQ_INT(cli_run(a, out, sizeof out), 0);
    CHECK(strstr(out, "audio encoder") && strstr(out, "vision encoder") && strstr(out, "talker") && strstr(out, "code2wav"));
}

TEST(cli_bench_synthetic_tiny) {
    NEED_BIN();
    static char out[16384];
    char a[512];
    snprintf(a, sizeof a, "bench -m %s/qwen3-moe -p 16 -n 4 -r 1 --backend cpu", FIXTURES);
    CHECK_EQ_INT(cli_run(a, out, sizeof out), 0);
    CHECK(strstr(out, "| pp16") && strstr(out, "| tg4"));
    snprintf(a, sizeof a, "bench --config %s/qwen3-moe/config.json -p 8 -n 2 -d 4 -r 1 --quant q8_0 --backend cpu", FIXTURES);
    CHECK_EQ_INT(cli_run(a, out, sizeof out), 0);
    CHECK(strstr(out, "[synthetic]") && strstr(out, "tg2 @ d4") && strstr(out, "q8_0"));
}
