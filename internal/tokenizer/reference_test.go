package tokenizer

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/embedbench/embedbench/internal/localdata"
)

// reference is testdata/reference.json.gz: ids (with special tokens) that HF tokenizers gave
// on the GPU machine for the MS MARCO samples in ../shared and for testdata/hard_cases.jsonl.
// The texts themselves are not repeated there.
type reference struct {
	TokenizersVersion string    `json:"tokenizers_version"`
	Collection        [][]int32 `json:"collection"`
	BEIR              [][]int32 `json:"beir"`
	Hard              []struct {
		IDs     []int32  `json:"ids"`
		Offsets [][2]int `json:"offsets"`
	} `json:"hard"`
	HardTruncated []struct {
		Index     *int    `json:"index"`
		Text      *string `json:"text"`
		MaxLength int     `json:"max_length"`
		Side      string  `json:"side"`
		IDs       []int32 `json:"ids"`
	} `json:"hard_truncated"`
}

func loadReference(t *testing.T) *reference {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", "reference.json.gz"))
	if os.IsNotExist(err) {
		t.Skip("testdata/reference.json.gz not generated yet (scripts/gpu, on the GPU machine)")
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	var ref reference
	if err := json.NewDecoder(zr).Decode(&ref); err != nil {
		t.Fatalf("reading reference.json.gz: %v", err)
	}
	return &ref
}

func hardCases(tb testing.TB) []string {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "hard_cases.jsonl"))
	if err != nil {
		tb.Fatal(err)
	}
	var texts []string
	for i, line := range bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		var c struct {
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(line, &c); err != nil || c.Text == nil {
			tb.Fatalf("hard_cases.jsonl line %d: want {\"text\": ...}: %v", i+1, err)
		}
		texts = append(texts, *c.Text)
	}
	return texts
}

func beirTexts(tb testing.TB) []string {
	tb.Helper()
	dir, err := localdata.MSMARCODir()
	if err != nil {
		tb.Skipf("no shared MS MARCO sample: %v", err)
	}
	f, err := os.Open(filepath.Join(dir, "corpus.beir.sample.jsonl"))
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	var texts []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<24)
	for sc.Scan() {
		var doc struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal(sc.Bytes(), &doc); err != nil {
			tb.Fatalf("corpus.beir.sample.jsonl line %d: %v", len(texts)+1, err)
		}
		texts = append(texts, doc.Text)
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return texts
}

// compareAll encodes every text and compares with HF's ids, reporting the first differences
// and the count.
func compareAll(t *testing.T, tok *Tokenizer, name string, texts []string, want [][]int32) {
	t.Helper()
	if len(texts) != len(want) {
		t.Fatalf("%s: %d texts but %d reference encodings", name, len(texts), len(want))
	}
	bad := 0
	var ids []int32
	for i, text := range texts {
		ids, _ = tok.AppendIDs(ids[:0], text, 0)
		if slices.Equal(ids, want[i]) {
			continue
		}
		bad++
		if bad <= 5 {
			t.Errorf("%s[%d] %.80q:\n got %v\nwant %v", name, i, text, ids, want[i])
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d passages differ from HF tokenizers", name, bad, len(texts))
	}
}

func TestMatchesHFOnMSMARCO(t *testing.T) {
	tok := loadModernBERT(t)
	ref := loadReference(t)
	compareAll(t, tok, "collection.sample.tsv", msmarcoPassages(t), ref.Collection)
	compareAll(t, tok, "corpus.beir.sample.jsonl", beirTexts(t), ref.BEIR)
}

func TestMatchesHFOnHardCases(t *testing.T) {
	tok := loadModernBERT(t)
	ref := loadReference(t)
	texts := hardCases(t)
	if len(ref.Hard) == 0 {
		t.Skip("reference.json.gz has no hard cases yet (scripts/gpu/fixtures.sh adds them)")
	}
	if len(ref.Hard) != len(texts) {
		t.Fatalf("%d hard cases but %d reference encodings", len(texts), len(ref.Hard))
	}
	for i, text := range texts {
		enc := tok.Encode(text, EncodeOptions{AddSpecialTokens: true})
		if !slices.Equal(enc.IDs, ref.Hard[i].IDs) {
			t.Errorf("hard[%d] %.80q: ids\n got %v\nwant %v", i, text, enc.IDs, ref.Hard[i].IDs)
			continue
		}
		if !slices.Equal(enc.Offsets, ref.Hard[i].Offsets) {
			t.Errorf("hard[%d] %.80q: offsets\n got %v\nwant %v", i, text, enc.Offsets, ref.Hard[i].Offsets)
		}
	}
	for i, c := range ref.HardTruncated {
		var text string
		switch {
		case c.Text != nil:
			text = *c.Text
		case c.Index != nil && *c.Index >= 0 && *c.Index < len(texts):
			text = texts[*c.Index]
		default:
			t.Fatalf("hard_truncated[%d]: no text or valid index", i)
		}
		enc := tok.Encode(text, EncodeOptions{AddSpecialTokens: true, MaxLength: c.MaxLength, TruncateLeft: c.Side == "left"})
		if !slices.Equal(enc.IDs, c.IDs) {
			t.Errorf("hard_truncated[%d] (max %d, %s) %.60q:\n got %v\nwant %v", i, c.MaxLength, c.Side, text, enc.IDs, c.IDs)
		}
		if c.Side == "right" {
			ids, _ := tok.AppendIDs(nil, text, c.MaxLength)
			if !slices.Equal(ids, c.IDs) {
				t.Errorf("hard_truncated[%d]: AppendIDs = %v, want %v", i, ids, c.IDs)
			}
		}
	}
	t.Logf("compared with HF tokenizers %s", ref.TokenizersVersion)
}
