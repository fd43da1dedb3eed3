/* backend_common.c — pieces shared by every back-end: dtype sizes, the q8_0 quantizer and row expansion. */
#include <math.h>

#include "backend.h"
#include "util.h"

const char *const ob_prof_names[OB_PROF_N] = { "embed", "norms", "projections", "rope+kv", "attention",
                                                "router", "experts", "dense ffn", "lm_head", "other" };

const char *ob_dtype_name(ob_dtype t) {
    switch (t) {
    case OB_F32: return "f32";
    case OB_F16: return "f16";
    case OB_BF16: return "bf16";
    case OB_Q8_0: return "q8_0";
    case OB_I32: return "i32";
    }
    return "?";
}

size_t ob_dtype_bytes(ob_dtype t, int64_t n) {
    switch (t) {
    case OB_F32:
    case OB_I32: return (size_t)n * 4;
    case OB_F16:
    case OB_BF16: return (size_t)n * 2;
    case OB_Q8_0: return (size_t)n + (size_t)(n / 32) * 2;
    }
    return 0;
}

size_t ob_kv_cache_bytes(ob_backend *b, int n_kv_heads, int n_ctx, int head_dim) {
    int eb = b && b->ops->kv_elem_bytes ? b->ops->kv_elem_bytes(b, head_dim) : 4;
    return (size_t)n_kv_heads * (size_t)n_ctx * (size_t)head_dim * (size_t)eb;
}

ob_mat ob_mat_make(ob_ptr data, ob_dtype t, int64_t rows, int64_t cols) {
    ob_mat m = { data, t, rows, cols, 0 };
    if (t == OB_Q8_0) m.scale_off = (size_t)(rows * cols);
    return m;
}

/* Blocks of 32: scale d = max|x| / 127 (stored as fp16), q = round(x / d). Mirrors ggml's quantize_row_q8_0. */
void ob_quantize_q8_0(const float *src, int64_t rows, int64_t cols, void *dst) {
    int8_t *q = dst;
    uint16_t *sc = (uint16_t *)((uint8_t *)dst + rows * cols);
    int64_t nb = cols / 32;
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t b = 0; b < nb; b++) {
            const float *x = src + r * cols + b * 32;
            float amax = 0;
            for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(x[i]));
            float d = amax / 127.0f, id = d > 0 ? 1.0f / d : 0.0f;
            sc[r * nb + b] = omni_f32_to_f16(d);
            for (int i = 0; i < 32; i++) q[r * cols + b * 32 + i] = (int8_t)lrintf(x[i] * id);
        }
    }
}

void ob_weights_from_f32(const float *src, ob_dtype t, int64_t rows, int64_t cols, void *dst) {
    size_t n = (size_t)(rows * cols);
    switch (t) {
    case OB_F32:
    case OB_I32: memcpy(dst, src, n * 4); break;
    case OB_F16:
        for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = omni_f32_to_f16(src[i]);
        break;
    case OB_BF16:
        for (size_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = omni_f32_to_bf16(src[i]);
        break;
    case OB_Q8_0: ob_quantize_q8_0(src, rows, cols, dst); break;
    }
}

void ob_row_to_f32(const void *base, ob_dtype t, int64_t rows, int64_t cols, int64_t row, float *out) {
    switch (t) {
    case OB_F32: memcpy(out, (const float *)base + row * cols, (size_t)cols * 4); break;
    case OB_I32:
        for (int64_t i = 0; i < cols; i++) out[i] = (float)((const int32_t *)base)[row * cols + i];
        break;
    case OB_F16:
        for (int64_t i = 0; i < cols; i++) out[i] = omni_f16_to_f32(((const uint16_t *)base)[row * cols + i]);
        break;
    case OB_BF16:
        for (int64_t i = 0; i < cols; i++) out[i] = omni_bf16_to_f32(((const uint16_t *)base)[row * cols + i]);
        break;
    case OB_Q8_0: {
        const int8_t *q = (const int8_t *)base + row * cols;
        const uint16_t *sc = (const uint16_t *)((const uint8_t *)base + rows * cols) + row * (cols / 32);
        for (int64_t i = 0; i < cols; i++) out[i] = (float)q[i] * omni_f16_to_f32(sc[i / 32]);
        break;
    }
    }
}
