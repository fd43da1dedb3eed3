/* ring.h — lock-free single-producer/single-consumer ring of float samples.
 *
 * One thread writes (e.g. the PortAudio callback), one thread reads; neither ever blocks, locks or allocates after
 * audio_ring_init. The capacity is a power of two so positions wrap with a mask. When the writer finds the ring
 * full it keeps what fits and drops the rest of that write (the newest samples), counting them: the reader alone
 * owns the read position, so the writer cannot discard old samples without a race. */
#ifndef AUDIO_RING_H
#define AUDIO_RING_H

#include <stddef.h>
#include <stdint.h>

#include "audio.h"

typedef struct audio_ring audio_ring;

/* capacity: samples the ring can hold, rounded up to a power of two (at least 2, at most 2^30). */
int audio_ring_init(audio_ring **out, size_t capacity, audio_err *e);
void audio_ring_free(audio_ring *r);

size_t audio_ring_capacity(const audio_ring *r);

/* Producer side. Copies min(n, free space) samples and returns how many; the rest are dropped and counted. */
size_t audio_ring_write(audio_ring *r, const float *src, size_t n);
size_t audio_ring_space(const audio_ring *r); /* free samples as the producer sees them */

/* Consumer side. Copies up to n samples into dst (dst may be NULL to discard them) and returns how many. */
size_t audio_ring_read(audio_ring *r, float *dst, size_t n);
size_t audio_ring_available(const audio_ring *r); /* readable samples as the consumer sees them */

/* Samples dropped by the writer since init (readable from any thread). */
uint64_t audio_ring_dropped(const audio_ring *r);
/* Samples accepted by the writer since init (readable from any thread). */
uint64_t audio_ring_written(const audio_ring *r);

#endif
