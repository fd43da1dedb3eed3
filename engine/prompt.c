/* prompt.c — multimodal prompts for the Qwen3-Omni thinker: the 3-row MRoPE positions of get_rope_index
 * (Qwen3OmniMoePreTrainedModelForConditionalGeneration.get_rope_index), the input embeddings with audio and image
 * features scattered into their placeholder positions (Qwen3OmniMoeThinkerForConditionalGeneration.forward:
 * masked_scatter), and the DeepStack features handed to the forward pass for the visual positions. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "session.h"

static int merge_size(const omni_model *m) {
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(m->hp.root, "thinker_config");
    const cJSON *vc = th ? cJSON_GetObjectItemCaseSensitive(th, "vision_config") : NULL;
    const cJSON *v = vc ? cJSON_GetObjectItemCaseSensitive(vc, "spatial_merge_size") : NULL;
    return cJSON_IsNumber(v) && v->valuedouble >= 1 ? (int)v->valuedouble : 2;
}

#define ERR(...)                                                                                                      \
    do {                                                                                                              \
        if (err && err_cap) snprintf(err, err_cap, __VA_ARGS__);                                                      \
        return OMNI_E_ARG;                                                                                            \
    } while (0)

int omni_rope_index(const omni_model *m, const int32_t *ids, int n, const omni_mm *mm, float start, float *pos3,
                    char *err, size_t err_cap) {
    const omni_hparams *hp = &m->hp;
    static const omni_mm none;
    if (!mm) mm = &none;
    int ms = merge_size(m), audio = 0, image = 0;
    float cur = start; /* max(previous positions) + 1 */
    float *T = pos3, *Hh = pos3 + n, *W = pos3 + 2 * n;
    for (int i = 0; i < n;) {
        int32_t id = ids[i];
        if (id < 0 || id >= hp->text.vocab_size) ERR("token id %d at position %d is outside the vocabulary", id, i);
        if (id == hp->audio_start_id && hp->audio_start_id >= 0 && i + 1 < n && ids[i + 1] == hp->audio_token_id) {
            /* <|audio_start|> then L audio tokens at consecutive positions (all rows equal) */
            T[i] = Hh[i] = W[i] = cur;
            cur += 1;
            i++;
            int L = 0;
            while (i + L < n && ids[i + L] == hp->audio_token_id) L++;
            if (audio >= mm->n_audios) ERR("prompt has more audio placeholders than audios (%d)", mm->n_audios);
            if (L != mm->audio_tokens[audio])
                ERR("audio %d: %d <|audio_pad|> tokens in the prompt but the audio has %d", audio, L,
                    mm->audio_tokens[audio]);
            for (int k = 0; k < L; k++) T[i + k] = Hh[i + k] = W[i + k] = cur + (float)k;
            cur += (float)L;
            i += L;
            audio++;
        } else if (id == hp->vision_start_id && hp->vision_start_id >= 0 && i + 1 < n &&
                   (ids[i + 1] == hp->image_token_id || ids[i + 1] == hp->video_token_id)) {
            int is_video = ids[i + 1] == hp->video_token_id;
            T[i] = Hh[i] = W[i] = cur;
            cur += 1;
            i++;
            int L = 0;
            while (i + L < n && ids[i + L] == ids[i]) L++;
            if (image >= mm->n_images) ERR("prompt has more image/video placeholders than images (%d)", mm->n_images);
            omni_grid g = mm->grids[image];
            if (g.t <= 0 || g.h <= 0 || g.w <= 0 || g.h % ms || g.w % ms)
                ERR("image %d: grid %dx%dx%d is not divisible by the merge size %d", image, g.t, g.h, g.w, ms);
            int hm = g.h / ms, wm = g.w / ms;
            if (L != g.t * hm * wm)
                ERR("image %d: %d placeholder tokens in the prompt but its grid gives %d", image, L, g.t * hm * wm);
            /* t row: ti * second_per_grid * position_id_per_seconds for videos (ti * 1 * ... for images, t = 1) */
            float step = is_video ? (mm->second_per_grid ? mm->second_per_grid[image] : 2.0f) *
                                        (float)hp->position_id_per_seconds
                                  : (float)hp->position_id_per_seconds;
            float mx = cur;
            for (int ti = 0, k = 0; ti < g.t; ti++)
                for (int hi = 0; hi < hm; hi++)
                    for (int wi = 0; wi < wm; wi++, k++) {
                        T[i + k] = cur + (float)ti * step;
                        Hh[i + k] = cur + (float)hi;
                        W[i + k] = cur + (float)wi;
                        mx = fmaxf(mx, fmaxf(T[i + k], fmaxf(Hh[i + k], W[i + k])));
                    }
            cur = mx + 1;
            i += L;
            image++;
        } else {
            if (id == hp->audio_token_id || id == hp->image_token_id || id == hp->video_token_id)
                ERR("placeholder token %d at position %d is not preceded by its start marker", id, i);
            T[i] = Hh[i] = W[i] = cur;
            cur += 1;
            i++;
        }
    }
    if (audio != mm->n_audios) ERR("%d audios given but the prompt has %d audio placeholders", mm->n_audios, audio);
    if (image != mm->n_images) ERR("%d images given but the prompt has %d image placeholders", mm->n_images, image);
    return 0;
}

int omni_session_append_mm(omni_session *s, const int32_t *ids, int n, const omni_mm *mm, float *logits,
                           int all_logits) {
    omni_model *m = s->m;
    ob_backend *be = m->be;
    const int H = m->hp.text.hidden;
    if (n <= 0) return omni_fail(&s->err, OMNI_E_ARG, "nothing to append");
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->hp.text.vocab_size)
            return omni_fail(&s->err, OMNI_E_ARG, "token id %d at position %d is outside the vocabulary", ids[i], i);
    float *pos3 = malloc(sizeof(float) * 3 * (size_t)n);
    float *emb = malloc(sizeof(float) * (size_t)n * H);
    int32_t *ds_pos = malloc(sizeof(int32_t) * (size_t)n);
    ob_buf *tmp = be->ops->alloc(be, (size_t)n * 4 + (size_t)n * H * 4 + 256);
    int rc = 0;
    if (!pos3 || !emb || !ds_pos || !tmp) {
        rc = omni_fail(&s->err, OMNI_E_NOMEM, "out of memory for a prompt of %d tokens", n);
        goto done;
    }
    char msg[400];
    if ((rc = omni_rope_index(m, ids, n, mm, s->next_rope, pos3, msg, sizeof msg))) {
        omni_fail(&s->err, rc, "%s", msg);
        goto done;
    }
    /* text embeddings of every position (embed_tokens), then the features replace the placeholders in order */
    size_t eoff = ((size_t)n * 4 + 255) & ~(size_t)255;
    if ((rc = be->ops->upload(be, tmp, 0, ids, (size_t)n * 4))) goto backend;
    be->ops->get_rows(be, &m->w.embed, (ob_ptr){ tmp, 0 }, n, (ob_ptr){ tmp, eoff });
    if ((rc = be->ops->download(be, tmp, eoff, emb, (size_t)n * H * 4))) goto backend;
    const omni_hparams *hp = &m->hp;
    int64_t a = 0, v = 0, n_ds = 0;
    int64_t n_aud = 0, n_vis = 0;
    if (mm) {
        for (int k = 0; k < mm->n_audios; k++) n_aud += mm->audio_tokens[k];
        for (int k = 0; k < mm->n_images; k++) {
            int ms = merge_size(m);
            n_vis += (int64_t)mm->grids[k].t * (mm->grids[k].h / ms) * (mm->grids[k].w / ms);
        }
    }
    for (int i = 0; i < n; i++) {
        if (ids[i] == hp->audio_token_id && a < n_aud) {
            memcpy(emb + (size_t)i * H, mm->audio_embeds + (size_t)a * H, (size_t)H * 4);
            a++;
        } else if ((ids[i] == hp->image_token_id || ids[i] == hp->video_token_id) && v < n_vis) {
            memcpy(emb + (size_t)i * H, mm->image_embeds + (size_t)v * H, (size_t)H * 4);
            ds_pos[n_ds++] = i;
            v++;
        }
    }
    if (mm && mm->deepstack && mm->n_levels > 0 && n_ds) {
        s->ds = mm->deepstack;
        s->ds_pos = ds_pos;
        s->ds_levels = mm->n_levels < m->hp.text.n_layers ? mm->n_levels : m->hp.text.n_layers;
        s->ds_n = (int32_t)n_ds;
    }
    rc = omni_session_append_internal(s, ids, emb, pos3, n, logits, all_logits);
    s->ds = NULL;
    s->ds_pos = NULL;
    s->ds_levels = s->ds_n = 0;
    goto done;
backend:
    omni_fail(&s->err, rc, "back-end: %s", be->err);
done:
    if (tmp) be->ops->buf_free(be, tmp);
    free(pos3);
    free(emb);
    free(ds_pos);
    return rc;
}
