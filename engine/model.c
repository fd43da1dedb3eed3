/* model.c — opens a checkpoint folder: config, safetensors, tokenizer and chat template; binds every weight the
 * text decoder needs (checking presence, dtype and shape against config.json), optionally quantizing to Q8_0, or
 * builds synthetic random weights from a config alone (benchmarks). */
#include "model.h"

#include <libgen.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "audio_encoder.h"
#include "vision_encoder.h"
#include "tokenizer.h"

omni_model_params omni_model_default_params(void) {
    omni_model_params p;
    memset(&p, 0, sizeof p);
    p.backend = OMNI_BACKEND_AUTO;
    p.device = -1;
    p.synthetic_seed = 1234;
    return p;
}

const char *omni_model_error(const omni_model *m) { return m ? m->err.msg : ""; }

omni_sampling_params omni_model_sampling_defaults(const omni_model *m) {
    omni_sampling_params p = omni_sampling_default_params();
    const omni_hparams *hp = &m->hp;
    if (!hp->gen_do_sample || hp->gen_temperature <= 0) return p;
    p.temperature = hp->gen_temperature;
    if (hp->gen_top_k > 0) p.top_k = hp->gen_top_k;
    if (hp->gen_top_p > 0) p.top_p = hp->gen_top_p;
    if (hp->gen_min_p > 0) p.min_p = hp->gen_min_p;
    if (hp->gen_repetition_penalty > 0) p.repetition_penalty = hp->gen_repetition_penalty;
    return p;
}

static int keep_buf(omni_model *m, ob_buf *b) {
    if (m->n_bufs == m->cap_bufs) {
        int cap = m->cap_bufs ? m->cap_bufs * 2 : 256;
        ob_buf **p = realloc(m->bufs, sizeof *p * (size_t)cap);
        if (!p) return OMNI_E_NOMEM;
        m->bufs = p;
        m->cap_bufs = cap;
    }
    m->bufs[m->n_bufs++] = b;
    return 0;
}

static int progress(omni_model *m, int64_t done, int64_t total) {
    if (m->params.progress && m->params.progress("loading", done, total, m->params.progress_user_data))
        return omni_fail(&m->err, OMNI_E_CANCELLED, "loading cancelled");
    return 0;
}

static ob_dtype dtype_from_st(st_dtype t, int *ok) {
    *ok = 1;
    switch (t) {
    case ST_F32: return OB_F32;
    case ST_F16: return OB_F16;
    case ST_BF16: return OB_BF16;
    default: *ok = 0; return OB_F32;
    }
}

/* Makes a backend matrix from host data (mmapped or synthetic). With Q8_0 requested and a quantizable shape the
 * rows are expanded to fp32 and quantized (ob_quantize_q8_0), otherwise the data is wrapped as stored. */
static int mat_from_host(omni_model *m, ob_mat *out, const void *data, ob_dtype t, int64_t rows, int64_t cols,
                         int quant_ok, const char *name) {
    ob_backend *be = m->be;
    int quant = quant_ok && m->params.weights == OMNI_WEIGHTS_Q8_0 && cols % 32 == 0 && rows > 1 && t != OB_Q8_0;
    if (quant) {
        size_t bytes = ob_dtype_bytes(OB_Q8_0, rows * cols);
        void *q = malloc(bytes);
        float *row = malloc((size_t)cols * sizeof *row);
        uint8_t *one = malloc(ob_dtype_bytes(OB_Q8_0, cols));
        if (!q || !row || !one) {
            free(q), free(row), free(one);
            return omni_fail(&m->err, OMNI_E_NOMEM, "%s: out of memory quantizing", name);
        }
        /* our q8_0 layout keeps all quants first, then all scales: quantize row by row and scatter */
        int8_t *qq = q;
        uint16_t *sc = (uint16_t *)((uint8_t *)q + rows * cols);
        for (int64_t r = 0; r < rows; r++) {
            ob_row_to_f32(data, t, rows, cols, r, row);
            ob_quantize_q8_0(row, 1, cols, one);
            memcpy(qq + r * cols, one, (size_t)cols);
            memcpy(sc + r * (cols / 32), one + cols, (size_t)(cols / 32) * 2);
        }
        free(row);
        free(one);
        ob_buf *b = be->ops->alloc(be, bytes);
        if (!b || keep_buf(m, b)) {
            free(q);
            return omni_fail(&m->err, OMNI_E_NOMEM, "%s: cannot allocate %zu bytes on %s", name, bytes,
                             be->ops->name);
        }
        int rc = be->ops->upload(be, b, 0, q, bytes);
        free(q);
        if (rc) return omni_fail(&m->err, OMNI_E_BACKEND, "%s: upload failed", name);
        *out = ob_mat_make((ob_ptr){ b, 0 }, OB_Q8_0, rows, cols);
        m->weight_bytes += (int64_t)bytes;
        return 0;
    }
    size_t bytes = ob_dtype_bytes(t, rows * cols);
    int copied = 0;
    ob_buf *b = be->ops->wrap_host(be, data, bytes, &copied);
    if (!b || keep_buf(m, b))
        return omni_fail(&m->err, OMNI_E_NOMEM, "%s: cannot place %zu bytes on %s", name, bytes, be->ops->name);
    *out = ob_mat_make((ob_ptr){ b, 0 }, t, rows, cols);
    m->weight_bytes += (int64_t)bytes;
    return 0;
}

/* ---- synthetic weights: a repeating random pattern, norms = 1 ------------------------------------------------------ */

#define SYN_POOL (1 << 20)
static uint16_t *syn_pool_bf16(uint64_t seed) {
    uint16_t *p = malloc(SYN_POOL * 2 + 64);
    if (!p) return NULL;
    omni_rng r = { seed };
    for (int i = 0; i < SYN_POOL + 32; i++) p[i] = omni_f32_to_bf16((omni_rng_uniform(&r) * 2 - 1) * 0.035f);
    return p;
}

static int synth_mat(omni_model *m, ob_mat *out, int64_t rows, int64_t cols, int is_norm, const char *name) {
    static uint16_t *pool;
    static uint64_t pool_seed;
    if (!pool || pool_seed != m->params.synthetic_seed) {
        free(pool);
        pool = syn_pool_bf16(m->params.synthetic_seed);
        pool_seed = m->params.synthetic_seed;
        if (!pool) return omni_fail(&m->err, OMNI_E_NOMEM, "out of memory");
    }
    int64_t n = rows * cols;
    if (is_norm) {
        uint16_t *w = malloc((size_t)n * 2);
        if (!w) return omni_fail(&m->err, OMNI_E_NOMEM, "out of memory");
        for (int64_t i = 0; i < n; i++) w[i] = 0x3f80; /* 1.0 */
        ob_buf *b = m->be->ops->alloc(m->be, (size_t)n * 2);
        int rc = (!b || keep_buf(m, b)) ? OMNI_E_NOMEM : m->be->ops->upload(m->be, b, 0, w, (size_t)n * 2);
        free(w);
        if (rc) return omni_fail(&m->err, OMNI_E_NOMEM, "%s: cannot allocate", name);
        *out = ob_mat_make((ob_ptr){ b, 0 }, OB_BF16, rows, cols);
        m->weight_bytes += n * 2;
        return 0;
    }
    int q8 = m->params.weights == OMNI_WEIGHTS_Q8_0 && cols % 32 == 0;
    ob_dtype t = q8 ? OB_Q8_0 : OB_BF16;
    size_t bytes = ob_dtype_bytes(t, n);
    ob_buf *b = m->be->ops->alloc(m->be, bytes);
    if (!b || keep_buf(m, b))
        return omni_fail(&m->err, OMNI_E_NOMEM, "%s: cannot allocate %zu bytes on %s", name, bytes, m->be->ops->name);
    /* upload in chunks from the pool, shifting the start so matrices differ */
    static uint64_t shift;
    size_t done = 0, chunk = (size_t)SYN_POOL * 2;
    size_t data_bytes = q8 ? (size_t)n : bytes;
    while (done < data_bytes) {
        size_t len = data_bytes - done < chunk - 64 ? data_bytes - done : chunk - 64;
        shift = (shift + 7919) % 4096;
        int rc = m->be->ops->upload(m->be, b, done, (const uint8_t *)pool + shift * 2 % 64, len);
        if (rc) return omni_fail(&m->err, OMNI_E_BACKEND, "%s: upload failed", name);
        done += len;
    }
    if (q8) { /* scales: ~0.035/127 so dequantized values match the bf16 pattern's range */
        size_t ns = (size_t)(n / 32);
        uint16_t *sc = malloc(ns * 2 < chunk ? ns * 2 : chunk);
        if (!sc) return omni_fail(&m->err, OMNI_E_NOMEM, "out of memory");
        size_t per = (ns * 2 < chunk ? ns * 2 : chunk) / 2;
        for (size_t i = 0; i < per; i++) sc[i] = omni_f32_to_f16(0.035f / 127.0f * (0.5f + (float)(i % 7) / 7.0f));
        for (size_t s = 0; s < ns; s += per) {
            size_t len = (ns - s < per ? ns - s : per) * 2;
            if (m->be->ops->upload(m->be, b, (size_t)n + s * 2, sc, len)) {
                free(sc);
                return omni_fail(&m->err, OMNI_E_BACKEND, "%s: upload failed", name);
            }
        }
        free(sc);
    }
    *out = ob_mat_make((ob_ptr){ b, 0 }, t, rows, cols);
    m->weight_bytes += (int64_t)bytes;
    return 0;
}

/* Binds tensor `name` with the shape config.json implies ([rows] if cols == 0, else [rows, cols]). */
int omni_model_float_tensor(omni_model *m, const char *name, const st_tensor **out, ob_dtype *dt) {
    const st_tensor *t = m->st ? st_find(m->st, name) : NULL;
    if (!t) return omni_fail(&m->err, OMNI_E_TENSOR, "%s: tensor '%s' is missing from the checkpoint", m->path, name);
    int ok;
    *dt = dtype_from_st(t->dtype, &ok);
    if (!ok)
        return omni_fail(&m->err, OMNI_E_UNSUPPORTED, "%s: tensor '%s' has dtype %s (expected BF16, F16 or F32)",
                         t->file, name, st_dtype_name(t->dtype));
    *out = t;
    return 0;
}

/* A Q8_0 checkpoint (omni quantize) stores a matrix as `NAME` int8 [rows, cols] plus `NAME_scale` fp16
 * [rows, cols/32]. Checks both and copies quants + scales into our one-buffer layout (quants, then scales) at
 * dst (host memory of ob_dtype_bytes(OB_Q8_0, rows*cols) bytes). */
static int q8_tensors(omni_model *m, const st_tensor *t, const char *name, int64_t rows, int64_t cols,
                      const st_tensor **scale) {
    char sn[300];
    snprintf(sn, sizeof sn, "%s_scale", name);
    const st_tensor *s = st_find(m->st, sn);
    if (t->n_dims != 2 || t->shape[0] != rows || t->shape[1] != cols || cols % 32)
        return omni_fail(&m->err, OMNI_E_TENSOR, "%s: int8 tensor '%s' must be [%lld,%lld] (a multiple of 32 columns)",
                         t->file, name, (long long)rows, (long long)cols);
    if (!s || s->dtype != ST_F16 || s->n_dims != 2 || s->shape[0] != rows || s->shape[1] != cols / 32)
        return omni_fail(&m->err, OMNI_E_TENSOR, "%s: Q8_0 tensor '%s' needs '%s' F16 [%lld,%lld]", t->file, name, sn,
                         (long long)rows, (long long)(cols / 32));
    *scale = s;
    return 0;
}

static int bind_q8(omni_model *m, ob_mat *out, const st_tensor *t, const char *name, int64_t rows, int64_t cols) {
    const st_tensor *s;
    int rc = q8_tensors(m, t, name, rows, cols, &s);
    if (rc) return rc;
    size_t bytes = ob_dtype_bytes(OB_Q8_0, rows * cols);
    ob_buf *b = m->be->ops->alloc(m->be, bytes);
    if (!b || keep_buf(m, b)) return omni_fail(&m->err, OMNI_E_NOMEM, "%s: cannot allocate %zu bytes", name, bytes);
    if (m->be->ops->upload(m->be, b, 0, t->data, t->nbytes) ||
        m->be->ops->upload(m->be, b, t->nbytes, s->data, s->nbytes))
        return omni_fail(&m->err, OMNI_E_BACKEND, "%s: upload failed", name);
    *out = ob_mat_make((ob_ptr){ b, 0 }, OB_Q8_0, rows, cols);
    m->weight_bytes += (int64_t)bytes;
    return 0;
}

static int bind(omni_model *m, ob_mat *out, const char *name, int64_t rows, int64_t cols, int quant_ok) {
    int is_vec = cols == 0;
    if (is_vec) cols = rows, rows = 1;
    if (!m->st) return synth_mat(m, out, rows, cols, is_vec, name);
    const st_tensor *t = st_find(m->st, name);
    if (!t) return omni_fail(&m->err, OMNI_E_TENSOR, "%s: tensor '%s' is missing from the checkpoint", m->path, name);
    if (t->dtype == ST_I8 && !is_vec) return bind_q8(m, out, t, name, rows, cols);
    ob_dtype dt;
    int rc = omni_model_float_tensor(m, name, &t, &dt);
    if (rc) return rc;
    int good = is_vec ? (t->n_dims == 1 && t->shape[0] == cols)
                      : (t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols);
    if (!good) {
        char got[128] = "", want[64];
        size_t o = 0;
        for (int i = 0; i < t->n_dims && o < sizeof got - 24; i++)
            o += (size_t)snprintf(got + o, sizeof got - o, "%s%lld", i ? "," : "", (long long)t->shape[i]);
        if (is_vec) snprintf(want, sizeof want, "%lld", (long long)cols);
        else snprintf(want, sizeof want, "%lld,%lld", (long long)rows, (long long)cols);
        return omni_fail(&m->err, OMNI_E_TENSOR, "%s: tensor '%s' has shape [%s], expected [%s] from config.json",
                         t->file, name, got, want);
    }
    return mat_from_host(m, out, t->data, dt, rows, cols, quant_ok && !is_vec, name);
}

int omni_model_bind(omni_model *m, ob_mat *out, const char *name, int64_t rows, int64_t cols, int quant_ok) {
    return bind(m, out, name, rows, cols, quant_ok);
}

int omni_model_mat_from_host(omni_model *m, ob_mat *out, const void *data, ob_dtype t, int64_t rows, int64_t cols,
                             int quant_ok, const char *name) {
    return mat_from_host(m, out, data, t, rows, cols, quant_ok, name);
}

/* A [rows, cols] view of rows [r0, r0 + r) of matrix f (the row-concatenation trick for fused projections). */
ob_mat omni_mat_rows_view(const ob_mat *f, int64_t r0, int64_t r) {
    ob_mat v = *f;
    v.rows = r;
    if (f->dtype == OB_Q8_0) {
        v.data.off += (size_t)(r0 * f->cols);
        v.scale_off = (size_t)(f->rows * f->cols - r0 * f->cols + r0 * (f->cols / 32) * 2);
    } else v.data.off += ob_dtype_bytes(f->dtype, r0 * f->cols);
    return v;
}

/* Binds k matrices with the same column count as one row-concatenated matrix `fused` and makes `outs` views of it.
 * On a device back-end this lets single-token decode run q|k|v (or gate|up) as one matrix-vector product at no
 * memory cost; the separate views serve the multi-token path. */
static int bind_fused(omni_model *m, ob_mat *fused, ob_mat **outs, const char **names, const int64_t *rows, int k,
                      int64_t cols, int quant_ok) {
    int64_t total = 0;
    for (int i = 0; i < k; i++) total += rows[i];
    int rc;
    if (!m->st) {
        if ((rc = synth_mat(m, fused, total, cols, 0, names[0]))) return rc;
    } else {
        const st_tensor *t[4];
        ob_dtype dt = OB_F32;
        const st_tensor *t0 = st_find(m->st, names[0]);
        if (t0 && t0->dtype == ST_I8) { /* a Q8_0 checkpoint: concatenate quants, then scales */
            const st_tensor *sc[4];
            for (int i = 0; i < k; i++) {
                t[i] = st_find(m->st, names[i]);
                if (!t[i] || t[i]->dtype != ST_I8) {
                    ob_mat tmp;
                    if ((rc = bind(m, &tmp, names[i], rows[i], cols, quant_ok))) return rc;
                    return omni_fail(&m->err, OMNI_E_TENSOR, "%s: tensor '%s' is not int8 like '%s'", m->path, names[i],
                                     names[0]);
                }
                if ((rc = q8_tensors(m, t[i], names[i], rows[i], cols, &sc[i]))) return rc;
            }
            size_t bytes = ob_dtype_bytes(OB_Q8_0, total * cols), qo = 0, so = (size_t)(total * cols);
            ob_buf *b = m->be->ops->alloc(m->be, bytes);
            if (!b || keep_buf(m, b)) return omni_fail(&m->err, OMNI_E_NOMEM, "%s: cannot allocate", names[0]);
            for (int i = 0; i < k; i++) {
                if (m->be->ops->upload(m->be, b, qo, t[i]->data, t[i]->nbytes) ||
                    m->be->ops->upload(m->be, b, so, sc[i]->data, sc[i]->nbytes))
                    return omni_fail(&m->err, OMNI_E_BACKEND, "%s: upload failed", names[i]);
                qo += t[i]->nbytes;
                so += sc[i]->nbytes;
            }
            *fused = ob_mat_make((ob_ptr){ b, 0 }, OB_Q8_0, total, cols);
            m->weight_bytes += (int64_t)bytes;
            for (int i = 0, r0 = 0; i < k; r0 += (int)rows[i], i++) *outs[i] = omni_mat_rows_view(fused, r0, rows[i]);
            return 0;
        }
        for (int i = 0; i < k; i++) {
            t[i] = st_find(m->st, names[i]);
            int ok;
            ob_dtype d = t[i] ? dtype_from_st(t[i]->dtype, &ok) : OB_F32;
            if (!t[i] || !ok || t[i]->n_dims != 2 || t[i]->shape[0] != rows[i] || t[i]->shape[1] != cols ||
                (i && d != dt)) {
                ob_mat tmp; /* let bind() produce the precise error */
                if ((rc = bind(m, &tmp, names[i], rows[i], cols, quant_ok))) return rc;
                return omni_fail(&m->err, OMNI_E_TENSOR, "%s: tensor '%s' has a different dtype than '%s'", t[i]->file,
                                 names[i], names[0]);
            }
            dt = d;
        }
        size_t es = ob_dtype_bytes(dt, 1), off = 0;
        uint8_t *cat = malloc((size_t)total * (size_t)cols * es);
        if (!cat) return omni_fail(&m->err, OMNI_E_NOMEM, "out of memory fusing '%s'", names[0]);
        for (int i = 0; i < k; i++) {
            memcpy(cat + off, t[i]->data, t[i]->nbytes);
            off += t[i]->nbytes;
        }
        if (quant_ok && m->params.weights == OMNI_WEIGHTS_Q8_0 && cols % 32 == 0)
            rc = mat_from_host(m, fused, cat, dt, total, cols, quant_ok, names[0]); /* quantizes into its own buffer */
        else { /* a buffer of our own: wrap_host may keep the pointer (CPU) and cat is freed below */
            size_t bytes = (size_t)total * (size_t)cols * es;
            rc = 0;
            ob_buf *b = m->be->ops->alloc(m->be, bytes);
            if (!b || keep_buf(m, b)) rc = omni_fail(&m->err, OMNI_E_NOMEM, "%s: cannot allocate %zu bytes", names[0], bytes);
            else if (m->be->ops->upload(m->be, b, 0, cat, bytes)) rc = omni_fail(&m->err, OMNI_E_BACKEND, "%s: upload failed", names[0]);
            else {
                *fused = ob_mat_make((ob_ptr){ b, 0 }, dt, total, cols);
                m->weight_bytes += (int64_t)bytes;
            }
        }
        free(cat);
        if (rc) return rc;
    }
    for (int i = 0, r0 = 0; i < k; r0 += (int)rows[i], i++) *outs[i] = omni_mat_rows_view(fused, r0, rows[i]);
    return 0;
}

/* Experts of one MoE layer: per-expert tensors (what save_pretrained writes), or the fused 3-D tensors
 * `mlp.experts.gate_up_proj` [E, 2I, H] (gate rows first) + `mlp.experts.down_proj` [E, H, I] of transformers v5. */
static int bind_experts(omni_model *m, omni_layer *L, int l) {
    const omni_text_hparams *h = &m->hp.text;
    int E = h->n_experts;
    int64_t I = h->moe_intermediate, H = h->hidden;
    L->exp_gate = calloc((size_t)E, sizeof(ob_mat));
    L->exp_up = calloc((size_t)E, sizeof(ob_mat));
    L->exp_down = calloc((size_t)E, sizeof(ob_mat));
    if (!L->exp_gate || !L->exp_up || !L->exp_down) return omni_fail(&m->err, OMNI_E_NOMEM, "out of memory");
    char name[256];
    const char *pre = m->hp.prefix;
    if (m->st) {
        snprintf(name, sizeof name, "%slayers.%d.mlp.experts.gate_up_proj", pre, l);
        const st_tensor *gu = st_find(m->st, name);
        snprintf(name, sizeof name, "%slayers.%d.mlp.experts.0.gate_proj.weight", pre, l);
        if (gu && !st_find(m->st, name)) {
            char dn[256];
            snprintf(dn, sizeof dn, "%slayers.%d.mlp.experts.down_proj", pre, l);
            const st_tensor *d = st_find(m->st, dn);
            int ok1, ok2;
            ob_dtype t1 = dtype_from_st(gu->dtype, &ok1), t2 = d ? dtype_from_st(d->dtype, &ok2) : OB_F32;
            if (!d) return omni_fail(&m->err, OMNI_E_TENSOR, "%s: tensor '%s' is missing", m->path, dn);
            if (!ok1 || !ok2 || gu->n_dims != 3 || gu->shape[0] != E || gu->shape[1] != 2 * I || gu->shape[2] != H ||
                d->n_dims != 3 || d->shape[0] != E || d->shape[1] != H || d->shape[2] != I)
                return omni_fail(&m->err, OMNI_E_TENSOR,
                                 "%s: fused expert tensors of layer %d have an unexpected dtype or shape", gu->file, l);
            size_t es1 = ob_dtype_bytes(t1, 1), es2 = ob_dtype_bytes(t2, 1);
            for (int e = 0; e < E; e++) {
                const uint8_t *g = (const uint8_t *)gu->data + (size_t)e * 2 * I * H * es1;
                int rc;
                if ((rc = mat_from_host(m, &L->exp_gate[e], g, t1, I, H, 1, name)) ||
                    (rc = mat_from_host(m, &L->exp_up[e], g + (size_t)I * H * es1, t1, I, H, 1, name)) ||
                    (rc = mat_from_host(m, &L->exp_down[e], (const uint8_t *)d->data + (size_t)e * H * I * es2, t2, H,
                                        I, 1, dn)))
                    return rc;
            }
            return 0;
        }
    }
    for (int e = 0; e < E; e++) {
        int rc;
        snprintf(name, sizeof name, "%slayers.%d.mlp.experts.%d.gate_proj.weight", pre, l, e);
        if ((rc = bind(m, &L->exp_gate[e], name, I, H, 1))) return rc;
        snprintf(name, sizeof name, "%slayers.%d.mlp.experts.%d.up_proj.weight", pre, l, e);
        if ((rc = bind(m, &L->exp_up[e], name, I, H, 1))) return rc;
        snprintf(name, sizeof name, "%slayers.%d.mlp.experts.%d.down_proj.weight", pre, l, e);
        if ((rc = bind(m, &L->exp_down[e], name, H, I, 1))) return rc;
    }
    return 0;
}

static int bind_text(omni_model *m) {
    const omni_text_hparams *h = &m->hp.text;
    const char *pre = m->hp.prefix;
    char name[256];
    int rc;
    int64_t H = h->hidden, QD = (int64_t)h->n_heads * h->head_dim, KD = (int64_t)h->n_kv_heads * h->head_dim;
    snprintf(name, sizeof name, "%sembed_tokens.weight", pre);
    if ((rc = bind(m, &m->w.embed, name, h->vocab_size, H, 1))) return rc;
    m->w.layers = calloc((size_t)h->n_layers, sizeof *m->w.layers);
    if (!m->w.layers) return omni_fail(&m->err, OMNI_E_NOMEM, "out of memory");
    /* device back-ends copy the weights anyway: lay q|k|v and gate|up out contiguously (see bind_fused); the CPU
     * back-end keeps the mmapped tensors in place. OMNI_NO_FUSE=1 turns it off (to bisect), OMNI_FUSE=1 forces it
     * (tests exercise the fused path on the CPU back-end). */
    int fuse = (strcmp(m->be->ops->name, "cpu") != 0 || getenv("OMNI_FUSE")) && !getenv("OMNI_NO_FUSE");
    for (int l = 0; l < h->n_layers; l++) {
        omni_layer *L = &m->w.layers[l];
        if ((rc = progress(m, l, h->n_layers + 1))) return rc;
#define B(field, suffix, r, c, q)                                                                                     \
    do {                                                                                                              \
        snprintf(name, sizeof name, "%slayers.%d.%s", pre, l, suffix);                                                \
        if ((rc = bind(m, &L->field, name, r, c, q))) return rc;                                                      \
    } while (0)
        B(attn_norm, "input_layernorm.weight", H, 0, 0);
        B(ffn_norm, "post_attention_layernorm.weight", H, 0, 0);
        if (fuse) {
            char nq[256], nk[256], nv[256];
            snprintf(nq, sizeof nq, "%slayers.%d.self_attn.q_proj.weight", pre, l);
            snprintf(nk, sizeof nk, "%slayers.%d.self_attn.k_proj.weight", pre, l);
            snprintf(nv, sizeof nv, "%slayers.%d.self_attn.v_proj.weight", pre, l);
            const char *names[3] = { nq, nk, nv };
            ob_mat *outs[3] = { &L->wq, &L->wk, &L->wv };
            int64_t rows[3] = { QD, KD, KD };
            if ((rc = bind_fused(m, &L->wqkv, outs, names, rows, 3, H, 1))) return rc;
        } else {
            B(wq, "self_attn.q_proj.weight", QD, H, 1);
            B(wk, "self_attn.k_proj.weight", KD, H, 1);
            B(wv, "self_attn.v_proj.weight", KD, H, 1);
        }
        B(wo, "self_attn.o_proj.weight", H, QD, 1);
        if (h->attention_bias) {
            B(bq, "self_attn.q_proj.bias", QD, 0, 0);
            B(bk, "self_attn.k_proj.bias", KD, 0, 0);
            B(bv, "self_attn.v_proj.bias", KD, 0, 0);
            B(bo, "self_attn.o_proj.bias", H, 0, 0);
        }
        B(q_norm, "self_attn.q_norm.weight", h->head_dim, 0, 0);
        B(k_norm, "self_attn.k_norm.weight", h->head_dim, 0, 0);
        L->is_moe = h->layer_is_moe[l];
        if (L->is_moe) {
            B(router, "mlp.gate.weight", h->n_experts, H, 0); /* router stays as stored: routing is sensitive */
            if ((rc = bind_experts(m, L, l))) return rc;
        } else {
            if (fuse) {
                char ng[256], nu[256];
                snprintf(ng, sizeof ng, "%slayers.%d.mlp.gate_proj.weight", pre, l);
                snprintf(nu, sizeof nu, "%slayers.%d.mlp.up_proj.weight", pre, l);
                const char *names[2] = { ng, nu };
                ob_mat *outs[2] = { &L->w_gate, &L->w_up };
                int64_t rows[2] = { h->intermediate, h->intermediate };
                if ((rc = bind_fused(m, &L->w_gate_up, outs, names, rows, 2, H, 1))) return rc;
            } else {
                B(w_gate, "mlp.gate_proj.weight", h->intermediate, H, 1);
                B(w_up, "mlp.up_proj.weight", h->intermediate, H, 1);
            }
            B(w_down, "mlp.down_proj.weight", H, h->intermediate, 1);
        }
#undef B
    }
    snprintf(name, sizeof name, "%snorm.weight", pre);
    if ((rc = bind(m, &m->w.norm, name, H, 0, 0))) return rc;
    if (h->tie_embeddings && (!m->st || !st_find(m->st, m->hp.lm_head))) m->w.lm_head = m->w.embed;
    else if ((rc = bind(m, &m->w.lm_head, m->hp.lm_head, h->vocab_size, H, 1))) return rc;
    return progress(m, h->n_layers + 1, h->n_layers + 1);
}

/* Parameter counts per part: exact from the tensor table when there is one, else from the config. */
static void count_params(omni_model *m) {
    memset(m->params_part, 0, sizeof m->params_part);
    m->bytes_bf16 = m->bytes_q8 = 0;
    if (m->st) {
        for (int i = 0; i < st_count(m->st); i++) {
            const st_tensor *t = st_get(m->st, i);
            int64_t n = 1;
            for (int d = 0; d < t->n_dims; d++) n *= t->shape[d];
            size_t nl = strlen(t->name);
            if (nl > 6 && !strcmp(t->name + nl - 6, "_scale") && t->dtype == ST_F16) { /* Q8_0 scales: not params */
                char base[300];
                snprintf(base, sizeof base, "%.*s", (int)(nl - 6), t->name);
                const st_tensor *b = st_find(m->st, base);
                if (b && b->dtype == ST_I8) continue;
            }
            m->bytes_bf16 += n * 2;
            m->bytes_q8 += (t->n_dims >= 2 && t->shape[t->n_dims - 1] % 32 == 0) ? n + n / 16 : n * 2;
            int part = 0;
            if (!strncmp(t->name, "thinker.audio_tower.", 20)) part = 1;
            else if (!strncmp(t->name, "thinker.visual.", 15)) part = 2;
            else if (!strncmp(t->name, "talker.", 7)) part = 3;
            else if (!strncmp(t->name, "code2wav.", 9)) part = 4;
            m->params_part[part] += n;
        }
        return;
    }
    const omni_text_hparams *h = &m->hp.text;
    int64_t H = h->hidden, QD = (int64_t)h->n_heads * h->head_dim, KD = (int64_t)h->n_kv_heads * h->head_dim;
    int64_t n = h->vocab_size * H * (h->tie_embeddings ? 1 : 2) + H;
    for (int l = 0; l < h->n_layers; l++) {
        n += 2 * H * QD + 2 * H * KD + 2 * h->head_dim + 2 * H + (h->attention_bias ? QD + 2 * KD + H : 0);
        n += h->layer_is_moe[l] ? (int64_t)h->n_experts * H + (int64_t)h->n_experts * 3 * H * h->moe_intermediate
                                : 3 * H * h->intermediate;
    }
    m->params_part[0] = n;
    m->bytes_bf16 = n * 2;
    m->bytes_q8 = n + n / 16; /* nearly all of it is matrices */
}

static int64_t active_params(const omni_model *m) {
    const omni_text_hparams *h = &m->hp.text;
    int64_t H = h->hidden, QD = (int64_t)h->n_heads * h->head_dim, KD = (int64_t)h->n_kv_heads * h->head_dim;
    int64_t n = h->vocab_size * H + 2 * H; /* lm_head + one embedding row + final norm */
    for (int l = 0; l < h->n_layers; l++) {
        n += 2 * H * QD + 2 * H * KD + 2 * h->head_dim + 2 * H;
        n += h->layer_is_moe[l] ? (int64_t)h->n_experts * H + (int64_t)h->n_experts_used * 3 * H * h->moe_intermediate
                                : 3 * H * h->intermediate;
    }
    return n;
}

static int load_tokenizer(omni_model *m, const char *dir) {
    char p[1200];
    omni_path_join(p, sizeof p, dir, "tokenizer.json");
    if (omni_file_exists(p)) {
        int rc = tok_load(p, &m->tok, &m->err);
        if (rc) return rc;
    }
    /* chat template: chat_template.json {"chat_template": "..."} (Qwen3-Omni), else tokenizer_config.json's */
    const char *files[] = { "chat_template.json", "tokenizer_config.json" };
    for (int i = 0; i < 2 && !m->chat_template; i++) {
        omni_path_join(p, sizeof p, dir, files[i]);
        if (!omni_file_exists(p)) continue;
        char *text = omni_read_file(p, NULL, &m->err);
        if (!text) return OMNI_E_IO;
        cJSON *j = cJSON_Parse(text);
        free(text);
        if (!cJSON_IsObject(j)) {
            cJSON_Delete(j);
            return omni_fail(&m->err, OMNI_E_FORMAT, "%s: not a valid JSON object", p);
        }
        const cJSON *ct = cJSON_GetObjectItemCaseSensitive(j, "chat_template");
        if (cJSON_IsString(ct)) m->chat_template = strdup(ct->valuestring);
        cJSON_Delete(j);
    }
    m->chat = chat_style_detect(m->chat_template);
    if (!m->chat_template && m->hp.arch != OMNI_ARCH_QWEN3_OMNI) m->chat.kind = CHAT_QWEN3;
    return 0;
}

#ifdef OMNI_HAVE_VULKAN
/* weak until the Vulkan back-end is linked in every build: without it AUTO falls back to the CPU */
extern ob_backend *ob_vulkan_new(int device, char *err, size_t err_cap) __attribute__((weak));
#endif

static ob_backend *make_backend(omni_model *m) {
    omni_backend_kind k = m->params.backend;
    if (k == OMNI_BACKEND_VULKAN || k == OMNI_BACKEND_AUTO) {
#ifdef OMNI_HAVE_VULKAN
        char why[256] = "this build has no Vulkan back-end";
        ob_backend *b = ob_vulkan_new ? ob_vulkan_new(m->params.device, why, sizeof why) : NULL;
        /* AUTO takes a real GPU only: a software rasteriser (lavapipe) is far slower than the CPU back-end */
        if (b && k == OMNI_BACKEND_AUTO && strstr(b->ops->device_name(b), "llvmpipe")) {
            b->ops->destroy(b);
            b = NULL;
            snprintf(why, sizeof why, "only a software Vulkan device");
        }
        if (b) return b;
        if (k == OMNI_BACKEND_VULKAN) {
            omni_fail(&m->err, OMNI_E_BACKEND, "Vulkan: %s", why[0] ? why : "no device");
            return NULL;
        }
        omni_log(OMNI_LOG_INFO, "no Vulkan GPU (%s); running on the CPU", why);
#else
        if (k == OMNI_BACKEND_VULKAN) {
            omni_fail(&m->err, OMNI_E_UNSUPPORTED, "this build of omni has no Vulkan support");
            return NULL;
        }
#endif
    }
    ob_backend *b = ob_cpu_new(m->params.n_threads);
    if (!b) omni_fail(&m->err, OMNI_E_NOMEM, "cannot start the CPU back-end");
    return b;
}

int omni_model_load(const char *path, const omni_model_params *params, omni_model **out, char *err_msg,
                    size_t err_cap) {
    *out = NULL;
    omni_model *m = calloc(1, sizeof *m);
    if (!m) {
        if (err_msg && err_cap) snprintf(err_msg, err_cap, "out of memory");
        return OMNI_E_NOMEM;
    }
    m->params = params ? *params : omni_model_default_params();
    m->chat = chat_style_default();
    char dir[1024], cfg[1200], gen[1200];
    struct stat st;
    int rc = 0;
    if (stat(path, &st) != 0) {
        rc = omni_fail(&m->err, OMNI_E_IO, "%s: no such file or folder", path);
        goto fail;
    }
    if (S_ISDIR(st.st_mode)) {
        snprintf(dir, sizeof dir, "%s", path);
        omni_path_join(cfg, sizeof cfg, dir, "config.json");
    } else { /* a config.json given directly (synthetic benchmarks) */
        char tmp[1024];
        snprintf(tmp, sizeof tmp, "%s", path);
        snprintf(dir, sizeof dir, "%s", dirname(tmp));
        snprintf(cfg, sizeof cfg, "%s", path);
        m->params.synthetic = 1;
    }
    snprintf(m->path, sizeof m->path, "%s", dir);
    char *text = omni_read_file(cfg, NULL, &m->err);
    if (!text) {
        rc = OMNI_E_IO;
        goto fail;
    }
    omni_path_join(gen, sizeof gen, dir, "generation_config.json");
    char *gtext = (S_ISDIR(st.st_mode) && omni_file_exists(gen)) ? omni_read_file(gen, NULL, &m->err) : NULL;
    rc = omni_hparams_parse(&m->hp, text, cfg, gtext, gen, &m->err);
    free(text);
    free(gtext);
    if (rc) goto fail;
    if (!m->params.synthetic && (rc = st_open_dir(dir, &m->st, &m->err))) goto fail;
    if (!m->params.vocab_only) {
        if (!(m->be = make_backend(m))) {
            rc = OMNI_E_BACKEND;
            goto fail;
        }
        if ((rc = bind_text(m))) goto fail;
        if (m->hp.has_audio_cfg && (rc = aenc_load(m))) goto fail; /* audio tower, when the checkpoint has one */
        if (m->hp.has_vision_cfg && (rc = venc_load(m))) goto fail; /* vision tower, likewise */
        if ((rc = m->be->ops->sync(m->be))) {
            omni_fail(&m->err, rc, "back-end: %s", m->be->err);
            goto fail;
        }
    }
    if (S_ISDIR(st.st_mode) && (rc = load_tokenizer(m, dir))) goto fail;
    count_params(m);
    *out = m;
    return 0;
fail:
    if (err_msg && err_cap) snprintf(err_msg, err_cap, "%s", m->err.msg[0] ? m->err.msg : omni_strerror(rc));
    omni_model_free(m);
    return rc ? rc : OMNI_E_IO;
}

void omni_model_free(omni_model *m) {
    if (!m) return;
    if (m->w.layers) {
        for (int l = 0; l < m->hp.text.n_layers; l++) {
            free(m->w.layers[l].exp_gate);
            free(m->w.layers[l].exp_up);
            free(m->w.layers[l].exp_down);
        }
        free(m->w.layers);
    }
    aenc_free(m->audio);
    venc_free(m->vision);
    if (m->be) {
        for (int i = 0; i < m->n_bufs; i++) m->be->ops->buf_free(m->be, m->bufs[i]);
        m->be->ops->destroy(m->be);
    }
    free(m->bufs);
    st_close(m->st);
    tok_free(m->tok);
    free(m->chat_template);
    omni_hparams_free(&m->hp);
    free(m);
}

void omni_model_set_profile(omni_model *m, int on) { m->params.profile = on != 0; }

int omni_model_profile(omni_model *m, double *ms, const char *const **names) {
    if (!m->be || !m->be->ops->prof_read || !m->params.profile) return 0;
    m->be->ops->sync(m->be);
    m->be->ops->prof_read(m->be, ms);
    if (names) *names = ob_prof_names;
    return OB_PROF_N;
}

int omni_model_profile_kernels(omni_model *m, const char **names, double *ms, int *calls, int cap) {
    if (!m->be || !m->be->ops->prof_kernels || !m->params.profile) return 0;
    return m->be->ops->prof_kernels(m->be, names, ms, calls, cap);
}

void omni_model_get_info(const omni_model *m, omni_model_info *info) {
    memset(info, 0, sizeof *info);
    const omni_text_hparams *h = &m->hp.text;
    info->arch = m->hp.arch;
    info->arch_name = m->hp.arch_name;
    info->vocab_size = h->vocab_size;
    info->hidden = h->hidden;
    info->n_layers = h->n_layers;
    info->n_heads = h->n_heads;
    info->n_kv_heads = h->n_kv_heads;
    info->head_dim = h->head_dim;
    info->n_experts = h->n_experts;
    info->n_experts_used = h->n_experts_used;
    info->max_ctx = h->max_pos;
    info->n_eos = m->hp.n_eos;
    for (int i = 0; i < m->hp.n_eos; i++) info->eos_ids[i] = m->hp.eos[i];
    info->params_thinker = m->params_part[0];
    info->params_audio = m->params_part[1];
    info->params_vision = m->params_part[2];
    info->params_talker = m->params_part[3];
    info->params_code2wav = m->params_part[4];
    info->has_audio = m->params_part[1] > 0 || (!m->st && m->hp.has_audio_cfg);
    info->has_vision = m->params_part[2] > 0 || (!m->st && m->hp.has_vision_cfg);
    info->has_talker = m->params_part[3] > 0 || (!m->st && m->hp.has_talker_cfg && m->hp.enable_audio_output);
    info->has_code2wav = m->params_part[4] > 0;
    info->active_params = active_params(m);
    info->audio_token_id = m->hp.audio_token_id;
    info->image_token_id = m->hp.image_token_id;
    info->video_token_id = m->hp.video_token_id;
    info->bytes_bf16 = m->bytes_bf16;
    info->bytes_q8_0 = m->bytes_q8;
    info->weight_bytes = m->weight_bytes;
    /* as the session allocates it: the back-end's element size (fp16 on Vulkan, fp32 on the CPU and without one) */
    info->kv_bytes_per_token =
        (int64_t)h->n_layers * 2 * (int64_t)ob_kv_cache_bytes(m->be, h->n_kv_heads, 1, h->head_dim);
    info->backend_name = m->be ? m->be->ops->name : "none";
    info->device_name = m->be ? m->be->ops->device_name(m->be) : "none";
}
