/* vad.c — energy voice-activity detector: high-pass, framed energy, adaptive floor, hysteresis state machine.
 *
 * States: SILENCE → (a frame start_db above the floor) → PENDING → (min_speech_ms of active frames) → SPEECH
 * → (hangover_ms without an active frame) → SILENCE. PENDING falls back to SILENCE after hangover_ms of inactivity,
 * so clicks and short bumps never produce events. The floor is a one-pole smoother in the dB domain with
 * different time constants up and down (fast down, slow up: it settles near the lower envelope of the background,
 * the usual cheap stand-in for minimum statistics). */
#include "vad.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define VAD_QUEUE 64
#define VAD_MIN_DB (-120.0f)

enum { ST_SILENCE, ST_PENDING, ST_SPEECH };

struct audio_vad {
    audio_vad_params p;
    int64_t frame_len;        /* samples per frame */
    int64_t min_speech_frames, hangover_frames;
    float a_up, a_up_speech, a_down; /* per-frame smoothing factors of the floor */
    float hp_a;               /* one-pole high-pass coefficient, exp(-2π·80/rate) */
    float hp_x1, hp_y1;       /* high-pass state */
    double acc;               /* sum of squares of the frame so far */
    int64_t acc_n;            /* samples in the frame so far */
    int64_t pos;              /* absolute index of the next sample */
    int have_floor;
    float floor_db, level_db;
    int state;
    int64_t cand_start;       /* first sample of the candidate utterance (PENDING/SPEECH) */
    int64_t active_frames;    /* active frames since cand_start (PENDING) */
    int64_t gap_frames;       /* inactive frames since the last active one */
    int64_t last_active_end;  /* last sample of the last active frame */
    audio_vad_event q[VAD_QUEUE];
    int q_head, q_len;
    int64_t lost;
};

audio_vad_params audio_vad_default_params(int32_t rate) {
    audio_vad_params p = { 0 };
    p.rate = rate;
    p.frame_ms = 10.0f;
    p.start_db = 12.0f;
    p.stop_db = 6.0f;
    p.min_level_db = -55.0f;
    p.min_speech_ms = 120.0f;
    p.hangover_ms = 400.0f;
    p.floor_up_ms = 1500.0f;
    p.floor_up_speech_ms = 20000.0f;
    p.floor_down_ms = 30.0f;
    return p;
}

static float smooth(float frame_ms, float tau_ms) { return 1.0f - expf(-frame_ms / tau_ms); }

int audio_vad_init(audio_vad **out, const audio_vad_params *p, audio_err *e) {
    if (!out || !p) return audio_fail(e, AUDIO_E_ARG, "vad: no params or output handle");
    *out = NULL;
    if (p->rate < 1000 || p->rate > 768000) return audio_fail(e, AUDIO_E_ARG, "vad: rate %d Hz", p->rate);
    if (!(p->frame_ms >= 1.0f && p->frame_ms <= 100.0f))
        return audio_fail(e, AUDIO_E_ARG, "vad: frame_ms %g outside 1..100", p->frame_ms);
    if (!(p->stop_db <= p->start_db)) return audio_fail(e, AUDIO_E_ARG, "vad: stop_db above start_db");
    if (!(p->min_speech_ms >= 0) || !(p->hangover_ms >= 0) || !(p->floor_up_ms > 0) ||
        !(p->floor_up_speech_ms > 0) || !(p->floor_down_ms > 0))
        return audio_fail(e, AUDIO_E_ARG, "vad: negative durations or non-positive time constants");
    audio_vad *v = calloc(1, sizeof *v);
    if (!v) return audio_fail(e, AUDIO_E_NOMEM, "vad: out of memory");
    v->p = *p;
    v->frame_len = (int64_t)lrintf(p->rate * p->frame_ms / 1000.0f);
    if (v->frame_len < 1) v->frame_len = 1;
    float fms = 1000.0f * (float)v->frame_len / (float)p->rate; /* actual frame length after rounding */
    v->min_speech_frames = (int64_t)ceilf(p->min_speech_ms / fms);
    if (v->min_speech_frames < 1) v->min_speech_frames = 1;
    v->hangover_frames = (int64_t)ceilf(p->hangover_ms / fms);
    if (v->hangover_frames < 1) v->hangover_frames = 1;
    v->a_up = smooth(fms, p->floor_up_ms);
    v->a_up_speech = smooth(fms, p->floor_up_speech_ms);
    v->a_down = smooth(fms, p->floor_down_ms);
    v->hp_a = expf(-2.0f * 3.14159265f * 80.0f / (float)p->rate);
    audio_vad_reset(v);
    *out = v;
    return 0;
}

void audio_vad_free(audio_vad *v) { free(v); }

void audio_vad_reset(audio_vad *v) {
    if (!v) return;
    v->hp_x1 = v->hp_y1 = 0;
    v->acc = 0;
    v->acc_n = 0;
    v->pos = 0;
    v->have_floor = 0;
    v->floor_db = v->level_db = VAD_MIN_DB;
    v->state = ST_SILENCE;
    v->cand_start = v->active_frames = v->gap_frames = 0;
    v->last_active_end = -1;
    v->q_head = v->q_len = 0;
    v->lost = 0;
}

static void emit(audio_vad *v, int type, int64_t sample) {
    if (v->q_len == VAD_QUEUE) { /* nobody pops: overwrite the oldest */
        v->q_head = (v->q_head + 1) % VAD_QUEUE;
        v->q_len--;
        v->lost++;
    }
    v->q[(v->q_head + v->q_len) % VAD_QUEUE] = (audio_vad_event){ type, sample };
    v->q_len++;
}

/* One complete frame covering samples [start, start + frame_len). */
static void frame(audio_vad *v, int64_t start, double mean_sq) {
    float db = mean_sq > 1e-12 ? (float)(10.0 * log10(mean_sq)) : VAD_MIN_DB;
    int64_t end = start + v->frame_len - 1;
    v->level_db = db;
    if (!v->have_floor) {
        v->floor_db = db;
        v->have_floor = 1;
    }
    float start_thr = fmaxf(v->floor_db + v->p.start_db, v->p.min_level_db);
    float stop_thr = fmaxf(v->floor_db + v->p.stop_db, v->p.min_level_db);
    int active = db > stop_thr, strong = db > start_thr;
    switch (v->state) {
    case ST_SILENCE:
        if (strong) {
            v->state = ST_PENDING;
            v->cand_start = start;
            v->active_frames = 1;
            v->gap_frames = 0;
            v->last_active_end = end;
            if (v->min_speech_frames <= 1) {
                v->state = ST_SPEECH;
                emit(v, AUDIO_VAD_START, v->cand_start);
            }
        }
        break;
    case ST_PENDING:
        if (active) {
            v->active_frames++;
            v->gap_frames = 0;
            v->last_active_end = end;
            if (v->active_frames >= v->min_speech_frames) {
                v->state = ST_SPEECH;
                emit(v, AUDIO_VAD_START, v->cand_start);
            }
        } else if (++v->gap_frames >= v->hangover_frames) {
            v->state = ST_SILENCE;
        }
        break;
    default: /* ST_SPEECH */
        if (active) {
            v->gap_frames = 0;
            v->last_active_end = end;
        } else if (++v->gap_frames >= v->hangover_frames) {
            v->state = ST_SILENCE;
            emit(v, AUDIO_VAD_END, v->last_active_end);
        }
        break;
    }
    float a = db < v->floor_db ? v->a_down : v->state == ST_SILENCE ? v->a_up : v->a_up_speech;
    v->floor_db += (db - v->floor_db) * a;
}

int audio_vad_push(audio_vad *v, const float *x, int64_t n) {
    if (!v) return 0;
    for (int64_t i = 0; x && i < n; i++) {
        /* first-order high-pass (DC blocker at 80 Hz): y[n] = a·(y[n-1] + x[n] - x[n-1]) */
        float xi = isfinite(x[i]) ? x[i] : 0.0f;
        float y = v->hp_a * (v->hp_y1 + xi - v->hp_x1);
        v->hp_x1 = xi;
        v->hp_y1 = y;
        v->acc += (double)y * y;
        if (++v->acc_n == v->frame_len) {
            frame(v, v->pos + i + 1 - v->frame_len, v->acc / (double)v->frame_len);
            v->acc = 0;
            v->acc_n = 0;
        }
    }
    if (x && n > 0) v->pos += n;
    return v->q_len;
}

int audio_vad_finish(audio_vad *v) {
    if (!v) return 0;
    if (v->state == ST_SPEECH) emit(v, AUDIO_VAD_END, v->last_active_end);
    v->state = ST_SILENCE;
    return v->q_len;
}

int audio_vad_pop(audio_vad *v, audio_vad_event *ev) {
    if (!v || !v->q_len) return 0;
    if (ev) *ev = v->q[v->q_head];
    v->q_head = (v->q_head + 1) % VAD_QUEUE;
    v->q_len--;
    return 1;
}

int audio_vad_in_speech(const audio_vad *v) { return v && v->state == ST_SPEECH; }
float audio_vad_floor_db(const audio_vad *v) { return v ? v->floor_db : VAD_MIN_DB; }
float audio_vad_level_db(const audio_vad *v) { return v ? v->level_db : VAD_MIN_DB; }
int64_t audio_vad_lost(const audio_vad *v) { return v ? v->lost : 0; }
