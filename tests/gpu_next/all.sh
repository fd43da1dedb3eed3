#!/bin/sh
# The opt-in variants written in session 3 without a GPU run, measured in one device call (≤ ~6 minutes):
#   decode.sh  the MoE decode gate+up on mv.comp (OMNI_VK_MOE_MV=1); decode attention chunk x workgroup sweep
#   hpa2.sh    prefill attention: softmax on the fragments, 64-key blocks, split key ranges (OMNI_VK_ATTN_CM_*)
#   hpg3.sh    tensor-core GEMM: register prefetch two slices ahead, dense split-K, diagnostic builds (OMNI_VK_CM_*)
# Build here (see each script's header), then on the GPU machine from the repository root, carrying .gpu and the
# build directory:  . .gpu/env.sh >/dev/null 2>&1; B=build-gpu OUT=$OUT sh tests/gpu_next/all.sh
# Each writes into its own directory under $OUT and ends with a summary; whichever wins becomes a default only
# after its tests have passed on the GPU (they SKIP on lavapipe).
set -u
O=${OUT:-/tmp/omni-next}
for s in decode hpa2 hpg3; do
    mkdir -p "$O/$s"
    echo "===== $s"
    OUT="$O/$s" sh "tests/gpu_next/$s.sh" 2>&1 | tail -40
done
