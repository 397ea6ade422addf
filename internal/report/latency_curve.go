package report

import (
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/go-echarts/go-echarts/v2/charts"
	"github.com/go-echarts/go-echarts/v2/opts"
)

// curvePoint is one run on a latency curve: the successful requests per second it achieved
// and its p50 and p99 latency in milliseconds.
type curvePoint struct {
	Label             string
	RequestsPerSecond float64
	P50Millis         float64
	P99Millis         float64
}

// latencyCurve is one series of runs: the same service under several loads.
type latencyCurve struct {
	Name   string
	Points []curvePoint // by achieved requests/s
}

// SeriesNames gives each run the name of the latency curve it is a point of. A run's Series,
// when set, is its name. Otherwise runs of one service at one client batch size form a curve,
// named after the engine and dtype the server gave (else its URL, else the run's label) and the
// batch size; where two services share that name, their URLs tell them apart.
func SeriesNames(runs []Run) []string {
	names := make([]string, len(runs))
	urls := map[string]map[string]bool{} // default name -> service URLs under it
	for i, run := range runs {
		if run.Series != "" {
			names[i] = run.Series
			continue
		}
		s := run.Setup()
		c := run.Result.Config
		name := run.Label
		switch {
		case s.Engine != "" && s.DType != "":
			name = s.Engine + " " + s.DType
		case s.Engine != "":
			name = s.Engine
		case c.ServiceURL != "":
			name = c.ServiceURL
		}
		if c.BatchSize > 0 {
			name += fmt.Sprintf(", batch %d", c.BatchSize)
		}
		names[i] = name
		if urls[name] == nil {
			urls[name] = map[string]bool{}
		}
		urls[name][c.ServiceURL] = true
	}
	for i, run := range runs {
		if run.Series == "" && len(urls[names[i]]) > 1 {
			if u := run.Result.Config.ServiceURL; u != "" && !strings.Contains(names[i], u) {
				names[i] += " (" + u + ")"
			}
		}
	}
	return names
}

// latencyCurves groups the runs into curves, in the order each curve first appears, and
// lists the runs left out because no request succeeded (they have no latency to plot).
func latencyCurves(runs []Run) ([]latencyCurve, []string) {
	var curves []latencyCurve
	index := map[string]int{}
	var without []string
	for i, name := range SeriesNames(runs) {
		r := runs[i].Result
		if r.SuccessfulRequests == 0 || r.RequestsPerSecond <= 0 || r.LatencyMetrics.P50 <= 0 {
			without = append(without, runs[i].Label)
			continue
		}
		k, ok := index[name]
		if !ok {
			k = len(curves)
			index[name] = k
			curves = append(curves, latencyCurve{Name: name})
		}
		curves[k].Points = append(curves[k].Points, curvePoint{Label: runs[i].Label, RequestsPerSecond: r.RequestsPerSecond,
			P50Millis: r.LatencyMetrics.P50 * 1e3, P99Millis: r.LatencyMetrics.P99 * 1e3})
	}
	for _, c := range curves {
		sort.SliceStable(c.Points, func(a, b int) bool { return c.Points[a].RequestsPerSecond < c.Points[b].RequestsPerSecond })
	}
	return curves, without
}

// curveColours is ECharts' default palette, set on each curve so that its p50 and p99 lines
// share a colour.
var curveColours = []string{"#5470c6", "#91cc75", "#fac858", "#ee6666", "#73c0de", "#3ba272", "#fc8452", "#9a60b4", "#ea7ccc"}

// curveColour is the palette's i-th colour, and past it hues a golden angle apart, so that no
// two curves of a large comparison share one.
func curveColour(i int) string {
	if i < len(curveColours) {
		return curveColours[i]
	}
	return fmt.Sprintf("hsl(%d, 65%%, 45%%)", (i*137)%360)
}

// curveTooltip escapes the series and point names: ECharts inserts a formatter's result as HTML.
const curveTooltip = `function (p) { var r = p.value[0]; var rate = r < 10 ? r.toFixed(2) : r < 100 ? r.toFixed(1) : Math.round(r); return p.marker + echarts.format.encodeHTML(p.seriesName) + '<br/>' + echarts.format.encodeHTML(p.name) + ': ' + rate + ' requests/s, ' + (` + msValue + `)(p.value[1]); }`

func latencyThroughputChart(runs []Run) (chart, error) {
	const id = "latency-throughput"
	line := newLine(id)
	curves, without := latencyCurves(runs)
	minX, maxX, minY, maxY := math.Inf(1), 0.0, math.Inf(1), 0.0
	for i, c := range curves {
		colour := curveColour(i)
		for _, q := range []struct {
			suffix string
			dashed bool
			value  func(curvePoint) float64
		}{{" p50", false, func(p curvePoint) float64 { return p.P50Millis }}, {" p99", true, func(p curvePoint) float64 { return p.P99Millis }}} {
			data := make([]opts.LineData, 0, len(c.Points))
			for _, p := range c.Points {
				y := q.value(p)
				data = append(data, opts.LineData{Name: p.Label, Value: []float64{p.RequestsPerSecond, y}})
				minX, maxX = math.Min(minX, p.RequestsPerSecond), math.Max(maxX, p.RequestsPerSecond)
				minY, maxY = math.Min(minY, y), math.Max(maxY, y)
			}
			style := opts.LineStyle{Color: colour}
			if q.dashed {
				style.Type = "dashed"
			}
			line.AddSeries(c.Name+q.suffix, data,
				charts.WithLineChartOpts(opts.LineChart{ShowSymbol: opts.Bool(true), SymbolSize: 7}),
				charts.WithLineStyleOpts(style), charts.WithItemStyleOpts(opts.ItemStyle{Color: colour}))
		}
	}
	// Loads from one client to saturation span orders of magnitude: log axes keep the low end
	// readable once a range passes a factor of ten.
	xAxis := opts.XAxis{Type: "value", Name: "achieved requests/s", NameLocation: "middle", NameGap: 30}
	if maxX >= 10*minX {
		xAxis.Type = "log"
	}
	yAxis := opts.YAxis{Type: "value", Name: "latency", AxisLabel: &opts.AxisLabel{Formatter: opts.FuncOpts(msValue)}}
	if maxY >= 10*minY {
		yAxis.Type = "log"
	}
	logNote := ""
	if xAxis.Type == "log" || yAxis.Type == "log" {
		logNote = " Axes spanning more than a factor of ten are logarithmic."
	}
	// Two lines a series: a scrolling legend would hide most of them, so it wraps, and the plot
	// starts below it (about four entries fit a line).
	legendLines := max(1, (2*len(curves)+3)/4)
	line.GridList = nil // WithGridOpts adds a grid, and the axes keep to the first: replace newLine's
	line.SetGlobalOptions(
		charts.WithLegendOpts(opts.Legend{Show: opts.Bool(true), Top: "0", Type: "plain"}),
		charts.WithGridOpts(opts.Grid{Left: "70", Right: "40", Top: fmt.Sprint(36 + 24*legendLines), Bottom: "60"}),
		charts.WithXAxisOpts(xAxis),
		charts.WithYAxisOpts(yAxis),
		charts.WithTooltipOpts(opts.Tooltip{Trigger: "item", Formatter: opts.FuncOpts(curveTooltip)}),
	)
	caption := "One line per series, one point per run: p50 (solid) and p99 (dashed) latency against the successful requests per second the run achieved (not the rate asked). " +
		"Runs of one service at one client batch size form a series unless compare --series names them; a request carries the series' batch of texts. " +
		"Open-loop latency is counted from each request's intended send time." + logNote
	if len(without) > 0 {
		caption += fmt.Sprintf(" Left out, no successful requests: %s.", strings.Join(without, ", "))
	}
	return renderChart(line, id, "Latency against throughput", caption)
}
