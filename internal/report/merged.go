package report

import (
	"fmt"
	"strings"

	"github.com/embedbench/embedbench/internal/stress"
)

// loadGenerators is the table's cell saying how many generators a result combines, and
// whether their merge came with warnings a reader must see.
func loadGenerators(r *stress.Result) string {
	if r.Merged == nil {
		return "1"
	}
	s := fmt.Sprintf("%d merged", len(r.Merged.Parts))
	if n := len(r.Merged.Warnings); n > 0 {
		s += fmt.Sprintf(" (%d warning%s: see the report)", n, map[bool]string{true: "s"}[n > 1])
	}
	return s
}

// mergeDetails describes a merged result's parts and what the merge found; none for a single
// run.
func mergeDetails(r *stress.Result) []detailGroup {
	m := r.Merged
	if m == nil {
		return nil
	}
	ds := []detail{}
	if m.OverlapSeconds > 0 {
		ds = append(ds, detail{"window all ran at once", fmt.Sprintf("%s to %s (%.1f s of a %.1f s span): rates are summed over it, counts cover every part's whole window",
			m.OverlapStart.UTC().Format("2006-01-02 15:04:05"), m.OverlapEnd.UTC().Format("15:04:05 UTC"), m.OverlapSeconds, m.SpanSeconds)})
	}
	for i, w := range m.Warnings {
		ds = append(ds, detail{fmt.Sprintf("warning %d", i+1), w})
	}
	for i, p := range m.Parts {
		lm := p.LatencyMetrics
		v := fmt.Sprintf("%s: %s, %s, %d/%d ok, %s requests/s, p50 %s, p99 %s, %s to %s",
			p.File, p.Config.ServiceURL, strings.TrimSpace(p.Machine.Hostname), p.SuccessfulRequests, p.TotalRequests,
			formatRate(p.RequestsPerSecond), formatSeconds(lm.P50), formatSeconds(lm.P99),
			p.StartedAt.UTC().Format("15:04:05.000"), p.EndedAt.UTC().Format("15:04:05.000"))
		if p.Partial {
			v += " (partial: " + p.PartialReason + ")"
		}
		ds = append(ds, detail{fmt.Sprintf("part %d", i+1), v})
	}
	return []detailGroup{{Title: fmt.Sprintf("Merged from %d load generators", len(m.Parts)), Details: ds}}
}
