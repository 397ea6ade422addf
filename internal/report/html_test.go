package report

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/embedbench/embedbench/internal/fairness"
	"github.com/embedbench/embedbench/internal/stress"
)

// twoRuns is the usual comparison: a sequential fp32 run without GPU telemetry and a faster
// continuous bf16 run with it.
func twoRuns(t *testing.T) []Run {
	t.Helper()
	seq := fixtureRun(t, "sequential", "float32", 40*time.Millisecond, 50, false)
	cont := fixtureRun(t, "continuous", "bfloat16", 20*time.Millisecond, 100, true)
	// The continuous run is open loop: it carries the uncorrected spectrum beside the corrected
	// one, and it did not keep its rate.
	uncorrected := make([]stress.PercentilePoint, len(cont.LatencySpectrum))
	for i, p := range cont.LatencySpectrum {
		p.LatencySeconds *= 0.8
		uncorrected[i] = p
	}
	cont.LatencySpectrumUncorrected = uncorrected
	cont.Config.Mode, cont.Config.Rate, cont.Config.Arrival = "open", 120, "poisson"
	cont.Config.ServiceURL = "http://127.0.0.1:8001"
	cont.OpenLoop = &stress.OpenLoopStats{TargetRate: 120, Arrival: "poisson", ScheduledRequests: 3600, SentRequests: 3000,
		AchievedSendRate: 100, LateRequests: 250, LateThresholdSeconds: 0.005, UnsentRequests: 600, RateKept: false}
	runs := []Run{{Path: "seq.json", Result: seq}, {Path: "cont.json", Result: cont}}
	NameRuns(runs)
	return runs
}

var sampleFairness = fairness.Result{
	A:        fairness.Service{URL: "http://127.0.0.1:8000", API: "embed", Health: fairness.Health{Backend: "sequential", DType: "float32"}},
	B:        fairness.Service{URL: "http://127.0.0.1:8001", API: "embed", Health: fairness.Health{Backend: "continuous", DType: "bfloat16"}},
	Passages: 64, Dim: 768, MinCosine: 0.99912, MeanCosine: 0.99971, Threshold: 0.999, VectorsAgree: true,
}

func TestHTMLIsSelfContained(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteHTML(&buf, twoRuns(t), HTMLOptions{Fairness: []fairness.Result{sampleFairness}, Notes: []string{"CPU demo, tiny model"}}); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	// Offline: nothing is loaded from elsewhere. (The library's own code builds an <img> for
	// its save-as-image feature; look at the page around it.)
	if m := regexp.MustCompile(`(?i)<(script|link|img|iframe)[^>]+(src|href)=`).FindString(strings.Replace(page, echartsJS, "", 1)); m != "" {
		t.Errorf("the report loads an external resource: %s", m)
	}
	if !strings.Contains(page, `t.version="`+EChartsVersion+`"`) {
		t.Error("the ECharts library is not inlined")
	}
	for _, id := range []string{"latency-spectrum", "throughput-over-time", "p99-over-time", "gpu-over-time", "gpu-clock-over-time", "latency-histogram"} {
		if !strings.Contains(page, `id="`+id+`"`) || !strings.Contains(page, `{id: "`+id+`", option: {`) {
			t.Errorf("chart %s missing", id)
		}
	}
	for _, want := range []string{
		"Random weights", "sequential float32", "continuous bfloat16", "answerdotai/ModernBERT-base",
		"min 0.999120", "Same embeddings within numerical noise", "CPU demo, tiny model", "Configuration of each run", "http_429: 2", "NVIDIA H200",
		"GPU telemetry unavailable for sequential float32: no NVML driver on this machine",
		"open loop 120/s poisson, cap 10 (rate NOT kept)", "of 1980 MHz, 690 of 700 W; held down by power_cap in 90% of readings", "The GPUs can reach 1980 MHz", "0.999120 vs sequential float32", "0.999120 vs continuous bfloat16", "continuous bfloat16 (uncorrected)", "scheduled / sent / unsent",
	} {
		if !strings.Contains(page, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
	// Formatter functions are code, not strings.
	if strings.Contains(page, "__f__") || strings.Contains(page, `"formatter":"function`) {
		t.Error("a formatter function was left quoted or marked")
	}
}

func TestHTMLEscapesHostileLabels(t *testing.T) {
	runs := twoRuns(t)
	runs[1].Label = `</script><script>alert("x")</script>`
	var buf bytes.Buffer
	if err := WriteHTML(&buf, runs, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	// Exactly the page's own two script elements close.
	if n := strings.Count(strings.ToLower(page), "</script"); n != 2 {
		t.Errorf("%d </script> in the page; want 2 (a label broke out of the script)", n)
	}
	// Outside the chart script, where it is a JavaScript string, the label is escaped text.
	markup := page[:strings.Index(page, "<script>var embedbenchCharts")]
	if strings.Contains(markup, `<script>alert`) {
		t.Error("a label was inserted as markup")
	}
}

// A label shaped like go-echarts' marker for code ("__f__...__f__", from --labels, a file name or
// a server's /health) stays a string: only the report's own formatters become code. And the
// tooltips escape the names they show, since ECharts inserts a formatter's result as HTML.
func TestLabelsNeverBecomeCode(t *testing.T) {
	runs := twoRuns(t)
	runs[1].Label = `__f__(document.title="pwned")__f__`
	var buf bytes.Buffer
	if err := WriteHTML(&buf, runs, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if strings.Contains(page, `:(document.title="pwned")`) || strings.Contains(page, `"name":(document.title`) {
		t.Error("a label was inlined into the chart option as code")
	}
	if !strings.Contains(page, `"__f__(document.title=\"pwned\")__f__"`) {
		t.Error("the label is not in the option as a JSON string")
	}
	if strings.Contains(page, "+ x.seriesName +") || strings.Contains(page, "+ p.seriesName +") || !strings.Contains(page, "encodeHTML(p.seriesName)") {
		t.Error("a tooltip shows a series name unescaped")
	}
}

func TestWriteHTMLFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "report.html")
	if err := WriteHTMLFile(path, twoRuns(t), HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Size() < int64(len(echartsJS)) {
		t.Fatalf("report %v, %v", st, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
	if err := WriteHTMLFile(filepath.Join(dir, "no-such-dir", "r.html"), twoRuns(t), HTMLOptions{}); err == nil {
		t.Error("no error writing into a missing directory")
	}
	if err := WriteHTML(&bytes.Buffer{}, nil, HTMLOptions{}); err == nil {
		t.Error("no error for no runs")
	}
}

func TestVendoredEChartsIsThePinnedFile(t *testing.T) {
	sum := sha256.Sum256([]byte(echartsJS))
	readme, err := os.ReadFile("assets/README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), hex.EncodeToString(sum[:])) || !strings.Contains(string(readme), "**"+EChartsVersion+"**") {
		t.Errorf("assets/echarts.min.js (sha256 %x) or EChartsVersion %s does not match assets/README.md", sum, EChartsVersion)
	}
	// Inlined into a <script> element, the library itself must not close it.
	if strings.Contains(strings.ToLower(echartsJS), "</script") || strings.Contains(echartsJS, "<!--") {
		t.Error("echarts.min.js contains </script or <!--")
	}
}

// TestHTMLWithSeedResult reports on a file from the seed's Python stress_test.py: no spectrum,
// no time series, no setup. The page must still be complete and say what is unknown.
func TestHTMLWithSeedResult(t *testing.T) {
	seed := &stress.Result{TestDurationSeconds: 600, TotalRequests: 15000, SuccessfulRequests: 14950, RequestsPerSecond: 24.92,
		LatencyMetrics: stress.LatencyMetrics{Mean: 0.0421, P50: 0.0389, P90: 0.0567, P99: 0.0892}}
	runs := append([]Run{{Label: "seed HF", Result: seed}}, twoRuns(t)...)
	var buf bytes.Buffer
	if err := WriteHTML(&buf, runs, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	for _, want := range []string{"seed HF", "89.2 ms", "unknown", "GPU telemetry unavailable for seed HF"} {
		if !strings.Contains(page, want) {
			t.Errorf("the report lacks %q", want)
		}
	}
}

func TestFairnessRow(t *testing.T) {
	runs := twoRuns(t)
	third := Run{Label: "hf", Result: &stress.Result{Config: stress.Config{ServiceURL: "http://127.0.0.1:8002/"}}}
	runs = append(runs, third)
	bad := sampleFairness
	bad.A.URL, bad.B.URL, bad.MinCosine, bad.VectorsAgree = "http://127.0.0.1:8002", "http://127.0.0.1:8001", 0.5, false
	tab := Compare(runs, bad)
	var got []string
	for _, r := range tab.Rows {
		if r.Section == "fairness" {
			got = r.Cells
		}
	}
	want := []string{"not checked", "0.500000 vs hf (DIFFERENT)", "0.500000 vs continuous bfloat16 (DIFFERENT)"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("fairness row %q; want %q", got, want)
	}
	if len(Compare(runs).Rows) != len(tab.Rows)-1 {
		t.Error("a fairness row without checks")
	}
}
