package report

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/embedbench/embedbench/internal/stress"
)

// fixtureRun builds a plausible result the way the stress tester summarises one: latencies
// drawn from a log-normal around median, recorded in an HDR histogram, per-second points, and
// GPU samples when gpu is true. It exists so that the report's tests do not need a model.
func fixtureRun(t *testing.T, engine, dtype string, median time.Duration, rps float64, gpu bool) *stress.Result {
	t.Helper()
	rng := rand.New(rand.NewPCG(uint64(median), 7))
	const seconds = 30
	hist := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	var series []stress.SecondPoint
	for s := range seconds {
		n := int(rps)
		sec := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
		for range n {
			us := float64(median.Microseconds()) * math.Exp(0.35*rng.NormFloat64())
			hist.RecordValue(int64(us))
			sec.RecordValue(int64(us))
		}
		p := stress.SecondPoint{
			Second: s, Sent: int64(n), Completed: int64(n), Successes: int64(n),
			RequestsPerSecond: float64(n), PassagesPerSecond: float64(n * 32),
			Latency: metricsOf(sec), InFlight: 8,
		}
		if gpu {
			u := 60 + 30*rng.Float64()
			p.GPUUtilizationPercent = &u
		}
		series = append(series, p)
	}
	total := hist.TotalCount()
	device := "cpu"
	if gpu {
		device = "cuda:0"
	}
	tokens := rps * 32 * 80
	res := &stress.Result{
		SchemaVersion:       stress.SchemaVersion,
		TestDurationSeconds: seconds,
		TotalRequests:       total + 2,
		SuccessfulRequests:  total,
		FailedRequests:      2,
		SuccessRate:         float64(total) / float64(total+2),
		RequestsPerSecond:   float64(total) / seconds,
		Passages:            total * 32,
		PassagesPerSecond:   float64(total*32) / seconds,
		Tokens:              int64(tokens * seconds),
		TokensPerSecond:     &tokens,
		TokensSource:        "header",
		LatencyMetrics:      metricsOf(hist),
		LatencySpectrum:     spectrumOf(hist),
		LatencyHistogram:    histogramOf(hist),
		Errors:              map[string]int64{"http_429": 2},
		ErrorExamples:       map[string]string{"http_429": `{"error":"overloaded"}`},
		TimeSeries:          series,
		GPU:                 stress.GPUTelemetry{Source: stress.GPUSourceUnavailable, Reason: "no NVML driver on this machine"},
		Server: stress.ServerInfo{
			HealthURL: "http://127.0.0.1:8000/health", HealthStatusCode: 200,
			Health: json.RawMessage(`{"status":"healthy","backend":"` + engine + `","engine":"` + engine + `","model":"answerdotai/ModernBERT-base","gpu_available":false,"device":"` + device + `","dtype":"` + dtype + `","pooling":"mean","weights":"random (seed 0)"}`),
			Model:  "answerdotai/ModernBERT-base", Engine: engine, DType: dtype, Weights: "random (seed 0)", EmbeddingDim: 768,
		},
		Config: stress.Config{
			ServiceURL: "http://127.0.0.1:8000", API: "embed", Endpoint: "http://127.0.0.1:8000/embed",
			DataFile: "test_sentences.json", DataPassages: 10000, BatchSize: 32, Mode: "closed",
			MaxConcurrentRequests: 10, DurationSeconds: seconds, WarmupSeconds: 5, TimeoutSeconds: 30,
		},
		Machine:   stress.Machine{Hostname: "bench", OS: "linux", Arch: "amd64", CPUs: 2},
		Tool:      stress.Tool{Name: "embedbench", Version: "test", GoVersion: "go1.26"},
		StartedAt: time.Date(2026, 11, 26, 22, 0, 0, 0, time.UTC),
		EndedAt:   time.Date(2026, 11, 26, 22, 0, seconds, 0, time.UTC),
	}
	if gpu {
		var sum float64
		for _, p := range series {
			sum += *p.GPUUtilizationPercent
		}
		mean := sum / float64(len(series))
		used, totalMem := uint64(20<<30), uint64(80<<30)
		res.GPUUtilizationPercent = &mean
		// A card at its power limit: the clock sags under load.
		var clocks []stress.GPUSample
		var clockSum float64
		for i := range int(seconds) {
			c := 1980 - 300*rng.Float64()
			clockSum += c
			clocks = append(clocks, stress.GPUSample{Seconds: float64(i + 1), Device: 0, SMClockMHz: &c})
		}
		clockMean, clockMax, watts, limit := clockSum/seconds, 1980.0, 690.0, 700.0
		res.GPU = stress.GPUTelemetry{Source: stress.GPUSourceNVML, Note: "NVML utilisation counts time with any kernel running",
			SampleIntervalSeconds: 0.1, Series: clocks,
			Devices: []stress.GPUDeviceSummary{{Index: 0, Name: "NVIDIA H200", Samples: 300, MemoryTotalBytes: &totalMem,
				UtilizationMeanPercent: &mean, MemoryUsedMaxBytes: &used, SMClockMeanMHz: &clockMean, SMClockMaxMHz: &clockMax,
				PowerMeanWatts: &watts, PowerLimitWatts: &limit, ClockLimited: map[string]float64{"power_cap": 0.9, "thermal": 0}}}}
	}
	return res
}

func metricsOf(h *hdrhistogram.Histogram) stress.LatencyMetrics {
	s := func(us int64) float64 { return float64(us) / 1e6 }
	return stress.LatencyMetrics{
		Mean: h.Mean() / 1e6, P50: s(h.ValueAtQuantile(50)), P90: s(h.ValueAtQuantile(90)),
		P95: s(h.ValueAtQuantile(95)), P99: s(h.ValueAtQuantile(99)), P999: s(h.ValueAtQuantile(99.9)),
		Min: s(h.Min()), Max: s(h.Max()), Stddev: h.StdDev() / 1e6, Count: h.TotalCount(),
	}
}

func spectrumOf(h *hdrhistogram.Histogram) []stress.PercentilePoint {
	var out []stress.PercentilePoint
	for _, b := range h.CumulativeDistribution() {
		out = append(out, stress.PercentilePoint{Percentile: b.Quantile, LatencySeconds: float64(b.ValueAt) / 1e6, Count: b.Count})
	}
	return out
}

func histogramOf(h *hdrhistogram.Histogram) []stress.HistogramBucket {
	var out []stress.HistogramBucket
	bars := h.Distribution()
	for lo := 100.0; lo < 6e7; lo *= 1.25 {
		hi := lo * 1.25
		if hi < float64(h.Min()) || lo > float64(h.Max()) {
			continue
		}
		var n int64
		for _, bar := range bars {
			if float64(bar.From) >= lo && float64(bar.From) < hi {
				n += bar.Count
			}
		}
		out = append(out, stress.HistogramBucket{LowerSeconds: lo / 1e6, UpperSeconds: hi / 1e6, Count: n})
	}
	return out
}
