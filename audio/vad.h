/* vad.h — energy-based voice-activity detector with an adaptive noise floor.
 *
 * Audio is pushed in chunks of any size; it is cut into frames (10 ms by default), each frame's energy (after an
 * 80 Hz high-pass that removes DC and hum) is compared with a running noise-floor estimate:
 *   - an utterance starts when a frame rises start_db above the floor (and above min_level_db), and is confirmed
 *     once min_speech_ms of frames above the stop threshold have followed; its start index is the first sample of
 *     the frame that crossed start_db (reported only once confirmed, so a click never opens an utterance);
 *   - it ends after hangover_ms in which no frame rose stop_db above the floor (hysteresis: stop_db < start_db);
 *     the end index is the last sample of the last frame that was above the stop threshold;
 *   - the floor follows the energy down quickly and up slowly (floor_up_ms) outside speech, and far more slowly
 *     inside speech (floor_up_speech_ms), so a lasting change of background still ends an utterance eventually.
 * The floor starts at the energy of the first frame: the detector assumes the stream begins with background, and
 * speech present from the very first sample is only found once the floor has dropped in a pause.
 * Sample indices count from the first sample pushed since init/reset, at the rate given. */
#ifndef AUDIO_VAD_H
#define AUDIO_VAD_H

#include <stdint.h>

#include "audio.h"

typedef struct {
    int32_t rate;              /* sample rate of the pushed audio, Hz */
    float frame_ms;            /* analysis frame, ms (default 10) */
    float start_db;            /* dB above the noise floor that opens an utterance (default 12) */
    float stop_db;             /* dB above the noise floor that keeps it open (default 6) */
    float min_level_db;        /* dBFS (RMS re full scale 1.0) a frame must exceed to count as speech (-55) */
    float min_speech_ms;       /* speech needed before an utterance is reported (default 120) */
    float hangover_ms;         /* silence that ends an utterance (default 400) */
    float floor_up_ms;         /* time constant of the floor rising outside speech (default 1500) */
    float floor_up_speech_ms;  /* ... inside speech (default 20000) */
    float floor_down_ms;       /* ... falling (default 30) */
} audio_vad_params;

audio_vad_params audio_vad_default_params(int32_t rate);

enum { AUDIO_VAD_START = 1, AUDIO_VAD_END = 2 };
typedef struct {
    int32_t type;   /* AUDIO_VAD_START or AUDIO_VAD_END */
    int64_t sample; /* START: first sample of the utterance; END: last sample of it (inclusive) */
} audio_vad_event;

typedef struct audio_vad audio_vad;

int audio_vad_init(audio_vad **out, const audio_vad_params *p, audio_err *e);
void audio_vad_free(audio_vad *v);
void audio_vad_reset(audio_vad *v);

/* Analyses n samples; returns the number of events waiting (read them with audio_vad_pop). Up to 64 events are
 * kept; pop after every push (an older event is overwritten only if 64 pile up, and counted in lost). */
int audio_vad_push(audio_vad *v, const float *x, int64_t n);
/* Ends the stream: an utterance still open is closed at its last active sample. Returns events waiting. */
int audio_vad_finish(audio_vad *v);
int audio_vad_pop(audio_vad *v, audio_vad_event *ev); /* 1 = *ev filled, 0 = none waiting */

int audio_vad_in_speech(const audio_vad *v);  /* 1 inside a confirmed utterance */
float audio_vad_floor_db(const audio_vad *v); /* current noise floor estimate, dBFS */
float audio_vad_level_db(const audio_vad *v); /* energy of the last complete frame, dBFS (for level meters) */
int64_t audio_vad_lost(const audio_vad *v);   /* events overwritten because nobody popped them */

#endif
