/* test_audio_ring.c — the lock-free SPSC ring: wrap-around, overflow accounting, and two threads moving millions
 * of sequence-numbered samples. */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

#include "harness.h"
#include "ring.h"

TEST(ring_capacity_and_overflow) {
    audio_ring *r;
    audio_err e = { { 0 } };
    CHECK_EQ_INT(audio_ring_init(&r, 0, &e), AUDIO_E_ARG);
    REQUIRE(audio_ring_init(&r, 5, &e) == 0);
    CHECK_EQ_INT(audio_ring_capacity(r), 8); /* rounded up to a power of two */
    float in[20], out[20];
    for (int i = 0; i < 20; i++) in[i] = (float)i;
    CHECK_EQ_INT(audio_ring_write(r, in, 5), 5);
    CHECK_EQ_INT(audio_ring_write(r, in + 5, 5), 3); /* 3 fit, 2 dropped */
    CHECK_EQ_INT(audio_ring_dropped(r), 2);
    CHECK_EQ_INT(audio_ring_available(r), 8);
    CHECK_EQ_INT(audio_ring_space(r), 0);
    CHECK_EQ_INT(audio_ring_write(r, in, 4), 0);
    CHECK_EQ_INT(audio_ring_dropped(r), 6);
    CHECK_EQ_INT(audio_ring_written(r), 8);
    CHECK_EQ_INT(audio_ring_read(r, out, 3), 3);
    CHECK(out[0] == 0 && out[1] == 1 && out[2] == 2);
    /* wraps around the end of the buffer */
    CHECK_EQ_INT(audio_ring_write(r, in + 10, 3), 3);
    CHECK_EQ_INT(audio_ring_read(r, out, 20), 8);
    float want[8] = { 3, 4, 5, 6, 7, 10, 11, 12 };
    for (int i = 0; i < 8; i++) CHECK(out[i] == want[i]);
    CHECK_EQ_INT(audio_ring_read(r, out, 20), 0);
    /* discarding read */
    audio_ring_write(r, in, 4);
    CHECK_EQ_INT(audio_ring_read(r, NULL, 2), 2);
    CHECK_EQ_INT(audio_ring_read(r, out, 8), 2);
    CHECK(out[0] == 2 && out[1] == 3);
    audio_ring_free(r);
    audio_ring_free(NULL);
}

#define RING_N 8000000u     /* samples moved per run */
#define RING_SEQ 16777216u  /* float holds every integer below 2^24 exactly: the sequence wraps there */

typedef struct {
    audio_ring *r;
    int lossless;  /* 1: producer only writes what fits (waits otherwise); 0: writes blindly, ring drops */
    uint64_t produced;
} prod_arg;

static uint64_t xs(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return *s;
}

static void *producer(void *p) {
    prod_arg *a = p;
    float buf[512];
    uint64_t s = 0x1234567, next = 0;
    while (next < RING_N) {
        size_t want = 1 + (size_t)(xs(&s) % 500);
        if (want > RING_N - next) want = (size_t)(RING_N - next);
        if (a->lossless) {
            size_t space = audio_ring_space(a->r);
            if (space == 0) {
                sched_yield();
                continue;
            }
            if (want > space) want = space;
        }
        for (size_t i = 0; i < want; i++) buf[i] = (float)((next + i) % RING_SEQ);
        audio_ring_write(a->r, buf, want);
        next += want;
        if (!a->lossless && xs(&s) % 64 == 0) sched_yield();
    }
    a->produced = next;
    return NULL;
}

/* Reads until the producer is done and the ring is empty; checks the sequence. Returns samples read. */
static uint64_t consume(audio_ring *r, int lossless, atomic_int *done, int *errors) {
    float buf[700];
    uint64_t s = 0x7654321, got = 0;
    double last = -1;
    for (;;) {
        size_t want = 1 + (size_t)(xs(&s) % 700);
        size_t k = audio_ring_read(r, buf, want);
        for (size_t i = 0; i < k; i++) {
            if (lossless) {
                if (buf[i] != (float)((got + i) % RING_SEQ)) (*errors)++;
            } else { /* with drops: strictly increasing (before the wrap at 2^24, which 8M never reaches) */
                if (!(buf[i] > last)) (*errors)++;
                last = buf[i];
            }
        }
        got += k;
        if (k == 0) {
            if (atomic_load(done) && audio_ring_available(r) == 0) break;
            sched_yield();
        }
    }
    return got;
}

typedef struct {
    prod_arg a;
    atomic_int done;
} run_arg;

static void *producer_then_flag(void *p) {
    run_arg *ra = p;
    producer(&ra->a);
    atomic_store(&ra->done, 1);
    return NULL;
}

TEST(ring_two_threads_lossless) {
    audio_ring *r;
    REQUIRE(audio_ring_init(&r, 4096, NULL) == 0);
    run_arg ra = { { r, 1, 0 }, 0 };
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, producer_then_flag, &ra) == 0);
    int errors = 0;
    uint64_t got = consume(r, 1, &ra.done, &errors);
    pthread_join(th, NULL);
    CHECK_EQ_INT(errors, 0);
    CHECK_EQ_INT(got, RING_N);
    CHECK_EQ_INT(audio_ring_dropped(r), 0);
    CHECK_EQ_INT(audio_ring_written(r), RING_N);
    audio_ring_free(r);
}

TEST(ring_two_threads_overflowing) {
    audio_ring *r;
    REQUIRE(audio_ring_init(&r, 1024, NULL) == 0);
    run_arg ra = { { r, 0, 0 }, 0 };
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, producer_then_flag, &ra) == 0);
    int errors = 0;
    uint64_t got = consume(r, 0, &ra.done, &errors);
    pthread_join(th, NULL);
    CHECK_EQ_INT(errors, 0);
    /* every sample is either delivered or counted as dropped */
    CHECK_EQ_INT(got + audio_ring_dropped(r), RING_N);
    CHECK_EQ_INT(audio_ring_written(r), got);
    printf("    overflowing run: %llu delivered, %llu dropped\n", (unsigned long long)got,
           (unsigned long long)audio_ring_dropped(r));
    audio_ring_free(r);
}
