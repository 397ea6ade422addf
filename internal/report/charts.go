package report

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"

	"github.com/go-echarts/go-echarts/v2/charts"
	"github.com/go-echarts/go-echarts/v2/opts"

	"github.com/embedbench/embedbench/internal/stress"
)

// chart is one figure of the report: its element id, heading, a sentence on how to read it,
// and the ECharts option as JavaScript (go-echarts builds the option; the page draws it).
type chart struct {
	ID      string
	Title   string
	Caption string
	Option  string
}

// jsFormatters are the axis label and tooltip functions the charts use.
const (
	// percentileLabel turns an HDR spectrum x value, 1/(1-p), back into "p%".
	percentileLabel = `function (v) { var p = 100 - 100 / v; return (Math.round(p * 1000) / 1000) + '%'; }`
	// msValue labels a latency given in milliseconds, switching to seconds from 1000 ms.
	msValue = `function (v) { if (typeof v !== 'number') { return v; } if (v === 0) { return '0'; } if (v >= 1000) { var s = v / 1000; return (s < 10 ? s.toFixed(2) : s < 100 ? s.toFixed(1) : s.toFixed(0)) + ' s'; } return (v < 1 ? v.toFixed(3) : v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)) + ' ms'; }`
	// spectrumTooltip's series names are escaped: ECharts inserts a formatter's result as HTML.
	spectrumTooltip = `function (ps) { if (!Array.isArray(ps)) { ps = [ps]; } var p = 100 - 100 / ps[0].value[0]; var s = 'percentile ' + (Math.round(p * 10000) / 10000) + '%'; ps.forEach(function (x) { s += '<br/>' + x.marker + echarts.format.encodeHTML(x.seriesName) + ': ' + (` + msValue + `)(x.value[1]); }); return s; }`
)

// buildCharts makes the report's figures from the runs.
func buildCharts(runs []Run) ([]chart, error) {
	builders := []func([]Run) (chart, error){
		spectrumChart, latencyThroughputChart, throughputChart, p99Chart, gpuChart, gpuClockChart, histogramChart,
	}
	out := make([]chart, 0, len(builders))
	for _, build := range builders {
		c, err := build(runs)
		if err != nil {
			return nil, err
		}
		if c.ID != "" { // a builder with nothing to draw for these runs returns no chart
			out = append(out, c)
		}
	}
	return out, nil
}

func newLine(id string) *charts.Line {
	line := charts.NewLine()
	line.SetGlobalOptions(
		charts.WithInitializationOpts(opts.Initialization{ChartID: id}),
		// No animation: the report is read, not watched, and it renders at once for screenshots.
		charts.WithAnimation(false),
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Top: "0", Type: "scroll"}),
		charts.WithGridOpts(opts.Grid{Left: "70", Right: "40", Top: "40", Bottom: "60"}),
	)
	return line
}

func lineSeries(line *charts.Line, name string, points [][2]float64, dashed bool, step string) {
	data := make([]opts.LineData, 0, len(points))
	for _, p := range points {
		data = append(data, opts.LineData{Value: []float64{p[0], p[1]}})
	}
	lc := opts.LineChart{ShowSymbol: opts.Bool(len(points) < 40)}
	if step != "" {
		lc.Step = step
	}
	seriesOpts := []charts.SeriesOpts{charts.WithLineChartOpts(lc)}
	if dashed {
		seriesOpts = append(seriesOpts, charts.WithLineStyleOpts(opts.LineStyle{Type: "dashed"}))
	}
	line.AddSeries(name, data, seriesOpts...)
}

// spectrumX maps a percentile to the HDR spectrum's log axis: 1/(1-p), so 90% is 10, 99% is
// 100, 99.9% is 1000: each "nine" gets the same width.
func spectrumX(percentile float64) float64 { return 1 / (1 - percentile/100) }

func spectrumPoints(points []stress.PercentilePoint) ([][2]float64, float64) {
	out := make([][2]float64, 0, len(points))
	maxX := 1.0
	for _, p := range points {
		if p.Percentile < 0 || p.Percentile >= 100 || math.IsNaN(p.LatencySeconds) {
			continue // 100% is at infinity on this axis; the table shows the maximum.
		}
		x := spectrumX(p.Percentile)
		out = append(out, [2]float64{x, p.LatencySeconds * 1e3})
		maxX = math.Max(maxX, x)
	}
	return out, maxX
}

func spectrumChart(runs []Run) (chart, error) {
	line := newLine("latency-spectrum")
	maxX := 100.0
	for _, run := range runs {
		pts, m := spectrumPoints(run.Result.LatencySpectrum)
		maxX = math.Max(maxX, m)
		lineSeries(line, run.Label, pts, false, "")
		if len(run.Result.LatencySpectrumUncorrected) > 0 {
			pts, _ := spectrumPoints(run.Result.LatencySpectrumUncorrected)
			lineSeries(line, run.Label+" (uncorrected)", pts, true, "")
		}
	}
	// Show whole nines up to the deepest percentile measured, at least 99% and at most 99.9999%.
	axisMax := math.Min(math.Pow(10, math.Ceil(math.Log10(maxX)-1e-9)), 1e6)
	line.SetGlobalOptions(
		charts.WithXAxisOpts(opts.XAxis{Type: "log", Name: "percentile", NameLocation: "middle", NameGap: 30,
			Min: 1, Max: axisMax, AxisLabel: &opts.AxisLabel{Formatter: opts.FuncOpts(percentileLabel)}}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", Name: "latency", AxisLabel: &opts.AxisLabel{Formatter: opts.FuncOpts(msValue)}}),
		charts.WithTooltipOpts(opts.Tooltip{Trigger: "axis", Formatter: opts.FuncOpts(spectrumTooltip)}),
	)
	return renderChart(line, "latency-spectrum", "Latency by percentile (HDR spectrum)",
		"Each line is one run: the latency that the given share of requests stayed under. The x axis is logarithmic in the tail (90%, 99%, 99.9%...), so each extra nine gets equal room. Dashed: measured from the actual send time (open loop only), beside the corrected latency from the intended send time.")
}

func throughputChart(runs []Run) (chart, error) {
	line := newLine("throughput-over-time")
	passages := true
	for _, run := range runs {
		passages = passages && run.Result.SchemaVersion > 0 && run.Result.Passages > 0
	}
	unit := "requests/s"
	if passages {
		unit = "passages/s"
	}
	window := throughputWindow(runs)
	for _, run := range runs {
		series := wholeSeconds(run.Result.TimeSeries)
		values := make([]float64, len(series))
		for i, s := range series {
			values[i] = s.RequestsPerSecond
			if passages {
				values[i] = s.PassagesPerSecond
			}
		}
		pts := make([][2]float64, 0, len(values))
		for i, v := range movingAverage(values, window) {
			pts = append(pts, [2]float64{float64(series[i].Second), v})
		}
		lineSeries(line, run.Label, pts, false, "")
	}
	line.SetGlobalOptions(
		charts.WithXAxisOpts(opts.XAxis{Type: "value", Name: "seconds into the measured window", NameLocation: "middle", NameGap: 30, Min: 0}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", Name: unit}),
		charts.WithTooltipOpts(opts.Tooltip{Trigger: "axis"}),
		charts.WithDataZoomOpts(opts.DataZoom{Type: "inside"}),
	)
	caption := fmt.Sprintf("Successful %s over the measured window (warm-up excluded); requests count in the second they finished.", unit)
	if window > 1 {
		caption += fmt.Sprintf(" The slowest run finishes fewer than %d requests a second, so each point is the mean of the last %d seconds: per second, the line would only show which seconds a request happened to end in.", minPerSecond, window)
	}
	return renderChart(line, "throughput-over-time", "Throughput over time", caption)
}

// wholeSeconds leaves out a last point cut short by the end of the run (under half a second):
// its rate is a few requests over a few milliseconds, a spike or a drop to 0 at every run's
// end, and its p99 that of one or two requests.
func wholeSeconds(series []stress.SecondPoint) []stress.SecondPoint {
	if n := len(series); n > 0 && series[n-1].IntervalSeconds > 0 && series[n-1].IntervalSeconds < 0.5 {
		return series[:n-1]
	}
	return series
}

// minPerSecond is the completion rate below which per-second throughput is too grainy to read.
const minPerSecond = 5

// throughputWindow is the moving-average width, in seconds, that gives the slowest run about
// minPerSecond completions per point (1 when every run is fast enough, at most 30).
func throughputWindow(runs []Run) int {
	window := 1
	for _, run := range runs {
		if rate := run.Result.RequestsPerSecond; rate > 0 && rate < minPerSecond {
			window = max(window, min(30, int(math.Ceil(minPerSecond/rate))))
		}
	}
	return window
}

// movingAverage is the trailing mean over window points (fewer at the start).
func movingAverage(values []float64, window int) []float64 {
	out := make([]float64, len(values))
	sum := 0.0
	for i, v := range values {
		sum += v
		if i >= window {
			sum -= values[i-window]
		}
		out[i] = sum / float64(min(i+1, window))
	}
	return out
}

func p99Chart(runs []Run) (chart, error) {
	line := newLine("p99-over-time")
	for _, run := range runs {
		pts := make([][2]float64, 0, len(run.Result.TimeSeries))
		for _, s := range wholeSeconds(run.Result.TimeSeries) {
			if s.Latency.Count > 0 {
				pts = append(pts, [2]float64{float64(s.Second), s.Latency.P99 * 1e3})
			}
		}
		lineSeries(line, run.Label, pts, false, "")
	}
	line.SetGlobalOptions(
		charts.WithXAxisOpts(opts.XAxis{Type: "value", Name: "seconds into the measured window", NameLocation: "middle", NameGap: 30, Min: 0}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", Name: "p99 latency", AxisLabel: &opts.AxisLabel{Formatter: opts.FuncOpts(msValue)}}),
		charts.WithTooltipOpts(opts.Tooltip{Trigger: "axis", ValueFormatter: opts.FuncOpts(msValue)}),
		charts.WithDataZoomOpts(opts.DataZoom{Type: "inside"}),
	)
	return renderChart(line, "p99-over-time", "p99 latency over time",
		"The 99th percentile of the requests that finished in each second; seconds in which none finished are left out.")
}

func gpuChart(runs []Run) (chart, error) {
	line := newLine("gpu-over-time")
	// Runs without telemetry, grouped by the reason they give (usually one reason for all).
	var reasons []string
	without := map[string][]string{}
	for _, run := range runs {
		pts := make([][2]float64, 0, len(run.Result.TimeSeries))
		for _, s := range run.Result.TimeSeries {
			if s.GPUUtilizationPercent != nil {
				pts = append(pts, [2]float64{float64(s.Second), *s.GPUUtilizationPercent})
			}
		}
		if len(pts) == 0 {
			why := run.Result.GPU.Reason
			if why == "" {
				why = "no telemetry in the result"
			}
			if without[why] == nil {
				reasons = append(reasons, why)
			}
			without[why] = append(without[why], run.Label)
		}
		lineSeries(line, run.Label, pts, false, "")
	}
	line.SetGlobalOptions(
		charts.WithXAxisOpts(opts.XAxis{Type: "value", Name: "seconds into the measured window", NameLocation: "middle", NameGap: 30, Min: 0}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", Name: "GPU utilisation (%)", Min: 0, Max: 100}),
		charts.WithTooltipOpts(opts.Tooltip{Trigger: "axis"}),
		charts.WithDataZoomOpts(opts.DataZoom{Type: "inside"}),
	)
	caption := "NVML's utilisation: the share of time in which any kernel was running, averaged over the run's GPUs, per second. It says the GPU was busy, not how much of it was used: see the SM and tensor activity in the configuration tables where the device offered them."
	for _, why := range reasons {
		caption += fmt.Sprintf(" GPU telemetry unavailable for %s: %s.", strings.Join(without[why], ", "), why)
	}
	return renderChart(line, "gpu-over-time", "GPU utilisation over time", caption)
}

// gpuClockChart draws each run's SM clock at every GPU reading (the mean over its GPUs), when
// any run has one: a GPU at its power or thermal limit lowers its clock under load, and every
// kernel slows with it, so a run's throughput belongs with its clock.
func gpuClockChart(runs []Run) (chart, error) {
	line := newLine("gpu-clock-over-time")
	var maxMHz float64
	drawn := false
	for _, run := range runs {
		byReading := map[float64][]float64{} // one Sample call reads every GPU at one instant
		for _, s := range run.Result.GPU.Series {
			if s.SMClockMHz != nil {
				byReading[s.Seconds] = append(byReading[s.Seconds], *s.SMClockMHz)
			}
		}
		pts := make([][2]float64, 0, len(byReading))
		for sec, clocks := range byReading {
			var sum float64
			for _, c := range clocks {
				sum += c
			}
			pts = append(pts, [2]float64{sec, sum / float64(len(clocks))})
		}
		sort.Slice(pts, func(i, j int) bool { return pts[i][0] < pts[j][0] })
		for _, d := range run.Result.GPU.Devices {
			if d.SMClockMaxMHz != nil {
				maxMHz = max(maxMHz, *d.SMClockMaxMHz)
			}
		}
		drawn = drawn || len(pts) > 0
		lineSeries(line, run.Label, pts, false, "")
	}
	if !drawn {
		return chart{}, nil
	}
	line.SetGlobalOptions(
		charts.WithXAxisOpts(opts.XAxis{Type: "value", Name: "seconds into the measured window", NameLocation: "middle", NameGap: 30, Min: 0}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", Name: "SM clock (MHz)", Min: 0}),
		charts.WithTooltipOpts(opts.Tooltip{Trigger: "axis"}),
		charts.WithDataZoomOpts(opts.DataZoom{Type: "inside"}),
	)
	caption := "The SM clock at each GPU reading, averaged over the run's GPUs."
	if maxMHz > 0 {
		caption += fmt.Sprintf(" The GPUs can reach %.0f MHz.", maxMHz)
	}
	caption += " A GPU at its power or thermal limit lowers its clock, and every kernel slows with it: the configuration tables say which limit held it, and in what share of the readings."
	return renderChart(line, "gpu-clock-over-time", "GPU clock over time", caption)
}

func histogramChart(runs []Run) (chart, error) {
	line := newLine("latency-histogram")
	for _, run := range runs {
		var total int64
		for _, b := range run.Result.LatencyHistogram {
			total += b.Count
		}
		pts := make([][2]float64, 0, len(run.Result.LatencyHistogram)+1)
		for _, b := range run.Result.LatencyHistogram {
			if total == 0 || b.LowerSeconds <= 0 {
				continue // a log axis has no room for 0; HDR's first bucket starts above it anyway
			}
			pts = append(pts, [2]float64{b.LowerSeconds * 1e3, 100 * float64(b.Count) / float64(total)})
		}
		if n := len(run.Result.LatencyHistogram); n > 0 && total > 0 {
			// Close the last bucket at its upper bound so the step line shows its width.
			last := run.Result.LatencyHistogram[n-1]
			pts = append(pts, [2]float64{last.UpperSeconds * 1e3, 100 * float64(last.Count) / float64(total)})
		}
		lineSeries(line, run.Label, pts, false, "end")
	}
	line.SetGlobalOptions(
		charts.WithXAxisOpts(opts.XAxis{Type: "log", Name: "latency", NameLocation: "middle", NameGap: 30, AxisLabel: &opts.AxisLabel{Formatter: opts.FuncOpts(msValue)}}),
		charts.WithYAxisOpts(opts.YAxis{Type: "value", Name: "% of requests"}),
		charts.WithTooltipOpts(opts.Tooltip{Trigger: "axis"}),
	)
	return renderChart(line, "latency-histogram", "Latency histogram",
		"Share of successful requests in each latency bucket (log-spaced buckets, log latency axis).")
}

// funcMarked matches a JavaScript function go-echarts carries as a JSON string between its
// __f__ markers.
var funcMarked = regexp.MustCompile(`"__f__(?:[^"\\]|\\.)*?__f__"`)

// formatters are the functions renderChart may put into a page as code: this package's own.
// Any other marked string (a run label, a server's self-description) stays a string, or a
// result file could run its own JavaScript in whoever opens the report.
var formatters = map[string]bool{percentileLabel: true, msValue: true, spectrumTooltip: true, curveTooltip: true}

// renderChart turns a go-echarts chart into a JavaScript option literal that is safe inside a
// <script> element. (go-echarts' own snippet renderer HTML-escapes the option and then fails
// to unquote the functions; its page renderer links the library from a CDN.)
func renderChart(line *charts.Line, id, title, caption string) (chart, error) {
	line.Validate()
	option := string(line.JSONNotEscaped())
	var bad error
	option = funcMarked.ReplaceAllStringFunc(option, func(quoted string) string {
		var fn string
		if err := json.Unmarshal([]byte(quoted), &fn); err != nil {
			bad = fmt.Errorf("chart %s: a formatter function is not a valid JSON string: %w", id, err)
			return quoted
		}
		if code := strings.TrimSuffix(strings.TrimPrefix(fn, "__f__"), "__f__"); formatters[code] {
			return code
		}
		return quoted
	})
	if bad != nil {
		return chart{}, bad
	}
	return chart{ID: id, Title: title, Caption: caption, Option: scriptSafe(strings.TrimSpace(option))}, nil
}

// scriptSafe keeps text from labels and server descriptions from closing the <script> element
// it is inlined into: "</" becomes "<\/" and "<!--" becomes "<\!--", which mean the same inside
// JavaScript strings.
func scriptSafe(js string) string {
	js = strings.ReplaceAll(js, "</", `<\/`)
	return strings.ReplaceAll(js, "<!--", `<\!--`)
}
