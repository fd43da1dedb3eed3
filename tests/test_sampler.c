/* test_sampler.c — the sampler's selection (engine/sampler.c picks the kept candidates with a heap of the best m
 * instead of sorting the whole vocabulary) against the plain algorithm written out here: the penalty, temperature,
 * a full sort by logit (ties to the lower id), top-k, top-p over the sorted prefix, min-p, and the same draw. Both
 * use the same random stream, so every drawn id must be equal, on vocabularies from 6 to 152064 ids (the thinker's),
 * with many tied logits, top-p cut inside and outside the first selection, and min-p alone. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "backend.h"
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
    int32_t n = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    ref_lg = lg;
    if (n < V || p->top_p < 1.0f || p->min_p > 0) /* no warper: the draw runs over the ids in order */
        qsort(idx, (size_t)V, sizeof *idx, ref_cmp);
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
        for (int c = 0; c < 28; c++) {
            omni_rng g = { (uint64_t)(c * 31 + vi + 1) };
            for (int32_t i = 0; i < V; i++) { /* peaked, few distinct values (ties), or flat */
                float u = omni_rng_uniform(&g);
                lg[i] = c % 3 == 0 ? -2.0f * logf(u + 1e-7f) : c % 3 == 1 ? (float)(int)(u * 7.0f) : 3.0f * u * u;
            }
            omni_sampling_params p = omni_sampling_default_params();
            p.temperature = c % 6 == 0 ? 0.0f : 0.4f + 0.2f * (float)(c % 4);
            const int32_t ks[4] = { 0, 1, 20, 300 };
            const float ps[4] = { 1.0f, 0.8f, 0.99f, 0.2f }, mps[4] = { 0.0f, 0.05f, 0.5f, 1e-30f };
            p.top_k = ks[c % 4];
            p.top_p = ps[(c / 2) % 4];
            p.min_p = mps[c % 4]; /* (1e-30: min-p keeps every id) */
            if (c >= 24) { /* min-p without top-k, also keeping every id (1e-30), with and without top-p */
                const int32_t xk[4] = { 0, 0, 0, 20 };
                const float xp[4] = { 1.0f, 1.0f, 0.9f, 1.0f }, xm[4] = { 1e-30f, 0.05f, 1e-30f, 1e-30f };
                p.temperature = 0.8f, p.top_k = xk[c - 24], p.top_p = xp[c - 24], p.min_p = xm[c - 24];
            }
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
    CHECK(draws == 3 * 28 * 6);
}

/* the chunk lists of backend.h topk_chunks, written out (a full sort of each chunk) */
static void chunk_lists(const float *lg, int32_t V, int k, int32_t *out, int32_t *ids) {
    ref_lg = lg;
    for (int32_t c = 0; c * OB_TOPK_CHUNK < V; c++) {
        int32_t m = V - c * OB_TOPK_CHUNK < OB_TOPK_CHUNK ? V - c * OB_TOPK_CHUNK : OB_TOPK_CHUNK;
        for (int32_t i = 0; i < m; i++) ids[i] = c * OB_TOPK_CHUNK + i;
        qsort(ids, (size_t)m, sizeof *ids, ref_cmp);
        for (int j = 0; j < k; j++) {
            int32_t *e = out + ((size_t)c * k + j) * 2;
            e[0] = j < m ? ids[j] : -1;
            if (j < m) memcpy(&e[1], &lg[ids[j]], 4);
            else e[1] = 0;
        }
    }
}

/* Sampling from the chunk candidates (omni_sampler_sample_cand) draws what sampling the whole row draws, whenever it
 * answers; with a top-k or greedy on peaked logits it must answer (the decode path relies on it), and it must refuse
 * where it cannot know (no top-k, a penalty below 1, a top-k beyond the candidates). */
TEST(sampler_candidates) {
    const int32_t vocab[2] = { 5000, 152064 };
    int answered = 0, asked = 0;
    for (int vi = 0; vi < 2; vi++) {
        int32_t V = vocab[vi], lists = (V + OB_TOPK_CHUNK - 1) / OB_TOPK_CHUNK;
        float *lg = malloc((size_t)V * 4), *a = malloc((size_t)V * 4);
        int32_t *cand = malloc((size_t)lists * OB_TOPK_K * 8), *ids = malloc((size_t)OB_TOPK_CHUNK * 4);
        REQUIRE(lg && a && cand && ids);
        for (int c = 0; c < 12; c++) {
            omni_rng g = { (uint64_t)(c * 13 + vi + 5) };
            for (int32_t i = 0; i < V; i++) { /* peaked (a few strong ids), or with ties */
                float u = omni_rng_uniform(&g);
                lg[i] = c % 2 ? -2.0f * logf(u + 1e-7f) + (i % 211 == 3 ? 9.0f : 0.0f) : (float)(int)(u * 40.0f) * 0.25f;
            }
            omni_sampling_params p = omni_sampling_default_params();
            p.temperature = c % 4 == 0 ? 0.0f : 0.7f;
            p.top_k = c % 3 == 0 ? 1 : 20;
            p.top_p = c % 5 == 1 ? 0.8f : 1.0f;
            p.min_p = c % 5 == 2 ? 0.1f : 0.0f;
            p.repetition_penalty = c % 2 ? 1.05f : 1.0f;
            p.seed = (uint64_t)c + 3;
            omni_sampler *sf = omni_sampler_new(&p, V), *sc = omni_sampler_new(&p, V);
            REQUIRE(sf && sc);
            for (int j = 0; j < 40; j++) { /* seen ids, among them some of the strongest */
                omni_sampler_accept(sf, (j * 211 + 3) % V);
                omni_sampler_accept(sc, (j * 211 + 3) % V);
            }
            for (int r = 0; r < 5; r++) {
                chunk_lists(lg, V, OB_TOPK_K, cand, ids);
                memcpy(a, lg, (size_t)V * 4);
                int32_t x = omni_sampler_sample(sf, a), y = omni_sampler_sample_cand(sc, cand, lists, OB_TOPK_K);
                asked++;
                if (y < 0) { /* refused: the caller samples the row, which keeps both samplers' streams aligned */
                    memcpy(a, lg, (size_t)V * 4);
                    y = omni_sampler_sample(sc, a);
                } else
                    answered++;
                if (x != y)
                    th_fail(__FILE__, __LINE__, "V %d case %d draw %d: row %d, candidates %d", V, c, r, x, y);
                omni_sampler_accept(sf, x);
                omni_sampler_accept(sc, y);
            }
            omni_sampler_free(sf), omni_sampler_free(sc);
        }
        /* refusals: no top-k, a penalty that raises seen ids, more kept than the candidates hold */
        chunk_lists(lg, V, OB_TOPK_K, cand, ids);
        omni_sampling_params p = omni_sampling_default_params();
        p.temperature = 0.7f;
        omni_sampler *s = omni_sampler_new(&p, V);
        CHECK_EQ_INT(omni_sampler_sample_cand(s, cand, lists, OB_TOPK_K), -1);
        omni_sampler_free(s);
        p.top_k = 20, p.repetition_penalty = 0.9f;
        s = omni_sampler_new(&p, V);
        CHECK_EQ_INT(omni_sampler_sample_cand(s, cand, lists, OB_TOPK_K), -1);
        omni_sampler_free(s);
        p.top_k = lists * OB_TOPK_K + 1, p.repetition_penalty = 1.0f;
        s = omni_sampler_new(&p, V);
        CHECK_EQ_INT(omni_sampler_sample_cand(s, cand, lists, OB_TOPK_K), -1);
        omni_sampler_free(s);
        free(lg), free(a), free(cand), free(ids);
    }
    if (answered < asked * 3 / 4)
        th_fail(__FILE__, __LINE__, "the candidates answered %d of %d draws (greedy / top-k on peaked logits)", answered,
                asked);
}
