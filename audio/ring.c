/* ring.c — lock-free SPSC float ring (see ring.h).
 *
 * Positions are free-running size_t counters (they wrap naturally; the capacity is a power of two, so `pos & mask`
 * is the slot and `head - tail` the fill level even across the wrap). The producer owns `head`, the consumer owns
 * `tail`. Each publishes its counter with a release store after touching the data, and reads the other's with an
 * acquire load before touching the data: the consumer never sees a slot before its sample is written, and the
 * producer never overwrites a slot the consumer is still copying. The two counters live on separate cache lines so
 * the threads do not slow each other down by false sharing. */
#include "ring.h"

#include <stdalign.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#define RING_LINE 64
#define RING_MAX_CAPACITY ((size_t)1 << 30)

struct audio_ring {
    alignas(RING_LINE) _Atomic size_t head; /* samples ever written (producer) */
    _Atomic uint64_t written;               /* samples accepted (producer), for statistics */
    _Atomic uint64_t dropped;               /* samples dropped because the ring was full (producer) */
    alignas(RING_LINE) _Atomic size_t tail; /* samples ever read (consumer) */
    alignas(RING_LINE) size_t mask;         /* capacity - 1, read-only after init */
    float *buf;                             /* [capacity] */
};

int audio_ring_init(audio_ring **out, size_t capacity, audio_err *e) {
    if (!out) return audio_fail(e, AUDIO_E_ARG, "ring: no output handle");
    *out = NULL;
    if (capacity == 0 || capacity > RING_MAX_CAPACITY)
        return audio_fail(e, AUDIO_E_ARG, "ring: capacity %zu outside 1..%zu", capacity, RING_MAX_CAPACITY);
    size_t cap = 2;
    while (cap < capacity) cap <<= 1;
    size_t sz = (sizeof(audio_ring) + RING_LINE - 1) / RING_LINE * RING_LINE;
    audio_ring *r = aligned_alloc(RING_LINE, sz);
    if (!r) return audio_fail(e, AUDIO_E_NOMEM, "ring: out of memory");
    memset(r, 0, sizeof *r);
    r->buf = calloc(cap, sizeof *r->buf);
    if (!r->buf) {
        free(r);
        return audio_fail(e, AUDIO_E_NOMEM, "ring: out of memory for %zu samples", cap);
    }
    r->mask = cap - 1;
    atomic_init(&r->head, 0);
    atomic_init(&r->tail, 0);
    atomic_init(&r->written, 0);
    atomic_init(&r->dropped, 0);
    *out = r;
    return 0;
}

void audio_ring_free(audio_ring *r) {
    if (!r) return;
    free(r->buf);
    free(r);
}

size_t audio_ring_capacity(const audio_ring *r) { return r->mask + 1; }

size_t audio_ring_write(audio_ring *r, const float *src, size_t n) {
    size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    size_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    size_t space = r->mask + 1 - (h - t);
    size_t k = n < space ? n : space;
    if (k) {
        size_t at = h & r->mask, first = r->mask + 1 - at;
        if (first > k) first = k;
        memcpy(r->buf + at, src, first * sizeof *src);
        memcpy(r->buf, src + first, (k - first) * sizeof *src);
        atomic_store_explicit(&r->head, h + k, memory_order_release);
        /* only this thread writes the counters, so a plain load+store pair is enough (no locked RMW needed) */
        atomic_store_explicit(&r->written, atomic_load_explicit(&r->written, memory_order_relaxed) + k,
                              memory_order_relaxed);
    }
    if (k < n)
        atomic_store_explicit(&r->dropped, atomic_load_explicit(&r->dropped, memory_order_relaxed) + (n - k),
                              memory_order_relaxed);
    return k;
}

size_t audio_ring_space(const audio_ring *r) {
    size_t h = atomic_load_explicit(&r->head, memory_order_relaxed);
    size_t t = atomic_load_explicit(&r->tail, memory_order_acquire);
    return r->mask + 1 - (h - t);
}

size_t audio_ring_read(audio_ring *r, float *dst, size_t n) {
    size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    size_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    size_t avail = h - t;
    size_t k = n < avail ? n : avail;
    if (k) {
        if (dst) {
            size_t at = t & r->mask, first = r->mask + 1 - at;
            if (first > k) first = k;
            memcpy(dst, r->buf + at, first * sizeof *dst);
            memcpy(dst + first, r->buf, (k - first) * sizeof *dst);
        }
        atomic_store_explicit(&r->tail, t + k, memory_order_release);
    }
    return k;
}

size_t audio_ring_available(const audio_ring *r) {
    size_t t = atomic_load_explicit(&r->tail, memory_order_relaxed);
    size_t h = atomic_load_explicit(&r->head, memory_order_acquire);
    return h - t;
}

uint64_t audio_ring_dropped(const audio_ring *r) { return atomic_load_explicit(&r->dropped, memory_order_relaxed); }
uint64_t audio_ring_written(const audio_ring *r) { return atomic_load_explicit(&r->written, memory_order_relaxed); }
