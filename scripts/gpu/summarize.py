#!/usr/bin/env python3
"""Small helpers for the GPU benchmark scripts, over embedbench stress result files.

  summarize.py DIR LABEL           one line: the run's throughput, latency, success, GPU
  summarize.py --peak ROOT PREFIX  highest passages/s among ROOT/PREFIX*/ runs
  summarize.py --best-file ROOT PREFIX   the result file of that run
  summarize.py --phases METRICS [BEFORE]  mean ms a step spends in each phase (pack, upload,
                                   execute, download, unpack), from a /metrics scrape, or over the
                                   steps since an earlier scrape BEFORE
"""
import glob
import json
import os
import re
import sys


def results(root, prefix):
    for d in sorted(glob.glob(os.path.join(root, prefix + "*"))):
        for f in glob.glob(os.path.join(d, "stress_test_results_*.json")):
            yield f, json.load(open(f))


def line(label, r):
    lat = r["latency_metrics"]
    gpu = r.get("gpu_utilization_percent")
    tps = r.get("tokens_per_second")
    tps = "-" if tps is None else round(tps)
    gpu = "-" if gpu is None else round(gpu)
    # The card's power and SM clock: under full load the H200 sits at its power limit and
    # lowers its clock (session 14), which moves every figure on the line.
    dev = ((r.get("gpu") or {}).get("devices") or [{}])[0]
    card = ""
    if dev.get("power_mean_watts") is not None and dev.get("sm_clock_mean_mhz") is not None:
        card = f" {dev['power_mean_watts']:.0f} W {dev['sm_clock_mean_mhz']:.0f} MHz"
    return (f"{label:22s} req/s {r['requests_per_second']:8.1f}  passages/s {r['passages_per_second']:9.1f}  "
            f"tokens/s {tps:>9}  p50 {lat['p50']*1000:8.1f} ms  "
            f"p99 {lat['p99']*1000:8.1f} ms  success {r['success_rate']*100:6.2f}%  GPU {gpu}%{card}")


PHASES = ["pack", "upload", "execute", "download", "unpack"]


def phase_totals(path):
    sums, counts = {}, {}
    for l in open(path):
        m = re.match(r'embedbench_step_phase_seconds_(sum|count)\{phase="(\w+)"\} (\S+)', l)
        if m:
            (sums if m[1] == "sum" else counts)[m[2]] = float(m[3])
    return sums, counts


def phases(path, before=None):
    sums, counts = phase_totals(path)
    if before:  # the steps between two scrapes of the same server
        s0, c0 = phase_totals(before)
        sums = {p: v - s0.get(p, 0) for p, v in sums.items()}
        counts = {p: v - c0.get(p, 0) for p, v in counts.items()}
    if not any(counts.values()):
        sys.exit(f"no step phases in {path}")
    order = sorted(counts, key=lambda p: (PHASES.index(p) if p in PHASES else len(PHASES), p))
    print("  ".join(f"{p} {1000 * sums[p] / counts[p]:.3f} ms" for p in order if counts[p]),
          f"({int(max(counts.values()))} steps)")


def main():
    if sys.argv[1] == "--phases":
        phases(sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None)
        return
    if sys.argv[1] in ("--peak", "--best-file"):
        found = list(results(sys.argv[2], sys.argv[3]))
        if not found:
            sys.exit(f"no results for {sys.argv[3]}")
        f, r = max(found, key=lambda fr: fr[1]["passages_per_second"])
        print(f if sys.argv[1] == "--best-file" else r["passages_per_second"])
        return
    d, label = sys.argv[1], sys.argv[2]
    files = glob.glob(os.path.join(d, "stress_test_results_*.json"))
    if not files:
        print(f"{label:22s} NO RESULT: " + open(os.path.join(d, "stdout.txt")).read()[-300:].replace("\n", " | "))
        return
    print(line(label, json.load(open(files[0]))), flush=True)


if __name__ == "__main__":
    main()
