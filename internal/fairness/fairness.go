// Package fairness checks that two embedding services compute the same thing before their
// speeds are compared: it sends the same passages to both and measures the cosine between the
// vectors they return, and it compares what each says about itself on /health.
//
// A speed comparison between services that embed differently (another model, other pooling,
// other weights) is meaningless; the seed only claims "both services use the same model", and
// this package measures it.
package fairness

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
)

// Thresholds below which the minimum cosine is reported as beyond numerical noise.
const (
	// ThresholdSameFullPrecision applies when both services run fp32: only summation order
	// differs, so vectors agree to about 1e-6.
	ThresholdSameFullPrecision = 0.99999
	// ThresholdReducedPrecision applies when either side runs bf16/fp16 or does not say:
	// bf16 keeps 8 bits of mantissa, which costs about 1e-3 of cosine on a 22-layer encoder.
	ThresholdReducedPrecision = 0.999
)

// Options tunes a check. The zero value is usable.
type Options struct {
	// API selects the endpoint: "embed" (the seed's /embed), "openai" (/v1/embeddings), "tei"
	// (text-embeddings-inference's /embed with "inputs"), or "" to detect per service (/embed
	// first, /v1/embeddings when /embed does not exist).
	API string
	// BatchSize is the number of passages per request (default 32, the seed's client batch).
	BatchSize int
	// MinCosine overrides the threshold chosen from the services' dtypes when > 0.
	MinCosine float64
	// Client is the HTTP client (default: one with a 2-minute timeout per request).
	Client *http.Client
	// APIKey, when set, goes with every request to both services as "Authorization: Bearer".
	APIKey string
}

// Service is what one side reported and how it was reached.
type Service struct {
	URL    string `json:"url"`
	API    string `json:"api"`
	Health Health `json:"health"`
}

// Result is the outcome of a check.
//
// The vectors are the verdict: OK is true when they agree within the dtypes' noise. What the
// services say about themselves on /health is compared too, and differences are warned about
// (a model, pooling or weights named differently), but they do not fail the check on their
// own: the same checkpoint is often described differently (a path on one side, a hub id or
// "random (seed 0)" on the other), and if it truly differs the vectors show it.
type Result struct {
	A          Service `json:"a"`
	B          Service `json:"b"`
	Passages   int     `json:"passages"`
	Dim        int     `json:"embedding_dim"`
	MinCosine  float64 `json:"min_cosine"`
	MeanCosine float64 `json:"mean_cosine"`
	Threshold  float64 `json:"threshold"`
	WorstIndex int     `json:"worst_index"`
	WorstText  string  `json:"worst_text,omitempty"`
	// VectorsAgree is the verdict on the vectors; Warnings lists every problem found,
	// self-description differences included.
	VectorsAgree bool     `json:"vectors_agree"`
	Warnings     []string `json:"warnings,omitempty"`
}

// OK reports whether the two services compute the same embeddings within numerical noise.
func (r Result) OK() bool { return r.VectorsAgree }

// Summary is a one-paragraph human reading of the result.
func (r Result) Summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "fairness: %d passages, dim %d, cosine min %.6f mean %.6f (threshold %g)",
		r.Passages, r.Dim, r.MinCosine, r.MeanCosine, r.Threshold)
	if r.OK() {
		b.WriteString(": same embeddings within numerical noise")
	} else {
		b.WriteString(": the services do NOT compute the same embeddings")
	}
	for _, w := range r.Warnings {
		b.WriteString("\n  WARNING: ")
		b.WriteString(w)
	}
	return b.String()
}

// Check sends texts to both services, compares the vectors and the services' /health, and
// returns the result. An error means the check could not be done (a service unreachable, a
// malformed answer); disagreement is not an error but a warning in the result.
func Check(ctx context.Context, urlA, urlB string, texts []string, opts Options) (Result, error) {
	if len(texts) == 0 {
		return Result{}, errors.New("fairness check: no passages to send")
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = 32
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 2 * time.Minute}
	}
	if opts.APIKey != "" {
		c := *opts.Client
		c.Transport = bearer{key: opts.APIKey, next: cmp.Or[http.RoundTripper](c.Transport, http.DefaultTransport)}
		opts.Client = &c
	}
	switch opts.API {
	case "", apiEmbed, apiOpenAI, apiTEI:
	default:
		return Result{}, fmt.Errorf("fairness check: api %q: want embed, openai, tei or empty", opts.API)
	}

	a, vecA, err := embedAll(ctx, opts, urlA, texts)
	if err != nil {
		return Result{}, err
	}
	b, vecB, err := embedAll(ctx, opts, urlB, texts)
	if err != nil {
		return Result{}, err
	}
	res := Result{A: a, B: b, Passages: len(texts), Threshold: opts.MinCosine}
	if res.Threshold <= 0 {
		res.Threshold = threshold(a.Health.DType, b.Health.DType)
	}
	res.Warnings = append(res.Warnings, compareHealth(a.Health, b.Health)...)
	compareVectors(&res, vecA, vecB, texts)
	return res, nil
}

// bearer adds the API key to every request it carries.
type bearer struct {
	key  string
	next http.RoundTripper
}

func (b bearer) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context()) // a RoundTripper must not change the request it is given
	req.Header.Set("Authorization", "Bearer "+b.key)
	return b.next.RoundTrip(req)
}

// threshold picks the noise level the two dtypes allow.
func threshold(dtypeA, dtypeB string) float64 {
	if isFP32(dtypeA) && isFP32(dtypeB) {
		return ThresholdSameFullPrecision
	}
	return ThresholdReducedPrecision
}

func isFP32(dtype string) bool {
	switch strings.ToLower(dtype) {
	case "float32", "fp32", "f32":
		return true
	}
	return false
}

// compareHealth lists the self-descriptions that differ in ways that change the vectors.
func compareHealth(a, b Health) []string {
	var warnings []string
	differ := func(what, va, vb string) {
		if va != "" && vb != "" && !strings.EqualFold(va, vb) {
			warnings = append(warnings, fmt.Sprintf("the services report different %s: %q vs %q", what, va, vb))
		}
	}
	differ("models", a.Model, b.Model)
	differ("pooling", a.Pooling, b.Pooling)
	differ("weights", a.Weights, b.Weights)
	if a.Normalize != nil && b.Normalize != nil && *a.Normalize != *b.Normalize {
		warnings = append(warnings, fmt.Sprintf("the services report different normalisation: %v vs %v", *a.Normalize, *b.Normalize))
	}
	return warnings
}

// compareVectors fills the cosine statistics and adds warnings for vectors that disagree.
func compareVectors(res *Result, vecA, vecB [][]float32, texts []string) {
	res.Dim = len(vecA[0])
	if dimB := len(vecB[0]); dimB != res.Dim {
		res.Warnings = append(res.Warnings, fmt.Sprintf("embedding dimensions differ: %d vs %d; the services cannot be running the same model", res.Dim, dimB))
		return
	}
	res.MinCosine = math.Inf(1)
	var sum float64
	undefined := 0
	for i := range vecA {
		c, ok := cosine(vecA[i], vecB[i])
		if !ok {
			undefined++
			c = 0
		}
		sum += c
		if c < res.MinCosine {
			res.MinCosine, res.WorstIndex = c, i
		}
	}
	res.MeanCosine = sum / float64(len(vecA))
	res.VectorsAgree = undefined == 0 && res.MinCosine >= res.Threshold
	res.WorstText = excerpt(texts[res.WorstIndex], 120)
	if undefined > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d vector pairs hold a zero, NaN or infinite value; counted as cosine 0", undefined))
	}
	if res.MinCosine < res.Threshold {
		res.Warnings = append(res.Warnings, fmt.Sprintf("minimum cosine %.6f is below %g (passage %d)", res.MinCosine, res.Threshold, res.WorstIndex))
	}
}

// cosine is computed in float64 so that the check itself adds no noise; ok is false when it is
// undefined (a zero vector or a non-finite value).
func cosine(a, b []float32) (float64, bool) {
	var dot, na, nb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		dot += x * y
		na += x * x
		nb += y * y
	}
	c := dot / math.Sqrt(na*nb)
	if math.IsNaN(c) || math.IsInf(c, 0) || na == 0 || nb == 0 {
		return 0, false
	}
	return c, true
}

func excerpt(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
