#!/usr/bin/env bash
# Issue 16, next lever: where a step of the bf16 default (the fp16 stream with folded norms,
# session 12) spends its time, kernel by kernel. jax_profile.py's mirror of today's graph
# (cudnn-fold16) beside the old one (cudnn), timed, and cudnn-fold16 profiled with CUPTI;
# then bf16 model-only of the Go binary on full steps for the same lease. Writes jax.jsonl,
# kernels.json and perf.jsonl to $OUT (perf_model.sh).
set -uo pipefail
VARIANTS="default;;--dtype bfloat16 --step-slots 16384" SECS=${SECS:-4} STOP=${STOP:-300} \
  SKIP_TINY_PARITY=1 SKIP_FULL_PARITY=1 SKIP_TF32=1 SKIP_HLO=1 \
  JAX_VARIANTS=cudnn,cudnn-fold16 JAX_PROFILE=cudnn-fold16 bash scripts/gpu/perf_model.sh
