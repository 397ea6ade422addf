#!/usr/bin/env bash
# GPU machine: the server's GPU gauges under load, scraped by two scrapers at once (a stress run
# reading /metrics every second, and this script's own scrapes a third of a second apart). The
# GPUs are read on the server's own one-second cadence, so scrapes within one second give the
# same reading and GPM's SM activity is over a whole second whoever scrapes. Writes
# $OUT/metrics_poll.txt.
set -uo pipefail
source scripts/gpu/env.sh
"$BIN" data --source "$EMBEDBENCH_SHARED/data/msmarco" --count 2000 --output "$W/test_sentences.json" > /dev/null 2>&1
"$BIN" --log-format json serve --port 8001 "${SERVE_ARGS[@]}" --engine continuous --dtype bfloat16 > "$W/server.log" 2>&1 &
wait_healthy http://127.0.0.1:8001 240 || { kill %1; exit 1; }
"$BIN" stress --service-url http://127.0.0.1:8001 --duration 8s --warmup-seconds 1 --batch-size 32 \
  --max-concurrent-requests 32 --data-file "$W/test_sentences.json" --gpu metrics \
  --output-dir "$W/stress" > "$W/stress.txt" 2>&1 &
sleep 3
for i in $(seq 1 12); do
  printf '%s ' "$(date +%s.%N | cut -c1-14)"
  curl -s http://127.0.0.1:8001/metrics | grep -E '^embedbench_gpu_(sm_activity_percent|tensor_activity_percent|power_watts|utilization_percent)' | tr '\n' ' '
  echo
  sleep 0.33
done | tee "$OUT/metrics_poll.txt"
wait %2
grep -h "gpu_clocks\|GPU" "$W/stress.txt" | tail -3 | tee -a "$OUT/metrics_poll.txt"
python3 -c "import json,glob; d=json.load(open(glob.glob('$W/stress/*.json')[0])); g=d['gpu']; print('stress source', g['source'], [(s.get('sm_activity_percent'), s.get('power_watts')) for s in g.get('series', [])], g.get('reason', ''))" | tee -a "$OUT/metrics_poll.txt"
kill %1; wait
