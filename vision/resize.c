/* resize.c — smart_resize and the antialiased bicubic uint8 resize of the reference image processor.
 *
 * The resize mirrors PyTorch's CPU path for `F.interpolate(uint8, mode="bicubic", antialias=True,
 * align_corners=False)` with an output size (no scale factor), which torchvision's `resize` takes for uint8 CPU
 * tensors (`_do_native_uint8_resize_on_cpu` is true for BICUBIC):
 *   - per axis, HelperInterpBase::_compute_indices_min_size_weights_aa: scale = in/out, support = 2*scale when
 *     downscaling (else 2), taps from trunc(center -/+ support + 0.5), weights = Keys cubic (a = -0.5,
 *     HelperInterpCubic::aa_filter) of (j + xmin - center + 0.5) * invscale, normalised by their sum;
 *   - _compute_index_ranges_int16_weights: one precision per axis, the largest p < 22 with
 *     (int)(0.5 + wt_max * 2^(p+1)) < 2^15, weights rounded half away from zero to int16 at 2^p;
 *   - passes (separable_upsample_generic_Nd_kernel_impl / upsample_avx_bilinear_bicubic_uint8): horizontal first
 *     when the width changes, then vertical when the height changes; each output is
 *     clamp((2^(p-1) + sum in*w) >> p, 0, 255), so the intermediate image is uint8 too.
 * The AVX2 kernels compute the same integer sums, so results are identical on every CPU. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "resize.h"

int vision_smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels, int64_t max_pixels,
                        int32_t *out_h, int32_t *out_w, vision_err *e) {
    /* bounds keep every product exact in double, as Python's integer arithmetic is */
    if (height <= 0 || width <= 0 || factor <= 0 || height > (1 << 26) || width > (1 << 26) || factor > (1 << 20))
        return vision_fail(e, VISION_E_ARG, "smart_resize: invalid size %lldx%lld or factor %lld", (long long)height,
                           (long long)width, (long long)factor);
    if (min_pixels < 0 || max_pixels <= 0)
        return vision_fail(e, VISION_E_ARG, "smart_resize: invalid pixel limits %lld..%lld", (long long)min_pixels,
                           (long long)max_pixels);
    int64_t big = height > width ? height : width, small = height > width ? width : height;
    double ratio = (double)big / (double)small;
    if (ratio > 200.0)
        return vision_fail(e, VISION_E_SIZE, "image %lldx%lld: aspect ratio %.6g is over 200 (the processor refuses it)",
                           (long long)width, (long long)height, ratio);
    const double f = (double)factor;
    /* round() in Python rounds halves to even, as nearbyint does in the default rounding mode */
    int64_t h_bar = (int64_t)nearbyint((double)height / f) * factor;
    int64_t w_bar = (int64_t)nearbyint((double)width / f) * factor;
    if (h_bar * w_bar > max_pixels) {
        double beta = sqrt((double)(height * width) / (double)max_pixels);
        h_bar = (int64_t)floor((double)height / beta / f) * factor;
        w_bar = (int64_t)floor((double)width / beta / f) * factor;
        if (h_bar < factor) h_bar = factor;
        if (w_bar < factor) w_bar = factor;
    } else if (h_bar * w_bar < min_pixels) {
        double beta = sqrt((double)min_pixels / (double)(height * width));
        h_bar = (int64_t)ceil((double)height * beta / f) * factor;
        w_bar = (int64_t)ceil((double)width * beta / f) * factor;
    }
    if (h_bar <= 0 || w_bar <= 0 || h_bar > INT32_MAX || w_bar > INT32_MAX)
        return vision_fail(e, VISION_E_SIZE, "image %lldx%lld: smart_resize gives an unusable %lldx%lld",
                           (long long)width, (long long)height, (long long)w_bar, (long long)h_bar);
    *out_h = (int32_t)h_bar;
    *out_w = (int32_t)w_bar;
    return VISION_OK;
}

/* HelperInterpCubic::aa_filter<double, use_keys_cubic=true> with cubic_convolution1/2 (aten UpSample.h). */
static double aa_cubic(double x) {
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0) return ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
    return 0.0;
}

/* Taps of one axis: for output i, inputs xmin[i] .. xmin[i]+xsize[i]-1 with int16 weights w[i*ksize + j]. */
typedef struct {
    int32_t *xmin, *xsize;
    int16_t *w;
    int ksize;
    unsigned prec;
} aa_axis;

static void aa_axis_free(aa_axis *ax) {
    free(ax->xmin);
    free(ax->xsize);
    free(ax->w);
}

static int aa_axis_init(aa_axis *ax, int64_t in, int64_t out) {
    memset(ax, 0, sizeof *ax);
    const double scale = (double)in / (double)out; /* area_pixel_compute_scale, align_corners=False, no scale */
    const double support = scale >= 1.0 ? 2.0 * scale : 2.0; /* (interp_size * 0.5) * scale, interp_size = 4 */
    const int ksize = (int)ceil(support) * 2 + 1;
    const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
    double *wf = malloc(sizeof *wf * (size_t)out * (size_t)ksize);
    ax->xmin = malloc(sizeof *ax->xmin * (size_t)out);
    ax->xsize = malloc(sizeof *ax->xsize * (size_t)out);
    ax->w = malloc(sizeof *ax->w * (size_t)out * (size_t)ksize);
    if (!wf || !ax->xmin || !ax->xsize || !ax->w) {
        free(wf);
        aa_axis_free(ax);
        return VISION_E_NOMEM;
    }
    double wt_max = 0.0;
    for (int64_t i = 0; i < out; i++) {
        double *wt = wf + i * ksize;
        const double center = scale * ((double)i + 0.5);
        int64_t xmin = (int64_t)(center - support + 0.5); /* C++ static_cast: truncation toward zero */
        if (xmin < 0) xmin = 0;
        int64_t xmax = (int64_t)(center + support + 0.5);
        if (xmax > in) xmax = in;
        int64_t xsize = xmax - xmin;
        if (xsize < 0) xsize = 0;
        if (xsize > ksize) xsize = ksize;
        double total = 0.0;
        int64_t j = 0;
        for (; j < xsize; j++) {
            double w = aa_cubic(((double)(j + xmin) - center + 0.5) * invscale);
            wt[j] = w;
            total += w;
        }
        if (total != 0.0) {
            for (j = 0; j < xsize; j++) {
                wt[j] /= total;
                if (wt[j] > wt_max) wt_max = wt[j];
            }
        }
        for (; j < ksize; j++) wt[j] = 0.0;
        ax->xmin[i] = (int32_t)xmin;
        ax->xsize[i] = (int32_t)xsize;
    }
    unsigned prec;
    for (prec = 0; prec < 22; prec++) {
        int next = (int)(0.5 + wt_max * (double)(1 << (prec + 1)));
        if (next >= (1 << 15)) break;
    }
    for (size_t k = 0; k < (size_t)out * (size_t)ksize; k++) {
        double v = wf[k] * (double)(1 << prec);
        ax->w[k] = (int16_t)(v < 0 ? (int)(-0.5 + v) : (int)(0.5 + v));
    }
    free(wf);
    ax->ksize = ksize;
    ax->prec = prec;
    return VISION_OK;
}

static inline uint8_t clip8(int32_t v, unsigned prec) {
    if (v < 0) return 0; /* the kernels shift arithmetically, then saturate: anything negative ends at 0 */
    v >>= prec;
    return (uint8_t)(v > 255 ? 255 : v);
}

/* basic_loop_aa_horizontal<uint8_t>: rows of sw pixels -> rows of dw pixels. */
static void pass_horizontal(const uint8_t *src, int32_t sw, int32_t rows, uint8_t *dst, int32_t dw, const aa_axis *ax) {
    const int32_t half = ax->prec ? (int32_t)1 << (ax->prec - 1) : 0;
    for (int32_t y = 0; y < rows; y++) {
        const uint8_t *in = src + (size_t)y * (size_t)sw * 3;
        uint8_t *o = dst + (size_t)y * (size_t)dw * 3;
        for (int32_t x = 0; x < dw; x++, o += 3) {
            const int16_t *k = ax->w + (size_t)x * (size_t)ax->ksize;
            const uint8_t *p = in + (size_t)ax->xmin[x] * 3;
            int32_t r = half, g = half, b = half;
            for (int32_t j = 0; j < ax->xsize[x]; j++, p += 3) {
                r += p[0] * k[j];
                g += p[1] * k[j];
                b += p[2] * k[j];
            }
            o[0] = clip8(r, ax->prec);
            o[1] = clip8(g, ax->prec);
            o[2] = clip8(b, ax->prec);
        }
    }
}

/* basic_loop_aa_vertical<uint8_t>: rows of w pixels (any count) -> dh rows, whole rows at a time. */
static int pass_vertical(const uint8_t *src, int32_t w, uint8_t *dst, int32_t dh, const aa_axis *ax) {
    const size_t n = (size_t)w * 3;
    const int32_t half = ax->prec ? (int32_t)1 << (ax->prec - 1) : 0;
    int32_t *acc = malloc(sizeof *acc * n);
    if (!acc) return VISION_E_NOMEM;
    for (int32_t y = 0; y < dh; y++) {
        for (size_t i = 0; i < n; i++) acc[i] = half;
        const int16_t *k = ax->w + (size_t)y * (size_t)ax->ksize;
        for (int32_t j = 0; j < ax->xsize[y]; j++) {
            const uint8_t *in = src + (size_t)(ax->xmin[y] + j) * n;
            const int32_t wj = k[j];
            for (size_t i = 0; i < n; i++) acc[i] += in[i] * wj;
        }
        uint8_t *o = dst + (size_t)y * n;
        for (size_t i = 0; i < n; i++) o[i] = clip8(acc[i], ax->prec);
    }
    free(acc);
    return VISION_OK;
}

int vision_resize_bicubic(const uint8_t *src, int32_t sw, int32_t sh, uint8_t *dst, int32_t dw, int32_t dh,
                          vision_err *e) {
    if (!src || !dst || sw <= 0 || sh <= 0 || dw <= 0 || dh <= 0)
        return vision_fail(e, VISION_E_ARG, "resize: invalid sizes %dx%d -> %dx%d", sw, sh, dw, dh);
    if (sw == dw && sh == dh) {
        memcpy(dst, src, (size_t)sw * (size_t)sh * 3);
        return VISION_OK;
    }
    aa_axis hx = { 0 }, vy = { 0 };
    uint8_t *tmp = NULL;
    int rc = VISION_OK;
    const uint8_t *cur = src;
    if (dw != sw) {
        if ((rc = aa_axis_init(&hx, sw, dw))) goto oom;
        uint8_t *out = dst;
        if (dh != sh) {
            tmp = malloc((size_t)sh * (size_t)dw * 3);
            if (!tmp) goto oom;
            out = tmp;
        }
        pass_horizontal(src, sw, sh, out, dw, &hx);
        cur = out;
    }
    if (dh != sh) {
        if ((rc = aa_axis_init(&vy, sh, dh))) goto oom;
        if ((rc = pass_vertical(cur, dw, dst, dh, &vy))) goto oom;
    }
    aa_axis_free(&hx);
    aa_axis_free(&vy);
    free(tmp);
    return VISION_OK;
oom:
    aa_axis_free(&hx);
    aa_axis_free(&vy);
    free(tmp);
    return vision_fail(e, VISION_E_NOMEM, "resize: out of memory for %dx%d -> %dx%d", sw, sh, dw, dh);
}
