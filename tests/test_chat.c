/* test_chat.c — the native ChatML renderer against reference renders of the real Jinja templates.
 *
 * tests/data/tokenizer/chat_cases.json holds the conversations; chat_ref.json the texts transformers'
 * apply_chat_template produced from the Qwen3-Omni chat_template.json and Qwen3's tokenizer_config.json template
 * (tests/gen_tokenizer_ref.py). Every render must match byte for byte. */
#include <cjson/cJSON.h>
#include <stdlib.h>
#include <string.h>

#include "chat.h"
#include "harness.h"
#include "util.h"

#define CHAT_DATA TESTDATA "/tokenizer/"

static cJSON *load_json(const char *path) {
    omni_err e = { { 0 } };
    size_t n;
    char *s = omni_read_file(path, &n, &e);
    if (!s) return NULL;
    cJSON *j = cJSON_ParseWithLength(s, n);
    free(s);
    return j;
}

/* Builds omni_messages from a case's JSON (items point into the JSON, which must outlive them). */
static omni_message *case_messages(const cJSON *msgs, int *n_out) {
    int n = cJSON_GetArraySize(msgs), i = 0;
    omni_message *m = calloc((size_t)n, sizeof *m);
    for (const cJSON *jm = msgs->child; jm; jm = jm->next, i++) {
        const cJSON *items = cJSON_GetObjectItemCaseSensitive(jm, "items");
        int ni = cJSON_GetArraySize(items), k = 0;
        omni_item *it = calloc((size_t)ni + 1, sizeof *it);
        for (const cJSON *ji = items->child; ji; ji = ji->next, k++) {
            const char *kind = cJSON_GetObjectItemCaseSensitive(ji, "kind")->valuestring;
            it[k].kind = strcmp(kind, "text") == 0    ? OMNI_ITEM_TEXT
                         : strcmp(kind, "audio") == 0 ? OMNI_ITEM_AUDIO
                         : strcmp(kind, "image") == 0 ? OMNI_ITEM_IMAGE
                                                      : OMNI_ITEM_VIDEO;
            const cJSON *tx = cJSON_GetObjectItemCaseSensitive(ji, "text");
            it[k].text = cJSON_IsString(tx) ? tx->valuestring : NULL;
        }
        m[i].role = cJSON_GetObjectItemCaseSensitive(jm, "role")->valuestring;
        m[i].items = it;
        m[i].n_items = ni;
    }
    *n_out = n;
    return m;
}

static void free_messages(omni_message *m, int n) {
    for (int i = 0; i < n; i++) free((void *)m[i].items);
    free(m);
}

static int has_media(const cJSON *jcase) {
    for (const cJSON *jm = cJSON_GetObjectItemCaseSensitive(jcase, "messages")->child; jm; jm = jm->next)
        for (const cJSON *ji = cJSON_GetObjectItemCaseSensitive(jm, "items")->child; ji; ji = ji->next)
            if (strcmp(cJSON_GetObjectItemCaseSensitive(ji, "kind")->valuestring, "text") != 0) return 1;
    return 0;
}

TEST(chat_matches_reference_renders) {
    cJSON *cases = load_json(CHAT_DATA "chat_cases.json"), *ref = load_json(CHAT_DATA "chat_ref.json");
    REQUIRE(cases && ref);
    const cJSON *renders = cJSON_GetObjectItemCaseSensitive(ref, "renders");
    int checked = 0;
    for (const cJSON *jc = cases->child; jc; jc = jc->next) {
        const char *name = cJSON_GetObjectItemCaseSensitive(jc, "name")->valuestring;
        const cJSON *th = cJSON_GetObjectItemCaseSensitive(jc, "thinking");
        int gen = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(jc, "gen"));
        int n;
        omni_message *msgs = case_messages(cJSON_GetObjectItemCaseSensitive(jc, "messages"), &n);
        for (int kind = 0; kind < 2; kind++) {
            chat_style st = { kind == 0 ? CHAT_QWEN3_OMNI : CHAT_QWEN3, cJSON_IsBool(th) ? cJSON_IsTrue(th) : -1 };
            char key[128];
            snprintf(key, sizeof key, "%s/%s", name, kind == 0 ? "omni" : "qwen3");
            const cJSON *want = cJSON_GetObjectItemCaseSensitive(renders, key);
            omni_err e = { { 0 } };
            char *got = chat_render(&st, msgs, n, gen, &e);
            if (!cJSON_IsString(want)) { /* not rendered by the reference: only media under Qwen3 is expected */
                CHECK(kind == 1 && has_media(jc));
                if (!(got == NULL && strstr(e.msg, "Qwen3 template"))) th_fail(__FILE__, __LINE__, "%s: expected an error", key);
                free(got);
                continue;
            }
            if (!got || strcmp(got, want->valuestring) != 0)
                th_fail(__FILE__, __LINE__, "%s:\n  got  %s\n  want %s\n  (%s)", key, got ? got : "(null)",
                        want->valuestring, e.msg);
            checked++;
            free(got);
        }
        free_messages(msgs, n);
    }
    CHECK(checked >= 25);
    cJSON_Delete(cases);
    cJSON_Delete(ref);
}

TEST(chat_style_detection) {
    size_t n;
    omni_err e = { { 0 } };
    char *omni = omni_read_file(CHAT_DATA "qwen3-omni-chat_template.json", &n, &e);
    char *qwen3 = omni_read_file(CHAT_DATA "tokenizer_config.json", &n, &e);
    REQUIRE(omni && qwen3);
    CHECK(chat_style_detect(omni).kind == CHAT_QWEN3_OMNI);
    CHECK(chat_style_detect(qwen3).kind == CHAT_QWEN3);
    CHECK(chat_style_detect(qwen3).enable_thinking == -1);
    CHECK(chat_style_detect(NULL).kind == CHAT_QWEN3_OMNI);
    CHECK(chat_style_detect("").kind == CHAT_QWEN3_OMNI);
    CHECK(chat_style_detect("{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}").kind == CHAT_QWEN3_OMNI);
    CHECK(chat_style_default().kind == CHAT_QWEN3_OMNI && chat_style_default().enable_thinking == -1);
    free(omni);
    free(qwen3);
}

TEST(chat_bad_input) {
    omni_err e = { { 0 } };
    omni_item text = { OMNI_ITEM_TEXT, "hi" }, bad = { (omni_item_kind)42, NULL }, audio = { OMNI_ITEM_AUDIO, NULL };
    omni_message ok = { "user", &text, 1 };
    CHECK(chat_render(NULL, &ok, 0, 1, &e) == NULL && strstr(e.msg, "no messages"));
    omni_message norole = { NULL, &text, 1 };
    CHECK(chat_render(NULL, &norole, 1, 1, &e) == NULL && strstr(e.msg, "no role"));
    omni_message badkind = { "user", &bad, 1 };
    CHECK(chat_render(NULL, &badkind, 1, 1, &e) == NULL && strstr(e.msg, "unknown kind"));
    chat_style q3 = { CHAT_QWEN3, -1 };
    omni_message media = { "user", &audio, 1 };
    CHECK(chat_render(&q3, &media, 1, 1, &e) == NULL && strstr(e.msg, "message 0"));
    /* NULL style means the default (Qwen3-Omni); a NULL text item renders as empty */
    omni_item null_text = { OMNI_ITEM_TEXT, NULL };
    omni_message m2[2] = { { "user", &null_text, 1 }, { "user", &audio, 1 } };
    char *s = chat_render(NULL, m2, 2, 0, &e);
    REQUIRE(s);
    CHECK(strcmp(s, "<|im_start|>user\n<|im_end|>\n<|im_start|>user\n<|audio_start|><|audio_pad|><|audio_end|><|im_end|>\n") == 0);
    free(s);
}
