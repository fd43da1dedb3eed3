/* tokenizer.c — loading tokenizer.json, token lookup and decoding (ByteLevel decoder, streaming detokenizer).
 *
 * What is read mirrors Hugging Face tokenizers' deserialisation (tokenizer/serialization.rs, models/bpe/
 * serialization.rs): model.vocab (string -> id), model.merges ("a b" strings or ["a", "b"] pairs; ranks are the
 * positions; a merge whose parts or result are not in the vocabulary is an error, as MergeTokenOutOfVocabulary is),
 * added_tokens (ids assigned as AddedVocabulary::add_tokens does), normalizer (NFC or none), pre_tokenizer (the Qwen
 * Split regex followed by ByteLevel without regex) and decoder (ByteLevel). Anything else fails with one line. */
#include "tok_internal.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "unicode.h"

/* ---- the byte-level alphabet (GPT-2 bytes_to_unicode) -------------------------------------------------------- */

/* Byte b is shown as a printable character: '!'..'~', U+00A1..U+00AC and U+00AE..U+00FF stand for themselves, the
 * other 68 bytes take U+0100.. in byte order. */
static uint32_t byte_to_char(int b) {
    if ((b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF)) return (uint32_t)b;
    int n = 0;
    for (int i = 0; i < b; i++)
        if (!((i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF))) n++;
    return 0x100u + (uint32_t)n;
}

/* Inverse of byte_to_char, -1 for characters outside the alphabet. The 68 shifted bytes in order, for U+0100.. */
static const uint8_t SHIFTED[68] = {
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10,
    0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x7f,
    0x80, 0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0x87, 0x88, 0x89, 0x8a, 0x8b, 0x8c, 0x8d, 0x8e, 0x8f, 0x90,
    0x91, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0x9b, 0x9c, 0x9d, 0x9e, 0x9f, 0xa0, 0xad,
};

static int char_to_byte(uint32_t c) {
    if ((c >= 0x21 && c <= 0x7E) || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF)) return (int)c;
    if (c < 0x100 || c >= 0x100 + 68) return -1;
    return SHIFTED[c - 0x100];
}

/* ---- hash maps ---------------------------------------------------------------------------------------------- */

uint64_t tok_hash_bytes(const char *s, size_t n) { /* FNV-1a, then a final mix so low bits are good */
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)s[i]) * 0x100000001b3ull;
    h ^= h >> 29;
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 32);
}

static uint64_t mix64(uint64_t x) { /* splitmix64 finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static void key_of(const tok_tokenizer *t, int raw, uint32_t id, const char **k, size_t *n) {
    if (raw) {
        *k = t->bytes + t->byte_off[id];
        *n = t->byte_len[id];
    } else {
        *k = t->strs + t->str_off[id];
        *n = t->str_len[id];
    }
}

static int strmap_init(tok_strmap *m, size_t n) {
    uint32_t cap = 16;
    while (cap < n * 2 + 16) cap *= 2;
    m->slots = calloc(cap, sizeof *m->slots);
    m->cap = cap;
    return m->slots ? 0 : -1;
}

int32_t tok_strmap_get(const tok_strmap *m, const tok_tokenizer *t, int raw, const char *s, size_t n) {
    if (!m->slots) return -1;
    for (uint32_t i = (uint32_t)tok_hash_bytes(s, n) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        uint32_t v = m->slots[i];
        if (!v) return -1;
        const char *k;
        size_t kn;
        key_of(t, raw, v - 1, &k, &kn);
        if (kn == n && memcmp(k, s, n) == 0) return (int32_t)(v - 1);
    }
}

/* Inserts id under its own key; an existing equal key is replaced (the later JSON entry wins, as in a serde map). */
static void strmap_put(tok_strmap *m, const tok_tokenizer *t, int raw, uint32_t id) {
    const char *s;
    size_t n;
    key_of(t, raw, id, &s, &n);
    for (uint32_t i = (uint32_t)tok_hash_bytes(s, n) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        uint32_t v = m->slots[i];
        const char *k;
        size_t kn;
        if (v) key_of(t, raw, v - 1, &k, &kn);
        if (!v || (kn == n && memcmp(k, s, n) == 0)) {
            m->slots[i] = id + 1;
            return;
        }
    }
}

int tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, uint32_t *rank, int32_t *merged) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    for (uint32_t i = (uint32_t)mix64(key) & (m->cap - 1);; i = (i + 1) & (m->cap - 1)) {
        if (m->keys[i] == key) {
            *rank = m->rank[i];
            *merged = (int32_t)m->merged[i];
            return 1;
        }
        if (!m->keys[i]) return 0;
    }
}

static void pairmap_put(tok_pairmap *m, int32_t a, int32_t b, uint32_t rank, int32_t merged) {
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint32_t i = (uint32_t)mix64(key) & (m->cap - 1);
    while (m->keys[i] && m->keys[i] != key) i = (i + 1) & (m->cap - 1);
    m->keys[i] = key; /* a repeated pair takes the later rank, as collecting into a HashMap does */
    m->rank[i] = rank;
    m->merged[i] = (uint32_t)merged;
}

/* ---- building ----------------------------------------------------------------------------------------------- */

typedef struct {
    tok_tokenizer *t;
    omni_err *e;
    int32_t ids_cap; /* allocated length of the per-id arrays */
} loader;

static int fail_nomem(loader *L) { return omni_fail(L->e, OMNI_E_NOMEM, "%s: out of memory", L->t->name); }

static int arena_add(char **a, size_t *len, size_t *cap, const char *s, size_t n, uint32_t *off) {
    if (*len + n + 1 > *cap) {
        size_t nc = *cap ? *cap : 1 << 16;
        while (*len + n + 1 > nc) nc *= 2;
        char *na = realloc(*a, nc);
        if (!na) return -1;
        *a = na;
        *cap = nc;
    }
    if (*len + n >= UINT32_MAX) return -1;
    if (n) memcpy(*a + *len, s, n);
    (*a)[*len + n] = 0;
    *off = (uint32_t)*len;
    *len += n + 1;
    return 0;
}

/* Grows the per-id arrays so that id fits (geometrically: ids arrive one by one). */
static int ensure_id(loader *L, int32_t id) {
    tok_tokenizer *t = L->t;
    if (id < t->n_ids) return 0;
    if (id >= L->ids_cap) {
        int32_t cap = L->ids_cap ? L->ids_cap : 1024;
        while (cap <= id) cap *= 2;
        uint32_t *a = realloc(t->str_off, (size_t)cap * sizeof *a), *b, *c, *d;
        if (a) t->str_off = a;
        b = a ? realloc(t->str_len, (size_t)cap * sizeof *b) : NULL;
        if (b) t->str_len = b;
        c = b ? realloc(t->byte_off, (size_t)cap * sizeof *c) : NULL;
        if (c) t->byte_off = c;
        d = c ? realloc(t->byte_len, (size_t)cap * sizeof *d) : NULL;
        if (d) t->byte_len = d;
        uint8_t *f = d ? realloc(t->flags, (size_t)cap) : NULL;
        if (!f) return fail_nomem(L);
        t->flags = f;
        L->ids_cap = cap;
    }
    for (int32_t i = t->n_ids; i <= id; i++) {
        t->str_off[i] = t->str_len[i] = t->byte_off[i] = t->byte_len[i] = 0;
        t->flags[i] = 0;
    }
    t->n_ids = id + 1;
    return 0;
}

/* Sets the string of id and its decoded bytes: the ByteLevel decoder maps every character back to its byte, or,
 * when some character is outside the alphabet, keeps the string's own UTF-8 (decoders/byte_level.rs decode_chain). */
static int set_token(loader *L, int32_t id, const char *s, size_t n, const char *dec, size_t dec_n) {
    tok_tokenizer *t = L->t;
    if (arena_add(&t->strs, &t->strs_len, &t->strs_cap, s, n, &t->str_off[id])) return fail_nomem(L);
    t->str_len[id] = (uint32_t)n;
    char tmp[256], *buf = dec_n <= sizeof tmp ? tmp : malloc(dec_n);
    if (!buf) return fail_nomem(L);
    size_t o = 0;
    const unsigned char *u = (const unsigned char *)dec;
    for (size_t i = 0; i < dec_n;) {
        size_t adv;
        int b = char_to_byte(uni_utf8_decode(u + i, dec_n - i, &adv));
        if (b < 0) {
            o = 0;
            break;
        }
        buf[o++] = (char)b;
        i += adv;
    }
    const char *src = (o || !dec_n) ? buf : dec;
    size_t src_n = (o || !dec_n) ? o : dec_n;
    int rc = arena_add(&t->bytes, &t->bytes_len, &t->bytes_cap, src, src_n, &t->byte_off[id]);
    if (buf != tmp) free(buf);
    if (rc) return fail_nomem(L);
    t->byte_len[id] = (uint32_t)src_n;
    return 0;
}

static const cJSON *get(const cJSON *o, const char *k) { return cJSON_GetObjectItemCaseSensitive(o, k); }

static int get_bool(const cJSON *o, const char *k, int dflt) {
    const cJSON *v = get(o, k);
    return cJSON_IsBool(v) ? cJSON_IsTrue(v) : dflt;
}

static const char *get_str(const cJSON *o, const char *k) {
    const cJSON *v = get(o, k);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int is_null_or_missing(const cJSON *v) { return !v || cJSON_IsNull(v); }

static int parse_vocab(loader *L, const cJSON *vocab) {
    tok_tokenizer *t = L->t;
    if (!cJSON_IsObject(vocab)) return omni_fail(L->e, OMNI_E_FORMAT, "%s: model.vocab is not an object", t->name);
    size_t n = 0;
    for (const cJSON *c = vocab->child; c; c = c->next) {
        if (!cJSON_IsNumber(c) || c->valuedouble < 0 || c->valuedouble > 16777215.0 ||
            c->valuedouble != (double)(int32_t)c->valuedouble)
            return omni_fail(L->e, OMNI_E_FORMAT, "%s: model.vocab[\"%.40s\"] is not a valid id", t->name,
                             c->string ? c->string : "");
        if (ensure_id(L, (int32_t)c->valuedouble)) return OMNI_E_NOMEM;
        n++;
    }
    if (n == 0) return omni_fail(L->e, OMNI_E_FORMAT, "%s: model.vocab is empty", t->name);
    if (strmap_init(&t->vocab, n)) return fail_nomem(L);
    for (const cJSON *c = vocab->child; c; c = c->next) {
        int32_t id = (int32_t)c->valuedouble;
        const char *s = c->string ? c->string : "";
        size_t sn = strlen(s);
        if (set_token(L, id, s, sn, s, sn)) return OMNI_E_NOMEM;
        t->flags[id] |= TOKF_VOCAB;
        strmap_put(&t->vocab, t, 0, (uint32_t)id);
    }
    return 0;
}

static int merge_one(loader *L, uint32_t rank, const char *a, size_t an, const char *b, size_t bn) {
    tok_tokenizer *t = L->t;
    int32_t ia = tok_strmap_get(&t->vocab, t, 0, a, an), ib = tok_strmap_get(&t->vocab, t, 0, b, bn);
    if (ia < 0 || ib < 0)
        return omni_fail(L->e, OMNI_E_FORMAT, "%s: model.merges[%u] uses \"%.*s\", which is not in model.vocab",
                         t->name, rank, (int)(ia < 0 ? (an > 40 ? 40 : an) : (bn > 40 ? 40 : bn)), ia < 0 ? a : b);
    char tmp[512], *cat = an + bn <= sizeof tmp ? tmp : malloc(an + bn);
    if (!cat) return fail_nomem(L);
    memcpy(cat, a, an);
    memcpy(cat + an, b, bn);
    int32_t m = tok_strmap_get(&t->vocab, t, 0, cat, an + bn);
    if (cat != tmp) free(cat);
    if (m < 0)
        return omni_fail(L->e, OMNI_E_FORMAT, "%s: model.merges[%u]: the merged token \"%.*s%.*s\" is not in model.vocab",
                         t->name, rank, (int)(an > 30 ? 30 : an), a, (int)(bn > 30 ? 30 : bn), b);
    pairmap_put(&t->merges, ia, ib, rank, m);
    return 0;
}

static int parse_merges(loader *L, const cJSON *merges) {
    tok_tokenizer *t = L->t;
    if (!cJSON_IsArray(merges)) return omni_fail(L->e, OMNI_E_FORMAT, "%s: model.merges is not an array", t->name);
    int n = cJSON_GetArraySize(merges);
    uint32_t cap = 16;
    while (cap < (uint32_t)n * 2 + 16) cap *= 2;
    t->merges.cap = cap;
    t->merges.keys = calloc(cap, sizeof *t->merges.keys);
    t->merges.rank = malloc(cap * sizeof *t->merges.rank);
    t->merges.merged = malloc(cap * sizeof *t->merges.merged);
    if (!t->merges.keys || !t->merges.rank || !t->merges.merged) return fail_nomem(L);
    uint32_t rank = 0;
    for (const cJSON *c = merges->child; c; c = c->next) {
        if (cJSON_IsString(c)) { /* legacy "a b"; "#version" lines are skipped and do not take a rank */
            const char *s = c->valuestring, *sp = strchr(s, ' ');
            if (strncmp(s, "#version", 8) == 0) continue;
            if (!sp || strchr(sp + 1, ' '))
                return omni_fail(L->e, OMNI_E_FORMAT, "%s: model.merges[%u] is not two tokens separated by one space",
                                 t->name, rank);
            if (merge_one(L, rank, s, (size_t)(sp - s), sp + 1, strlen(sp + 1))) return OMNI_E_FORMAT;
        } else if (cJSON_IsArray(c) && cJSON_GetArraySize(c) == 2 && cJSON_IsString(c->child) &&
                   cJSON_IsString(c->child->next)) {
            const char *a = c->child->valuestring, *b = c->child->next->valuestring;
            if (merge_one(L, rank, a, strlen(a), b, strlen(b))) return OMNI_E_FORMAT;
        } else {
            return omni_fail(L->e, OMNI_E_FORMAT, "%s: model.merges[%u] is neither \"a b\" nor [\"a\", \"b\"]",
                             t->name, rank);
        }
        rank++;
    }
    return 0;
}

static int parse_model(loader *L, const cJSON *model) {
    tok_tokenizer *t = L->t;
    if (!cJSON_IsObject(model)) return omni_fail(L->e, OMNI_E_FORMAT, "%s: no \"model\" object", t->name);
    const char *type = get_str(model, "type");
    if (type && strcmp(type, "BPE") != 0)
        return omni_fail(L->e, OMNI_E_UNSUPPORTED, "%s: model.type \"%.40s\" is not supported (only BPE)", t->name,
                         type);
    const cJSON *dropout = get(model, "dropout");
    if (!is_null_or_missing(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0.0))
        return omni_fail(L->e, OMNI_E_UNSUPPORTED, "%s: model.dropout is not supported", t->name);
    if (get_bool(model, "byte_fallback", 0))
        return omni_fail(L->e, OMNI_E_UNSUPPORTED, "%s: model.byte_fallback is not supported", t->name);
    const char *pre = get_str(model, "continuing_subword_prefix"), *suf = get_str(model, "end_of_word_suffix");
    if ((pre && *pre) || (suf && *suf))
        return omni_fail(L->e, OMNI_E_UNSUPPORTED, "%s: model.%s is not supported", t->name,
                         pre && *pre ? "continuing_subword_prefix" : "end_of_word_suffix");
    int rc = parse_vocab(L, get(model, "vocab"));
    if (rc) return rc;
    if ((rc = parse_merges(L, get(model, "merges")))) return rc;
    t->ignore_merges = get_bool(model, "ignore_merges", 0);
    t->fuse_unk = get_bool(model, "fuse_unk", 0);
    t->unk_id = -1;
    const char *unk = get_str(model, "unk_token");
    if (unk) {
        t->unk_id = tok_strmap_get(&t->vocab, t, 0, unk, strlen(unk));
        if (t->unk_id < 0)
            return omni_fail(L->e, OMNI_E_FORMAT, "%s: model.unk_token \"%.40s\" is not in model.vocab", t->name, unk);
    }
    for (int b = 0; b < 256; b++) {
        char c[4];
        int n = uni_utf8_encode(byte_to_char(b), c);
        t->byte_id[b] = tok_strmap_get(&t->vocab, t, 0, c, (size_t)n);
    }
    if (t->ignore_merges) {
        if (strmap_init(&t->vocab_raw, (size_t)t->n_ids)) return fail_nomem(L);
        for (int32_t id = 0; id < t->n_ids; id++)
            if (t->flags[id] & TOKF_VOCAB) strmap_put(&t->vocab_raw, t, 1, (uint32_t)id);
    }
    return 0;
}

static int parse_normalizer(loader *L, const cJSON *n) {
    tok_tokenizer *t = L->t;
    if (is_null_or_missing(n)) return 0;
    const char *type = get_str(n, "type");
    if (type && strcmp(type, "NFC") == 0) {
        t->nfc = 1;
        return 0;
    }
    if (type && strcmp(type, "Sequence") == 0 && cJSON_IsArray(get(n, "normalizers"))) {
        for (const cJSON *c = get(n, "normalizers")->child; c; c = c->next) {
            const char *ct = get_str(c, "type");
            if (!ct || strcmp(ct, "NFC") != 0)
                return omni_fail(L->e, OMNI_E_UNSUPPORTED, "%s: normalizer \"%.40s\" is not supported (only NFC)",
                                 t->name, ct ? ct : "?");
            t->nfc = 1;
        }
        return 0;
    }
    return omni_fail(L->e, OMNI_E_UNSUPPORTED, "%s: normalizer \"%.40s\" is not supported (only NFC)", t->name,
                     type ? type : "?");
}

/* The two Split patterns implemented in tok_encode.c: Qwen2/Qwen3's, and Qwen3.5's (marks count as letters). */
static const char QWEN2_RE[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
                               "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
static const char QWEN35_RE[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}| "
                                "?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

static int parse_byte_level(loader *L, const cJSON *p, const char *where) {
    if (get_bool(p, "add_prefix_space", 0) || get_bool(p, "use_regex", 1))
        return omni_fail(L->e, OMNI_E_UNSUPPORTED, "%s: %s ByteLevel with add_prefix_space or use_regex is not supported",
                         L->t->name, where);
    return 0;
}

static int parse_pre_tokenizer(loader *L, const cJSON *p) {
    tok_tokenizer *t = L->t;
    const char *type = is_null_or_missing(p) ? NULL : get_str(p, "type");
    const cJSON *seq = type && strcmp(type, "Sequence") == 0 ? get(p, "pretokenizers") : NULL;
    if (!cJSON_IsArray(seq) || cJSON_GetArraySize(seq) != 2)
        return omni_fail(L->e, OMNI_E_UNSUPPORTED,
                         "%s: pre_tokenizer \"%.40s\" is not supported (only Sequence[Split, ByteLevel])", t->name,
                         type ? type : "null");
    const cJSON *split = seq->child, *bl = seq->child->next;
    const char *st = get_str(split, "type"), *bt = get_str(bl, "type");
    if (!st || strcmp(st, "Split") != 0 || !bt || strcmp(bt, "ByteLevel") != 0)
        return omni_fail(L->e, OMNI_E_UNSUPPORTED, "%s: pre_tokenizer Sequence[%.30s, %.30s] is not supported", t->name,
                         st ? st : "?", bt ? bt : "?");
    const char *re = get_str(get(split, "pattern"), "Regex"), *beh = get_str(split, "behavior");
    if (!re || (strcmp(re, QWEN2_RE) != 0 && strcmp(re, QWEN35_RE) != 0))
        return omni_fail(L->e, OMNI_E_UNSUPPORTED, "%s: pre_tokenizer Split pattern \"%.60s...\" is not supported",
                         t->name, re ? re : "(not a Regex)");
    if (!beh || strcmp(beh, "Isolated") != 0 || get_bool(split, "invert", 0))
        return omni_fail(L->e, OMNI_E_UNSUPPORTED, "%s: pre_tokenizer Split behavior must be Isolated, not inverted",
                         t->name);
    t->split_kind = strcmp(re, QWEN2_RE) == 0 ? TOK_SPLIT_QWEN2 : TOK_SPLIT_QWEN35;
    return parse_byte_level(L, bl, "pre_tokenizer");
}

static int parse_decoder(loader *L, const cJSON *d) {
    const char *type = is_null_or_missing(d) ? NULL : get_str(d, "type");
    if (!type || strcmp(type, "ByteLevel") != 0)
        return omni_fail(L->e, OMNI_E_UNSUPPORTED, "%s: decoder \"%.40s\" is not supported (only ByteLevel)",
                         L->t->name, type ? type : "null");
    return 0;
}

/* Added tokens get ids as AddedVocabulary::add_tokens assigns them: the model's id when the content is in the
 * vocabulary, else the next free id (the vocabulary size, then one past the largest added id). The "id" field is
 * only checked (HF warns on a mismatch too). */
static int parse_added(loader *L, const cJSON *arr) {
    tok_tokenizer *t = L->t;
    if (is_null_or_missing(arr)) return 0;
    if (!cJSON_IsArray(arr)) return omni_fail(L->e, OMNI_E_FORMAT, "%s: added_tokens is not an array", t->name);
    int n = cJSON_GetArraySize(arr), i = 0;
    t->added = calloc((size_t)n + 1, sizeof *t->added);
    if (!t->added) return fail_nomem(L);
    if (strmap_init(&t->added_map, (size_t)n)) return fail_nomem(L);
    size_t vocab_count = 0;
    for (int32_t id = 0; id < t->n_ids; id++) vocab_count += (t->flags[id] & TOKF_VOCAB) != 0;
    int32_t max_added = -1;
    size_t pat_len = 0, pat_cap = 0;
    for (const cJSON *c = arr->child; c; c = c->next, i++) {
        const char *content = get_str(c, "content");
        if (!cJSON_IsObject(c) || !content)
            return omni_fail(L->e, OMNI_E_FORMAT, "%s: added_tokens[%d] has no \"content\"", t->name, i);
        size_t cn = strlen(content);
        if (cn == 0) continue; /* HF ignores empty tokens */
        int32_t id = tok_strmap_get(&t->added_map, t, 0, content, cn);
        if (id < 0) id = tok_strmap_get(&t->vocab, t, 0, content, cn);
        if (id < 0) {
            id = max_added < 0 ? (int32_t)vocab_count : (max_added >= (int32_t)vocab_count ? max_added + 1 : (int32_t)vocab_count);
            const cJSON *jid = get(c, "id");
            if (cJSON_IsNumber(jid) && jid->valuedouble != id)
                omni_log(OMNI_LOG_WARN, "%s: added token '%.40s' has id %.0f in the file but gets id %d (as in HF)",
                         t->name, content, jid->valuedouble, id);
        }
        if (id > 16777215) return omni_fail(L->e, OMNI_E_FORMAT, "%s: added_tokens[%d]: id too large", t->name, i);
        if (ensure_id(L, id)) return OMNI_E_NOMEM;
        if (id > max_added) max_added = id;
        tok_added *a = NULL;
        for (int k = 0; k < t->n_added; k++)
            if (t->added[k].id == id) a = &t->added[k];
        if (!a) a = &t->added[t->n_added++];
        a->id = id;
        a->single_word = (uint8_t)get_bool(c, "single_word", 0);
        a->lstrip = (uint8_t)get_bool(c, "lstrip", 0);
        a->rstrip = (uint8_t)get_bool(c, "rstrip", 0);
        a->special = (uint8_t)get_bool(c, "special", 0);
        a->normalized = (uint8_t)get_bool(c, "normalized", !a->special);
        /* Decoding uses the normalised content for normalized tokens (AddedVocabulary::simple_id_to_token). */
        size_t nn = cn;
        char *norm = a->normalized && t->nfc ? uni_nfc(content, cn, &nn) : NULL;
        const char *pat = norm ? norm : content;
        int rc = arena_add(&t->added_pat, &pat_len, &pat_cap, pat, nn, &a->off);
        a->len = (uint32_t)nn;
        if (!rc) rc = set_token(L, id, content, cn, pat, nn);
        free(norm);
        if (rc) return fail_nomem(L);
        t->flags[id] |= TOKF_ADDED;
        t->flags[id] = (uint8_t)((t->flags[id] & ~(TOKF_SPECIAL | TOKF_SKIP)) | (a->special ? TOKF_SPECIAL : 0));
        if (a->normalized) t->has_norm_added = 1;
        strmap_put(&t->added_map, t, 0, (uint32_t)id);
    }
    /* which ids decode(skip_special_tokens=True) drops: those whose id_to_token is a special token's content */
    for (int k = 0; k < t->n_added; k++) {
        const tok_added *a = &t->added[k];
        if (!a->special) continue;
        const char *c = t->strs + t->str_off[a->id];
        size_t cn = t->str_len[a->id];
        int32_t v = tok_strmap_get(&t->vocab, t, 0, c, cn);
        if (v >= 0 && !(t->flags[v] & TOKF_ADDED)) t->flags[v] |= TOKF_SKIP;
        for (int j = 0; j < t->n_added; j++) {
            const tok_added *b = &t->added[j];
            if (b->len == cn && memcmp(t->added_pat + b->off, c, cn) == 0) t->flags[b->id] |= TOKF_SKIP;
        }
    }
    return 0;
}

int tok_load_mem(const char *json, size_t len, const char *name, tok_tokenizer **out, omni_err *e) {
    *out = NULL;
    if (!json) return omni_fail(e, OMNI_E_ARG, "tokenizer: no JSON given");
    tok_tokenizer *t = calloc(1, sizeof *t);
    if (!t) return omni_fail(e, OMNI_E_NOMEM, "%s: out of memory", name ? name : "tokenizer.json");
    snprintf(t->name, sizeof t->name, "%s", name ? name : "tokenizer.json");
    loader L = { t, e, 0 };
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(json, len, &end, 0);
    int rc;
    if (!root) {
        rc = omni_fail(e, OMNI_E_FORMAT, "%s: not valid JSON (error near byte %zu)", t->name,
                       end && end >= json ? (size_t)(end - json) : (size_t)0);
    } else if (!cJSON_IsObject(root)) {
        rc = omni_fail(e, OMNI_E_FORMAT, "%s: top level is not a JSON object", t->name);
    } else if (!(rc = parse_model(&L, get(root, "model"))) && !(rc = parse_normalizer(&L, get(root, "normalizer"))) &&
               !(rc = parse_pre_tokenizer(&L, get(root, "pre_tokenizer"))) &&
               !(rc = parse_decoder(&L, get(root, "decoder")))) {
        rc = parse_added(&L, get(root, "added_tokens"));
    }
    cJSON_Delete(root);
    if (rc) {
        tok_free(t);
        return rc;
    }
    *out = t;
    return 0;
}

int tok_load(const char *path, tok_tokenizer **out, omni_err *e) {
    size_t len;
    *out = NULL;
    char *buf = omni_read_file(path, &len, e);
    if (!buf) return OMNI_E_IO;
    int rc = tok_load_mem(buf, len, path, out, e);
    free(buf);
    return rc;
}

void tok_free(tok_tokenizer *t) {
    if (!t) return;
    free(t->str_off);
    free(t->str_len);
    free(t->byte_off);
    free(t->byte_len);
    free(t->flags);
    free(t->strs);
    free(t->bytes);
    free(t->vocab.slots);
    free(t->vocab_raw.slots);
    free(t->added_map.slots);
    free(t->merges.keys);
    free(t->merges.rank);
    free(t->merges.merged);
    free(t->added);
    free(t->added_pat);
    free(t);
}

/* ---- lookup ------------------------------------------------------------------------------------------------- */

int32_t tok_lookup(const tok_tokenizer *t, const char *token) {
    if (!t || !token) return -1;
    size_t n = strlen(token);
    int32_t id = tok_strmap_get(&t->added_map, t, 0, token, n);
    return id >= 0 ? id : tok_strmap_get(&t->vocab, t, 0, token, n);
}

const char *tok_token_string(const tok_tokenizer *t, int32_t id) {
    if (!t || id < 0 || id >= t->n_ids || !t->flags[id]) return NULL;
    if (t->flags[id] & TOKF_ADDED) /* normalized added tokens show their normalised form (simple_id_to_token) */
        for (int k = 0; k < t->n_added; k++)
            if (t->added[k].id == id) return t->added_pat + t->added[k].off;
    return t->strs + t->str_off[id];
}

int tok_token_bytes(const tok_tokenizer *t, int32_t id, const char **bytes, size_t *len) {
    if (!t || id < 0 || id >= t->n_ids || !t->flags[id]) return OMNI_E_ARG;
    *bytes = t->bytes + t->byte_off[id];
    *len = t->byte_len[id];
    return 0;
}

int32_t tok_vocab_size(const tok_tokenizer *t) { return t ? t->n_ids : 0; }

int tok_is_special(const tok_tokenizer *t, int32_t id) {
    return t && id >= 0 && id < t->n_ids && (t->flags[id] & TOKF_SPECIAL) != 0;
}

/* ---- decoding ----------------------------------------------------------------------------------------------- */

struct tok_detok {
    const tok_tokenizer *t;
    unsigned char *buf; /* pending bytes: at most one unfinished character once push returns, unless cap was short */
    size_t n, cap;
};

tok_detok *tok_detok_new(const tok_tokenizer *t) {
    if (!t) return NULL;
    tok_detok *d = calloc(1, sizeof *d);
    if (d) d->t = t;
    return d;
}

void tok_detok_free(tok_detok *d) {
    if (!d) return;
    free(d->buf);
    free(d);
}

static const char REPL[3] = { (char)0xEF, (char)0xBF, (char)0xBD }; /* U+FFFD */

/* Moves whole characters from the pending buffer to out: valid characters as they are, each maximal invalid
 * subpart as U+FFFD (String::from_utf8_lossy). An unfinished tail stays pending unless final. */
static int drain(tok_detok *d, char *out, size_t cap, int final) {
    size_t i = 0, o = 0;
    while (i < d->n) {
        int incomplete;
        size_t v = uni_utf8_valid_prefix(d->buf + i, d->n - i, &incomplete);
        if (v) { /* copy the whole characters of the valid run that fit */
            size_t take = v;
            if (o + take > cap) {
                take = 0;
                while (take < v) {
                    size_t adv;
                    uni_utf8_decode(d->buf + i + take, v - take, &adv);
                    if (o + take + adv > cap) break;
                    take += adv;
                }
            }
            memcpy(out + o, d->buf + i, take);
            o += take;
            i += take;
            if (take < v) break;
            continue;
        }
        if (incomplete && !final) break;
        size_t adv;
        uni_utf8_decode(d->buf + i, d->n - i, &adv);
        if (o + 3 > cap) break;
        memcpy(out + o, REPL, 3);
        o += 3;
        i += adv;
    }
    if (i) memmove(d->buf, d->buf + i, d->n - i);
    d->n -= i;
    if (o < cap) out[o] = 0;
    return (int)o;
}

int tok_detok_push(tok_detok *d, int32_t id, char *out, size_t cap) {
    if (!d || (!out && cap)) return OMNI_E_ARG;
    const char *b;
    size_t n;
    if (tok_token_bytes(d->t, id, &b, &n) == 0 && n) {
        if (d->n + n > d->cap) {
            size_t nc = d->cap ? d->cap : 64;
            while (nc < d->n + n) nc *= 2;
            unsigned char *nb = realloc(d->buf, nc);
            if (!nb) return OMNI_E_NOMEM;
            d->buf = nb;
            d->cap = nc;
        }
        memcpy(d->buf + d->n, b, n);
        d->n += n;
    } else if (id < 0 || id >= tok_vocab_size(d->t)) {
        return OMNI_E_ARG;
    }
    return drain(d, out, cap, 0);
}

int tok_detok_flush(tok_detok *d, char *out, size_t cap) {
    if (!d || (!out && cap)) return OMNI_E_ARG;
    return drain(d, out, cap, 1);
}

char *tok_decode(const tok_tokenizer *t, const int32_t *ids, int n, int skip_special, size_t *out_len) {
    size_t total = 0;
    for (int i = 0; i < n; i++) {
        const char *b;
        size_t bn;
        if (tok_token_bytes(t, ids[i], &b, &bn) == 0) total += bn;
    }
    unsigned char *raw = malloc(total + 1);
    char *out = raw ? malloc(total * 3 + 1) : NULL; /* every byte may become a 3-byte U+FFFD */
    if (!out) {
        free(raw);
        return NULL;
    }
    size_t r = 0, o = 0;
    for (int i = 0; i < n; i++) {
        const char *b;
        size_t bn;
        if (skip_special && ids[i] >= 0 && ids[i] < t->n_ids && (t->flags[ids[i]] & TOKF_SKIP)) continue;
        if (tok_token_bytes(t, ids[i], &b, &bn) == 0) {
            memcpy(raw + r, b, bn);
            r += bn;
        }
    }
    for (size_t i = 0; i < r;) {
        size_t adv;
        uint32_t cp = uni_utf8_decode(raw + i, r - i, &adv);
        if (cp == UNI_REPLACEMENT && !(adv == 3 && raw[i] == 0xEF && raw[i + 1] == 0xBF && raw[i + 2] == 0xBD)) {
            memcpy(out + o, REPL, 3);
            o += 3;
        } else {
            memcpy(out + o, raw + i, adv);
            o += adv;
        }
        i += adv;
    }
    out[o] = 0;
    free(raw);
    if (out_len) *out_len = o;
    return out;
}
