#!/bin/sh
# On the GPU machine (H100): the Vulkan tests and the benchmarks of docs/benchmarks.md, with a headless build made
# here first:   make BUILD=build-gpu HEADLESS=1 build-gpu/omni build-gpu/omni_tests
# then, there:  sh tests/gpu_run.sh [steps...]    (steps: tests bench bench-q8 audio vision; default all; also
#                bench-q8-fp32: Q8_0 decode with fp32 activations (OMNI_VK_Q8_INT8=0) to compare with the int8
#                default; vision-cm: the encoders with the small-head tensor-core attention turned off,
#                OMNI_VK_ATTN_CM_SMALL=0, to compare with the default; trace: BF16 and Q8_0 decode and prefill passes
#                timed per dispatch, OMNI_VK_TRACE=1, the per-kernel budget of docs/architecture.md; trace-deep: the
#                same for decode at depth 4096; gridbar: vulkan_bench gridbar (the grid-barrier premise of the
#                persistent decode kernel; needs $B/vulkan_bench: make BUILD=build-gpu HEADLESS=1 build-gpu/vulkan_bench);
#                attn-prof: the decode attention's phases (OMNI_VK_ATTN_PROF=1; vulkan_bench, into attn_prof.txt);
#                pstats: the driver's register and shared-memory counts of the decode kernels (vulkan_bench decode with
#                OMNI_VK_PIPELINE_STATS=1); variants: settings of this build alternating (VARIANTS, ROUNDS, QUANTS,
#                AB_ARGS; into variants.txt; e.g. VARIANTS="-;OMNI_GEN_ROWS=1" for sampled generation from the device's
#                candidates against whole rows: the genN row); ab: two builds
#                side by side, alternating, with a second binary carried as $B/omni_base, into ab.txt)
# Logs go to $OUT (or /tmp/omni-gpu). Needs the .gpu bundle of ../shared/tools/gpu-prep.sh.
set -u
B=${B:-build-gpu}
O=${OUT:-/tmp/omni-gpu}
mkdir -p "$O"
. .gpu/env.sh > "$O/vulkaninfo.txt" 2>&1
CFG=${CFG:-assets/qwen3-omni-30b-a3b.config.json}
steps=${*:-tests bench bench-q8 audio vision}
for f in tests/fixtures/*.tar.xz; do
    n=$(basename "$f" .tar.xz)
    [ -f "$B/fixtures/$n/.unpacked" ] || { mkdir -p "$B/fixtures/$n" && tar -xJf "$f" -C "$B/fixtures/$n" && touch "$B/fixtures/$n/.unpacked"; }
done
"$B/omni" devices > "$O/devices.txt" 2>&1
for s in $steps; do
    case $s in
    # the test processes share one pipeline cache (the cm2 pipelines take seconds each to compile)
    tests) OMNI_BIN=$B/omni OMNI_VK_PIPELINE_CACHE=${OMNI_VK_PIPELINE_CACHE:-/tmp/omni-gpu-pipelines.bin} timeout 450 \
        "$B/omni_tests" vk_ golden_vulkan golden_mm_vulkan golden_eval > "$O/tests.txt" 2>&1 ;;
    bench) timeout 300 "$B/omni" bench --config $CFG --backend vulkan -p 512 -n 128 -d 0,4096 -r 3 --profile > "$O/bench_bf16.txt" 2>&1 ;;
    bench-q8) timeout 300 "$B/omni" bench --config $CFG --backend vulkan --quant q8_0 -p 512 -n 128 -d 0,4096 -r 3 --profile > "$O/bench_q8.txt" 2>&1 ;;
    audio) timeout 120 "$B/omni" bench-audio --config $CFG --backend vulkan -s 30 -r 5 > "$O/bench_audio.txt" 2>&1 ;;
    vision) timeout 120 "$B/omni" bench-vision --backend vulkan --size 1024 -r 5 > "$O/bench_vision.txt" 2>&1 ;;
    bench-q8-fp32)
        OMNI_VK_Q8_INT8=0 timeout 200 "$B/omni" bench --config $CFG --backend vulkan --quant q8_0 -p 0 -n 128 -d 0,4096 -r 3 \
            --profile > "$O/bench_q8_fp32.txt" 2>&1 ;;
    trace)
        OMNI_VK_TRACE=1 timeout 200 "$B/omni" bench --config $CFG --backend vulkan -p 512 -n 64 -r 1 --profile \
            > "$O/trace_bf16.txt" 2>&1
        OMNI_VK_TRACE=1 timeout 200 "$B/omni" bench --config $CFG --backend vulkan --quant q8_0 -p 512 -n 64 -r 1 \
            --profile > "$O/trace_q8.txt" 2>&1 ;;
    trace-deep)  # the same per-dispatch split of a decode step at depth 4096 (the profiled pass runs at the first depth)
        OMNI_VK_TRACE=1 timeout 200 "$B/omni" bench --config $CFG --backend vulkan -p 0 -n 64 -d 4096 -r 1 --profile \
            > "$O/trace_deep_bf16.txt" 2>&1
        OMNI_VK_TRACE=1 timeout 200 "$B/omni" bench --config $CFG --backend vulkan --quant q8_0 -p 0 -n 64 -d 4096 -r 1 \
            --profile > "$O/trace_deep_q8.txt" 2>&1 ;;
    gridbar) timeout 60 "$B/vulkan_bench" gridbar > "$O/gridbar.txt" 2>&1 ;;
    attn-prof)  # where the decode attention's time goes, phase by phase (OMNI_VK_ATTN_PROF=1: attn_decode_prof):
                # the op alone at depths 0..4096, then in the model at depth 4096 (needs $B/vulkan_bench)
        OMNI_VK_ATTN_PROF=1 timeout 120 "$B/vulkan_bench" decode --only attention > "$O/attn_prof.txt" 2>&1
        OMNI_VK_ATTN_PROF=1 OMNI_BENCH_PASSES=1 timeout 300 "$B/vulkan_bench" model $CFG 4096 64 2>&1 |
            grep -v '^  prefill profile' >> "$O/attn_prof.txt" ;;
    pstats)  # the driver's statistics (registers, shared memory) of the decode kernels at the thinker's shapes
        OMNI_VK_PIPELINE_STATS=1 timeout 120 "$B/vulkan_bench" decode > "$O/pstats.txt" 2>&1 ;;
    ab)  # A/B of two builds in one call, alternating (decode moves by a few % between runs and machines): carry a
         # second binary as $B/omni_base, or set AB_ENV (e.g. OMNI_VK_ROUTE_FOLD=0) to run this build with those
         # variables as the base; AB_ARGS replaces the bench lengths; each line: build, quantization, the results
        for q in bf16 q8; do
            qa=; [ $q = q8 ] && qa="--quant q8_0"
            for bin in omni_base omni omni_base omni; do
                printf '%s %s: ' $bin $q >> "$O/ab.txt"
                run="$B/$bin"
                [ $bin = omni_base ] && [ -n "${AB_ENV:-}" ] && run="env $AB_ENV $B/omni"
                timeout 150 $run bench --config $CFG --backend vulkan $qa ${AB_ARGS:--p 512 -n 128 -d 0,4096} -r 3 2>&1 |
                    grep -E 'pp512|tg128' | tr -s ' ' | tr '\n' ' ' >> "$O/ab.txt"
                echo >> "$O/ab.txt"
            done
        done ;;
    variants)  # several settings of this build against each other, alternating in one call: VARIANTS is a list of
               # environment settings separated by ';' (e.g. "OMNI_VK_ROUTE_PRE=0;OMNI_VK_ROUTE_PRE=1", "-" for
               # none), ROUNDS how often the list runs (default 2), QUANTS which weights ("bf16 q8"), AB_ARGS the
               # bench lengths; each line of variants.txt: quantization, setting, the results
        for r in $(seq "${ROUNDS:-2}"); do
            for q in ${QUANTS:-bf16 q8}; do
                qa=; [ "$q" = q8 ] && qa="--quant q8_0"
                echo "${VARIANTS:--}" | tr ';' '\n' | while read -r v; do
                    [ -z "$v" ] && continue
                    printf '%s %s: ' "$q" "$v" >> "$O/variants.txt"
                    ev=; [ "$v" != - ] && ev=$v
                    timeout 150 env $ev "$B/omni" bench --config $CFG --backend vulkan $qa ${AB_ARGS:--p 0 -n 128} -r 3 \
                        2>&1 | grep -E 'pp[0-9]|tg[0-9]|gen[0-9]|error' | tr -s ' ' | tr '\n' ' ' >> "$O/variants.txt"
                    echo >> "$O/variants.txt"
                done
            done
        done ;;
    vision-cm)
        OMNI_VK_ATTN_CM_SMALL=0 OMNI_BIN=$B/omni timeout 60 "$B/omni_tests" vision_golden_vulkan audio_encoder_vulkan \
            > "$O/tests_cm_small_off.txt" 2>&1
        OMNI_VK_ATTN_CM_SMALL=0 timeout 120 "$B/omni" bench-vision --backend vulkan --size 1024 -r 3 > "$O/bench_vision_cm_off.txt" 2>&1
        OMNI_VK_ATTN_CM_SMALL=0 timeout 60 "$B/omni" bench-audio --config $CFG --backend vulkan -s 30 -r 5 > "$O/bench_audio_cm_off.txt" 2>&1 ;;
    esac
    echo "step $s: exit $?" >> "$O/steps.txt"
done
cat "$O/steps.txt"
