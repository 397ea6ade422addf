#!/usr/bin/env bash
# Issue 14 on the GPU machine's CPU: our native CPU path (OpenBLAS) against HF transformers on
# the same 2 cores (taskset), the same random full-size checkpoint and MS MARCO passages; the
# BLAS's own sgemm rate on those cores; and fp32 parity of our CPU vectors with HF fp32.
# Needs .devcarry/embedbench, .devcarry/blas.test and .devcarry/openblas.tar.xz (Debian's
# libopenblas0-pthread with libgfortran and libquadmath: the machine has no OpenBLAS).
set -euo pipefail
source scripts/gpu/env.sh
R=${OUT:-$W}/cpu
mkdir -p "$R" /tmp/blas
tar -xJf .devcarry/openblas.tar.xz -C /tmp/blas
export EMBEDBENCH_BLAS=/tmp/blas/libopenblas.so.0 LD_LIBRARY_PATH=/tmp/blas
lscpu > "$R/lscpu.txt"
CORES=${CORES:-0,1}

# fp32 parity: MS MARCO passages and two long texts (several sliding windows), all cores.
python3 - "$TSV" "$W/texts.jsonl" <<'PY'
import json, sys
ps = [l.rstrip("\n").partition("\t")[2] for l in open(sys.argv[1], encoding="utf-8") if l.strip()]
texts = ps[:96] + [" ".join(ps[100:110]), " ".join(ps[110:140])]
with open(sys.argv[2], "w") as f:
    for t in texts:
        f.write(json.dumps({"text": t}) + "\n")
PY
python3 scripts/gpu/modernbert_full.py reference --model "$MB" --texts "$W/texts.jsonl" --out "$W/ref.json" 2>&1 | grep -v -i warn
"$BIN" embed --model "$MB" --device cpu --max-length 8192 < "$W/texts.jsonl" > "$W/ours_cpu.jsonl" 2> "$R/embed.log"
python3 scripts/gpu/modernbert_full.py compare --reference "$W/ref.json" --ours "$W/ours_cpu.jsonl" \
  --label "embedbench cpu native fp32" | tee "$R/parity.json"

# Speed on two cores, model only, real tokens: the BLAS alone, ours, HF.
taskset -c "$CORES" .devcarry/blas.test -test.run XXX -test.bench Sgemm -test.benchtime 30x | tee "$R/sgemm.txt"
taskset -c "$CORES" "$BIN" bench-model --model "$MB" --device cpu --data "$TSV" --passages 2000 --seconds "${SECONDS_EACH:-40}" \
  > "$R/ours_bench.json" 2> "$R/ours_bench.log"
grep -E '"tokens_per_second"|"cpu"|linear' "$R/ours_bench.json" || true
taskset -c "$CORES" python3 scripts/gpu/hf_cpu_bench.py --model "$MB" --tsv "$TSV" --threads 2 --seconds "${SECONDS_EACH:-40}" \
  2>/dev/null | tee "$R/hf_bench.json"
