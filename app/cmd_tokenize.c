/* cmd_tokenize.c — `omni tokenize`: text to token ids exactly as Hugging Face tokenizers' encode(text,
 * add_special_tokens=False) gives them, or ids back to text with --decode. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: omni tokenize -m DIR TEXT...        print the token ids of TEXT (space-separated)\n"
               "       omni tokenize -m DIR -               read TEXT from stdin\n"
               "       omni tokenize -m DIR --decode ID...  print the text of the ids\n\n"
               "Several TEXT arguments are joined with single spaces. Added tokens written in the text\n"
               "(e.g. <|im_start|>) are matched whole. Only the tokenizer is loaded, not the weights.\n\n"
               "  -m, --model DIR        checkpoint folder with tokenizer.json\n"
               "      --decode           treat the arguments as ids and print their text\n");
}

int cmd_tokenize(int argc, char **argv) {
    cli_opts o;
    cli_opts_init(&o);
    int decode = 0;
    char **args = calloc((size_t)argc + 1, sizeof *args);
    int na = 0;
    if (!args) return CLI_ERR;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            free(args);
            return CLI_OK;
        }
        if (!strcmp(argv[i], "--decode")) decode = 1;
        else if (!strcmp(argv[i], "--")) {
            while (++i < argc) args[na++] = argv[i];
        } else if (argv[i][0] == '-' && argv[i][1]) {
            int r = cli_parse_common(&o, argc, argv, &i);
            if (r <= 0) {
                if (!r) fprintf(stderr, "omni tokenize: unknown option '%s'\n", argv[i]);
                free(args);
                return CLI_USAGE;
            }
        } else args[na++] = argv[i];
    }
    if (!na) {
        fprintf(stderr, "omni tokenize: nothing to %s\n", decode ? "decode" : "tokenize");
        usage(stderr);
        free(args);
        return CLI_USAGE;
    }
    o.mp.vocab_only = 1;
    omni_model *m = cli_open_model(&o);
    if (!m) {
        free(args);
        return CLI_ERR;
    }
    int rc = CLI_OK;
    if (decode) {
        omni_detok *d = omni_detok_new(m);
        char buf[1024];
        if (!d) rc = cli_err("tokenize", "%s", omni_model_error(m));
        for (int i = 0; i < na && rc == CLI_OK; i++) {
            char *end;
            errno = 0;
            long id = strtol(args[i], &end, 10);
            if (errno || *end || id < 0 || id > 0x7fffffff) {
                rc = cli_err("tokenize", "'%s' is not a token id", args[i]);
                break;
            }
            int n = omni_detok_push(d, (int32_t)id, buf, sizeof buf);
            if (n < 0) {
                rc = cli_err("tokenize", "token id %ld is not in the vocabulary", id);
                break;
            }
            fwrite(buf, 1, (size_t)n, stdout);
        }
        if (rc == CLI_OK) {
            int n = omni_detok_flush(d, buf, sizeof buf);
            if (n > 0) fwrite(buf, 1, (size_t)n, stdout);
            putchar('\n');
        }
        omni_detok_free(d);
    } else {
        size_t len = 0, cap = 1024;
        char *text = malloc(cap);
        if (na == 1 && !strcmp(args[0], "-")) {
            size_t r;
            while (text && (r = fread(text + len, 1, cap - len - 1, stdin)) > 0) {
                len += r;
                if (cap - len < 2) {
                    char *p = realloc(text, cap *= 2);
                    if (!p) {
                        free(text);
                        text = NULL;
                    } else text = p;
                }
            }
        } else {
            for (int i = 0; i < na && text; i++) {
                size_t l = strlen(args[i]);
                while (text && len + l + 2 > cap) {
                    char *p = realloc(text, cap *= 2);
                    if (!p) free(text);
                    text = p;
                }
                if (!text) break;
                if (i) text[len++] = ' ';
                memcpy(text + len, args[i], l);
                len += l;
            }
        }
        if (!text) rc = cli_err("tokenize", "out of memory");
        else {
            text[len] = 0;
            int capi = (int)len + 16;
            int32_t *ids = malloc(sizeof *ids * (size_t)capi);
            int n = ids ? omni_tokenize(m, text, len, ids, capi) : OMNI_E_NOMEM;
            if (n < 0) rc = cli_err("tokenize", "%s", omni_model_error(m)[0] ? omni_model_error(m) : omni_strerror(n));
            else {
                for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", ids[i]);
                putchar('\n');
            }
            free(ids);
            free(text);
        }
    }
    omni_model_free(m);
    free(args);
    return rc;
}
