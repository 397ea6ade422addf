#!/usr/bin/env python3
"""Reference token ids from HF tokenizers, for the Go tokenizer's parity test.

Runs on the GPU machine (the only one here with HF `tokenizers`). Writes a gzipped JSON holding
ids only, never the texts: the Go test reads the texts from ../shared and from the committed
hard_cases.jsonl, in the same order.

  python3 tokenizer_reference.py --tokenizer DIR/tokenizer.json --msmarco DIR \
      --hard hard_cases.jsonl --out reference.json.gz
"""
import argparse
import gzip
import json

import tokenizers


def tsv_texts(path):
    # Split on "\n" only: the Go side does the same (a "\r" stays part of the passage).
    with open(path, encoding="utf-8", newline="\n") as f:
        for line in f:
            line = line[:-1] if line.endswith("\n") else line
            if not line:
                continue
            _, _, text = line.partition("\t")
            yield text


def jsonl_texts(path, field):
    with open(path, encoding="utf-8", newline="\n") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)[field]


def byte_offsets(text, offsets):
    """HF's Python binding reports offsets in characters; convert to UTF-8 byte offsets."""
    starts = [0]
    for ch in text:
        starts.append(starts[-1] + len(ch.encode("utf-8")))
    return [[starts[s], starts[e]] for s, e in offsets]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--msmarco", required=True)
    ap.add_argument("--hard", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    tok = tokenizers.Tokenizer.from_file(args.tokenizer)
    tok.no_truncation()
    tok.no_padding()

    def ids(texts):
        return [enc.ids for enc in tok.encode_batch(list(texts))]

    hard_texts = list(jsonl_texts(args.hard, "text"))
    hard = []
    for text in hard_texts:
        enc = tok.encode(text)
        hard.append({"ids": enc.ids, "offsets": byte_offsets(text, enc.offsets)})

    truncated = []
    for i, text in enumerate(hard_texts):
        full = len(tok.encode(text).ids)
        if full < 6:
            continue
        for side in ("right", "left"):
            for max_length in sorted({3, full // 2, full - 1}):
                if max_length < 2:
                    continue
                tok.enable_truncation(max_length=max_length, direction=side)
                truncated.append({"index": i, "max_length": max_length, "side": side,
                                  "ids": tok.encode(text).ids})
        tok.no_truncation()

    out = {
        "tokenizers_version": tokenizers.__version__,
        "collection": ids(tsv_texts(f"{args.msmarco}/collection.sample.tsv")),
        "beir": ids(jsonl_texts(f"{args.msmarco}/corpus.beir.sample.jsonl", "text")),
        "hard": hard,
        "hard_truncated": truncated,
    }
    with gzip.open(args.out, "wt", encoding="utf-8") as f:
        json.dump(out, f, separators=(",", ":"))
    print(f"wrote {args.out}: {len(out['collection'])} collection, {len(out['beir'])} beir, "
          f"{len(hard)} hard, {len(truncated)} truncated cases (tokenizers {tokenizers.__version__})")


if __name__ == "__main__":
    main()
