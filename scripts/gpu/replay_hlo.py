"""GPU machine only: the kernel profile of our own Go graph, replayed through JAX.

Nsight Compute segfaulted on the Go binary (runs 39 and 40), and the JAX mirror is only a mirror
(its GELU, its fusions). This takes the HLO our binary hands XLA (the `before_optimizations`
dump of `XLA_FLAGS=--xla_dump_to`: the text for its parameters, the proto to compile), compiles
it with JAX's XLA (the same plugin build the Go binary loads on this machine), feeds it one
packed step of MS MARCO lengths and random parameters, times it and profiles it with
jax.profiler (CUPTI). Prints one JSON line with the step's time and the kernel table's top rows,
and writes the table (jax_profile.kernel_table) to --out/kernels.json. Run 44 checked it
against the binary: 10.23 ms a full step replayed, 20.1 ms for two in flight in bench-model.

  python3 replay_hlo.py --hlo module.before_optimizations.txt --tokenizer tokenizer.json \
      --tsv collection.sample.tsv --out DIR
"""
import argparse
import glob
import json
import os
import re
import sys
import time

import numpy as np
import jax
from jax._src.lib import xla_client as xc

import jax_profile


def unwrap_hlo_proto(raw):
    """XLA dumps an HloProto, whose field 1 is the HloModuleProto: its bytes, or raw if not."""
    if not raw or raw[0] != 0x0A:
        return raw
    length, shift, i = 0, 0, 1
    while raw[i] & 0x80:
        length |= (raw[i] & 0x7F) << shift
        shift, i = shift + 7, i + 1
    length |= raw[i] << shift
    return raw[i + 1:i + 1 + length]


def to_mlir(raw):
    """StableHLO for the dumped module, through the converters this jaxlib has."""
    errors = []
    for proto in (unwrap_hlo_proto(raw), raw):
        for convert in (lambda b: xc._xla.mlir.hlo_to_stablehlo(b),
                        lambda b: xc._xla.mlir.xla_computation_to_mlir_module(xc.XlaComputation(b))):
            try:
                return convert(proto)
            except Exception as e:  # the next form; say what each said if none works
                errors.append(repr(e)[:200])
    raise RuntimeError("; ".join(errors))


def compile_hlo(raw, device):
    """Compiles the dumped module on device, trying the entry points jaxlib has had."""
    mlir = to_mlir(raw)
    backend = device.client
    options = xc.CompileOptions()
    errors = []
    for call in (lambda: backend.compile_and_load(mlir, executable_devices=xc.DeviceList((device,)), compile_options=options),
                 lambda: backend.compile_and_load(mlir, xc.DeviceList((device,)), options),
                 lambda: backend.compile(mlir, compile_options=options)):
        try:
            return call()
        except Exception as e:  # the next form, then say what each one said
            errors.append(repr(e)[:300])
    raise RuntimeError("; ".join(errors))


def parameters(text):
    """The entry computation's parameters: (dtype, shape) in order."""
    entry = text[text.index("ENTRY"):]
    params = {}
    for m in re.finditer(r"(\w+)\[([\d,]*)\](?:\{[^}]*\})? parameter\((\d+)\)", entry):
        dims = tuple(int(d) for d in m.group(2).split(",") if d)
        params[int(m.group(3))] = (m.group(1), dims)
    return [params[i] for i in range(len(params))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--hlo", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--tsv", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seconds", type=float, default=3)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    text = open(a.hlo).read()
    device = jax.devices()[0]
    lengths = jax_profile.token_lengths(a.tokenizer, a.tsv)
    rng = np.random.default_rng(0)
    args, real = [], 0
    dtypes = {"f32": np.float32, "bf16": jax.numpy.bfloat16, "f16": np.float16, "s32": np.int32}
    for dt, shape in parameters(text):
        if dt == "s32" and len(shape) == 3 and shape[0] in (3, 4):  # the step's packed inputs
            k, rows, row_len = shape
            ids, pos, seg, real = jax_profile.pack(lengths[:400], rows, row_len)
            arrays = [ids, pos, seg] + ([(seg > 0).astype(np.int32)] if k == 4 else [])
            x = np.stack(arrays)
        elif dt == "s32":
            x = np.zeros(shape, np.int32)
        elif len(shape) == 1:  # norm weights and biases: near one, so the statistics stay sane
            x = (1 + 0.02 * rng.standard_normal(shape)).astype(dtypes[dt])
        else:
            x = (0.02 * rng.standard_normal(shape)).astype(dtypes[dt])
        args.append(jax.device_put(x, device))
    protos = glob.glob(a.hlo[:-len(".txt")] + "*.pb")
    if not protos:
        raise SystemExit(f"no proto dump beside {a.hlo}: {os.listdir(os.path.dirname(a.hlo))[:20]}")
    exe = compile_hlo(open(protos[0], "rb").read(), device)

    def step():
        return exe.execute_sharded(args)

    def wait(out):
        """Blocks until a step's results are ready, whichever result type this jaxlib returns."""
        if hasattr(out, "disassemble_into_single_device_arrays"):
            out = out.disassemble_into_single_device_arrays()
        jax.block_until_ready(out)

    wait(step())
    steps, t0 = 0, time.time()
    while time.time() - t0 < a.seconds:
        out = step()
        steps += 1
    wait(out)
    step_ms = (time.time() - t0) / steps * 1e3
    print(json.dumps({"hlo": os.path.basename(a.hlo), "real_tokens": real, "step_ms": round(step_ms, 3),
                      "real_tok_s": round(real / step_ms * 1e3)}), flush=True)
    trace = os.path.join(a.out, "trace")
    jax.profiler.start_trace(trace, create_perfetto_trace=True)
    for _ in range(10):
        out = step()
    wait(out)
    jax.profiler.stop_trace()
    table = jax_profile.kernel_table(trace, 10)
    json.dump(table, open(os.path.join(a.out, "kernels.json"), "w"), indent=1)
    print(json.dumps({k: v for k, v in table.items() if k != "top"}), flush=True)
    for row in table.get("top", [])[:25]:
        print(json.dumps(row))


if __name__ == "__main__":
    sys.exit(main())
