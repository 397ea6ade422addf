#!/usr/bin/env python3
"""Issue 16's route past XLA's Triton custom call: can a Triton GEMM with TMA loads (and warp
specialisation) finish Wi's product with GeGLU faster than cuBLAS's product plus the pass?

XLA's `__gpu$xla.gpu.triton` custom call cannot carry TMA descriptors (docs/notes/modernbert.md,
session 19), but its `__gpu$xla.gpu.ptx` call runs any PTX over the buffers it is given. This
script compiles, with the Triton that PyTorch ships, the kernel that call would run: persistent
over the SMs, a and w read through device-side tensor descriptors (their 128-byte descriptors
live in Triton's global scratch, which the PTX call would pass as an extra output), GeGLU and
the row factor of the folded norm in the epilogue. It checks each configuration against float64
arithmetic on a slice of rows, times it against torch's cuBLAS product plus the GeGLU pass on
the same tensors, and writes the fastest one's PTX and launch parameters for the Go side.

Shapes are ModernBERT-base's Wi on a full step: 16,384 tokens, depth 768, 1,152 pairs; fp16 in
(the folded norm's dtype), bf16 out, as embedbench_geglu_f16.

Run 68 (H200, Triton 3.6.0): the best form, unflattened, 123.7 µs (469 TFLOP/s), 9% under
torch's cuBLAS product plus XLA's pass but level with the 120 µs our steps see with XLA's
own product; the warp-specialised forms computed NaNs. The route was closed there
(docs/notes/modernbert.md, session 20).

usage: triton_tma_geglu.py [--tokens 16384] [--out DIR]
Prints one JSON line per configuration and one for cuBLAS; writes DIR/geglu_tma.ptx and
DIR/geglu_tma.json (name, grid, block, shared memory, global scratch) for the fastest correct one.
"""
import argparse
import json
import math
import os
import sys
import traceback

import torch
import triton
import triton.language as tl


@triton.jit
def geglu_tile(a_desc, w_desc, out_desc, scale_ptr, M, tile, K: tl.constexpr, PAIRS: tl.constexpr,
               BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr):
    n_tiles = PAIRS // BN
    row0 = (tile // n_tiles) * BM
    pair0 = (tile % n_tiles) * BN
    x = tl.zeros((BM, BN), dtype=tl.float32)
    g = tl.zeros((BM, BN), dtype=tl.float32)
    for k0 in range(0, K, BK):
        a = a_desc.load([row0, k0])
        x = tl.dot(a, w_desc.load([pair0, k0]).T, x)
        g = tl.dot(a, w_desc.load([PAIRS + pair0, k0]).T, g)
    rows = row0 + tl.arange(0, BM)
    s = tl.load(scale_ptr + rows, mask=rows < M, other=0.0)[:, None]
    x, g = x * s, g * s
    out = 0.5 * x * (1.0 + tl.math.erf(x * 0.7071067811865476)) * g  # HF's exact GELU
    out_desc.store([row0, pair0], out.to(tl.bfloat16))


@triton.jit
def geglu_tma_kernel(a_ptr, w_ptr, scale_ptr, out_ptr, M, K: tl.constexpr, PAIRS: tl.constexpr,
                     BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, NUM_PROGRAMS: tl.constexpr,
                     FLATTEN: tl.constexpr, WARP_SPECIALIZE: tl.constexpr):
    a_desc = tl.make_tensor_descriptor(a_ptr, shape=[M, K], strides=[K, 1], block_shape=[BM, BK])
    w_desc = tl.make_tensor_descriptor(w_ptr, shape=[2 * PAIRS, K], strides=[K, 1], block_shape=[BN, BK])
    out_desc = tl.make_tensor_descriptor(out_ptr, shape=[M, PAIRS], strides=[PAIRS, 1], block_shape=[BM, BN])
    tiles = tl.cdiv(M, BM) * (PAIRS // BN)
    # Two loops, so that a Triton without warp_specialize still builds the configurations
    # that do not ask for it.
    if WARP_SPECIALIZE:
        for tile in tl.range(tl.program_id(0), tiles, NUM_PROGRAMS, flatten=FLATTEN, warp_specialize=True):
            geglu_tile(a_desc, w_desc, out_desc, scale_ptr, M, tile, K, PAIRS, BM, BN, BK)
    else:
        for tile in tl.range(tl.program_id(0), tiles, NUM_PROGRAMS, flatten=FLATTEN):
            geglu_tile(a_desc, w_desc, out_desc, scale_ptr, M, tile, K, PAIRS, BM, BN, BK)


def reference(a, w, scale, pairs, rows):
    """GeGLU of the first `rows` rows in float64."""
    y = (a[:rows].double() @ w.double().T) * scale[:rows].double()[:, None]
    x, g = y[:, :pairs], y[:, pairs:]
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0))) * g


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tokens", type=int, default=16384)
    p.add_argument("--depth", type=int, default=768)
    p.add_argument("--pairs", type=int, default=1152)
    p.add_argument("--out", default=os.environ.get("OUT", "."))
    args = p.parse_args()
    torch.manual_seed(0)
    dev = "cuda"
    m, k, pairs = args.tokens, args.depth, args.pairs
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    print(json.dumps({"triton": triton.__version__, "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0), "sms": sms}))

    # Device-side descriptors live in Triton's global scratch; here torch allocates it.
    triton.set_allocator(lambda size, align, stream: torch.empty(size, dtype=torch.int8, device=dev))

    a = (torch.randn(m, k, device=dev) * 0.5).half()
    w = (torch.randn(2 * pairs, k, device=dev) / math.sqrt(k)).half()
    scale = (0.5 + torch.rand(m, device=dev)).float()
    want = reference(a, w, scale, pairs, 512)

    def cublas():
        y = (a @ w.T).float() * scale[:, None]
        x, g = y[:, :pairs], y[:, pairs:]
        return (torch.nn.functional.gelu(x) * g).to(torch.bfloat16)

    flops = 2 * m * k * 2 * pairs
    ms = triton.testing.do_bench(cublas, warmup=50, rep=300)
    ms_gemm = triton.testing.do_bench(lambda: a @ w.T, warmup=50, rep=300)
    # torch runs the pass as several eager kernels; XLA fuses it into one (38 µs a layer on a
    # full step, run 58), so the bar for our graph is cuBLAS's product alone plus about that.
    bar_us = ms_gemm * 1e3 + 38
    print(json.dumps({"config": "torch: cuBLAS product, then the GeGLU pass (eager)", "us": round(ms * 1e3, 1),
                      "us_product_alone": round(ms_gemm * 1e3, 1), "tflops_product": round(flops / ms_gemm / 1e9),
                      "bar_us_product_and_xla_pass": round(bar_us, 1)}))

    def compile_cfg(cfg, grid, out):
        return geglu_tma_kernel.warmup(a, w, scale, out, m, K=k, PAIRS=pairs, BM=cfg["BM"], BN=cfg["BN"], BK=cfg["BK"],
                                       NUM_PROGRAMS=grid[0], FLATTEN=cfg["flatten"], WARP_SPECIALIZE=cfg["warp_specialize"],
                                       num_stages=cfg["stages"], num_warps=cfg["warps"], grid=grid)

    best = None
    # Hopper's warp specialisation, as Triton's sources read, takes only kernels of 4 warps and
    # no if-else in the loop (which flattening makes); "specialised" says whether it happened.
    for bm, bn, bk, stages, warps, flatten, ws in [
        (128, 128, 64, 3, 8, True, False), (128, 128, 64, 3, 8, False, False), (128, 128, 64, 3, 4, False, True),
        (128, 64, 64, 4, 4, False, True), (128, 64, 64, 4, 8, True, False), (64, 128, 64, 4, 4, False, True),
        (128, 128, 64, 2, 8, True, False), (128, 128, 64, 3, 8, True, True),
    ]:
        cfg = {"BM": bm, "BN": bn, "BK": bk, "stages": stages, "warps": warps, "flatten": flatten, "warp_specialize": ws}
        out = torch.empty(m, pairs, device=dev, dtype=torch.bfloat16)
        grid = (min(sms, triton.cdiv(m, bm) * (pairs // bn)),)
        launch = lambda: geglu_tma_kernel[grid](a, w, scale, out, m, K=k, PAIRS=pairs, BM=bm, BN=bn, BK=bk,
                                                 NUM_PROGRAMS=grid[0], FLATTEN=flatten, WARP_SPECIALIZE=ws,
                                                 num_stages=stages, num_warps=warps)
        try:
            compiled = compile_cfg(cfg, grid, out)
            launch()
            torch.cuda.synchronize()
            err = (out[:512].double() - want).abs()
            us = triton.testing.do_bench(launch, warmup=50, rep=300) * 1e3
        except Exception as e:  # a configuration this Triton cannot build is reported, not fatal
            # (after an illegal address every later configuration fails too: the first error counts)
            print(json.dumps({"config": cfg, "error": f"{type(e).__name__}: {str(e)[:400]}"}))
            traceback.print_exc(limit=2, file=sys.stderr)
            continue
        ok = bool((err <= 1e-2 + 8e-3 * want.abs()).all())  # bf16's rounding, plus fp32 sums in another order
        row = {"config": cfg, "us": round(us, 1), "tflops": round(flops / us / 1e6), "max_abs_diff": err.max().item(),
               "correct": ok, "vs_bar": round(bar_us / us, 3), "vs_torch_eager": round(ms * 1e3 / us, 3),
               "specialised": compiled.metadata.num_warps > warps or "setmaxnreg" in compiled.asm["ptx"]}
        print(json.dumps(row))
        if ok and (best is None or us < best[0]):
            best = (us, cfg, grid)

    if best is None:
        print(json.dumps({"best": None}))
        return
    us, cfg, grid = best
    compiled = compile_cfg(cfg, grid, torch.empty(m, pairs, device=dev, dtype=torch.bfloat16))
    meta = compiled.metadata
    # The PTX entry takes a, w, scale, out, M, then two hidden pointers: Triton's global scratch
    # (the descriptors; bytes per program below) and its profile scratch (NULL when 0). K,
    # PAIRS and the program count are compiled in, and M was specialised as a multiple of 16.
    manifest = {"name": compiled.name, "grid": list(grid), "block": [getattr(meta, "num_warps", cfg["warps"]) * 32, 1, 1],
                "shared_mem_bytes": getattr(meta, "shared", None),
                "global_scratch_bytes_per_program": getattr(meta, "global_scratch_size", None),
                "global_scratch_align": getattr(meta, "global_scratch_align", None),
                "profile_scratch_bytes": getattr(meta, "profile_scratch_size", None),
                "compiled_in": {"K": k, "PAIRS": pairs, "NUM_PROGRAMS": grid[0], "M_multiple_of": 16},
                "config": cfg, "us": round(us, 1), "tokens": m, "triton": triton.__version__}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "geglu_tma.ptx"), "w") as f:
        f.write(compiled.asm["ptx"])
    with open(os.path.join(args.out, "geglu_tma.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(json.dumps({"best": manifest}))


if __name__ == "__main__":
    main()
