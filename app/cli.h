/* cli.h — the subcommands of the omni binary and helpers they share (option parsing, model opening). */
#ifndef OMNI_CLI_H
#define OMNI_CLI_H

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the command name; returns the process exit code */
} cli_command;

extern const cli_command cli_commands[]; /* NULL-terminated, defined in cli.c */

/* exit codes */
enum { CLI_OK = 0, CLI_ERR = 1, CLI_USAGE = 2 };

#endif
