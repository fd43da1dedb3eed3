/* cmd_eval.c — `omni eval`: runs a checkpoint on inputs named as the Hugging Face processor names them and writes
 * its outputs, so any checkpoint can be validated against transformers tensor by tensor. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "safetensors.h"

/* The multimodal inputs of an eval file, encoded, in order of appearance in input_ids. */
typedef struct {
    omni_mm mm;
    int32_t *audio_tokens;
    float *audio_embeds;
    int32_t n_audio_rows;
    float *vis_embeds, *deepstack, *sec;
    omni_grid *grids;
    uint8_t *is_video;
    int64_t vis_rows, img_rows;
} eval_mm;

static void eval_mm_free(eval_mm *em) {
    free(em->audio_tokens);
    free(em->audio_embeds);
    free(em->vis_embeds);
    free(em->deepstack);
    free(em->sec);
    free(em->grids);
    free(em->is_video);
    memset(em, 0, sizeof *em);
}

static int64_t i64_at(const st_tensor *t, size_t i) {
    if (t->dtype == ST_I64) {
        int64_t v;
        memcpy(&v, (const char *)t->data + 8 * i, 8);
        return v;
    }
    int32_t v;
    memcpy(&v, (const char *)t->data + 4 * i, 4);
    return v;
}

#define FAIL(...)                                                                                                     \
    do {                                                                                                              \
        snprintf(err, cap, __VA_ARGS__);                                                                              \
        eval_mm_free(em);                                                                                             \
        return OMNI_E_ARG;                                                                                            \
    } while (0)

static int eval_mm_build(omni_model *m, st_set *in, const char *path, const int32_t *ids, int T, eval_mm *em,
                         char *err, size_t cap) {
    memset(em, 0, sizeof *em);
    omni_model_info info;
    omni_model_get_info(m, &info);
    int H = info.hidden;
    /* audio: input_features [n,128,F] (+ feature_attention_mask [n,F]: valid frames per audio) */
    const st_tensor *f = st_find(in, "input_features"), *fm = st_find(in, "feature_attention_mask");
    if (f) {
        if (f->dtype != ST_F32 || f->n_dims != 3) FAIL("%s: 'input_features' must be float32 [n,mels,frames]", path);
        int na = (int)f->shape[0], mels = (int)f->shape[1], F = (int)f->shape[2];
        if (fm && (fm->n_dims != 2 || fm->shape[0] != na || fm->shape[1] != F || (fm->dtype != ST_I64 && fm->dtype != ST_I32)))
            FAIL("%s: 'feature_attention_mask' must be int [%d,%d]", path, na, F);
        float **feats = calloc((size_t)na, sizeof *feats);
        int32_t *frames = calloc((size_t)na, sizeof *frames);
        em->audio_tokens = calloc((size_t)na, sizeof *em->audio_tokens);
        int rc = !feats || !frames || !em->audio_tokens;
        for (int a = 0; a < na && !rc; a++) {
            int32_t fr = F;
            if (fm) {
                fr = 0;
                for (int k = 0; k < F; k++) fr += i64_at(fm, (size_t)a * F + k) != 0;
            }
            frames[a] = fr;
            feats[a] = malloc(sizeof(float) * (size_t)mels * (fr ? fr : 1));
            if (!feats[a]) rc = 1;
            for (int b = 0; !rc && b < mels; b++)
                memcpy(feats[a] + (size_t)b * fr, (const float *)f->data + ((size_t)a * mels + b) * F, sizeof(float) * fr);
        }
        if (!rc) rc = omni_encode_audio(m, (const float *const *)feats, frames, na, &em->audio_embeds, em->audio_tokens);
        for (int a = 0; feats && a < na; a++) free(feats[a]);
        free(feats);
        free(frames);
        if (rc) FAIL("audio encoder: %s", omni_model_error(m)[0] ? omni_model_error(m) : "out of memory");
        for (int a = 0; a < na; a++) em->n_audio_rows += em->audio_tokens[a];
        em->mm.n_audios = na;
        em->mm.audio_tokens = em->audio_tokens;
        em->mm.audio_embeds = em->audio_embeds;
    }
    /* images and videos, encoded one by one, then ordered as their placeholders appear */
    const st_tensor *pv[2] = { st_find(in, "pixel_values"), st_find(in, "pixel_values_videos") };
    const st_tensor *gt[2] = { st_find(in, "image_grid_thw"), st_find(in, "video_grid_thw") };
    const st_tensor *sp = st_find(in, "video_second_per_grid");
    int nimg = gt[0] ? (int)gt[0]->shape[0] : 0, nvid = gt[1] ? (int)gt[1]->shape[0] : 0, n = nimg + nvid;
    if (!n) return 0;
    for (int k = 0; k < 2; k++)
        if (gt[k] && (!pv[k] || pv[k]->dtype != ST_F32 || pv[k]->n_dims != 2 || gt[k]->n_dims != 2 || gt[k]->shape[1] != 3))
            FAIL("%s: '%s' needs float32 '%s' [patches,dim] and an int [n,3] grid", path, k ? "video_grid_thw" : "image_grid_thw",
                 k ? "pixel_values_videos" : "pixel_values");
    /* order of appearance: the token after each vision_start */
    uint8_t *order = malloc((size_t)n);
    int no = 0;
    for (int i = 0; order && i + 1 < T; i++)
        if ((ids[i + 1] == info.image_token_id || ids[i + 1] == info.video_token_id) && (i == 0 || ids[i] != ids[i + 1]) &&
            no < n)
            order[no++] = ids[i + 1] == info.video_token_id;
    em->grids = calloc((size_t)n, sizeof *em->grids);
    em->sec = calloc((size_t)n, sizeof *em->sec);
    float **embs = calloc((size_t)n, sizeof *embs), **dss = calloc((size_t)n, sizeof *dss);
    int32_t *ntok = calloc((size_t)n, sizeof *ntok), levels = 0;
    int rc = !order || !em->grids || !em->sec || !embs || !dss || !ntok;
    if (!rc && no != n) {
        snprintf(err, cap, "%s: %d images/videos given but input_ids has %d placeholders runs", path, n, no);
        rc = 2;
    }
    int ki[2] = { 0, 0 };
    int64_t row_off[2] = { 0, 0 };
    for (int j = 0; !rc && j < n; j++) {
        int k = order[j], idx = ki[k]++;
        if (idx >= (k ? nvid : nimg)) {
            snprintf(err, cap, "%s: more %s placeholders than grids", path, k ? "video" : "image");
            rc = 2;
            break;
        }
        omni_grid g = { (int32_t)i64_at(gt[k], (size_t)idx * 3), (int32_t)i64_at(gt[k], (size_t)idx * 3 + 1),
                        (int32_t)i64_at(gt[k], (size_t)idx * 3 + 2) };
        int64_t rows = (int64_t)g.t * g.h * g.w;
        if (g.t <= 0 || g.h <= 0 || g.w <= 0 || row_off[k] + rows > pv[k]->shape[0]) {
            snprintf(err, cap, "%s: grid %d of %s does not match the pixel rows", path, idx, k ? "videos" : "images");
            rc = 2;
            break;
        }
        em->grids[j] = g;
        em->sec[j] = k ? (sp ? ((sp->dtype == ST_F32) ? ((const float *)sp->data)[idx] : (float)i64_at(sp, (size_t)idx)) : 2.0f) : 0;
        int32_t lv = 0;
        rc = omni_encode_image(m, (const float *)pv[k]->data + row_off[k] * pv[k]->shape[1], g, &embs[j], &dss[j], &ntok[j], &lv);
        if (rc) snprintf(err, cap, "vision encoder: %s", omni_model_error(m)), rc = 2;
        levels = lv;
        row_off[k] += rows;
        em->vis_rows += ntok[j];
    }
    if (!rc) {
        em->vis_embeds = malloc(sizeof(float) * (size_t)em->vis_rows * H);
        em->deepstack = levels ? malloc(sizeof(float) * (size_t)levels * em->vis_rows * H) : NULL;
        rc = !em->vis_embeds || (levels && !em->deepstack);
        int64_t off = 0;
        for (int j = 0; !rc && j < n; j++) {
            memcpy(em->vis_embeds + off * H, embs[j], sizeof(float) * (size_t)ntok[j] * H);
            for (int l = 0; l < levels; l++)
                memcpy(em->deepstack + ((size_t)l * em->vis_rows + off) * H, dss[j] + (size_t)l * ntok[j] * H,
                       sizeof(float) * (size_t)ntok[j] * H);
            off += ntok[j];
        }
    }
    for (int j = 0; embs && j < n; j++) free(embs[j]), free(dss ? dss[j] : NULL);
    free(embs), free(dss), free(ntok);
    em->is_video = order;
    if (rc) {
        if (rc == 1) snprintf(err, cap, "out of memory");
        eval_mm_free(em);
        return OMNI_E_ARG;
    }
    em->mm.n_images = n;
    em->mm.grids = em->grids;
    em->mm.second_per_grid = em->sec;
    em->mm.image_embeds = em->vis_embeds;
    em->mm.deepstack = em->deepstack;
    em->mm.n_levels = levels;
    return 0;
}

/* audio_embeds, image_embeds/video_embeds (split by kind, each in order) and deepstack_K */
static int eval_mm_write(eval_mm *em, st_writer *w, int H) {
    if (em->mm.n_audios) {
        int64_t s[2] = { em->n_audio_rows, H };
        if (st_writer_add_ref(w, "audio_embeds", ST_F32, 2, s, em->audio_embeds, sizeof(float) * (size_t)em->n_audio_rows * H))
            return 1;
    }
    if (!em->mm.n_images) return 0;
    for (int kind = 0; kind < 2; kind++) {
        int64_t rows = 0;
        for (int j = 0; j < em->mm.n_images; j++)
            if (em->is_video[j] == kind) rows += (int64_t)em->grids[j].t * em->grids[j].h * em->grids[j].w / 4;
        if (!rows) continue;
        float *buf = malloc(sizeof(float) * (size_t)rows * H);
        if (!buf) return 1;
        int64_t off = 0, src = 0;
        for (int j = 0; j < em->mm.n_images; j++) {
            int64_t r = (int64_t)em->grids[j].t * em->grids[j].h * em->grids[j].w / 4;
            if (em->is_video[j] == kind) {
                memcpy(buf + off * H, em->vis_embeds + src * H, sizeof(float) * (size_t)r * H);
                off += r;
            }
            src += r;
        }
        int64_t s[2] = { rows, H };
        int bad = st_writer_add(w, kind ? "video_embeds" : "image_embeds", ST_F32, 2, s, buf, sizeof(float) * (size_t)rows * H);
        free(buf);
        if (bad) return 1;
    }
    for (int l = 0; l < em->mm.n_levels; l++) {
        char name[32];
        snprintf(name, sizeof name, "deepstack_%d", l);
        int64_t s[2] = { em->vis_rows, H };
        if (st_writer_add_ref(w, name, ST_F32, 2, s, em->deepstack + (size_t)l * em->vis_rows * H,
                              sizeof(float) * (size_t)em->vis_rows * H))
            return 1;
    }
    return 0;
}

static void usage(FILE *f) {
    fprintf(f, "usage: omni eval -m DIR -i INPUTS.safetensors -o OUT.safetensors [--generate N] [options]\n\n"
               "INPUTS holds tensors named as the Hugging Face processor names them: `input_ids` [1,T] (int64 or\n"
               "int32); for audio `input_features` [n,128,frames] + `feature_attention_mask` [n,frames]; for images\n"
               "`pixel_values` [patches,1536] + `image_grid_thw` [n,3]; for videos `pixel_values_videos` +\n"
               "`video_grid_thw` (+ `video_second_per_grid` [n]). OUT receives `logits` [T, vocab] float32 for every\n"
               "prompt position, `position_ids` [3,T], `audio_embeds`, `image_embeds`/`video_embeds` and\n"
               "`deepstack_K` when there is such input, and with --generate N `generated` [N] int64: the greedy\n"
               "continuation (N tokens; an end-of-sequence id is kept like any other and does not stop it).\n\n"
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
    if (!ids || T <= 0) {
        free(ids);
        st_close(in);
        return cli_err("eval", "%s: 'input_ids' is empty", in_path);
    }
    if (!o.mp.n_ctx) o.mp.n_ctx = T + (int)n_gen + 1;
    omni_model *m = cli_open_model(&o);
    if (!m) {
        free(ids);
        st_close(in);
        return CLI_ERR;
    }
    omni_model_info info;
    omni_model_get_info(m, &info);
    size_t V = (size_t)info.vocab_size;
    eval_mm em;
    char err[600] = "";
    int ret = CLI_OK;
    if (eval_mm_build(m, in, in_path, ids, T, &em, err, sizeof err)) ret = cli_err("eval", "%s", err);
    st_close(in);
    omni_session *s = NULL;
    float *logits = NULL, *last = NULL, *pos3 = NULL;
    int64_t *gen = NULL;
    int rc = 0;
    if (ret == CLI_OK && (rc = omni_session_new(m, NULL, &s))) ret = cli_err("eval", "%s", omni_model_error(m));
    if (ret == CLI_OK) {
        logits = malloc((size_t)T * V * sizeof *logits);
        last = malloc(V * sizeof *last);
        gen = calloc((size_t)(n_gen ? n_gen : 1), sizeof *gen);
        pos3 = malloc(sizeof *pos3 * 3 * (size_t)T);
        if (!logits || !last || !gen || !pos3) ret = cli_err("eval", "out of memory");
    }
    if (ret == CLI_OK && omni_rope_index(m, ids, T, &em.mm, 0, pos3, err, sizeof err)) ret = cli_err("eval", "%s", err);
    if (ret == CLI_OK && (rc = omni_session_append_mm(s, ids, T, &em.mm, logits, 1)))
        ret = cli_err("eval", "%s", omni_session_error(s));
    if (ret == CLI_OK) {
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
        int64_t shp[2] = { T, (int64_t)V }, gshape[1] = { n_gen }, pshape[2] = { 3, T };
        int bad = !w || st_writer_add_ref(w, "logits", ST_F32, 2, shp, logits, (size_t)T * V * 4) ||
                  (n_gen && st_writer_add_ref(w, "generated", ST_I64, 1, gshape, gen, (size_t)n_gen * 8));
        /* positions: int64 like the reference unless a video made them fractional */
        int integral = 1;
        for (int i = 0; i < 3 * T; i++) integral &= pos3[i] == (float)(int64_t)pos3[i];
        int64_t *pi = integral ? malloc(sizeof *pi * 3 * (size_t)T) : NULL;
        for (int i = 0; pi && i < 3 * T; i++) pi[i] = (int64_t)pos3[i];
        if (!bad) bad = integral ? (!pi || st_writer_add(w, "position_ids", ST_I64, 2, pshape, pi, sizeof *pi * 3 * (size_t)T))
                                 : st_writer_add(w, "position_ids", ST_F32, 2, pshape, pos3, sizeof *pos3 * 3 * (size_t)T);
        free(pi);
        if (!bad) bad = eval_mm_write(&em, w, info.hidden);
        if (bad || st_writer_save(w, out_path, &e)) ret = cli_err("eval", "%s", e.msg[0] ? e.msg : "cannot write the outputs");
        st_writer_free(w);
    }
    eval_mm_free(&em);
    free(pos3);
    free(gen);
    free(last);
    free(logits);
    free(ids);
    omni_session_free(s);
    omni_model_free(m);
    return ret;
}
