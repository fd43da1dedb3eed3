#!/bin/sh
# On the GPU machine: the tensor-core prefill checks and numbers (tests/test_vulkan_coopmat.c, the fp32 matmul/MoE
# tests, the Vulkan golden tests, pp512 with and without cooperative matrix; LONG=2048 adds a long prompt, ATTN_CM=0
# runs the benchmarks with the fp32 attention instead of the default tensor-core one, OMNI_VK_ATTN_CM=0). Build here first:
#   make BUILD=build-pregpu HEADLESS=1 build-pregpu/omni build-pregpu/omni_tests
# Logs go to $OUT (or /tmp/omni-gpu). Needs the .gpu bundle of ../shared/tools/gpu-prep.sh.
set -u
B=${B:-build-pregpu}
O=${OUT:-/tmp/omni-gpu}
mkdir -p "$O"
. .gpu/env.sh > "$O/vulkaninfo.txt" 2>&1
CFG=assets/qwen3-omni-30b-a3b.config.json
[ -n "${ATTN_CM:-}" ] && export OMNI_VK_ATTN_CM=$ATTN_CM
for f in tests/fixtures/*.tar.xz; do
    n=$(basename "$f" .tar.xz)
    [ -f "$B/fixtures/$n/.unpacked" ] || { mkdir -p "$B/fixtures/$n" && tar -xJf "$f" -C "$B/fixtures/$n" && touch "$B/fixtures/$n/.unpacked"; }
done
"$B/omni" devices > "$O/devices.txt" 2>&1
OMNI_BIN=$B/omni timeout 70 "$B/omni_tests" ${TESTS:-vk_coopmat vk_matmul vk_moe vk_attention golden_vulkan golden_eval_command_vulkan vision_golden_vulkan audio_encoder_vulkan} > "$O/tests.txt" 2>&1
echo "tests: exit $?" >> "$O/steps.txt"
timeout 100 "$B/omni" bench --config $CFG --backend vulkan -p ${P:-512} -n 0 -r 3 --profile > "$O/bench_cm.txt" 2>&1
echo "bench cm: exit $?" >> "$O/steps.txt"
[ -n "${NO_BASELINE:-}" ] || OMNI_VK_NO_COOPMAT=1 timeout 90 "$B/omni" bench --config $CFG --backend vulkan -p ${P:-512} -n 0 -r 1 --profile > "$O/bench_fp32.txt" 2>&1
echo "bench fp32: exit $?" >> "$O/steps.txt"
cat "$O/steps.txt" "$O/tests.txt" "$O/bench_cm.txt" "$O/bench_fp32.txt"
[ -n "${LONG:-}" ] && timeout 80 "$B/omni" bench --config $CFG --backend vulkan -p $LONG -n 0 -r 1 --profile > "$O/bench_cm_long.txt" 2>&1
[ -n "${LONG:-}" ] && cat "$O/bench_cm_long.txt"
