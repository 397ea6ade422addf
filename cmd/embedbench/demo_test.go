package main

import (
	"context"
	"strings"
	"testing"
)

// demo takes serve's name for the model size as well as its own.
func TestDemoTakesModelSize(t *testing.T) {
	err := runDemo(context.Background(), []string{"--model-size", "huge", "--output-dir", t.TempDir(), "--offline"})
	if err == nil || !strings.Contains(err.Error(), `"huge"`) {
		t.Fatalf("demo --model-size huge: %v, want an error naming the size", err)
	}
}
