/* chat.c — ChatML rendering that reproduces the Qwen3-Omni and Qwen3 Jinja chat templates (see chat.h).
 *
 * The template logic, step by step as the templates write it (tests/data/tokenizer/qwen3-omni-chat_template.json and
 * the chat_template of tests/data/tokenizer/tokenizer_config.json; both rendered by transformers with trim_blocks and
 * lstrip_blocks, and every tag here is whitespace-trimmed, so only the quoted strings reach the output):
 *   1. a leading system message: "<|im_start|>system\n" + content + "<|im_end|>\n"; Qwen3-Omni renders a system
 *      message given as a list as one such block per part;
 *   2. last_query_index: scanning from the end, the first user message that is not a bare
 *      "<tool_response>...</tool_response>" (Qwen3-Omni also requires its content to be a string); else the last index;
 *   3. every message: user, and system when not first, as a ChatML block; assistant content loses "...</think>" and
 *      leading newlines, and after the last query keeps its reasoning in a <think> block when it is the last message
 *      or has reasoning; tool messages are grouped into one user block of <tool_response>s; other roles print nothing;
 *   4. the generation prompt, with "<think>\n\n</think>\n\n" when enable_thinking is false. */
#include "chat.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    char *s;
    size_t n, cap;
    int oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) {
    if (b->oom || !n) return;
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap : 256;
        while (nc < b->n + n + 1) nc *= 2;
        char *ns = realloc(b->s, nc);
        if (!ns) {
            b->oom = 1;
            return;
        }
        b->s = ns;
        b->cap = nc;
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* A string view, for the Python str operations the templates use. */
typedef struct {
    const char *p;
    size_t n;
} view;

static view v_lstrip_nl(view v) { /* str.lstrip('\n') */
    while (v.n && *v.p == '\n') v.p++, v.n--;
    return v;
}
static view v_rstrip_nl(view v) { /* str.rstrip('\n') */
    while (v.n && v.p[v.n - 1] == '\n') v.n--;
    return v;
}

static const char *v_find(view v, const char *needle, int last) { /* first or last occurrence, NULL if none */
    size_t k = strlen(needle);
    const char *found = NULL;
    for (size_t i = 0; i + k <= v.n; i++)
        if (memcmp(v.p + i, needle, k) == 0) {
            found = v.p + i;
            if (!last) break;
        }
    return found;
}

static const char *PLACEHOLDER[] = {
    [OMNI_ITEM_AUDIO] = "<|audio_start|><|audio_pad|><|audio_end|>",
    [OMNI_ITEM_IMAGE] = "<|vision_start|><|image_pad|><|vision_end|>",
    [OMNI_ITEM_VIDEO] = "<|vision_start|><|video_pad|><|vision_end|>",
};

static int is_string_content(const omni_message *m) { /* all items text: the template sees a string */
    for (int i = 0; i < m->n_items; i++)
        if (m->items[i].kind != OMNI_ITEM_TEXT) return 0;
    return 1;
}

/* The message content as the template's `content` variable: texts and placeholders concatenated. */
static int flatten(const omni_message *m, sbuf *out) {
    out->n = 0;
    sb_add(out, "", 0);
    for (int i = 0; i < m->n_items; i++) {
        const omni_item *it = &m->items[i];
        if (it->kind == OMNI_ITEM_TEXT)
            sb_str(out, it->text ? it->text : "");
        else if (it->kind >= OMNI_ITEM_AUDIO && it->kind <= OMNI_ITEM_VIDEO)
            sb_str(out, PLACEHOLDER[it->kind]);
        else
            return -1;
    }
    return 0;
}

static view content_view(const sbuf *b) { return (view){ b->s ? b->s : "", b->n }; }

static int is_role(const omni_message *m, const char *r) { return strcmp(m->role, r) == 0; }

chat_style chat_style_default(void) { return (chat_style){ CHAT_QWEN3_OMNI, -1 }; }

chat_style chat_style_detect(const char *text) {
    chat_style st = chat_style_default();
    if (!text || !*text) return st;
    /* template markers, not token names: a Qwen3 tokenizer_config.json lists <|vision_start|> among its tokens too */
    if (strstr(text, "<|audio_start|><|audio_pad|><|audio_end|>") || strstr(text, "audio_url")) return st;
    if (strstr(text, "<|im_start|>") && strstr(text, "</think>")) st.kind = CHAT_QWEN3;
    return st;
}

static void assistant(sbuf *out, view content, int after_last_query, int is_last) {
    view reasoning = { "", 0 };
    const char *close = v_find(content, "</think>", 0);
    if (close) { /* split('</think>')[0].rstrip('\n').split('<think>')[-1].lstrip('\n'), and split(...)[-1] */
        view before = { content.p, (size_t)(close - content.p) };
        before = v_rstrip_nl(before);
        const char *open = v_find(before, "<think>", 1);
        if (open) before = (view){ open + 7, (size_t)(before.p + before.n - (open + 7)) };
        reasoning = v_lstrip_nl(before);
        const char *last_close = v_find(content, "</think>", 1) + 8;
        content = v_lstrip_nl((view){ last_close, (size_t)(content.p + content.n - last_close) });
    }
    sb_str(out, "<|im_start|>assistant\n");
    if (after_last_query && (is_last || reasoning.n)) {
        sb_str(out, "<think>\n");
        reasoning = v_rstrip_nl(v_lstrip_nl(reasoning));
        sb_add(out, reasoning.p, reasoning.n);
        sb_str(out, "\n</think>\n\n");
        content = v_lstrip_nl(content);
    }
    sb_add(out, content.p, content.n);
    sb_str(out, "<|im_end|>\n");
}

char *chat_render(const chat_style *st, const omni_message *msgs, int n, int add_generation_prompt, omni_err *e) {
    chat_style def = chat_style_default();
    if (!st) st = &def;
    if (!msgs || n <= 0) {
        omni_fail(e, OMNI_E_ARG, "chat: no messages to render");
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (!msgs[i].role || (msgs[i].n_items > 0 && !msgs[i].items)) {
            omni_fail(e, OMNI_E_ARG, "chat: message %d has no role or no items", i);
            return NULL;
        }
        for (int k = 0; k < msgs[i].n_items; k++) {
            omni_item_kind kind = msgs[i].items[k].kind;
            if (kind != OMNI_ITEM_TEXT && kind != OMNI_ITEM_AUDIO && kind != OMNI_ITEM_IMAGE && kind != OMNI_ITEM_VIDEO) {
                omni_fail(e, OMNI_E_ARG, "chat: message %d item %d has an unknown kind %d", i, k, (int)kind);
                return NULL;
            }
        }
        if (st->kind == CHAT_QWEN3 && !is_string_content(&msgs[i])) {
            omni_fail(e, OMNI_E_UNSUPPORTED,
                      "chat: message %d has audio/image/video, which the text-only Qwen3 template cannot render", i);
            return NULL;
        }
    }
    int omni = st->kind == CHAT_QWEN3_OMNI;
    sbuf out = { 0 }, c = { 0 };

    /* 1. leading system message */
    if (is_role(&msgs[0], "system")) {
        if (is_string_content(&msgs[0])) {
            flatten(&msgs[0], &c);
            sb_str(&out, "<|im_start|>system\n");
            sb_add(&out, c.s, c.n);
            sb_str(&out, "<|im_end|>\n");
        } else {
            for (int k = 0; k < msgs[0].n_items; k++) {
                const omni_item *it = &msgs[0].items[k];
                sb_str(&out, "<|im_start|>system\n");
                sb_str(&out, it->kind == OMNI_ITEM_TEXT ? (it->text ? it->text : "") : PLACEHOLDER[it->kind]);
                sb_str(&out, "<|im_end|>\n");
            }
        }
    }
    /* 2. the last real user query */
    int last_query = n - 1;
    for (int i = n - 1; i >= 0; i--) {
        if (!is_role(&msgs[i], "user") || (omni && !is_string_content(&msgs[i]))) continue;
        flatten(&msgs[i], &c);
        view v = content_view(&c);
        int tool_resp = v.n >= 15 + 16 && memcmp(v.p, "<tool_response>", 15) == 0 &&
                        memcmp(v.p + v.n - 16, "</tool_response>", 16) == 0;
        if (!tool_resp) {
            last_query = i;
            break;
        }
    }
    /* 3. the messages */
    for (int i = 0; i < n; i++) {
        const omni_message *m = &msgs[i];
        flatten(m, &c);
        view v = content_view(&c);
        if (is_role(m, "user") || (is_role(m, "system") && i > 0)) {
            sb_str(&out, "<|im_start|>");
            sb_str(&out, m->role);
            sb_str(&out, "\n");
            sb_add(&out, v.p, v.n);
            sb_str(&out, "<|im_end|>\n");
        } else if (is_role(m, "assistant")) {
            assistant(&out, v, i > last_query, i == n - 1);
        } else if (is_role(m, "tool")) {
            if (i == 0 || !is_role(&msgs[i - 1], "tool")) sb_str(&out, "<|im_start|>user");
            sb_str(&out, "\n<tool_response>\n");
            sb_add(&out, v.p, v.n);
            sb_str(&out, "\n</tool_response>");
            if (i == n - 1 || !is_role(&msgs[i + 1], "tool")) sb_str(&out, "<|im_end|>\n");
        }
    }
    /* 4. generation prompt */
    if (add_generation_prompt) {
        sb_str(&out, "<|im_start|>assistant\n");
        if (st->enable_thinking == 0) sb_str(&out, "<think>\n\n</think>\n\n");
    }
    sb_add(&out, "", 0);
    free(c.s);
    if (out.oom || c.oom) {
        free(out.s);
        omni_fail(e, OMNI_E_NOMEM, "chat: out of memory");
        return NULL;
    }
    if (!out.s) out.s = calloc(1, 1);
    return out.s;
}
