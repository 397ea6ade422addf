package localdata

import (
	"os"
	"path/filepath"
	"strings"
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

// The shared folder is found beside any folder above the start (a binary built into a checkout
// and run from elsewhere starts from its own folder), and a failure says where it looked.
func TestSharedAboveAndWhereItLooked(t *testing.T) {
	root := t.TempDir()
	for _, d := range []string{filepath.Join(root, "shared", "models"), filepath.Join(root, "checkout", "bin")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if got, ok := sharedAbove(filepath.Join(root, "checkout", "bin")); !ok || got != filepath.Join(root, "shared") {
		t.Errorf("from checkout/bin: %q, %v; want %s", got, ok, filepath.Join(root, "shared"))
	}
	elsewhere := t.TempDir()
	t.Chdir(elsewhere)
	t.Setenv(EnvShared, "")
	if _, err := SharedDir(); err != nil && !strings.Contains(err.Error(), elsewhere) {
		t.Errorf("not found: %v; want it to say it looked above %s", err, elsewhere)
	}
}
