/* gif.c — the first frame of a GIF, decoded here rather than by SDL2_image.
 *
 * Why not SDL2_image: its 2.6 GIF reader corrupts the heap on some malformed inputs (found by
 * tests/fuzz/fuzz_image.c: a bad free inside IMG_LoadGIF_RW), and it returns the bare frame where Pillow draws
 * it on the logical screen. This file follows Pillow instead (GifImagePlugin._seek, GifDecode.c, Palette.c):
 *   - canvas = logical screen, grown to hold the frame; filled with the transparency index, else index 0;
 *   - the frame's LZW codes (variable width, least significant bit first, clear and end codes, no early change,
 *     12-bit limit with a deferred clear) are decoded into indices, de-interlaced when the frame says so;
 *   - indices become colours through the local colour table, else the global one; entries past the table keep
 *     Pillow's initial grey ramp (index i -> i,i,i), and a frame with no table at all is greyscale ("L" mode).
 * Transparency is otherwise ignored, as PIL's convert("RGB") ignores it. Damaged data gives an error, never a
 * partial picture: the frame must be complete. vision_probe has already checked the block structure. */
#include <stdlib.h>
#include <string.h>

#include "image.h"

typedef struct {
    const uint8_t *d;
    size_t n, p;      /* input bytes and position of the next unread byte */
    size_t block_end; /* end of the current data sub-block */
    uint32_t bits;    /* bit buffer, least significant bits first */
    int nbits;
    int done;         /* the zero-length terminator was reached */
} gif_reader;

/* Next `width` bits of the LZW stream, or -1 when the sub-blocks end. */
static int read_code(gif_reader *r, int width) {
    while (r->nbits < width) {
        if (r->p == r->block_end) { /* next sub-block */
            if (r->done || r->p >= r->n) return -1;
            size_t sz = r->d[r->p++];
            if (sz == 0 || sz > r->n - r->p) {
                r->done = 1;
                return -1;
            }
            r->block_end = r->p + sz;
        }
        r->bits |= (uint32_t)r->d[r->p++] << r->nbits;
        r->nbits += 8;
    }
    int code = (int)(r->bits & ((1u << width) - 1));
    r->bits >>= width;
    r->nbits -= width;
    return code;
}

/* LZW-decodes `count` palette indices into out. */
static int lzw_decode(gif_reader *r, int min_size, uint8_t *out, size_t count, vision_err *e) {
    enum { MAX_CODES = 4096 };
    uint16_t *prefix = malloc(sizeof *prefix * MAX_CODES);
    uint8_t *suffix = malloc(MAX_CODES), *stack = malloc(MAX_CODES + 1);
    int rc = VISION_OK;
    if (!prefix || !suffix || !stack) {
        rc = vision_fail(e, VISION_E_NOMEM, "GIF: out of memory");
        goto done;
    }
    const int clear = 1 << min_size, eoi = clear + 1;
    for (int i = 0; i < clear; i++) {
        prefix[i] = 0;
        suffix[i] = (uint8_t)i;
    }
    int width = min_size + 1, next = clear + 2, prev = -1;
    uint8_t first = 0;
    size_t got = 0;
    while (got < count) {
        int code = read_code(r, width);
        if (code < 0) {
            rc = vision_fail(e, VISION_E_FORMAT, "GIF corrupt: image data ends after %zu of %zu pixels", got, count);
            goto done;
        }
        if (code == clear) {
            width = min_size + 1;
            next = clear + 2;
            prev = -1;
            continue;
        }
        if (code == eoi) {
            rc = vision_fail(e, VISION_E_FORMAT, "GIF corrupt: end code after %zu of %zu pixels", got, count);
            goto done;
        }
        if (prev < 0) { /* first code after a clear: a literal */
            if (code >= clear) {
                rc = vision_fail(e, VISION_E_FORMAT, "GIF corrupt: invalid LZW code %d", code);
                goto done;
            }
            out[got++] = (uint8_t)code;
            first = (uint8_t)code;
            prev = code;
            continue;
        }
        if (code > next || (code == next && next >= MAX_CODES)) {
            rc = vision_fail(e, VISION_E_FORMAT, "GIF corrupt: invalid LZW code %d", code);
            goto done;
        }
        /* the string of `code` (or, when code == next, prev's string plus its first byte), reversed on a stack */
        int sp = 0, c = code;
        if (code == next) {
            stack[sp++] = first;
            c = prev;
        }
        while (c >= clear) {
            stack[sp++] = suffix[c];
            c = prefix[c];
        }
        stack[sp++] = (uint8_t)c;
        first = (uint8_t)c;
        while (sp > 0 && got < count) out[got++] = stack[--sp];
        if (next < MAX_CODES) {
            prefix[next] = (uint16_t)prev;
            suffix[next] = first;
            next++;
            if (next == (1 << width) && width < 12) width++;
        }
        prev = code;
    }
done:
    free(prefix);
    free(suffix);
    free(stack);
    return rc;
}

int vision_gif_first_frame(const uint8_t *data, size_t len, const vision_header *hd, vision_image *img,
                           vision_err *e) {
    if (hd->format != VISION_FMT_GIF || hd->gif_data_off >= len || img->w != hd->width || img->h != hd->height)
        return vision_fail(e, VISION_E_ARG, "GIF: header and image do not match");
    const int min_size = data[hd->gif_data_off];
    if (min_size < 1 || min_size > 11) return vision_fail(e, VISION_E_FORMAT, "GIF corrupt: LZW code size %d", min_size);
    const size_t fw = (size_t)hd->gif_w, fh = (size_t)hd->gif_h;
    uint8_t *idx = malloc(fw * fh);
    if (!idx) return vision_fail(e, VISION_E_NOMEM, "GIF: out of memory for a %zux%zu frame", fw, fh);
    gif_reader r = { data, len, hd->gif_data_off + 1, hd->gif_data_off + 1, 0, 0, 0 };
    int rc = lzw_decode(&r, min_size, idx, fw * fh, e);
    if (rc) {
        free(idx);
        return rc;
    }
    /* palette: Pillow starts from a grey ramp and overwrites the first entries with the colour table */
    uint8_t pal[256][3];
    for (int i = 0; i < 256; i++) pal[i][0] = pal[i][1] = pal[i][2] = (uint8_t)i;
    if (hd->gif_palette_off)
        for (int i = 0; i < hd->gif_palette_n && i < 256; i++) memcpy(pal[i], data + hd->gif_palette_off + 3 * i, 3);
    const size_t W = (size_t)img->w;
    for (size_t i = 0; i < W * (size_t)img->h; i++) memcpy(img->rgb + 3 * i, pal[hd->gif_fill & 255], 3);
    /* rows in storage order -> frame rows (interlace passes start at 0, 4, 2, 1 with steps 8, 8, 4, 2) */
    static const int start[4] = { 0, 4, 2, 1 }, step[4] = { 8, 8, 4, 2 };
    size_t row = 0;
    for (int pass = 0; pass < (hd->gif_interlaced ? 4 : 1); pass++)
        for (size_t y = hd->gif_interlaced ? (size_t)start[pass] : 0; y < fh;
             y += hd->gif_interlaced ? (size_t)step[pass] : 1, row++) {
            const uint8_t *src = idx + row * fw;
            uint8_t *dst = img->rgb + 3 * (((size_t)hd->gif_y + y) * W + (size_t)hd->gif_x);
            for (size_t x = 0; x < fw; x++) memcpy(dst + 3 * x, pal[src[x]], 3);
        }
    free(idx);
    return VISION_OK;
}
