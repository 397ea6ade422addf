package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/embedbench/embedbench/internal/stress"
)

// slowService is stressServer answering after delay.
func slowService(t *testing.T, delay time.Duration) string {
	inner := stressServer(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" {
			time.Sleep(delay)
		}
		proxy, err := http.NewRequestWithContext(r.Context(), r.Method, inner.URL+r.URL.Path, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		resp, err := http.DefaultClient.Do(proxy)
		if err != nil {
			http.Error(w, err.Error(), 502)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			w.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// twoConcurrentResults runs two stress runs at once against servers of different latency and
// returns their result files.
func twoConcurrentResults(t *testing.T, dir string) []string {
	t.Helper()
	urls := []string{slowService(t, time.Millisecond), slowService(t, 30*time.Millisecond)}
	paths := make([]string, 2)
	errs := make([]error, 2)
	var wg sync.WaitGroup
	for i, url := range urls {
		wg.Go(func() {
			res, err := stress.Run(context.Background(), stress.Options{
				ServiceURL: url, Passages: []string{"one", "two", "three"}, BatchSize: 2,
				MaxConcurrent: 2, Duration: time.Second, GPU: stress.GPUNone,
			})
			if err == nil {
				paths[i], err = stress.WriteResult(filepath.Join(dir, []string{"pod-a", "pod-b"}[i]), res)
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
	return paths
}

func TestMergeCommand(t *testing.T) {
	dir := t.TempDir()
	parts := twoConcurrentResults(t, dir)
	out := filepath.Join(dir, "merged.json")
	code, stdout, stderr := runMain(t, "merge", "--output", out, parts[0], parts[1])
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "merged 2 results") || !strings.Contains(stdout, "wrote "+out) {
		t.Errorf("output:\n%s", stdout)
	}
	// The two servers differ (two URLs): the user is told.
	if !strings.Contains(stderr, "different services") {
		t.Errorf("no warning about the services:\n%s", stderr)
	}
	merged, err := stress.ReadResult(out)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := stress.ReadResult(parts[0])
	b, _ := stress.ReadResult(parts[1])
	if merged.TotalRequests != a.TotalRequests+b.TotalRequests || merged.Merged == nil || len(merged.Merged.Parts) != 2 ||
		merged.Merged.Parts[1].File != parts[1] || merged.Histograms == nil {
		t.Errorf("merged file: %d requests from %d + %d, merge info %+v", merged.TotalRequests, a.TotalRequests, b.TotalRequests, merged.Merged)
	}

	// A folder stands for the result files below it, as the Job's merge step passes them.
	fromDir := filepath.Join(dir, "from-dir.json")
	if code, _, stderr := runMain(t, "merge", "--output", fromDir, dir); code != 0 {
		t.Fatalf("merge DIR: exit %d: %s", code, stderr)
	}
	if again, err := stress.ReadResult(fromDir); err != nil || again.TotalRequests != merged.TotalRequests {
		t.Errorf("merge DIR: %v, %+v", err, again)
	}

	// compare and the HTML report take the merged result beside a single one.
	html := filepath.Join(dir, "report.html")
	code, stdout, stderr = runMain(t, "compare", "--labels", "pod-a,merged", "--html", html, parts[0], out)
	if code != 0 {
		t.Fatalf("compare: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "merged") {
		t.Errorf("compare output:\n%s", stdout)
	}
	page, err := os.ReadFile(html)
	if err != nil || !strings.Contains(string(page), "Merged from 2 load generators") || !strings.Contains(string(page), filepath.Base(parts[1])) {
		t.Errorf("the report does not say the result is merged (%v)", err)
	}
}

func TestMergeCommandRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	parts := twoConcurrentResults(t, dir)
	other := filepath.Join(dir, "package.json")
	os.WriteFile(other, []byte(`{"name": "not a result"}`), 0o644)
	// A result written before histograms were kept: compare still reads it, merge refuses it.
	old := resultFile(t, filepath.Join(dir, "old"), "continuous", "float32", 20, time.Now().UTC())
	if code, _, stderr := runMain(t, "compare", old, parts[0]); code != 0 {
		t.Errorf("compare refused an old result: %s", stderr)
	}
	out := filepath.Join(dir, "merged.json")
	before, _ := os.ReadFile(parts[0])
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--output", out, parts[0], other}, other + ": not a stress result"},
		{[]string{"--output", out, parts[0], old}, "no HDR histograms"},
		{[]string{"--output", out, parts[0], filepath.Join(dir, "missing.json")}, "missing.json"},
		{[]string{"--output", parts[0], parts[0], parts[1]}, "also an input"},
		{[]string{"--output", out, parts[0]}, "at least two"},
		{[]string{"--output", out, filepath.Join(dir, "nope_dir")}, "nope_dir: no such file"},
		{[]string{"--output", out, parts[0], t.TempDir()}, "holds no stress_test_results_"},
		{[]string{parts[0], parts[1]}, "--output is required"},
	} {
		code, _, stderr := runMain(t, append([]string{"merge"}, c.args...)...)
		if code == 0 || !strings.Contains(stderr, c.want) {
			t.Errorf("merge %v: exit %d, want an error saying %q:\n%s", c.args, code, c.want, stderr)
		}
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a refused merge wrote %s", out)
	}
	if after, _ := os.ReadFile(parts[0]); string(after) != string(before) {
		t.Error("a refused merge changed an input")
	}
}
