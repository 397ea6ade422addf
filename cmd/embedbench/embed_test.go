package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"strings"
	"testing"

	"github.com/embedbench/embedbench/internal/localdata"
)

func tinyEmbedArgs(t *testing.T) []string {
	t.Helper()
	dir, err := localdata.ModernBERTDir()
	if err != nil {
		t.Skip("shared ModernBERT tokenizer not available:", err)
	}
	return []string{"--model", dir, "--weights", "random", "--scale", "2,64,4,128", "--device", "cpu", "--max-length", "128"}
}

func TestEmbedWritesOneNormalisedVectorPerLine(t *testing.T) {
	in := "{\"text\": \"Hello world\"}\n\n{\"text\": \"\"}\n{\"text\": \"" + strings.Repeat("long text ", 200) + "\"}\n"
	var out bytes.Buffer
	if err := embedCommand(context.Background(), tinyEmbedArgs(t), strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d output lines for 3 texts", len(lines))
	}
	for i, line := range lines {
		var rec struct{ Embedding []float64 }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		norm := 0.0
		for _, x := range rec.Embedding {
			norm += x * x
		}
		if len(rec.Embedding) != 64 || math.Abs(math.Sqrt(norm)-1) > 1e-4 {
			t.Fatalf("line %d: %d values, norm %g", i+1, len(rec.Embedding), math.Sqrt(norm))
		}
	}
}

func TestEmbedBadLineKeepsEarlierVectors(t *testing.T) {
	in := "{\"text\": \"fine\"}\n{\"txt\": \"wrong key\"}\n{\"text\": \"never reached\"}\n"
	var out bytes.Buffer
	err := embedCommand(context.Background(), tinyEmbedArgs(t), strings.NewReader(in), &out)
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("error %v, want one naming line 2", err)
	}
	if n := strings.Count(out.String(), "\n"); n != 1 {
		t.Fatalf("%d vectors written before the bad line, want 1", n)
	}
}

func TestEmbedRefusesBadFlags(t *testing.T) {
	args := append(tinyEmbedArgs(t), "--dtype", "float16")
	if err := embedCommand(context.Background(), args, strings.NewReader(""), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "dtype") {
		t.Fatalf("error %v, want a --dtype error", err)
	}
	args = []string{"--model", tinyEmbedArgs(t)[1], "--scale", "2,64,4,128", "--device", "cpu"}
	if err := embedCommand(context.Background(), args, strings.NewReader(""), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--scale needs --weights random") {
		t.Fatalf("error %v, want a --scale error", err)
	}
}
