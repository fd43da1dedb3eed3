/* mel.c — log-mel spectrogram mirroring transformers' WhisperFeatureExtractor (see mel.h).
 *
 * Mirrors, step by step:
 *   - audio_utils.mel_filter_bank(..., norm="slaney", mel_scale="slaney") with hertz_to_mel/mel_to_hertz and
 *     _create_triangular_filter_bank, in double, then rounded to float32 as the extractor does when it hands
 *     self.mel_filters to torch;
 *   - _torch_extract_fbank_features: torch.hann_window (periodic, float32), torch.stft(center=True,
 *     pad_mode="reflect", onesided), stft[..., :-1].abs()**2, mel_filters.T @ magnitudes, clamp(min=1e-10).log10(),
 *     maximum(x, x.max() - 8), (x + 4) / 4.
 * The window product is formed in float32 like torch's; the FFT, power and filter sums run in double (our own
 * rounding then sits well below torch's float32 FFT rounding); the last three steps are float32 again. */
#include "mel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fft.h"

struct audio_mel {
    audio_mel_params p;
    int n_bins;       /* n_fft/2 + 1 */
    float *filters;   /* [n_bins][n_mels] float32, as transformers stores mel_filters */
    int *lo, *hi;     /* [n_mels] first and one-past-last bin with a nonzero weight */
    float *window;    /* [n_fft] periodic Hann, float32 */
    audio_fft *fft;
    double *frame, *re, *im, *power; /* scratch: [n_fft], [n_bins] x3 */
};

audio_mel_params audio_mel_default_params(void) {
    audio_mel_params p = { 16000, 400, 160, 128, 0.0f, 8000.0f };
    return p;
}

/* audio_utils.hertz_to_mel / mel_to_hertz, mel_scale="slaney": linear below 1 kHz, logarithmic above. */
static double hertz_to_mel(double f) {
    if (f >= 1000.0) return 15.0 + log(f / 1000.0) * (27.0 / log(6.4));
    return 3.0 * f / 200.0;
}
static double mel_to_hertz(double m) {
    if (m >= 15.0) return 1000.0 * exp(log(6.4) / 27.0 * (m - 15.0));
    return 200.0 * m / 3.0;
}

static int build_filters(audio_mel *m) {
    int nb = m->n_bins, nm = m->p.n_mels;
    double *ff = malloc(sizeof(double) * (size_t)(nm + 2)); /* filter edge frequencies, Hz */
    if (!ff) return -1;
    double mel_min = hertz_to_mel(m->p.fmin), mel_max = hertz_to_mel(m->p.fmax);
    double step = (mel_max - mel_min) / (nm + 1); /* np.linspace: start + i·step, last point exactly stop */
    for (int i = 0; i < nm + 2; i++) ff[i] = mel_to_hertz(i == nm + 1 ? mel_max : mel_min + i * step);
    double fstep = (double)(m->p.rate / 2) / (nb - 1); /* np.linspace(0, sampling_rate // 2, n_bins) */
    for (int j = 0; j < nm; j++) {
        double enorm = 2.0 / (ff[j + 2] - ff[j]); /* slaney area normalisation */
        m->lo[j] = nb;
        m->hi[j] = 0;
        for (int b = 0; b < nb; b++) {
            double f = b == nb - 1 ? (double)(m->p.rate / 2) : b * fstep;
            double down = -(ff[j] - f) / (ff[j + 1] - ff[j]);
            double up = (ff[j + 2] - f) / (ff[j + 2] - ff[j + 1]);
            double w = fmax(0.0, fmin(down, up)) * enorm;
            m->filters[(size_t)b * nm + j] = (float)w;
            if (w != 0.0) {
                if (b < m->lo[j]) m->lo[j] = b;
                m->hi[j] = b + 1;
            }
        }
        if (m->lo[j] > m->hi[j]) m->lo[j] = m->hi[j] = 0; /* an empty filter (possible for tiny n_fft) */
    }
    free(ff);
    return 0;
}

int audio_mel_init(audio_mel **out, const audio_mel_params *p, audio_err *e) {
    if (!out || !p) return audio_fail(e, AUDIO_E_ARG, "mel: no params or output handle");
    *out = NULL;
    if (p->rate < 1000 || p->n_fft < 4 || p->n_fft % 2 || p->n_fft > 65536 || p->hop < 1 || p->n_mels < 1 ||
        p->n_mels > 1024 || !(p->fmin >= 0) || !(p->fmax > p->fmin) || p->fmax > p->rate / 2)
        return audio_fail(e, AUDIO_E_ARG, "mel: bad parameters (rate %d, n_fft %d, hop %d, n_mels %d, %g..%g Hz)",
                          p->rate, p->n_fft, p->hop, p->n_mels, p->fmin, p->fmax);
    audio_mel *m = calloc(1, sizeof *m);
    if (!m) return audio_fail(e, AUDIO_E_NOMEM, "mel: out of memory");
    m->p = *p;
    m->n_bins = p->n_fft / 2 + 1;
    int rc = audio_fft_init(&m->fft, p->n_fft, e);
    if (rc) {
        free(m);
        return rc;
    }
    size_t nb = (size_t)m->n_bins;
    m->filters = malloc(sizeof(float) * nb * (size_t)p->n_mels);
    m->lo = malloc(sizeof(int) * (size_t)p->n_mels);
    m->hi = malloc(sizeof(int) * (size_t)p->n_mels);
    m->window = malloc(sizeof(float) * (size_t)p->n_fft);
    m->frame = malloc(sizeof(double) * (size_t)p->n_fft);
    m->re = malloc(sizeof(double) * nb);
    m->im = malloc(sizeof(double) * nb);
    m->power = malloc(sizeof(double) * nb);
    if (!m->filters || !m->lo || !m->hi || !m->window || !m->frame || !m->re || !m->im || !m->power ||
        build_filters(m)) {
        audio_mel_free(m);
        return audio_fail(e, AUDIO_E_NOMEM, "mel: out of memory");
    }
    /* torch.hann_window(N) (periodic): 0.5 - 0.5·cos(2π·i/N), float32 */
    for (int i = 0; i < p->n_fft; i++)
        m->window[i] = (float)(0.5 - 0.5 * cos(6.283185307179586476925286766559 * i / p->n_fft));
    *out = m;
    return 0;
}

void audio_mel_free(audio_mel *m) {
    if (!m) return;
    audio_fft_free(m->fft);
    free(m->filters);
    free(m->lo);
    free(m->hi);
    free(m->window);
    free(m->frame);
    free(m->re);
    free(m->im);
    free(m->power);
    free(m);
}

const float *audio_mel_filters(const audio_mel *m) { return m->filters; }

int64_t audio_mel_frames(const audio_mel *m, int64_t n) { return n > 0 ? n / m->p.hop : 0; }

int64_t audio_mel_valid_frames(const audio_mel *m, int64_t n, int64_t n_padded) {
    if (n_padded < n) n_padded = n;
    if (n <= 0) return 0;
    /* attention_mask[::hop] has ceil(n_padded/hop) entries, the last one dropped if hop does not divide n_padded;
     * entry j is 1 when j·hop < n */
    int64_t hop = m->p.hop;
    int64_t kept = (n_padded + hop - 1) / hop - (n_padded % hop != 0);
    int64_t ones = (n + hop - 1) / hop;
    return ones < kept ? ones : kept;
}

void audio_mel_attention_mask(const audio_mel *m, int64_t n, int64_t n_padded, int32_t *mask) {
    int64_t T = audio_mel_frames(m, n_padded < n ? n : n_padded), v = audio_mel_valid_frames(m, n, n_padded);
    for (int64_t t = 0; t < T; t++) mask[t] = t < v;
}

/* Sample i of the zero-padded signal (length len), with torch's reflect padding outside [0, len) — folded again
 * if it still falls outside, which only very short signals need. */
static float sample_reflect(const float *pcm, int64_t n, int64_t len, int64_t i) {
    if (len == 1) i = 0;
    else {
        int64_t period = 2 * (len - 1);
        i %= period;
        if (i < 0) i += period;
        if (i >= len) i = period - i;
    }
    return i < n ? pcm[i] : 0.0f;
}

int audio_mel_run(audio_mel *m, const float *pcm, int64_t n, int64_t n_padded, float **out, int *frames,
                  audio_err *e) {
    if (!m || !out || !frames) return audio_fail(e, AUDIO_E_ARG, "mel: no context or output");
    *out = NULL;
    *frames = 0;
    if (n < 0 || (n > 0 && !pcm)) return audio_fail(e, AUDIO_E_ARG, "mel: bad input");
    if (n_padded < n) n_padded = n;
    int64_t T = audio_mel_frames(m, n_padded);
    if (T == 0) return 0;
    if (T > INT32_MAX / m->p.n_mels) return audio_fail(e, AUDIO_E_ARG, "mel: %lld frames is too many", (long long)T);
    int nm = m->p.n_mels, nb = m->n_bins, N = m->p.n_fft, hop = m->p.hop, pad = N / 2;
    float *o = malloc(sizeof(float) * (size_t)T * (size_t)nm);
    if (!o) return audio_fail(e, AUDIO_E_NOMEM, "mel: out of memory for %lld frames", (long long)T);
    float gmax = -INFINITY;
    for (int64_t t = 0; t < T; t++) {
        int64_t s0 = t * hop - pad;
        if (s0 >= 0 && s0 + N <= n) { /* interior frame: no padding involved */
            for (int i = 0; i < N; i++) m->frame[i] = (double)(pcm[s0 + i] * m->window[i]);
        } else {
            for (int i = 0; i < N; i++)
                m->frame[i] = (double)(sample_reflect(pcm, n, n_padded, s0 + i) * m->window[i]);
        }
        audio_fft_real(m->fft, m->frame, m->re, m->im);
        for (int b = 0; b < nb; b++) m->power[b] = m->re[b] * m->re[b] + m->im[b] * m->im[b];
        for (int j = 0; j < nm; j++) {
            double acc = 0;
            for (int b = m->lo[j]; b < m->hi[j]; b++) acc += (double)m->filters[(size_t)b * nm + j] * m->power[b];
            float v = (float)log10(acc > 1e-10 ? acc : 1e-10);
            o[(size_t)j * T + t] = v;
            if (v > gmax) gmax = v;
        }
    }
    float floor_v = gmax - 8.0f;
    for (size_t i = 0; i < (size_t)T * nm; i++) o[i] = ((o[i] > floor_v ? o[i] : floor_v) + 4.0f) / 4.0f;
    *out = o;
    *frames = (int)T;
    return 0;
}

int audio_mel_compute(const float *pcm16k, int64_t n, float **out, int *frames) {
    audio_mel_params p = audio_mel_default_params();
    audio_mel *m;
    int rc = audio_mel_init(&m, &p, NULL);
    if (rc) return rc;
    rc = audio_mel_run(m, pcm16k, n, n, out, frames, NULL);
    audio_mel_free(m);
    return rc;
}

double audio_mel_bench(double seconds) {
    audio_mel_params p = audio_mel_default_params();
    int64_t n = (int64_t)(seconds * p.rate);
    if (n < p.hop) return -1;
    float *x = malloc(sizeof(float) * (size_t)n);
    audio_mel *m = NULL;
    if (!x || audio_mel_init(&m, &p, NULL)) {
        free(x);
        return -1;
    }
    uint32_t s = 12345;
    for (int64_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        x[i] = 0.3f * sinf(0.2f * (float)i) + 0.05f * ((float)(s >> 8) / 16777216.0f - 0.5f);
    }
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    float *o = NULL;
    int T = 0;
    int rc = audio_mel_run(m, x, n, n, &o, &T, NULL);
    clock_gettime(CLOCK_MONOTONIC, &b);
    free(o);
    free(x);
    audio_mel_free(m);
    if (rc) return -1;
    double ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) * 1e-6;
    return ms / seconds;
}
