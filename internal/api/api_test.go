package api

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func randomVector(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64() * 0.05)
	}
	v[0] = 1e-9 // a small exponent
	if n > 1 {
		v[1] = -3.5e7 // and a large one
	}
	return v
}

func TestAppendFloatsRoundTripsThroughEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	vectors := [][]float32{randomVector(rng, 768), randomVector(rng, 5), {}}
	out := AppendEmbedResponse(nil, vectors, `model "x"`, 768)
	var resp EmbedResponse
	if err := json.Unmarshal(out, &resp); err != nil {
		t.Fatalf("invalid JSON: %v\n%s", err, out[:200])
	}
	if resp.Model != `model "x"` || resp.NumEmbeddings != 3 || resp.EmbeddingDim != 768 {
		t.Fatalf("fields: %+v", resp)
	}
	for i, v := range vectors {
		for j := range v {
			if resp.Embeddings[i][j] != v[j] {
				t.Fatalf("vector %d[%d]: %v came back as %v", i, j, v[j], resp.Embeddings[i][j])
			}
		}
	}
}

func TestOpenAIResponseBase64IsLittleEndianFloat32(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	// 768 spans several chunks; 5 and 193 end mid-chunk and need padding.
	for _, n := range []int{768, 5, 193, 1} {
		v := randomVector(rng, n)
		out := AppendOpenAIEmbeddingResponse(nil, [][]float32{v}, "m", EncodingBase64, Usage{PromptTokens: 7, TotalTokens: 7})
		var resp struct {
			Object string `json:"object"`
			Data   []struct {
				Object    string `json:"object"`
				Index     int    `json:"index"`
				Embedding string `json:"embedding"`
			} `json:"data"`
			Usage Usage `json:"usage"`
		}
		if err := json.Unmarshal(out, &resp); err != nil {
			t.Fatalf("invalid JSON: %v", err)
		}
		raw, err := base64.StdEncoding.DecodeString(resp.Data[0].Embedding)
		if err != nil || len(raw) != 4*n {
			t.Fatalf("n=%d: %v, %d bytes", n, err, len(raw))
		}
		for j := range v {
			if got := math.Float32frombits(binary.LittleEndian.Uint32(raw[4*j:])); got != v[j] {
				t.Fatalf("n=%d [%d]: %v came back as %v", n, j, v[j], got)
			}
		}
		if resp.Object != "list" || resp.Data[0].Object != "embedding" || resp.Usage.PromptTokens != 7 {
			t.Fatalf("envelope: %s", out[:60])
		}
	}
}

func TestDecodeEmbedRequest(t *testing.T) {
	lim := Limits{MaxInputs: 3}
	req, err := DecodeEmbedRequest([]byte(`{"texts": ["a", "", "caf\u00e9"], "extra": 1}`), lim)
	if err != nil || len(req.Texts) != 3 || !req.Normalize || !req.Truncate {
		t.Fatalf("got %+v, %v", req, err)
	}
	req, err = DecodeEmbedRequest([]byte("{\"texts\": [\"\xff\"], \"normalize\": false, \"truncate\": false}"), lim)
	if err != nil || req.Texts[0] != "\uFFFD" || req.Normalize || req.Truncate {
		t.Fatalf("got %+v, %v", req, err)
	}
	for body, status := range map[string]int{
		`{`: 400, ` `: 400, `[1]`: 422, `7`: 422, `{"texts": null}`: 422, `{"texts": [true]}`: 422,
		`{"texts": ["a","b","c","d"]}`: 413, `{"texts": ["a"], "truncate": 1}`: 422,
	} {
		if _, err := DecodeEmbedRequest([]byte(body), lim); err == nil || err.Status != status {
			t.Errorf("%s: got %v, want status %d", body, err, status)
		}
	}
}

func TestDecodeOpenAIInputForms(t *testing.T) {
	lim := Limits{MaxInputs: 4, VocabSize: 100, Dim: 64, MaxSequenceLength: 8}
	cases := map[string]func(OpenAIEmbeddingRequest) bool{
		`{"input": "x"}`:           func(r OpenAIEmbeddingRequest) bool { return len(r.Texts) == 1 && r.EncodingFormat == EncodingFloat },
		`{"input": ["x", "y"]}`:    func(r OpenAIEmbeddingRequest) bool { return len(r.Texts) == 2 },
		`{"input": [1, 2, 3]}`:     func(r OpenAIEmbeddingRequest) bool { return len(r.TokenIDs) == 1 && len(r.TokenIDs[0]) == 3 },
		`{"input": [[1], [2, 3]]}`: func(r OpenAIEmbeddingRequest) bool { return len(r.TokenIDs) == 2 && r.NumInputs() == 2 },
		`{"input": "x", "dimensions": 64, "encoding_format": "base64"}`: func(r OpenAIEmbeddingRequest) bool {
			return r.Dimensions == 64 && r.EncodingFormat == EncodingBase64
		},
	}
	for body, ok := range cases {
		req, err := DecodeOpenAIEmbeddingRequest([]byte(body), lim)
		if err != nil || !ok(req) {
			t.Errorf("%s: got %+v, %v", body, req, err)
		}
	}
	for _, body := range []string{
		`{"input": [1.5]}`, `{"input": [-1]}`, `{"input": [100]}`, `{"input": [[]]}`, `{"input": [1,2,3,4,5,6,7,8,9]}`,
		`{"input": ["a", ["b"]]}`, `{"input": {}}`, `{"input": "x", "dimensions": 1.5}`, `{"input": "x", "model": 3}`,
		// null is no token id (encoding/json would read it as 0, a real one)
		`{"input": [null]}`, `{"input": [1, null]}`, `{"input": [[1, null, 3]]}`, `{"input": [null, null]}`, `{"input": [1e2]}`,
	} {
		if _, err := DecodeOpenAIEmbeddingRequest([]byte(body), lim); err == nil || err.Status != 422 {
			t.Errorf("%s: got %v, want 422", body, err)
		}
	}
}

// A token list that is not all integers names the first element that is not.
func TestTokenIDErrorsNameTheElement(t *testing.T) {
	lim := Limits{VocabSize: 100}
	for body, want := range map[string]string{
		`{"input": [1, null]}`:     "input[1] must be an integer token id, got null",
		`{"input": [[2], [1.5]]}`:  "input[1][0] must be an integer token id, got 1.5",
		`{"input": [[2, 3, "a"]]}`: "input[0][2] must be an integer token id, got a string",
	} {
		_, err := DecodeOpenAIEmbeddingRequest([]byte(body), lim)
		if err == nil || err.Status != 422 || !strings.Contains(err.Message, want) {
			t.Errorf("%s: got %v, want a 422 saying %q", body, err, want)
		}
	}
}

func TestNormalize(t *testing.T) {
	v := []float32{3, 4}
	if !Normalize(v) || v[0] != 0.6 || v[1] != 0.8 {
		t.Errorf("got %v", v)
	}
	zero := []float32{0, 0}
	if !Normalize(zero) || zero[0] != 0 {
		t.Errorf("zero vector: %v", zero)
	}
	if Normalize([]float32{1, float32(math.NaN())}) || CheckFinite([]float32{float32(math.Inf(1))}) {
		t.Error("non-finite values accepted")
	}
	if !CheckFinite([]float32{3e38, 3e38}) {
		t.Error("large finite values refused")
	}
}

// The benchmarks encode 32 vectors of 768 floats (one client batch of ModernBERT-base) and
// report per-vector cost; MB/s is output bytes.
func benchmarkEncode(b *testing.B, encode func(dst []byte, vs [][]float32) []byte) {
	rng := rand.New(rand.NewPCG(5, 6))
	vectors := make([][]float32, 32)
	for i := range vectors {
		vectors[i] = randomVector(rng, 768)
		Normalize(vectors[i])
	}
	buf := encode(nil, vectors)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		buf = encode(buf[:0], vectors)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(vectors)), "ns/vector")
}

func BenchmarkEncodeJSON768(b *testing.B) {
	benchmarkEncode(b, func(dst []byte, vs [][]float32) []byte {
		return AppendOpenAIEmbeddingResponse(dst, vs, "answerdotai/ModernBERT-base", EncodingFloat, Usage{})
	})
}

func BenchmarkEncodeBase64768(b *testing.B) {
	benchmarkEncode(b, func(dst []byte, vs [][]float32) []byte {
		return AppendOpenAIEmbeddingResponse(dst, vs, "answerdotai/ModernBERT-base", EncodingBase64, Usage{})
	})
}

// BenchmarkEncodingJSONReflection is the baseline the hand-written encoder replaces.
func BenchmarkEncodingJSONReflection768(b *testing.B) {
	benchmarkEncode(b, func(dst []byte, vs [][]float32) []byte {
		out, err := json.Marshal(EmbedResponse{Embeddings: vs, Model: "m", NumEmbeddings: len(vs), EmbeddingDim: 768})
		if err != nil {
			b.Fatal(err)
		}
		return append(dst, out...)
	})
}

// Large responses are encoded on several cores; the bytes must be those of one core's
// encoding, vectors in order, whatever the split.
func TestLargeResponsesEncodeInOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 7, 11, 33, 64} {
		vectors := make([][]float32, n)
		for i := range vectors {
			vectors[i] = randomVector(rng, 768)
		}
		var want []byte
		want = append(want, `{"embeddings":[`...)
		for i, v := range vectors {
			if i > 0 {
				want = append(want, ',')
			}
			want = AppendFloats(want, v)
		}
		if got := AppendEmbedResponse(nil, vectors, "m", 768); string(got[:len(want)]) != string(want) {
			t.Fatalf("%d vectors: the parallel encoding differs from the sequential one", n)
		}
		out := AppendOpenAIEmbeddingResponse(nil, vectors, "m", EncodingFloat, Usage{})
		var resp struct {
			Data []struct {
				Index     int       `json:"index"`
				Embedding []float32 `json:"embedding"`
			} `json:"data"`
		}
		if err := json.Unmarshal(out, &resp); err != nil || len(resp.Data) != n {
			t.Fatalf("%d vectors: %v, %d items", n, err, len(resp.Data))
		}
		for i, d := range resp.Data {
			if d.Index != i || d.Embedding[5] != vectors[i][5] {
				t.Fatalf("%d vectors: item %d has index %d or another vector", n, i, d.Index)
			}
		}
	}
}

// The size hint holds a response of the longest floats, so a buffer sized by it never grows.
func TestResponseSizeHintHoldsTheLongestFloats(t *testing.T) {
	longest := float32(-1.00062405e-36) // nine digits, a sign and a two-digit negative exponent: 15 characters
	if n := len(strconv.FormatFloat(float64(longest), 'g', -1, 32)); n != maxFloatBytes-1 {
		t.Fatalf("%g formats to %d bytes, want %d", longest, n, maxFloatBytes-1)
	}
	for _, count := range []int{1, 32, 100} {
		vectors := make([][]float32, count)
		for i := range vectors {
			vectors[i] = slices.Repeat([]float32{longest}, 768)
		}
		for _, c := range []struct {
			name, format string
			n            int
		}{
			{"embed", EncodingFloat, len(AppendEmbedResponse(nil, vectors, "answerdotai/ModernBERT-base", 768))},
			{"openai", EncodingFloat, len(AppendOpenAIEmbeddingResponse(nil, vectors, "answerdotai/ModernBERT-base", EncodingFloat, Usage{PromptTokens: 1 << 20}))},
			{"openai base64", EncodingBase64, len(AppendOpenAIEmbeddingResponse(nil, vectors, "answerdotai/ModernBERT-base", EncodingBase64, Usage{PromptTokens: 1 << 20}))},
		} {
			// At most the hint, and not far below it: a base64 response is not sized as text.
			if hint := ResponseSizeHint(vectors, c.format); c.n > hint || c.n < hint/2 {
				t.Errorf("%d vectors, %s response: %d bytes, hint %d", count, c.name, c.n, hint)
			}
		}
	}
}
