#!/usr/bin/env python3
"""HF tokenizers speed on MS MARCO passages, the other side of Go's BenchmarkEncodeMSMARCO.

Runs on the GPU machine (the only one here with HF `tokenizers`), in the same call as the Go
benchmark binary so both see the same CPU. Measures passages/s encoding one passage at a time
from Python (`Tokenizer.encode`, special tokens added, as the Go benchmark does) and with
`encode_batch` on --threads threads (rayon). Prints one JSON object.

  python3 tokenizer_bench.py --tokenizer DIR/tokenizer.json \
      --collection DIR/collection.sample.tsv (or --tsv) [--threads 16] [--seconds 3]
"""
import argparse
import json
import os
import sys
import time


def tsv_texts(path):
    # Split on "\n" only, like the Go benchmark (a "\r" stays part of the passage).
    texts = []
    with open(path, encoding="utf-8", newline="\n") as f:
        for line in f:
            line = line[:-1] if line.endswith("\n") else line
            if line:
                texts.append(line.partition("\t")[2])
    return texts


def timed(run, texts, seconds):
    """Runs run(texts) over and over for at least `seconds`; returns passages/s and the time."""
    run(texts)  # warm-up: caches, thread pool
    done, start = 0, time.perf_counter()
    while True:
        run(texts)
        done += len(texts)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed, elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokenizer", required=True, help="tokenizer.json")
    ap.add_argument("--collection", "--tsv", dest="collection", required=True, help="collection.sample.tsv")
    ap.add_argument("--threads", type=int, default=16, help="rayon threads for encode_batch")
    ap.add_argument("--seconds", type=float, default=3.0, help="minimum time per measurement")
    args = ap.parse_args()

    # rayon reads its thread count once, when tokenizers first uses its pool.
    os.environ["RAYON_NUM_THREADS"] = str(args.threads)
    os.environ["RAYON_RS_NUM_CPUS"] = str(args.threads)
    os.environ["TOKENIZERS_PARALLELISM"] = "true"
    import tokenizers

    tok = tokenizers.Tokenizer.from_file(args.tokenizer)
    texts = tsv_texts(args.collection)
    if not texts:
        sys.exit(f"{args.collection}: no passages")

    single = [e.ids for e in map(tok.encode, texts)]
    batch = [e.ids for e in tok.encode_batch(texts)]
    if single != batch:
        sys.exit("encode and encode_batch disagree")
    tokens = sum(map(len, single))

    def one_at_a_time(ts):
        for t in ts:
            tok.encode(t)

    single_rate, single_s = timed(one_at_a_time, texts, args.seconds)
    batch_rate, batch_s = timed(tok.encode_batch, texts, args.seconds)
    print(json.dumps({
        "tokenizers_version": tokenizers.__version__,
        "passages": len(texts),
        "tokens_per_passage": round(tokens / len(texts), 1),
        "cpus": os.cpu_count(),
        "encode_one_at_a_time": {"passages_per_s": round(single_rate), "seconds": round(single_s, 2)},
        "encode_batch": {"threads": args.threads, "passages_per_s": round(batch_rate), "seconds": round(batch_s, 2)},
    }, indent=1))


if __name__ == "__main__":
    main()
