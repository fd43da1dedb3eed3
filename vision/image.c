/* image.c — decoding image bytes to packed RGB through SDL2_image, after vision_probe has checked the header.
 *
 * The format-specific IMG_Load*_RW entry points are called (never the guessing IMG_Load_RW, which would also try
 * TGA, SVG, XCF...), on a read-only memory stream; SDL_Init is not needed for any of them. GIFs are the exception:
 * gif.c decodes them (SDL2_image's GIF reader is not safe on damaged files). The decoded surface is
 * turned into RGB the way PIL's `image.convert("RGB")` does it, which is what transformers 5.17's
 * `convert_to_rgb` calls: alpha and colour keys are ignored, palette entries give their colours.
 *
 * Like the processor fed a PIL image (and unlike transformers' `load_image`), EXIF orientation is not applied;
 * neither are colour profiles or gamma, which Pillow also leaves alone.
 *
 * Known differences from Pillow, both rare: a 16-bit greyscale PNG gives its high byte here, while Pillow clips the
 * 16-bit value at 255 ("I;16" -> "RGB"); TIFFs are decoded through libtiff's RGBA reader (same for 8-bit RGB/grey,
 * may differ for exotic photometric interpretations).
 *
 * Third-party output: libtiff's handlers are switched off and PNGs reach libpng checked and stripped of ancillary
 * chunks, but libpng can still print a warning to stderr for odd-but-valid IDAT streams ("Extra compressed data");
 * an application that owns the terminal should point stderr elsewhere while it runs. */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <SDL.h>
#include <SDL_image.h>

#include "image.h"

vision_image *vision_image_new(int32_t w, int32_t h) {
    /* 2^34 pixels is far beyond any sensible limit; refusing it keeps the byte count from overflowing */
    if (w <= 0 || h <= 0 || (uint64_t)w * (uint64_t)h > ((uint64_t)1 << 34)) return NULL;
    vision_image *img = malloc(sizeof *img + (size_t)w * (size_t)h * 3);
    if (!img) return NULL;
    img->w = w;
    img->h = h;
    img->rgb = (uint8_t *)(img + 1);
    return img;
}

void vision_image_free(vision_image *img) { free(img); }

/* libtiff reports problems through process-wide handlers that print to stderr; library code must not print, so
 * they are switched off once. They are looked up at run time because libtiff is only a dependency of
 * SDL2_image (the build does not link it directly); if it is absent nothing happens. */
static void quiet_libtiff_once(void) {
    static const char *names[2] = { "TIFFSetErrorHandler", "TIFFSetWarningHandler" };
    for (int i = 0; i < 2; i++) {
        void *sym = dlsym(RTLD_DEFAULT, names[i]);
        if (!sym) continue;
        void *(*set_handler)(void *);
        memcpy(&set_handler, &sym, sizeof set_handler);
        set_handler(NULL);
    }
}
static pthread_once_t quiet_once = PTHREAD_ONCE_INIT;

/* Copies a surface's pixels into img as RGB. Handles the layouts SDL2_image produces for PNG/JPEG/GIF/BMP/WebP/TIFF
 * directly; anything else goes through SDL_ConvertSurfaceFormat to RGBA32 first. */
static int surface_to_rgb(SDL_Surface *s, vision_image *img, vision_err *e) {
    int rc = VISION_OK;
    if (SDL_LockSurface(s) != 0) return vision_fail(e, VISION_E_FORMAT, "cannot access decoded pixels: %s",
                                                    SDL_GetError());
    const uint32_t fmt = s->format->format;
    const int w = s->w, h = s->h;
    int ri = -1, gi = 0, bi = 0, bpp = 0; /* byte positions for the plain 24/32-bit layouts */
    if (fmt == SDL_PIXELFORMAT_RGB24) ri = 0, gi = 1, bi = 2, bpp = 3;
    else if (fmt == SDL_PIXELFORMAT_BGR24) ri = 2, gi = 1, bi = 0, bpp = 3;
    else if (fmt == SDL_PIXELFORMAT_RGBA32) ri = 0, gi = 1, bi = 2, bpp = 4;
    else if (fmt == SDL_PIXELFORMAT_BGRA32) ri = 2, gi = 1, bi = 0, bpp = 4;
    else if (fmt == SDL_PIXELFORMAT_ARGB32) ri = 1, gi = 2, bi = 3, bpp = 4;
    else if (fmt == SDL_PIXELFORMAT_ABGR32) ri = 3, gi = 2, bi = 1, bpp = 4;
    if (ri >= 0) {
        for (int y = 0; y < h; y++) {
            const uint8_t *src = (const uint8_t *)s->pixels + (size_t)y * (size_t)s->pitch;
            uint8_t *dst = img->rgb + (size_t)y * (size_t)w * 3;
            if (bpp == 3 && ri == 0) {
                memcpy(dst, src, (size_t)w * 3);
                continue;
            }
            for (int x = 0; x < w; x++, src += bpp, dst += 3) {
                dst[0] = src[ri];
                dst[1] = src[gi];
                dst[2] = src[bi];
            }
        }
    } else if (fmt == SDL_PIXELFORMAT_INDEX8 && s->format->palette) {
        const SDL_Palette *pal = s->format->palette;
        for (int y = 0; y < h; y++) {
            const uint8_t *src = (const uint8_t *)s->pixels + (size_t)y * (size_t)s->pitch;
            uint8_t *dst = img->rgb + (size_t)y * (size_t)w * 3;
            for (int x = 0; x < w; x++, dst += 3) {
                int i = src[x];
                if (i < pal->ncolors) {
                    dst[0] = pal->colors[i].r;
                    dst[1] = pal->colors[i].g;
                    dst[2] = pal->colors[i].b;
                } else { /* Pillow's palettes start as a grey ramp (Palette.c ImagingPaletteNew) */
                    dst[0] = dst[1] = dst[2] = (uint8_t)i;
                }
            }
        }
    } else {
        SDL_UnlockSurface(s);
        SDL_Surface *c = SDL_ConvertSurfaceFormat(s, SDL_PIXELFORMAT_RGBA32, 0);
        if (!c) return vision_fail(e, VISION_E_FORMAT, "cannot convert %s pixels: %s", SDL_GetPixelFormatName(fmt),
                                   SDL_GetError());
        rc = surface_to_rgb(c, img, e);
        SDL_FreeSurface(c);
        return rc;
    }
    SDL_UnlockSurface(s);
    return rc;
}

/* The PNG without its ancillary chunks; vision_probe has walked the chunk structure already. */
static uint8_t *png_critical_only(const uint8_t *d, size_t n, size_t *out_len) {
    uint8_t *o = malloc(n);
    if (!o) return NULL;
    memcpy(o, d, 8);
    size_t p = 8, q = 8;
    while (n - p >= 12) {
        size_t total = 12 + ((size_t)d[p] << 24 | (size_t)d[p + 1] << 16 | (size_t)d[p + 2] << 8 | d[p + 3]);
        if (total > n - p) break;
        if (!(d[p + 4] & 0x20)) { /* upper-case first letter: critical */
            memcpy(o + q, d + p, total);
            q += total;
        }
        if (!memcmp(d + p + 4, "IEND", 4)) break;
        p += total;
    }
    *out_len = q;
    return o;
}

static int decode(const uint8_t *data, size_t len, const vision_limits *lim, vision_image **out, vision_err *e) {
    vision_header hd;
    int rc = vision_probe(data, len, lim, &hd, e);
    if (rc) return rc;
    if (len > INT_MAX) return vision_fail(e, VISION_E_SIZE, "file larger than 2 GiB");
    if (hd.format == VISION_FMT_GIF) { /* our own decoder (gif.c): SDL2_image's is not safe on damaged files */
        vision_image *img = vision_image_new((int32_t)hd.width, (int32_t)hd.height);
        if (!img)
            return vision_fail(e, VISION_E_NOMEM, "out of memory for a %lldx%lld image", (long long)hd.width,
                               (long long)hd.height);
        rc = vision_gif_first_frame(data, len, &hd, img, e);
        if (rc) {
            vision_image_free(img);
            return rc;
        }
        *out = img;
        return VISION_OK;
    }
    pthread_once(&quiet_once, quiet_libtiff_once);

    /* PNGs are decoded from a copy holding only the critical chunks (IHDR, PLTE, IDAT, IEND). None of the others
     * changes the RGB values (SDL2_image applies no gamma or colour profile, and convert("RGB") ignores
     * transparency), but they make libpng print warnings (iCCP, sRGB...), and SDL2_image 2.6 turns a greyscale
     * PNG with a tRNS chunk into garbage (it asks libpng for RGB but allocates a 16-bit surface). */
    uint8_t *copy = NULL;
    const uint8_t *src = data;
    size_t slen = len;
    if (hd.format == VISION_FMT_PNG) {
        copy = png_critical_only(data, len, &slen);
        if (!copy) return vision_fail(e, VISION_E_NOMEM, "out of memory copying %zu bytes", len);
        src = copy;
    }
    SDL_ClearError();
    SDL_RWops *rw = SDL_RWFromConstMem(src, (int)slen);
    SDL_Surface *s = NULL;
    if (rw) {
        switch (hd.format) {
        case VISION_FMT_PNG: s = IMG_LoadPNG_RW(rw); break;
        case VISION_FMT_JPEG: s = IMG_LoadJPG_RW(rw); break;
        case VISION_FMT_BMP: s = IMG_LoadBMP_RW(rw); break;
        case VISION_FMT_WEBP: s = IMG_LoadWEBP_RW(rw); break;
        case VISION_FMT_TIFF: s = IMG_LoadTIF_RW(rw); break;
        default: break;
        }
        SDL_RWclose(rw);
    }
    free(copy);
    const char *fname = vision_format_name(hd.format);
    if (!s) {
        const char *why = SDL_GetError();
        return vision_fail(e, VISION_E_FORMAT, "%s decoder failed: %s", fname, why && *why ? why : "corrupt data");
    }
    if (s->w != hd.width || s->h != hd.height) {
        rc = vision_fail(e, VISION_E_FORMAT, "%s decoder returned %dx%d but the header says %lldx%lld", fname, s->w,
                         s->h, (long long)hd.width, (long long)hd.height);
        SDL_FreeSurface(s);
        return rc;
    }
    vision_image *img = vision_image_new((int32_t)hd.width, (int32_t)hd.height);
    if (!img) {
        SDL_FreeSurface(s);
        return vision_fail(e, VISION_E_NOMEM, "out of memory for a %lldx%lld image", (long long)hd.width,
                           (long long)hd.height);
    }
    rc = surface_to_rgb(s, img, e);
    SDL_FreeSurface(s);
    if (rc) {
        vision_image_free(img);
        return rc;
    }
    *out = img;
    return VISION_OK;
}

int vision_image_decode(const uint8_t *data, size_t len, const char *name, const vision_limits *lim,
                        vision_image **out, vision_err *e) {
    if (!out) return vision_fail(e, VISION_E_ARG, "vision_image_decode: out is NULL");
    *out = NULL;
    vision_err sub = { { 0 } };
    int rc = decode(data, len, lim, out, &sub);
    if (rc) return vision_fail(e, rc, "%s: %s", name ? name : "image", sub.msg);
    return VISION_OK;
}

int vision_image_load(const char *path, const vision_limits *lim, vision_image **out, vision_err *e) {
    if (!out || !path) return vision_fail(e, VISION_E_ARG, "vision_image_load: NULL argument");
    *out = NULL;
    vision_limits dl;
    if (!lim) {
        vision_default_limits(&dl);
        lim = &dl;
    }
    FILE *f = fopen(path, "rb");
    if (!f) return vision_fail(e, VISION_E_IO, "%s: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
        fclose(f);
        return vision_fail(e, VISION_E_IO, "%s: not a regular file", path);
    }
    if ((int64_t)st.st_size > lim->max_file_bytes) {
        fclose(f);
        return vision_fail(e, VISION_E_SIZE, "%s: file of %lld bytes is over the limit of %lld", path,
                           (long long)st.st_size, (long long)lim->max_file_bytes);
    }
    size_t len = (size_t)st.st_size;
    uint8_t *buf = malloc(len ? len : 1);
    if (!buf) {
        fclose(f);
        return vision_fail(e, VISION_E_NOMEM, "%s: out of memory reading %zu bytes", path, len);
    }
    size_t got = fread(buf, 1, len, f);
    int err = ferror(f);
    fclose(f);
    if (err || got != len) {
        free(buf);
        return vision_fail(e, VISION_E_IO, "%s: read error", path);
    }
    int rc = vision_image_decode(buf, len, path, lim, out, e);
    free(buf);
    return rc;
}
