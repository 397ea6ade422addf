#!/usr/bin/env bash
# bench-model --per-rung on the GPU: each rung of the default step ladder timed alone (calls
# that fill exactly one step of it), bf16 and fp32 packed with the default 2 callers, bf16
# packed with one caller (a step's own time, nothing overlapping it), fp32 padded (the
# sequential engine's steps). Random weights of ModernBERT-base's shapes, MS MARCO sample.
# Needs only the binary and .devcarry/shared; writes the JSON and logs to $OUT.
set -uo pipefail
export GOMLX_NO_AUTO_INSTALL=1 GOPJRT_CUDA_CHECKS=0
P=$(python3 -c 'import jax_plugins.xla_cuda13 as p; print(p.__path__[0])')/xla_cuda_plugin.so
BIN=${BIN:-$PWD/.devcarry/embedbench}
S=${EMBEDBENCH_SHARED:-$PWD/.devcarry/shared}
SECONDS_PER_RUNG=${SECONDS_PER_RUNG:-3}
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader > "$OUT/machine.txt"
bench() { # NAME args...
  local name=$1; shift
  "$BIN" bench-model --model "$S/models/modernbert-base" --weights random --device cuda --xla-plugin "$P" \
    --data "$S/data/msmarco/collection.sample.tsv" --passages 20000 --seconds "$SECONDS_PER_RUNG" --per-rung "$@" \
    > "$OUT/rungs_$name.json" 2> "$OUT/rungs_$name.log"
  echo "$name rc=$?"
  grep -h 'rung timed' "$OUT/rungs_$name.log"
}
# CASES picks some of them (default: all four).
CASES=${CASES:-bfloat16_packed float32_packed float32_padded bfloat16_packed_1caller}
for c in $CASES; do
  case $c in
    bfloat16_packed) bench "$c" --dtype bfloat16 ;;
    float32_packed) bench "$c" --dtype float32 ;;
    float32_padded) bench "$c" --dtype float32 --layout padded ;;
    bfloat16_packed_1caller) bench "$c" --dtype bfloat16 --callers 1 ;;
    *) echo "unknown case $c" ;;
  esac
done
