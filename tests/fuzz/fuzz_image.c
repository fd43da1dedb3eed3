/* fuzz_image.c — libFuzzer target for image bytes through the whole input path: header checks (vision_probe),
 * decoding (SDL2_image via vision_image_decode) and preprocessing (smart_resize, resize, normalise, patchify).
 *
 *   make fuzz && mkdir -p build/fuzz/corpus_image && build/fuzz/fuzz_image -max_total_time=60 \
 *       -dict=tests/fuzz/fuzz_image.dict build/fuzz/corpus_image tests/data/vision/img
 * (libFuzzer adds new inputs to the first folder; the committed test images are the seeds.)
 *
 * Any input must either fail with a negative code and one line naming the input, or decode to an image of the
 * size its header claims, within the limits, whose preprocessing either succeeds with a consistent grid and
 * values in [-1, 1] or is refused for its aspect ratio. Anything else (or an ASan/UBSan report) is a bug.
 * tests/test_vision_image.c includes this file with VISION_FUZZ_NO_ENTRY defined and runs vision_fuzz_one() on
 * damaged copies of the test images, so the suite checks the same invariants without clang's fuzzer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "preprocess.h"

#define VISION_FUZZ_NAME "fuzz-input"

/* Returns 0 when every invariant holds, -1 (after the first broken one) otherwise. */
static int vision_fuzz_one(const uint8_t *data, size_t size) {
    vision_limits lim; /* small limits: the fuzzer must not spend its time (or memory) on huge canvases */
    vision_default_limits(&lim);
    lim.max_side = 4096;
    lim.max_pixels = 1 << 20;
    vision_header hd;
    vision_err pe = { { 0 } };
    int prc = vision_probe(data, size, &lim, &hd, &pe);

    vision_image *img = (vision_image *)1;
    vision_err e = { { 0 } };
    int rc = vision_image_decode(data, size, VISION_FUZZ_NAME, &lim, &img, &e);
    if (rc) {
        size_t n = strlen(VISION_FUZZ_NAME);
        int ok = rc < 0 && img == NULL && !strncmp(e.msg, VISION_FUZZ_NAME ": ", n + 2) && e.msg[n + 2] &&
                 !strchr(e.msg, '\n');
        if (prc && rc != prc) ok = 0; /* a header refusal is reported as such */
        return ok ? 0 : -1;
    }
    if (prc || !img || img->w != hd.width || img->h != hd.height || (int64_t)img->w * img->h > lim.max_pixels)
        return -1;

    vision_params p;
    vision_default_params(&p);
    vision_patches pv;
    int bad = 0;
    rc = vision_preprocess_image(img, &p, &pv, &e);
    if (rc) {
        bad = !(rc == VISION_E_SIZE && strstr(e.msg, "aspect ratio") && !pv.pixel_values);
    } else {
        bad = pv.grid_t != 1 || pv.dim != 1536 || pv.rows != (int64_t)pv.grid_h * pv.grid_w ||
              pv.resized_h != pv.grid_h * 16 || pv.resized_w != pv.grid_w * 16 || pv.grid_h % 2 || pv.grid_w % 2 ||
              (int64_t)pv.resized_h * pv.resized_w < 3136;
        for (int64_t i = 0; !bad && i < pv.rows * pv.dim; i += 61) {
            float v = pv.pixel_values[i];
            if (!(v >= -1.0f && v <= 1.0f)) bad = 1;
        }
        vision_patches_free(&pv);
    }
    vision_image_free(img);
    return bad ? -1 : 0;
}

#ifndef VISION_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (vision_fuzz_one(data, size)) abort();
    return 0;
}
#endif
