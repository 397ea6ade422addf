#!/usr/bin/env bash
# The bf16 default against an older graph, the same binary run with
# EMBEDBENCH_MODERNBERT_VARIANT=$OLD_VARIANT (.devcarry/old.sh; default residual-f32, the
# session-11 graph, as in run 37; run 41 used fold-f16, the default before the centred stream):
#   0. with XLA_TESTS set, the XLA tests it names first (a test regexp, e.g. TestStepLadderXLA);
#   1. both servers under pipeline_ab.sh's loads, one client to saturation and open loop;
#   2. model-only on full steps (new and old, alternating; float32 with and without ln-fold
#      unless SKIP_FP32 is set);
#   3. full-size parity with HF fp32: the defaults in PARITY_DTYPES (bf16 and fp32), and float32
#      under ln-fold, unless SKIP_PARITY is set.
# Everything lands in $OUT/fold_ab.tgz.
set -uo pipefail
R=/tmp/fold_ab; mkdir -p "$R/perf" "$R/ab"
OUT_ALL=$OUT
OLD_VARIANT=${OLD_VARIANT:-residual-f32}
if [ -n "${XLA_TESTS:-}" ]; then
  (source scripts/gpu/env.sh; cd internal/modernbert && timeout 120 "$OLDPWD/.devcarry/modernbert.test" -test.run "$XLA_TESTS" -test.v 2>&1) |
    grep -E "^(=== RUN|--- |ok|PASS|FAIL)|worst|differ" | tee "$R/xla_tests.txt"
fi
printf '#!/bin/sh\nEMBEDBENCH_MODERNBERT_VARIANT=%s exec "%s" "$@"\n' "$OLD_VARIANT" "$PWD/.devcarry/embedbench" > .devcarry/old.sh
chmod +x .devcarry/old.sh
W=/tmp/ab OUT=$R/ab PEAK=${PEAK:-18000} DUR=${DUR:-6s} LOADS=${LOADS:-"c1 b32c1 c8 c256 sat rate50 rate70"} \
  SERVERS="old=.devcarry/old.sh new=.devcarry/embedbench" timeout "${AB_LIMIT:-260}" bash scripts/gpu/pipeline_ab.sh > "$R/ab.out" 2>&1
pkill -f "embedbench.* serve"
tar -czf "$OUT_ALL/fold_ab.tgz" -C "$R" .
bf="--dtype bfloat16 --step-slots 16384"; f32="--dtype float32 --step-slots 16384"; A=EMBEDBENCH_MODERNBERT_VARIANT
fp32=$'\nfp32;;'"$f32"$'\nfp32-ln-fold;'"$A"'=ln-fold;'"$f32"
[ -n "${SKIP_FP32:-}" ] && fp32=""
skip_parity=${SKIP_PARITY:-}
W=/tmp/perf OUT=$R/perf STOP=${PERF_STOP:-150} SECS=3 SKIP_TINY_PARITY=1 SKIP_TF32=1 SKIP_JAX=1 SKIP_HLO=1 SKIP_FULL_PARITY=$skip_parity \
  PARITY_DTYPES=${PARITY_DTYPES:-"bfloat16 float32"} PARITY_VARIANTS=${PARITY_VARIANTS-"ln-fold@float32"} VARIANTS="default;;$bf
$OLD_VARIANT;$A=$OLD_VARIANT;$bf$fp32
default-again;;$bf
$OLD_VARIANT-again;$A=$OLD_VARIANT;$bf" timeout "${PERF_LIMIT:-290}" bash scripts/gpu/perf_model.sh > "$R/perf.out" 2>&1
tar -czf "$OUT_ALL/fold_ab.tgz" -C "$R" .
