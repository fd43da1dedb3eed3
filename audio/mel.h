/* mel.h — Whisper-style log-mel features, as transformers' WhisperFeatureExtractor computes them for Qwen3-Omni
 * (docs/qwen3-omni-architecture.md §4.1; reference: WhisperFeatureExtractor._torch_extract_fbank_features).
 *
 *   x (mono float, 16 kHz) → frames of n_fft samples every hop, centred (reflect padding of n_fft/2 each side),
 *   periodic Hann window → |rFFT|² → drop the last frame → Slaney mel filter bank (computed in float64, used as
 *   float32) → log10(max(·, 1e-10)) → max(·, global max − 8) → (· + 4)/4.
 *
 * Output is [n_mels][frames] row-major (mel-major, like input_features[0] in transformers), frames = floor(L/hop)
 * for an unpadded signal of L samples. Signals shorter than n_fft/2 + 1 samples, where torch's reflect padding
 * raises an error, are mirrored repeatedly instead (documented divergence; such a clip has at most one frame).
 *
 * Batches: the Qwen3-Omni processor right-pads every clip of a batch with zeros to the longest (padding=True) and
 * computes features over the padded signal; pass that padded length as n_padded to reproduce a batch item. The
 * feature_attention_mask is the sample mask subsampled every hop, its last element dropped when the padded length
 * is not a multiple of hop: audio_mel_valid_frames gives its count of ones (floor(L/hop) for the longest item, so
 * all ones for a single clip; ceil(L/hop) for a padded one). */
#ifndef AUDIO_MEL_H
#define AUDIO_MEL_H

#include <stdint.h>

#include "audio.h"

typedef struct {
    int32_t rate;    /* Hz (16000) */
    int32_t n_fft;   /* window and FFT length (400) */
    int32_t hop;     /* samples between frames (160) */
    int32_t n_mels;  /* mel bins (128) */
    float fmin, fmax; /* filter bank range, Hz (0, 8000) */
} audio_mel_params;

audio_mel_params audio_mel_default_params(void); /* the Qwen3-Omni values above */

typedef struct audio_mel audio_mel;

int audio_mel_init(audio_mel **out, const audio_mel_params *p, audio_err *e);
void audio_mel_free(audio_mel *m);

/* Frames produced for a (padded) signal of n samples: floor(n / hop). */
int64_t audio_mel_frames(const audio_mel *m, int64_t n);
/* Ones in feature_attention_mask for a clip of n samples right-padded to n_padded (≥ n). */
int64_t audio_mel_valid_frames(const audio_mel *m, int64_t n, int64_t n_padded);
/* Fills mask[audio_mel_frames(m, n_padded)] with 1 for valid frames, 0 for padding. */
void audio_mel_attention_mask(const audio_mel *m, int64_t n, int64_t n_padded, int32_t *mask);

/* Features of pcm[n] zero-padded to n_padded samples (n_padded = n for a single clip; n_padded < n is treated as
 * n). *out is malloc'd [n_mels][*frames]; *frames may be 0 (then *out is NULL). Not thread-safe per context (it
 * uses the context's scratch); use one context per thread. */
int audio_mel_run(audio_mel *m, const float *pcm, int64_t n, int64_t n_padded, float **out, int *frames,
                  audio_err *e);

/* The filter bank as used: [n_fft/2 + 1][n_mels] float32 (= transformers' feature_extractor.mel_filters). */
const float *audio_mel_filters(const audio_mel *m);

/* One-call form with the Qwen3-Omni parameters (builds and frees a context each call). Returns 0 or AUDIO_E_*. */
int audio_mel_compute(const float *pcm16k, int64_t n, float **out /*[128][frames]*/, int *frames);

/* Times feature extraction of `seconds` of synthetic audio; returns milliseconds per second of audio (< 0 on
 * failure). */
double audio_mel_bench(double seconds);

#endif
