/* wav.c — RIFF/WAVE reader (any PCM/float layout → mono float) and writer (16-bit PCM or float).
 *
 * The reader walks the chunk list of an in-memory image with explicit bounds checks on every offset (it is a
 * fuzz target: tests/fuzz/fuzz_wav.c). The rules for damaged files are listed in wav.h. */
#include "wav.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define WAV_TAG_PCM 0x0001
#define WAV_TAG_FLOAT 0x0003
#define WAV_TAG_EXTENSIBLE 0xFFFE
#define WAV_MIN_RATE 1000
#define WAV_MAX_RATE 768000
#define WAV_MAX_FLOAT 1e4 /* float samples are limited to ±1e4 (80 dB over full scale): later sums stay finite */

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* The fmt chunk, as far as the reader needs it. */
typedef struct {
    uint16_t tag;         /* format tag after unwrapping WAVE_FORMAT_EXTENSIBLE */
    uint16_t channels;
    uint32_t rate;        /* Hz */
    uint16_t block_align; /* bytes per frame as the file claims */
    uint16_t bits;        /* bits per sample as the file claims */
} wav_fmt;

/* The KSDATAFORMAT_SUBTYPE_* GUIDs share these last 14 bytes; the first two hold the plain format tag. */
static const uint8_t ks_guid_tail[14] = { 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80,
                                          0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71 };

static int parse_fmt(const uint8_t *p, uint32_t size, const char *name, wav_fmt *f, audio_err *e) {
    if (size < 16) return audio_fail(e, AUDIO_E_FORMAT, "%s: fmt chunk has %u bytes, needs 16", name, size);
    f->tag = rd16(p);
    f->channels = rd16(p + 2);
    f->rate = rd32(p + 4);
    f->block_align = rd16(p + 12);
    f->bits = rd16(p + 14);
    if (f->tag == WAV_TAG_EXTENSIBLE) {
        /* WAVEFORMATEXTENSIBLE: cbSize(2) validBits(2) channelMask(4) subFormat GUID(16) after the 16 bytes.
         * The container size (f->bits) decides the layout; valid bits only say how many of them carry signal,
         * and samples are left-aligned in the container, so reading the container is right either way. */
        if (size < 40) return audio_fail(e, AUDIO_E_FORMAT, "%s: extensible fmt chunk has %u bytes, needs 40", name, size);
        if (memcmp(p + 26, ks_guid_tail, sizeof ks_guid_tail) != 0)
            return audio_fail(e, AUDIO_E_UNSUPPORTED, "%s: extensible fmt with an unknown sub-format GUID", name);
        f->tag = rd16(p + 24);
    }
    if (f->tag != WAV_TAG_PCM && f->tag != WAV_TAG_FLOAT)
        return audio_fail(e, AUDIO_E_UNSUPPORTED, "%s: format tag 0x%04x is compressed or unknown (PCM and float only)",
                          name, f->tag);
    if (f->channels == 0) return audio_fail(e, AUDIO_E_FORMAT, "%s: fmt says 0 channels", name);
    if (f->rate < WAV_MIN_RATE || f->rate > WAV_MAX_RATE)
        return audio_fail(e, AUDIO_E_FORMAT, "%s: sample rate %u Hz is outside %d..%d", name, f->rate, WAV_MIN_RATE,
                          WAV_MAX_RATE);
    if (f->bits == 0) return audio_fail(e, AUDIO_E_FORMAT, "%s: fmt says 0 bits per sample", name);
    if (f->tag == WAV_TAG_PCM && f->bits > 32)
        return audio_fail(e, AUDIO_E_UNSUPPORTED, "%s: %u-bit integer PCM (at most 32)", name, f->bits);
    if (f->tag == WAV_TAG_FLOAT && f->bits != 32 && f->bits != 64)
        return audio_fail(e, AUDIO_E_UNSUPPORTED, "%s: %u-bit float (32 or 64 only)", name, f->bits);
    /* Integer samples of b bits occupy ceil(b/8) bytes (e.g. 12-bit in 2, 20-bit in 3). */
    uint32_t want = (uint32_t)f->channels * ((f->bits + 7u) / 8u);
    if (f->block_align != want)
        return audio_fail(e, AUDIO_E_FORMAT, "%s: block align %u does not match %u channels x %u bytes", name,
                          f->block_align, f->channels, (f->bits + 7u) / 8u);
    return 0;
}

/* One sample of the given container width as a float. Integer scales mirror the usual convention (full scale
 * = 2^(bits-1)), so 16-bit -32768 reads as exactly -1 and the writer's x·32768 round trip is exact. */
static double sample_at(const uint8_t *p, int bytes, int is_float) {
    if (is_float) {
        double v;
        if (bytes == 4) {
            union { uint32_t u; float f; } c = { rd32(p) };
            v = c.f;
        } else {
            union { uint64_t u; double d; } c = { (uint64_t)rd32(p) | ((uint64_t)rd32(p + 4) << 32) };
            v = c.d;
        }
        if (!isfinite(v)) return 0.0;
        return v > WAV_MAX_FLOAT ? WAV_MAX_FLOAT : v < -WAV_MAX_FLOAT ? -WAV_MAX_FLOAT : v;
    }
    switch (bytes) {
    case 1: return ((int)p[0] - 128) / 128.0; /* 8-bit WAV is unsigned */
    case 2: return (int16_t)rd16(p) / 32768.0;
    case 3: {
        int32_t v = (int32_t)((uint32_t)p[0] << 8 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 24) >> 8;
        return v / 8388608.0;
    }
    default: return (int32_t)rd32(p) / 2147483648.0;
    }
}

int audio_wav_read_mem(const void *data, size_t len, const char *name, audio_wav *out, audio_err *e) {
    const uint8_t *b = data;
    if (!name) name = "wav";
    if (!out) return audio_fail(e, AUDIO_E_ARG, "%s: no output given", name);
    memset(out, 0, sizeof *out);
    if (!b && len) return audio_fail(e, AUDIO_E_ARG, "%s: no data given", name);
    if (len < 12) return audio_fail(e, AUDIO_E_FORMAT, "%s: %zu bytes is too short for a WAV header", name, len);
    if (!memcmp(b, "RF64", 4) || !memcmp(b, "BW64", 4))
        return audio_fail(e, AUDIO_E_UNSUPPORTED, "%s: RF64 (64-bit WAV) is not supported", name);
    if (memcmp(b, "RIFF", 4) != 0 || memcmp(b + 8, "WAVE", 4) != 0)
        return audio_fail(e, AUDIO_E_FORMAT, "%s: not a RIFF/WAVE file", name);

    wav_fmt fmt = { 0 };
    int have_fmt = 0;
    size_t data_off = 0, data_len = 0;
    int have_data = 0;
    size_t pos = 12;
    while (len - pos >= 8) {
        const uint8_t *h = b + pos;
        uint32_t size = rd32(h + 4);
        size_t avail = len - pos - 8;
        if (!memcmp(h, "fmt ", 4)) {
            if (have_fmt) return audio_fail(e, AUDIO_E_FORMAT, "%s: two fmt chunks", name);
            if (size > avail)
                return audio_fail(e, AUDIO_E_FORMAT, "%s: fmt chunk of %u bytes runs past the end (%zu left)", name,
                                  size, avail);
            int rc = parse_fmt(h + 8, size, name, &fmt, e);
            if (rc) return rc;
            have_fmt = 1;
        } else if (!memcmp(h, "data", 4)) {
            if (!have_data) { /* a second data chunk is ignored: readers disagree on it, the first is the audio */
                data_off = pos + 8;
                data_len = size > avail ? avail : size; /* truncated file / streaming size: take what is there */
                have_data = 1;
            }
        }
        if (size > avail) break; /* any chunk reaching past the end is the last one */
        size_t step = (size_t)size + (size & 1u); /* chunks are padded to even length */
        if (step > avail) break;
        pos += 8 + step;
    }
    if (!have_fmt) return audio_fail(e, AUDIO_E_FORMAT, "%s: no fmt chunk", name);
    if (!have_data) return audio_fail(e, AUDIO_E_FORMAT, "%s: no data chunk", name);

    int bytes = (fmt.bits + 7) / 8;
    int is_float = fmt.tag == WAV_TAG_FLOAT;
    size_t frame = (size_t)fmt.block_align;
    size_t frames = data_len / frame;
    if (frames == 0)
        return audio_fail(e, AUDIO_E_FORMAT, "%s: data chunk holds %zu bytes, less than one %zu-byte frame", name,
                          data_len, frame);
    if (frames > (size_t)INT64_MAX / sizeof(float))
        return audio_fail(e, AUDIO_E_FORMAT, "%s: data chunk too large", name);
    float *s = malloc(frames * sizeof *s);
    if (!s) return audio_fail(e, AUDIO_E_NOMEM, "%s: out of memory for %zu samples", name, frames);
    const uint8_t *p = b + data_off;
    double inv_ch = 1.0 / fmt.channels;
    for (size_t i = 0; i < frames; i++) {
        double acc = 0;
        for (int c = 0; c < fmt.channels; c++, p += bytes) acc += sample_at(p, bytes, is_float);
        s[i] = (float)(acc * inv_ch);
    }
    out->samples = s;
    out->n = (int64_t)frames;
    out->rate = (int32_t)fmt.rate;
    out->channels = fmt.channels;
    out->bits = fmt.bits;
    out->is_float = is_float;
    return 0;
}

int audio_wav_read_file(const char *path, audio_wav *out, audio_err *e) {
    if (out) memset(out, 0, sizeof *out);
    if (!path || !out) return audio_fail(e, AUDIO_E_ARG, "wav: no path or output given");
    FILE *f = fopen(path, "rb");
    if (!f) return audio_fail(e, AUDIO_E_IO, "%s: %s", path, strerror(errno));
    /* Read in growing blocks rather than trusting ftell: works for pipes and files that change under us. */
    size_t cap = 1 << 16, len = 0;
    uint8_t *buf = malloc(cap);
    int rc = 0;
    while (buf) {
        if (len == cap) {
            uint8_t *nb = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) break;
    }
    if (!buf) rc = audio_fail(e, AUDIO_E_NOMEM, "%s: out of memory reading the file", path);
    else if (ferror(f)) rc = audio_fail(e, AUDIO_E_IO, "%s: read error", path);
    fclose(f);
    if (!rc) rc = audio_wav_read_mem(buf, len, path, out, e);
    free(buf);
    return rc;
}

void audio_wav_clear(audio_wav *w) {
    if (!w) return;
    free(w->samples);
    memset(w, 0, sizeof *w);
}

/* ---- writer ---------------------------------------------------------------------------------------------------- */

static void wr16(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}
static void wr32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}

int audio_wav_write_mem(const float *samples, int64_t frames, int channels, int rate, int format, void **out,
                        size_t *out_len, audio_err *e) {
    if (!out || !out_len) return audio_fail(e, AUDIO_E_ARG, "wav write: no output given");
    *out = NULL;
    *out_len = 0;
    if (channels < 1 || channels > 65535) return audio_fail(e, AUDIO_E_ARG, "wav write: %d channels", channels);
    if (rate < WAV_MIN_RATE || rate > WAV_MAX_RATE) return audio_fail(e, AUDIO_E_ARG, "wav write: rate %d Hz", rate);
    if (format != AUDIO_WAV_PCM16 && format != AUDIO_WAV_FLOAT32)
        return audio_fail(e, AUDIO_E_ARG, "wav write: unknown format %d", format);
    if (frames < 0 || (frames > 0 && !samples)) return audio_fail(e, AUDIO_E_ARG, "wav write: no samples");
    int is_float = format == AUDIO_WAV_FLOAT32;
    uint32_t bytes = is_float ? 4 : 2;
    uint64_t data_len = (uint64_t)frames * (uint64_t)channels * bytes;
    /* Float files carry the 18-byte fmt (with cbSize) and a fact chunk, as the WAV specification asks of
     * non-PCM formats; PCM keeps the plain 16-byte fmt every reader knows. */
    uint32_t fmt_len = is_float ? 18 : 16;
    uint32_t head = 12 + 8 + fmt_len + (is_float ? 12 : 0) + 8;
    if (data_len + head + 1 > UINT32_MAX)
        return audio_fail(e, AUDIO_E_ARG, "wav write: %lld frames do not fit a 4 GiB WAV", (long long)frames);
    size_t total = head + (size_t)data_len + (data_len & 1);
    uint8_t *b = calloc(1, total);
    if (!b) return audio_fail(e, AUDIO_E_NOMEM, "wav write: out of memory");
    uint8_t *p = b;
    memcpy(p, "RIFF", 4);
    wr32(p + 4, (uint32_t)(total - 8));
    memcpy(p + 8, "WAVE", 4);
    p += 12;
    memcpy(p, "fmt ", 4);
    wr32(p + 4, fmt_len);
    wr16(p + 8, is_float ? WAV_TAG_FLOAT : WAV_TAG_PCM);
    wr16(p + 10, (uint32_t)channels);
    wr32(p + 12, (uint32_t)rate);
    wr32(p + 16, (uint32_t)rate * (uint32_t)channels * bytes);
    wr16(p + 20, (uint32_t)channels * bytes);
    wr16(p + 22, bytes * 8);
    p += 8 + fmt_len; /* cbSize (float) stays 0 from calloc */
    if (is_float) {
        memcpy(p, "fact", 4);
        wr32(p + 4, 4);
        wr32(p + 8, (uint32_t)frames);
        p += 12;
    }
    memcpy(p, "data", 4);
    wr32(p + 4, (uint32_t)data_len);
    p += 8;
    int64_t n = frames * channels;
    for (int64_t i = 0; i < n; i++) {
        float x = samples[i];
        if (is_float) {
            union { float f; uint32_t u; } c = { .f = x };
            wr32(p, c.u);
            p += 4;
        } else {
            /* x·32768 rounded and clamped: the exact inverse of the reader's /32768 */
            float v = isfinite(x) ? x * 32768.0f : 0.0f;
            long q = lrintf(v < -32768.0f ? -32768.0f : v > 32767.0f ? 32767.0f : v);
            wr16(p, (uint32_t)(uint16_t)(int16_t)q);
            p += 2;
        }
    }
    *out = b;
    *out_len = total;
    return 0;
}

int audio_wav_write_file(const char *path, const float *samples, int64_t frames, int channels, int rate, int format,
                         audio_err *e) {
    if (!path) return audio_fail(e, AUDIO_E_ARG, "wav write: no path");
    void *buf;
    size_t len;
    int rc = audio_wav_write_mem(samples, frames, channels, rate, format, &buf, &len, e);
    if (rc) return rc;
    FILE *f = fopen(path, "wb");
    if (!f) {
        free(buf);
        return audio_fail(e, AUDIO_E_IO, "%s: %s", path, strerror(errno));
    }
    size_t put = fwrite(buf, 1, len, f);
    int bad = fclose(f) != 0 || put != len;
    free(buf);
    if (bad) return audio_fail(e, AUDIO_E_IO, "%s: write failed", path);
    return 0;
}
