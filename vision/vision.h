/* vision.h — what every part of the vision module shares: error codes and the one-line error message buffer.
 *
 * The vision module turns image files (and sequences of frames) into the `pixel_values` / `grid_thw` input of the
 * Qwen3-Omni vision encoder: load (SDL2_image) -> RGB -> smart_resize -> bicubic resize -> normalise -> patchify.
 * It includes nothing from engine/, audio/ or ui/. Error codes use the engine's OMNI_E_* numbers where the meaning
 * is the same, so the application can pass them through unchanged. */
#ifndef VISION_VISION_H
#define VISION_VISION_H

#include <stdarg.h>
#include <stdio.h>

enum {
    VISION_OK = 0,
    VISION_E_IO = -1,          /* file missing or unreadable */
    VISION_E_FORMAT = -2,      /* corrupt, truncated or not an image; malformed JSON */
    VISION_E_CONFIG = -3,      /* missing or invalid preprocessor config field */
    VISION_E_UNSUPPORTED = -4, /* valid but not handled (other image formats, CMYK JPEG, animated WebP, BigTIFF) */
    VISION_E_NOMEM = -6,       /* allocation failed */
    VISION_E_ARG = -8,         /* bad argument from the caller */
    VISION_E_SIZE = -12,       /* image size refused: over the decode limits, or an aspect ratio the model rejects */
};

/* One line naming the file, field or limit that failed. */
typedef struct {
    char msg[256];
} vision_err;

/* Formats into e->msg (if e != NULL) and returns code, so callers can `return vision_fail(e, code, ...)`. */
static inline int vision_fail(vision_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline int vision_fail(vision_err *e, int code, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

static inline const char *vision_strerror(int code) {
    switch (code) {
    case VISION_OK: return "ok";
    case VISION_E_IO: return "i/o error";
    case VISION_E_FORMAT: return "corrupt or truncated image";
    case VISION_E_CONFIG: return "invalid preprocessor config";
    case VISION_E_UNSUPPORTED: return "not supported";
    case VISION_E_NOMEM: return "out of memory";
    case VISION_E_ARG: return "invalid argument";
    case VISION_E_SIZE: return "image size not accepted";
    default: return "unknown error";
    }
}

#endif
