#!/usr/bin/env bash
# Session 12's last device call: bf16's new default (fold-f16: an fp16 residual stream read by
# the folded Wqkv and Wi products) against the session-11 default, the same binary with
# EMBEDBENCH_MODERNBERT_VARIANT=residual-f32 (.devcarry/old.sh):
#   1. both servers under pipeline_ab.sh's loads, one client to saturation and open loop;
#   2. model-only on full steps (new and old, alternating; float32 with and without ln-fold);
#   3. full-size parity with HF fp32: the bf16 and fp32 defaults, and float32 under ln-fold.
# Everything lands in $OUT/fold_ab.tgz.
set -uo pipefail
R=/tmp/fold_ab; mkdir -p "$R/perf" "$R/ab"
OUT_ALL=$OUT
printf '#!/bin/sh\nEMBEDBENCH_MODERNBERT_VARIANT=residual-f32 exec "%s" "$@"\n' "$PWD/.devcarry/embedbench" > .devcarry/old.sh
chmod +x .devcarry/old.sh
W=/tmp/ab OUT=$R/ab PEAK=${PEAK:-18000} DUR=${DUR:-6s} LOADS="c1 b32c1 c8 c256 sat rate50 rate70" \
  SERVERS="old=.devcarry/old.sh new=.devcarry/embedbench" timeout "${AB_LIMIT:-260}" bash scripts/gpu/pipeline_ab.sh > "$R/ab.out" 2>&1
pkill -f "embedbench.* serve"
tar -czf "$OUT_ALL/fold_ab.tgz" -C "$R" .
bf="--dtype bfloat16 --step-slots 16384"; f32="--dtype float32 --step-slots 16384"; A=EMBEDBENCH_MODERNBERT_VARIANT
W=/tmp/perf OUT=$R/perf STOP=${PERF_STOP:-150} SECS=3 SKIP_TINY_PARITY=1 SKIP_TF32=1 SKIP_JAX=1 SKIP_HLO=1 \
  PARITY_DTYPES="bfloat16 float32" PARITY_VARIANTS="ln-fold@float32" VARIANTS="default;;$bf
residual-f32;$A=residual-f32;$bf
fp32;;$f32
fp32-ln-fold;$A=ln-fold;$f32
default-again;;$bf
residual-f32-again;$A=residual-f32;$bf" timeout "${PERF_LIMIT:-290}" bash scripts/gpu/perf_model.sh > "$R/perf.out" 2>&1
tar -czf "$OUT_ALL/fold_ab.tgz" -C "$R" .
