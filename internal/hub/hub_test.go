package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/embedbench/embedbench/internal/hub/hubtest"
)

const repo = "answerdotai/ModernBERT-base"

func newTestClient(t *testing.T, srv *hubtest.Server) *Client {
	t.Helper()
	return &Client{Endpoint: srv.URL, CacheDir: t.TempDir(), MaxAttempts: 3, RetryDelay: time.Millisecond}
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(1, uint64(n)))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func newServer(t testing.TB) *hubtest.Server {
	srv := hubtest.New()
	t.Cleanup(srv.Close)
	return srv
}

func countGETs(srv *hubtest.Server) int {
	n := 0
	for _, r := range srv.Requests() {
		if r.Method == "GET" {
			n++
		}
	}
	return n
}

func TestDownloadLFSFileLaysOutCacheLikeHuggingfaceHub(t *testing.T) {
	srv := newServer(t)
	weights := randomBytes(300_000)
	srv.AddFile(RepoModel, repo, "model.safetensors", weights, true)
	c := newTestClient(t, srv)

	path, err := c.Download(context.Background(), RepoModel, repo, "", "model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(got, weights) {
		t.Fatalf("content differs (err %v)", err)
	}
	repoDir := filepath.Join(c.CacheDir, "models--answerdotai--ModernBERT-base")
	if want := filepath.Join(repoDir, "snapshots", hubtest.Commit, "model.safetensors"); path != want {
		t.Errorf("path %s, want %s", path, want)
	}
	link, err := os.Readlink(path)
	if err != nil {
		t.Fatalf("snapshot file is not a symlink: %v", err)
	}
	if want := "../../blobs/" + sha256Hex(weights); link != want {
		t.Errorf("symlink -> %s, want %s", link, want)
	}
	ref, err := os.ReadFile(filepath.Join(repoDir, "refs", "main"))
	if err != nil || string(ref) != hubtest.Commit {
		t.Errorf("refs/main = %q (%v), want the commit", ref, err)
	}
	if leftovers, _ := filepath.Glob(filepath.Join(repoDir, "blobs", "*.incomplete")); len(leftovers) > 0 {
		t.Errorf("partial files left: %v", leftovers)
	}

	// Cached: the hub is asked for metadata but nothing is fetched again.
	gets := countGETs(srv)
	if _, err := c.Download(context.Background(), RepoModel, repo, "main", "model.safetensors"); err != nil {
		t.Fatal(err)
	}
	if countGETs(srv) != gets {
		t.Error("a cached file was downloaded again")
	}
	// A commit hash never moves: no request at all.
	before := len(srv.Requests())
	if _, err := c.Download(context.Background(), RepoModel, repo, hubtest.Commit, "model.safetensors"); err != nil {
		t.Fatal(err)
	}
	if len(srv.Requests()) != before {
		t.Error("a commit-pinned cached file caused a request")
	}
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestDownloadSmallFileAndDatasetURL(t *testing.T) {
	srv := newServer(t)
	srv.AddFile(RepoDataset, "BeIR/msmarco", "corpus.jsonl.gz", []byte("gz bytes"), false)
	c := newTestClient(t, srv)
	c.Token = "hf_secret"
	path, err := c.Download(context.Background(), RepoDataset, "BeIR/msmarco", "main", "corpus.jsonl.gz")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(path, "datasets--BeIR--msmarco") {
		t.Errorf("dataset cached at %s", path)
	}
	reqs := srv.Requests()
	if reqs[0].Path != "/datasets/BeIR/msmarco/resolve/main/corpus.jsonl.gz" {
		t.Errorf("first request %s", reqs[0].Path)
	}
	if reqs[0].Authorization != "Bearer hf_secret" {
		t.Errorf("Authorization %q", reqs[0].Authorization)
	}
}

func TestGatedRepoSaysHFToken(t *testing.T) {
	srv := newServer(t)
	srv.AddFile(RepoModel, "org/gated", "config.json", []byte("{}"), false)
	srv.Gate(RepoModel, "org/gated", "hf_good")
	c := newTestClient(t, srv)
	_, err := c.Download(context.Background(), RepoModel, "org/gated", "main", "config.json")
	if !errors.Is(err, ErrUnauthorized) || !strings.Contains(err.Error(), "HF_TOKEN") {
		t.Fatalf("err = %v, want ErrUnauthorized mentioning HF_TOKEN", err)
	}
	c.Token = "hf_good"
	if _, err := c.Download(context.Background(), RepoModel, "org/gated", "main", "config.json"); err != nil {
		t.Fatalf("with the token: %v", err)
	}
}

func TestMissingFileAndRepoNameThem(t *testing.T) {
	srv := newServer(t)
	srv.AddFile(RepoModel, repo, "config.json", []byte("{}"), false)
	c := newTestClient(t, srv)
	_, err := c.Download(context.Background(), RepoModel, repo, "main", "nope.bin")
	if !errors.Is(err, ErrEntryNotFound) || !strings.Contains(err.Error(), "nope.bin") || !strings.Contains(err.Error(), repo) {
		t.Fatalf("err = %v, want ErrEntryNotFound naming file and repo", err)
	}
	// The cache remembers the miss, so offline lookups can say so.
	c.Offline = true
	if _, err := c.Download(context.Background(), RepoModel, repo, "main", "nope.bin"); !errors.Is(err, ErrEntryNotFound) {
		t.Errorf("offline after a miss: %v, want ErrEntryNotFound", err)
	}
	c.Offline = false
	_, err = c.Download(context.Background(), RepoModel, "org/absent", "main", "config.json")
	if !errors.Is(err, ErrRepoNotFound) || !strings.Contains(err.Error(), "org/absent") {
		t.Fatalf("err = %v, want ErrRepoNotFound naming the repo", err)
	}
}

func TestResumeAfterDroppedConnection(t *testing.T) {
	srv := newServer(t)
	weights := randomBytes(200_000)
	srv.AddFile(RepoModel, repo, "model.safetensors", weights, true)
	srv.DropConnection(weights, 70_000, 2)
	c := newTestClient(t, srv)
	path, err := c.Download(context.Background(), RepoModel, repo, "main", "model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, weights) {
		t.Fatal("resumed content differs")
	}
	var ranges []string
	for _, r := range srv.Requests() {
		if r.Method == "GET" && strings.HasPrefix(r.Path, "/cdn/") {
			ranges = append(ranges, r.Range)
		}
	}
	want := []string{"", "bytes=70000-", "bytes=140000-"}
	if fmt.Sprint(ranges) != fmt.Sprint(want) {
		t.Errorf("CDN ranges %q, want %q", ranges, want)
	}
}

func TestResumeAcrossRunsAndGiveUpKeepsPartial(t *testing.T) {
	srv := newServer(t)
	weights := randomBytes(100_000)
	srv.AddFile(RepoModel, repo, "model.safetensors", weights, true)
	srv.DropConnection(weights, 30_000, 10)
	c := newTestClient(t, srv)
	c.MaxAttempts = 2
	_, err := c.Download(context.Background(), RepoModel, repo, "main", "model.safetensors")
	if err == nil {
		t.Fatal("want an error after too many drops")
	}
	partial := filepath.Join(c.CacheDir, "models--answerdotai--ModernBERT-base", "blobs", sha256Hex(weights)+".incomplete")
	if st, err := os.Stat(partial); err != nil || st.Size() != 60_000 {
		t.Fatalf("partial file: %v, %v; want 60000 bytes kept", st, err)
	}
	srv.DropConnection(weights, 0, 0)
	path, err := c.Download(context.Background(), RepoModel, repo, "main", "model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, weights) {
		t.Fatal("content differs after resuming in a new run")
	}
	reqs := srv.Requests()
	if last := reqs[len(reqs)-1]; last.Range != "bytes=60000-" {
		t.Errorf("the new run asked %q, want a resume from 60000", last.Range)
	}
}

func TestServerIgnoringRangeRestartsCleanly(t *testing.T) {
	srv := newServer(t)
	weights := randomBytes(50_000)
	srv.AddFile(RepoModel, repo, "model.safetensors", weights, true)
	srv.DropConnection(weights, 20_000, 1)
	srv.IgnoreRange()
	c := newTestClient(t, srv)
	path, err := c.Download(context.Background(), RepoModel, repo, "main", "model.safetensors")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, weights) {
		t.Fatal("content differs")
	}
}

func TestWrongChecksumIsRefusedAndNothingKept(t *testing.T) {
	srv := newServer(t)
	weights := randomBytes(10_000)
	srv.AddFile(RepoModel, repo, "model.safetensors", weights, true)
	srv.AnnounceWrongSHA(weights)
	c := newTestClient(t, srv)
	_, err := c.Download(context.Background(), RepoModel, repo, "main", "model.safetensors")
	if !errors.Is(err, ErrChecksum) {
		t.Fatalf("err = %v, want ErrChecksum", err)
	}
	blobs, _ := filepath.Glob(filepath.Join(c.CacheDir, "*", "blobs", "*"))
	snaps, _ := filepath.Glob(filepath.Join(c.CacheDir, "*", "snapshots", "*", "*"))
	if len(blobs)+len(snaps) > 0 {
		t.Errorf("left in the cache: %v %v", blobs, snaps)
	}
}

func TestCancelStopsStalledDownloadAndKeepsPartial(t *testing.T) {
	srv := newServer(t)
	weights := randomBytes(100_000)
	srv.AddFile(RepoModel, repo, "model.safetensors", weights, true)
	srv.Stall(weights, 40_000)
	c := newTestClient(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Download(ctx, RepoModel, repo, "main", "model.safetensors")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's error", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("took %v to notice the cancellation", time.Since(start))
	}
	partial := filepath.Join(c.CacheDir, "models--answerdotai--ModernBERT-base", "blobs", sha256Hex(weights)+".incomplete")
	if st, err := os.Stat(partial); err != nil || st.Size() != 40_000 {
		t.Errorf("partial file %v %v, want 40000 bytes kept", st, err)
	}
}

// A server that stops sending mid-file, with no deadline on the caller's side, is dropped
// after the read timeout and the download resumed from where it stopped (huggingface_hub's
// HF_HUB_DOWNLOAD_TIMEOUT), not waited on for good.
func TestStalledDownloadIsResumed(t *testing.T) {
	srv := newServer(t)
	weights := randomBytes(100_000)
	srv.AddFile(RepoModel, repo, "model.safetensors", weights, true)
	srv.Stall(weights, 40_000) // every GET sends 40,000 bytes from its offset, then hangs
	c := newTestClient(t, srv)
	c.ReadTimeout = 200 * time.Millisecond
	done := make(chan struct{})
	var path string
	var err error
	go func() {
		defer close(done)
		path, err = c.Download(context.Background(), RepoModel, repo, "main", "model.safetensors")
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the download still waits on a stalled server after 30 s")
	}
	if err != nil {
		t.Fatalf("a download that stalled twice and resumed: %v", err)
	}
	if got, rerr := os.ReadFile(path); rerr != nil || !bytes.Equal(got, weights) {
		t.Errorf("the resumed file differs from the hub's (%v)", rerr)
	}
}

func TestOfflineNeverTouchesTheNetwork(t *testing.T) {
	srv := newServer(t)
	srv.AddFile(RepoModel, repo, "config.json", []byte(`{"a":1}`), false)
	c := newTestClient(t, srv)
	if _, err := c.Download(context.Background(), RepoModel, repo, "main", "config.json"); err != nil {
		t.Fatal(err)
	}
	before := len(srv.Requests())
	c.Offline = true
	if _, err := c.Download(context.Background(), RepoModel, repo, "main", "config.json"); err != nil {
		t.Errorf("cached file offline: %v", err)
	}
	if _, err := c.Download(context.Background(), RepoModel, repo, "main", "tokenizer.json"); !errors.Is(err, ErrOffline) {
		t.Errorf("uncached file offline: %v, want ErrOffline", err)
	}
	if len(srv.Requests()) != before {
		t.Error("offline mode made a request")
	}
}

func TestUnreachableHubFallsBackToCache(t *testing.T) {
	srv := newServer(t)
	srv.AddFile(RepoModel, repo, "config.json", []byte(`{"a":1}`), false)
	c := newTestClient(t, srv)
	want, err := c.Download(context.Background(), RepoModel, repo, "main", "config.json")
	if err != nil {
		t.Fatal(err)
	}
	srv.Close()
	got, err := c.Download(context.Background(), RepoModel, repo, "main", "config.json")
	if err != nil || got != want {
		t.Fatalf("got %s, %v; want the cached %s", got, err, want)
	}
	if _, err := c.Download(context.Background(), RepoModel, repo, "main", "tokenizer.json"); err == nil {
		t.Fatal("an uncached file with the hub down must fail")
	}
}

func TestNewClientFromEnv(t *testing.T) {
	home := t.TempDir()
	t.Setenv("HF_HOME", home)
	t.Setenv("HF_HUB_CACHE", "")
	t.Setenv("HUGGINGFACE_HUB_CACHE", "")
	t.Setenv("HF_ENDPOINT", "http://mirror.example/")
	t.Setenv("HF_TOKEN", "")
	t.Setenv("HF_TOKEN_PATH", "")
	t.Setenv("HF_HUB_OFFLINE", "1")
	if err := os.WriteFile(filepath.Join(home, "token"), []byte("hf_stored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := NewClientFromEnv()
	if c.Endpoint != "http://mirror.example" || c.CacheDir != filepath.Join(home, "hub") || !c.Offline || c.Token != "hf_stored" {
		t.Errorf("client %+v", c)
	}
	t.Setenv("HF_HUB_CACHE", "/x/cache")
	t.Setenv("HF_TOKEN", "hf_env")
	t.Setenv("HF_HUB_OFFLINE", "0")
	t.Setenv("HF_ENDPOINT", "")
	c = NewClientFromEnv()
	if c.Endpoint != DefaultEndpoint || c.CacheDir != "/x/cache" || c.Offline || c.Token != "hf_env" {
		t.Errorf("client %+v", c)
	}
}

func TestRefusesNamesThatEscapeTheCache(t *testing.T) {
	c := &Client{Endpoint: "http://127.0.0.1:1", CacheDir: t.TempDir()}
	for _, tc := range [][3]string{
		{"../evil", "main", "config.json"},
		{repo, "main", "../../x"},
		{repo, "../main", "config.json"},
		{repo, "main", "/etc/passwd"},
	} {
		if _, err := c.Download(context.Background(), RepoModel, tc[0], tc[1], tc[2]); err == nil {
			t.Errorf("%q accepted", tc)
		}
	}
}
