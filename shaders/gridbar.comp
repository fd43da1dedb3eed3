#version 460
// gridbar.comp — the micro-benchmark behind `vulkan_bench gridbar` (vk_timing.c, ob_vulkan_bench_gridbar): what a
// phase boundary of a decode step costs inside one resident dispatch (a grid barrier: every workgroup adds one to a
// device counter, then waits until it reaches the phase's target) against a pipeline barrier between dispatches,
// with a stream of bytes per phase like a matrix-vector product's weights. The question it answers is the premise of
// the persistent decode kernel in docs/architecture.md.
// Phase p reads region (p0 + p) mod n_reg of n16 16-byte words at buf, each thread its strided share in batches of
// U loads in flight; bar = 0: no grid barrier (one phase per dispatch, the chain's pipeline barrier between them).
// EARLY = 1: the first batch of the next phase is issued before the wait and consumed after it (what a persistent
// kernel can do for weights whose addresses do not depend on the barrier). The xor of all words goes to sink only
// if it equals key in every lane (practically never): the loads must not be dead code.
#define PC_GRIDBAR
#include "common.glsl"
#extension GL_KHR_memory_scope_semantics : require

layout(local_size_x_id = 0) in;
layout(constant_id = 1) const uint EARLY = 0;
const uint U = 8;

layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer CntC { uint v[]; };

uint g_nt;
shared uint g_seen;

// this thread's batch k of phase p (words past the region's end read as 0)
void load_batch(uint p, uint k, out uvec4 v[U]) {
    uint64_t base = pc.buf + uint64_t((pc.p0 + p) % pc.n_reg) * pc.n16 * 16u;
    [[unroll]] for (uint j = 0u; j < U; j++) {
        uint i = gl_GlobalInvocationID.x + (k * U + j) * g_nt;
        v[j] = i < pc.n16 ? BufUV4(base).v[i] : uvec4(0u);
    }
}

void main() {
    g_nt = gl_NumWorkGroups.x * gl_WorkGroupSize.x;
    uint nb = (pc.n16 + U * g_nt - 1u) / (U * g_nt);  // batches per thread and phase
    uvec4 acc = uvec4(0u), pre[U];
    if (EARLY != 0u && nb > 0u) load_batch(0u, 0u, pre);
    for (uint p = 0u; p < pc.phases; p++) {
        for (uint k = 0u; k < nb; k++) {
            uvec4 v[U];
            if (EARLY != 0u && k == 0u) v = pre;
            else load_batch(p, k, v);
            [[unroll]] for (uint j = 0u; j < U; j++) acc ^= v[j];
        }
        if (pc.bar == 0u) continue;
        if (EARLY != 0u && nb > 0u && p + 1u < pc.phases) load_batch(p + 1u, 0u, pre);
        // the grid barrier, as chain.glsl waits: invocation 0 adds, then polls with an atomic load (a plain load may
        // be hoisted out of the loop, and a compiler that assumes forward progress may then drop the loop) in a
        // loop the whole workgroup runs
        memoryBarrierBuffer();
        barrier();
        if (gl_LocalInvocationID.x == 0u) atomicAdd(CntC(pc.cnt).v[0], 1u);
        uint target = (p + 1u) * gl_NumWorkGroups.x;
        for (;;) {
            if (gl_LocalInvocationID.x == 0u)
                g_seen = atomicLoad(CntC(pc.cnt).v[0], gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsAcquire);
            barrier();
            uint seen = g_seen;
            barrier();
            if (seen >= target) break;
        }
    }
    if (all(equal(acc, uvec4(pc.key)))) BufU32(pc.sink).v[0] = acc.x;
}
