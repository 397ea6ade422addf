#!/usr/bin/env python3
"""Tiny random ModernBERT checkpoints plus HF transformers' embeddings for them.

Runs where transformers is installed (the GPU machine). The Go parity tests load these
checkpoints and must reproduce HF's pooled vectors. References are computed in float64 on the
CPU with eager attention, one sequence at a time (no padding), from the weights exactly as stored.

Two fixtures, to cover both config formats and both weight dtypes:
  tiny5x: config.json as this transformers (5.x) writes it, F32 weights of ModernBertModel
          (tensor names without the "model." prefix).
  tiny4x: config.json in the transformers 4.x key format, BF16 weights of ModernBertForMaskedLM
          ("model." prefix, plus head/decoder tensors the embedder must ignore), and
          global_attn_every_n_layers=2 so that the pattern is read, not assumed.

  python3 make_modernbert_fixtures.py --out internal/modernbert/testdata
"""
import argparse
import json
import os

import torch
import transformers
from safetensors.torch import save_file
from transformers import ModernBertConfig, ModernBertForMaskedLM, ModernBertModel

LENGTHS = [2, 3, 7, 16, 33, 64, 129, 300, 513, 1000]
CLS, SEP, PAD = 1, 2, 3


def build_config(vocab, hidden, heads, inter, layers, local, every):
    cfg = ModernBertConfig(
        vocab_size=vocab, hidden_size=hidden, intermediate_size=inter,
        num_hidden_layers=layers, num_attention_heads=heads,
        max_position_embeddings=2048, local_attention=local,
        global_attn_every_n_layers=every, global_rope_theta=160000.0, local_rope_theta=10000.0,
        pad_token_id=PAD, cls_token_id=CLS, sep_token_id=SEP, bos_token_id=CLS, eos_token_id=SEP,
        norm_eps=1e-5, layer_norm_eps=1e-5, attention_dropout=0.0, embedding_dropout=0.0,
        mlp_dropout=0.0, tie_word_embeddings=True,
    )
    # transformers 5.x describes the layer pattern with layer_types/rope_parameters; make sure
    # they say what the 4.x keys say, whatever the constructor did with them.
    if hasattr(cfg, "layer_types"):
        cfg.layer_types = ["full_attention" if i % every == 0 else "sliding_attention"
                           for i in range(layers)]
    if hasattr(cfg, "rope_parameters") and isinstance(getattr(cfg, "rope_parameters"), dict):
        rp = cfg.rope_parameters
        if "full_attention" in rp or "sliding_attention" in rp:
            rp.setdefault("full_attention", {}).update(rope_type="default", rope_theta=160000.0)
            rp.setdefault("sliding_attention", {}).update(rope_type="default", rope_theta=10000.0)
    cfg._attn_implementation = "eager"
    return cfg


def config_4x(vocab, hidden, heads, inter, layers, local, every):
    return {
        "architectures": ["ModernBertForMaskedLM"], "model_type": "modernbert",
        "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": CLS,
        "classifier_activation": "gelu", "classifier_bias": False, "classifier_dropout": 0.0,
        "classifier_pooling": "mean", "cls_token_id": CLS, "decoder_bias": True,
        "deterministic_flash_attn": False, "embedding_dropout": 0.0, "eos_token_id": SEP,
        "global_attn_every_n_layers": every, "global_rope_theta": 160000.0,
        "gradient_checkpointing": False, "hidden_activation": "gelu", "hidden_size": hidden,
        "initializer_cutoff_factor": 2.0, "initializer_range": 0.02, "intermediate_size": inter,
        "layer_norm_eps": 1e-05, "local_attention": local, "local_rope_theta": 10000.0,
        "max_position_embeddings": 2048, "mlp_bias": False, "mlp_dropout": 0.0,
        "norm_bias": False, "norm_eps": 1e-05, "num_attention_heads": heads,
        "num_hidden_layers": layers, "pad_token_id": PAD, "position_embedding_type": "absolute",
        "sep_token_id": SEP, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
        "transformers_version": "4.48.0", "vocab_size": vocab,
    }


def sequences(vocab, seed):
    g = torch.Generator().manual_seed(seed)
    out = []
    for n in LENGTHS:
        body = torch.randint(4, vocab, (n - 2,), generator=g).tolist()
        out.append([CLS] + body + [SEP])
    return out


@torch.no_grad()
def reference(encoder, seqs):
    encoder = encoder.to(torch.float64).eval()
    rows = []
    for ids in seqs:
        x = torch.tensor([ids])
        h = encoder(input_ids=x, attention_mask=torch.ones_like(x)).last_hidden_state[0]
        rows.append({"ids": ids, "mean": h.mean(0).tolist(), "cls": h[0].tolist()})
    return rows


def independent_forward(sd, ids, heads, every, local, eps=1e-5, prefix=""):
    """ModernBERT as issue 3 states it, written from scratch: no transformers code."""
    w = lambda n: sd[prefix + n].to(torch.float64)
    ln = lambda x, g: torch.nn.functional.layer_norm(x, x.shape[-1:], g, None, eps)
    x = ln(w("embeddings.tok_embeddings.weight")[ids], w("embeddings.norm.weight"))
    t, hidden = x.shape
    hd = hidden // heads
    pos = torch.arange(t, dtype=torch.float64)
    dist = (pos[:, None] - pos[None, :]).abs()
    layers = 1 + max(int(k.split(".")[len(prefix.split(".")) ]) for k in sd if k.startswith(prefix + "layers."))
    for i in range(layers):
        p = f"layers.{i}."
        h = x if i == 0 else ln(x, w(p + "attn_norm.weight"))
        q, k, v = (h @ w(p + "attn.Wqkv.weight").T).view(t, 3, heads, hd).unbind(1)
        theta = 160000.0 if i % every == 0 else 10000.0
        inv = 1.0 / theta ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd)
        ang = torch.cat([pos[:, None] * inv, pos[:, None] * inv], -1)[:, None, :]
        rot = lambda z: torch.cat([-z[..., hd // 2:], z[..., : hd // 2]], -1)
        q = q * ang.cos() + rot(q) * ang.sin()
        k = k * ang.cos() + rot(k) * ang.sin()
        s = torch.einsum("qhd,khd->hqk", q, k) / hd ** 0.5
        if i % every != 0:
            s = s.masked_fill(dist[None] > local // 2, float("-inf"))
        a = torch.einsum("hqk,khd->qhd", s.softmax(-1), v).reshape(t, hidden)
        x = x + a @ w(p + "attn.Wo.weight").T
        g, up = (ln(x, w(p + "mlp_norm.weight")) @ w(p + "mlp.Wi.weight").T).chunk(2, -1)
        x = x + (torch.nn.functional.gelu(g) * up) @ w(p + "mlp.Wo.weight").T
    return ln(x, w("final_norm.weight"))


def check_independent(dirpath, every, local, heads):
    from safetensors.torch import load_file
    sd = load_file(os.path.join(dirpath, "model.safetensors"))
    prefix = "model." if any(k.startswith("model.") for k in sd) else ""
    ref = json.load(open(os.path.join(dirpath, "reference.json")))
    worst = 0.0
    for row in ref["sequences"]:
        h = independent_forward(sd, torch.tensor(row["ids"]), heads, every, local, prefix=prefix)
        worst = max(worst, (h.mean(0) - torch.tensor(row["mean"], dtype=torch.float64)).abs().max().item())
    print(f"{os.path.basename(dirpath)}: independent implementation vs HF, max |diff| of mean-pooled = {worst:.3g}",
          "OK" if worst < 1e-9 else "MISMATCH: the config does not say what HF computed")


def write(dirpath, config_dict, tensors, seqs_ref, note):
    os.makedirs(dirpath, exist_ok=True)
    with open(os.path.join(dirpath, "config.json"), "w") as f:
        json.dump(config_dict, f, indent=2, sort_keys=True)
    save_file(tensors, os.path.join(dirpath, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(dirpath, "reference.json"), "w") as f:
        json.dump({"compute": note, "transformers_version": transformers.__version__,
                   "torch_version": torch.__version__, "sequences": seqs_ref}, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    note = "float64 cpu, eager attention, one sequence at a time, pooled last_hidden_state, not normalised"

    # tiny5x: saved by save_pretrained, so config.json is in this transformers' own format.
    torch.manual_seed(5)
    cfg = build_config(vocab=512, hidden=64, heads=4, inter=96, layers=4, local=16, every=3)
    model = ModernBertModel(cfg).eval()
    tmp = os.path.join(args.out, "tiny5x")
    model.save_pretrained(tmp, safe_serialization=True)
    with open(os.path.join(tmp, "config.json")) as f:
        cfg5 = json.load(f)
    tensors = {k: v.detach().to(torch.float32).contiguous().clone() for k, v in model.state_dict().items()}
    seqs = sequences(512, 5)
    write(tmp, cfg5, tensors, reference(model, seqs), note)
    print("tiny5x config:", json.dumps(cfg5, sort_keys=True))

    # tiny4x: a MaskedLM checkpoint in bf16, described by a 4.x-style config.
    torch.manual_seed(4)
    cfg = build_config(vocab=384, hidden=48, heads=3, inter=80, layers=5, local=8, every=2)
    mlm = ModernBertForMaskedLM(cfg).eval()
    state = {k: v.detach().to(torch.bfloat16).contiguous().clone() for k, v in mlm.state_dict().items()}
    # The reference uses the bf16-rounded weights, upcast, exactly as the Go loader will.
    mlm.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, strict=False)
    seqs = sequences(384, 4)
    write(os.path.join(args.out, "tiny4x"), config_4x(384, 48, 3, 80, 5, 8, 2), state,
          reference(mlm.model, seqs), note)
    print("tiny4x tensor names:", sorted(state)[:6], "...", len(state), "tensors")

    # The fixtures are only worth something if HF computed what the configs we wrote say.
    # Check both against an independent float64 implementation of the 4.x semantics.
    for name, spec, every, local in (("tiny5x", (512, 64, 4, 96, 4), 3, 16), ("tiny4x", (384, 48, 3, 80, 5), 2, 8)):
        check_independent(os.path.join(args.out, name), every, local, spec[2])
    print("transformers", transformers.__version__, "torch", torch.__version__)


if __name__ == "__main__":
    main()
