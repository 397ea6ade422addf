# Sourced by the GPU-machine scripts: paths, the PJRT plugin, the benchmark checkpoint.
# Expects the repo root as working directory and .devcarry carried (see README.md here).
export GOMLX_NO_AUTO_INSTALL=1 GOPJRT_CUDA_CHECKS=0 HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
export EMBEDBENCH_SHARED=${EMBEDBENCH_SHARED:-$PWD/.devcarry/shared}
W=${W:-/tmp/bench}
# Full-size ModernBERT-base with random weights (HF init, seed 0); the folder name is what the
# servers report as their weights, so every result says "random".
MB=${MB:-/tmp/modernbert-base-random-hf-init-seed0}
BIN=${BIN:-$PWD/.devcarry/embedbench}
TOK=$EMBEDBENCH_SHARED/models/modernbert-base
TSV=$EMBEDBENCH_SHARED/data/msmarco/collection.sample.tsv
# DRYRUN=1 tests the scripts on a machine without a GPU: a tiny random model on CPU.
DRYRUN=${DRYRUN:-}
if [ -z "$DRYRUN" ]; then
  EMBEDBENCH_XLA_PLUGIN=$(python3 -c 'import jax_plugins.xla_cuda13 as p; print(p.__path__[0])')/xla_cuda_plugin.so
  export EMBEDBENCH_XLA_PLUGIN
  SERVE_ARGS=(--model "$MB" --device cuda --served-model-name modernbert-base-random)
else
  SERVE_ARGS=(--model "$TOK" --device cpu --model-size tiny --weights random)
fi
mkdir -p "$W"

# The same random checkpoint for every row: our engines and the HF reference load this file.
if [ -z "$DRYRUN" ] && [ ! -f "$MB/model.safetensors" ]; then
  python3 scripts/gpu/modernbert_full.py make --config "$TOK/config.json" --tokenizer-dir "$TOK" \
    --out "$MB" --seed 0 2>&1 | grep -v -i warn
fi

# wait_healthy URL SECONDS: poll /health until it answers 200.
wait_healthy() {
  local url=$1 limit=$2 t=0
  until [ "$(curl -s -o /dev/null -w '%{http_code}' "$url/health")" = 200 ]; do
    sleep 1; t=$((t + 1))
    if [ $t -ge "$limit" ]; then echo "$url not healthy after ${limit}s"; return 1; fi
  done
  echo "$url healthy after ${t}s"
}

# parity_reference: the parity texts (56 MS MARCO passages, and 8 of 500 to 1,000 tokens so that
# the sliding window is exercised) in $W/parity_texts.jsonl, and HF's vectors for them (fp32 and
# bf16) in $W/parity_ref.json.
parity_reference() {
python3 - "$TSV" > "$W/parity_texts.jsonl" <<'PY'
import json, sys
rows = [l.rstrip("\n").partition("\t")[2] for l in open(sys.argv[1], encoding="utf-8", newline="\n") if l.strip()]
for t in rows[:56]:
    print(json.dumps({"text": t}))
for i in range(8):  # long texts, 500 to 1000 tokens, so the sliding window is exercised
    print(json.dumps({"text": " ".join(rows[100 + 12 * i: 100 + 12 * i + 6 + i])}))
PY
python3 scripts/gpu/modernbert_full.py reference --model "$MB" --texts "$W/parity_texts.jsonl" --out "$W/parity_ref.json" 2>&1 | grep -v -i warn
}

# numa_facts PID LABEL: where a server's memory lies by NUMA node (pages per node, from
# /proc/PID/numa_maps) and the GPU's CPU and NUMA affinity, appended to $W/numa.txt. The
# second server of a lease has run its host transfers up to twice as slowly (runs 37, 41, 42)
# with the card at the same clock; memory on the node far from the GPU would do that.
numa_facts() {
  local pid=$1 label=$2
  {
    echo "## $label (pid $pid)"
    [ -r "/proc/$pid/numa_maps" ] && awk '{for (i = 2; i <= NF; i++) if ($i ~ /^N[0-9]+=/) {split($i, a, "="); n[a[1]] += a[2]}}
      END {for (k in n) printf "%s=%d pages ", k, n[k]; print ""}' "/proc/$pid/numa_maps"
    grep -h Cpus_allowed_list "/proc/$pid/status" 2>/dev/null
    command -v nvidia-smi > /dev/null && nvidia-smi topo -m 2>/dev/null | head -4
  } >> "$W/numa.txt" 2>&1
}
