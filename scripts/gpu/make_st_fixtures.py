#!/usr/bin/env python3
"""Tiny random ModernBERT embedding models in the sentence-transformers layouts, with
sentence-transformers' own encode() as the reference.

Runs where sentence-transformers is installed (the GPU machine; no network needed). One tiny
random ModernBERT (the real tokenizer, so real texts; a small hidden size) is wrapped in several
SentenceTransformer pipelines, each saved with save() (the layout this sentence-transformers
writes), reloaded from disk and encode()d on the CPU in float32: every text alone and all of them
in one batch, with no prompt_name and with each prompt. Each is then rewritten in the classic
layout (sentence-transformers 2.x/3.x: sentence_transformers.models.* in modules.json, the
pooling_mode_* booleans, sentence_bert_config.json), reloaded and encoded again, so the rewrite
is checked to mean the same thing.

Every variant shares the transformer's weights, so the committed model.safetensors are one blob.

  python3 make_st_fixtures.py --tokenizer DIR_WITH_tokenizer.json --out DIR
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import traceback

import torch
import transformers
from transformers import ModernBertConfig, ModernBertModel

import sentence_transformers
from sentence_transformers import SentenceTransformer

try:  # the 2.x-5.x names; 6.x keeps them as aliases
    from sentence_transformers.models import Dense, Normalize, Pooling, Transformer
except ImportError:  # pragma: no cover - only if the aliases go away
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.sentence_transformer.modules import Pooling

HIDDEN = 16

TEXTS = [
    "hello world",
    "What is the capital of France?",
    "Café naïve résumé, 東京 and emoji 🙂 mixed in.",
    "search_query: a text that already looks like it has a prompt",
    "  leading and trailing spaces  ",
    "The quick brown fox jumps over the lazy dog. " * 30,  # ~300 tokens: longer than every limit
]

PROMPTS = {"query": "search_query: ", "document": "search_document: "}

# name -> how to build it. Each says its pooling, whether prompts are excluded from pooling,
# the Dense layers after pooling, whether it normalises, its max_seq_length (None: the model's
# default) and its prompts.
VARIANTS = {
    "cls_normalize": dict(pooling="cls", normalize=True, max_seq=64),
    "mean_prompts": dict(pooling="mean", max_seq=16, prompts=PROMPTS, default_prompt="query"),
    "max_dense": dict(pooling="max", include_prompt=False, prompts=PROMPTS,
                      dense=[dict(out=8, bias=True, act="tanh")], normalize=True),
    "lasttoken_noprompt": dict(pooling="lasttoken", include_prompt=False, prompts=PROMPTS, max_seq=48),
    "cls_noprompt": dict(pooling="cls", include_prompt=False, prompts=PROMPTS),
    "weightedmean_dense2": dict(pooling="weightedmean", include_prompt=False, prompts=PROMPTS,
                                dense=[dict(out=12, bias=False, act="identity"), dict(out=6, bias=True, act="relu")]),
    "meansqrt": dict(pooling="mean_sqrt_len_tokens", prompts=PROMPTS, default_prompt="document"),
}

CLASSIC_TYPES = {
    "Transformer": "sentence_transformers.models.Transformer",
    "Pooling": "sentence_transformers.models.Pooling",
    "Dense": "sentence_transformers.models.Dense",
    "Normalize": "sentence_transformers.models.Normalize",
}
CLASSIC_POOLING_KEYS = {
    "cls": "pooling_mode_cls_token", "mean": "pooling_mode_mean_tokens", "max": "pooling_mode_max_tokens",
    "mean_sqrt_len_tokens": "pooling_mode_mean_sqrt_len_tokens",
    "weightedmean": "pooling_mode_weightedmean_tokens", "lasttoken": "pooling_mode_lasttoken",
}
ACTIVATIONS = {"tanh": torch.nn.Tanh, "identity": torch.nn.Identity, "relu": torch.nn.ReLU}


def build_base(tokenizer_dir, out):
    """A tiny random ModernBERT saved with the real tokenizer files."""
    torch.manual_seed(15)
    cfg = ModernBertConfig(
        vocab_size=50368, hidden_size=HIDDEN, intermediate_size=32, num_hidden_layers=3,
        num_attention_heads=2, max_position_embeddings=128, local_attention=8,
        global_attn_every_n_layers=3, global_rope_theta=160000.0, local_rope_theta=10000.0,
        pad_token_id=50283, cls_token_id=50281, sep_token_id=50282, bos_token_id=50281, eos_token_id=50282,
        norm_eps=1e-5, attention_dropout=0.0, embedding_dropout=0.0, mlp_dropout=0.0,
    )
    if hasattr(cfg, "layer_types"):
        cfg.layer_types = ["full_attention" if i % 3 == 0 else "sliding_attention" for i in range(3)]
    model = ModernBertModel(cfg).eval()
    # Larger-than-default weights so that the tiny model's vectors differ clearly per text.
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(8.0 if p.dim() > 1 else 1.0)
    model.save_pretrained(out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        src = os.path.join(tokenizer_dir, name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(out, name))
    return cfg


def build_variant(base_dir, spec):
    kwargs = {"model_kwargs": {"attn_implementation": "eager"}}
    try:
        word = Transformer(base_dir, **kwargs)
    except TypeError:
        word = Transformer(base_dir)
    modules = [word, Pooling(HIDDEN, pooling_mode=spec["pooling"], include_prompt=spec.get("include_prompt", True))]
    dim = HIDDEN
    for i, d in enumerate(spec.get("dense", [])):
        torch.manual_seed(100 + i)
        modules.append(Dense(dim, d["out"], bias=d["bias"], activation_function=ACTIVATIONS[d["act"]]()))
        dim = d["out"]
    if spec.get("normalize"):
        modules.append(Normalize())
    st = SentenceTransformer(modules=modules, device="cpu", prompts=spec.get("prompts") or None,
                             default_prompt_name=spec.get("default_prompt"))
    if spec.get("max_seq"):
        st.max_seq_length = spec["max_seq"]
    return st


def load(path):
    return SentenceTransformer(path, device="cpu", local_files_only=True)


@torch.no_grad()
def encode_all(st, prompt_names):
    """Each case: every text alone (batch of one) and all texts in one batch."""
    cases = []
    for pn in prompt_names:
        kw = {} if pn is None else {"prompt_name": pn}
        alone = [st.encode([t], batch_size=1, convert_to_numpy=True, **kw)[0].tolist() for t in TEXTS]
        batched = st.encode(TEXTS, batch_size=len(TEXTS), convert_to_numpy=True, **kw).tolist()
        prompt = st.prompts.get(pn) if pn is not None else st.prompts.get(st.default_prompt_name or "", None)
        texts = [(prompt or "") + t for t in TEXTS]
        ids = token_ids(st, texts)
        cases.append({"prompt_name": pn, "applied_prompt": prompt, "tokens": [len(x) for x in ids], "ids": ids,
                      "alone": alone, "batched": batched})
    return cases


def token_ids(st, texts):
    """The ids sentence-transformers feeds the model (truncated at max_seq_length)."""
    return [st.tokenizer(t, truncation=True, max_length=st.max_seq_length)["input_ids"] for t in texts]


def dimension(st):
    for name in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        if hasattr(st, name):
            return getattr(st, name)()
    return None


def max_diff(a, b):
    return max(abs(x - y) for ca, cb in zip(a, b) for va, vb in zip(ca["alone"] + ca["batched"], cb["alone"] + cb["batched"]) for x, y in zip(va, vb))


def write_classic(src, dst, spec):
    """The same model as the classic layout (sentence-transformers 2.x/3.x) writes it."""
    if os.path.exists(dst):
        shutil.rmtree(dst)
    os.makedirs(dst)
    mods = json.load(open(os.path.join(src, "modules.json")))
    new = []
    for m in mods:
        kind = m["type"].rsplit(".", 1)[-1]
        if kind not in CLASSIC_TYPES:
            raise RuntimeError(f"no classic name for module type {m['type']}")
        entry = {"idx": m["idx"], "name": m["name"], "path": m["path"], "type": CLASSIC_TYPES[kind]}
        new.append(entry)
        if m["path"]:
            os.makedirs(os.path.join(dst, m["path"]), exist_ok=True)
        if kind == "Pooling":
            pcfg = json.load(open(os.path.join(src, m["path"], "config.json")))
            mode = pcfg.get("pooling_mode", spec["pooling"])
            out = {"word_embedding_dimension": pcfg.get("embedding_dimension", pcfg.get("word_embedding_dimension", HIDDEN))}
            for key in CLASSIC_POOLING_KEYS.values():
                out[key] = False
            out[CLASSIC_POOLING_KEYS[mode]] = True
            out["include_prompt"] = pcfg.get("include_prompt", True)
            json.dump(out, open(os.path.join(dst, m["path"], "config.json"), "w"), indent=2)
        elif kind == "Dense":
            dcfg = json.load(open(os.path.join(src, m["path"], "config.json")))
            out = {k: dcfg[k] for k in ("in_features", "out_features", "bias", "activation_function") if k in dcfg}
            json.dump(out, open(os.path.join(dst, m["path"], "config.json"), "w"), indent=2)
            for f in os.listdir(os.path.join(src, m["path"])):
                if f != "config.json":
                    shutil.copy(os.path.join(src, m["path"], f), os.path.join(dst, m["path"], f))
        elif kind == "Normalize" and m["path"]:
            pass  # Normalize has no files
    json.dump(new, open(os.path.join(dst, "modules.json"), "w"), indent=2)
    # The transformer's files live in the root in both layouts.
    skip = {"modules.json", "config_sentence_transformers.json", "sentence_bert_config.json", "README.md"}
    for f in os.listdir(src):
        p = os.path.join(src, f)
        if os.path.isfile(p) and f not in skip:
            shutil.copy(p, os.path.join(dst, f))
    tok_cfg_path = os.path.join(dst, "tokenizer_config.json")
    tok_cfg = json.load(open(tok_cfg_path))
    st = load(src)
    # Classic checkpoints keep the tokenizer's own limit and say max_seq_length separately.
    tok_cfg["model_max_length"] = 8192
    json.dump(tok_cfg, open(tok_cfg_path, "w"), indent=2)
    json.dump({"max_seq_length": st.max_seq_length, "do_lower_case": False},
              open(os.path.join(dst, "sentence_bert_config.json"), "w"), indent=2)
    json.dump({"__version__": {"sentence_transformers": "3.0.1", "transformers": "4.41.2", "pytorch": "2.3.0"},
               "prompts": dict(st.prompts), "default_prompt_name": st.default_prompt_name,
               "similarity_fn_name": "cosine"},
              open(os.path.join(dst, "config_sentence_transformers.json"), "w"), indent=2)


def listing(d):
    out = {}
    for root, _, files in os.walk(d):
        for f in files:
            p = os.path.join(root, f)
            rel = os.path.relpath(p, d)
            if f.endswith(".json") and f not in ("tokenizer.json", "tokenizer_config.json"):
                out[rel] = json.load(open(p))
            else:
                out[rel] = os.path.getsize(p)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True, help="folder with tokenizer.json (and tokenizer_config.json)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--only", default="", help="comma-separated variants (default: all)")
    args = ap.parse_args()
    torch.set_num_threads(4)
    os.makedirs(args.out, exist_ok=True)
    base = tempfile.mkdtemp()
    build_base(args.tokenizer, base)
    versions = {"sentence_transformers": sentence_transformers.__version__, "transformers": transformers.__version__,
                "torch": torch.__version__}
    print("versions", versions)
    shared_weights = None
    failures = []
    names = [n for n in VARIANTS if not args.only or n in args.only.split(",")]
    for name in names:
        spec = VARIANTS[name]
        try:
            vdir = os.path.join(args.out, name)
            cur = os.path.join(vdir, "current")
            if os.path.exists(cur):
                shutil.rmtree(cur)
            build_variant(base, spec).save(cur, create_model_card=False)
            # One weights blob for every variant (save() may not be byte-for-byte repeatable).
            w = os.path.join(cur, "model.safetensors")
            if shared_weights is None:
                shared_weights = w
            else:
                shutil.copy(shared_weights, w)
            st = load(cur)
            names_ = [None] + sorted(st.prompts)
            ref = {"variant": name, "spec": spec, "versions": versions, "texts": TEXTS,
                   "max_seq_length": st.max_seq_length, "dim": dimension(st),
                   "prompts": dict(st.prompts), "default_prompt_name": st.default_prompt_name,
                   "prompt_lengths": {k: len(token_ids(st, [v])[0]) - 1 for k, v in st.prompts.items()},
                   "current": encode_all(st, names_)}
            classic = os.path.join(vdir, "classic")
            write_classic(cur, classic, spec)
            stc = load(classic)
            ref["classic"] = encode_all(stc, names_)
            ref["classic_vs_current_max_abs_diff"] = max_diff(ref["current"], ref["classic"])
            ref["classic_max_seq_length"] = stc.max_seq_length
            json.dump(ref, open(os.path.join(vdir, "reference.json"), "w"))
            print(f"== {name}: dim {ref['dim']} max_seq {st.max_seq_length} (classic {stc.max_seq_length}), "
                  f"prompt lengths {ref['prompt_lengths']}, classic vs current {ref['classic_vs_current_max_abs_diff']:.3g}")
            print("   current files:", json.dumps(listing(cur), sort_keys=True)[:1500])
        except Exception:  # report and go on: one variant's failure must not lose the others
            failures.append(name)
            traceback.print_exc()
    print("failures:", failures or "none")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
