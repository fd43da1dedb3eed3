/* fuzz_tokenizer.c — libFuzzer target for the tokenizer: tokenizer.json parsing (tok_load_mem) and text encoding.
 *
 *   make fuzz && mkdir -p build/fuzz/corpus_tok && build/fuzz/fuzz_tokenizer -max_total_time=60 \
 *       -dict=tests/fuzz/fuzz_tokenizer.dict build/fuzz/corpus_tok tests/fuzz/corpus_tokenizer
 * (libFuzzer adds new inputs to the first folder; the committed seeds are a small tokenizer.json and some text.)
 *
 * The first input byte picks the mode. Even: the rest is a tokenizer.json; it must either fail with a negative
 * code, no tokenizer and a message naming the input, or load into a tokenizer that encodes two short texts (one
 * being the input itself) into valid ids that decode, streamed or not, to the same text. Odd: the rest is text for
 * a fixed byte-level tokenizer with added tokens and no normaliser; decoding its ids must give back the text
 * exactly (invalid UTF-8 as U+FFFD), and NFC must be idempotent on it. Anything else (or an ASan/UBSan report) is a
 * bug. tests/test_tokenizer.c includes this file with TOK_FUZZ_NO_ENTRY defined and runs tok_fuzz_one() on mutated
 * inputs, so the suite checks the same invariants without clang's fuzzer. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"
#include "unicode.h"

#define TOK_FUZZ_NAME "fuzz.json"

/* The fixed tokenizer of the text mode: the 256 byte-level characters (ids 0..255), a few merges and added tokens,
 * Qwen's pre-tokenizer, no normaliser. */
static char *tok_fuzz_fixed_json(void) {
    size_t cap = 1 << 16, n = 0;
    char *s = malloc(cap);
    if (!s) return NULL;
    n += (size_t)snprintf(s + n, cap - n, "{\"model\": {\"type\": \"BPE\", \"vocab\": {");
    for (int b = 0; b < 256; b++) {
        int printable = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF), k = 0;
        for (int i = 0; i < b && !printable; i++)
            k += !((i >= 0x21 && i <= 0x7E) || (i >= 0xA1 && i <= 0xAC) || (i >= 0xAE && i <= 0xFF));
        uint32_t cp = printable ? (uint32_t)b : 0x100u + (uint32_t)k;
        char u[5] = { 0 };
        uni_utf8_encode(cp, u);
        if (cp == '"' || cp == '\\')
            n += (size_t)snprintf(s + n, cap - n, "\"\\%s\": %d, ", u, b);
        else
            n += (size_t)snprintf(s + n, cap - n, "\"%s\": %d, ", u, b);
    }
    n += (size_t)snprintf(s + n, cap - n,
                          "\"ab\": 256, \"abc\": 257, \"\xc4\xa0" "a\": 258, \"\xc4\xa0\xc4\xa0\": 259, \"\xc3\xa4\xc2\xbd\": 260, "
                          "\"\xc3\xa4\xc2\xbd\xc5\x83\": 261}, \"merges\": [\"a b\", \"ab c\", \"\xc4\xa0 a\", "
                          "\"\xc4\xa0 \xc4\xa0\", [\"\xc3\xa4\", \"\xc2\xbd\"], [\"\xc3\xa4\xc2\xbd\", \"\xc5\x83\"]]}, "
                          "\"normalizer\": null, \"pre_tokenizer\": {\"type\": \"Sequence\", \"pretokenizers\": [{\"type\": "
                          "\"Split\", \"pattern\": {\"Regex\": \"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?"
                          "\\\\p{L}+|\\\\p{N}| ?[^\\\\s\\\\p{L}\\\\p{N}]+[\\\\r\\\\n]*|\\\\s*[\\\\r\\\\n]+|\\\\s+(?!\\\\S)|\\\\s+\"}, "
                          "\"behavior\": \"Isolated\", \"invert\": false}, {\"type\": \"ByteLevel\", \"add_prefix_space\": "
                          "false, \"trim_offsets\": false, \"use_regex\": false}]}, \"decoder\": {\"type\": \"ByteLevel\"}, "
                          "\"added_tokens\": [{\"id\": 262, \"content\": \"<|im_end|>\", \"special\": true}, "
                          "{\"id\": 263, \"content\": \"<|im\", \"special\": false, \"normalized\": false}, "
                          "{\"id\": 264, \"content\": \"\xe4\xbd\xa0\xe5\xa5\xbd\", \"special\": true}, "
                          "{\"id\": 265, \"content\": \"ab\", \"special\": false, \"normalized\": false}]}");
    return s;
}

/* Streams ids through a decoder writing at most cap bytes per call; 0 if the output equals want exactly. */
static int tok_fuzz_stream(const tok_tokenizer *t, const int32_t *ids, int n, size_t cap, const char *want, size_t wl) {
    tok_detok *d = tok_detok_new(t);
    char out[64];
    size_t sl = 0;
    int bad = !d;
    for (int i = 0; i < n && !bad; i++) {
        int w = tok_detok_push(d, ids[i], out, cap);
        int inc;
        bad = w < 0 || sl + (size_t)w > wl || memcmp(want + sl, out, (size_t)w) != 0 ||
              uni_utf8_valid_prefix((const unsigned char *)out, (size_t)w, &inc) != (size_t)w;
        if (!bad) sl += (size_t)w;
    }
    for (int w; !bad && (w = tok_detok_flush(d, out, cap)) > 0;) {
        bad = sl + (size_t)w > wl || memcmp(want + sl, out, (size_t)w) != 0;
        sl += (size_t)w;
    }
    tok_detok_free(d);
    return bad || sl != wl ? -1 : 0;
}

/* Encodes text, then checks ids are in range and that streaming and one-shot decoding agree (and, when exact is
 * set, that they give back the text with invalid UTF-8 replaced, and that NFC is idempotent on it). */
static int tok_fuzz_text(const tok_tokenizer *t, const char *text, size_t len, int exact) {
    int n = tok_encode(t, text, len, NULL, 0);
    if (n < 0) return -1;
    int32_t *ids = malloc(((size_t)n + 1) * sizeof *ids);
    if (!ids) return 0;
    int bad = tok_encode(t, text, len, ids, n) != n;
    for (int i = 0; i < n && !bad; i++) bad = ids[i] < 0 || ids[i] >= tok_vocab_size(t);
    size_t dl = 0;
    char *dec = bad ? NULL : tok_decode(t, ids, n, 0, &dl);
    if (dec) bad = tok_fuzz_stream(t, ids, n, 64, dec, dl) || tok_fuzz_stream(t, ids, n, 4, dec, dl);
    if (dec && exact && !bad) { /* lossy(text) == decode(encode(text)) */
        char *lossy = malloc(len * 3 + 1);
        size_t o = 0;
        for (size_t i = 0; lossy && i < len;) {
            size_t adv;
            uint32_t cp = uni_utf8_decode((const unsigned char *)text + i, len - i, &adv);
            o += (size_t)uni_utf8_encode(cp, lossy + o);
            i += adv;
        }
        if (lossy && (o != dl || memcmp(lossy, dec, dl) != 0)) bad = 1;
        if (lossy) {
            size_t n1, n2;
            char *a = uni_nfc(lossy, o, &n1), *b = a ? uni_nfc(a, n1, &n2) : NULL;
            if (a && b && (n1 != n2 || memcmp(a, b, n1) != 0)) bad = 1;
            free(a);
            free(b);
        }
        free(lossy);
    }
    free(dec);
    free(ids);
    return bad ? -1 : 0;
}

/* Returns 0 when every invariant holds, -1 otherwise. */
static int tok_fuzz_one(const uint8_t *data, size_t size) {
    static tok_tokenizer *fixed;
    if (size == 0) return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    if ((data[0] & 1) == 0) {
        tok_tokenizer *t = (tok_tokenizer *)1;
        omni_err e = { { 0 } };
        int rc = tok_load_mem(p, n, TOK_FUZZ_NAME, &t, &e);
        if (rc) return (rc < 0 && !t && strstr(e.msg, TOK_FUZZ_NAME)) ? 0 : -1;
        if (!t) return -1;
        int bad = tok_fuzz_text(t, "Hello, world! 123 'll\r\n\t<|im_end|>", 33, 0) ||
                  tok_fuzz_text(t, p, n > 256 ? 256 : n, 0);
        tok_free(t);
        return bad ? -1 : 0;
    }
    if (!fixed) {
        char *j = tok_fuzz_fixed_json();
        omni_err e = { { 0 } };
        if (!j || tok_load_mem(j, strlen(j), "fixed.json", &fixed, &e)) {
            free(j);
            return -1;
        }
        free(j);
    }
    return tok_fuzz_text(fixed, p, n > 4096 ? 4096 : n, 1);
}

#ifndef TOK_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (tok_fuzz_one(data, size)) abort();
    return 0;
}
#endif
