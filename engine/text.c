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

char *omni_chat_render(const omni_model *m, const omni_message *msgs, int n_msgs, int add_generation_prompt) {
    return chat_render(&m->chat, msgs, n_msgs, add_generation_prompt, (omni_err *)&m->err);
}

void omni_chat_set_thinking(omni_model *m, int enable) { m->chat.enable_thinking = enable < 0 ? -1 : enable != 0; }
