/* cmd_eval.c — `omni eval`: runs a checkpoint on inputs named as the Hugging Face processor names them and writes
 * its outputs, so any checkpoint can be validated against transformers tensor by tensor. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "safetensors.h"

static void usage(FILE *f) {
    fprintf(f, "usage: omni eval -m DIR -i INPUTS.safetensors -o OUT.safetensors [--generate N] [options]\n\n"
               "INPUTS holds `input_ids` [1,T] (int64 or int32). OUT receives `logits` [T, vocab] float32 for\n"
               "every prompt position and, with --generate N, `generated` [N] int64: the greedy continuation of\n"
               "the prompt (N tokens; an end-of-sequence id is kept like any other and does not stop it).\n\n"
               "  -i, --inputs FILE      input tensors\n"
               "  -o, --output FILE      where to write the outputs (written atomically)\n"
               "      --generate N       also generate N tokens greedily\n\n");
    cli_help_common(f, 0);
}

int cmd_eval(int argc, char **argv) {
    cli_opts o;
    cli_opts_init(&o);
    const char *in_path = NULL, *out_path = NULL;
    long n_gen = 0;
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        }
        if ((!strcmp(argv[i], "-i") || !strcmp(argv[i], "--inputs")) && i + 1 < argc) in_path = argv[++i];
        else if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) && i + 1 < argc) out_path = argv[++i];
        else if (!strcmp(argv[i], "--generate") && i + 1 < argc) {
            char *end;
            n_gen = strtol(argv[++i], &end, 10);
            if (*end || n_gen < 0 || n_gen > 1000000) {
                fprintf(stderr, "omni eval: --generate needs a token count\n");
                return CLI_USAGE;
            }
        } else {
            int r = cli_parse_common(&o, argc, argv, &i);
            if (r < 0) return CLI_USAGE;
            if (r == 0) {
                fprintf(stderr, "omni eval: unknown option '%s'\n", argv[i]);
                usage(stderr);
                return CLI_USAGE;
            }
        }
    }
    if (!in_path || !out_path) {
        fprintf(stderr, "omni eval: need -i INPUTS and -o OUT\n");
        usage(stderr);
        return CLI_USAGE;
    }
    omni_err e = { { 0 } };
    st_set *in = NULL;
    if (st_open_file(in_path, &in, &e)) return cli_err("eval", "%s", e.msg);
    const st_tensor *t = st_find(in, "input_ids");
    if (!t) {
        st_close(in);
        return cli_err("eval", "%s: no tensor 'input_ids'", in_path);
    }
    if ((t->dtype != ST_I64 && t->dtype != ST_I32) || t->n_dims < 1 || t->n_dims > 2 || (t->n_dims == 2 && t->shape[0] != 1)) {
        st_close(in);
        return cli_err("eval", "%s: 'input_ids' must be int64 or int32 of shape [1,T] or [T]", in_path);
    }
    int T = (int)t->shape[t->n_dims - 1];
    int32_t *ids = malloc(sizeof *ids * (size_t)(T > 0 ? T : 1));
    for (int i = 0; ids && i < T; i++) {
        if (t->dtype == ST_I64) {
            int64_t v;
            memcpy(&v, (const char *)t->data + (size_t)i * 8, 8);
            ids[i] = v < 0 || v > 0x7fffffff ? -1 : (int32_t)v;
        } else memcpy(&ids[i], (const char *)t->data + (size_t)i * 4, 4);
    }
    st_close(in);
    if (!ids || T <= 0) {
        free(ids);
        return cli_err("eval", "%s: 'input_ids' is empty", in_path);
    }
    if (!o.mp.n_ctx) o.mp.n_ctx = T + (int)n_gen + 1;
    omni_model *m = cli_open_model(&o);
    if (!m) {
        free(ids);
        return CLI_ERR;
    }
    omni_model_info info;
    omni_model_get_info(m, &info);
    size_t V = (size_t)info.vocab_size;
    omni_session *s = NULL;
    int rc = omni_session_new(m, NULL, &s);
    float *logits = rc ? NULL : malloc((size_t)T * V * sizeof *logits);
    float *last = malloc(V * sizeof *last);
    int64_t *gen = calloc((size_t)(n_gen ? n_gen : 1), sizeof *gen);
    int ret = CLI_OK;
    if (rc) ret = cli_err("eval", "%s", omni_model_error(m));
    else if (!logits || !last || !gen) ret = cli_err("eval", "out of memory");
    else if ((rc = omni_session_append(s, ids, T, logits, 1))) ret = cli_err("eval", "%s", omni_session_error(s));
    else {
        memcpy(last, logits + (size_t)(T - 1) * V, V * sizeof *last);
        for (long g = 0; g < n_gen; g++) {
            int32_t best = 0;
            for (size_t v = 1; v < V; v++)
                if (last[v] > last[best]) best = (int32_t)v;
            gen[g] = best;
            if (g + 1 < n_gen && (rc = omni_session_append(s, &best, 1, last, 0))) {
                ret = cli_err("eval", "%s", omni_session_error(s));
                break;
            }
        }
    }
    if (ret == CLI_OK) {
        st_writer *w = st_writer_new();
        int64_t shp[2] = { T, (int64_t)V }, gshape[1] = { n_gen };
        if (!w || st_writer_add_ref(w, "logits", ST_F32, 2, shp, logits, (size_t)T * V * 4) ||
            (n_gen && st_writer_add_ref(w, "generated", ST_I64, 1, gshape, gen, (size_t)n_gen * 8)) ||
            st_writer_save(w, out_path, &e))
            ret = cli_err("eval", "%s", e.msg[0] ? e.msg : "cannot write the outputs");
        st_writer_free(w);
    }
    free(gen);
    free(last);
    free(logits);
    free(ids);
    omni_session_free(s);
    omni_model_free(m);
    return ret;
}
