// dchain.glsl — dependent decode dispatches without pipeline barriers ("device-side chain", vk_exec.c's
// vk_dispatch_step; OMNI_VK_DCHAIN).
//
// A decode step is ~250 dependent dispatches of short memory-bound kernels. With a pipeline barrier between each
// pair the device drains completely: the next kernel's workgroups start only after the last one of the previous
// kernel has finished, and then still have to issue their first loads (~3-5 µs per dispatch on the H100 before any
// bytes stream). Built with -DDCHAIN, a kernel instead waits for its predecessor itself:
//  - the host records the kernels of a chain back to back without barriers and passes each one the number of
//    workgroups of all earlier dispatches of the chain's run (pc.chain, counted since the context began: 0 = do
//    not wait, the dispatch follows a pipeline barrier);
//  - every workgroup, when it finishes, makes its writes visible and adds 1 to one device counter (dc_done);
//  - a workgroup first issues the loads that do not depend on the previous kernels (its weights), then waits until
//    the counter reaches pc.chain (dc_wait), then reads activations. Every invocation passes a device-scope
//    acquire-release fence after the wait (memoryBarrierBuffer; invocation 0's poll is an acquire load), which is how
//    the GPUs' memory models make other SMs' writes visible to ordinary loads (NVIDIA: the SM's L1 is invalidated;
//    AMD: the CU's vector caches). Plain activation loads are kept: making them coherent (L1 bypassed) measured much
//    slower on the H100, since matvec.comp reads x from L1 once per weight vector (BF16 tg128 155 vs 226 t/s,
//    together with the router_chain tickets below). Activation words of BufUV4's shape use BufAUV4, a writable type,
//    so that no read goes through a non-coherent read-only cache path.
// So the next kernel's workgroups start as soon as the device has room, with their weight loads in flight while the
// previous kernel's tail runs. Waiting only on earlier dispatches cannot deadlock where a device starts the
// workgroups of a dispatch after all of the previous dispatch's (in-order work distribution: waiting workgroups
// only ever wait for workgroups that already run or have finished); lavapipe runs one dispatch after another, so
// its waits are always satisfied. The count is wrap-safe (compared as a signed difference).
// A chained kernel must not take tickets or counters shared with its own later dispatches before it waits: the
// workgroups of several later dispatches may already run (router_chain's chain.glsl tickets are therefore not
// chained; vk_decode.c runs o_proj and the router as two chained kernels instead).
// The counter's address is the same for the whole context: specialization constants 20 and 21 (low, high word).
#ifdef DCHAIN
#extension GL_KHR_memory_scope_semantics : require

layout(constant_id = 20) const uint DC_LO = 0;
layout(constant_id = 21) const uint DC_HI = 0;
layout(buffer_reference, std430, buffer_reference_align = 4) coherent buffer DcCnt { uint v[]; };
shared uint dc_sh;

uint64_t dc_addr() { return packUint2x32(uvec2(DC_LO, DC_HI)); }

// in uniform control flow: invocation 0 polls with an atomic load and shares the value (see chain.glsl's chain_wait
// for why the loop is run by the whole workgroup)
void dc_wait() {
    if (pc.chain == 0u) return;
    for (;;) {
        if (gl_LocalInvocationIndex == 0u)
            dc_sh = atomicLoad(DcCnt(dc_addr()).v[0], gl_ScopeDevice, gl_StorageSemanticsBuffer, gl_SemanticsAcquire);
        barrier();
        bool ok = int(dc_sh - pc.chain) >= 0;
        barrier();
        if (ok) break;
    }
    memoryBarrierBuffer();
}

// the workgroup's writes are visible, then it counts itself done (the classic threadfence reduction)
void dc_done() {
    memoryBarrierBuffer();
    barrier();
    if (gl_LocalInvocationIndex == 0u) atomicAdd(DcCnt(dc_addr()).v[0], 1u);
}

// the kernel's own main() becomes dc_body(); each kernel ends with
//   #ifdef DCHAIN / #undef main / void main() { dc_body(); dc_done(); } / #endif
// so that the workgroup counts itself done however the body returned
#define main dc_body
#else
void dc_wait() {}
#endif
