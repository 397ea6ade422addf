#!/usr/bin/env bash
# GPU machine: latency below saturation on the step ladder (issue 13). Our continuous engine
# (bf16, default ladder) and the seed's HF backend (hf_service.py, one request at a time) on
# the same random checkpoint: one text and 32 passages from one client, one text from 8, 64
# and 256 clients, 32 passages at saturation and open loop at 50% and 70% of that peak.
# SERVE_EXTRA adds flags to our server (e.g. SERVE_EXTRA="--step-slots 1024,4096,8192,16384");
# SKIP_HF=1 leaves the HF reference out.
# Packs $W into $OUT/latency.tgz.
set -uo pipefail
source scripts/gpu/env.sh
DUR=${DUR:-8s}
"$BIN" data --source "$EMBEDBENCH_SHARED/data/msmarco" --count 5000 --output "$W/test_sentences.json"
"$BIN" --log-format json serve --port 8001 "${SERVE_ARGS[@]}" --engine continuous --dtype bfloat16 \
  --max-concurrent-requests 4096 --pprof-addr 127.0.0.1:6060 ${SERVE_EXTRA:-} > "$W/server_cont.log" 2>&1 &
if [ -z "$DRYRUN" ] && [ -z "${SKIP_HF:-}" ]; then
  python3 scripts/gpu/hf_service.py --model "$MB" --port 8002 > "$W/server_hf.log" 2>&1 &
fi
wait_healthy http://127.0.0.1:8001 240
grep -h '"replica ready"' "$W/server_cont.log" | head -1
run() { # LABEL PORT BATCH args...
  local label=$1 port=$2 batch=$3; shift 3
  mkdir -p "$W/stress/$label"
  "$BIN" stress --service-url http://127.0.0.1:$port --batch-size "$batch" --duration "$DUR" \
    --warmup-seconds 2 --timeout 20s --data-file "$W/test_sentences.json" --output-dir "$W/stress/$label" "$@" > "$W/stress/$label/stdout.txt" 2>&1
  python3 scripts/gpu/summarize.py "$W/stress/$label" "$label"
}
run cont_b1_c1 8001 1 --max-concurrent-requests 1
run cont_b32_c1 8001 32 --max-concurrent-requests 1
# Where a step's wall time goes with one client (no step waits behind another): the host's
# share around the device's.
curl -s http://127.0.0.1:8001/metrics | grep -E "^embedbench_step_phase_seconds" > "$W/step_phases_c1.prom"
python3 scripts/gpu/summarize.py --phases "$W/step_phases_c1.prom" | tee "$W/step_phases_c1.txt"
run cont_b1_c8 8001 1 --max-concurrent-requests 8
run cont_b1_c64 8001 1 --max-concurrent-requests 64
# A CPU profile of the server and its CPU time per request under the 256-client load: what the
# per-request path (HTTP, JSON, tokenizer, queue, encoding) costs.
SPID=$(pgrep -f "serve --port 8001" | head -1)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$SPID/stat"; }
T0=$(cpu_ticks)
(sleep 3; curl -s "http://127.0.0.1:6060/debug/pprof/profile?seconds=5" > "$W/cpu_c256.pprof") &
PROF=$!
curl -s http://127.0.0.1:8001/metrics | grep -E "^embedbench_step_phase_seconds" > "$W/step_phases_before_c256.prom"
run cont_b1_c256 8001 1 --max-concurrent-requests 256
wait $PROF
# The same split under the 256-client load, where each step is sent while another runs.
curl -s http://127.0.0.1:8001/metrics | grep -E "^embedbench_step_phase_seconds" > "$W/step_phases_after_c256.prom"
python3 scripts/gpu/summarize.py --phases "$W/step_phases_after_c256.prom" "$W/step_phases_before_c256.prom" | tee "$W/step_phases_c256.txt"
echo "server cpu seconds during cont_b1_c256 (warm-up included): $(( ($(cpu_ticks) - T0) / $(getconf CLK_TCK) ))" | tee "$W/cpu_c256.txt"
run cont_b32_c32 8001 32 --max-concurrent-requests 32
PEAK=$(python3 scripts/gpu/summarize.py --peak "$W/stress" cont_b32_c32)
for pct in 50 70; do
  run cont_b32_rate$pct 8001 32 --rate "$(python3 -c "print(round($PEAK * $pct / 100 / 32, 2))")" --max-concurrent-requests 4096
done
curl -s http://127.0.0.1:8001/metrics | grep -E "^embedbench_step_(slots|occupancy|phase_seconds)" > "$W/step_metrics.txt"
numa_facts "$SPID" cont
python3 scripts/gpu/summarize.py --phases "$W/step_metrics.txt" | tee "$W/step_phases.txt"
if [ -z "$DRYRUN" ] && [ -z "${SKIP_HF:-}" ]; then
  wait_healthy http://127.0.0.1:8002 240
  run hf_b1_c1 8002 1 --max-concurrent-requests 1
  run hf_b32_c1 8002 32 --max-concurrent-requests 1
fi
kill %1 %2 2>/dev/null; wait
# The table and the HTML report, whose latency-against-throughput chart draws one line per
# service and client batch size.
files=(); labels=()
for d in "$W"/stress/*/; do files+=("$(ls "$d"stress_test_results_*.json | head -1)"); labels+=("$(basename "$d")"); done
"$BIN" compare --title "Latency against throughput" --labels "$(IFS=,; echo "${labels[*]}")" \
  --html "$W/report.html" "${files[@]}" > "$W/compare.txt"
tar -czf "$OUT/latency.tgz" -C "$W" .
