package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embedbench/embedbench/internal/localdata"
)

// What a user of the seed's data_loader.py checks: the file is a JSON list of distinct
// passages, the same seed gives the same file, and asking for more than there is fails
// plainly without writing anything.
func TestDataCommand(t *testing.T) {
	src, err := localdata.MSMARCODir()
	if err != nil {
		t.Skipf("no shared MS MARCO sample: %v", err)
	}
	dir := t.TempDir()
	read := func(path string) []string {
		t.Helper()
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var passages []string
		if err := json.Unmarshal(raw, &passages); err != nil {
			t.Fatalf("%s is not a JSON list of strings: %v", path, err)
		}
		return passages
	}
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
	for _, out := range []string{a, b} {
		if err := runData(context.Background(), []string{"--source", src, "--count", "300", "--seed", "7", "--output", out}); err != nil {
			t.Fatal(err)
		}
	}
	pa, pb := read(a), read(b)
	if len(pa) != 300 {
		t.Fatalf("got %d passages, want 300", len(pa))
	}
	seen := map[string]bool{}
	for i, p := range pa {
		if strings.TrimSpace(p) == "" || seen[p] {
			t.Fatalf("passage %d is empty or repeated: %q", i, p)
		}
		seen[p] = true
		if pb[i] != p {
			t.Fatalf("the same seed gave a different file at passage %d", i)
		}
	}

	tooMany := filepath.Join(dir, "too-many.json")
	err = runData(context.Background(), []string{"--source", src, "--count", "1000000", "--output", tooMany})
	if err == nil || !strings.Contains(err.Error(), "5904") {
		t.Fatalf("asking for a million passages: err = %v, want a plain error saying how many there are (5904)", err)
	}
	if _, err := os.Stat(tooMany); !os.IsNotExist(err) {
		t.Fatalf("a failed run wrote %s", tooMany)
	}
	if err := runData(context.Background(), []string{"--source", filepath.Join(dir, "missing.tsv"), "--output", tooMany}); err == nil || !strings.Contains(err.Error(), "missing.tsv") {
		t.Fatalf("missing source: err = %v, want it named", err)
	}
	// An output that cannot be written is refused before the source is read.
	for _, out := range []string{dir, filepath.Join(dir, "no", "such", "dir.json")} {
		if err := runData(context.Background(), []string{"--source", filepath.Join(dir, "missing.tsv"), "--output", out}); err == nil || !strings.Contains(err.Error(), "--output") {
			t.Errorf("--output %s: err = %v, want it refused before the (missing) source is read", out, err)
		}
	}
}
