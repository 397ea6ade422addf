package modernbert

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// Centering the stream (Wo centred at upload, the stream's first rows less their means) changes
// how the LayerNorms' statistics are computed, not what the model computes: the vectors must
// be those of the graph without it, with norm weights far from 1, with and without the fold.
func TestCenteredStreamGivesTheSameVectors(t *testing.T) {
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
	seqs := randomSeqs(rng, cfg, 1, 3, 17, 65, 130, 256)
	// fp32 only: in bf16 any change in the order of a sum moves some roundings of the products'
	// inputs, and the vectors differ by about 1e-3 for the variants and for a mistake alike
	// (centering left out: 9e-4 in fp32, where the variants stay within 1e-6).
	for _, c := range []struct {
		dtype  DType
		maxAbs float64
	}{{Float32, 1e-5}} {
		opts := Options{Backend: "simplego", MaxSequenceLength: 256, DType: c.dtype}
		for _, v := range []struct{ base, variant string }{
			{"", "centered"}, {"ln-fold", "centered"},
		} {
			t.Setenv(EnvVariant, "cpu-graph,"+v.base)
			want := embedOnce(t, cfg, w, opts, seqs, Packed)
			t.Setenv(EnvVariant, "cpu-graph,"+v.base+","+v.variant)
			got := embedOnce(t, cfg, w, opts, seqs, Packed)
			for i := range seqs {
				if d := maxAbsDiff(got[i], want[i]); d > c.maxAbs {
					t.Errorf("%s %s against %q, sequence %d (%d tokens): vectors differ by %.2g", c.dtype, v.variant, v.base, i, len(seqs[i]), d)
				}
			}
		}
	}
}
