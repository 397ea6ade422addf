"""GPU machine only: where the time of one packed ModernBERT-base step goes, kernel by kernel.

JAX drives the same XLA as our Go binary, so this mirrors internal/modernbert/graph.go (bf16
matmuls; fp32 residual stream, norms, RoPE and softmax; packed rows with segment ids and
per-sequence positions; sliding window in local layers; mean pooling per segment), times it,
and profiles it with jax.profiler (CUPTI inside the CUDA plugin). It prints one JSON line per
variant timed and, for the one named by --profile (default base), the kernels grouped by kind with
their share of GPU time.
Weights are random (the speed does not depend on them); lengths are MS MARCO's, tokenised by
HF tokenizers.

  python3 jax_profile.py --tokenizer tokenizer.json --tsv collection.sample.tsv --out DIR
"""
import argparse
import collections
import glob
import gzip
import json
import math
import os
import sys
import time

import numpy as np
import jax
import jax.numpy as jnp

H, NH, HD, INTER, LAYERS, HALF_WINDOW = 768, 12, 64, 1152, 22, 64
BF16, F16, F32 = jnp.bfloat16, jnp.float16, jnp.float32


def token_lengths(tokenizer_path, tsv):
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(tokenizer_path)
    texts = [l.rstrip("\n").partition("\t")[2] for l in open(tsv, encoding="utf-8") if l.strip()]
    return [min(len(e.ids), 8192) for e in tok.encode_batch(texts)]


def pack(lengths, rows, row_len):
    """First-fit decreasing into rows of row_len (at most row_len//8 sequences a row), as
    internal/modernbert plans packed steps; returns ids, pos, seg [rows, row_len] and the
    number of real tokens placed."""
    fill = [0] * rows
    count = [0] * rows
    ids = np.zeros((rows, row_len), np.int32)
    pos = np.zeros((rows, row_len), np.int32)
    seg = np.zeros((rows, row_len), np.int32)
    rng = np.random.default_rng(0)
    real = 0
    for n in sorted((min(l, row_len) for l in lengths), reverse=True):
        for r in range(rows):
            if fill[r] + n <= row_len and count[r] < row_len // 8:
                count[r] += 1
                ids[r, fill[r]:fill[r] + n] = rng.integers(5, 50000, n)
                pos[r, fill[r]:fill[r] + n] = np.arange(n)
                seg[r, fill[r]:fill[r] + n] = count[r]
                fill[r] += n
                real += n
                break
    return ids, pos, seg, real


def make_params(key):
    def w(k, shape):
        return (jax.random.normal(k, shape, F32) * 0.02).astype(BF16)
    keys = jax.random.split(key, LAYERS * 4 + 1)
    p = {"emb": w(keys[-1], (50368, H)), "layers": []}
    for i in range(LAYERS):
        k = keys[4 * i:4 * i + 4]
        p["layers"].append({"wqkv": w(k[0], (3 * H, H)), "wo": w(k[1], (H, H)),
                            "wi": w(k[2], (2 * INTER, H)), "wo2": w(k[3], (H, INTER)),
                            "n1": jnp.ones(H, F32), "n2": jnp.ones(H, F32)})
    return p


def rope_tables(theta, max_pos=8192):
    inv = 1.0 / theta ** (np.arange(0, HD, 2) / HD)
    ang = np.arange(max_pos)[:, None] * inv[None, :]
    return jnp.asarray(np.cos(ang), F32), jnp.asarray(np.sin(ang), F32)


def layer_norm(x, w, one_pass=False):
    x = x.astype(F32)
    mean = x.mean(-1, keepdims=True)
    if one_pass:
        var = (x * x).mean(-1, keepdims=True) - mean * mean
    else:
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * w


def linear(x, w, f32_out=False):
    if f32_out:  # bf16 inputs, the product's fp32 accumulator returned as is
        return jnp.einsum("nc,oc->no", x.astype(BF16), w, preferred_element_type=F32)
    return jnp.einsum("nc,oc->no", x.astype(BF16), w).astype(F32)


def rotate(x, cos, sin):
    x1, x2 = x[..., :HD // 2], x[..., HD // 2:]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], -1)


def forward(p, ids, pos, seg, variant, tables, segments):
    rows, L = ids.shape
    n = rows * L
    h = layer_norm(p["emb"][ids.reshape(n)], jnp.ones(H, F32))
    same = (seg[:, :, None] == seg[:, None, :]) & (seg[:, None, :] != 0)
    near = jnp.abs(pos[:, :, None] - pos[:, None, :]) <= HALF_WINDOW
    masks = {True: same[:, None], False: (same & near)[:, None]}
    rope = {g: (tables[g][0][pos][:, :, None], tables[g][1][pos][:, :, None]) for g in (True, False)}
    one_pass = "ln-onepass" in variant
    f32_out = "f32out" in variant  # products return fp32 (no bf16 rounding of their outputs)
    rope_bf16 = "rope-bf16" in variant  # RoPE computed in bf16
    gelu_bf16 = "gelu-bf16" in variant  # GeGLU computed in bf16
    # "fold16" mirrors the Go graph's bf16 default (session 12): the stream in fp16, the norms
    # before Wqkv and Wi folded into fp16 products that read it, corrected by the row statistics.
    # The folded weights are made inside the step here (a few small converts the Go graph does
    # at upload).
    fold16 = "fold16" in variant
    if fold16:
        h = h.astype(F16)

    def project(h, w, norm_w):  # LN(h) @ w.T, fp32
        if not fold16:
            return linear(layer_norm(h, norm_w, one_pass), w, f32_out)
        h32 = h.astype(F32)
        mean = h32.mean(-1, keepdims=True)
        rstd = jax.lax.rsqrt(jnp.maximum((h32 * h32).mean(-1, keepdims=True) - mean * mean, 0) + 1e-5)
        w16 = (w.astype(F32) * norm_w[None, :]).astype(F16)
        y = jnp.einsum("nc,oc->no", h, w16).astype(F32)
        return (y - mean * w16.astype(F32).sum(-1)) * rstd

    for i, lp in enumerate(p["layers"]):
        glob_ = i % 3 == 0
        if i == 0:
            qkv = linear(h, lp["wqkv"], f32_out)
        else:
            qkv = project(h, lp["wqkv"], lp["n1"])
        qkv = qkv.reshape(rows, L, 3, NH, HD)
        cos, sin = rope[glob_]
        if rope_bf16:
            qkv, cos, sin = qkv.astype(BF16), cos.astype(BF16), sin.astype(BF16)
        q = (rotate(qkv[:, :, 0], cos, sin) / math.sqrt(HD)).astype(BF16)
        k = rotate(qkv[:, :, 1], cos, sin).astype(BF16)
        v = qkv[:, :, 2].astype(BF16)
        if "cudnn-nomask" in variant:  # diagnostic: what the masks cost cuDNN (wrong results)
            o = jax.nn.dot_product_attention(q, k, v, scale=1.0, implementation="cudnn").astype(F32)
        elif "cudnn-window" in variant and not glob_:  # cuDNN's own sliding window, bias for documents only
            bias = jnp.where(masks[True], 0.0, -1e9).astype(BF16)
            o = jax.nn.dot_product_attention(q, k, v, bias=bias, scale=1.0, local_window_size=(HALF_WINDOW, HALF_WINDOW),
                                             implementation="cudnn").astype(F32)
        elif "cudnn" in variant:
            bias = jnp.where(masks[glob_], 0.0, -1e9).astype(BF16)
            o = jax.nn.dot_product_attention(q, k, v, bias=bias, scale=1.0, implementation="cudnn").astype(F32)
        else:
            s = jnp.einsum("rqhd,rkhd->rhqk", q, k).astype(F32)
            s = jnp.where(masks[glob_], s, -1e30)
            if "softmax-late" in variant:
                e = jnp.exp(s - s.max(-1, keepdims=True))
                o = jnp.einsum("rhqk,rkhd->rqhd", e.astype(BF16), v).astype(F32)
                o = o / e.sum(-1, keepdims=True).transpose(0, 2, 1, 3)
            else:
                pr = jax.nn.softmax(s, -1)
                o = jnp.einsum("rhqk,rkhd->rqhd", pr.astype(BF16), v).astype(F32)
        h = (h.astype(F32) + linear(o.reshape(n, H), lp["wo"], f32_out)).astype(h.dtype)
        wi = project(h, lp["wi"], lp["n2"])
        if gelu_bf16:
            wi = wi.astype(BF16)
        a, g = jnp.split(wi, 2, -1)
        if "no-gelu" in variant:  # diagnostic: GeGLU's product without the activation
            act = a
        else:  # "gelu-tanh" is a diagnostic too: is the exact erf what the fusion pays for?
            act = jax.nn.gelu(a, approximate="gelu-tanh" in variant)
        h = (h.astype(F32) + linear(act * g, lp["wo2"], f32_out)).astype(h.dtype)
    h = layer_norm(h, jnp.ones(H, F32)).reshape(rows, L, H)
    member = (seg[:, None, :] == jnp.arange(1, segments + 1)[None, :, None]).astype(F32)
    pooled = jnp.einsum("rsl,rlh->rsh", member, h) / jnp.maximum(member.sum(-1, keepdims=True), 1)
    return pooled / jnp.maximum(jnp.linalg.norm(pooled, axis=-1, keepdims=True), 1e-12)


def kernel_table(trace_dir, steps):
    files = glob.glob(os.path.join(trace_dir, "**", "*.json.gz"), recursive=True)
    if not files:
        return {"error": "no trace json under " + trace_dir}
    events = json.load(gzip.open(files[0]))
    events = events.get("traceEvents", events) if isinstance(events, dict) else events
    names = {e["pid"]: e.get("args", {}).get("name", "") for e in events
             if e.get("ph") == "M" and e.get("name") == "process_name"}
    gpu = {pid for pid, n in names.items() if "GPU" in n or "gpu" in n}
    total = collections.Counter()
    count = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e.get("pid") in gpu and "dur" in e:
            total[e["name"]] += e["dur"]
            count[e["name"]] += 1
    all_us = sum(total.values())

    def kind(name):
        low = name.lower()
        if any(s in low for s in ("gemm", "xmma", "cutlass", "matmul", "cublas", "sm90", "dot")):
            return "gemm"
        if "memcpy" in low or "memset" in low:
            return "copy"
        return "fusion"
    kinds = collections.Counter()
    for n, t in total.items():
        kinds[kind(n)] += t
    return {"process_names": sorted(set(names.values()))[:12], "gpu_us_per_step": round(all_us / steps, 1),
            "kinds_ms_per_step": {k: round(v / steps / 1e3, 3) for k, v in kinds.items()},
            "top": [{"name": n[:90], "ms_per_step": round(t / steps / 1e3, 3), "calls_per_step": count[n] / steps}
                    for n, t in total.most_common(40)]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--tsv", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--variants", default="base,softmax-late,ln-onepass,L128,cudnn")
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--profile", default="base", help="the variant whose kernels are profiled (kernels.json)")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    lengths = token_lengths(args.tokenizer, args.tsv)
    p = make_params(jax.random.PRNGKey(0))
    tables = {True: rope_tables(160000.0), False: rope_tables(10000.0)}
    for variant in args.variants.split(","):
        row_len = 128 if "L128" in variant else 256
        rows = 16384 // row_len
        segments = min(row_len // 8, 64)
        ids, pos, seg, real = pack(lengths[:400], rows, row_len)
        try:
            fn = jax.jit(lambda p, i, q, s, variant=variant, segments=segments: forward(p, i, q, s, variant, tables, segments))
            t0 = time.time()
            fn(p, ids, pos, seg).block_until_ready()
            compile_s = time.time() - t0
            steps, t0 = 0, time.time()
            while time.time() - t0 < args.seconds:
                out = fn(p, ids, pos, seg)
                steps += 1
            out.block_until_ready()
            step_ms = (time.time() - t0) / steps * 1e3
            line = {"variant": variant, "row_len": row_len, "real_tokens": real, "slots": rows * row_len,
                    "step_ms": round(step_ms, 3), "real_tok_s": round(real / step_ms * 1e3),
                    "compile_s": round(compile_s, 1)}
        except Exception as e:  # one variant failing (cuDNN absent, say) must not stop the others
            print(json.dumps({"variant": variant, "error": repr(e)[:400]}), flush=True)
            continue
        print(json.dumps(line), flush=True)
        if variant == "cudnn":
            # The custom call JAX emits for cuDNN's fused attention: what a Go graph would need.
            text = fn.lower(p, ids, pos, seg).as_text()
            calls = [l.strip() for l in text.splitlines() if "custom_call" in l][:2]
            open(os.path.join(args.out, "cudnn_custom_call.txt"), "w").write("\n\n".join(calls) + "\n")
        if variant == args.profile:
            try:
                trace = os.path.join(args.out, "trace")
                jax.profiler.start_trace(trace, create_perfetto_trace=True)
                for _ in range(10):
                    out = fn(p, ids, pos, seg)
                out.block_until_ready()
                jax.profiler.stop_trace()
                table = kernel_table(trace, 10)
            except Exception as e:
                table = {"error": repr(e)[:400]}
            json.dump(table, open(os.path.join(args.out, "kernels.json"), "w"), indent=1)
            print(json.dumps({k: v for k, v in table.items() if k != "top"}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
