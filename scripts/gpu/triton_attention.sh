#!/usr/bin/env bash
# Issue 16: attention through our Triton kernel (variant triton-attention, internal/modernbert/
# triton.go) against cuDNN's fused attention, in one lease, on one H200. Random weights of
# ModernBERT-base's shapes, MS MARCO passages. PHASES picks and orders (default: all, so):
#   throughput  bench-model, two callers on full 16,384-slot steps, for each "NAME;ENV=V;flags"
#               of THROUGHPUT (default: cuDNN and the kernel's forms, cuDNN again last);
#   kernel      TestTritonAttentionXLA (TEST_RUN, default its base shapes) for TEST_VARIANTS
#               (";"-separated): the kernel compiles in XLA and gives cuDNN's vectors;
#   parity      TestParityXLA with PARITY_VARIANT: the tiny fixtures against HF;
#   profile     profile_go.sh for PROFILE_VARIANTS: the step kernel by kernel.
# Needs .devcarry/{embedbench,modernbert.test,shared}. Results in $OUT.
set -uo pipefail
source scripts/gpu/env.sh
A=EMBEDBENCH_MODERNBERT_VARIANT
TEST=$PWD/.devcarry/modernbert.test
T=triton-attention
: "${THROUGHPUT:=$'cudnn;;\nrope64;'$A=$T$';\nplain64;'$A=$T,triton-plain$';\nplain128;'$A=$T,triton-plain,triton-blocks=128x64x8x3$';\nplain64x32;'$A=$T,triton-plain,triton-blocks=64x32x4x3$';\nrope128;'$A=$T,triton-blocks=128x64x8x3$';\nplain64s2;'$A=$T,triton-plain,triton-blocks=64x64x4x2$';\ncudnn2;;'}"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/machine.txt"

throughput() {
  PHASES=throughput THROUGHPUT="$THROUGHPUT" bash scripts/gpu/variants.sh | grep -v "^#"
}

kernel() {
  (cd internal/modernbert && EMBEDBENCH_TRITON_TEST_VARIANTS="${TEST_VARIANTS:-$T;$T,triton-plain}" timeout 280 "$TEST" \
    -test.run "${TEST_RUN:-TestTritonAttentionXLA/base}" -test.v -test.timeout 270s) > "$OUT/kernel_test.txt" 2>&1
  echo "kernel test rc=$?"
  grep -E "^\s*(--- |ok|FAIL|PASS)|parity_xla_test|Triton attention unavailable" "$OUT/kernel_test.txt" | cut -c1-600 | head -30
}

parity() {
  (cd internal/modernbert && env $A="${PARITY_VARIANT:-$T}" timeout 200 "$TEST" -test.run 'TestParityXLA' -test.v -test.timeout 190s) > "$OUT/parity_tiny.txt" 2>&1
  echo "TestParityXLA with ${PARITY_VARIANT:-$T}: rc=$?"; grep -E "^(--- |ok|FAIL|PASS)" "$OUT/parity_tiny.txt" | head -20
}

profile() {
  VARIANTS="${PROFILE_VARIANTS:-default $T,triton-plain}" timeout 300 bash scripts/gpu/profile_go.sh 2>&1 | grep -vE "^(WARNING|I0000|E0000)" | tail -60
}

for phase in ${PHASES:-throughput kernel parity profile}; do
  echo "# $phase at ${SECONDS}s"
  $phase
done
echo "done in ${SECONDS}s"
