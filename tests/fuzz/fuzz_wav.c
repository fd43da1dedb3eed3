/* fuzz_wav.c — libFuzzer target for the WAV parser (audio/wav.c) reading from memory.
 * Build and run: make fuzz && build/fuzz/fuzz_wav -max_total_time=60
 * Every input must give either a clean error (message set, nothing allocated) or a plausible decoded clip. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "wav.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    audio_wav w;
    audio_err e = { { 0 } };
    int rc = audio_wav_read_mem(data, size, "fuzz", &w, &e);
    if (rc == 0) {
        if (w.n <= 0 || !w.samples || w.rate < 1000 || w.rate > 768000 || w.channels < 1) abort();
        for (int64_t i = 0; i < w.n; i++) /* every sample finite and bounded (wav.h); ASan checks the buffer */
            if (!(fabsf(w.samples[i]) <= 1e4f)) abort();
        /* written back as float, the clip must parse again to the same length */
        void *buf;
        size_t len;
        if (audio_wav_write_mem(w.samples, w.n, 1, w.rate, AUDIO_WAV_FLOAT32, &buf, &len, &e) == 0) {
            audio_wav w2;
            if (audio_wav_read_mem(buf, len, "again", &w2, &e) != 0 || w2.n != w.n) abort();
            audio_wav_clear(&w2);
            free(buf);
        }
        audio_wav_clear(&w);
    } else if (rc > 0 || !e.msg[0] || w.samples || w.n) {
        abort();
    }
    return 0;
}
