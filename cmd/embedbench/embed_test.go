package main

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/embedbench/embedbench/internal/engine"
	"github.com/embedbench/embedbench/internal/localdata"
	"github.com/embedbench/embedbench/internal/modernbert"
)

func tinyEmbedArgs(t *testing.T) []string {
	t.Helper()
	dir, err := localdata.ModernBERTDir()
	if err != nil {
		t.Skip("shared ModernBERT tokenizer not available:", err)
	}
	return []string{"--model", dir, "--weights", "random", "--scale", "2,64,4,128", "--device", "cpu", "--max-length", "128"}
}

func TestEmbedWritesOneNormalisedVectorPerLine(t *testing.T) {
	in := "{\"text\": \"Hello world\"}\n\n{\"text\": \"\"}\n{\"text\": \"" + strings.Repeat("long text ", 200) + "\"}\n"
	var out bytes.Buffer
	if err := embedCommand(context.Background(), tinyEmbedArgs(t), strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d output lines for 3 texts", len(lines))
	}
	for i, line := range lines {
		var rec struct{ Embedding []float64 }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatal(err)
		}
		norm := 0.0
		for _, x := range rec.Embedding {
			norm += x * x
		}
		if len(rec.Embedding) != 64 || math.Abs(math.Sqrt(norm)-1) > 1e-4 {
			t.Fatalf("line %d: %d values, norm %g", i+1, len(rec.Embedding), math.Sqrt(norm))
		}
	}
}

func TestEmbedBadLineKeepsEarlierVectors(t *testing.T) {
	in := "{\"text\": \"fine\"}\n{\"txt\": \"wrong key\"}\n{\"text\": \"never reached\"}\n"
	var out bytes.Buffer
	err := embedCommand(context.Background(), tinyEmbedArgs(t), strings.NewReader(in), &out)
	if err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("error %v, want one naming line 2", err)
	}
	if n := strings.Count(out.String(), "\n"); n != 1 {
		t.Fatalf("%d vectors written before the bad line, want 1", n)
	}
}

func TestEmbedRefusesBadFlags(t *testing.T) {
	args := append(tinyEmbedArgs(t), "--dtype", "float16")
	if err := embedCommand(context.Background(), args, strings.NewReader(""), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "dtype") {
		t.Fatalf("error %v, want a --dtype error", err)
	}
	args = []string{"--model", tinyEmbedArgs(t)[1], "--scale", "2,64,4,128", "--device", "cpu"}
	if err := embedCommand(context.Background(), args, strings.NewReader(""), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--scale needs --weights random") {
		t.Fatalf("error %v, want a --scale error", err)
	}
}

// The model commands take serve's and demo's names too: --model-size for the small random
// models, and --weights real for the checkpoint's weights.
func TestEmbedTakesServesModelSizeAndWeightsNames(t *testing.T) {
	dir := tinyEmbedArgs(t)[1]
	vecs := embedVectors(t, []string{"--model", dir, "--weights", "random", "--model-size", "tiny", "--device", "cpu", "--max-length", "64"}, "{\"text\": \"Hello world\"}\n")
	if len(vecs) != 1 || len(vecs[0]) != 128 {
		t.Fatalf("--model-size tiny: %d vectors of %d values, want one of the tiny model's 128", len(vecs), len(vecs[0]))
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--model-size", "tiny"}, "--model-size tiny needs --weights random"},
		{[]string{"--model-size", "tiny", "--weights", "random", "--scale", "2,64,4,128"}, "not both"},
		{[]string{"--model-size", "base", "--weights", "random", "--scale", "2,64,4,128"}, "not both"},
		{[]string{"--model-size", "huge", "--weights", "random"}, "want one of tiny, small, base"},
	} {
		args := append([]string{"--model", dir, "--device", "cpu"}, c.args...)
		if err := embedCommand(context.Background(), args, strings.NewReader(""), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("embed %v: %v, want an error saying %q", c.args, err, c.want)
		}
	}
	// The shared folder has no weights: "real" is "model", and both say so.
	var errs [2]error
	for i, w := range []string{"model", "real"} {
		errs[i] = embedCommand(context.Background(), []string{"--model", dir, "--device", "cpu", "--weights", w}, strings.NewReader(""), &bytes.Buffer{})
	}
	if errs[0] == nil || errs[1] == nil || errs[0].Error() != errs[1].Error() {
		t.Errorf("--weights model: %v; --weights real: %v; want the same error", errs[0], errs[1])
	}
}

// embedVectors runs embed and returns its vectors, one per output line.
func embedVectors(t *testing.T, args []string, in string) [][]float64 {
	t.Helper()
	var out bytes.Buffer
	if err := embedCommand(context.Background(), args, strings.NewReader(in), &out); err != nil {
		t.Fatal(err)
	}
	var vecs [][]float64
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var rec struct{ Embedding []float64 }
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("output line %q: %v", line, err)
		}
		vecs = append(vecs, rec.Embedding)
	}
	return vecs
}

// `embedbench tokenize | embedbench embed` gives the vectors that embedding the texts gives.
func TestEmbedTakesTokenizeOutput(t *testing.T) {
	args := tinyEmbedArgs(t)
	texts := "{\"text\": \"Hello world\"}\n{\"text\": \"The quick brown fox jumps over the lazy dog.\"}\n"
	var ids bytes.Buffer
	if err := tokenizeCommand(context.Background(), []string{"--model", args[1], "--max-length", "128"}, strings.NewReader(texts), &ids); err != nil {
		t.Fatal(err)
	}
	fromTexts, fromIDs := embedVectors(t, args, texts), embedVectors(t, args, ids.String())
	if len(fromTexts) != 2 || len(fromIDs) != 2 {
		t.Fatalf("%d and %d vectors for 2 lines", len(fromTexts), len(fromIDs))
	}
	for i := range fromTexts {
		for j := range fromTexts[i] {
			if math.Abs(fromTexts[i][j]-fromIDs[i][j]) > 1e-6 {
				t.Fatalf("line %d, value %d: %g from the text, %g from its ids", i+1, j, fromTexts[i][j], fromIDs[i][j])
			}
		}
	}
}

// A model folder without tokenizer.json (HF's tiny test fixture) embeds ids, and its vectors
// are HF transformers' vectors for them.
func TestEmbedIDsMatchHFWithoutTokenizer(t *testing.T) {
	dir := filepath.Join("..", "..", "internal", "modernbert", "testdata", "tiny4x")
	data, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Sequences []struct {
			IDs  []int32
			Mean []float64
		}
	}
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	var in strings.Builder
	for _, s := range ref.Sequences {
		line, _ := json.Marshal(map[string][]int32{"ids": s.IDs})
		in.Write(append(line, '\n'))
	}
	got := embedVectors(t, []string{"--model", dir, "--device", "cpu"}, in.String())
	if len(got) != len(ref.Sequences) {
		t.Fatalf("%d vectors for %d lines", len(got), len(ref.Sequences))
	}
	for i, s := range ref.Sequences {
		var dot, nw, ng float64
		for j, w := range s.Mean {
			dot, nw, ng = dot+w*got[i][j], nw+w*w, ng+got[i][j]*got[i][j]
		}
		if c := dot / math.Sqrt(nw*ng); c < 0.99999 {
			t.Errorf("sequence %d (%d ids): cosine %.7f with HF's vector, want >= 0.99999", i, len(s.IDs), c)
		}
	}

	var out bytes.Buffer
	err = embedCommand(context.Background(), []string{"--model", dir, "--device", "cpu"}, strings.NewReader("{\"ids\": [1, 5, 2]}\n{\"text\": \"needs a tokenizer\"}\n"), &out)
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "--tokenizer") {
		t.Fatalf("error %v, want one naming line 2 and --tokenizer", err)
	}
	if n := strings.Count(out.String(), "\n"); n != 1 {
		t.Fatalf("%d vectors written before the text line, want 1", n)
	}
}

func TestEmbedRefusesBadIDs(t *testing.T) {
	args := tinyEmbedArgs(t) // --max-length 128, vocabulary 50,368
	for _, tc := range []struct{ line, want string }{
		{`{"ids": []}`, "empty"},
		{`{"ids": [1, 50368, 2]}`, "outside the vocabulary"},
		{`{"ids": [1, -4, 2]}`, "outside the vocabulary"},
		{`{"ids": [1, 2.5]}`, "want {\"text\""},
		{`{"ids": [1, 2], "text": "both"}`, "both"},
		{`{"ids": [` + strings.Repeat("7, ", 128) + `2]}`, "129 tokens, more than the maximum 128"},
	} {
		var out bytes.Buffer
		in := "{\"ids\": [1, 7, 2]}\n" + tc.line + "\n"
		err := embedCommand(context.Background(), args, strings.NewReader(in), &out)
		if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming line 2 and %q", tc.line, err, tc.want)
		}
		if n := strings.Count(out.String(), "\n"); n != 1 {
			t.Errorf("%s: %d vectors written before the bad line, want 1", tc.line, n)
		}
	}
}

func TestEmbedTokenizerFlag(t *testing.T) {
	args := tinyEmbedArgs(t)
	withFlag := append(slices.Clone(args), "--tokenizer", args[1])
	a, b := embedVectors(t, args, "{\"text\": \"same tokenizer\"}\n"), embedVectors(t, withFlag, "{\"text\": \"same tokenizer\"}\n")
	if !slices.Equal(a[0], b[0]) {
		t.Fatal("--tokenizer naming the model's own folder changed the vector")
	}
	bad := append(slices.Clone(args), "--tokenizer", t.TempDir())
	if err := embedCommand(context.Background(), bad, strings.NewReader(""), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--tokenizer") {
		t.Fatalf("error %v, want a --tokenizer error for a folder without tokenizer.json", err)
	}
}

// A vector with a non-finite value (a model whose activations overflowed) is refused with an
// error naming its line, after the vectors of the lines before it.
func TestEmbedRefusesNonFiniteVectors(t *testing.T) {
	cfg := modernbert.DefaultConfig().Scaled(2, 64, 4, 128)
	w := modernbert.RandomWeights(cfg, 1)
	const bad = 7 // this token's embedding overflows
	emb := w.Tensors["embeddings.tok_embeddings.weight"]
	for i := range cfg.HiddenSize {
		emb.Data[bad*cfg.HiddenSize+i] = float32(math.Inf(1))
	}
	m, err := modernbert.New(t.Context(), cfg, w, modernbert.Options{Backend: "simplego", MaxSequenceLength: 64})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	in := "{\"ids\": [1, 5, 2]}\n{\"ids\": [1, 5, 2]}\n{\"ids\": [1, 7, 2]}\n{\"ids\": [1, 6, 2]}\n"
	var out bytes.Buffer
	err = embedLines(t.Context(), m, engine.Config{MaxSequenceLength: 64}, "", 1, strings.NewReader(in), &out)
	if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "non-finite") {
		t.Fatalf("error %v, want one naming line 3 and a non-finite value", err)
	}
	if n := strings.Count(out.String(), "\n"); n != 2 {
		t.Fatalf("%d vectors written before the bad line, want 2", n)
	}
}
