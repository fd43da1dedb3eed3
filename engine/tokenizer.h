/* tokenizer.h — byte-level BPE tokenizer read from a Hugging Face tokenizer.json (the Qwen2/Qwen3 family).
 *
 * Encoding equals Hugging Face tokenizers' encode(text, add_special_tokens=False): added tokens are matched whole in
 * the raw text (honouring their single_word/lstrip/rstrip/normalized flags), the rest is NFC-normalised, split by
 * the Qwen pre-tokenizer regex, mapped to the byte-level alphabet and merged by rank-ordered BPE. Decoding is the
 * ByteLevel decoder: every token maps back to raw bytes; text is produced by a streaming decoder that never emits
 * half a UTF-8 character. Unsupported tokenizer.json features fail at load with a one-line error.
 *
 * A loaded tokenizer is read-only: any number of threads may encode with it at once. */
#ifndef OMNI_TOKENIZER_H
#define OMNI_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

typedef struct tok_tokenizer tok_tokenizer;

/* Reads tokenizer.json from a file or from memory (json[0..len), need not be NUL-terminated). name_for_errors
 * prefixes error messages. On failure *out is NULL, e->msg names the file and field, and a negative OMNI_E_* is
 * returned. */
int tok_load(const char *tokenizer_json_path, tok_tokenizer **out, omni_err *e);
int tok_load_mem(const char *json, size_t len, const char *name_for_errors, tok_tokenizer **out, omni_err *e);
void tok_free(tok_tokenizer *t);

/* Encodes UTF-8 text like HF encode(text, add_special_tokens=False). Invalid UTF-8 is first replaced by U+FFFD (as
 * Python's bytes.decode('utf-8', 'replace') would). Writes at most cap ids and returns the full count (call again
 * with more room if it exceeds cap), or a negative OMNI_E_* (OMNI_E_NOMEM). */
int tok_encode(const tok_tokenizer *t, const char *text, size_t len, int32_t *ids, int cap);

/* Vocabulary or added-token string (as written in tokenizer.json, e.g. "Ġthe" or "<|im_end|>") -> id, or -1. */
int32_t tok_lookup(const tok_tokenizer *t, const char *token);
/* The token's string as HF id_to_token gives it (the vocabulary spelling; a normalized added token's NFC form), or
 * NULL for an id without a token. */
const char *tok_token_string(const tok_tokenizer *t, int32_t id);
/* The raw bytes a token decodes to (ByteLevel decoder; an added token decodes to its content). Returns 0, or
 * OMNI_E_ARG for an id out of range or without a token. *bytes stays valid while t lives. */
int tok_token_bytes(const tok_tokenizer *t, int32_t id, const char **bytes, size_t *len);
int32_t tok_vocab_size(const tok_tokenizer *t); /* 1 + largest id (vocabulary and added tokens) */
int tok_is_special(const tok_tokenizer *t, int32_t id); /* 1 for added tokens marked "special" */

/* Streaming decoder. push appends the token's bytes and writes to out only complete UTF-8 characters (invalid byte
 * sequences become U+FFFD as soon as they are known to be invalid), holding back an unfinished character. It
 * returns the bytes written (a NUL follows them when there is room). If cap is too small, whole characters that fit
 * are written and the rest stays pending for the next call. flush writes what is pending, an unfinished character
 * as U+FFFD; call it until it returns 0. The output of all calls together equals HF decode(ids) (lossy UTF-8). */
typedef struct tok_detok tok_detok;
tok_detok *tok_detok_new(const tok_tokenizer *t);
int tok_detok_push(tok_detok *d, int32_t id, char *out, size_t cap); /* bytes written, <0 error */
int tok_detok_flush(tok_detok *d, char *out, size_t cap);            /* pending bytes, invalid -> U+FFFD */
void tok_detok_free(tok_detok *d);

/* Convenience: decodes ids[0..n) to a malloc'd NUL-terminated string (lossy UTF-8), like HF decode(ids,
 * skip_special_tokens=skip_special) (which drops ids whose string is a special token's content). Ids without a
 * token are skipped, as HF does. NULL if out of memory. */
char *tok_decode(const tok_tokenizer *t, const int32_t *ids, int n, int skip_special, size_t *out_len);

#endif
