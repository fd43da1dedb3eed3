/* resample.h — sample-rate conversion of mono float audio with libsamplerate, in one shot or in pieces.
 *
 * A resampler keeps the converter state between calls, so live audio can be pushed in chunks of any size; the
 * concatenated output of all pushes plus the final flush equals one-shot conversion of the whole signal (bit for
 * bit in the tests: the converter computes each output sample from the same buffered input either way). The sinc converters of
 * libsamplerate are time-aligned: output sample k corresponds to input time k/ratio, with no added delay — the
 * converter simply holds back the last ~filter-length of output until more input (or the flush) arrives.
 *
 * Quality: AUDIO_RESAMPLE_BEST (SRC_SINC_BEST_QUALITY: 97% passband, ~145 dB stop-band) is the default. Measured on
 * the 2-core build machine it converts 48 kHz → 16 kHz at about 20x real time on one core (MEDIUM: about 75x), so
 * a live microphone costs ~5% of one core, small next to the model; in exchange it keeps the band up to ~7.8 kHz
 * that the top mel bins (which reach 8 kHz) look at, where MEDIUM (90% passband) already attenuates from 7.2 kHz.
 * AUDIO_RESAMPLE_MEDIUM (~121 dB) is there for slow machines. Equal rates copy samples through unchanged. */
#ifndef AUDIO_RESAMPLE_H
#define AUDIO_RESAMPLE_H

#include <stdint.h>

#include "audio.h"

enum { AUDIO_RESAMPLE_BEST = 0, AUDIO_RESAMPLE_MEDIUM = 1, AUDIO_RESAMPLE_FASTEST = 2 };

typedef struct audio_resampler audio_resampler;

/* in_rate → out_rate, both in Hz; their ratio must lie within 1/256..256 (libsamplerate's limit). */
int audio_resampler_init(audio_resampler **out, double in_rate, double out_rate, int quality, audio_err *e);
void audio_resampler_free(audio_resampler *r);

/* An upper bound on the samples the next audio_resampler_process(r, n_in) (or, with n_in = 0, the flush) can
 * produce. Size the output buffer with it. */
int64_t audio_resampler_out_bound(const audio_resampler *r, int64_t n_in);

/* Pushes n_in samples and writes the output available so far into out (capacity out_cap samples, at least
 * audio_resampler_out_bound(r, n_in)). Returns the number of samples written, or a negative AUDIO_E_* code
 * (AUDIO_E_ARG "output buffer too small" when out_cap was below the bound and the input could not be taken). */
int64_t audio_resampler_process(audio_resampler *r, const float *in, int64_t n_in, float *out, int64_t out_cap,
                                audio_err *e);
/* Marks the end of the input and writes the held-back tail. Afterwards only audio_resampler_reset makes the
 * resampler usable again. Returns samples written or a negative code. */
int64_t audio_resampler_flush(audio_resampler *r, float *out, int64_t out_cap, audio_err *e);
/* Forgets all history, as if freshly created. */
void audio_resampler_reset(audio_resampler *r);

/* One-shot conversion of a whole signal: *out (malloc'd, *n_out samples; about n·out_rate/in_rate). */
int audio_resample(const float *in, int64_t n, double in_rate, double out_rate, int quality, float **out,
                   int64_t *n_out, audio_err *e);

#endif
