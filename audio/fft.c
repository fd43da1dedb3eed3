/* fft.c — recursive decimation-in-time mixed-radix FFT (see fft.h).
 *
 * A length-n transform with first factor p splits the input into p decimated sequences x[p·j + q], transforms each
 * (length n/p), and combines them with one generic p-point butterfly per output column:
 *   X[k + r·n/p] = Σ_q W_n^(q·k) · W_p^(q·r) · Y_q[k].
 * Every twiddle is a lookup in one table of e^(-2πi·t/M) for the top length M. The real transform packs even/odd
 * samples into one complex sequence of half length and untangles the spectrum afterwards (the textbook "two real
 * FFTs for the price of one" step). Everything is double: the features it feeds are compared against torch.stft
 * at ~1e-5, and double keeps our own rounding far below the reference's float32 rounding. */
#include "fft.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define FFT_MAX_FACTORS 32
#define FFT_MAX_RADIX 13

struct audio_fft {
    int n;                       /* real length */
    int m;                       /* complex length n/2 */
    int nf, fac[FFT_MAX_FACTORS]; /* factors of m, radix 4 first, then 2, 3, 5, ... */
    double *tw;                  /* [2·m] e^(-2πi·t/m) */
    double *rtw;                 /* [2·(m+1)] e^(-2πi·k/n), for the real-spectrum untangling */
    double *z, *buf;             /* [2·m] scratch */
};

static int factorize(int m, int *fac) {
    int nf = 0;
    while (m % 4 == 0 && nf < FFT_MAX_FACTORS) fac[nf++] = 4, m /= 4;
    for (int p = 2; m > 1 && nf < FFT_MAX_FACTORS; p++) {
        if (p > FFT_MAX_RADIX) return -1;
        while (m % p == 0 && nf < FFT_MAX_FACTORS) fac[nf++] = p, m /= p;
    }
    return m == 1 ? nf : -1;
}

int audio_fft_init(audio_fft **out, int n, audio_err *e) {
    if (!out) return audio_fail(e, AUDIO_E_ARG, "fft: no output handle");
    *out = NULL;
    if (n < 2 || n % 2 || n > (1 << 24)) return audio_fail(e, AUDIO_E_ARG, "fft: length %d is not even", n);
    audio_fft *f = calloc(1, sizeof *f);
    if (!f) return audio_fail(e, AUDIO_E_NOMEM, "fft: out of memory");
    f->n = n;
    f->m = n / 2;
    f->nf = f->m == 1 ? 0 : factorize(f->m, f->fac);
    if (f->nf < 0) {
        free(f);
        return audio_fail(e, AUDIO_E_UNSUPPORTED, "fft: length %d has a prime factor above %d", n, FFT_MAX_RADIX);
    }
    f->tw = malloc(sizeof(double) * 2 * (size_t)f->m);
    f->rtw = malloc(sizeof(double) * 2 * (size_t)(f->m + 1));
    f->z = malloc(sizeof(double) * 2 * (size_t)f->m);
    f->buf = malloc(sizeof(double) * 2 * (size_t)f->m);
    if (!f->tw || !f->rtw || !f->z || !f->buf) {
        audio_fft_free(f);
        return audio_fail(e, AUDIO_E_NOMEM, "fft: out of memory");
    }
    const double two_pi = 6.283185307179586476925286766559;
    for (int t = 0; t < f->m; t++) {
        f->tw[2 * t] = cos(two_pi * t / f->m);
        f->tw[2 * t + 1] = -sin(two_pi * t / f->m);
    }
    for (int k = 0; k <= f->m; k++) {
        f->rtw[2 * k] = cos(two_pi * k / n);
        f->rtw[2 * k + 1] = -sin(two_pi * k / n);
    }
    *out = f;
    return 0;
}

void audio_fft_free(audio_fft *f) {
    if (!f) return;
    free(f->tw);
    free(f->rtw);
    free(f->z);
    free(f->buf);
    free(f);
}

/* Transforms n complex values in[0], in[stride], ... into out[0..n) (contiguous), n = product of fac[0..]. */
static void pass(const audio_fft *f, const double *in, int stride, double *out, int n, const int *fac) {
    int p = fac[0], mm = n / p;
    if (mm == 1) {
        for (int q = 0; q < p; q++) {
            out[2 * q] = in[2 * q * stride];
            out[2 * q + 1] = in[2 * q * stride + 1];
        }
    } else {
        for (int q = 0; q < p; q++) pass(f, in + 2 * q * stride, stride * p, out + 2 * q * mm, mm, fac + 1);
    }
    int tstride = f->m / n; /* W_n^j = tw[j · M/n] */
    int pstride = f->m / p; /* W_p^j = tw[j · M/p] */
    double tr[FFT_MAX_RADIX], ti[FFT_MAX_RADIX];
    for (int k = 0; k < mm; k++) {
        for (int q = 0; q < p; q++) {
            double a = out[2 * (q * mm + k)], b = out[2 * (q * mm + k) + 1];
            const double *w = f->tw + 2 * (size_t)(q * k * tstride);
            tr[q] = a * w[0] - b * w[1];
            ti[q] = a * w[1] + b * w[0];
        }
        for (int r = 0; r < p; r++) {
            double sr = 0, si = 0;
            for (int q = 0; q < p; q++) {
                const double *w = f->tw + 2 * (size_t)((q * r % p) * pstride);
                sr += tr[q] * w[0] - ti[q] * w[1];
                si += tr[q] * w[1] + ti[q] * w[0];
            }
            out[2 * (r * mm + k)] = sr;
            out[2 * (r * mm + k) + 1] = si;
        }
    }
}

void audio_fft_complex_half(audio_fft *f, double *z) {
    if (f->m == 1) return;
    pass(f, z, 1, f->buf, f->m, f->fac);
    memcpy(z, f->buf, sizeof(double) * 2 * (size_t)f->m);
}

void audio_fft_real(audio_fft *f, const double *x, double *re, double *im) {
    int m = f->m;
    memcpy(f->z, x, sizeof(double) * 2 * (size_t)m); /* z[j] = x[2j] + i·x[2j+1] (same memory layout) */
    audio_fft_complex_half(f, f->z);
    const double *Z = f->z;
    for (int k = 0; k <= m; k++) {
        int a = k % m, b = (m - k) % m;
        double zr = Z[2 * a], zi = Z[2 * a + 1], cr = Z[2 * b], ci = -Z[2 * b + 1]; /* Z[k], conj(Z[m-k]) */
        double er = 0.5 * (zr + cr), ei = 0.5 * (zi + ci);                           /* even samples' DFT */
        double or_ = 0.5 * (zi - ci), oi = -0.5 * (zr - cr);                         /* odd: (Z-Zc)/(2i) */
        const double *w = f->rtw + 2 * k;
        re[k] = er + or_ * w[0] - oi * w[1];
        im[k] = ei + or_ * w[1] + oi * w[0];
    }
}
