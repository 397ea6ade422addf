#!/usr/bin/env bash
# GPU machine, one call: cmdbuf.sh (small rungs with XLA command buffers off, default and
# widened), then latency.sh; latency.sh runs with the widened command buffers when they cut
# the one-caller 4x256 step by more than 10%, and says which it used.
set -uo pipefail
bash scripts/gpu/cmdbuf.sh 2>&1 | grep -v -i warn
source scripts/gpu/env.sh
step() { python3 -c "
import json,sys
try: d=json.load(open('$W/cmdbuf/$1_c1.json'))
except Exception: print(0); sys.exit()
print(next((g['mean_step_ms'] for g in d['rungs'] if g.get('rows')==4 and g.get('row_length')==256 and not g.get('skipped')),0))"; }
base=$(step default); best=default
for v in all nocudnn; do
  s=$(step $v)
  if python3 -c "import sys; sys.exit(0 if 0 < $s < 0.9*$base else 1)"; then best=$v; base=$s; fi
done
case $best in
  all) export XLA_FLAGS="--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN --xla_gpu_graph_min_graph_size=1";;
  nocudnn) export XLA_FLAGS="--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL --xla_gpu_graph_min_graph_size=1";;
esac
echo "latency.sh with command buffers: $best (XLA_FLAGS=${XLA_FLAGS:-})" | tee "$W/xla_flags.txt"
bash scripts/gpu/latency.sh 2>&1 | grep -v -i warn | tail -14
