package dataset

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
)

func writeFile(t *testing.T, path string, data []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func gz(t *testing.T, data []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func readAll(t *testing.T, path string) []string {
	t.Helper()
	var got []string
	if err := Each(context.Background(), path, func(p string) error { got = append(got, p); return nil }); err != nil {
		t.Fatal(err)
	}
	return got
}

// The row layout of microsoft/ms_marco's parquet files (HF datasets, Arrow lists).
type msmarcoRow struct {
	Answers  []string `parquet:"answers,list"`
	Passages struct {
		IsSelected  []int32  `parquet:"is_selected,list"`
		PassageText []string `parquet:"passage_text,list"`
		URL         []string `parquet:"url,list"`
	} `parquet:"passages"`
	Query     string `parquet:"query"`
	QueryID   int32  `parquet:"query_id"`
	QueryType string `parquet:"query_type"`
}

// The row layout of BeIR/msmarco's corpus.
type beirRow struct {
	ID    string `parquet:"_id"`
	Title string `parquet:"title"`
	Text  string `parquet:"text"`
}

func msmarcoParquet(t testing.TB, queries [][]string) []byte {
	t.Helper()
	rows := make([]msmarcoRow, len(queries))
	for i, passages := range queries {
		rows[i].Query = fmt.Sprintf("query %d", i)
		rows[i].QueryID = int32(i)
		rows[i].Passages.PassageText = passages
		rows[i].Passages.IsSelected = make([]int32, len(passages))
		rows[i].Passages.URL = make([]string, len(passages))
	}
	var buf bytes.Buffer
	// Small row groups so the reader crosses row-group boundaries.
	if err := parquet.Write(&buf, rows, parquet.MaxRowsPerRowGroup(2)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestReadsCollectionTSV(t *testing.T) {
	path := writeFile(t, filepath.Join(t.TempDir(), "collection.tsv"),
		[]byte("0\tThe first passage.\r\n1\tSecond\twith a tab inside.\n\n2\t\n"))
	got := readAll(t, path)
	want := []string{"The first passage.", "Second\twith a tab inside.", ""}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// A header line naming the columns, as pandas and datasets write one, is no passage.
func TestTSVHeaderIsNoPassage(t *testing.T) {
	path := writeFile(t, filepath.Join(t.TempDir(), "collection.tsv"),
		[]byte("pid\tpassage\n0\tThe first passage.\n1\tpid is a word here\n"))
	if got, want := readAll(t, path), []string{"The first passage.", "pid is a word here"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestMalformedSourcesNameFileAndLine(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]struct {
		name string
		data []byte
		want string
	}{
		"tsv without tab": {"collection.tsv", []byte("0\tok\n1\tok\nno tab here\n"), "collection.tsv:3: want pid<TAB>passage"},
		"bad json":        {"corpus.jsonl", []byte(`{"_id":"1","text":"ok"}` + "\n" + `{"_id":"2","text":` + "\n"), "corpus.jsonl:2: not a JSON object"},
		"no text field":   {"corpus2.jsonl", []byte(`{"_id":"1","title":"x"}` + "\n"), `corpus2.jsonl:1: no "text" field`},
		"gz bad json":     {"corpus3.jsonl.gz", gz(t, []byte("{}\n")), `corpus3.jsonl.gz:1: no "text" field`},
		"not parquet":     {"train.parquet", []byte("this is not parquet"), "train.parquet: not a readable parquet file"},
		"unknown format":  {"passages.csv", []byte("a,b\n"), "unknown format"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			path := writeFile(t, filepath.Join(dir, tc.name), tc.data)
			err := Each(context.Background(), path, func(string) error { return nil })
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
	if err := Each(context.Background(), filepath.Join(dir, "absent.tsv"), func(string) error { return nil }); err == nil || !strings.Contains(err.Error(), "absent.tsv") {
		t.Errorf("missing file: %v", err)
	}
}

func TestReadsBEIRJSONLPlainAndGzipped(t *testing.T) {
	dir := t.TempDir()
	lines := []byte("\ufeff" + `{"_id": "1", "title": "", "text": "Café au lait \"quoted\".", "metadata": {}}` + "\n" + `{"_id": "2", "title": "T", "text": "Second."}` + "\n")
	plain := writeFile(t, filepath.Join(dir, "corpus.jsonl"), lines)
	zipped := writeFile(t, filepath.Join(dir, "corpus.jsonl.gz"), gz(t, lines))
	want := []string{`Café au lait "quoted".`, "Second."}
	for _, path := range []string{plain, zipped} {
		if got := readAll(t, path); !slices.Equal(got, want) {
			t.Errorf("%s: got %q, want %q", path, got, want)
		}
	}
	// A gzip cut short is reported as cut short, not as a malformed JSON line.
	var many bytes.Buffer
	for i := range 2000 {
		fmt.Fprintf(&many, `{"_id": "%d", "text": "passage number %d, long enough to fill the stream"}`+"\n", i, i)
	}
	full := gz(t, many.Bytes())
	cut := writeFile(t, filepath.Join(dir, "cut.jsonl.gz"), full[:len(full)/2])
	err := Each(context.Background(), cut, func(string) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "truncated or corrupt") || strings.Contains(err.Error(), "not a JSON object") {
		t.Errorf("a gzip cut in half: %v", err)
	}
}

func TestReadsMSMARCOParquetLayout(t *testing.T) {
	path := writeFile(t, filepath.Join(t.TempDir(), "v1.1", "train-00000-of-00001.parquet"), msmarcoParquet(t, [][]string{
		{"a one", "a two"}, {}, {"c one"}, {"d one", "d two", "d three"}, {"e one"},
	}))
	want := []string{"a one", "a two", "c one", "d one", "d two", "d three", "e one"}
	if got := readAll(t, path); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestReadsBEIRParquetLayoutAndRefusesOthers(t *testing.T) {
	dir := t.TempDir()
	var buf bytes.Buffer
	if err := parquet.Write(&buf, []beirRow{{"1", "", "first text"}, {"2", "Title", "second text"}}); err != nil {
		t.Fatal(err)
	}
	path := writeFile(t, filepath.Join(dir, "corpus.parquet"), buf.Bytes())
	if got := readAll(t, path); !slices.Equal(got, []string{"first text", "second text"}) {
		t.Errorf("got %q", got)
	}
	buf.Reset()
	type other struct {
		Question string `parquet:"question"`
	}
	if err := parquet.Write(&buf, []other{{"q"}}); err != nil {
		t.Fatal(err)
	}
	path = writeFile(t, filepath.Join(dir, "other.parquet"), buf.Bytes())
	err := Each(context.Background(), path, func(string) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "no passage column") || !strings.Contains(err.Error(), "question") {
		t.Errorf("err = %v, want a message listing the columns", err)
	}
}

func TestDirectorySourceSkipsQueriesAndQrels(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "collection.tsv"), []byte("1\tfrom tsv\n"))
	writeFile(t, filepath.Join(dir, "corpus.jsonl"), []byte(`{"_id":"1","text":"from jsonl"}`+"\n"))
	writeFile(t, filepath.Join(dir, "queries.tsv"), []byte("1\ta query\n"))
	writeFile(t, filepath.Join(dir, "qrels", "test.tsv"), []byte("query-id\tcorpus-id\tscore\n"))
	writeFile(t, filepath.Join(dir, "README.md"), []byte("# hi\n"))
	if got := readAll(t, dir); !slices.Equal(got, []string{"from tsv", "from jsonl"}) {
		t.Errorf("got %q", got)
	}
	// A link to the folder reads as the folder (WalkDir alone does not follow it).
	link := filepath.Join(t.TempDir(), "msmarco")
	if err := os.Symlink(dir, link); err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, link); !slices.Equal(got, []string{"from tsv", "from jsonl"}) {
		t.Errorf("through a link to the folder: got %q", got)
	}
	empty := t.TempDir()
	writeFile(t, filepath.Join(empty, "README.md"), []byte("# hi\n"))
	if err := Each(context.Background(), empty, func(string) error { return nil }); err == nil || !strings.Contains(err.Error(), "no passage files") {
		t.Errorf("dir without passages: %v", err)
	}
}

func TestReadingStopsOnCancel(t *testing.T) {
	var lines strings.Builder
	for i := range 20000 {
		fmt.Fprintf(&lines, "%d\tpassage %d\n", i, i)
	}
	path := writeFile(t, filepath.Join(t.TempDir(), "collection.tsv"), []byte(lines.String()))
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	err := Each(ctx, path, func(string) error {
		if n++; n == 10 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n >= 20000 {
		t.Errorf("err = %v after %d passages, want context.Canceled early", err, n)
	}
}
