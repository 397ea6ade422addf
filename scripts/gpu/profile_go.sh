#!/usr/bin/env bash
# GPU machine: our own graph's kernels, kernel by kernel (issue 16). Nsight Compute segfaults on
# the Go binary (runs 39 and 40), so each variant's packed full step (64 rows of 256) is dumped
# as the HLO the binary hands XLA, then compiled, timed and profiled by replay_hlo.py through
# JAX's XLA, the same plugin build. bench-model's own step time is printed beside the replay's,
# so that the replay can be checked against the binary (Nsight Systems is not on the machine).
# VARIANTS: EMBEDBENCH_MODERNBERT_VARIANT values ("default" for none); ROWS: the packed steps to
# replay, in rows of 256 (default 64, the full step; 32 is the 8,192-slot rung that 256
# one-text clients mostly run). Results in $OUT (replay_<variant>_<rows>.txt, the variant's commas
# and equals signs as dashes; machine.txt; the
# replayed modules, kernel tables and logs in profile.tgz).
set -uo pipefail
source scripts/gpu/env.sh
D=$W/profile; mkdir -p "$D"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/machine.txt"
ROWS=${ROWS:-64}
slots=$(for r in $ROWS 64; do echo $((r * 256)); done | sort -un | paste -sd,)
common=(--model "$MB" --device cuda --data "$TSV" --dtype bfloat16 --max-length 256 --step-slots "$slots")
keep=()
for v in ${VARIANTS:-default}; do
  [ "$v" = default ] && vv= || vv=$v
  # File names take the variant with its commas and equals signs as dashes: the device tool
  # brings back no file whose name has them.
  f=${vv//[,=]/-}; f=${f:-default}
  EMBEDBENCH_MODERNBERT_VARIANT="$vv" XLA_FLAGS="--xla_dump_to=$D/hlo_$f --xla_dump_hlo_as_text --xla_dump_hlo_as_proto" \
    timeout 90 "$BIN" bench-model "${common[@]}" --seconds 3 > "$D/bench_$f.json" 2> "$D/bench_$f.log"
  python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print('bench-model', sys.argv[2], round(d['tokens_per_second']), 'tokens/s', round(d['mean_step_ms'],3), 'ms a step')" \
    "$D/bench_$f.json" "$v" 2>&1 | tee "$OUT/bench_$f.txt"
  for rows in $ROWS; do
    hlo=$(grep -l "s32\[3,$rows,256\]" "$D/hlo_$f"/*before_optimizations.txt | head -1)
    echo "replaying $hlo" | tee -a "$OUT/replay_${f}_$rows.txt"
    keep+=("${hlo#$D/}")
    (cd scripts/gpu && timeout 180 python3 replay_hlo.py --hlo "$hlo" --tokenizer "$TOK/tokenizer.json" --tsv "$TSV" \
      --out "$D/replay_${f}_$rows") 2>&1 | grep -v -E "^(WARNING|I0000|E0000)" | tail -40 | tee -a "$OUT/replay_${f}_$rows.txt"
  done
done
(cd "$D" && tar -czf "$OUT/profile.tgz" --exclude='trace' \
  "${keep[@]}" $(find . -name 'kernels.json' -o -name '*.log' | head -40) 2>/dev/null)
