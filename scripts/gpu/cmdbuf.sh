#!/usr/bin/env bash
# GPU machine: does XLA's command buffers (CUDA graphs) cut a small step's fixed cost? bench-model
# --per-rung (bf16 packed, ladder 1,024/4,096/16,384, one caller and two) under the plugin's
# default XLA flags, with command buffers off, and with every command type in them from one
# kernel up. One JSON and log per case in $W/cmdbuf, packed into $OUT/cmdbuf.tgz.
set -uo pipefail
source scripts/gpu/env.sh
C=$W/cmdbuf; mkdir -p "$C"
ALL="--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN --xla_gpu_graph_min_graph_size=1"
NOCUDNN="--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL --xla_gpu_graph_min_graph_size=1"
for v in default off all nocudnn; do
  case $v in default) flags="";; off) flags="--xla_gpu_enable_command_buffer=";; all) flags=$ALL;; nocudnn) flags=$NOCUDNN;; esac
  # nocudnn only when this XLA refused the full list
  if [ $v = nocudnn ] && grep -q 'rung timed' "$C/all_c1.log"; then continue; fi
  for callers in 1 2; do
    XLA_FLAGS="$flags" "$BIN" bench-model --model "$TOK" --weights random --device cuda --dtype bfloat16 --callers $callers \
      --step-slots 1024,4096,16384 --max-length 512 --data "$TSV" --passages 20000 --seconds 1 --per-rung \
      > "$C/${v}_c$callers.json" 2> "$C/${v}_c$callers.log"
    echo "$v callers=$callers rc=$?"
    grep -h 'rung timed' "$C/${v}_c$callers.log" | sed -E 's/.*row_length=([0-9]+) rows=([0-9]+) slots=[0-9]+ step_ms=([0-9.]{1,5}).*tokens_per_s=([0-9.e+]+).*/  \1x\2 step_ms=\3 tok_s=\4/'
    grep -h -i 'error\|fatal\|unknown' "$C/${v}_c$callers.log" | head -3 | cut -c1-300
  done
done
tar -czf "$OUT/cmdbuf.tgz" -C "$C" .
