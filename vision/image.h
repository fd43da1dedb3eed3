/* image.h — image files to packed RGB: format sniffing and header checks before any decoding, then decoding through
 * SDL2_image (no SDL_Init needed) and conversion to RGB the way the reference does it.
 *
 * Reference: transformers 5.17 `image_transforms.convert_to_rgb` is PIL's `image.convert("RGB")`: alpha is dropped
 * (NOT composited on white), palette images give their palette colours (transparency ignored), grey is replicated.
 * The Qwen2-VL image processor calls it on every image, and `load_image` does the same. */
#ifndef VISION_IMAGE_H
#define VISION_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "vision.h"

typedef enum {
    VISION_FMT_UNKNOWN = 0,
    VISION_FMT_PNG,
    VISION_FMT_JPEG,
    VISION_FMT_GIF,
    VISION_FMT_BMP,
    VISION_FMT_WEBP,
    VISION_FMT_TIFF,
} vision_format;

/* A decoded image: packed RGB, row-major, 3 bytes per pixel, no row padding. One allocation (vision_image_new). */
typedef struct {
    int32_t w, h;  /* pixels */
    uint8_t *rgb;  /* [h][w][3] */
} vision_image;

/* Limits checked against the header before anything is decoded. */
typedef struct {
    int64_t max_side;       /* longest side a header may claim (default 100000) */
    int64_t max_pixels;     /* width * height a header may claim (default 178956970: Pillow's decompression-bomb
                               error threshold, so the reference refuses such images too) */
    int64_t max_file_bytes; /* largest file vision_image_load reads (default 1 GiB) */
} vision_limits;

/* What a header claims, read without decoding (vision_probe). */
typedef struct {
    int format;            /* vision_format */
    int64_t width, height; /* image size as decoded (GIF: the canvas Pillow draws the first frame on) */
    int components;        /* JPEG colour components (1 or 3 accepted) */
    int png_color_type;    /* PNG IHDR colour type and bit depth */
    int png_bit_depth;
    int64_t gif_x, gif_y;  /* GIF: first frame rectangle inside the canvas */
    int64_t gif_w, gif_h;
    int gif_fill;          /* GIF: palette index Pillow fills the canvas with (the transparency index, else 0) */
    int gif_interlaced;    /* GIF: first frame stored in 4 interlaced passes */
    size_t gif_palette_off;   /* GIF: byte offset of the frame's colour table (local, else global); 0 = none */
    int gif_palette_n;        /* GIF: its number of entries */
    size_t gif_data_off;      /* GIF: byte offset of the LZW minimum code size, sub-blocks follow */
} vision_header;

void vision_default_limits(vision_limits *lim);
const char *vision_format_name(int format);

/* Identifies the format and checks the header and the file's structure (complete chunks/segments/blocks up to the
 * end marker where the format has one, so truncation is caught before decoding). lim NULL = defaults. */
int vision_probe(const uint8_t *data, size_t len, const vision_limits *lim, vision_header *hdr, vision_err *e);

/* Decodes PNG, JPEG, GIF (first frame), BMP, WebP or TIFF bytes to RGB. `name` labels error messages (NULL:
 * "image"). lim NULL = defaults. On success *out is a new image (vision_image_free). */
int vision_image_decode(const uint8_t *data, size_t len, const char *name, const vision_limits *lim,
                        vision_image **out, vision_err *e);
/* Reads and decodes a file; errors name the path. */
int vision_image_load(const char *path, const vision_limits *lim, vision_image **out, vision_err *e);

/* Decodes the first GIF frame onto img (hd->width x hd->height) the way Pillow does (gif.c); used by
 * vision_image_decode. */
int vision_gif_first_frame(const uint8_t *data, size_t len, const vision_header *hd, vision_image *img,
                           vision_err *e);

vision_image *vision_image_new(int32_t w, int32_t h); /* pixels uninitialised; NULL on overflow or no memory */
void vision_image_free(vision_image *img);           /* NULL is fine */

#endif
