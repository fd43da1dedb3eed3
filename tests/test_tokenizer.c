/* test_tokenizer.c — the byte-level BPE tokenizer against Hugging Face tokenizers.
 *
 * Reference data (tests/data/tokenizer/, made by tests/gen_tokenizer_ref.py with tokenizers 0.23 on the reference
 * machine): the ids and decodes of every corpus.json line for five tokenizers (Qwen3, Qwen3-Omni, Qwen3 with the
 * Qwen3.5 regex, a small tokenizer with added-token flags, and that one with ignore_merges), and FNV-1a-64 hashes of
 * decode([id]), id_to_token(id) and decode(range) for every block of 1024 ids. All comparisons are exact. Also:
 * streaming detokenisation, NFC against Unicode's NormalizationTest, and malformed tokenizer.json files. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "tokenizer.h"
#include "unicode.h"
#include "util.h"

#define TOK_FUZZ_NO_ENTRY
#include "fuzz/fuzz_tokenizer.c"

#define TOKDATA TESTDATA "/tokenizer/"
#ifndef TESTDATA_BUILD
#define TESTDATA_BUILD "build/testdata"
#endif

/* Reads a whole pipe (xz -dc) into memory. */
static char *read_pipe(const char *cmd, size_t *len) {
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    size_t cap = 1 << 20, n = 0;
    char *buf = malloc(cap);
    for (size_t r; buf && (r = fread(buf + n, 1, cap - n - 1, p)) > 0;) {
        n += r;
        if (n + 1 == cap) {
            char *nb = realloc(buf, cap *= 2);
            if (!nb) free(buf);
            buf = nb;
        }
    }
    if (pclose(p) != 0 || !buf) {
        free(buf);
        return NULL;
    }
    buf[n] = 0;
    *len = n;
    return buf;
}

/* The text of tests/data/tokenizer/<name>.json.xz: the copy the Makefile unpacked, else decompressed here. */
static char *tokenizer_text(const char *name, size_t *len) {
    char path[512], cmd[600];
    omni_err e = { { 0 } };
    snprintf(path, sizeof path, "%s/%s.json", TESTDATA_BUILD, name);
    char *s = omni_file_exists(path) ? omni_read_file(path, len, &e) : NULL;
    if (s) return s;
    snprintf(cmd, sizeof cmd, "xz -dc %s%s.json.xz", TOKDATA, name);
    return read_pipe(cmd, len);
}

/* Loads a reference tokenizer; "qwen35re" is Qwen3's file with the Qwen3.5 regex, "flags_im" the flags tokenizer with
 * ignore_merges, both made the way tests/gen_tokenizer_ref.py makes them. */
static tok_tokenizer *load_named(const char *name) {
    size_t len;
    int q35 = strcmp(name, "qwen35re") == 0, im = strcmp(name, "flags_im") == 0;
    char *s = tokenizer_text(q35 ? "qwen3-tokenizer" : im ? "flags-tokenizer" : strcmp(name, "qwen3") == 0 ? "qwen3-tokenizer"
                                                          : strcmp(name, "omni") == 0 ? "qwen3-omni-tokenizer"
                                                                                      : "flags-tokenizer",
                             &len);
    if (!s) return NULL;
    if (q35 || im) { /* edit the JSON text in place of a JSON library round trip */
        const char *from = q35 ? "\\\\p{L}+" : "\"ignore_merges\": false", *to = q35 ? "[\\\\p{L}\\\\p{M}]+" : "\"ignore_merges\": true";
        const char *from2 = q35 ? "[^\\\\s\\\\p{L}\\\\p{N}]" : NULL, *to2 = q35 ? "[^\\\\s\\\\p{L}\\\\p{M}\\\\p{N}]" : NULL;
        char *out = malloc(len + 64);
        char *a = strstr(s, from);
        if (!out || !a) {
            free(out);
            free(s);
            return NULL;
        }
        size_t o = (size_t)(a - s);
        memcpy(out, s, o);
        strcpy(out + o, to);
        strcat(out + o, a + strlen(from));
        free(s);
        s = out;
        if (from2) {
            out = malloc(strlen(s) + 64);
            a = strstr(s, from2);
            if (!out || !a) {
                free(out);
                free(s);
                return NULL;
            }
            o = (size_t)(a - s);
            memcpy(out, s, o);
            strcpy(out + o, to2);
            strcat(out + o, a + strlen(from2));
            free(s);
            s = out;
        }
        len = strlen(s);
    }
    tok_tokenizer *t = NULL;
    omni_err e = { { 0 } };
    if (tok_load_mem(s, len, name, &t, &e)) th_fail(__FILE__, __LINE__, "load %s: %s", name, e.msg);
    free(s);
    return t;
}

/* Parses a JSON file; a name ending in .xz is decompressed with xz first. */
static cJSON *load_json(const char *path) {
    omni_err e = { { 0 } };
    size_t n, pl = strlen(path);
    char cmd[600];
    snprintf(cmd, sizeof cmd, "xz -dc %s", path);
    char *s = pl > 3 && strcmp(path + pl - 3, ".xz") == 0 ? read_pipe(cmd, &n) : omni_read_file(path, &n, &e);
    if (!s) return NULL;
    cJSON *j = cJSON_ParseWithLength(s, n);
    free(s);
    return j;
}

static void print_escaped(const char *label, const char *s) {
    printf("    %s \"", label);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (*p < 0x20 || *p == '"' || *p == '\\')
            printf("\\x%02x", *p);
        else
            putchar(*p);
    printf("\"\n");
}

/* Hex to bytes in place of a malloc'd copy; *len gets the byte count. */
static char *unhex(const char *h, size_t *len) {
    size_t n = strlen(h) / 2;
    char *s = malloc(n + 1);
    for (size_t i = 0; s && i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        s[i] = (char)v;
    }
    if (s) s[n] = 0;
    *len = n;
    return s;
}

/* Compares ids and the decode of one line with the reference; returns 1 if they match. */
static int check_line(const tok_tokenizer *t, const char *name, const char *what, int line, const char *text,
                      size_t len, const cJSON *want_ids, const char *want_dec, size_t want_dec_len,
                      const char *want_skip, int *bad) {
    int want_n = cJSON_GetArraySize(want_ids);
    int32_t got[8192];
    int n = tok_encode(t, text, len, got, 8192);
    int same = n == want_n, k = 0;
    for (const cJSON *x = want_ids->child; same && x; x = x->next, k++) same = got[k] == x->valueint;
    if (!same) {
        if ((*bad)++ < 5) {
            th_fail(__FILE__, __LINE__, "%s: %s line %d: ids differ", name, what, line);
            print_escaped("text", text);
            printf("    got ");
            for (int i = 0; i < n && i < 80; i++) printf(" %d", got[i]);
            printf("\n    want");
            for (const cJSON *x = want_ids->child; x; x = x->next) printf(" %d", x->valueint);
            printf("\n");
        }
        return 0;
    }
    size_t dl;
    char *d = tok_decode(t, got, n, 0, &dl);
    if ((!d || dl != want_dec_len || memcmp(d, want_dec, dl) != 0) && (*bad)++ < 5)
        th_fail(__FILE__, __LINE__, "%s: %s line %d: decode differs", name, what, line);
    free(d);
    if (want_skip) {
        d = tok_decode(t, got, n, 1, &dl);
        if ((!d || strcmp(d, want_skip) != 0) && (*bad)++ < 5)
            th_fail(__FILE__, __LINE__, "%s: %s line %d: decode(skip_special) differs", name, what, line);
        free(d);
    }
    return n;
}

/* Compares ids and decodes of every corpus line (corpus.json and the hex lines of corpus_unicode.json) with the
 * reference of one tokenizer. */
static void check_corpus(const char *name) {
    cJSON *corpus = load_json(TOKDATA "corpus.json"), *ucorpus = load_json(TOKDATA "corpus_unicode.json");
    cJSON *ref = load_json(TOKDATA "tokenizer_ref.json.xz");
    tok_tokenizer *t = load_named(name);
    REQUIRE(corpus && ucorpus && ref && t);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ref, "tokenizers"), name);
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(r, "ids"), *dec = cJSON_GetObjectItemCaseSensitive(r, "decoded");
    const cJSON *dec_skip = cJSON_GetObjectItemCaseSensitive(r, "decode_skip_special");
    const cJSON *ids_u = cJSON_GetObjectItemCaseSensitive(r, "ids_u"), *dec_u = cJSON_GetObjectItemCaseSensitive(r, "decoded_u");
    REQUIRE(cJSON_GetArraySize(ids) == cJSON_GetArraySize(corpus));
    REQUIRE(cJSON_GetArraySize(ids_u) == cJSON_GetArraySize(ucorpus));
    CHECK_EQ_INT(tok_vocab_size(t), cJSON_GetObjectItemCaseSensitive(r, "vocab_size")->valueint);
    int line = 0, bad = 0, total = 0;
    const cJSON *jw = ids->child, *jd = dec->child, *js = dec_skip ? dec_skip->child : NULL;
    for (const cJSON *jl = corpus->child; jl; jl = jl->next, jw = jw->next, jd = jd->next, line++) {
        total += check_line(t, name, "corpus", line, jl->valuestring, strlen(jl->valuestring), jw, jd->valuestring,
                            strlen(jd->valuestring), js ? js->valuestring : NULL, &bad);
        if (js) js = js->next;
    }
    line = 0;
    jw = ids_u->child;
    jd = dec_u->child;
    for (const cJSON *jl = ucorpus->child; jl; jl = jl->next, jw = jw->next, jd = jd->next, line++) {
        size_t len, dlen;
        char *text = unhex(jl->valuestring, &len), *want = unhex(jd->valuestring, &dlen);
        total += check_line(t, name, "unicode corpus", line, text, len, jw, want, dlen, NULL, &bad);
        free(text);
        free(want);
    }
    CHECK(total > 10000);
    tok_free(t);
    cJSON_Delete(corpus);
    cJSON_Delete(ucorpus);
    cJSON_Delete(ref);
}

TEST(tok_qwen3_corpus_ids) { check_corpus("qwen3"); }
TEST(tok_omni_corpus_ids) { check_corpus("omni"); }
TEST(tok_qwen35_regex_corpus_ids) { check_corpus("qwen35re"); }
TEST(tok_added_flags_corpus_ids) { check_corpus("flags"); }
TEST(tok_ignore_merges_corpus_ids) { check_corpus("flags_im"); }

static uint64_t fnv_add(uint64_t h, const void *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)p)[i]) * 0x100000001b3ull;
    return h;
}

/* decode([id]), id_to_token(id) and decode(range) for every id, hashed per block as the reference does. */
static void check_every_id(const char *name) {
    cJSON *ref = load_json(TOKDATA "tokenizer_ref.json.xz");
    tok_tokenizer *t = load_named(name);
    REQUIRE(ref && t);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(ref, "tokenizers"), name);
    int block = cJSON_GetObjectItemCaseSensitive(ref, "block")->valueint, n = tok_vocab_size(t), bad = 0;
    const cJSON *hid = cJSON_GetObjectItemCaseSensitive(r, "id_decode_hash")->child;
    const cJSON *htok = cJSON_GetObjectItemCaseSensitive(r, "token_hash")->child;
    const cJSON *hrange = cJSON_GetObjectItemCaseSensitive(r, "range_decode_hash")->child;
    int32_t *ids = malloc((size_t)block * sizeof *ids);
    for (int lo = 0; lo < n; lo += block, hid = hid->next, htok = htok->next, hrange = hrange->next) {
        REQUIRE(hid && htok && hrange);
        uint64_t h1 = 0xcbf29ce484222325ull, h2 = h1, h3 = h1;
        int m = 0;
        for (int id = lo; id < n && id < lo + block; id++) {
            size_t len;
            char *d = tok_decode(t, &id, 1, 0, &len);
            h1 = fnv_add(fnv_add(h1, d, len), "\xff", 1);
            free(d);
            const char *s = tok_token_string(t, id);
            h2 = fnv_add(fnv_add(h2, s ? s : "", s ? strlen(s) : 0), "\xff", 1);
            ids[m++] = id;
        }
        size_t len;
        char *d = tok_decode(t, ids, m, 0, &len);
        h3 = fnv_add(h3, d, len);
        free(d);
        char b1[17], b2[17], b3[17];
        snprintf(b1, sizeof b1, "%016llx", (unsigned long long)h1);
        snprintf(b2, sizeof b2, "%016llx", (unsigned long long)h2);
        snprintf(b3, sizeof b3, "%016llx", (unsigned long long)h3);
        if (strcmp(b1, hid->valuestring) && bad++ < 5) th_fail(__FILE__, __LINE__, "%s: decode([id]) differs in ids %d..", name, lo);
        if (strcmp(b2, htok->valuestring) && bad++ < 5) th_fail(__FILE__, __LINE__, "%s: id_to_token differs in ids %d..", name, lo);
        if (strcmp(b3, hrange->valuestring) && bad++ < 5) th_fail(__FILE__, __LINE__, "%s: decode(range) differs in ids %d..", name, lo);
    }
    CHECK(hid == NULL);
    /* every token string looks up its own id, except the NFC forms of normalized added tokens: HF's token_to_id
     * knows those by their original content only */
    int32_t cafe = tok_lookup(t, "cafe\xcc\x81"), angstrom = tok_lookup(t, "\xe2\x84\xab!");
    for (int id = 0; id < n; id++) {
        const char *s = tok_token_string(t, id);
        if (s && id != cafe && id != angstrom && tok_lookup(t, s) != id && bad++ < 5)
            th_fail(__FILE__, __LINE__, "%s: lookup of id %d's string", name, id);
    }
    if (strcmp(name, "flags") == 0) { /* "the" is in the vocabulary, so it keeps that id and the next ones shift */
        CHECK(cafe == 3262 && tok_lookup(t, "caf\xc3\xa9") == -1 && angstrom == 3265);
        CHECK(strcmp(tok_token_string(t, angstrom), "\xc3\x85!") == 0 && tok_is_special(t, angstrom));
        CHECK(tok_lookup(t, "the") == 1782 && tok_lookup(t, "<|end|>") == 3263 && tok_is_special(t, 3263));
    }
    free(ids);
    tok_free(t);
    cJSON_Delete(ref);
}

TEST(tok_qwen3_every_id) { check_every_id("qwen3"); }
TEST(tok_omni_every_id) { check_every_id("omni"); }
TEST(tok_flags_every_id) { check_every_id("flags"); }

TEST(tok_known_ids_and_lookup) {
    tok_tokenizer *t = load_named("omni");
    REQUIRE(t);
    CHECK_EQ_INT(tok_vocab_size(t), 151676);
    struct { const char *s; int32_t id; int special; } known[] = {
        { "<|endoftext|>", 151643, 1 }, { "<|im_start|>", 151644, 1 }, { "<|im_end|>", 151645, 1 },
        { "<|vision_start|>", 151652, 1 }, { "<|vision_end|>", 151653, 1 }, { "<|image_pad|>", 151655, 1 },
        { "<|video_pad|>", 151656, 1 }, { "<think>", 151667, 0 }, { "</think>", 151668, 0 },
        { "<|audio_start|>", 151669, 1 }, { "<|audio_end|>", 151670, 1 }, { "<tts_pad>", 151671, 1 },
        { "<tts_text_bos>", 151672, 1 }, { "<tts_text_eod>", 151673, 1 }, { "<tts_text_bos_single>", 151674, 1 },
        { "<|audio_pad|>", 151675, 1 }, { "system", 8948, 0 }, { "user", 872, 0 }, { "assistant", 77091, 0 },
        { "Ċ", 198, 0 }, { "Ġ", 220, 0 },
    };
    for (unsigned i = 0; i < sizeof known / sizeof *known; i++) {
        CHECK_EQ_INT(tok_lookup(t, known[i].s), known[i].id);
        CHECK_EQ_INT(tok_is_special(t, known[i].id), known[i].special);
    }
    CHECK_EQ_INT(tok_lookup(t, "no such token"), -1);
    CHECK_EQ_INT(tok_lookup(t, NULL), -1);
    const char *b;
    size_t n;
    CHECK(tok_token_bytes(t, 198, &b, &n) == 0 && n == 1 && b[0] == '\n');
    CHECK(tok_token_bytes(t, 220, &b, &n) == 0 && n == 1 && b[0] == ' ');
    CHECK(tok_token_bytes(t, 151645, &b, &n) == 0 && n == 10 && memcmp(b, "<|im_end|>", 10) == 0);
    CHECK(tok_token_bytes(t, -1, &b, &n) == OMNI_E_ARG && tok_token_bytes(t, 151676, &b, &n) == OMNI_E_ARG);
    CHECK(tok_token_string(t, 151676) == NULL && tok_is_special(t, -5) == 0);
    int32_t ids[8];
    const char *hw = "Hello world";
    CHECK_EQ_INT(tok_encode(t, hw, strlen(hw), ids, 8), 2);
    CHECK(ids[0] == 9707 && ids[1] == 1879);
    /* cap: the full count comes back, only cap ids are written */
    ids[1] = -7;
    CHECK_EQ_INT(tok_encode(t, hw, strlen(hw), ids, 1), 2);
    CHECK(ids[0] == 9707 && ids[1] == -7);
    CHECK_EQ_INT(tok_encode(t, hw, strlen(hw), NULL, 0), 2);
    CHECK_EQ_INT(tok_encode(t, "", 0, ids, 8), 0);
    CHECK_EQ_INT(tok_encode(t, NULL, 0, ids, 8), 0);
    CHECK_EQ_INT(tok_encode(NULL, hw, 2, ids, 8), OMNI_E_ARG);
    /* invalid UTF-8 encodes like its U+FFFD replacement (maximal subparts: \xe4\xbd is one, \xff another) */
    const char *bad = "a\xe4\xbd" "b\xff c", *fixed = "a\xef\xbf\xbd" "b\xef\xbf\xbd c";
    int32_t x[16], y[16];
    int nx = tok_encode(t, bad, strlen(bad), x, 16), ny = tok_encode(t, fixed, strlen(fixed), y, 16);
    CHECK(nx == ny && nx > 0 && memcmp(x, y, (size_t)nx * sizeof *x) == 0);
    /* text with a NUL byte is encoded through it */
    CHECK(tok_encode(t, "a\0b", 3, x, 16) >= 2);
    tok_free(t);
}

/* Every chunk the streaming decoder writes is whole UTF-8; all chunks together equal the one-shot decode. */
static int stream_equals(tok_tokenizer *t, const int32_t *ids, int n, size_t cap, int *partial_seen) {
    tok_detok *d = tok_detok_new(t);
    char out[4096], all[65536];
    size_t total = 0;
    int ok = d != NULL;
    for (int i = 0; ok && i < n; i++) {
        int w = tok_detok_push(d, ids[i], out, cap);
        int inc;
        ok = w >= 0 && uni_utf8_valid_prefix((unsigned char *)out, (size_t)w, &inc) == (size_t)w && total + (size_t)w < sizeof all;
        if (ok) memcpy(all + total, out, (size_t)w), total += (size_t)w;
        if (w == 0) *partial_seen = 1;
    }
    for (int w; ok && (w = tok_detok_flush(d, out, cap)) > 0;) {
        ok = total + (size_t)w < sizeof all;
        if (ok) memcpy(all + total, out, (size_t)w), total += (size_t)w;
    }
    size_t len;
    char *ref = tok_decode(t, ids, n, 0, &len);
    ok = ok && ref && len == total && memcmp(ref, all, len) == 0;
    free(ref);
    tok_detok_free(d);
    return ok;
}

TEST(tok_streaming_detok) {
    cJSON *corpus = load_json(TOKDATA "corpus.json");
    tok_tokenizer *t = load_named("qwen3");
    REQUIRE(corpus && t);
    int line = 0, partial = 0, bad = 0;
    for (const cJSON *jl = corpus->child; jl; jl = jl->next, line++) {
        int32_t ids[8192];
        int n = tok_encode(t, jl->valuestring, strlen(jl->valuestring), ids, 8192);
        if (!stream_equals(t, ids, n, 4096, &partial) && bad++ < 3) th_fail(__FILE__, __LINE__, "stream line %d", line);
        if (!stream_equals(t, ids, n, 4, &partial) && bad++ < 3) th_fail(__FILE__, __LINE__, "stream cap 4 line %d", line);
    }
    CHECK(partial); /* some character (emoji, rare CJK) was split across tokens and held back */
    /* hand-made byte sequences through the single-byte tokens */
    int32_t b_e4 = -1, b_bd = -1, b_a0 = -1, b_ff = -1, b_a = tok_lookup(t, "a");
    for (int32_t id = 0; id < 256; id++) {
        const char *b;
        size_t n;
        if (tok_token_bytes(t, id, &b, &n) || n != 1) continue;
        unsigned char c = (unsigned char)b[0];
        if (c == 0xe4) b_e4 = id;
        if (c == 0xbd) b_bd = id;
        if (c == 0xa0) b_a0 = id;
        if (c == 0xff) b_ff = id;
    }
    REQUIRE(b_e4 >= 0 && b_bd >= 0 && b_a0 >= 0 && b_ff >= 0 && b_a >= 0);
    tok_detok *d = tok_detok_new(t);
    char out[64];
    CHECK_EQ_INT(tok_detok_push(d, b_e4, out, sizeof out), 0);  /* 你 = e4 bd a0, held back */
    CHECK_EQ_INT(tok_detok_push(d, b_bd, out, sizeof out), 0);
    CHECK_EQ_INT(tok_detok_push(d, b_a0, out, sizeof out), 3);
    CHECK(strcmp(out, "\xe4\xbd\xa0") == 0);
    CHECK_EQ_INT(tok_detok_push(d, b_ff, out, sizeof out), 3);  /* never valid: U+FFFD at once */
    CHECK(strcmp(out, "\xef\xbf\xbd") == 0);
    CHECK_EQ_INT(tok_detok_push(d, b_e4, out, sizeof out), 0);
    CHECK_EQ_INT(tok_detok_push(d, b_a, out, sizeof out), 4);   /* the lead byte turned out invalid */
    CHECK(strcmp(out, "\xef\xbf\xbd" "a") == 0);
    CHECK_EQ_INT(tok_detok_push(d, b_e4, out, sizeof out), 0);
    CHECK_EQ_INT(tok_detok_push(d, b_bd, out, 2), 0);           /* cap too small for anything: nothing lost */
    CHECK_EQ_INT(tok_detok_flush(d, out, 2), 0);
    CHECK_EQ_INT(tok_detok_flush(d, out, sizeof out), 3);       /* an unfinished character is one U+FFFD */
    CHECK(strcmp(out, "\xef\xbf\xbd") == 0);
    CHECK_EQ_INT(tok_detok_flush(d, out, sizeof out), 0);
    CHECK_EQ_INT(tok_detok_push(d, -1, out, sizeof out), OMNI_E_ARG);
    CHECK_EQ_INT(tok_detok_push(d, tok_vocab_size(t), out, sizeof out), OMNI_E_ARG);
    tok_detok_free(d);
    tok_detok_free(NULL);
    CHECK(tok_detok_new(NULL) == NULL);
    tok_free(t);
    cJSON_Delete(corpus);
}

/* NFC against Unicode's conformance data: c2 == NFC(c1) == NFC(c2) == NFC(c3) and c4 == NFC(c4) == NFC(c5). A sample
 * is committed; the full file is used too when the unicode-data package is installed. */
static int nfc_file(const char *cmd, int *lines) {
    size_t len;
    char *s = read_pipe(cmd, &len);
    if (!s) return -1;
    int bad = 0;
    char *save = NULL;
    for (char *ln = strtok_r(s, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        if (*ln == '#' || *ln == '@' || !*ln) continue;
        char col[5][128];
        size_t cl[5];
        char *p = ln;
        int c;
        for (c = 0; c < 5; c++) { /* each column: code points in hex separated by spaces, then ';' */
            cl[c] = 0;
            while (*p && *p != ';') {
                char *end;
                unsigned long cp = strtoul(p, &end, 16);
                if (end == p) {
                    p++;
                    continue;
                }
                cl[c] += (size_t)uni_utf8_encode((uint32_t)cp, col[c] + cl[c]);
                p = end;
            }
            if (*p == ';') p++;
        }
        (*lines)++;
        static const int src[5] = { 0, 1, 2, 3, 4 }, want[5] = { 1, 1, 1, 3, 3 };
        for (int k = 0; k < 5; k++) {
            size_t n;
            char *r = uni_nfc(col[src[k]], cl[src[k]], &n);
            if (!r || n != cl[want[k]] || memcmp(r, col[want[k]], n) != 0) {
                if (bad++ < 5) th_fail(__FILE__, __LINE__, "NFC of column %d wrong: %s", k + 1, ln);
            }
            free(r);
        }
        for (int k = 0; k < 5; k++) /* the quick check may only say "no change" when that is true */
            if (!uni_nfc_needed(col[k], cl[k]) && (cl[k] != cl[want[k]] || memcmp(col[k], col[want[k]], cl[k])) &&
                bad++ < 5)
                th_fail(__FILE__, __LINE__, "NFC quick check wrong for column %d: %s", k + 1, ln);
    }
    free(s);
    return bad;
}

TEST(tok_nfc_conformance) {
    int lines = 0;
    CHECK_EQ_INT(nfc_file("xz -dc " TOKDATA "nfc_sample.txt.xz", &lines), 0);
    CHECK(lines > 4000);
    if (omni_file_exists("/usr/share/unicode/NormalizationTest.txt.bz2")) {
        int all = 0;
        CHECK_EQ_INT(nfc_file("bzip2 -dc /usr/share/unicode/NormalizationTest.txt.bz2 2>/dev/null", &all), 0);
        CHECK(all > 18000);
    }
    /* the quick check: ASCII and precomposed Latin-1 need nothing, combining marks do */
    CHECK(uni_nfc_needed("plain ascii", 11) == 0 && uni_nfc_needed("caf\xc3\xa9", 5) == 0);
    CHECK(uni_nfc_needed("cafe\xcc\x81", 6) == 1);
}

TEST(tok_utf8_decoding) {
    size_t adv;
    struct { const char *s; uint32_t cp; size_t adv; } cases[] = {
        { "A", 'A', 1 }, { "\xc3\xa9", 0xe9, 2 }, { "\xe4\xbd\xa0", 0x4f60, 3 }, { "\xf0\x9f\x98\x80", 0x1f600, 4 },
        { "\xc0\xaf", UNI_REPLACEMENT, 1 },         /* overlong lead: one byte at a time */
        { "\xe0\x80\x80", UNI_REPLACEMENT, 1 },     /* E0 needs A0..BF next */
        { "\xed\xa0\x80", UNI_REPLACEMENT, 1 },     /* surrogate */
        { "\xf4\x90\x80\x80", UNI_REPLACEMENT, 1 }, /* above U+10FFFF */
        { "\xe4\xbd" "A", UNI_REPLACEMENT, 2 },     /* truncated: the maximal subpart is 2 bytes */
        { "\xf0\x9f\x98", UNI_REPLACEMENT, 3 },     /* truncated at the end */
        { "\x80", UNI_REPLACEMENT, 1 }, { "\xff", UNI_REPLACEMENT, 1 },
    };
    for (unsigned i = 0; i < sizeof cases / sizeof *cases; i++) {
        uint32_t cp = uni_utf8_decode((const unsigned char *)cases[i].s, strlen(cases[i].s), &adv);
        CHECK(cp == cases[i].cp && adv == cases[i].adv);
    }
    int inc;
    CHECK(uni_utf8_valid_prefix((const unsigned char *)"ab\xe4\xbd", 4, &inc) == 2 && inc == 1);
    CHECK(uni_utf8_valid_prefix((const unsigned char *)"ab\xe4" "A", 4, &inc) == 2 && inc == 0);
    char buf[4];
    CHECK(uni_utf8_encode(0xD800, buf) == 3 && memcmp(buf, "\xef\xbf\xbd", 3) == 0);
    CHECK((uni_class('a') & UNI_L) && (uni_class('7') & UNI_N) && (uni_class(0x3000) & UNI_WS));
    CHECK((uni_class(0x0301) & UNI_M) && (uni_class(0x4e2d) & UNI_L) && !(uni_class(0x200b) & UNI_WS));
    CHECK(uni_class(0x110000) == 0 && uni_ccc(0x0301) == 230 && uni_ccc('a') == 0);
}

static int load_err(const char *json, char *msg, size_t cap) {
    tok_tokenizer *t = (tok_tokenizer *)1;
    omni_err e = { { 0 } };
    int rc = tok_load_mem(json, strlen(json), "bad.json", &t, &e);
    snprintf(msg, cap, "%s", e.msg);
    if (rc == 0) tok_free(t);
    else CHECK(t == NULL);
    return rc;
}

#define PRE "\"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": " \
            "\"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|" \
            "\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, \"behavior\": \"Isolated\", \"invert\": false}, " \
            "{\"type\": \"ByteLevel\", \"add_prefix_space\": false, \"use_regex\": false}]}, " \
            "\"decoder\": {\"type\": \"ByteLevel\"}, \"normalizer\": {\"type\": \"NFC\"}"

TEST(tok_bad_tokenizer_json) {
    char m[512];
    struct { const char *json; int rc; const char *msg; } cases[] = {
        { "this is not json", OMNI_E_FORMAT, "not valid JSON" },
        { "[1, 2, 3]", OMNI_E_FORMAT, "not a JSON object" },
        { "{\"version\": \"1.0\"}", OMNI_E_FORMAT, "no \"model\"" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": [1], \"merges\": []}}", OMNI_E_FORMAT, "model.vocab is not an object" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {}, \"merges\": []}}", OMNI_E_FORMAT, "model.vocab is empty" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": -1}, \"merges\": []}}", OMNI_E_FORMAT, "not a valid id" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 1.5}, \"merges\": []}}", OMNI_E_FORMAT, "not a valid id" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": {}}}", OMNI_E_FORMAT, "model.merges is not an array" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a c\"]}}", OMNI_E_FORMAT,
          "model.merges[0] uses \"c\", which is not in model.vocab" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [[\"a\", \"b\"]]}}", OMNI_E_FORMAT,
          "the merged token \"ab\" is not in model.vocab" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [\"a a a\"]}}", OMNI_E_FORMAT, "two tokens" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": [7]}}", OMNI_E_FORMAT, "neither" },
        { "{\"model\": {\"type\": \"WordPiece\", \"vocab\": {\"a\": 0}}}", OMNI_E_UNSUPPORTED, "model.type \"WordPiece\"" },
        { "{\"model\": {\"type\": \"BPE\", \"dropout\": 0.1, \"vocab\": {\"a\": 0}, \"merges\": []}}", OMNI_E_UNSUPPORTED, "dropout" },
        { "{\"model\": {\"type\": \"BPE\", \"byte_fallback\": true, \"vocab\": {\"a\": 0}, \"merges\": []}}", OMNI_E_UNSUPPORTED, "byte_fallback" },
        { "{\"model\": {\"type\": \"BPE\", \"continuing_subword_prefix\": \"##\", \"vocab\": {\"a\": 0}, \"merges\": []}}",
          OMNI_E_UNSUPPORTED, "continuing_subword_prefix" },
        { "{\"model\": {\"type\": \"BPE\", \"unk_token\": \"<unk>\", \"vocab\": {\"a\": 0}, \"merges\": []}}", OMNI_E_FORMAT, "unk_token" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"normalizer\": {\"type\": \"Lowercase\"}}",
          OMNI_E_UNSUPPORTED, "normalizer \"Lowercase\"" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}}", OMNI_E_UNSUPPORTED, "pre_tokenizer \"null\"" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Sequence\", "
          "\"pretokenizers\": [{\"type\": \"Split\", \"pattern\": {\"Regex\": \"\\\\w+\"}, \"behavior\": \"Isolated\"}, "
          "{\"type\": \"ByteLevel\"}]}}", OMNI_E_UNSUPPORTED, "Split pattern" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, " PRE ", \"added_tokens\": {}}",
          OMNI_E_FORMAT, "added_tokens is not an array" },
        { "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, " PRE ", \"added_tokens\": [{\"id\": 1}]}",
          OMNI_E_FORMAT, "added_tokens[0] has no \"content\"" },
    };
    for (unsigned i = 0; i < sizeof cases / sizeof *cases; i++) {
        int rc = load_err(cases[i].json, m, sizeof m);
        if (rc != cases[i].rc || !strstr(m, cases[i].msg) || strncmp(m, "bad.json: ", 10) != 0)
            th_fail(__FILE__, __LINE__, "case %u: rc %d, message '%s' (want %d, '%s')", i, rc, m, cases[i].rc, cases[i].msg);
    }
    /* a minimal valid one: every byte-level character would be needed to encode everything, but "a" is enough here */
    const char *ok = "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1, \"ab\": 2}, \"merges\": [\"#version: 0.2\", \"a b\"]}, " PRE
                     ", \"added_tokens\": [{\"id\": 3, \"content\": \"<x>\", \"special\": true}, {\"id\": 9, \"content\": \"\"}]}";
    tok_tokenizer *t;
    omni_err e = { { 0 } };
    REQUIRE(tok_load_mem(ok, strlen(ok), "ok.json", &t, &e) == 0);
    int32_t ids[8];
    CHECK_EQ_INT(tok_encode(t, "abab<x>c", 8, ids, 8), 3); /* "c" is not in the vocabulary: dropped, as HF does */
    CHECK(ids[0] == 2 && ids[1] == 2 && ids[2] == 3);
    CHECK_EQ_INT(tok_vocab_size(t), 4);
    tok_free(t);
    tok_free(NULL);
    CHECK(tok_load_mem(NULL, 0, "x", &t, &e) == OMNI_E_ARG && t == NULL);
    CHECK(tok_load("/nonexistent/tokenizer.json", &t, &e) == OMNI_E_IO && t == NULL && strstr(e.msg, "/nonexistent"));
}

static const char JSON_CHARS[] = "{}[]\\\",: 0123456789abtrufalsenul";

/* The fuzz target's invariants on inputs made here: corpus lines, random bytes and damaged tokenizer.json files. */
TEST(tok_fuzz_invariants) {
    omni_rng r = { 12345 };
    cJSON *corpus = load_json(TOKDATA "corpus.json");
    REQUIRE(corpus);
    uint8_t buf[4200];
    int bad = 0, runs = 0;
    for (const cJSON *jl = corpus->child; jl; jl = jl->next) { /* text mode: each line, and a damaged copy */
        size_t n = strlen(jl->valuestring);
        if (n > 4000) n = 4000;
        buf[0] = 1;
        memcpy(buf + 1, jl->valuestring, n);
        bad += tok_fuzz_one(buf, n + 1) != 0;
        for (int k = 0; k < 3 && n; k++) buf[1 + omni_rng_next(&r) % n] = (uint8_t)omni_rng_next(&r);
        bad += tok_fuzz_one(buf, n + 1) != 0;
        runs += 2;
    }
    cJSON *ucorpus = load_json(TOKDATA "corpus_unicode.json");
    REQUIRE(ucorpus);
    for (const cJSON *jl = ucorpus->child; jl; jl = jl->next) { /* text mode: all of Unicode, NUL included */
        size_t n;
        char *text = unhex(jl->valuestring, &n);
        REQUIRE(text && n < 4000);
        buf[0] = 1;
        memcpy(buf + 1, text, n);
        bad += tok_fuzz_one(buf, n + 1) != 0;
        runs++;
        free(text);
    }
    cJSON_Delete(ucorpus);
    for (int i = 0; i < 300; i++) { /* random bytes, biased towards UTF-8 lead/continuation bytes and ASCII */
        size_t n = 1 + omni_rng_next(&r) % 200;
        buf[0] = 1;
        for (size_t k = 1; k <= n; k++) {
            uint64_t x = omni_rng_next(&r);
            buf[k] = (uint8_t)(x % 4 == 0 ? 0x80 + (x >> 8) % 0x40 : x % 4 == 1 ? 0xC2 + (x >> 8) % 0x33 : (x >> 8) % 0x80);
        }
        bad += tok_fuzz_one(buf, n + 1) != 0;
        runs++;
    }
    char *fixed = tok_fuzz_fixed_json();
    REQUIRE(fixed);
    size_t fl = strlen(fixed);
    REQUIRE(fl + 1 < sizeof buf);
    for (int i = 0; i < 400; i++) { /* json mode: the fixed tokenizer, damaged in 1..4 places or truncated */
        buf[0] = 0;
        memcpy(buf + 1, fixed, fl);
        size_t n = fl;
        int kind = (int)(omni_rng_next(&r) % 3);
        if (kind == 0) n = omni_rng_next(&r) % fl;
        for (int k = 0; kind == 1 && k < 1 + (int)(omni_rng_next(&r) % 4); k++)
            buf[1 + omni_rng_next(&r) % n] = (uint8_t)JSON_CHARS[omni_rng_next(&r) % (sizeof JSON_CHARS - 1)];
        if (kind == 2) { /* cut a piece out */
            size_t a = omni_rng_next(&r) % n, b = a + omni_rng_next(&r) % 40;
            if (b > n) b = n;
            memmove(buf + 1 + a, buf + 1 + b, n - b);
            n -= b - a;
        }
        bad += tok_fuzz_one(buf, n + 1) != 0;
        runs++;
    }
    buf[0] = 0; /* and intact */
    memcpy(buf + 1, fixed, fl);
    CHECK(tok_fuzz_one(buf, fl + 1) == 0);
    free(fixed);
    CHECK_EQ_INT(bad, 0);
    CHECK(runs > 1900);
    cJSON_Delete(corpus);
}
