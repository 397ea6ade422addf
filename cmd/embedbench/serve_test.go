package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/embedbench/embedbench/internal/localdata"
)

// Bad flags are refused before anything loads: a batch cut outside 0..1, or asked of the
// engine that has no batch in flight to cut beside, and typos in --dtype and --pooling, which
// were found only after the model had been fetched.
func TestServeRefusesBadFlagsBeforeLoading(t *testing.T) {
	for _, args := range [][]string{
		{"--busy-batch-cut", "-0.1"},
		{"--busy-batch-cut", "1.5"},
		{"--busy-batch-cut", "NaN"},
		{"--engine", "sequential", "--busy-batch-cut", "0.15"},
		{"--replicas-per-gpu", "0"},
		{"--device", "cpu", "--replicas-per-gpu", "2"},
		{"--replicas-per-gpu", "2", "--memory-fraction", "0.6"},
		{"--engine", "sequential", "--replicas-per-gpu", "2"},
		// typos caught before the model is fetched
		{"--dtype", "fp16"},
		{"--pooling", "avg"},
	} {
		if err := runServe(context.Background(), args); !errors.Is(err, errUsage) {
			t.Errorf("serve %v: %v, want a usage error", args, err)
		}
	}
}

// The busy batch's cut is on by default for the continuous engine, and the sequential engine,
// which has no batch in flight to cut beside, starts without it unless it is asked for.
func TestServeBusyBatchCutDefault(t *testing.T) {
	f, err := parseServeFlags(nil)
	if err != nil || f.busyBatchCut != 0.15 {
		t.Errorf("serve with no flags: cut %g, %v; want 0.15", f.busyBatchCut, err)
	}
	if f, err := parseServeFlags([]string{"--engine", "sequential"}); err != nil || f.busyBatchCut != 0 {
		t.Errorf("serve --engine sequential: cut %g, %v; want 0", f.busyBatchCut, err)
	}
	if f, err := parseServeFlags([]string{"--engine", "sequential", "--busy-batch-cut", "0"}); err != nil || f.busyBatchCut != 0 {
		t.Errorf("serve --engine sequential --busy-batch-cut 0: cut %g, %v", f.busyBatchCut, err)
	}
}

// --metrics-port answers /health from the moment serve listens, through loading, and is
// refused when it is --port's own.
func TestServeMetricsPort(t *testing.T) {
	if err := runServe(context.Background(), []string{"--port", "9123", "--metrics-port", "9123"}); !errors.Is(err, errUsage) {
		t.Errorf("--metrics-port equal to --port: %v, want a usage error", err)
	}
	dir, err := localdata.ModernBERTDir()
	if err != nil {
		t.Skip("no shared model files:", err)
	}
	port, probe := freePort(t), freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runServe(ctx, []string{"--port", strconv.Itoa(port), "--metrics-port", strconv.Itoa(probe),
			"--model", dir, "--model-size", "tiny", "--device", "cpu"})
	}()
	healthy := false
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline) && !healthy; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", probe))
		if err == nil {
			healthy = resp.StatusCode == http.StatusOK
			resp.Body.Close()
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("serve: %v", err)
	}
	if !healthy {
		t.Fatal("the probe port never answered /health with 200")
	}
	if _, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/health", probe)); err == nil {
		t.Error("the probe port still answers after serve returned")
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Help asked for is an answer (exit 0), as --version is; no command is a usage error (2).
func TestGlobalHelpAndVersion(t *testing.T) {
	for _, c := range []struct {
		args []string
		want int
	}{{[]string{"--help"}, 0}, {[]string{"--version"}, 0}, {[]string{"version"}, 0}, {nil, 2}, {[]string{"--nope"}, 2}} {
		var stderr strings.Builder
		if code := realMain(c.args, &stderr); code != c.want {
			t.Errorf("embedbench %v: exit %d, want %d", c.args, code, c.want)
		}
	}
}
