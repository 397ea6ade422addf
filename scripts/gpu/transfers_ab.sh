#!/usr/bin/env bash
# Session 11's second device call: host arrays registered with the device and partial
# downloads of the pooled vectors (the new build, .devcarry/embedbench) against staged
# transfers and whole downloads (.devcarry/embedbench-old), in one lease:
#   1. the XLA parity tests of the new build (tiny fixtures, vectors alike on every rung);
#   2. model-only bf16 on full steps: new, new with each change turned off (host-heap,
#      full-download), old; each run's mean phases;
#   3. both servers under pipeline_ab.sh's loads, one client to open loop at 70%;
#   4. full-size parity of the new build with HF (bf16 and fp32);
#   5. each rung alone with one caller (rungs.sh), new build.
# Everything lands in $OUT/transfers_ab.tgz.
set -uo pipefail
R=/tmp/transfers_ab; mkdir -p "$R/perf" "$R/ab" "$R/rungs"
OUT_ALL=$OUT
source scripts/gpu/env.sh
{ (cd internal/modernbert && timeout 120 "$OLDPWD/.devcarry/modernbert.test" -test.run 'XLA' -test.v 2>&1) |
    grep -E "^(=== RUN|--- |ok|PASS|FAIL)|worst|differ" ; } > "$R/xla_tests.txt"
tail -3 "$R/xla_tests.txt"
bf="--dtype bfloat16 --step-slots 16384"; A=EMBEDBENCH_MODERNBERT_VARIANT
W=/tmp/perf OUT=$R/perf SECS=4 STOP=150 SKIP_TINY_PARITY=1 SKIP_TF32=1 SKIP_JAX=1 SKIP_HLO=1 SKIP_FULL_PARITY=1 VARIANTS="new;;$bf
new-host-heap;$A=host-heap;$bf
new-full-download;$A=full-download;$bf
new-staged-whole;$A=host-heap,full-download;$bf" timeout 170 bash scripts/gpu/perf_model.sh > "$R/perf.out" 2>&1
BIN=.devcarry/embedbench-old W=/tmp/perf OUT=$R/perf SECS=4 STOP=60 SKIP_TINY_PARITY=1 SKIP_TF32=1 SKIP_JAX=1 SKIP_HLO=1 SKIP_FULL_PARITY=1 \
  VARIANTS="old;;$bf" timeout 60 bash scripts/gpu/perf_model.sh >> "$R/perf.out" 2>&1
for f in /tmp/perf/new*.json /tmp/perf/old.json; do
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].split('/')[-1], round(d['tokens_per_second']), d.get('model',{}).get('host_transfers'), {k: round(v,3) for k,v in (d.get('mean_phase_ms') or {}).items()})" "$f"
done | tee "$R/phases_model.txt"
W=/tmp/ab OUT=$R/ab PEAK=${PEAK:-16800} DUR=${DUR:-6s} LOADS="c1 b32c1 c8 c256 rate50 rate70" \
  SERVERS="old=.devcarry/embedbench-old new=.devcarry/embedbench" timeout 280 bash scripts/gpu/pipeline_ab.sh > "$R/ab.out" 2>&1
pkill -f "embedbench.* serve"; sleep 1
W=/tmp/perf OUT=$R/perf STOP=60 SKIP_TINY_PARITY=1 SKIP_TF32=1 SKIP_JAX=1 SKIP_HLO=1 VARIANTS="" timeout 100 bash scripts/gpu/perf_model.sh >> "$R/perf.out" 2>&1
OUT=$R/rungs CASES=bfloat16_packed_1caller SECONDS_PER_RUNG=2 timeout 80 bash scripts/gpu/rungs.sh > "$R/rungs.out" 2>&1
tar -czf "$OUT_ALL/transfers_ab.tgz" -C "$R" .
