package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	iofs "io/fs"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/embedbench/embedbench/internal/dataset"
	"github.com/embedbench/embedbench/internal/report"
	"github.com/embedbench/embedbench/internal/stress"
)

func init() {
	register("stress", "load-test an embedding service and write stress_test_results_<timestamp>.json", runStress)
}

// Exit codes beyond 0/1/2.
const (
	exitSLOBreach   = 3
	exitInterrupted = 130
)

// openLoopDefaultCap is the in-flight cap in open loop when --max-concurrent-requests is not
// given: high enough that the cap, not the server, is rarely what limits the rate.
const openLoopDefaultCap = 1000

func runStress(ctx context.Context, args []string) error {
	fs := newFlagSet("stress")
	serviceURL := fs.String("service-url", "http://localhost:8000", "base URL of the embedding service")
	minutes := fs.Float64("duration-minutes", 10, "length of the measured window in minutes (the seed's flag)")
	duration := fs.Duration("duration", 0, "length of the measured window as a Go duration (e.g. 90s); replaces --duration-minutes")
	batch := fs.Int("batch-size", 32, "passages per request, taken in order from the data, cycling")
	concurrency := fs.Int("max-concurrent-requests", 10, "closed loop: concurrent workers; open loop: cap on requests in flight, 1000 there unless given")
	dataFile := fs.String("data-file", "test_sentences.json", "JSON list of passages (embedbench data writes one)")
	outputDir := fs.String("output-dir", ".", "folder for stress_test_results_<timestamp>.json")
	rate := fs.Float64("rate", 0, "open loop: requests per second, latency measured from each request's intended send time; 0 = closed loop")
	arrival := fs.String("arrival", stress.ArrivalConstant, "open-loop arrivals: constant or poisson")
	seed := fs.Int64("seed", 1, "random seed for poisson arrivals")
	warmup := fs.Float64("warmup-seconds", 0, "seconds of load before the measured window, excluded from every statistic")
	timeout := fs.Duration("timeout", 30*time.Second, "per-request timeout; a request that takes longer counts as a timeout error")
	api := fs.String("api", stress.APIEmbed, "API flavour: embed (POST /embed {texts}), openai (POST /v1/embeddings, as vLLM serves it) or tei (POST /embed {inputs})")
	model := fs.String("model", "", "model name sent in openai requests (default: the first model the server lists at /v1/models)")
	slo := fs.String("slo", "", "service-level objective, e.g. 'p99<200ms,success>99.9%'; exit status 3 when breached")
	maxRequests := fs.Int64("max-requests", 0, "stop after this many requests in the measured window (0 = no limit)")
	gpuSource := fs.String("gpu", stress.GPUAuto, "GPU telemetry: auto (NVML for a local service, else the server's /metrics), nvml, metrics or none")
	apiKey := fs.String("api-key", os.Getenv("EMBEDBENCH_API_KEY"), "sent as \"Authorization: Bearer\" with every request (serve --api-key, vLLM, OpenAI); default $EMBEDBENCH_API_KEY")
	waitReachable := fs.Duration("wait-reachable", 0, "wait this long for a service that refuses connections at the start, e.g. a Kubernetes Service whose pods are not ready yet (0 = fail at once)")
	deadAfter := fs.Duration("dead-after", 3*time.Second, "end the run when no connection to the service could be made for this long (0 = never); connections it takes and drops are counted, not given up on")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	window := time.Duration(*minutes * float64(time.Minute))
	if set["duration"] {
		if set["duration-minutes"] {
			return exitError{2, errors.New("give --duration or --duration-minutes, not both")}
		}
		window = *duration
	}
	const longest = 1e6 * time.Hour // far past any run, well inside a time.Duration
	switch {
	case *minutes < 0 || window < 0 || *warmup < 0 || *deadAfter < 0 || *waitReachable < 0:
		return exitError{2, errors.New("durations must not be negative")}
	case *minutes > longest.Minutes() || *warmup > longest.Seconds():
		return exitError{2, fmt.Errorf("durations must be under %s", longest)}
	case *timeout <= 0:
		return exitError{2, fmt.Errorf("--timeout %s: must be positive", *timeout)}
	case *batch < 1:
		return exitError{2, fmt.Errorf("--batch-size %d: must be at least 1", *batch)}
	case *rate == 0 && (set["arrival"] || set["seed"]):
		return exitError{2, errors.New("--arrival and --seed shape an open loop's arrivals: give --rate too (without it the run is a closed loop)")}
	case set["max-concurrent-requests"] && *concurrency < 1:
		return exitError{2, fmt.Errorf("--max-concurrent-requests %d: must be at least 1", *concurrency)}
	}
	if *deadAfter == 0 {
		*deadAfter = -1 // stress.Options: never
	}
	if *rate > 0 && !set["max-concurrent-requests"] {
		*concurrency = openLoopDefaultCap
	}
	var sloSpec *stress.SLO
	if *slo != "" {
		s, err := stress.ParseSLO(*slo)
		if err != nil {
			return exitError{2, err}
		}
		sloSpec = s
	}
	passages, err := dataset.Load(*dataFile)
	switch {
	case errors.Is(err, iofs.ErrNotExist):
		return exitError{2, fmt.Errorf("%w (create it with: embedbench data --output %s)", err, *dataFile)}
	case err != nil: // a file of another kind, e.g. the collection itself: not to be overwritten
		return exitError{2, fmt.Errorf("%w (--data-file takes the JSON list embedbench data writes: embedbench data --source FILE --output test_sentences.json)", err)}
	}

	opts := stress.Options{
		ServiceURL:    *serviceURL,
		API:           *api,
		Model:         *model,
		Passages:      passages,
		DataFile:      *dataFile,
		BatchSize:     *batch,
		MaxConcurrent: *concurrency,
		Rate:          *rate,
		Arrival:       *arrival,
		Seed:          *seed,
		Duration:      window,
		Warmup:        time.Duration(*warmup * float64(time.Second)),
		Timeout:       *timeout,
		MaxRequests:   *maxRequests,
		SLO:           sloSpec,
		GPU:           *gpuSource,
		DeadAfter:     *deadAfter,
		APIKey:        *apiKey,
		WaitReachable: *waitReachable,
		ToolVersion:   version,
		CommandLine:   os.Args,
	}
	bar := newStressBar(opts.Warmup + opts.Duration)
	if bar != nil {
		opts.Progress = bar.update
	}
	mode := "closed loop"
	if opts.Rate > 0 {
		mode = fmt.Sprintf("open loop, %g req/s %s", opts.Rate, opts.Arrival)
	}
	slog.Info("stress test starting", "service", opts.ServiceURL, "api", opts.API, "mode", mode,
		"duration", opts.Duration, "warmup", opts.Warmup, "batch_size", opts.BatchSize,
		"max_concurrent_requests", opts.MaxConcurrent, "passages", len(passages))

	res, runErr := stress.Run(ctx, opts)
	bar.finish()
	if errors.Is(runErr, stress.ErrBadOptions) {
		return exitError{2, runErr}
	}
	if res == nil {
		return runErr
	}
	path, err := stress.WriteResult(*outputDir, res)
	if err != nil {
		return errors.Join(runErr, err)
	}
	logStressSummary(res, path)
	switch {
	case ctx.Err() != nil:
		return exitError{exitInterrupted, fmt.Errorf("interrupted; partial results in %s", path)}
	case runErr != nil:
		return fmt.Errorf("%w; partial results in %s", runErr, path)
	case res.TotalRequests > 0 && res.SuccessfulRequests == 0:
		return fmt.Errorf("every request failed (%s), so nothing was measured; results in %s", report.ErrorClasses(res), path)
	case res.SLO != nil && !res.SLO.Passed:
		return exitError{exitSLOBreach, fmt.Errorf("SLO breached: %s", strings.Join(res.SLO.Failed(), ", "))}
	}
	return nil
}

func logStressSummary(r *stress.Result, path string) {
	lm := r.LatencyMetrics
	attrs := []any{
		"file", path,
		"duration_s", roundTo(r.TestDurationSeconds, 2),
		"requests", r.TotalRequests, "successful", r.SuccessfulRequests, "failed", r.FailedRequests,
		"requests_per_s", roundTo(r.RequestsPerSecond, 2), "passages_per_s", roundTo(r.PassagesPerSecond, 1),
		"p50_ms", roundTo(lm.P50*1000, 2), "p90_ms", roundTo(lm.P90*1000, 2), "p99_ms", roundTo(lm.P99*1000, 2), "max_ms", roundTo(lm.Max*1000, 2),
	}
	if r.TokensPerSecond != nil {
		attrs = append(attrs, "tokens_per_s", roundTo(*r.TokensPerSecond, 0))
	}
	if len(r.Errors) > 0 {
		attrs = append(attrs, "errors", r.Errors)
	}
	if r.GPUUtilizationPercent != nil {
		attrs = append(attrs, "gpu_util_percent", roundTo(*r.GPUUtilizationPercent, 1))
		var notes []string
		for _, d := range r.GPU.Devices {
			if note := d.ClockNote(); note != "" {
				notes = append(notes, fmt.Sprintf("GPU %d: %s", d.Index, note))
			}
		}
		if len(notes) > 0 {
			attrs = append(attrs, "gpu_clocks", strings.Join(notes, " | "))
		}
	} else {
		attrs = append(attrs, "gpu", r.GPU.Source+": "+r.GPU.Reason)
	}
	if ol := r.OpenLoop; ol != nil {
		attrs = append(attrs, "uncorrected_p99_ms", roundTo(r.LatencyMetricsUncorrected.P99*1000, 2))
		if !ol.RateKept {
			slog.Warn("the generator could not keep the asked rate: the in-flight cap held requests back",
				"rate", ol.TargetRate, "achieved_send_rate", roundTo(ol.AchievedSendRate, 2),
				"late_requests", ol.LateRequests, "unsent_requests", ol.UnsentRequests, "max_concurrent_requests", r.Config.MaxConcurrentRequests)
		}
	}
	if r.Partial {
		attrs = append(attrs, "partial", r.PartialReason)
	}
	slog.Info("stress test done", attrs...)
}

func roundTo(v float64, digits int) float64 {
	p := 1.0
	for range digits {
		p *= 10
	}
	return float64(int64(v*p+0.5)) / p
}

// stressBar is the live progress line on a terminal; nil (and silent) otherwise.
type stressBar struct{ bar *progressbar.ProgressBar }

func newStressBar(total time.Duration) *stressBar {
	if !term.IsTerminal(int(os.Stderr.Fd())) {
		return nil
	}
	max := int64(-1) // a spinner when the run has no planned length (--max-requests only)
	if total > 0 {
		max = total.Milliseconds()
	}
	return &stressBar{bar: progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(os.Stderr),
		progressbar.OptionSetWidth(25),
		progressbar.OptionThrottle(200*time.Millisecond),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetPredictTime(false),
		progressbar.OptionShowDescriptionAtLineEnd(),
	)}
}

func (b *stressBar) update(p stress.Progress) {
	phase := ""
	if p.Warmup {
		phase = "warm-up "
	}
	b.bar.Describe(fmt.Sprintf("%s%s  %.1f req/s  p99 %s  errors %d  in flight %d",
		phase, p.Elapsed.Round(time.Second), p.RequestsPerSec, p.P99.Round(100*time.Microsecond), p.Errors, p.InFlight))
	_ = b.bar.Set64(min(p.Elapsed.Milliseconds(), max(p.Total.Milliseconds(), 0)))
}

func (b *stressBar) finish() {
	if b != nil {
		_ = b.bar.Finish()
	}
}
