package dataset

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/embedbench/embedbench/internal/hub"
	"github.com/embedbench/embedbench/internal/hub/hubtest"
	"github.com/embedbench/embedbench/internal/localdata"
)

func collection(t *testing.T, passages ...string) string {
	t.Helper()
	var b strings.Builder
	for i, p := range passages {
		fmt.Fprintf(&b, "%d\t%s\n", i, p)
	}
	return writeFile(t, filepath.Join(t.TempDir(), "collection.tsv"), []byte(b.String()))
}

func TestSampleDropsEmptyAndDuplicatesAndIsReproducible(t *testing.T) {
	var passages []string
	for i := range 500 {
		passages = append(passages, fmt.Sprintf("passage number %d", i))
	}
	passages = append(passages, "", "   ", "passage number 7", " passage number 8 ")
	path := collection(t, passages...)

	a, err := SampleSource(context.Background(), path, 100, 42)
	if err != nil {
		t.Fatal(err)
	}
	if a.Distinct != 500 || a.Empty != 2 || a.Duplicates != 2 {
		t.Errorf("distinct %d empty %d duplicates %d, want 500 2 2", a.Distinct, a.Empty, a.Duplicates)
	}
	if len(a.Passages) != 100 {
		t.Fatalf("%d passages, want 100", len(a.Passages))
	}
	sorted := slices.Clone(a.Passages)
	slices.Sort(sorted)
	if len(slices.Compact(sorted)) != 100 {
		t.Error("the sample repeats a passage")
	}
	b, err := SampleSource(context.Background(), path, 100, 42)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Passages, b.Passages) {
		t.Error("the same seed gave a different sample")
	}
	c, err := SampleSource(context.Background(), path, 100, 43)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(a.Passages, c.Passages) {
		t.Error("another seed gave the same sample")
	}
	// All of them: every distinct passage once.
	all, err := SampleSource(context.Background(), path, 500, 1)
	if err != nil {
		t.Fatal(err)
	}
	sorted = slices.Clone(all.Passages)
	slices.Sort(sorted)
	if len(slices.Compact(sorted)) != 500 {
		t.Error("sampling everything lost or repeated passages")
	}
}

func TestAskingForMoreThanTheSourceHasSaysHowMany(t *testing.T) {
	path := collection(t, "one", "two", "two", "", "three")
	_, err := SampleSource(context.Background(), path, 10, 1)
	if !errors.Is(err, ErrTooFewPassages) || !strings.Contains(err.Error(), "has 3 distinct") || !strings.Contains(err.Error(), "asked for 10") {
		t.Fatalf("err = %v", err)
	}
}

// Every passage must be equally likely to be chosen, wherever it sits in the source.
func TestSampleIsUniform(t *testing.T) {
	const items, k, runs = 10, 3, 3000
	s := make([]string, items)
	for i := range s {
		s[i] = fmt.Sprint("p", i)
	}
	counts := map[string]int{}
	for seed := range uint64(runs) {
		smp := newSampler(k, seed)
		for _, p := range s {
			smp.add(p)
		}
		out, err := smp.finish("test")
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range out.Passages {
			counts[p]++
		}
	}
	want := float64(runs * k / items) // 900; the binomial sd is ~25
	for _, p := range s {
		if got := float64(counts[p]); got < want-125 || got > want+125 {
			t.Errorf("%s chosen %v times, want about %v", p, got, want)
		}
	}
}

func TestWriteThenLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "test_sentences.json")
	passages := []string{`He said "hi" & left <fast>.`, "Ünïcödé – 東京", "line\nbreak\ttab"}
	if err := Write(path, passages); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil || !slices.Equal(got, passages) {
		t.Fatalf("got %q, %v", got, err)
	}
	// Overwriting replaces it whole and leaves no temporary files.
	if err := Write(path, passages[:1]); err != nil {
		t.Fatal(err)
	}
	if got, _ := Load(path); len(got) != 1 {
		t.Errorf("after overwrite: %q", got)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("folder holds %d entries, want only the output", len(entries))
	}
	// A byte-order mark, as Windows editors write one, is not part of the JSON.
	if err := os.WriteFile(path, []byte("\ufeff[\"one\", \"two\"]"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := Load(path); err != nil || !slices.Equal(got, []string{"one", "two"}) {
		t.Errorf("with a byte-order mark: %q, %v", got, err)
	}
	if err := Write(filepath.Join(t.TempDir(), "no", "such", "dir.json"), passages); err == nil {
		t.Error("writing into a missing folder must fail")
	}
}

func TestLoadRejectsWhatTheStressTesterCannotSend(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"[\n  \"a\",\n  \"b\"\n":    "not valid JSON",
		`{"texts": ["a"]}`:          "want a JSON list of strings",
		`[]`:                        "the list is empty",
		`["a", 3]`:                  "element 1 is 3, want a string",
		`["a", null]`:               "element 1 is null, want a string",
		`["a", "  "]`:               "element 1 is an empty string",
		"[\n\"a\",\n\"b\"\n,,\n]\n": ":4:2: not valid JSON",
		"":                          "not valid JSON",
	}
	i := 0
	for content, want := range cases {
		i++
		path := writeFile(t, filepath.Join(dir, fmt.Sprintf("s%d.json", i)), []byte(content))
		if _, err := Load(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want %q", content, err, want)
		}
	}
	if _, err := Load(filepath.Join(dir, "absent.json")); err == nil {
		t.Error("a missing file must fail")
	}
}

func TestDescribeLengths(t *testing.T) {
	s := DescribeLengths([]int{5, 1, 4, 2, 3, 10, 6, 7, 8, 9}, "chars")
	if s.Count != 10 || s.Min != 1 || s.Max != 10 || s.Mean != 5.5 || s.P50 != 5 || s.P90 != 9 {
		t.Errorf("%+v", s)
	}
	if s := DescribeLengths(nil, "chars"); s.Count != 0 {
		t.Errorf("%+v", s)
	}
}

func TestSharedMSMARCOSamples(t *testing.T) {
	dir, err := localdata.MSMARCODir()
	if err != nil {
		t.Skip(err)
	}
	tsv, err := SampleSource(context.Background(), filepath.Join(dir, "collection.sample.tsv"), 1000, 42)
	if err != nil {
		t.Fatal(err)
	}
	beir, err := SampleSource(context.Background(), filepath.Join(dir, "corpus.beir.sample.jsonl"), 1000, 42)
	if err != nil {
		t.Fatal(err)
	}
	both, err := SampleSource(context.Background(), dir, 1000, 42)
	if err != nil {
		t.Fatal(err)
	}
	if tsv.Distinct < 4000 || beir.Distinct < 4900 {
		t.Errorf("distinct: tsv %d, beir %d", tsv.Distinct, beir.Distinct)
	}
	// The directory reads both files (not the queries) and counts each distinct passage once.
	if both.Distinct > tsv.Distinct+beir.Distinct || both.Distinct < max(tsv.Distinct, beir.Distinct) {
		t.Errorf("directory: %d distinct from %d + %d", both.Distinct, tsv.Distinct, beir.Distinct)
	}
	var lengths []int
	for _, p := range both.Passages {
		lengths = append(lengths, len([]rune(p)))
	}
	if st := DescribeLengths(lengths, "chars"); st.Mean < 100 || st.Mean > 1000 {
		t.Errorf("implausible MS MARCO passage lengths: %v", st)
	}
	_, err = SampleSource(context.Background(), dir, 1_000_000, 42)
	if !errors.Is(err, ErrTooFewPassages) {
		t.Errorf("asking for a million: %v", err)
	}
}

func TestMSMARCOSourceDownloadsThroughTheHubCache(t *testing.T) {
	srv := hubtest.New()
	t.Cleanup(srv.Close)
	var queries [][]string
	for i := range 40 {
		queries = append(queries, []string{fmt.Sprintf("q%d passage a", i), fmt.Sprintf("q%d passage b", i)})
	}
	srv.AddFile(hub.RepoDataset, "microsoft/ms_marco", "v1.1/train-00000-of-00001.parquet", msmarcoParquet(t, queries), true)
	c := &hub.Client{Endpoint: srv.URL, CacheDir: t.TempDir(), MaxAttempts: 1}

	path, err := ResolveSource(context.Background(), c, "msmarco")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(path, filepath.Join("datasets--microsoft--ms_marco", "snapshots", hubtest.Commit, "v1.1")) {
		t.Errorf("path %s is not in the hub cache", path)
	}
	s, err := SampleSource(context.Background(), path, 50, 7)
	if err != nil || s.Distinct != 80 {
		t.Fatalf("sample: %d distinct, %v", s.Distinct, err)
	}
	// Offline: the cached copy is used without a request; an uncached file is a clear error.
	c.Offline = true
	before := len(srv.Requests())
	if again, err := ResolveSource(context.Background(), c, "msmarco"); err != nil || again != path {
		t.Errorf("offline: %s, %v", again, err)
	}
	if _, err := ResolveSource(context.Background(), c, "hf://datasets/BeIR/msmarco/corpus.jsonl.gz"); !errors.Is(err, hub.ErrOffline) {
		t.Errorf("offline, uncached: %v", err)
	}
	if len(srv.Requests()) != before {
		t.Error("offline mode made a request")
	}
	// A local path passes through untouched.
	if p, err := ResolveSource(context.Background(), c, "some/dir"); err != nil || p != "some/dir" {
		t.Errorf("local: %s, %v", p, err)
	}
}

func TestParseHubFile(t *testing.T) {
	f, ok, err := ParseHubFile("hf://datasets/BeIR/msmarco@abc/sub/corpus.jsonl.gz")
	if !ok || err != nil || f != (HubFile{hub.RepoDataset, "BeIR/msmarco", "abc", "sub/corpus.jsonl.gz"}) {
		t.Errorf("%+v %v %v", f, ok, err)
	}
	if _, ok, err := ParseHubFile("hf://datasets/BeIR"); !ok || err == nil {
		t.Errorf("short ref: %v %v", ok, err)
	}
	if _, ok, _ := ParseHubFile("/data/collection.tsv"); ok {
		t.Error("a local path taken for a hub file")
	}
}
