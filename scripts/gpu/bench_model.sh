#!/usr/bin/env bash
# GPU machine, part 1 of the benchmark page: tokenizer speed (ours vs HF tokenizers), model
# parity with HF transformers on the full-size random checkpoint, model-only throughput (ours
# bf16/fp32 vs HF). Writes everything under $W and packs it into $OUT/part1.tgz.
# SKIP_TOKENIZER=1 leaves the tokenizer part out (it does not change with the model).
set -uo pipefail
source scripts/gpu/env.sh
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  lscpu | grep 'Model name'; nproc; } > "$W/machine.txt"

if [ -z "${SKIP_TOKENIZER:-}" ]; then
echo "== tokenizer: ours (one core) and HF tokenizers"
[ -x .devcarry/tokenizer.test ] && (cd internal/tokenizer && GOMAXPROCS=1 "$OLDPWD/.devcarry/tokenizer.test" -test.run '^$' \
  -test.bench 'MSMARCO' -test.benchmem -test.cpu 1 -test.benchtime 3s) | tee "$W/tokenizer_go.txt"
# and on every core, beside HF's 16-thread encode_batch
[ -x .devcarry/tokenizer.test ] && (cd internal/tokenizer && "$OLDPWD/.devcarry/tokenizer.test" -test.run '^$' \
  -test.bench 'MSMARCO/AppendIDsParallel' -test.benchmem -test.cpu "$(nproc)" -test.benchtime 3s) | tee -a "$W/tokenizer_go.txt"
[ -f scripts/gpu/tokenizer_bench.py ] && python3 scripts/gpu/tokenizer_bench.py --tokenizer "$TOK/tokenizer.json" --tsv "$TSV" | tee "$W/tokenizer_hf.json"
fi

echo "== parity with HF transformers (full size, random weights)"
parity_reference
for dt in float32 bfloat16; do
  "$BIN" embed --model "$MB" --device cuda --dtype $dt < "$W/parity_texts.jsonl" > "$W/ours_$dt.jsonl" 2> "$W/embed_$dt.log" || tail -5 "$W/embed_$dt.log"
  for against in float32 bfloat16; do
    python3 scripts/gpu/modernbert_full.py compare --reference "$W/parity_ref.json" --ours "$W/ours_$dt.jsonl" \
      --against $against --label "ours $dt" | tee -a "$W/parity.jsonl"
  done
done

echo "== model-only throughput: ours"
for dt in bfloat16 float32; do
  "$BIN" bench-model --model "$MB" --device cuda --dtype $dt --data "$TSV" --seconds 15 \
    > "$W/model_$dt.json" 2> "$W/model_$dt.log"; cat "$W/model_$dt.json"; tail -3 "$W/model_$dt.log"
done

echo "== model-only throughput: HF transformers"
python3 scripts/gpu/hf_model_bench.py --model "$MB" --tsv "$TSV" --seconds 8 2>&1 | grep -v -i warn | tee "$W/hf_model.jsonl"

tar -C "$W" -czf "$OUT/part1.tgz" .
