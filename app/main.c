/* main.c — the omni command line: parses the subcommand and hands over to app/cmd_*.c. The only exit(). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "omni — a private, offline voice-and-vision assistant (Qwen3-Omni)\n\n"
            "usage: omni <command> [options]\n\n"
            "commands:\n");
    for (const cli_command *c = cli_commands; c->name; c++) fprintf(f, "  %-10s %s\n", c->name, c->summary);
    fprintf(f, "\nRun `omni <command> --help` for the options of each command.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) {
        usage(stdout);
        return 0;
    }
    for (const cli_command *c = cli_commands; c->name; c++)
        if (!strcmp(c->name, cmd)) exit(c->run(argc - 1, argv + 1));
    fprintf(stderr, "omni: unknown command '%s' (try omni --help)\n", cmd);
    return 2;
}
