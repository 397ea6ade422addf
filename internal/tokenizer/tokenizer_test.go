package tokenizer

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/embedbench/embedbench/internal/localdata"
)

var (
	modernBERTOnce sync.Once
	modernBERT     *Tokenizer
	modernBERTErr  error
)

// loadModernBERT loads the shared ModernBERT tokenizer once per test binary, or skips when the
// shared folder is not on this machine.
func loadModernBERT(tb testing.TB) *Tokenizer {
	tb.Helper()
	dir, err := localdata.ModernBERTDir()
	if err != nil {
		tb.Skipf("no shared ModernBERT tokenizer: %v", err)
	}
	modernBERTOnce.Do(func() {
		modernBERT, modernBERTErr = LoadFile(filepath.Join(dir, "tokenizer.json"))
	})
	if modernBERTErr != nil {
		tb.Fatal(modernBERTErr)
	}
	return modernBERT
}

// TestModernBERTParityCases checks the ids and byte spans HF gave for the shared parity cases
// (encoded without special tokens).
func TestModernBERTParityCases(t *testing.T) {
	tok := loadModernBERT(t)
	dir, _ := localdata.ModernBERTDir()
	data, err := os.ReadFile(filepath.Join(dir, "modernbert_parity.json"))
	if err != nil {
		t.Fatal(err)
	}
	var cases []struct {
		Text  string   `json:"text"`
		IDs   []int32  `json:"ids"`
		Spans [][2]int `json:"spans"`
	}
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatal(err)
	}
	if len(cases) != 11 {
		t.Fatalf("got %d parity cases, want 11", len(cases))
	}
	for _, c := range cases {
		enc := tok.Encode(c.Text, EncodeOptions{})
		if !slices.Equal(enc.IDs, c.IDs) {
			t.Errorf("%q: ids\n got %v\nwant %v", c.Text, enc.IDs, c.IDs)
			continue
		}
		if !slices.Equal(enc.Offsets, c.Spans) {
			t.Errorf("%q: offsets\n got %v\nwant %v", c.Text, enc.Offsets, c.Spans)
		}
		ids, total := tok.AppendIDs(nil, c.Text, 0)
		want := append(append([]int32{50281}, c.IDs...), 50282)
		if !slices.Equal(ids, want) || total != len(want) {
			t.Errorf("%q: AppendIDs = %v (total %d), want %v", c.Text, ids, total, want)
		}
	}
}

func TestSpecialIDsAndVocabSize(t *testing.T) {
	tok := loadModernBERT(t)
	for token, want := range map[string]int32{"[CLS]": 50281, "[SEP]": 50282, "[PAD]": 50283, "[MASK]": 50284, "[UNK]": 50280, "Ġthe": 253} {
		if id, ok := tok.SpecialID(token); !ok || id != want {
			t.Errorf("SpecialID(%q) = %d, %v; want %d", token, id, ok, want)
		}
	}
	if _, ok := tok.SpecialID("[NOPE]"); ok {
		t.Error("SpecialID found a token that does not exist")
	}
	if got := tok.VocabSize(); got != 50368 { // config.json's vocab_size
		t.Errorf("VocabSize = %d, want 50368", got)
	}
}

func TestUnsupportedComponentsAreNamed(t *testing.T) {
	base := `{"added_tokens": [], "normalizer": %s, "pre_tokenizer": %s, "model": %s, "post_processor": %s}`
	bpeModel := `{"type": "BPE", "vocab": ` + byteVocabJSON(nil) + `, "merges": []}`
	byteLevelPre := `{"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}`
	for _, c := range []struct {
		name, json, want string
	}{
		{"wordpiece", sprintf(base, "null", byteLevelPre, `{"type": "WordPiece", "vocab": {}}`, "null"), `model "WordPiece"`},
		{"unigram", sprintf(base, "null", byteLevelPre, `{"type": "Unigram", "vocab": []}`, "null"), `model "Unigram"`},
		{"metaspace", sprintf(base, "null", `{"type": "Metaspace", "replacement": "▁"}`, bpeModel, "null"), `pre_tokenizer "Metaspace"`},
		{"nfkc", sprintf(base, `{"type": "NFKC"}`, byteLevelPre, bpeModel, "null"), `normalizer "NFKC"`},
		{"bert post-processor", sprintf(base, "null", byteLevelPre, bpeModel, `{"type": "BertProcessing", "sep": ["[SEP]", 1], "cls": ["[CLS]", 0]}`), `post_processor "BertProcessing"`},
		{"prefix space", sprintf(base, "null", `{"type": "ByteLevel", "add_prefix_space": true}`, bpeModel, "null"), "add_prefix_space"},
		{"dropout", sprintf(base, "null", byteLevelPre, `{"type": "BPE", "vocab": {}, "merges": [], "dropout": 0.1}`, "null"), "dropout"},
	} {
		_, err := Load([]byte(c.json))
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want ErrUnsupported naming %s", c.name, err, c.want)
		}
	}
}

func sprintf(format string, args ...string) string {
	for _, a := range args {
		format = strings.Replace(format, "%s", a, 1)
	}
	return format
}

// byteVocabJSON returns a byte-level vocabulary as JSON: the 256 single bytes (ids 0-255)
// followed by extra, spelled in the byte-level alphabet.
func byteVocabJSON(extra []string) string {
	vocab := map[string]int{}
	for b, r := range byteToRune {
		vocab[string(r)] = b
	}
	for i, tok := range extra {
		vocab[tok] = 256 + i
	}
	data, _ := json.Marshal(vocab)
	return string(data)
}
