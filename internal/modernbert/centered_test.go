package modernbert

import "testing"

// Centering the stream (Wo centred at upload, the stream's first rows less their means) changes
// how the LayerNorms' statistics are computed, not what the model computes: the vectors must
// be those of the graph without it, with and without the fold. fp32 only: there the variant
// stays within 1e-6 and a mistake shows (the weights left uncentred: 1.3e-3), while in bf16 any
// change in the order of a sum moves some roundings of the products' inputs by about 1e-3.
func TestCenteredStreamGivesTheSameVectors(t *testing.T) {
	// Hidden 256: with the tiny model's 48 the output projections add so little to the stream
	// that uncentred weights move the vectors by only 1.4e-5.
	cfg := tinyConfig().Scaled(3, 256, 4, 128)
	w, rng := weightsWithFarNorms(cfg)
	seqs := randomSeqs(rng, cfg, 1, 3, 17, 65, 130, 256)
	opts := Options{Backend: "simplego", MaxSequenceLength: 256, DType: Float32}
	for _, base := range []string{"cpu-graph", "cpu-graph,ln-fold"} {
		t.Setenv(EnvVariant, base)
		want := embedOnce(t, cfg, w, opts, seqs, Packed)
		t.Setenv(EnvVariant, base+",centered")
		got := embedOnce(t, cfg, w, opts, seqs, Packed)
		for i := range seqs {
			if d := maxAbsDiff(got[i], want[i]); d > 1e-5 {
				t.Errorf("%s,centered, sequence %d (%d tokens): vectors differ from the uncentred graph's by %.2g", base, i, len(seqs[i]), d)
			}
		}
	}
}
