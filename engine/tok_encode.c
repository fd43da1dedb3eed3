/* tok_encode.c — text to token ids, in Hugging Face tokenizers' order (TokenizerImpl::encode_single_sequence):
 *   1. added tokens with normalized=false are cut out of the raw text (AddedVocabulary::find_matches:
 *      leftmost-longest, then single_word / lstrip / rstrip);
 *   2. every remaining piece is NFC-normalised, then added tokens with normalized=true are cut out of it;
 *   3. the Split pre-tokenizer splits each piece with the Qwen regex, implemented here by hand (below);
 *   4. each pre-token's UTF-8 bytes become byte-level symbols and are merged by BPE in rank order
 *      (models/bpe/word.rs Word::merge_all: a min-heap on (rank, position), stale entries skipped). */
#include "tok_internal.h"

#include <stdlib.h>
#include <string.h>

#include "unicode.h"

typedef struct {
    int32_t *v;
    size_t n, cap;
    int oom;
} idbuf;

static void id_push(idbuf *b, int32_t id) {
    if (b->oom) return;
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 256;
        int32_t *nv = realloc(b->v, nc * sizeof *nv);
        if (!nv) {
            b->oom = 1;
            return;
        }
        b->v = nv;
        b->cap = nc;
    }
    b->v[b->n++] = id;
}

/* ---- BPE ---------------------------------------------------------------------------------------------------- */

typedef struct {
    int32_t id;
    int32_t prev, next; /* neighbours in the word, -1 at the ends */
    int32_t len;        /* 0 once merged into its left neighbour */
} sym;

typedef struct {
    uint32_t rank;
    int32_t pos, merged;
} cand;

/* Min-heap on (rank, pos): the order of Merge's Ord in word.rs. */
static int cand_less(const cand *a, const cand *b) { return a->rank != b->rank ? a->rank < b->rank : a->pos < b->pos; }

static void heap_push(cand *h, size_t *n, cand c) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_less(&c, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = c;
}

static cand heap_pop(cand *h, size_t *n) {
    cand top = h[0], last = h[--*n];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const cand *best = &last;
        if (l < *n && cand_less(&h[l], best)) {
            m = l;
            best = &h[l];
        }
        if (r < *n && cand_less(&h[r], best)) m = r;
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n) h[i] = last;
    return top;
}

typedef struct {
    sym *s;
    cand *heap;
    size_t cap;
} bpe_ws;

static int bpe_reserve(bpe_ws *w, size_t n) {
    if (n <= w->cap) return 0;
    size_t nc = w->cap ? w->cap : 64;
    while (nc < n) nc *= 2;
    sym *s = realloc(w->s, nc * sizeof *s);
    if (!s) return -1;
    w->s = s;
    /* every merge pushes at most two candidates: initial n-1 plus 2 per merge */
    cand *h = realloc(w->heap, 3 * nc * sizeof *h);
    if (!h) return -1;
    w->heap = h;
    w->cap = nc;
    return 0;
}

static void try_push(const tok_tokenizer *t, bpe_ws *w, size_t *hn, int32_t pos) {
    int32_t nx = w->s[pos].next;
    uint32_t rank;
    int32_t merged;
    if (nx >= 0 && tok_pairmap_get(&t->merges, w->s[pos].id, w->s[nx].id, &rank, &merged))
        heap_push(w->heap, hn, (cand){ rank, pos, merged });
}

static void add_sym(bpe_ws *w, int32_t *ns, int32_t id) {
    w->s[*ns] = (sym){ id, *ns - 1, *ns + 1, 1 };
    (*ns)++;
}

/* BPE::tokenize_with_cache + merge_word for one pre-token (raw bytes). */
static void bpe_word(const tok_tokenizer *t, bpe_ws *w, const unsigned char *p, size_t n, idbuf *out) {
    if (t->ignore_merges) {
        int32_t id = tok_strmap_get(&t->vocab_raw, t, 1, (const char *)p, n);
        if (id >= 0) {
            id_push(out, id);
            return;
        }
    }
    if (bpe_reserve(w, n + 1)) {
        out->oom = 1;
        return;
    }
    /* initial symbols: one per byte-level character; a byte missing from the vocabulary becomes unk_token (fused
     * into the previous unk when fuse_unk) or is dropped when there is no unk_token, as in merge_word */
    int32_t ns = 0;
    int unk = 0; /* an unk symbol waiting to be appended */
    for (size_t i = 0; i < n; i++) {
        int32_t id = t->byte_id[p[i]];
        if (id < 0) {
            if (t->unk_id < 0 || (unk && t->fuse_unk)) continue;
            if (unk) add_sym(w, &ns, t->unk_id);
            unk = 1;
            continue;
        }
        if (unk) add_sym(w, &ns, t->unk_id);
        unk = 0;
        add_sym(w, &ns, id);
    }
    if (unk) add_sym(w, &ns, t->unk_id);
    if (ns == 0) return;
    w->s[ns - 1].next = -1;
    size_t hn = 0;
    for (int32_t i = 0; i + 1 < ns; i++) try_push(t, w, &hn, i);
    while (hn) {
        cand c = heap_pop(w->heap, &hn);
        sym *a = &w->s[c.pos];
        if (a->len == 0 || a->next < 0) continue;
        sym *b = &w->s[a->next];
        uint32_t rank;
        int32_t merged;
        /* a stale entry: the pair no longer produces the token this candidate was made for */
        if (!tok_pairmap_get(&t->merges, a->id, b->id, &rank, &merged) || merged != c.merged) continue;
        a->id = c.merged;
        a->len += b->len;
        b->len = 0;
        a->next = b->next;
        if (a->next >= 0) w->s[a->next].prev = c.pos;
        if (a->prev >= 0) try_push(t, w, &hn, a->prev);
        try_push(t, w, &hn, c.pos);
    }
    for (int32_t i = 0; i >= 0; i = w->s[i].next) id_push(out, w->s[i].id);
}

/* ---- the Split pre-tokenizer -------------------------------------------------------------------------------- */

/* The Qwen pattern, as Oniguruma (HF's default regex engine) matches it with find_iter:
 *   A1 (?i:'s|'t|'re|'ve|'m|'ll|'d)
 *   A2 [^\r\n\p{L}\p{N}]?\p{L}+                 (Qwen3.5: [\p{L}\p{M}]+)
 *   A3 \p{N}
 *   A4  ?[^\s\p{L}\p{N}]+[\r\n]*                 (Qwen3.5: [^\s\p{L}\p{M}\p{N}]+)
 *   A5 \s*[\r\n]+    A6 \s+(?!\S)    A7 \s+
 * The first alternative that matches at a position wins; the backtracking outcomes are written out: A5 ends after
 * the last CR/LF of the whitespace run, A6 takes the whole run at the end of the text or all but its last
 * character (if two or more), A7 the whole run. Every character is a letter, number, whitespace or "other", so
 * some alternative always matches and the pieces cover the text. Case-insensitive 's also matches U+017F (long s),
 * whose simple case folding is 's'. */
typedef struct {
    uint32_t *cp;
    int *cls;
    size_t *off; /* byte offset of each character, off[n] = length */
    size_t cap;
} split_ws;

static int is_crlf(uint32_t c) { return c == '\r' || c == '\n'; }

static uint32_t fold_ascii(uint32_t c) {
    if (c >= 'A' && c <= 'Z') return c + 32;
    if (c == 0x17F) return 's';
    return c;
}

/* Length (in characters) of the match at i, never 0. */
static size_t split_match(const split_ws *w, size_t i, size_t n, int letters) {
    const uint32_t *cp = w->cp;
    const int *cls = w->cls;
#define LETTER(k) ((cls[k] & letters) != 0)
#define OTHER(k) ((cls[k] & (UNI_WS | UNI_N | letters)) == 0)
    if (cp[i] == '\'' && i + 1 < n) { /* A1 */
        uint32_t a = fold_ascii(cp[i + 1]), b = i + 2 < n ? fold_ascii(cp[i + 2]) : 0;
        if (a == 's' || a == 't' || a == 'm' || a == 'd') return 2;
        if ((a == 'r' && b == 'e') || (a == 'v' && b == 'e') || (a == 'l' && b == 'l')) return 3;
    }
    /* A2: the optional leading character is tried first (greedy), then the match without it */
    if (!is_crlf(cp[i]) && !(cls[i] & (UNI_L | UNI_N)) && i + 1 < n && LETTER(i + 1)) {
        size_t j = i + 1;
        while (j < n && LETTER(j)) j++;
        return j - i;
    }
    if (LETTER(i)) {
        size_t j = i;
        while (j < n && LETTER(j)) j++;
        return j - i;
    }
    if (cls[i] & UNI_N) return 1; /* A3 */
    size_t j = i;                  /* A4 */
    if (cp[i] == ' ' && i + 1 < n && OTHER(i + 1)) j++;
    if (OTHER(j)) {
        while (j < n && OTHER(j)) j++;
        while (j < n && is_crlf(cp[j])) j++;
        return j - i;
    }
    /* whitespace at i (the only class left) */
    size_t e = i, last_nl = (size_t)-1;
    while (e < n && (cls[e] & UNI_WS)) {
        if (is_crlf(cp[e])) last_nl = e;
        e++;
    }
    if (last_nl != (size_t)-1) return last_nl + 1 - i; /* A5 */
    if (e == n || e - i < 2) return e - i;             /* A6 at the end, else A7 (a single character) */
    return e - 1 - i;                                  /* A6 */
#undef LETTER
#undef OTHER
}

static int split_reserve(split_ws *w, size_t n) {
    if (n + 1 <= w->cap) return 0;
    size_t nc = w->cap ? w->cap : 256;
    while (nc < n + 1) nc *= 2;
    uint32_t *cp = realloc(w->cp, nc * sizeof *cp);
    if (cp) w->cp = cp;
    int *cls = cp ? realloc(w->cls, nc * sizeof *cls) : NULL;
    if (cls) w->cls = cls;
    size_t *off = cls ? realloc(w->off, nc * sizeof *off) : NULL;
    if (!off) return -1;
    w->off = off;
    w->cap = nc;
    return 0;
}

typedef struct {
    const tok_tokenizer *t;
    idbuf out;
    bpe_ws bpe;
    split_ws split;
} enc_ctx;

/* Pre-tokenises one normalised piece and runs BPE on every pre-token. */
static void encode_piece(enc_ctx *c, const char *s, size_t len) {
    if (!len) return;
    size_t n = 0;
    if (split_reserve(&c->split, len)) {
        c->out.oom = 1;
        return;
    }
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t adv;
        uint32_t cp = u[i] < 0x80 ? (adv = 1, u[i]) : uni_utf8_decode(u + i, len - i, &adv);
        c->split.cp[n] = cp;
        c->split.cls[n] = uni_class(cp);
        c->split.off[n] = i;
        n++;
        i += adv;
    }
    c->split.off[n] = len;
    int letters = c->t->split_kind == TOK_SPLIT_QWEN35 ? (UNI_L | UNI_M) : UNI_L;
    for (size_t i = 0; i < n;) {
        size_t m = split_match(&c->split, i, n, letters);
        bpe_word(c->t, &c->bpe, u + c->split.off[i], c->split.off[i + m] - c->split.off[i], &c->out);
        i += m;
    }
}

/* ---- added tokens ------------------------------------------------------------------------------------------- */

/* The longest added token (of the given normalized kind) that matches at s[i], or NULL. */
static const tok_added *added_at(const tok_tokenizer *t, int normalized, const char *s, size_t len, size_t i) {
    const tok_added *best = NULL;
    for (int k = 0; k < t->n_added; k++) {
        const tok_added *a = &t->added[k];
        if (a->normalized != normalized || a->len > len - i || (best && a->len <= best->len)) continue;
        if (memcmp(s + i, t->added_pat + a->off, a->len) == 0) best = a;
    }
    return best;
}

static uint32_t last_char(const char *s, size_t n) { /* the character ending at s[n], n > 0 */
    size_t k = n - 1;
    while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80 && n - k < 4) k--;
    size_t adv;
    return uni_utf8_decode((const unsigned char *)s + k, n - k, &adv);
}

static uint32_t first_char(const char *s, size_t n) {
    size_t adv;
    return uni_utf8_decode((const unsigned char *)s, n, &adv);
}

typedef void (*piece_fn)(enc_ctx *c, const char *s, size_t len);

/* AddedVocabulary::find_matches: cuts the added tokens of one kind out of s, handing the text between them to
 * `text` and pushing the ids of the tokens. */
static void split_added(enc_ctx *c, int normalized, const char *s, size_t len, piece_fn text) {
    const tok_tokenizer *t = c->t;
    size_t start_offset = 0, i = 0;
    while (i < len) {
        const tok_added *a = added_at(t, normalized, s, len, i);
        if (!a) {
            i++;
            continue;
        }
        size_t start = i, stop = i + a->len;
        i = stop; /* the search goes on after the match, whatever happens to it */
        if (start < start_offset) continue; /* overlaps an rstrip extension: HF would emit overlapping pieces */
        if (a->single_word) {
            int left_word = start > 0 && (uni_class(last_char(s, start)) & UNI_W);
            int right_word = stop < len && (uni_class(first_char(s + stop, len - stop)) & UNI_W);
            if (left_word || right_word) continue;
        }
        if (a->lstrip) { /* take the whitespace before it, not reaching into the previous match */
            size_t ns = start;
            while (ns > start_offset) {
                size_t k = ns - 1;
                while (k > 0 && ((unsigned char)s[k] & 0xC0) == 0x80) k--;
                size_t adv;
                if (!(uni_class(uni_utf8_decode((const unsigned char *)s + k, ns - k, &adv)) & UNI_WS)) break;
                ns = k;
            }
            start = ns;
        }
        if (a->rstrip) {
            while (stop < len) {
                size_t adv;
                if (!(uni_class(uni_utf8_decode((const unsigned char *)s + stop, len - stop, &adv)) & UNI_WS)) break;
                stop += adv;
            }
        }
        if (start_offset < start) text(c, s + start_offset, start - start_offset);
        id_push(&c->out, a->id);
        start_offset = stop;
        if (i < stop) i = stop;
    }
    if (start_offset < len) text(c, s + start_offset, len - start_offset);
}

/* A piece between raw-text added tokens: normalise, then cut out the normalized added tokens. */
static void normalize_piece(enc_ctx *c, const char *s, size_t len) {
    char *norm = NULL;
    if (c->t->nfc && uni_nfc_needed(s, len)) {
        norm = uni_nfc(s, len, &len);
        if (!norm) {
            c->out.oom = 1;
            return;
        }
        s = norm;
    }
    if (c->t->has_norm_added)
        split_added(c, 1, s, len, encode_piece);
    else
        encode_piece(c, s, len);
    free(norm);
}

int tok_encode(const tok_tokenizer *t, const char *text, size_t len, int32_t *ids, int cap) {
    if (!t || (!text && len) || (!ids && cap > 0)) return OMNI_E_ARG;
    /* invalid UTF-8 becomes U+FFFD first, so everything below sees valid text */
    char *clean = NULL;
    int incomplete;
    if (uni_utf8_valid_prefix((const unsigned char *)text, len, &incomplete) != len) {
        clean = malloc(len * 3 + 1);
        if (!clean) return OMNI_E_NOMEM;
        size_t o = 0;
        for (size_t i = 0; i < len;) {
            size_t adv;
            uint32_t cp = uni_utf8_decode((const unsigned char *)text + i, len - i, &adv);
            o += (size_t)uni_utf8_encode(cp, clean + o);
            i += adv;
        }
        text = clean;
        len = o;
    }
    enc_ctx c = { .t = t };
    split_added(&c, 0, text ? text : "", len, normalize_piece);
    free(clean);
    free(c.bpe.s);
    free(c.bpe.heap);
    free(c.split.cp);
    free(c.split.cls);
    free(c.split.off);
    if (c.out.oom || c.out.n > (size_t)INT32_MAX) {
        free(c.out.v);
        return OMNI_E_NOMEM;
    }
    if (cap > 0 && c.out.n) memcpy(ids, c.out.v, (c.out.n < (size_t)cap ? c.out.n : (size_t)cap) * sizeof *ids);
    free(c.out.v);
    return (int)c.out.n;
}
