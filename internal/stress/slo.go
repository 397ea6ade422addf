package stress

import (
	"fmt"
	"strconv"
	"strings"
)

// SLO is a parsed --slo specification such as "p99<200ms,success>99.9%".
type SLO struct {
	Spec    string
	clauses []SLOCheck
}

// sloLatency maps latency metric names to their field in LatencyMetrics.
var sloLatency = map[string]func(LatencyMetrics) float64{
	"mean":  func(l LatencyMetrics) float64 { return l.Mean },
	"p50":   func(l LatencyMetrics) float64 { return l.P50 },
	"p90":   func(l LatencyMetrics) float64 { return l.P90 },
	"p95":   func(l LatencyMetrics) float64 { return l.P95 },
	"p99":   func(l LatencyMetrics) float64 { return l.P99 },
	"p99.9": func(l LatencyMetrics) float64 { return l.P999 },
	"p999":  func(l LatencyMetrics) float64 { return l.P999 },
	"max":   func(l LatencyMetrics) float64 { return l.Max },
}

var latencyUnits = map[string]float64{"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1}

// ParseSLO parses comma-separated clauses "<metric><op><value>". Metrics: latency (mean, p50,
// p90, p95, p99, p99.9, max) with a unit (us, ms, s), always the corrected latency of every
// request that ended, failed ones at the time they failed;
// "success" and "errors" as a percentage of finished requests (with %); "rps", "passages_per_s"
// and "tokens_per_s" as plain numbers. Operators: <, <=, >, >=.
func ParseSLO(spec string) (*SLO, error) {
	s := &SLO{Spec: spec}
	for _, clause := range strings.Split(spec, ",") {
		clause = strings.TrimSpace(clause)
		if clause == "" {
			continue
		}
		c, err := parseClause(clause)
		if err != nil {
			return nil, fmt.Errorf("--slo clause %q: %w", clause, err)
		}
		s.clauses = append(s.clauses, c)
	}
	if len(s.clauses) == 0 {
		return nil, fmt.Errorf("--slo %q: no clauses (want e.g. 'p99<200ms,success>99.9%%')", spec)
	}
	return s, nil
}

func parseClause(clause string) (SLOCheck, error) {
	i := strings.IndexAny(clause, "<>")
	if i <= 0 {
		return SLOCheck{}, fmt.Errorf("want <metric><op><value>, e.g. p99<200ms")
	}
	c := SLOCheck{Clause: clause, Metric: strings.ToLower(strings.TrimSpace(clause[:i])), Op: clause[i : i+1]}
	rest := clause[i+1:]
	if strings.HasPrefix(rest, "=") {
		c.Op += "="
		rest = rest[1:]
	}
	rest = strings.TrimSpace(rest)
	num := strings.TrimRightFunc(rest, func(r rune) bool { return !(r >= '0' && r <= '9' || r == '.') })
	unit := strings.TrimSpace(rest[len(num):])
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 {
		return SLOCheck{}, fmt.Errorf("%q is not a non-negative number", num)
	}
	switch {
	case sloLatency[c.Metric] != nil:
		scale, ok := latencyUnits[unit]
		if !ok {
			return SLOCheck{}, fmt.Errorf("latency needs a unit: us, ms or s")
		}
		c.Threshold, c.Unit = v*scale, "seconds"
	case c.Metric == "success" || c.Metric == "errors":
		if unit != "%" {
			return SLOCheck{}, fmt.Errorf("%s is a percentage: write e.g. 99.9%%", c.Metric)
		}
		if v > 100 {
			return SLOCheck{}, fmt.Errorf("%v%% is over 100%%", v)
		}
		c.Threshold, c.Unit = v, "percent"
	case c.Metric == "rps" || c.Metric == "passages_per_s" || c.Metric == "tokens_per_s":
		if unit != "" {
			return SLOCheck{}, fmt.Errorf("%s takes a plain number", c.Metric)
		}
		c.Threshold, c.Unit = v, "per_second"
	default:
		return SLOCheck{}, fmt.Errorf("unknown metric %q (want mean, p50, p90, p95, p99, p99.9, max, success, errors, rps, passages_per_s, tokens_per_s)", c.Metric)
	}
	return c, nil
}

// Evaluate checks every clause against r. A clause whose metric was not measured (latency with
// no successful request, tokens/s from a server that reports no tokens) fails.
func (s *SLO) Evaluate(r *Result) *SLOResult {
	out := &SLOResult{Spec: s.Spec, Passed: true}
	for _, c := range s.clauses {
		actual, measured := s.actual(c.Metric, r)
		c.Actual = actual
		if measured {
			c.Passed = compare(actual, c.Op, c.Threshold)
		} else {
			c.Note = "not measured"
		}
		out.Passed = out.Passed && c.Passed
		out.Checks = append(out.Checks, c)
	}
	return out
}

func (s *SLO) actual(metric string, r *Result) (float64, bool) {
	if f := sloLatency[metric]; f != nil {
		if r.LatencyMetricsAll != nil { // a timeout breaches a latency objective too
			return f(*r.LatencyMetricsAll), true
		}
		return f(r.LatencyMetrics), r.SuccessfulRequests > 0
	}
	switch metric {
	case "success":
		return r.SuccessRate * 100, r.TotalRequests > 0
	case "errors":
		return (1 - r.SuccessRate) * 100, r.TotalRequests > 0
	case "rps":
		return r.RequestsPerSecond, true
	case "passages_per_s":
		return r.PassagesPerSecond, true
	case "tokens_per_s":
		if r.TokensPerSecond == nil {
			return 0, false
		}
		return *r.TokensPerSecond, true
	}
	return 0, false
}

func compare(a float64, op string, b float64) bool {
	switch op {
	case "<":
		return a < b
	case "<=":
		return a <= b
	case ">":
		return a > b
	default:
		return a >= b
	}
}

// Failed lists the clauses that failed, for a message.
func (r *SLOResult) Failed() []string {
	var out []string
	for _, c := range r.Checks {
		if !c.Passed {
			if c.Note != "" {
				out = append(out, fmt.Sprintf("%s (%s)", c.Clause, c.Note))
				continue
			}
			actual := strconv.FormatFloat(c.Actual, 'g', 4, 64)
			if c.Unit == "seconds" {
				actual = strconv.FormatFloat(c.Actual*1000, 'f', 2, 64) + "ms"
			} else if c.Unit == "percent" {
				actual += "%"
			}
			out = append(out, fmt.Sprintf("%s (actual %s)", c.Clause, actual))
		}
	}
	return out
}
