/* cli_run.h — runs the omni binary under test ($OMNI_BIN, set by make test) for the CLI tests. */
#ifndef TEST_CLI_RUN_H
#define TEST_CLI_RUN_H

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

/* Runs `omni ARGS` with stderr folded into the output and no stdin; returns the exit code (-1 if it did not exit). */
static inline int cli_run(const char *args, char *out, size_t cap) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s 2>&1 </dev/null", getenv("OMNI_BIN"), args);
    FILE *f = popen(cmd, "r");
    if (!f) return -1;
    size_t n = fread(out, 1, cap - 1, f);
    out[n] = 0;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

#endif
