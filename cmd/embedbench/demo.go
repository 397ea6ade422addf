package main

import (
	"context"
	"log/slog"

	"github.com/embedbench/embedbench/internal/demo"
)

func init() {
	register("demo", "the whole comparison in one command: both engines, stress, fairness check, report", runDemo)
}

func runDemo(ctx context.Context, args []string) error {
	fs := newFlagSet("demo")
	var o demo.Options
	fs.StringVar(&o.OutputDir, "output-dir", "embedbench-demo", "where the result files and report.html go")
	fs.StringVar(&o.DataFile, "data-file", "", "passages, a JSON list of strings (default: the shared MS MARCO sample, else the hub, else a synthetic sample)")
	fs.StringVar(&o.Model, "model", "", "model directory or hub id (default: the shared ModernBERT-base tokenizer and config)")
	fs.StringVar(&o.Weights, "weights", "auto", "auto (real when --size base and the model has them), random or real")
	fs.StringVar(&o.Device, "device", "auto", "auto, cpu or gpu (the GPU needs the XLA PJRT plugin)")
	fs.StringVar(&o.Size, "size", "", "model size: tiny, small or base (default: base on GPU; on CPU the largest whose window holds 40 requests per engine at the speed this machine's BLAS predicts, said at start)")
	fs.StringVar(&o.Size, "model-size", "", "the same as --size, by serve's name for it")
	fs.BoolVar(&o.Offline, "offline", false, "never touch the network")
	fs.DurationVar(&o.Duration, "duration", 0, "measured stress time per engine (default 40s on CPU, 60s on GPU)")
	fs.DurationVar(&o.Warmup, "warmup", 0, "warm-up before each measurement (default 5s on CPU, 10s on GPU)")
	fs.IntVar(&o.BatchSize, "batch-size", 0, "passages per request (default 32, the seed's)")
	fs.IntVar(&o.Concurrency, "max-concurrent-requests", 0, "closed-loop concurrency (default 4 on CPU, 64 on GPU)")
	fs.IntVar(&o.Passages, "passages", 0, "passages to prepare (default 2000 on CPU, 10000 on GPU)")
	fs.IntVar(&o.FairnessPassages, "check-passages", 0, "passages sent to both engines by the fairness check (default 64 on CPU, 256 on GPU)")
	fs.IntVar(&o.MaxSequenceLength, "max-seq-len", 0, "longest passage in tokens; longer ones are truncated (default 256 on CPU, 512 on GPU)")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	o.ToolVersion = version
	o.Log = slog.Default()
	out, err := demo.Run(ctx, o)
	if err != nil {
		return err
	}
	if !out.Fairness.OK() {
		return exitError{exitFairness, nil}
	}
	return nil
}
