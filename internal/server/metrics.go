package server

import (
	"slices"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/embedbench/embedbench/internal/engine"
	"github.com/embedbench/embedbench/internal/gpu"
)

// metrics are the server's Prometheus series, in a registry of their own so that tests and
// several servers in one process do not collide.
type metrics struct {
	registry *prometheus.Registry
	gpu      *gpuCollector

	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	inFlight      prometheus.Gauge
	inputs        prometheus.Counter
	inputTokens   prometheus.Counter
	batchRequests prometheus.Histogram
	batchSeqs     prometheus.Histogram
	stepSlots     *stepSlotsHistogram
	stepOccupancy prometheus.Histogram
	batchTokens   prometheus.Histogram
	batchSlots    prometheus.Histogram
	batchWaste    prometheus.Histogram
	batchDevice   prometheus.Histogram
	stepPhase     *prometheus.HistogramVec
	stageSeconds  *prometheus.HistogramVec
	bodiesReading prometheus.Gauge
	bodyTimeouts  prometheus.Counter
	connsRefused  *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{registry: prometheus.NewRegistry(), gpu: newGPUCollector(s.cfg.GPU)}
	reg := m.registry
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "embedbench_http_requests_total", Help: "HTTP requests answered, by route and status code (499: the client went away).",
	}, []string{"route", "code"})
	m.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "embedbench_http_request_duration_seconds", Help: "Time from request to response, by route and status code.",
		Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
	}, []string{"route", "code"})
	m.inFlight = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "embedbench_http_in_flight_requests", Help: "Requests admitted and not yet answered.",
	})
	m.inputs = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "embedbench_inputs_total", Help: "Texts (or token lists) embedded.",
	})
	m.inputTokens = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "embedbench_input_tokens_total", Help: "Real tokens embedded, [CLS]/[SEP] included.",
	})
	m.batchRequests = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "embedbench_batch_requests", Help: "Client requests with sequences in one device batch.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 11),
	})
	m.batchSeqs = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "embedbench_batch_sequences", Help: "Sequences in one device batch.",
		Buckets: prometheus.ExponentialBuckets(1, 2, 13),
	})
	m.batchTokens = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "embedbench_batch_tokens", Help: "Real tokens in one device batch.",
		Buckets: prometheus.ExponentialBuckets(16, 2, 14),
	})
	m.batchSlots = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "embedbench_batch_slot_tokens", Help: "Token slots the device computed for one batch, padding included.",
		Buckets: prometheus.ExponentialBuckets(16, 2, 14),
	})
	m.stepSlots = newStepSlotsHistogram()
	m.stepOccupancy = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "embedbench_step_occupancy_ratio", Help: "Share of one device step's token slots that held real tokens.",
		Buckets: prometheus.LinearBuckets(0.05, 0.05, 20),
	})
	m.batchWaste = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "embedbench_batch_padding_ratio", Help: "Share of a batch's token slots that held padding.",
		Buckets: prometheus.LinearBuckets(0, 0.05, 20),
	})
	m.batchDevice = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "embedbench_batch_device_seconds", Help: "Device time of one batch.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
	})
	m.stepPhase = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "embedbench_step_phase_seconds", Help: "Wall time of one device step by phase: pack, upload, execute (waiting behind other steps included), download, unpack.",
		Buckets: prometheus.ExponentialBuckets(0.00002, 2, 16),
	}, []string{"phase"})
	m.stageSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "embedbench_request_stage_seconds", Help: "Server-side time of successful requests by stage: tokenize, queue, inference.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18),
	}, []string{"stage"})
	m.bodiesReading = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "embedbench_http_bodies_reading", Help: "Requests whose body is still arriving (not yet admitted).",
	})
	m.bodyTimeouts = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "embedbench_http_body_timeouts_total", Help: "Requests whose body did not arrive within --body-read-timeout (answered 408, connection closed).",
	})
	m.connsRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "embedbench_http_connections_refused_total", Help: "Connections answered and closed at once: server_full (--max-connections, 503) or client_full (--max-connections-per-client, 429).",
	}, []string{"reason"})
	openConns := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "embedbench_http_open_connections", Help: "Client connections open now.",
	}, func() float64 { return float64(s.conns.Open()) })
	reg.MustRegister(m.bodiesReading, m.bodyTimeouts, m.connsRefused, openConns)
	reg.MustRegister(m.requests, m.duration, m.inFlight, m.inputs, m.inputTokens,
		m.batchRequests, m.batchSeqs, m.batchTokens, m.batchSlots, m.stepSlots, m.stepOccupancy, m.batchWaste, m.batchDevice, m.stepPhase, m.stageSeconds,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		&engineCollector{s: s}, m.gpu)
	return m
}

func (m *metrics) connRefused(reason string) { m.connsRefused.WithLabelValues(reason).Inc() }

// stepSlotsHistogram is embedbench_step_slots. Its buckets are the model's compiled step sizes
// once it is ready, so that each rung of the ladder (3,072 and 4,096 slots, say) counts apart;
// powers of two before that, and for a model whose steps are sized to what is queued.
type stepSlotsHistogram struct {
	h atomic.Pointer[prometheus.Histogram]
}

func newStepSlotsHistogram() *stepSlotsHistogram {
	c := &stepSlotsHistogram{}
	c.use(nil)
	return c
}

// use starts the histogram afresh with a bucket for each of these step sizes (none: powers of
// two from 64 to 32,768).
func (c *stepSlotsHistogram) use(slots []int) {
	buckets := prometheus.ExponentialBuckets(64, 2, 10)
	if len(slots) > 0 {
		buckets = buckets[:0]
		for _, s := range slices.Sorted(slices.Values(slots)) {
			if n := len(buckets); n == 0 || buckets[n-1] != float64(s) {
				buckets = append(buckets, float64(s))
			}
		}
	}
	h := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "embedbench_step_slots", Help: "Token slots of one device step: the rung of the step ladder it ran on.",
		Buckets: buckets,
	})
	c.h.Store(&h)
}

func (c *stepSlotsHistogram) Observe(v float64)                   { (*c.h.Load()).Observe(v) }
func (c *stepSlotsHistogram) Describe(ch chan<- *prometheus.Desc) { (*c.h.Load()).Describe(ch) }
func (c *stepSlotsHistogram) Collect(ch chan<- prometheus.Metric) { (*c.h.Load()).Collect(ch) }

func (m *metrics) observeRequest(route string, code int, elapsed time.Duration) {
	c := strconv.Itoa(code)
	m.requests.WithLabelValues(route, c).Inc()
	m.duration.WithLabelValues(route, c).Observe(elapsed.Seconds())
}

func (m *metrics) observeBatch(b engine.BatchReport) {
	if b.Err != nil {
		return // counted by the engine's device error counter
	}
	m.batchRequests.Observe(float64(b.Requests))
	m.batchSeqs.Observe(float64(b.Sequences))
	m.batchTokens.Observe(float64(b.Stats.RealTokens))
	m.batchSlots.Observe(float64(b.Stats.SlotTokens))
	if b.Stats.SlotTokens > 0 {
		m.batchWaste.Observe(float64(b.Stats.SlotTokens-b.Stats.RealTokens) / float64(b.Stats.SlotTokens))
	}
	m.batchDevice.Observe(b.Stats.Device.Seconds())
	for _, st := range b.Stats.PerStep {
		m.stepSlots.Observe(float64(st.Slots))
		if st.Slots > 0 {
			m.stepOccupancy.Observe(float64(st.RealTokens) / float64(st.Slots))
		}
		for _, p := range st.Phases {
			if p.Took > 0 { // a phase the path does not have (the native CPU pass packs inside its execute)
				m.stepPhase.WithLabelValues(p.Name).Observe(p.Took.Seconds())
			}
		}
	}
}

// engineCollector reads the engine's counters at scrape time.
type engineCollector struct{ s *Server }

var (
	descQueueSeqs    = prometheus.NewDesc("embedbench_queue_sequences", "Sequences waiting for a device.", nil, nil)
	descQueueTokens  = prometheus.NewDesc("embedbench_queue_tokens", "Tokens waiting for a device.", nil, nil)
	descQueueReqs    = prometheus.NewDesc("embedbench_queue_requests", "Requests accepted by the engine and not yet answered.", nil, nil)
	descBusy         = prometheus.NewDesc("embedbench_busy_replicas", "Replicas running a batch now.", nil, nil)
	descReplicas     = prometheus.NewDesc("embedbench_replicas", "Model replicas.", nil, nil)
	descBatches      = prometheus.NewDesc("embedbench_batches_total", "Device batches run.", nil, nil)
	descRealTokens   = prometheus.NewDesc("embedbench_device_real_tokens_total", "Real tokens the devices computed.", nil, nil)
	descSlotTokens   = prometheus.NewDesc("embedbench_device_slot_tokens_total", "Token slots the devices computed, padding included.", nil, nil)
	descDropped      = prometheus.NewDesc("embedbench_dropped_sequences_total", "Sequences dropped before reaching a device because their client went away.", nil, nil)
	descDeviceErrors = prometheus.NewDesc("embedbench_device_errors_total", "Device batches that failed.", nil, nil)
	descCut          = prometheus.NewDesc("embedbench_batches_cut_total", "Busy replicas' batches run on the step size below, the few sequences over it left to the next batch.", nil, nil)
)

func (c *engineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueueSeqs, descQueueTokens, descQueueReqs, descBusy, descReplicas, descBatches, descRealTokens, descSlotTokens, descDropped, descDeviceErrors, descCut} {
		ch <- d
	}
}

func (c *engineCollector) Collect(ch chan<- prometheus.Metric) {
	b := c.s.backend.Load()
	if b == nil {
		return // still loading: no engine yet
	}
	st := b.Engine.Stats()
	gauge := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	counter := func(d *prometheus.Desc, v uint64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v))
	}
	gauge(descQueueSeqs, float64(st.QueuedSequences))
	if st.QueuedTokens >= 0 { // absent rather than a 0 that would read as an empty queue
		gauge(descQueueTokens, float64(st.QueuedTokens))
	}
	gauge(descQueueReqs, float64(st.QueuedRequests))
	gauge(descBusy, float64(st.BusyReplicas))
	gauge(descReplicas, float64(st.Replicas))
	counter(descBatches, st.Batches)
	counter(descRealTokens, st.RealTokens)
	counter(descSlotTokens, st.SlotTokens)
	counter(descDropped, st.DroppedSequences)
	counter(descDeviceErrors, st.DeviceErrors)
	counter(descCut, st.CutBatches)
}

// gpuCollector exports the newest of NVML's readings, taken every gpuReadInterval whoever
// scrapes (gpu.Poller says why); on a machine without a GPU it exports nothing.
type gpuCollector struct{ poll *gpu.Poller }

// gpuReadInterval is how often the GPUs are read once /metrics has been scraped, and so the
// window of the GPM activity gauges: the stress tester's own cadence, and NVML's longest
// utilisation period.
const gpuReadInterval = time.Second

var (
	descGPUUtil     = prometheus.NewDesc("embedbench_gpu_utilization_percent", "NVML GPU utilisation: share of time a kernel was running.", []string{"gpu"}, nil)
	descGPUMemUsed  = prometheus.NewDesc("embedbench_gpu_memory_used_bytes", "GPU memory in use.", []string{"gpu"}, nil)
	descGPUMemTotal = prometheus.NewDesc("embedbench_gpu_memory_total_bytes", "GPU memory in all.", []string{"gpu"}, nil)
	descGPUPower    = prometheus.NewDesc("embedbench_gpu_power_watts", "GPU power draw.", []string{"gpu"}, nil)
	descGPUSMActive = prometheus.NewDesc("embedbench_gpu_sm_activity_percent", "GPM SM activity over the last second.", []string{"gpu"}, nil)
	descGPUTensor   = prometheus.NewDesc("embedbench_gpu_tensor_activity_percent", "GPM tensor-core activity over the last second.", []string{"gpu"}, nil)
	descGPUClock    = prometheus.NewDesc("embedbench_gpu_sm_clock_mhz", "GPU SM clock.", []string{"gpu"}, nil)
	descGPUClockMax = prometheus.NewDesc("embedbench_gpu_sm_clock_max_mhz", "The SM clock the GPU can reach.", []string{"gpu"}, nil)
	descGPUPowerCap = prometheus.NewDesc("embedbench_gpu_power_limit_watts", "The power limit the driver enforces.", []string{"gpu"}, nil)
	descGPUTemp     = prometheus.NewDesc("embedbench_gpu_temperature_celsius", "GPU core temperature.", []string{"gpu"}, nil)
	descGPULimited  = prometheus.NewDesc("embedbench_gpu_clock_limited", "1 while this reason holds the SM clock below its maximum (power_cap, thermal, hw_thermal, hw_slowdown, power_brake), else 0.", []string{"gpu", "reason"}, nil)
	gpuDescs        = []*prometheus.Desc{descGPUUtil, descGPUMemUsed, descGPUMemTotal, descGPUPower, descGPUSMActive, descGPUTensor,
		descGPUClock, descGPUClockMax, descGPUPowerCap, descGPUTemp, descGPULimited}
)

func newGPUCollector(mon *gpu.Monitor) *gpuCollector {
	if mon == nil || !mon.Available() {
		return &gpuCollector{}
	}
	return &gpuCollector{poll: gpu.NewPoller(mon, gpuReadInterval)}
}

// close stops the GPU readings; a scrape after it exports no GPU series.
func (c *gpuCollector) close() {
	if c.poll != nil {
		c.poll.Close()
	}
}

func (c *gpuCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range gpuDescs {
		ch <- d
	}
}

func (c *gpuCollector) Collect(ch chan<- prometheus.Metric) {
	if c.poll == nil {
		return
	}
	samples, err := c.poll.Latest()
	if err != nil {
		return // a failed reading leaves gaps in the series; the scrape itself still succeeds
	}
	for _, s := range samples {
		label := strconv.Itoa(s.Index)
		put := func(d *prometheus.Desc, v *float64) {
			if v != nil {
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, *v, label)
			}
		}
		putBytes := func(d *prometheus.Desc, v *uint64) {
			if v != nil {
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(*v), label)
			}
		}
		put(descGPUUtil, s.UtilizationPercent)
		putBytes(descGPUMemUsed, s.MemoryUsedBytes)
		putBytes(descGPUMemTotal, s.MemoryTotalBytes)
		put(descGPUPower, s.PowerWatts)
		put(descGPUSMActive, s.SMActivityPercent)
		put(descGPUTensor, s.TensorActivityPercent)
		put(descGPUClock, s.SMClockMHz)
		put(descGPUClockMax, s.SMClockMaxMHz)
		put(descGPUPowerCap, s.PowerLimitWatts)
		put(descGPUTemp, s.TemperatureC)
		if s.ClockLimitsRead {
			for _, r := range gpu.ClockLimitNames {
				on := 0.0
				if slices.Contains(s.ClockLimits, r.Name) {
					on = 1
				}
				ch <- prometheus.MustNewConstMetric(descGPULimited, prometheus.GaugeValue, on, label, r.Name)
			}
		}
	}
}
