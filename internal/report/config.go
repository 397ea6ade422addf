package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/embedbench/embedbench/internal/stress"
)

// detail is one labelled value of a run's configuration table.
type detail struct {
	Key, Value string
}

// detailGroup is a titled block of a run's configuration table.
type detailGroup struct {
	Title   string
	Details []detail
}

// runDetails lists everything a reader needs to reproduce or question a run.
func runDetails(run Run) []detailGroup {
	r := run.Result
	c := r.Config
	s := run.Setup()
	var groups []detailGroup
	add := func(title string, ds ...detail) {
		var kept []detail
		for _, d := range ds {
			if d.Value != "" {
				kept = append(kept, d)
			}
		}
		if len(kept) > 0 {
			groups = append(groups, detailGroup{title, kept})
		}
	}

	add("What was measured",
		detail{"model", orUnknown(s.Model)},
		detail{"weights", s.WeightsKind + describeIf(s.Weights)},
		detail{"engine", orUnknown(s.Engine)},
		detail{"dtype", orUnknown(s.DType)},
		detail{"pooling", s.Pooling},
		detail{"device", orUnknown(s.Device)},
		detail{"embedding dim", nonZero(r.Server.EmbeddingDim)},
		detail{"result file", run.Path},
	)
	add("Load",
		detail{"service", c.ServiceURL},
		detail{"api / endpoint", strings.TrimSpace(c.API + " " + c.Endpoint)},
		detail{"load", describeLoad(r)},
		detail{"client batch size", nonZero(c.BatchSize)},
		detail{"duration asked / measured", fmt.Sprintf("%s s / %.1f s", trimFloat(c.DurationSeconds), r.TestDurationSeconds)},
		detail{"warm-up", trimFloat(c.WarmupSeconds) + " s"},
		detail{"timeout", trimFloat(c.TimeoutSeconds) + " s"},
		detail{"data", dataDescription(c)},
		detail{"SLO", c.SLO},
		detail{"command", strings.Join(c.CommandLine, " ")},
		detail{"window", windowDescription(r)},
		detail{"partial", partialDescription(r)},
	)
	groups = append(groups, mergeDetails(r)...)
	add("Requests",
		detail{"finished / ok / failed", fmt.Sprintf("%d / %d / %d", r.TotalRequests, r.SuccessfulRequests, r.FailedRequests)},
		detail{"unfinished at the end", nonZero64(r.UnfinishedRequests)},
		detail{"warm-up requests (excluded)", nonZero64(r.WarmupRequests)},
		detail{"errors by class", ErrorClasses(r)},
		detail{"passages / tokens", fmt.Sprintf("%d / %d%s", r.Passages, r.Tokens, tokenSource(r))},
		detail{"latency min / max / stddev", fmt.Sprintf("%s / %s / %s", formatSeconds(r.LatencyMetrics.Min), formatSeconds(r.LatencyMetrics.Max), formatSeconds(r.LatencyMetrics.Stddev))},
	)
	if ol := r.OpenLoop; ol != nil {
		add("Open loop",
			detail{"target rate", fmt.Sprintf("%s/s %s", trimFloat(ol.TargetRate), ol.Arrival)},
			detail{"achieved send rate", fmt.Sprintf("%.2f/s", ol.AchievedSendRate)},
			detail{"scheduled / sent / unsent", fmt.Sprintf("%d / %d / %d", ol.ScheduledRequests, ol.SentRequests, ol.UnsentRequests)},
			detail{"late requests", fmt.Sprintf("%d (more than %s behind schedule)", ol.LateRequests, formatSeconds(ol.LateThresholdSeconds))},
			detail{"rate kept", yesNo(ol.RateKept)},
		)
	}
	if st := r.ServerTiming; st != nil {
		add("Server's own time split (p50 / p99)",
			detail{"requests with timing", nonZero64(st.Requests)},
			detail{"queue", p50p99(st.Queue)},
			detail{"tokenize", p50p99(st.Tokenize)},
			detail{"inference", p50p99(st.Inference)},
			detail{"server total", p50p99(st.Total)},
		)
	}
	gpu := []detail{{"telemetry", r.GPU.Source + describeIf(r.GPU.Reason)}, {"note", r.GPU.Note}}
	for _, d := range r.GPU.Devices {
		gpu = append(gpu, detail{fmt.Sprintf("GPU %d", d.Index), gpuDevice(d)})
	}
	add("GPU", gpu...)
	add("Load generator",
		detail{"machine", fmt.Sprintf("%s, %s/%s, %d CPUs %s", r.Machine.Hostname, r.Machine.OS, r.Machine.Arch, r.Machine.CPUs, r.Machine.CPUModel)},
		detail{"CPU per request", formatSeconds(r.Client.CPUPerRequestSeconds)},
		detail{"max in flight", nonZero(r.Client.MaxInFlight)},
		detail{"tool", strings.TrimSpace(fmt.Sprintf("%s %s %s", r.Tool.Name, r.Tool.Version, r.Tool.GoVersion))},
	)
	add("Server's /health", detail{r.Server.HealthURL, healthBody(r.Server)})
	return groups
}

func describeIf(s string) string {
	if s == "" {
		return ""
	}
	return " (" + s + ")"
}

func nonZero(v int) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprint(v)
}

func nonZero64(v int64) string {
	if v == 0 {
		return ""
	}
	return fmt.Sprint(v)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "NO: latency from the intended send time is the honest figure"
}

func dataDescription(c stress.Config) string {
	if c.DataFile == "" {
		return ""
	}
	return fmt.Sprintf("%s (%d passages)", c.DataFile, c.DataPassages)
}

func windowDescription(r *stress.Result) string {
	if r.StartedAt.IsZero() {
		return ""
	}
	return r.StartedAt.UTC().Format("2006-01-02 15:04:05") + " to " + r.EndedAt.UTC().Format("15:04:05 UTC")
}

func partialDescription(r *stress.Result) string {
	if !r.Partial {
		return ""
	}
	return "yes: " + r.PartialReason
}

func tokenSource(r *stress.Result) string {
	if r.TokensSource == "" {
		return " (the server reported no token counts)"
	}
	return " (tokens from " + r.TokensSource + ")"
}

// ErrorClasses lists a run's failed requests by class, each with an example of its message:
// "http_401: 10 (e.g. "401 Unauthorized: ...")"; "" when none failed.
func ErrorClasses(r *stress.Result) string {
	if len(r.Errors) == 0 {
		return ""
	}
	classes := make([]string, 0, len(r.Errors))
	for class := range r.Errors {
		classes = append(classes, class)
	}
	sort.Strings(classes)
	parts := make([]string, 0, len(classes))
	for _, class := range classes {
		p := fmt.Sprintf("%s: %d", class, r.Errors[class])
		if ex := r.ErrorExamples[class]; ex != "" {
			p += fmt.Sprintf(" (e.g. %q)", excerpt(ex, 160))
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, "; ")
}

func p50p99(m *stress.LatencyMetrics) string {
	if m == nil {
		return ""
	}
	return formatSeconds(m.P50) + " / " + formatSeconds(m.P99)
}

func gpuDevice(d stress.GPUDeviceSummary) string {
	var parts []string
	if d.Name != "" {
		parts = append(parts, d.Name)
	}
	pct := func(name string, v *float64) {
		if v != nil {
			parts = append(parts, fmt.Sprintf("%s %.1f%%", name, *v))
		}
	}
	pct("utilisation mean", d.UtilizationMeanPercent)
	pct("max", d.UtilizationMaxPercent)
	pct("SM activity", d.SMActivityMeanPercent)
	pct("tensor activity", d.TensorActivityMeanPercent)
	if d.MemoryUsedMaxBytes != nil {
		m := "memory max " + formatGiB(float64(*d.MemoryUsedMaxBytes))
		if d.MemoryTotalBytes != nil {
			m += " of " + formatGiB(float64(*d.MemoryTotalBytes))
		}
		parts = append(parts, m)
	}
	if note := d.ClockNote(); note != "" {
		parts = append(parts, note)
	} else if d.PowerMeanWatts != nil {
		parts = append(parts, fmt.Sprintf("power mean %.0f W", *d.PowerMeanWatts))
	}
	parts = append(parts, fmt.Sprintf("%d samples", d.Samples))
	return strings.Join(parts, ", ")
}

func healthBody(s stress.ServerInfo) string {
	if s.HealthError != "" {
		return "error: " + s.HealthError
	}
	if len(s.Health) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, s.Health, "", "  "); err != nil {
		return string(s.Health)
	}
	return buf.String()
}

func excerpt(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
