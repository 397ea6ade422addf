#!/usr/bin/env bash
# GPU-machine call: HF reference data for the parity tests (tokenizer ids, tiny ModernBERT
# fixtures). Run by the lead through the device tool with .devcarry carried (copies of
# ../shared's tokenizer and MS MARCO samples). Results come back as $OUT/fixtures.tgz.
set -uo pipefail
C=.devcarry/shared
HARD=${HARD:-internal/tokenizer/testdata/hard_cases.jsonl}
[ -f "$HARD" ] || { echo "no $HARD"; exit 1; }
work=$(mktemp -d)
python3 scripts/gpu/tokenizer_reference.py --tokenizer $C/models/modernbert-base/tokenizer.json \
  --msmarco $C/data/msmarco --hard "$HARD" --out $work/reference.json.gz
python3 scripts/gpu/make_modernbert_fixtures.py --out $work/modernbert
tar -C $work -czf $OUT/fixtures.tgz .
