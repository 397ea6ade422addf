package modernbert

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"
)

// tinyConfig is a small model of the real architecture: windows matter from 9 tokens on.
func tinyConfig() Config {
	c := DefaultConfig().Scaled(4, 48, 3, 96)
	c.VocabSize, c.MaxPositionEmbeddings, c.LocalAttention = 512, 2048, 16
	c.PadTokenID, c.CLSTokenID, c.SEPTokenID = 3, 1, 2
	return c
}

func randomSeqs(rng *rand.Rand, cfg Config, lengths ...int) [][]int32 {
	seqs := make([][]int32, len(lengths))
	for i, n := range lengths {
		seq := make([]int32, n)
		for j := range seq {
			seq[j] = int32(5 + rng.IntN(cfg.VocabSize-5))
		}
		seq[0] = cfg.CLSTokenID
		if n > 1 {
			seq[n-1] = cfg.SEPTokenID
		}
		seqs[i] = seq
	}
	return seqs
}

func newTiny(t *testing.T, opts Options) *Model {
	t.Helper()
	cfg := tinyConfig()
	if opts.Backend == "" {
		opts.Backend = "simplego"
	}
	if opts.MaxSequenceLength == 0 {
		opts.MaxSequenceLength = 256
	}
	m, err := New(context.Background(), cfg, RandomWeights(cfg, 7), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

func TestPackingDoesNotChangeVectors(t *testing.T) {
	m := newTiny(t, Options{})
	rng := rand.New(rand.NewPCG(1, 2))
	seqs := randomSeqs(rng, m.Config(), 1, 2, 5, 17, 40, 64, 65, 100, 200, 256, 3, 9)
	packed, pstats, err := m.Embed(context.Background(), seqs, Packed)
	if err != nil {
		t.Fatal(err)
	}
	padded, _, err := m.Embed(context.Background(), seqs, Padded)
	if err != nil {
		t.Fatal(err)
	}
	for i, seq := range seqs {
		alone, _, err := m.Embed(context.Background(), [][]int32{seq}, Packed)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbsDiff(alone[0], packed[i]); d > 1e-5 {
			t.Errorf("sequence %d (%d tokens): packed with others differs from alone by %g", i, len(seq), d)
		}
		if d := maxAbsDiff(alone[0], padded[i]); d > 1e-5 {
			t.Errorf("sequence %d (%d tokens): padded differs from packed alone by %g", i, len(seq), d)
		}
	}
	if pstats.RealTokens != 762 || pstats.SlotTokens < pstats.RealTokens {
		t.Errorf("stats %+v", pstats)
	}
	t.Logf("packed stats %+v waste %.2f", pstats, pstats.Waste())
}
