package demo

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embedbench/embedbench/internal/dataset"
	"github.com/embedbench/embedbench/internal/localdata"
	"github.com/embedbench/embedbench/internal/stress"
)

// TestDemoShortRun runs the whole demo on CPU with the tiny model at a few seconds per engine:
// both real engines behind the real server, the real stress tester, the fairness check and the
// report, as a user would run it, only shorter.
func TestDemoShortRun(t *testing.T) {
	if _, err := localdata.ModernBERTDir(); err != nil {
		t.Skipf("the demo needs the ModernBERT tokenizer: %v", err)
	}
	dir := t.TempDir()
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := Run(ctx, Options{
		OutputDir: dir, Device: "cpu", Offline: true, Size: "tiny",
		Duration: 3 * time.Second, Warmup: 500 * time.Millisecond,
		BatchSize: 8, Concurrency: 2, Passages: 200, FairnessPassages: 16, MaxSequenceLength: 128,
		Out: &out,
	})
	t.Logf("demo took %v; output:\n%s", time.Since(start).Round(time.Millisecond), out.String())
	if err != nil {
		t.Fatal(err)
	}

	if len(res.ResultFiles) != 2 {
		t.Fatalf("result files %v; want 2", res.ResultFiles)
	}
	for i, engine := range []string{Sequential, Continuous} {
		r, err := stress.ReadResult(res.ResultFiles[i])
		if err != nil {
			t.Fatal(err)
		}
		if r.SuccessfulRequests == 0 || r.FailedRequests != 0 || r.PassagesPerSecond <= 0 {
			t.Errorf("%s: %d ok, %d failed, %.2f passages/s", engine, r.SuccessfulRequests, r.FailedRequests, r.PassagesPerSecond)
		}
		if r.Server.Engine != engine || r.Server.DType != "float32" || !strings.Contains(r.Server.Weights, "random") {
			t.Errorf("%s: the result says engine %q dtype %q weights %q", engine, r.Server.Engine, r.Server.DType, r.Server.Weights)
		}
		if !strings.Contains(r.Server.Model, "tiny") {
			t.Errorf("%s: model %q does not say it is the scaled-down one", engine, r.Server.Model)
		}
		if filepath.Dir(res.ResultFiles[i]) != dir {
			t.Errorf("result %s not in the output directory", res.ResultFiles[i])
		}
	}
	if !res.Fairness.OK() || res.Fairness.MinCosine < 0.99999 || res.Fairness.Passages != 16 {
		t.Errorf("fairness between the engines: %s", res.Fairness.Summary())
	}
	page, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sequential float32", "continuous float32", "Random weights", "Fairness", "latency-spectrum", "tiny size"} {
		if !bytes.Contains(page, []byte(want)) {
			t.Errorf("report.html lacks %q", want)
		}
	}
	text := out.String()
	for _, want := range []string{"RANDOM weights", "tiny size", "CPU (", "MS MARCO sample", "requests/s", "ratios (×)", "report.html"} {
		if !strings.Contains(text, want) {
			t.Errorf("the demo's output lacks %q", want)
		}
	}
}

func TestDemoRefusesBadOptions(t *testing.T) {
	ctx := context.Background()
	for name, o := range map[string]Options{
		"size":         {Device: "cpu", Size: "huge"},
		"device":       {Device: "tpu"},
		"weights":      {Device: "cpu", Weights: "pretrained"},
		"real at tiny": {Device: "cpu", Size: "tiny", Weights: "real"},
		"duration":     {Device: "cpu", Duration: time.Millisecond, Offline: true},
		"model":        {Device: "cpu", Model: "/no/such/model", Offline: true},
	} {
		t.Run(name, func(t *testing.T) {
			o.OutputDir = t.TempDir()
			o.Out = &bytes.Buffer{}
			if _, err := Run(ctx, o); err == nil {
				t.Fatal("no error")
			}
		})
	}
}

func TestPreparePassages(t *testing.T) {
	ctx := context.Background()
	log := quiet(testLogger(t))

	file := filepath.Join(t.TempDir(), "s.json")
	if err := dataset.Write(file, []string{"one", "two"}); err != nil {
		t.Fatal(err)
	}
	p, err := preparePassages(ctx, file, 100, true, log)
	if err != nil || len(p.Texts) != 2 || p.Source != file || p.Synthetic {
		t.Errorf("data file: %+v %v", p, err)
	}
	if _, err := preparePassages(ctx, filepath.Join(t.TempDir(), "missing.json"), 10, true, log); err == nil {
		t.Error("no error for a missing data file")
	}

	// A shared sample with fewer passages than asked is used whole, not swapped for made-up
	// text (the GPU demo asks for 10,000; the shared sample holds about 5,900).
	if dir, err := localdata.MSMARCODir(); err == nil {
		p, err := preparePassages(ctx, "", 1_000_000, true, log)
		if err != nil || p.Synthetic || len(p.Texts) == 0 || len(p.Texts) >= 1_000_000 || !strings.Contains(p.Source, dir) || !strings.Contains(p.Source, "of 1000000 asked") {
			t.Errorf("a sample smaller than asked: %v, %d passages from %q; want all of %s's", err, len(p.Texts), p.Source, dir)
		}
	}

	// Without shared data and offline, the demo makes its own passages and says so.
	t.Setenv(localdata.EnvShared, t.TempDir())
	p, err = preparePassages(ctx, "", 500, true, log)
	if err != nil || !p.Synthetic || len(p.Texts) != 500 || !strings.Contains(p.Source, "synthetic") {
		t.Fatalf("offline fallback: %v, %d passages from %q", err, len(p.Texts), p.Source)
	}
}

func TestSyntheticPassages(t *testing.T) {
	texts := syntheticPassages(2000, 1)
	seen := map[string]bool{}
	words := 0
	for _, s := range texts {
		if seen[s] {
			t.Fatalf("repeated passage %q", s)
		}
		seen[s] = true
		words += len(strings.Fields(s))
	}
	// MS MARCO passages average about 55-60 words.
	if mean := float64(words) / float64(len(texts)); mean < 40 || mean > 80 {
		t.Errorf("mean passage length %.1f words; want MS MARCO-like 40-80", mean)
	}
	if again := syntheticPassages(2000, 1); again[1999] != texts[1999] {
		t.Error("the same seed gave different passages")
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, nil))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// cancelOn cancels when the demo prints a given line.
type cancelOn struct {
	buf    bytes.Buffer
	marker string
	cancel context.CancelFunc
	at     time.Time
}

func (w *cancelOn) Write(p []byte) (int, error) {
	w.buf.Write(p)
	if w.at.IsZero() && strings.Contains(w.buf.String(), w.marker) {
		w.at = time.Now()
		// Let the stress run get going before the interrupt.
		time.AfterFunc(2*time.Second, w.cancel)
	}
	return len(p), nil
}

// TestDemoInterrupted checks that Ctrl-C during a stress run stops the demo promptly, shuts
// the services down and still writes the partial result.
func TestDemoInterrupted(t *testing.T) {
	if _, err := localdata.ModernBERTDir(); err != nil {
		t.Skipf("the demo needs the ModernBERT tokenizer: %v", err)
	}
	if testing.Short() {
		t.Skip("starts two models")
	}
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &cancelOn{marker: "Stress-testing the sequential", cancel: cancel}
	res, err := Run(ctx, Options{
		OutputDir: dir, Device: "cpu", Offline: true, Duration: time.Minute, Warmup: 0,
		BatchSize: 8, Concurrency: 2, Passages: 100, MaxSequenceLength: 128, Out: w,
	})
	if err == nil {
		t.Fatalf("no error from an interrupted demo; output:\n%s", w.buf.String())
	}
	if w.at.IsZero() {
		t.Fatalf("the demo failed before stressing: %v", err)
	}
	// Interrupted 2 s in, a one-minute run must stop within the requests in flight.
	if took := time.Since(w.at); took > 40*time.Second {
		t.Errorf("the demo took %v to stop after the interrupt", took)
	}
	if res == nil || len(res.ResultFiles) != 1 {
		t.Fatalf("want the interrupted run's result file; got %+v (%v)", res, err)
	}
	r, rerr := stress.ReadResult(res.ResultFiles[0])
	if rerr != nil || !r.Partial {
		t.Errorf("interrupted result: %v, partial %v", rerr, r != nil && r.Partial)
	}
	if _, statErr := os.Stat(filepath.Join(dir, "report.html")); statErr == nil {
		t.Error("a report was written for an interrupted demo")
	}
	t.Logf("stopped %v after the interrupt: %v", time.Since(w.at).Round(time.Millisecond), err)
}

func TestCPUSizeFollowsTheMachine(t *testing.T) {
	for _, tc := range []struct {
		gflops float64
		window time.Duration
		batch  int
		want   string
	}{
		{5, 40 * time.Second, 32, "tiny"},       // pure-Go speeds
		{160, 40 * time.Second, 32, "small"},    // 2 cores with OpenBLAS: base would run 9 requests
		{160, 10 * time.Minute, 32, "base"},     // the same cores, a longer window
		{1500, 40 * time.Second, 32, "base"},    // a many-core server
		{160, 40 * time.Second, 100000, "tiny"}, // nothing fits: the smallest
	} {
		got, why := pickCPUSize("float32 products", tc.gflops, tc.window, tc.batch)
		if got != tc.want || !strings.Contains(why, "float32 products") || !strings.Contains(why, "GFLOP/s") {
			t.Errorf("%.0f GFLOP/s, %v, batch %d: %s (%s), want %s", tc.gflops, tc.window, tc.batch, got, why, tc.want)
		}
	}
}

// A run into a folder that holds an earlier run's results sets them aside, whole: the new
// run's report and files are the only ones left at the top, and nothing is deleted.
func TestEarlierRunIsSetAside(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"stress_test_results_20260101_000000.json", "stress_test_results_20260101_000100.json", "report.html", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	aside, err := setAsideEarlierRun(dir)
	if err != nil || aside == "" {
		t.Fatalf("set aside: %q, %v", aside, err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, "*"))
	moved, _ := filepath.Glob(filepath.Join(aside, "*"))
	if len(moved) != 3 || len(left) != 2 { // notes.txt and the earlier-* folder
		t.Errorf("moved %v, left %v; want the two results and the report moved, notes.txt left", moved, left)
	}
	if again, err := setAsideEarlierRun(dir); err != nil || again != "" {
		t.Errorf("nothing to set aside: %q, %v", again, err)
	}
}
