//go:build unix

package hub

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Another process (say Python) holding huggingface_hub's lock for a blob makes us wait, and
// when it has written the blob we use it instead of downloading again.
func TestWaitsForAnotherProcessesDownload(t *testing.T) {
	srv := newServer(t)
	weights := randomBytes(10_000)
	srv.AddFile(RepoModel, repo, "model.safetensors", weights, true)
	c := newTestClient(t, srv)
	sha := sha256Hex(weights)
	lockPath := filepath.Join(c.CacheDir, ".locks", "models--answerdotai--ModernBERT-base", sha+".lock")
	if err := os.MkdirAll(filepath.Dir(lockPath), 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := c.Download(context.Background(), RepoModel, repo, "main", "model.safetensors")
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("Download did not wait for the lock: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	blob := filepath.Join(c.CacheDir, "models--answerdotai--ModernBERT-base", "blobs", sha)
	if err := os.WriteFile(blob, weights, 0o644); err != nil {
		t.Fatal(err)
	}
	syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, r := range srv.Requests() {
		if strings.HasPrefix(r.Path, "/cdn/") {
			t.Errorf("downloaded although the other process had written the blob: %+v", r)
		}
	}
}
