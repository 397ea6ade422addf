#!/usr/bin/env bash
# Session 11's last device call: the kept build (one upload a step, partial downloads of the
# pooled vectors; .devcarry/embedbench) against session 10's (.devcarry/embedbench-old):
#   1. full-size parity of the kept build with HF (bf16 and fp32);
#   2. both servers under pipeline_ab.sh's loads, one client to open loop at 70% of PEAK.
# Everything lands in $OUT/downloads_ab.tgz.
set -uo pipefail
R=/tmp/downloads_ab; mkdir -p "$R/perf" "$R/ab"
OUT_ALL=$OUT
W=/tmp/perf OUT=$R/perf STOP=200 SKIP_TINY_PARITY=1 SKIP_TF32=1 SKIP_JAX=1 SKIP_HLO=1 VARIANTS="" \
  timeout "${PARITY_LIMIT:-150}" bash scripts/gpu/perf_model.sh > "$R/perf.out" 2>&1
W=/tmp/ab OUT=$R/ab PEAK=${PEAK:-16800} DUR=${DUR:-6s} LOADS="c1 b32c1 c8 c256 rate50 rate70" \
  SERVERS="old=.devcarry/embedbench-old new=.devcarry/embedbench" timeout "${AB_LIMIT:-230}" bash scripts/gpu/pipeline_ab.sh > "$R/ab.out" 2>&1
pkill -f "embedbench.* serve"
tar -czf "$OUT_ALL/downloads_ab.tgz" -C "$R" .
