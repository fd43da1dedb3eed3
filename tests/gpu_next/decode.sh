#!/bin/sh
# Decode variants written in session 3 without a GPU run, for the next session's device run (≤ 120 s).
# Build here:  make BUILD=build-gpu HEADLESS=1 build-gpu/omni build-gpu/omni_tests build-gpu/libomni.a
#              cc -O2 -std=c11 -D_GNU_SOURCE -Iengine tests/bench/vulkan_bench.c build-gpu/libomni.a -lvulkan \
#                 -lcjson -lm -lpthread -o build-gpu/vulkan_bench
# On the GPU machine, from the repository root:  . .gpu/env.sh; OUT=... sh tests/gpu_next/decode.sh
# Variants: OMNI_VK_MOE_MV=1 (the MoE gate+up on mv.comp, every lane's gate and up loads in flight); the decode
# attention's chunk size and workgroup size at depth (OMNI_VK_ATTN_CHUNK=32/64/128 x OMNI_VK_ATTN_WG=128/256).
set -u
. tests/gpu_next/common.sh
OMNI_BIN=$B/omni timeout 30 "$B/omni_tests" vk_moe_experts_decode_mv > "$O/tests_moe_mv.txt" 2>&1
OMNI_VK_MOE_MV=1 OMNI_BIN=$B/omni timeout 30 "$B/omni_tests" golden_vulkan > "$O/tests_golden_moe_mv.txt" 2>&1
for v in 0 1; do
    OMNI_VK_MOE_MV=$v timeout 30 "$B/vulkan_bench" decode > "$O/vb_decode_moe_mv$v.txt" 2>&1
    OMNI_VK_MOE_MV=$v timeout 60 "$B/omni" bench --config $CFG --backend vulkan -p 0 -n 128 -d 0 -r 3 --profile \
        > "$O/bench_moe_mv$v.txt" 2>&1
done
for wg in 128 256; do
    for ch in 32 64 128; do
        OMNI_VK_ATTN_WG=$wg OMNI_VK_ATTN_CHUNK=$ch timeout 20 "$B/vulkan_bench" decode \
            > "$O/vb_attn_wg${wg}_c$ch.txt" 2>&1
    done
done
echo "== tests"; grep -hE "^FAIL|passed" "$O"/tests_*.txt
echo "== experts (vulkan_bench decode, us) / tg128 (BF16)"
for v in 0 1; do
    printf "OMNI_VK_MOE_MV=%s  %s  %s\n" $v "$(grep -h experts "$O/vb_decode_moe_mv$v.txt" | awk '{print $NF}')" \
        "$(grep -h 'tg128 ' "$O/bench_moe_mv$v.txt" | head -1)"
done
echo "== decode attention (vulkan_bench decode, us; depth 0 / 64 / 4096)"
for f in "$O"/vb_attn_*.txt; do
    printf "%s  %s\n" "$(basename "$f" .txt)" "$(grep -h 'attention, depth' "$f" | awk '{print $NF}' | tr '\n' ' ')"
done
