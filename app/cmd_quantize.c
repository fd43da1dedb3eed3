/* cmd_quantize.c — `omni quantize`: writes a Q8_0 copy of a checkpoint that is still valid safetensors, so later
 * loads skip the quantization. Each quantized matrix NAME becomes NAME (int8 [rows, cols]) plus NAME_scale (fp16
 * [rows, cols/32], one scale per block of 32); everything else is copied as it is. Shards keep their names and the
 * index is rewritten; the other files of the folder (config, tokenizer, templates) are copied. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <cJSON.h>

#include "backend.h"
#include "cli.h"
#include "safetensors.h"
#include "util.h"

static void usage(FILE *f) {
    fprintf(f, "usage: omni quantize -m DIR -o OUTDIR [--type q8_0]\n\n"
               "Writes a Q8_0 checkpoint: every linear weight matrix (2-D, a multiple of 32 columns, and the ViT patch\n"
               "embedding flattened to 2-D; not the MoE routers, position tables or codec tables) becomes int8 NAME\n"
               "+ fp16 NAME_scale [rows, cols/32];\n"
               "other tensors and files are copied. Load it like any checkpoint: omni generate -m OUTDIR ...\n\n"
               "  -m, --model DIR        the BF16/F16/F32 checkpoint folder\n"
               "  -o, --output OUTDIR    the new folder (created; must not hold a checkpoint already)\n"
               "      --type q8_0        the only type so far\n");
}

/* Linear layers only: routers, gates and lookup tables stay as they are (routing and positions are sensitive). */
/* The ViT's patch embedding is a Conv3d whose kernel equals its stride: a Linear over the flattened patch, which the
 * loader binds as [hidden, C·T·P·P] — so it is quantized (and stored) as that 2-D matrix. */
static int flattened_linear(const st_tensor *t) {
    size_t n = strlen(t->name);
    return t->n_dims > 2 && n >= 23 && !strcmp(t->name + n - 23, "patch_embed.proj.weight");
}

static int quantizable(const st_tensor *t) {
    if (flattened_linear(t)) {
        int64_t c = 1;
        for (int d = 1; d < t->n_dims; d++) c *= t->shape[d];
        return c % 32 == 0 && (t->dtype == ST_BF16 || t->dtype == ST_F16 || t->dtype == ST_F32);
    }
    if (t->n_dims != 2 || t->shape[1] % 32 || t->shape[0] < 2) return 0;
    if (t->dtype != ST_BF16 && t->dtype != ST_F16 && t->dtype != ST_F32) return 0;
    size_t n = strlen(t->name);
    if (n < 7 || strcmp(t->name + n - 7, ".weight")) return 0;
    static const char *deny[] = { "mlp.gate.weight", "shared_expert_gate.weight", "pos_embed.weight",
                                  "codec_embedding", "code_embedding" };
    for (unsigned i = 0; i < sizeof deny / sizeof *deny; i++)
        if (strstr(t->name, deny[i])) return 0;
    return 1;
}

static int copy_file(const char *src, const char *dst) {
    FILE *a = fopen(src, "rb"), *b = a ? fopen(dst, "wb") : NULL;
    int rc = !a || !b;
    char buf[65536];
    size_t n;
    while (!rc && (n = fread(buf, 1, sizeof buf, a)) > 0) rc = fwrite(buf, 1, n, b) != n;
    if (a) fclose(a);
    if (b && fclose(b)) rc = 1;
    return rc;
}

/* Quantizes one shard file into out_path. */
static int quantize_file(const char *in_path, const char *out_path, int64_t *n_quant, omni_err *e) {
    st_set *in = NULL;
    int rc = st_open_file(in_path, &in, e);
    if (rc) return rc;
    st_writer *w = st_writer_new();
    if (!w) {
        st_close(in);
        return omni_fail(e, OMNI_E_NOMEM, "out of memory");
    }
    for (int i = 0; i < st_count(in) && !rc; i++) {
        const st_tensor *t = st_get(in, i);
        if (!quantizable(t)) {
            rc = st_writer_add_ref(w, t->name, t->dtype, t->n_dims, t->shape, t->data, t->nbytes);
            continue;
        }
        int64_t R = t->shape[0], C = 1;
        for (int d = 1; d < t->n_dims; d++) C *= t->shape[d];
        int64_t shape2[2] = { R, C };
        float *row = malloc(sizeof(float) * (size_t)C);
        uint8_t *q = malloc(ob_dtype_bytes(OB_Q8_0, R * C)), *one = malloc(ob_dtype_bytes(OB_Q8_0, C));
        if (!row || !q || !one) rc = OMNI_E_NOMEM;
        ob_dtype dt = t->dtype == ST_BF16 ? OB_BF16 : t->dtype == ST_F16 ? OB_F16 : OB_F32;
        for (int64_t r = 0; !rc && r < R; r++) {
            ob_row_to_f32(t->data, dt, R, C, r, row);
            ob_quantize_q8_0(row, 1, C, one);
            memcpy(q + r * C, one, (size_t)C);
            memcpy(q + R * C + r * (C / 32) * 2, one + C, (size_t)(C / 32) * 2);
        }
        char sn[400];
        snprintf(sn, sizeof sn, "%s_scale", t->name);
        int64_t ss[2] = { R, C / 32 };
        if (!rc) rc = st_writer_add(w, t->name, ST_I8, 2, shape2, q, (size_t)(R * C));
        if (!rc) rc = st_writer_add(w, sn, ST_F16, 2, ss, q + R * C, (size_t)(R * (C / 32) * 2));
        free(row), free(q), free(one);
        ++*n_quant;
    }
    if (!rc) rc = st_writer_set_metadata(w, "format", "pt");
    if (!rc) rc = st_writer_set_metadata(w, "omni_quantization", "q8_0");
    if (!rc) rc = st_writer_save(w, out_path, e);
    else omni_fail(e, rc, "%s: cannot quantize (out of memory?)", in_path);
    st_writer_free(w);
    st_close(in);
    return rc;
}

int cmd_quantize(int argc, char **argv) {
    const char *dir = NULL, *out = NULL, *type = "q8_0";
    for (int i = 1; i < argc; i++) {
        if (cli_is_help(argv[i])) {
            usage(stdout);
            return CLI_OK;
        }
        const char **dst = NULL;
        if (!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) dst = &dir;
        else if (!strcmp(argv[i], "-o") || !strcmp(argv[i], "--output")) dst = &out;
        else if (!strcmp(argv[i], "--type")) dst = &type;
        if (!dst || i + 1 >= argc) {
            fprintf(stderr, "omni quantize: %s '%s'\n", dst ? "missing value for" : "unknown option", argv[i]);
            usage(stderr);
            return CLI_USAGE;
        }
        *dst = argv[++i];
    }
    if (!dir || !out) {
        fprintf(stderr, "omni quantize: need -m DIR and -o OUTDIR\n");
        usage(stderr);
        return CLI_USAGE;
    }
    if (strcmp(type, "q8_0")) return cli_err("quantize", "unsupported --type '%s' (q8_0)", type);
    char p[1200], q[1200];
    snprintf(p, sizeof p, "%s/config.json", dir);
    if (!omni_file_exists(p)) return cli_err("quantize", "%s: not found", p);
    if (mkdir(out, 0755) && errno != EEXIST) return cli_err("quantize", "%s: %s", out, strerror(errno));
    snprintf(q, sizeof q, "%s/config.json", out);
    if (omni_file_exists(q)) return cli_err("quantize", "%s already holds a checkpoint", out);
    DIR *d = opendir(dir);
    if (!d) return cli_err("quantize", "%s: %s", dir, strerror(errno));
    struct dirent *de;
    int rc = 0, shards = 0;
    int64_t nq = 0;
    omni_err e = { { 0 } };
    while (!rc && (de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        snprintf(p, sizeof p, "%s/%s", dir, de->d_name);
        snprintf(q, sizeof q, "%s/%s", out, de->d_name);
        if (!omni_file_exists(p)) continue;
        size_t n = strlen(de->d_name);
        if (n > 12 && !strcmp(de->d_name + n - 12, ".safetensors")) {
            fprintf(stderr, "quantizing %s\n", de->d_name);
            if ((rc = quantize_file(p, q, &nq, &e))) cli_err("quantize", "%s", e.msg);
            shards++;
        } else if (!strcmp(de->d_name, "model.safetensors.index.json")) {
            continue; /* rewritten below */
        } else if (copy_file(p, q)) rc = cli_err("quantize", "cannot copy %s to %s", p, q);
    }
    closedir(d);
    /* the index: same shards, the _scale tensors added next to their matrices */
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    if (!rc && omni_file_exists(p)) {
        char *text = omni_read_file(p, NULL, &e);
        cJSON *j = text ? cJSON_Parse(text) : NULL;
        free(text);
        cJSON *wm = j ? cJSON_GetObjectItemCaseSensitive(j, "weight_map") : NULL;
        if (!cJSON_IsObject(wm)) rc = cli_err("quantize", "%s: no weight_map", p);
        else {
            cJSON *add = cJSON_CreateObject();
            const cJSON *it;
            cJSON_ArrayForEach(it, wm) {
                if (!cJSON_IsString(it)) continue;
                char sp[1200];
                snprintf(sp, sizeof sp, "%s/%s", out, it->valuestring);
                st_set *sh = NULL;
                if (st_open_file(sp, &sh, &e) == 0) {
                    char sn[400];
                    snprintf(sn, sizeof sn, "%s_scale", it->string);
                    if (st_find(sh, sn)) cJSON_AddStringToObject(add, sn, it->valuestring);
                    st_close(sh);
                }
            }
            cJSON *a2;
            while ((a2 = add->child)) {
                cJSON_DetachItemViaPointer(add, a2);
                cJSON_AddItemToObject(wm, a2->string, a2);
            }
            cJSON_Delete(add);
            char *txt = cJSON_Print(j);
            snprintf(q, sizeof q, "%s/model.safetensors.index.json", out);
            FILE *f = fopen(q, "w");
            if (!f || !txt || fputs(txt, f) < 0) rc = cli_err("quantize", "cannot write %s", q);
            if (f && fclose(f)) rc = cli_err("quantize", "cannot write %s", q);
            free(txt);
        }
        cJSON_Delete(j);
    }
    if (!rc) fprintf(stderr, "wrote %s: %lld matrices as Q8_0 in %d shard(s)\n", out, (long long)nq, shards);
    return rc ? CLI_ERR : CLI_OK;
}
