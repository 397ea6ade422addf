#!/usr/bin/env bash
# GPU machine: model-only throughput of graph variants, XLA flags and step shapes, the TF32
# question on the tiny fixtures, and (time allowing) full-size parity with HF, in one call.
# One JSON line per throughput variant in $OUT/perf.jsonl; parity lines in $OUT/parity.txt.
#   VARIANTS, VARIANTS2: "name;ENV=V ENV2=V2;bench-model flags" entries, one per line (VARIANTS="" runs none); the
#   first list runs before the parity phases, the second after (defaults below).
#   STOP: seconds into the call after which no further phase starts.
#   PARITY_DTYPES (default "float32 bfloat16"): the defaults' full-size parity runs;
#   HLO_VARIANT: the graph variant whose optimised HLO is dumped (default: none);
#   PARITY_VARIANTS: graph variants whose vectors are compared with HF fp32 as well, each
#   "VARIANT" (bf16) or "VARIANT@DTYPE".
set -uo pipefail
source scripts/gpu/env.sh
SECS=${SECS:-4}
STOP=${STOP:-360}
bf="--dtype bfloat16"
A=EMBEDBENCH_MODERNBERT_VARIANT
X=XLA_FLAGS
VARIANTS=${VARIANTS-"default;;$bf
ln-twopass;$A=ln-twopass;$bf
L128;;$bf --max-length 128 --packed-row 128
heroless;$X=--xla_gpu_experimental_enable_triton_heroless_priority_fusion=true;$bf
all-triton;$X=--xla_gpu_experimental_all_fusions_with_triton=true;$bf
block-level;$X=--xla_gpu_experimental_enable_fusion_block_level_rewriter=true;$bf
warp-spec;$X=--xla_gpu_experimental_enable_triton_warp_specialization=true;$bf
tma;$X=--xla_gpu_experimental_enable_triton_tma=true;$bf
generic-gemm;$X=--xla_gpu_unsupported_enable_generic_triton_emitter_for_gemms=true;$bf
triton-multi-output;$X=--xla_gpu_unsupported_enable_triton_multi_output_fusion=true;$bf
fp32;;--dtype float32"}
VARIANTS2=${VARIANTS2:-""}
JAX_VARIANTS=${JAX_VARIANTS:-base,ln-onepass,L128,cudnn}  # jax_profile.py's own names; JAX_PROFILE: the one profiled
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
# What the plugin's XLA knows (an unknown XLA flag is fatal) and which profilers exist.
{ python3 - "$EMBEDBENCH_XLA_PLUGIN" <<'PY'
import re, sys
data = open(sys.argv[1], "rb").read()
print("\n".join(sorted({m.decode() for m in re.findall(rb"xla_gpu_[a-z0-9_]{3,80}", data)})))
PY
  command -v nsys ncu; ls /usr/local/cuda*/bin 2>/dev/null | head; } > "$OUT/facts.txt" 2>&1
[ -z "${SKIP_TINY_PARITY:-}" ] && xla_parity "tiny fixtures, defaults" "" 'TestParityXLA'
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
  for dt in ${PARITY_DTYPES:-float32 bfloat16}; do
    timeout 60 "$BIN" embed --model "$MB" --device cuda --dtype $dt < "$W/parity_texts.jsonl" > "$W/ours_$dt.jsonl" 2> "$W/embed_$dt.log" || tail -5 "$W/embed_$dt.log"
    python3 scripts/gpu/modernbert_full.py compare --reference "$W/parity_ref.json" --ours "$W/ours_$dt.jsonl" \
      --against float32 --label "ours $dt (defaults)" | tee -a "$OUT/parity.txt"
  done
  # Graph variants in bf16, against the same reference.
  for entry in ${PARITY_VARIANTS:-}; do
    v=${entry%@*}; dt=bfloat16; [ "$entry" != "$v" ] && dt=${entry#*@}
    EMBEDBENCH_MODERNBERT_VARIANT=$v timeout 60 "$BIN" embed --model "$MB" --device cuda --dtype $dt \
      < "$W/parity_texts.jsonl" > "$W/ours_$entry.jsonl" 2> "$W/embed_$entry.log" || tail -5 "$W/embed_$entry.log"
    python3 scripts/gpu/modernbert_full.py compare --reference "$W/parity_ref.json" --ours "$W/ours_$entry.jsonl" \
      --against float32 --label "ours $dt ($v)" | tee -a "$OUT/parity.txt"
  done
fi
if [ "$SECONDS" -lt "$STOP" ] && [ -z "${SKIP_TF32:-}" ]; then
  xla_parity "fp32, TF32 off in cuBLAS" "NVIDIA_TF32_OVERRIDE=0" 'TestParityXLA/.*/float32'
  xla_parity "fp32, TF32 off, no Triton GEMM" "NVIDIA_TF32_OVERRIDE=0 XLA_FLAGS=--xla_gpu_enable_triton_gemm=false" 'TestParityXLA/.*/float32'
fi

if [ "$SECONDS" -lt "$STOP" ] && [ -z "${SKIP_HLO:-}" ]; then
  # XLA's optimised HLO of the default bf16 step: which fusions, what each materialises.
  EMBEDBENCH_MODERNBERT_VARIANT=${HLO_VARIANT:-} XLA_FLAGS="--xla_dump_to=$W/dump --xla_dump_hlo_as_text" timeout 40 "$BIN" bench-model --model "$MB" --device cuda \
    --data "$TSV" --seconds 1 --dtype bfloat16 > /dev/null 2> "$W/dump.log"
  (cd "$W/dump" && tar -czf "$OUT/hlo.tgz" $(ls | grep -E 'after_optimizations(\.txt|-buffer-assignment)' | head -8))
  ls -la "$OUT/hlo.tgz"
fi

if [ "$SECONDS" -lt "$STOP" ] && [ -z "${SKIP_JAX:-}" ]; then
  # The same step in JAX, profiled kernel by kernel (see jax_profile.py).
  XLA_PYTHON_CLIENT_PREALLOCATE=false timeout 150 python3 scripts/gpu/jax_profile.py --tokenizer "$TOK/tokenizer.json" \
    --tsv "$TSV" --out "$W/jax" --variants "$JAX_VARIANTS" --profile "${JAX_PROFILE:-base}" 2>&1 | grep -v -i warn | tee "$OUT/jax.jsonl"
  cp "$W/jax/kernels.json" "$W/jax/cudnn_custom_call.txt" "$OUT/" 2>/dev/null
fi

while IFS=';' read -r name envs flags; do
  [ -n "$name" ] && bench "$name" "$envs" "$flags"
done <<< "$VARIANTS2"

echo "done in ${SECONDS}s"
