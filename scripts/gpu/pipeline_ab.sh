#!/usr/bin/env bash
# GPU machine: the continuous engine's loads that depend on when a busy replica sends its next
# batch (256 one-text clients, 32 passages open loop at 50% and 70% of PEAK passages/s), for
# several servers in one lease: each entry of SERVERS is LABEL=BINARY, with serve flags after
# it each behind an @, e.g.
#   SERVERS="old=.devcarry/embedbench-old new=.devcarry/embedbench"
#   SERVERS="base=.devcarry/embedbench nocut=.devcarry/embedbench@--busy-batch-cut=0"
# LOADS picks among c1, b32c1, c8, c64, c256, sat (32 passages from 32 clients), rate50 and
# rate70 (default: c256 rate50 rate70). ABBA=1 runs the servers twice, in both orders.
# Each load's step phases are printed after it. Packs $W into $OUT/pipeline_ab.tgz.
set -uo pipefail
source scripts/gpu/env.sh
DUR=${DUR:-8s}
: "${PEAK:?PEAK (passages/s at saturation) is needed for the open-loop rates}"
"$BIN" data --source "$EMBEDBENCH_SHARED/data/msmarco" --count 5000 --output "$W/test_sentences.json"
# The server that runs second in a lease has done worse on the latency loads, whichever build
# it was (runs 37, 41 and 42): ABBA=1 runs the list forward and then backward, the second
# round's labels ending in 2.
order=(${SERVERS:?})
if [ -n "${ABBA:-}" ]; then
  for ((i = ${#order[@]} - 1; i >= 0; i--)); do order+=("${order[i]}"); done
fi
declare -A seen
for entry in "${order[@]}"; do
  label=${entry%%=*}; IFS=@ read -r -a spec <<< "${entry#*=}"; bin=${spec[0]}; extra=("${spec[@]:1}")
  [ -n "${seen[$label]:-}" ] && label=${label}2
  seen[${entry%%=*}]=1
  "$bin" --log-format json serve --port 8001 "${SERVE_ARGS[@]}" --engine continuous \
    --dtype bfloat16 --max-concurrent-requests 4096 "${extra[@]}" > "$W/server_$label.log" 2>&1 &
  wait_healthy http://127.0.0.1:8001 240 || { kill %1; wait; continue; }
  for load in ${LOADS:-c256 rate50 rate70}; do
    case $load in
      c1) args=(--batch-size 1 --max-concurrent-requests 1);;
      b32c1) args=(--batch-size 32 --max-concurrent-requests 1);;
      c8) args=(--batch-size 1 --max-concurrent-requests 8);;
      c64) args=(--batch-size 1 --max-concurrent-requests 64);;
      c256) args=(--batch-size 1 --max-concurrent-requests 256);;
      sat) args=(--batch-size 32 --max-concurrent-requests 32);;
      rate50) args=(--batch-size 32 --rate "$(python3 -c "print(round($PEAK * 0.5 / 32, 2))")" --max-concurrent-requests 4096);;
      rate70) args=(--batch-size 32 --rate "$(python3 -c "print(round($PEAK * 0.7 / 32, 2))")" --max-concurrent-requests 4096);;
    esac
    mkdir -p "$W/stress/${label}_$load"
    curl -s http://127.0.0.1:8001/metrics | grep -E "^embedbench_step_phase_seconds" > "$W/phases_before.prom"
    "$bin" stress --service-url http://127.0.0.1:8001 --duration "$DUR" --warmup-seconds 2 --timeout 20s \
      --data-file "$W/test_sentences.json" --output-dir "$W/stress/${label}_$load" "${args[@]}" > "$W/stress/${label}_$load/stdout.txt" 2>&1
    python3 scripts/gpu/summarize.py "$W/stress/${label}_$load" "${label}_$load"
    # Where this load's steps spent their time, by phase (the steps between two scrapes).
    curl -s http://127.0.0.1:8001/metrics | grep -E "^embedbench_step_phase_seconds" > "$W/phases_after.prom"
    python3 scripts/gpu/summarize.py --phases "$W/phases_after.prom" "$W/phases_before.prom" | sed "s/^/  ${label}_$load phases: /"
  done
  curl -s http://127.0.0.1:8001/metrics | grep -E "^embedbench_(step_(slots|occupancy|phase_seconds)|batches_total|batches_cut_total)" > "$W/step_metrics_$label.txt"
  numa_facts "$(jobs -p %1)" "$label"
  kill %1; wait
done
tar -czf "$OUT/pipeline_ab.tgz" -C "$W" .
