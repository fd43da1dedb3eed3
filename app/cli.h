/* cli.h — the subcommands of the omni binary and what they share: common model/sampling options, opening a model
 * with a progress bar, printing errors. */
#ifndef OMNI_CLI_H
#define OMNI_CLI_H

#include <stdio.h>

#include "omni.h"

typedef struct {
    const char *name;
    int (*run)(int argc, char **argv); /* argv[0] is the command name; returns the process exit code */
    const char *summary;
} cli_command;

extern const cli_command cli_commands[]; /* NULL-terminated, defined in cli.c */

/* exit codes */
enum { CLI_OK = 0, CLI_ERR = 1, CLI_USAGE = 2 };

/* Options every model-using command accepts. */
typedef struct {
    const char *model;          /* -m DIR (or a config.json for synthetic weights) */
    omni_model_params mp;
    omni_sampling_params sp;
    int sampling_given;         /* some sampling flag was set on the command line */
    int max_tokens;             /* -n */
    int verbose;
    int think;                  /* --think on|off: -1 = the template's default */
} cli_opts;

void cli_opts_init(cli_opts *o);
/* Tries to consume argv[*i] (and its value) as a common option. Returns 1 if consumed, 0 if not an option of
 * ours, -1 on a bad value (message printed). */
int cli_parse_common(cli_opts *o, int argc, char **argv, int *i);
/* Help text of the common options (model, back-end, sampling). */
void cli_help_common(FILE *f, int with_sampling);
/* Opens o->model with a progress bar on stderr when it is a terminal; prints the error and returns NULL. */
omni_model *cli_open_model(cli_opts *o);
/* Fills sampling defaults from the checkpoint's generation_config.json unless flags were given. */
void cli_sampling_defaults(cli_opts *o, const omni_model *m);
int cli_err(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3))); /* prints, returns CLI_ERR */
int cli_is_help(const char *a);

int cmd_info(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_preprocess(int argc, char **argv);
int cmd_listen(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_bench_vision(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_bench_audio(int argc, char **argv); /* cmd_bench_audio.c */
int cmd_devices(int argc, char **argv);

#endif
