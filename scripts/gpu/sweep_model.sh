#!/usr/bin/env bash
# GPU machine: model-only bf16 throughput over step size, packed row length and callers, to
# choose the continuous engine's defaults. One JSON line per configuration in $OUT/sweep.jsonl.
set -uo pipefail
source scripts/gpu/env.sh
(cd internal/modernbert && "$OLDPWD/.devcarry/modernbert.test" -test.run XLA -test.v 2>&1 | grep -E "^(=== RUN|--- |PASS|FAIL|ok)|cos" | head -30)
for cfg in "16384 256 2" "32768 256 2" "65536 256 2" "32768 256 3" "32768 128 2" "65536 512 2"; do
  set -- $cfg
  "$BIN" bench-model --model "$MB" --device cuda --dtype bfloat16 --data "$TSV" --seconds 8 \
    --batch-tokens $1 --packed-row $2 --callers $3 2> "$W/sweep_$1_$2_$3.log" |
    python3 -c "import json,sys; d=json.load(sys.stdin); print(json.dumps({'batch_tokens':$1,'row':$2,'callers':$3,'tok_s':round(d['tokens_per_second']),'waste':round(d['padding_waste'],3),'step_ms':round(d['mean_step_ms'],1),'compile_s':round(d['compile_seconds'],1),'mem_gb':round(d.get('gpu_memory_used_bytes',0)/1e9,1)}))" | tee -a "$OUT/sweep.jsonl"
done
