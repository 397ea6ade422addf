#!/usr/bin/env bash
# Issue 16 and the step's fixed cost: graph variants against the bf16 default in one lease, on
# full steps, rung by rung and in parity with HF. Random weights of ModernBERT-base's shapes,
# MS MARCO passages. (Nsight Compute on the Go binary segfaulted in runs 39 and 40, with Go's
# async preemption off as well; profile_go.sh profiles the binary's own step through JAX.)
# PHASES picks and orders them (default: all, in this order):
#   throughput  two callers on full 16,384-slot steps, for each "NAME;ENV=V ...;flags" of
#               THROUGHPUT (flags after the defaults, so --dtype float32 overrides bf16);
#   rungs       bench-model --per-rung, one caller (a step's own time), for each
#               "NAME;ENV=V ...;flags" of RUNGS;
#   parity      full-size vectors against HF fp32 for the defaults and each of PARITY_VARIANTS
#               ("VARIANT" in bf16 or "VARIANT@DTYPE"), through perf_model.sh;
#   hlo         the optimised HLO of each variant in HLO_VARIANTS.
# Results in $OUT (rungs.txt, throughput.txt, parity.txt; the rest in variants.tgz).
set -uo pipefail
source scripts/gpu/env.sh
D=$W/variants; mkdir -p "$D"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/machine.txt"
common=(--model "$MB" --device cuda --data "$TSV" --dtype bfloat16 --max-length 256)
A=EMBEDBENCH_MODERNBERT_VARIANT

throughput() {
  while IFS=';' read -r name envs flags; do
    [ -n "$name" ] || continue
    env $envs timeout 90 "$BIN" bench-model "${common[@]}" --step-slots 16384 --seconds 4 $flags > "$D/full_$name.json" 2> "$D/full_$name.log"
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); m=d['model']; print(sys.argv[2], round(d['tokens_per_second']), 'tokens/s', round(d['mean_step_ms'],2), 'ms a step;', 'attention', m.get('attention'), '· products', m.get('products'))" \
      "$D/full_$name.json" "$name ($envs $flags)" 2>&1 | tee -a "$OUT/throughput.txt"
  done <<< "${THROUGHPUT-}"
}

rungs() {
  while IFS=';' read -r name envs flags; do
    [ -n "$name" ] || continue
    echo "## $name ($envs $flags)" >> "$OUT/rungs.txt"
    env $envs timeout 120 "$BIN" bench-model "${common[@]}" --callers 1 --per-rung --seconds 2 $flags > "$D/rungs_$name.json" 2> "$D/rungs_$name.log"
    echo "rungs $name rc=$? ($envs)"
    grep -h 'rung timed' "$D/rungs_$name.log" | sed -E 's/.*row_length=([0-9]+) rows=([0-9]+) slots=([0-9]+) step_ms=([0-9.]{1,6}).*tokens_per_s=([0-9.e+]+).*/  \1x\2 (\3 slots): \4 ms, \5 tokens\/s/' | tee -a "$OUT/rungs.txt"
  done <<< "${RUNGS-}"
}

parity() {
  mkdir -p "$D/parity" "$W/parity"
  W=$W/parity OUT=$D/parity VARIANTS="" SKIP_TINY_PARITY=1 SKIP_TF32=1 SKIP_HLO=1 SKIP_JAX=1 PARITY_DTYPES=${PARITY_DTYPES:-bfloat16} \
    PARITY_VARIANTS="${PARITY_VARIANTS:-}" STOP=60 bash scripts/gpu/perf_model.sh > "$D/parity.out" 2>&1
  cp "$D/parity/parity.txt" "$OUT/parity.txt" 2>/dev/null; grep -E "^##|ours" "$OUT/parity.txt"
}

hlo() {
  for v in ${HLO_VARIANTS-default}; do
    [ "$v" = default ] && vv= || vv=$v
    env $A="$vv" XLA_FLAGS="--xla_dump_to=$D/hlo_$v --xla_dump_hlo_as_text" timeout 60 "$BIN" bench-model "${common[@]}" \
      --step-slots 16384 --seconds 1 > /dev/null 2> "$D/hlo_$v.log"
  done
}

for phase in ${PHASES:-throughput rungs parity hlo}; do
  echo "# $phase at ${SECONDS}s"
  $phase
done
(cd "$D" && tar -czf "$OUT/variants.tgz" rungs_*.json full_*.json parity.out \
  $(find . -name '*after_optimizations.txt' | head -8) 2>/dev/null)
echo "done in ${SECONDS}s"
