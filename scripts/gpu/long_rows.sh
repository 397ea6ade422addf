#!/usr/bin/env bash
# GPU machine: what XLA attention in blocks of queries changes for long rows (fp32; bf16 uses
# cuDNN's fused attention and is not affected), against whole rows (variant attention-whole):
# GPU memory of a sequential fp32 server, which compiles and warms every shape up to 8192
# tokens; fp32 throughput on long texts; the tiny fixtures' parity on XLA. Results in $OUT.
set -uo pipefail
source scripts/gpu/env.sh
V=EMBEDBENCH_MODERNBERT_VARIANT

# Long passages: consecutive MS MARCO passages joined to 1,500-6,000 tokens.
python3 - "$TSV" > "$W/long.tsv" <<'PY'
import sys
rows = [l.rstrip("\n").partition("\t")[2] for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
at = 0
for i in range(48):
    n = 20 + (i * 7) % 55
    print(f"{i}\t{' '.join(rows[at:at + n])}")
    at += n
PY

echo "== server memory: sequential fp32, blocks (8100) and whole rows (8101)"
"$BIN" serve --port 8100 "${SERVE_ARGS[@]}" --engine sequential --dtype float32 > "$W/server_blocked.log" 2>&1 &
env $V=attention-whole "$BIN" serve --port 8101 "${SERVE_ARGS[@]}" --engine sequential --dtype float32 > "$W/server_whole.log" 2>&1 &
wait_healthy http://127.0.0.1:8100 400; wait_healthy http://127.0.0.1:8101 400
{ nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader
  ps -eo pid,args | grep "embedbench serve" | grep -v grep; } | tee "$OUT/server_memory.txt"
for f in "$W"/server_blocked.log "$W"/server_whole.log; do echo "$f: $(grep -o 'load_and_warm_up=[^ ]*' "$f")"; done | tee -a "$OUT/server_memory.txt"
pkill -f "embedbench serve"; sleep 2

echo "== fp32 throughput on long texts"
for v in blocked whole; do
  envs=""; [ $v = whole ] && envs="$V=attention-whole"
  env $envs timeout 120 "$BIN" bench-model --model "$MB" --device cuda --dtype float32 --max-length 8192 \
    --data "$W/long.tsv" --seconds 8 > "$W/long_$v.json" 2> "$W/long_$v.log" || tail -3 "$W/long_$v.log"
  python3 - "$v" "$W/long_$v.json" <<'PY' | tee -a "$OUT/long.jsonl"
import json, sys
d = json.load(open(sys.argv[2]))
print(json.dumps({"attention": sys.argv[1], "tok_s": round(d["tokens_per_second"]), "seq_s": round(d["sequences_per_second"], 1),
                  "mean_tokens": round(d["mean_passage_tokens"]), "max_tokens": d["max_passage_tokens"],
                  "waste": round(d["padding_waste"], 3), "shapes": d["model"]["shapes"],
                  "compile_s": round(d["compile_seconds"], 1), "mem_gib": round(d.get("gpu_memory_used_bytes", 0) / 2**30, 1)}))
PY
done

echo "== tiny fixtures on XLA"
(cd internal/modernbert && "$OLDPWD/.devcarry/modernbert.test" -test.run 'TestParityXLA' -test.v 2>&1) |
  grep -E "^=== RUN|worst|FAIL|^ok|^PASS" | tee "$OUT/tiny_parity_xla.txt"
echo "done in ${SECONDS}s"
