/* resize.h — target size selection (Qwen2-VL smart_resize) and the bicubic resize the reference processor uses.
 *
 * Reference: transformers 5.17 `Qwen2VLImageProcessor` (torchvision backend, the default) resizes the uint8 image
 * tensor with torchvision `resize(..., BICUBIC, antialias=True)`, which on CPU runs PyTorch's native uint8 kernel
 * (aten/src/ATen/native/cpu/UpSampleKernel.cpp, `_upsample_bicubic2d_aa`): PIL-style support scaling, Keys cubic
 * with a = -0.5, weights normalised in double and rounded to int16 fixed point, horizontal pass then vertical pass,
 * each rounding to uint8. vision_resize_bicubic reproduces it bit for bit. */
#ifndef VISION_RESIZE_H
#define VISION_RESIZE_H

#include <stdint.h>

#include "vision.h"

/* smart_resize(height, width, factor, min_pixels, max_pixels) from qwen2_vl/image_processing_qwen2_vl.py: both sides
 * multiples of `factor`, area within [min_pixels, max_pixels] where possible, aspect ratio kept. Rounds half to even
 * like Python's round(). Fails with VISION_E_SIZE when max(h,w)/min(h,w) > 200 (the reference raises ValueError) or
 * the result would be empty. */
int vision_smart_resize(int64_t height, int64_t width, int64_t factor, int64_t min_pixels, int64_t max_pixels,
                        int32_t *out_h, int32_t *out_w, vision_err *e);

/* Resizes packed RGB src [sh][sw][3] to dst [dh][dw][3] (antialiased bicubic, uint8 in and out, bit-exact with
 * torch's CPU kernel). Equal sizes copy. Returns VISION_E_NOMEM/VISION_E_ARG on failure. */
int vision_resize_bicubic(const uint8_t *src, int32_t sw, int32_t sh, uint8_t *dst, int32_t dw, int32_t dh,
                          vision_err *e);

#endif
