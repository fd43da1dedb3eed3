// chain.glsl — two dependent stages in one dispatch ("chained" kernels), for the decode step's short kernels.
//
// A decode step on the H100 pays ~3 µs per dependent dispatch (launch, pipeline barrier, the first workgroups'
// start-up and the last ones' tail) for kernels that themselves take 5–30 µs, so a second stage that only waits for
// the first is instead run by further workgroups of the same dispatch:
//  - every workgroup takes a ticket from an atomic counter when it starts. Tickets follow the order in which
//    workgroups actually started, so the stage picked by ticket (first stage: tickets 0..n_first-1) puts every
//    producer before every consumer in start order. A consumer waits only on workgroups that already run, so
//    waiting cannot deadlock however many workgroups the device keeps resident (the decoupled look-back argument
//    of single-pass prefix scans); it does rely on a started workgroup making progress, which GPUs and lavapipe
//    (a workgroup runs to completion on its thread) give.
//  - a finishing workgroup makes its writes visible (memoryBarrierBuffer, then the counter's atomic add: the
//    classic threadfence reduction already used by router.comp and attn_decode.comp) and counts itself done; a
//    consumer waits for the done count to reach n_first, then reads the first stage's output through coherent
//    buffer types (not cached per SM). The last workgroup to finish resets both counters to zero for the next
//    dispatch (which follows a pipeline barrier).
// A consumer may issue loads that do not depend on the first stage (its weights) before it waits.
// Counters: [0] tickets, [1] finished workgroups; zero between dispatches (vk_counters).

#extension GL_KHR_memory_scope_semantics : require

layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer ChainCnt { uint v[]; };

shared uint chain_sh;

// the workgroup's ticket: its place in the order workgroups started
uint chain_ticket(uint64_t cnt) {
    if (gl_LocalInvocationIndex == 0u) chain_sh = atomicAdd(ChainCnt(cnt).v[0], 1u);
    barrier();
    return chain_sh;
}

// waits until `target` workgroups have finished (called in uniform control flow). The loop is uniform: invocation 0
// polls with an atomic load (a plain, even volatile-decorated, load may be hoisted out of the loop, after which a
// compiler that assumes forward progress may drop it) and shares the value; lavapipe mishandled a loop that only
// invocation 0 ran (that invocation stayed inactive afterwards).
void chain_wait(uint64_t cnt, uint target) {
    for (;;) {
        if (gl_LocalInvocationIndex == 0u)
            chain_sh = atomicLoad(ChainCnt(cnt).v[1], gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsAcquire);
        barrier();
        uint done = chain_sh;
        barrier();
        if (done >= target) break;
    }
    memoryBarrierBuffer();
}

// counts the workgroup finished after its writes; the last of `total` resets the counters
void chain_done(uint64_t cnt, uint total) {
    memoryBarrierBuffer();
    barrier();
    if (gl_LocalInvocationIndex == 0u) {
        if (atomicAdd(ChainCnt(cnt).v[1], 1u) == total - 1u) {
            ChainCnt(cnt).v[0] = 0u;
            ChainCnt(cnt).v[1] = 0u;
        }
    }
}
