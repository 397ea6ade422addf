package stress

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// trivialEmbedder answers every request at once with one fixed 4-dimensional embedding: the
// cheapest possible server, so that the benchmark measures the generator.
func trivialEmbedder() http.Handler {
	body := []byte(`{"embeddings":[[0.5,0.25,0.125,0.0625]],"model":"trivial","num_embeddings":1,"embedding_dim":4}`)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/embed" {
			var sink [4096]byte
			for {
				if _, err := r.Body.Read(sink[:]); err != nil {
					break
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	})
}

// BenchmarkClosedLoop drives b.N requests of one passage through 32 workers at a trivial local
// server, with HDR recording and response validation on. It reports requests/s and the
// generator's CPU per request (the server's CPU is in the same process, so cpu_us/req is an
// upper bound for the generator alone).
func BenchmarkClosedLoop(b *testing.B) {
	srv := httptest.NewServer(trivialEmbedder())
	defer srv.Close()
	opts := Options{ServiceURL: srv.URL, Passages: passages(1000), BatchSize: 1, MaxConcurrent: 32,
		GPU: GPUNone, Timeout: 10 * time.Second, MaxRequests: int64(b.N)}
	b.ResetTimer()
	res, err := Run(context.Background(), opts)
	if err != nil {
		b.Fatal(err)
	}
	if res.SuccessfulRequests != int64(b.N) {
		b.Fatalf("%d of %d requests succeeded: %v %v", res.SuccessfulRequests, b.N, res.Errors, res.ErrorExamples)
	}
	b.ReportMetric(res.RequestsPerSecond, "req/s")
	b.ReportMetric(res.Client.CPUPerRequestSeconds*1e6, "cpu_us/req")
	b.ReportMetric(res.LatencyMetrics.P99*1e6, "p99_us")
}

// BenchmarkCheckResponse validates one /embed response of 32 vectors of 768 floats, as the
// generator does for every 200 it gets: the JSON, every row's numbers and their count.
func BenchmarkCheckResponse(b *testing.B) {
	p, err := newPayload(APIEmbed, "http://x", "", []string{"a"}, 32)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	vectors := make([][]float32, 32)
	for i := range vectors {
		vectors[i] = make([]float32, 768)
		for j := range vectors[i] {
			vectors[i][j] = float32(rng.NormFloat64() * 0.05)
		}
	}
	body, err := json.Marshal(map[string]any{"embeddings": vectors, "model": "m"})
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if got, bad := p.check(body, http.Header{}); bad != "" || got.dim != 768 {
			b.Fatalf("%q, dim %d", bad, got.dim)
		}
	}
}
