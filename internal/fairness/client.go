package fairness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
)

const (
	apiEmbed  = "embed"  // the seed's POST /embed {"texts": [...]}
	apiOpenAI = "openai" // POST /v1/embeddings
	apiTEI    = "tei"    // HF text-embeddings-inference: POST /embed {"inputs": [...]} -> [[...]]
)

// maxResponseBytes bounds what is read from a service: K passages of a few thousand floats
// each are far below it, and a runaway answer must not exhaust memory.
const maxResponseBytes = 512 << 20

// Health is the part of a service's /health answer that says what it computes. Fields a
// service does not report are empty and are not compared.
type Health struct {
	Status    string `json:"status,omitempty"`
	Backend   string `json:"backend,omitempty"`
	Model     string `json:"model,omitempty"`
	Pooling   string `json:"pooling,omitempty"`
	Weights   string `json:"weights,omitempty"`
	DType     string `json:"dtype,omitempty"`
	Normalize *bool  `json:"normalize,omitempty"`
	Device    string `json:"device,omitempty"`
}

// FetchHealth reads GET base/health. A service that is still loading (503) is an error.
func FetchHealth(ctx context.Context, client *http.Client, base string) (Health, error) {
	if client == nil {
		client = http.DefaultClient
	}
	url := strings.TrimRight(base, "/") + "/health"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return Health{}, fmt.Errorf("health of %s: %w", base, err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return Health{}, fmt.Errorf("health of %s: %w", base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Health{}, fmt.Errorf("reading health of %s: %w", base, err)
	}
	if resp.StatusCode != http.StatusOK {
		return Health{}, fmt.Errorf("health of %s: HTTP %d: %s", base, resp.StatusCode, excerpt(string(body), 200))
	}
	// vLLM and TEI answer 200 with an empty body: healthy, but they say nothing about what they
	// compute. Such a service is compared on its vectors alone.
	var h Health
	if err := json.Unmarshal(body, &h); err != nil {
		return Health{Status: "healthy (no self-description)"}, nil
	}
	return h, nil
}

// servedModel asks an OpenAI-style server which model it serves (GET /v1/models), since vLLM
// refuses requests naming another. "" when the server does not say.
func servedModel(ctx context.Context, client *http.Client, base string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/models", nil)
	if err != nil {
		return ""
	}
	resp, err := client.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	var models struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&models) != nil || len(models.Data) == 0 {
		return ""
	}
	return models.Data[0].ID
}

// errNoEndpoint marks a service that does not serve the endpoint asked for (404/405), so that
// detection can try the other API.
var errNoEndpoint = errors.New("endpoint not served")

// embedAll embeds texts through one service in batches, detecting the API when asked to.
func embedAll(ctx context.Context, opts Options, base string, texts []string) (Service, [][]float32, error) {
	base = strings.TrimRight(base, "/")
	svc := Service{URL: base}
	h, err := FetchHealth(ctx, opts.Client, base)
	if err != nil {
		return svc, nil, err
	}
	svc.Health = h

	apis := []string{opts.API}
	if opts.API == "" {
		apis = []string{apiEmbed, apiOpenAI}
	}
	var lastErr error
	for _, api := range apis {
		model := h.Model
		if api == apiOpenAI && model == "" {
			model = servedModel(ctx, opts.Client, base)
		}
		vecs, err := embedBatches(ctx, opts, base, api, model, texts)
		if errors.Is(err, errNoEndpoint) {
			lastErr = err
			continue
		}
		if err != nil {
			return svc, nil, err
		}
		svc.API = api
		return svc, vecs, nil
	}
	return svc, nil, fmt.Errorf("%s serves neither /embed nor /v1/embeddings: %w", base, lastErr)
}

func embedBatches(ctx context.Context, opts Options, base, api, model string, texts []string) ([][]float32, error) {
	out := make([][]float32, 0, len(texts))
	for start := 0; start < len(texts); start += opts.BatchSize {
		batch := texts[start:min(start+opts.BatchSize, len(texts))]
		vecs, err := embedBatch(ctx, opts.Client, base, api, model, batch)
		if err != nil {
			return nil, err
		}
		if len(out) > 0 && len(vecs[0]) != len(out[0]) {
			return nil, fmt.Errorf("answer of %s: vectors of %d values after vectors of %d", base, len(vecs[0]), len(out[0]))
		}
		out = append(out, vecs...)
	}
	return out, nil
}

type embedResponse struct {
	Embeddings [][]float32 `json:"embeddings"`
}

type openAIResponse struct {
	Data []struct {
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	} `json:"data"`
}

func embedBatch(ctx context.Context, client *http.Client, base, api, model string, texts []string) ([][]float32, error) {
	var path string
	var payload any
	switch api {
	case apiEmbed:
		path, payload = "/embed", map[string]any{"texts": texts}
	case apiTEI:
		path, payload = "/embed", map[string]any{"inputs": texts}
	case apiOpenAI:
		if model == "" {
			model = "default"
		}
		path, payload = "/v1/embeddings", map[string]any{"input": texts, "model": model, "encoding_format": "float"}
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return nil, fmt.Errorf("encoding request for %s%s: %w", base, path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("request to %s%s: %w", base, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST %s%s: %w", base, path, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, fmt.Errorf("reading answer of %s%s: %w", base, path, err)
	}
	switch {
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed:
		return nil, fmt.Errorf("POST %s%s: HTTP %d: %w", base, path, resp.StatusCode, errNoEndpoint)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("POST %s%s: HTTP %d: %s", base, path, resp.StatusCode, excerpt(string(raw), 300))
	}

	var vecs [][]float32
	switch api {
	case apiEmbed:
		var r embedResponse
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("answer of %s%s: malformed JSON: %w", base, path, err)
		}
		vecs = r.Embeddings
	case apiTEI:
		if err := json.Unmarshal(raw, &vecs); err != nil {
			return nil, fmt.Errorf("answer of %s%s: want a JSON list of vectors: %w", base, path, err)
		}
	default:
		var r openAIResponse
		if err := json.Unmarshal(raw, &r); err != nil {
			return nil, fmt.Errorf("answer of %s%s: malformed JSON: %w", base, path, err)
		}
		// OpenAI's API numbers each vector; order by it rather than trust the array order.
		sort.Slice(r.Data, func(i, j int) bool { return r.Data[i].Index < r.Data[j].Index })
		for i, d := range r.Data {
			if d.Index != i {
				return nil, fmt.Errorf("answer of %s%s: vector indices are not 0..%d", base, path, len(r.Data)-1)
			}
			vecs = append(vecs, d.Embedding)
		}
	}
	if len(vecs) != len(texts) {
		return nil, fmt.Errorf("answer of %s%s: %d vectors for %d texts", base, path, len(vecs), len(texts))
	}
	for i, v := range vecs {
		if len(v) == 0 || len(v) != len(vecs[0]) {
			return nil, fmt.Errorf("answer of %s%s: vector %d has %d values, the first has %d", base, path, i, len(v), len(vecs[0]))
		}
	}
	return vecs, nil
}
