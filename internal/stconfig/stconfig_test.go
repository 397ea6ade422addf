package stconfig

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// reference is the part of a fixture's reference.json (scripts/gpu/make_st_fixtures.py) that
// says what sentence-transformers itself loaded.
type reference struct {
	Spec struct {
		Pooling       string `json:"pooling"`
		IncludePrompt *bool  `json:"include_prompt"`
		Normalize     bool   `json:"normalize"`
		Dense         []struct {
			Out  int    `json:"out"`
			Bias bool   `json:"bias"`
			Act  string `json:"act"`
		} `json:"dense"`
	} `json:"spec"`
	MaxSeqLength        int               `json:"max_seq_length"`
	ClassicMaxSeqLength int               `json:"classic_max_seq_length"`
	Dim                 int               `json:"dim"`
	Prompts             map[string]string `json:"prompts"`
	DefaultPromptName   *string           `json:"default_prompt_name"`
}

func fixtures(t *testing.T) []string {
	t.Helper()
	dirs, err := filepath.Glob("testdata/*/reference.json")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no fixtures under testdata (scripts/gpu/make_st_fixtures.py makes them): %v", err)
	}
	for i, d := range dirs {
		dirs[i] = filepath.Dir(d)
	}
	return dirs
}

// Both layouts of every fixture read as what sentence-transformers 6.0.1 loaded from them.
func TestLoadFixtures(t *testing.T) {
	for _, dir := range fixtures(t) {
		var ref reference
		data, err := os.ReadFile(filepath.Join(dir, "reference.json"))
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &ref); err != nil {
			t.Fatal(err)
		}
		for _, layout := range []string{"current", "classic"} {
			t.Run(filepath.Base(dir)+"/"+layout, func(t *testing.T) {
				p, err := Load(filepath.Join(dir, layout))
				if err != nil {
					t.Fatal(err)
				}
				if p.Layout != layout {
					t.Errorf("layout %q, want %q", p.Layout, layout)
				}
				if p.Pooling.String() != ref.Spec.Pooling {
					t.Errorf("pooling %s, want %s", p.Pooling, ref.Spec.Pooling)
				}
				wantInclude := ref.Spec.IncludePrompt == nil || *ref.Spec.IncludePrompt
				if p.IncludePrompt != wantInclude || p.Normalize != ref.Spec.Normalize {
					t.Errorf("include_prompt %v normalize %v, want %v %v", p.IncludePrompt, p.Normalize, wantInclude, ref.Spec.Normalize)
				}
				want := ref.MaxSeqLength
				if layout == "classic" {
					want = ref.ClassicMaxSeqLength
				}
				// A limit the checkpoint does not state is max_position_embeddings (128 here).
				if got := p.MaxSeqLength; got != want && !(got == 0 && want == 128) {
					t.Errorf("max_seq_length %d, want %d", got, want)
				}
				if len(p.Dense) != len(ref.Spec.Dense) {
					t.Fatalf("%d dense layers, want %d", len(p.Dense), len(ref.Spec.Dense))
				}
				dim := p.PoolingDim
				for i, d := range p.Dense {
					w := ref.Spec.Dense[i]
					if d.Layer.In != dim || d.Layer.Out != w.Out || (d.Layer.Bias != nil) != w.Bias || d.Layer.Activation.String() != w.Act {
						t.Errorf("dense %d: %d->%d bias %v %s, want %d->%d bias %v %s", i, d.Layer.In, d.Layer.Out, d.Layer.Bias != nil, d.Layer.Activation, dim, w.Out, w.Bias, w.Act)
					}
					dim = d.Layer.Out
				}
				if dim != ref.Dim {
					t.Errorf("output size %d, want %d", dim, ref.Dim)
				}
				if !mapsEqual(p.Prompts, ref.Prompts) {
					t.Errorf("prompts %v, want %v", p.Prompts, ref.Prompts)
				}
				if wantDef := ref.DefaultPromptName; (wantDef == nil && p.DefaultPromptName != "") || (wantDef != nil && *wantDef != p.DefaultPromptName) {
					t.Errorf("default prompt %q, want %v", p.DefaultPromptName, wantDef)
				}
			})
		}
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// copyDir copies a fixture (following its links) into a temporary folder to be altered.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		target := filepath.Join(dst, rel)
		if info.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func edit(t *testing.T, path string, f func(string) string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(f(string(data))), 0o644); err != nil {
		t.Fatal(err)
	}
}

// What cannot be applied exactly is refused with the module's name and type.
func TestRefusals(t *testing.T) {
	cases := []struct {
		name, fixture string
		alter         func(t *testing.T, dir string)
		want          []string
	}{
		{"unknown module", "cls_normalize/current", func(t *testing.T, dir string) {
			edit(t, filepath.Join(dir, ModulesFile), func(s string) string {
				return strings.Replace(s, "sentence_transformers.base.modules.normalize.Normalize", "my_package.modules.Whitening", 1)
			})
		}, []string{"my_package.modules.Whitening", "2_Normalize", "not supported"}},
		{"classic LSTM", "cls_normalize/classic", func(t *testing.T, dir string) {
			edit(t, filepath.Join(dir, ModulesFile), func(s string) string {
				return strings.Replace(s, "sentence_transformers.models.Normalize", "sentence_transformers.models.LSTM", 1)
			})
		}, []string{"sentence_transformers.models.LSTM", "not supported"}},
		{"dense activation", "max_dense/current", func(t *testing.T, dir string) {
			edit(t, filepath.Join(dir, "2_Dense", "config.json"), func(s string) string {
				return strings.Replace(s, "torch.nn.modules.activation.Tanh", "torch.nn.modules.activation.Softsign", 1)
			})
		}, []string{"2_Dense", "Softsign", "not supported"}},
		{"dense pickle", "max_dense/classic", func(t *testing.T, dir string) {
			d := filepath.Join(dir, "2_Dense")
			if err := os.Rename(filepath.Join(d, "model.safetensors"), filepath.Join(d, "pytorch_model.bin")); err != nil {
				t.Fatal(err)
			}
		}, []string{"2_Dense", "pytorch_model.bin"}},
		{"concatenated pooling", "cls_normalize/classic", func(t *testing.T, dir string) {
			edit(t, filepath.Join(dir, "1_Pooling", "config.json"), func(s string) string {
				return strings.Replace(s, `"pooling_mode_mean_tokens": false`, `"pooling_mode_mean_tokens": true`, 1)
			})
		}, []string{"1_Pooling", "cls+mean"}},
		// sentence-transformers' Pooling defaults pooling_mode_mean_tokens to true, so cls
		// without the mean flag is cls and mean concatenated, a vector twice as long.
		{"cls without the mean flag", "cls_normalize/classic", func(t *testing.T, dir string) {
			edit(t, filepath.Join(dir, "1_Pooling", "config.json"), func(s string) string {
				return strings.Replace(s, `"pooling_mode_mean_tokens": false,`, ``, 1)
			})
		}, []string{"1_Pooling", "cls+mean", "absent"}},
		{"no pooling mode on", "cls_normalize/classic", func(t *testing.T, dir string) {
			edit(t, filepath.Join(dir, "1_Pooling", "config.json"), func(s string) string {
				return strings.Replace(s, `"pooling_mode_cls_token": true`, `"pooling_mode_cls_token": false`, 1)
			})
		}, []string{"1_Pooling", "no pooling mode"}},
		{"dense after normalize", "max_dense/current", func(t *testing.T, dir string) {
			edit(t, filepath.Join(dir, ModulesFile), func(s string) string {
				s = strings.Replace(s, `"idx": 2,`, `"idx": 9,`, 1)
				return s
			})
		}, []string{"2_Dense", "after Normalize"}},
		{"unknown default prompt", "mean_prompts/current", func(t *testing.T, dir string) {
			edit(t, filepath.Join(dir, STConfigFile), func(s string) string {
				return strings.Replace(s, `"default_prompt_name": "query"`, `"default_prompt_name": "passage"`, 1)
			})
		}, []string{"passage", "document, query"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := copyDir(t, filepath.Join("testdata", c.fixture))
			c.alter(t, dir)
			_, err := Load(dir)
			if err == nil {
				t.Fatal("loaded")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

// A Pooling config reads as sentence-transformers' Pooling(**config) reads it: absent flags
// take the constructor's defaults (mean on, the rest off), and a null pooling_mode defers to
// the flags.
func TestPoolingConfigDefaultsAsSentenceTransformers(t *testing.T) {
	for _, c := range []struct{ config, want string }{
		{`{"word_embedding_dimension": 16}`, "mean"},
		{`{"word_embedding_dimension": 16, "pooling_mode_max_tokens": true, "pooling_mode_mean_tokens": false}`, "max"},
		{`{"pooling_mode": null, "pooling_mode_cls_token": true, "pooling_mode_mean_tokens": false}`, "cls"},
		{`{"pooling_mode": "lasttoken", "pooling_mode_mean_tokens": true}`, "lasttoken"},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(c.config), 0o644); err != nil {
			t.Fatal(err)
		}
		var p Pipeline
		if err := p.readPooling(dir); err != nil {
			t.Errorf("%s: %v", c.config, err)
			continue
		}
		if got := p.Pooling.String(); got != c.want {
			t.Errorf("%s: pooling %s, want %s", c.config, got, c.want)
		}
	}
}
