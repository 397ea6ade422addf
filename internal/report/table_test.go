package report

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embedbench/embedbench/internal/stress"
)

func writeResult(t *testing.T, dir string, r *stress.Result) string {
	t.Helper()
	path, err := stress.WriteResult(dir, r)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

func row(t *testing.T, tab Table, section, name string) Row {
	t.Helper()
	for _, r := range tab.Rows {
		if r.Section == section && r.Name == name {
			return r
		}
	}
	t.Fatalf("no row %s/%s in %+v", section, name, tab.Rows)
	return Row{}
}

func TestCompareTable(t *testing.T) {
	dir := t.TempDir()
	seq := fixtureRun(t, "sequential", "float32", 40*time.Millisecond, 50, false)
	cont := fixtureRun(t, "continuous", "bfloat16", 20*time.Millisecond, 100, true)
	cont.StartedAt = cont.StartedAt.Add(time.Minute) // distinct file names
	runs, err := Load([]string{writeResult(t, dir, seq), writeResult(t, dir, cont)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if runs[0].Label != "sequential float32" || runs[1].Label != "continuous bfloat16" {
		t.Fatalf("labels %q, %q", runs[0].Label, runs[1].Label)
	}
	tab := Compare(runs)

	rps := row(t, tab, "throughput", "requests/s")
	if rps.Cells[0] != "50.00" || rps.Cells[1] != "100" || rps.Ratios[0] != "" || rps.Ratios[1] != "2.00×" {
		t.Errorf("requests/s row %+v", rps)
	}
	pps := row(t, tab, "throughput", "passages/s")
	if pps.Cells[1] != "3200" || pps.Ratios[1] != "2.00×" {
		t.Errorf("passages/s row %+v", pps)
	}
	// Half the median latency: the p50 ratio is about 0.5 (HDR precision, sampled data).
	p50 := row(t, tab, "latency", "p50")
	if !strings.HasSuffix(p50.Cells[0], " ms") || !(p50.Ratios[1] == "0.49×" || p50.Ratios[1] == "0.50×" || p50.Ratios[1] == "0.51×") {
		t.Errorf("p50 row %+v", p50)
	}
	gpu := row(t, tab, "gpu", "utilisation")
	if gpu.Cells[0] != "unavailable" || !strings.HasSuffix(gpu.Cells[1], "%") || gpu.Ratios[1] != "" {
		t.Errorf("gpu row %+v: the baseline has no GPU figure, so no ratio", gpu)
	}
	if mem := row(t, tab, "gpu", "memory used (max)"); mem.Cells[1] != "20.0 GiB / 80.0 GiB" {
		t.Errorf("memory row %+v", mem)
	}
	if w := row(t, tab, "setup", "weights"); w.Cells[0] != "random (seed 0)" {
		t.Errorf("weights row %+v", w)
	}
	if l := row(t, tab, "setup", "load"); l.Cells[0] != "closed loop, 10 concurrent" {
		t.Errorf("load row %+v", l)
	}
	sr := row(t, tab, "requests", "success rate")
	if sr.Cells[0] == "100%" || !strings.HasPrefix(sr.Cells[0], "99.") {
		t.Errorf("success rate %q: 2 failures must not round to 100%%", sr.Cells[0])
	}

	var out bytes.Buffer
	if err := tab.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	text := out.String()
	for _, want := range []string{"sequential float32", "continuous bfloat16", "requests/s", "100 (2.00×)", "p99.9", "success rate", "tokens/s", "engine", "dtype", "model", "weights", "batch size", "ratios (×) are against the first run, sequential float32"} {
		if !strings.Contains(text, want) {
			t.Errorf("table lacks %q:\n%s", want, text)
		}
	}
	// Sections appear once each, in reading order.
	last := -1
	for _, s := range []string{"\nthroughput", "\nlatency", "\nrequests", "\ngpu", "\nsetup"} {
		i := strings.Index(text, s)
		if i < last || strings.Count(text, s+" ") > 1 {
			t.Errorf("section %q out of order or repeated:\n%s", s, text)
		}
		last = i
	}
	t.Logf("\n%s", text)

	var md bytes.Buffer
	if err := tab.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(md.String()), "\n")
	if lines[0] != "| | sequential float32 | continuous bfloat16 |" || lines[1] != "|---|---:|---:|" {
		t.Errorf("markdown header:\n%s", md.String())
	}
	for _, want := range []string{"| **throughput** | | |", "| requests/s | 50.00 | 100 (2.00×) |", "| success rate |"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md.String())
		}
	}
}

func TestSeedResultFile(t *testing.T) {
	// A file written by the seed's Python stress_test.py: only its fields.
	path := filepath.Join(t.TempDir(), "stress_test_results_20240101_000000.json")
	seed := `{"test_duration_seconds": 600, "total_requests": 15000, "successful_requests": 14950,
	  "requests_per_second": 24.92, "latency_metrics": {"mean": 0.0421, "p50": 0.0389, "p90": 0.0567, "p99": 0.0892}}`
	if err := os.WriteFile(path, []byte(seed), 0o644); err != nil {
		t.Fatal(err)
	}
	runs, err := Load([]string{path, path}, []string{"hf", "hf"})
	if err != nil {
		t.Fatal(err)
	}
	again := []Run{{Label: "x"}, {Label: "x"}, {Label: "x (2)"}}
	NameRuns(again)
	if again[0].Label != "x" || again[1].Label != "x (3)" || again[2].Label != "x (2)" {
		t.Errorf("labels x, x, x (2) numbered %q, %q, %q; want them all different, x (2) kept", again[0].Label, again[1].Label, again[2].Label)
	}
	if got := formatPercent(29.0 / 100); got != "29.000%" {
		t.Errorf("29 of 100: %s", got)
	}
	if runs[1].Label != "hf (2)" {
		t.Errorf("duplicate label not made unique: %q", runs[1].Label)
	}
	tab := Compare(runs)
	if c := row(t, tab, "latency", "p99").Cells[0]; c != "89.2 ms" {
		t.Errorf("p99 %q; want 89.2 ms", c)
	}
	if c := row(t, tab, "throughput", "passages/s").Cells[0]; c != "n/a" {
		t.Errorf("passages/s %q for a seed file; want n/a, not 0", c)
	}
	if c := row(t, tab, "throughput", "tokens/s").Cells[0]; c != "not reported" {
		t.Errorf("tokens/s %q", c)
	}
	if c := row(t, tab, "setup", "weights").Cells[0]; c != "unknown" {
		t.Errorf("weights %q", c)
	}
	// What the seed's file does not hold reads as missing, not as zero.
	if c := row(t, tab, "latency", "p99.9").Cells[0]; c != "n/a" {
		t.Errorf("p99.9 %q for a seed file; want n/a", c)
	}
	if c := row(t, tab, "setup", "batch size").Cells[0]; c != "unknown" {
		t.Errorf("batch size %q for a seed file; want unknown", c)
	}
	if c := row(t, tab, "requests", "success rate").Cells[0]; c != "99.666%" {
		t.Errorf("success rate %q", c)
	}
	var out bytes.Buffer
	if err := tab.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "24.92 (1.00×)") {
		t.Errorf("table:\n%s", out.String())
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	good := writeResult(t, dir, fixtureRun(t, "sequential", "float32", 10*time.Millisecond, 5, false))
	bad := filepath.Join(dir, "bad.json")
	os.WriteFile(bad, []byte(`{"total_requests": 1, "successful_requests": `), 0o644)
	cases := map[string]struct {
		paths, labels []string
		want          string
	}{
		"none":           {nil, nil, "no result files"},
		"missing":        {[]string{good, filepath.Join(dir, "nope.json")}, nil, "nope.json"},
		"malformed":      {[]string{good, bad}, nil, "bad.json"},
		"label mismatch": {[]string{good, good}, []string{"a"}, "1 labels for 2 result files"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Load(tc.paths, tc.labels)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want one mentioning %q", err, tc.want)
			}
		})
	}
}

func TestFormatting(t *testing.T) {
	for _, tc := range []struct {
		got, want string
	}{
		{formatSeconds(0.0421), "42.1 ms"},
		{formatSeconds(0.0002345), "234 µs"},
		{formatSeconds(2.5), "2.50 s"},
		{formatSeconds(0.150), "150 ms"},
		{formatRate(1_234_567), "1.23 M"},
		{formatRate(12_500), "12.5 k"},
		{formatRate(830.4), "830"},
		{formatPercent(0.99995), "99.995%"},
		{formatPercent(0.999999), "99.999%"},
		{formatPercent(1), "100%"},
		{formatPercent(0), "0.000%"},
	} {
		if tc.got != tc.want {
			t.Errorf("got %q; want %q", tc.got, tc.want)
		}
	}
}

func TestMovingAverage(t *testing.T) {
	got := movingAverage([]float64{0, 4, 0, 0, 8, 0}, 2)
	want := []float64{0, 2, 2, 0, 4, 4}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("moving average %v; want %v", got, want)
		}
	}
	slow := []Run{{Result: &stress.Result{RequestsPerSecond: 0.25}}, {Result: &stress.Result{RequestsPerSecond: 100}}}
	if w := throughputWindow(slow); w != 20 {
		t.Errorf("window %d for 0.25 requests/s; want 20", w)
	}
	if w := throughputWindow(slow[1:]); w != 1 {
		t.Errorf("window %d for 100 requests/s; want 1", w)
	}
}
