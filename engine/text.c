/* text.c — the public text API of engine/omni.h (tokenize, streaming detokenize, token lookup) over the model's
 * tokenizer (tokenizer.c). */
#include <stdlib.h>
#include <string.h>

#include "model.h"
#include "tokenizer.h"

static int need_tok(const omni_model *m) {
    if (m->tok) return 0;
    return omni_fail((omni_err *)&m->err, OMNI_E_IO, "%s/tokenizer.json: not found (needed to turn text into tokens)",
                     m->path);
}

int omni_tokenize(const omni_model *m, const char *text, size_t len, int32_t *ids, int cap) {
    int rc = need_tok(m);
    if (rc) return rc;
    return tok_encode(m->tok, text, len, ids, cap);
}

int32_t omni_token_id(const omni_model *m, const char *token_text) {
    return m->tok ? tok_lookup(m->tok, token_text) : -1;
}

struct omni_detok {
    tok_detok *d;
};

omni_detok *omni_detok_new(const omni_model *m) {
    if (need_tok(m)) return NULL;
    omni_detok *d = calloc(1, sizeof *d);
    if (!d) return NULL;
    if (!(d->d = tok_detok_new(m->tok))) {
        free(d);
        return NULL;
    }
    return d;
}

int omni_detok_push(omni_detok *d, int32_t id, char *out, size_t cap) { return tok_detok_push(d->d, id, out, cap); }
int omni_detok_flush(omni_detok *d, char *out, size_t cap) { return tok_detok_flush(d->d, out, cap); }
void omni_detok_free(omni_detok *d) {
    if (!d) return;
    tok_detok_free(d->d);
    free(d);
}

/* ChatML as Qwen3-Omni's template renders it: `<|im_start|>{role}\n{content}<|im_end|>\n` per message, content items
 * in order (audio/image/video as their placeholder triplets), then `<|im_start|>assistant\n` as generation prompt. */
char *omni_chat_render(const omni_model *m, const omni_message *msgs, int n_msgs, int add_generation_prompt) {
    (void)m;
    size_t cap = 256, len = 0;
    for (int i = 0; i < n_msgs; i++) {
        cap += strlen(msgs[i].role) + 32;
        for (int j = 0; j < msgs[i].n_items; j++) cap += (msgs[i].items[j].text ? strlen(msgs[i].items[j].text) : 0) + 64;
    }
    char *out = malloc(cap);
    if (!out) return NULL;
#define PUT(str)                                                                                                      \
    do {                                                                                                              \
        size_t l_ = strlen(str);                                                                                      \
        memcpy(out + len, str, l_);                                                                                   \
        len += l_;                                                                                                    \
    } while (0)
    for (int i = 0; i < n_msgs; i++) {
        PUT("<|im_start|>");
        PUT(msgs[i].role);
        PUT("\n");
        for (int j = 0; j < msgs[i].n_items; j++) {
            const omni_item *it = &msgs[i].items[j];
            switch (it->kind) {
            case OMNI_ITEM_TEXT: PUT(it->text ? it->text : ""); break;
            case OMNI_ITEM_AUDIO: PUT("<|audio_start|><|audio_pad|><|audio_end|>"); break;
            case OMNI_ITEM_IMAGE: PUT("<|vision_start|><|image_pad|><|vision_end|>"); break;
            case OMNI_ITEM_VIDEO: PUT("<|vision_start|><|video_pad|><|vision_end|>"); break;
            }
        }
        PUT("<|im_end|>\n");
    }
    if (add_generation_prompt) PUT("<|im_start|>assistant\n");
#undef PUT
    out[len] = 0;
    return out;
}
