/* resample.c — libsamplerate wrapper with persistent state (see resample.h).
 *
 * libsamplerate's src_process() consumes input into its own buffer and emits output until either runs out, so
 * one call of ours loops until all input is consumed. We count input taken and output given: since the sinc
 * converters are time-aligned, the output so far never exceeds ceil(input so far · ratio), which bounds the
 * output of each call (audio_resampler_out_bound). */
#include "resample.h"

#include <math.h>
#include <samplerate.h>
#include <stdlib.h>
#include <string.h>

struct audio_resampler {
    SRC_STATE *src;      /* NULL when the rates are equal (plain copy) */
    double ratio;        /* out_rate / in_rate */
    int64_t total_in;    /* samples pushed since init/reset */
    int64_t total_out;   /* samples produced since init/reset */
    int flushed;         /* end of input was signalled */
};

int audio_resampler_init(audio_resampler **out, double in_rate, double out_rate, int quality, audio_err *e) {
    if (!out) return audio_fail(e, AUDIO_E_ARG, "resample: no output handle");
    *out = NULL;
    if (!(in_rate > 0) || !(out_rate > 0) || !isfinite(in_rate) || !isfinite(out_rate))
        return audio_fail(e, AUDIO_E_ARG, "resample: bad rates %g -> %g Hz", in_rate, out_rate);
    double ratio = out_rate / in_rate;
    if (!src_is_valid_ratio(ratio))
        return audio_fail(e, AUDIO_E_ARG, "resample: ratio %g (%g -> %g Hz) outside 1/256..256", ratio, in_rate,
                          out_rate);
    int type;
    switch (quality) {
    case AUDIO_RESAMPLE_BEST: type = SRC_SINC_BEST_QUALITY; break;
    case AUDIO_RESAMPLE_MEDIUM: type = SRC_SINC_MEDIUM_QUALITY; break;
    case AUDIO_RESAMPLE_FASTEST: type = SRC_SINC_FASTEST; break;
    default: return audio_fail(e, AUDIO_E_ARG, "resample: unknown quality %d", quality);
    }
    audio_resampler *r = calloc(1, sizeof *r);
    if (!r) return audio_fail(e, AUDIO_E_NOMEM, "resample: out of memory");
    r->ratio = ratio;
    if (in_rate != out_rate) {
        int err = 0;
        r->src = src_new(type, 1, &err);
        if (!r->src) {
            free(r);
            return audio_fail(e, AUDIO_E_NOMEM, "resample: libsamplerate: %s", src_strerror(err));
        }
    }
    *out = r;
    return 0;
}

void audio_resampler_free(audio_resampler *r) {
    if (!r) return;
    if (r->src) src_delete(r->src);
    free(r);
}

void audio_resampler_reset(audio_resampler *r) {
    if (!r) return;
    if (r->src) src_reset(r->src);
    r->total_in = r->total_out = 0;
    r->flushed = 0;
}

int64_t audio_resampler_out_bound(const audio_resampler *r, int64_t n_in) {
    if (!r->src) return n_in;
    /* +4 covers the rounding of the position (a double) at the ceiling */
    int64_t b = (int64_t)ceil((double)(r->total_in + n_in) * r->ratio) - r->total_out + 4;
    return b < 0 ? 0 : b;
}

static int64_t run(audio_resampler *r, const float *in, int64_t n_in, float *out, int64_t out_cap, int eoi,
                   audio_err *e) {
    if (r->flushed) return audio_fail(e, AUDIO_E_ARG, "resample: already flushed (reset first)");
    if (n_in < 0 || out_cap < 0 || (n_in && !in) || (out_cap && !out))
        return audio_fail(e, AUDIO_E_ARG, "resample: bad buffers");
    if (!r->src) { /* equal rates: exact copy */
        if (out_cap < n_in) return audio_fail(e, AUDIO_E_ARG, "resample: output buffer too small");
        if (n_in) memmove(out, in, (size_t)n_in * sizeof *out);
        r->total_in += n_in;
        r->total_out += n_in;
        r->flushed = eoi;
        return n_in;
    }
    int64_t done_in = 0, done_out = 0;
    static const float none[1] = { 0 }; /* libsamplerate ignores a NULL data_in, end_of_input included */
    for (;;) {
        SRC_DATA d = { 0 };
        d.data_in = in ? in + done_in : none;
        d.input_frames = (long)(n_in - done_in);
        d.data_out = out ? out + done_out : NULL;
        d.output_frames = (long)(out_cap - done_out);
        d.end_of_input = eoi;
        d.src_ratio = r->ratio;
        int err = src_process(r->src, &d);
        if (err) return audio_fail(e, AUDIO_E_ARG, "resample: libsamplerate: %s", src_strerror(err));
        done_in += d.input_frames_used;
        done_out += d.output_frames_gen;
        if (d.output_frames_gen == 0 && done_in == n_in) break; /* all consumed, nothing more to emit */
        if (done_out == out_cap) {
            /* full: fine if all input is in (the rest waits in the converter), else the caller ignored out_bound */
            if (done_in < n_in) return audio_fail(e, AUDIO_E_ARG, "resample: output buffer too small");
            break;
        }
    }
    r->total_in += n_in;
    r->total_out += done_out;
    r->flushed = eoi;
    return done_out;
}

int64_t audio_resampler_process(audio_resampler *r, const float *in, int64_t n_in, float *out, int64_t out_cap,
                                audio_err *e) {
    if (!r) return audio_fail(e, AUDIO_E_ARG, "resample: no resampler");
    return run(r, in, n_in, out, out_cap, 0, e);
}

int64_t audio_resampler_flush(audio_resampler *r, float *out, int64_t out_cap, audio_err *e) {
    if (!r) return audio_fail(e, AUDIO_E_ARG, "resample: no resampler");
    return run(r, NULL, 0, out, out_cap, 1, e);
}

int audio_resample(const float *in, int64_t n, double in_rate, double out_rate, int quality, float **out,
                   int64_t *n_out, audio_err *e) {
    if (!out || !n_out) return audio_fail(e, AUDIO_E_ARG, "resample: no output given");
    *out = NULL;
    *n_out = 0;
    audio_resampler *r;
    int rc = audio_resampler_init(&r, in_rate, out_rate, quality, e);
    if (rc) return rc;
    int64_t cap = audio_resampler_out_bound(r, n) + 8;
    float *buf = malloc((size_t)cap * sizeof *buf);
    if (!buf) {
        audio_resampler_free(r);
        return audio_fail(e, AUDIO_E_NOMEM, "resample: out of memory for %lld samples", (long long)cap);
    }
    int64_t a = audio_resampler_process(r, in, n, buf, cap, e);
    int64_t b = a < 0 ? a : audio_resampler_flush(r, buf + a, cap - a, e);
    audio_resampler_free(r);
    if (b < 0) {
        free(buf);
        return (int)b;
    }
    *out = buf;
    *n_out = a + b;
    return 0;
}
