/* test_audio_vad.c — energy VAD on real synthetic speech (espeak-ng) placed in silence and in noise: the reported
 * start/end must land within ±150 ms of where the speech is, and clicks must not open an utterance. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "resample.h"
#include "vad.h"
#include "wav.h"

#define RATE 16000
#define TOL (RATE * 150 / 1000) /* ±150 ms */

/* Speaks text with espeak-ng into a temp dir and returns it at 16 kHz; NULL (with a reason) if not possible. */
static float *speak(const char *text, int64_t *n, const char **why) {
    *why = NULL;
    if (system("command -v espeak-ng >/dev/null 2>&1") != 0) {
        *why = "espeak-ng is not installed";
        return NULL;
    }
    char dir[] = "/tmp/omni_vad_XXXXXX";
    if (!mkdtemp(dir)) {
        *why = "mkdtemp failed";
        return NULL;
    }
    char path[64], cmd[512];
    snprintf(path, sizeof path, "%s/s.wav", dir);
    snprintf(cmd, sizeof cmd, "timeout 20 espeak-ng -w %s \"%s\" >/dev/null 2>&1", path, text);
    int rc = system(cmd);
    audio_wav w;
    audio_err e = { { 0 } };
    int rrc = rc == 0 ? audio_wav_read_file(path, &w, &e) : -1;
    unlink(path);
    rmdir(dir);
    if (rrc) {
        *why = "espeak-ng did not produce a readable WAV";
        return NULL;
    }
    float *y = NULL;
    if (audio_resample(w.samples, w.n, w.rate, RATE, AUDIO_RESAMPLE_BEST, &y, n, &e)) *why = "resampling failed";
    audio_wav_clear(&w);
    return y;
}

/* Truth from the clean speech itself: first and last sample of the 10-ms frames whose energy is within 40 dB of
 * the loudest frame (espeak's own leading/trailing near-silence is not speech). */
static void truth(const float *s, int64_t n, int64_t *first, int64_t *last) {
    int64_t F = RATE / 100, nf = n / F;
    double peak = 0;
    for (int64_t f = 0; f < nf; f++) {
        double e = 0;
        for (int64_t i = 0; i < F; i++) e += (double)s[f * F + i] * s[f * F + i];
        if (e > peak) peak = e;
    }
    *first = -1;
    for (int64_t f = 0; f < nf; f++) {
        double e = 0;
        for (int64_t i = 0; i < F; i++) e += (double)s[f * F + i] * s[f * F + i];
        if (e > peak * 1e-4) {
            if (*first < 0) *first = f * F;
            *last = f * F + F - 1;
        }
    }
}

typedef struct {
    int n;
    audio_vad_event ev[16];
} events;

/* Pushes x in uneven chunks (as a live stream arrives), collecting events. */
static void run_vad(const float *x, int64_t n, events *out) {
    audio_vad_params p = audio_vad_default_params(RATE);
    audio_vad *v;
    out->n = 0;
    if (audio_vad_init(&v, &p, NULL)) return;
    uint64_t s = 77;
    audio_vad_event ev;
    for (int64_t pos = 0; pos < n;) {
        s = s * 6364136223846793005ull + 1442695040888963407ull;
        int64_t k = 1 + (int64_t)((s >> 33) % 3000);
        if (k > n - pos) k = n - pos;
        audio_vad_push(v, x + pos, k);
        pos += k;
        while (audio_vad_pop(v, &ev))
            if (out->n < 16) out->ev[out->n++] = ev;
    }
    audio_vad_finish(v);
    while (audio_vad_pop(v, &ev))
        if (out->n < 16) out->ev[out->n++] = ev;
    audio_vad_free(v);
}

static float noise(uint64_t *s) {
    *s = *s * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(*s >> 40) / 16777216.0 - 0.5);
}

/* background: 0 = digital silence, else the RMS of white noise (dBFS). */
static void place_and_check(const float *sp, int64_t ns, double noise_db, const char *label) {
    int64_t lead = (int64_t)(1.3 * RATE), tail = 2 * RATE, n = lead + ns + tail;
    float *x = calloc((size_t)n, sizeof *x);
    REQUIRE(x != NULL);
    uint64_t s = 5;
    double amp = noise_db < 0 ? pow(10, noise_db / 20) * sqrt(12.0) : 0; /* uniform[-.5,.5) has RMS 1/sqrt(12) */
    for (int64_t i = 0; i < n; i++) x[i] = (float)(amp * noise(&s));
    for (int64_t i = 0; i < ns; i++) x[lead + i] += sp[i];
    int64_t t0, t1;
    truth(sp, ns, &t0, &t1);
    t0 += lead, t1 += lead;
    events ev;
    run_vad(x, n, &ev);
    printf("    %s: speech %.3f..%.3f s, detected", label, (double)t0 / RATE, (double)t1 / RATE);
    for (int i = 0; i < ev.n; i++)
        printf(" %s@%.3f", ev.ev[i].type == AUDIO_VAD_START ? "start" : "end", (double)ev.ev[i].sample / RATE);
    printf("\n");
    REQUIRE(ev.n == 2);
    CHECK_EQ_INT(ev.ev[0].type, AUDIO_VAD_START);
    CHECK_EQ_INT(ev.ev[1].type, AUDIO_VAD_END);
    CHECK(llabs(ev.ev[0].sample - t0) <= TOL);
    CHECK(llabs(ev.ev[1].sample - t1) <= TOL);
    free(x);
}

TEST(vad_speech_in_silence_and_noise) {
    const char *why;
    int64_t ns;
    float *sp = speak("Hello there, how are you doing today?", &ns, &why);
    if (!sp) SKIP(why);
    double rms = 0;
    for (int64_t i = 0; i < ns; i++) rms += (double)sp[i] * sp[i];
    printf("    espeak speech: %.2f s, RMS %.1f dBFS\n", (double)ns / RATE, 10 * log10(rms / (double)ns));
    place_and_check(sp, ns, 0, "digital silence");
    place_and_check(sp, ns, -60, "noise -60 dBFS");
    place_and_check(sp, ns, -45, "noise -45 dBFS");
    place_and_check(sp, ns, -38, "noise -38 dBFS");
    place_and_check(sp, ns, -32, "noise -32 dBFS");
    free(sp);
}

TEST(vad_two_utterances_and_clicks) {
    const char *why;
    int64_t ns;
    float *sp = speak("Open the door.", &ns, &why);
    if (!sp) SKIP(why);
    int64_t gap = (int64_t)(1.2 * RATE), n = RATE + ns + gap + ns + RATE;
    float *x = calloc((size_t)n, sizeof *x);
    REQUIRE(x != NULL);
    uint64_t s = 9;
    for (int64_t i = 0; i < n; i++) x[i] = 0.003f * noise(&s); /* about -60 dBFS */
    /* a 20-ms click in the first second: too short for min_speech_ms */
    for (int64_t i = 0; i < RATE / 50; i++) x[RATE / 2 + i] += 0.5f * sinf(0.3f * (float)i);
    for (int64_t i = 0; i < ns; i++) x[RATE + i] += sp[i], x[RATE + ns + gap + i] += sp[i];
    int64_t t0, t1;
    truth(sp, ns, &t0, &t1);
    events ev;
    run_vad(x, n, &ev);
    REQUIRE(ev.n == 4);
    int64_t at[2] = { RATE, RATE + ns + gap };
    for (int u = 0; u < 2; u++) {
        CHECK_EQ_INT(ev.ev[2 * u].type, AUDIO_VAD_START);
        CHECK_EQ_INT(ev.ev[2 * u + 1].type, AUDIO_VAD_END);
        CHECK(llabs(ev.ev[2 * u].sample - (at[u] + t0)) <= TOL);
        CHECK(llabs(ev.ev[2 * u + 1].sample - (at[u] + t1)) <= TOL);
    }
    free(x);
    free(sp);
}

TEST(vad_state_and_params) {
    audio_vad *v;
    audio_err e = { { 0 } };
    audio_vad_params p = audio_vad_default_params(RATE);
    p.stop_db = p.start_db + 1;
    CHECK_EQ_INT(audio_vad_init(&v, &p, &e), AUDIO_E_ARG);
    p = audio_vad_default_params(10);
    CHECK_EQ_INT(audio_vad_init(&v, &p, &e), AUDIO_E_ARG);
    p = audio_vad_default_params(RATE);
    REQUIRE(audio_vad_init(&v, &p, &e) == 0);
    /* a steady tone after silence: start once, never end while it lasts, end at finish */
    float buf[1600];
    memset(buf, 0, sizeof buf);
    for (int k = 0; k < 10; k++) audio_vad_push(v, buf, 1600);
    CHECK(!audio_vad_in_speech(v));
    for (int i = 0; i < 1600; i++) buf[i] = 0.1f * sinf(0.2f * (float)i);
    int got = 0;
    for (int k = 0; k < 20; k++) got += audio_vad_push(v, buf, 1600);
    CHECK(audio_vad_in_speech(v));
    CHECK(audio_vad_level_db(v) > -25 && audio_vad_level_db(v) < -15);
    audio_vad_event ev;
    REQUIRE(audio_vad_pop(v, &ev) == 1);
    CHECK_EQ_INT(ev.type, AUDIO_VAD_START);
    CHECK(llabs(ev.sample - 16000) <= 160);
    CHECK_EQ_INT(audio_vad_pop(v, &ev), 0);
    CHECK_EQ_INT(audio_vad_finish(v), 1);
    REQUIRE(audio_vad_pop(v, &ev) == 1);
    CHECK_EQ_INT(ev.type, AUDIO_VAD_END);
    CHECK(llabs(ev.sample - (16000 + 32000 - 1)) <= 160);
    /* reset starts over at sample 0 */
    audio_vad_reset(v);
    CHECK(!audio_vad_in_speech(v) && audio_vad_lost(v) == 0);
    audio_vad_free(v);
    audio_vad_free(NULL);
}
