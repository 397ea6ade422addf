package modernbert

import (
	"context"
	"math/rand/v2"
	"testing"
)

// fitBench is a model with GPU-sized packed steps (64 rows of 256) planned as XLA plans them,
// and ~800 queued MS MARCO-like lengths: what the batch former asks about.
func fitBench(b *testing.B) (*Model, []int) {
	b.Setenv(EnvVariant, "cpu-graph") // the compiled steps' planning, which XLA runs
	cfg := tinyConfig()
	cfg.NumHiddenLayers = 1
	m, err := New(context.Background(), cfg, RandomWeights(cfg, 1), Options{Backend: "simplego", Layouts: []Layout{Packed},
		MaxSequenceLength: 256, RowLengths: []int{256}, MaxBatchTokens: 16384})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(m.Close)
	rng := rand.New(rand.NewPCG(1, 1))
	lengths := make([]int, 800)
	for i := range lengths {
		lengths[i] = 20 + rng.IntN(180)
	}
	return m, lengths
}

// BenchmarkFitPacked measures the batch former's question: how many of the queued sequences
// fill one step.
func BenchmarkFitPacked(b *testing.B) {
	m, lengths := fitBench(b)
	b.ResetTimer()
	for b.Loop() {
		m.FitPacked(lengths)
	}
}

// BenchmarkFitPackedBelow is the question a busy engine asks next when it may cut its batch
// (engine.Config.BusyBatchCut): how much of that step fits the rung below.
func BenchmarkFitPackedBelow(b *testing.B) {
	m, lengths := fitBench(b)
	n := m.FitPacked(lengths)
	slots := m.PackedStepSlots(lengths[:n])
	b.ResetTimer()
	for b.Loop() {
		m.FitPackedBelow(lengths[:n], slots)
	}
}

// BenchmarkEmbedPackedCPU embeds MS MARCO-like lengths with the CPU demo's kind of model (2
// layers, hidden 64, real vocabulary) on CPU; it reports real tokens per second.
func BenchmarkEmbedPackedCPU(b *testing.B) {
	benchPackedCPU(b, DefaultConfig().Scaled(2, 64, 4, 128), 256, 3, 20, 180)
}

// benchPackedCPU embeds calls of random sequences of lo..hi tokens, about steps largest steps'
// worth, and reports real tokens per second and the linear layers' GFLOP/s.
func benchPackedCPU(b *testing.B, cfg Config, maxLen, steps, lo, hi int) {
	m, err := New(context.Background(), cfg, RandomWeights(cfg, 1), Options{Backend: "simplego", Layouts: []Layout{Packed},
		MaxSequenceLength: maxLen})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	b.Logf("CPU path: %s", m.Info().CPU)
	rng := rand.New(rand.NewPCG(uint64(cfg.HiddenSize), 2))
	var seqs [][]int32
	for total := 0; total+hi < m.MaxBatchTokens()*steps; {
		n := lo + rng.IntN(hi-lo)
		seqs = append(seqs, randomSeqs(rng, cfg, n)[0])
		total += n
	}
	tokens := 0
	b.ResetTimer()
	for b.Loop() {
		_, st, err := m.Embed(context.Background(), seqs, Packed)
		if err != nil {
			b.Fatal(err)
		}
		tokens += st.RealTokens
	}
	b.ReportMetric(float64(tokens)/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric(float64(tokens)*cfg.LinearFLOPsPerToken()/b.Elapsed().Seconds()/1e9, "linear-GFLOP/s")
}

// BenchmarkOneQueryCPU is one short text on the demo's tiny model (3 layers, hidden 128, the
// real vocabulary) on simplego: what a single query costs the model on the step ladder.
func BenchmarkOneQueryCPU(b *testing.B) {
	cfg := DefaultConfig().Scaled(3, 128, 2, 256)
	m, err := New(context.Background(), cfg, RandomWeights(cfg, 1), Options{Backend: "simplego", MaxSequenceLength: 512})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	query := [][]int32{{cfg.CLSTokenID, 1000, 2000, 3000, 4000, 5000, cfg.SEPTokenID}}
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := m.Embed(context.Background(), query, Packed); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBaseLayersCPU runs steps of ModernBERT-base's own layer shapes (hidden 768, 12 heads,
// intermediate 1,152), three layers of them (one global, two local), on CPU with MS MARCO-like
// lengths: where a full-size CPU step spends its time, in a seventh of the time.
func BenchmarkBaseLayersCPU(b *testing.B) {
	benchPackedCPU(b, DefaultConfig().Scaled(3, 768, 12, 1152), 512, 1, 20, 140)
}
