#!/usr/bin/env bash
# GPU machine, part 2 of the benchmark page: the services end to end over HTTP, measured by
# embedbench stress: our continuous engine (bf16, fp32), our sequential engine (fp32) and the
# seed's HuggingFace backend (scripts/gpu/hf_service.py), all on the same random checkpoint.
# All servers stay up; only the one under test gets traffic. Packs $W into $OUT/part2.tgz.
set -uo pipefail
source scripts/gpu/env.sh
DUR=${DUR:-10s}
# GPUS=N: the continuous engines run one replica per GPU (default: every GPU the machine has);
# the closed-loop sweep goes N times as deep so that every replica can be kept busy.
GPUS=${GPUS:-$( [ -n "$DRYRUN" ] && echo 1 || nvidia-smi -L | wc -l)}
"$BIN" data --source "$EMBEDBENCH_SHARED/data/msmarco" --count 5000 --output "$W/test_sentences.json"

serve() { # name port args...
  local name=$1 port=$2; shift 2
  "$BIN" --log-format json serve --port "$port" "${SERVE_ARGS[@]}" "$@" > "$W/server_$name.log" 2>&1 &
}
if [ -z "$DRYRUN" ]; then BF16=bfloat16; else BF16=float32; fi
serve cont-bf16 8001 --engine continuous --dtype $BF16 --replicas "$GPUS"
serve cont-fp32 8003 --engine continuous --dtype float32 --replicas "$GPUS"
serve seq-fp32 8000 --engine sequential --dtype float32
if [ -z "$DRYRUN" ]; then
  python3 scripts/gpu/hf_service.py --model "$MB" --port 8002 > "$W/server_hf.log" 2>&1 &
else  # no torch here: a stand-in so that the script itself is tested, never a result
  serve hf-standin 8002 --engine sequential --dtype float32
fi
for p in 8001 8003 8000 8002; do wait_healthy http://127.0.0.1:$p 240; done

# run LABEL PORT args...: one stress run into its own folder.
run() {
  local label=$1 port=$2; shift 2
  mkdir -p "$W/stress/$label"
  "$BIN" stress --service-url http://127.0.0.1:$port --batch-size 32 --duration "$DUR" \
    --warmup-seconds 2 --timeout 20s --data-file "$W/test_sentences.json" --output-dir "$W/stress/$label" "$@" > "$W/stress/$label/stdout.txt" 2>&1
  python3 scripts/gpu/summarize.py "$W/stress/$label" "$label"
}
peak() { python3 scripts/gpu/summarize.py --peak "$W/stress" "$1"; }  # best passages/s among runs whose label starts so

nvidia-smi --query-compute-apps=pid,process_name,used_memory --format=csv > "$W/gpu_processes.csv"
ps -eo pid,args | grep -E "embedbench|hf_service" | grep -v grep >> "$W/gpu_processes.csv"

for c in 1 8 32 64 256 $((GPUS > 1 ? 256 * GPUS : 0)); do
  [ "$c" -gt 0 ] && run cont-bf16_c$c 8001 --max-concurrent-requests $c
done
run cont-fp32_c64 8003 --max-concurrent-requests 64
for c in 1 16; do run seq-fp32_c$c 8000 --max-concurrent-requests $c; done
for c in 1 16; do run hf-fp32_c$c 8002 --max-concurrent-requests $c; done

# Open loop (latency from intended send times). Rates the server can sustain come first: a
# service that falls behind keeps working through its backlog after the client stops (the HF
# reference cannot drop abandoned requests), which would share the GPU with the next run.
CONT=$(peak cont-bf16_c); HF=$(peak hf-fp32_c)
rate() { python3 -c "print(round($1 * $2 / 100 / 32, 2))"; }
for pct in 50 70 90; do run cont-bf16_rate$pct 8001 --rate "$(rate "$CONT" $pct)" --max-concurrent-requests 4096; done
run cont-fp32_rate70 8003 --rate "$(rate "$(peak cont-fp32_c)" 70)" --max-concurrent-requests 4096
run cont-bf16_hfpeak 8001 --rate "$(rate "$HF" 100)" --max-concurrent-requests 4096
run hf-fp32_hfpeak 8002 --rate "$(rate "$HF" 100)" --max-concurrent-requests 4096
# Beyond their capacity, last: 50% of the continuous engine's peak on the sequential engine
# and on the HF reference (which is then stopped, so its backlog touches nothing else).
run seq-fp32_rate50 8000 --rate "$(rate "$CONT" 50)" --max-concurrent-requests 4096
run hf-fp32_rate50 8002 --rate "$(rate "$CONT" 50)" --max-concurrent-requests 4096 --timeout 10s
# A flooded HF reference can take a while to exit, holding its port: wait, then force it.
pkill -f hf_service.py
for _ in $(seq 20); do pgrep -f hf_service.py > /dev/null || break; sleep 1; done
pkill -9 -f hf_service.py; sleep 1
python3 scripts/gpu/hf_service.py --model "$MB" --port 8002 > "$W/server_hf2.log" 2>&1 &
wait_healthy http://127.0.0.1:8002 120

echo "== fairness: the same passages through HF and through ours"
for p in 8001 8003 8000; do
  "$BIN" compare --check-embeddings http://127.0.0.1:8002 http://127.0.0.1:$p \
    --data-file "$W/test_sentences.json" --passages "${FAIR_N:-256}" --check-output "$W/fairness_$p.json" > "$W/fairness_$p.txt" 2>&1
  tail -4 "$W/fairness_$p.txt"
done

echo "== report"
best() { python3 scripts/gpu/summarize.py --best-file "$W/stress" "$1"; }
"$BIN" compare --labels "HF reference (fp32),sequential (fp32),continuous (fp32),continuous (bf16)" \
  --title "embedbench on one H200: ModernBERT-base, random weights, MS MARCO, client batch 32" \
  --fairness "$W/fairness_8000.json,$W/fairness_8003.json,$W/fairness_8001.json" --markdown "$W/compare.md" \
  --html "$W/report.html" "$(best hf-fp32_c)" "$(best seq-fp32_c)" "$(best cont-fp32_c)" "$(best cont-bf16_c)" | tee "$W/compare.txt"
pkill -f "embedbench.*serve"; pkill -f hf_service.py; wait
tar -C "$W" -czf "$OUT/part2.tgz" .
