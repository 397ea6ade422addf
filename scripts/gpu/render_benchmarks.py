#!/usr/bin/env python3
"""Write docs/BENCHMARKS.md from the raw files the GPU scripts bring back.

  render_benchmarks.py --model-run docs/benchmarks/h200/run1-model \
      --service-run docs/benchmarks/h200/run3-service --out docs/BENCHMARKS.md

The model run is what scripts/gpu/bench_model.sh packs (part1.tgz), the service run what
scripts/gpu/bench_service.sh packs (part2.tgz), with each stress result copied to
results/<label>.json. --latency-run is what scripts/gpu/latency.sh brings back (stress/<label>/
with one result file each): the latency-against-throughput curve. Every number on the page
comes from those files.
"""
import argparse
import glob
import json
import os
import re


def jsonl(path):
    out = []
    if os.path.exists(path):
        for line in open(path):
            line = line.strip()
            if line.startswith("{"):
                out.append(json.loads(line))
    return out


def fmt_tok(x):
    return f"{x / 1e6:.2f} M" if x >= 1e6 else f"{x / 1e3:.0f} k"


def ms(x):
    return f"{x * 1000:.1f}"


def service_rows(results):
    rows = []
    for label in sorted(results, key=lambda l: (l.split("_")[0], l.split("_")[1][0], int(re.sub(r"\D", "", l.split("_")[1]) or 0))):
        r = results[label]
        lat = r["latency_metrics"]
        ol = r.get("open_loop")
        load = (f"open loop {ol['target_rate']:.1f} req/s" if ol else
                f"closed loop, {r['config']['max_concurrent_requests']} concurrent")
        tps = r.get("tokens_per_second")
        gpu = r.get("gpu_utilization_percent")
        errs = ", ".join(f"{k} {v}" for k, v in sorted((r.get("errors") or {}).items())) or "-"
        rows.append(f"| {label} | {load} | {r['requests_per_second']:.1f} | {r['passages_per_second']:,.0f} | "
                    f"{fmt_tok(tps) if tps else '-'} | {ms(lat['p50'])} | {ms(lat['p90'])} | {ms(lat['p99'])} | "
                    f"{r['success_rate'] * 100:.1f}% | {errs} | {'-' if gpu is None else f'{gpu:.0f}%'} |")
    return rows


def ladder_of(run):
    """The compiled steps as the server's "replica ready" log line lists them."""
    log = os.path.join(run, "server_cont.log")
    if os.path.exists(log):
        for line in open(log):
            if '"replica ready"' in line:
                return "its compiled steps (rows × row length): " + ", ".join(
                    s.split("/")[0] for s in json.loads(line)["shapes"].split())
    return "the default step ladder of its build"


def latency_section(run):
    """The latency curve of scripts/gpu/latency.sh's runs: one series per service and client
    batch size (as `embedbench compare` groups them in its HTML report), points by achieved
    requests/s, and issue 13's targets checked against the same files."""
    res = {}
    for f in glob.glob(os.path.join(run, "stress", "*", "*.json")):
        res[os.path.basename(os.path.dirname(f))] = json.load(open(f))
    if not res:
        # Runs before session 19 lost theirs: .gitignore kept stress_test_results_*.json out.
        raise SystemExit(f"{run}: no stress results (stress/*/*.json) to draw the latency section from")
    series = {}
    for label, r in res.items():
        sv = r.get("server") or {}
        name = f"{sv.get('engine', '?')} {sv.get('dtype', '?')}, batch {r['config']['batch_size']}"
        series.setdefault(name, []).append((label, r))
    L = []
    w = L.append
    w(f"## Latency against throughput ({os.path.basename(os.path.normpath(run)).split('-')[0].replace('run', 'run ')}, the step ladder)")
    w("")
    cfg = next(iter(res.values()))["config"] if res else {}
    w(f"One H200, one device call, {cfg.get('duration_seconds', '?'):g} s per load after {cfg.get('warmup_seconds', '?'):g} s "
      "of warm-up: our continuous engine (bf16, "
      f"{ladder_of(run)}) and the seed's HF backend "
      "(`scripts/gpu/hf_service.py`, fp32, one request at a time), same random checkpoint, MS MARCO passages. "
      "Closed loop at 1 to 256 concurrent clients, and open loop at 50% and 70% of the batch-32 peak "
      "(latency from the intended send time). A request carries the batch size's texts. "
      f"Reproduce: `scripts/gpu/latency.sh`. Raw files: `{run}/`; the chart is in "
      f"`{run}/report.html` (`embedbench compare --html`, chart \"Latency against throughput\").")
    w("")
    w("| series | run | load | achieved req/s | passages/s | p50 ms | p99 ms |")
    w("| --- | --- | --- | --- | --- | --- | --- |")
    order = sorted(series, key=lambda n: (not n.startswith("continuous"), int(n.rsplit(" ", 1)[1])))
    for name in order:
        for label, r in sorted(series[name], key=lambda x: x[1]["requests_per_second"]):
            ol = r.get("open_loop")
            load = (f"open loop {ol['target_rate']:.1f} req/s" if ol else
                    f"closed loop, {r['config']['max_concurrent_requests']} concurrent")
            lat = r["latency_metrics"]
            w(f"| {name} | {label} | {load} | {r['requests_per_second']:,.1f} | {r['passages_per_second']:,.0f} | "
              f"{lat['p50'] * 1000:.2f} | {lat['p99'] * 1000:.2f} |")
    w("")

    def ok(cond):
        return "yes" if cond else "**no**"

    def lat(label, q):
        return res[label]["latency_metrics"][q] * 1000

    need = ["cont_b1_c1", "cont_b32_c1", "cont_b1_c8", "cont_b1_c256", "cont_b32_c32", "cont_b32_rate50", "cont_b32_rate70"]
    if all(n in res for n in need):
        c256, sat = res["cont_b1_c256"], res["cont_b32_c32"]
        one32 = lat("cont_b32_c1", "p50")
        w("Issue 13's targets, from the same files:")
        w("")
        w("| target | measured | met |")
        w("| --- | --- | --- |")
        w(f"| 1 text, 1 client: p50 ≤ 3.5 ms | {lat('cont_b1_c1', 'p50'):.2f} ms | {ok(lat('cont_b1_c1', 'p50') <= 3.5)} |")
        w(f"| 32 passages, 1 client: p50 ≤ 6 ms | {one32:.2f} ms | {ok(one32 <= 6)} |")
        w(f"| 1 text, 8 clients: p50 ≤ 5 ms | {lat('cont_b1_c8', 'p50'):.2f} ms | {ok(lat('cont_b1_c8', 'p50') <= 5)} |")
        w(f"| 1 text, 256 clients: ≥ 16,000 req/s with p99 ≤ 25 ms | {c256['requests_per_second']:,.0f} req/s, p99 {lat('cont_b1_c256', 'p99'):.1f} ms | "
          f"{ok(c256['requests_per_second'] >= 16000 and lat('cont_b1_c256', 'p99') <= 25)} |")
        w(f"| 32 passages at saturation: ≥ 1.37 M tokens/s | {sat['tokens_per_second'] / 1e6:.3f} M ({sat['passages_per_second']:,.0f} passages/s) | "
          f"{ok(sat['tokens_per_second'] >= 1.37e6)} |")
        for pct in ("50", "70"):
            p99 = lat(f"cont_b32_rate{pct}", "p99")
            w(f"| open loop at {pct}% of peak, 32 passages: p99 ≤ 3× the one-client p50 ({3 * one32:.1f} ms) | {p99:.1f} ms | {ok(p99 <= 3 * one32)} |")
        w("")
    return L


FP32_LABELS = {
    "float32_fused": "fp16 attention and Wo (default)",
    "float32_fused_again": "fp16 attention and Wo (default), rerun",
    "float32_wo32": "fp16 attention, Wo as a TF32 product (wo-f32)",
    "float32_wo32_again": "fp16 attention, Wo as a TF32 product (wo-f32), rerun",
    "float32_xla": "XLA's attention, TF32 (xla-attention; the default before)",
    "bfloat16": "bfloat16, for reference",
}


def fp32_section(runs):
    """float32 on the GPU (issue 16's fp32 target): scripts/gpu/fp32_attention.sh's folders, each
    one call: model-only throughput of the variants, parity with HF fp32, HF's rows when run."""
    L = []
    w = L.append
    w("## float32 on the GPU: attention and its output projection in fp16")
    w("")
    w("A float32 model's attention runs in cuDNN's fused kernel in fp16 (TF32's 10-bit mantissa; scores and softmax in "
      "fp32 inside the kernel) and the output projection Wo in fp16 too; the residual stream, LayerNorm, the MLP and the "
      "other products stay float32 (TF32 products, XLA's default on the GPU). `bench-model --dtype float32 --step-slots "
      "16384`, two callers, MS MARCO, 10 s each; parity as above on the 63 texts of up to 1,024 tokens (`--max-length 1024`). "
      "Target (issue 16): ≥ 0.8 M real tokens/s with cosine ≥ 0.99999 and max abs diff ≤ 1e-4 against HF fp32.")
    w("")
    w("| run | graph | real tokens/s | step ms (2 in flight) | compile | GPU memory |")
    w("| --- | --- | --- | --- | --- | --- |")
    for run in runs:
        for label, name in FP32_LABELS.items():
            f = os.path.join(run, f"model_{label}.json")
            if not os.path.exists(f):
                continue
            r = json.load(open(f))
            w(f"| {os.path.basename(run)} | {name} | {fmt_tok(r['tokens_per_second'])} | {r['mean_step_ms']:.1f} | "
              f"{r['compile_seconds']:.1f} s | {r.get('gpu_memory_used_bytes', 0) / 2**30:.1f} GiB |")
        for r in jsonl(os.path.join(run, "hf_model.jsonl")):
            w(f"| {os.path.basename(run)} | HF transformers 5.17 ({r['attention']}, {r['dtype']}, batch {r['batch']}) | "
              f"{fmt_tok(r['tokens_per_s'])} | | | |")
    w("")
    w("| run | ours | HF | texts | cosine min | max abs diff |")
    w("| --- | --- | --- | --- | --- | --- |")
    for run in runs:
        parity = jsonl(os.path.join(run, "parity_upto1024.jsonl")) or jsonl(os.path.join(run, "parity.jsonl"))
        for p in parity:
            label = p["ours"].replace("ours ", "")
            w(f"| {os.path.basename(run)} | {FP32_LABELS.get(label, label)} | {p['against_hf']} | {p['n']} | "
              f"{p['cosine_min']:.10f} | {p['max_abs_diff']:.1e} |")
    w("")
    return L


def cpu_section(runs):
    """The CPU path (issue 14): bench-model on CPU, full size, in each folder given; HF
    transformers beside it where the same call measured it (scripts/gpu/cpu_vs_hf.sh)."""
    L = []
    w = L.append
    w("## CPU: the full model without a GPU")
    w("")
    w("`embedbench bench-model --device cpu`, ModernBERT-base's full shapes with random weights, MS MARCO passages, "
      "model only, real tokens. The linear layers do 0.2206 GFLOP a token; the sgemm column is the loaded library's own "
      "rate on the model's widest projection, measured by bench-model right after on the same cores. Where HF transformers "
      "ran in the same call (fp32, sdpa, length-sorted batches of 32, torch on the same 2 cores), its rate and ours over it; "
      "rates of different calls on the GPU machine's CPU differ by up to a quarter, so compare within a call.")
    w("")
    w("| machine | library | dtype | tokens/s | linear GFLOP/s | sgemm GFLOP/s | HF fp32 tokens/s | ours / HF |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for run in runs:
        cpu_name = "?"
        lscpu = os.path.join(run, "lscpu.txt")
        if os.path.exists(lscpu):
            m = re.search(r"Model name:\s*(.+)", open(lscpu).read())
            cpu_name = m.group(1).strip() if m else "?"
        hf_path = os.path.join(run, "hf_bench.json")
        hf = json.load(open(hf_path)) if os.path.exists(hf_path) else None
        for f in sorted(glob.glob(os.path.join(run, "*bench*.json"))):
            if os.path.basename(f) == "hf_bench.json":
                continue
            r = json.load(open(f))
            if "tokens_per_second" not in r or "cpu" not in r.get("model", {}):
                continue
            lib = re.search(r"through (?:BLAS )?(\S+)", r["model"]["cpu"])
            lib = os.path.basename(lib.group(1)) if lib else "?"
            products = re.search(r"as (\w+) products", r["model"]["cpu"])
            dtype = r["model"]["dtype"] + (f" ({products.group(1)} products)" if products else "")
            cores = "2 cores (taskset)" if hf else "2 cores"
            cores += ", the GPU machine's CPU" if "h200" in run else ", this project's machine"
            hf_cells = f"{hf['tokens_per_s']:,.0f} | {r['tokens_per_second'] / hf['tokens_per_s']:.2f}×" if hf else "| "
            w(f"| {cpu_name}, {cores} | {lib} | {dtype} | {r['tokens_per_second']:,.0f} | "
              f"{r.get('linear_gflops_per_second', 0):.0f} | {r.get('cpu_sgemm_gflops_per_second', 0):.0f} | {hf_cells} |")
    w("")
    w("Parity on CPU, full size, 98 texts of 39 to 2,002 tokens, against HF fp32: " + "; ".join(
        f"{p['ours']}: cosine min {p['cosine_min']:.8f}, max abs diff {p['max_abs_diff']:.1e}"
        for run in runs for f in sorted(glob.glob(os.path.join(run, "parity*.json"))) for p in [json.load(open(f))]) + ".")
    w("")
    w("Raw files: " + ", ".join(f"`{r}/`" for r in runs) + "; the story in `docs/notes/cpu.md`.")
    w("")
    return L


def rungs_section(run):
    """bench-model --per-rung's files (scripts/gpu/rungs.sh): one table row per timed rung."""
    L = []
    w = L.append
    files = sorted(glob.glob(os.path.join(run, "rungs_*.json")))
    if not files:
        return L
    reports = [json.load(open(f)) for f in files]
    timed = [g["seconds"] for r in reports for g in r["rungs"] if not g.get("skipped")]
    longest = max(r["max_passage_tokens"] for r in reports)
    w(f"## Model only, per rung of the step ladder ({os.path.basename(os.path.normpath(run)).split('-')[0].replace('run', 'run ')})")
    w("")
    w("`embedbench bench-model --per-rung` on one H200 (`scripts/gpu/rungs.sh`, `ladder.sh`): each compiled step timed "
      f"alone for {min(timed):.0f} s, every call filling exactly one step of it with MS MARCO passages (those that run on its row length). "
      "Step time is the mean wall time of a step on the device; with 2 callers a step shares the GPU with the next one, "
      "so the one-caller rows give a step's own time. Occupancy is the share of the step's token slots holding real tokens. "
      f"Raw files: `{run}/`.")
    w("")
    w("| dtype | layout | callers | rung (rows × row length) | slots | step ms | real tokens/s | occupancy |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- |")
    skipped = set()
    for r in reports:
        for g in r["rungs"]:
            if g.get("skipped"):
                skipped.add((g["row_length"], g["rows"]))
                continue
            w(f"| {r['model']['dtype']} | {g['layout']} | {g['callers']} | {g['rows']} × {g['row_length']} | {g['slots']:,} | "
              f"{g['mean_step_ms']:.2f} | {fmt_tok(g['tokens_per_second'])} | {g['occupancy']:.3f} |")
    w("")
    if skipped:
        w(f"Not timed: {', '.join(f'{rows} × {l}' for l, rows in sorted(skipped))}, rows that no passage of the sample "
          f"(at most {longest} tokens) reaches.")
        w("")
    return L


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-run", required=True)
    ap.add_argument("--service-run", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tokenizer-run", default="", help="a folder with tokenizer_go.txt and tokenizer_hf.json from one call (default: the model run's)")
    ap.add_argument("--latency-run", default="", help="a folder from scripts/gpu/latency.sh (stress/<label>/*.json): the latency curve section")
    ap.add_argument("--rungs-run", default="", help="a folder from scripts/gpu/rungs.sh (rungs_*.json): the per-rung section")
    ap.add_argument("--cpu-runs", default="", help="comma-separated folders of CPU bench-model files (cpu_vs_hf.sh's, or a machine's own): the CPU section")
    ap.add_argument("--fp32-runs", default="", help="comma-separated folders from scripts/gpu/fp32_attention.sh: the GPU float32 section")
    ap.add_argument("--notes", default="", help="a markdown file appended as the page's last section")
    a = ap.parse_args()
    m, s = a.model_run, a.service_run
    machine = open(os.path.join(m, "machine.txt")).read().split("\n")
    res = {os.path.basename(f)[:-5]: json.load(open(f)) for f in glob.glob(os.path.join(s, "results", "*.json"))}

    def peak(prefix):
        runs = [r for l, r in res.items() if l.startswith(prefix + "_c")]
        return max(runs, key=lambda r: r["passages_per_second"])

    cont, hf, seq, c32 = peak("cont-bf16"), peak("hf-fp32"), peak("seq-fp32"), peak("cont-fp32")
    model = {dt: json.load(open(os.path.join(m, f"model_{dt}.json"))) for dt in ("bfloat16", "float32")}
    hfm = jsonl(os.path.join(m, "hf_model.jsonl"))
    best_hf = max(hfm, key=lambda r: r["tokens_per_s"])
    hf_fp32_b32 = next(r for r in hfm if r["dtype"] == "float32")
    parity = jsonl(os.path.join(m, "parity.jsonl"))
    t = a.tokenizer_run or m
    tok = open(os.path.join(t, "tokenizer_go.txt")).read()
    tok_rate = {k + (f" x{c}" if c else ""): float(v) for k, c, v in re.findall(r"Benchmark\S*?/(\w+?)(?:-(\d+))?\s+\d+\s+[\d.]+ ns/op\s+[\d.]+ MB/s\s+([\d.]+) passages/s", tok)}
    hf_path = os.path.join(t, "tokenizer_hf.json")
    tok_hf = json.load(open(hf_path)) if os.path.exists(hf_path) and os.path.getsize(hf_path) else None
    fair = {os.path.basename(f): json.load(open(f)) for f in glob.glob(os.path.join(s, "fairness_*.json"))}
    r70, r50 = res.get("cont-bf16_rate70"), res.get("cont-bf16_rate50")
    hfp, chfp = res.get("hf-fp32_hfpeak"), res.get("cont-bf16_hfpeak")
    pf32 = next(p for p in parity if p["ours"] == "ours float32" and p["against_hf"] == "float32")
    pbf = next(p for p in parity if p["ours"] == "ours bfloat16" and p["against_hf"] == "float32")
    tok_s = lambda r: r.get("tokens_per_second") or 0

    def ok(cond):
        return "yes" if cond else "**no**"

    L = []
    w = L.append
    w("# Benchmarks")
    w("")
    w(f"Machine: one {machine[0].split(',')[0]} (driver {machine[0].split(',')[1].strip()}), {machine[2]} CPU cores "
      f"({machine[1].split(':')[-1].strip()}). **Weights: random** — ModernBERT-base's real shapes, initialised by HF "
      "transformers from seed 0 (no checkpoint can be downloaded here); speed does not depend on the values. "
      "Data: MS MARCO passages from the shared sample (mean 80 tokens, max 218). Client batch 32.")
    w("")
    w("Reproduce: `scripts/gpu/bench_model.sh` and `scripts/gpu/bench_service.sh` on the GPU machine "
      "(see `scripts/gpu/README.md`), then this page with `scripts/gpu/render_benchmarks.py`. Notes on reading the numbers are at the end. Raw files: "
      f"`{m}/`, `{s}/` (with the HTML report, `report.html`).")
    w("")
    w("## Targets")
    w("")
    w("| target | measured | met |")
    w("| --- | --- | --- |")
    w(f"| tokenizer ≥ 25,000 passages/s on one core | {tok_rate.get('AppendIDs', 0):,.0f} passages/s | {ok(tok_rate.get('AppendIDs', 0) >= 25000)} |")
    w(f"| fp32 parity with HF: cosine ≥ 0.99999, max abs diff ≤ 1e-4 | cosine min {pf32['cosine_min']:.8f}, max abs {pf32['max_abs_diff']:.1e} (normalised vectors, 64 texts up to 1,000 tokens) | {ok(pf32['cosine_min'] >= 0.99999 and pf32['max_abs_diff'] <= 1e-4)} |")
    w(f"| bf16 parity: cosine ≥ 0.999 | {pbf['cosine_min']:.6f} against HF fp32 | {ok(pbf['cosine_min'] >= 0.999)} |")
    w(f"| model only, bf16 ≥ 1.3 M real tokens/s | {fmt_tok(model['bfloat16']['tokens_per_second'])} | {ok(model['bfloat16']['tokens_per_second'] >= 1.3e6)} |")
    w(f"| model only, fp32 ≥ 0.6 M real tokens/s | {fmt_tok(model['float32']['tokens_per_second'])} | {ok(model['float32']['tokens_per_second'] >= 0.6e6)} |")
    w(f"| model only, bf16 ≥ 4× HF transformers' best ({fmt_tok(best_hf['tokens_per_s'])}) | {model['bfloat16']['tokens_per_second'] / best_hf['tokens_per_s']:.1f}× | {ok(model['bfloat16']['tokens_per_second'] >= 4 * best_hf['tokens_per_s'])} |")
    w(f"| service, continuous ≥ 1.0 M real tokens/s end to end (≈ 12,500 passages/s) | {fmt_tok(tok_s(cont))} ({cont['passages_per_second']:,.0f} passages/s) | {ok(tok_s(cont) >= 1e6)} |")
    w(f"| service, sequential within 20% of HF's fp32 batch-32 model-only figure ({hf_fp32_b32['passages_per_s']:.0f} passages/s) | {seq['passages_per_second']:,.0f} passages/s | faster, not within: see notes |")
    if r70:
        w(f"| p99 ≤ 3× p50 at 70% of the continuous engine's peak | p50 {ms(r70['latency_metrics']['p50'])} ms, p99 {ms(r70['latency_metrics']['p99'])} ms ({r70['latency_metrics']['p99'] / r70['latency_metrics']['p50']:.2f}×) | {ok(r70['latency_metrics']['p99'] <= 3 * r70['latency_metrics']['p50'])} |")
    w(f"| continuous ≥ 5× the HF reference's peak throughput | {cont['passages_per_second'] / hf['passages_per_second']:.1f}× ({cont['passages_per_second']:,.0f} vs {hf['passages_per_second']:,.0f} passages/s) | {ok(cont['passages_per_second'] >= 5 * hf['passages_per_second'])} |")
    if hfp and chfp:
        w(f"| continuous p99 below the reference's at the reference's peak rate ({hfp['open_loop']['target_rate']:.1f} req/s) | {ms(chfp['latency_metrics']['p99'])} ms vs {ms(hfp['latency_metrics']['p99'])} ms | {ok(chfp['latency_metrics']['p99'] < hfp['latency_metrics']['p99'])} |")
    w("")
    w("## Tokenizer (CPU of the GPU machine)")
    w("")
    w("| encoder | passages/s |")
    w("| --- | --- |")
    for k, v in tok_rate.items():
        cores = k.split(" x")[1] + " cores" if " x" in k else "one core"
        w(f"| embedbench `{k.split(' x')[0]}` ({cores}) | {v:,.0f} |")
    if tok_hf:
        w(f"| HF tokenizers {tok_hf['tokenizers_version']} `encode`, one passage at a time from Python | {tok_hf['encode_one_at_a_time']['passages_per_s']:,.0f} |")
        w(f"| HF tokenizers {tok_hf['tokenizers_version']} `encode_batch`, {tok_hf['encode_batch']['threads']} threads | {tok_hf['encode_batch']['passages_per_s']:,.0f} |")
    else:
        w("| HF tokenizers | not measured in this run (GPU.md: about 5,500 one at a time, 40,000 with 16-thread encode_batch) |")
    w("")
    w("Ids are identical to HF tokenizers 0.23.2 on all 4,103 + 5,000 passages of both MS MARCO samples, 148 hard cases (with byte offsets) and 462 truncation cases (`internal/tokenizer` tests).")
    w("")
    w("## Model: parity with HF transformers (full size, random weights)")
    w("")
    w("| ours | HF | texts | cosine min | cosine mean | max abs diff |")
    w("| --- | --- | --- | --- | --- | --- |")
    for p in parity:
        w(f"| {p['ours']} | {p['against_hf']} | {p['n']} | {p['cosine_min']:.8f} | {p['cosine_mean']:.8f} | {p['max_abs_diff']:.1e} |")
    w("")
    w("HF: `ModernBertModel`, eager attention, TF32 off, mean pooling, L2-normalised; ours through `embedbench embed --device cuda`. 56 MS MARCO passages plus 8 texts of 500-1,000 tokens (the sliding window matters).")
    w("")
    w("## Model only: ids in, pooled vectors out")
    w("")
    w("| implementation | dtype | layout | real tokens/s | passages/s | padding waste | compile at start | GPU memory |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for dt, r in model.items():
        w(f"| embedbench (GoMLX + XLA) | {dt} | packed rows of 256, {r['model']['shapes'][0]} | {fmt_tok(r['tokens_per_second'])} | {r['sequences_per_second']:,.0f} | {r['padding_waste'] * 100:.1f}% | {r['compile_seconds']:.1f} s | {r.get('gpu_memory_used_bytes', 0) / 2**30:.1f} GiB |")
    for r in hfm:
        w(f"| HF transformers 5.17 ({r['attention']}) | {r['dtype']} | batch {r['batch']}{', sorted' if r['sorted'] else ''}, padded | {fmt_tok(r['tokens_per_s'])} | {r['passages_per_s']:,.0f} | | | |")
    sweep = jsonl(os.path.join(m, "sweep_bf16.jsonl"))
    if sweep:
        w("")
        w("bf16 sweep of the step size (token slots per step), packed row length and callers (one run each):")
        w("")
        w("| slots/step | row | callers | real tokens/s | waste | step ms |")
        w("| --- | --- | --- | --- | --- | --- |")
        for r in sweep:
            w(f"| {r['batch_tokens']} | {r['row']} | {r['callers']} | {fmt_tok(r['tok_s'])} | {r['waste'] * 100:.1f}% | {r['step_ms']} |")
    w("")
    w("## Services end to end (HTTP, `embedbench stress`)")
    w("")
    w("Peak of each row (best closed-loop run), side by side; ratios against the HF reference:")
    w("")
    w(open(os.path.join(s, "compare.md")).read().strip())
    w("")
    w("`memory used` above is the whole card (all four servers were up at once). Per process, from nvidia-smi:")
    w("")
    w("```")
    w(open(os.path.join(s, "gpu_processes.csv")).read().strip())
    w("```")
    w("")
    w("Every run (latency in ms, from the intended send time in open loop; GPU = NVML utilisation, the share of time any kernel ran):")
    w("")
    w("| run | load | req/s | passages/s | tokens/s | p50 | p90 | p99 | success | errors | GPU |")
    w("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    L.extend(service_rows(res))
    w("")
    w("Fairness (the same 256 passages through the HF reference and through ours):")
    w("")
    if not fair:
        w("- not run in this call (the HF reference did not come back after its flood); the model-level parity table above compares the same checkpoint.")
    for _, f in sorted(fair.items()):
        a_, b_ = f["a"], f["b"]
        ha, hb = a_.get('health') or {}, b_.get('health') or {}
        w(f"- {ha.get('backend', a_['url'])} ({ha.get('dtype', '?')}) vs {hb.get('backend', hb.get('engine', b_['url']))} ({hb.get('dtype', '?')}): "
          f"cosine min {f['min_cosine']:.6f}, mean {f['mean_cosine']:.6f} over {f['passages']} passages (threshold {f['threshold']})")
    if a.latency_run:
        w("")
        L.extend(latency_section(a.latency_run)[:-1])
    if a.rungs_run:
        w("")
        L.extend(rungs_section(a.rungs_run)[:-1])
    if a.fp32_runs:
        w("")
        L.extend(fp32_section(a.fp32_runs.split(","))[:-1])
    if a.cpu_runs:
        w("")
        L.extend(cpu_section(a.cpu_runs.split(","))[:-1])
    if a.notes and os.path.exists(a.notes):
        w("")
        w(open(a.notes).read().strip())
    open(a.out, "w").write("\n".join(L) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
