package server_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/embedbench/embedbench/internal/engine"
	"github.com/embedbench/embedbench/internal/localdata"
	"github.com/embedbench/embedbench/internal/modernbert"
	"github.com/embedbench/embedbench/internal/server"
	"github.com/embedbench/embedbench/internal/tokenizer"
)

// These tests start the real server on a loopback port, with the real tokenizer and a tiny
// random ModernBERT on the pure-Go backend, and talk to it over HTTP only.

const (
	testMaxSeq    = 128
	testBatchToks = 512
	testDim       = 64
)

var (
	tokOnce sync.Once
	tok     *tokenizer.Tokenizer
	tokErr  error
)

func loadTokenizer(t testing.TB) *tokenizer.Tokenizer {
	t.Helper()
	tokOnce.Do(func() {
		dir, err := localdata.ModernBERTDir()
		if err != nil {
			tokErr = err
			return
		}
		tok, tokErr = tokenizer.LoadFile(filepath.Join(dir, "tokenizer.json"))
	})
	if errors.Is(tokErr, localdata.ErrNotFound) {
		t.Skipf("ModernBERT tokenizer not available: %v", tokErr)
	}
	if tokErr != nil {
		t.Fatal(tokErr)
	}
	return tok
}

type options struct {
	engine         string // "continuous" (default) or "sequential"
	replicas       int
	maxConcurrent  int
	maxClientBatch int
	maxBody        int64
	apiKey         string
	closedModel    bool // a replica whose device can no longer run anything
	onBatch        func(engine.BatchReport)
	bodyTimeout    time.Duration
	idleTimeout    time.Duration
	writeTimeout   time.Duration
	maxHeader      int
	maxConns       int
	perClient      int
	stepSlots      []int // the Backend's step sizes, in place of the model's
	maxConnAge     time.Duration
	logs           io.Writer // the server's log, as JSON at info (default: discarded)
	shutdown       time.Duration
}

type fixture struct {
	srv *server.Server
	url string
	eng engine.Engine
	// stepSlots are the model's compiled step sizes, as its Backend says.
	stepSlots []int
	stop      context.CancelFunc
	served    chan error
}

func newModel(t testing.TB, layout modernbert.Layout) *modernbert.Model {
	t.Helper()
	cfg := modernbert.DefaultConfig().Scaled(2, testDim, 4, 128)
	m, err := modernbert.New(context.Background(), cfg, modernbert.RandomWeights(cfg, 1), modernbert.Options{
		Backend: "simplego", MaxSequenceLength: testMaxSeq, MaxBatchTokens: testBatchToks, PaddedRows: 8,
		Layouts: []modernbert.Layout{layout},
	})
	if err != nil {
		t.Fatalf("building the tiny model: %v", err)
	}
	t.Cleanup(m.Close)
	return m
}

func start(t testing.TB, o options) *fixture {
	t.Helper()
	tk := loadTokenizer(t)
	if o.engine == "" {
		o.engine = "continuous"
	}
	if o.replicas == 0 {
		o.replicas = 1
	}
	if o.maxConcurrent == 0 {
		o.maxConcurrent = 64
	}
	if o.maxClientBatch == 0 {
		o.maxClientBatch = 256
	}
	if o.maxBody == 0 {
		o.maxBody = 1 << 20
	}
	if o.shutdown == 0 {
		o.shutdown = 30 * time.Second
	}
	srv, err := server.New(server.Config{
		EngineName: o.engine, ModelID: "tiny-modernbert", MaxConcurrentRequests: o.maxConcurrent,
		MaxClientBatchSize: o.maxClientBatch, MaxBodyBytes: o.maxBody, APIKey: o.apiKey,
		ShutdownTimeout: o.shutdown, Logger: logger(o.logs),
		BodyReadTimeout: o.bodyTimeout, IdleTimeout: o.idleTimeout, WriteTimeout: o.writeTimeout, MaxHeaderBytes: o.maxHeader,
		MaxConnections: o.maxConns, MaxConnectionsPerClient: o.perClient, MaxConnectionAge: o.maxConnAge,
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := engine.Config{Tokenizer: tk, MaxSequenceLength: testMaxSeq, MaxQueuedSequences: 1 << 14, OnBatch: func(b engine.BatchReport) {
		if o.onBatch != nil {
			o.onBatch(b)
		}
		srv.ObserveBatch(b)
	}}
	var eng engine.Engine
	var stepSlots []int
	if o.engine == "sequential" {
		m := newModel(t, modernbert.Padded)
		stepSlots = m.Info().StepSlots
		eng, err = engine.NewSequential(cfg, engine.ModelRunner(m, modernbert.Padded), 8)
	} else {
		runners := make([]engine.Runner, o.replicas)
		for i := range runners {
			m := newModel(t, modernbert.Packed)
			stepSlots = m.Info().StepSlots
			if o.closedModel {
				m.Close()
			}
			runners[i] = engine.ModelRunner(m, modernbert.Packed)
		}
		eng, err = engine.NewContinuous(cfg, runners, testBatchToks)
	}
	if err != nil {
		t.Fatal(err)
	}
	if o.stepSlots != nil {
		stepSlots = o.stepSlots
	}
	srv.SetReady(server.Backend{
		Engine: eng, Dim: testDim, VocabSize: tk.VocabSize(), MaxSequenceLength: testMaxSeq,
		Tokenize: func(text string, addSpecial, offsets bool, maxLength int) ([]int32, [][2]int, int) {
			enc := tk.Encode(text, tokenizer.EncodeOptions{AddSpecialTokens: addSpecial, MaxLength: maxLength})
			return enc.IDs, enc.Offsets, enc.TotalTokens
		},
		Info:      server.Info{Device: "cpu", DType: "float32", Pooling: "mean", Weights: "random (seed 1)", Replicas: o.replicas},
		StepSlots: stepSlots,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	f := &fixture{srv: srv, url: "http://" + ln.Addr().String(), eng: eng, stepSlots: stepSlots, stop: stop, served: make(chan error, 1)}
	go func() { f.served <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		f.stop()
		<-f.served
		eng.Close()
	})
	return f
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (f *fixture) do(t *testing.T, ctx context.Context, method, path string, body []byte, header ...string) (reply, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, f.url+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return reply{resp.StatusCode, resp.Header, data}, err
}

func (f *fixture) post(t *testing.T, path string, body any, header ...string) reply {
	t.Helper()
	var data []byte
	switch b := body.(type) {
	case string:
		data = []byte(b)
	case []byte:
		data = b
	default:
		var err error
		if data, err = json.Marshal(b); err != nil {
			t.Fatal(err)
		}
	}
	r, err := f.do(t, context.Background(), http.MethodPost, path, data, header...)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return r
}

func (f *fixture) health(t *testing.T) map[string]any {
	t.Helper()
	r, err := f.do(t, context.Background(), http.MethodGet, "/health", nil)
	if err != nil {
		t.Fatal(err)
	}
	var h map[string]any
	if err := json.Unmarshal(r.body, &h); err != nil {
		t.Fatalf("/health: %v: %s", err, r.body)
	}
	h["http_status"] = float64(r.status)
	return h
}

// errorMessage checks that r is a JSON error with the given status and returns its message.
func errorMessage(t *testing.T, what string, r reply, status int) string {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d; body %s", what, r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json", what, ct)
	}
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Message == "" || e.Detail != e.Error.Message {
		t.Fatalf("%s: not a JSON error with a message (%v): %s", what, err, r.body)
	}
	return e.Error.Message
}

type embedResponse struct {
	Embeddings    [][]float32 `json:"embeddings"`
	Model         string      `json:"model"`
	NumEmbeddings int         `json:"num_embeddings"`
	EmbeddingDim  int         `json:"embedding_dim"`
}

func (f *fixture) embed(t *testing.T, body any) (embedResponse, reply) {
	t.Helper()
	r := f.post(t, "/embed", body)
	if r.status != http.StatusOK {
		t.Fatalf("/embed: status %d: %s", r.status, r.body)
	}
	var resp embedResponse
	if err := json.Unmarshal(r.body, &resp); err != nil {
		t.Fatalf("/embed: %v", err)
	}
	return resp, r
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

func cosine(a, b []float32) float64 {
	var dot float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
	}
	return dot / (norm(a) * norm(b))
}

// passage is a text of about n tokens.
func passage(i, n int) string {
	words := make([]string, n)
	for j := range words {
		words[j] = fmt.Sprintf("w%d", (i*31+j*7)%97)
	}
	return strings.Join(words, " ")
}

func passages(count, words int) []string {
	out := make([]string, count)
	for i := range out {
		out[i] = passage(i, words)
	}
	return out
}

func TestBadInputIsAJSONClientError(t *testing.T) {
	f := start(t, options{maxClientBatch: 4, maxBody: 64 << 10})
	long := passage(0, 400)
	cases := []struct {
		name, path, body string
		status           int
		mention          string
	}{
		{"malformed JSON", "/embed", `{"texts": [`, 400, "malformed"},
		{"empty body", "/embed", ``, 400, "empty"},
		{"body is a list", "/embed", `["a"]`, 422, "object"},
		{"body is a string", "/embed", `"a"`, 422, "object"},
		{"body is null", "/embed", `null`, 422, "object"},
		{"texts missing", "/embed", `{"text": ["a"]}`, 422, "texts"},
		{"texts empty", "/embed", `{"texts": []}`, 422, "empty"},
		{"texts a string", "/embed", `{"texts": "a"}`, 422, "list"},
		{"number item", "/embed", `{"texts": ["a", 3]}`, 422, "texts[1]"},
		{"null item", "/embed", `{"texts": [null]}`, 422, "texts[0]"},
		{"object item", "/embed", `{"texts": [{"a": 1}]}`, 422, "texts[0]"},
		{"normalize not a bool", "/embed", `{"texts": ["a"], "normalize": "yes"}`, 422, "normalize"},
		{"too many texts", "/embed", `{"texts": ["a","b","c","d","e"]}`, 413, "too many"},
		{"over-long text, truncate false", "/embed", `{"texts": ["short", "` + long + `"], "truncate": false}`, 422, "text 1 has"},
		{"openai input missing", "/v1/embeddings", `{"model": "x"}`, 422, "input"},
		{"openai input empty", "/v1/embeddings", `{"input": []}`, 422, "empty"},
		{"openai input number", "/v1/embeddings", `{"input": 3}`, 422, "input"},
		{"openai mixed list", "/v1/embeddings", `{"input": ["a", 3]}`, 422, "input[1]"},
		{"openai token out of vocabulary", "/v1/embeddings", `{"input": [[1, 2], [999999]]}`, 422, "not a token id"},
		{"openai bad encoding", "/v1/embeddings", `{"input": "a", "encoding_format": "int8"}`, 422, "encoding_format"},
		{"openai dimensions zero", "/v1/embeddings", `{"input": "a", "dimensions": 0}`, 422, "dimensions"},
		{"openai dimensions too many", "/v1/embeddings", `{"input": "a", "dimensions": 65}`, 422, "exceeds"},
		{"openai over-long text, truncate false", "/v1/embeddings", `{"input": ["short", "` + long + `"], "truncate": false}`, 422, "text 1 has"},
		{"openai truncate not a bool", "/v1/embeddings", `{"input": "a", "truncate": "no"}`, 422, "truncate"},
		{"openai null token id", "/v1/embeddings", `{"input": [[5, null]]}`, 422, "input[0][1]"},
		{"tokenize texts missing", "/tokenize", `{}`, 422, "texts"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			msg := errorMessage(t, c.name, f.post(t, c.path, c.body), c.status)
			if !strings.Contains(msg, c.mention) {
				t.Errorf("message %q does not mention %q", msg, c.mention)
			}
		})
	}

	t.Run("body over the limit", func(t *testing.T) {
		big := `{"texts": ["` + strings.Repeat("a ", 40<<10) + `"]}`
		errorMessage(t, "big body", f.post(t, "/embed", big), 413)
	})
	t.Run("wrong method", func(t *testing.T) {
		r, err := f.do(t, context.Background(), http.MethodGet, "/embed", nil)
		if err != nil {
			t.Fatal(err)
		}
		errorMessage(t, "GET /embed", r, 405)
		if r.header.Get("Allow") != "POST" {
			t.Errorf("Allow %q, want POST", r.header.Get("Allow"))
		}
		r, err = f.do(t, context.Background(), http.MethodDelete, "/health", nil)
		if err != nil {
			t.Fatal(err)
		}
		errorMessage(t, "DELETE /health", r, 405)
		// HEAD is allowed wherever GET is (RFC 9110), with GET's status and no body.
		for _, path := range []string{"/health", "/metrics", "/v1/models"} {
			r, err := f.do(t, context.Background(), http.MethodHead, path, nil)
			if err != nil || r.status != 200 || len(r.body) != 0 {
				t.Errorf("HEAD %s: %d, %d bytes, %v; want 200 and no body", path, r.status, len(r.body), err)
			}
		}
	})
	t.Run("compressed body", func(t *testing.T) {
		var gz bytes.Buffer
		w := gzip.NewWriter(&gz)
		_, _ = w.Write([]byte(`{"texts": ["a"]}`))
		_ = w.Close()
		msg := errorMessage(t, "gzip body", f.post(t, "/embed", gz.Bytes(), "Content-Encoding", "gzip"), 415)
		if !strings.Contains(msg, "uncompressed") {
			t.Errorf("415 does not say what to send: %q", msg)
		}
	})
	t.Run("unknown route", func(t *testing.T) {
		r, err := f.do(t, context.Background(), http.MethodGet, "/v2/embed", nil)
		if err != nil {
			t.Fatal(err)
		}
		errorMessage(t, "unknown route", r, 404)
	})
	if h := f.health(t); h["status"] != "healthy" {
		t.Fatalf("after the bad inputs /health says %v", h)
	}
}

func TestValidEdgeInputs(t *testing.T) {
	f := start(t, options{})
	t.Run("over-long text is truncated by default", func(t *testing.T) {
		resp, r := f.embed(t, map[string]any{"texts": []string{passage(1, 400)}})
		if resp.NumEmbeddings != 1 || r.header.Get("X-Embedbench-Tokens") != strconv.Itoa(testMaxSeq) {
			t.Errorf("got %d embeddings and %s tokens, want 1 and %d", resp.NumEmbeddings, r.header.Get("X-Embedbench-Tokens"), testMaxSeq)
		}
	})
	t.Run("empty string is [CLS][SEP]", func(t *testing.T) {
		resp, r := f.embed(t, map[string]any{"texts": []string{""}})
		if len(resp.Embeddings) != 1 || len(resp.Embeddings[0]) != testDim || r.header.Get("X-Embedbench-Tokens") != "2" {
			t.Errorf("empty string: %d vectors, %s tokens; want 1 vector of %d and 2 tokens", len(resp.Embeddings), r.header.Get("X-Embedbench-Tokens"), testDim)
		}
	})
	t.Run("invalid UTF-8 is replaced", func(t *testing.T) {
		body := []byte("{\"texts\": [\"caf\xe9 \xff ok\"]}")
		bad, _ := f.embed(t, body)
		good, _ := f.embed(t, map[string]any{"texts": []string{"caf\uFFFD \uFFFD ok"}})
		if c := cosine(bad.Embeddings[0], good.Embeddings[0]); c < 0.99999 {
			t.Errorf("invalid UTF-8 embedded unlike its replacement (cosine %.6f)", c)
		}
	})
	t.Run("seed shapes, normalisation and timing headers", func(t *testing.T) {
		texts := []string{"Hello world", "This is a test", passage(2, 50)}
		resp, r := f.embed(t, map[string]any{"texts": texts})
		if resp.NumEmbeddings != 3 || resp.EmbeddingDim != testDim || resp.Model != "tiny-modernbert" || len(resp.Embeddings) != 3 {
			t.Fatalf("response %d/%d/%q, want 3 embeddings of %d from tiny-modernbert", resp.NumEmbeddings, resp.EmbeddingDim, resp.Model, testDim)
		}
		for i, v := range resp.Embeddings {
			if n := norm(v); math.Abs(n-1) > 1e-4 {
				t.Errorf("vector %d has norm %f, want 1", i, n)
			}
		}
		for _, h := range []string{"Total", "Tokenize", "Queue", "Inference"} {
			v, err := strconv.ParseFloat(r.header.Get("X-Embedbench-"+h+"-Ms"), 64)
			if err != nil || v < 0 {
				t.Errorf("X-Embedbench-%s-Ms = %q", h, r.header.Get("X-Embedbench-"+h+"-Ms"))
			}
		}
		raw, _ := f.embed(t, map[string]any{"texts": texts, "normalize": false})
		if n := norm(raw.Embeddings[0]); math.Abs(n-1) < 1e-3 {
			t.Errorf("normalize false still gave a unit vector (norm %f)", n)
		}
		if c := cosine(raw.Embeddings[0], resp.Embeddings[0]); c < 0.99999 {
			t.Errorf("normalize false changed the direction (cosine %f)", c)
		}
	})
	t.Run("tokenize", func(t *testing.T) {
		r := f.post(t, "/tokenize", `{"texts": ["Hello world"], "return_offsets": true}`)
		var resp struct {
			Tokens  [][]int32  `json:"tokens"`
			Offsets [][][2]int `json:"offsets"`
		}
		if err := json.Unmarshal(r.body, &resp); err != nil || r.status != 200 {
			t.Fatalf("/tokenize: %d %s", r.status, r.body)
		}
		if want := []int32{50281, 12092, 1533, 50282}; fmt.Sprint(resp.Tokens[0]) != fmt.Sprint(want) {
			t.Errorf("ids %v, want %v (HF tokenizers)", resp.Tokens[0], want)
		}
		if fmt.Sprint(resp.Offsets[0]) != "[[0 0] [0 5] [5 11] [0 0]]" {
			t.Errorf("offsets %v", resp.Offsets[0])
		}
	})
}

func TestOpenAIClient(t *testing.T) {
	f := start(t, options{})
	client := openai.NewClient(option.WithBaseURL(f.url+"/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0))
	texts := []string{"The quick brown fox", "", passage(3, 60)}
	ctx := context.Background()
	floats, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: texts}, Model: "tiny-modernbert",
	})
	if err != nil {
		t.Fatalf("float: %v", err)
	}
	b64, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: texts}, Model: "tiny-modernbert",
		EncodingFormat: openai.EmbeddingNewParamsEncodingFormatBase64,
	})
	if err != nil {
		t.Fatalf("base64: %v", err)
	}
	seed, _ := f.embed(t, map[string]any{"texts": texts})
	if len(floats.Data) != 3 || len(b64.Data) != 3 || floats.Model != "tiny-modernbert" {
		t.Fatalf("got %d and %d embeddings from model %q", len(floats.Data), len(b64.Data), floats.Model)
	}
	if floats.Usage.PromptTokens < 10 || floats.Usage.TotalTokens != floats.Usage.PromptTokens {
		t.Errorf("usage %+v", floats.Usage)
	}
	for i := range texts {
		if floats.Data[i].Index != int64(i) || len(floats.Data[i].Embedding) != testDim {
			t.Fatalf("item %d: index %d, %d dims", i, floats.Data[i].Index, len(floats.Data[i].Embedding))
		}
		for j, x := range floats.Data[i].Embedding {
			if float32(x) != float32(b64.Data[i].Embedding[j]) || float32(x) != seed.Embeddings[i][j] {
				t.Fatalf("item %d dim %d: float %v, base64 %v, /embed %v differ", i, j, x, b64.Data[i].Embedding[j], seed.Embeddings[i][j])
			}
		}
	}

	short, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String(texts[0])}, Model: "tiny-modernbert",
		Dimensions: openai.Int(16),
	})
	if err != nil {
		t.Fatalf("dimensions: %v", err)
	}
	v := short.Data[0].Embedding
	var n, dot float64
	for j, x := range v {
		n += x * x
		dot += x * float64(seed.Embeddings[0][j])
	}
	if len(v) != 16 || math.Abs(n-1) > 1e-4 || dot <= 0 {
		t.Errorf("dimensions 16: got %d dims of norm %f", len(v), math.Sqrt(n))
	}

	ids, err := client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfTokenArrays: [][]int64{{50281, 12092, 1533, 50282}}}, Model: "tiny-modernbert",
	})
	if err != nil {
		t.Fatalf("token ids: %v", err)
	}
	hello, _ := f.embed(t, map[string]any{"texts": []string{"Hello world"}})
	if c := cosine(toF32(ids.Data[0].Embedding), hello.Embeddings[0]); c < 0.99999 {
		t.Errorf("token-id input embeds unlike its text (cosine %f)", c)
	}

	_, err = client.Embeddings.New(ctx, openai.EmbeddingNewParams{
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("x")}, Model: "m", Dimensions: openai.Int(1000),
	})
	var apiErr *openai.Error
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 422 || !strings.Contains(apiErr.Message, "dimensions") {
		t.Errorf("dimensions 1000: got %v, want a 422 the client reads", err)
	}
}

func toF32(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

func TestBothEnginesEmbedAlike(t *testing.T) {
	seq := start(t, options{engine: "sequential"})
	cont := start(t, options{engine: "continuous"})
	texts := append(passages(12, 30), "Hello world", "", passage(99, 200))
	a, _ := seq.embed(t, map[string]any{"texts": texts})
	b, _ := cont.embed(t, map[string]any{"texts": texts})
	for i := range texts {
		if c := cosine(a.Embeddings[i], b.Embeddings[i]); c < 0.999 {
			t.Errorf("text %d: cosine %.6f between the engines, want >= 0.999", i, c)
		}
	}
	if h := seq.health(t); h["backend"] != "sequential" || h["engine"] != "sequential" {
		t.Errorf("sequential /health: %v", h)
	}
}

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// busy sends n big requests that keep the single replica busy for seconds, and returns once
// all n are inside the engine.
func (f *fixture) busy(t *testing.T, n int) <-chan reply {
	t.Helper()
	out := make(chan reply, n)
	for i := range n {
		go func() {
			r, err := f.do(t, context.Background(), http.MethodPost, "/embed", mustJSON(map[string]any{"texts": passages(48, 100+i)}))
			if err != nil {
				r.status = -1
				r.body = []byte(err.Error())
			}
			out <- r
		}()
	}
	waitFor(t, "the big requests to reach the engine", func() bool { return f.eng.Stats().QueuedRequests == n })
	return out
}

func mustJSON(v any) []byte {
	data, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return data
}

func TestOverloadAnswers429AtOnce(t *testing.T) {
	f := start(t, options{maxConcurrent: 2})
	held := f.busy(t, 2)
	t0 := time.Now()
	r := f.post(t, "/embed", `{"texts": ["one more"]}`)
	elapsed := time.Since(t0)
	errorMessage(t, "third request", r, 429)
	if r.header.Get("Retry-After") == "" {
		t.Error("429 without Retry-After")
	}
	if elapsed > time.Second {
		t.Errorf("429 took %v, want it at once", elapsed)
	}
	if h := f.health(t); h["status"] != "healthy" || h["in_flight_requests"] != 2.0 {
		t.Errorf("/health while overloaded: %v", h)
	}
	for range 2 {
		if r := <-held; r.status != 200 {
			t.Errorf("held request: %d %s", r.status, r.body)
		}
	}
	if r := f.post(t, "/embed", `{"texts": ["now there is room"]}`); r.status != 200 {
		t.Errorf("after the load: %d %s", r.status, r.body)
	}
}

func TestClientGoneDropsQueuedWork(t *testing.T) {
	f := start(t, options{})
	held := f.busy(t, 1)
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() {
		_, err := f.do(t, ctx, http.MethodPost, "/embed", mustJSON(map[string]any{"texts": passages(7, 20)}))
		gone <- err
	}()
	waitFor(t, "the second request to queue", func() bool { return f.eng.Stats().QueuedRequests == 2 })
	cancel()
	if err := <-gone; !errors.Is(err, context.Canceled) {
		t.Fatalf("client saw %v, want its own cancellation", err)
	}
	waitFor(t, "the engine to drop the abandoned sequences", func() bool { return f.eng.Stats().DroppedSequences == 7 })
	if r := <-held; r.status != 200 {
		t.Fatalf("held request: %d %s", r.status, r.body)
	}
	if st := f.eng.Stats(); st.Sequences != 48 {
		t.Errorf("devices embedded %d sequences, want only the 48 of the request that stayed", st.Sequences)
	}
	metrics := f.metrics(t)
	if !strings.Contains(metrics, `embedbench_http_requests_total{code="499",route="embed"} 1`) ||
		!strings.Contains(metrics, "embedbench_dropped_sequences_total 7") {
		t.Errorf("metrics do not show the abandoned request:\n%s", grep(metrics, "499|dropped"))
	}
}

func (f *fixture) metrics(t *testing.T) string {
	t.Helper()
	r, err := f.do(t, context.Background(), http.MethodGet, "/metrics", nil)
	if err != nil || r.status != 200 {
		t.Fatalf("/metrics: %v %d", err, r.status)
	}
	return string(r.body)
}

func grep(text, alternatives string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		for _, a := range strings.Split(alternatives, "|") {
			if strings.Contains(line, a) {
				out = append(out, line)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

func TestShutdownAnswersEveryRequestInFlight(t *testing.T) {
	for _, kind := range []string{"continuous", "sequential"} {
		t.Run(kind, func(t *testing.T) {
			f := start(t, options{engine: kind})
			held := f.busy(t, 3)
			f.stop() // what SIGTERM does through main's context
			for range 3 {
				if r := <-held; r.status != 200 {
					t.Errorf("request in flight at shutdown: %d %s", r.status, r.body)
				}
			}
			select {
			case err := <-f.served:
				if err != nil {
					t.Errorf("Serve returned %v, want a clean nil", err)
				}
				f.served <- err // for the cleanup
			case <-time.After(20 * time.Second):
				t.Fatal("Serve did not return after the requests were answered")
			}
			if _, err := f.do(t, context.Background(), http.MethodGet, "/health", nil); err == nil {
				t.Error("the server still accepts connections after shutdown")
			}
		})
	}
}

// Past --shutdown-timeout what is left is closed: Serve reports it, and a request still in
// flight (here an upload that stalled) loses its connection then, not when it would have ended.
func TestShutdownTimeoutClosesWhatIsLeft(t *testing.T) {
	f := start(t, options{shutdown: 300 * time.Millisecond, bodyTimeout: time.Minute})
	stalled := f.stalledUpload(t)
	waitFor(t, "the upload to be read", func() bool {
		return strings.Contains(f.metrics(t), "embedbench_http_bodies_reading 1")
	})
	f.stop()
	select {
	case err := <-f.served:
		if err == nil || !strings.Contains(err.Error(), "still in flight") {
			t.Errorf("Serve returned %v, want the requests left in flight", err)
		}
		f.served <- err // for the cleanup
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running 10 s into a 300 ms shutdown")
	}
	_ = stalled.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(stalled); err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("the stalled upload's connection still open 5 s after shutdown gave up: %v", err)
	}
}

func TestReplicasShareTheLoad(t *testing.T) {
	var mu sync.Mutex
	perReplica := map[int]int{}
	f := start(t, options{replicas: 2, onBatch: func(b engine.BatchReport) {
		mu.Lock()
		perReplica[b.Replica] += b.Sequences
		mu.Unlock()
	}})
	ref := start(t, options{})
	var wg sync.WaitGroup
	results := make([]embedResponse, 8)
	for i := range results {
		wg.Go(func() {
			r, err := f.do(t, context.Background(), http.MethodPost, "/embed", mustJSON(map[string]any{"texts": passages(8, 40+i)}))
			if err != nil || r.status != 200 {
				t.Errorf("request %d: %v %d %s", i, err, r.status, r.body)
				return
			}
			if err := json.Unmarshal(r.body, &results[i]); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for i := range results {
		want, _ := ref.embed(t, map[string]any{"texts": passages(8, 40+i)})
		for j := range want.Embeddings {
			if c := cosine(results[i].Embeddings[j], want.Embeddings[j]); c < 0.999 {
				t.Fatalf("request %d text %d: cosine %f with one replica", i, j, c)
			}
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if perReplica[0] == 0 || perReplica[1] == 0 || perReplica[0]+perReplica[1] != 64 {
		t.Errorf("sequences per replica %v, want all 64 spread over both", perReplica)
	}
	if h := f.health(t); h["replicas"] != 2.0 {
		t.Errorf("/health replicas %v", h["replicas"])
	}
}

func TestDeviceErrorAnswers5xxAndHealthTells(t *testing.T) {
	f := start(t, options{closedModel: true})
	msg := errorMessage(t, "embed on a broken device", f.post(t, "/embed", `{"texts": ["a"]}`), 500)
	if !strings.Contains(msg, "device error") {
		t.Errorf("message %q does not say it was the device", msg)
	}
	h := f.health(t)
	if h["status"] != "degraded" || h["http_status"] != 200.0 || !strings.Contains(fmt.Sprint(h["last_error"]), "closed") || h["device_errors"] != 1.0 {
		t.Errorf("/health after a device error: %v", h)
	}
	errorMessage(t, "bad input still a 4xx", f.post(t, "/embed", `{"texts": []}`), 422)
}

// logger is the server's logger for a test: JSON at info into w, or nothing.
func logger(w io.Writer) *slog.Logger {
	if w == nil {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// A 5xx is logged at error level with its cause, which the answer's body holds too.
func TestServerErrorsAreLoggedWithTheirCause(t *testing.T) {
	var logs syncBuffer
	f := start(t, options{closedModel: true, logs: &logs})
	errorMessage(t, "embed on a broken device", f.post(t, "/embed", `{"texts": ["a"]}`), 500)
	var line struct {
		Level, Msg, Err string
		Status          int
	}
	// The line is written as the handler returns, which can be after the client has its answer.
	waitFor(t, "the 500's log line", func() bool {
		for _, l := range strings.Split(logs.String(), "\n") {
			if json.Unmarshal([]byte(l), &line) == nil && line.Msg == "request" && line.Status == 500 {
				return true
			}
		}
		line.Msg = ""
		return false
	})
	if line.Level != "ERROR" || !strings.Contains(line.Err, "device error") {
		t.Errorf("the 500's log line %+v, want level ERROR with the device error; log:\n%s", line, logs.String())
	}
}

// syncBuffer is a bytes.Buffer that the server's goroutines and the test may share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestAPIKey(t *testing.T) {
	f := start(t, options{apiKey: "s3cret"})
	errorMessage(t, "no key", f.post(t, "/embed", `{"texts": ["a"]}`), 401)
	errorMessage(t, "wrong key", f.post(t, "/embed", `{"texts": ["a"]}`, "Authorization", "Bearer nope"), 401)
	if r := f.post(t, "/embed", `{"texts": ["a"]}`, "Authorization", "Bearer s3cret"); r.status != 200 {
		t.Errorf("right key: %d %s", r.status, r.body)
	}
	if h := f.health(t); h["http_status"] != 200.0 {
		t.Errorf("/health needs no key, got %v", h)
	}
}

func TestLoadingUntilReady(t *testing.T) {
	srv, err := server.New(server.Config{EngineName: "continuous", ModelID: "m", MaxConcurrentRequests: 4, MaxClientBatchSize: 4, MaxBodyBytes: 1 << 20, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, ln) }()
	f := &fixture{url: "http://" + ln.Addr().String()}
	h := f.health(t)
	if h["status"] != "loading" || h["http_status"] != 503.0 {
		t.Errorf("/health before the model: %v", h)
	}
	r := f.post(t, "/embed", `{"texts": ["a"]}`)
	errorMessage(t, "embed while loading", r, 503)
	if r.header.Get("Retry-After") == "" {
		t.Error("503 while loading without Retry-After")
	}
	stop()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
}

func TestMetricsDescribeTheWork(t *testing.T) {
	f := start(t, options{})
	f.embed(t, map[string]any{"texts": passages(5, 30)})
	f.post(t, "/embed", `{"texts": 1}`)
	m := f.metrics(t)
	for _, want := range []string{
		`embedbench_http_requests_total{code="200",route="embed"} 1`,
		`embedbench_http_requests_total{code="422",route="embed"} 1`,
		`embedbench_http_request_duration_seconds_count{code="200",route="embed"} 1`,
		"embedbench_inputs_total 5",
		"embedbench_batch_sequences_count 1",
		"embedbench_batch_tokens_sum",
		"embedbench_batch_padding_ratio_count 1",
		"embedbench_queue_sequences 0",
		"embedbench_replicas 1",
		`embedbench_request_stage_seconds_count{stage="inference"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// One short text costs one small step, not a full one, and gets the vector it gets inside a
// full step; /metrics shows the rungs used.
func TestOneTextRunsTheSmallestStep(t *testing.T) {
	for _, eng := range []string{"continuous", "sequential"} {
		t.Run(eng, func(t *testing.T) {
			f := start(t, options{engine: eng})
			alone, _ := f.embed(t, map[string]any{"texts": []string{"what is a query embedding"}})
			m := f.metrics(t)
			if small, all := metricValue(m, `embedbench_step_slots_bucket{le="128"}`), metricValue(m, "embedbench_step_slots_count"); small != 1 || all != 1 {
				t.Fatalf("one short text ran %v steps, %v of them of at most 128 slots; want 1 small step:\n%s", all, small, grep(m, "step_slots"))
			}
			texts := make([]string, 60)
			for i := range texts {
				texts[i] = fmt.Sprintf("passage %d about something else entirely, long enough to fill rows", i)
			}
			texts[37] = "what is a query embedding"
			full, _ := f.embed(t, map[string]any{"texts": texts})
			if c := cosine(alone.Embeddings[0], full.Embeddings[37]); c < 0.99999 {
				t.Errorf("the text alone and in a full step: cosine %.7f", c)
			}
			m = f.metrics(t)
			// Compiled ladders (XLA, the CPU graph) and the native CPU path, whose steps are
			// exactly their tokens, both run the 60 passages on steps larger than the text's.
			if big := metricValue(m, "embedbench_step_slots_count") - metricValue(m, `embedbench_step_slots_bucket{le="64"}`); big < 1 {
				t.Errorf("60 passages ran no step larger than 64 slots:\n%s", grep(m, "step_slots"))
			}
			if len(f.stepSlots) > 0 { // a compiled ladder: a bucket for each rung
				checkStepBuckets(t, m, f.stepSlots)
			}
			if m := f.metrics(t); !strings.Contains(m, "embedbench_step_occupancy_ratio_count") {
				t.Errorf("no step occupancy histogram")
			}
			steps := metricValue(m, "embedbench_step_slots_count")
			if n := metricValue(m, `embedbench_step_phase_seconds_count{phase="execute"}`); n != steps {
				t.Errorf("%v steps timed in their execute phase, want all %v:\n%s", n, steps, grep(m, "step_phase"))
			}
			// A phase a step does not have is not recorded as taking 0 s (the native CPU pass
			// packs and unpacks inside its execute phase).
			for _, line := range strings.Split(grep(m, "step_phase_seconds_sum"), "\n") {
				series, value, _ := strings.Cut(line, " ")
				if count := strings.Replace(series, "_sum", "_count", 1); value == "0" && metricValue(m, count) > 0 {
					t.Errorf("%s with %v steps: phases timed at 0 s", line, metricValue(m, count))
				}
			}
		})
	}
}

// /metrics buckets the step sizes by the rungs the model compiled (as its Backend says), so
// that neighbouring rungs (3,072 and 4,096 slots on the GPU's ladder) count apart.
func TestStepSizeBucketsAreTheRungs(t *testing.T) {
	rungs := []int{48, 192, 3072, 4096}
	f := start(t, options{stepSlots: rungs})
	f.embed(t, map[string]any{"texts": []string{"a query"}})
	m := f.metrics(t)
	checkStepBuckets(t, m, rungs)
	if n := metricValue(m, `embedbench_step_slots_bucket{le="48"}`); n != 1 {
		t.Errorf("one short text's step in the smallest rung's bucket: %v, want 1:\n%s", n, grep(m, "step_slots"))
	}
}

// checkStepBuckets fails unless embedbench_step_slots has exactly one bucket for each rung.
func checkStepBuckets(t *testing.T, exposition string, rungs []int) {
	t.Helper()
	var les, want []string
	for _, line := range strings.Split(exposition, "\n") {
		if rest, ok := strings.CutPrefix(line, `embedbench_step_slots_bucket{le="`); ok {
			les = append(les, rest[:strings.IndexByte(rest, '"')])
		}
	}
	for _, r := range rungs {
		want = append(want, strconv.Itoa(r))
	}
	if want = append(want, "+Inf"); !slices.Equal(les, want) {
		t.Errorf("step size buckets %v, want one a rung: %v", les, want)
	}
}

// metricValue is the value of the exposition line that starts with series, or -1.
func metricValue(exposition, series string) float64 {
	for _, line := range strings.Split(exposition, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}
