/* test_audio_resample.c — libsamplerate wrapper: sine fidelity (amplitude, frequency, phase/time alignment, SNR),
 * aliasing rejection, chunked streaming equal to one-shot, and argument errors. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "resample.h"

static float *sine(int64_t n, double rate, double freq, double amp) {
    float *x = malloc(sizeof(float) * (size_t)n);
    for (int64_t i = 0; i < n; i++) x[i] = (float)(amp * sin(2 * M_PI * freq * (double)i / rate));
    return x;
}

/* Least-squares fit of a·sin + b·cos at a known frequency over y[from, to); returns the residual SNR in dB and
 * the fitted amplitude and phase (0 for a pure sine starting at t = 0). */
static double fit_sine(const float *y, int64_t from, int64_t to, double rate, double freq, double *amp,
                       double *phase) {
    double ss = 0, sc = 0, cc = 0, ys = 0, yc = 0;
    for (int64_t i = from; i < to; i++) {
        double w = 2 * M_PI * freq * (double)i / rate, s = sin(w), c = cos(w);
        ss += s * s, sc += s * c, cc += c * c, ys += y[i] * s, yc += y[i] * c;
    }
    double det = ss * cc - sc * sc, a = (ys * cc - yc * sc) / det, b = (yc * ss - ys * sc) / det;
    double sig = 0, err = 0;
    for (int64_t i = from; i < to; i++) {
        double w = 2 * M_PI * freq * (double)i / rate, f = a * sin(w) + b * cos(w);
        sig += f * f;
        err += (y[i] - f) * (y[i] - f);
    }
    *amp = sqrt(a * a + b * b);
    *phase = atan2(b, a);
    return 10 * log10(sig / (err > 1e-30 ? err : 1e-30));
}

TEST(resample_sine_fidelity) {
    struct { double in, out, f; } cases[] = {
        { 48000, 16000, 1000 }, { 44100, 16000, 3000 }, { 22050, 16000, 7000 },
        { 24000, 48000, 5000 }, { 8000, 16000, 440 },   { 96000, 16000, 7500 },
    };
    for (unsigned c = 0; c < sizeof cases / sizeof *cases; c++) {
        int64_t n = (int64_t)(cases[c].in * 1.5);
        float *x = sine(n, cases[c].in, cases[c].f, 0.5), *y;
        int64_t m;
        audio_err e = { { 0 } };
        REQUIRE(audio_resample(x, n, cases[c].in, cases[c].out, AUDIO_RESAMPLE_BEST, &y, &m, &e) == 0);
        int64_t want = (int64_t)llround((double)n * cases[c].out / cases[c].in);
        if (llabs(m - want) > 1) printf("    length %lld, want %lld\n", (long long)m, (long long)want);
        CHECK(llabs(m - want) <= 1);
        int64_t edge = (int64_t)(0.1 * cases[c].out); /* skip 100 ms at both ends (filter run-in/out) */
        double amp, ph, snr = fit_sine(y, edge, m - edge, cases[c].out, cases[c].f, &amp, &ph);
        printf("    %5.0f -> %5.0f Hz, %4.0f Hz sine: SNR %.1f dB, amplitude %.6f, phase %.2e rad\n", cases[c].in,
               cases[c].out, cases[c].f, snr, amp, ph);
        CHECK(snr > 60);                  /* brief's bar; BEST reaches ~100 dB on float input */
        CHECK_NEAR(amp, 0.5, 0.5 * 1e-3); /* passband flat within 0.01 dB */
        CHECK_NEAR(ph, 0.0, 1e-3);        /* time-aligned: no delay added */
        free(x);
        free(y);
    }
}

TEST(resample_removes_alias) {
    /* 12 kHz cannot exist at 16 kHz: it must be filtered, not folded to 4 kHz */
    int64_t n = 48000;
    float *x = sine(n, 48000, 12000, 0.5), *y;
    int64_t m;
    REQUIRE(audio_resample(x, n, 48000, 16000, AUDIO_RESAMPLE_BEST, &y, &m, NULL) == 0);
    double e = 0;
    for (int64_t i = 1600; i < m - 1600; i++) e += (double)y[i] * y[i];
    double db = 10 * log10(e / (double)(m - 3200) / 0.125 + 1e-30); /* relative to the input's power */
    printf("    12 kHz at 48 -> 16 kHz: %.1f dB\n", db);
    CHECK(db < -90);
    free(x);
    free(y);
}

TEST(resample_chunked_equals_oneshot) {
    double rates[][2] = { { 48000, 16000 }, { 44100, 16000 }, { 24000, 48000 }, { 16000, 16000 } };
    for (unsigned c = 0; c < 4; c++) {
        double in = rates[c][0], out = rates[c][1];
        int64_t n = 100000;
        float *x = malloc(sizeof(float) * (size_t)n);
        uint64_t s = 99;
        for (int64_t i = 0; i < n; i++) { /* speech-like: a few tones plus noise */
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            x[i] = (float)(0.3 * sin(0.05 * (double)i) + 0.2 * sin(0.31 * (double)i) +
                           0.1 * ((double)(s >> 40) / 16777216.0 - 0.5));
        }
        float *ref;
        int64_t m;
        REQUIRE(audio_resample(x, n, in, out, AUDIO_RESAMPLE_BEST, &ref, &m, NULL) == 0);
        audio_resampler *r;
        REQUIRE(audio_resampler_init(&r, in, out, AUDIO_RESAMPLE_BEST, NULL) == 0);
        float *y = malloc(sizeof(float) * (size_t)(m + 64));
        int64_t got = 0, pos = 0;
        audio_err e = { { 0 } };
        while (pos < n) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            int64_t k = 1 + (int64_t)((s >> 33) % ((s >> 60) & 1 ? 7 : 5000)); /* tiny and large pieces */
            if (k > n - pos) k = n - pos;
            int64_t bound = audio_resampler_out_bound(r, k);
            REQUIRE(got + bound <= m + 64);
            int64_t w = audio_resampler_process(r, x + pos, k, y + got, bound, &e);
            REQUIRE(w >= 0 && w <= bound);
            got += w;
            pos += k;
        }
        int64_t w = audio_resampler_flush(r, y + got, audio_resampler_out_bound(r, 0), &e);
        REQUIRE(w >= 0);
        got += w;
        CHECK_EQ_INT(got, m);
        double maxd = 0;
        for (int64_t i = 0; i < m && i < got; i++) maxd = fmax(maxd, fabs((double)y[i] - ref[i]));
        printf("    %5.0f -> %5.0f Hz in random pieces: %lld samples, max |chunked - one-shot| %.3g\n", in, out,
               (long long)got, maxd);
        CHECK(maxd <= 1e-6);
        /* after a flush only reset revives it, and then it behaves like new */
        CHECK(audio_resampler_process(r, x, 10, y, 100, &e) < 0);
        audio_resampler_reset(r);
        int64_t a = audio_resampler_process(r, x, n, y, audio_resampler_out_bound(r, n), &e);
        REQUIRE(a >= 0);
        int64_t b = audio_resampler_flush(r, y + a, audio_resampler_out_bound(r, 0), &e);
        REQUIRE(b >= 0);
        CHECK_EQ_INT(a + b, m);
        CHECK(memcmp(y, ref, sizeof(float) * (size_t)m) == 0);
        audio_resampler_free(r);
        free(x);
        free(y);
        free(ref);
    }
}

TEST(resample_errors_and_speed) {
    audio_resampler *r;
    audio_err e = { { 0 } };
    CHECK_EQ_INT(audio_resampler_init(&r, 0, 16000, AUDIO_RESAMPLE_BEST, &e), AUDIO_E_ARG);
    CHECK_EQ_INT(audio_resampler_init(&r, 768000, 1000, AUDIO_RESAMPLE_BEST, &e), AUDIO_E_ARG);
    CHECK(strstr(e.msg, "ratio") != NULL);
    CHECK_EQ_INT(audio_resampler_init(&r, 48000, 16000, 9, &e), AUDIO_E_ARG);
    REQUIRE(audio_resampler_init(&r, 48000, 16000, AUDIO_RESAMPLE_BEST, &e) == 0);
    float x[4800] = { 0 }, y[1600];
    int64_t k = audio_resampler_process(r, x, 4800, y, 10, &e); /* ignoring out_bound: */
    CHECK(k == AUDIO_E_ARG || (k >= 0 && k <= 10));                /* an error, or a partial result */
    audio_resampler_free(r);
    audio_resampler_free(NULL);
    /* throughput of a live microphone's conversion, for choosing the quality (printed, not asserted) */
    int64_t n = 48000 * 5;
    float *s = sine(n, 48000, 440, 0.3), *o;
    int64_t m;
    const char *names[] = { "BEST", "MEDIUM" };
    for (int q = 0; q < 2; q++) {
        struct timespec a, b;
        clock_gettime(CLOCK_MONOTONIC, &a);
        REQUIRE(audio_resample(s, n, 48000, 16000, q, &o, &m, NULL) == 0);
        clock_gettime(CLOCK_MONOTONIC, &b);
        double sec = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) * 1e-9;
        printf("    48 -> 16 kHz %s: %.0fx real time\n", names[q], 5.0 / sec);
        free(o);
    }
    free(s);
}
