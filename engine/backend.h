/* backend.h — the narrow interface every compute back-end (CPU, Vulkan) implements.
 *
 * Model code is written once against this table of plain functions. Ops are eager from the caller's point of
 * view but a back-end may queue them: the Vulkan back-end records dispatches into one command buffer and only
 * submits at ob_sync()/ob_download(). The CPU back-end runs each op at once on its thread pool.
 *
 * Memory: an ob_buf is a device allocation (host memory for the CPU). Tensors are addressed as (buffer, byte
 * offset). Activations are always fp32, row-major [rows, cols]. Weights (ob_mat) may be f32, f16, bf16 or q8_0
 * and are [rows=out, cols=in] like a PyTorch Linear weight: y = x · Wᵀ.
 *
 * Q8_0 layout (ours, shared by CPU and Vulkan): for a matrix of R rows and C columns (C % 32 == 0) the buffer holds
 * R*C int8 quants row-major, followed (at byte offset `scale_off`) by R*(C/32) fp16 scales, one per block of 32. */
#ifndef OMNI_BACKEND_H
#define OMNI_BACKEND_H

#include <stddef.h>
#include <stdint.h>

typedef enum { OB_F32 = 0, OB_F16 = 1, OB_BF16 = 2, OB_Q8_0 = 3, OB_I32 = 4 } ob_dtype;
const char *ob_dtype_name(ob_dtype t);
/* bytes for n elements (n % 32 == 0 for q8_0: quants + scales) */
size_t ob_dtype_bytes(ob_dtype t, int64_t n);

typedef struct ob_backend ob_backend;
typedef struct ob_buf ob_buf;

/* topk_chunks (below): chunk length and entries kept per chunk (shaders/topk.comp has them as constants) */
#define OB_TOPK_CHUNK 2048
#define OB_TOPK_K 64

typedef struct {
    ob_buf *buf;
    size_t off; /* byte offset */
} ob_ptr;

static inline ob_ptr ob_at(ob_ptr p, size_t bytes) {
    p.off += bytes;
    return p;
}

/* A weight matrix [rows, cols] (a vector is rows = 1). */
typedef struct {
    ob_ptr data;
    ob_dtype dtype;
    int64_t rows, cols;
    size_t scale_off; /* q8_0 only: byte offset of the fp16 scales from data.off */
} ob_mat;

/* Rotary embedding description. Positions are passed as fp32, 3 rows of n (t, h, w); for plain 1-D RoPE the three
 * rows are equal. Rotation is rotate-half (NeoX) over the first rot_dim dims of each head. */
typedef struct {
    float theta;
    int32_t head_dim;
    int32_t rot_dim;       /* usually head_dim */
    int32_t section[3];    /* mrope sections (t, h, w) in frequency pairs; all 0 = plain 1-D (row 0 only) */
    int32_t interleaved;   /* 1 = Qwen3 interleaved recomposition (slot i%3: 0->t, 1->h, 2->w while i < 3*sec) */
    int32_t section_freqs; /* 1 = each contiguous section restarts its frequencies: slot j of section s uses
                              theta^(-j/section[s]) (the ViT's 2-D rotary: sections {hd/4, hd/4, 0}, rows = y, x) */
} ob_rope;

/* Attention over the KV cache. Cache layout per layer: [n_kv_heads][n_ctx][head_dim] elements of fp32, or of fp16
 * where the back-end says so (ob_kv_cache_bytes: the Vulkan back-end's default); only the back-end's own kv_store,
 * attention and fused ops read or write a cache. */
typedef struct {
    int32_t n_heads, n_kv_heads, head_dim;
    float scale;
    int32_t causal;
    int32_t window; /* > 0: sliding window (query i sees keys i-window+1..i); 0 = none */
    /* qk_norm_rope_kv only: elements from one token's k row to the next and from one v row to the next, e.g.
     * 2·n_kv_heads·head_dim when k and v come from one product [n][k | v] (0: n_kv_heads·head_dim, dense rows);
     * every other op takes dense rows */
    int32_t kv_stride;
} ob_attn;

/* Op classes for the optional profiler (time per decoded token split by kind of work). */
enum {
    OB_PROF_EMBED = 0, OB_PROF_NORM, OB_PROF_PROJ, OB_PROF_ROPE_KV, OB_PROF_ATTN, OB_PROF_ROUTER, OB_PROF_EXPERTS,
    OB_PROF_FFN, OB_PROF_LM_HEAD, OB_PROF_OTHER, OB_PROF_N
};
extern const char *const ob_prof_names[OB_PROF_N];

typedef struct {
    const char *name;
    void (*destroy)(ob_backend *b);
    const char *(*device_name)(ob_backend *b);

    /* memory */
    ob_buf *(*alloc)(ob_backend *b, size_t bytes);
    void (*buf_free)(ob_backend *b, ob_buf *buf);
    /* Wraps read-only host memory that stays valid for the buffer's lifetime (mmapped weights). A device back-end
     * copies it (the host memory may be unmapped after the call returns for those); NULL if unsupported. */
    ob_buf *(*wrap_host)(ob_backend *b, const void *data, size_t bytes, int *copied);
    int (*upload)(ob_backend *b, ob_buf *dst, size_t off, const void *src, size_t n);
    int (*download)(ob_backend *b, ob_buf *src, size_t off, void *dst, size_t n); /* waits for queued work */
    int (*sync)(ob_backend *b);
    /* Host pointer of a buffer, where the back-end has one (CPU); NULL otherwise. */
    void *(*host_ptr)(ob_backend *b, ob_buf *buf);
    /* Bytes per element of this back-end's KV caches for heads of head_dim: 4 (fp32) or 2 (fp16). NULL = 4. Callers
     * size caches with ob_kv_cache_bytes, which asks this. */
    int (*kv_elem_bytes)(ob_backend *b, int head_dim);

    /* ops — shapes in elements; all activations fp32 */
    /* out[i,:] = table[ids[i],:] (ids int32 on the device) */
    void (*get_rows)(ob_backend *b, const ob_mat *table, ob_ptr ids, int n, ob_ptr out);
    /* y[n, W.rows] = x[n, W.cols] · Wᵀ  (+ y if accumulate) */
    void (*matmul)(ob_backend *b, const ob_mat *w, ob_ptr x, ob_ptr y, int n, int accumulate);
    /* y = x / sqrt(mean(x²) + eps) * w, per row of `dim`; rows may be heads (q/k norm). In-place allowed. */
    void (*rms_norm)(ob_backend *b, ob_ptr x, const ob_mat *w, ob_ptr y, int rows, int dim, float eps);
    /* rotate heads in place: x[n][n_heads][head_dim], pos3 = fp32 [3][n] */
    void (*rope)(ob_backend *b, ob_ptr x, ob_ptr pos3, int n, int n_heads, const ob_rope *r);
    /* write k, v ([n][n_kv_heads*head_dim]) at cache positions pos0..pos0+n-1 */
    void (*kv_store)(ob_backend *b, ob_ptr kcache, ob_ptr vcache, int n_ctx, ob_ptr k, ob_ptr v, int pos0, int n,
                     const ob_attn *a);
    /* out[n][n_heads*head_dim] = softmax(q·Kᵀ·scale + mask)·V over cache rows 0..pos0+n-1 (query i at pos0+i) */
    void (*attention)(ob_backend *b, ob_ptr q, ob_ptr kcache, ob_ptr vcache, int n_ctx, ob_ptr out, int pos0, int n,
                      const ob_attn *a);
    /* MoE router: probs = softmax(logits[n][n_exp]) in fp32, top-k (ties -> lower index), optional renormalise.
     * Writes ids int32 [n][k] and weights fp32 [n][k]. */
    void (*moe_route)(ob_backend *b, ob_ptr logits, int n, int n_exp, int k, int norm_topk, ob_ptr ids,
                      ob_ptr weights);
    /* y[n][dim] += Σ_k w[i][k] · down_e(silu(gate_e(x_i)) ⊙ up_e(x_i)) with e = ids[i][k].
     * gate/up/down are arrays of n_exp matrices; only selected experts are touched. */
    void (*moe_experts)(ob_backend *b, ob_ptr x, int n, int k, ob_ptr ids, ob_ptr weights, const ob_mat *gate,
                        const ob_mat *up, const ob_mat *down, int n_exp, ob_ptr y);
    /* out[i] = silu(g[i]) * u[i] for n*dim elements (may alias g) */
    void (*swiglu)(ob_backend *b, ob_ptr g, ob_ptr u, ob_ptr out, int64_t count);
    /* y[i] += x[i] */
    void (*add)(ob_backend *b, ob_ptr x, ob_ptr y, int64_t count);
    /* x[r][c] += bias[c] for rows × dim (Linear biases; bias is a [1, dim] vector of any float dtype) */
    void (*add_bias)(ob_backend *b, ob_ptr x, const ob_mat *bias, int rows, int dim);

    /* ---- encoder ops (audio and vision towers) ---- */
    /* y = (x - mean) / sqrt(var + eps) * w + b per row of dim (torch.nn.LayerNorm, biased variance); bias may have
     * data.buf == NULL. In-place allowed. */
    void (*layer_norm)(ob_backend *b, ob_ptr x, const ob_mat *w, const ob_mat *bias, ob_ptr y, int rows, int dim,
                       float eps);
    /* y = gelu(x): exact erf form (tanh_approx = 0, nn.GELU / F.gelu) or the tanh approximation (1,
     * gelu_pytorch_tanh). In-place allowed. */
    void (*gelu)(ob_backend *b, ob_ptr x, ob_ptr y, int64_t count, int tanh_approx);
    /* 4-D strided gather: dst (contiguous, shape d[0]×d[1]×d[2]×d[3]) [i0][i1][i2][i3] =
     * src[i0*s[0] + i1*s[1] + i2*s[2] + i3*s[3]] (strides in elements, fp32). Permutes and reshapes. */
    void (*permute)(ob_backend *b, ob_ptr src, ob_ptr dst, const int64_t d[4], const int64_t s[4]);
    /* im2col for a 2-D convolution over fp32 input with element strides (sb, sc, sy, sx) of shape [B][C][H][W]:
     * out[(bi*Ho + oy)*Wo + ox][(c*k + ky)*k + kx] = x[bi, c, oy*stride - pad + ky, ox*stride - pad + kx] (0 outside),
     * Ho = (H + 2 pad - k)/stride + 1, same for Wo. A matmul with the [C_out, C*k*k] weight then gives
     * channels-last output [B][Ho][Wo][C_out]. */
    void (*im2col)(ob_backend *b, ob_ptr x, int B, int C, int H, int W, const int64_t strides[4], int k, int stride,
                   int pad, ob_ptr out);
    /* x[idx[i]][:] += src[i][:] for i < n (rows of dim; idx int32 on the device): DeepStack additions */
    void (*add_rows)(ob_backend *b, ob_ptr x, ob_ptr idx, ob_ptr src, int n, int dim);
    /* y[i] = x[i] (byte copy between buffers) */
    void (*copy)(ob_backend *b, ob_ptr src, ob_ptr dst, size_t bytes);

    /* ---- optional fused ops (NULL when a back-end has none: callers then run the unfused sequence) ---- */
    /* The attention block's per-head work between the q|k|v projection and attention in one call, exactly
     *   rms_norm(q, q_norm) per head; rms_norm(k, k_norm) per head; rope(q); rope(k); kv_store(k, v)
     * with q [n][a->n_heads*head_dim] and k, v [n][a->n_kv_heads*head_dim] (q and k updated in place); k and v rows
     * a->kv_stride elements apart where it is set (v's rows are then left as they were). */
    void (*qk_norm_rope_kv)(ob_backend *b, ob_ptr q, ob_ptr k, ob_ptr v, const ob_mat *q_norm, const ob_mat *k_norm,
                            float eps, ob_ptr pos3, const ob_rope *r, ob_ptr kcache, ob_ptr vcache, int n_ctx,
                            int pos0, int n, const ob_attn *a);
    /* The attention core of a decode step: exactly qk_norm_rope_kv(q, k, v, ...) followed by
     *   attention(q, kcache, vcache, n_ctx, out, pos0, n, a)
     * (q_norm / k_norm per head, RoPE of q and k, the k/v cache update, then softmax attention into out
     * [n][a->n_heads*head_dim]). q and k are scratch: afterwards they may hold the normalised, rotated heads (CPU)
     * or what they held before (a fused kernel need not write them back). out must not overlap q, k or v. */
    void (*qk_norm_rope_kv_attention)(ob_backend *b, ob_ptr q, ob_ptr k, ob_ptr v, const ob_mat *q_norm,
                                      const ob_mat *k_norm, float eps, ob_ptr pos3, const ob_rope *r, ob_ptr kcache,
                                      ob_ptr vcache, int n_ctx, int pos0, int n, const ob_attn *a, ob_ptr out);
    /* One row: xn = rms_norm(x, norm, eps) over W.cols, then y[1][W.rows] = xn · Wᵀ — exactly rms_norm(x -> xn)
     * followed by matmul(w, xn, y, 1, 0) (a decoder layer's input_layernorm + q|k|v, or post_attention_layernorm
     * + router). xn must not overlap x or y. */
    void (*norm_matvec)(ob_backend *b, ob_ptr x, const ob_mat *norm, float eps, const ob_mat *w, ob_ptr y, ob_ptr xn);

    /* One row, a MoE layer's routing: xn = rms_norm(x, norm, eps); logits[1][W.rows] = xn · Wᵀ; then
     * moe_route(logits, 1, W.rows, k, norm_topk, ids, weights) — exactly norm_matvec followed by moe_route. */
    void (*norm_route)(ob_backend *b, ob_ptr x, const ob_mat *norm, float eps, const ob_mat *w, ob_ptr logits,
                       ob_ptr xn, int k, int norm_topk, ob_ptr ids, ob_ptr weights);

    /* One row, the attention output projection with its residual, then the MoE routing: x += a · Woᵀ (matmul with
     * accumulate), then norm_route(x, ...) — exactly that pair of calls. */
    void (*matmul_norm_route)(ob_backend *b, const ob_mat *wo, ob_ptr a, ob_ptr x, const ob_mat *norm, float eps,
                              const ob_mat *w, ob_ptr logits, ob_ptr xn, int k, int norm_topk, ob_ptr ids,
                              ob_ptr weights);

    /* Optional (NULL: the caller downloads the whole row). The OB_TOPK_K best entries of every OB_TOPK_CHUNK-element
     * chunk of one fp32 row of n (a logits row) into out: ceil(n / OB_TOPK_CHUNK) lists of OB_TOPK_K (int32 id,
     * fp32 value) pairs, each list best first (larger value; ties to the lower id), padded with id -1 past the row's
     * end. The sampler draws from these alone where they provably hold its whole kept set (omni_sampler_sample_cand),
     * so a decode step downloads ~OB_TOPK_K·8 bytes per chunk instead of the row. */
    void (*topk_chunks)(ob_backend *b, ob_ptr x, int n, ob_ptr out);

    /* ---- optional profiling (NULL when unsupported) ---- */
    /* Everything queued from here until the next mark is charged to class cls (OB_PROF_*); cls < 0 stops charging. */
    void (*prof_mark)(ob_backend *b, int cls);
    /* Adds the milliseconds charged per class since the last read into ms[OB_PROF_N] (call after a sync). */
    void (*prof_read)(ob_backend *b, double *ms);
    /* The same time split by kernel, where a back-end traces every dispatch (Vulkan: OMNI_VK_TRACE=1): up to cap
     * entries (name, ms, calls) accumulated since the last call, read after prof_read; returns how many. */
    int (*prof_kernels)(ob_backend *b, const char **names, double *ms, int *calls, int cap);
} ob_ops;

struct ob_backend {
    const ob_ops *ops;
    int failed;     /* sticky: an op hit a device error; checked at sync/download */
    char err[256];
};

/* constructors */
ob_backend *ob_cpu_new(int n_threads);
/* Vulkan: device index (-1 = first suitable); NULL if no device (err gets why). */
ob_backend *ob_vulkan_new(int device, char *err, size_t err_cap);

/* helpers */
ob_mat ob_mat_make(ob_ptr data, ob_dtype t, int64_t rows, int64_t cols);
/* bytes of one layer's K (or V) cache of n_kv_heads × n_ctx × head_dim elements on back-end b (NULL: fp32) */
size_t ob_kv_cache_bytes(ob_backend *b, int n_kv_heads, int n_ctx, int head_dim);
/* Quantizes fp32 rows into our q8_0 layout in host memory (dst holds rows*cols bytes + rows*cols/32 fp16). */
void ob_quantize_q8_0(const float *src, int64_t rows, int64_t cols, void *dst);
/* Stores fp32 values [rows, cols] in dtype t (f32 copy, f16/bf16 rounding, q8_0 quantization) at dst, which holds
 * ob_dtype_bytes(t, rows * cols) bytes. */
void ob_weights_from_f32(const float *src, ob_dtype t, int64_t rows, int64_t cols, void *dst);
/* Expands one row of a host weight of any dtype to fp32 */
void ob_row_to_f32(const void *base, ob_dtype t, int64_t rows, int64_t cols, int64_t row, float *out);

#endif
