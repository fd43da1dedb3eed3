/* bench_config.c — the synthetic configs of the encoder benchmarks: a real Qwen3-Omni config with the thinker
 * shrunk to one tiny layer and every part but the measured encoder removed, so only that encoder costs memory and
 * load time. */
#include "bench_config.h"

#include <cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

static void set_num(cJSON *obj, const char *key, double v) {
    if (!obj) return;
    if (cJSON_GetObjectItemCaseSensitive(obj, key))
        cJSON_ReplaceItemInObjectCaseSensitive(obj, key, cJSON_CreateNumber(v));
    else cJSON_AddNumberToObject(obj, key, v);
}

int bench_shrunk_config(const char *src, const char *keep, char *dir, size_t dcap, char *path, size_t pcap) {
    FILE *f = fopen(src, "rb");
    if (!f) return cli_err("bench", "%s: cannot open", src), -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = n > 0 ? malloc((size_t)n + 1) : NULL;
    size_t got = text ? fread(text, 1, (size_t)n, f) : 0;
    fclose(f);
    if (!text || got != (size_t)n) {
        free(text);
        return cli_err("bench", "%s: cannot read", src), -1;
    }
    text[n] = 0;
    cJSON *root = cJSON_Parse(text);
    free(text);
    cJSON *th = root ? cJSON_GetObjectItemCaseSensitive(root, "thinker_config") : NULL;
    cJSON *tc = th ? cJSON_GetObjectItemCaseSensitive(th, "text_config") : NULL;
    if (!tc || !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(th, keep))) {
        cJSON_Delete(root);
        return cli_err("bench", "%s: not a Qwen3-Omni config with thinker_config.%s", src, keep), -1;
    }
    set_num(tc, "num_hidden_layers", 1);
    set_num(tc, "vocab_size", 1024);
    if (cJSON_GetObjectItemCaseSensitive(tc, "num_experts")) {
        set_num(tc, "num_experts", 2);
        set_num(tc, "num_experts_per_tok", 1);
    }
    cJSON_DeleteItemFromObjectCaseSensitive(th, strcmp(keep, "audio_config") ? "audio_config" : "vision_config");
    cJSON_DeleteItemFromObjectCaseSensitive(root, "talker_config");
    cJSON_DeleteItemFromObjectCaseSensitive(root, "code2wav_config");
    cJSON_ReplaceItemInObjectCaseSensitive(root, "enable_audio_output", cJSON_CreateFalse());
    snprintf(dir, dcap, "/tmp/omni-bench-XXXXXX");
    char *out = cJSON_Print(root);
    cJSON_Delete(root);
    if (!out || !mkdtemp(dir)) {
        free(out);
        return cli_err("bench", "cannot create a temporary folder"), -1;
    }
    snprintf(path, pcap, "%s/config.json", dir);
    f = fopen(path, "wb");
    int ok = f && fputs(out, f) >= 0;
    if (f && fclose(f)) ok = 0;
    free(out);
    if (!ok) {
        unlink(path);
        rmdir(dir);
        return cli_err("bench", "%s: cannot write", path), -1;
    }
    return 0;
}


omni_model *bench_open_encoder_model(cli_opts *o, const char *default_cfg, const char *keep, double *t_load) {
    char dir[64] = "", cfg[128] = "";
    if (!o->model || o->mp.synthetic) {
        if (bench_shrunk_config(o->model ? o->model : default_cfg, keep, dir, sizeof dir, cfg, sizeof cfg)) return NULL;
        o->model = cfg;
        o->mp.synthetic = 1;
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    omni_model *m = cli_open_model(o);
    clock_gettime(CLOCK_MONOTONIC, &b);
    *t_load = (double)(b.tv_sec - a.tv_sec) + (b.tv_nsec - a.tv_nsec) * 1e-9;
    if (dir[0]) {
        unlink(cfg);
        rmdir(dir);
        o->model = NULL; /* pointed at cfg, which goes out of scope */
    }
    return m;
}
