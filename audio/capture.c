/* capture.c — PortAudio microphone input into a lock-free ring, read back at 16 kHz (see capture.h).
 *
 * Threads: PortAudio runs on_input on its own (often real-time) thread; it touches only the ring's producer side
 * and the overflow counter. Everything else (open/start/stop/read/free) belongs to the caller's threads. */
#include "capture.h"

#include <alsa/asoundlib.h>
#include <dlfcn.h>
#include <portaudio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "resample.h"
#include "ring.h"

#define CAPTURE_MIX_CHUNK 256   /* frames mixed to mono at a time, on the callback's stack */
#define CAPTURE_SCRATCH 4096    /* device-rate samples drained from the ring per resampler push */

struct audio_capture {
    PaStream *stream;
    audio_ring *ring;            /* device-rate mono samples, callback → reader */
    audio_resampler *rs;         /* device rate → 16 kHz, persistent across reads */
    float *scratch;              /* [CAPTURE_SCRATCH] */
    double rate;                 /* device rate, Hz */
    int channels;                /* channels the stream delivers (mixed to mono in the callback) */
    int started;
    _Atomic uint64_t overflows;  /* written by the callback only */
    char name[128];
};

/* ---- keeping the sound libraries quiet ------------------------------------------------------------------------ */

static void alsa_quiet(const char *file, int line, const char *fn, int err, const char *fmt, ...) {
    (void)file, (void)line, (void)fn, (void)err, (void)fmt;
}
static void jack_quiet(const char *msg) { (void)msg; }

/* ALSA and JACK print their own diagnostics (about 100 lines when there is no sound card) to stderr, which would
 * land in the middle of the terminal UI. Replace their printers before every Pa_Initialize. */
static PaError pa_start(void) {
    snd_lib_error_set_handler(alsa_quiet);
    typedef void (*jack_set_fn)(void (*)(const char *));
    void *sym = dlsym(RTLD_DEFAULT, "jack_set_error_function");
    jack_set_fn set_err, set_info;
    memcpy(&set_err, &sym, sizeof sym); /* object pointer → function pointer without a pedantic cast warning */
    sym = dlsym(RTLD_DEFAULT, "jack_set_info_function");
    memcpy(&set_info, &sym, sizeof sym);
    if (set_err) set_err(jack_quiet);
    if (set_info) set_info(jack_quiet);
    return Pa_Initialize();
}

static void copy_name(char *dst, size_t cap, const char *src) {
    snprintf(dst, cap, "%s", src ? src : "?");
}

/* ---- devices -------------------------------------------------------------------------------------------------- */

int audio_capture_list(audio_device_info **out, int *n, audio_err *e) {
    if (!out || !n) return audio_fail(e, AUDIO_E_ARG, "capture: no output given");
    *out = NULL;
    *n = 0;
    PaError pe = pa_start();
    if (pe != paNoError) return audio_fail(e, AUDIO_E_DEVICE, "capture: PortAudio init: %s", Pa_GetErrorText(pe));
    int count = Pa_GetDeviceCount(), def = Pa_GetDefaultInputDevice(), k = 0;
    audio_device_info *list = count > 0 ? calloc((size_t)count, sizeof *list) : NULL;
    if (count > 0 && !list) {
        Pa_Terminate();
        return audio_fail(e, AUDIO_E_NOMEM, "capture: out of memory");
    }
    for (int i = 0; i < count; i++) {
        const PaDeviceInfo *d = Pa_GetDeviceInfo(i);
        if (!d || d->maxInputChannels < 1) continue;
        const PaHostApiInfo *h = Pa_GetHostApiInfo(d->hostApi);
        audio_device_info *o = &list[k++];
        o->index = i;
        copy_name(o->name, sizeof o->name, d->name);
        copy_name(o->host_api, sizeof o->host_api, h ? h->name : NULL);
        o->max_input_channels = d->maxInputChannels;
        o->default_rate = d->defaultSampleRate;
        o->is_default = i == def;
    }
    Pa_Terminate();
    if (k == 0) {
        free(list);
        list = NULL;
    }
    *out = list;
    *n = k;
    return 0;
}

audio_capture_params audio_capture_default_params(void) {
    audio_capture_params p = { -1, 0.0, 10.0, AUDIO_RESAMPLE_BEST };
    return p;
}

/* ---- the callback --------------------------------------------------------------------------------------------- */

static int on_input(const void *input, void *output, unsigned long frames, const PaStreamCallbackTimeInfo *ti,
                    PaStreamCallbackFlags flags, void *user) {
    (void)output, (void)ti;
    audio_capture *c = user;
    if (flags & paInputOverflow)
        atomic_store_explicit(&c->overflows, atomic_load_explicit(&c->overflows, memory_order_relaxed) + 1,
                              memory_order_relaxed);
    if (!input) return paContinue;
    const float *in = input;
    if (c->channels == 1) {
        audio_ring_write(c->ring, in, frames);
        return paContinue;
    }
    float mix[CAPTURE_MIX_CHUNK];
    float inv = 1.0f / (float)c->channels;
    while (frames) {
        unsigned long k = frames < CAPTURE_MIX_CHUNK ? frames : CAPTURE_MIX_CHUNK;
        for (unsigned long i = 0; i < k; i++) {
            float s = 0;
            for (int ch = 0; ch < c->channels; ch++) s += in[i * (unsigned long)c->channels + (unsigned long)ch];
            mix[i] = s * inv;
        }
        audio_ring_write(c->ring, mix, k);
        in += k * (unsigned long)c->channels;
        frames -= k;
    }
    return paContinue;
}

/* ---- stream --------------------------------------------------------------------------------------------------- */

int audio_capture_open(audio_capture **out, const audio_capture_params *p, audio_err *e) {
    if (!out) return audio_fail(e, AUDIO_E_ARG, "capture: no output handle");
    *out = NULL;
    audio_capture_params dp = audio_capture_default_params();
    if (!p) p = &dp;
    if (!(p->ring_seconds > 0 && p->ring_seconds <= 600) || p->rate < 0)
        return audio_fail(e, AUDIO_E_ARG, "capture: bad parameters (ring %g s, rate %g Hz)", p->ring_seconds, p->rate);
    PaError pe = pa_start();
    if (pe != paNoError) return audio_fail(e, AUDIO_E_DEVICE, "capture: PortAudio init: %s", Pa_GetErrorText(pe));
    int rc = 0;
    audio_capture *c = NULL;
    int dev = p->device >= 0 ? p->device : Pa_GetDefaultInputDevice();
    const PaDeviceInfo *d = NULL;
    if (Pa_GetDeviceCount() <= 0 || dev == paNoDevice) {
        rc = audio_fail(e, AUDIO_E_NODEVICE, "capture: no input device (PortAudio found %d devices)",
                        Pa_GetDeviceCount() > 0 ? Pa_GetDeviceCount() : 0);
        goto fail;
    }
    if (dev >= Pa_GetDeviceCount() || !(d = Pa_GetDeviceInfo(dev))) {
        rc = audio_fail(e, AUDIO_E_ARG, "capture: device %d does not exist (%d devices)", dev, Pa_GetDeviceCount());
        goto fail;
    }
    if (d->maxInputChannels < 1) {
        rc = audio_fail(e, AUDIO_E_ARG, "capture: device %d '%s' has no input channels", dev, d->name);
        goto fail;
    }
    c = calloc(1, sizeof *c);
    if (!c) {
        rc = audio_fail(e, AUDIO_E_NOMEM, "capture: out of memory");
        goto fail;
    }
    copy_name(c->name, sizeof c->name, d->name);
    c->rate = p->rate > 0 ? p->rate : d->defaultSampleRate;
    atomic_init(&c->overflows, 0);
    PaStreamParameters sp = { 0 };
    sp.device = dev;
    sp.sampleFormat = paFloat32;
    sp.suggestedLatency = d->defaultLowInputLatency;
    /* Mono if the device takes it (ALSA's plug layer and Pulse do); otherwise stereo or all channels, mixed in the
     * callback. */
    int tries[3] = { 1, 2, d->maxInputChannels };
    c->channels = 0;
    for (int i = 0; i < 3 && !c->channels; i++) {
        if (tries[i] > d->maxInputChannels) continue;
        sp.channelCount = tries[i];
        if (Pa_IsFormatSupported(&sp, NULL, c->rate) == paFormatIsSupported) c->channels = tries[i];
    }
    if (!c->channels) {
        rc = audio_fail(e, AUDIO_E_DEVICE, "capture: '%s' accepts no float input at %g Hz", c->name, c->rate);
        goto fail;
    }
    sp.channelCount = c->channels;
    size_t ring_len = (size_t)(p->ring_seconds * c->rate);
    if ((rc = audio_ring_init(&c->ring, ring_len < 4096 ? 4096 : ring_len, e))) goto fail;
    if ((rc = audio_resampler_init(&c->rs, c->rate, AUDIO_CAPTURE_RATE, p->quality, e))) goto fail;
    c->scratch = malloc(sizeof(float) * CAPTURE_SCRATCH);
    if (!c->scratch) {
        rc = audio_fail(e, AUDIO_E_NOMEM, "capture: out of memory");
        goto fail;
    }
    pe = Pa_OpenStream(&c->stream, &sp, NULL, c->rate, paFramesPerBufferUnspecified, paNoFlag, on_input, c);
    if (pe != paNoError) {
        c->stream = NULL;
        rc = audio_fail(e, pe == paDeviceUnavailable ? AUDIO_E_NODEVICE : AUDIO_E_DEVICE,
                        "capture: cannot open '%s' at %g Hz: %s", c->name, c->rate, Pa_GetErrorText(pe));
        goto fail;
    }
    *out = c;
    return 0;
fail:
    if (c) {
        audio_ring_free(c->ring);
        audio_resampler_free(c->rs);
        free(c->scratch);
        free(c);
    }
    Pa_Terminate();
    return rc;
}

int audio_capture_start(audio_capture *c, audio_err *e) {
    if (!c) return audio_fail(e, AUDIO_E_ARG, "capture: no stream");
    if (c->started) return 0;
    PaError pe = Pa_StartStream(c->stream);
    if (pe != paNoError) return audio_fail(e, AUDIO_E_DEVICE, "capture: cannot start '%s': %s", c->name,
                                           Pa_GetErrorText(pe));
    c->started = 1;
    return 0;
}

int audio_capture_stop(audio_capture *c, audio_err *e) {
    if (!c) return audio_fail(e, AUDIO_E_ARG, "capture: no stream");
    if (!c->started) return 0;
    c->started = 0;
    PaError pe = Pa_StopStream(c->stream);
    if (pe != paNoError) return audio_fail(e, AUDIO_E_DEVICE, "capture: cannot stop '%s': %s", c->name,
                                           Pa_GetErrorText(pe));
    return 0;
}

void audio_capture_free(audio_capture *c) {
    if (!c) return;
    if (c->started) Pa_AbortStream(c->stream);
    Pa_CloseStream(c->stream);
    Pa_Terminate();
    audio_ring_free(c->ring);
    audio_resampler_free(c->rs);
    free(c->scratch);
    free(c);
}

int64_t audio_capture_read(audio_capture *c, float *out, int64_t cap, audio_err *e) {
    if (!c || cap < 0 || (cap && !out)) return audio_fail(e, AUDIO_E_ARG, "capture: bad read arguments");
    int64_t done = 0;
    for (;;) {
        int64_t n_in = (int64_t)audio_ring_available(c->ring);
        if (n_in > CAPTURE_SCRATCH) n_in = CAPTURE_SCRATCH;
        /* take only as much as is sure to fit the room left; the rest waits in the ring */
        while (n_in > 0 && audio_resampler_out_bound(c->rs, n_in) > cap - done) n_in /= 2;
        if (n_in == 0) break;
        n_in = (int64_t)audio_ring_read(c->ring, c->scratch, (size_t)n_in);
        int64_t got = audio_resampler_process(c->rs, c->scratch, n_in, out + done, cap - done, e);
        if (got < 0) return got;
        done += got;
    }
    return done;
}

double audio_capture_device_rate(const audio_capture *c) { return c ? c->rate : 0; }
const char *audio_capture_device_name(const audio_capture *c) { return c ? c->name : ""; }
uint64_t audio_capture_dropped(const audio_capture *c) { return c ? audio_ring_dropped(c->ring) : 0; }
uint64_t audio_capture_overflows(const audio_capture *c) {
    return c ? atomic_load_explicit(&c->overflows, memory_order_relaxed) : 0;
}
