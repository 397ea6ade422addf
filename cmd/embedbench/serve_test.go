package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/embedbench/embedbench/internal/localdata"
)

// A batch cut outside 0..1, or asked of the engine that has no batch in flight to cut beside,
// is refused before anything loads.
func TestServeRefusesABadBusyBatchCut(t *testing.T) {
	for _, args := range [][]string{
		{"--busy-batch-cut", "-0.1"},
		{"--busy-batch-cut", "1.5"},
		{"--busy-batch-cut", "NaN"},
		{"--engine", "sequential", "--busy-batch-cut", "0.15"},
	} {
		if err := runServe(context.Background(), args); !errors.Is(err, errUsage) {
			t.Errorf("serve %v: %v, want a usage error", args, err)
		}
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
