/* capture.h — microphone input through PortAudio: list input devices, open one at its native rate, and read the
 * audio back resampled to 16 kHz mono.
 *
 * The PortAudio callback only mixes to mono (when the device insists on several channels) and copies into a
 * lock-free ring (ring.h): no allocation, locks or logging there. audio_capture_read, called from any one other
 * thread, drains the ring and pushes it through a persistent resampler (resample.h).
 *
 * Without a sound device, opening fails with AUDIO_E_NODEVICE and a one-line message, and nothing is printed:
 * before PortAudio starts, ALSA's error printer is replaced (snd_lib_error_set_handler) and, when PortAudio's JACK
 * host API has loaded libjack, JACK's error/info printers are silenced too (looked up at run time with dlsym, so
 * there is no link dependency on JACK). These handlers are process-wide and stay installed.
 *
 * PortAudio's Pa_Initialize/Pa_Terminate are not thread-safe: list, open and free from one thread. */
#ifndef AUDIO_CAPTURE_H
#define AUDIO_CAPTURE_H

#include <stdint.h>

#include "audio.h"

#define AUDIO_CAPTURE_RATE 16000 /* rate of the samples audio_capture_read returns, Hz */

typedef struct {
    int32_t index;              /* PortAudio device index (pass as audio_capture_params.device) */
    char name[128];
    char host_api[32];          /* "ALSA", "JACK Audio Connection Kit", ... */
    int32_t max_input_channels;
    double default_rate;        /* the device's native rate, Hz */
    int32_t is_default;         /* 1 for the default input device */
} audio_device_info;

/* Input-capable devices: *out malloc'd array of *n entries (free() it; may be NULL with *n = 0 when there are
 * none — that is not an error). */
int audio_capture_list(audio_device_info **out, int *n, audio_err *e);

typedef struct {
    int32_t device;       /* PortAudio index from audio_capture_list; -1 = the default input device */
    double rate;          /* device rate to open, Hz; 0 = the device's native rate */
    double ring_seconds;  /* ring buffer length at the device rate (default 10 s; the reader must keep up) */
    int32_t quality;      /* AUDIO_RESAMPLE_* for the conversion to 16 kHz (default BEST) */
} audio_capture_params;

audio_capture_params audio_capture_default_params(void);

typedef struct audio_capture audio_capture;

/* Opens (does not start) the input stream. On failure *out is NULL and PortAudio is shut down again. */
int audio_capture_open(audio_capture **out, const audio_capture_params *p, audio_err *e);
int audio_capture_start(audio_capture *c, audio_err *e);
int audio_capture_stop(audio_capture *c, audio_err *e); /* stops after the buffers in flight; ok if stopped */
void audio_capture_free(audio_capture *c);              /* stops, closes, shuts PortAudio down; NULL is a no-op */

/* Drains what has arrived and writes it resampled to 16 kHz into out (at most cap samples; what does not fit
 * stays queued). Returns the number of samples written (0 if nothing new) or a negative AUDIO_E_* code. */
int64_t audio_capture_read(audio_capture *c, float *out, int64_t cap, audio_err *e);

double audio_capture_device_rate(const audio_capture *c);    /* the rate the device runs at, Hz */
const char *audio_capture_device_name(const audio_capture *c);
uint64_t audio_capture_dropped(const audio_capture *c);      /* device-rate samples lost to a full ring */
uint64_t audio_capture_overflows(const audio_capture *c);    /* callbacks PortAudio flagged paInputOverflow */

#endif
