"""GPU machine only: what cuDNN's packed (ragged) attention layout would save over our bias mask
(issue 16). Run 43 (replay_hlo.py) put cuDNN's attention at 1.95 ms of a 9.9 ms full step:
88 µs a layer, about 150 TFLOP/s, with a [rows, 1, 256, 256] bias saying which keys each query
sees, so that every row computes all 256x256 scores of its three-odd passages and loads the bias.

cuDNN also takes packed rows directly: each row's sequences as offsets and lengths
(`q_offsets`, `q_seqlen`, as JAX's dot_product_attention passes them, XLA's config field
`max_seg_per_batch`), attending within each sequence only, with no bias. On one full step's
shape (64 rows of 256, MS MARCO passages packed as the Go engine packs them, 12 heads of 64,
bf16) this times, a layer's attention in µs (22 chained in one jit):
  bias       today's call: the additive bias of the sequences' own keys;
  bias-band  the same bias with the ±64 sliding window of the local layers;
  packed     the offsets and lengths, no bias;
  packed-window  the same with sliding_window_length=64, if JAX and cuDNN take it;
  none       no mask at all (a floor, wrong vectors).
Each prints its largest difference from a plain XLA softmax reference over real tokens, and
the lowered custom call of the packed forms goes to --out (the operands and backend config the
Go side would emit).

  python3 ragged_attention.py --tokenizer tokenizer.json --tsv collection.sample.tsv --out DIR
"""
import argparse
import inspect
import json
import os
import sys
import time

import numpy as np
import jax
import jax.numpy as jnp

import jax_profile

ROWS, L, NH, HD, HALF_WINDOW = 64, 256, 12, 64, 64
BF16, F32 = jnp.bfloat16, jnp.float32


def segments(seg, max_segs):
    """Per row, each sequence's start and length, -1 past the last (as JAX's packed-layout test
    writes them: max_segs + 1 starts, max_segs lengths), from segment ids."""
    offsets = -np.ones((ROWS, max_segs + 1), np.int32)
    lengths = -np.ones((ROWS, max_segs), np.int32)
    for r in range(ROWS):
        ids = seg[r]
        k = 0
        for s in range(1, ids.max() + 1):
            where = np.nonzero(ids == s)[0]
            if len(where):
                offsets[r, k], lengths[r, k] = where[0], len(where)
                k += 1
    return offsets, lengths


def reference(q, k, v, allowed):
    s = jnp.einsum("bqhd,bkhd->bhqk", q.astype(F32), k.astype(F32)) / np.sqrt(HD)
    s = jnp.where(allowed, s, -1e30)
    p = jax.nn.softmax(s, axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", p, v.astype(F32))


def per_layer_us(fn, q, k, v, layers=22, reps=20):
    def run(q, k, v):
        return jax.lax.fori_loop(0, layers, lambda _, x: fn(x, k, v).astype(BF16), q)
    run = jax.jit(run)
    jax.block_until_ready(run(q, k, v))
    start = time.perf_counter()
    for _ in range(reps):
        out = run(q, k, v)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / (reps * layers) * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--tsv", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    from jax._src.cudnn import fused_attention_stablehlo as fa
    print(json.dumps({"jax": jax.__version__, "signature": str(inspect.signature(fa.dot_product_attention))[:600]}))

    lengths = jax_profile.token_lengths(a.tokenizer, a.tsv)
    _, pos, seg, real = jax_profile.pack(lengths[:400], ROWS, L)
    max_segs = int(seg.max())
    offsets, seqlens = segments(seg, max_segs)
    print(json.dumps({"real_tokens": int(real), "max_segments_a_row": max_segs,
                      "mean_segments_a_row": float((seqlens > 0).sum(1).mean())}))
    rng = np.random.default_rng(0)
    q, k, v = (jnp.asarray(rng.standard_normal((ROWS, L, NH, HD)), BF16) for _ in range(3))
    same = (seg[:, :, None] == seg[:, None, :]) & (seg[:, None, :] > 0)
    near = np.abs(pos[:, :, None] - pos[:, None, :]) <= HALF_WINDOW
    real_q = jnp.asarray(seg > 0)[:, :, None, None]
    big = fa.get_large_negative_number(BF16)
    bias = lambda m: jnp.where(jnp.asarray(m)[:, None], jnp.zeros((), BF16), big).astype(BF16)
    seq_q, seq_kv = jnp.asarray(seqlens), jnp.asarray(seqlens)
    off_q, off_kv = jnp.asarray(offsets), jnp.asarray(offsets)
    scale = 1 / np.sqrt(HD)

    variants = {
        "bias": (lambda q, k, v: fa.dot_product_attention(q, k, v, bias(same), scale=scale), same),
        "bias-band": (lambda q, k, v: fa.dot_product_attention(q, k, v, bias(same & near), scale=scale), same & near),
        "packed": (lambda q, k, v: fa.dot_product_attention(
            q, k, v, None, None, seq_q, seq_kv, off_q, off_kv, scale=scale), same),
        "packed-window": (lambda q, k, v: fa.dot_product_attention(
            q, k, v, None, None, seq_q, seq_kv, off_q, off_kv, scale=scale,
            sliding_window_length=HALF_WINDOW), same & near),
        "none": (lambda q, k, v: fa.dot_product_attention(q, k, v, scale=scale), None),
    }
    for name, (fn, allowed) in variants.items():
        try:
            got = jax.jit(fn)(q, k, v)
            diff = None
            if allowed is not None:
                want = reference(q, k, v, jnp.asarray(allowed)[:, None])
                diff = float(jnp.max(jnp.where(real_q, jnp.abs(got.astype(F32) - want), 0)))
            us = per_layer_us(fn, q, k, v)
            print(json.dumps({"variant": name, "us_a_layer": round(us, 1), "ms_22_layers": round(us * 22 / 1e3, 3),
                              "max_diff_real_tokens": diff}), flush=True)
            if name.startswith("packed"):
                text = jax.jit(fn).lower(q, k, v).as_text()
                calls = [l.strip() for l in text.splitlines() if "custom_call" in l]
                open(os.path.join(a.out, f"{name}_custom_call.txt"), "w").write("\n\n".join(calls) + "\n")
        except Exception as e:  # say why a form is refused and go on to the next
            print(json.dumps({"variant": name, "error": f"{type(e).__name__}: {str(e)[:600]}"}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
