#!/usr/bin/env bash
# GPU machine, issue 13's run on the dense step ladder: rung parity on XLA (the model test
# binary, .devcarry/modernbert.test), each rung of the default ladder timed by bench-model
# --per-rung (bf16 packed, two callers and one), then latency.sh (ours and the HF reference).
# Writes $OUT/rung_parity.txt, $OUT/rungs.tgz and $OUT/latency.tgz.
set -uo pipefail
source scripts/gpu/env.sh
(cd internal/modernbert && "$OLDPWD/.devcarry/modernbert.test" -test.run 'StepLadderXLA' -test.v 2>&1 |
  grep -v -i warn | tail -30) | tee "$OUT/rung_parity.txt"
R=$W/rungs; mkdir -p "$R"
for callers in 2 1; do
  "$BIN" bench-model --model "$TOK" --weights random --device cuda --dtype bfloat16 --callers $callers \
    --data "$TSV" --passages 20000 --seconds "${SECONDS_PER_RUNG:-2}" --per-rung \
    > "$R/rungs_bf16_c$callers.json" 2> "$R/rungs_bf16_c$callers.log"
  echo "callers=$callers rc=$?"; grep -h 'rung timed' "$R/rungs_bf16_c$callers.log" | cut -c1-220
done
tar -czf "$OUT/rungs.tgz" -C "$R" .
bash scripts/gpu/latency.sh
