package dataset

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// benchPassages makes n MS MARCO-sized passages (about 350 characters each).
func benchPassages(n int) []string {
	words := strings.Fields("the of and to in a is that for it as was with be by on not he this are or his from at which but have an they you were her she there would their we him been has when who will more no if out so said what up its about into than them can only other new some could time these two may then do first any my now such like our over man me even most made after also did many before must through years where much your way well down should because each just those people how too little state good very make world still own see men work long get here between both life being under never day same another know while last might us great old year off come since against go came right used take three")
	out := make([]string, n)
	for i := range out {
		var b strings.Builder
		for j := 0; b.Len() < 350; j++ {
			b.WriteString(words[(i*7+j*13)%len(words)])
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d.", i)
		out[i] = b.String()
	}
	return out
}

func benchmarkSource(b *testing.B, name string, data []byte) {
	path := filepath.Join(b.TempDir(), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for range b.N {
		if _, err := SampleSource(context.Background(), path, 10000, 42); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSampleTSV(b *testing.B) {
	var buf bytes.Buffer
	for i, p := range benchPassages(200_000) {
		fmt.Fprintf(&buf, "%d\t%s\n", i, p)
	}
	benchmarkSource(b, "collection.tsv", buf.Bytes())
}

func BenchmarkSampleJSONL(b *testing.B) {
	var buf bytes.Buffer
	for i, p := range benchPassages(200_000) {
		fmt.Fprintf(&buf, `{"_id": "%d", "title": "", "text": %q, "metadata": {}}`+"\n", i, p)
	}
	benchmarkSource(b, "corpus.jsonl", buf.Bytes())
}

func BenchmarkSampleParquet(b *testing.B) {
	passages := benchPassages(200_000)
	var queries [][]string
	for i := 0; i < len(passages); i += 10 {
		queries = append(queries, passages[i:i+10])
	}
	benchmarkSource(b, "train.parquet", msmarcoParquet(b, queries))
}
