#!/usr/bin/env bash
# GPU machine, issue 16's fp32 lever: float32 models attending through cuDNN's fused kernel in
# fp16 (the default since session 9) against XLA's own attention (EMBEDBENCH_MODERNBERT_VARIANT=
# xla-attention, the default before). In one call: the tiny fixtures on XLA, full-size parity
# with HF fp32 (eager, no TF32), model-only throughput of both and of bf16, and HF's model-only
# rows beside them. Packs $W into $OUT/fp32attn.tgz, also when the call is cut short.
# The fp32 runs are the default (fp16 attention and Wo), wo-f32 (Wo as a TF32 product after the
# fp16 attention) and xla-attention; parity uses texts up to 1,024 tokens (--max-length 1024
# truncates the one longer text, so compare leaves it out with --max-tokens).
# SECONDS_EACH sets each bench-model run (default 10); SKIP_TINY=1 leaves the tiny fixtures out;
# LEAN=1 keeps only the float32 default's parity and the float32 default and wo-f32 throughput.
set -uo pipefail
source scripts/gpu/env.sh
SECONDS_EACH=${SECONDS_EACH:-10}
trap 'tar -C "$W" -czf "$OUT/fp32attn.tgz" .' EXIT
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  lscpu | grep 'Model name'; nproc; } > "$W/machine.txt"

if [ -z "${SKIP_TINY:-}" ]; then
echo "== tiny fixtures on XLA (fp32 now through cuDNN in fp16)"
(cd internal/modernbert && "$OLDPWD/.devcarry/modernbert.test" -test.run 'ParityXLA|StepLadderXLA' -test.v 2>&1 |
  grep -v -i warn | grep -E '^(=== RUN|--- |    |ok|FAIL|PASS)' | tail -60) | tee "$W/tiny_xla.txt"
fi

echo "== parity with HF transformers (full size, random weights)"
parity_reference
parity() { # LABEL DTYPE VARIANT
  local label=$1 dt=$2 variant=$3
  EMBEDBENCH_MODERNBERT_VARIANT=$variant "$BIN" embed --model "$MB" --device cuda --dtype "$dt" --max-length 1024 \
    < "$W/parity_texts.jsonl" > "$W/ours_$label.jsonl" 2> "$W/embed_$label.log" || tail -5 "$W/embed_$label.log"
  python3 scripts/gpu/modernbert_full.py compare --reference "$W/parity_ref.json" --ours "$W/ours_$label.jsonl" \
    --against "$dt" --label "ours $label" --max-tokens 1024 | tee -a "$W/parity.jsonl"
}
parity float32_fused float32 ""
if [ -z "${LEAN:-}" ]; then
  parity float32_xla float32 xla-attention
  parity bfloat16 bfloat16 ""
fi

echo "== model-only throughput: ours (16,384-slot steps, two callers)"
bench() { # LABEL DTYPE VARIANT
  local label=$1 dt=$2 variant=$3
  EMBEDBENCH_MODERNBERT_VARIANT=$variant "$BIN" bench-model --model "$MB" --device cuda --dtype "$dt" --data "$TSV" \
    --step-slots 16384 --seconds "$SECONDS_EACH" > "$W/model_$label.json" 2> "$W/model_$label.log"
  echo "$label: $(cat "$W/model_$label.json")"; grep -h -i 'cudnn\|error' "$W/model_$label.log" | head -3
}
bench float32_fused float32 ""
bench float32_wo32 float32 wo-f32
if [ -z "${LEAN:-}" ]; then
  bench float32_xla float32 xla-attention
  bench bfloat16 bfloat16 ""
fi
bench float32_fused_again float32 ""

if [ -z "${LEAN:-}" ]; then
  echo "== model-only throughput: HF transformers"
  python3 scripts/gpu/hf_model_bench.py --model "$MB" --tsv "$TSV" --seconds 8 2>&1 | grep -v -i warn | tee "$W/hf_model.jsonl"
fi
