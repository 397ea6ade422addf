package fairness

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// service is an HTTP embedding service for the tests whose vectors are a deterministic function
// of the text, with an optional perturbation, so the expected cosine is known exactly.
type service struct {
	health  map[string]any
	openAI  bool                           // serve /v1/embeddings instead of /embed
	perturb func(text string, v []float32) // applied to each vector before it is sent
	reverse bool                           // answer OpenAI data in reverse order
	status  int                            // non-zero: answer every embed request with it
	raw     string                         // non-empty: answer every embed request with it
	apiKey  string                         // non-empty: embed requests need it as a bearer token
}

func vectorOf(text string, dim int) []float32 {
	h := fnv.New64a()
	h.Write([]byte(text))
	seed := h.Sum64()
	v := make([]float32, dim)
	for i := range v {
		seed = seed*6364136223846793005 + 1442695040888963407
		v[i] = float32(int64(seed>>11)%2000-1000) / 1000
	}
	return v
}

func (s *service) start(t *testing.T) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		if s.health["status"] == "loading" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(s.health)
	})
	embed := func(texts []string) ([][]float32, bool) {
		if s.status != 0 {
			return nil, false
		}
		out := make([][]float32, len(texts))
		for i, text := range texts {
			out[i] = vectorOf(text, 16)
			if s.perturb != nil {
				s.perturb(text, out[i])
			}
		}
		return out, true
	}
	handler := func(w http.ResponseWriter, r *http.Request, texts []string, write func([][]float32)) {
		if s.apiKey != "" && r.Header.Get("Authorization") != "Bearer "+s.apiKey {
			http.Error(w, `{"error":{"message":"missing or wrong API key"}}`, http.StatusUnauthorized)
			return
		}
		if s.raw != "" {
			w.Write([]byte(s.raw))
			return
		}
		vecs, ok := embed(texts)
		if !ok {
			http.Error(w, `{"error":"boom"}`, s.status)
			return
		}
		write(vecs)
	}
	if s.openAI {
		mux.HandleFunc("POST /v1/embeddings", func(w http.ResponseWriter, r *http.Request) {
			var req struct {
				Input []string `json:"input"`
			}
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			handler(w, r, req.Input, func(vecs [][]float32) {
				type item struct {
					Index     int       `json:"index"`
					Embedding []float32 `json:"embedding"`
				}
				var data []item
				for i, v := range vecs {
					data = append(data, item{i, v})
				}
				if s.reverse {
					for i, j := 0, len(data)-1; i < j; i, j = i+1, j-1 {
						data[i], data[j] = data[j], data[i]
					}
				}
				json.NewEncoder(w).Encode(map[string]any{"data": data})
			})
		})
	} else {
		mux.HandleFunc("POST /embed", func(w http.ResponseWriter, r *http.Request) {
			var req struct {
				Texts []string `json:"texts"`
			}
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			handler(w, r, req.Texts, func(vecs [][]float32) {
				json.NewEncoder(w).Encode(map[string]any{"embeddings": vecs})
			})
		})
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv.URL
}

func healthy(extra map[string]any) map[string]any {
	h := map[string]any{"status": "healthy", "backend": "sequential", "model": "answerdotai/ModernBERT-base", "gpu_available": false,
		"pooling": "mean", "weights": "random (seed 0)", "dtype": "float32"}
	for k, v := range extra {
		h[k] = v
	}
	return h
}

var passages = func() []string {
	var out []string
	for i := range 70 { // more than two batches of 32, with a ragged last one
		out = append(out, strings.Repeat("passage ", i%7+1)+string(rune('a'+i%26))+string(rune('A'+i/26)))
	}
	return out
}()

func TestIdenticalServicesAgree(t *testing.T) {
	a := (&service{health: healthy(nil)}).start(t)
	b := (&service{health: healthy(map[string]any{"backend": "continuous"}), openAI: true, reverse: true}).start(t)
	res, err := Check(context.Background(), a, b, passages, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() {
		t.Fatalf("warnings for identical services: %v", res.Warnings)
	}
	if res.A.API != "embed" || res.B.API != "openai" {
		t.Errorf("detected APIs %q, %q; want embed, openai", res.A.API, res.B.API)
	}
	if math.Abs(res.MinCosine-1) > 1e-9 || math.Abs(res.MeanCosine-1) > 1e-9 {
		t.Errorf("cosine min %v mean %v; want 1", res.MinCosine, res.MeanCosine)
	}
	if res.Passages != len(passages) || res.Dim != 16 {
		t.Errorf("passages %d dim %d; want %d, 16", res.Passages, res.Dim, len(passages))
	}
	if res.Threshold != ThresholdSameFullPrecision {
		t.Errorf("threshold %v for fp32 vs fp32; want %v", res.Threshold, ThresholdSameFullPrecision)
	}
}

// Services behind an API key are reached with Options.APIKey, and refuse the check without it.
func TestAPIKeyReachesBothServices(t *testing.T) {
	a := (&service{health: healthy(nil), apiKey: "k"}).start(t)
	b := (&service{health: healthy(nil), apiKey: "k", openAI: true}).start(t)
	if _, err := Check(context.Background(), a, b, passages, Options{API: "embed"}); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("no key: %v, want the 401", err)
	}
	res, err := Check(context.Background(), a, b, passages, Options{APIKey: "k"})
	if err != nil || !res.OK() {
		t.Fatalf("with the key: %v, %v", err, res.Warnings)
	}
}

func TestScaledVectorsAgree(t *testing.T) {
	// A service that does not L2-normalise gives the same directions: cosine is still 1.
	a := (&service{health: healthy(nil)}).start(t)
	b := (&service{health: healthy(nil), perturb: func(_ string, v []float32) {
		for i := range v {
			v[i] *= 3
		}
	}}).start(t)
	res, err := Check(context.Background(), a, b, passages, Options{API: "embed"})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() {
		t.Fatalf("warnings: %v", res.Warnings)
	}
}

func TestDifferentVectorsWarn(t *testing.T) {
	target := passages[40]
	a := (&service{health: healthy(nil)}).start(t)
	// One passage's vector is turned by a clearly visible angle; the others stay identical.
	b := (&service{health: healthy(map[string]any{"dtype": "bfloat16"}), perturb: func(text string, v []float32) {
		if text == target {
			v[0], v[1] = v[1], -v[0]
		}
	}}).start(t)
	res, err := Check(context.Background(), a, b, passages, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK() || len(res.Warnings) != 1 {
		t.Fatalf("a turned vector: OK %v, warnings %v", res.OK(), res.Warnings)
	}
	if res.WorstIndex != 40 || res.WorstText != target {
		t.Errorf("worst passage %d %q; want 40 %q", res.WorstIndex, res.WorstText, target)
	}
	if res.Threshold != ThresholdReducedPrecision {
		t.Errorf("threshold %v for fp32 vs bf16; want %v", res.Threshold, ThresholdReducedPrecision)
	}
	if res.MinCosine >= res.Threshold || res.MeanCosine <= res.MinCosine {
		t.Errorf("min %v mean %v threshold %v", res.MinCosine, res.MeanCosine, res.Threshold)
	}
	if !strings.Contains(res.Summary(), "WARNING") {
		t.Errorf("summary does not warn:\n%s", res.Summary())
	}
}

func TestDifferentSelfDescriptionsWarn(t *testing.T) {
	a := (&service{health: healthy(map[string]any{"normalize": true})}).start(t)
	b := (&service{health: healthy(map[string]any{"model": "BAAI/bge-base-en", "pooling": "cls", "weights": "/models/x", "normalize": false})}).start(t)
	res, err := Check(context.Background(), a, b, passages[:3], Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The vectors are identical: the descriptions are warned about, the verdict stands.
	if !res.OK() || !strings.Contains(res.Summary(), "WARNING") {
		t.Errorf("identical vectors, different descriptions: OK %v\n%s", res.OK(), res.Summary())
	}
	for _, want := range []string{"different models", "different pooling", "different weights", "different normalisation"} {
		found := false
		for _, w := range res.Warnings {
			found = found || strings.Contains(w, want)
		}
		if !found {
			t.Errorf("no warning about %s in %v", want, res.Warnings)
		}
	}
}

func TestDimensionMismatchWarns(t *testing.T) {
	a := (&service{health: healthy(nil)}).start(t)
	b := (&service{health: healthy(nil), raw: `{"embeddings":[[1,2,3]]}`}).start(t)
	res, err := Check(context.Background(), a, b, passages[:1], Options{})
	if err != nil {
		t.Fatal(err)
	}
	if res.OK() || len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0], "dimensions differ") {
		t.Errorf("warnings %v; want a dimension mismatch", res.Warnings)
	}
}

func TestBrokenServicesAreErrors(t *testing.T) {
	good := (&service{health: healthy(nil)}).start(t)
	cases := map[string]struct {
		svc  *service
		want string
	}{
		"loading":        {&service{health: healthy(map[string]any{"status": "loading"})}, "HTTP 503"},
		"server error":   {&service{health: healthy(nil), status: 500}, "HTTP 500"},
		"malformed JSON": {&service{health: healthy(nil), raw: `{"embeddings": [[1,`}, "malformed JSON"},
		"too few":        {&service{health: healthy(nil), raw: `{"embeddings": [[1,2]]}`}, "1 vectors for 3 texts"},
		"ragged":         {&service{health: healthy(nil), raw: `{"embeddings": [[1,2],[1],[3,4]]}`}, "vector 1 has 1 values"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			bad := tc.svc.start(t)
			_, err := Check(context.Background(), good, bad, passages[:3], Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v; want one containing %q", err, tc.want)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		url := srv.URL
		srv.Close()
		if _, err := Check(context.Background(), good, url, passages[:3], Options{}); err == nil {
			t.Fatal("no error for a closed port")
		}
	})
	t.Run("no embedding endpoint", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/health" {
				w.Write([]byte(`{"status":"healthy"}`))
				return
			}
			http.NotFound(w, r)
		}))
		defer srv.Close()
		_, err := Check(context.Background(), good, srv.URL, passages[:3], Options{})
		if err == nil || !strings.Contains(err.Error(), "neither /embed nor /v1/embeddings") {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("no passages", func(t *testing.T) {
		if _, err := Check(context.Background(), good, good, nil, Options{}); err == nil {
			t.Fatal("no error for no passages")
		}
	})
}

func TestCancelledContextStops(t *testing.T) {
	a := (&service{health: healthy(nil)}).start(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Check(ctx, a, a, passages, Options{}); err == nil {
		t.Fatal("no error with a cancelled context")
	}
}

// TestSilentHealthAndServedModel is a vLLM-like service: /health answers 200 with no body, and
// /v1/embeddings wants the model name /v1/models gives.
func TestSilentHealthAndServedModel(t *testing.T) {
	a := (&service{health: healthy(nil)}).start(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"object":"list","data":[{"id":"served-name","object":"model"}]}`))
	})
	mux.HandleFunc("POST /v1/embeddings", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Input []string `json:"input"`
			Model string   `json:"model"`
		}
		json.NewDecoder(r.Body).Decode(&req)
		if req.Model != "served-name" {
			http.Error(w, `{"error":"model not found"}`, http.StatusNotFound)
			return
		}
		type item struct {
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		}
		var data []item
		for i, text := range req.Input {
			data = append(data, item{i, vectorOf(text, 16)})
		}
		json.NewEncoder(w).Encode(map[string]any{"data": data})
	})
	vllm := httptest.NewServer(mux)
	defer vllm.Close()

	res, err := Check(context.Background(), a, vllm.URL, passages[:5], Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() || res.B.API != "openai" || len(res.Warnings) != 0 {
		t.Errorf("OK %v api %q warnings %v", res.OK(), res.B.API, res.Warnings)
	}
}
func TestTEIAPI(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /embed", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Inputs []string `json:"inputs"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Inputs) == 0 {
			http.Error(w, `{"error":"missing inputs"}`, http.StatusUnprocessableEntity)
			return
		}
		var out [][]float32
		for _, text := range req.Inputs {
			out = append(out, vectorOf(text, 16))
		}
		json.NewEncoder(w).Encode(out)
	})
	tei := httptest.NewServer(mux)
	defer tei.Close()
	res, err := Check(context.Background(), tei.URL, tei.URL, passages[:40], Options{API: "tei"})
	if err != nil || !res.OK() {
		t.Fatalf("%v %s", err, res.Summary())
	}
	if _, err := Check(context.Background(), tei.URL, tei.URL, passages[:1], Options{API: "grpc"}); err == nil {
		t.Error("no error for an unknown API")
	}
}
