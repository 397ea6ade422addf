package tokenizer

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/embedbench/embedbench/internal/localdata"
)

// msmarcoPassages reads the texts of collection.sample.tsv: each line without its "\n", after
// the first tab. Lines are split on "\n" only, so a "\r" stays part of the text.
func msmarcoPassages(tb testing.TB) []string {
	tb.Helper()
	dir, err := localdata.MSMARCODir()
	if err != nil {
		tb.Skipf("no shared MS MARCO sample: %v", err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "collection.sample.tsv"))
	if err != nil {
		tb.Fatal(err)
	}
	var texts []string
	for line := range bytes.SplitSeq(bytes.TrimSuffix(data, []byte("\n")), []byte("\n")) {
		_, text, ok := bytes.Cut(line, []byte("\t"))
		if !ok {
			tb.Fatalf("collection.sample.tsv: line without a tab: %q", line)
		}
		texts = append(texts, string(text))
	}
	return texts
}

func BenchmarkLoad(b *testing.B) {
	dir, err := localdata.ModernBERTDir()
	if err != nil {
		b.Skip(err)
	}
	for b.Loop() {
		if _, err := LoadFile(filepath.Join(dir, "tokenizer.json")); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeMSMARCO encodes MS MARCO passages one at a time; one op is one passage.
func BenchmarkEncodeMSMARCO(b *testing.B) {
	tok := loadModernBERT(b)
	texts := msmarcoPassages(b)
	var bytesTotal int
	for _, t := range texts {
		bytesTotal += len(t)
	}
	report := func(b *testing.B) {
		b.SetBytes(int64(bytesTotal / len(texts)))
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "passages/s")
	}
	b.Run("AppendIDs", func(b *testing.B) {
		ids := make([]int32, 0, 8192)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			ids, _ = tok.AppendIDs(ids[:0], texts[i], 0)
			i = (i + 1) % len(texts)
		}
		report(b)
	})
	b.Run("Encode", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			tok.Encode(texts[i], EncodeOptions{AddSpecialTokens: true})
			i = (i + 1) % len(texts)
		}
		report(b)
	})
	b.Run("AppendIDsParallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			ids := make([]int32, 0, 8192)
			i := 0
			for pb.Next() {
				ids, _ = tok.AppendIDs(ids[:0], texts[i], 0)
				i = (i + 1) % len(texts)
			}
		})
		report(b)
	})
}
