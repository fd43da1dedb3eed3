/* sampler.c — turns logits into a token id the way transformers' generate does: repetition penalty
 * (RepetitionPenaltyLogitsProcessor: divide positive, multiply negative logits of ids seen so far), then for sampling
 * temperature → top-k → top-p → min-p (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper,
 * MinPLogitsWarper), then a draw; greedy (temperature <= 0) takes the argmax after the penalty (lowest id on ties). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "omni.h"
#include "util.h"

struct omni_sampler {
    omni_sampling_params p;
    int32_t vocab;
    uint8_t *seen;       /* [vocab] ids that received the repetition penalty */
    omni_rng rng;
    int32_t *idx;        /* scratch: candidate ids */
};

omni_sampling_params omni_sampling_default_params(void) {
    omni_sampling_params p = { 0.0f, 0, 1.0f, 0.0f, 1.0f, 0 };
    return p;
}

omni_sampler *omni_sampler_new(const omni_sampling_params *p, int32_t vocab) {
    omni_sampler *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->p = *p;
    s->vocab = vocab;
    s->seen = calloc((size_t)vocab, 1);
    s->idx = malloc((size_t)vocab * sizeof *s->idx);
    if (!s->seen || !s->idx) {
        omni_sampler_free(s);
        return NULL;
    }
    s->rng.s = p->seed ? p->seed : 0x5eed5eedull;
    return s;
}

void omni_sampler_free(omni_sampler *s) {
    if (!s) return;
    free(s->seen);
    free(s->idx);
    free(s);
}

void omni_sampler_accept(omni_sampler *s, int32_t id) {
    if (id >= 0 && id < s->vocab) s->seen[id] = 1;
}

static const float *g_sort_logits;
static int cmp_desc(const void *a, const void *b) {
    float x = g_sort_logits[*(const int32_t *)a], y = g_sort_logits[*(const int32_t *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

int32_t omni_sampler_sample(omni_sampler *s, float *lg) {
    const omni_sampling_params *p = &s->p;
    int32_t V = s->vocab;
    if (p->repetition_penalty > 0 && p->repetition_penalty != 1.0f)
        for (int32_t i = 0; i < V; i++)
            if (s->seen[i]) lg[i] = lg[i] > 0 ? lg[i] / p->repetition_penalty : lg[i] * p->repetition_penalty;
    if (p->temperature <= 0) {
        int32_t best = 0;
        for (int32_t i = 1; i < V; i++)
            if (lg[i] > lg[best]) best = i;
        return best;
    }
    for (int32_t i = 0; i < V; i++) lg[i] /= p->temperature;
    /* candidates sorted by logit; top-k cuts the list first */
    int32_t n = V;
    for (int32_t i = 0; i < V; i++) s->idx[i] = i;
    int32_t k = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    float mx = -INFINITY;
    for (int32_t i = 0; i < V; i++) mx = fmaxf(mx, lg[i]);
    if (k < V || p->top_p < 1.0f || p->min_p > 0) {
        /* partial order is enough for top-k; top-p needs the sorted prefix */
        g_sort_logits = lg;
        qsort(s->idx, (size_t)V, sizeof *s->idx, cmp_desc);
        n = k;
    }
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)lg[s->idx[i]] - mx);
    if (p->top_p < 1.0f) { /* smallest prefix whose mass reaches top_p (at least one token) */
        double acc = 0;
        int32_t keep = n;
        for (int32_t i = 0; i < n; i++) {
            acc += exp((double)lg[s->idx[i]] - mx) / sum;
            if (acc >= p->top_p) {
                keep = i + 1;
                break;
            }
        }
        n = keep;
    }
    if (p->min_p > 0) { /* drop tokens whose probability is below min_p × the top probability */
        double top = exp((double)lg[s->idx[0]] - mx);
        int32_t keep = 0;
        for (int32_t i = 0; i < n; i++)
            if (exp((double)lg[s->idx[i]] - mx) >= p->min_p * top) keep = i + 1;
        n = keep > 0 ? keep : 1;
    }
    sum = 0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)lg[s->idx[i]] - mx);
    double r = (double)omni_rng_uniform(&s->rng) * sum, acc = 0;
    for (int32_t i = 0; i < n; i++) {
        acc += exp((double)lg[s->idx[i]] - mx);
        if (acc >= r) return s->idx[i];
    }
    return s->idx[n - 1];
}
