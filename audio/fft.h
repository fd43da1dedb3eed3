/* fft.h — small mixed-radix FFT in double precision, for the log-mel front end (n_fft = 400 = 2^4·5^2).
 *
 * Complex transforms of any length whose prime factors are at most 13, and real transforms of any even length
 * whose half has such factors (via one complex transform of half the length). Forward direction only
 * (X[k] = Σ x[n]·e^(-2πi·nk/N)), unnormalised, as torch.stft computes it. */
#ifndef AUDIO_FFT_H
#define AUDIO_FFT_H

#include "audio.h"

typedef struct audio_fft audio_fft;

/* A plan for real input of length n (even; n/2 must factor into primes ≤ 13). */
int audio_fft_init(audio_fft **out, int n, audio_err *e);
void audio_fft_free(audio_fft *f);

/* Real forward transform: x[n] → re/im[n/2 + 1] (the non-negative frequencies). Not thread-safe per plan (it
 * uses the plan's scratch buffers); use one plan per thread. */
void audio_fft_real(audio_fft *f, const double *x, double *re, double *im);

/* Complex forward transform of the plan's half length n/2, in place on interleaved (re, im) pairs; exposed for
 * tests. */
void audio_fft_complex_half(audio_fft *f, double *z);

#endif
