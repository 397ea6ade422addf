#!/usr/bin/env python3
"""HF transformers model-only throughput on MS MARCO lengths (the yardstick for issue 3).

Counts only real tokens. Configurations: the sentence-transformers default (fp32, batch 32,
unsorted, sdpa) and the best measured in GPU.md (bf16, sorted, batch 128, eager).

  python3 hf_model_bench.py --model /tmp/mb --tsv collection.sample.tsv
"""
import argparse
import json
import time

import torch
from transformers import AutoTokenizer, ModernBertModel


def passages(path):
    with open(path, encoding="utf-8", newline="\n") as f:
        return [l.rstrip("\n").partition("\t")[2] for l in f if l.strip()]


@torch.no_grad()
def run(model, tok, texts, batch, sort, dtype, seconds):
    order = sorted(texts, key=len) if sort else texts
    batches = [order[i:i + batch] for i in range(0, len(order), batch)]
    encs = [tok(b, padding=True, truncation=True, return_tensors="pt") for b in batches]
    real = [int(e["attention_mask"].sum()) for e in encs]
    for e in encs[:3]:
        model(**{k: v.cuda() for k, v in e.items()})
    torch.cuda.synchronize()
    done_tok = done_pass = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for e, r, b in zip(encs, real, batches):
            out = model(**{k: v.cuda() for k, v in e.items()}).last_hidden_state
            m = e["attention_mask"].cuda().unsqueeze(-1).to(out.dtype)
            _ = ((out * m).sum(1) / m.sum(1)).float().cpu()
            done_tok += r
            done_pass += len(b)
    el = time.perf_counter() - t0
    return {"dtype": dtype, "batch": batch, "sorted": sort, "passages_per_s": done_pass / el,
            "tokens_per_s": done_tok / el}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--tsv", required=True)
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    tok = AutoTokenizer.from_pretrained(args.model)
    texts = passages(args.tsv)
    rows = []
    for dtype, attn, batch, sort in (("float32", "sdpa", 32, False), ("bfloat16", "eager", 128, True),
                                     ("bfloat16", "sdpa", 512, True)):
        model = ModernBertModel.from_pretrained(args.model, attn_implementation=attn).cuda().eval()
        if dtype == "bfloat16":
            model = model.to(torch.bfloat16)
        r = run(model, tok, texts, batch, sort, dtype, args.seconds)
        r["attention"] = attn
        rows.append(r)
        print(json.dumps(r), flush=True)
        del model
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
