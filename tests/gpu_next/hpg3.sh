#!/bin/sh
# hpg3 (session 3, prefill GEMM round 3): the opt-in tensor-core GEMM switches on the GPU, checked and timed side by
# side with the defaults (all switches are off by default; engine/vulkan/vk_internal.h lists them):
#   OMNI_VK_CM_PF=1        register double-buffered global loads, issued two K slices ahead (matmul_cm.comp CM_PF)
#   OMNI_VK_CM_SPLIT_WG=W  split-K of big dense products whose tile grid is under W workgroups (o-proj at W=256)
#   OMNI_VK_CM_DIAG=1|2    measurement only (wrong results): no in-loop global loads / one MMA per K slice
#
# Build (on the build machine, from the repository root):
#   make -j2 BUILD=build-gpu HEADLESS=1 build-gpu/omni build-gpu/omni_tests build-gpu/libomni.a
#   cc -O2 -std=c11 -D_GNU_SOURCE -Iengine tests/bench/vulkan_bench.c build-gpu/libomni.a -lvulkan -lcjson -lm \
#      -lpthread -o build-gpu/vulkan_bench
# Run (on the GPU machine, from the repository root; binaries in $B, default build-gpu; logs in $OUT):
#   . .gpu/env.sh >/dev/null 2>&1; B=build-gpu sh tests/gpu_next/hpg3.sh
# Steps, each under `timeout`, ~115 s in all: the new test (vk_coopmat_pf_split: PF on every tile build and
# SPLIT_WG, against the CPU and against the default kernels), `vulkan_bench gemm` (the pp512 GEMMs per variant on
# one back-end), `vulkan_bench model` pp512 bf16 per variant (one load; two timed passes and a profiled pass each).
# Ends with a summary table (also $OUT/summary.txt); logs: gpu.txt tests.txt gemm.txt model.txt steps.txt.
. tests/gpu_next/common.sh

timeout 40 "$B/omni_tests" vk_coopmat_pf_split > "$O/tests.txt" 2>&1
echo "tests vk_coopmat_pf_split: exit $?" >> "$O/steps.txt"

# X=0: a do-nothing item standing for the defaults. Most important first (a timeout keeps the lines printed so far):
# the two switches and their pair; the grouped MoE on 128x64 tiles with PF (2 workgroups per SM with the extra
# registers); the bigger dense tile (1.33 MMAs per fragment load) and the smaller one (640 tiles) with the grid
# refilled; the diagnostics (wrong results, timings only)
G="X=0;OMNI_VK_CM_PF=1;OMNI_VK_CM_SPLIT_WG=256;OMNI_VK_CM_PF=1,OMNI_VK_CM_SPLIT_WG=256;OMNI_VK_CM_SPLIT_WG=512"
G="$G;OMNI_VK_CM_MOE=128x64,OMNI_VK_CM_PF=1;OMNI_VK_CM_DENSE=256x64,OMNI_VK_CM_SPLIT_WG=264"
G="$G;OMNI_VK_CM_DENSE=128x32,OMNI_VK_CM_PF=1;OMNI_VK_CM_DIAG=1;OMNI_VK_CM_DIAG=2"
OMNI_BENCH_VARIANTS="$G" timeout 32 "$B/vulkan_bench" gemm > "$O/gemm.txt" 2>&1
echo "vulkan_bench gemm: exit $?" >> "$O/steps.txt"

M="X=0;OMNI_VK_CM_PF=1;OMNI_VK_CM_SPLIT_WG=256;OMNI_VK_CM_PF=1,OMNI_VK_CM_SPLIT_WG=256;X=0"
OMNI_BENCH_PASSES=2 OMNI_BENCH_VARIANTS="$M" timeout 38 "$B/vulkan_bench" model $CFG 512 0 > "$O/model.txt" 2>&1
echo "vulkan_bench model bf16: exit $?" >> "$O/steps.txt"

{
    cat "$O/gpu.txt" "$O/steps.txt"
    grep -hE "^(ok|FAIL|fail)|passed|largest difference|SKIP|rel err .*>|vs \[" "$O/tests.txt" | head -40
    echo "GEMM, n = 512, ms per call (vulkan_bench gemm):"
    awk '/^device:/ { print }
         /^gemm \[/ {
             v = $2; sub(/^\[/, "", v); sub(/\]$/, "", v); if (v == "X=0") v = "default"
             line = sprintf("%-44s", v)
             for (i = 3; i + 2 <= NF; i += 3) line = line sprintf(" %s %s (%s TF)", $i, $(i + 1), $(i + 2))
             print line
         }
         /back-end error/ { print "  " $0 }' "$O/gemm.txt"
    echo "pp512 bf16 model (vulkan_bench model): variant, mean timed pass ms, profiled total, experts, projections"
    awk '
        function flush() {
            if (v != "" && !done)
                printf "%-44s %8s %8s %8s %8s\n", v, n ? sprintf("%.2f", s / n) : "-", tot, ex, pr
            done = 1
        }
        /^model / { print }
        /^variant \[/ {
            flush(); v = $0; sub(/^variant \[/, "", v); sub(/\]$/, "", v); if (v == "X=0") v = "default"
            n = 0; s = 0; tot = "-"; ex = "-"; pr = "-"; done = 0
        }
        /timed: / { t = $0; sub(/.*\(/, "", t); sub(/ ms\).*/, "", t); s += t; n++ }
        /prefill profile/ {
            tot = $0; sub(/.*total /, "", tot); sub(/\).*/, "", tot)
            for (i = 1; i <= NF; i++) { if ($i == "experts") ex = $(i + 1); if ($i == "projections") pr = $(i + 1) }
            flush()
        }
        END { flush() }' "$O/model.txt"
} > "$O/summary.txt" 2>&1
cat "$O/summary.txt"
