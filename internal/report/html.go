package report

import (
	_ "embed"
	"errors"
	"fmt"
	"html/template"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/embedbench/embedbench/internal/fairness"
)

// EChartsVersion is the version of the chart library inlined into every report (see
// assets/README.md for where it came from and its licence).
const EChartsVersion = "5.6.0"

// echartsJS is Apache ECharts, inlined so that a report opens offline, from a mail attachment
// or a CI artifact, with no CDN.
//
//go:embed assets/echarts.min.js
var echartsJS string

// HTMLOptions adds context to a report beyond the runs themselves.
type HTMLOptions struct {
	// Title heads the page (default "embedbench comparison").
	Title string
	// Notes are sentences shown first, e.g. how the demo chose its model size.
	Notes []string
	// Fairness holds embedding checks between the compared services (or against a reference),
	// when made; each run checked gets a row of the summary table too.
	Fairness []fairness.Result
	// Generated is the time written on the page (default now).
	Generated time.Time
}

type setupRow struct {
	Label string
	Setup
}

// WeightsText names the weights' kind, and what the server said about them unless that
// already says it.
func (s setupRow) WeightsText() string {
	if s.Weights == "" || s.Weights == s.WeightsKind {
		return s.WeightsKind
	}
	if strings.Contains(strings.ToLower(s.Weights), s.WeightsKind) {
		return s.Weights
	}
	return s.WeightsKind + " (" + s.Weights + ")"
}

type runDetailsView struct {
	Label  string
	Groups []detailGroup
}

type cellView struct {
	Text, Ratio string
}

type rowView struct {
	Section, Name string
	NewSection    bool
	// Numeric rows are right-aligned and never wrapped; descriptive ones (model names) wrap.
	Numeric bool
	Cells   []cellView
}

type pageData struct {
	Title          string
	Rows           []rowView
	Columns        int
	Generated      string
	Notes          []string
	RandomWeights  []string
	Setups         []setupRow
	Table          Table
	Fairness       []fairness.Result
	Charts         []chart
	Details        []runDetailsView
	EChartsVersion string
	EChartsJS      template.JS
	ChartsJS       template.JS
}

// WriteHTML writes the report for runs to w: one HTML file with the chart library, the data
// and the charts inline.
func WriteHTML(w io.Writer, runs []Run, o HTMLOptions) error {
	if len(runs) == 0 {
		return errors.New("report: no runs")
	}
	if o.Title == "" {
		o.Title = "embedbench comparison"
	}
	if o.Generated.IsZero() {
		o.Generated = time.Now()
	}
	figures, err := buildCharts(runs)
	if err != nil {
		return err
	}
	data := pageData{
		Title:          o.Title,
		Generated:      o.Generated.UTC().Format("2006-01-02 15:04 UTC"),
		Notes:          o.Notes,
		Table:          Compare(runs, o.Fairness...),
		Fairness:       o.Fairness,
		Charts:         figures,
		EChartsVersion: EChartsVersion,
		EChartsJS:      template.JS(echartsJS),
		ChartsJS:       template.JS(chartsScript(figures)),
	}
	section := ""
	for _, row := range data.Table.Rows {
		v := rowView{Section: row.Section, Name: row.Name, NewSection: row.Section != section, Numeric: row.Section != "setup"}
		section = row.Section
		for i, c := range row.Cells {
			v.Cells = append(v.Cells, cellView{c, row.Ratios[i]})
		}
		data.Rows = append(data.Rows, v)
	}
	data.Columns = len(runs) + 1
	for _, run := range runs {
		s := run.Setup()
		data.Setups = append(data.Setups, setupRow{run.Label, s})
		if s.WeightsKind == "random" {
			data.RandomWeights = append(data.RandomWeights, run.Label)
		}
		data.Details = append(data.Details, runDetailsView{run.Label, runDetails(run)})
	}
	if err := pageTemplate.Execute(w, data); err != nil {
		return fmt.Errorf("writing HTML report: %w", err)
	}
	return nil
}

// WriteHTMLFile writes the report to path through a temporary file, so that a reader never
// sees half a report and a failed write leaves any earlier report in place.
func WriteHTMLFile(path string, runs []Run, o HTMLOptions) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("writing HTML report: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := WriteHTML(tmp, runs, o); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing HTML report %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("writing HTML report %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing HTML report %s: %w", path, err)
	}
	return nil
}

// chartsScript draws every figure and marks each element data-rendered="true" once ECharts
// reports it finished, with the series and data points it holds, or data-render-error with the
// message if drawing failed; the browser test reads these marks.
func chartsScript(figures []chart) string {
	js := "var embedbenchCharts = [\n"
	for _, c := range figures {
		js += fmt.Sprintf("  {id: %q, option: %s},\n", c.ID, c.Option)
	}
	js += `];
(function () {
  "use strict";
  var done = 0;
  document.body.setAttribute("data-charts-expected", String(embedbenchCharts.length));
  embedbenchCharts.forEach(function (c) {
    var el = document.getElementById(c.id);
    try {
      var chart = echarts.init(el, null, {renderer: "canvas"});
      chart.on("finished", function () {
        if (el.getAttribute("data-rendered") === "true") { return; }
        var series = chart.getOption().series;
        el.setAttribute("data-series", String(series.length));
        el.setAttribute("data-points", String(series.reduce(function (n, s) { return n + s.data.length; }, 0)));
        el.setAttribute("data-rendered", "true");
        done++;
        document.body.setAttribute("data-charts-rendered", String(done));
      });
      chart.setOption(c.option);
      window.addEventListener("resize", function () { chart.resize(); });
    } catch (e) {
      el.setAttribute("data-render-error", String(e));
      el.textContent = "This chart could not be drawn: " + e;
    }
  });
})();
`
	return js
}

var pageTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}</title>
<style>
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; margin: 0 auto; max-width: 1200px; padding: 16px 24px 48px; }
h1 { font-size: 24px; margin-bottom: 4px; }
h2 { font-size: 19px; margin-top: 36px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { font-size: 16px; margin: 24px 0 4px; }
.meta { color: #666; }
.banner { background: #fff4d6; border: 1px solid #e8c35a; padding: 10px 14px; border-radius: 4px; margin: 12px 0; }
.warn { background: #fde2e2; border: 1px solid #e08080; padding: 10px 14px; border-radius: 4px; margin: 8px 0; }
.ok { background: #e3f4e1; border: 1px solid #7fbf7a; padding: 10px 14px; border-radius: 4px; margin: 8px 0; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border: 1px solid #ddd; padding: 4px 10px; text-align: left; vertical-align: top; }
th { background: #f5f5f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr.section td { background: #fafafa; font-weight: 600; }
.ratio { color: #666; font-size: 12px; }
.random { color: #a15c00; font-weight: 600; }
.chart { width: 100%; height: 420px; }
.caption { color: #555; margin: 0 0 6px; max-width: 900px; }
pre { margin: 0; font-size: 12px; white-space: pre-wrap; }
footer { margin-top: 40px; color: #777; font-size: 12px; }
</style>
<script>{{.EChartsJS}}</script>
</head>
<body>
<h1>{{.Title}}</h1>
<p class="meta">Generated {{.Generated}} by embedbench. {{len .Setups}} run(s); ratios are against the first.</p>
{{range .Notes}}<p class="banner">{{.}}</p>
{{end}}{{if .RandomWeights}}<p class="banner"><b>Random weights</b> in {{range $i, $l := .RandomWeights}}{{if $i}}, {{end}}{{$l}}{{end}}: these runs use randomly initialised weights of the real architecture. They measure speed, not embedding quality.</p>
{{end}}
<h2>What was measured</h2>
<table>
<tr><th>run</th><th>model</th><th>weights</th><th>engine</th><th>dtype</th><th>device</th><th>pooling</th></tr>
{{range .Setups}}<tr><td>{{.Label}}</td><td>{{.Model}}</td><td{{if eq .WeightsKind "random"}} class="random"{{end}}>{{.WeightsText}}</td><td>{{.Engine}}</td><td>{{.DType}}</td><td>{{.Device}}</td><td>{{.Pooling}}</td></tr>
{{end}}</table>

<h2>Summary</h2>
<table id="summary">
<tr><th></th>{{range .Table.Runs}}<th>{{.}}</th>{{end}}</tr>
{{range $row := .Rows}}{{if .NewSection}}<tr class="section"><td colspan="{{$.Columns}}">{{.Section}}</td></tr>
{{end}}<tr><td>{{.Name}}</td>{{range .Cells}}<td class="{{if $row.Numeric}}num{{else}}text{{end}}">{{.Text}}{{if .Ratio}} <span class="ratio">{{.Ratio}}</span>{{end}}</td>{{end}}</tr>
{{end}}</table>
{{if .Fairness}}
<h2>Fairness: do the services compute the same embeddings?</h2>
{{range .Fairness}}<p>The same {{.Passages}} passages were sent to {{.A.URL}} ({{.A.Health.Backend}}{{with .A.Health.DType}}, {{.}}{{end}}) and {{.B.URL}} ({{.B.Health.Backend}}{{with .B.Health.DType}}, {{.}}{{end}}).
Cosine between their vectors: <b>min {{printf "%.6f" .MinCosine}}</b>, mean {{printf "%.6f" .MeanCosine}}, embedding dim {{.Dim}}; the noise threshold for these dtypes is {{.Threshold}}.</p>
{{if .OK}}<p class="ok">Same embeddings within numerical noise.</p>
{{else}}<p class="warn"><b>The services do NOT compute the same embeddings:</b> their speeds are not comparable.</p>
{{end}}{{range .Warnings}}<p class="warn">{{.}}</p>
{{end}}{{end}}{{end}}
<h2>Charts</h2>
{{range .Charts}}<h3>{{.Title}}</h3>
<p class="caption">{{.Caption}}</p>
<div class="chart" id="{{.ID}}" data-chart="{{.ID}}"></div>
{{end}}
<h2>Configuration of each run</h2>
{{range .Details}}<h3>{{.Label}}</h3>
<table class="config">
{{range .Groups}}<tr class="section"><td colspan="2">{{.Title}}</td></tr>
{{range .Details}}<tr><td>{{.Key}}</td><td>{{if eq .Key "" }}{{.Value}}{{else}}<pre>{{.Value}}</pre>{{end}}</td></tr>
{{end}}{{end}}</table>
{{end}}
<footer>Charts drawn with Apache ECharts {{.EChartsVersion}} (Apache-2.0), inlined in this file: it needs no network.</footer>
<script>{{.ChartsJS}}</script>
</body>
</html>
`))
