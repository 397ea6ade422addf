#!/usr/bin/env python3
"""HF transformers model-only throughput on CPU (issue 14's yardstick): fp32, sdpa, MS MARCO
passages in length-sorted batches of 32, torch limited to --threads; real tokens only.

  taskset -c 0,1 python3 hf_cpu_bench.py --model /tmp/mb --tsv collection.sample.tsv --threads 2
"""
import argparse
import json
import os
import platform
import time

import torch
from transformers import AutoTokenizer, ModernBertModel


def passages(path, n):
    with open(path, encoding="utf-8", newline="\n") as f:
        return [l.rstrip("\n").partition("\t")[2] for l in f if l.strip()][:n]


@torch.no_grad()
def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tsv", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--passages", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=30)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(args.model)
    model = ModernBertModel.from_pretrained(args.model, attn_implementation="sdpa").eval()
    texts = sorted(passages(args.tsv, args.passages), key=len)
    batches = [texts[i:i + args.batch] for i in range(0, len(texts), args.batch)]
    encs = [tok(b, padding=True, truncation=True, return_tensors="pt") for b in batches]
    model(**encs[0])  # warm-up
    done_tok = done_pass = calls = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < args.seconds:
        for e, b in zip(encs, batches):
            out = model(**e).last_hidden_state
            m = e["attention_mask"].unsqueeze(-1).to(out.dtype)
            _ = (out * m).sum(1) / m.sum(1)
            done_tok += int(e["attention_mask"].sum())
            done_pass += len(b)
            calls += 1
            if time.perf_counter() - t0 >= args.seconds:
                break
    el = time.perf_counter() - t0
    print(json.dumps({"impl": "hf-transformers", "torch": torch.__version__, "threads": args.threads,
                      "affinity": sorted(os.sched_getaffinity(0)), "cpu": platform.processor(),
                      "dtype": "float32", "attention": "sdpa", "batch": args.batch, "sorted": True,
                      "seconds": el, "calls": calls, "passages_per_s": done_pass / el, "tokens_per_s": done_tok / el}))


if __name__ == "__main__":
    main()
