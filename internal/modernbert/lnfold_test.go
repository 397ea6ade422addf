package modernbert

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// With ln-fold the LayerNorms before Wqkv and Wi are folded into those projections at upload
// and corrected by their statistics: the vectors must be the default graph's, with norm weights
// far from 1 so that a γ applied on the wrong axis, or not at all, shows.
func TestLayerNormFoldGivesTheDefaultVectors(t *testing.T) {
	cfg := tinyConfig()
	w := RandomWeights(cfg, 7)
	rng := rand.New(rand.NewPCG(8, 9))
	for name, tensor := range w.Tensors {
		if strings.HasSuffix(name, "norm.weight") {
			for i := range tensor.Data {
				tensor.Data[i] = 0.5 + rng.Float32()
			}
		}
	}
	seqs := randomSeqs(rng, cfg, 1, 3, 9, 17, 40, 65, 130, 256)
	for _, c := range []struct {
		dtype  DType
		maxAbs float64 // bf16 rounds h instead of LN(h) before the product
	}{{Float32, 1e-5}, {BFloat16, 1e-3}} {
		opts := Options{Backend: "simplego", MaxSequenceLength: 256, DType: c.dtype}
		t.Setenv(EnvVariant, "cpu-graph") // the compiled steps, which XLA runs
		want := embedOnce(t, cfg, w, opts, seqs, Packed)
		t.Setenv(EnvVariant, "cpu-graph,ln-fold")
		got := embedOnce(t, cfg, w, opts, seqs, Packed)
		for i := range seqs {
			wantF64 := make([]float64, len(want[i]))
			for j, v := range want[i] {
				wantF64[j] = float64(v)
			}
			if d, cos := maxAbsDiff(got[i], want[i]), cosine(got[i], wantF64); d > c.maxAbs || cos < 0.9999 {
				t.Errorf("%s, sequence %d (%d tokens): folded vectors differ from the default by %.2g (cosine %.7f)", c.dtype, i, len(seqs[i]), d, cos)
			}
		}
	}
}

// The fold cannot carry a LayerNorm bias: a model with one is refused, not embedded wrongly.
func TestLayerNormFoldRefusesNormBias(t *testing.T) {
	cfg := tinyConfig()
	cfg.NormBias = true
	t.Setenv(EnvVariant, "cpu-graph,ln-fold")
	_, err := New(t.Context(), cfg, RandomWeights(cfg, 7), Options{Backend: "simplego", MaxSequenceLength: 256})
	if err == nil || !strings.Contains(err.Error(), "ln-fold") {
		t.Fatalf("New with norm biases under ln-fold: %v, want an error naming ln-fold", err)
	}
}
