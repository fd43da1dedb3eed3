/* sampler.c — turns logits into a token id the way transformers' generate does: repetition penalty
 * (RepetitionPenaltyLogitsProcessor: divide positive, multiply negative logits of ids seen so far), then for sampling
 * temperature → top-k → top-p → min-p (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper,
 * MinPLogitsWarper), then a draw; greedy (temperature <= 0) takes the argmax after the penalty (lowest id on ties).
 * The candidates are ordered by logit (ties: lower id first). Only the prefix the warpers keep is ever needed, so it
 * is selected (a heap of the best m, then sorted) and m grows only when top-p or min-p keep more: with a 152k
 * vocabulary a full sort took 35-41 ms per token on a CI-class core, the selection well under one (the draw is the
 * same: the order is total, so the prefix is the full sort's). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "omni.h"
#include "util.h"

struct omni_sampler {
    omni_sampling_params p;
    int32_t vocab;
    uint8_t *seen;       /* [vocab] ids that received the repetition penalty */
    int32_t *seen_ids;   /* the same ids as a list (the penalty touches only them) */
    int32_t n_seen;
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
    s->seen_ids = malloc((size_t)vocab * sizeof *s->seen_ids);
    s->idx = malloc((size_t)vocab * sizeof *s->idx);
    if (!s->seen || !s->seen_ids || !s->idx) {
        omni_sampler_free(s);
        return NULL;
    }
    s->rng.s = p->seed ? p->seed : 0x5eed5eedull;
    return s;
}

void omni_sampler_free(omni_sampler *s) {
    if (!s) return;
    free(s->seen);
    free(s->seen_ids);
    free(s->idx);
    free(s);
}

void omni_sampler_accept(omni_sampler *s, int32_t id) {
    if (id < 0 || id >= s->vocab || s->seen[id]) return;
    s->seen[id] = 1;
    s->seen_ids[s->n_seen++] = id;
}

static const float *g_sort_logits;
static int cmp_desc(const void *a, const void *b) {
    float x = g_sort_logits[*(const int32_t *)a], y = g_sort_logits[*(const int32_t *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

/* candidate a comes after candidate b in the order (logit descending, then id ascending) */
static int after(const float *lg, int32_t a, int32_t b) { return lg[a] < lg[b] || (lg[a] == lg[b] && a > b); }

/* idx[0..m) = the m first candidates of all V in order: a heap of the m best so far with the last of them at its
 * root (each id costs one comparison unless it enters), then sorted; the whole list sorted when m is most of V */
static void select_top(int32_t *idx, const float *lg, int32_t V, int32_t m) {
    g_sort_logits = lg;
    if (m >= V / 4) {
        for (int32_t i = 0; i < V; i++) idx[i] = i;
        qsort(idx, (size_t)V, sizeof *idx, cmp_desc);
        return;
    }
    for (int32_t i = 0; i < m; i++) { /* the first m: each rises while it comes after its parent */
        int32_t c = i;
        while (c > 0 && after(lg, i, idx[(c - 1) / 2])) {
            idx[c] = idx[(c - 1) / 2];
            c = (c - 1) / 2;
        }
        idx[c] = i;
    }
    float rv = lg[idx[0]]; /* the root's logit: most ids fail the first test against it */
    for (int32_t i = m; i < V; i++) {
        if (lg[i] < rv || (lg[i] == rv && i > idx[0])) continue; /* not better than the heap's last */
        int32_t c = 0; /* it replaces the root and sinks below every child it comes after */
        for (;;) {
            int32_t l = 2 * c + 1, r = l + 1, w = -1;
            if (l < m && after(lg, idx[l], i)) w = l;
            if (r < m && after(lg, idx[r], w < 0 ? i : idx[l])) w = r;
            if (w < 0) break;
            idx[c] = idx[w];
            c = w;
        }
        idx[c] = i;
        rv = lg[idx[0]];
    }
    qsort(idx, (size_t)m, sizeof *idx, cmp_desc);
}

int32_t omni_sampler_sample(omni_sampler *s, float *lg) {
    const omni_sampling_params *p = &s->p;
    int32_t V = s->vocab;
    if (p->repetition_penalty > 0 && p->repetition_penalty != 1.0f)
        for (int32_t j = 0; j < s->n_seen; j++) {
            int32_t i = s->seen_ids[j];
            lg[i] = lg[i] > 0 ? lg[i] / p->repetition_penalty : lg[i] * p->repetition_penalty;
        }
    if (p->temperature <= 0) {
        int32_t best = 0;
        float bv = lg[0];
        for (int32_t i = 1; i < V; i++)
            if (lg[i] > bv) bv = lg[i], best = i;
        return best;
    }
    int32_t k = p->top_k > 0 && p->top_k < V ? p->top_k : V;
    float mx = -INFINITY;
    for (int32_t i = 0; i < V; i++) { /* (the logits are finite: NaN would not order anyway) */
        float v = lg[i] / p->temperature;
        lg[i] = v;
        mx = v > mx ? v : mx;
    }
    int32_t n = V; /* candidates kept, the first n of idx */
    double sum = 0;
    if (k < V || p->top_p < 1.0f || p->min_p > 0) {
        /* sum: over the top-k, or over all (summed here in id order) */
        if (k == V)
            for (int32_t i = 0; i < V; i++) sum += exp((double)lg[i] - mx);
        /* min-p keeps those within min_p of the top probability (e^0 = 1 at the maximum): counted, not sorted */
        int32_t n_min = V;
        if (p->min_p > 0) { /* exp only near the bound: elsewhere the log decides (the margin covers its rounding) */
            double lb = log((double)p->min_p);
            n_min = 0;
            for (int32_t i = 0; i < V; i++) {
                double d = (double)lg[i] - mx;
                n_min += d > lb + 1e-6 || (d >= lb - 1e-6 && exp(d) >= p->min_p);
            }
            if (n_min < 1) n_min = 1;
        }
        int32_t m = k < V ? k : n_min < V ? n_min : 256;
        if (m > V) m = V;
        for (;;) {
            select_top(s->idx, lg, V, m);
            n = k;
            if (k < V) {
                sum = 0;
                for (int32_t i = 0; i < n; i++) sum += exp((double)lg[s->idx[i]] - mx);
            }
            if (p->top_p < 1.0f) { /* smallest prefix whose mass reaches top_p (at least one token) */
                double acc = 0;
                int32_t keep = -1, lim = m < n ? m : n;
                for (int32_t i = 0; i < lim; i++) {
                    acc += exp((double)lg[s->idx[i]] - mx) / sum;
                    if (acc >= p->top_p) {
                        keep = i + 1;
                        break;
                    }
                }
                if (keep < 0 && m < n && m < n_min) { /* not reached within the m selected (nor cut by min-p) */
                    m = m > V / 4 ? V : 4 * m;
                    continue;
                }
                n = keep < 0 ? n : keep;
            }
            break;
        }
        if (p->min_p > 0 && n_min < n) n = n_min; /* the prefix of the sorted candidates at or above the bound */
    } else {
        for (int32_t i = 0; i < V; i++) s->idx[i] = i;
        for (int32_t i = 0; i < V; i++) sum += exp((double)lg[i] - mx);
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
