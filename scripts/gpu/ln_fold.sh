#!/usr/bin/env bash
# Issue 16's ln-fold lever (docs/notes/modernbert.md, session 11): bf16 model-only on full steps,
# the default and ln-fold alternating twice; ln-fold's full-size parity with HF fp32 beside the
# default's; and ln-fold's optimised HLO, which says whether XLA writes the bf16 copy of the
# residual stream as a second output of the residual add's fusion (the fold only pays if so).
# Writes perf.jsonl, parity.txt and hlo.tgz to $OUT (perf_model.sh).
set -uo pipefail
bf="--dtype bfloat16 --step-slots 16384"; A=EMBEDBENCH_MODERNBERT_VARIANT
SECS=${SECS:-4} STOP=${STOP:-240} SKIP_TINY_PARITY=1 SKIP_TF32=1 SKIP_JAX=1 HLO_VARIANT=ln-fold \
  PARITY_DTYPES=bfloat16 PARITY_VARIANTS=ln-fold VARIANTS="default;;$bf
ln-fold;$A=ln-fold;$bf
default-again;;$bf
ln-fold-again;$A=ln-fold;$bf" bash scripts/gpu/perf_model.sh
