package modernbert

import (
	"context"
	"math/rand/v2"
	"testing"
)

// BenchmarkFitPacked measures the batch former's question on GPU-sized steps (64 rows of 256):
// how many of ~800 queued MS MARCO-like sequences fill one step.
func BenchmarkFitPacked(b *testing.B) {
	cfg := tinyConfig()
	cfg.NumHiddenLayers = 1
	m, err := New(context.Background(), cfg, RandomWeights(cfg, 1), Options{Backend: "simplego", Layouts: []Layout{Packed},
		MaxSequenceLength: 256, RowLengths: []int{256}, MaxBatchTokens: 16384})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	rng := rand.New(rand.NewPCG(1, 1))
	lengths := make([]int, 800)
	for i := range lengths {
		lengths[i] = 20 + rng.IntN(180)
	}
	b.ResetTimer()
	for b.Loop() {
		m.FitPacked(lengths)
	}
}
