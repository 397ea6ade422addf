package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/embedbench/embedbench/internal/stress"
)

// loadRun is one stress run of a load sweep: the service, its client batch and the load.
type loadRun struct {
	engine, dtype, url string
	batch, clients     int
	median             time.Duration
	rps                float64
}

// sweepFiles writes one result file per run, as `embedbench stress` would, and returns the paths.
func sweepFiles(t *testing.T, runs []loadRun) []string {
	t.Helper()
	dir := t.TempDir()
	var paths []string
	for _, r := range runs {
		res := fixtureRun(t, r.engine, r.dtype, r.median, r.rps, false)
		res.Config.ServiceURL, res.Config.BatchSize, res.Config.MaxConcurrentRequests = r.url, r.batch, r.clients
		path, err := stress.WriteResult(dir, res)
		if err != nil {
			t.Fatal(err)
		}
		paths = append(paths, path)
	}
	return paths
}

// A load sweep of our continuous engine at two batch sizes and the HF reference at one, the
// files in no particular order.
var sweep = []loadRun{
	{"continuous", "bfloat16", "http://127.0.0.1:8001", 1, 64, 9 * time.Millisecond, 300},
	{"huggingface", "float32", "http://127.0.0.1:8002", 32, 1, 67 * time.Millisecond, 15},
	{"continuous", "bfloat16", "http://127.0.0.1:8001", 1, 1, 2 * time.Millisecond, 40},
	{"continuous", "bfloat16", "http://127.0.0.1:8001", 32, 1, 9 * time.Millisecond, 20},
	{"continuous", "bfloat16", "http://127.0.0.1:8001", 1, 8, 4 * time.Millisecond, 160},
	{"continuous", "bfloat16", "http://127.0.0.1:8001", 32, 32, 58 * time.Millisecond, 50},
}

func TestLatencyCurveFromResultFiles(t *testing.T) {
	paths := sweepFiles(t, sweep)
	runs, err := Load(paths, nil)
	if err != nil {
		t.Fatal(err)
	}
	// What each file says, to compare the chart with.
	type want struct {
		series string
		files  []int // indices into sweep, by achieved requests/s
	}
	wants := []want{
		{"continuous bfloat16, batch 1", []int{2, 4, 0}},
		{"huggingface float32, batch 32", []int{1}},
		{"continuous bfloat16, batch 32", []int{3, 5}},
	}
	curves, without := latencyCurves(runs)
	if len(without) != 0 {
		t.Errorf("runs left out: %v", without)
	}
	if len(curves) != len(wants) {
		t.Fatalf("%d series, want %d: %+v", len(curves), len(wants), curves)
	}
	var buf bytes.Buffer
	if err := WriteHTML(&buf, runs, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	page := buf.String()
	if !strings.Contains(page, `id="latency-throughput"`) || !strings.Contains(page, "Latency against throughput") {
		t.Fatal("the report has no latency-against-throughput chart")
	}
	for i, w := range wants {
		c := curves[i]
		if c.Name != w.series || len(c.Points) != len(w.files) {
			t.Errorf("series %d: %q with %d points, want %q with %d", i, c.Name, len(c.Points), w.series, len(w.files))
			continue
		}
		for j, f := range w.files {
			res, err := stress.ReadResult(paths[f])
			if err != nil {
				t.Fatal(err)
			}
			p := c.Points[j]
			if p.RequestsPerSecond != res.RequestsPerSecond || p.P50Millis != res.LatencyMetrics.P50*1e3 || p.P99Millis != res.LatencyMetrics.P99*1e3 {
				t.Errorf("%s point %d is %+v; the file %s says %v req/s, p50 %v s, p99 %v s",
					c.Name, j, p, paths[f], res.RequestsPerSecond, res.LatencyMetrics.P50, res.LatencyMetrics.P99)
			}
			// The page carries the same numbers, as ECharts will draw them.
			for _, y := range []float64{p.P50Millis, p.P99Millis} {
				value, _ := json.Marshal([]float64{p.RequestsPerSecond, y})
				if !strings.Contains(page, `"value":`+string(value)) {
					t.Errorf("%s: the page lacks the point %s", c.Name, value)
				}
			}
		}
		for _, suffix := range []string{" p50", " p99"} {
			if !strings.Contains(page, fmt.Sprintf("%q", c.Name+suffix)) {
				t.Errorf("the page lacks the line %q", c.Name+suffix)
			}
		}
	}
}

func TestLatencySeriesGrouping(t *testing.T) {
	paths := sweepFiles(t, []loadRun{
		{"sequential", "float32", "http://a:8000", 32, 1, 20 * time.Millisecond, 40},
		{"sequential", "float32", "http://b:8000", 32, 1, 30 * time.Millisecond, 30},
		{"sequential", "float32", "http://a:8000", 32, 4, 60 * time.Millisecond, 60},
	})
	runs, err := Load(paths, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Two servers of the same engine are two curves, told apart by their URLs.
	got := SeriesNames(runs)
	want := []string{"sequential float32, batch 32 (http://a:8000)", "sequential float32, batch 32 (http://b:8000)", "sequential float32, batch 32 (http://a:8000)"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("default series %q, want %q", got, want)
	}
	// Named series win: here the user calls both servers one deployment.
	for i := range runs {
		runs[i].Series = "deployment"
	}
	curves, _ := latencyCurves(runs)
	if len(curves) != 1 || curves[0].Name != "deployment" || len(curves[0].Points) != 3 {
		t.Errorf("named series gave %+v", curves)
	}
	// The seed's own result file says nothing of its service: it is a series of its own.
	seed := Run{Label: "seed HF", Result: &stress.Result{TestDurationSeconds: 600, TotalRequests: 15000, SuccessfulRequests: 14950,
		RequestsPerSecond: 24.92, LatencyMetrics: stress.LatencyMetrics{P50: 0.0389, P99: 0.0892}}}
	if got := SeriesNames([]Run{seed}); got[0] != "seed HF" {
		t.Errorf("the seed's result is in series %q, want its label", got[0])
	}
}

func TestLatencyCurveOfOneRun(t *testing.T) {
	one := Run{Path: "one.json", Result: fixtureRun(t, "continuous", "bfloat16", 5*time.Millisecond, 50, false)}
	failed := Run{Label: "all failed", Result: &stress.Result{SchemaVersion: stress.SchemaVersion, TotalRequests: 10, FailedRequests: 10,
		Errors: map[string]int64{"connection": 10}}}
	runs := []Run{one, failed}
	NameRuns(runs)
	var buf bytes.Buffer
	if err := WriteHTML(&buf, runs, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	curves, without := latencyCurves(runs)
	if len(curves) != 1 || len(curves[0].Points) != 1 || curves[0].Points[0].RequestsPerSecond != one.Result.RequestsPerSecond {
		t.Errorf("one run gave %+v", curves)
	}
	page := buf.String()
	if len(without) != 1 || !strings.Contains(page, "Left out, no successful requests: all failed.") {
		t.Errorf("the run without successes is not named as left out (%v)", without)
	}
	if !strings.Contains(page, `{id: "latency-throughput", option: {`) {
		t.Error("no latency-against-throughput chart for a single run")
	}
}
