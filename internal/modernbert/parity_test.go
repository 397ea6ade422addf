package modernbert

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"
)

// reference is a fixture's reference.json: HF transformers' pooled last hidden states
// (float64, eager attention, one sequence at a time, not normalised).
type reference struct {
	Compute   string `json:"compute"`
	Sequences []struct {
		IDs  []int32   `json:"ids"`
		Mean []float64 `json:"mean"`
		CLS  []float64 `json:"cls"`
	} `json:"sequences"`
}

func loadFixture(t *testing.T, name string) (Config, *Weights, reference) {
	t.Helper()
	dir := filepath.Join("testdata", name)
	cfg, err := LoadConfig(dir)
	if err != nil {
		t.Fatal(err)
	}
	w, err := LoadWeights(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref reference
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	if len(ref.Sequences) == 0 {
		t.Fatal("reference.json holds no sequences")
	}
	return cfg, w, ref
}

func cosine(a []float32, b []float64) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * b[i]
		na += float64(a[i]) * float64(a[i])
		nb += b[i] * b[i]
	}
	return dot / math.Sqrt(na*nb)
}

func normalized(v []float64) []float64 {
	var n float64
	for _, x := range v {
		n += x * x
	}
	n = math.Sqrt(n)
	out := make([]float64, len(v))
	for i, x := range v {
		out[i] = x / n
	}
	return out
}

func maxAbs(a []float32, b []float64) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-b[i]))
	}
	return d
}

// parityCase is one model configuration checked against HF. Together they cover both
// poolings, raw and normalised vectors, and both dtypes, while keeping the test quick on CPU.
type parityCase struct {
	dtype     DType
	pooling   Pooling
	normalize bool
}

var parityCases = []parityCase{
	{Float32, Mean, false},
	{Float32, CLS, true},
	{BFloat16, Mean, true},
}

// TestParityWithHF checks our vectors against HF's on both fixtures (5.x config with F32
// weights, 4.x config with BF16 MaskedLM weights) in mixed batches of both layouts, lengths 2
// to 1000 (the sliding window matters from 9 tokens on).
func TestParityWithHF(t *testing.T) {
	for _, fixture := range []string{"tiny5x", "tiny4x"} {
		cfg, w, ref := loadFixture(t, fixture)
		seqs := refSeqs(ref)
		for _, pc := range parityCases {
			if pc.dtype == BFloat16 && fixture != "tiny4x" {
				continue // bf16 on simplego is slow; the BF16 checkpoint is the natural case
			}
			name := fixture + "/" + pc.dtype.String() + "/" + pc.pooling.String()
			if pc.normalize {
				name += "/normalized"
			}
			t.Run(name, func(t *testing.T) {
				m, err := New(context.Background(), cfg, w, Options{Backend: "simplego", DType: pc.dtype,
					Pooling: pc.pooling, Normalize: pc.normalize, MaxSequenceLength: 1024,
					RowLengths: []int{128, 512, 1024}, MaxBatchTokens: 1024})
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				for _, layout := range []Layout{Packed, Padded} {
					got, _, err := m.Embed(context.Background(), seqs, layout)
					if err != nil {
						t.Fatal(err)
					}
					checkParity(t, "mixed batch, "+layout.String(), pc, ref, got)
				}
			})
		}
	}
}

// TestParityAlone checks each sequence run alone in a row of its own length bucket, as HF ran it.
func TestParityAlone(t *testing.T) {
	for _, fixture := range []string{"tiny5x", "tiny4x"} {
		cfg, w, ref := loadFixture(t, fixture)
		pc := parityCase{Float32, Mean, false}
		m, err := New(context.Background(), cfg, w, Options{Backend: "simplego", MaxSequenceLength: 1024,
			RowLengths: []int{16, 64, 128, 512, 1024}, MaxBatchTokens: 1024, PaddedRows: 1})
		if err != nil {
			t.Fatal(err)
		}
		got := make([][]float32, len(ref.Sequences))
		for i, seq := range refSeqs(ref) {
			v, _, err := m.Embed(context.Background(), [][]int32{seq}, Padded)
			if err != nil {
				t.Fatal(err)
			}
			got[i] = v[0]
		}
		m.Close()
		checkParity(t, fixture+" alone", pc, ref, got)
	}
}

func refSeqs(ref reference) [][]int32 {
	seqs := make([][]int32, len(ref.Sequences))
	for i, s := range ref.Sequences {
		seqs[i] = s.IDs
	}
	return seqs
}

// checkParity applies the targets: fp32 cosine >= 0.99999 and max abs diff <= 1e-4;
// bf16 cosine >= 0.999.
func checkParity(t *testing.T, how string, pc parityCase, ref reference, got [][]float32) {
	t.Helper()
	minCos, maxDiff := 0.99999, 1e-4
	if pc.dtype == BFloat16 {
		minCos, maxDiff = 0.999, math.Inf(1)
	}
	worstCos, worstDiff := 1.0, 0.0
	for i, s := range ref.Sequences {
		want := s.Mean
		if pc.pooling == CLS {
			want = s.CLS
		}
		if pc.normalize {
			want = normalized(want)
		}
		c, d := cosine(got[i], want), maxAbs(got[i], want)
		worstCos, worstDiff = min(worstCos, c), max(worstDiff, d)
		if c < minCos {
			t.Errorf("%s: sequence %d (%d tokens): cosine %.7f < %g", how, i, len(s.IDs), c, minCos)
		}
		if d > maxDiff {
			t.Errorf("%s: sequence %d (%d tokens): max abs diff %.3g > %g", how, i, len(s.IDs), d, maxDiff)
		}
	}
	t.Logf("%s: worst cosine %.8f, worst max abs diff %.3g", how, worstCos, worstDiff)
}
