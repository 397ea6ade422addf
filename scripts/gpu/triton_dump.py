#!/usr/bin/env python3
"""Summarise XLA's dump of our Triton kernels (issue 16): for each kernel of the full step
(modernbert_64x256), which passes ran, whether its dots became Hopper's wgmma
(ttng.warp_group_dot) or stayed mma.sync, whether loads went through cp.async or TMA, whether
the loops were flattened, pipelined or warp-specialised. The kernels' last TritonGPU IR (before
lowering to LLVM) and the summary go into OUT_DIR/ttgir.tgz.

usage: triton_dump.py DUMP_DIR OUT_DIR  (DUMP_DIR: --xla_dump_to with --xla_dump_emitter_re=triton;
XLA writes MODULE.KERNEL.ttir.txt, the kernel as handed to Triton, and
MODULE.KERNEL.triton-to-llvm.txt, the IR before each pass down to LLVM; no PTX)
"""
import glob
import json
import os
import re
import sys
import tarfile

HEADER = re.compile(r"^// -----// IR Dump (Before|After) (\S+)")
MARKS = ["ttng.warp_group_dot", "ttng.warp_group_dot_wait", "ttg.async_copy_global_to_local", "ttg.async_wait",
         "ttng.async_tma_copy", "tt.descriptor_load", "ttg.warp_specialize", "tt.warp_specialize", "tt.flatten",
         "ttng.init_barrier", "ttg.local_alloc", "tt.dot ", "ttg.mma", "#ttg.nvidia_mma", "versionMajor = 3",
         "versionMajor = 2", "scf.for ", "scf.if ", "loop.stage", "tt.num_stages", "wgmma", "mma.sync"]


def summarise(path, keep):
    # The log is a run of sections, each "IR Dump Before X" or "After X" and the module then.
    # The last TritonGPU IR is the last section before the IR was lowered to LLVM's dialect:
    # "Before ConvertTritonGPUToLLVM" is still TritonGPU, "After" it is not. XLA's build prints
    # only the "Before" sections.
    passes, last_ttgir, current, lowered, section = [], [], [], False, None
    def close():
        nonlocal last_ttgir, lowered
        if section is None:
            return
        kind, name = section
        lowering = "llvm" in name.lower()
        if kind == "After" and lowering:
            lowered = True
        if not lowered:
            last_ttgir = current
        if kind == "Before" and lowering:
            lowered = True
    with open(path, errors="replace") as f:
        for line in f:
            m = HEADER.match(line)
            if m:
                close()
                passes.append(m.group(2).rstrip(":"))
                section, current = (m.group(1), m.group(2)), []
                continue
            current.append(line)
    close()
    final, ttgir = "".join(current), "".join(last_ttgir)
    name = os.path.basename(path).rsplit(".triton-to-llvm.txt", 1)[0]
    keep[name + ".ttgir.mlir"] = ttgir
    return {
        "kernel": name,
        "mb": round(os.path.getsize(path) / 1e6, 1),
        "passes": len(passes),
        "fuse_nested": [p for p in passes if "fuse" in p.lower() or "flatten" in p.lower()],
        "pipeline": [p for p in passes if "pipelin" in p.lower() or "warp" in p.lower() or "schedul" in p.lower()],
        "ttgir": {k: ttgir.count(k) for k in MARKS if ttgir.count(k)},
        "final": {k: final.count(k) for k in MARKS if final.count(k)},
        "shared": re.findall(r'"ttg.shared" = (\d+)', ttgir)[:1],
        "head": "" if passes else "".join(open(path, errors="replace").readlines()[:40])[:3000],
    }, passes


def main():
    dump, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    files = sorted(glob.glob(os.path.join(dump, "*embedbench_*.triton-to-llvm.txt")))
    full = [f for f in files if "64x256" in os.path.basename(f)]
    files = full or files
    print(f"kernel logs: {len(files)}")
    keep, rows, all_passes = {}, [], []
    for path in files:
        row, passes = summarise(path, keep)
        rows.append(row)
        all_passes = all_passes or passes
        print(json.dumps(row)[:1500])
    print("passes:", " ".join(all_passes)[:3000])
    with open(os.path.join(dump, "summary.json"), "w") as f:
        json.dump({"kernels": rows, "passes": all_passes}, f, indent=1)
    with tarfile.open(os.path.join(out, "ttgir.tgz"), "w:gz") as tar:  # one file: the device tool brings back few
        tar.add(os.path.join(dump, "summary.json"), arcname="summary.json")
        for path in sorted(glob.glob(os.path.join(dump, "*embedbench_*.ttir.txt")))[:12]:
            tar.add(path, arcname=os.path.basename(path))
        for name, text in keep.items():
            p = os.path.join(dump, name)
            with open(p, "w") as f:
                f.write(text)
            tar.add(p, arcname=name)


if __name__ == "__main__":
    main()
