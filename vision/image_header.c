/* image_header.c — format sniffing and header/structure checks on the raw bytes, before a decoder sees them.
 *
 * Why: decoders allocate from what the header claims and some of them (SDL2_image's JPEG and TIFF paths) quietly
 * return a half-grey picture when data is missing. So the size limits are enforced here, and each format's
 * structure is walked to its end: PNG chunks to IEND, JPEG segments and entropy-coded data to EOI, the GIF blocks
 * of the first frame, BMP pixel array bounds, the WebP RIFF size, TIFF strip/tile byte ranges. A file that fails
 * gets one line naming what is wrong and where. Nothing here allocates. */
#include <pthread.h>
#include <string.h>

#include "image.h"

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t be32(const uint8_t *p) { return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3]; }
static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[1] << 8 | p[0]); }
static uint32_t le24(const uint8_t *p) { return (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]; }
static uint32_t le32(const uint8_t *p) { return (uint32_t)p[3] << 24 | (uint32_t)p[2] << 16 | (uint32_t)p[1] << 8 | p[0]; }

void vision_default_limits(vision_limits *lim) {
    lim->max_side = 100000;
    lim->max_pixels = 178956970; /* 2 * PIL.Image.MAX_IMAGE_PIXELS: Pillow raises DecompressionBombError above it */
    lim->max_file_bytes = (int64_t)1 << 30;
}

const char *vision_format_name(int format) {
    switch (format) {
    case VISION_FMT_PNG: return "PNG";
    case VISION_FMT_JPEG: return "JPEG";
    case VISION_FMT_GIF: return "GIF";
    case VISION_FMT_BMP: return "BMP";
    case VISION_FMT_WEBP: return "WebP";
    case VISION_FMT_TIFF: return "TIFF";
    default: return "unknown";
    }
}

static int check_size(int64_t w, int64_t h, const vision_limits *lim, const char *fmt, vision_err *e) {
    if (w <= 0 || h <= 0)
        return vision_fail(e, VISION_E_FORMAT, "%s header: invalid size %lldx%lld", fmt, (long long)w, (long long)h);
    if (w > lim->max_side || h > lim->max_side)
        return vision_fail(e, VISION_E_SIZE, "%s header claims %lldx%lld pixels, over the limit of %lld per side",
                           fmt, (long long)w, (long long)h, (long long)lim->max_side);
    if (h > lim->max_pixels / w)
        return vision_fail(e, VISION_E_SIZE, "%s header claims %lldx%lld pixels, over the limit of %lld pixels", fmt,
                           (long long)w, (long long)h, (long long)lim->max_pixels);
    return VISION_OK;
}

/* CRC-32 as PNG chunks use it (ISO 3309, the same as zlib's crc32). */
static uint32_t crc_table[256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;
static void crc_init(void) {
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[i] = c;
    }
}
static uint32_t png_crc(const uint8_t *p, size_t n) {
    pthread_once(&crc_once, crc_init);
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) c = crc_table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
    return c ^ 0xFFFFFFFFu;
}

/* ---- PNG: signature, IHDR first, every chunk complete with a correct CRC, IEND present ----
 * Checking CRCs here refuses damaged files quietly: libpng would report them by printing to stderr (SDL2_image
 * gives it no error callback). */
static int probe_png(const uint8_t *d, size_t n, vision_header *h, vision_err *e) {
    size_t p = 8;
    int have_ihdr = 0, have_idat = 0, have_plte = 0;
    for (;;) {
        if (n - p < 12) return vision_fail(e, VISION_E_FORMAT, "PNG truncated at byte %zu (no IEND chunk)", p);
        uint32_t clen = be32(d + p);
        const uint8_t *type = d + p + 4;
        for (int i = 0; i < 4; i++) {
            uint8_t c = type[i];
            if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')))
                return vision_fail(e, VISION_E_FORMAT, "PNG corrupt: bad chunk type at byte %zu", p + 4);
        }
        if (clen > 0x7fffffffu) return vision_fail(e, VISION_E_FORMAT, "PNG corrupt: chunk length %u", clen);
        if (clen > n - p - 12)
            return vision_fail(e, VISION_E_FORMAT, "PNG truncated inside chunk '%.4s' at byte %zu", (const char *)type,
                               p);
        const uint8_t *body = d + p + 8;
        if (png_crc(type, 4 + (size_t)clen) != be32(body + clen))
            return vision_fail(e, VISION_E_FORMAT, "PNG corrupt: bad CRC in chunk '%.4s' at byte %zu",
                               (const char *)type, p);
        if (!have_ihdr) {
            if (memcmp(type, "IHDR", 4) != 0 || clen != 13)
                return vision_fail(e, VISION_E_FORMAT, "PNG corrupt: first chunk is not IHDR");
            uint32_t w = be32(body), hh = be32(body + 4);
            int depth = body[8], ct = body[9];
            if (w > 0x7fffffffu || hh > 0x7fffffffu)
                return vision_fail(e, VISION_E_FORMAT, "PNG corrupt: size %ux%u", w, hh);
            int ok_depth = 0;
            switch (ct) {
            case 0: ok_depth = depth == 1 || depth == 2 || depth == 4 || depth == 8 || depth == 16; break;
            case 3: ok_depth = depth == 1 || depth == 2 || depth == 4 || depth == 8; break;
            case 2: case 4: case 6: ok_depth = depth == 8 || depth == 16; break;
            default: break;
            }
            if (!ok_depth)
                return vision_fail(e, VISION_E_FORMAT, "PNG corrupt: colour type %d with bit depth %d", ct, depth);
            if (body[10] != 0 || body[11] != 0 || body[12] > 1)
                return vision_fail(e, VISION_E_FORMAT, "PNG corrupt: unknown compression/filter/interlace method");
            h->width = w;
            h->height = hh;
            h->png_color_type = ct;
            h->png_bit_depth = depth;
            have_ihdr = 1;
        } else if (!memcmp(type, "IHDR", 4)) {
            return vision_fail(e, VISION_E_FORMAT, "PNG corrupt: second IHDR chunk");
        } else if (!memcmp(type, "IDAT", 4)) {
            have_idat = 1;
        } else if (!memcmp(type, "PLTE", 4)) {
            have_plte = 1;
        } else if (!memcmp(type, "IEND", 4)) {
            break;
        } else if (!(type[0] & 0x20)) { /* critical chunk libpng would reject (printing as it does) */
            return vision_fail(e, VISION_E_FORMAT, "PNG corrupt: unknown critical chunk '%.4s'", (const char *)type);
        }
        p += 12 + (size_t)clen;
    }
    if (!have_idat) return vision_fail(e, VISION_E_FORMAT, "PNG corrupt: no image data (IDAT)");
    if (h->png_color_type == 3 && !have_plte) return vision_fail(e, VISION_E_FORMAT, "PNG corrupt: palette missing");
    return VISION_OK;
}

/* ---- JPEG: marker segments, entropy-coded data skipped byte-wise, EOI required ---- */
static int probe_jpeg(const uint8_t *d, size_t n, vision_header *h, vision_err *e) {
    size_t p = 2;
    int have_sof = 0, have_sos = 0;
    for (;;) {
        if (p >= n) return vision_fail(e, VISION_E_FORMAT, "JPEG truncated at byte %zu (no end-of-image marker)", p);
        if (d[p] != 0xFF) return vision_fail(e, VISION_E_FORMAT, "JPEG corrupt: expected a marker at byte %zu", p);
        while (p < n && d[p] == 0xFF) p++; /* fill bytes */
        if (p >= n) return vision_fail(e, VISION_E_FORMAT, "JPEG truncated at byte %zu (no end-of-image marker)", p);
        uint8_t m = d[p++];
        if (m == 0xD9) break; /* EOI */
        if (m == 0x01 || (m >= 0xD0 && m <= 0xD7)) continue; /* TEM, RSTn: no length */
        if (m == 0x00 || m == 0xD8)
            return vision_fail(e, VISION_E_FORMAT, "JPEG corrupt: marker 0x%02X at byte %zu", m, p - 1);
        if (n - p < 2) return vision_fail(e, VISION_E_FORMAT, "JPEG truncated in segment 0x%02X", m);
        size_t len = be16(d + p);
        if (len < 2) return vision_fail(e, VISION_E_FORMAT, "JPEG corrupt: segment 0x%02X length %zu", m, len);
        if (len > n - p) return vision_fail(e, VISION_E_FORMAT, "JPEG truncated in segment 0x%02X at byte %zu", m, p);
        int sof = m >= 0xC0 && m <= 0xCF && m != 0xC4 && m != 0xC8 && m != 0xCC;
        if (sof && !have_sof) {
            if (len < 8) return vision_fail(e, VISION_E_FORMAT, "JPEG corrupt: short frame header");
            /* libjpeg-turbo 2.1 decodes baseline, extended, progressive and arithmetic 8-bit frames */
            if (!(m == 0xC0 || m == 0xC1 || m == 0xC2 || m == 0xC9 || m == 0xCA))
                return vision_fail(e, VISION_E_UNSUPPORTED, "JPEG frame type 0x%02X (lossless/hierarchical)", m);
            if (d[p + 2] != 8)
                return vision_fail(e, VISION_E_UNSUPPORTED, "JPEG with %d-bit samples", d[p + 2]);
            h->height = be16(d + p + 3);
            h->width = be16(d + p + 5);
            h->components = d[p + 7];
            if (h->height == 0) return vision_fail(e, VISION_E_UNSUPPORTED, "JPEG height given later (DNL marker)");
            if (h->components == 4)
                return vision_fail(e, VISION_E_UNSUPPORTED, "CMYK/YCCK JPEG (4 colour components)");
            if (h->components != 1 && h->components != 3)
                return vision_fail(e, VISION_E_UNSUPPORTED, "JPEG with %d colour components", h->components);
            have_sof = 1;
        }
        p += len;
        if (m == 0xDA) { /* start of scan: skip entropy-coded data up to the next real marker */
            if (!have_sof) return vision_fail(e, VISION_E_FORMAT, "JPEG corrupt: scan before frame header");
            have_sos = 1;
            for (;;) {
                const uint8_t *ff = p < n ? memchr(d + p, 0xFF, n - p) : NULL;
                if (!ff || (size_t)(ff - d) + 1 >= n)
                    return vision_fail(e, VISION_E_FORMAT, "JPEG truncated inside the image data");
                p = (size_t)(ff - d);
                uint8_t b = d[p + 1];
                if (b == 0x00 || (b >= 0xD0 && b <= 0xD7)) p += 2; /* stuffed byte, restart marker */
                else if (b == 0xFF) p += 1;                        /* fill byte before a marker */
                else break;
            }
        }
    }
    if (!have_sof || !have_sos) return vision_fail(e, VISION_E_FORMAT, "JPEG corrupt: no frame or no scan");
    return VISION_OK;
}

/* ---- GIF: screen descriptor, extensions, the first image's data sub-blocks to their terminator ---- */
static int skip_sub_blocks(const uint8_t *d, size_t n, size_t *pp, vision_err *e) {
    size_t p = *pp;
    for (;;) {
        if (p >= n) return vision_fail(e, VISION_E_FORMAT, "GIF truncated at byte %zu", p);
        size_t sz = d[p++];
        if (sz == 0) break;
        if (sz > n - p) return vision_fail(e, VISION_E_FORMAT, "GIF truncated at byte %zu", p);
        p += sz;
    }
    *pp = p;
    return VISION_OK;
}

static int probe_gif(const uint8_t *d, size_t n, vision_header *h, vision_err *e) {
    if (n < 13) return vision_fail(e, VISION_E_FORMAT, "GIF truncated in the screen descriptor");
    int64_t sw = le16(d + 6), sh = le16(d + 8);
    size_t p = 13;
    if (d[10] & 0x80) {
        size_t gct = (size_t)3 << ((d[10] & 7) + 1);
        if (gct > n - p) return vision_fail(e, VISION_E_FORMAT, "GIF truncated in the colour table");
        h->gif_palette_off = p;
        h->gif_palette_n = 2 << (d[10] & 7);
        p += gct;
    }
    int transparent = -1;
    for (;;) {
        if (p >= n) return vision_fail(e, VISION_E_FORMAT, "GIF truncated before the first image");
        uint8_t b = d[p++];
        if (b == 0x21) { /* extension */
            if (p >= n) return vision_fail(e, VISION_E_FORMAT, "GIF truncated in an extension");
            uint8_t label = d[p++];
            if (label == 0xF9 && p + 5 <= n && d[p] == 4) transparent = (d[p + 1] & 1) ? d[p + 4] : -1;
            int rc = skip_sub_blocks(d, n, &p, e);
            if (rc) return rc;
        } else if (b == 0x2C) { /* image descriptor */
            if (n - p < 9) return vision_fail(e, VISION_E_FORMAT, "GIF truncated in the image descriptor");
            h->gif_x = le16(d + p);
            h->gif_y = le16(d + p + 2);
            h->gif_w = le16(d + p + 4);
            h->gif_h = le16(d + p + 6);
            uint8_t fl = d[p + 8];
            p += 9;
            h->gif_interlaced = (fl & 0x40) != 0;
            if (fl & 0x80) {
                size_t lct = (size_t)3 << ((fl & 7) + 1);
                if (lct > n - p) return vision_fail(e, VISION_E_FORMAT, "GIF truncated in the colour table");
                h->gif_palette_off = p;
                h->gif_palette_n = 2 << (fl & 7);
                p += lct;
            }
            if (p >= n) return vision_fail(e, VISION_E_FORMAT, "GIF truncated before the image data");
            h->gif_data_off = p;
            uint8_t lzw = d[p++];
            if (lzw < 1 || lzw > 11) return vision_fail(e, VISION_E_FORMAT, "GIF corrupt: LZW code size %d", lzw);
            int rc = skip_sub_blocks(d, n, &p, e);
            if (rc) return rc;
            break;
        } else if (b == 0x3B) {
            return vision_fail(e, VISION_E_FORMAT, "GIF has no image");
        } else {
            return vision_fail(e, VISION_E_FORMAT, "GIF corrupt: unknown block 0x%02X at byte %zu", b, p - 1);
        }
    }
    if (h->gif_w <= 0 || h->gif_h <= 0) return vision_fail(e, VISION_E_FORMAT, "GIF corrupt: empty first frame");
    /* Pillow draws frame 0 on a canvas of the screen size, grown to hold the frame (GifImagePlugin._seek) */
    h->width = sw > h->gif_x + h->gif_w ? sw : h->gif_x + h->gif_w;
    h->height = sh > h->gif_y + h->gif_h ? sh : h->gif_y + h->gif_h;
    h->gif_fill = transparent >= 0 ? transparent : 0;
    return VISION_OK;
}

/* ---- BMP: file + DIB header, pixel array inside the file for uncompressed layouts ---- */
static int probe_bmp(const uint8_t *d, size_t n, const vision_limits *lim, vision_header *h, vision_err *e) {
    if (n < 26) return vision_fail(e, VISION_E_FORMAT, "BMP truncated in the header");
    uint32_t off = le32(d + 10), dib = le32(d + 14);
    int64_t w, hh;
    uint32_t bpp, comp = 0;
    if (dib == 12) {
        w = le16(d + 18);
        hh = le16(d + 20);
        bpp = le16(d + 24);
    } else if (dib >= 40 && dib <= 124) {
        if (n < 14 + 40) return vision_fail(e, VISION_E_FORMAT, "BMP truncated in the header");
        w = (int32_t)le32(d + 18);
        hh = (int32_t)le32(d + 22);
        bpp = le16(d + 28);
        comp = le32(d + 30);
        if (hh < 0) hh = -hh; /* top-down rows */
    } else {
        return vision_fail(e, VISION_E_FORMAT, "BMP corrupt: header size %u", dib);
    }
    if (!(bpp == 1 || bpp == 4 || bpp == 8 || bpp == 16 || bpp == 24 || bpp == 32))
        return vision_fail(e, VISION_E_UNSUPPORTED, "BMP with %u bits per pixel", bpp);
    if (comp == 4 || comp == 5) return vision_fail(e, VISION_E_UNSUPPORTED, "BMP holding JPEG/PNG data");
    if (comp > 6) return vision_fail(e, VISION_E_FORMAT, "BMP corrupt: compression %u", comp);
    h->width = w;
    h->height = hh;
    int rc = check_size(w, hh, lim, "BMP", e); /* before the bounds check, which multiplies by them */
    if (rc) return rc;
    if (off >= n) return vision_fail(e, VISION_E_FORMAT, "BMP truncated before the pixel data");
    if (comp == 0 || comp == 3 || comp == 6) {
        uint64_t row = ((uint64_t)w * bpp + 31) / 32 * 4;
        if (row > (n - off) / (uint64_t)hh) return vision_fail(e, VISION_E_FORMAT, "BMP truncated in the pixel data");
    }
    return VISION_OK;
}

/* ---- WebP: RIFF size within the file; size from the VP8 / VP8L / VP8X chunk ---- */
static int probe_webp(const uint8_t *d, size_t n, vision_header *h, vision_err *e) {
    uint32_t riff = le32(d + 4);
    if (riff < 4 || riff > n - 8) return vision_fail(e, VISION_E_FORMAT, "WebP truncated (RIFF size %u)", riff);
    if (n < 20) return vision_fail(e, VISION_E_FORMAT, "WebP truncated in the first chunk");
    const uint8_t *c = d + 12;
    uint32_t csz = le32(c + 4);
    if (csz > n - 20) return vision_fail(e, VISION_E_FORMAT, "WebP truncated in chunk '%.4s'", (const char *)c);
    const uint8_t *b = c + 8;
    if (!memcmp(c, "VP8 ", 4)) {
        if (csz < 10 || b[3] != 0x9d || b[4] != 0x01 || b[5] != 0x2a)
            return vision_fail(e, VISION_E_FORMAT, "WebP corrupt: bad VP8 frame header");
        h->width = le16(b + 6) & 0x3fff;
        h->height = le16(b + 8) & 0x3fff;
    } else if (!memcmp(c, "VP8L", 4)) {
        if (csz < 5 || b[0] != 0x2f) return vision_fail(e, VISION_E_FORMAT, "WebP corrupt: bad VP8L header");
        uint32_t bits = le32(b + 1);
        h->width = (bits & 0x3fff) + 1;
        h->height = ((bits >> 14) & 0x3fff) + 1;
    } else if (!memcmp(c, "VP8X", 4)) {
        if (csz < 10) return vision_fail(e, VISION_E_FORMAT, "WebP corrupt: short VP8X chunk");
        if (b[0] & 0x02) return vision_fail(e, VISION_E_UNSUPPORTED, "animated WebP");
        h->width = (int64_t)le24(b + 4) + 1;
        h->height = (int64_t)le24(b + 7) + 1;
    } else {
        return vision_fail(e, VISION_E_FORMAT, "WebP corrupt: unknown first chunk");
    }
    return VISION_OK;
}

/* ---- TIFF (classic): first IFD's size tags; every strip/tile byte range inside the file ---- */
typedef struct {
    const uint8_t *d;
    size_t n;
    int be;
} tiff_ctx;

static uint32_t t16(const tiff_ctx *t, const uint8_t *p) { return t->be ? be16(p) : le16(p); }
static uint32_t t32(const tiff_ctx *t, const uint8_t *p) { return t->be ? be32(p) : le32(p); }

/* Points *vals at an entry's array of SHORT/LONG values (inline or at its offset); *cnt values of *sz bytes. */
static int tiff_array(const tiff_ctx *t, const uint8_t *ent, const uint8_t **vals, uint32_t *cnt, int *sz,
                      vision_err *e) {
    uint32_t type = t16(t, ent + 2), count = t32(t, ent + 4);
    if (type != 3 && type != 4) return vision_fail(e, VISION_E_FORMAT, "TIFF corrupt: tag %u of type %u",
                                                   t16(t, ent), type);
    int s = type == 3 ? 2 : 4;
    uint64_t bytes = (uint64_t)count * (uint64_t)s;
    if (bytes <= 4) {
        *vals = ent + 8;
    } else {
        uint32_t off = t32(t, ent + 8);
        if (off > t->n || bytes > t->n - off)
            return vision_fail(e, VISION_E_FORMAT, "TIFF truncated: tag %u data outside the file", t16(t, ent));
        *vals = t->d + off;
    }
    *cnt = count;
    *sz = s;
    return VISION_OK;
}

static uint32_t tiff_val(const tiff_ctx *t, const uint8_t *vals, int sz, uint32_t i) {
    return sz == 2 ? t16(t, vals + 2 * (size_t)i) : t32(t, vals + 4 * (size_t)i);
}

static int probe_tiff(const uint8_t *d, size_t n, vision_header *h, vision_err *e) {
    tiff_ctx t = { d, n, d[0] == 'M' };
    if (t16(&t, d + 2) == 43) return vision_fail(e, VISION_E_UNSUPPORTED, "BigTIFF");
    uint32_t ifd = t32(&t, d + 4);
    if (ifd < 8 || ifd > n - 2) return vision_fail(e, VISION_E_FORMAT, "TIFF corrupt: directory offset %u", ifd);
    uint32_t count = t16(&t, d + ifd);
    if ((uint64_t)count * 12 > n - ifd - 2) return vision_fail(e, VISION_E_FORMAT, "TIFF truncated in the directory");
    const uint8_t *offs[2] = { NULL, NULL }, *lens[2] = { NULL, NULL }; /* [0] strips, [1] tiles */
    uint32_t noffs[2] = { 0, 0 }, nlens[2] = { 0, 0 };
    int soffs[2] = { 0, 0 }, slens[2] = { 0, 0 };
    int64_t w = -1, hh = -1;
    for (uint32_t i = 0; i < count; i++) {
        const uint8_t *ent = d + ifd + 2 + 12 * (size_t)i;
        uint32_t tag = t16(&t, ent);
        const uint8_t *vals;
        uint32_t cnt;
        int sz, rc;
        switch (tag) {
        case 256: case 257:
            if ((rc = tiff_array(&t, ent, &vals, &cnt, &sz, e))) return rc;
            if (cnt < 1) return vision_fail(e, VISION_E_FORMAT, "TIFF corrupt: empty size tag");
            if (tag == 256) w = tiff_val(&t, vals, sz, 0);
            else hh = tiff_val(&t, vals, sz, 0);
            break;
        case 273: case 324:
            if ((rc = tiff_array(&t, ent, &offs[tag == 324], &noffs[tag == 324], &soffs[tag == 324], e))) return rc;
            break;
        case 279: case 325:
            if ((rc = tiff_array(&t, ent, &lens[tag == 325], &nlens[tag == 325], &slens[tag == 325], e))) return rc;
            break;
        default: break;
        }
    }
    if (w < 0 || hh < 0) return vision_fail(e, VISION_E_FORMAT, "TIFF corrupt: no image size");
    h->width = w;
    h->height = hh;
    int layouts = 0;
    for (int k = 0; k < 2; k++) {
        if (!offs[k] && !lens[k]) continue;
        if (!offs[k] || !lens[k] || noffs[k] != nlens[k] || noffs[k] == 0)
            return vision_fail(e, VISION_E_FORMAT, "TIFF corrupt: %s offsets and byte counts disagree",
                               k ? "tile" : "strip");
        for (uint32_t i = 0; i < noffs[k]; i++) {
            uint32_t o = tiff_val(&t, offs[k], soffs[k], i), l = tiff_val(&t, lens[k], slens[k], i);
            if (o > n || l > n - o)
                return vision_fail(e, VISION_E_FORMAT, "TIFF truncated: %s %u lies outside the file",
                                   k ? "tile" : "strip", i);
        }
        layouts++;
    }
    if (!layouts) return vision_fail(e, VISION_E_FORMAT, "TIFF corrupt: no strips or tiles");
    return VISION_OK;
}

int vision_probe(const uint8_t *data, size_t len, const vision_limits *lim, vision_header *hdr, vision_err *e) {
    vision_limits dl;
    if (!lim) {
        vision_default_limits(&dl);
        lim = &dl;
    }
    memset(hdr, 0, sizeof *hdr);
    hdr->gif_fill = 0;
    if (!data || len == 0) return vision_fail(e, VISION_E_FORMAT, "empty file");
    const uint8_t *d = data;
    int rc;
    if (len >= 8 && !memcmp(d, "\x89PNG\r\n\x1a\n", 8)) {
        hdr->format = VISION_FMT_PNG;
        rc = probe_png(d, len, hdr, e);
    } else if (len >= 3 && d[0] == 0xFF && d[1] == 0xD8 && d[2] == 0xFF) {
        hdr->format = VISION_FMT_JPEG;
        rc = probe_jpeg(d, len, hdr, e);
    } else if (len >= 6 && (!memcmp(d, "GIF87a", 6) || !memcmp(d, "GIF89a", 6))) {
        hdr->format = VISION_FMT_GIF;
        rc = probe_gif(d, len, hdr, e);
    } else if (len >= 2 && d[0] == 'B' && d[1] == 'M') {
        hdr->format = VISION_FMT_BMP;
        rc = probe_bmp(d, len, lim, hdr, e);
    } else if (len >= 12 && !memcmp(d, "RIFF", 4) && !memcmp(d + 8, "WEBP", 4)) {
        hdr->format = VISION_FMT_WEBP;
        rc = probe_webp(d, len, hdr, e);
    } else if (len >= 8 && (!memcmp(d, "II*\0", 4) || !memcmp(d, "MM\0*", 4) || !memcmp(d, "II+\0", 4) ||
                            !memcmp(d, "MM\0+", 4))) {
        hdr->format = VISION_FMT_TIFF;
        rc = probe_tiff(d, len, hdr, e);
    } else {
        return vision_fail(e, VISION_E_UNSUPPORTED,
                           "not a PNG, JPEG, GIF, BMP, WebP or TIFF image (unrecognised file signature)");
    }
    if (rc) return rc;
    return check_size(hdr->width, hdr->height, lim, vision_format_name(hdr->format), e);
}
