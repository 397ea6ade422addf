package stress

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// concurrentRuns runs two load generators at once, one against a fast server and one against
// a slow one, and returns their results as read back from their files.
func concurrentRuns(t *testing.T, fastDelay, slowDelay time.Duration) (fast, slow *Result, dir string) {
	t.Helper()
	servers := []string{
		start(t, &fakeEmbedder{delay: func(int64) time.Duration { return fastDelay }}).URL,
		start(t, &fakeEmbedder{delay: func(int64) time.Duration { return slowDelay }}).URL,
	}
	dir = t.TempDir()
	var wg sync.WaitGroup
	results := make([]*Result, 2)
	errs := make([]error, 2)
	for i, url := range servers {
		wg.Go(func() {
			opts := baseOptions(url)
			opts.MaxConcurrent = 2
			opts.Duration = 1500 * time.Millisecond
			res, err := Run(context.Background(), opts)
			if err != nil {
				errs[i] = err
				return
			}
			// Through the file, as merge reads them.
			path, err := WriteResult(filepath.Join(dir, []string{"fast", "slow"}[i]), res)
			if err == nil {
				results[i], err = ReadResult(path)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return results[0], results[1], dir
}

func TestMergeConcurrentRunsAgainstServersOfDifferentLatency(t *testing.T) {
	const fastDelay, slowDelay = 2 * time.Millisecond, 40 * time.Millisecond
	fast, slow, _ := concurrentRuns(t, fastDelay, slowDelay)
	if fast.Histograms == nil || fast.Histograms.Latency == "" || fast.TimeSeries[0].Time.IsZero() || fast.TimeSeries[0].LatencyHDR == "" {
		t.Fatal("a stress result lacks its histograms or wall-clock series")
	}
	merged, err := Merge([]MergeInput{{"fast.json", fast}, {"slow.json", slow}}, "test")
	if err != nil {
		t.Fatal(err)
	}

	// Counts add.
	if merged.TotalRequests != fast.TotalRequests+slow.TotalRequests ||
		merged.SuccessfulRequests != fast.SuccessfulRequests+slow.SuccessfulRequests ||
		merged.Passages != fast.Passages+slow.Passages || merged.LatencyMetrics.Count != merged.SuccessfulRequests {
		t.Errorf("counts: merged %d/%d (%d passages, %d latencies) from %d/%d and %d/%d", merged.SuccessfulRequests, merged.TotalRequests,
			merged.Passages, merged.LatencyMetrics.Count, fast.SuccessfulRequests, fast.TotalRequests, slow.SuccessfulRequests, slow.TotalRequests)
	}

	// The merged histogram is the sum of the parts', bucket by bucket (the buckets lie on one
	// fixed log grid, so they can be compared).
	counts := map[float64]int64{}
	for _, part := range []*Result{fast, slow} {
		for _, b := range part.LatencyHistogram {
			counts[b.LowerSeconds] += b.Count
		}
	}
	for _, b := range merged.LatencyHistogram {
		if counts[b.LowerSeconds] != b.Count {
			t.Errorf("bucket from %.6f s: merged %d, parts %d", b.LowerSeconds, b.Count, counts[b.LowerSeconds])
		}
		delete(counts, b.LowerSeconds)
	}
	for lower, n := range counts {
		if n != 0 {
			t.Errorf("bucket from %.6f s: the parts hold %d, the merged histogram none", lower, n)
		}
	}

	// Percentiles from the merged distribution, not averaged: the fast server answered most
	// requests, so the median is a fast answer; more than 1% came from the slow one, so p99 is
	// a slow answer. Averaging the parts' percentiles would put both near the middle.
	if fast.SuccessfulRequests <= 2*slow.SuccessfulRequests {
		t.Fatalf("the fast server answered %d, the slow %d: the test needs the fast one to dominate", fast.SuccessfulRequests, slow.SuccessfulRequests)
	}
	lm := merged.LatencyMetrics
	if lm.P50 >= slow.LatencyMetrics.Min {
		t.Errorf("merged p50 %.4f s is no fast answer (slow server's fastest %.4f s, averaged p50s %.4f s)",
			lm.P50, slow.LatencyMetrics.Min, (fast.LatencyMetrics.P50+slow.LatencyMetrics.P50)/2)
	}
	if lm.P99 < slow.LatencyMetrics.Min*0.999 {
		t.Errorf("merged p99 %.4f s is below every slow answer (%.4f s)", lm.P99, slow.LatencyMetrics.Min)
	}
	if lm.Min != min(fast.LatencyMetrics.Min, slow.LatencyMetrics.Min) || lm.Max != max(fast.LatencyMetrics.Max, slow.LatencyMetrics.Max) {
		t.Errorf("merged min/max %v/%v from %v/%v and %v/%v", lm.Min, lm.Max, fast.LatencyMetrics.Min, fast.LatencyMetrics.Max, slow.LatencyMetrics.Min, slow.LatencyMetrics.Max)
	}

	// They ran at once: throughput adds over the common window.
	info := merged.Merged
	if info == nil || len(info.Parts) != 2 {
		t.Fatalf("merge info %+v", info)
	}
	if info.OverlapSeconds < 1.2 || merged.TestDurationSeconds != info.OverlapSeconds {
		t.Errorf("overlap %.2f s, duration %.2f s for two 1.5 s runs started together", info.OverlapSeconds, merged.TestDurationSeconds)
	}
	if sum := fast.RequestsPerSecond + slow.RequestsPerSecond; !within(merged.RequestsPerSecond, sum, 0.1) {
		t.Errorf("merged %.1f requests/s, parts %.1f + %.1f", merged.RequestsPerSecond, fast.RequestsPerSecond, slow.RequestsPerSecond)
	}
	// The series is on one wall-clock grid and holds every request.
	var seriesOK int64
	for i, p := range merged.TimeSeries {
		seriesOK += p.Successes
		if want := merged.StartedAt.Add(time.Duration(p.Second) * time.Second); !p.Time.Equal(want) {
			t.Errorf("point %d at %v, want %v", i, p.Time, want)
		}
	}
	if seriesOK != merged.SuccessfulRequests {
		t.Errorf("merged series holds %d successes, result %d", seriesOK, merged.SuccessfulRequests)
	}
	if n := len(merged.TimeSeries); n < len(fast.TimeSeries) || n > len(fast.TimeSeries)+1 {
		t.Errorf("merged series has %d points, parts %d and %d", n, len(fast.TimeSeries), len(slow.TimeSeries))
	}

	// The parts keep their configurations; the merged load is their sum.
	if info.Parts[0].Config.ServiceURL != fast.Config.ServiceURL || info.Parts[1].Config.ServiceURL != slow.Config.ServiceURL ||
		info.Parts[0].File != "fast.json" || info.Parts[1].LatencyMetrics != slow.LatencyMetrics {
		t.Errorf("parts %+v", info.Parts)
	}
	if merged.Config.MaxConcurrentRequests != 4 || merged.Config.BatchSize != 4 {
		t.Errorf("merged config %+v", merged.Config)
	}
	// Two servers: the merge must say the services differ, and nothing about the windows.
	warnings := strings.Join(info.Warnings, "\n")
	if !strings.Contains(warnings, "different services") || !strings.Contains(warnings, fast.Config.ServiceURL) {
		t.Errorf("no warning that the services differ: %q", warnings)
	}
	if strings.Contains(warnings, "overlap") {
		t.Errorf("warned about windows of runs started together: %q", warnings)
	}

	// A merged result merges again, but never with a run it already holds.
	if _, err := Merge([]MergeInput{{"merged.json", merged}, {"slow-again.json", slow}}, "test"); err == nil ||
		!strings.Contains(err.Error(), "slow.json") || !strings.Contains(err.Error(), "slow-again.json") || !strings.Contains(err.Error(), "same run") {
		t.Errorf("the same run merged twice: %v", err)
	}
}

func TestMergeSaysWhenWindowsDoNotOverlap(t *testing.T) {
	fast, slow, _ := concurrentRuns(t, time.Millisecond, 5*time.Millisecond)
	// The slow run as if it had run a minute later.
	const shift = time.Minute
	slow.StartedAt, slow.EndedAt = slow.StartedAt.Add(shift), slow.EndedAt.Add(shift)
	for i := range slow.TimeSeries {
		slow.TimeSeries[i].Time = slow.TimeSeries[i].Time.Add(shift)
	}
	merged, err := Merge([]MergeInput{{"a.json", fast}, {"b.json", slow}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(merged.Merged.Warnings, "\n"); !strings.Contains(w, "do not overlap") {
		t.Errorf("no warning: %q", w)
	}
	span := merged.EndedAt.Sub(merged.StartedAt).Seconds()
	if span < 60 || merged.TestDurationSeconds != span || merged.Merged.OverlapSeconds != 0 {
		t.Errorf("span %.1f s, duration %.1f s, overlap %.1f s", span, merged.TestDurationSeconds, merged.Merged.OverlapSeconds)
	}
	if want := float64(merged.SuccessfulRequests) / span; !within(merged.RequestsPerSecond, want, 1e-9) {
		t.Errorf("requests/s %.2f, want %.2f over the span", merged.RequestsPerSecond, want)
	}
	if last := merged.TimeSeries[len(merged.TimeSeries)-1]; last.Second < 60 {
		t.Errorf("the later run's seconds are not placed by the wall clock: last point at second %d", last.Second)
	}
}

func TestMergeRefusesWhatItCannotMergeExactly(t *testing.T) {
	fast, slow, _ := concurrentRuns(t, time.Millisecond, 2*time.Millisecond)
	old := *slow
	old.Histograms = nil
	seed := &Result{TotalRequests: 10, SuccessfulRequests: 10}
	damaged := *slow
	damaged.SuccessfulRequests++
	for _, c := range []struct {
		name string
		r    *Result
		want string
	}{
		{"old.json", &old, "no HDR histograms"},
		{"seed.json", seed, "stress_test.py"},
		{"damaged.json", &damaged, "altered or is damaged"},
	} {
		_, err := Merge([]MergeInput{{"good.json", fast}, {c.name, c.r}}, "test")
		if err == nil || !strings.Contains(err.Error(), c.name) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one naming it and saying %q", c.name, err, c.want)
		}
	}
	if _, err := Merge([]MergeInput{{"good.json", fast}}, "test"); err == nil {
		t.Error("merged a single result")
	}
}

func TestReadResultRefusesOtherJSON(t *testing.T) {
	dir := t.TempDir()
	for name, body := range map[string]string{
		"package.json": `{"name": "x", "version": "1.0.0"}`,
		"list.json":    `["a", "b"]`,
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadResult(path); err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), "not a stress result") {
			t.Errorf("%s: error %v", name, err)
		}
	}
}

func TestMergeOpenLoopSchedulesAdd(t *testing.T) {
	srv := start(t, &fakeEmbedder{delay: func(int64) time.Duration { return time.Millisecond }})
	var wg sync.WaitGroup
	results := make([]*Result, 2)
	errs := make([]error, 2)
	for i := range results {
		wg.Go(func() {
			opts := baseOptions(srv.URL)
			opts.Rate, opts.MaxConcurrent, opts.Duration = 50, 20, time.Second
			results[i], errs[i] = Run(context.Background(), opts)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	a, b := results[0], results[1]
	merged, err := Merge([]MergeInput{{"a.json", a}, {"b.json", b}}, "test")
	if err != nil {
		t.Fatal(err)
	}
	ol := merged.OpenLoop
	if ol == nil || ol.TargetRate != 100 || ol.ScheduledRequests != a.OpenLoop.ScheduledRequests+b.OpenLoop.ScheduledRequests ||
		ol.SentRequests != a.OpenLoop.SentRequests+b.OpenLoop.SentRequests || ol.RateKept != (a.OpenLoop.RateKept && b.OpenLoop.RateKept) {
		t.Errorf("open loop %+v from %+v and %+v", ol, a.OpenLoop, b.OpenLoop)
	}
	if u := merged.LatencyMetricsUncorrected; u == nil || u.Count != merged.SuccessfulRequests {
		t.Errorf("uncorrected latency %+v for %d successes", u, merged.SuccessfulRequests)
	}
	if ol != nil && ol.SendLag.Count != a.OpenLoop.SendLag.Count+b.OpenLoop.SendLag.Count {
		t.Errorf("send lag holds %d, parts %d + %d", ol.SendLag.Count, a.OpenLoop.SendLag.Count, b.OpenLoop.SendLag.Count)
	}
	// One service, started together: nothing to warn about.
	if len(merged.Merged.Warnings) != 0 {
		t.Errorf("warnings for two generators on one service: %q", merged.Merged.Warnings)
	}
}
