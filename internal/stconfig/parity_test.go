package stconfig

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/embedbench/embedbench/internal/modernbert"
)

// Reference is a fixture's reference.json: sentence-transformers 6.0.1's encode() of Texts,
// per case (no prompt_name, then each prompt), for both layouts.
type Reference struct {
	Texts             []string          `json:"texts"`
	MaxSeqLength      int               `json:"max_seq_length"`
	Dim               int               `json:"dim"`
	Prompts           map[string]string `json:"prompts"`
	DefaultPromptName *string           `json:"default_prompt_name"`
	PromptLengths     map[string]int    `json:"prompt_lengths"`
	Current           []Case            `json:"current"`
	Classic           []Case            `json:"classic"`
}

// Case is one encode() call's inputs and results.
type Case struct {
	PromptName    *string     `json:"prompt_name"`
	AppliedPrompt *string     `json:"applied_prompt"`
	Tokens        []int       `json:"tokens"` // per text, the prompt and specials included, after truncation
	IDs           [][]int32   `json:"ids"`
	Alone         [][]float64 `json:"alone"`   // each text encoded by itself
	Batched       [][]float64 `json:"batched"` // all texts in one call
}

func readReference(t *testing.T, dir string) Reference {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref Reference
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatalf("%s: %v", dir, err)
	}
	return ref
}

func cosine(a []float32, b []float64) float64 {
	if len(a) != len(b) {
		return math.NaN()
	}
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * b[i]
		na += float64(a[i]) * float64(a[i])
		nb += b[i] * b[i]
	}
	return dot / math.Sqrt(na*nb)
}

// The model graph computes what sentence-transformers computes from the same ids: every
// pooling mode, prompts left out of pooling, Dense layers and Normalize, in both layouts, on
// the CPU. (Tokenization and prompts from texts are checked through serve and embed.)
func TestModelMatchesSentenceTransformersOnItsIDs(t *testing.T) {
	worst := 1.0
	for _, dir := range fixtures(t) {
		ref := readReference(t, dir)
		for _, layout := range []string{"current", "classic"} {
			cases := ref.Current
			if layout == "classic" {
				cases = ref.Classic
			}
			t.Run(filepath.Base(dir)+"/"+layout, func(t *testing.T) {
				p, err := Load(filepath.Join(dir, layout))
				if err != nil {
					t.Fatal(err)
				}
				cfg, err := modernbert.LoadConfig(p.TransformerDir)
				if err != nil {
					t.Fatal(err)
				}
				w, err := modernbert.LoadWeights(p.TransformerDir, cfg)
				if err != nil {
					t.Fatal(err)
				}
				m, err := modernbert.New(context.Background(), cfg, w, modernbert.Options{Backend: "simplego",
					Pooling: p.Pooling, Dense: p.DenseLayers(), Normalize: p.Normalize, ExcludePrompt: !p.IncludePrompt,
					MaxSequenceLength: cfg.MaxPositionEmbeddings, Layouts: []modernbert.Layout{modernbert.Packed}})
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				if m.Dim() != ref.Dim {
					t.Fatalf("dim %d, want %d", m.Dim(), ref.Dim)
				}
				for _, c := range cases {
					var from []int
					if !p.IncludePrompt && c.AppliedPrompt != nil {
						name := ref.DefaultPromptName
						if c.PromptName != nil {
							name = c.PromptName
						}
						from = make([]int, len(c.IDs))
						for i := range from {
							from[i] = ref.PromptLengths[*name]
						}
					}
					got, _, err := m.EmbedFrom(context.Background(), c.IDs, from, modernbert.Packed)
					if err != nil {
						t.Fatal(err)
					}
					for i, v := range got {
						for _, want := range [][]float64{c.Alone[i], c.Batched[i]} {
							cos := cosine(v, want)
							worst = min(worst, cos)
							if !(cos >= 0.9999) {
								t.Errorf("prompt %v, text %d: cosine %.6f with sentence-transformers", deref(c.PromptName), i, cos)
							}
						}
					}
				}
			})
		}
	}
	t.Logf("worst cosine with sentence-transformers over every fixture, case and text: %.7f", worst)
}

func deref(s *string) string {
	if s == nil {
		return "(none)"
	}
	return *s
}
