package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/embedbench/embedbench/internal/blas"
	"github.com/embedbench/embedbench/internal/dataset"
	"github.com/embedbench/embedbench/internal/gpu"
	"github.com/embedbench/embedbench/internal/modernbert"
)

func init() {
	register("bench-model", "model-only throughput: token ids in, pooled vectors out (no HTTP), as JSON", runBenchModel)
}

// benchModelReport is what bench-model prints: the figures of calls that each fill the largest
// step or, with --per-rung, one entry per rung of the ladder instead.
type benchModelReport struct {
	*modernbert.BenchResult
	Rungs              []modernbert.RungResult `json:"rungs,omitempty"`
	Model              modernbert.Info         `json:"model"`
	CompileSeconds     float64                 `json:"compile_seconds"`
	Clients            int                     `json:"clients"` // copies of the model, each on a PJRT client of its own (--clients)
	Passages           int                     `json:"passages"`
	MeanPassageTokens  float64                 `json:"mean_passage_tokens"`
	MaxPassageTokens   int                     `json:"max_passage_tokens"`
	GPUMemoryUsedBytes *uint64                 `json:"gpu_memory_used_bytes,omitempty"`
	GPUMemoryNote      string                  `json:"gpu_memory_note,omitempty"`
	GPUUtilization     *float64                `json:"gpu_utilization_percent,omitempty"`
	// LinearGFLOPS is the rate of the linear layers' work over the run (Config.LinearFLOPsPerToken
	// per real token: 0.2206 GFLOP for ModernBERT-base).
	LinearGFLOPS float64 `json:"linear_gflops_per_second,omitempty"`
	// On CPU with a BLAS: the BLAS's own sgemm rate on the model's widest projection, measured
	// right after the run on the same cores, and the share of it the model's linear layers got.
	CPUSgemmGFLOPS     float64 `json:"cpu_sgemm_gflops_per_second,omitempty"`
	LinearShareOfSgemm float64 `json:"linear_share_of_sgemm,omitempty"`
}

func runBenchModel(ctx context.Context, args []string) error {
	return benchModelCommand(ctx, args, os.Stdout)
}

func benchModelCommand(ctx context.Context, args []string, out io.Writer) error {
	fs := newFlagSet("bench-model")
	var mf modelFlags
	addModelFlags(fs, &mf, 512)
	data := fs.String("data", "", "passages: MS MARCO collection .tsv, BEIR .jsonl or parquet (required)")
	passages := fs.Int("passages", 20000, "passages read from --data")
	seconds := fs.Float64("seconds", 20, "how long to run")
	callers := fs.Int("callers", 0, "goroutines calling the model at once, so that host work overlaps device time (0: 2 on cuda, 1 on cpu, for each of --clients)")
	layoutName := fs.String("layout", "packed", "packed (many sequences per row) or padded (one per row, HF-style, batches of 32)")
	clients := fs.Int("clients", 1, "copies of the model, each on a PJRT client of its own (cuda; on cpu they share one), the callers spread over them: each client has its own device stream, so one copy's kernels can run in the gaps between another's; --memory-fraction caps each")
	perRung := fs.Bool("per-rung", false, "time each rung of the step ladder (--step-slots) in turn, --seconds each: calls that fill one step of it; reports step time, tokens/s and occupancy per rung")
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintln(out, "usage: embedbench bench-model --model DIR|ID [--weights random] [--device cpu|cuda] [--dtype bfloat16] --data collection.tsv [--seconds 20] [--layout packed|padded] [--per-rung]")
		fmt.Fprintln(out, "\nWithout --per-rung every call fills the largest step. With it, each rung of the ladder is")
		fmt.Fprintln(out, "timed on its own, with the passages that run on its row length; a rung none of them runs on")
		fmt.Fprintln(out, "(rows longer than every passage, say) is listed with the reason it was skipped.\n\nflags:")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *data == "" || *passages < 1 || !(*seconds >= 1e-3 && *seconds <= 1e6) { // NaN fails too
		fmt.Fprintln(fs.Output(), "--data is required; --passages must be positive and --seconds from 0.001 to 1e6")
		return errUsage
	}
	if *clients < 1 || (*clients > 1 && *perRung) || (*callers > 0 && *callers < *clients) {
		fmt.Fprintln(fs.Output(), "--clients must be positive, at most --callers (each copy needs a caller), and 1 with --per-rung (a rung is timed on one model)")
		return errUsage
	}
	layout, err := modernbert.ParseLayout(*layoutName)
	if err != nil {
		return fmt.Errorf("--layout: %w", err)
	}
	mon, err := gpu.Open()
	if err != nil {
		return err
	}
	defer mon.Close()

	m, tok, err := mf.load(ctx, layout)
	if err != nil {
		return err
	}
	defer m.Close()
	if tok == nil {
		return fmt.Errorf("--model %s has no tokenizer.json to tokenize --data with: pass --tokenizer", mf.model)
	}
	models := []*modernbert.Model{m}
	for c := 1; c < *clients; c++ {
		mf.client = c
		mc, _, err := mf.load(ctx, layout)
		if err != nil {
			return fmt.Errorf("--clients: copy %d: %w", c, err)
		}
		defer mc.Close()
		models = append(models, mc)
	}

	var seqs [][]int32
	total, longest := 0, 0
	errEnough := fmt.Errorf("enough passages")
	err = dataset.Each(ctx, *data, func(p string) error {
		ids, _ := tok.AppendIDs(nil, p, m.MaxSequenceLength())
		seqs = append(seqs, ids)
		total += len(ids)
		longest = max(longest, len(ids))
		if len(seqs) >= *passages {
			return errEnough
		}
		return nil
	})
	if err != nil && err != errEnough {
		return fmt.Errorf("reading --data: %w", err)
	}
	if len(seqs) == 0 {
		return fmt.Errorf("--data %s: no passages", *data)
	}
	slog.Info("benchmarking", "passages", len(seqs), "mean_tokens", float64(total)/float64(len(seqs)), "layout", layout, "seconds", *seconds)
	if *callers <= 0 {
		*callers = len(models)
		if strings.HasPrefix(m.Info().Backend, "xla") {
			*callers = 2 * len(models)
		}
	}
	d := time.Duration(*seconds * float64(time.Second))
	info := m.Info()
	rep := benchModelReport{Model: info, CompileSeconds: info.CompileTime.Seconds(), Clients: len(models),
		Passages: len(seqs), MeanPassageTokens: float64(total) / float64(len(seqs)), MaxPassageTokens: longest}
	if *perRung {
		rungs := m.Rungs(layout)
		if len(rungs) == 0 {
			return fmt.Errorf("--per-rung: the model compiled no %s steps to time: its steps are sized to the work (backend %s)", layout, info.Backend)
		}
		for _, r := range rungs {
			res, err := modernbert.BenchRung(ctx, m, seqs, layout, r, d, *callers)
			if err != nil {
				return err
			}
			if res.Skipped != "" {
				slog.Info("rung skipped", "row_length", r.RowLength, "rows", r.Rows, "slots", r.Slots, "why", res.Skipped)
			} else {
				slog.Info("rung timed", "row_length", r.RowLength, "rows", r.Rows, "slots", r.Slots, "step_ms", res.MeanStepMillis,
					"tokens_per_s", res.TokensPerSecond, "occupancy", res.Occupancy)
			}
			rep.Rungs = append(rep.Rungs, res)
		}
	} else {
		res, err := modernbert.Bench(ctx, models, seqs, layout, d, *callers)
		if err != nil {
			return err
		}
		rep.BenchResult = &res
		cfg := m.Config()
		rep.LinearGFLOPS = res.TokensPerSecond * cfg.LinearFLOPsPerToken() / 1e9
		if info.CPU != "" {
			if lib, err := blas.Open(); err == nil {
				rep.CPUSgemmGFLOPS = lib.SgemmRate(m.MaxBatchTokens(), 3*cfg.HiddenSize, cfg.HiddenSize, 3*time.Second)
				rep.LinearShareOfSgemm = rep.LinearGFLOPS / rep.CPUSgemmGFLOPS
			}
		}
	}
	if mon.Available() {
		if samples, err := mon.Sample(); err == nil && mf.deviceIndex < len(samples) {
			rep.GPUMemoryUsedBytes = samples[mf.deviceIndex].MemoryUsedBytes
			rep.GPUUtilization = samples[mf.deviceIndex].UtilizationPercent
		}
	} else {
		rep.GPUMemoryNote = "no GPU monitor: " + mon.Reason()
	}
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}
