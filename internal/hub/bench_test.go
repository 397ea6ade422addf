package hub

import (
	"context"
	"os"
	"testing"
)

// BenchmarkDownload fetches a 64 MiB LFS file from a local fake hub: redirect, sha256
// verification, write to the cache, symlink.
func BenchmarkDownload(b *testing.B) {
	srv := newServer(b)
	weights := randomBytes(64 << 20)
	srv.AddFile(RepoModel, repo, "model.safetensors", weights, true)
	b.SetBytes(int64(len(weights)))
	for range b.N {
		c := &Client{Endpoint: srv.URL, CacheDir: b.TempDir(), MaxAttempts: 1}
		if _, err := c.Download(context.Background(), RepoModel, repo, "main", "model.safetensors"); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(c.CacheDir)
		b.StartTimer()
	}
}
