/* test_audio_mel.c — log-mel features: the FFT against a direct DFT, and the whole front end against transformers'
 * WhisperFeatureExtractor as Qwen3-Omni's processor calls it (references made by tests/gen_mel_ref.py on the
 * reference machine: tests/data/audio/mel_ref.bin.xz). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fft.h"
#include "harness.h"
#include "mel.h"
#include "wav.h"

/* Agreement with torch, absolute on the normalised features. torch.stft runs in float32: its own distance from an
 * exact float64 evaluation of the same definition reaches 6.3e-5 on these clips (gen_mel_ref.py prints it), while
 * ours stays within 8e-6 of that float64 value (double FFT and sums; float32 only where torch's data is float32).
 * Measured ours-vs-torch: max 6.6e-5 (chirp), mean at most 1.4e-6 per clip. The bars leave a little room: */
#define MEL_TOL_MAX 1e-4   /* worst element */
#define MEL_TOL_MEAN 2e-6  /* mean over all elements */

TEST(fft_matches_direct_dft) {
    int sizes[] = { 400, 2, 6, 16, 30, 126, 512, 1000 };
    for (unsigned s = 0; s < sizeof sizes / sizeof *sizes; s++) {
        int n = sizes[s];
        audio_fft *f;
        REQUIRE(audio_fft_init(&f, n, NULL) == 0);
        double *x = malloc(sizeof(double) * (size_t)n), *re = malloc(sizeof(double) * (size_t)(n / 2 + 1)),
               *im = malloc(sizeof(double) * (size_t)(n / 2 + 1));
        uint64_t r = 3;
        for (int i = 0; i < n; i++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            x[i] = (double)(r >> 11) / 9007199254740992.0 - 0.5;
        }
        audio_fft_real(f, x, re, im);
        double maxe = 0;
        for (int k = 0; k <= n / 2; k++) {
            long double sr = 0, si = 0;
            for (int i = 0; i < n; i++) {
                long double w = -2.0L * 3.14159265358979323846264338327950288L * (long double)((long)i * k % n) / n;
                sr += x[i] * cosl(w);
                si += x[i] * sinl(w);
            }
            maxe = fmax(maxe, fmax(fabs(re[k] - (double)sr), fabs(im[k] - (double)si)));
        }
        if (maxe > 1e-12) printf("    n=%d: max error %.3g\n", n, maxe);
        CHECK(maxe < 1e-12);
        free(x);
        free(re);
        free(im);
        audio_fft_free(f);
    }
    audio_fft *f;
    CHECK_EQ_INT(audio_fft_init(&f, 401, NULL), AUDIO_E_ARG);
    CHECK_EQ_INT(audio_fft_init(&f, 2 * 17, NULL), AUDIO_E_UNSUPPORTED);
}

/* ---- references ------------------------------------------------------------------------------------------------ */
typedef struct {
    char name[33];
    int32_t rows, cols, n, n_padded;
    float *data;   /* [rows][cols] */
    int32_t *mask; /* [cols] */
} mel_rec;

static int load_refs(mel_rec *recs, int cap) {
    FILE *p = popen("xz -dc " TESTDATA "/audio/mel_ref.bin.xz", "r");
    if (!p) return -1;
    int k = 0;
    while (k < cap) {
        mel_rec *r = &recs[k];
        memset(r, 0, sizeof *r);
        int32_t h[4];
        if (fread(r->name, 1, 32, p) != 32 || fread(h, 4, 4, p) != 4) break;
        r->rows = h[0], r->cols = h[1], r->n = h[2], r->n_padded = h[3];
        if (r->rows <= 0 || r->cols <= 0 || r->rows > 1024 || r->cols > 100000) break;
        size_t nd = (size_t)r->rows * (size_t)r->cols;
        r->data = malloc(nd * sizeof(float));
        r->mask = malloc((size_t)r->cols * sizeof(int32_t));
        if (!r->data || !r->mask || fread(r->data, sizeof(float), nd, p) != nd ||
            fread(r->mask, sizeof(int32_t), (size_t)r->cols, p) != (size_t)r->cols)
            break;
        k++;
    }
    pclose(p);
    return k;
}

static float *load_clip(const char *name, int64_t *n) {
    char path[256];
    snprintf(path, sizeof path, TESTDATA "/audio/%s.wav", name);
    audio_wav w;
    audio_err e = { { 0 } };
    if (audio_wav_read_file(path, &w, &e)) {
        printf("    %s\n", e.msg);
        return NULL;
    }
    *n = w.n;
    return w.samples; /* ownership passes to the caller */
}

TEST(mel_filters_match_transformers) {
    mel_rec recs[16];
    int nr = load_refs(recs, 16);
    REQUIRE(nr >= 1);
    REQUIRE(strcmp(recs[0].name, "mel_filters") == 0);
    REQUIRE(recs[0].rows == 201 && recs[0].cols == 128);
    audio_mel_params p = audio_mel_default_params();
    audio_mel *m;
    REQUIRE(audio_mel_init(&m, &p, NULL) == 0);
    const float *f = audio_mel_filters(m);
    double maxrel = 0;
    int zeros_differ = 0;
    for (int i = 0; i < 201 * 128; i++) {
        float a = f[i], b = recs[0].data[i];
        if ((a == 0) != (b == 0)) zeros_differ++;
        if (b != 0) maxrel = fmax(maxrel, fabs((double)a - b) / fabs((double)b));
    }
    printf("    filter bank: max relative difference %.3g\n", maxrel);
    CHECK_EQ_INT(zeros_differ, 0);
    CHECK(maxrel <= 1.2e-7); /* the same float64 formula, rounded to float32: at most one float32 ulp apart */
    audio_mel_free(m);
    for (int k = 0; k < nr; k++) free(recs[k].data), free(recs[k].mask);
}

TEST(mel_matches_transformers) {
    mel_rec recs[16];
    int nr = load_refs(recs, 16);
    REQUIRE(nr >= 9);
    audio_mel_params p = audio_mel_default_params();
    audio_mel *m;
    REQUIRE(audio_mel_init(&m, &p, NULL) == 0);
    int checked = 0;
    for (int k = 1; k < nr; k++) {
        mel_rec *r = &recs[k];
        const char *clip = strncmp(r->name, "batch:", 6) ? r->name : r->name + 6;
        int64_t n;
        float *x = load_clip(clip, &n);
        REQUIRE(x != NULL);
        REQUIRE(r->n <= n);
        float *o;
        int T;
        audio_err e = { { 0 } };
        REQUIRE(audio_mel_run(m, x, r->n, r->n_padded, &o, &T, &e) == 0);
        CHECK_EQ_INT(r->rows, 128);
        CHECK_EQ_INT(T, r->cols);
        /* feature_attention_mask */
        int32_t *mask = malloc(sizeof(int32_t) * (size_t)T);
        audio_mel_attention_mask(m, r->n, r->n_padded, mask);
        int mask_ok = 1, ones = 0;
        for (int t = 0; t < T && t < r->cols; t++) mask_ok &= mask[t] == r->mask[t], ones += r->mask[t];
        CHECK(mask_ok);
        CHECK_EQ_INT(audio_mel_valid_frames(m, r->n, r->n_padded), ones);
        double maxd = 0, sum = 0;
        if (T == r->cols) {
            for (int i = 0; i < 128 * T; i++) {
                double d = fabs((double)o[i] - r->data[i]);
                maxd = fmax(maxd, d);
                sum += d;
            }
        }
        double mean = sum / (128.0 * T);
        printf("    %-18s n=%-6d pad=%-6d frames %3d valid %3d: max |ours - torch| %.3g, mean %.3g\n", r->name,
               r->n, r->n_padded, T, ones, maxd, mean);
        CHECK(maxd <= MEL_TOL_MAX);
        CHECK(mean <= MEL_TOL_MEAN);
        checked++;
        free(mask);
        free(o);
        free(x);
    }
    CHECK_EQ_INT(checked, nr - 1);
    audio_mel_free(m);
    for (int k = 0; k < nr; k++) free(recs[k].data), free(recs[k].mask);
}

TEST(mel_frames_mask_and_short_input) {
    audio_mel_params p = audio_mel_default_params();
    audio_mel *m;
    REQUIRE(audio_mel_init(&m, &p, NULL) == 0);
    CHECK_EQ_INT(audio_mel_frames(m, 16000), 100);
    CHECK_EQ_INT(audio_mel_frames(m, 16159), 100);
    CHECK_EQ_INT(audio_mel_frames(m, 159), 0);
    /* single clip: all ones (floor); padded: ceil(L/160) unless the padded length caps it */
    CHECK_EQ_INT(audio_mel_valid_frames(m, 16077, 16077), 100);
    CHECK_EQ_INT(audio_mel_valid_frames(m, 4877, 16077), 31);
    CHECK_EQ_INT(audio_mel_valid_frames(m, 4800, 16000), 30);
    CHECK_EQ_INT(audio_mel_valid_frames(m, 15990, 16000), 100);
    float x[400];
    for (int i = 0; i < 400; i++) x[i] = sinf(0.1f * (float)i);
    float *o;
    int T;
    CHECK_EQ_INT(audio_mel_run(m, x, 100, 100, &o, &T, NULL), 0); /* under one hop: no frames, no error */
    CHECK_EQ_INT(T, 0);
    CHECK(o == NULL);
    /* 160..200 samples: torch's reflect padding refuses; we fold the reflection and give the one frame */
    for (int n = 160; n <= 201; n += 41) {
        REQUIRE(audio_mel_run(m, x, n, n, &o, &T, NULL) == 0);
        CHECK_EQ_INT(T, 1);
        int finite = 1;
        for (int i = 0; i < 128; i++) finite &= isfinite(o[i]) && o[i] < 4.0f && o[i] > -2.0f; /* log10 of a unit sine's power is below 12 */
        CHECK(finite);
        free(o);
    }
    /* the one-call form */
    REQUIRE(audio_mel_compute(x, 400, &o, &T) == 0);
    CHECK_EQ_INT(T, 2);
    free(o);
    CHECK_EQ_INT(audio_mel_run(m, NULL, 10, 10, &o, &T, NULL), AUDIO_E_ARG);
    audio_mel_params bad = p;
    bad.fmax = 9000;
    audio_mel *m2;
    CHECK_EQ_INT(audio_mel_init(&m2, &bad, NULL), AUDIO_E_ARG);
    audio_mel_free(m);
    audio_mel_free(NULL);
}

TEST(mel_speed) {
    double ms = audio_mel_bench(10.0);
    printf("    log-mel: %.3f ms per second of audio (%.0fx real time, one thread)\n", ms, 1000.0 / ms);
    CHECK(ms > 0);
}
