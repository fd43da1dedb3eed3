# common.sh — the prologue every tests/gpu_next script sources (POSIX sh, `. tests/gpu_next/common.sh`): binaries in
# $B (default build-gpu), logs in $O ($OUT, else /tmp/omni-next), the model config in $CFG, a 20 s fence timeout so a
# hung kernel becomes an error, the test fixtures unpacked where the tests look ($B/fixtures), the card in $O/gpu.txt,
# and an empty $O/steps.txt for the scripts' step log.
B=${B:-build-gpu}
O=${OUT:-/tmp/omni-next}
CFG=assets/qwen3-omni-30b-a3b.config.json
mkdir -p "$O"
: > "$O/steps.txt"
export OMNI_VK_FENCE_TIMEOUT_S=20
for f in tests/fixtures/*.tar.xz; do
    n=$(basename "$f" .tar.xz)
    [ -f "$B/fixtures/$n/.unpacked" ] ||
        { mkdir -p "$B/fixtures/$n" && timeout 20 tar -xJf "$f" -C "$B/fixtures/$n" && touch "$B/fixtures/$n/.unpacked"; }
done
timeout 10 nvidia-smi --query-gpu=name,clocks.max.sm,memory.total --format=csv > "$O/gpu.txt" 2>&1
