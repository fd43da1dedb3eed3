/* test_audio_wav.c — WAV reader/writer: every sample layout, chunk handling, damaged headers, and a mutation sweep
 * over real headers (the CI-sized cousin of tests/fuzz/fuzz_wav.c). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "wav.h"

/* ---- a tiny WAV builder ---------------------------------------------------------------------------------------- */
typedef struct {
    uint8_t b[4096];
    size_t n;
} bytes;

static void put(bytes *o, const void *p, size_t n) {
    memcpy(o->b + o->n, p, n);
    o->n += n;
}
static void put16(bytes *o, uint32_t v) {
    uint8_t t[2] = { (uint8_t)v, (uint8_t)(v >> 8) };
    put(o, t, 2);
}
static void put32(bytes *o, uint32_t v) {
    uint8_t t[4] = { (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24) };
    put(o, t, 4);
}
static void riff(bytes *o) {
    o->n = 0;
    put(o, "RIFF", 4);
    put32(o, 0); /* the reader ignores the RIFF size; leave it wrong on purpose */
    put(o, "WAVE", 4);
}
static void fmt(bytes *o, int tag, int ch, uint32_t rate, int bits, int align) {
    put(o, "fmt ", 4);
    put32(o, 16);
    put16(o, (uint32_t)tag);
    put16(o, (uint32_t)ch);
    put32(o, rate);
    put32(o, rate * (uint32_t)align);
    put16(o, (uint32_t)align);
    put16(o, (uint32_t)bits);
}
static void fmt_ext(bytes *o, int subtag, int ch, uint32_t rate, int bits, int valid_bits) {
    static const uint8_t tail[14] = { 0, 0, 0, 0, 0x10, 0, 0x80, 0, 0, 0xAA, 0, 0x38, 0x9B, 0x71 };
    int align = ch * bits / 8;
    put(o, "fmt ", 4);
    put32(o, 40);
    put16(o, 0xFFFE);
    put16(o, (uint32_t)ch);
    put32(o, rate);
    put32(o, rate * (uint32_t)align);
    put16(o, (uint32_t)align);
    put16(o, (uint32_t)bits);
    put16(o, 22);
    put16(o, (uint32_t)valid_bits);
    put32(o, 0x3);
    put16(o, (uint32_t)subtag);
    put(o, tail, 14);
}
static void chunk(bytes *o, const char *id, const void *p, uint32_t n) {
    put(o, id, 4);
    put32(o, n);
    put(o, p, n);
    if (n & 1) put(o, "\0", 1);
}

static int parse(const bytes *o, audio_wav *w, audio_err *e) { return audio_wav_read_mem(o->b, o->n, "t.wav", w, e); }

/* ---- layouts --------------------------------------------------------------------------------------------------- */

TEST(wav_pcm16_roundtrip_exact) {
    float x[300];
    for (int i = 0; i < 300; i++) x[i] = (float)((i * 37 % 601) - 300) / 32768.0f * 100.0f; /* multiples of 2^-15 */
    x[0] = -1.0f;
    x[1] = 32767.0f / 32768.0f;
    void *buf;
    size_t len;
    audio_err e = { { 0 } };
    REQUIRE(audio_wav_write_mem(x, 300, 1, 16000, AUDIO_WAV_PCM16, &buf, &len, &e) == 0);
    CHECK_EQ_INT(len, 44 + 600);
    audio_wav w;
    REQUIRE(audio_wav_read_mem(buf, len, NULL, &w, &e) == 0);
    CHECK_EQ_INT(w.n, 300);
    CHECK_EQ_INT(w.rate, 16000);
    CHECK_EQ_INT(w.bits, 16);
    CHECK_EQ_INT(w.is_float, 0);
    int same = 1;
    for (int i = 0; i < 300; i++) same &= w.samples[i] == x[i];
    CHECK(same);
    audio_wav_clear(&w);
    free(buf);
    /* clipping and rounding on the way out */
    float y[4] = { 2.0f, -3.0f, 0.4f / 32768.0f, 0.6f / 32768.0f };
    REQUIRE(audio_wav_write_mem(y, 4, 1, 8000, AUDIO_WAV_PCM16, &buf, &len, &e) == 0);
    REQUIRE(audio_wav_read_mem(buf, len, NULL, &w, &e) == 0);
    CHECK_NEAR(w.samples[0], 32767.0 / 32768.0, 0);
    CHECK_NEAR(w.samples[1], -1.0, 0);
    CHECK_NEAR(w.samples[2], 0.0, 0);
    CHECK_NEAR(w.samples[3], 1.0 / 32768.0, 0);
    audio_wav_clear(&w);
    free(buf);
}

TEST(wav_float32_stereo_file_roundtrip) {
    float x[2 * 100];
    for (int i = 0; i < 100; i++) {
        x[2 * i] = 0.25f * (float)i / 100.0f;
        x[2 * i + 1] = -0.5f;
    }
    char path[] = "/tmp/omni_wav_XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    close(fd);
    audio_err e = { { 0 } };
    REQUIRE(audio_wav_write_file(path, x, 100, 2, 44100, AUDIO_WAV_FLOAT32, &e) == 0);
    audio_wav w;
    int rc = audio_wav_read_file(path, &w, &e);
    unlink(path);
    REQUIRE(rc == 0);
    CHECK_EQ_INT(w.n, 100);
    CHECK_EQ_INT(w.channels, 2);
    CHECK_EQ_INT(w.rate, 44100);
    CHECK_EQ_INT(w.is_float, 1);
    CHECK_EQ_INT(w.bits, 32);
    for (int i = 0; i < 100; i++) CHECK_NEAR(w.samples[i], (x[2 * i] + x[2 * i + 1]) / 2, 1e-7); /* mean mix */
    audio_wav_clear(&w);
    audio_wav_clear(&w); /* clearing twice is harmless */
    audio_wav_clear(NULL);
}

TEST(wav_int_widths) {
    bytes o;
    audio_wav w;
    audio_err e = { { 0 } };
    /* 8-bit unsigned: 0 → -1, 128 → 0, 255 → 127/128 */
    riff(&o);
    fmt(&o, 1, 1, 8000, 8, 1);
    uint8_t d8[3] = { 0, 128, 255 };
    chunk(&o, "data", d8, 3);
    REQUIRE(parse(&o, &w, &e) == 0);
    CHECK_EQ_INT(w.n, 3);
    CHECK_NEAR(w.samples[0], -1.0, 0);
    CHECK_NEAR(w.samples[1], 0.0, 0);
    CHECK_NEAR(w.samples[2], 127.0 / 128.0, 0);
    audio_wav_clear(&w);
    /* 24-bit signed little-endian */
    riff(&o);
    fmt(&o, 1, 1, 48000, 24, 3);
    uint8_t d24[9] = { 0x00, 0x00, 0x80, 0xff, 0xff, 0x7f, 0x00, 0x00, 0x40 };
    chunk(&o, "data", d24, 9);
    REQUIRE(parse(&o, &w, &e) == 0);
    CHECK_NEAR(w.samples[0], -1.0, 0);
    CHECK_NEAR(w.samples[1], 8388607.0 / 8388608.0, 1e-7);
    CHECK_NEAR(w.samples[2], 0.5, 0);
    audio_wav_clear(&w);
    /* 32-bit signed */
    riff(&o);
    fmt(&o, 1, 1, 96000, 32, 4);
    uint8_t d32[8] = { 0, 0, 0, 0x80, 0, 0, 0, 0xC0 };
    chunk(&o, "data", d32, 8);
    REQUIRE(parse(&o, &w, &e) == 0);
    CHECK_NEAR(w.samples[0], -1.0, 0);
    CHECK_NEAR(w.samples[1], -0.5, 0);
    audio_wav_clear(&w);
    /* 12-bit PCM lives left-aligned in 2 bytes */
    riff(&o);
    fmt(&o, 1, 1, 8000, 12, 2);
    uint8_t d12[2] = { 0x00, 0x40 }; /* 0x4000 = 0.5 */
    chunk(&o, "data", d12, 2);
    REQUIRE(parse(&o, &w, &e) == 0);
    CHECK_NEAR(w.samples[0], 0.5, 0);
    audio_wav_clear(&w);
}

TEST(wav_float64_and_nonfinite) {
    bytes o;
    audio_wav w;
    audio_err e = { { 0 } };
    riff(&o);
    fmt(&o, 3, 1, 22050, 64, 8);
    double d[4] = { 0.125, -0.75, 1.0 / 0.0, 0.0 / 0.0 };
    chunk(&o, "data", d, sizeof d); /* the test machine is little-endian, like WAV */
    REQUIRE(parse(&o, &w, &e) == 0);
    CHECK_EQ_INT(w.n, 4);
    CHECK_EQ_INT(w.bits, 64);
    CHECK_NEAR(w.samples[0], 0.125, 0);
    CHECK_NEAR(w.samples[1], -0.75, 0);
    CHECK_NEAR(w.samples[2], 0.0, 0); /* non-finite samples read as 0 */
    CHECK_NEAR(w.samples[3], 0.0, 0);
    audio_wav_clear(&w);
    /* float with a bits value other than 32/64 */
    riff(&o);
    fmt(&o, 3, 1, 22050, 16, 2);
    chunk(&o, "data", d, 8);
    CHECK_EQ_INT(parse(&o, &w, &e), AUDIO_E_UNSUPPORTED);
}

TEST(wav_extensible_multichannel) {
    bytes o;
    audio_wav w;
    audio_err e = { { 0 } };
    /* 6-channel 24-bit-in-32 integer: mean of the channels */
    riff(&o);
    fmt_ext(&o, 1, 6, 48000, 32, 24);
    int32_t d[12];
    for (int i = 0; i < 12; i++) d[i] = (i < 6 ? i : -i) * (1 << 24);
    chunk(&o, "data", d, sizeof d);
    REQUIRE(parse(&o, &w, &e) == 0);
    CHECK_EQ_INT(w.channels, 6);
    CHECK_EQ_INT(w.n, 2);
    CHECK_NEAR(w.samples[0], (0 + 1 + 2 + 3 + 4 + 5) / 6.0 / 128.0, 1e-7);
    CHECK_NEAR(w.samples[1], -(6 + 7 + 8 + 9 + 10 + 11) / 6.0 / 128.0, 1e-7);
    audio_wav_clear(&w);
    /* extensible float */
    riff(&o);
    fmt_ext(&o, 3, 2, 44100, 32, 32);
    float f[4] = { 0.5f, 0.25f, -1.0f, 1.0f };
    chunk(&o, "data", f, sizeof f);
    REQUIRE(parse(&o, &w, &e) == 0);
    CHECK_EQ_INT(w.is_float, 1);
    CHECK_NEAR(w.samples[0], 0.375, 0);
    CHECK_NEAR(w.samples[1], 0.0, 0);
    audio_wav_clear(&w);
    /* unknown sub-format GUID tail */
    riff(&o);
    fmt_ext(&o, 1, 1, 44100, 16, 16);
    o.b[o.n - 1] ^= 0xff;
    chunk(&o, "data", f, 4);
    CHECK_EQ_INT(parse(&o, &w, &e), AUDIO_E_UNSUPPORTED);
    CHECK(strstr(e.msg, "GUID") != NULL);
}

TEST(wav_chunks_skipped_and_order) {
    bytes o;
    audio_wav w;
    audio_err e = { { 0 } };
    int16_t d[3] = { 16384, -16384, 0 };
    /* LIST and an odd-sized unknown chunk (padded) before fmt, data before fmt, a trailing junk chunk */
    riff(&o);
    chunk(&o, "LIST", "INFOISFT\5\0\0\0omni\0", 17);
    chunk(&o, "junk", "abc", 3);
    chunk(&o, "data", d, sizeof d);
    fmt(&o, 1, 1, 16000, 16, 2);
    chunk(&o, "cue ", "12345678", 8);
    REQUIRE(parse(&o, &w, &e) == 0);
    CHECK_EQ_INT(w.n, 3);
    CHECK_NEAR(w.samples[0], 0.5, 0);
    CHECK_NEAR(w.samples[1], -0.5, 0);
    audio_wav_clear(&w);
}

TEST(wav_truncated_and_lying_sizes) {
    bytes o;
    audio_wav w;
    audio_err e = { { 0 } };
    int16_t d[4] = { 100, 200, 300, 400 };
    /* data size past the end: read what is there (documented) */
    riff(&o);
    fmt(&o, 1, 1, 16000, 16, 2);
    put(&o, "data", 4);
    put32(&o, 1000000);
    put(&o, d, sizeof d);
    REQUIRE(parse(&o, &w, &e) == 0);
    CHECK_EQ_INT(w.n, 4);
    audio_wav_clear(&w);
    /* streaming writer's 0xFFFFFFFF */
    o.n -= sizeof d + 4;
    put32(&o, 0xFFFFFFFFu);
    put(&o, d, sizeof d);
    REQUIRE(parse(&o, &w, &e) == 0);
    CHECK_EQ_INT(w.n, 4);
    audio_wav_clear(&w);
    /* a trailing half frame is dropped */
    o.n -= 1;
    REQUIRE(parse(&o, &w, &e) == 0);
    CHECK_EQ_INT(w.n, 3);
    CHECK_NEAR(w.samples[2], 300 / 32768.0, 0);
    audio_wav_clear(&w);
    /* stereo file cut inside its last frame */
    riff(&o);
    fmt(&o, 1, 2, 16000, 16, 4);
    chunk(&o, "data", d, 6);
    REQUIRE(parse(&o, &w, &e) == 0);
    CHECK_EQ_INT(w.n, 1);
    audio_wav_clear(&w);
}

static void expect_error(const bytes *o, int code, const char *needle) {
    audio_wav w;
    audio_err e = { { 0 } };
    int rc = parse(o, &w, &e);
    if (rc != code || !strstr(e.msg, needle)) {
        th_fail(__FILE__, __LINE__, "want %d containing '%s', got %d '%s'", code, needle, rc, e.msg);
        if (rc == 0) audio_wav_clear(&w);
        return;
    }
    CHECK(w.samples == NULL && w.n == 0);
    CHECK(strchr(e.msg, '\n') == NULL);
    CHECK(strncmp(e.msg, "t.wav: ", 7) == 0);
}

TEST(wav_bad_headers_fail_cleanly) {
    bytes o;
    int16_t d[2] = { 1, 2 };
    o.n = 0;
    put(&o, "RIFF", 4);
    expect_error(&o, AUDIO_E_FORMAT, "too short");
    riff(&o);
    memcpy(o.b + 8, "AVI ", 4);
    expect_error(&o, AUDIO_E_FORMAT, "not a RIFF/WAVE");
    o.n = 0;
    put(&o, "\x89PNG\r\n\x1a\n....", 12);
    expect_error(&o, AUDIO_E_FORMAT, "not a RIFF/WAVE");
    riff(&o);
    memcpy(o.b, "RF64", 4);
    expect_error(&o, AUDIO_E_UNSUPPORTED, "RF64");
    riff(&o);
    chunk(&o, "data", d, 4);
    expect_error(&o, AUDIO_E_FORMAT, "no fmt");
    riff(&o);
    fmt(&o, 1, 1, 16000, 16, 2);
    expect_error(&o, AUDIO_E_FORMAT, "no data");
    riff(&o);
    fmt(&o, 1, 0, 16000, 16, 2);
    chunk(&o, "data", d, 4);
    expect_error(&o, AUDIO_E_FORMAT, "0 channels");
    riff(&o);
    fmt(&o, 1, 1, 999, 16, 2);
    chunk(&o, "data", d, 4);
    expect_error(&o, AUDIO_E_FORMAT, "sample rate 999");
    riff(&o);
    fmt(&o, 1, 1, 768001, 16, 2);
    chunk(&o, "data", d, 4);
    expect_error(&o, AUDIO_E_FORMAT, "sample rate 768001");
    riff(&o);
    fmt(&o, 1, 1, 16000, 0, 2);
    chunk(&o, "data", d, 4);
    expect_error(&o, AUDIO_E_FORMAT, "0 bits");
    riff(&o);
    fmt(&o, 1, 1, 16000, 40, 5);
    chunk(&o, "data", d, 4);
    expect_error(&o, AUDIO_E_UNSUPPORTED, "40-bit");
    riff(&o);
    fmt(&o, 1, 2, 16000, 16, 2);
    chunk(&o, "data", d, 4);
    expect_error(&o, AUDIO_E_FORMAT, "block align 2");
    riff(&o);
    fmt(&o, 2, 1, 16000, 4, 1); /* MS ADPCM */
    chunk(&o, "data", d, 4);
    expect_error(&o, AUDIO_E_UNSUPPORTED, "0x0002");
    riff(&o);
    fmt(&o, 1, 1, 16000, 16, 2);
    chunk(&o, "data", d, 0);
    expect_error(&o, AUDIO_E_FORMAT, "less than one");
    riff(&o);
    put(&o, "fmt ", 4);
    put32(&o, 12);
    put(&o, "abcdefghijkl", 12);
    expect_error(&o, AUDIO_E_FORMAT, "needs 16");
    riff(&o);
    put(&o, "fmt ", 4);
    put32(&o, 16);
    put(&o, "abcd", 4);
    expect_error(&o, AUDIO_E_FORMAT, "runs past the end");
    riff(&o);
    fmt(&o, 1, 1, 16000, 16, 2);
    fmt(&o, 1, 1, 16000, 16, 2);
    expect_error(&o, AUDIO_E_FORMAT, "two fmt");
    /* arguments */
    audio_wav w;
    audio_err e = { { 0 } };
    CHECK_EQ_INT(audio_wav_read_mem(NULL, 10, NULL, &w, &e), AUDIO_E_ARG);
    CHECK_EQ_INT(audio_wav_read_file("/nonexistent/x.wav", &w, &e), AUDIO_E_IO);
    CHECK(strstr(e.msg, "/nonexistent/x.wav") != NULL);
    void *buf;
    size_t len;
    float x = 0;
    CHECK_EQ_INT(audio_wav_write_mem(&x, 1, 0, 16000, AUDIO_WAV_PCM16, &buf, &len, &e), AUDIO_E_ARG);
    CHECK_EQ_INT(audio_wav_write_mem(&x, 1, 1, 16000, 7, &buf, &len, &e), AUDIO_E_ARG);
    CHECK_EQ_INT(audio_wav_write_file("/nonexistent/dir/x.wav", &x, 1, 1, 16000, AUDIO_WAV_PCM16, &e), AUDIO_E_IO);
}

/* Every committed test clip parses; then thousands of mutations of real headers (bytes flipped, sizes bent,
 * files cut short) must each give a clean result or a clean error. Under ASan this catches any stray read. */
TEST(wav_mutation_sweep) {
    audio_wav w;
    audio_err e = { { 0 } };
    REQUIRE(audio_wav_read_file(TESTDATA "/audio/speech16k.wav", &w, &e) == 0);
    CHECK_EQ_INT(w.rate, 16000);
    CHECK(w.n > 16000);
    audio_wav_clear(&w);

    float x[64];
    for (int i = 0; i < 64; i++) x[i] = (float)i / 64.0f - 0.5f;
    void *seeds[3];
    size_t lens[3];
    REQUIRE(audio_wav_write_mem(x, 32, 2, 16000, AUDIO_WAV_PCM16, &seeds[0], &lens[0], &e) == 0);
    REQUIRE(audio_wav_write_mem(x, 64, 1, 44100, AUDIO_WAV_FLOAT32, &seeds[1], &lens[1], &e) == 0);
    bytes ext;
    riff(&ext);
    fmt_ext(&ext, 1, 2, 48000, 24, 20);
    chunk(&ext, "data", x, 60);
    seeds[2] = malloc(ext.n);
    REQUIRE(seeds[2] != NULL);
    memcpy(seeds[2], ext.b, ext.n);
    lens[2] = ext.n;

    uint64_t s = 0x9E3779B97F4A7C15ull;
    int ok = 0, bad = 0;
    uint8_t *m = malloc(512);
    REQUIRE(m != NULL);
    for (int it = 0; it < 30000; it++) {
        int k = it % 3;
        size_t len = lens[k];
        memcpy(m, seeds[k], len);
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        int edits = 1 + (int)(s % 4);
        for (int j = 0; j < edits; j++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            if (len == 0) break;
            size_t at = (size_t)(s >> 8) % (len < 80 ? len : 80); /* mostly the header */
            switch ((s >> 40) % 4) {
            case 0: m[at] ^= (uint8_t)(1u << ((s >> 50) % 8)); break;
            case 1: m[at] = (uint8_t)(s >> 30); break;
            case 2: m[at] = (s >> 33) & 1 ? 0xff : 0x00; break;
            default: len = at; break; /* cut the file short */
            }
        }
        int rc = audio_wav_read_mem(m, len, NULL, &w, &e);
        if (rc == 0) {
            ok++;
            CHECK(w.n > 0 && w.samples && w.rate >= 1000 && w.rate <= 768000 && w.channels > 0);
            int finite = 1;
            for (int64_t i = 0; i < w.n; i++) finite &= isfinite(w.samples[i]);
            CHECK(finite);
            audio_wav_clear(&w);
        } else {
            bad++;
            CHECK(rc < 0 && e.msg[0] && !w.samples);
        }
    }
    printf("    mutation sweep: %d parsed, %d rejected\n", ok, bad);
    CHECK(ok > 1000 && bad > 1000); /* the sweep reaches both sides */
    free(m);
    for (int k = 0; k < 3; k++) free(seeds[k]);
}
