package service

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embedbench/embedbench/internal/engine"
	"github.com/embedbench/embedbench/internal/localdata"
	"github.com/embedbench/embedbench/internal/modernbert"
	"github.com/embedbench/embedbench/internal/tokenizer"
)

// tinySpec is a real ModernBERT of a few layers with the real tokenizer, on the pure-Go backend.
func tinySpec(t *testing.T, eng string) Spec {
	t.Helper()
	dir, err := localdata.ModernBERTDir()
	if err != nil {
		t.Skipf("no shared ModernBERT tokenizer: %v", err)
	}
	tok, err := tokenizer.LoadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := modernbert.LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	cfg = cfg.Scaled(2, 32, 2, 48)
	return Spec{
		Engine: eng, Config: cfg, Weights: modernbert.RandomWeights(cfg, 1), Tokenizer: tok,
		Model:     modernbert.Options{Backend: "simplego", Pooling: modernbert.Mean, MaxSequenceLength: 64},
		BatchSize: 4, MaxQueuedSequences: 256,
	}
}

func TestBuildRefusesWhatNoEngineServes(t *testing.T) {
	spec := tinySpec(t, Sequential)
	spec.Replicas = 2
	if _, err := Build(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "one replica") {
		t.Fatalf("sequential engine with 2 replicas: err = %v, want a refusal", err)
	}
	spec = tinySpec(t, "batched")
	if _, err := Build(context.Background(), spec); err == nil || !strings.Contains(err.Error(), `"batched"`) {
		t.Fatalf("unknown engine: err = %v, want it named", err)
	}
	// Replicas sharing a GPU each take a device stream; on a CPU they would share its cores.
	spec = tinySpec(t, Continuous)
	spec.ReplicasPerGPU = 2
	if _, err := Build(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "XLA") {
		t.Fatalf("two replicas to a GPU on simplego: err = %v, want a refusal", err)
	}
}

func TestBothEnginesServeTheSameVectors(t *testing.T) {
	texts := []string{"", "ERROR connection refused", strings.Repeat("long passage ", 30)}
	var got [][][]float32
	for _, eng := range []string{Sequential, Continuous} {
		s, err := Build(context.Background(), tinySpec(t, eng))
		if err != nil {
			t.Fatalf("%s: %v", eng, err)
		}
		if s.Backend.Info.Replicas != 1 || !strings.HasPrefix(s.Backend.Info.Device, "cpu (") {
			t.Errorf("%s: info = %+v, want one CPU replica", eng, s.Backend.Info)
		}
		ids, _, total := s.Backend.Tokenize("hello", true, false, 0)
		if len(ids) != total || len(ids) < 3 {
			t.Errorf("%s: /tokenize gives %v (total %d), want [CLS] hello [SEP]", eng, ids, total)
		}
		res, err := s.Backend.Engine.Embed(context.Background(), engine.Job{Texts: texts, Truncate: true})
		s.Close()
		if err != nil {
			t.Fatalf("%s: %v", eng, err)
		}
		if len(res.Vectors) != len(texts) || len(res.Vectors[0]) != s.Backend.Dim {
			t.Fatalf("%s: %d vectors of %d, want %d of %d", eng, len(res.Vectors), len(res.Vectors[0]), len(texts), s.Backend.Dim)
		}
		got = append(got, res.Vectors)
	}
	for i := range texts {
		if c := cosine(got[0][i], got[1][i]); c < 0.99999 {
			t.Errorf("text %d: sequential and continuous engines disagree, cosine %.6f", i, c)
		}
	}
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return dot / math.Sqrt(na*nb)
}

// Replicas load at once and all serve; a load that fails or is cancelled leaves no replica
// behind and says why.
func TestBuildLoadsReplicasTogether(t *testing.T) {
	spec := tinySpec(t, Continuous)
	spec.Replicas = 3
	s, err := Build(context.Background(), spec)
	if err != nil {
		t.Fatal(err)
	}
	if s.Backend.Info.Replicas != 3 || len(s.models) != 3 {
		t.Fatalf("%d replicas reported, %d loaded; want 3", s.Backend.Info.Replicas, len(s.models))
	}
	for i, m := range s.models {
		if m == nil {
			t.Fatalf("replica %d missing", i)
		}
	}
	texts := []string{"one", "two passages", strings.Repeat("three ", 40)}
	res, err := s.Backend.Engine.Embed(context.Background(), engine.Job{Texts: texts, Truncate: true})
	s.Close()
	if err != nil || len(res.Vectors) != len(texts) {
		t.Fatalf("3 replicas: %d vectors, %v", len(res.Vectors), err)
	}
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Build(cancelled, spec); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled load: err = %v, want context.Canceled", err)
	}
	spec.Model.MaxBatchTokens = -1
	if _, err := Build(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "loading replica") || !strings.Contains(err.Error(), "max batch tokens") {
		t.Fatalf("replicas that cannot load: err = %v, want the replica and the reason", err)
	}
}
