"""GPU machine only: what a kernel of our own for the residual add with its statistics would
save (issue 16, session 13's next question).

Run 39 profiled the JAX mirror of the bf16 graph: XLA's fusion of the residual add with the
LayerNorm's row sums took 41.5 µs for 75 MB (1.8 TB/s), and a row reduction alone 25 µs for
25 MB, where the elementwise passes ran at 3-3.5 TB/s. This times, on one full step's shape
(16,384 tokens x 768), in isolation:
  xla     what our graph asks XLA for since session 13 (the stream centred): the fp16 stream
          plus the bf16 product, written in fp16, and 1/sqrt(mean square + eps) of the sum's
          rows in fp32 (what the folded projections scale by);
  pallas  the same as a Pallas kernel on the Triton backend, one block of rows a program, the
          row in three tiles of 256 (Triton wants powers of two);
  pallas-tiles  every block a power of two (row blocks by tiles), the partial sums added by XLA;
  pallas-pad    one block of 1,024 columns a row block, the 256 past the row masked off;
  copy    a plain fp16 copy of the stream, the bandwidth the card gives this shape.
For pallas it also writes the lowered module (the `__gpu$xla.gpu.triton` custom call with its
backend config, which XLA compiles itself) to --out, the form the Go side would emit, and the
Triton-dialect module as text (.ttir: Pallas's debug print). Prints one JSON line a variant:
µs a call, GB/s, and the largest difference from xla's results.

  python3 pallas_addnorm.py --out DIR [--rows 16384] [--block-rows 8,16,32]
"""
import argparse
import contextlib
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

H, TILE, EPS = 768, 256, 1e-5
F16, BF16, F32 = jnp.float16, jnp.bfloat16, jnp.float32


def xla_add_stats(h, y):
    s = h + y.astype(F16)
    s32 = s.astype(F32)
    return s, jax.lax.rsqrt(jnp.mean(s32 * s32, axis=-1) + EPS)


def pallas_add_stats(block_rows, num_warps, debug=False):
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as pltriton

    def kernel(h_ref, y_ref, s_ref, ms_ref):
        acc = jnp.zeros((block_rows,), F32)
        for j in range(H // TILE):
            cols = pl.ds(j * TILE, TILE)
            s = h_ref[:, cols] + y_ref[:, cols].astype(F16)
            s_ref[:, cols] = s
            s32 = s.astype(F32)
            acc += jnp.sum(s32 * s32, axis=1)
        ms_ref[...] = jax.lax.rsqrt(acc / H + EPS)

    def call(h, y):
        n = h.shape[0]
        return pl.pallas_call(
            kernel,
            out_shape=(jax.ShapeDtypeStruct((n, H), F16), jax.ShapeDtypeStruct((n,), F32)),
            grid=(n // block_rows,),
            in_specs=[pl.BlockSpec((block_rows, H), lambda i: (i, 0)),
                      pl.BlockSpec((block_rows, H), lambda i: (i, 0))],
            out_specs=(pl.BlockSpec((block_rows, H), lambda i: (i, 0)),
                       pl.BlockSpec((block_rows,), lambda i: (i,))),
            compiler_params=pltriton.CompilerParams(num_warps=num_warps, num_stages=1),
            debug=debug,
        )(h, y)

    return call


def pallas_add_stats_pad(block_rows, num_warps, debug=False):
    """One block of 1,024 columns a row block, Pallas masking the 256 past the row."""
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as pltriton

    def kernel(h_ref, y_ref, s_ref, ms_ref):
        s = h_ref[...] + y_ref[...].astype(F16)
        s_ref[...] = s
        s32 = s.astype(F32)
        ms_ref[...] = jax.lax.rsqrt(jnp.sum(s32 * s32, axis=1) / H + EPS)

    def call(h, y):
        n = h.shape[0]
        block = pl.BlockSpec((block_rows, 1024), lambda i: (i, 0))
        return pl.pallas_call(
            kernel,
            out_shape=(jax.ShapeDtypeStruct((n, H), F16), jax.ShapeDtypeStruct((n,), F32)),
            grid=(n // block_rows,),
            in_specs=[block, block],
            out_specs=(block, pl.BlockSpec((block_rows,), lambda i: (i,))),
            compiler_params=pltriton.CompilerParams(num_warps=num_warps, num_stages=1),
            debug=debug,
        )(h, y)

    return call


def pallas_add_stats_tiles(block_rows, num_warps, debug=False):
    """The same with every block a power of two: a 2-D grid of row blocks by tiles of 256, each
    program writing its tile's partial sum of squares; the three partials are added by XLA."""
    from jax.experimental import pallas as pl
    from jax.experimental.pallas import triton as pltriton

    def kernel(h_ref, y_ref, s_ref, p_ref):
        s = h_ref[...] + y_ref[...].astype(F16)
        s_ref[...] = s
        s32 = s.astype(F32)
        p_ref[...] = jnp.sum(s32 * s32, axis=1)[None, :]

    def call(h, y):
        n = h.shape[0]
        tile = pl.BlockSpec((block_rows, TILE), lambda i, j: (i, j))
        s, partials = pl.pallas_call(
            kernel,
            out_shape=(jax.ShapeDtypeStruct((n, H), F16), jax.ShapeDtypeStruct((H // TILE, n), F32)),
            grid=(n // block_rows, H // TILE),
            in_specs=[tile, tile],
            out_specs=(tile, pl.BlockSpec((1, block_rows), lambda i, j: (j, i))),
            compiler_params=pltriton.CompilerParams(num_warps=num_warps, num_stages=1),
            debug=debug,
        )(h, y)
        return s, jax.lax.rsqrt(partials.sum(0) / H + EPS)

    return call


def per_call_us(fn, h, y, chain=20, reps=20):
    """µs a call of fn(h, y) -> (s, ms), from chains of calls inside one jit (each call adding y
    to the last one's s), so that host dispatch is not what is timed."""
    def run(h, y):
        def body(_, carry):
            s, acc = fn(carry[0], y)
            return s, carry[1] + acc
        return jax.lax.fori_loop(0, chain, body, (h, jnp.zeros(h.shape[0], F32)))
    run = jax.jit(run)
    jax.block_until_ready(run(h, y))
    start = time.perf_counter()
    for _ in range(reps):
        out = run(h, y)
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / (reps * chain) * 1e6


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--rows", type=int, default=16384)
    ap.add_argument("--block-rows", default="8,16,32")
    ap.add_argument("--num-warps", default="4,8")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    print(json.dumps({"jax": jax.__version__, "device": str(jax.devices()[0])}))
    rng = np.random.default_rng(0)
    h = jnp.asarray(rng.standard_normal((a.rows, H)), F16)
    y = jnp.asarray(rng.standard_normal((a.rows, H)) * 0.1, BF16)
    moved = a.rows * H * 2 * 3  # read the stream and the product, write the stream (bytes)

    copy = lambda h, y: (-h, jnp.zeros(h.shape[0], F32))
    us = per_call_us(copy, h, y)
    print(json.dumps({"variant": "copy", "us": round(us, 1), "gb_s": round(a.rows * H * 2 * 2 / us / 1e3)}))
    want = jax.jit(xla_add_stats)(h, y)
    us = per_call_us(xla_add_stats, h, y)
    print(json.dumps({"variant": "xla", "us": round(us, 1), "gb_s": round(moved / us / 1e3)}))
    for kind, make in (("pallas", pallas_add_stats), ("pallas-pad", pallas_add_stats_pad),
                       ("pallas-tiles", pallas_add_stats_tiles)):
        for br in (int(x) for x in a.block_rows.split(",")):
            for nw in (int(x) for x in a.num_warps.split(",")):
                name = f"{kind} rows={br} warps={nw}"
                try:
                    call = make(br, nw)
                    fn = jax.jit(call)
                    got = fn(h, y)
                    us = per_call_us(call, h, y)
                    diff = max(float(jnp.max(jnp.abs(got[0].astype(F32) - want[0].astype(F32)))),
                               float(jnp.max(jnp.abs(got[1] - want[1]) / want[1])))
                    print(json.dumps({"variant": name, "us": round(us, 1), "gb_s": round(moved / us / 1e3),
                                      "max_diff": diff}))
                    stem = os.path.join(a.out, f"{kind}_rows{br}_warps{nw}")
                    with open(stem + ".mlir", "w") as f:
                        f.write(fn.lower(h, y).as_text())
                    with open(stem + ".ttir", "w") as f, contextlib.redirect_stdout(f):
                        jax.jit(make(br, nw, debug=True)).lower(h, y)
                except Exception as e:  # Pallas's Triton backend is best-effort: say what failed
                    print(json.dumps({"variant": name, "error": f"{type(e).__name__}: {str(e)[:400]}"}))


if __name__ == "__main__":
    main()
