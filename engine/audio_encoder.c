/* audio_encoder.c — the Qwen3-Omni AuT audio encoder (Qwen3OmniMoeAudioEncoder, transformers 5.17
 * models/qwen3_omni_moe/modeling_qwen3_omni_moe.py), written against backend.h only.
 *
 * What the reference does for the audios of one call (get_audio_features → Qwen3OmniMoeAudioEncoder.forward):
 *   1. chunk_and_pad_features: every audio is cut into chunks of 2·n_window mel frames (the tail keeps the rest), and
 *      ALL chunks of the call are right-padded with 0.0 to the longest chunk of the call.
 *   2. three Conv2d(k 3, stride 2, pad 1) + exact GELU over (freq, time) per chunk, then the [c, f, t] map is
 *      flattened per time step as feature c·F3 + f and projected by conv_out (no bias).
 *   3. the sinusoid table (SinusoidsPositionEmbedding) rows 0..T3-1 are added per chunk (positions restart at every
 *      chunk), and only the first _get_feat_extract_output_lengths(chunk_len) rows of each chunk are kept
 *      (get_valid_indices).
 *   4. encoder_layers pre-LN layers (Qwen3OmniMoeAudioEncoderLayer) with block-diagonal attention: each audio's tokens
 *      are cut into windows of max_len_after_cnn · (n_window_infer // (2·n_window)) tokens (get_audio_cu_seqlens).
 *   5. ln_post → proj1 → GELU → proj2.
 *
 * How we run it: attention never crosses a window and everything else is per token, so a window's tokens go through
 * all layers on their own. We process "segments" (whole consecutive windows, at most AENC_SEG_ROWS tokens unless one
 * window is longer): conv stack for the segment's chunks (in batches that fit AENC_CONV_BYTES), then every layer over
 * the segment's rows (attention window by window through the back-end's non-causal attention), then the head, then
 * download. Scratch memory therefore does not grow with the audio's length. Window boundaries always fall on chunk
 * boundaries (every non-tail chunk of an audio that has two or more chunks is full, so it yields max_len_after_cnn
 * tokens and windows are whole multiples of it), which is what lets a segment own whole chunks. */
#include "audio_encoder.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define AENC_LN_EPS 1e-5f           /* nn.LayerNorm default: self_attn_layer_norm, final_layer_norm, ln_post */
#ifndef AENC_SEG_ROWS
#define AENC_SEG_ROWS 512 /* tokens per pass through the layers (whole windows) */
#endif
#define AENC_CONV_BYTES (32u << 20) /* budget of one batch of chunks through the convs (~20 MiB a chunk, real shape) */
#define AENC_TOKENS_PER_CHUNK 13    /* _get_feat_extract_output_lengths hard-codes 13 tokens per 100-frame chunk */

/* Output length of Conv2d(k 3, stride 2, padding 1) along one axis: floor((L + 2 - 3) / 2) + 1 (L >= 1). */
static int conv_len(int L) { return L <= 0 ? 0 : (L - 1) / 2 + 1; }
static int conv3_len(int L) { return conv_len(conv_len(conv_len(L))); }

/* _get_feat_extract_output_lengths(n, n_window=50): 13 tokens per full 100-frame chunk plus the three-conv length of
 * the remainder (a remainder of 0 adds nothing). */
int omni_audio_n_tokens(int n_frames) {
    if (n_frames < 0) return OMNI_E_ARG;
    return conv3_len(n_frames % 100) + AENC_TOKENS_PER_CHUNK * (n_frames / 100);
}

/* ---- loading ----------------------------------------------------------------------------------------------------- */

static int bind_vec(omni_model *m, ob_mat *out, const char *pre, const char *name, int64_t n) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", pre, name);
    return omni_model_bind(m, out, full, n, 0, 0);
}

static int bind_mat(omni_model *m, ob_mat *out, const char *pre, const char *name, int64_t rows, int64_t cols) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", pre, name);
    return omni_model_bind(m, out, full, rows, cols, 1);
}

/* A Conv2d weight [cout, cin, 3, 3] bound as the [cout, cin·9] matrix im2col's column order (c·3 + ky)·3 + kx
 * expects — which is exactly PyTorch's memory order, so the stored bytes are used as they are. */
static int bind_conv(omni_model *m, ob_mat *out, const char *pre, const char *name, int64_t cout, int64_t cin) {
    char full[256];
    snprintf(full, sizeof full, "%s%s", pre, name);
    if (!m->st) return omni_model_bind(m, out, full, cout, cin * 9, 1); /* synthetic */
    const st_tensor *t;
    ob_dtype dt;
    int rc = omni_model_float_tensor(m, full, &t, &dt);
    if (rc) return rc;
    if (t->n_dims != 4 || t->shape[0] != cout || t->shape[1] != cin || t->shape[2] != 3 || t->shape[3] != 3)
        return omni_fail(&m->err, OMNI_E_TENSOR, "%s: tensor '%s' must have shape [%lld,%lld,3,3] from config.json",
                         t->file, full, (long long)cout, (long long)cin);
    return omni_model_mat_from_host(m, out, t->data, dt, cout, cin * 9, 1, full);
}

/* thinker_config.audio_config → hparams, failing on anything the reference would not run the way we do. */
static int read_hparams(omni_model *m, const cJSON *ac, aenc_hparams *h) {
    char where[1200];
    snprintf(where, sizeof where, "%s/config.json: thinker_config.audio_config", m->path);
    omni_err *e = &m->err;
    struct { const char *key; int32_t *v; } req[] = {
        { "num_mel_bins", &h->n_mels }, { "d_model", &h->d_model }, { "encoder_layers", &h->n_layers },
        { "encoder_attention_heads", &h->n_heads }, { "encoder_ffn_dim", &h->ffn },
        { "downsample_hidden_size", &h->ds }, { "output_dim", &h->out_dim }, { "n_window", &h->n_window },
        { "n_window_infer", &h->n_window_infer }, { "max_source_positions", &h->max_pos },
    };
    int rc;
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++) {
        if ((rc = cfg_int(ac, req[i].key, req[i].v, 1, where, e))) return rc;
        if (*req[i].v <= 0 || *req[i].v > (1 << 20))
            return omni_fail(e, OMNI_E_CONFIG, "%s: field '%s' must be in 1..%d (got %d)", where, req[i].key, 1 << 20,
                             *req[i].v);
    }
    h->conv_chunksize = 500; /* Qwen3OmniMoeAudioEncoderConfig default */
    if ((rc = cfg_int(ac, "conv_chunksize", &h->conv_chunksize, 0, where, e)) < 0) return rc;
    if (h->conv_chunksize <= 0) return omni_fail(e, OMNI_E_CONFIG, "%s: conv_chunksize must be positive", where);
    const cJSON *act = cJSON_GetObjectItemCaseSensitive(ac, "activation_function");
    if (act && !cJSON_IsNull(act) && (!cJSON_IsString(act) || strcmp(act->valuestring, "gelu")))
        return omni_fail(e, OMNI_E_UNSUPPORTED, "%s: activation_function must be \"gelu\" (the only one supported)",
                         where);
    /* scale_embedding only sets embed_scale, which Qwen3OmniMoeAudioEncoder.forward never applies: ignored */
    if (h->n_window != 50)
        return omni_fail(e, OMNI_E_UNSUPPORTED,
                         "%s: n_window %d is not supported (the reference's token count hard-codes 13 tokens per "
                         "100-frame chunk, i.e. n_window 50)", where, h->n_window);
    if (h->n_window_infer < 2 * h->n_window)
        return omni_fail(e, OMNI_E_CONFIG, "%s: n_window_infer %d is below one chunk (2·n_window = %d frames)", where,
                         h->n_window_infer, 2 * h->n_window);
    if (h->d_model % h->n_heads || (h->d_model / h->n_heads) % 2)
        return omni_fail(e, OMNI_E_CONFIG, "%s: d_model %d is not an even head_dim times encoder_attention_heads %d",
                         where, h->d_model, h->n_heads);
    if (h->d_model < 4) return omni_fail(e, OMNI_E_CONFIG, "%s: d_model must be at least 4", where);
    if (conv3_len(2 * h->n_window) > h->max_pos)
        return omni_fail(e, OMNI_E_CONFIG, "%s: max_source_positions %d is below the %d tokens of one chunk", where,
                         h->max_pos, conv3_len(2 * h->n_window));
    /* conv_out's in-features: downsample_hidden_size · ((((num_mel_bins + 1) // 2 + 1) // 2 + 1) // 2) */
    h->f3 = conv3_len(h->n_mels);
    return 0;
}

int aenc_load(omni_model *m) {
    const cJSON *th = cJSON_GetObjectItemCaseSensitive(m->hp.root, "thinker_config");
    const cJSON *ac = th ? cJSON_GetObjectItemCaseSensitive(th, "audio_config") : NULL;
    if (!cJSON_IsObject(ac)) return 0;
    /* tensor prefix: the decoder's "thinker.model." becomes "thinker.audio_tower." */
    char pre[64];
    size_t pl = strlen(m->hp.prefix);
    if (pl >= 6 && !strcmp(m->hp.prefix + pl - 6, "model.")) pl -= 6;
    snprintf(pre, sizeof pre, "%.*saudio_tower.", (int)pl, m->hp.prefix);
    if (m->st) {
        char probe[128];
        snprintf(probe, sizeof probe, "%sconv2d1.weight", pre);
        if (!st_find(m->st, probe)) return 0; /* a checkpoint without the audio tower: encoding is unsupported */
    }
    aenc_model *a = calloc(1, sizeof *a);
    if (!a) return omni_fail(&m->err, OMNI_E_NOMEM, "out of memory");
    m->audio = a;
    aenc_hparams *h = &a->hp;
    int rc;
    if ((rc = read_hparams(m, ac, h))) return rc;
    const int64_t D = h->d_model, C = h->ds;
    if ((rc = bind_conv(m, &a->conv1, pre, "conv2d1.weight", C, 1)) ||
        (rc = bind_vec(m, &a->conv1_b, pre, "conv2d1.bias", C)) ||
        (rc = bind_conv(m, &a->conv2, pre, "conv2d2.weight", C, C)) ||
        (rc = bind_vec(m, &a->conv2_b, pre, "conv2d2.bias", C)) ||
        (rc = bind_conv(m, &a->conv3, pre, "conv2d3.weight", C, C)) ||
        (rc = bind_vec(m, &a->conv3_b, pre, "conv2d3.bias", C)) ||
        (rc = bind_mat(m, &a->conv_out, pre, "conv_out.weight", D, C * h->f3)))
        return rc;
    a->layers = calloc((size_t)h->n_layers, sizeof *a->layers);
    if (!a->layers) return omni_fail(&m->err, OMNI_E_NOMEM, "out of memory");
    char name[128];
    for (int l = 0; l < h->n_layers; l++) {
        aenc_layer *L = &a->layers[l];
#define V(field, suffix, n)                                                                                           \
    do {                                                                                                              \
        snprintf(name, sizeof name, "layers.%d.%s", l, suffix);                                                       \
        if ((rc = bind_vec(m, &L->field, pre, name, n))) return rc;                                                   \
    } while (0)
#define M(field, suffix, r, c)                                                                                        \
    do {                                                                                                              \
        snprintf(name, sizeof name, "layers.%d.%s", l, suffix);                                                       \
        if ((rc = bind_mat(m, &L->field, pre, name, r, c))) return rc;                                                \
    } while (0)
        V(ln1_w, "self_attn_layer_norm.weight", D);
        V(ln1_b, "self_attn_layer_norm.bias", D);
        M(wq, "self_attn.q_proj.weight", D, D);
        V(bq, "self_attn.q_proj.bias", D);
        M(wk, "self_attn.k_proj.weight", D, D);
        V(bk, "self_attn.k_proj.bias", D);
        M(wv, "self_attn.v_proj.weight", D, D);
        V(bv, "self_attn.v_proj.bias", D);
        M(wo, "self_attn.out_proj.weight", D, D);
        V(bo, "self_attn.out_proj.bias", D);
        V(ln2_w, "final_layer_norm.weight", D);
        V(ln2_b, "final_layer_norm.bias", D);
        M(fc1, "fc1.weight", h->ffn, D);
        V(fc1_b, "fc1.bias", h->ffn);
        M(fc2, "fc2.weight", D, h->ffn);
        V(fc2_b, "fc2.bias", D);
#undef V
#undef M
    }
    if ((rc = bind_vec(m, &a->ln_post_w, pre, "ln_post.weight", D)) ||
        (rc = bind_vec(m, &a->ln_post_b, pre, "ln_post.bias", D)) ||
        (rc = bind_mat(m, &a->proj1, pre, "proj1.weight", D, D)) ||
        (rc = bind_vec(m, &a->proj1_b, pre, "proj1.bias", D)) ||
        (rc = bind_mat(m, &a->proj2, pre, "proj2.weight", h->out_dim, D)) ||
        (rc = bind_vec(m, &a->proj2_b, pre, "proj2.bias", h->out_dim)))
        return rc;
    return 0;
}

void aenc_free(aenc_model *a) {
    if (!a) return;
    free(a->layers);
    free(a);
}

/* ---- the plan of one call: chunks, windows, segments, scratch layout --------------------------------------------- */

typedef struct {
    int audio, frame0, len; /* source audio, first frame, frames (before padding) */
    int tok0, ntok;         /* first token (over the whole call) and tokens kept (get_valid_indices) */
} aenc_chunk;

typedef struct {
    int tok0, n;            /* a window of attention (get_audio_cu_seqlens) */
} aenc_window;

typedef struct {
    int tok0, n;            /* tokens of the segment */
    int win0, nwin;         /* its windows */
    int chunk0, nchunk;     /* its chunks */
} aenc_segment;

typedef struct {
    aenc_chunk *chunks;
    aenc_window *wins;
    aenc_segment *segs;
    int n_chunks, n_wins, n_segs, n_tokens;
    int Tp;                 /* frames of every padded chunk: the longest chunk of the call */
    int H1, W1, H2, W2, H3, W3; /* conv output sizes (freq H, time W); W3 = max_len_after_cnn */
    int window;             /* attention window in tokens */
    int seg_rows;           /* largest segment */
    int conv_batch;         /* chunks per pass through the conv stack */
    /* scratch layout (float offsets into one back-end buffer) */
    size_t o_x, o_pos, o_in, o_a, o_b, o_cout, o_xn, o_q, o_k, o_v, o_att, o_big, o_kc, o_vc, total;
} aenc_plan;

static void plan_free(aenc_plan *p) {
    free(p->chunks);
    free(p->wins);
    free(p->segs);
    memset(p, 0, sizeof *p);
}

static size_t zmax(size_t a, size_t b) { return a > b ? a : b; }

static int plan_make(const aenc_hparams *h, const int32_t *frames, int n_audios, aenc_plan *p, omni_err *e) {
    memset(p, 0, sizeof *p);
    const int CL = 2 * h->n_window;
    int64_t nc = 0, ntok = 0;
    for (int a = 0; a < n_audios; a++) {
        if (frames[a] <= 0)
            return omni_fail(e, OMNI_E_ARG, "omni_encode_audio: audio %d has %d mel frames (need at least 1)", a,
                             frames[a]);
        nc += (frames[a] + CL - 1) / CL;
        ntok += omni_audio_n_tokens(frames[a]);
    }
    if (ntok > (1 << 26))
        return omni_fail(e, OMNI_E_ARG, "omni_encode_audio: %lld audio tokens in one call is too many",
                         (long long)ntok);
    p->chunks = malloc(sizeof *p->chunks * (size_t)nc);
    if (!p->chunks) return omni_fail(e, OMNI_E_NOMEM, "omni_encode_audio: out of memory");
    /* chunk_and_pad_features + get_valid_indices */
    int tok = 0;
    for (int a = 0; a < n_audios; a++)
        for (int f = 0; f < frames[a]; f += CL) {
            aenc_chunk *c = &p->chunks[p->n_chunks++];
            c->audio = a;
            c->frame0 = f;
            c->len = frames[a] - f < CL ? frames[a] - f : CL;
            c->tok0 = tok;
            c->ntok = conv3_len(c->len);
            tok += c->ntok;
            if (c->len > p->Tp) p->Tp = c->len;
        }
    p->n_tokens = tok;
    p->H1 = conv_len(h->n_mels), p->W1 = conv_len(p->Tp);
    p->H2 = conv_len(p->H1), p->W2 = conv_len(p->W1);
    p->H3 = conv_len(p->H2), p->W3 = conv_len(p->W2);
    /* get_audio_cu_seqlens: window = max_len_after_cnn · (n_window_infer // (2·n_window)), per audio */
    p->window = p->W3 * (h->n_window_infer / CL);
    int64_t nw = 0;
    for (int a = 0; a < n_audios; a++) nw += (omni_audio_n_tokens(frames[a]) + p->window - 1) / p->window;
    p->wins = malloc(sizeof *p->wins * (size_t)nw);
    p->segs = malloc(sizeof *p->segs * (size_t)nw);
    if (!p->wins || !p->segs) {
        plan_free(p);
        return omni_fail(e, OMNI_E_NOMEM, "omni_encode_audio: out of memory");
    }
    for (int c = 0, a0 = 0; c < p->n_chunks; c = a0) {
        int a = p->chunks[c].audio, t0 = p->chunks[c].tok0, n = 0;
        for (a0 = c; a0 < p->n_chunks && p->chunks[a0].audio == a; a0++) n += p->chunks[a0].ntok;
        for (int s = 0; s < n; s += p->window) {
            aenc_window *w = &p->wins[p->n_wins++];
            w->tok0 = t0 + s;
            w->n = n - s < p->window ? n - s : p->window;
        }
    }
    /* segments: whole windows up to AENC_SEG_ROWS tokens (one window at least), and the chunks they own */
    int cap = p->window > AENC_SEG_ROWS ? p->window : AENC_SEG_ROWS, ci = 0;
    for (int w = 0; w < p->n_wins;) {
        aenc_segment *s = &p->segs[p->n_segs++];
        s->tok0 = p->wins[w].tok0;
        s->win0 = w;
        s->n = 0;
        while (w < p->n_wins && (s->n == 0 || s->n + p->wins[w].n <= cap)) s->n += p->wins[w++].n;
        s->nwin = w - s->win0;
        s->chunk0 = ci;
        if (p->chunks[ci].tok0 != s->tok0) goto misaligned;
        while (ci < p->n_chunks && p->chunks[ci].tok0 < s->tok0 + s->n) ci++;
        if (p->chunks[ci - 1].tok0 + p->chunks[ci - 1].ntok != s->tok0 + s->n) goto misaligned;
        s->nchunk = ci - s->chunk0;
        if (s->n > p->seg_rows) p->seg_rows = s->n;
    }
    /* scratch: x and the sinusoid rows live throughout; the conv region and the layer region are used one after
     * the other within a segment, so they share memory */
    const size_t D = (size_t)h->d_model, C = (size_t)h->ds, R = (size_t)p->seg_rows;
    size_t in1 = (size_t)h->n_mels * p->Tp;
    size_t a1 = zmax(zmax((size_t)p->H1 * p->W1 * 9, (size_t)p->H2 * p->W2 * C * 9),
                     zmax((size_t)p->H3 * p->W3 * C * 9, (size_t)p->W3 * C * p->H3));
    size_t b1 = zmax((size_t)p->H1 * p->W1 * C, zmax((size_t)p->H2 * p->W2 * C, (size_t)p->H3 * p->W3 * C));
    size_t c1 = (size_t)p->W3 * D;
    size_t per_chunk = (in1 + a1 + b1 + c1) * 4;
    size_t nb = AENC_CONV_BYTES / per_chunk;
    if (nb < 1) nb = 1;
    if (nb > (size_t)h->conv_chunksize) nb = (size_t)h->conv_chunksize;
    int most = 0; /* no batch needs more chunks than the largest segment has */
    for (int s = 0; s < p->n_segs; s++)
        if (p->segs[s].nchunk > most) most = p->segs[s].nchunk;
    if (nb > (size_t)most) nb = (size_t)most;
    p->conv_batch = (int)nb;
    size_t o = 0;
    p->o_x = o, o += R * D;
    p->o_pos = o, o += (size_t)p->W3 * D;
    size_t shared = o;
    p->o_in = o, o += nb * in1;
    p->o_a = o, o += nb * a1;
    p->o_b = o, o += nb * b1;
    p->o_cout = o, o += nb * c1;
    size_t conv_end = o;
    o = shared;
    p->o_xn = o, o += R * D;
    p->o_q = o, o += R * D;
    p->o_k = o, o += R * D;
    p->o_v = o, o += R * D;
    p->o_att = o, o += R * D;
    p->o_big = o, o += R * zmax((size_t)h->ffn, (size_t)h->out_dim);
    p->o_kc = o, o += (size_t)p->window * D;
    p->o_vc = o, o += (size_t)p->window * D;
    p->total = zmax(o, conv_end) * 4;
    return 0;
misaligned: /* cannot happen for n_window 50 (see the file comment); kept as a guard */
    plan_free(p);
    return omni_fail(e, OMNI_E_UNSUPPORTED, "omni_encode_audio: an attention window does not end on a chunk boundary");
}

size_t aenc_scratch_bytes(const omni_model *m, const int32_t *frames, int n_audios) {
    if (!m || !m->audio || !frames || n_audios <= 0) return 0;
    aenc_plan p;
    omni_err e;
    if (plan_make(&m->audio->hp, frames, n_audios, &p, &e)) return 0;
    size_t t = p.total;
    plan_free(&p);
    return t;
}

/* ---- forward ----------------------------------------------------------------------------------------------------- */

/* SinusoidsPositionEmbedding rows 0..n-1: inv[i] = exp(-i · ln(10000)/(d/2 - 1)), row p = [sin(p·inv), cos(p·inv)]
 * (sines in the first half). The reference builds it in fp32: the scaled increment and p·inv are fp32 products. */
static void sinusoids(float *out, int n, int d) {
    int half = d / 2;
    float inc = (float)(log(10000.0) / (half - 1));
    for (int p = 0; p < n; p++)
        for (int i = 0; i < half; i++) {
            float inv = expf(-inc * (float)i), t = (float)p * inv;
            out[(size_t)p * d + i] = sinf(t);
            out[(size_t)p * d + half + i] = cosf(t);
        }
}

typedef struct {
    omni_model *m;
    const aenc_model *a;
    const aenc_plan *p;
    ob_backend *be;
    const ob_ops *op;
    ob_buf *buf;
    float *pack;            /* host: one batch of padded chunks [nb][n_mels][Tp] */
} aenc_run;

#define AT(r, o) ((ob_ptr){ (r)->buf, (o) * 4 })

/* Conv stack for chunks [c0, c0+nb) of the plan, writing their kept tokens (+ sinusoids) into x at segment row
 * (chunk.tok0 - seg_tok0). Mirrors the loop over padded_feature.split(conv_chunksize) in
 * Qwen3OmniMoeAudioEncoder.forward, then conv_out, the positional add and index_select(valid_indices). */
static int conv_batch(aenc_run *r, const float *const *features, const int32_t *frames, int c0, int nb, int seg_tok0) {
    const aenc_hparams *h = &r->a->hp;
    const aenc_plan *p = r->p;
    const ob_ops *op = r->op;
    ob_backend *be = r->be;
    const int F = h->n_mels, T = p->Tp, C = h->ds, D = h->d_model;
    /* chunk_and_pad_features: frames of the chunk, zeros up to the call's longest chunk */
    memset(r->pack, 0, sizeof(float) * (size_t)nb * F * T);
    for (int j = 0; j < nb; j++) {
        const aenc_chunk *c = &p->chunks[c0 + j];
        const float *src = features[c->audio];
        for (int f = 0; f < F; f++)
            memcpy(r->pack + ((size_t)j * F + f) * T, src + (size_t)f * frames[c->audio] + c->frame0,
                   sizeof(float) * (size_t)c->len);
    }
    int rc = op->upload(be, r->buf, p->o_in * 4, r->pack, sizeof(float) * (size_t)nb * F * T);
    if (rc) return rc;
    ob_ptr in = AT(r, p->o_in), A = AT(r, p->o_a), B = AT(r, p->o_b), cout = AT(r, p->o_cout);
    /* conv2d1 (1 channel, [F][T] per chunk) → channels-last [nb][H1][W1][C] */
    int n1 = nb * p->H1 * p->W1, n2 = nb * p->H2 * p->W2, n3 = nb * p->H3 * p->W3;
    const int64_t s0[4] = { (int64_t)F * T, (int64_t)F * T, T, 1 };
    op->im2col(be, in, nb, 1, F, T, s0, 3, 2, 1, A);
    op->matmul(be, &r->a->conv1, A, B, n1, 0);
    op->add_bias(be, B, &r->a->conv1_b, n1, C);
    op->gelu(be, B, B, (int64_t)n1 * C, 0);
    /* conv2d2 over the channels-last map: element strides (batch, channel, y, x) */
    const int64_t s1[4] = { (int64_t)p->H1 * p->W1 * C, 1, (int64_t)p->W1 * C, C };
    op->im2col(be, B, nb, C, p->H1, p->W1, s1, 3, 2, 1, A);
    op->matmul(be, &r->a->conv2, A, B, n2, 0);
    op->add_bias(be, B, &r->a->conv2_b, n2, C);
    op->gelu(be, B, B, (int64_t)n2 * C, 0);
    const int64_t s2[4] = { (int64_t)p->H2 * p->W2 * C, 1, (int64_t)p->W2 * C, C };
    op->im2col(be, B, nb, C, p->H2, p->W2, s2, 3, 2, 1, A);
    op->matmul(be, &r->a->conv3, A, B, n3, 0);
    op->add_bias(be, B, &r->a->conv3_b, n3, C);
    op->gelu(be, B, B, (int64_t)n3 * C, 0);
    /* [nb][f][t][c] → [nb][t][c][f]: the reference's permute(0, 3, 1, 2).view(b, t, c·f) of its [b, c, f, t] map */
    const int64_t d[4] = { nb, p->W3, C, p->H3 };
    const int64_t st[4] = { (int64_t)p->H3 * p->W3 * C, C, 1, (int64_t)p->W3 * C };
    op->permute(be, B, A, d, st);
    op->matmul(be, &r->a->conv_out, A, cout, nb * p->W3, 0);
    /* keep each chunk's first ntok rows; positions restart at 0 in every chunk */
    ob_ptr pos = AT(r, p->o_pos);
    for (int j = 0; j < nb; j++) {
        const aenc_chunk *c = &p->chunks[c0 + j];
        ob_ptr dst = AT(r, p->o_x + (size_t)(c->tok0 - seg_tok0) * D);
        op->copy(be, ob_at(cout, (size_t)j * p->W3 * D * 4), dst, (size_t)c->ntok * D * 4);
        op->add(be, pos, dst, (int64_t)c->ntok * D);
    }
    return 0;
}

/* One Qwen3OmniMoeAudioEncoderLayer over the segment's n rows; attention (Qwen3OmniMoeAudioAttention, eager path:
 * one softmax per cu_seqlens window) runs window by window through a window-sized cache at position 0. */
static void layer(aenc_run *r, const aenc_layer *L, const aenc_segment *s) {
    const aenc_hparams *h = &r->a->hp;
    const aenc_plan *p = r->p;
    const ob_ops *op = r->op;
    ob_backend *be = r->be;
    const int n = s->n, D = h->d_model, hd = D / h->n_heads;
    ob_ptr x = AT(r, p->o_x), xn = AT(r, p->o_xn), q = AT(r, p->o_q), k = AT(r, p->o_k), v = AT(r, p->o_v),
           att = AT(r, p->o_att), big = AT(r, p->o_big), kc = AT(r, p->o_kc), vc = AT(r, p->o_vc);
    ob_attn at = { h->n_heads, h->n_heads, hd, 1.0f / sqrtf((float)hd), 0, 0, 0 }; /* scaling = head_dim ** -0.5 */
    op->layer_norm(be, x, &L->ln1_w, &L->ln1_b, xn, n, D, AENC_LN_EPS);
    op->matmul(be, &L->wq, xn, q, n, 0);
    op->add_bias(be, q, &L->bq, n, D);
    op->matmul(be, &L->wk, xn, k, n, 0);
    op->add_bias(be, k, &L->bk, n, D);
    op->matmul(be, &L->wv, xn, v, n, 0);
    op->add_bias(be, v, &L->bv, n, D);
    for (int w = s->win0; w < s->win0 + s->nwin; w++) {
        const aenc_window *win = &p->wins[w];
        size_t off = (size_t)(win->tok0 - s->tok0) * D * 4;
        op->kv_store(be, kc, vc, p->window, ob_at(k, off), ob_at(v, off), 0, win->n, &at);
        op->attention(be, ob_at(q, off), kc, vc, p->window, ob_at(att, off), 0, win->n, &at);
    }
    op->matmul(be, &L->wo, att, x, n, 1); /* residual + out_proj(attn) */
    op->add_bias(be, x, &L->bo, n, D);
    op->layer_norm(be, x, &L->ln2_w, &L->ln2_b, xn, n, D, AENC_LN_EPS);
    op->matmul(be, &L->fc1, xn, big, n, 0);
    op->add_bias(be, big, &L->fc1_b, n, h->ffn);
    op->gelu(be, big, big, (int64_t)n * h->ffn, 0); /* ACT2FN["gelu"]: exact erf form */
    op->matmul(be, &L->fc2, big, x, n, 1);          /* residual + fc2(...) */
    op->add_bias(be, x, &L->fc2_b, n, D);
}

/* ln_post → proj1 → GELU → proj2 over the segment's rows, downloaded into out (host, [n][out_dim]). */
static int head(aenc_run *r, const aenc_segment *s, float *out) {
    const aenc_hparams *h = &r->a->hp;
    const aenc_plan *p = r->p;
    const ob_ops *op = r->op;
    ob_backend *be = r->be;
    const int n = s->n, D = h->d_model;
    ob_ptr x = AT(r, p->o_x), xn = AT(r, p->o_xn), t = AT(r, p->o_q), y = AT(r, p->o_big);
    op->layer_norm(be, x, &r->a->ln_post_w, &r->a->ln_post_b, xn, n, D, AENC_LN_EPS);
    op->matmul(be, &r->a->proj1, xn, t, n, 0);
    op->add_bias(be, t, &r->a->proj1_b, n, D);
    op->gelu(be, t, t, (int64_t)n * D, 0);
    op->matmul(be, &r->a->proj2, t, y, n, 0);
    op->add_bias(be, y, &r->a->proj2_b, n, h->out_dim);
    return op->download(be, y.buf, y.off, out, sizeof(float) * (size_t)n * h->out_dim);
}

int omni_encode_audio(omni_model *m, const float *const *features, const int32_t *frames, int n_audios, float **embeds,
                      int32_t *n_tokens) {
    if (!m) return OMNI_E_ARG;
    if (embeds) *embeds = NULL;
    if (!m->audio || !m->be)
        return omni_fail(&m->err, OMNI_E_UNSUPPORTED, "%s: this model has no audio encoder (thinker.audio_tower)",
                         m->path);
    if (!features || !frames || !embeds || !n_tokens || n_audios <= 0)
        return omni_fail(&m->err, OMNI_E_ARG, "omni_encode_audio: needs features, frames, embeds, n_tokens and "
                                              "n_audios >= 1");
    for (int a = 0; a < n_audios; a++)
        if (!features[a]) return omni_fail(&m->err, OMNI_E_ARG, "omni_encode_audio: features[%d] is NULL", a);
    const aenc_model *am = m->audio;
    const aenc_hparams *h = &am->hp;
    aenc_plan p;
    int rc = plan_make(h, frames, n_audios, &p, &m->err);
    if (rc) return rc;
    if (p.W3 > h->max_pos) { /* the reference slices positional_embedding[:T3] */
        plan_free(&p);
        return omni_fail(&m->err, OMNI_E_UNSUPPORTED, "omni_encode_audio: %d tokens per chunk exceed "
                                                      "max_source_positions %d", p.W3, h->max_pos);
    }
    ob_backend *be = m->be;
    aenc_run r = { m, am, &p, be, be->ops, NULL, NULL };
    float *out = malloc(sizeof(float) * ((size_t)p.n_tokens * h->out_dim));
    float *pos = malloc(sizeof(float) * (size_t)p.W3 * h->d_model);
    r.pack = malloc(sizeof(float) * (size_t)p.conv_batch * h->n_mels * p.Tp);
    r.buf = be->ops->alloc(be, p.total);
    if (!out || !pos || !r.pack || !r.buf) {
        rc = omni_fail(&m->err, OMNI_E_NOMEM, "omni_encode_audio: cannot allocate %zu bytes of scratch on %s",
                       p.total, be->ops->name);
        goto done;
    }
    sinusoids(pos, p.W3, h->d_model);
    if ((rc = be->ops->upload(be, r.buf, p.o_pos * 4, pos, sizeof(float) * (size_t)p.W3 * h->d_model))) goto fail_be;
    for (int si = 0; si < p.n_segs; si++) {
        const aenc_segment *s = &p.segs[si];
        for (int c = s->chunk0; c < s->chunk0 + s->nchunk; c += p.conv_batch) {
            int nb = s->chunk0 + s->nchunk - c < p.conv_batch ? s->chunk0 + s->nchunk - c : p.conv_batch;
            if ((rc = conv_batch(&r, features, frames, c, nb, s->tok0))) goto fail_be;
        }
        for (int l = 0; l < h->n_layers; l++) layer(&r, &am->layers[l], s);
        if ((rc = head(&r, s, out + (size_t)s->tok0 * h->out_dim))) goto fail_be;
    }
    if ((rc = be->ops->sync(be))) goto fail_be;
    for (int a = 0; a < n_audios; a++) n_tokens[a] = omni_audio_n_tokens(frames[a]);
    *embeds = out;
    out = NULL;
    goto done;
fail_be:
    rc = omni_fail(&m->err, OMNI_E_BACKEND, "omni_encode_audio: back-end %s failed: %s", be->ops->name,
                   be->err[0] ? be->err : "(no detail)");
done:
    if (r.buf) be->ops->buf_free(be, r.buf);
    free(r.pack);
    free(pos);
    free(out);
    plan_free(&p);
    return rc;
}
