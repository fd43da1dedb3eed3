/* tok_internal.h — the tokenizer's data structures, shared by tokenizer.c (loading, lookup, decoding) and
 * tok_encode.c (added-token splitting, normalisation, pre-tokenisation, BPE). Not part of the engine API. */
#ifndef OMNI_TOK_INTERNAL_H
#define OMNI_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "tokenizer.h"

/* Open-addressing map from byte strings (stored in an arena) to ids. */
typedef struct {
    uint32_t *slots; /* [cap] id + 1, 0 = empty */
    uint32_t cap;    /* power of two */
} tok_strmap;

/* Open-addressing map from a pair of ids to (rank, merged id): the BPE merges. */
typedef struct {
    uint64_t *keys;  /* [cap] (left << 32 | right) + 1, 0 = empty */
    uint32_t *rank;  /* [cap] merge priority (line number in merges) */
    uint32_t *merged;/* [cap] id of the merged token */
    uint32_t cap;
} tok_pairmap;

typedef struct {
    uint32_t off, len;  /* pattern matched in text: content, or NFC(content) when normalized */
    int32_t id;
    uint8_t single_word, lstrip, rstrip, normalized, special;
} tok_added;

/* Pre-tokenizer regex variants we implement by hand (see tok_encode.c). */
enum { TOK_SPLIT_QWEN2 = 1, TOK_SPLIT_QWEN35 = 2 };

struct tok_tokenizer {
    char name[160];        /* file name used in messages */
    int32_t n_ids;         /* 1 + largest id */
    /* per id: the token string (vocab spelling, or added content) and its decoded bytes, in two arenas */
    uint32_t *str_off, *str_len, *byte_off, *byte_len;
    uint8_t *flags;        /* TOKF_* */
    char *strs;            /* arena of token strings (each NUL-terminated) */
    size_t strs_len, strs_cap;
    char *bytes;           /* arena of decoded bytes */
    size_t bytes_len, bytes_cap;
    tok_strmap vocab;      /* model vocabulary: string -> id */
    tok_strmap vocab_raw;  /* model vocabulary by decoded bytes (only with ignore_merges) */
    tok_strmap added_map;  /* added token content -> id */
    tok_pairmap merges;
    tok_added *added;      /* added tokens, in tokenizer.json order */
    int n_added;
    char *added_pat;       /* arena of added-token match patterns */
    int32_t byte_id[256];  /* id of the single byte-level character for each byte, -1 if not in the vocabulary */
    int32_t unk_id;        /* -1 when the model has no unk_token */
    int fuse_unk, ignore_merges, nfc, split_kind;
    int has_norm_added;    /* some added token has normalized = true */
};

/* TOKF_SKIP: decode(skip_special_tokens=True) drops the id, which HF decides by string: id_to_token(id) is the
 * content of a special added token (so a normalized special token whose NFC form differs is kept). */
enum { TOKF_VOCAB = 1, TOKF_ADDED = 2, TOKF_SPECIAL = 4, TOKF_SKIP = 8 };

uint64_t tok_hash_bytes(const char *s, size_t n);
/* Looks a byte string up in m; keys are compared with the string of each candidate id via key_of. */
int32_t tok_strmap_get(const tok_strmap *m, const tok_tokenizer *t, int raw, const char *s, size_t n);
int tok_pairmap_get(const tok_pairmap *m, int32_t a, int32_t b, uint32_t *rank, int32_t *merged);

#endif
