/* threadpool.h — a fixed pool of worker threads for data-parallel loops (the CPU back-end's only parallelism). */
#ifndef OMNI_THREADPOOL_H
#define OMNI_THREADPOOL_H

#include <stdint.h>

typedef struct tp_pool tp_pool;

/* fn(ctx, begin, end, thread_index) processes items [begin, end). */
typedef void (*tp_fn)(void *ctx, int64_t begin, int64_t end, int thread);

tp_pool *tp_new(int n_threads); /* n_threads total, the caller included; <= 0 = online cores */
void tp_free(tp_pool *p);
int tp_threads(const tp_pool *p);
/* Runs fn over [0, n) split into chunks of at least `grain` items, on all threads; returns when all are done. */
void tp_parallel_for(tp_pool *p, int64_t n, int64_t grain, tp_fn fn, void *ctx);

#endif
