package localdata

import (
	"os"
	"path/filepath"
	"testing"
)

func TestFindsSharedBesideCheckout(t *testing.T) {
	dir, err := ModernBERTDir()
	if err != nil {
		t.Skipf("no shared folder on this machine: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "tokenizer.json")); err != nil {
		t.Fatalf("ModernBERTDir %s has no tokenizer.json: %v", dir, err)
	}
}

func TestEnvOverride(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "data", "msmarco"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvShared, root)
	got, err := MSMARCODir()
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(root, "data", "msmarco"); got != want {
		t.Fatalf("MSMARCODir = %q, want %q", got, want)
	}
	t.Setenv(EnvShared, filepath.Join(root, "missing"))
	if _, err := SharedDir(); err == nil {
		t.Fatal("a missing override must be an error")
	}
}
