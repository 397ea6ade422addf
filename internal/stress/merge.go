package stress

// This file merges the results of load generators that ran at once (N pods against one
// Service, as k6-operator runs them) into one result in the same schema. Counts add,
// histograms merge, and every percentile is read from a merged histogram: percentiles of
// parts cannot be averaged.

import (
	"fmt"
	"math"
	"runtime"
	"slices"
	"strings"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// MergeInfo says what a merged result was made of and what the merge found. In a merged
// result the counts (requests, passages, tokens, errors) cover every part's whole window,
// while TestDurationSeconds is the window in which all parts were measuring at once and the
// rates are the sums of the parts' rates over it: the load the service bore together.
type MergeInfo struct {
	// Parts are the single runs merged, in the order given (a merged input contributes its
	// own parts), each with its configuration as it ran.
	Parts []MergePart `json:"parts"`
	// OverlapStart and OverlapEnd bound the window in which every part was measuring; both
	// zero when the windows do not overlap (the rates are then over the whole span).
	OverlapStart   time.Time `json:"overlap_start,omitzero"`
	OverlapEnd     time.Time `json:"overlap_end,omitzero"`
	OverlapSeconds float64   `json:"overlap_seconds"`
	// SpanSeconds is from the first part's start to the last part's end.
	SpanSeconds float64 `json:"span_seconds"`
	// Warnings are what a reader must know before trusting the merge: windows that do not
	// overlap (or barely), parts that measured different services, partial parts.
	Warnings []string `json:"warnings,omitempty"`
}

// MergePart is one run of a merged result, as it was.
type MergePart struct {
	// File is the result file it was read from (for a part of a merged input, as that merge
	// recorded it).
	File                string         `json:"file"`
	StartedAt           time.Time      `json:"started_at"`
	EndedAt             time.Time      `json:"ended_at"`
	TestDurationSeconds float64        `json:"test_duration_seconds"`
	TotalRequests       int64          `json:"total_requests"`
	SuccessfulRequests  int64          `json:"successful_requests"`
	RequestsPerSecond   float64        `json:"requests_per_second"`
	LatencyMetrics      LatencyMetrics `json:"latency_metrics"`
	Partial             bool           `json:"partial,omitempty"`
	PartialReason       string         `json:"partial_reason,omitempty"`
	Config              Config         `json:"config"`
	Server              ServerInfo     `json:"server"`
	Machine             Machine        `json:"machine"`
	Tool                Tool           `json:"tool"`
}

// MergeInput is one result to merge and the name (its file) that errors and the merged
// result call it by.
type MergeInput struct {
	Name   string
	Result *Result
}

// minOverlapShare is how much of the shortest part the common window must cover before the
// merge stops warning that the parts barely ran at once.
const minOverlapShare = 0.8

// Merge combines results of load generators that ran at the same time. It refuses, naming
// the input, any result that cannot be merged exactly (no histograms, inconsistent counts)
// and the same run given twice; it warns in Merged.Warnings when windows do not overlap or
// services differ. toolVersion is recorded as the merged result's tool.
func Merge(inputs []MergeInput, toolVersion string) (*Result, error) {
	if len(inputs) < 2 {
		return nil, fmt.Errorf("merging needs at least two results, got %d", len(inputs))
	}
	parsed := make([]*mergeable, len(inputs))
	for i, in := range inputs {
		m, err := parseMergeable(in)
		if err != nil {
			return nil, err
		}
		parsed[i] = m
	}
	var parts []MergePart
	seen := map[string]string{}
	for _, m := range parsed {
		for _, p := range m.parts {
			key := fmt.Sprintf("%d/%d/%s/%d/%d", p.StartedAt.UnixNano(), p.EndedAt.UnixNano(), p.Machine.Hostname, p.TotalRequests, p.SuccessfulRequests)
			where := m.name
			if m.r.Merged != nil {
				where = fmt.Sprintf("%s (in %s)", p.File, m.name)
			}
			if prev, dup := seen[key]; dup {
				return nil, fmt.Errorf("%s and %s hold the same run (started %s on %s): merging it twice would count it twice",
					prev, where, p.StartedAt.Format(time.RFC3339Nano), unknownIfEmpty(p.Machine.Hostname))
			}
			seen[key] = where
			parts = append(parts, p)
		}
	}

	out := &Result{SchemaVersion: SchemaVersion, Errors: map[string]int64{}}
	info := &MergeInfo{Parts: parts}
	out.Merged = info

	// The windows: the span of all parts, and the window all parts shared.
	start, end := parts[0].StartedAt, parts[0].EndedAt
	overlapStart, overlapEnd := start, end
	for _, p := range parts[1:] {
		start, end = minTime(start, p.StartedAt), maxTime(end, p.EndedAt)
		overlapStart, overlapEnd = maxTime(overlapStart, p.StartedAt), minTime(overlapEnd, p.EndedAt)
	}
	out.StartedAt, out.EndedAt = start.UTC(), end.UTC()
	info.SpanSeconds = end.Sub(start).Seconds()
	overlapping := overlapEnd.After(overlapStart)
	if overlapping {
		info.OverlapStart, info.OverlapEnd = overlapStart.UTC(), overlapEnd.UTC()
		info.OverlapSeconds = overlapEnd.Sub(overlapStart).Seconds()
		shortest := parts[0].EndedAt.Sub(parts[0].StartedAt)
		for _, p := range parts[1:] {
			shortest = min(shortest, p.EndedAt.Sub(p.StartedAt))
		}
		if info.OverlapSeconds < minOverlapShare*shortest.Seconds() {
			info.Warnings = append(info.Warnings, fmt.Sprintf("the parts ran at once for only %.1f s of the shortest part's %.1f s: rates are over that common window, the counts over every part's whole window",
				info.OverlapSeconds, shortest.Seconds()))
		}
	} else {
		info.Warnings = append(info.Warnings, fmt.Sprintf("the parts' windows do not overlap (%s): they did not load the service at the same time, so the rates are over the whole %.1f s span, not a combined load",
			describeWindows(parts), info.SpanSeconds))
	}
	info.Warnings = append(info.Warnings, serviceWarnings(parts)...)
	var partial []string
	for _, p := range parts {
		if p.Partial {
			partial = append(partial, fmt.Sprintf("%s: %s", p.File, p.PartialReason))
		}
	}
	if len(partial) > 0 {
		out.Partial, out.PartialReason = true, "partial parts: "+strings.Join(partial, "; ")
		info.Warnings = append(info.Warnings, "some parts did not run as configured ("+strings.Join(partial, "; ")+")")
	}

	if err := mergeCounts(out, parsed); err != nil {
		return nil, err
	}
	window := info.SpanSeconds
	if overlapping {
		window = info.OverlapSeconds
	}
	out.TestDurationSeconds = window
	rates(out, parsed, overlapping, overlapStart, overlapEnd)
	if err := mergeLatency(out, parsed); err != nil {
		return nil, err
	}
	series, err := mergeSeries(parsed, start)
	if err != nil {
		return nil, err
	}
	out.TimeSeries = series
	mergeTelemetry(out, parsed)
	out.Config = mergeConfig(parts)
	out.Server = parts[0].Server
	out.Machine = mergeMachines(parts)
	out.Tool = Tool{Name: "embedbench", Version: toolVersion, GoVersion: runtime.Version()}
	if spec := out.Config.SLO; spec != "" {
		// Every part was held to the same SLO: hold the combined load to it too.
		if slo, err := ParseSLO(spec); err == nil {
			out.SLO = slo.Evaluate(out)
		}
	}
	return out, nil
}

// mergeable is one input, checked, with its histograms decoded.
type mergeable struct {
	name  string
	r     *Result
	parts []MergePart
	hists map[string]*hdrhistogram.Histogram // by Histograms field name
	// series holds the decoded per-second histograms, one per time-series point.
	series []*hdrhistogram.Histogram
}

func parseMergeable(in MergeInput) (*mergeable, error) {
	r := in.Result
	switch {
	case r == nil:
		return nil, fmt.Errorf("%s: no result", in.Name)
	case r.SchemaVersion == 0:
		return nil, fmt.Errorf("%s: written by the seed's stress_test.py, which keeps no histograms: its percentiles cannot be merged exactly", in.Name)
	case r.Histograms == nil:
		return nil, fmt.Errorf("%s: has no HDR histograms (written by an embedbench from before they were kept): its percentiles cannot be merged exactly; rerun embedbench stress to get a mergeable result", in.Name)
	case r.Histograms.Unit != HistogramUnit:
		return nil, fmt.Errorf("%s: histograms in %q, want %q", in.Name, r.Histograms.Unit, HistogramUnit)
	case r.StartedAt.IsZero() || r.EndedAt.Before(r.StartedAt):
		return nil, fmt.Errorf("%s: no measured window (started %v, ended %v)", in.Name, r.StartedAt, r.EndedAt)
	}
	m := &mergeable{name: in.Name, r: r, hists: map[string]*hdrhistogram.Histogram{}}
	h := r.Histograms
	for _, f := range []struct{ name, enc string }{
		{"latency", h.Latency}, {"latency_uncorrected", h.LatencyUncorrected}, {"send_lag", h.SendLag}, {"latency_failed", h.LatencyFailed},
		{"server_queue", h.ServerQueue}, {"server_tokenize", h.ServerTokenize},
		{"server_inference", h.ServerInference}, {"server_total", h.ServerTotal},
	} {
		d, err := decodeHist(f.enc)
		if err != nil {
			return nil, fmt.Errorf("%s: histograms.%s: %w", in.Name, f.name, err)
		}
		m.hists[f.name] = d
	}
	if n := m.hists["latency"].TotalCount(); n != r.SuccessfulRequests {
		return nil, fmt.Errorf("%s: its latency histogram holds %d requests but it counts %d successful: the file was altered or is damaged", in.Name, n, r.SuccessfulRequests)
	}
	for i, p := range r.TimeSeries {
		d, err := decodeHist(p.LatencyHDR)
		if err != nil {
			return nil, fmt.Errorf("%s: time_series[%d].latency_hdr: %w", in.Name, i, err)
		}
		if d.TotalCount() != p.Successes {
			return nil, fmt.Errorf("%s: time_series[%d] counts %d successes but its histogram holds %d", in.Name, i, p.Successes, d.TotalCount())
		}
		m.series = append(m.series, d)
	}
	if r.Merged != nil {
		m.parts = r.Merged.Parts
	} else {
		m.parts = []MergePart{{
			File: in.Name, StartedAt: r.StartedAt, EndedAt: r.EndedAt,
			TestDurationSeconds: r.TestDurationSeconds, TotalRequests: r.TotalRequests,
			SuccessfulRequests: r.SuccessfulRequests, RequestsPerSecond: r.RequestsPerSecond,
			LatencyMetrics: r.LatencyMetrics, Partial: r.Partial, PartialReason: r.PartialReason,
			Config: r.Config, Server: r.Server, Machine: r.Machine, Tool: r.Tool,
		}}
	}
	return m, nil
}

func mergeCounts(out *Result, in []*mergeable) error {
	tokensFrom := map[string]bool{}
	for _, m := range in {
		r := m.r
		out.TotalRequests += r.TotalRequests
		out.SuccessfulRequests += r.SuccessfulRequests
		out.FailedRequests += r.FailedRequests
		out.WarmupRequests += r.WarmupRequests
		out.UnfinishedRequests += r.UnfinishedRequests
		out.Passages += r.Passages
		out.Tokens += r.Tokens
		out.RequestBytes += r.RequestBytes
		out.ResponseBytes += r.ResponseBytes
		tokensFrom[r.TokensSource] = true
		for class, n := range r.Errors {
			out.Errors[class] += n
		}
		for class, msg := range r.ErrorExamples {
			if _, ok := out.ErrorExamples[class]; !ok {
				if out.ErrorExamples == nil {
					out.ErrorExamples = map[string]string{}
				}
				out.ErrorExamples[class] = msg
			}
		}
		out.Client.CPUSeconds += r.Client.CPUSeconds
		out.Client.MaxInFlight += r.Client.MaxInFlight
		out.Client.Connections += r.Client.Connections
	}
	if out.TotalRequests > 0 {
		out.SuccessRate = float64(out.SuccessfulRequests) / float64(out.TotalRequests)
		out.Client.CPUPerRequestSeconds = out.Client.CPUSeconds / float64(out.TotalRequests)
	}
	// Token rates add up only when every part counted tokens the same way.
	if len(tokensFrom) == 1 && !tokensFrom[""] {
		out.TokensSource = in[0].r.TokensSource
	}
	var failed int64
	for _, n := range out.Errors {
		failed += n
	}
	if failed != out.FailedRequests {
		return fmt.Errorf("the parts' errors by class sum to %d but they count %d failed requests: a file was altered or is damaged", failed, out.FailedRequests)
	}
	return nil
}

// rates sets the throughput figures: the sum over parts of what each did inside the common
// window (a second that straddles its edge counts in proportion), or over the span when the
// windows do not overlap.
func rates(out *Result, in []*mergeable, overlapping bool, from, to time.Time) {
	if !overlapping {
		span := out.EndedAt.Sub(out.StartedAt).Seconds()
		if span > 0 {
			out.RequestsPerSecond = float64(out.SuccessfulRequests) / span
			out.PassagesPerSecond = float64(out.Passages) / span
			if out.TokensSource != "" {
				out.TokensPerSecond = ptr(float64(out.Tokens) / span)
			}
		}
		return
	}
	window := to.Sub(from).Seconds()
	var successes, passages, tokens float64
	for _, m := range in {
		for _, p := range m.r.TimeSeries {
			t := pointTime(m.r, p)
			length := p.IntervalSeconds
			if length <= 0 {
				continue
			}
			pEnd := t.Add(time.Duration(length * float64(time.Second)))
			inside := minTime(pEnd, to).Sub(maxTime(t, from)).Seconds()
			if inside <= 0 {
				continue
			}
			share := inside / length
			successes += float64(p.Successes) * share
			passages += p.PassagesPerSecond * length * share
			if p.TokensPerSecond != nil {
				tokens += *p.TokensPerSecond * length * share
			}
		}
	}
	out.RequestsPerSecond = successes / window
	out.PassagesPerSecond = passages / window
	if out.TokensSource != "" {
		out.TokensPerSecond = ptr(tokens / window)
	}
}

func pointTime(r *Result, p SecondPoint) time.Time {
	if !p.Time.IsZero() {
		return p.Time
	}
	return r.StartedAt.Add(time.Duration(p.Second) * time.Second)
}

// mergeLatency merges every histogram and reads the summaries from the merged ones.
func mergeLatency(out *Result, in []*mergeable) error {
	merged := map[string]*hdrhistogram.Histogram{}
	for _, name := range []string{"latency", "latency_uncorrected", "send_lag", "latency_failed", "server_queue", "server_tokenize", "server_inference", "server_total"} {
		merged[name] = newHist()
	}
	anyOpen, failedKept := false, true
	for _, m := range in {
		anyOpen = anyOpen || m.r.OpenLoop != nil
		// Files from before failed requests' latencies were kept cannot add to them.
		failedKept = failedKept && (m.r.FailedRequests == 0 || m.r.Histograms.LatencyFailed != "")
	}
	for _, m := range in {
		for name, h := range m.hists {
			src := h
			if name == "latency_uncorrected" && m.r.OpenLoop == nil {
				// A closed loop measures from the actual send: its latency is the uncorrected
				// figure as well.
				src = m.hists["latency"]
			}
			if dropped := merged[name].Merge(src); dropped > 0 {
				return fmt.Errorf("%s: histograms.%s: %d values outside 1 µs to 1 h", m.name, name, dropped)
			}
		}
	}
	lat := merged["latency"]
	out.LatencyMetrics = summarize(lat)
	out.LatencySpectrum = spectrum(lat)
	out.LatencyHistogram = histogramBuckets(lat)
	out.Histograms = &Histograms{Unit: HistogramUnit, Latency: encodeHist(lat)}
	if failed := merged["latency_failed"]; failedKept && failed.TotalCount() > 0 {
		out.LatencyMetricsAll = allLatency(lat, failed)
		out.Histograms.LatencyFailed = encodeHist(failed)
	}
	if anyOpen {
		out.LatencyMetricsUncorrected = ptr(summarize(merged["latency_uncorrected"]))
		out.LatencySpectrumUncorrected = spectrum(merged["latency_uncorrected"])
		out.Histograms.LatencyUncorrected = encodeHist(merged["latency_uncorrected"])
		out.Histograms.SendLag = encodeHist(merged["send_lag"])
		out.OpenLoop = mergeOpenLoop(in, merged["send_lag"])
	}

	var timed int64
	var overhead, overheadWeight float64
	for _, m := range in {
		st := m.r.ServerTiming
		if st == nil {
			continue
		}
		timed += st.Requests
		if st.ClientOverheadMeanSeconds != nil {
			// The mean is over the responses that carried the total header: the total
			// histogram's count.
			n := float64(m.hists["server_total"].TotalCount())
			overhead += *st.ClientOverheadMeanSeconds * n
			overheadWeight += n
		}
	}
	if timed > 0 {
		out.ServerTiming = &ServerTiming{
			Requests:  timed,
			Queue:     summaryPtr(merged["server_queue"]),
			Tokenize:  summaryPtr(merged["server_tokenize"]),
			Inference: summaryPtr(merged["server_inference"]),
			Total:     summaryPtr(merged["server_total"]),
		}
		if overheadWeight > 0 {
			out.ServerTiming.ClientOverheadMeanSeconds = ptr(overhead / overheadWeight)
		}
		h := out.Histograms
		h.ServerQueue, h.ServerTokenize = encodeHist(merged["server_queue"]), encodeHist(merged["server_tokenize"])
		h.ServerInference, h.ServerTotal = encodeHist(merged["server_inference"]), encodeHist(merged["server_total"])
	}
	return nil
}

// mergeOpenLoop adds the open-loop parts' schedules: their rates add, and the combined
// schedule was kept only if every part kept its own.
func mergeOpenLoop(in []*mergeable, sendLag *hdrhistogram.Histogram) *OpenLoopStats {
	ol := &OpenLoopStats{RateKept: true, SendLag: summarize(sendLag)}
	var arrivals []string
	for _, m := range in {
		p := m.r.OpenLoop
		if p == nil {
			continue
		}
		ol.TargetRate += p.TargetRate
		ol.ScheduledRequests += p.ScheduledRequests
		ol.SentRequests += p.SentRequests
		ol.LateRequests += p.LateRequests
		ol.UnsentRequests += p.UnsentRequests
		ol.LateThresholdSeconds = max(ol.LateThresholdSeconds, p.LateThresholdSeconds)
		ol.RateKept = ol.RateKept && p.RateKept
		ol.AchievedSendRate += p.AchievedSendRate
		arrivals = append(arrivals, p.Arrival)
	}
	ol.Arrival = same(arrivals, "mixed")
	return ol
}

// mergeSeries lays every part's seconds on one wall-clock grid starting at origin, each on
// the whole second nearest its start (parts start at different fractions of a second, so a
// point may shift by up to half a second), and adds the points that land together.
func mergeSeries(in []*mergeable, origin time.Time) ([]SecondPoint, error) {
	type slot struct {
		p    SecondPoint
		hist *hdrhistogram.Histogram
		gpu  bool
	}
	slots := map[int]*slot{}
	gpuFrom := gpuSource(in)
	for mi, m := range in {
		for i, p := range m.r.TimeSeries {
			k := int(math.Round(pointTime(m.r, p).Sub(origin).Seconds()))
			s := slots[k]
			if s == nil {
				s = &slot{hist: newHist()}
				s.p.Second = k
				s.p.Time = origin.Add(time.Duration(k) * time.Second).UTC()
				slots[k] = s
			}
			q := &s.p
			q.IntervalSeconds = max(q.IntervalSeconds, p.IntervalSeconds)
			q.Sent += p.Sent
			q.Completed += p.Completed
			q.Successes += p.Successes
			q.Errors += p.Errors
			q.RequestsPerSecond += p.RequestsPerSecond
			q.PassagesPerSecond += p.PassagesPerSecond
			if p.TokensPerSecond != nil {
				q.TokensPerSecond = ptr(*p.TokensPerSecond + deref(q.TokensPerSecond))
			}
			q.InFlight += p.InFlight
			if mi == gpuFrom && !s.gpu {
				q.GPUUtilizationPercent, q.GPUMemoryUsedBytes, s.gpu = p.GPUUtilizationPercent, p.GPUMemoryUsedBytes, true
			}
			if dropped := s.hist.Merge(m.series[i]); dropped > 0 {
				return nil, fmt.Errorf("%s: time_series[%d]: %d latencies outside 1 µs to 1 h", m.name, i, dropped)
			}
		}
	}
	if len(slots) == 0 {
		return nil, nil
	}
	keys := make([]int, 0, len(slots))
	for k := range slots {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := make([]SecondPoint, 0, keys[len(keys)-1]-keys[0]+1)
	for k := keys[0]; k <= keys[len(keys)-1]; k++ {
		s := slots[k]
		if s == nil {
			// A second in which no part was measuring (windows apart): an empty point keeps
			// the series one point per second.
			out = append(out, SecondPoint{Second: k, Time: origin.Add(time.Duration(k) * time.Second).UTC(), IntervalSeconds: 1})
			continue
		}
		s.p.Latency = summarize(s.hist)
		s.p.LatencyHDR = encodeHist(s.hist)
		out = append(out, s.p)
	}
	return out, nil
}

func deref(p *float64) float64 {
	if p == nil {
		return 0
	}
	return *p
}

// gpuSource picks the input whose GPU telemetry the merged result keeps: the first that has
// any. Parts that loaded the same service sampled the same GPUs, so their readings must not
// be added; -1 when none had telemetry.
func gpuSource(in []*mergeable) int {
	for i, m := range in {
		if m.r.GPU.Source != "" && m.r.GPU.Source != GPUSourceUnavailable {
			return i
		}
	}
	return -1
}

func mergeTelemetry(out *Result, in []*mergeable) {
	i := gpuSource(in)
	if i < 0 {
		out.GPU = GPUTelemetry{Source: GPUSourceUnavailable, Reason: "no part had GPU telemetry"}
		return
	}
	out.GPU = in[i].r.GPU
	out.GPUUtilizationPercent = in[i].r.GPUUtilizationPercent
	note := fmt.Sprintf("GPU readings are %s's alone: every part sampled the same servers, so theirs are not added.", in[i].name)
	out.GPU.Note = strings.TrimSpace(out.GPU.Note + " " + note)
}

// mergeConfig describes the combined load: what the parts share, their concurrency and rates
// added, and "mixed" (or a list) where they differ. The parts keep their own in Merged.Parts.
func mergeConfig(parts []MergePart) Config {
	var c Config
	col := func(f func(Config) string) []string {
		out := make([]string, len(parts))
		for i, p := range parts {
			out[i] = f(p.Config)
		}
		return out
	}
	c.ServiceURL = joinUnique(col(func(c Config) string { return c.ServiceURL }))
	c.API = same(col(func(c Config) string { return c.API }), "mixed")
	c.Endpoint = joinUnique(col(func(c Config) string { return c.Endpoint }))
	c.Model = same(col(func(c Config) string { return c.Model }), "mixed")
	c.DataFile = joinUnique(col(func(c Config) string { return c.DataFile }))
	c.Mode = same(col(func(c Config) string { return c.Mode }), "mixed")
	c.Arrival = same(col(func(c Config) string { return c.Arrival }), "mixed")
	c.SLO = same(col(func(c Config) string { return c.SLO }), "")
	first := parts[0].Config
	c.BatchSize, c.DataPassages = first.BatchSize, first.DataPassages
	for _, p := range parts {
		pc := p.Config
		if pc.BatchSize != c.BatchSize {
			c.BatchSize = 0 // differs: see the parts
		}
		if pc.DataPassages != c.DataPassages {
			c.DataPassages = 0
		}
		c.MaxConcurrentRequests += pc.MaxConcurrentRequests
		c.Rate += pc.Rate
		c.MaxRequests += pc.MaxRequests
		c.DurationSeconds = max(c.DurationSeconds, pc.DurationSeconds)
		c.WarmupSeconds = max(c.WarmupSeconds, pc.WarmupSeconds)
		c.TimeoutSeconds = max(c.TimeoutSeconds, pc.TimeoutSeconds)
	}
	return c
}

func mergeMachines(parts []MergePart) Machine {
	m := parts[0].Machine
	hosts := make([]string, len(parts))
	for i, p := range parts {
		hosts[i] = p.Machine.Hostname
	}
	if joined := joinUnique(hosts); joined != m.Hostname {
		// Several load generators: name them all, and count their CPUs together.
		m.Hostname = joined
		m.CPUs = 0
		for _, p := range parts {
			m.CPUs += p.Machine.CPUs
		}
	}
	return m
}

// serviceWarnings says when the parts did not all measure the same service.
func serviceWarnings(parts []MergePart) []string {
	describe := func(p MergePart) string {
		return fmt.Sprintf("%s measured %s (engine %s, model %s)", p.File, unknownIfEmpty(p.Config.ServiceURL), unknownIfEmpty(p.Server.Engine), unknownIfEmpty(p.Server.Model))
	}
	first := parts[0]
	var differ []string
	for _, p := range parts[1:] {
		if strings.TrimRight(p.Config.ServiceURL, "/") != strings.TrimRight(first.Config.ServiceURL, "/") ||
			p.Server.Engine != first.Server.Engine || p.Server.Model != first.Server.Model ||
			p.Server.DType != first.Server.DType || p.Config.API != first.Config.API {
			differ = append(differ, describe(p))
		}
	}
	if len(differ) == 0 {
		return nil
	}
	return []string{"the parts measured different services: " + describe(first) + "; " + strings.Join(differ, "; ") +
		". The merged figures describe their combined load, not one service"}
}

func describeWindows(parts []MergePart) string {
	ws := make([]string, len(parts))
	for i, p := range parts {
		ws[i] = fmt.Sprintf("%s %s to %s", p.File, p.StartedAt.UTC().Format("15:04:05.000"), p.EndedAt.UTC().Format("15:04:05.000"))
	}
	return strings.Join(ws, ", ")
}

// same returns the value all of vs share, else differ.
func same(vs []string, differ string) string {
	for _, v := range vs[1:] {
		if v != vs[0] {
			return differ
		}
	}
	return vs[0]
}

// joinUnique lists the distinct non-empty values, in order of first appearance.
func joinUnique(vs []string) string {
	var out []string
	for _, v := range vs {
		if v != "" && !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return strings.Join(out, ", ")
}

func unknownIfEmpty(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
