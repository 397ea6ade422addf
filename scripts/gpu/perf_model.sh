#!/usr/bin/env bash
# GPU machine: model-only throughput of graph variants, XLA flags and step shapes, the TF32
# question on the tiny fixtures, and (time allowing) full-size parity with HF, in one call.
# One JSON line per throughput variant in $OUT/perf.jsonl; parity lines in $OUT/parity.txt.
#   VARIANTS, VARIANTS2: "name;ENV=V ENV2=V2;bench-model flags" entries, one per line; the
#   first list runs before the parity phases, the second after (defaults below).
#   STOP: seconds into the call after which no further phase starts.
set -uo pipefail
source scripts/gpu/env.sh
SECS=${SECS:-4}
STOP=${STOP:-360}
bf="--dtype bfloat16"
A=EMBEDBENCH_MODERNBERT_VARIANT
VARIANTS=${VARIANTS:-"default;;$bf
scores-f32;$A=scores-f32;$bf
fp32;;--dtype float32
fp32-tf32off;NVIDIA_TF32_OVERRIDE=0;--dtype float32"}
VARIANTS2=${VARIANTS2:-"skip-attention;$A=skip-attention;$bf
skip-mlp;$A=skip-mlp;$bf
b32768;;$bf --batch-tokens 32768
r128-b32768;;$bf --packed-row 128 --batch-tokens 32768
no-triton-gemm;XLA_FLAGS=--xla_gpu_enable_triton_gemm=false;$bf
no-command-buffer;XLA_FLAGS=--xla_gpu_enable_command_buffer=;$bf"}
left() { [ "$SECONDS" -lt "$STOP" ]; }

bench() { # name envs flags
  left || return 0
  env $2 timeout 60 "$BIN" bench-model --model "$MB" --device cuda --data "$TSV" --seconds "$SECS" $3 > "$W/$1.json" 2> "$W/$1.log" ||
    { echo "{\"variant\":\"$1\",\"error\":$(tail -3 "$W/$1.log" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read()))')}" | tee -a "$OUT/perf.jsonl"; return; }
  python3 - "$1" "$2" "$3" "$W/$1.json" <<'PY' | tee -a "$OUT/perf.jsonl"
import json, sys
name, envs, flags, path = sys.argv[1:]
d = json.load(open(path))
print(json.dumps({"variant": name, "env": envs, "flags": flags, "tok_s": round(d["tokens_per_second"]),
                  "waste": round(d["padding_waste"], 3), "step_ms": round(d["mean_step_ms"], 2),
                  "steps": d["steps"], "compile_s": round(d["compile_seconds"], 1),
                  "mem_gb": round(d.get("gpu_memory_used_bytes", 0) / 1e9, 1)}))
PY
}

xla_parity() { # label envs test-regexp
  left || return 0
  echo "## $1 ($2)" | tee -a "$OUT/parity.txt"
  (cd internal/modernbert && env $2 "$OLDPWD/.devcarry/modernbert.test" -test.run "$3" -test.v 2>&1) |
    grep -E "^=== RUN|worst|FAIL|^ok|^PASS" | grep -v "^=== RUN.*XLA$" | tee -a "$OUT/parity.txt"
}

nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | tee "$OUT/machine.txt"
xla_parity "tiny fixtures, defaults" "" 'TestParityXLA'
while IFS=';' read -r name envs flags; do
  [ -n "$name" ] && bench "$name" "$envs" "$flags"
done <<< "$VARIANTS"

if [ "$SECONDS" -lt "$STOP" ] && [ -z "${SKIP_FULL_PARITY:-}" ]; then
  echo "## full size vs HF fp32 (56 MS MARCO passages + 8 texts of 500-1000 tokens)" | tee -a "$OUT/parity.txt"
  python3 - "$TSV" > "$W/parity_texts.jsonl" <<'PY'
import json, sys
rows = [l.rstrip("\n").partition("\t")[2] for l in open(sys.argv[1], encoding="utf-8", newline="\n") if l.strip()]
for t in rows[:56]:
    print(json.dumps({"text": t}))
for i in range(8):
    print(json.dumps({"text": " ".join(rows[100 + 12 * i: 100 + 12 * i + 6 + i])}))
PY
  timeout 90 python3 scripts/gpu/modernbert_full.py reference --model "$MB" --texts "$W/parity_texts.jsonl" --out "$W/parity_ref.json" 2>&1 | grep -v -i warn
  for dt in float32 bfloat16; do
    timeout 60 "$BIN" embed --model "$MB" --device cuda --dtype $dt < "$W/parity_texts.jsonl" > "$W/ours_$dt.jsonl" 2> "$W/embed_$dt.log" || tail -5 "$W/embed_$dt.log"
    python3 scripts/gpu/modernbert_full.py compare --reference "$W/parity_ref.json" --ours "$W/ours_$dt.jsonl" \
      --against float32 --label "ours $dt (defaults)" | tee -a "$OUT/parity.txt"
  done
fi
if [ "$SECONDS" -lt "$STOP" ]; then
  xla_parity "fp32, TF32 off in cuBLAS" "NVIDIA_TF32_OVERRIDE=0" 'TestParityXLA/.*/float32'
  xla_parity "fp32, TF32 off, no Triton GEMM" "NVIDIA_TF32_OVERRIDE=0 XLA_FLAGS=--xla_gpu_enable_triton_gemm=false" 'TestParityXLA/.*/float32'
fi

while IFS=';' read -r name envs flags; do
  [ -n "$name" ] && bench "$name" "$envs" "$flags"
done <<< "$VARIANTS2"

if [ "$SECONDS" -lt "$STOP" ] && [ -z "${SKIP_HLO:-}" ]; then
  # XLA's optimised HLO of the default bf16 step: which fusions, what each materialises.
  XLA_FLAGS="--xla_dump_to=$W/dump --xla_dump_hlo_as_text" timeout 40 "$BIN" bench-model --model "$MB" --device cuda \
    --data "$TSV" --seconds 1 --dtype bfloat16 > /dev/null 2> "$W/dump.log"
  (cd "$W/dump" && tar -czf "$OUT/hlo.tgz" $(ls | grep -E 'after_optimizations(\.txt|-buffer-assignment)' | head -8))
  ls -la "$OUT/hlo.tgz"
fi

echo "done in ${SECONDS}s"
