#!/usr/bin/env bash
# Issue 16, one lever: q, k and v from three products (EMBEDBENCH_MODERNBERT_VARIANT=split-qkv)
# instead of one, so that v is not copied out of the qkv tensor (run 23's HLO: a 17 µs
# slice fusion a layer). bench-model, bf16, full steps of 16,384 slots, two callers; the
# default before and after the variant, to bound the machine's drift. Writes $OUT/split_qkv.jsonl.
set -uo pipefail
source scripts/gpu/env.sh
for v in default split-qkv default; do
  env EMBEDBENCH_MODERNBERT_VARIANT=$([ $v = default ] || echo $v) timeout 120 "$BIN" bench-model --model "$TOK" \
    --weights random --device cuda --dtype bfloat16 --step-slots 16384 --callers 2 --data "$TSV" --passages 20000 \
    --seconds "${SECONDS_EACH:-5}" > "$W/split_$v.json" 2> "$W/split_$v.log"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(json.dumps({'variant': sys.argv[2], 'tok_s': round(d['tokens_per_second']), 'step_ms': round(d['mean_step_ms'], 3), 'compile_s': round(d['compile_seconds'], 1)}))" \
    "$W/split_$v.json" $v | tee -a "$OUT/split_qkv.jsonl"
done
