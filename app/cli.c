/* cli.c — the table of subcommands. */
#include "cli.h"

#include <stddef.h>

const cli_command cli_commands[] = {
    { NULL, NULL },
};
