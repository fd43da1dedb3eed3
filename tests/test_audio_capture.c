/* test_audio_capture.c — PortAudio capture. Without a sound device it must fail with a clear code and message
 * and print nothing; with one — or with a private PulseAudio server whose virtual microphone we feed espeak-ng
 * speech through paplay (docs: toolchain-notes.md, "Audio without a sound card") — speech must arrive at 16 kHz.
 * Every external command runs under `timeout`, every wait has a deadline: these tests cannot hang.
 * Pulse's null sink renders its first block only ~1.9 s after a client connects (its default latency is 2 s; a
 * real microphone starts at once), so the virtual-microphone test spends about 4 s, mostly waiting. */
#include <fcntl.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "capture.h"
#include "harness.h"
#include "vad.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) {
    struct timespec t = { ms / 1000, (long)(ms % 1000) * 1000000L };
    nanosleep(&t, NULL);
}

static int have(const char *tool) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", tool);
    return system(cmd) == 0;
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* A private environment for libpulse: its own runtime dir and home (so nothing reaches a user's server or
 * config), and no autospawning of a server behind our back. */
static void private_pulse_env(const char *dir) {
    char p[256];
    setenv("XDG_RUNTIME_DIR", dir, 1);
    setenv("HOME", dir, 1);
    unsetenv("PULSE_SERVER");
    snprintf(p, sizeof p, "%s/client.conf", dir);
    write_text(p, "autospawn = no\n");
    setenv("PULSE_CLIENTCONFIG", p, 1);
}

/* Runs fn with fd 2 sent to a temp file; returns the number of bytes written to stderr meanwhile. */
static long stderr_bytes_during(void (*fn)(void *), void *arg) {
    char path[] = "/tmp/omni_stderr_XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) return -1;
    fflush(stderr);
    int saved = dup(2);
    dup2(fd, 2);
    fn(arg);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    long n = (long)lseek(fd, 0, SEEK_END);
    close(fd);
    unlink(path);
    return n;
}

typedef struct {
    int list_rc, n_dev, open_rc;
    audio_err e;
    audio_device_info *devs;
} probe_result;

static void probe(void *arg) {
    probe_result *r = arg;
    r->list_rc = audio_capture_list(&r->devs, &r->n_dev, &r->e);
    audio_capture *c = NULL;
    r->open_rc = audio_capture_open(&c, NULL, &r->e);
    audio_capture_free(c);
}

TEST(capture_without_server_is_quiet) {
    char dir[] = "/tmp/omni_cap_XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    private_pulse_env(dir); /* no server in here: only real sound cards remain visible */
    probe_result r = { 0 };
    long spam = stderr_bytes_during(probe, &r);
    CHECK_EQ_INT(r.list_rc, 0);
    printf("    %d input device(s); open: %s\n", r.n_dev, r.open_rc ? r.e.msg : "ok");
    for (int i = 0; i < r.n_dev; i++)
        printf("      [%d] %s (%s) %d ch, %.0f Hz%s\n", r.devs[i].index, r.devs[i].name, r.devs[i].host_api,
               r.devs[i].max_input_channels, r.devs[i].default_rate, r.devs[i].is_default ? ", default" : "");
    if (r.n_dev == 0) {
        CHECK_EQ_INT(r.open_rc, AUDIO_E_NODEVICE);
        CHECK(strstr(r.e.msg, "no input device") != NULL && strchr(r.e.msg, '\n') == NULL);
    }
    CHECK_EQ_INT(spam, 0); /* ALSA/JACK printed nothing */
    free(r.devs);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK(system(cmd) == 0);
}

/* Captures about `seconds` of 16 kHz audio (wall-clock deadline: twice that plus 3 s). The resampler holds back its
 * last few milliseconds until more input arrives, so "about" means within 100 ms. Returns samples. */
static int64_t capture_for(audio_capture *c, float *buf, int64_t cap, double seconds, int (*kick)(void *), void *ud) {
    int64_t got = 0, want = (int64_t)(seconds * AUDIO_CAPTURE_RATE);
    if (want > cap) want = cap;
    double deadline = now_s() + 2 * seconds + 3;
    int kicked = 0;
    audio_err e = { { 0 } };
    while (got < want - AUDIO_CAPTURE_RATE / 10 && now_s() < deadline) {
        int64_t k = audio_capture_read(c, buf + got, want - got, &e);
        if (k < 0) {
            printf("    read failed: %s\n", e.msg);
            break;
        }
        got += k;
        if (!kicked && got > AUDIO_CAPTURE_RATE / 5 && kick) kicked = 1, kick(ud); /* after 200 ms of audio */
        sleep_ms(20);
    }
    return got;
}

static int play_speech(void *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "(timeout 10 paplay -d micfeed %s/speech.wav >/dev/null 2>&1 &)", (const char *)dir);
    return system(cmd);
}

static void check_speech_arrived(const float *buf, int64_t n) {
    /* loudest 10-ms frame and a VAD pass over what came in */
    double peak_db = -200;
    for (int64_t f = 0; f + 160 <= n; f += 160) {
        double e = 0;
        for (int i = 0; i < 160; i++) e += (double)buf[f + i] * buf[f + i];
        double db = 10 * log10(e / 160 + 1e-20);
        if (db > peak_db) peak_db = db;
    }
    audio_vad_params p = audio_vad_default_params(AUDIO_CAPTURE_RATE);
    audio_vad *v;
    int starts = 0;
    if (audio_vad_init(&v, &p, NULL) == 0) {
        audio_vad_push(v, buf, n);
        audio_vad_finish(v);
        audio_vad_event ev;
        while (audio_vad_pop(v, &ev)) starts += ev.type == AUDIO_VAD_START;
        audio_vad_free(v);
    }
    printf("    captured %.2f s, loudest 10-ms frame %.1f dBFS, VAD utterances %d\n",
           (double)n / AUDIO_CAPTURE_RATE, peak_db, starts);
    CHECK(n >= AUDIO_CAPTURE_RATE); /* at least a second of audio arrived */
    CHECK(peak_db > -30);           /* espeak speech peaks near -10 dBFS; silence would be -200 */
    CHECK(starts >= 1);
}

TEST(capture_virtual_microphone) {
    char dir[] = "/tmp/omni_pa_XXXXXX";
    REQUIRE(mkdtemp(dir) != NULL);
    private_pulse_env(dir);
    const int64_t cap = 4 * AUDIO_CAPTURE_RATE;
    float *buf = malloc(sizeof(float) * (size_t)cap);
    REQUIRE(buf != NULL);
    char cmd[1024], path[256];
    int started_pulse = 0;
    const char *skip = NULL;

    /* 1. a real input device, if this machine has one: audio must flow (its content is unknown) */
    audio_capture *c = NULL;
    audio_err e = { { 0 } };
    if (audio_capture_open(&c, NULL, &e) == 0) {
        printf("    real device '%s' at %.0f Hz\n", audio_capture_device_name(c), audio_capture_device_rate(c));
        REQUIRE(audio_capture_start(c, &e) == 0);
        int64_t n = capture_for(c, buf, cap, 1.0, NULL, NULL);
        CHECK(n >= AUDIO_CAPTURE_RATE / 2);
        CHECK(audio_capture_stop(c, &e) == 0);
        audio_capture_free(c);
        c = NULL;
        goto done;
    }
    printf("    no real input device (%s): trying a PulseAudio virtual microphone\n", e.msg);

    /* 2. a private PulseAudio server with a null sink whose monitor is the default source */
    if (!have("pulseaudio") || !have("paplay") || !have("espeak-ng")) {
        skip = "no input device, and pulseaudio/paplay/espeak-ng are not all installed";
        goto done;
    }
    snprintf(path, sizeof path, "%s/pa.pa", dir);
    write_text(path, "load-module module-native-protocol-unix\n"
                     "load-module module-null-sink sink_name=spk rate=16000 channels=1\n"
                     "load-module module-null-sink sink_name=micfeed rate=16000 channels=1\n"
                     "load-module module-remap-source source_name=vmic master=micfeed.monitor\n"
                     "set-default-sink spk\n"
                     "set-default-source vmic\n");
    snprintf(cmd, sizeof cmd,
             "timeout 15 pulseaudio --daemonize=yes --exit-idle-time=-1 -n -F %s/pa.pa "
             "--log-target=file:%s/pulse.log >/dev/null 2>&1",
             dir, dir);
    if (system(cmd) != 0) {
        skip = "no input device, and a private pulseaudio server did not start";
        goto done;
    }
    started_pulse = 1;
    snprintf(cmd, sizeof cmd, "timeout 20 espeak-ng -w %s/speech.wav \"Testing the virtual microphone, one two three.\"",
             dir);
    REQUIRE(system(cmd) == 0);

    if (audio_capture_open(&c, NULL, &e) != 0) {
        printf("    open through pulse failed: %s\n", e.msg);
        CHECK(0);
        goto done;
    }
    printf("    device '%s' at %.0f Hz\n", audio_capture_device_name(c), audio_capture_device_rate(c));
    REQUIRE(audio_capture_start(c, &e) == 0);
    int64_t n = capture_for(c, buf, cap, 2.0, play_speech, dir);
    CHECK(audio_capture_stop(c, &e) == 0);
    CHECK_EQ_INT(audio_capture_dropped(c), 0);
    audio_capture_free(c);
    c = NULL;
    check_speech_arrived(buf, n);

done:
    audio_capture_free(c);
    if (started_pulse) {
        snprintf(cmd, sizeof cmd, "timeout 10 pulseaudio -k >/dev/null 2>&1");
        if (system(cmd) != 0) { /* fall back to the pid file of our own server */
            snprintf(cmd, sizeof cmd, "kill $(cat %s/pulse/pid) 2>/dev/null", dir);
            if (system(cmd) != 0) printf("    could not stop the private pulseaudio\n");
        }
    }
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) printf("    could not remove %s\n", dir);
    free(buf);
    if (skip) SKIP(skip);
}
