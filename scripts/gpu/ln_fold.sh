#!/usr/bin/env bash
# Issue 16's stream levers (docs/notes/modernbert.md, session 12): bf16 model-only on full
# steps for the default, ln-fold, the residual stream in fp16 (residual-f16, with and without
# ln-fold), fold-f16 (the folded products in fp16 reading that stream) and residual-bf16, in an
# order and its reverse; each one's full-size parity with HF fp32 beside the default's; and
# fold-f16's optimised HLO (which fusions write what). Writes perf.jsonl, parity.txt and hlo.tgz
# to $OUT (perf_model.sh).
set -uo pipefail
bf="--dtype bfloat16 --step-slots 16384"; A=EMBEDBENCH_MODERNBERT_VARIANT
ORDER="default;;$bf
fold-f16;$A=fold-f16;$bf
residual-f16;$A=residual-f16;$bf
ln-fold;$A=ln-fold;$bf
f16-ln-fold;$A=residual-f16,ln-fold;$bf
residual-bf16;$A=residual-bf16;$bf"
SECS=${SECS:-4} STOP=${STOP:-480} SKIP_TINY_PARITY=1 SKIP_TF32=1 SKIP_JAX=1 HLO_VARIANT=${HLO_VARIANT:-fold-f16} \
  PARITY_DTYPES=bfloat16 PARITY_VARIANTS="ln-fold residual-f16 residual-f16,ln-fold fold-f16" \
  VARIANTS="$ORDER
$(tac <<< "$ORDER" | sed 's/^\([^;]*\);/\1-again;/')" bash scripts/gpu/perf_model.sh
