#!/usr/bin/env bash
# Issue 16: attention through our Triton kernel (bf16's default on XLA since session 17,
# internal/modernbert/triton.go) against cuDNN's fused attention (variant cudnn-attention), and
# the Triton variants around it (triton-rope-q; the product kernels of triton_products.go,
# triton-products), in one lease, on one H200. Random weights of ModernBERT-base's shapes, MS
# MARCO passages.
# PHASES picks and orders (default: all, so):
#   throughput  bench-model, two callers on full 16,384-slot steps, for each "NAME;ENV=V;flags"
#               of THROUGHPUT (default: the kernel, cuDNN, the variants, ABBA for the first two);
#   kernel      TestTritonAttentionXLA (TEST_RUN, default its base shapes) for TEST_VARIANTS
#               (";"-separated, default the kernel, triton-rope-q and triton-products, plain
#               and persistent): it compiles in XLA and gives cuDNN's vectors;
#   fullparity  full-size vectors of the bf16 defaults against HF fp32 (variants.sh parity);
#   ladder      TestStepLadderXLA: a text's vector does not depend on the rung that carries it;
#   parity      TestParityXLA: the tiny fixtures against HF;
#   rungs       a step's own time rung by rung, for each entry of RUNGS (variants.sh rungs);
#   profile     profile_go.sh for PROFILE_VARIANTS: the step kernel by kernel;
#   ttdump      Triton's passes over the kernels of each of TTDUMP_VARIANTS (triton_dump.py): wgmma or
#               mma.sync, cp.async or TMA, loops flattened, pipelined, warp-specialised;
#   tma         triton_tma_geglu.py (not in the default phases): PyTorch's Triton compiles Wi's
#               GEMM with GeGLU, TMA loads and warp specialisation, checks and times it against
#               cuBLAS plus the pass, and writes the fastest one's PTX for __gpu$xla.gpu.ptx;
#   e2e         our server for each "NAME;serve flags" of E2E_SERVERS (default: the defaults):
#               one text from 1 and 256 clients, 32 passages at saturation; then bench-model on
#               full steps for each "NAME;ENV=V;flags" of E2E_THROUGHPUT (default: the
#               defaults) in the same lease (issue 16's end to end against model only).
# Needs .devcarry/{embedbench,modernbert.test,shared}. Results in $OUT.
set -uo pipefail
source scripts/gpu/env.sh
A=EMBEDBENCH_MODERNBERT_VARIANT
TEST=$PWD/.devcarry/modernbert.test
: "${THROUGHPUT:=$'triton;;\ncudnn;'$A$'=cudnn-attention;\nropeq;'$A$'=triton-rope-q;\nproducts;'$A$'=triton-products;\ngegluP;'$A$'=triton-geglu,triton-gemm-persistent=132;\ncudnn2;'$A$'=cudnn-attention;\ntriton2;;'}"
: "${RUNGS:=$'triton;;\ncudnn;'$A$'=cudnn-attention;'}"
nvidia-smi --query-gpu=name,driver_version,clocks.max.sm --format=csv,noheader | tee "$OUT/machine.txt"

throughput() {
  PHASES=throughput THROUGHPUT="$THROUGHPUT" bash scripts/gpu/variants.sh | grep -v "^#"
}

kernel() {
  (cd internal/modernbert && EMBEDBENCH_TRITON_TEST_VARIANTS="${TEST_VARIANTS:-;triton-rope-q;triton-products;triton-geglu,triton-gemm-persistent=132}" timeout 280 "$TEST" \
    -test.run "${TEST_RUN:-TestTritonAttentionXLA/base}" -test.v -test.timeout 270s) > "$OUT/kernel_test.txt" 2>&1
  echo "kernel test rc=$?"
  grep -E "^\s*(--- |ok|FAIL|PASS)|parity_xla_test|Triton attention unavailable" "$OUT/kernel_test.txt" | cut -c1-600 | head -30
}

fullparity() {
  PHASES=parity PARITY_VARIANTS="${PARITY_VARIANTS:-}" bash scripts/gpu/variants.sh | grep -v "^#"
}

gotest() { # gotest NAME PATTERN SECONDS
  (cd internal/modernbert && timeout "$3" "$TEST" -test.run "$2" -test.v -test.timeout "$(($3 - 10))s") > "$OUT/$1.txt" 2>&1
  echo "$2: rc=$?"; grep -E "^\s*(--- |ok|FAIL|PASS)|max abs diff|differ" "$OUT/$1.txt" | head -20
}
ladder() { gotest ladder TestStepLadderXLA 150; }
parity() { gotest parity_tiny TestParityXLA 200; }

rungs() {
  PHASES=rungs RUNGS="$RUNGS" bash scripts/gpu/variants.sh | grep -v "^#"
}

profile() {
  VARIANTS="${PROFILE_VARIANTS:-default}" timeout 300 bash scripts/gpu/profile_go.sh 2>&1 | grep -vE "^(WARNING|I0000|E0000)" | tail -60
}

ttdump() { # Triton's own passes over the kernels of each TTDUMP_VARIANTS entry (";"-separated) on one full step
  local i=0 v d vs
  IFS=';' read -ra vs <<< "${TTDUMP_VARIANTS-triton-geglu;triton-geglu,triton-gemm-persistent=132}"
  for v in "${vs[@]}"; do
    i=$((i + 1)); d=$W/ttdump_$i; rm -rf "$d"; mkdir -p "$d"
    EMBEDBENCH_MODERNBERT_VARIANT="$v" \
      XLA_FLAGS="--xla_dump_to=$d --xla_dump_emitter_re=triton" \
      timeout 150 "$BIN" bench-model --model "$MB" --device cuda --data "$TSV" --dtype bfloat16 --max-length 256 \
      --step-slots 16384 --seconds 1 > "$d/bench.json" 2> "$d/bench.log"
    echo "ttdump $i ($v): bench-model rc=$?, $(du -sh "$d" | cut -f1)"
    python3 scripts/gpu/triton_dump.py "$d" "$OUT/ttdump_$i" 2>&1 | cut -c1-1200 | tee "$OUT/ttdump_$i.txt" || echo "triton_dump.py failed"
  done
}

tma() { # the PTX route's go/no-go: Triton's TMA GeGLU GEMM against cuBLAS plus the pass (triton_tma_geglu.py)
  timeout 240 python3 scripts/gpu/triton_tma_geglu.py --out "$OUT/tma" 2>&1 | grep -v "^WARNING" | cut -c1-700 | tee "$OUT/tma.txt" | tail -14
}

e2e() { # each "NAME;serve flags" line of E2E_SERVERS (default: the defaults) in turn
  "$BIN" data --source "$EMBEDBENCH_SHARED/data/msmarco" --count 5000 --output "$W/test_sentences.json"
  local name args spid
  # The list comes in on descriptor 3, so that nothing in the loop can read it from stdin;
  # $args is unquoted on purpose: it is a list of flags.
  while IFS=';' read -r -u 3 name args; do
    [ -n "$name" ] || continue
    echo "## $name ($args)" | tee -a "$OUT/e2e.txt"
    "$BIN" --log-format json serve --port 8001 "${SERVE_ARGS[@]}" --engine continuous --dtype bfloat16 \
      --max-concurrent-requests 4096 $args > "$W/server_e2e_$name.log" 2>&1 &
    spid=$!
    wait_healthy http://127.0.0.1:8001 300 | tee -a "$OUT/e2e.txt"
    grep -h '"replica ready"' "$W/server_e2e_$name.log" | cut -c1-400
    for load in "b1_c1 1 1" "b1_c256 1 256" "b32_c32 32 32"; do
      set -- $load
      mkdir -p "$W/e2e/$name/$1"
      timeout 40 "$BIN" stress --service-url http://127.0.0.1:8001 --batch-size "$2" --max-concurrent-requests "$3" \
        --duration 8s --warmup-seconds 2 --timeout 20s --data-file "$W/test_sentences.json" --output-dir "$W/e2e/$name/$1" > "$W/e2e/$name/$1/stdout.txt" 2>&1
      python3 scripts/gpu/summarize.py "$W/e2e/$name/$1" "e2e_${name}_$1" | tee -a "$OUT/e2e.txt"
    done
    kill "$spid"; wait "$spid" 2>/dev/null
  done 3<<< "${E2E_SERVERS:-default;}"
  PHASES=throughput THROUGHPUT="${E2E_THROUGHPUT:-model_only;;}" bash scripts/gpu/variants.sh | grep -v "^#" | tee -a "$OUT/e2e.txt"
  (cd "$W" && tar -czf "$OUT/e2e.tgz" e2e server_e2e_*.log 2>/dev/null)
}

for phase in ${PHASES:-throughput kernel fullparity ladder parity rungs profile ttdump e2e}; do
  echo "# $phase at ${SECONDS}s"
  $phase
done
echo "done in ${SECONDS}s"
