#!/usr/bin/env bash
# GPU machine, issue 16's row-length lever with cuDNN's attention: bf16 model-only throughput on
# packed rows of 256 (the default), on rows of 128 for the sequences that fit them, and on rows
# of 128 with every passage truncated to 128 tokens (the lever's ceiling: attention over half the
# keys, at the cost of the text). 16,384-slot steps, two callers, MS MARCO. Packs $W into
# $OUT/rows.tgz, also when the call is cut short. SECONDS_EACH sets each run (default 8).
set -uo pipefail
source scripts/gpu/env.sh
SECONDS_EACH=${SECONDS_EACH:-8}
trap 'tar -C "$W" -czf "$OUT/rows.tgz" .' EXIT
bench() { # LABEL args...
  local label=$1; shift
  "$BIN" bench-model --model "$MB" --device cuda --dtype bfloat16 --data "$TSV" --step-slots 16384 \
    --seconds "$SECONDS_EACH" "$@" > "$W/model_$label.json" 2> "$W/model_$label.log"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[2], round(d["tokens_per_second"]), "tokens/s, waste", round(d["padding_waste"], 4), "step", round(d["mean_step_ms"], 2), "ms", d["model"]["shapes"])' "$W/model_$label.json" "$label"
}
bench rows256
bench rows128 --packed-row 128
bench rows128_truncated --packed-row 128 --max-length 128
bench rows256_again
