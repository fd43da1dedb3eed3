/* unicode.c — UTF-8 coding, character classes and NFC normalisation for the tokenizer.
 *
 * NFC follows UAX #15 the way the Rust crate unicode-normalization (used by Hugging Face tokenizers' NFC
 * normalizer) does it: full canonical decomposition (Hangul syllables algorithmically), canonical ordering of
 * combining marks by ccc (stable), then canonical composition of unblocked pairs, skipping
 * Full_Composition_Exclusion characters. The tables are generated (engine/unicode_tables.c). */
#include "unicode.h"

#include <stdlib.h>
#include <string.h>

/* ---- UTF-8 -------------------------------------------------------------------------------------------------- */

/* Valid range of the second byte after a lead byte (Unicode Table 3-7, well-formed UTF-8 byte sequences). */
static int utf8_seq_len(unsigned char b0, unsigned char *lo, unsigned char *hi) {
    *lo = 0x80;
    *hi = 0xBF;
    if (b0 < 0x80) return 1;
    if (b0 >= 0xC2 && b0 <= 0xDF) return 2;
    if (b0 >= 0xE0 && b0 <= 0xEF) {
        if (b0 == 0xE0) *lo = 0xA0;
        if (b0 == 0xED) *hi = 0x9F; /* no surrogates */
        return 3;
    }
    if (b0 >= 0xF0 && b0 <= 0xF4) {
        if (b0 == 0xF0) *lo = 0x90;
        if (b0 == 0xF4) *hi = 0x8F; /* nothing above U+10FFFF */
        return 4;
    }
    return 0; /* 0x80..0xC1, 0xF5..0xFF never start a character */
}

/* Checks s[0..len) as one character: returns its byte length if complete and valid, 0 if it is a valid but
 * truncated prefix (len too short), or -k when the first k bytes are the maximal invalid subpart. */
static int utf8_check(const unsigned char *s, size_t len) {
    unsigned char lo, hi;
    int n = utf8_seq_len(s[0], &lo, &hi);
    if (n == 0) return -1;
    for (int i = 1; i < n; i++) {
        if ((size_t)i >= len) return 0;
        unsigned char b = s[i];
        if (i == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return -i;
    }
    return n;
}

uint32_t uni_utf8_decode(const unsigned char *s, size_t len, size_t *adv) {
    int k = utf8_check(s, len);
    if (k > 0) {
        *adv = (size_t)k;
        if (k == 1) return s[0];
        if (k == 2) return ((uint32_t)(s[0] & 0x1F) << 6) | (s[1] & 0x3F);
        if (k == 3) return ((uint32_t)(s[0] & 0x0F) << 12) | ((uint32_t)(s[1] & 0x3F) << 6) | (s[2] & 0x3F);
        return ((uint32_t)(s[0] & 0x07) << 18) | ((uint32_t)(s[1] & 0x3F) << 12) | ((uint32_t)(s[2] & 0x3F) << 6) |
               (s[3] & 0x3F);
    }
    *adv = k == 0 ? len : (size_t)(-k); /* a truncated sequence at the end is one maximal subpart */
    return UNI_REPLACEMENT;
}

int uni_utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) cp = UNI_REPLACEMENT;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

size_t uni_utf8_valid_prefix(const unsigned char *s, size_t len, int *incomplete_tail) {
    size_t i = 0;
    *incomplete_tail = 0;
    while (i < len) {
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        int k = utf8_check(s + i, len - i);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        *incomplete_tail = (k == 0);
        break;
    }
    return i;
}

/* ---- classes ------------------------------------------------------------------------------------------------ */

/* Last run whose start is <= cp (runs are start | value << 24, sorted, the first starting at 0). */
static uint32_t run_lookup(const uint32_t *runs, int n, uint32_t cp) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if ((runs[mid] & 0xFFFFFF) <= cp)
            lo = mid;
        else
            hi = mid - 1;
    }
    return runs[lo] >> 24;
}

int uni_class(uint32_t cp) {
    if (cp < 256) return uni_class_latin1[cp];
    if (cp > 0x10FFFF) return 0;
    return (int)run_lookup(uni_class_runs, uni_class_nruns, cp);
}

int uni_ccc(uint32_t cp) {
    if (cp < 0x300 || cp > 0x10FFFF) return 0; /* nothing below U+0300 combines */
    return (int)run_lookup(uni_ccc_runs, uni_ccc_nruns, cp);
}

/* ---- NFC ---------------------------------------------------------------------------------------------------- */

enum { S_BASE = 0xAC00, L_BASE = 0x1100, V_BASE = 0x1161, T_BASE = 0x11A7 };
enum { L_COUNT = 19, V_COUNT = 21, T_COUNT = 28, N_COUNT = V_COUNT * T_COUNT, S_COUNT = L_COUNT * N_COUNT };

static const uint32_t *decomp_find(uint32_t cp) {
    int lo = 0, hi = uni_decomp_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (uni_decomp[mid][0] == cp) return uni_decomp[mid];
        if (uni_decomp[mid][0] < cp)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return NULL;
}

/* Pair composition (canonical, primary composites only); 0 if the pair does not compose. */
static uint32_t compose(uint32_t a, uint32_t b) {
    if (a >= L_BASE && a < L_BASE + L_COUNT && b >= V_BASE && b < V_BASE + V_COUNT)
        return S_BASE + ((a - L_BASE) * V_COUNT + (b - V_BASE)) * T_COUNT;
    if (a >= S_BASE && a < S_BASE + S_COUNT && (a - S_BASE) % T_COUNT == 0 && b > T_BASE && b < T_BASE + T_COUNT)
        return a + (b - T_BASE);
    int lo = 0, hi = uni_comp_n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        const uint32_t *e = uni_comp[mid];
        if (e[0] == a && e[1] == b) return e[2];
        if (e[0] < a || (e[0] == a && e[1] < b))
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return 0;
}

typedef struct {
    uint32_t *v;
    size_t n, cap;
} cp_buf;

static int cp_push(cp_buf *b, uint32_t cp) {
    if (b->n == b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        uint32_t *nv = realloc(b->v, nc * sizeof *nv);
        if (!nv) return -1;
        b->v = nv;
        b->cap = nc;
    }
    b->v[b->n++] = cp;
    return 0;
}

/* Full canonical decomposition of one character, appended to b (depth is bounded by the data: at most 4 levels). */
static int decompose(cp_buf *b, uint32_t cp, int depth) {
    if (cp >= S_BASE && cp < S_BASE + S_COUNT) {
        uint32_t s = cp - S_BASE, t = s % T_COUNT;
        if (cp_push(b, L_BASE + s / N_COUNT) || cp_push(b, V_BASE + (s % N_COUNT) / T_COUNT)) return -1;
        return t ? cp_push(b, T_BASE + t) : 0;
    }
    const uint32_t *d = depth < 8 ? decomp_find(cp) : NULL;
    if (!d) return cp_push(b, cp);
    if (decompose(b, d[1], depth + 1)) return -1;
    return d[2] ? decompose(b, d[2], depth + 1) : 0;
}

int uni_nfc_needed(const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t adv;
        uint32_t cp = uni_utf8_decode(u + i, len - i, &adv);
        if (uni_class(cp) & UNI_NFC_CARE) return 1;
        i += adv;
    }
    return 0;
}

char *uni_nfc(const char *s, size_t len, size_t *out_len) {
    const unsigned char *u = (const unsigned char *)s;
    cp_buf d = { 0 };
    char *out = NULL;
    /* 1. decompose */
    for (size_t i = 0; i < len;) {
        size_t adv;
        uint32_t cp = uni_utf8_decode(u + i, len - i, &adv);
        i += adv;
        if (decompose(&d, cp, 0)) goto done;
    }
    /* 2. canonical ordering: stable insertion sort of each run of non-starters by ccc */
    for (size_t i = 1; i < d.n; i++) {
        int c = uni_ccc(d.v[i]);
        if (c == 0) continue;
        size_t j = i;
        uint32_t cp = d.v[i];
        while (j > 0) {
            int pc = uni_ccc(d.v[j - 1]);
            if (pc == 0 || pc <= c) break;
            d.v[j] = d.v[j - 1];
            j--;
        }
        d.v[j] = cp;
    }
    /* 3. compose: a character joins the last starter unless blocked by an intervening character of ccc 0 or of a
     * ccc >= its own (UAX #15 D115/D117). last_ccc == -1 means nothing stands between them. */
    size_t n = 0;
    long starter = -1;
    int last_ccc = -1;
    for (size_t i = 0; i < d.n; i++) {
        uint32_t cp = d.v[i];
        int c = uni_ccc(cp);
        if (starter >= 0 && (last_ccc == -1 || last_ccc < c)) {
            uint32_t comp = compose(d.v[starter], cp);
            if (comp) {
                d.v[starter] = comp;
                continue;
            }
        }
        d.v[n] = cp;
        if (c == 0) {
            starter = (long)n;
            last_ccc = -1;
        } else {
            last_ccc = c;
        }
        n++;
    }
    /* 4. encode */
    out = malloc(n * 4 + 1);
    if (!out) goto done;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) o += (size_t)uni_utf8_encode(d.v[i], out + o);
    out[o] = 0;
    *out_len = o;
done:
    free(d.v);
    return out;
}
