#!/usr/bin/env bash
# Issue 14 on the GPU machine's CPU: our native CPU path against HF transformers on the same 2
# cores (taskset), the same random full-size checkpoint and MS MARCO passages, in float32 and
# (where the library has a bf16 product) bfloat16; and parity of our CPU vectors with HF fp32.
# Needs .devcarry/embedbench and .devcarry/blaslib.tar.xz: the machine has no BLAS, so Debian's
# libdnnl2 (with libgomp, libOpenCL) or libopenblas0-pthread (with libgfortran, libquadmath)
# travels packed; bench-model measures the library's sgemm on the same cores after each run.
# Everything lands in $W/cpu and leaves as one $OUT/cpu.tgz, written on exit as well, so that a
# call cut short keeps what it had (the device tool brings back only a few loose files).
set -euo pipefail
source scripts/gpu/env.sh
R=$W/cpu
mkdir -p "$R" /tmp/blas
trap 'tar -czf "${OUT:-$W}/cpu.tgz" -C "$W" cpu' EXIT
tar -xJf .devcarry/blaslib.tar.xz -C /tmp/blas
EMBEDBENCH_BLAS=$(ls /tmp/blas/ | grep -E -m1 '^lib(dnnl|openblas)\.so' | sed 's|^|/tmp/blas/|')
export EMBEDBENCH_BLAS LD_LIBRARY_PATH=/tmp/blas
lscpu > "$R/lscpu.txt"
CORES=${CORES:-0,1}

# float32 runs its products as the CPU makes fastest (three bf16 products where AMX runs them),
# float32-sgemm forces the exact sgemm: EMBEDBENCH_FP32_PRODUCTS.
run_as() { # VARIANT command...: the command with the variant's dtype and products
  local v=$1; shift
  case $v in
    float32-sgemm) EMBEDBENCH_FP32_PRODUCTS=sgemm "$@" --dtype float32 ;;
    *) "$@" --dtype "$v" ;;
  esac
}
# Speed on two cores, model only, real tokens.
bench() { # VARIANT
  run_as $1 taskset -c "$CORES" "$BIN" bench-model --model "$MB" --device cpu --data "$TSV" --passages 2000 \
    --seconds "${SECONDS_EACH:-40}" > "$R/ours_bench_$1.json" 2> "$R/ours_bench_$1.log"
  echo "$1"; grep -E '"tokens_per_second"|"cpu"|linear|sgemm' "$R/ours_bench_$1.json" || true
  grep -h -o 'native forward pass, [a-z0-9]* products' "$R/ours_bench_$1.log" | head -1
}
# Parity with HF fp32 on all cores: MS MARCO passages and two long texts (several sliding windows).
parity() { # VARIANT
  run_as $1 "$BIN" embed --model "$MB" --device cpu --max-length 8192 < "$W/texts.jsonl" > "$W/ours_cpu_$1.jsonl" 2> "$R/embed_$1.log"
  python3 scripts/gpu/modernbert_full.py compare --reference "$W/ref.json" --ours "$W/ours_cpu_$1.jsonl" \
    --label "embedbench cpu native $1" | tee "$R/parity_$1.json"
}

# The figures the issue's targets need come first, so that a call cut short still has them.
taskset -c "$CORES" python3 scripts/gpu/hf_cpu_bench.py --model "$MB" --tsv "$TSV" --threads 2 --seconds "${SECONDS_EACH:-40}" \
  2>/dev/null | tee "$R/hf_bench.json"
bench float32
python3 - "$TSV" "$W/texts.jsonl" <<'PY'
import json, sys
ps = [l.rstrip("\n").partition("\t")[2] for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
texts = ps[:96] + [" ".join(ps[100:110]), " ".join(ps[110:140])]
with open(sys.argv[2], "w") as f:
    for t in texts:
        f.write(json.dumps({"text": t}) + "\n")
PY
python3 scripts/gpu/modernbert_full.py reference --model "$MB" --texts "$W/texts.jsonl" --out "$W/ref.json" 2>&1 | grep -v -i warn
parity float32
bench bfloat16
parity bfloat16
bench float32-sgemm
parity float32-sgemm
