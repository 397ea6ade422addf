#!/usr/bin/env bash
# Issue 16: attention through our Triton kernel (variant triton-attention, internal/modernbert/
# triton.go) against cuDNN's fused attention, in one lease, on one H200. Random weights of
# ModernBERT-base's shapes, MS MARCO passages.
#   1. TestTritonAttentionXLA: the kernel compiles in XLA and gives cuDNN's vectors (tiny and
#      base shapes); the script stops here if it does not.
#   2. TestParityXLA with the variant: the tiny fixtures against HF.
#   3. bench-model, two callers on full 16,384-slot steps, default and variant in ABBA order.
#   4. (PHASES) variants.sh's rungs and full-size parity for both.
# Needs .devcarry/{embedbench,modernbert.test,shared}. Results in $OUT.
set -uo pipefail
source scripts/gpu/env.sh
A=EMBEDBENCH_MODERNBERT_VARIANT
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/machine.txt"
TEST=$PWD/.devcarry/modernbert.test
echo "# kernel test at ${SECONDS}s"
(cd internal/modernbert && timeout 300 "$TEST" -test.run 'TestTritonAttentionXLA' -test.v -test.timeout 290s) > "$OUT/kernel_test.txt" 2>&1
rc=$?
grep -E "^(=== RUN|--- |\s+parity|ok|FAIL|PASS)|triton|Triton|differ|cosine" "$OUT/kernel_test.txt" | cut -c1-400 | head -40
if [ $rc -ne 0 ]; then
  echo "kernel test failed (rc=$rc); its log:"; grep -iE "error|fail|triton" "$OUT/kernel_test.txt" | cut -c1-2000 | head -20
  exit 1
fi
echo "# tiny fixtures' parity with the variant at ${SECONDS}s"
(cd internal/modernbert && env $A=triton-attention timeout 200 "$TEST" -test.run 'TestParityXLA' -test.v -test.timeout 190s) > "$OUT/parity_tiny.txt" 2>&1
echo "TestParityXLA with triton-attention: rc=$?"; grep -E "^(--- |ok|FAIL|PASS)" "$OUT/parity_tiny.txt" | head -20
echo "# throughput at ${SECONDS}s"
PHASES=${PHASES:-throughput} THROUGHPUT=$'cudnn;;\ntriton;'$A$'=triton-attention;\ntriton2;'$A$'=triton-attention;\ncudnn2;;' \
  RUNGS=$'cudnn;;\ntriton;'$A$'=triton-attention;' PARITY_VARIANTS=triton-attention bash scripts/gpu/variants.sh
echo "done in ${SECONDS}s"
