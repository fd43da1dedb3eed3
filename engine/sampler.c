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
    float *val;          /* [vocab] scratch of omni_sampler_sample_cand (allocated on first use) */
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
    free(s->val);
    free(s);
}

void omni_sampler_accept(omni_sampler *s, int32_t id) {
    if (id < 0 || id >= s->vocab || s->seen[id]) return;
    s->seen[id] = 1;
    s->seen_ids[s->n_seen++] = id;
}

/* ids by logit (descending, ties to the lower id); the logits come through qsort_r's argument, so samplers in
 * different threads (thinker and talker) do not share a global */
static int cmp_desc(const void *a, const void *b, void *ctx) {
    const float *lg = ctx;
    float x = lg[*(const int32_t *)a], y = lg[*(const int32_t *)b];
    if (x != y) return x > y ? -1 : 1;
    return *(const int32_t *)a - *(const int32_t *)b;
}

/* candidate a comes after candidate b in the order (logit descending, then id ascending) */
static int after(const float *lg, int32_t a, int32_t b) { return lg[a] < lg[b] || (lg[a] == lg[b] && a > b); }

/* out[0..m) = the m first of the n candidates in order (in: their ids, or NULL for 0..n-1): a heap of the m best so
 * far with the last of them at its root (each id costs one comparison unless it enters), then sorted; the whole list
 * sorted when m is most of n (out then needs n entries) */
static void select_top(int32_t *out, const int32_t *in, int32_t n, const float *lg, int32_t m) {
    if (m >= n / 4) {
        for (int32_t i = 0; i < n; i++) out[i] = in ? in[i] : i;
        qsort_r(out, (size_t)n, sizeof *out, cmp_desc, (void *)lg);
        return;
    }
    for (int32_t j = 0; j < m; j++) { /* the first m: each rises while it comes after its parent */
        int32_t i = in ? in[j] : j, c = j;
        while (c > 0 && after(lg, i, out[(c - 1) / 2])) {
            out[c] = out[(c - 1) / 2];
            c = (c - 1) / 2;
        }
        out[c] = i;
    }
    float rv = lg[out[0]]; /* the root's logit: most ids fail the first test against it */
    for (int32_t j = m; j < n; j++) {
        int32_t i = in ? in[j] : j;
        if (lg[i] < rv || (lg[i] == rv && i > out[0])) continue; /* not better than the heap's last */
        int32_t c = 0; /* it replaces the root and sinks below every child it comes after */
        for (;;) {
            int32_t l = 2 * c + 1, r = l + 1, w = -1;
            if (l < m && after(lg, out[l], i)) w = l;
            if (r < m && after(lg, out[r], w < 0 ? i : out[l])) w = r;
            if (w < 0) break;
            out[c] = out[w];
            c = w;
        }
        out[c] = i;
        rv = lg[out[0]];
    }
    qsort_r(out, (size_t)m, sizeof *out, cmp_desc, (void *)lg);
}

/* the draw from the first n of s->idx (sorted), mx the largest logit of all */
static int32_t draw(omni_sampler *s, const float *lg, int32_t n, float mx) {
    double sum = 0;
    for (int32_t i = 0; i < n; i++) sum += exp((double)lg[s->idx[i]] - mx);
    double r = (double)omni_rng_uniform(&s->rng) * sum, acc = 0;
    for (int32_t i = 0; i < n; i++) {
        acc += exp((double)lg[s->idx[i]] - mx);
        if (acc >= r) return s->idx[i];
    }
    return s->idx[n - 1];
}

/* the top-k (the first k of s->idx, sorted) cut by top-p and min-p, then the draw */
static int32_t draw_top_k(omni_sampler *s, const float *lg, int32_t k, float mx) {
    const omni_sampling_params *p = &s->p;
    int32_t n = k;
    if (p->top_p < 1.0f) { /* smallest prefix whose mass reaches top_p (at least one token) */
        double sum = 0, acc = 0;
        for (int32_t i = 0; i < k; i++) sum += exp((double)lg[s->idx[i]] - mx);
        for (int32_t i = 0; i < k; i++) {
            acc += exp((double)lg[s->idx[i]] - mx) / sum;
            if (acc >= p->top_p) {
                n = i + 1;
                break;
            }
        }
    }
    if (p->min_p > 0) { /* within min_p of the top probability (e^0 = 1 at the maximum) */
        int32_t keep = 0;
        for (int32_t i = 0; i < n; i++)
            if (exp((double)lg[s->idx[i]] - mx) >= p->min_p) keep = i + 1;
        n = keep > 0 ? keep : 1;
    }
    return draw(s, lg, n, mx);
}

static float penalized(const omni_sampling_params *p, float v) {
    return v > 0 ? v / p->repetition_penalty : v * p->repetition_penalty;
}

static int penalty_on(const omni_sampling_params *p) {
    return p->repetition_penalty > 0 && p->repetition_penalty != 1.0f;
}

int32_t omni_sampler_sample(omni_sampler *s, float *lg) {
    const omni_sampling_params *p = &s->p;
    int32_t V = s->vocab;
    if (penalty_on(p))
        for (int32_t j = 0; j < s->n_seen; j++) lg[s->seen_ids[j]] = penalized(p, lg[s->seen_ids[j]]);
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
    if (k < V) {
        select_top(s->idx, NULL, V, lg, k);
        return draw_top_k(s, lg, k, mx);
    }
    int32_t n = V; /* candidates kept, the first n of idx */
    if (p->top_p < 1.0f || p->min_p > 0) {
        double sum = 0; /* the mass of all (summed here in id order) */
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
        int32_t m = p->min_p > 0 ? n_min : 256; /* (min-p: all it keeps, which may be every id) */
        for (;;) {
            select_top(s->idx, NULL, V, lg, m);
            if (p->top_p < 1.0f) { /* smallest prefix whose mass reaches top_p (at least one token) */
                double acc = 0;
                int32_t keep = -1, lim = m < V ? m : V;
                for (int32_t i = 0; i < lim; i++) {
                    acc += exp((double)lg[s->idx[i]] - mx) / sum;
                    if (acc >= p->top_p) {
                        keep = i + 1;
                        break;
                    }
                }
                if (keep < 0 && m < V && m < n_min) { /* not reached within the m selected (nor cut by min-p) */
                    m = m > V / 4 ? V : 4 * m;
                    continue;
                }
                n = keep < 0 ? n : keep;
            }
            break;
        }
        if (n_min < n) n = n_min; /* the prefix of the sorted candidates at or above the bound */
    } else {
        for (int32_t i = 0; i < V; i++) s->idx[i] = i;
    }
    return draw(s, lg, n, mx);
}

/* The same draw from candidates: the best entries of each chunk of the raw logits (backend.h topk_chunks). Outside
 * them every logit is at most the best of the full lists' last entries (B); the repetition penalty (>= 1) and the
 * temperature only lower or keep values and the order, so when the k-th kept candidate (after both) is above B's
 * value (after the temperature) nothing outside can enter the top-k, and the draw is the one from the whole row.
 * Greedy is the top-1. Returns -1 where that cannot be shown (no top-k, a penalty below 1, too few candidates). */
int32_t omni_sampler_sample_cand(omni_sampler *s, const int32_t *cand, int n_lists, int k_list) {
    const omni_sampling_params *p = &s->p;
    int32_t V = s->vocab;
    int greedy = p->temperature <= 0;
    int32_t ks = greedy ? 1 : p->top_k > 0 && p->top_k < V ? p->top_k : 0;
    if (!ks || k_list < 1 || (p->repetition_penalty > 0 && p->repetition_penalty < 1.0f)) return -1;
    if (!s->val && !(s->val = malloc((size_t)V * sizeof *s->val))) return -1;
    int32_t n = 0, bi = -1;
    float bv = 0;
    for (int l = 0; l < n_lists; l++) {
        const int32_t *e = cand + (size_t)l * (size_t)k_list * 2;
        if (e[2 * (k_list - 1)] >= 0) { /* a full list: its chunk's other entries are at most its last */
            float v;
            memcpy(&v, &e[2 * (k_list - 1) + 1], 4);
            if (bi < 0 || v > bv || (v == bv && e[2 * (k_list - 1)] < bi)) bv = v, bi = e[2 * (k_list - 1)];
        }
        for (int j = 0; j < k_list && e[2 * j] >= 0; j++) {
            int32_t id = e[2 * j];
            float v;
            memcpy(&v, &e[2 * j + 1], 4);
            if (id >= V || n >= V / 2) return -1;
            if (penalty_on(p) && s->seen[id]) v = penalized(p, v);
            s->val[id] = greedy ? v : v / p->temperature;
            s->idx[n++] = id;
        }
    }
    if (n < ks) return -1;
    select_top(s->idx + n, s->idx, n, s->val, ks); /* (the heap and the result after the candidates) */
    memmove(s->idx, s->idx + n, (size_t)ks * sizeof *s->idx);
    if (bi >= 0 && !(s->val[s->idx[ks - 1]] > (greedy ? bv : bv / p->temperature))) return -1;
    if (greedy) return s->idx[0];
    return draw_top_k(s, s->val, ks, s->val[s->idx[0]]);
}
