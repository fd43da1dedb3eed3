/* test_sampler.c — the sampler's selection (engine/sampler.c picks the kept candidates with a heap of the best m
 * instead of sorting the whole vocabulary) against the plain algorithm written out here: the penalty, temperature,
 * a full sort by logit (ties to the lower id), top-k, top-p over the sorted prefix, min-p, and the same draw. Both
 * use the same random stream, so every drawn id must be equal, on vocabularies from 6 to 152064 ids (the thinker's),
 * with many tied logits, top-p cut inside and outside the first selection, and min-p alone. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "omni.h"
#include "util.h"

static const float *ref_lg;
static int ref_cmp(const void *a, const void *b) {
    float x = ref_lg[*(const int32_t *)a], y = ref_lg[*(const int32_t *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

/* transformers' warpers over a fully sorted candidate list (the sampler's documented semantics) */
static int32_t ref_sample(const omni_sampling_params *p, const uint8_t *seen, omni_rng *rng, float *lg, int32_t V,
                          int32_t *idx) {
    if (p->repetition_penalty > 0 && p->repetition_penalty != 1.0f)
        for (int32_t i = 0; i < V; i++)
            if (seen[i]) lg[i] = lg[i] > 0 ? lg[i] / p->repetition_penalty : lg[i] * p->repetition_penalty;
    if (p->temperature <= 0) {
        int32_t best = 0;
        for (int32_t i = 1; i < V; i++)
            if (lg[i] > lg[best]) best = i;
        return best;
    }
    float mx = -INFINITY;
    for (int32_t i = 0; i < V; i++) {
        lg[i] /= p->temperature;
        mx = fmaxf(mx, lg[i]);
    }
    for (int32_t i = 0; i < V; i++) idx[i] = i;
    ref_lg = lg;
    qsort(idx, (size_t)V, sizeof *idx, ref_cmp);
    int32_t n = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)lg[idx[i]] - mx);
    if (p->top_p < 1.0f) {
        double acc = 0;
        for (int32_t i = 0; i < n; i++) {
            acc += exp((double)lg[idx[i]] - mx) / sum;
            if (acc >= p->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0) {
        int32_t keep = 0;
        for (int32_t i = 0; i < n; i++)
            if (exp((double)lg[idx[i]] - mx) >= p->min_p) keep = i + 1;
        n = keep > 0 ? keep : 1;
    }
    sum = 0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)lg[idx[i]] - mx);
    double r = (double)omni_rng_uniform(rng) * sum, acc = 0;
    for (int32_t i = 0; i < n; i++) {
        acc += exp((double)lg[idx[i]] - mx);
        if (acc >= r) return idx[i];
    }
    return idx[n - 1];
}

TEST(sampler_matches_full_sort) {
    const int32_t vocab[3] = { 6, 3000, 152064 };
    int differ = 0, draws = 0;
    for (int vi = 0; vi < 3; vi++) {
        int32_t V = vocab[vi];
        float *lg = malloc((size_t)V * 4), *a = malloc((size_t)V * 4), *b = malloc((size_t)V * 4);
        int32_t *idx = malloc((size_t)V * 4);
        uint8_t *seen = calloc((size_t)V, 1);
        REQUIRE(lg && a && b && idx && seen);
        for (int c = 0; c < 24; c++) {
            omni_rng g = { (uint64_t)(c * 31 + vi + 1) };
            for (int32_t i = 0; i < V; i++) { /* peaked, few distinct values (ties), or flat */
                float u = omni_rng_uniform(&g);
                lg[i] = c % 3 == 0 ? -2.0f * logf(u + 1e-7f) : c % 3 == 1 ? (float)(int)(u * 7.0f) : 3.0f * u * u;
            }
            omni_sampling_params p = omni_sampling_default_params();
            p.temperature = c % 6 == 0 ? 0.0f : 0.4f + 0.2f * (float)(c % 4);
            const int32_t ks[4] = { 0, 1, 20, 300 };
            const float ps[4] = { 1.0f, 0.8f, 0.99f, 0.2f }, mps[3] = { 0.0f, 0.05f, 0.5f };
            p.top_k = ks[c % 4];
            p.top_p = ps[(c / 2) % 4];
            p.min_p = mps[c % 3];
            p.repetition_penalty = c % 2 ? 1.1f : 1.0f;
            p.seed = (uint64_t)c + 1;
            omni_sampler *s = omni_sampler_new(&p, V);
            REQUIRE(s);
            omni_rng rr = { p.seed };
            memset(seen, 0, (size_t)V);
            for (int j = 0; j < 12; j++) {
                int32_t id = (j * 97 + c) % V;
                omni_sampler_accept(s, id);
                seen[id] = 1;
            }
            for (int r = 0; r < 6; r++) {
                memcpy(a, lg, (size_t)V * 4);
                memcpy(b, lg, (size_t)V * 4);
                int32_t x = ref_sample(&p, seen, &rr, a, V, idx), y = omni_sampler_sample(s, b);
                draws++;
                if (x != y && differ++ < 5)
                    th_fail(__FILE__, __LINE__, "V %d case %d draw %d: reference %d, sampler %d (T %.1f k %d p %.2f "
                            "min-p %.2f)", V, c, r, x, y, p.temperature, p.top_k, p.top_p, p.min_p);
                omni_sampler_accept(s, x);
                seen[x] = 1;
            }
            omni_sampler_free(s);
        }
        free(lg), free(a), free(b), free(idx), free(seen);
    }
    CHECK(draws == 3 * 24 * 6);
}
