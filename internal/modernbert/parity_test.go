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

// EnvParityFixtures names more fixture folders for the parity tests (a list, separated like
// PATH), each laid out as scripts/gpu/make_modernbert_fixtures.py writes them: config.json,
// model.safetensors and reference.json. It checks another model against HF without touching
// the code.
const EnvParityFixtures = "EMBEDBENCH_PARITY_FIXTURES"

// parityFixtures lists the committed fixtures and those named by EnvParityFixtures.
func parityFixtures() []string {
	dirs := []string{filepath.Join("testdata", "tiny5x"), filepath.Join("testdata", "tiny4x")}
	for _, d := range filepath.SplitList(os.Getenv(EnvParityFixtures)) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	return dirs
}

// fixtureName is how a fixture folder is named in subtests.
func fixtureName(dir string) string { return filepath.Base(dir) }

func loadFixture(t *testing.T, dir string) (Config, *Weights, reference) {
	t.Helper()
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
		t.Fatalf("%s: %v", dir, err)
	}
	if len(ref.Sequences) == 0 {
		t.Fatalf("%s: reference.json holds no sequences", dir)
	}
	for i, s := range ref.Sequences {
		if len(s.IDs) == 0 || len(s.Mean) != cfg.HiddenSize || len(s.CLS) != cfg.HiddenSize {
			t.Fatalf("%s: reference sequence %d: want ids and mean and cls vectors of %d values, have %d ids, %d and %d values",
				dir, i, cfg.HiddenSize, len(s.IDs), len(s.Mean), len(s.CLS))
		}
	}
	return cfg, w, ref
}

// fixtureLengths are the longest sequence and the row lengths the parity tests compile for a
// fixture: up to 1,024 tokens, or the model's maximum if that is shorter.
func fixtureLengths(cfg Config, rowLengths ...int) (maxLen int, rows []int) {
	maxLen = min(1024, cfg.MaxPositionEmbeddings)
	for _, l := range rowLengths {
		if l < maxLen {
			rows = append(rows, l)
		}
	}
	return maxLen, append(rows, maxLen)
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
	for _, dir := range parityFixtures() {
		cfg, w, ref := loadFixture(t, dir)
		seqs := refSeqs(ref)
		maxLen, rowLengths := fixtureLengths(cfg, 128, 512)
		for _, pc := range parityCases {
			if pc.dtype == BFloat16 && fixtureName(dir) == "tiny5x" {
				continue // bf16 on simplego is slow; tiny4x's BF16 checkpoint is the natural case
			}
			name := fixtureName(dir) + "/" + pc.dtype.String() + "/" + pc.pooling.String()
			if pc.normalize {
				name += "/normalized"
			}
			t.Run(name, func(t *testing.T) {
				m, err := New(context.Background(), cfg, w, Options{Backend: "simplego", DType: pc.dtype,
					Pooling: pc.pooling, Normalize: pc.normalize, MaxSequenceLength: maxLen,
					RowLengths: rowLengths, MaxBatchTokens: 1024})
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
	for _, dir := range parityFixtures() {
		cfg, w, ref := loadFixture(t, dir)
		pc := parityCase{Float32, Mean, false}
		maxLen, rowLengths := fixtureLengths(cfg, 16, 64, 128, 512)
		m, err := New(context.Background(), cfg, w, Options{Backend: "simplego", MaxSequenceLength: maxLen,
			RowLengths: rowLengths, MaxBatchTokens: 1024, PaddedRows: 1})
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
		checkParity(t, fixtureName(dir)+" alone", pc, ref, got)
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

// Rows longer than attentionBlock are attended one block of queries at a time, sliding-window
// layers scoring only the keys their window reaches; the vectors must be those of whole rows.
func TestBlockedAttentionEqualsWholeRows(t *testing.T) {
	cfg, w, ref := loadFixture(t, filepath.Join("testdata", "tiny5x"))
	seqs := refSeqs(ref)
	opts := Options{Backend: "simplego", MaxSequenceLength: 1024, RowLengths: []int{1024}, MaxBatchTokens: 2048}
	t.Setenv(EnvVariant, "cpu-graph")
	blocked := embedOnce(t, cfg, w, opts, seqs, Packed)
	t.Setenv(EnvVariant, "attention-whole")
	whole := embedOnce(t, cfg, w, opts, seqs, Packed)
	for i := range whole {
		for j := range whole[i] {
			if d := math.Abs(float64(blocked[i][j] - whole[i][j])); d > 1e-6 {
				t.Fatalf("sequence %d (%d tokens), value %d: blocked %g, whole %g", i, len(seqs[i]), j, blocked[i][j], whole[i][j])
			}
		}
	}
}
