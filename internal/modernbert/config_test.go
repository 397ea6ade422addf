package modernbert

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/embedbench/embedbench/internal/localdata"
)

func TestLoadConfigBothFormats(t *testing.T) {
	c5, err := LoadConfig(filepath.Join("testdata", "tiny5x"))
	if err != nil {
		t.Fatal(err)
	}
	if c5.HiddenSize != 64 || c5.NumHiddenLayers != 4 || c5.LocalAttention != 16 || c5.GlobalRopeTheta != 160000 || c5.LocalRopeTheta != 10000 {
		t.Fatalf("tiny5x: %+v", c5)
	}
	if !c5.IsGlobal(0) || c5.IsGlobal(1) || c5.IsGlobal(2) || !c5.IsGlobal(3) {
		t.Fatalf("tiny5x layer pattern: %v", c5.LayerTypes)
	}
	c4, err := LoadConfig(filepath.Join("testdata", "tiny4x", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c4.LayerTypes) != 0 || c4.GlobalAttnEveryNLayers != 2 || !c4.IsGlobal(2) || c4.IsGlobal(1) {
		t.Fatalf("tiny4x: %+v", c4)
	}
	if dir, err := localdata.ModernBERTDir(); err == nil {
		base, err := LoadConfig(dir)
		if err != nil {
			t.Fatal(err)
		}
		want := DefaultConfig()
		if base.Summary() != want.Summary() || base.PadTokenID != 50283 || base.NormEps != 1e-5 {
			t.Fatalf("ModernBERT-base: %+v", base)
		}
	}
}

func TestParseConfigRefusals(t *testing.T) {
	cases := map[string]string{
		`{"model_type": "bert", "architectures": ["BertModel"]}`:                                     "not supported",
		`{"model_type": "modernbert", "hidden_activation": "silu"}`:                                  "hidden_activation",
		`{"model_type": "modernbert", "rope_parameters": {"full_attention": {"rope_type": "yarn"}}}`: "rope_type",
		`{"model_type": "modernbert", "num_hidden_layers": 2, "layer_types": ["full_attention"]}`:    "layer_types",
		`{"model_type": "modernbert", "hidden_size": 100, "num_attention_heads": 12}`:                "multiple",
		`{"model_type": "modernbert", "num_hidden_layers": 1, "layer_types": ["chunked_attention"]}`: "layer_types[0]",
		`{"model_type": "modernbert", "vocab_size": 10}`:                                             "outside the vocabulary",
		`{"model_type": "modernbert", "rope_scaling": {"type": "linear", "factor": 2}}`:              "rope_scaling",
		`not json`: "parsing",
	}
	for in, want := range cases {
		_, err := ParseConfig([]byte(in))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v, want one mentioning %q", in, err, want)
		}
	}
}

func TestScaledKeepsArchitecture(t *testing.T) {
	c := DefaultConfig()
	c.LayerTypes = []string{LayerFullAttention, LayerSlidingAttention, LayerSlidingAttention}
	s := c.Scaled(5, 128, 4, 192)
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	if len(s.LayerTypes) != 5 || !s.IsGlobal(3) || s.IsGlobal(4) || s.VocabSize != c.VocabSize || s.LocalAttention != 128 {
		t.Fatalf("scaled: %+v", s)
	}
}
