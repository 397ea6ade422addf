#!/usr/bin/env python3
"""Full-size ModernBERT-base with random weights, and HF's embeddings for parity.

The real checkpoint cannot be downloaded here, so every GPU figure uses weights that HF
transformers initialises from a seed: the same file is served by our Go engines and by the HF
reference service, so their vectors can be compared.

  make:      modernbert_full.py make --config config.json --tokenizer-dir DIR --out /tmp/mb
  reference: modernbert_full.py reference --model /tmp/mb --texts texts.jsonl --out ref.json
  compare:   modernbert_full.py compare --reference ref.json --ours ours.jsonl --dtype float32
"""
import argparse
import json
import math
import os
import shutil
import sys

import torch


def cmd_make(args):
    from transformers import ModernBertConfig, ModernBertModel
    cfg = ModernBertConfig.from_pretrained(os.path.dirname(os.path.abspath(args.config)))
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(args.seed)
    model = ModernBertModel(cfg).eval()
    model.save_pretrained(args.out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        src = os.path.join(args.tokenizer_dir, name)
        if os.path.exists(src):
            shutil.copy(src, args.out)
    n = sum(p.numel() for p in model.parameters())
    print(f"wrote {args.out}: ModernBertModel, {n/1e6:.1f} M parameters, random init seed {args.seed}")


@torch.no_grad()
def embed_hf(model, tok, texts, dtype, max_length=8192):
    out = []
    for t in texts:
        enc = tok(t, return_tensors="pt", truncation=True, max_length=max_length).to("cuda")
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=(dtype == "bfloat16")):
            h = model(**enc).last_hidden_state[0].float()
        v = h.mean(0)
        out.append((v / v.norm()).tolist())
    return out


def cmd_reference(args):
    from transformers import AutoTokenizer, ModernBertModel
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    tok = AutoTokenizer.from_pretrained(args.model)
    texts = [json.loads(l)["text"] for l in open(args.texts, encoding="utf-8") if l.strip()]
    ref = {"texts": len(texts)}
    for dtype in ("float32", "bfloat16"):
        model = ModernBertModel.from_pretrained(args.model, attn_implementation="eager").cuda().eval()
        if dtype == "bfloat16":
            model = model.to(torch.bfloat16)
        ref[dtype] = embed_hf(model, tok, texts, dtype)
        del model
    ref["lengths"] = [len(tok(t)["input_ids"]) for t in texts]
    json.dump(ref, open(args.out, "w"))
    print(f"wrote {args.out}: {len(texts)} texts, token lengths {min(ref['lengths'])}..{max(ref['lengths'])}")


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def cmd_compare(args):
    ref = json.load(open(args.reference))
    ours = [json.loads(l)["embedding"] for l in open(args.ours) if l.strip()]
    want = ref[args.against]
    if len(ours) != len(want):
        sys.exit(f"compare: {len(ours)} vectors from ours, {len(want)} in the reference")
    keep = [i for i, n in enumerate(ref["lengths"]) if not args.max_tokens or n <= args.max_tokens]
    cos = {i: cosine(ours[i], want[i]) for i in keep}
    maxabs = max(max(abs(x - y) for x, y in zip(ours[i], want[i])) for i in keep)
    worst = min(keep, key=cos.__getitem__)
    res = {"ours": args.label, "against_hf": args.against, "n": len(keep), "cosine_min": min(cos.values()),
           "cosine_mean": sum(cos.values()) / len(keep), "max_abs_diff": maxabs,
           "worst_index": worst, "worst_length": ref["lengths"][worst]}
    if args.max_tokens:
        res["max_tokens"] = args.max_tokens
    print(json.dumps(res))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--config", required=True)
    m.add_argument("--tokenizer-dir", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--seed", type=int, default=0)
    r = sub.add_parser("reference")
    r.add_argument("--model", required=True)
    r.add_argument("--texts", required=True)
    r.add_argument("--out", required=True)
    c = sub.add_parser("compare")
    c.add_argument("--reference", required=True)
    c.add_argument("--ours", required=True)
    c.add_argument("--against", default="float32", choices=["float32", "bfloat16"])
    c.add_argument("--label", default="")
    c.add_argument("--max-tokens", type=int, default=0, help="leave out texts longer than this (ours ran with --max-length, which truncates them)")
    args = ap.parse_args()
    {"make": cmd_make, "reference": cmd_reference, "compare": cmd_compare}[args.cmd](args)


if __name__ == "__main__":
    main()
