package report

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/embedbench/embedbench/internal/fairness"
	"github.com/embedbench/embedbench/internal/stress"
)

// Table is the side-by-side comparison: one column a run, ratios against the first run. The
// terminal and the HTML report show the same table.
type Table struct {
	Runs []string
	Rows []Row
}

// Row is one measure across the runs. Cells hold the formatted values, Ratios the value divided
// by the first run's ("" where no ratio makes sense or a value is missing).
type Row struct {
	Section string
	Name    string
	Cells   []string
	Ratios  []string
}

// metric is how one numeric row reads a run; ok is false when the run did not measure it.
type metric struct {
	section, name string
	value         func(r *stress.Result) (v float64, ok bool)
	format        func(v float64) string
	// missing is shown when the value is absent.
	missing string
}

// text is how one descriptive row reads a run.
type text struct {
	section, name string
	value         func(run Run) string
}

// latencyRow reads one latency figure; seedToo says the seed's stress_test.py (schema 0)
// reports it (mean, p50, p90, p99), so that its files show "n/a", not 0, for the others.
func latencyRow(name string, seedToo bool, pick func(m stress.LatencyMetrics) float64) metric {
	return metric{section: "latency", name: name, format: formatSeconds, missing: "n/a",
		value: func(r *stress.Result) (float64, bool) {
			if r.LatencyMetrics.Count == 0 && r.SuccessfulRequests == 0 || (r.SchemaVersion == 0 && !seedToo) {
				return 0, false
			}
			return pick(r.LatencyMetrics), true
		}}
}

var metrics = []metric{
	{section: "throughput", name: "requests/s", format: formatRate, missing: "n/a",
		value: func(r *stress.Result) (float64, bool) { return r.RequestsPerSecond, true }},
	{section: "throughput", name: "passages/s", format: formatRate, missing: "n/a",
		value: func(r *stress.Result) (float64, bool) { return r.PassagesPerSecond, r.SchemaVersion > 0 }},
	{section: "throughput", name: "tokens/s", format: formatRate, missing: "not reported",
		value: func(r *stress.Result) (float64, bool) {
			if r.TokensPerSecond == nil {
				return 0, false
			}
			return *r.TokensPerSecond, true
		}},
	latencyRow("mean", true, func(m stress.LatencyMetrics) float64 { return m.Mean }),
	latencyRow("p50", true, func(m stress.LatencyMetrics) float64 { return m.P50 }),
	latencyRow("p90", true, func(m stress.LatencyMetrics) float64 { return m.P90 }),
	latencyRow("p99", true, func(m stress.LatencyMetrics) float64 { return m.P99 }),
	latencyRow("p99.9", false, func(m stress.LatencyMetrics) float64 { return m.P999 }),
	{section: "gpu", name: "utilisation", format: func(v float64) string { return fmt.Sprintf("%.1f%%", v) }, missing: "unavailable",
		value: func(r *stress.Result) (float64, bool) {
			if r.GPUUtilizationPercent == nil {
				return 0, false
			}
			return *r.GPUUtilizationPercent, true
		}},
}

var texts = []text{
	{"requests", "success rate", func(run Run) string { return formatPercent(run.Result.SuccessRate) }},
	{"requests", "ok / failed", func(run Run) string {
		r := run.Result
		s := fmt.Sprintf("%d / %d", r.SuccessfulRequests, r.FailedRequests)
		if r.Partial {
			s += " (partial)"
		}
		return s
	}},
	{"gpu", "memory used (max)", func(run Run) string { return gpuMemory(run.Result) }},
	{"gpu", "SM clock (mean / max)", func(run Run) string { return gpuClock(run.Result) }},
	{"setup", "engine", func(run Run) string { return orUnknown(run.Setup().Engine) }},
	{"setup", "dtype", func(run Run) string { return orUnknown(run.Setup().DType) }},
	{"setup", "model", func(run Run) string { return orUnknown(run.Setup().Model) }},
	{"setup", "weights", func(run Run) string {
		s := run.Setup()
		switch s.WeightsKind {
		case "unknown":
			return "unknown"
		case "random":
			return s.Weights // it says "random" itself
		}
		return "real: " + s.Weights
	}},
	{"setup", "device", func(run Run) string { return orUnknown(run.Setup().Device) }},
	{"setup", "batch size", func(run Run) string {
		if run.Result.Config.BatchSize == 0 { // the seed's files do not record it
			return "unknown"
		}
		return fmt.Sprint(run.Result.Config.BatchSize)
	}},
	{"setup", "load", func(run Run) string { return describeLoad(run.Result) }},
	{"setup", "load generators", func(run Run) string { return loadGenerators(run.Result) }},
	{"setup", "duration", func(run Run) string { return fmt.Sprintf("%.0f s", run.Result.TestDurationSeconds) }},
}

// Compare builds the comparison table of runs; the first run is the baseline of the ratios.
// Fairness checks, when given, add a row: each run's minimum cosine against the service it was
// checked against.
func Compare(runs []Run, checks ...fairness.Result) Table {
	t := Table{}
	for _, run := range runs {
		t.Runs = append(t.Runs, run.Label)
	}
	for _, m := range metrics {
		row := Row{Section: m.section, Name: m.name}
		base, baseOK := m.value(runs[0].Result)
		for i, run := range runs {
			v, ok := m.value(run.Result)
			ratio := ""
			switch {
			case !ok:
				row.Cells = append(row.Cells, m.missing)
			default:
				row.Cells = append(row.Cells, m.format(v))
				if i > 0 && baseOK && base != 0 {
					ratio = fmt.Sprintf("%.2f×", v/base)
				}
			}
			row.Ratios = append(row.Ratios, ratio)
		}
		t.Rows = append(t.Rows, row)
	}
	for _, d := range texts {
		row := Row{Section: d.section, Name: d.name}
		for _, run := range runs {
			row.Cells = append(row.Cells, d.value(run))
			row.Ratios = append(row.Ratios, "")
		}
		t.Rows = append(t.Rows, row)
	}
	if len(checks) > 0 {
		t.Rows = append(t.Rows, fairnessRow(runs, checks))
	}
	// Keep sections together in reading order: throughput, latency, requests, gpu, fairness, setup.
	order := map[string]int{"throughput": 0, "latency": 1, "requests": 2, "gpu": 3, "fairness": 4, "setup": 5}
	sort.SliceStable(t.Rows, func(i, j int) bool { return order[t.Rows[i].Section] < order[t.Rows[j].Section] })
	return t
}

// WriteText writes the table for a terminal: aligned columns, ratios in parentheses.
func (t Table) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	header := append([]string{""}, t.Runs...)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	section := ""
	for _, row := range t.Rows {
		if row.Section != section {
			section = row.Section
			fmt.Fprintln(tw, section)
		}
		cells := []string{"  " + row.Name}
		for i, c := range row.Cells {
			if row.Ratios[i] != "" {
				c += " (" + row.Ratios[i] + ")"
			}
			cells = append(cells, c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(t.Runs) > 1 {
		_, err := fmt.Fprintf(w, "ratios (×) are against the first run, %s; latency is from the intended send time in open loop\n", t.Runs[0])
		return err
	}
	return nil
}

// WriteMarkdown writes the table as a GitHub-flavoured Markdown table, for pages such as
// docs/BENCHMARKS.md.
func (t Table) WriteMarkdown(w io.Writer) error {
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	var b strings.Builder
	b.WriteString("| |")
	for _, run := range t.Runs {
		b.WriteString(" " + cell(run) + " |")
	}
	b.WriteString("\n|---|" + strings.Repeat("---:|", len(t.Runs)) + "\n")
	section := ""
	for _, row := range t.Rows {
		if row.Section != section {
			section = row.Section
			b.WriteString("| **" + section + "** |" + strings.Repeat(" |", len(t.Runs)) + "\n")
		}
		b.WriteString("| " + cell(row.Name) + " |")
		for i, c := range row.Cells {
			if row.Ratios[i] != "" {
				c += " (" + row.Ratios[i] + ")"
			}
			b.WriteString(" " + cell(c) + " |")
		}
		b.WriteString("\n")
	}
	if len(t.Runs) > 1 {
		fmt.Fprintf(&b, "\nRatios (×) are against the first run, %s.\n", cell(t.Runs[0]))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// fairnessRow gives each run the check it was the checked side of (B), else one it was the
// reference of (A); the cell names the other side by its run's label when it is one of the runs.
func fairnessRow(runs []Run, checks []fairness.Result) Row {
	row := Row{Section: "fairness", Name: "min cosine vs"}
	nameOf := func(url string) string {
		for _, run := range runs {
			if sameService(run.Result.Config.ServiceURL, url) {
				return run.Label
			}
		}
		return url
	}
	for _, run := range runs {
		cell := "not checked"
		url := run.Result.Config.ServiceURL
		for _, side := range []string{"B", "A"} {
			found := false
			for _, c := range checks {
				self, other := c.B.URL, c.A.URL
				if side == "A" {
					self, other = c.A.URL, c.B.URL
				}
				if url != "" && sameService(url, self) {
					cell = fmt.Sprintf("%.6f vs %s", c.MinCosine, nameOf(other))
					if !c.OK() {
						cell += " (DIFFERENT)"
					}
					found = true
					break
				}
			}
			if found {
				break
			}
		}
		row.Cells = append(row.Cells, cell)
		row.Ratios = append(row.Ratios, "")
	}
	return row
}

func sameService(a, b string) bool {
	return strings.TrimRight(a, "/") == strings.TrimRight(b, "/")
}

func describeLoad(r *stress.Result) string {
	c := r.Config
	switch c.Mode {
	case "open":
		s := fmt.Sprintf("open loop %s/s", trimFloat(c.Rate))
		if c.Arrival != "" {
			s += " " + c.Arrival
		}
		s += fmt.Sprintf(", cap %d", c.MaxConcurrentRequests)
		if r.OpenLoop != nil && !r.OpenLoop.RateKept {
			s += " (rate NOT kept)"
		}
		return s
	case "closed":
		return fmt.Sprintf("closed loop, %d concurrent", c.MaxConcurrentRequests)
	}
	if c.MaxConcurrentRequests > 0 {
		return fmt.Sprintf("%d concurrent", c.MaxConcurrentRequests)
	}
	return "unknown"
}

// gpuClock is the SM clock over the run's GPUs (mean of their means, against the highest
// maximum) and, for each reason that held a clock down, its largest share of readings on any
// of them, the most frequent first: "1766 / 1980 MHz, power_cap 92%". A GPU at its power limit runs every kernel slower,
// so two runs compare fairly only at the same clock.
func gpuClock(r *stress.Result) string {
	var sum, maxMHz float64
	n := 0
	held := map[string]float64{}
	for _, d := range r.GPU.Devices {
		if d.SMClockMeanMHz == nil {
			continue
		}
		sum += *d.SMClockMeanMHz
		n++
		if d.SMClockMaxMHz != nil {
			maxMHz = max(maxMHz, *d.SMClockMaxMHz)
		}
		for reason, share := range d.ClockLimited {
			held[reason] = max(held[reason], share)
		}
	}
	if n == 0 {
		return "unavailable"
	}
	s := fmt.Sprintf("%.0f", sum/float64(n))
	if maxMHz > 0 {
		s += fmt.Sprintf(" / %.0f", maxMHz)
	}
	s += " MHz"
	for _, reason := range stress.HeldReasons(held) {
		s += fmt.Sprintf(", %s %.0f%%", reason, 100*held[reason])
	}
	return s
}

func gpuMemory(r *stress.Result) string {
	if len(r.GPU.Devices) == 0 {
		return "unavailable"
	}
	var used, total uint64
	haveUsed, haveTotal := false, true
	for _, d := range r.GPU.Devices {
		if d.MemoryUsedMaxBytes != nil {
			used += *d.MemoryUsedMaxBytes
			haveUsed = true
		}
		if d.MemoryTotalBytes != nil {
			total += *d.MemoryTotalBytes
		} else {
			haveTotal = false
		}
	}
	if !haveUsed {
		return "unavailable"
	}
	if !haveTotal {
		return formatGiB(float64(used))
	}
	return formatGiB(float64(used)) + " / " + formatGiB(float64(total))
}

func formatGiB(bytes float64) string { return fmt.Sprintf("%.1f GiB", bytes/(1<<30)) }

// formatSeconds shows a latency with three significant digits in a unit that fits.
func formatSeconds(s float64) string {
	switch {
	case s >= 1:
		return trimSig(s) + " s"
	case s >= 1e-3:
		return trimSig(s*1e3) + " ms"
	default:
		return trimSig(s*1e6) + " µs"
	}
}

func trimSig(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func formatRate(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2f M", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.1f k", v/1e3)
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func formatPercent(fraction float64) string {
	if fraction == 1 {
		return "100%"
	}
	// Enough digits that 99.99% and 99.9% are told apart, never rounded up to 100%. The
	// nudge keeps a fraction like 29/100, a hair under 0.29 in binary, from reading 28.999%.
	p := math.Floor(fraction*1e5+1e-6) / 1e3
	return fmt.Sprintf("%.3f%%", p)
}

func trimFloat(v float64) string { return strings.TrimSuffix(fmt.Sprintf("%g", v), ".0") }

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}
