package stress

import (
	"fmt"
	"log/slog"
	"math"
	"sort"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Histograms record microseconds from 1 µs to one hour with 3 significant digits: a reported
// percentile is within 0.1% of the true value.
const (
	histLowestMicros  = 1
	histHighestMicros = int64(time.Hour / time.Microsecond)
	histSigFigs       = 3
)

func newHist() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowestMicros, histHighestMicros, histSigFigs)
}

// recordDuration adds d, clamped into the histogram's range so that nothing is dropped.
func recordDuration(h *hdrhistogram.Histogram, d time.Duration) {
	us := int64(d / time.Microsecond)
	if us < histLowestMicros {
		us = histLowestMicros
	}
	if us > histHighestMicros {
		us = histHighestMicros
	}
	_ = h.RecordValue(us) // cannot fail: the value is in range
}

// encodeHist returns h in the V2 compressed encoding, "" when h is empty. Encoding into memory
// cannot fail short of a bug in the library; should it, the histogram is left out (the result
// then cannot be merged, and merge says so) rather than the run lost.
func encodeHist(h *hdrhistogram.Histogram) string {
	if h.TotalCount() == 0 {
		return ""
	}
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		slog.Warn("encoding a latency histogram", "err", err)
		return ""
	}
	return string(b)
}

// decodeHist reads a histogram written by encodeHist into one of this package's geometry, so
// that any two decoded histograms merge without loss; "" is an empty histogram.
func decodeHist(s string) (*hdrhistogram.Histogram, error) {
	h := newHist()
	if s == "" {
		return h, nil
	}
	d, err := hdrhistogram.Decode([]byte(s))
	if err != nil {
		return nil, err
	}
	if dropped := h.Merge(d); dropped > 0 {
		return nil, fmt.Errorf("%d values outside 1 µs to 1 h", dropped)
	}
	return h, nil
}

func micros(v int64) float64 { return float64(v) / 1e6 }

// summarize turns a histogram into the result's LatencyMetrics, in seconds.
// allLatency summarises the successful and the failed requests' latencies together.
func allLatency(succeeded, failed *hdrhistogram.Histogram) *LatencyMetrics {
	all := newHist()
	all.Merge(succeeded)
	all.Merge(failed)
	return ptr(summarize(all))
}

func summarize(h *hdrhistogram.Histogram) LatencyMetrics {
	n := h.TotalCount()
	if n == 0 {
		return LatencyMetrics{}
	}
	q := h.ValueAtPercentiles([]float64{50, 90, 95, 99, 99.9})
	return LatencyMetrics{
		Mean:   h.Mean() / 1e6,
		P50:    micros(q[50]),
		P90:    micros(q[90]),
		P95:    micros(q[95]),
		P99:    micros(q[99]),
		P999:   micros(q[99.9]),
		Min:    micros(h.Min()),
		Max:    micros(h.Max()),
		Stddev: h.StdDev() / 1e6,
		Count:  n,
	}
}

func summaryPtr(h *hdrhistogram.Histogram) *LatencyMetrics {
	if h.TotalCount() == 0 {
		return nil
	}
	s := summarize(h)
	return &s
}

// spectrum is the percentile curve HdrHistogram prints (ticks halve the distance to 100% five
// times per halving), plus the maximum, with latencies in seconds.
func spectrum(h *hdrhistogram.Histogram) []PercentilePoint {
	n := h.TotalCount()
	if n == 0 {
		return nil
	}
	var out []PercentilePoint
	const ticksPerHalf = 5
	for p := 0.0; ; {
		v := h.ValueAtPercentile(p)
		count := int64(math.Ceil(p / 100 * float64(n)))
		out = append(out, PercentilePoint{Percentile: p, LatencySeconds: micros(v), Count: count})
		if v >= h.Max() && p > 0 {
			break
		}
		// Halve the remaining distance to 100% every ticksPerHalf points.
		remaining := 100 - p
		halvings := math.Floor(math.Log2(100/remaining)) + 1
		step := 100 / math.Pow(2, halvings) / ticksPerHalf
		p += step
		if p >= 100 || float64(n)*(100-p)/100 < 0.5 {
			break
		}
	}
	max := micros(h.Max())
	if last := out[len(out)-1]; last.LatencySeconds != max || last.Percentile != 100 {
		out = append(out, PercentilePoint{Percentile: 100, LatencySeconds: max, Count: n})
	}
	return out
}

// histogramBuckets folds the HDR histogram into about 10 log-spaced buckets per decade, the
// shape a latency histogram is usually drawn with.
func histogramBuckets(h *hdrhistogram.Histogram) []HistogramBucket {
	if h.TotalCount() == 0 {
		return nil
	}
	const perDecade = 10
	bucketOf := func(us int64) int { return int(math.Floor(math.Log10(float64(us)) * perDecade)) }
	bound := func(i int) float64 { return math.Pow(10, float64(i)/perDecade) / 1e6 }
	counts := map[int]int64{}
	for _, b := range h.Distribution() {
		if b.Count > 0 {
			counts[bucketOf(max(b.From, 1))] += b.Count
		}
	}
	idx := make([]int, 0, len(counts))
	for i := range counts {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	out := make([]HistogramBucket, 0, idx[len(idx)-1]-idx[0]+1)
	for i := idx[0]; i <= idx[len(idx)-1]; i++ {
		out = append(out, HistogramBucket{LowerSeconds: bound(i), UpperSeconds: bound(i + 1), Count: counts[i]})
	}
	return out
}
