/* vision_encoder.c — the Qwen3-Omni vision tower, written against backend.h. Reads top to bottom like
 * Qwen3OmniMoeVisionEncoder.forward (transformers 5.17, modeling_qwen3_omni_moe.py):
 *   x = patch_embed(pixel_values) + bilinear(pos_embed)        Conv3d as a matmul over each 1536-float patch vector
 *   27 × { x += proj(attn(rope2d(q), rope2d(k), v)) on norm1(x);  x += fc2(gelu_tanh(fc1(norm2(x)))) }
 *        after the blocks in deepstack_visual_indexes: deepstack[j] = merger_list[j](x)   (view to 4·hidden, LN)
 *   embeds = merger(x)                                           (LN per patch, view to 4·hidden, MLP)
 * Attention is full within each frame (temporal group) and never across frames (cu_seqlens of
 * vision_utils.get_vision_cu_seqlens), so every frame is independent end to end: frames are processed in chunks that
 * bound the scratch memory. Patches arrive in the processor's merge-block order (block row, block column, row in
 * block, column in block), which positions, the position table and the mergers all follow. */
#include "vision_encoder.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- hyper-parameters ---------------------------------------------------------------------------------------- */

static const cJSON *obj_get(const cJSON *o, const char *k) { return o ? cJSON_GetObjectItemCaseSensitive(o, k) : NULL; }

static int parse_hparams(omni_model *m, const cJSON *vc, venc_hparams *h) {
    char where[1200];
    snprintf(where, sizeof where, "%s/config.json: thinker_config.vision_config", m->path);
    omni_err *e = &m->err;
    memset(h, 0, sizeof *h);
    struct {
        const char *key;
        int32_t *dst;
    } req[] = {
        { "depth", &h->depth },
        { "hidden_size", &h->hidden },
        { "num_heads", &h->n_heads },
        { "intermediate_size", &h->ffn },
        { "patch_size", &h->patch },
        { "temporal_patch_size", &h->tpatch },
        { "spatial_merge_size", &h->merge },
        { "in_channels", &h->in_ch },
        { "out_hidden_size", &h->out_hidden },
        { "num_position_embeddings", &h->n_pos },
    };
    for (size_t i = 0; i < sizeof req / sizeof req[0]; i++) {
        int rc = cfg_int(vc, req[i].key, req[i].dst, 1, where, e);
        if (rc) return rc;
        if (*req[i].dst <= 0 || *req[i].dst > (1 << 20))
            return omni_fail(e, OMNI_E_CONFIG, "%s: field '%s' = %d is out of range", where, req[i].key, *req[i].dst);
    }
    const cJSON *act = obj_get(vc, "hidden_act");
    if (act && !cJSON_IsNull(act) && (!cJSON_IsString(act) || strcmp(act->valuestring, "gelu_pytorch_tanh")))
        return omni_fail(e, OMNI_E_UNSUPPORTED, "%s: hidden_act '%s' is not supported (only gelu_pytorch_tanh)", where,
                         cJSON_IsString(act) ? act->valuestring : "?");
    if (h->hidden % h->n_heads)
        return omni_fail(e, OMNI_E_CONFIG, "%s: hidden_size %d is not a multiple of num_heads %d", where, h->hidden,
                         h->n_heads);
    h->head_dim = h->hidden / h->n_heads;
    /* Qwen3OmniMoeVisionRotaryEmbedding: head_dim/4 frequencies per axis, cat(rows, cols) duplicated to head_dim */
    if (h->head_dim % 4 || h->head_dim > 1024)
        return omni_fail(e, OMNI_E_UNSUPPORTED, "%s: head dim %d must be a multiple of 4 (2-D rotary) and <= 1024",
                         where, h->head_dim);
    h->side = (int32_t)lround(sqrt((double)h->n_pos));
    if ((int64_t)h->side * h->side != h->n_pos)
        return omni_fail(e, OMNI_E_CONFIG, "%s: num_position_embeddings %d is not a square", where, h->n_pos);
    int64_t pd = (int64_t)h->in_ch * h->tpatch * h->patch * h->patch;
    if (pd > (1 << 24)) return omni_fail(e, OMNI_E_CONFIG, "%s: patch vector of %lld floats is too large", where,
                                         (long long)pd);
    h->patch_dim = (int32_t)pd;
    h->eps = 1e-6f; /* nn.LayerNorm(..., eps=1e-6) in Qwen3OmniMoeVisionBlock and Qwen3OmniMoeVisionPatchMerger */
    /* rope_parameters.rope_theta (transformers 5 style), a top-level rope_theta, else the default 10000 */
    h->rope_theta = 10000.0f;
    int rc = cfg_float(obj_get(vc, "rope_parameters"), "rope_theta", &h->rope_theta, 0, where, e);
    if (rc == 1) rc = cfg_float(vc, "rope_theta", &h->rope_theta, 0, where, e);
    if (rc < 0) return rc;
    if (!(h->rope_theta > 1.0f)) return omni_fail(e, OMNI_E_CONFIG, "%s: rope_theta must be > 1", where);
    const cJSON *ds = obj_get(vc, "deepstack_visual_indexes");
    if (!ds || cJSON_IsNull(ds)) return omni_fail(e, OMNI_E_CONFIG, "%s: missing field 'deepstack_visual_indexes'", where);
    if (!cJSON_IsArray(ds) || cJSON_GetArraySize(ds) > VENC_MAX_LEVELS)
        return omni_fail(e, OMNI_E_CONFIG, "%s: deepstack_visual_indexes must be a list of at most %d block indexes",
                         where, VENC_MAX_LEVELS);
    const cJSON *it;
    cJSON_ArrayForEach(it, ds) {
        double d = cJSON_IsNumber(it) ? it->valuedouble : -1;
        if (d != floor(d) || d < 0 || d >= h->depth)
            return omni_fail(e, OMNI_E_CONFIG, "%s: deepstack_visual_indexes entry must be a block index below depth %d",
                             where, h->depth);
        for (int j = 0; j < h->n_levels; j++)
            if (h->ds_index[j] == (int32_t)d)
                return omni_fail(e, OMNI_E_CONFIG, "%s: deepstack_visual_indexes repeats block %d", where, (int)d);
        h->ds_index[h->n_levels++] = (int32_t)d;
    }
    return 0;
}

/* ---- weights ------------------------------------------------------------------------------------------------- */

/* Elements [c0, c0+n) of a [1, cols] vector (vectors are never quantized). */
static ob_mat vec_slice(const ob_mat *b, int64_t c0, int64_t n) {
    ob_mat v = *b;
    v.cols = n;
    v.data.off += ob_dtype_bytes(b->dtype, c0);
    return v;
}

/* Binds tensor `name` of shape want[0..nd) (or the 2-D [rows, cols] it flattens to) as `parts` matrices of rows/parts
 * consecutive rows each, made separately from the host data (so each is quantized on its own and no back-end has to
 * address a matrix that starts inside another). Used for patch_embed.proj.weight — the Conv3d kernel [hidden, C, T,
 * P, P] equals its stride, so the conv is a Linear over the patch vector flattened in the kernel's own [c][t][y][x]
 * order — and for attn.qkv.weight, whose rows are q, then k, then v (reshape(n, 3, heads, head_dim)). */
static int bind_split(omni_model *m, ob_mat *out, int parts, const char *name, const int64_t *want, int nd,
                      int64_t rows, int64_t cols) {
    int rc;
    if (!m->st) {
        for (int p = 0; p < parts; p++)
            if ((rc = omni_model_bind(m, &out[p], name, rows / parts, cols, 1))) return rc;
        return 0;
    }
    const st_tensor *t = st_find(m->st, name);
    if (t && t->dtype == ST_I8) { /* a Q8_0 checkpoint: bind the whole matrix, the parts are row views of it */
        ob_mat whole;
        if ((rc = omni_model_bind(m, &whole, name, rows, cols, 1))) return rc;
        for (int p = 0; p < parts; p++) out[p] = omni_mat_rows_view(&whole, p * (rows / parts), rows / parts);
        return 0;
    }
    ob_dtype dt;
    if ((rc = omni_model_float_tensor(m, name, &t, &dt))) return rc;
    int ok = t->n_dims == 2 && t->shape[0] == rows && t->shape[1] == cols;
    if (t->n_dims == nd && !ok) {
        ok = 1;
        for (int i = 0; i < nd; i++) ok &= t->shape[i] == want[i];
    }
    if (!ok) {
        char got[160] = "", exp[160] = "";
        size_t o = 0;
        for (int i = 0; i < t->n_dims && o < sizeof got - 24; i++)
            o += (size_t)snprintf(got + o, sizeof got - o, "%s%lld", i ? "," : "", (long long)t->shape[i]);
        o = 0;
        for (int i = 0; i < nd && o < sizeof exp - 24; i++)
            o += (size_t)snprintf(exp + o, sizeof exp - o, "%s%lld", i ? "," : "", (long long)want[i]);
        return omni_fail(&m->err, OMNI_E_TENSOR, "%s: tensor '%s' has shape [%s], expected [%s] from config.json",
                         t->file, name, got, exp);
    }
    int64_t pr = rows / parts;
    for (int p = 0; p < parts; p++) {
        const void *d = (const char *)t->data + ob_dtype_bytes(dt, p * pr * cols);
        if ((rc = omni_model_mat_from_host(m, &out[p], d, dt, pr, cols, 1, name))) return rc;
    }
    return 0;
}

static int bind_merger(omni_model *m, venc_model *v, venc_merger *g, const char *base, int postshuffle) {
    const venc_hparams *h = &v->hp;
    int64_t W = (int64_t)h->hidden * h->merge * h->merge, ln = postshuffle ? W : h->hidden;
    char name[256];
    int rc;
    g->postshuffle = postshuffle;
#define MB(field, suffix, r, c, q)                                                                                    \
    do {                                                                                                              \
        snprintf(name, sizeof name, "%s%s.%s", v->prefix, base, suffix);                                              \
        if ((rc = omni_model_bind(m, &g->field, name, r, c, q))) return rc;                                           \
    } while (0)
    MB(ln_w, "ln_q.weight", ln, 0, 0);
    MB(ln_b, "ln_q.bias", ln, 0, 0);
    MB(fc1, "mlp.0.weight", W, W, 1);
    MB(fc1_b, "mlp.0.bias", W, 0, 0);
    MB(fc2, "mlp.2.weight", h->out_hidden, W, 1);
    MB(fc2_b, "mlp.2.bias", h->out_hidden, 0, 0);
#undef MB
    return 0;
}

static int bind_all(omni_model *m, venc_model *v) {
    const venc_hparams *h = &v->hp;
    int64_t H = h->hidden, F = h->ffn;
    char name[256];
    int rc;
    const int64_t kshape[5] = { H, h->in_ch, h->tpatch, h->patch, h->patch };
    snprintf(name, sizeof name, "%spatch_embed.proj.weight", v->prefix);
    if ((rc = bind_split(m, &v->patch_w, 1, name, kshape, 5, H, h->patch_dim))) return rc;
    snprintf(name, sizeof name, "%spatch_embed.proj.bias", v->prefix);
    if ((rc = omni_model_bind(m, &v->patch_b, name, H, 0, 0))) return rc;
    /* the position table stays as stored: get_rows reads it and the interpolation weights are exact fp32 */
    snprintf(name, sizeof name, "%spos_embed.weight", v->prefix);
    if ((rc = omni_model_bind(m, &v->pos_embed, name, h->n_pos, H, 0))) return rc;
    v->blocks = calloc((size_t)h->depth, sizeof *v->blocks);
    v->block_merger = malloc((size_t)h->depth);
    v->ds = calloc((size_t)(h->n_levels ? h->n_levels : 1), sizeof *v->ds);
    if (!v->blocks || !v->block_merger || !v->ds) return omni_fail(&m->err, OMNI_E_NOMEM, "out of memory");
    for (int l = 0; l < h->depth; l++) {
        venc_block *B = &v->blocks[l];
        ob_mat qkv[3], qkv_b;
        const int64_t qshape[2] = { 3 * H, H };
#define BB(dst, suffix, r, c, q)                                                                                      \
    do {                                                                                                              \
        snprintf(name, sizeof name, "%sblocks.%d.%s", v->prefix, l, suffix);                                          \
        if ((rc = omni_model_bind(m, dst, name, r, c, q))) return rc;                                                 \
    } while (0)
        BB(&B->ln1_w, "norm1.weight", H, 0, 0);
        BB(&B->ln1_b, "norm1.bias", H, 0, 0);
        snprintf(name, sizeof name, "%sblocks.%d.attn.qkv.weight", v->prefix, l);
        if ((rc = bind_split(m, qkv, 3, name, qshape, 2, 3 * H, H))) return rc;
        BB(&qkv_b, "attn.qkv.bias", 3 * H, 0, 0);
        BB(&B->wo, "attn.proj.weight", H, H, 1);
        BB(&B->bo, "attn.proj.bias", H, 0, 0);
        BB(&B->ln2_w, "norm2.weight", H, 0, 0);
        BB(&B->ln2_b, "norm2.bias", H, 0, 0);
        BB(&B->fc1, "mlp.linear_fc1.weight", F, H, 1);
        BB(&B->fc1_b, "mlp.linear_fc1.bias", F, 0, 0);
        BB(&B->fc2, "mlp.linear_fc2.weight", H, F, 1);
        BB(&B->fc2_b, "mlp.linear_fc2.bias", H, 0, 0);
#undef BB
        /* Qwen3OmniMoeVisionAttention: qkv(x).reshape(n, 3, heads, head_dim) — q rows first, then k, then v */
        B->wq = qkv[0], B->wk = qkv[1], B->wv = qkv[2];
        B->bq = vec_slice(&qkv_b, 0, H), B->bk = vec_slice(&qkv_b, H, H), B->bv = vec_slice(&qkv_b, 2 * H, H);
        v->block_merger[l] = -1;
        for (int j = 0; j < h->n_levels; j++)
            if (h->ds_index[j] == l) v->block_merger[l] = (int8_t)j;
    }
    if ((rc = bind_merger(m, v, &v->merger, "merger", 0))) return rc;
    for (int j = 0; j < h->n_levels; j++) {
        char base[32];
        snprintf(base, sizeof base, "merger_list.%d", j);
        if ((rc = bind_merger(m, v, &v->ds[j], base, 1))) return rc;
    }
    return 0;
}

void venc_free(venc_model *v) {
    if (!v) return;
    free(v->blocks);
    free(v->block_merger);
    free(v->ds);
    free(v);
}

int venc_load(omni_model *m) {
    m->vision = NULL;
    const cJSON *vc = obj_get(obj_get(m->hp.root, "thinker_config"), "vision_config");
    if (!cJSON_IsObject(vc)) return 0;
    const char *prefix = "thinker.visual.";
    if (m->st) { /* a thinker-only export without the vision tower: no encoder, not an error */
        int any = 0;
        for (int i = 0; i < st_count(m->st) && !any; i++) any = !strncmp(st_get(m->st, i)->name, prefix, strlen(prefix));
        if (!any) {
            omni_log(OMNI_LOG_INFO, "%s: vision_config present but no %s* tensors; images are unsupported", m->path,
                     prefix);
            return 0;
        }
    }
    venc_model *v = calloc(1, sizeof *v);
    if (!v) return omni_fail(&m->err, OMNI_E_NOMEM, "out of memory");
    snprintf(v->prefix, sizeof v->prefix, "%s", prefix);
    v->chunk_patches = VENC_CHUNK_PATCHES;
    int rc = parse_hparams(m, vc, &v->hp);
    if (!rc) rc = bind_all(m, v);
    if (rc) {
        venc_free(v);
        return rc;
    }
    m->vision = v;
    return 0;
}

/* ---- position inputs (host) ---------------------------------------------------------------------------------- */

/* Row and column of patch i of a frame in the merge-block order (get_vision_position_ids: block_shape
 * (h/m, m, w/m, m) transposed to (h/m, w/m, m, m) and flattened). */
static void patch_rc(int i, int gw, int merge, int *row, int *col) {
    int u = merge * merge, bw = gw / merge;
    int in_col = i % merge, in_row = (i / merge) % merge, bcol = (i / u) % bw, brow = i / (u * bw);
    *row = brow * merge + in_row;
    *col = bcol * merge + in_col;
}

/* vision_utils._interpolation_axis_taps_weights, bilinear with align_corners=True, in fp32 like the reference:
 * src = index·(side−1)/max(size−1, 1), taps floor and floor+1 clamped to the table, weights 1 − |src − tap|
 * computed from the unclamped tap (a clamped tap always gets weight 0). */
static void axis_taps(int index, int size, int side, int tap[2], float wt[2]) {
    float src = (float)index * (float)(side - 1);
    src = src / (float)(size - 1 > 1 ? size - 1 : 1);
    float fl = floorf(src);
    for (int o = 0; o < 2; o++) {
        int t = (int)fl + o;
        tap[o] = t < 0 ? 0 : t > side - 1 ? side - 1 : t;
        float d = fabsf((src - fl) - (float)o);
        wt[o] = 1.0f - d > 0.0f ? 1.0f - d : 0.0f;
    }
}

/* The learned table resampled to one frame's grid: out[i][:] = Σ_taps table[idx]·w for patch i in merge-block order
 * (Qwen3OmniMoeVisionEncoder.forward: (pos_embed(indices) * weights[:, :, None]).sum(1), fp32). */
static void pos_embed_host(const venc_hparams *h, const float *table, int gh, int gw, float *out) {
    int side = h->side, H = h->hidden;
    for (int i = 0; i < gh * gw; i++) {
        int row, col, th[2], tw[2];
        float wh[2], ww[2];
        patch_rc(i, gw, h->merge, &row, &col);
        axis_taps(row, gh, side, th, wh);
        axis_taps(col, gw, side, tw, ww);
        float *o = out + (size_t)i * H;
        const float *p[4];
        float w[4];
        for (int a = 0; a < 2; a++)
            for (int b = 0; b < 2; b++) {
                p[2 * a + b] = table + ((size_t)th[a] * side + tw[b]) * H;
                w[2 * a + b] = wh[a] * ww[b];
            }
        for (int c = 0; c < H; c++) o[c] = ((p[0][c] * w[0] + p[1][c] * w[1]) + p[2][c] * w[2]) + p[3][c] * w[3];
    }
}

/* ---- forward ------------------------------------------------------------------------------------------------- */

enum { S_PIX, S_X, S_XN, S_Q, S_K, S_V, S_ATT, S_BIG, S_KC, S_VC, S_POS, S_POS3, S_OUT, S_COUNT };

/* Scratch sizes in bytes for a chunk of nf frames of hw patches. */
static void scratch_sizes(const venc_hparams *h, int64_t nf, int64_t hw, size_t sz[S_COUNT]) {
    size_t n = (size_t)(nf * hw), H = (size_t)h->hidden, u = (size_t)h->merge * h->merge;
    sz[S_PIX] = n * (size_t)h->patch_dim * 4;
    sz[S_X] = sz[S_XN] = sz[S_Q] = sz[S_K] = sz[S_V] = sz[S_ATT] = n * H * 4;
    sz[S_BIG] = n * (size_t)h->ffn * 4;
    sz[S_KC] = sz[S_VC] = n * H * 4; /* per frame [heads][hw][head_dim] fp32 */
    sz[S_POS] = (size_t)hw * H * 4;
    sz[S_POS3] = (size_t)hw * 3 * 4;
    sz[S_OUT] = (size_t)(h->n_levels + 1) * (n / u) * (size_t)h->out_hidden * 4;
}

static int64_t frames_per_chunk(const venc_model *v, int64_t t, int64_t hw) {
    int64_t f = (v->chunk_patches > 0 ? v->chunk_patches : VENC_CHUNK_PATCHES) / hw;
    if (f < 1) f = 1;
    return f < t ? f : t;
}

size_t venc_scratch_bytes(const omni_model *m, omni_grid g) {
    if (!m || !m->vision || g.t <= 0 || g.h <= 0 || g.w <= 0) return 0;
    int64_t hw = (int64_t)g.h * g.w;
    size_t sz[S_COUNT], total = 0;
    scratch_sizes(&m->vision->hp, frames_per_chunk(m->vision, g.t, hw), hw, sz);
    for (int i = 0; i < S_COUNT; i++) total += sz[i];
    return total;
}

/* Qwen3OmniMoeVisionPatchMerger.forward on n patches at x (rows of hidden) into out [n/merge²][out_hidden].
 * xn and mid are scratch of n·hidden floats. */
static void merger_forward(ob_backend *be, const venc_hparams *h, const venc_merger *g, ob_ptr x, ob_ptr xn, ob_ptr mid,
                           ob_ptr out, int n) {
    const ob_ops *op = be->ops;
    int u = h->merge * h->merge, W = h->hidden * u, nt = n / u;
    if (g->postshuffle) op->layer_norm(be, x, &g->ln_w, &g->ln_b, xn, nt, W, h->eps); /* view(-1, W) first */
    else op->layer_norm(be, x, &g->ln_w, &g->ln_b, xn, n, h->hidden, h->eps);         /* LN per patch, then view */
    op->matmul(be, &g->fc1, xn, mid, nt, 0);
    op->add_bias(be, mid, &g->fc1_b, nt, W);
    op->gelu(be, mid, mid, (int64_t)nt * W, 0); /* nn.GELU(): exact erf form */
    op->matmul(be, &g->fc2, mid, out, nt, 0);
    op->add_bias(be, out, &g->fc2_b, nt, h->out_hidden);
}

/* profiler marks: no-ops unless the model was opened with profiling and the back-end supports it */
#define PROF(cls)                                                                                                     \
    do {                                                                                                              \
        if (prof) op->prof_mark(be, cls);                                                                             \
    } while (0)

/* One chunk: nf frames of hw patches whose pixel rows are already in s[S_PIX]. Leaves the final merger output in
 * slot n_levels of S_OUT and DeepStack level j (in block order) in slot j when want_ds. */
static void chunk_forward(ob_backend *be, const venc_model *v, ob_ptr s[S_COUNT], int nf, int hw, int want_ds,
                          int profile) {
    const ob_ops *op = be->ops;
    const venc_hparams *h = &v->hp;
    const int H = h->hidden, D = h->head_dim, NH = h->n_heads, n = nf * hw, u = h->merge * h->merge;
    const int prof = profile && op->prof_mark;
    const size_t frame = (size_t)hw * H * 4; /* bytes of one frame's rows of hidden */
    const size_t out_slot = (size_t)(n / u) * h->out_hidden * 4;
    /* tmp (a sublayer's output before the residual add) shares q's buffer: q is consumed by then */
    ob_ptr x = s[S_X], xn = s[S_XN], q = s[S_Q], k = s[S_K], vv = s[S_V], att = s[S_ATT], tmp = s[S_Q],
           big = s[S_BIG];

    /* Qwen3OmniMoeVisionPatchEmbed (Conv3d with kernel = stride) + the resampled position table per frame */
    PROF(OB_PROF_EMBED);
    op->matmul(be, &v->patch_w, s[S_PIX], x, n, 0);
    op->add_bias(be, x, &v->patch_b, n, H);
    for (int f = 0; f < nf; f++) op->add(be, s[S_POS], ob_at(x, f * frame), (int64_t)hw * H);

    /* Qwen3OmniMoeVisionRotaryEmbedding: theta^(-2j/(D/2)) per axis, rows (y) then columns (x), rotate-half */
    ob_rope rope = { h->rope_theta, D, D, { D / 4, D / 4, 0 }, 0, 1 };
    /* eager_attention_forward: scaling = head_dim**-0.5 (a double, applied in fp32) */
    ob_attn at = { NH, NH, D, (float)(1.0 / sqrt((double)D)), 0, 0, 0 };
    int level = 0;
    for (int l = 0; l < h->depth; l++) {
        const venc_block *B = &v->blocks[l];
        /* Qwen3OmniMoeVisionBlock: x = x + attn(norm1(x)) */
        PROF(OB_PROF_NORM);
        op->layer_norm(be, x, &B->ln1_w, &B->ln1_b, xn, n, H, h->eps);
        PROF(OB_PROF_PROJ);
        op->matmul(be, &B->wq, xn, q, n, 0);
        op->add_bias(be, q, &B->bq, n, H);
        op->matmul(be, &B->wk, xn, k, n, 0);
        op->add_bias(be, k, &B->bk, n, H);
        op->matmul(be, &B->wv, xn, vv, n, 0);
        op->add_bias(be, vv, &B->bv, n, H);
        for (int f = 0; f < nf; f++) { /* cu_seqlens: one attention segment per frame */
            ob_ptr qf = ob_at(q, f * frame), kf = ob_at(k, f * frame), vf = ob_at(vv, f * frame);
            ob_ptr kc = ob_at(s[S_KC], f * frame), vc = ob_at(s[S_VC], f * frame);
            PROF(OB_PROF_ROPE_KV);
            op->rope(be, qf, s[S_POS3], hw, NH, &rope);
            op->rope(be, kf, s[S_POS3], hw, NH, &rope);
            op->kv_store(be, kc, vc, hw, kf, vf, 0, hw, &at);
            PROF(OB_PROF_ATTN);
            op->attention(be, qf, kc, vc, hw, ob_at(att, f * frame), 0, hw, &at);
        }
        PROF(OB_PROF_PROJ);
        op->matmul(be, &B->wo, att, tmp, n, 0);
        op->add_bias(be, tmp, &B->bo, n, H);
        op->add(be, tmp, x, (int64_t)n * H);
        /* x = x + fc2(gelu_tanh(fc1(norm2(x)))) */
        PROF(OB_PROF_NORM);
        op->layer_norm(be, x, &B->ln2_w, &B->ln2_b, xn, n, H, h->eps);
        PROF(OB_PROF_FFN);
        op->matmul(be, &B->fc1, xn, big, n, 0);
        op->add_bias(be, big, &B->fc1_b, n, h->ffn);
        op->gelu(be, big, big, (int64_t)n * h->ffn, 1);
        op->matmul(be, &B->fc2, big, tmp, n, 0);
        op->add_bias(be, tmp, &B->fc2_b, n, H);
        op->add(be, tmp, x, (int64_t)n * H);
        /* deepstack_feature_lists grows in block order; each block uses merger_list[indexes.index(block)] */
        if (v->block_merger[l] >= 0) {
            PROF(OB_PROF_OTHER); /* the mergers */
            if (want_ds)
                merger_forward(be, h, &v->ds[v->block_merger[l]], x, xn, att, ob_at(s[S_OUT], level * out_slot), n);
            level++;
        }
    }
    PROF(OB_PROF_OTHER);
    merger_forward(be, h, &v->merger, x, xn, att, ob_at(s[S_OUT], (size_t)h->n_levels * out_slot), n);
    PROF(-1);
}

static int check_grid(omni_model *m, const venc_hparams *h, int64_t n_rows, omni_grid g) {
    if (g.t <= 0 || g.h <= 0 || g.w <= 0)
        return omni_fail(&m->err, OMNI_E_ARG, "image grid %dx%dx%d: t, h and w must be positive", g.t, g.h, g.w);
    if (g.h % h->merge || g.w % h->merge)
        return omni_fail(&m->err, OMNI_E_ARG, "image grid %dx%dx%d: h and w must be multiples of the merge size %d",
                         g.t, g.h, g.w, h->merge);
    int64_t hw = (int64_t)g.h * g.w;
    if (hw > VENC_MAX_FRAME_PATCHES)
        return omni_fail(&m->err, OMNI_E_ARG, "image grid %dx%dx%d: %lld patches per frame exceed the limit of %d",
                         g.t, g.h, g.w, (long long)hw, VENC_MAX_FRAME_PATCHES);
    if (hw * g.t != n_rows)
        return omni_fail(&m->err, OMNI_E_ARG, "image grid %dx%dx%d has %lld patches but pixel_values has %lld rows",
                         g.t, g.h, g.w, (long long)(hw * g.t), (long long)n_rows);
    return 0;
}

/* The position table as fp32 on the host, read through the back-end (get_rows + download), so it works for any
 * weight dtype and any back-end. */
static int table_host(omni_model *m, const venc_hparams *h, float **out) {
    ob_backend *be = m->be;
    const venc_model *v = m->vision;
    size_t tb = (size_t)h->n_pos * h->hidden * 4, ib = ((size_t)h->n_pos * 4 + 255) & ~(size_t)255;
    *out = NULL;
    float *t = malloc(tb);
    int32_t *ids = malloc((size_t)h->n_pos * 4);
    ob_buf *b = be->ops->alloc(be, ib + tb);
    int rc = (!t || !ids || !b) ? omni_fail(&m->err, OMNI_E_NOMEM, "out of memory for the position table") : 0;
    if (!rc) {
        for (int i = 0; i < h->n_pos; i++) ids[i] = i;
        rc = be->ops->upload(be, b, 0, ids, (size_t)h->n_pos * 4);
        if (!rc) be->ops->get_rows(be, &v->pos_embed, (ob_ptr){ b, 0 }, h->n_pos, (ob_ptr){ b, ib });
        if (!rc) rc = be->ops->download(be, b, ib, t, tb);
        if (rc) rc = omni_fail(&m->err, OMNI_E_BACKEND, "back-end: %s", be->err);
    }
    free(ids);
    if (b) be->ops->buf_free(be, b);
    if (rc) free(t);
    else *out = t;
    return rc;
}

int omni_encode_image_n(omni_model *m, const float *pixel_values, int64_t n_rows, omni_grid g, float **embeds,
                        float **deepstack, int32_t *n_tokens, int32_t *n_levels) {
    if (embeds) *embeds = NULL;
    if (deepstack) *deepstack = NULL;
    if (n_tokens) *n_tokens = 0;
    if (n_levels) *n_levels = 0;
    if (!m) return OMNI_E_ARG;
    if (!pixel_values || !embeds || !n_tokens || (deepstack && !n_levels))
        return omni_fail(&m->err, OMNI_E_ARG, "omni_encode_image: pixel_values, embeds and n_tokens are required "
                                              "(and n_levels with deepstack)");
    if (!m->vision || !m->be)
        return omni_fail(&m->err, OMNI_E_UNSUPPORTED, "%s: this model has no vision encoder", m->path);
    const venc_model *v = m->vision;
    const venc_hparams *h = &v->hp;
    int rc = check_grid(m, h, n_rows, g);
    if (rc) return rc;
    ob_backend *be = m->be;
    const ob_ops *op = be->ops;
    const int hw = g.h * g.w, u = h->merge * h->merge, tpf = hw / u; /* merged tokens per frame */
    const int64_t tokens = (int64_t)g.t * tpf;
    const int nfc = (int)frames_per_chunk(v, g.t, hw), want_ds = deepstack != NULL && h->n_levels > 0;
    const size_t O = (size_t)h->out_hidden;

    float *emb = malloc((size_t)tokens * O * 4), *ds = want_ds ? malloc((size_t)h->n_levels * tokens * O * 4) : NULL;
    float *table = NULL, *pos = malloc((size_t)hw * h->hidden * 4), *pos3 = calloc((size_t)hw * 3, 4);
    ob_buf *bufs[S_COUNT] = { 0 };
    ob_ptr s[S_COUNT];
    size_t sz[S_COUNT];
    if (!emb || (want_ds && !ds) || !pos || !pos3) {
        rc = omni_fail(&m->err, OMNI_E_NOMEM, "out of memory for %lld image tokens", (long long)tokens);
        goto done;
    }
    scratch_sizes(h, nfc, hw, sz);
    for (int i = 0; i < S_COUNT; i++) {
        if (!(bufs[i] = op->alloc(be, sz[i] ? sz[i] : 4))) {
            rc = omni_fail(&m->err, OMNI_E_NOMEM, "cannot allocate %zu bytes of vision scratch on %s", sz[i], op->name);
            goto done;
        }
        s[i] = (ob_ptr){ bufs[i], 0 };
    }
    /* per-frame inputs shared by every frame: the resampled position table and the (row, col) rotary positions */
    if ((rc = table_host(m, h, &table))) goto done;
    pos_embed_host(h, table, g.h, g.w, pos);
    for (int i = 0; i < hw; i++) {
        int row, col;
        patch_rc(i, g.w, h->merge, &row, &col);
        pos3[i] = (float)row;
        pos3[hw + i] = (float)col;
    }
    if ((rc = op->upload(be, bufs[S_POS], 0, pos, sz[S_POS])) || (rc = op->upload(be, bufs[S_POS3], 0, pos3, sz[S_POS3])))
        goto backend_fail;

    for (int f0 = 0; f0 < g.t; f0 += nfc) {
        int nf = g.t - f0 < nfc ? g.t - f0 : nfc, n = nf * hw;
        if ((rc = op->upload(be, bufs[S_PIX], 0, pixel_values + (size_t)f0 * hw * h->patch_dim,
                             (size_t)n * h->patch_dim * 4)))
            goto backend_fail;
        chunk_forward(be, v, s, nf, hw, want_ds, m->params.profile);
        size_t nt = (size_t)nf * tpf, slot = (size_t)(n / u) * O * 4, tok0 = (size_t)f0 * tpf;
        if ((rc = op->download(be, bufs[S_OUT], (size_t)h->n_levels * slot, emb + tok0 * O, nt * O * 4)))
            goto backend_fail;
        for (int j = 0; want_ds && j < h->n_levels; j++)
            if ((rc = op->download(be, bufs[S_OUT], (size_t)j * slot, ds + ((size_t)j * tokens + tok0) * O,
                                   nt * O * 4)))
                goto backend_fail;
    }
    if ((rc = op->sync(be))) goto backend_fail;
    *embeds = emb, emb = NULL;
    if (want_ds) *deepstack = ds, ds = NULL;
    *n_tokens = (int32_t)tokens;
    if (n_levels && want_ds) *n_levels = h->n_levels;
    goto done;
backend_fail:
    rc = omni_fail(&m->err, OMNI_E_BACKEND, "vision encoder: back-end: %s", be->err[0] ? be->err : "failed");
done:
    if (rc && bufs[0]) op->sync(be); /* a device back-end may still hold queued work on the scratch */
    for (int i = 0; i < S_COUNT; i++)
        if (bufs[i]) op->buf_free(be, bufs[i]);
    free(emb);
    free(ds);
    free(table);
    free(pos);
    free(pos3);
    return rc;
}

int omni_encode_image(omni_model *m, const float *pixel_values, omni_grid grid, float **embeds, float **deepstack,
                      int32_t *n_tokens, int32_t *n_levels) {
    /* without a row count from the caller, trust the grid (positive sizes keep the product meaningful) */
    int64_t rows = grid.t > 0 && grid.h > 0 && grid.w > 0 ? (int64_t)grid.t * grid.h * grid.w : 0;
    return omni_encode_image_n(m, pixel_values, rows, grid, embeds, deepstack, n_tokens, n_levels);
}
