/* fuzz_safetensors.c — libFuzzer target for the safetensors header parser (engine/safetensors.c).
 *
 *   make fuzz && mkdir -p build/fuzz/corpus && build/fuzz/fuzz_safetensors -max_total_time=60 \
 *       -dict=tests/fuzz/fuzz_safetensors.dict build/fuzz/corpus tests/fuzz/corpus_safetensors
 * (libFuzzer adds new inputs to the first folder; the committed seeds are four small valid files.)
 *
 * Any input must either parse into a set whose every tensor view lies inside the input and is found again by name,
 * or fail with a negative code and a message naming the file; anything else (or an ASan/UBSan report) is a bug.
 * tests/test_safetensors.c includes this file with ST_FUZZ_NO_ENTRY defined and drives st_fuzz_one() with mutated
 * headers, so the suite exercises the same checks without clang's fuzzer. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

#define ST_FUZZ_PATH "fuzz.safetensors"

/* Returns 0 when every invariant holds, -1 (after the first broken one) otherwise. */
static int st_fuzz_one(const uint8_t *data, size_t size) {
    st_set *s = (st_set *)1;
    omni_err e = { { 0 } };
    int rc = st_parse(data, size, ST_FUZZ_PATH, &s, &e);
    if (rc) return (rc < 0 && !s && strstr(e.msg, ST_FUZZ_PATH)) ? 0 : -1;
    if (!s) return -1;
    int bad = 0;
    volatile uint8_t sink = 0;
    for (int i = 0; i < st_count(s) && !bad; i++) {
        const st_tensor *t = st_get(s, i);
        uint64_t n = st_dtype_size(t->dtype);
        for (int d = 0; d < t->n_dims; d++) n *= (uint64_t)t->shape[d]; /* validated not to overflow */
        const uint8_t *p = t->data;
        if (!t->name || st_find(s, t->name) != t || n != t->nbytes || t->n_dims < 0 || t->n_dims > ST_MAX_DIMS ||
            p < data + 8 || p > data + size || t->nbytes > (size_t)(data + size - p) || strcmp(t->file, ST_FUZZ_PATH))
            bad = 1;
        else if (t->nbytes) /* touch both ends so ASan sees a view that leaves the buffer */
            sink = (uint8_t)(sink + p[0] + p[t->nbytes - 1]);
    }
    (void)sink;
    (void)st_metadata(s, "format");
    if (st_get(s, st_count(s)) || st_find(s, "\x01no such tensor")) bad = 1;
    st_close(s);
    return bad ? -1 : 0;
}

#ifndef ST_FUZZ_NO_ENTRY
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (st_fuzz_one(data, size)) abort();
    return 0;
}
#endif
