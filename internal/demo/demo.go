// Package demo is `embedbench demo`: the whole comparison in one command. It starts the
// sequential and the continuous engine in-process behind the real HTTP server, over the same
// model and weights, prepares passages, stress-tests each engine in turn, checks that both
// compute the same embeddings, and writes the result files, the HTML report and the table.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/embedbench/embedbench/internal/fairness"
	"github.com/embedbench/embedbench/internal/gpu"
	"github.com/embedbench/embedbench/internal/modernbert"
	"github.com/embedbench/embedbench/internal/report"
	"github.com/embedbench/embedbench/internal/stress"
	"github.com/embedbench/embedbench/internal/tokenizer"
)

// Options configure a demo. Zero values take the defaults noted, chosen per device.
type Options struct {
	OutputDir string // default "embedbench-demo"
	DataFile  string // passages (JSON list); default: shared MS MARCO, the hub, or synthetic
	Model     string // model directory or hub id; default: the shared ModernBERT-base
	Weights   string // auto (real when the size is base and the directory has them), random or real
	Device    string // auto, cpu or gpu
	Size      string // tiny, small or base; default base on GPU, on CPU the largest this machine runs in time (chooseCPUSize)
	Offline   bool   // never touch the network
	// Duration and Warmup are per engine (default 40 s and 5 s on CPU, 60 s and 10 s on GPU).
	Duration, Warmup time.Duration
	// BatchSize is passages per request (default 32, the seed's); Concurrency the closed-loop
	// workers (default 4 on CPU, 64 on GPU).
	BatchSize, Concurrency int
	// Passages to prepare (default 2000); FairnessPassages sent to both engines (default 64).
	Passages, FairnessPassages int
	// MaxSequenceLength bounds a passage in tokens (default 256 on CPU, 512 on GPU); longer
	// ones are truncated, as a HuggingFace service does.
	MaxSequenceLength int
	ToolVersion       string
	Out               io.Writer // the table and the summary (default os.Stdout)
	// Log gets the demo's own messages; the in-process servers log only warnings and errors
	// to it, so their request logs do not drown the summary.
	Log *slog.Logger
}

// Outcome is what a demo produced.
type Outcome struct {
	Description string
	DataSource  string
	ResultFiles []string // sequential, then continuous
	ReportPath  string
	Fairness    fairness.Result
	Table       report.Table
}

func (o *Options) defaults(onGPU bool) {
	pick := func(dst *int, cpu, gpu int) {
		if *dst == 0 {
			*dst = cpu
			if onGPU {
				*dst = gpu
			}
		}
	}
	pickDur := func(dst *time.Duration, cpu, gpu time.Duration) {
		if *dst == 0 {
			*dst = cpu
			if onGPU {
				*dst = gpu
			}
		}
	}
	if o.OutputDir == "" {
		o.OutputDir = "embedbench-demo"
	}
	pickDur(&o.Duration, 40*time.Second, 60*time.Second)
	pickDur(&o.Warmup, 5*time.Second, 10*time.Second)
	pick(&o.BatchSize, 32, 32)
	pick(&o.Concurrency, 4, 64)
	pick(&o.Passages, 2000, 10000)
	pick(&o.FairnessPassages, 64, 256)
	pick(&o.MaxSequenceLength, 256, 512)
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
}

func (o *Options) validate() error {
	switch {
	case o.Duration < time.Second:
		return fmt.Errorf("duration %v: want at least 1s", o.Duration)
	case o.Warmup < 0:
		return fmt.Errorf("warm-up %v: must not be negative", o.Warmup)
	case o.BatchSize < 1 || o.Concurrency < 1 || o.Passages < 1 || o.FairnessPassages < 1:
		return errors.New("batch size, concurrency and passage counts must be at least 1")
	case o.MaxSequenceLength < 8:
		return fmt.Errorf("max sequence length %d: want at least 8", o.MaxSequenceLength)
	}
	return nil
}

// Run runs the demo. Cancelling ctx stops it: a stress run in progress is cut short and its
// partial result still written.
func Run(ctx context.Context, o Options) (*Outcome, error) {
	started := time.Now()
	if o.Log == nil {
		o.Log = slog.Default()
	}
	ms, err := setupModel(ctx, o)
	if err != nil {
		return nil, err
	}
	o.defaults(ms.gpu)
	if err := o.validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.OutputDir, 0o755); err != nil {
		return nil, fmt.Errorf("creating the output directory: %w", err)
	}
	if moved, err := setAsideEarlierRun(o.OutputDir); err != nil {
		return nil, err
	} else if moved != "" {
		o.Log.Info("an earlier run's results were set aside", "to", moved)
	}
	out := &Outcome{Description: ms.describe()}
	fmt.Fprintln(o.Out, out.Description)

	tok, err := tokenizer.LoadFile(filepath.Join(ms.dir, "tokenizer.json"))
	if err != nil {
		return nil, err
	}
	data, err := preparePassages(ctx, o.DataFile, o.Passages, o.Offline, o.Log)
	if err != nil {
		return nil, err
	}
	out.DataSource = data.Source
	dataLine := fmt.Sprintf("Data: %d passages, %s; client batches of %d, passages over %d tokens truncated.",
		len(data.Texts), data.Source, o.BatchSize, o.MaxSequenceLength)
	fmt.Fprintln(o.Out, dataLine)

	mon, err := gpu.Open()
	if err != nil {
		return nil, fmt.Errorf("opening GPU telemetry: %w", err)
	}
	defer mon.Close()

	// The sequential engine is what a HuggingFace service does (fp32, padded batches of 32);
	// the continuous one is what vLLM does (packed token budgets, bf16 on the GPU). On CPU both
	// run fp32, so the comparison isolates the batching policy.
	contDType := modernbert.Float32
	if ms.gpu {
		contDType = modernbert.BFloat16
	}
	specs := []serviceSpec{
		{name: Sequential, dtype: modernbert.Float32},
		{name: Continuous, dtype: contDType},
	}
	var services []*demoService
	defer func() {
		for _, s := range services {
			if err := s.close(); err != nil {
				o.Log.Warn("stopping a demo service", "engine", s.name, "err", err)
			}
		}
	}()
	for _, spec := range specs {
		spec.modelID, spec.cfg, spec.weights, spec.tok, spec.gpu, spec.batchSize, spec.log = ms.servedID(), ms.cfg, ms.weights, tok, mon, 32, quiet(o.Log)
		spec.modelOpts = modernbert.Options{Backend: ms.backend, DType: spec.dtype, Pooling: modernbert.Mean, MaxSequenceLength: min(o.MaxSequenceLength, ms.cfg.MaxPositionEmbeddings)}
		fmt.Fprintf(o.Out, "Starting the %s engine (%s)...\n", spec.name, spec.dtype)
		s, err := startService(ctx, spec)
		if err != nil {
			return nil, err
		}
		services = append(services, s)
	}

	var runs []report.Run
	for _, s := range services {
		fmt.Fprintf(o.Out, "Stress-testing the %s engine at %s: closed loop, %d concurrent, batch %d, %v (+%v warm-up)...\n",
			s.name, s.url, o.Concurrency, o.BatchSize, o.Duration, o.Warmup)
		res, runErr := stress.Run(ctx, stress.Options{
			ServiceURL: s.url, Passages: data.Texts, DataFile: data.Source, BatchSize: o.BatchSize,
			MaxConcurrent: o.Concurrency, Duration: o.Duration, Warmup: o.Warmup,
			// A scaled model on a busy 2-core CPU can take many seconds per request.
			Timeout:     2 * time.Minute,
			ToolVersion: o.ToolVersion, CommandLine: os.Args,
		})
		if res == nil {
			return nil, fmt.Errorf("stress-testing the %s engine: %w", s.name, runErr)
		}
		path, err := stress.WriteResult(o.OutputDir, res)
		if err != nil {
			return nil, err
		}
		out.ResultFiles = append(out.ResultFiles, path)
		if runErr != nil {
			return out, fmt.Errorf("stress-testing the %s engine (partial result in %s): %w", s.name, path, runErr)
		}
		runs = append(runs, report.Run{Path: path, Result: res})
	}
	report.NameRuns(runs)

	fmt.Fprintf(o.Out, "Checking that both engines compute the same embeddings (%d passages)...\n", o.FairnessPassages)
	fair, err := fairness.Check(ctx, services[0].url, services[1].url, data.Texts[:min(o.FairnessPassages, len(data.Texts))], fairness.Options{})
	if err != nil {
		return out, err
	}
	out.Fairness = fair
	fmt.Fprintln(o.Out, fair.Summary())

	out.Table = report.Compare(runs, fair)
	out.ReportPath = filepath.Join(o.OutputDir, "report.html")
	notes := []string{out.Description, dataLine}
	if data.Synthetic {
		notes = append(notes, "No MS MARCO passages were available, so the demo made synthetic passages of MS MARCO-like length: the speeds are real, the text is not.")
	}
	if err := report.WriteHTMLFile(out.ReportPath, runs, report.HTMLOptions{Title: "embedbench demo: sequential vs continuous batching", Notes: notes, Fairness: []fairness.Result{fair}}); err != nil {
		return out, err
	}
	fmt.Fprintln(o.Out)
	if err := out.Table.WriteText(o.Out); err != nil {
		return out, err
	}
	fmt.Fprintf(o.Out, "\nResults: %s\nReport:  %s\nTook %v.\n", strings.Join(out.ResultFiles, ", "), out.ReportPath, time.Since(started).Round(time.Second))
	return out, nil
}

// quiet passes on only warnings and errors.
func quiet(l *slog.Logger) *slog.Logger {
	return slog.New(minLevel{l.Handler(), slog.LevelWarn})
}

type minLevel struct {
	slog.Handler
	min slog.Level
}

func (h minLevel) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= h.min && h.Handler.Enabled(ctx, l)
}

func (h minLevel) WithAttrs(attrs []slog.Attr) slog.Handler {
	return minLevel{h.Handler.WithAttrs(attrs), h.min}
}

func (h minLevel) WithGroup(name string) slog.Handler {
	return minLevel{h.Handler.WithGroup(name), h.min}
}

// setAsideEarlierRun moves an earlier run's report and result files out of dir into a
// subfolder named for the time, and says where (or "" when there were none): a run that then
// fails or is interrupted must not leave a report of the one before looking current, and
// compare on dir/*.json must not mix runs. Nothing is deleted.
func setAsideEarlierRun(dir string) (string, error) {
	old, err := filepath.Glob(filepath.Join(dir, stress.ResultFilePrefix+"*.json"))
	if err != nil {
		return "", err
	}
	if report := filepath.Join(dir, "report.html"); fileExists(report) {
		old = append(old, report)
	}
	if len(old) == 0 {
		return "", nil
	}
	aside := filepath.Join(dir, "earlier-"+time.Now().Format("20060102_150405"))
	if err := os.MkdirAll(aside, 0o755); err != nil {
		return "", fmt.Errorf("setting an earlier run's results aside: %w", err)
	}
	for _, f := range old {
		if err := os.Rename(f, filepath.Join(aside, filepath.Base(f))); err != nil {
			return "", fmt.Errorf("setting an earlier run's results aside: %w", err)
		}
	}
	return aside, nil
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}
