package stress

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestWriteReadResultRoundTrip(t *testing.T) {
	dir := t.TempDir()
	tps := 1234.5
	in := &Result{
		SchemaVersion:       SchemaVersion,
		TestDurationSeconds: 10,
		TotalRequests:       100,
		SuccessfulRequests:  98,
		FailedRequests:      2,
		RequestsPerSecond:   9.8,
		LatencyMetrics:      LatencyMetrics{Mean: 0.04, P50: 0.03, P90: 0.05, P99: 0.09, Count: 98},
		TokensPerSecond:     &tps,
		Errors:              map[string]int64{"http_500": 2},
		GPU:                 GPUTelemetry{Source: GPUSourceUnavailable, Reason: "no NVML"},
		StartedAt:           time.Date(2026, 11, 26, 23, 0, 0, 0, time.UTC),
	}
	first, err := WriteResult(dir, in)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(first) != "stress_test_results_20261126_230000.json" {
		t.Errorf("file name %s, want the seed's stress_test_results_<timestamp>.json", filepath.Base(first))
	}
	second, err := WriteResult(dir, in)
	if err != nil {
		t.Fatal(err)
	}
	if second == first {
		t.Fatalf("second run in the same second overwrote %s", first)
	}
	out, err := ReadResult(first)
	if err != nil {
		t.Fatal(err)
	}
	if out.TotalRequests != 100 || out.LatencyMetrics.P99 != 0.09 || *out.TokensPerSecond != tps || out.Errors["http_500"] != 2 {
		t.Errorf("round trip lost data: %+v", out)
	}
	if out.GPUUtilizationPercent != nil {
		t.Errorf("unavailable GPU utilisation read back as %v, want null", *out.GPUUtilizationPercent)
	}
	raw, _ := os.ReadFile(first)
	if !strings.Contains(string(raw), `"gpu_utilization_percent": null`) {
		t.Errorf("unavailable GPU utilisation must be written as null:\n%s", raw)
	}
}

func TestReadResultAcceptsSeedFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "seed.json")
	seed := `{"test_duration_seconds": 600, "total_requests": 15000, "successful_requests": 14950,
	"requests_per_second": 24.92, "latency_metrics": {"mean": 0.0421, "p50": 0.0389, "p90": 0.0567, "p99": 0.0892}}`
	if err := os.WriteFile(path, []byte(seed), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := ReadResult(path)
	if err != nil {
		t.Fatal(err)
	}
	if r.FailedRequests != 50 || r.LatencyMetrics.P90 != 0.0567 {
		t.Errorf("seed file read as %+v", r)
	}
	if r.SuccessRate < 0.9966 || r.SuccessRate > 0.9967 {
		t.Errorf("success rate %v, want 14950/15000", r.SuccessRate)
	}
}

func TestReadResultRejectsBadFiles(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"truncated.json":    `{"total_requests": 3`,
		"future.json":       `{"schema_version": 999}`,
		"inconsistent.json": `{"schema_version": 1, "total_requests": 3, "successful_requests": 5}`,
	}
	for name, body := range cases {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadResult(path); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("%s: error %v, want one naming the file", name, err)
		}
	}
	if _, err := ReadResult(filepath.Join(dir, "missing.json")); err == nil {
		t.Error("missing file: no error")
	}
}
