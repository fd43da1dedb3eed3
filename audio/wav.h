/* wav.h — reading RIFF/WAVE files into mono float samples, and writing 16-bit PCM or float WAV files.
 *
 * Reading accepts PCM integer samples of 1..32 bits (8-bit unsigned, wider signed, stored in whole bytes as the WAV
 * specification asks), IEEE float 32/64, and WAVE_FORMAT_EXTENSIBLE wrapping either; any channel count (mixed to
 * mono by the mean); any sample rate from 1000 to 768000 Hz (kept, not resampled). Unknown chunks are skipped.
 *
 * Documented leniency towards damaged files (everything else is a one-line error, never a crash):
 *   - the RIFF size field is ignored (streaming writers leave it 0 or 0xFFFFFFFF);
 *   - a data chunk whose size runs past the end of the input (truncated download, 0xFFFFFFFF from a streaming
 *     writer) is read up to the end of the input; a trailing partial frame is dropped;
 *   - an unknown chunk that runs past the end of the input ends the chunk scan (the data already found is used);
 *   - non-finite float samples (NaN, ±Inf) are replaced by 0, and float samples are limited to ±1e4 (80 dB above
 *     full scale), so a damaged file cannot poison later arithmetic with NaN or overflow.
 * Errors: no RIFF/WAVE magic, missing or short fmt chunk, missing data chunk, data holding no whole frame, zero
 * channels, a rate outside 1000..768000 Hz, zero or unsupported bits, a block align that differs from
 * channels × bytes per sample, compressed formats (ADPCM, A-law, MP3, ...) and RF64. */
#ifndef AUDIO_WAV_H
#define AUDIO_WAV_H

#include <stddef.h>
#include <stdint.h>

#include "audio.h"

enum {
    AUDIO_WAV_PCM16 = 1,   /* 16-bit signed integer samples */
    AUDIO_WAV_FLOAT32 = 3, /* 32-bit IEEE float samples */
};

typedef struct {
    float *samples;      /* [n] mono samples, nominally in [-1, 1); malloc'd, released by audio_wav_clear */
    int64_t n;           /* number of mono samples (= frames in the file) */
    int32_t rate;        /* sample rate, Hz */
    int32_t channels;    /* channel count in the file, before mixing */
    int32_t bits;        /* bits per sample in the file (container size) */
    int32_t is_float;    /* 1 = IEEE float in the file, 0 = integer PCM */
} audio_wav;

/* Parses a WAV file image of len bytes. On success fills *out (which the caller clears with audio_wav_clear) and
 * returns 0; on failure *out is zeroed and e gets a one-line reason prefixed with `name` (a file name for messages;
 * NULL = "wav"). */
int audio_wav_read_mem(const void *data, size_t len, const char *name, audio_wav *out, audio_err *e);
int audio_wav_read_file(const char *path, audio_wav *out, audio_err *e);
void audio_wav_clear(audio_wav *w); /* frees samples and zeroes *w; NULL is a no-op */

/* Writes frames × channels interleaved samples as a WAV image in memory (*out malloc'd, *out_len bytes) or as a
 * file. format is AUDIO_WAV_PCM16 (samples clamped to [-1, 1) and rounded: x·32768) or AUDIO_WAV_FLOAT32. */
int audio_wav_write_mem(const float *samples, int64_t frames, int channels, int rate, int format, void **out,
                        size_t *out_len, audio_err *e);
int audio_wav_write_file(const char *path, const float *samples, int64_t frames, int channels, int rate, int format,
                         audio_err *e);

#endif
