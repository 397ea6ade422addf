package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embedbench/embedbench/internal/stress"
)

// runMain runs the command line and returns its exit code, standard output and standard error
// (the flag package writes usage to os.Stderr, so both are captured at the file level).
func runMain(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	capture := func(f **os.File) func() string {
		r, w, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		saved := *f
		*f = w
		done := make(chan string)
		go func() {
			b, _ := io.ReadAll(r)
			done <- string(b)
		}()
		return func() string {
			*f = saved
			w.Close()
			return <-done
		}
	}
	stdout, stderr := capture(&os.Stdout), capture(&os.Stderr)
	var direct bytes.Buffer
	code := realMain(args, &direct)
	return code, stdout(), direct.String() + stderr()
}

func resultFile(t *testing.T, dir, engine, dtype string, rps float64, start time.Time) string {
	t.Helper()
	r := &stress.Result{
		SchemaVersion: stress.SchemaVersion, TestDurationSeconds: 10,
		TotalRequests: int64(rps * 10), SuccessfulRequests: int64(rps * 10), SuccessRate: 1,
		RequestsPerSecond: rps, Passages: int64(rps * 320), PassagesPerSecond: rps * 32,
		LatencyMetrics:  stress.LatencyMetrics{Mean: 1 / rps, P50: 1 / rps, P90: 1.2 / rps, P99: 1.5 / rps, P999: 2 / rps, Count: int64(rps * 10)},
		LatencySpectrum: []stress.PercentilePoint{{Percentile: 0, LatencySeconds: 0.5 / rps}, {Percentile: 50, LatencySeconds: 1 / rps}, {Percentile: 99, LatencySeconds: 1.5 / rps}},
		GPU:             stress.GPUTelemetry{Source: stress.GPUSourceUnavailable, Reason: "no GPU"},
		Server:          stress.ServerInfo{Engine: engine, DType: dtype, Model: "answerdotai/ModernBERT-base", Weights: "random (seed 0)"},
		Config:          stress.Config{BatchSize: 32, Mode: "closed", MaxConcurrentRequests: 4},
		StartedAt:       start,
	}
	path, err := stress.WriteResult(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// embedService answers /health and /embed with vectors derived from each text; scale changes
// one coordinate so that two services can be made to disagree.
func embedService(t *testing.T, dtype string, skew float32) string {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"status": "healthy", "model": "m", "dtype": dtype, "pooling": "mean"})
	})
	mux.HandleFunc("POST /embed", func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Texts []string }
		json.NewDecoder(r.Body).Decode(&req)
		var out [][]float32
		for _, s := range req.Texts {
			out = append(out, []float32{float32(len(s)), 1 + skew, 2})
		}
		json.NewEncoder(w).Encode(map[string]any{"embeddings": out})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestCompareCommand(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := resultFile(t, dir, "sequential", "float32", 20, start)
	b := resultFile(t, dir, "continuous", "bfloat16", 50, start.Add(time.Second))
	html := filepath.Join(dir, "report.html")

	md := filepath.Join(dir, "table.md")
	code, out, errOut := runMain(t, "compare", "--html", html, "--markdown", md, a, b)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"sequential float32", "continuous bfloat16", "50.00 (2.50×)", "HTML report: " + html} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if st, err := os.Stat(html); err != nil || st.Size() < 100_000 {
		t.Errorf("HTML report %v %v", st, err)
	}
	if table, err := os.ReadFile(md); err != nil || !strings.Contains(string(table), "| requests/s | 20.00 | 50.00 (2.50×) |") {
		t.Errorf("Markdown table %v:\n%s", err, table)
	}

	code, out, _ = runMain(t, "compare", "--labels", "hf,ours", a, b)
	if code != 0 || !strings.Contains(out, "hf") || !strings.Contains(out, "ours") {
		t.Errorf("--labels: exit %d\n%s", code, out)
	}
}

func TestCompareCheckEmbeddings(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "sentences.json")
	os.WriteFile(data, []byte(`["a short passage", "another, longer passage about embeddings", "third"]`), 0o644)
	a := resultFile(t, dir, "sequential", "float32", 20, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	same1, same2 := embedService(t, "float32", 0), embedService(t, "float32", 0)
	html := filepath.Join(dir, "r.html")

	code, out, errOut := runMain(t, "compare", "--check-embeddings", "--data-file", data, "--html", html, same1, same2, a)
	if code != 0 {
		t.Fatalf("exit %d: %s\n%s", code, errOut, out)
	}
	if !strings.Contains(out, "cosine min 1.000000") || !strings.Contains(out, "sequential float32") {
		t.Errorf("output:\n%s", out)
	}
	page, _ := os.ReadFile(html)
	if !strings.Contains(string(page), "Fairness") {
		t.Error("the HTML report lacks the fairness check")
	}

	// A saved check is shown with result files later.
	saved := filepath.Join(dir, "check.json")
	if code, out, errOut := runMain(t, "compare", "--check-embeddings", "--data-file", data, "--check-output", saved, same1, same2); code != 0 {
		t.Fatalf("--check-output: exit %d\n%s\n%s", code, out, errOut)
	}
	code, out, errOut = runMain(t, "compare", "--fairness", saved, a)
	if code != 0 || !strings.Contains(out, "fairness: 3 passages") || !strings.Contains(out, "min cosine vs") {
		t.Errorf("--fairness: exit %d\n%s\n%s", code, out, errOut)
	}
	if code, _, errOut := runMain(t, "compare", "--fairness", data, a); code != 1 || !strings.Contains(errOut, "fairness check "+data) {
		t.Errorf("--fairness with a file that is no check: exit %d\n%s", code, errOut)
	}

	// Flags may follow the URLs, as scripts/gpu/bench_service.sh writes them.
	differ := embedService(t, "float32", 5)
	code, out, errOut = runMain(t, "compare", "--check-embeddings", same1, differ, "--data-file", data, "--passages", "2")
	if code != exitFairness || !strings.Contains(out, "2 passages") || !strings.Contains(out, "WARNING") || !strings.Contains(errOut, "do not compute the same embeddings") {
		t.Errorf("disagreeing services: exit %d; want %d\n%s\n%s", code, exitFairness, out, errOut)
	}
}

func TestCompareBadUsage(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct {
		args []string
		code int
		want string
	}{
		"no files":      {[]string{"compare"}, 2, "usage: embedbench compare"},
		"one URL":       {[]string{"compare", "--check-embeddings", "http://127.0.0.1:1"}, 2, "needs two service URLs"},
		"missing file":  {[]string{"compare", filepath.Join(dir, "nope.json")}, 1, "nope.json"},
		"unknown flag":  {[]string{"compare", "--frobnicate", "x.json"}, 2, "frobnicate"},
		"bad labels":    {[]string{"compare", "--labels", "a,b,c", resultFile(t, dir, "s", "f", 1, time.Unix(0, 0))}, 1, "3 labels for 1 result files"},
		"missing data":  {[]string{"compare", "--check-embeddings", "--data-file", "/nonexistent.json", "http://a", "http://b"}, 1, "nonexistent.json"},
		"no passages":   {[]string{"compare", "--check-embeddings", "--passages", "0", "http://a", "http://b"}, 2, "--passages 0"},
		"html no files": {[]string{"compare", "--check-embeddings", "--html", "x.html", "--data-file", filepath.Join(dir, "d.json"), embedService(t, "f", 0), embedService(t, "f", 0)}, 2, "--html and --markdown need result files"},
	}
	os.WriteFile(filepath.Join(dir, "d.json"), []byte(`["x"]`), 0o644)
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := runMain(t, tc.args...)
			if code != tc.code || !strings.Contains(out+errOut, tc.want) {
				t.Errorf("exit %d (want %d), output lacks %q:\n%s\n%s", code, tc.code, tc.want, out, errOut)
			}
		})
	}
}

// TestCompareSeries checks the HTML report's latency-against-throughput lines: by default one
// per service and batch size, with --series as the user names them, and a miscount refused.
func TestCompareSeries(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	a := resultFile(t, dir, "continuous", "bfloat16", 20, start)
	b := resultFile(t, dir, "continuous", "bfloat16", 80, start.Add(time.Second))
	c := resultFile(t, dir, "sequential", "float32", 10, start.Add(2*time.Second))
	html := filepath.Join(dir, "report.html")
	for _, tc := range []struct {
		args  []string
		lines []string
	}{
		{nil, []string{"continuous bfloat16, batch 32 p50", "continuous bfloat16, batch 32 p99", "sequential float32, batch 32 p50"}},
		{[]string{"--series", "ours,ours,theirs"}, []string{"ours p50", "ours p99", "theirs p50", "theirs p99"}},
	} {
		args := append(append([]string{"compare", "--html", html}, tc.args...), a, b, c)
		if code, _, errOut := runMain(t, args...); code != 0 {
			t.Fatalf("%v: exit %d: %s", tc.args, code, errOut)
		}
		page, err := os.ReadFile(html)
		if err != nil {
			t.Fatal(err)
		}
		chart := string(page)[strings.Index(string(page), `{id: "latency-throughput"`):]
		chart = chart[:strings.Index(chart, "\n")]
		for _, line := range tc.lines {
			if !strings.Contains(chart, `"name":"`+line+`"`) {
				t.Errorf("%v: the latency chart has no line %q", tc.args, line)
			}
		}
		// Both continuous runs are points of one line: 20 and 80 requests/s, in that order.
		if !strings.Contains(chart, `"value":[20,50]},{"name":"continuous bfloat16 (2)","value":[80,12.5]}`) {
			t.Errorf("%v: the continuous runs are not one line of two points:\n%s", tc.args, chart)
		}
	}
	code, _, errOut := runMain(t, "compare", "--html", html, "--series", "ours,theirs", a, b, c)
	if code != 2 || !strings.Contains(errOut, "--series: 2 names for 3 result files") {
		t.Errorf("a miscounted --series: exit %d: %s", code, errOut)
	}
}
