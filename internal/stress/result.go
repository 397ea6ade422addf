// Package stress is embedbench's load generator and its statistics.
//
// This file holds the result file's types: the JSON schema that `embedbench stress` writes and
// `embedbench compare` reads. Changes must stay additive (new fields, never renamed or
// retyped ones); bump SchemaVersion only for a change old readers would misread.
//
// Units: every duration and latency is in seconds (float64), as in the seed's stress_test.py;
// rates are per second; byte counts are bytes; percentages are 0-100; fractions are 0-1.
// A measurement that was not taken is null (a nil pointer) or absent, never zero or invented.
package stress

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// SchemaVersion is the version of the result file layout written by this package.
const SchemaVersion = 1

// ResultFilePrefix and ResultTimeLayout name result files as the seed did:
// stress_test_results_<timestamp>.json.
const (
	ResultFilePrefix = "stress_test_results_"
	ResultTimeLayout = "20060102_150405"
)

// Result is one stress run: everything a reader needs to judge and compare it.
type Result struct {
	// SchemaVersion is 0 in files written by the seed's Python stress_test.py, which ReadResult
	// also accepts (only the seed's fields are then filled).
	SchemaVersion int `json:"schema_version"`

	// The seed's fields, kept with their names and meanings.

	// TestDurationSeconds is the measured window: from the end of warm-up until the last
	// request issued in the window finished (so the requests still in flight at the planned end
	// are waited for, and counted); shorter than asked when the run was cut short.
	TestDurationSeconds float64 `json:"test_duration_seconds"`
	// TotalRequests counts requests issued in the measured window that finished with an outcome
	// (success or a classified error). Warm-up requests and requests abandoned unfinished at the
	// end are not included; see WarmupRequests and UnfinishedRequests.
	TotalRequests      int64 `json:"total_requests"`
	SuccessfulRequests int64 `json:"successful_requests"`
	// RequestsPerSecond is SuccessfulRequests / TestDurationSeconds, as the seed computed it.
	RequestsPerSecond float64 `json:"requests_per_second"`
	// LatencyMetrics covers successful requests. In open loop it is measured from each request's
	// intended send time (coordinated omission corrected); in closed loop from the actual send.
	LatencyMetrics LatencyMetrics `json:"latency_metrics"`

	// Counts and rates beyond the seed.

	FailedRequests int64 `json:"failed_requests"`
	// SuccessRate is SuccessfulRequests / TotalRequests as a fraction (0-1); 0 when nothing finished.
	SuccessRate float64 `json:"success_rate"`
	// WarmupRequests finished during warm-up and are excluded from every statistic.
	WarmupRequests int64 `json:"warmup_requests"`
	// UnfinishedRequests were sent in the measured window but had no answer when the run ended
	// (abandoned after the drain grace period, or cut off by Ctrl-C). Not in TotalRequests.
	UnfinishedRequests int64 `json:"unfinished_requests"`
	// Passages counts the passages (texts) embedded by successful requests.
	Passages          int64   `json:"passages"`
	PassagesPerSecond float64 `json:"passages_per_second"`
	// Tokens counts the tokens the server reported for successful requests; TokensPerSecond is
	// null when the server reported none (TokensSource says where they came from).
	Tokens          int64    `json:"tokens"`
	TokensPerSecond *float64 `json:"tokens_per_second"`
	// TokensSource is "usage" (OpenAI usage.prompt_tokens), "header" (X-Embedbench-Tokens) or
	// "" when the server reported no token counts.
	TokensSource string `json:"tokens_source"`
	// RequestBytes and ResponseBytes are the HTTP bodies sent and received in the measured window.
	RequestBytes  int64 `json:"request_bytes"`
	ResponseBytes int64 `json:"response_bytes"`

	// Latency beyond the seed's summary.

	// LatencyMetricsUncorrected is measured from the actual send time. Present in open loop
	// only, beside the corrected LatencyMetrics; in closed loop the two are the same thing.
	LatencyMetricsUncorrected *LatencyMetrics `json:"latency_metrics_uncorrected,omitempty"`
	// LatencyMetricsAll covers every request of the window that ended, failed ones at the
	// time they failed (a timeout at --timeout), as vegeta's and k6's latencies do. Present
	// when any request failed; otherwise it is LatencyMetrics. --slo's latency clauses use it.
	LatencyMetricsAll *LatencyMetrics `json:"latency_metrics_all,omitempty"`
	// LatencySpectrum is the HDR percentile distribution of LatencyMetrics, enough points to
	// draw a percentile curve (log-spaced towards the tail, as HdrHistogram prints it).
	LatencySpectrum []PercentilePoint `json:"latency_spectrum"`
	// LatencySpectrumUncorrected is the same for LatencyMetricsUncorrected (open loop only).
	LatencySpectrumUncorrected []PercentilePoint `json:"latency_spectrum_uncorrected,omitempty"`
	// LatencyHistogram buckets the latencies of LatencyMetrics (log-spaced bucket bounds).
	LatencyHistogram []HistogramBucket `json:"latency_histogram"`
	// Histograms holds the full HDR histograms behind every latency summary, so that results
	// of load generators that ran at once can be merged exactly (`embedbench merge`). Absent
	// in files written before they were added; such files cannot be merged.
	Histograms *Histograms `json:"histograms,omitempty"`

	// Errors counts failed requests by class: "http_<status>" (e.g. "http_429", "http_500"),
	// "timeout", "connection", "bad_response" (a 200 whose body is wrong, e.g. the wrong number
	// of embeddings), "canceled". The values sum to FailedRequests.
	Errors map[string]int64 `json:"errors"`
	// ErrorExamples holds one message per error class, to tell what went wrong.
	ErrorExamples map[string]string `json:"error_examples,omitempty"`

	// OpenLoop describes how well the generator kept the asked rate; nil in closed loop.
	OpenLoop *OpenLoopStats `json:"open_loop,omitempty"`

	// TimeSeries has one point per second of the measured window.
	TimeSeries []SecondPoint `json:"time_series"`

	// GPUUtilizationPercent is the mean GPU utilisation over the measured window, averaged over
	// devices; null when no telemetry was available. Details in GPU.
	GPUUtilizationPercent *float64     `json:"gpu_utilization_percent"`
	GPU                   GPUTelemetry `json:"gpu"`

	// ServerTiming is the server's own time split, from its X-Embedbench-*-Ms response headers;
	// nil when the server sent none.
	ServerTiming *ServerTiming `json:"server_timing,omitempty"`

	// Server is what the server said about itself.
	Server ServerInfo `json:"server"`

	// Client is the generator's own cost, to show it was not the bottleneck.
	Client ClientStats `json:"client"`

	// SLO is the verdict on --slo; nil when no SLO was given.
	SLO *SLOResult `json:"slo,omitempty"`

	Config  Config  `json:"config"`
	Machine Machine `json:"machine"`
	Tool    Tool    `json:"tool"`

	// StartedAt is when the measured window began (after warm-up); EndedAt when it ended.
	StartedAt time.Time `json:"started_at"`
	EndedAt   time.Time `json:"ended_at"`

	// Merged is set on a result made by `embedbench merge`: what it was made of and what the
	// merge found. Nil on a single run.
	Merged *MergeInfo `json:"merged,omitempty"`

	// Partial is true when the run did not complete as configured (interrupted, or ended early
	// because the service was unreachable); PartialReason says why.
	Partial       bool   `json:"partial"`
	PartialReason string `json:"partial_reason,omitempty"`
}

// LatencyMetrics summarises a latency distribution, in seconds. Mean, P50, P90 and P99 are the
// seed's; the rest are additions. Values come from an HDR histogram with 3 significant digits
// (Mean and Stddev from the same histogram).
type LatencyMetrics struct {
	Mean   float64 `json:"mean"`
	P50    float64 `json:"p50"`
	P90    float64 `json:"p90"`
	P99    float64 `json:"p99"`
	P95    float64 `json:"p95"`
	P999   float64 `json:"p99_9"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	Stddev float64 `json:"stddev"`
	// Count is the number of latencies summarised.
	Count int64 `json:"count"`
}

// HistogramUnit is the unit of the values recorded in encoded histograms.
const HistogramUnit = "microseconds"

// Histograms are HDR histograms in HdrHistogram's V2 compressed encoding (base64, as the
// HdrHistogram libraries of every language read and write it), values in microseconds from
// 1 µs to one hour with 3 significant digits. An empty string is an empty histogram.
type Histograms struct {
	Unit string `json:"unit"`
	// Latency is the histogram of LatencyMetrics; LatencyUncorrected of
	// LatencyMetricsUncorrected and SendLag of OpenLoop.SendLag (open loop only).
	Latency            string `json:"latency"`
	LatencyUncorrected string `json:"latency_uncorrected,omitempty"`
	SendLag            string `json:"send_lag,omitempty"`
	// LatencyFailed holds the failed requests' latencies: with Latency, LatencyMetricsAll.
	LatencyFailed string `json:"latency_failed,omitempty"`
	// Server* are the histograms of ServerTiming's stages.
	ServerQueue     string `json:"server_queue,omitempty"`
	ServerTokenize  string `json:"server_tokenize,omitempty"`
	ServerInference string `json:"server_inference,omitempty"`
	ServerTotal     string `json:"server_total,omitempty"`
}

// PercentilePoint is one point of a percentile curve: Percentile % of requests took at most
// LatencySeconds. Count is how many requests that is.
type PercentilePoint struct {
	Percentile     float64 `json:"percentile"`
	LatencySeconds float64 `json:"latency_seconds"`
	Count          int64   `json:"count"`
}

// HistogramBucket counts latencies in [LowerSeconds, UpperSeconds).
type HistogramBucket struct {
	LowerSeconds float64 `json:"lower_seconds"`
	UpperSeconds float64 `json:"upper_seconds"`
	Count        int64   `json:"count"`
}

// OpenLoopStats tells whether the open-loop schedule was kept.
type OpenLoopStats struct {
	// TargetRate is the asked rate (--rate), Arrival "constant" or "poisson".
	TargetRate float64 `json:"target_rate"`
	Arrival    string  `json:"arrival"`
	// ScheduledRequests were due in the measured window; SentRequests actually went out.
	ScheduledRequests int64 `json:"scheduled_requests"`
	SentRequests      int64 `json:"sent_requests"`
	// AchievedSendRate is SentRequests a second over the time they were being sent (the
	// planned window, or less when the run was cut short), as vegeta's Rate; the result's
	// requests_per_second, as vegeta's Throughput, also waits for the last answers.
	AchievedSendRate float64 `json:"achieved_send_rate"`
	// LateRequests found all --max-concurrent-requests in flight when they were due and so left
	// more than LateThresholdSeconds after their intended time (scheduler jitter alone never
	// counts). When it is non-zero the generator could not keep the rate, and only the
	// corrected latency is honest.
	LateRequests         int64   `json:"late_requests"`
	LateThresholdSeconds float64 `json:"late_threshold_seconds"`
	// UnsentRequests were due in the window but never sent before it ended (the backlog left
	// when the in-flight cap held them back).
	UnsentRequests int64 `json:"unsent_requests"`
	// SendLag summarises actual minus intended send time over sent requests.
	SendLag LatencyMetrics `json:"send_lag"`
	// RateKept is false when late or unsent requests show the rate was not kept.
	RateKept bool `json:"rate_kept"`
}

// SecondPoint is one second of the measured window. Requests are attributed to the second in
// which they finished, so the last points may lie past the planned end, while the requests in
// flight at the end drained.
type SecondPoint struct {
	// Second is the offset of the interval's start from StartedAt, in whole seconds.
	Second int `json:"second"`
	// Time is the interval's start on the wall clock (UTC), by which `merge` aligns the series
	// of load generators that ran at once. Zero in older files: StartedAt + Second then.
	Time time.Time `json:"time,omitzero"`
	// IntervalSeconds is the interval's length: 1, except for the last point, cut by the end
	// of the run. Counts cover the interval; rates are per second of it.
	IntervalSeconds float64 `json:"interval_seconds"`
	// Sent counts requests issued in this second; Completed those finished (successes + errors).
	Sent      int64 `json:"sent"`
	Completed int64 `json:"completed"`
	Successes int64 `json:"successes"`
	Errors    int64 `json:"errors"`
	// RequestsPerSecond is successes finished in the interval per second (the seed's throughput).
	RequestsPerSecond float64 `json:"requests_per_second"`
	PassagesPerSecond float64 `json:"passages_per_second"`
	// TokensPerSecond is null when the server reported no token counts.
	TokensPerSecond *float64 `json:"tokens_per_second"`
	// Latency of the successes finished in this second (corrected in open loop); zero Count
	// when none finished.
	Latency LatencyMetrics `json:"latency"`
	// LatencyHDR is Latency's histogram, encoded as in Histograms; empty when none finished.
	LatencyHDR string `json:"latency_hdr,omitempty"`
	// InFlight is the number of requests in flight at the end of the second.
	InFlight int `json:"in_flight"`
	// GPUUtilizationPercent is the mean over devices and samples within this second; null when
	// unavailable.
	GPUUtilizationPercent *float64 `json:"gpu_utilization_percent"`
	// GPUMemoryUsedBytes is the sum over devices of the last sample in this second.
	GPUMemoryUsedBytes *uint64 `json:"gpu_memory_used_bytes,omitempty"`
}

// GPU telemetry sources.
const (
	GPUSourceNVML          = "nvml"           // local NVML, the server's GPUs on this machine
	GPUSourceServerMetrics = "server_metrics" // the server's /metrics embedbench_gpu_* gauges
	GPUSourceDCGM          = "dcgm"           // DCGM exporter gauges in the server's /metrics
	GPUSourceUnavailable   = "unavailable"
)

// GPUTelemetry holds GPU readings taken within the measured window only.
type GPUTelemetry struct {
	// Source is one of the GPUSource* constants; Reason says why it is "unavailable".
	Source string `json:"source"`
	Reason string `json:"reason,omitempty"`
	// Note explains what the utilisation figure means (NVML counts the fraction of time in
	// which any kernel was running, not how busy the GPU's cores were).
	Note string `json:"note,omitempty"`
	// SampleIntervalSeconds is the sampling period.
	SampleIntervalSeconds float64            `json:"sample_interval_seconds,omitempty"`
	Devices               []GPUDeviceSummary `json:"devices,omitempty"`
	Series                []GPUSample        `json:"series,omitempty"`
}

// GPUDeviceSummary is one device over the measured window. Pointers are null when the source
// did not offer the reading.
type GPUDeviceSummary struct {
	Index            int     `json:"index"`
	Name             string  `json:"name,omitempty"`
	UUID             string  `json:"uuid,omitempty"`
	Samples          int     `json:"samples"`
	MemoryTotalBytes *uint64 `json:"memory_total_bytes,omitempty"`

	UtilizationMeanPercent *float64 `json:"utilization_mean_percent"`
	UtilizationMaxPercent  *float64 `json:"utilization_max_percent,omitempty"`
	UtilizationP50Percent  *float64 `json:"utilization_p50_percent,omitempty"`
	MemoryUsedMeanBytes    *float64 `json:"memory_used_mean_bytes,omitempty"`
	MemoryUsedMaxBytes     *uint64  `json:"memory_used_max_bytes,omitempty"`
	PowerMeanWatts         *float64 `json:"power_mean_watts,omitempty"`
	PowerMaxWatts          *float64 `json:"power_max_watts,omitempty"`
	PowerLimitWatts        *float64 `json:"power_limit_watts,omitempty"`
	SMClockMeanMHz         *float64 `json:"sm_clock_mean_mhz,omitempty"`
	SMClockMaxMHz          *float64 `json:"sm_clock_max_mhz,omitempty"`
	TemperatureMaxC        *float64 `json:"temperature_max_c,omitempty"`
	// ClockLimited is, for each reason NVML gave for holding the SM clock below its maximum
	// (gpu.ClockLimit*: "power_cap", "thermal", ...), the share of the readings in which it
	// did: a GPU at its power limit runs every kernel slower. Absent when NVML did not say.
	ClockLimited map[string]float64 `json:"clock_limited,omitempty"`
	// SMActivityMeanPercent and TensorActivityMeanPercent are NVML GPM metrics (Hopper and
	// later): the share of SM cycles busy, and of tensor-core pipe activity.
	SMActivityMeanPercent     *float64 `json:"sm_activity_mean_percent,omitempty"`
	TensorActivityMeanPercent *float64 `json:"tensor_activity_mean_percent,omitempty"`
}

// ClockNote says in a line how fast the device ran and what held it back, for a run's summary:
// "SM clock 1766 of 1980 MHz, 691 of 700 W, 71 °C at most; held down by power_cap in 92% of
// readings". Empty without a clock reading.
func (d GPUDeviceSummary) ClockNote() string {
	if d.SMClockMeanMHz == nil {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "SM clock %.0f", *d.SMClockMeanMHz)
	if d.SMClockMaxMHz != nil {
		fmt.Fprintf(&b, " of %.0f", *d.SMClockMaxMHz)
	}
	b.WriteString(" MHz")
	if d.PowerMeanWatts != nil {
		fmt.Fprintf(&b, ", %.0f", *d.PowerMeanWatts)
		if d.PowerLimitWatts != nil {
			fmt.Fprintf(&b, " of %.0f", *d.PowerLimitWatts)
		}
		b.WriteString(" W")
	}
	if d.TemperatureMaxC != nil {
		fmt.Fprintf(&b, ", %.0f °C at most", *d.TemperatureMaxC)
	}
	for i, r := range HeldReasons(d.ClockLimited) {
		sep := ", "
		if i == 0 {
			sep = "; held down by "
		}
		fmt.Fprintf(&b, "%s%s in %.0f%% of readings", sep, r, 100*d.ClockLimited[r])
	}
	return b.String()
}

// HeldReasons lists the reasons in shares (as GPUDeviceSummary.ClockLimited holds them) that
// held a clock down in any reading, the most frequent first.
func HeldReasons(shares map[string]float64) []string {
	reasons := make([]string, 0, len(shares))
	for r, share := range shares {
		if share > 0 {
			reasons = append(reasons, r)
		}
	}
	sort.Slice(reasons, func(i, j int) bool {
		a, b := shares[reasons[i]], shares[reasons[j]]
		return a > b || a == b && reasons[i] < reasons[j]
	})
	return reasons
}

// GPUSample is one reading of one device.
type GPUSample struct {
	// Seconds is the offset from StartedAt.
	Seconds               float64  `json:"seconds"`
	Device                int      `json:"device"`
	UtilizationPercent    *float64 `json:"utilization_percent,omitempty"`
	MemoryUsedBytes       *uint64  `json:"memory_used_bytes,omitempty"`
	PowerWatts            *float64 `json:"power_watts,omitempty"`
	SMClockMHz            *float64 `json:"sm_clock_mhz,omitempty"`
	SMActivityPercent     *float64 `json:"sm_activity_percent,omitempty"`
	TensorActivityPercent *float64 `json:"tensor_activity_percent,omitempty"`
	TemperatureC          *float64 `json:"temperature_c,omitempty"`
	ClockLimits           []string `json:"clock_limits,omitempty"`
}

// ServerTiming is the server's own account of where the time went, per successful request
// that carried the headers. Stages are nil when the server never sent that header.
type ServerTiming struct {
	// Requests counts successful responses that carried at least one timing header.
	Requests  int64           `json:"requests"`
	Queue     *LatencyMetrics `json:"queue,omitempty"`
	Tokenize  *LatencyMetrics `json:"tokenize,omitempty"`
	Inference *LatencyMetrics `json:"inference,omitempty"`
	Total     *LatencyMetrics `json:"total,omitempty"`
	// ClientOverheadMeanSeconds is the mean of (uncorrected client latency - server total):
	// network, HTTP and encoding outside the server's own clock. Nil without the total header.
	ClientOverheadMeanSeconds *float64 `json:"client_overhead_mean_seconds,omitempty"`
}

// ServerInfo is what the server reported about itself.
type ServerInfo struct {
	// HealthURL was queried before the run; HealthStatusCode is its HTTP status (0 when the
	// request failed, HealthError then says why); Health is its JSON body as received.
	HealthURL        string          `json:"health_url"`
	HealthStatusCode int             `json:"health_status_code"`
	Health           json.RawMessage `json:"health,omitempty"`
	HealthError      string          `json:"health_error,omitempty"`
	// Model, Engine, DType and Weights are read from /health (fields "model", "engine" or
	// "backend", "dtype", "weights"), then from /v1/models (openai) or /info (TEI), then from
	// the "model" field of embedding responses. Empty when the server did not say.
	Model   string `json:"model,omitempty"`
	Engine  string `json:"engine,omitempty"`
	DType   string `json:"dtype,omitempty"`
	Weights string `json:"weights,omitempty"`
	// EmbeddingDim is the vector length seen in responses (0 if none succeeded).
	EmbeddingDim int `json:"embedding_dim,omitempty"`
}

// ClientStats is the load generator's own resource use during the measured window.
type ClientStats struct {
	// CPUSeconds is user+system CPU time of the generator process.
	CPUSeconds float64 `json:"cpu_seconds"`
	// CPUPerRequestSeconds is CPUSeconds divided by requests finished in the window.
	CPUPerRequestSeconds float64 `json:"cpu_per_request_seconds"`
	// MaxInFlight is the highest number of concurrent requests seen.
	MaxInFlight int `json:"max_in_flight"`
	// Connections is how many TCP connections were opened during the run (warm-up included).
	Connections int64 `json:"connections"`
}

// SLOResult is the verdict on --slo.
type SLOResult struct {
	Spec   string     `json:"spec"`
	Passed bool       `json:"passed"`
	Checks []SLOCheck `json:"checks"`
}

// SLOCheck is one clause of the SLO, e.g. "p99<200ms": Metric "p99", Op "<", Threshold 0.2 and
// Unit "seconds"; or "success>99.9%": Metric "success", Threshold 99.9, Unit "percent".
type SLOCheck struct {
	Clause    string  `json:"clause"`
	Metric    string  `json:"metric"`
	Op        string  `json:"op"`
	Threshold float64 `json:"threshold"`
	Unit      string  `json:"unit"`
	Actual    float64 `json:"actual"`
	Passed    bool    `json:"passed"`
	// Note says why a clause could not be checked (it then fails), e.g. "not measured".
	Note string `json:"note,omitempty"`
}

// Config is the run's full configuration, as resolved (defaults filled in).
type Config struct {
	ServiceURL string `json:"service_url"`
	// API is "embed" (POST /embed {"texts"}), "openai" (POST /v1/embeddings) or "tei" (POST
	// /embed {"inputs"}); Endpoint is the full URL posted to.
	API      string `json:"api"`
	Endpoint string `json:"endpoint"`
	// Model is the model name sent in openai requests (empty otherwise).
	Model string `json:"model,omitempty"`
	// DataFile is the passages file; DataPassages how many passages it held.
	DataFile     string `json:"data_file"`
	DataPassages int    `json:"data_passages"`
	BatchSize    int    `json:"batch_size"`
	// Mode is "closed" (a fixed number of workers, each sending when the last answer came) or
	// "open" (requests sent on a schedule at Rate per second, capped at MaxConcurrentRequests
	// in flight).
	Mode                  string  `json:"mode"`
	MaxConcurrentRequests int     `json:"max_concurrent_requests"`
	Rate                  float64 `json:"rate,omitempty"`
	Arrival               string  `json:"arrival,omitempty"`
	DurationSeconds       float64 `json:"duration_seconds"`
	WarmupSeconds         float64 `json:"warmup_seconds"`
	TimeoutSeconds        float64 `json:"timeout_seconds"`
	// MaxRequests stops the run after this many requests in the measured window (0 = no limit).
	MaxRequests int64  `json:"max_requests,omitempty"`
	SLO         string `json:"slo,omitempty"`
	// Seed drives Poisson arrivals.
	Seed int64 `json:"seed,omitempty"`
	// CommandLine is the command as typed.
	CommandLine []string `json:"command_line,omitempty"`
}

// Machine describes the host the generator ran on.
type Machine struct {
	Hostname         string `json:"hostname"`
	OS               string `json:"os"`
	Arch             string `json:"arch"`
	CPUs             int    `json:"cpus"`
	CPUModel         string `json:"cpu_model,omitempty"`
	MemoryTotalBytes uint64 `json:"memory_total_bytes,omitempty"`
	Kernel           string `json:"kernel,omitempty"`
}

// Tool identifies the program that wrote the result.
type Tool struct {
	Name      string `json:"name"`
	Version   string `json:"version"`
	GoVersion string `json:"go_version"`
}

// ErrNotStressResult is returned, wrapped with the file's name, for a file that is not a
// stress result at all (another JSON file, or no JSON).
var ErrNotStressResult = errors.New("not a stress result")

// ReadResult reads a result file written by `embedbench stress`, or by the seed's Python
// stress_test.py (schema version 0: only the seed's fields are filled).
func ReadResult(path string) (*Result, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading stress result: %w", err)
	}
	if !json.Valid(data) {
		var r Result
		return nil, fmt.Errorf("parsing stress result %s: %w", path, json.Unmarshal(data, &r))
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return nil, fmt.Errorf("%s: %w: it is not a JSON object", path, ErrNotStressResult)
	}
	var r Result
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("parsing stress result %s: %w", path, err)
	}
	if r.SchemaVersion > SchemaVersion {
		return nil, fmt.Errorf("stress result %s has schema version %d; this embedbench reads up to %d", path, r.SchemaVersion, SchemaVersion)
	}
	if r.SchemaVersion < 0 || r.TotalRequests < 0 || r.SuccessfulRequests < 0 || r.SuccessfulRequests > r.TotalRequests {
		return nil, fmt.Errorf("stress result %s is inconsistent: %d successful of %d requests (schema %d)", path, r.SuccessfulRequests, r.TotalRequests, r.SchemaVersion)
	}
	// Any JSON object decodes into a Result; only the seed's own fields, which every writer
	// of result files has written, tell a result from another JSON file.
	var missing []string
	for _, key := range []string{"total_requests", "successful_requests", "latency_metrics"} {
		if _, ok := fields[key]; !ok {
			missing = append(missing, key)
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%s: %w: it has no %s", path, ErrNotStressResult, strings.Join(missing, ", "))
	}
	if r.SchemaVersion == 0 && r.TotalRequests > 0 {
		// The seed's files carry no failure count or success rate; derive them so readers need
		// no special case.
		r.FailedRequests = r.TotalRequests - r.SuccessfulRequests
		r.SuccessRate = float64(r.SuccessfulRequests) / float64(r.TotalRequests)
	}
	return &r, nil
}

// WriteResult writes r as indented JSON to dir/stress_test_results_<StartedAt UTC>.json and
// returns the path. The file is written under a temporary name and renamed, so a reader never
// sees half a file.
func WriteResult(dir string, r *Result) (string, error) {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", fmt.Errorf("encoding stress result: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("creating output directory: %w", err)
	}
	name := ResultFilePrefix + r.StartedAt.UTC().Format(ResultTimeLayout) + ".json"
	tmp, err := os.CreateTemp(dir, "."+name+".*")
	if err != nil {
		return "", fmt.Errorf("writing stress result: %w", err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return "", fmt.Errorf("writing stress result %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("writing stress result %s: %w", tmp.Name(), err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("writing stress result %s: %w", tmp.Name(), err)
	}
	// Two runs started in the same second must not overwrite each other: link (which fails on
	// an existing name) rather than rename.
	base := strings.TrimSuffix(name, ".json")
	for i := 1; ; i++ {
		path := filepath.Join(dir, name)
		if i > 1 {
			path = filepath.Join(dir, fmt.Sprintf("%s_%d.json", base, i))
		}
		err := os.Link(tmp.Name(), path)
		if err == nil {
			os.Remove(tmp.Name())
			return path, nil
		}
		if !errors.Is(err, fs.ErrExist) || i >= 1000 {
			os.Remove(tmp.Name())
			return "", fmt.Errorf("writing stress result %s: %w", path, err)
		}
	}
}

// WriteResultFile writes r as indented JSON to path, under a temporary name renamed into
// place, so that a reader never sees half a file and a failed write leaves any old file whole.
func WriteResultFile(path string, r *Result) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding stress result: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating output directory: %w", err)
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing stress result: %w", err)
	}
	_, err = tmp.Write(append(data, '\n'))
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(tmp.Name(), 0o644)
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("writing stress result %s: %w", path, err)
	}
	return nil
}
