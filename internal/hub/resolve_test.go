package hub

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embedbench/embedbench/internal/hub/hubtest"
)

func TestResolveModelDownloadsShardedModelThenUsesCache(t *testing.T) {
	srv := newServer(t)
	shard1, shard2 := randomBytes(40_000), randomBytes(30_000)
	srv.AddFile(RepoModel, repo, "config.json", []byte(`{"model_type":"modernbert"}`), false)
	srv.AddFile(RepoModel, repo, "tokenizer.json", []byte(`{"version":"1.0"}`), false)
	srv.AddFile(RepoModel, repo, "tokenizer_config.json", []byte(`{}`), false)
	srv.AddFile(RepoModel, repo, "model.safetensors.index.json", []byte(`{"metadata":{},"weight_map":{
		"a.weight":"model-00001-of-00002.safetensors","b.weight":"model-00002-of-00002.safetensors","c.weight":"model-00001-of-00002.safetensors"}}`), false)
	srv.AddFile(RepoModel, repo, "model-00001-of-00002.safetensors", shard1, true)
	srv.AddFile(RepoModel, repo, "model-00002-of-00002.safetensors", shard2, true)
	c := newTestClient(t, srv)

	dir, err := c.ResolveModel(context.Background(), repo, true)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(dir) != hubtest.Commit {
		t.Errorf("dir %s is not the snapshot", dir)
	}
	for name, want := range map[string][]byte{"model-00001-of-00002.safetensors": shard1, "model-00002-of-00002.safetensors": shard2} {
		if got, err := os.ReadFile(filepath.Join(dir, name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "special_tokens_map.json")); err == nil {
		t.Error("an absent optional file appeared")
	}

	// Complete in the cache: no network, even with the hub gone.
	srv.Close()
	again, err := c.ResolveModel(context.Background(), repo, true)
	if err != nil || again != dir {
		t.Fatalf("second resolve: %s, %v", again, err)
	}
}

func TestResolveModelSingleFileWeightsAndTokenizerOnly(t *testing.T) {
	srv := newServer(t)
	weights := randomBytes(20_000)
	srv.AddFile(RepoModel, repo, "config.json", []byte(`{}`), false)
	srv.AddFile(RepoModel, repo, "tokenizer.json", []byte(`{}`), false)
	srv.AddFile(RepoModel, repo, "model.safetensors", weights, true)
	c := newTestClient(t, srv)

	dir, err := c.ResolveModel(context.Background(), repo, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "model.safetensors")); err == nil {
		t.Error("weights fetched without withWeights")
	}
	dir, err = c.ResolveModel(context.Background(), repo+"@main", true)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(dir, "model.safetensors")); !bytes.Equal(got, weights) {
		t.Error("weights differ")
	}
}

// A cache written by Python's huggingface_hub: blobs, refs/main, relative symlinks.
func TestResolveModelUsesPythonMadeCacheOffline(t *testing.T) {
	cache := t.TempDir()
	repoDir := filepath.Join(cache, "models--answerdotai--ModernBERT-base")
	commit := "8949b909ec900327062f0ebf497f51aef5e6f0c8"
	snap := filepath.Join(repoDir, "snapshots", commit)
	for _, d := range []string{filepath.Join(repoDir, "blobs"), filepath.Join(repoDir, "refs"), snap} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i, name := range []string{"config.json", "tokenizer.json", "model.safetensors"} {
		blob := strings.Repeat(string(rune('a'+i)), 40)
		if err := os.WriteFile(filepath.Join(repoDir, "blobs", blob), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("../../blobs/"+blob, filepath.Join(snap, name)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(repoDir, "refs", "main"), []byte(commit), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &Client{Endpoint: "http://127.0.0.1:1", CacheDir: cache, Offline: true}
	dir, err := c.ResolveModel(context.Background(), repo, true)
	if err != nil || dir != snap {
		t.Fatalf("got %s, %v; want %s", dir, err, snap)
	}
	// Its snapshot directory is a model directory too.
	if dir, err := c.ResolveModel(context.Background(), snap, true); err != nil || dir != snap {
		t.Fatalf("snapshot dir: %s, %v", dir, err)
	}
	// Incomplete for what is asked: offline says what is missing.
	os.Remove(filepath.Join(snap, "model.safetensors"))
	_, err = c.ResolveModel(context.Background(), repo, true)
	if !errors.Is(err, ErrOffline) || !strings.Contains(err.Error(), "model.safetensors") {
		t.Fatalf("err = %v, want ErrOffline naming model.safetensors", err)
	}
}

func TestResolveModelLocalDirAndBadRefs(t *testing.T) {
	dir := t.TempDir()
	c := &Client{Endpoint: "http://127.0.0.1:1", CacheDir: t.TempDir(), Offline: true}
	if _, err := c.ResolveModel(context.Background(), dir, false); err == nil || !strings.Contains(err.Error(), "config.json") {
		t.Errorf("dir without config.json: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := c.ResolveModel(context.Background(), dir, true); err != nil || got != dir {
		t.Errorf("local dir: %s, %v", got, err)
	}
	for _, ref := range []string{"./no/such/dir", "/no/such/dir", "a/b/c", "bad--name/x"} {
		if _, err := c.ResolveModel(context.Background(), ref, false); err == nil || !strings.Contains(err.Error(), "not a hub id") {
			t.Errorf("%q: %v", ref, err)
		}
	}
}

// A sentence-transformers checkpoint comes with its own files and the module folders
// modules.json names; a snapshot cached without them is completed when online.
func TestResolveModelFetchesSentenceTransformersFiles(t *testing.T) {
	srv := newServer(t)
	modules := []byte(`[{"idx":0,"name":"0","path":"","type":"sentence_transformers.models.Transformer"},
		{"idx":1,"name":"1","path":"1_Pooling","type":"sentence_transformers.models.Pooling"},
		{"idx":2,"name":"2","path":"2_Dense","type":"sentence_transformers.models.Dense"},
		{"idx":3,"name":"3","path":"3_Normalize","type":"sentence_transformers.models.Normalize"}]`)
	files := map[string][]byte{
		"config.json": []byte(`{}`), "tokenizer.json": []byte(`{}`), "model.safetensors": randomBytes(5000),
		"config_sentence_transformers.json": []byte(`{"prompts":{"query":"q: "}}`),
		"sentence_bert_config.json":         []byte(`{"max_seq_length":128}`),
		"1_Pooling/config.json":             []byte(`{"pooling_mode_cls_token":true}`),
		"2_Dense/config.json":               []byte(`{"in_features":4,"out_features":2}`),
		"2_Dense/model.safetensors":         randomBytes(300),
	}
	for name, data := range files {
		srv.AddFile(RepoModel, repo, name, data, name == "model.safetensors")
	}
	c := newTestClient(t, srv)
	// First cached as an older embedbench did: without the sentence-transformers files.
	for _, name := range []string{"config.json", "tokenizer.json", "model.safetensors"} {
		if _, err := c.Download(context.Background(), RepoModel, repo, "main", name); err != nil {
			t.Fatal(err)
		}
	}
	srv.AddFile(RepoModel, repo, "modules.json", modules, false)
	dir, err := c.ResolveModel(context.Background(), repo, true)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		if got, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(name))); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: not fetched (%v)", name, err)
		}
	}
	if got, err := os.ReadFile(filepath.Join(dir, "modules.json")); err != nil || !bytes.Equal(got, modules) {
		t.Errorf("modules.json: not fetched (%v)", err)
	}
	// Now complete (absent files remembered as absent): served from the cache with the hub gone.
	srv.Close()
	if again, err := c.ResolveModel(context.Background(), repo, true); err != nil || again != dir {
		t.Fatalf("second resolve: %s, %v", again, err)
	}
}
