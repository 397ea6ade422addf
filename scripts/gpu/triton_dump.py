#!/usr/bin/env python3
"""Summarise XLA's dump of our Triton kernels (issue 16): for each kernel of the full step
(modernbert_64x256), whether its dots became Hopper's wgmma (ttng.warp_group_dot) or stayed
mma.sync, whether its loads went through async copies (cp.async) or TMA, and how many loops it
kept. Each kernel's last TritonGPU IR that still has its loops (the IR before SCF's lowering to
branches), the pass list and the summary go into OUT_DIR/ttgir.tgz, one file, since the device
tool brings back few.

usage: triton_dump.py DUMP_DIR OUT_DIR  (DUMP_DIR: --xla_dump_to with --xla_dump_emitter_re=triton;
XLA writes MODULE.KERNEL.ttir.txt, the kernel as handed to Triton, and
MODULE.KERNEL.triton-to-llvm.txt, the IR before each pass down to LLVM; no PTX)
"""
import glob
import io
import itertools
import json
import os
import re
import sys
import tarfile

HEADER = re.compile(r"^// -----// IR Dump (Before|After) (\S+)")
MARKS = ["ttng.warp_group_dot", "ttng.warp_group_dot_wait", "ttg.async_copy_global_to_local", "ttg.async_wait",
         "ttng.async_tma_copy", "tt.descriptor_load", "ttg.warp_specialize", "ttng.init_barrier", "ttg.local_alloc",
         "versionMajor = 3", "versionMajor = 2", '"scf.for"', '"scf.if"', "loop.stage", "tt.num_stages"]


def lowers_loops(name):
    """Whether the pass takes the IR out of what this summary reads: SCF's loops to branches,
    or anything to LLVM's dialect."""
    n = name.lower()
    return "scftocontrolflow" in n or "llvm" in n


def summarise(path):
    # The log is a run of sections, "IR Dump Before X" or "After X", each with the module then
    # (XLA's build prints only "Before"). Kept: the last section before the IR lost its loops.
    passes, kept, current, section, done = [], [], [], None, False
    def close():
        nonlocal kept, done
        if section is None or done:
            return
        kind, name = section
        if kind == "After" and lowers_loops(name):
            done = True
            return
        kept = current
        if kind == "Before" and lowers_loops(name):
            done = True
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
    ttgir = "".join(kept)
    with open(path, errors="replace") as f:
        head = "" if passes else "".join(itertools.islice(f, 40))[:3000]
    return {
        "kernel": os.path.basename(path).rsplit(".triton-to-llvm.txt", 1)[0],
        "mb": round(os.path.getsize(path) / 1e6, 1),
        "passes": len(passes),
        "ttgir": {k: ttgir.count(k) for k in MARKS if ttgir.count(k)},
        "shared_bytes": re.findall(r"ttg\.shared = (\d+)", ttgir)[:1],
        "head": head,
    }, passes, ttgir


def add_text(tar, name, text):
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tar.addfile(info, io.BytesIO(data))


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    dump, out = sys.argv[1], sys.argv[2]
    if not os.path.isdir(dump):
        sys.exit(f"{dump}: no such dump")
    os.makedirs(out, exist_ok=True)
    files = sorted(glob.glob(os.path.join(dump, "*embedbench_*.triton-to-llvm.txt")))
    files = [f for f in files if "64x256" in os.path.basename(f)] or files
    print(f"kernel logs: {len(files)}")
    rows, all_passes = [], []
    with tarfile.open(os.path.join(out, "ttgir.tgz"), "w:gz") as tar:
        for path in files:
            row, passes, ttgir = summarise(path)
            rows.append(row)
            all_passes = all_passes or passes
            print(json.dumps(row)[:1500])
            add_text(tar, row["kernel"] + ".ttgir.mlir", ttgir)
        for path in sorted(glob.glob(os.path.join(dump, "*embedbench_*.ttir.txt")))[:12]:
            tar.add(path, arcname=os.path.basename(path))
        add_text(tar, "summary.json", json.dumps({"kernels": rows, "passes": all_passes}, indent=1))
    print("passes:", " ".join(all_passes)[:3000])


if __name__ == "__main__":
    main()
