#!/bin/sh
# hpa2 (session 3, prefill attention round 2): the opt-in builds of shaders/attn_flash_cm.comp on the GPU machine.
#   OMNI_VK_ATTN_CM_FRAG=1   softmax on the S fragments (no shared-memory round trip or subgroup barrier per block)
#   OMNI_VK_ATTN_CM_FRAG=2   the same with the row maxima through shared atomics (the fallback layout path; tests)
#   OMNI_VK_ATTN_CM_BKV=64   the fragment softmax with 64-key blocks (half the workgroup barriers per key)
#   OMNI_VK_ATTN_CM_SPLIT=N  key ranges split over up to N workgroups, merged by the last (FRAG builds; grids under
#                            OMNI_VK_ATTN_CM_SPLIT_BELOW=1024 workgroups, splits of >= OMNI_VK_ATTN_CM_SPLIT_MIN=2 blocks)
# Build (on the build machine, from the repository root):
#   make -j2 BUILD=build-gpu HEADLESS=1 build-gpu/omni build-gpu/omni_tests build-gpu/libomni.a
#   cc -O2 -std=c11 -D_GNU_SOURCE -Iengine tests/bench/vulkan_bench.c build-gpu/libomni.a -lvulkan -lcjson -lm \
#      -lpthread -o build-gpu/vulkan_bench
# Run (on the GPU machine, from the repository root, binaries in $B, default build-gpu):
#   . .gpu/env.sh; OUT=/some/dir sh tests/gpu_next/hpa2.sh
# Steps, each under `timeout` (at most ~120 s in all): the new builds' correctness test against the CPU back-end
# (vk_coopmat_attention_frag: every switch, head dims 128/72/64, tolerance 5e-3); `vulkan_bench attention` once per
# variant on one back-end (thinker 32/4 x 128 causal: pp512 and 1024 queries after 3072; vision 16 x 72 over 4096,
# bidirectional); pp512 of the synthetic 30B-A3B model (BF16) per variant on one load (two timed passes and one
# profiled pass each: the profile's "attention" is the per-pass attention time). Logs in $OUT: gpu.txt, tests.txt,
# attention.txt, model.txt, steps.txt; the summary table ends the output and is in $OUT/summary.txt.
. tests/gpu_next/common.sh

OMNI_BIN=$B/omni timeout 52 "$B/omni_tests" vk_coopmat_attention_frag > "$O/tests.txt" 2>&1
echo "tests (vk_coopmat_attention_frag): exit $?" >> "$O/steps.txt"

# X=0: a do-nothing item standing for the defaults (empty items are skipped); the default again at the end
A="X=0;OMNI_VK_ATTN_CM_FRAG=1;OMNI_VK_ATTN_CM_BKV=64;OMNI_VK_ATTN_CM_FRAG=1,OMNI_VK_ATTN_CM_SPLIT=2"
A="$A;OMNI_VK_ATTN_CM_BKV=64,OMNI_VK_ATTN_CM_SPLIT=2"
A="$A;OMNI_VK_ATTN_CM_BKV=64,OMNI_VK_ATTN_CM_SPLIT=4,OMNI_VK_ATTN_CM_SPLIT_MIN=1"
A="$A;X=0"
OMNI_BENCH_VARIANTS="$A" timeout 32 "$B/vulkan_bench" attention > "$O/attention.txt" 2>&1
echo "vulkan_bench attention: exit $?" >> "$O/steps.txt"

M="X=0;OMNI_VK_ATTN_CM_FRAG=1;OMNI_VK_ATTN_CM_BKV=64;OMNI_VK_ATTN_CM_BKV=64,OMNI_VK_ATTN_CM_SPLIT=2"
OMNI_BENCH_PASSES=2 OMNI_BENCH_VARIANTS="$M" timeout 30 "$B/vulkan_bench" model $CFG 512 0 > "$O/model.txt" 2>&1
echo "vulkan_bench model pp512: exit $?" >> "$O/steps.txt"

{
    cat "$O/gpu.txt"
    cat "$O/steps.txt"
    grep -hE "^(ok|FAIL|fail|SKIP)|rel err .*>|OMNI_VK_ATTN_CM|back-end error" "$O/tests.txt" | head -40
    echo "max rel err in the test: $(grep -o 'rel err [0-9.e+-]*' "$O/tests.txt" |
        awk '{ if ($3 + 0 > m) m = $3 + 0 } END { print m + 0 }')"
    echo
    printf "%-48s %12s %12s %12s\n" "attention (vulkan_bench, ms per call)" "pp512 512@0" "1024@3072" "vision 4096"
    awk '
        function flush() { if (v != "") printf "%-48s %12s %12s %12s\n", v, a, b, c }
        /^variant \[/ {
            flush(); v = $0; sub(/^variant \[/, "", v); sub(/\]$/, "", v); gsub(/OMNI_VK_ATTN_CM_/, "", v)
            if (v == "X=0") v = "default"
            a = b = c = "-"
        }
        / 512@0 / { for (i = 1; i <= NF; i++) if ($i == "512@0") a = $(i + 1) }
        /1024@3072/ { for (i = 1; i <= NF; i++) if ($i == "1024@3072") b = $(i + 1) }
        /4096@0/ { for (i = 1; i <= NF; i++) if ($i == "4096@0") c = $(i + 1) }
        /back-end error/ { print }
        END { flush() }' "$O/attention.txt"
    echo
    printf "%-48s %12s %12s %12s\n" "model pp512 BF16 (vulkan_bench model)" "pass ms" "profiled ms" "attention ms"
    awk '
        function flush() {
            if (v != "" && !done) printf "%-48s %12s %12s %12s\n", v, n ? sprintf("%.2f", s / n) : "-", tot, at
            done = 1
        }
        /^model / { print "# " $0 }
        /^variant \[/ {
            flush(); v = $0; sub(/^variant \[/, "", v); sub(/\]$/, "", v); gsub(/OMNI_VK_ATTN_CM_/, "", v)
            if (v == "X=0") v = "default"
            n = 0; s = 0; tot = "-"; at = "-"; done = 0
        }
        /timed: / { t = $0; sub(/.*\(/, "", t); sub(/ ms\).*/, "", t); s += t; n++ }
        /prefill profile/ {
            tot = $0; sub(/.*total /, "", tot); sub(/\).*/, "", tot)
            for (i = 1; i <= NF; i++) if ($i == "attention") at = $(i + 1)
            flush()
        }
        END { flush() }' "$O/model.txt"
} > "$O/summary.txt" 2>&1
cat "$O/summary.txt"
