package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embedbench/embedbench/internal/server"
)

// The sentence-transformers fixtures: tiny random ModernBERTs saved by sentence-transformers
// 6.0.1 in both layouts, with its encode() as reference (scripts/gpu/make_st_fixtures.py).
const stFixtureRoot = "../../internal/stconfig/testdata"

type stReference struct {
	Texts             []string          `json:"texts"`
	MaxSeqLength      int               `json:"max_seq_length"`
	Dim               int               `json:"dim"`
	Prompts           map[string]string `json:"prompts"`
	DefaultPromptName *string           `json:"default_prompt_name"`
	Spec              struct {
		Pooling   string `json:"pooling"`
		Normalize bool   `json:"normalize"`
	} `json:"spec"`
	Current []stCase `json:"current"`
	Classic []stCase `json:"classic"`
}

type stCase struct {
	PromptName *string     `json:"prompt_name"`
	Tokens     []int       `json:"tokens"`
	Alone      [][]float64 `json:"alone"`
	Batched    [][]float64 `json:"batched"`
}

func (r *stReference) cases(layout string) []stCase {
	if layout == "classic" {
		return r.Classic
	}
	return r.Current
}

func stFixtures(t *testing.T) map[string]stReference {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(stFixtureRoot, "*", "reference.json"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no sentence-transformers fixtures under %s: %v", stFixtureRoot, err)
	}
	out := map[string]stReference{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var ref stReference
		if err := json.Unmarshal(data, &ref); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		out[filepath.Base(filepath.Dir(p))] = ref
	}
	return out
}

func cosine64(a, b []float64) float64 {
	if len(a) != len(b) || len(a) == 0 {
		return math.NaN()
	}
	var dot, na, nb float64
	for i := range a {
		dot, na, nb = dot+a[i]*b[i], na+a[i]*a[i], nb+b[i]*b[i]
	}
	return dot / math.Sqrt(na*nb)
}

// relErr is |a-b| / |b|.
func relErr(a, b []float64) float64 {
	var d, n float64
	for i := range a {
		d += (a[i] - b[i]) * (a[i] - b[i])
		n += b[i] * b[i]
	}
	return math.Sqrt(d / n)
}

// stServer serves model dir as `embedbench serve` does (its flags, its model loading, the real
// HTTP handler, the CPU model).
func stServer(t *testing.T, dir, engine string, extra func(*serveFlags)) (*httptest.Server, error) {
	t.Helper()
	f := serveFlags{engine: engine, model: dir, weights: "auto", modelSize: "base", device: "cpu", dtype: "auto", maxConcurrent: 16,
		maxClientBatch: 64, batchSize: 32, maxBodyBytes: 1 << 20}
	if extra != nil {
		extra(&f)
	}
	srv, err := server.New(server.Config{EngineName: engine, ModelID: filepath.Base(dir), MaxConcurrentRequests: f.maxConcurrent,
		MaxClientBatchSize: f.maxClientBatch, MaxBodyBytes: f.maxBodyBytes})
	if err != nil {
		t.Fatal(err)
	}
	loaded, err := f.load(context.Background(), "simplego", nil, srv)
	if err != nil {
		return nil, err
	}
	t.Cleanup(loaded.Close)
	srv.SetReady(loaded.Backend)
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	return hs, nil
}

func postJSON(t *testing.T, url string, body any) (int, []byte) {
	t.Helper()
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url, "application/json", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out
}

type embedResp struct {
	Embeddings [][]float64 `json:"embeddings"`
}

type openAIResp struct {
	Data []struct {
		Embedding []float64 `json:"embedding"`
	} `json:"data"`
	Usage struct {
		PromptTokens int `json:"prompt_tokens"`
		TotalTokens  int `json:"total_tokens"`
	} `json:"usage"`
}

func embedRequest(texts []string, promptName *string, normalize bool) map[string]any {
	body := map[string]any{"texts": texts, "normalize": normalize}
	if promptName != nil {
		body["prompt_name"] = *promptName
	}
	return body
}

// Every fixture, in both layouts and through both engines, is served as sentence-transformers'
// encode() computes it: each text alone and all in one request, with no prompt_name (the
// default prompt applies) and with each prompt, on /embed and /v1/embeddings. With
// "normalize": false /embed returns encode()'s vectors themselves, norms included; the usage
// counts the prompt's tokens.
func TestServeMatchesSentenceTransformers(t *testing.T) {
	worst := 1.0
	for name, ref := range stFixtures(t) {
		for _, layout := range []string{"current", "classic"} {
			for _, engine := range []string{engineContinuous, engineSequential} {
				t.Run(name+"/"+layout+"/"+engine, func(t *testing.T) {
					hs, err := stServer(t, filepath.Join(stFixtureRoot, name, layout), engine, nil)
					if err != nil {
						t.Fatal(err)
					}
					for _, c := range ref.cases(layout) {
						label := "prompt " + derefName(c.PromptName)
						check := func(how string, got [][]float64, want [][]float64, exact bool) {
							t.Helper()
							if len(got) != len(want) {
								t.Fatalf("%s %s: %d vectors for %d texts", label, how, len(got), len(want))
							}
							for i := range got {
								cos := cosine64(got[i], want[i])
								worst = min(worst, cos)
								if !(cos >= 0.9999) {
									t.Errorf("%s %s, text %d: cosine %.6f with sentence-transformers", label, how, i, cos)
								}
								if exact && !(relErr(got[i], want[i]) < 1e-3) {
									t.Errorf("%s %s, text %d: relative error %.3g against sentence-transformers' own vector", label, how, i, relErr(got[i], want[i]))
								}
							}
						}
						code, body := postJSON(t, hs.URL+"/embed", embedRequest(ref.Texts, c.PromptName, false))
						if code != http.StatusOK {
							t.Fatalf("%s: /embed answered %d: %s", label, code, body)
						}
						var batched embedResp
						if err := json.Unmarshal(body, &batched); err != nil {
							t.Fatal(err)
						}
						check("batched", batched.Embeddings, c.Batched, true)
						var alone [][]float64
						for _, text := range ref.Texts {
							code, body := postJSON(t, hs.URL+"/embed", embedRequest([]string{text}, c.PromptName, false))
							var r embedResp
							if code != http.StatusOK || json.Unmarshal(body, &r) != nil || len(r.Embeddings) != 1 {
								t.Fatalf("%s: /embed of one text answered %d: %s", label, code, body)
							}
							alone = append(alone, r.Embeddings[0])
						}
						check("alone", alone, c.Alone, true)

						req := map[string]any{"input": ref.Texts}
						if c.PromptName != nil {
							req["prompt_name"] = *c.PromptName
						}
						code, body = postJSON(t, hs.URL+"/v1/embeddings", req)
						var oa openAIResp
						if code != http.StatusOK || json.Unmarshal(body, &oa) != nil {
							t.Fatalf("%s: /v1/embeddings answered %d: %s", label, code, body)
						}
						var vecs [][]float64
						for _, d := range oa.Data {
							vecs = append(vecs, d.Embedding)
						}
						check("on /v1/embeddings", vecs, c.Batched, false)
						tokens := 0
						for _, n := range c.Tokens {
							tokens += n
						}
						if oa.Usage.PromptTokens != tokens || oa.Usage.TotalTokens != tokens {
							t.Errorf("%s: usage %+v, want %d tokens (sentence-transformers' count, prompt included)", label, oa.Usage, tokens)
						}
					}
				})
			}
		}
	}
	t.Logf("worst cosine with sentence-transformers through serve: %.7f", worst)
}

func derefName(s *string) string {
	if s == nil {
		return "(none: the default)"
	}
	return *s
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

type healthInfo struct {
	Pooling           string            `json:"pooling"`
	PoolingSource     string            `json:"pooling_source"`
	Normalize         *bool             `json:"normalize"`
	MaxSequenceLength int               `json:"max_sequence_length"`
	EmbeddingDim      int               `json:"embedding_dim"`
	Prompts           map[string]string `json:"prompts"`
	DefaultPromptName string            `json:"default_prompt_name"`
	STLayout          string            `json:"sentence_transformers"`
}

// /health and /v1/models say what the model's files decided; --pooling overrides the
// pooling and /health says so.
func TestServeHealthShowsTheModelsPipeline(t *testing.T) {
	refs := stFixtures(t)
	ref := refs["mean_prompts"]
	hs, err := stServer(t, filepath.Join(stFixtureRoot, "mean_prompts", "classic"), engineContinuous, nil)
	if err != nil {
		t.Fatal(err)
	}
	var h healthInfo
	getJSON(t, hs.URL+"/health", &h)
	if h.Pooling != "mean" || h.PoolingSource != "model" || h.Normalize == nil || *h.Normalize || h.MaxSequenceLength != ref.MaxSeqLength ||
		h.DefaultPromptName != "query" || h.Prompts["document"] != "search_document: " || h.STLayout != "classic" || h.EmbeddingDim != ref.Dim {
		t.Errorf("/health %+v does not describe the model (mean, not normalised, max %d, prompts, default query, classic)", h, ref.MaxSeqLength)
	}
	var models struct {
		Data []healthInfo `json:"data"`
	}
	getJSON(t, hs.URL+"/v1/models", &models)
	if len(models.Data) != 1 || models.Data[0].Pooling != "mean" || models.Data[0].MaxSequenceLength != ref.MaxSeqLength ||
		models.Data[0].DefaultPromptName != "query" || models.Data[0].Normalize == nil || *models.Data[0].Normalize {
		t.Errorf("/v1/models %+v does not describe the model", models.Data)
	}

	clsRef := refs["cls_normalize"]
	over, err := stServer(t, filepath.Join(stFixtureRoot, "cls_normalize", "current"), engineContinuous, func(f *serveFlags) { f.pooling = "mean" })
	if err != nil {
		t.Fatal(err)
	}
	getJSON(t, over.URL+"/health", &h)
	if h.Pooling != "mean" || h.PoolingSource != "flag" || h.Normalize == nil || !*h.Normalize || h.MaxSequenceLength != clsRef.MaxSeqLength {
		t.Errorf("/health %+v: want mean pooling from the flag, normalised, max %d", h, clsRef.MaxSeqLength)
	}
	code, body := postJSON(t, over.URL+"/embed", embedRequest(clsRef.Texts[:1], nil, true))
	var r embedResp
	if code != http.StatusOK || json.Unmarshal(body, &r) != nil {
		t.Fatalf("/embed: %d %s", code, body)
	}
	if cos := cosine64(r.Embeddings[0], clsRef.Current[0].Batched[0]); cos > 0.999 {
		t.Errorf("mean pooling by --pooling gave the CLS model's vector (cosine %.5f): the flag was ignored", cos)
	}
}

// An unknown prompt_name is a 422 that lists the model's prompts, on both endpoints, and a
// prompt counts in the length limit.
func TestServePromptErrorsAndLimits(t *testing.T) {
	ref := stFixtures(t)["mean_prompts"]
	hs, err := stServer(t, filepath.Join(stFixtureRoot, "mean_prompts", "current"), engineSequential, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path string
		body map[string]any
	}{
		{"/embed", map[string]any{"texts": []string{"hi"}, "prompt_name": "passage"}},
		{"/v1/embeddings", map[string]any{"input": "hi", "prompt_name": "passage"}},
	} {
		code, body := postJSON(t, hs.URL+c.path, c.body)
		if code != http.StatusUnprocessableEntity || !strings.Contains(string(body), `passage`) || !strings.Contains(string(body), "document, query") ||
			!strings.Contains(string(body), `"param":"prompt_name"`) {
			t.Errorf("%s with an unknown prompt: %d %s; want 422 naming it and listing document, query", c.path, code, body)
		}
	}
	code, body := postJSON(t, hs.URL+"/v1/embeddings", map[string]any{"input": [][]int{{50281, 50282}}, "prompt_name": "query"})
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(body), "not to token ids") {
		t.Errorf("prompt_name with token ids: %d %s; want a 422 saying prompts apply to texts", code, body)
	}
	code, body = postJSON(t, hs.URL+"/embed", map[string]any{"texts": []string{"hi"}, "prompt_name": 3})
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(body), "prompt_name") {
		t.Errorf("a numeric prompt_name: %d %s", code, body)
	}
	// "hello world" is 4 tokens, 8 with the query prompt: 8 is what the usage says.
	code, body = postJSON(t, hs.URL+"/v1/embeddings", map[string]any{"input": ref.Texts[0], "prompt_name": "query"})
	var oa openAIResp
	if code != http.StatusOK || json.Unmarshal(body, &oa) != nil || oa.Usage.PromptTokens != ref.Current[0].Tokens[0] {
		t.Errorf("usage of one text with its prompt: %d %s; want %d tokens", code, body, ref.Current[0].Tokens[0])
	}
	// The model's limit is 16 tokens: this text has 16 by itself, 20 behind its prompt.
	text := ref.Texts[3]
	code, body = postJSON(t, hs.URL+"/embed", map[string]any{"texts": []string{text}, "truncate": false, "prompt_name": "query"})
	if code != http.StatusUnprocessableEntity || !strings.Contains(string(body), fmt.Sprintf("20 tokens, more than the limit of %d", ref.MaxSeqLength)) {
		t.Errorf("a text over the limit with its prompt, truncate false: %d %s", code, body)
	}
	long := ref.Texts[len(ref.Texts)-1]
	code, body = postJSON(t, hs.URL+"/v1/embeddings", map[string]any{"input": long})
	if code != http.StatusOK || json.Unmarshal(body, &oa) != nil || oa.Usage.PromptTokens != ref.MaxSeqLength {
		t.Errorf("a long text is cut at the model's %d tokens, prompt included: %d %s", ref.MaxSeqLength, code, body)
	}
}

// copyFixture copies a fixture folder (links followed) to be altered.
func copyFixture(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.Walk(src, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if info.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func rewrite(t *testing.T, path, old, replacement string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(old)) {
		t.Fatalf("%s does not hold %q", path, old)
	}
	if err := os.WriteFile(path, bytes.Replace(data, []byte(old), []byte(replacement), 1), 0o644); err != nil {
		t.Fatal(err)
	}
}

// A module serve cannot apply stops start-up with its name: an unknown module type, and a
// Dense layer whose activation it does not have; embed refuses the same.
func TestServeRefusesModulesItCannotApply(t *testing.T) {
	unknown := copyFixture(t, filepath.Join(stFixtureRoot, "cls_normalize", "classic"))
	rewrite(t, filepath.Join(unknown, "modules.json"), "sentence_transformers.models.Normalize", "custom_code.modules.Whitening")
	dense := copyFixture(t, filepath.Join(stFixtureRoot, "max_dense", "current"))
	rewrite(t, filepath.Join(dense, "2_Dense", "config.json"), "torch.nn.modules.activation.Tanh", "torch.nn.modules.activation.Softplus")
	for _, c := range []struct {
		dir  string
		want []string
	}{
		{unknown, []string{"custom_code.modules.Whitening", "2_Normalize"}},
		{dense, []string{"2_Dense", "Softplus"}},
	} {
		_, err := stServer(t, c.dir, engineContinuous, nil)
		if err == nil {
			t.Fatalf("%s: served", c.dir)
		}
		eerr := embedCommand(context.Background(), []string{"--model", c.dir, "--device", "cpu"}, strings.NewReader(""), io.Discard)
		for _, e := range []error{err, eerr} {
			for _, w := range c.want {
				if e == nil || !strings.Contains(e.Error(), w) {
					t.Errorf("error %v does not name %q", e, w)
				}
			}
		}
	}
}

// embed writes what encode() writes, for every fixture, layout and prompt, one text per model
// call and all in one; --prompt-name takes the prompts and refuses an unknown one.
func TestEmbedMatchesSentenceTransformers(t *testing.T) {
	worst := 1.0
	for name, ref := range stFixtures(t) {
		var in strings.Builder
		for _, text := range ref.Texts {
			line, _ := json.Marshal(map[string]string{"text": text})
			in.Write(append(line, '\n'))
		}
		for _, layout := range []string{"current", "classic"} {
			dir := filepath.Join(stFixtureRoot, name, layout)
			for _, c := range ref.cases(layout) {
				for _, batch := range []string{"1", "256"} {
					args := []string{"--model", dir, "--device", "cpu", "--batch-size", batch}
					if c.PromptName != nil {
						args = append(args, "--prompt-name", *c.PromptName)
					}
					got := embedVectors(t, args, in.String())
					want := c.Batched
					if batch == "1" {
						want = c.Alone
					}
					if len(got) != len(want) {
						t.Fatalf("%s/%s: %d vectors for %d texts", name, layout, len(got), len(want))
					}
					for i := range got {
						cos := cosine64(got[i], want[i])
						worst = min(worst, cos)
						if !(cos >= 0.9999) || !(relErr(got[i], want[i]) < 1e-3) {
							t.Errorf("%s/%s prompt %s batch %s, text %d: cosine %.6f, relative error %.3g with sentence-transformers",
								name, layout, derefName(c.PromptName), batch, i, cos, relErr(got[i], want[i]))
						}
					}
				}
			}
		}
	}
	t.Logf("worst cosine with sentence-transformers through embed: %.7f", worst)
	err := embedCommand(context.Background(), []string{"--model", filepath.Join(stFixtureRoot, "mean_prompts", "current"), "--device", "cpu", "--prompt-name", "passage"},
		strings.NewReader(`{"text": "hi"}`+"\n"), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "document, query") {
		t.Errorf("an unknown --prompt-name: %v, want an error listing document, query", err)
	}
}
