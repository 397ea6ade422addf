#!/usr/bin/env bash
# Issue 16's levers, tried first on the JAX mirror of our step (jax_profile.py, same XLA):
# the default graph profiled kernel by kernel, then diagnostic variants that each remove one
# cost (GeGLU's erf, the masks) or use cuDNN's own sliding window; and the optimised HLO of the
# mirror and of our Go graph's full step, so that the profile's fusion names can be read.
# Writes $OUT/jax/ (jax.jsonl, kernels.json) and $OUT/hlo.tgz.
set -uo pipefail
source scripts/gpu/env.sh
J=$OUT/jax; mkdir -p "$J"
timeout "${JAX_LIMIT:-150}" python3 scripts/gpu/jax_profile.py --tokenizer "$TOK/tokenizer.json" --tsv "$TSV" --out "$J" \
  --seconds 2 --profile cudnn-ln-onepass \
  --variants cudnn-ln-onepass,cudnn-ln-onepass-gelu-tanh,cudnn-ln-onepass-no-gelu,cudnn-nomask-ln-onepass,cudnn-window-ln-onepass \
  2>&1 | grep -v -i warn | tee "$J/jax.jsonl"
D=$W/hlo; mkdir -p "$D/jax" "$D/go"
XLA_FLAGS="--xla_dump_to=$D/jax --xla_dump_hlo_as_text" timeout 60 python3 scripts/gpu/jax_profile.py \
  --tokenizer "$TOK/tokenizer.json" --tsv "$TSV" --out "$W/jaxdump" --seconds 0.2 --profile none \
  --variants cudnn-ln-onepass > /dev/null 2>&1
XLA_FLAGS="--xla_dump_to=$D/go --xla_dump_hlo_as_text" timeout 90 "$BIN" bench-model --model "$TOK" --weights random \
  --device cuda --dtype bfloat16 --step-slots 16384 --data "$TSV" --passages 2000 --seconds 0.5 > /dev/null 2> "$D/go.log"
find "$D" -name '*after_optimizations.txt' -size +100k | tar -czf "$OUT/hlo.tgz" -T - 2>/dev/null
ls -la "$OUT/hlo.tgz"
