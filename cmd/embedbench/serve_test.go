package main

import (
	"context"
	"errors"
	"testing"
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
