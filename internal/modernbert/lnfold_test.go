package modernbert

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/dtypes/bfloat16"
	"github.com/x448/float16"
)

// With ln-fold the LayerNorms before Wqkv and Wi are folded into those projections at upload
// and corrected by their statistics: the vectors must be the default graph's, with norm weights
// far from 1 so that a γ applied on the wrong axis, or not at all, shows.
func TestLayerNormFoldGivesTheDefaultVectors(t *testing.T) {
	cfg := tinyConfig()
	w, rng := weightsWithFarNorms(cfg)
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

// weightsWithFarNorms returns random weights whose norm weights are drawn from [0.5, 1.5), far
// enough from 1 that a γ applied on the wrong axis, or not at all, shows, and the generator that
// drew them for what the test draws next.
func weightsWithFarNorms(cfg Config) (*Weights, *rand.Rand) {
	w := RandomWeights(cfg, 7)
	rng := rand.New(rand.NewPCG(8, 9))
	for name, tensor := range w.Tensors {
		if strings.HasSuffix(name, "norm.weight") {
			for i := range tensor.Data {
				tensor.Data[i] = 0.5 + rng.Float32()
			}
		}
	}
	return w, rng
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

// simplego has no fp16 kernels: the fp16 stream variants are refused there, not run into a
// panic.
func TestFP16StreamRefusedOnSimplego(t *testing.T) {
	cfg := tinyConfig()
	for _, v := range []string{"residual-f16", "fold-f16"} {
		t.Setenv(EnvVariant, "cpu-graph,"+v)
		_, err := New(t.Context(), cfg, RandomWeights(cfg, 7), Options{Backend: "simplego", MaxSequenceLength: 256, DType: BFloat16})
		if err == nil || !strings.Contains(err.Error(), "fp16") {
			t.Errorf("%s on simplego: %v, want an error about fp16", v, err)
		}
	}
}

// On XLA, bf16 carries the stream in fp16 with the norms folded (fold-f16) and float32 folds
// them into its fp32 stream (ln-fold); simplego, a model with norm biases and an explicit
// stream choice keep what they had.
func TestStreamDefaults(t *testing.T) {
	cfg := tinyConfig()
	biased := cfg
	biased.NormBias = true
	foldF16 := graphVariant{lnFold: true, residual: dtypes.Float16, foldF16: true, centered: true}
	for _, c := range []struct {
		name    string
		variant string
		dtype   DType
		backend string
		cfg     Config
		want    graphVariant
	}{
		{"bf16 on XLA", "", BFloat16, "xla:cuda", cfg, foldF16},
		{"bf16 on XLA, other variants kept", "scores-f32", BFloat16, "xla:cuda", cfg, graphVariant{scoresF32: true, lnFold: true, residual: dtypes.Float16, foldF16: true, centered: true}},
		{"fold-f16 asked for, uncentred", "fold-f16", BFloat16, "xla:cuda", cfg, graphVariant{lnFold: true, residual: dtypes.Float16, foldF16: true}},
		{"float32 on XLA", "", Float32, "xla:cuda", cfg, graphVariant{lnFold: true}},
		{"float32 on simplego", "", Float32, "simplego", cfg, graphVariant{}},
		{"bf16 on simplego", "", BFloat16, "simplego", cfg, graphVariant{}},
		{"norm biases", "", BFloat16, "xla:cuda", biased, graphVariant{}},
		{"fp32 stream asked for", "residual-f32", BFloat16, "xla:cuda", cfg, graphVariant{residual: dtypes.Float32}},
		{"float32, fp32 stream asked for", "residual-f32", Float32, "xla:cuda", cfg, graphVariant{residual: dtypes.Float32}},
		{"ln-fold alone asked for", "ln-fold", BFloat16, "xla:cuda", cfg, graphVariant{lnFold: true}},
	} {
		v, err := parseGraphVariant(c.variant)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if got := streamDefaults(v, c.dtype, c.backend, c.cfg); got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

// A folded weight is rounded as the product will read it, and its row sum is the sum of exactly
// those values, so the correction cancels what the product added.
func TestFoldNormRoundsAsTheProductReads(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	out, in := 5, 7
	w, gamma := make([]float32, out*in), make([]float32, in)
	for i := range w {
		w[i] = float32(rng.NormFloat64() * 0.02)
	}
	for i := range gamma {
		gamma[i] = 0.5 + rng.Float32()
	}
	for _, c := range []struct {
		dt    dtypes.DType
		round func(float32) float32
	}{
		{dtypes.Float32, func(v float32) float32 { return v }},
		{dtypes.BFloat16, func(v float32) float32 { return bfloat16.FromFloat32(v).Float32() }},
		{dtypes.Float16, func(v float32) float32 { return float16.Fromfloat32(v).Float32() }},
	} {
		folded, sums := foldNorm(w, gamma, out, in, c.dt)
		for o := range out {
			var sum float64
			for i := range in {
				v := folded[o*in+i]
				if want := c.round(w[o*in+i] * gamma[i]); v != want {
					t.Fatalf("%s: folded[%d,%d] = %g, want %g", c.dt, o, i, v, want)
				}
				sum += float64(v)
			}
			if sums[o] != float32(sum) {
				t.Errorf("%s: row %d sums to %g, want %g", c.dt, o, sums[o], sum)
			}
		}
	}
}
