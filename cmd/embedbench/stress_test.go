package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embedbench/embedbench/internal/stress"
)

func stressServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" {
			io.WriteString(w, `{"status":"healthy","backend":"test","model":"m","gpu_available":false}`)
			return
		}
		var req struct{ Texts []string }
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		rows := make([]string, len(req.Texts))
		for i := range rows {
			rows[i] = "[1,2]"
		}
		io.WriteString(w, `{"embeddings":[`+strings.Join(rows, ",")+`],"model":"m","num_embeddings":2,"embedding_dim":2}`)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestStressCommandWritesResultAndHonoursSLO(t *testing.T) {
	srv := stressServer(t)
	dir := t.TempDir()
	data := filepath.Join(dir, "sentences.json")
	if err := os.WriteFile(data, []byte(`["one","two","three"]`), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(slo string) (int, string) {
		out := filepath.Join(dir, "out-"+strings.NewReplacer("<", "", ">", "", "%", "", ",", "").Replace(slo))
		args := []string{"stress", "--service-url", srv.URL, "--max-requests", "30", "--batch-size", "2",
			"--max-concurrent-requests", "2", "--data-file", data, "--output-dir", out, "--gpu", "none", "--slo", slo}
		var stderr strings.Builder
		code := realMain(args, &stderr)
		return code, out
	}
	code, out := run("p99<10s,success>99%")
	if code != 0 {
		t.Fatalf("exit %d with a met SLO", code)
	}
	files, _ := filepath.Glob(filepath.Join(out, "stress_test_results_*.json"))
	if len(files) != 1 {
		t.Fatalf("result files %v", files)
	}
	res, err := stress.ReadResult(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if res.TotalRequests != 30 || res.SuccessfulRequests != 30 || res.Passages != 60 || !res.SLO.Passed || res.Config.DataPassages != 3 {
		t.Errorf("result %+v", res)
	}
	if code, _ := run("p99<1us"); code != exitSLOBreach {
		t.Errorf("exit %d on a breached SLO, want %d", code, exitSLOBreach)
	}
}

func TestStressCommandRejectsBadFlags(t *testing.T) {
	dir := t.TempDir()
	data := filepath.Join(dir, "sentences.json")
	os.WriteFile(data, []byte(`["one"]`), 0o644)
	for _, args := range [][]string{
		{"--data-file", filepath.Join(dir, "missing.json")},
		{"--data-file", data, "--slo", "p99<"},
		{"--data-file", data, "--duration", "1s", "--duration-minutes", "1"},
		{"--data-file", data, "--timeout", "0s"},
		{"--data-file", data, "--batch-size", "0"},
		{"--data-file", data, "--max-concurrent-requests", "0"},
		{"--data-file", data, "--duration-minutes", "1e300"},
		{"--data-file", data, "--dead-after", "-1s"},
		{"--data-file", data, "--arrival", "poisson"}, // no --rate: a closed loop would ignore it
		{"--data-file", data, "--gpu", "nvidia"},
	} {
		var stderr strings.Builder
		if code := realMain(append([]string{"stress", "--service-url", "http://127.0.0.1:1"}, args...), &stderr); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, stderr.String())
		}
	}
	var stderr strings.Builder
	if code := realMain([]string{"stress", "--service-url", "http://127.0.0.1:1/?x=1", "--data-file", data}, &stderr); code != 2 || !strings.Contains(stderr.String(), "query") {
		t.Errorf("a service URL with a query: exit %d, want 2 saying why (%s)", code, stderr.String())
	}
	// A data file of another kind (the collection itself) is not one to overwrite.
	tsv := filepath.Join(dir, "collection.tsv")
	os.WriteFile(tsv, []byte("0\tA passage.\n"), 0o644)
	stderr.Reset()
	if code := realMain([]string{"stress", "--service-url", "http://127.0.0.1:1", "--data-file", tsv}, &stderr); code != 2 ||
		strings.Contains(stderr.String(), "--output "+tsv) || !strings.Contains(stderr.String(), "--source") {
		t.Errorf("a TSV as --data-file: exit %d, %q; want 2, pointing at embedbench data --source and not at overwriting it", code, stderr.String())
	}
}

// A server behind an API key: the key goes with every request, from --api-key or
// $EMBEDBENCH_API_KEY; without it every request fails, and a run that measured nothing but
// failures exits non-zero instead of reporting success.
func TestStressSendsTheAPIKey(t *testing.T) {
	inner := stressServer(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health" && r.Header.Get("Authorization") != "Bearer s3cret" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":{"message":"missing or wrong API key"}}`)
			return
		}
		inner.Config.Handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	data := filepath.Join(dir, "sentences.json")
	if err := os.WriteFile(data, []byte(`["one","two"]`), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(extra ...string) (int, string) {
		args := append([]string{"stress", "--service-url", srv.URL, "--max-requests", "10", "--batch-size", "2",
			"--data-file", data, "--output-dir", t.TempDir(), "--gpu", "none"}, extra...)
		var stderr strings.Builder
		return realMain(args, &stderr), stderr.String()
	}
	if code, msg := run(); code == 0 || !strings.Contains(msg, "every request failed") || !strings.Contains(msg, "http_401: 10") {
		t.Errorf("no key: exit %d, %q; want a failure that says every request was a 401", code, msg)
	}
	if code, msg := run("--api-key", "s3cret"); code != 0 {
		t.Errorf("--api-key: exit %d: %s", code, msg)
	}
	t.Setenv("EMBEDBENCH_API_KEY", "s3cret")
	if code, msg := run(); code != 0 {
		t.Errorf("$EMBEDBENCH_API_KEY: exit %d: %s", code, msg)
	}
}
