#!/usr/bin/env bash
# Session 11's first device call: where a step's wall time goes (latency.sh without the HF
# reference, then each rung alone with one caller), and the residual stream in bf16
# (`residual-bf16`) against the default fp32 stream: model-only, with XLA flags that might fold
# its adds and LayerNorms further, its full-size parity with HF fp32 and its optimised HLO.
# Everything lands in $OUT/phases_residual.tgz (the device tool returns few loose files).
set -uo pipefail
R=/tmp/phases_residual; mkdir -p "$R/latency" "$R/perf" "$R/rungs"
OUT_ALL=$OUT
W=/tmp/lat SKIP_HF=1 DUR=${DUR:-6s} OUT=$R/latency timeout "${LATENCY_LIMIT:-230}" bash scripts/gpu/latency.sh > "$R/latency.out" 2>&1
pkill -f "embedbench.* serve" ; sleep 1  # a server left behind by the timeout would share the GPU
bf="--dtype bfloat16 --step-slots 16384"; A=EMBEDBENCH_MODERNBERT_VARIANT; X=XLA_FLAGS
W=/tmp/perf OUT=$R/perf SECS=4 STOP=${PERF_STOP:-200} SKIP_TINY_PARITY=1 SKIP_TF32=1 SKIP_JAX=1 \
  HLO_VARIANT=residual-bf16 PARITY_DTYPES=bfloat16 PARITY_VARIANTS=residual-bf16 VARIANTS="default;;$bf
residual-bf16;$A=residual-bf16;$bf
default-again;;$bf
residual-bf16-again;$A=residual-bf16;$bf
residual-bf16-cublaslt;$A=residual-bf16 $X=--xla_gpu_enable_cublaslt=true;$bf
residual-bf16-twopass-cudnn-ln;$A=residual-bf16,ln-twopass $X=--xla_gpu_enable_cudnn_layer_norm=true;$bf" \
  timeout "${PERF_LIMIT:-260}" bash scripts/gpu/perf_model.sh > "$R/perf.out" 2>&1
OUT=$R/rungs CASES=bfloat16_packed_1caller SECONDS_PER_RUNG=2 timeout "${RUNGS_LIMIT:-100}" bash scripts/gpu/rungs.sh > "$R/rungs.out" 2>&1
tar -czf "$OUT_ALL/phases_residual.tgz" -C "$R" .
