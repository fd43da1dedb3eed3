/* audio.h — what every part of the audio module shares: error codes and the one-line error message buffer.
 *
 * The audio module (WAV files, resampling, rings, voice activity, capture, log-mel features) is independent of the
 * engine: it includes nothing from engine/, ui/ or vision/. Its error codes use the same numbers as the engine's
 * OMNI_E_* codes where the meaning is the same, so the application can pass them through unchanged. */
#ifndef AUDIO_AUDIO_H
#define AUDIO_AUDIO_H

#include <stdarg.h>
#include <stdio.h>

enum {
    AUDIO_OK = 0,
    AUDIO_E_IO = -1,          /* file missing, unreadable, unwritable */
    AUDIO_E_FORMAT = -2,      /* malformed content (not a WAV, lying header, empty data) */
    AUDIO_E_UNSUPPORTED = -4, /* valid but not handled (compressed WAV codecs, RF64) */
    AUDIO_E_NOMEM = -6,       /* allocation failed */
    AUDIO_E_ARG = -8,         /* bad argument from the caller */
    AUDIO_E_DEVICE = -10,     /* sound system failure (PortAudio error while opening/running a stream) */
    AUDIO_E_NODEVICE = -11,   /* no usable input device exists (no sound card, no sound server) */
};

/* One line naming the file, field or device that failed. */
typedef struct {
    char msg[256];
} audio_err;

/* Formats into e->msg (if e != NULL) and returns code, so callers can `return audio_fail(e, code, ...)`. */
static inline int audio_fail(audio_err *e, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static inline int audio_fail(audio_err *e, int code, const char *fmt, ...) {
    if (e) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(e->msg, sizeof e->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

static inline const char *audio_strerror(int code) {
    switch (code) {
    case AUDIO_OK: return "ok";
    case AUDIO_E_IO: return "i/o error";
    case AUDIO_E_FORMAT: return "malformed audio data";
    case AUDIO_E_UNSUPPORTED: return "not supported";
    case AUDIO_E_NOMEM: return "out of memory";
    case AUDIO_E_ARG: return "invalid argument";
    case AUDIO_E_DEVICE: return "sound device error";
    case AUDIO_E_NODEVICE: return "no input device";
    default: return "unknown error";
    }
}

#endif
