package stress

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/embedbench/embedbench/internal/gpu"
)

// GPU telemetry choices (Options.GPU).
const (
	GPUAuto    = "auto"    // NVML when the service is on this machine, else the server's /metrics
	GPUNVML    = "nvml"    // local NVML only
	GPUMetrics = "metrics" // the server's /metrics only
	GPUNone    = "none"
)

// NVMLUtilizationNote is written beside every utilisation figure.
const NVMLUtilizationNote = "GPU utilization is NVML's: the share of time in which any kernel was running, " +
	"not how many SMs were busy; sm_activity and tensor_activity (GPM, Hopper and later) tell that."

const gpuSampleInterval = time.Second

// telemetry samples GPUs during the measured window.
type telemetry struct {
	source, reason string
	sample         func(context.Context) ([]gpu.DeviceSample, error)
	closeFn        func()

	mu       sync.Mutex
	samples  []gpu.DeviceSample
	firstErr string
}

// openTelemetry picks the telemetry source. It never fails: without a source, telemetry is
// "unavailable" with a reason.
func openTelemetry(ctx context.Context, client *http.Client, opts Options) *telemetry {
	if opts.GPU == GPUNone {
		return &telemetry{source: GPUSourceUnavailable, reason: "disabled (--gpu none)"}
	}
	var reasons []string
	if opts.GPU == GPUNVML || (opts.GPU == GPUAuto && isLocalService(opts.ServiceURL)) {
		m, err := gpu.Open()
		switch {
		case err != nil:
			reasons = append(reasons, err.Error())
		case !m.Available():
			reasons = append(reasons, m.Reason())
			m.Close()
		default:
			return &telemetry{
				source:  GPUSourceNVML,
				sample:  func(context.Context) ([]gpu.DeviceSample, error) { return m.Sample() },
				closeFn: m.Close,
			}
		}
		if opts.GPU == GPUNVML {
			return &telemetry{source: GPUSourceUnavailable, reason: strings.Join(reasons, "; ")}
		}
	} else if opts.GPU == GPUAuto {
		reasons = append(reasons, "service is on another machine, so local NVML does not see its GPU")
	}
	metricsURL := strings.TrimRight(opts.ServiceURL, "/") + "/metrics"
	scrape := func(ctx context.Context) ([]gpu.DeviceSample, string, error) {
		return scrapeGPUMetrics(ctx, client, metricsURL)
	}
	_, source, err := scrape(ctx)
	if err != nil {
		reasons = append(reasons, err.Error())
		return &telemetry{source: GPUSourceUnavailable, reason: strings.Join(reasons, "; ")}
	}
	return &telemetry{
		source: source,
		sample: func(ctx context.Context) ([]gpu.DeviceSample, error) {
			s, _, err := scrape(ctx)
			return s, err
		},
	}
}

func (t *telemetry) close() {
	if t.closeFn != nil {
		t.closeFn()
	}
}

// sampleFrom samples every second of the measured window until ctx ends. The reading taken at
// the window's start is discarded: NVML utilisation and GPM activity describe the interval
// before a reading, which then was warm-up or idle time.
func (t *telemetry) sampleFrom(ctx context.Context, windowStart time.Time) {
	if t.sample == nil {
		return
	}
	wait := time.NewTimer(time.Until(windowStart))
	defer wait.Stop()
	select {
	case <-wait.C:
	case <-ctx.Done():
		return
	}
	_, _ = t.sample(ctx)
	tick := time.NewTicker(gpuSampleInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			s, err := t.sample(ctx)
			t.mu.Lock()
			if err != nil {
				if t.firstErr == "" && ctx.Err() == nil {
					t.firstErr = err.Error()
				}
			} else {
				t.samples = append(t.samples, s...)
			}
			t.mu.Unlock()
		}
	}
}

// summary condenses the samples taken in [windowStart, end].
func (t *telemetry) summary(windowStart, end time.Time) (GPUTelemetry, *float64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := GPUTelemetry{Source: t.source, Reason: t.reason}
	if t.source == GPUSourceUnavailable {
		return out, nil
	}
	out.Note = NVMLUtilizationNote
	out.SampleIntervalSeconds = gpuSampleInterval.Seconds()
	byDevice := map[int][]gpu.DeviceSample{}
	var utilSum float64
	var utilN int
	for _, s := range t.samples {
		if s.Time.Before(windowStart) || s.Time.After(end) {
			continue
		}
		byDevice[s.Index] = append(byDevice[s.Index], s)
		out.Series = append(out.Series, GPUSample{
			Seconds:               s.Time.Sub(windowStart).Seconds(),
			Device:                s.Index,
			UtilizationPercent:    s.UtilizationPercent,
			MemoryUsedBytes:       s.MemoryUsedBytes,
			PowerWatts:            s.PowerWatts,
			SMClockMHz:            s.SMClockMHz,
			SMActivityPercent:     s.SMActivityPercent,
			TensorActivityPercent: s.TensorActivityPercent,
			TemperatureC:          s.TemperatureC,
			ClockLimits:           s.ClockLimits,
		})
		if s.UtilizationPercent != nil {
			utilSum += *s.UtilizationPercent
			utilN++
		}
	}
	if len(byDevice) == 0 {
		out.Reason = "no GPU reading fell inside the measured window"
		if t.firstErr != "" {
			out.Reason += ": " + t.firstErr
		}
		return out, nil
	}
	indexes := make([]int, 0, len(byDevice))
	for i := range byDevice {
		indexes = append(indexes, i)
	}
	sort.Ints(indexes)
	for _, i := range indexes {
		out.Devices = append(out.Devices, summarizeDevice(i, byDevice[i]))
	}
	if utilN == 0 {
		return out, nil
	}
	return out, ptr(utilSum / float64(utilN))
}

func summarizeDevice(index int, samples []gpu.DeviceSample) GPUDeviceSummary {
	d := GPUDeviceSummary{Index: index, Samples: len(samples), Name: samples[0].Name, UUID: samples[0].UUID}
	var util, mem, power, clock, sm, tensor, temp []float64
	var memMax uint64
	limited, limitsRead := map[string]int{}, 0
	for _, s := range samples {
		if s.PowerLimitWatts != nil {
			d.PowerLimitWatts = s.PowerLimitWatts
		}
		if s.SMClockMaxMHz != nil {
			d.SMClockMaxMHz = s.SMClockMaxMHz
		}
		if s.TemperatureC != nil {
			temp = append(temp, *s.TemperatureC)
		}
		if s.ClockLimitsRead {
			limitsRead++
			for _, l := range s.ClockLimits {
				limited[l]++
			}
		}
		if s.UtilizationPercent != nil {
			util = append(util, *s.UtilizationPercent)
		}
		if s.MemoryUsedBytes != nil {
			mem = append(mem, float64(*s.MemoryUsedBytes))
			memMax = max(memMax, *s.MemoryUsedBytes)
		}
		if s.MemoryTotalBytes != nil {
			d.MemoryTotalBytes = s.MemoryTotalBytes
		}
		if s.PowerWatts != nil {
			power = append(power, *s.PowerWatts)
		}
		if s.SMClockMHz != nil {
			clock = append(clock, *s.SMClockMHz)
		}
		if s.SMActivityPercent != nil {
			sm = append(sm, *s.SMActivityPercent)
		}
		if s.TensorActivityPercent != nil {
			tensor = append(tensor, *s.TensorActivityPercent)
		}
	}
	d.UtilizationMeanPercent, d.UtilizationMaxPercent, d.UtilizationP50Percent = mean(util), maxOf(util), median(util)
	d.MemoryUsedMeanBytes = mean(mem)
	if len(mem) > 0 {
		d.MemoryUsedMaxBytes = ptr(memMax)
	}
	d.PowerMeanWatts, d.PowerMaxWatts = mean(power), maxOf(power)
	d.SMClockMeanMHz = mean(clock)
	d.TemperatureMaxC = maxOf(temp)
	if limitsRead > 0 {
		d.ClockLimited = map[string]float64{}
		for _, r := range gpu.ClockLimitNames {
			d.ClockLimited[r.Name] = float64(limited[r.Name]) / float64(limitsRead)
		}
	}
	d.SMActivityMeanPercent = mean(sm)
	d.TensorActivityMeanPercent = mean(tensor)
	return d
}

// fillSeries puts GPU readings into the per-second points. A reading taken about k seconds in
// describes the second before it, so it goes to point k-1.
func (t *telemetry) fillSeries(series []SecondPoint, windowStart time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	sums := map[int][2]float64{}
	mem := map[int]map[int]uint64{}
	for _, s := range t.samples {
		off := s.Time.Sub(windowStart).Seconds()
		sec := int(math.Round(off)) - 1
		if off <= 0 || sec >= len(series) {
			continue
		}
		if s.UtilizationPercent != nil {
			v := sums[sec]
			sums[sec] = [2]float64{v[0] + *s.UtilizationPercent, v[1] + 1}
		}
		if s.MemoryUsedBytes != nil {
			if mem[sec] == nil {
				mem[sec] = map[int]uint64{}
			}
			mem[sec][s.Index] = *s.MemoryUsedBytes
		}
	}
	for i := range series {
		if v, ok := sums[i]; ok {
			series[i].GPUUtilizationPercent = ptr(v[0] / v[1])
		}
		if m, ok := mem[i]; ok {
			var total uint64
			for _, b := range m {
				total += b
			}
			series[i].GPUMemoryUsedBytes = ptr(total)
		}
	}
}

func mean(v []float64) *float64 {
	if len(v) == 0 {
		return nil
	}
	var s float64
	for _, x := range v {
		s += x
	}
	return ptr(s / float64(len(v)))
}

func maxOf(v []float64) *float64 {
	if len(v) == 0 {
		return nil
	}
	m := v[0]
	for _, x := range v[1:] {
		m = max(m, x)
	}
	return ptr(m)
}

func median(v []float64) *float64 {
	if len(v) == 0 {
		return nil
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return ptr(s[len(s)/2])
}

// isLocalService reports whether the service URL's host is this machine, so that local NVML
// sees the service's GPU.
func isLocalService(serviceURL string) bool {
	u, err := url.Parse(serviceURL)
	if err != nil {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return true
	}
	ips, err := net.LookupIP(host)
	if err != nil {
		return false
	}
	addrs, _ := net.InterfaceAddrs()
	for _, ip := range ips {
		if ip.IsLoopback() || ip.IsUnspecified() {
			return true
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				return true
			}
		}
	}
	return false
}

// scrapeGPUMetrics reads GPU gauges from a Prometheus text endpoint: embedbench's own
// (embedbench_gpu_*) or DCGM exporter's (DCGM_FI_*). It reports which it found.
func scrapeGPUMetrics(ctx context.Context, client *http.Client, metricsURL string) ([]gpu.DeviceSample, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	if err != nil {
		return nil, "", fmt.Errorf("GPU metrics: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", fmt.Errorf("GPU metrics: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, "", fmt.Errorf("GPU metrics: reading %s: %w", metricsURL, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", fmt.Errorf("GPU metrics: %s answered %s", metricsURL, resp.Status)
	}
	samples, source := parseGPUMetrics(body, time.Now())
	if source == "" {
		return nil, "", fmt.Errorf("GPU metrics: %s has no embedbench_gpu_* or DCGM_FI_* gauges", metricsURL)
	}
	return samples, source, nil
}

// parseGPUMetrics extracts per-GPU readings from Prometheus text exposition. Embedbench's
// gauges win over DCGM's when both are present.
func parseGPUMetrics(text []byte, now time.Time) ([]gpu.DeviceSample, string) {
	type reading struct {
		name   string
		gpu    int
		value  float64
		reason string // embedbench_gpu_clock_limited's
	}
	var own, dcgm []reading
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		name, labels, value, ok := parsePromLine(sc.Text())
		if !ok {
			continue
		}
		idx := 0
		if g, ok := labels["gpu"]; ok {
			n, err := strconv.Atoi(g)
			if err != nil {
				continue
			}
			idx = n
		}
		switch {
		case strings.HasPrefix(name, "embedbench_gpu_"):
			own = append(own, reading{name, idx, value, labels["reason"]})
		case strings.HasPrefix(name, "DCGM_FI_"):
			dcgm = append(dcgm, reading{name, idx, value, ""})
		}
	}
	readings, source := own, GPUSourceServerMetrics
	if len(own) == 0 {
		readings, source = dcgm, GPUSourceDCGM
	}
	byGPU := map[int]*gpu.DeviceSample{}
	var fbFree = map[int]float64{}
	for _, r := range readings {
		s := byGPU[r.gpu]
		if s == nil {
			s = &gpu.DeviceSample{Index: r.gpu, Time: now}
			byGPU[r.gpu] = s
		}
		v := r.value
		switch r.name {
		case "embedbench_gpu_utilization_percent", "DCGM_FI_DEV_GPU_UTIL":
			s.UtilizationPercent = ptr(v)
		case "embedbench_gpu_memory_used_bytes":
			s.MemoryUsedBytes = ptr(uint64(v))
		case "embedbench_gpu_memory_total_bytes":
			s.MemoryTotalBytes = ptr(uint64(v))
		case "DCGM_FI_DEV_FB_USED": // MiB
			s.MemoryUsedBytes = ptr(uint64(v * (1 << 20)))
		case "DCGM_FI_DEV_FB_FREE":
			fbFree[r.gpu] = v
		case "embedbench_gpu_power_watts", "DCGM_FI_DEV_POWER_USAGE":
			s.PowerWatts = ptr(v)
		case "embedbench_gpu_sm_clock_mhz", "DCGM_FI_DEV_SM_CLOCK":
			s.SMClockMHz = ptr(v)
		case "embedbench_gpu_sm_clock_max_mhz", "DCGM_FI_DEV_MAX_SM_CLOCK":
			s.SMClockMaxMHz = ptr(v)
		case "embedbench_gpu_power_limit_watts", "DCGM_FI_DEV_POWER_MGMT_LIMIT":
			s.PowerLimitWatts = ptr(v)
		case "embedbench_gpu_temperature_celsius", "DCGM_FI_DEV_GPU_TEMP":
			s.TemperatureC = ptr(v)
		case "embedbench_gpu_clock_limited": // one gauge a reason, 1 while it holds the clock
			s.ClockLimitsRead = true
			if s.ClockLimits == nil {
				s.ClockLimits = []string{}
			}
			if v != 0 && r.reason != "" {
				s.ClockLimits = append(s.ClockLimits, r.reason)
			}
		case "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "DCGM_FI_DEV_CLOCKS_EVENT_REASONS": // NVML's bit mask
			s.ClockLimits, s.ClockLimitsRead = gpu.ClockLimitsOf(uint64(v)), true
		case "embedbench_gpu_sm_activity_percent":
			s.SMActivityPercent = ptr(v)
		case "embedbench_gpu_tensor_activity_percent":
			s.TensorActivityPercent = ptr(v)
		case "DCGM_FI_PROF_SM_ACTIVE": // a ratio
			s.SMActivityPercent = ptr(v * 100)
		case "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE":
			s.TensorActivityPercent = ptr(v * 100)
		}
	}
	for i, free := range fbFree {
		if s := byGPU[i]; s != nil && s.MemoryUsedBytes != nil {
			s.MemoryTotalBytes = ptr(*s.MemoryUsedBytes + uint64(free*(1<<20)))
		}
	}
	if len(byGPU) == 0 {
		return nil, ""
	}
	out := make([]gpu.DeviceSample, 0, len(byGPU))
	for _, s := range byGPU {
		out = append(out, *s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out, source
}

// parsePromLine parses one sample line of the Prometheus text format:
// name{label="value",...} value [timestamp].
func parsePromLine(line string) (name string, labels map[string]string, value float64, ok bool) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return "", nil, 0, false
	}
	i := strings.IndexAny(line, "{ \t")
	if i <= 0 {
		return "", nil, 0, false
	}
	name, rest := line[:i], line[i:]
	if rest[0] == '{' {
		var n int
		labels, n, ok = parsePromLabels(rest)
		if !ok {
			return "", nil, 0, false
		}
		rest = rest[n:]
	}
	fields := strings.Fields(rest)
	if len(fields) == 0 {
		return "", nil, 0, false
	}
	v, err := strconv.ParseFloat(fields[0], 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return "", nil, 0, false
	}
	return name, labels, v, true
}

// parsePromLabels parses {k="v",...} at the start of s and returns how many bytes it took.
func parsePromLabels(s string) (map[string]string, int, bool) {
	labels := map[string]string{}
	i := 1
	for {
		for i < len(s) && (s[i] == ' ' || s[i] == ',') {
			i++
		}
		if i >= len(s) {
			return nil, 0, false
		}
		if s[i] == '}' {
			return labels, i + 1, true
		}
		eq := strings.IndexByte(s[i:], '=')
		if eq < 0 || i+eq+1 >= len(s) || s[i+eq+1] != '"' {
			return nil, 0, false
		}
		key := strings.TrimSpace(s[i : i+eq])
		i += eq + 2
		var val strings.Builder
		for ; i < len(s) && s[i] != '"'; i++ {
			if s[i] == '\\' && i+1 < len(s) {
				i++
				switch s[i] {
				case 'n':
					val.WriteByte('\n')
				default:
					val.WriteByte(s[i])
				}
				continue
			}
			val.WriteByte(s[i])
		}
		if i >= len(s) {
			return nil, 0, false
		}
		labels[key] = val.String()
		i++
	}
}
