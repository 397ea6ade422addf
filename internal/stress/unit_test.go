package stress

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embedbench/embedbench/internal/gpu"
)

func TestBodiesCycleThroughPassages(t *testing.T) {
	data := []string{"a", "b", "c", "d", "e"}
	p, err := newPayload(APIEmbed, "http://x/", "", data, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{{"a", "b"}, {"c", "d"}, {"e", "a"}, {"b", "c"}}
	for n, w := range want {
		var body struct{ Texts []string }
		if err := json.Unmarshal(p.body(int64(n)), &body); err != nil {
			t.Fatalf("request %d: %v", n, err)
		}
		if strings.Join(body.Texts, ",") != strings.Join(w, ",") {
			t.Errorf("request %d sends %v, want %v", n, body.Texts, w)
		}
	}
	if p.endpoint != "http://x/embed" {
		t.Errorf("endpoint %s", p.endpoint)
	}
}

func TestOpenAIBodyCarriesModelAndEscapes(t *testing.T) {
	p, err := newPayload(APIOpenAI, "http://x", `m"1`, []string{"line\nbreak \"q\" \u2028"}, 1)
	if err != nil {
		t.Fatal(err)
	}
	var body struct {
		EncodingFormat string `json:"encoding_format"`
		Input          []string
	}
	if err := json.Unmarshal(p.body(0), &body); err != nil {
		t.Fatalf("%s: %v", p.body(0), err)
	}
	if body.Input[0] != "line\nbreak \"q\" \u2028" || body.EncodingFormat != "float" || p.endpoint != "http://x/v1/embeddings" {
		t.Errorf("body %+v endpoint %s", body, p.endpoint)
	}
	var m struct{ Model string }
	json.Unmarshal(p.body(0), &m)
	if m.Model != `m"1` {
		t.Errorf("model %q", m.Model)
	}
}

func TestPayloadRejectsBadInput(t *testing.T) {
	for _, c := range []struct {
		api, url string
		data     []string
		batch    int
	}{
		{"grpc", "http://x", []string{"a"}, 1},
		{APIEmbed, "http://x", nil, 1},
		{APIEmbed, "http://x", []string{"a"}, 0},
		{APIEmbed, "http://", []string{"a"}, 1},
	} {
		if _, err := newPayload(c.api, c.url, "", c.data, c.batch); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestCheckResponses(t *testing.T) {
	embed, _ := newPayload(APIEmbed, "http://x", "", []string{"a"}, 2)
	openai, _ := newPayload(APIOpenAI, "http://x", "", []string{"a"}, 2)
	tei, _ := newPayload(APITEI, "http://x", "", []string{"a"}, 2)
	h := http.Header{}
	for _, c := range []struct {
		name string
		p    *payload
		body string
		bad  bool
		dim  int
	}{
		{"embed ok", embed, `{"embeddings":[[1,2,3],[4,5,6]],"model":"m"}`, false, 3},
		{"embed one short", embed, `{"embeddings":[[1,2,3]]}`, true, 0},
		{"embed empty row", embed, `{"embeddings":[[1,2,3],[]]}`, true, 0},
		{"embed not json", embed, `Internal error`, true, 0},
		{"embed missing", embed, `{"vectors":[[1],[2]]}`, true, 0},
		{"openai ok", openai, `{"data":[{"embedding":[1,2]},{"embedding":[3,4]}],"usage":{"prompt_tokens":9}}`, false, 2},
		{"openai base64", openai, `{"data":[{"embedding":"AAAA"},{"embedding":"AAAA"}]}`, false, -1},
		{"openai no embedding", openai, `{"data":[{"index":0},{"index":1}]}`, true, 0},
		{"tei ok", tei, `[[1],[2]]`, false, 1},
		{"tei three", tei, `[[1],[2],[3]]`, true, 0},
		{"embed spaced numbers", embed, `{"embeddings": [ [ -1.5e-3 , 2 ], [3E+2,-0] ]}`, false, 2},
		// A 200 that is not embeddings is a bad response, whatever its shape.
		{"embed ragged", embed, `{"embeddings":[[0.1,0.2,0.3],[0.4]]}`, true, 0},
		{"embed strings", embed, `{"embeddings":[["a","b"],["c","d"]]}`, true, 0},
		{"embed nulls (NaN through orjson)", embed, `{"embeddings":[[null,null],[1,2]]}`, true, 0},
		{"embed NaN (Python's json)", embed, `{"embeddings":[[NaN,0.1],[1,2]]}`, true, 0},
		{"embed nested", embed, `{"embeddings":[[1,2],[[3],[4]]]}`, true, 0},
		{"embed trailing garbage", embed, `{"embeddings":[[1,2],[3,4]]} garbage`, true, 0},
		{"embed truncated", embed, `{"embeddings":[[1,2],[3,4]`, true, 0},
		{"openai mixed kinds", openai, `{"data":[{"embedding":"AAAA"},{"embedding":[1]}]}`, true, 0},
	} {
		got, bad := c.p.check([]byte(c.body), h)
		if (bad != "") != c.bad {
			t.Errorf("%s: problem %q, want bad=%v", c.name, bad, c.bad)
		}
		if !c.bad && got.dim != c.dim {
			t.Errorf("%s: dim %d, want %d", c.name, got.dim, c.dim)
		}
	}
	got, _ := openai.check([]byte(`{"data":[{"embedding":[1]},{"embedding":[1]}],"usage":{"prompt_tokens":9}}`), h)
	if got.tokens != 9 || !got.usage {
		t.Errorf("usage tokens %+v", got)
	}
	got, _ = embed.check([]byte(`{"embeddings":[[1],[2]]}`), http.Header{HeaderTokens: {"17"}})
	if got.tokens != 17 || got.usage {
		t.Errorf("header tokens %+v", got)
	}
}

func TestParseSLO(t *testing.T) {
	s, err := ParseSLO("p99<200ms, success>99.9%, p99.9<=1s, mean<500us, rps>=10, errors<1%")
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		metric, op string
		threshold  float64
	}{{"p99", "<", 0.2}, {"success", ">", 99.9}, {"p99.9", "<=", 1}, {"mean", "<", 0.0005}, {"rps", ">=", 10}, {"errors", "<", 1}}
	for i, w := range want {
		c := s.clauses[i]
		if c.Metric != w.metric || c.Op != w.op || !within(c.Threshold, w.threshold, 1e-9) {
			t.Errorf("clause %d = %+v, want %+v", i, c, w)
		}
	}
	for _, bad := range []string{"", "p99", "p99<200", "p99<fast", "success>99.9", "success>101%", "latency<1s", "p99<-1ms", "rps>5ms", "p99=200ms"} {
		if _, err := ParseSLO(bad); err == nil {
			t.Errorf("ParseSLO(%q) accepted", bad)
		}
	}
}

func TestSLONotMeasuredFails(t *testing.T) {
	s, _ := ParseSLO("p99<1s,tokens_per_s>1")
	v := s.Evaluate(&Result{TotalRequests: 10, SuccessRate: 0})
	if v.Passed || v.Checks[0].Note == "" || v.Checks[1].Note == "" {
		t.Errorf("latency with no successes and tokens/s never reported must fail: %+v", v)
	}
}

func TestParseGPUMetrics(t *testing.T) {
	dcgm := `# HELP DCGM_FI_DEV_GPU_UTIL GPU utilization (in %).
# TYPE DCGM_FI_DEV_GPU_UTIL gauge
DCGM_FI_DEV_GPU_UTIL{gpu="0",UUID="GPU-a",device="nvidia0",modelName="NVIDIA H200",Hostname="h"} 93
DCGM_FI_DEV_GPU_UTIL{gpu="1",UUID="GPU-b",device="nvidia1",modelName="NVIDIA H200",Hostname="h"} 12
DCGM_FI_DEV_FB_USED{gpu="0",UUID="GPU-a",label="a \"quoted\", {braced}"} 1024
DCGM_FI_DEV_FB_FREE{gpu="0",UUID="GPU-a"} 1024
DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{gpu="0"} 0.42 1700000000000
other_metric 5
`
	s, source := parseGPUMetrics([]byte(dcgm), time.Now())
	if source != GPUSourceDCGM || len(s) != 2 {
		t.Fatalf("source %q, %d devices", source, len(s))
	}
	if *s[0].UtilizationPercent != 93 || *s[1].UtilizationPercent != 12 || *s[0].MemoryUsedBytes != 1<<30 ||
		*s[0].MemoryTotalBytes != 2<<30 || !within(*s[0].TensorActivityPercent, 42, 1e-9) {
		t.Errorf("GPU 0 read as %+v", s[0])
	}
	own := "embedbench_gpu_utilization_percent{gpu=\"0\"} 50\nDCGM_FI_DEV_GPU_UTIL{gpu=\"0\"} 99\n"
	s, source = parseGPUMetrics([]byte(own), time.Now())
	if source != GPUSourceServerMetrics || *s[0].UtilizationPercent != 50 {
		t.Errorf("own gauges should win: %q %+v", source, s)
	}
	if _, source := parseGPUMetrics([]byte("http_requests_total 5\n"), time.Now()); source != "" {
		t.Errorf("no GPU gauges, yet source %q", source)
	}
}

// What holds a GPU's clock down, from either exporter: DCGM's NVML bit mask (power cap 0x4 and
// idle 0x1 here, idle not being a slowdown), or embedbench's gauge a reason.
func TestParseGPUClockLimits(t *testing.T) {
	dcgm := "DCGM_FI_DEV_SM_CLOCK{gpu=\"0\"} 1665\nDCGM_FI_DEV_MAX_SM_CLOCK{gpu=\"0\"} 1980\n" +
		"DCGM_FI_DEV_POWER_MGMT_LIMIT{gpu=\"0\"} 700\nDCGM_FI_DEV_GPU_TEMP{gpu=\"0\"} 71\n" +
		"DCGM_FI_DEV_CLOCK_THROTTLE_REASONS{gpu=\"0\"} 5\nDCGM_FI_DEV_GPU_UTIL{gpu=\"1\"} 3\n"
	s, _ := parseGPUMetrics([]byte(dcgm), time.Now())
	if len(s) != 2 || *s[0].SMClockMaxMHz != 1980 || *s[0].PowerLimitWatts != 700 || *s[0].TemperatureC != 71 ||
		!s[0].ClockLimitsRead || !slices.Equal(s[0].ClockLimits, []string{gpu.ClockLimitPowerCap}) {
		t.Fatalf("DCGM read as %+v", s)
	}
	if s[1].ClockLimitsRead {
		t.Errorf("GPU 1 had no reasons exported, yet reads as told: %+v", s[1])
	}
	own := "embedbench_gpu_sm_clock_mhz{gpu=\"0\"} 1700\n" +
		"embedbench_gpu_clock_limited{gpu=\"0\",reason=\"power_cap\"} 0\n" +
		"embedbench_gpu_clock_limited{gpu=\"0\",reason=\"thermal\"} 1\n"
	s, _ = parseGPUMetrics([]byte(own), time.Now())
	if !s[0].ClockLimitsRead || !slices.Equal(s[0].ClockLimits, []string{gpu.ClockLimitThermal}) {
		t.Errorf("embedbench's gauges read as %+v", s[0])
	}
}

// The run's summary of a device: the share of readings each reason held the clock, counted over
// the readings that told (one here did not), and the line the stress log prints.
func TestDeviceSummarySaysWhatHeldTheClock(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	samples := []gpu.DeviceSample{
		{SMClockMHz: f(1700), SMClockMaxMHz: f(1980), PowerWatts: f(690), PowerLimitWatts: f(700), TemperatureC: f(70),
			ClockLimits: []string{gpu.ClockLimitPowerCap}, ClockLimitsRead: true},
		{SMClockMHz: f(1800), SMClockMaxMHz: f(1980), PowerWatts: f(692), PowerLimitWatts: f(700), TemperatureC: f(72),
			ClockLimits: []string{gpu.ClockLimitPowerCap, gpu.ClockLimitThermal}, ClockLimitsRead: true},
		{SMClockMHz: f(1980), PowerWatts: f(400), TemperatureC: f(66), ClockLimits: []string{}, ClockLimitsRead: true},
		{SMClockMHz: f(1980), PowerWatts: f(400)},
	}
	d := summarizeDevice(0, samples)
	if !within(d.ClockLimited[gpu.ClockLimitPowerCap], 2.0/3, 1e-9) || !within(d.ClockLimited[gpu.ClockLimitThermal], 1.0/3, 1e-9) ||
		d.ClockLimited[gpu.ClockLimitHWThermal] != 0 || *d.TemperatureMaxC != 72 || *d.PowerLimitWatts != 700 {
		t.Fatalf("summary %+v, clock limited %v", d, d.ClockLimited)
	}
	want := "SM clock 1865 of 1980 MHz, 546 of 700 W, 72 °C at most; held down by power_cap in 67% of readings, thermal in 33% of readings"
	if got := d.ClockNote(); got != want {
		t.Errorf("ClockNote:\n got %q\nwant %q", got, want)
	}
	if note := summarizeDevice(0, []gpu.DeviceSample{{UtilizationPercent: f(50)}}).ClockNote(); note != "" {
		t.Errorf("no clock reading, yet a note: %q", note)
	}
}

func TestPoissonArrivalsKeepMeanRate(t *testing.T) {
	r := &runner{opts: Options{Rate: 1000, Arrival: ArrivalPoisson, Seed: 7}}
	gap := r.arrivals()
	var total time.Duration
	var short int
	const n = 20000
	for range n {
		g := gap()
		total += g
		if g < time.Millisecond/2 {
			short++
		}
	}
	if mean := total / n; mean < 980*time.Microsecond || mean > 1020*time.Microsecond {
		t.Errorf("mean gap %s, want 1ms", mean)
	}
	// Exponential gaps: P(gap < mean/2) = 1 - e^-0.5 = 39%; constant gaps would give 0%.
	if frac := float64(short) / n; frac < 0.37 || frac > 0.42 {
		t.Errorf("%.1f%% of gaps under half the mean, want about 39%%", frac*100)
	}
	c := (&runner{opts: Options{Rate: 3, Arrival: ArrivalConstant}}).arrivals()
	var sum time.Duration
	for range 3 {
		sum += c()
	}
	if sum != time.Second {
		t.Errorf("3 constant gaps at 3/s sum to %s, want exactly 1s", sum)
	}
}

// A server slower than the dead-service window is slow, not dead.
func TestSlowServerIsNotDead(t *testing.T) {
	f := &fakeEmbedder{delay: func(int64) time.Duration { return 700 * time.Millisecond }}
	srv := start(t, f)
	opts := baseOptions(srv.URL)
	opts.MaxConcurrent = 2
	opts.MaxRequests = 4
	opts.DeadAfter = 300 * time.Millisecond
	res, err := Run(context.Background(), opts)
	if err != nil || res.SuccessfulRequests != 4 {
		t.Fatalf("slow server: %v, %+v", err, res)
	}
}

func TestOptionsValidation(t *testing.T) {
	for _, o := range []Options{
		{ServiceURL: "localhost:8000", Passages: []string{"a"}, Duration: time.Second},
		{ServiceURL: "http://x", Passages: []string{"a"}},
		{ServiceURL: "http://x", Passages: []string{"a"}, Duration: time.Second, Rate: -1},
		{ServiceURL: "http://x", Passages: []string{"a"}, Duration: time.Second, Arrival: "bursty"},
		{ServiceURL: "http://x", Passages: []string{"a"}, Duration: time.Second, MaxConcurrent: -2},
	} {
		if res, err := Run(context.Background(), o); err == nil || res != nil {
			t.Errorf("%+v accepted", o)
		}
	}
}

// The statistics, fed known latencies with no clock involved, must match the exact values
// within HDR's 3 significant digits.
func TestRecorderStatisticsExact(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := newRecorder(true, t0, lateThreshold)
	// 1000 requests, one per millisecond over one second; request i takes (i+1) ms from its
	// intended time and i/2 ms less from its actual send.
	for i := range 1000 {
		intended := t0.Add(time.Duration(i) * time.Millisecond)
		sent := intended.Add(time.Duration(i) * time.Millisecond / 2)
		done := intended.Add(time.Duration(i+1) * time.Millisecond)
		rec.sent(intended, sent, true)
		rec.record(&outcome{intended: intended, sent: sent, done: done, passages: 3, checked: checked{tokens: 10, dim: 4}})
	}
	c := summarize(rec.corrected)
	for _, q := range []struct {
		name      string
		got, want float64
	}{
		{"p50", c.P50, 0.500}, {"p90", c.P90, 0.900}, {"p95", c.P95, 0.950}, {"p99", c.P99, 0.990},
		{"p99.9", c.P999, 0.999}, {"max", c.Max, 1.000}, {"min", c.Min, 0.001}, {"mean", c.Mean, 0.5005},
		{"stddev", c.Stddev, 0.288675},
	} {
		if !within(q.got, q.want, 0.001) {
			t.Errorf("%s = %.6f, want %.6f within 0.1%%", q.name, q.got, q.want)
		}
	}
	u := summarize(rec.uncorrected)
	if !within(u.P50, 0.2505, 0.002) || !within(u.Max, 0.5005, 0.002) {
		t.Errorf("uncorrected p50 %.4f max %.4f, want 0.2505 and 0.5005", u.P50, u.Max)
	}
	lag := summarize(rec.sendLag)
	if rec.late != 997 || !within(lag.Max, 0.4995, 0.002) {
		t.Errorf("late %d (want 997 over 1 ms), lag max %.4f", rec.late, lag.Max)
	}
	if rec.passages != 3000 || rec.tokens != 10000 || rec.successes != 1000 {
		t.Errorf("counts: passages %d tokens %d successes %d", rec.passages, rec.tokens, rec.successes)
	}
	// Completions fall at 1, 3, ... 1999 ms after t0: 500 in each of seconds 0 and 1.
	rec.advance(t0.Add(2500 * time.Millisecond))
	if len(rec.series) != 2 {
		t.Fatalf("%d seconds in the series, want 2", len(rec.series))
	}
	s0, s1 := rec.series[0], rec.series[1]
	if s0.Completed != 500 || s1.Completed != 500 || s0.Sent+s1.Sent != 1000 || s0.RequestsPerSecond != 500 || s0.PassagesPerSecond != 1500 {
		t.Errorf("series %+v / %+v", s0, s1)
	}
	if s1.Latency.Min < 0.5 || s0.Latency.Max > 0.5005 {
		t.Errorf("per-second latency mixes seconds: %+v / %+v", s0.Latency, s1.Latency)
	}
	if *s0.TokensPerSecond != float64(10*s0.Successes) {
		t.Errorf("tokens/s in second 0: %v", *s0.TokensPerSecond)
	}
	sp := spectrum(rec.corrected)
	for i := 1; i < len(sp); i++ {
		if sp[i].Percentile <= sp[i-1].Percentile || sp[i].LatencySeconds < sp[i-1].LatencySeconds {
			t.Fatalf("spectrum not monotonic at %d: %+v %+v", i, sp[i-1], sp[i])
		}
	}
	if len(sp) < 30 || sp[len(sp)-1].Percentile != 100 {
		t.Errorf("spectrum of %d points ending %+v", len(sp), sp[len(sp)-1])
	}
}

func TestWaitsForLoadingService(t *testing.T) {
	var calls atomic.Int32
	f := &fakeEmbedder{}
	srv := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/health" && calls.Add(1) <= 2 {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"status":"loading"}`))
			return
		}
		f.ServeHTTP(w, r)
	}))
	opts := baseOptions(srv.URL)
	opts.MaxRequests = 5
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 3 || res.Server.HealthStatusCode != 200 || res.Server.Engine != "fake" || res.SuccessfulRequests != 5 {
		t.Errorf("after %d health calls: %+v", calls.Load(), res.Server)
	}
}

// vLLM and TEI answer /health with an empty 200; the model comes from /v1/models or /info,
// and openai requests then name the served model.
func TestModelFromVLLMAndTEIEndpoints(t *testing.T) {
	var sentModel atomic.Value
	f := &fakeEmbedder{}
	srv := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/health":
			return
		case "/v1/models":
			w.Write([]byte(`{"object":"list","data":[{"id":"answerdotai/ModernBERT-base","object":"model"}]}`))
			return
		case "/info":
			w.Write([]byte(`{"model_id":"BAAI/bge-small","model_dtype":"float16","version":"1.5"}`))
			return
		case "/v1/embeddings":
			body, _ := io.ReadAll(r.Body)
			var m struct{ Model string }
			json.Unmarshal(body, &m)
			sentModel.Store(m.Model)
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		f.ServeHTTP(w, r)
	}))
	opts := baseOptions(srv.URL)
	opts.MaxRequests = 3
	opts.API = APIOpenAI
	res, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Server.Model != "answerdotai/ModernBERT-base" || sentModel.Load() != "answerdotai/ModernBERT-base" || res.Server.Health != nil {
		t.Errorf("openai: server %+v, requests named %v", res.Server, sentModel.Load())
	}
	opts.API = APITEI
	res, err = Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Server.Model != "BAAI/bge-small" || res.Server.DType != "float16" {
		t.Errorf("tei: server %+v", res.Server)
	}
}

// An open loop far behind its schedule never sleeps; a request limit must still end it.
func TestOpenLoopRequestLimitBehindSchedule(t *testing.T) {
	srv := start(t, &fakeEmbedder{})
	opts := baseOptions(srv.URL)
	opts.Rate = 1e6
	opts.MaxConcurrent = 4
	opts.MaxRequests = 200
	done := make(chan struct{})
	var res *Result
	var err error
	go func() { res, err = Run(context.Background(), opts); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("open loop did not stop at its request limit")
	}
	if err != nil || res.TotalRequests != 200 {
		t.Errorf("got %v, %d requests; want 200", err, res.TotalRequests)
	}
}
