// Package report turns stress results into what people compare: the terminal table of
// `embedbench compare` and the self-contained HTML report with its charts.
//
// It reads the result files `embedbench stress` writes (internal/stress) and nothing else, so
// a report can be made long after, and far from, the runs it shows.
package report

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/embedbench/embedbench/internal/stress"
)

// Run is one stress result and the name it is shown under.
type Run struct {
	Label string
	// Series names the latency-against-throughput curve the run is a point of; empty: the
	// default grouping of SeriesNames.
	Series string
	Path   string
	Result *stress.Result
}

// Load reads the result files in order. labels, when given, names the runs (one per path);
// otherwise each run is named after its engine and dtype, or its file.
func Load(paths []string, labels []string) ([]Run, error) {
	if len(paths) == 0 {
		return nil, errors.New("no result files given")
	}
	if len(labels) > 0 && len(labels) != len(paths) {
		return nil, fmt.Errorf("%d labels for %d result files", len(labels), len(paths))
	}
	runs := make([]Run, 0, len(paths))
	for i, path := range paths {
		res, err := stress.ReadResult(path)
		if err != nil {
			return nil, err
		}
		label := ""
		if len(labels) > 0 {
			label = labels[i]
		}
		runs = append(runs, Run{Label: label, Path: path, Result: res})
	}
	NameRuns(runs)
	return runs, nil
}

// NameRuns gives every run without a label one, and makes labels unique so that chart legends
// and table columns can be told apart.
func NameRuns(runs []Run) {
	given := map[string]bool{}
	for i := range runs {
		if runs[i].Label == "" {
			runs[i].Label = defaultLabel(runs[i])
		}
		given[runs[i].Label] = true
	}
	used := map[string]bool{}
	for i := range runs {
		label := runs[i].Label
		// A number is not one another run's own label already holds ("x", "x", "x (2)").
		for n := 2; used[label] || (label != runs[i].Label && given[label]); n++ {
			label = fmt.Sprintf("%s (%d)", runs[i].Label, n)
		}
		used[label] = true
		runs[i].Label = label
	}
}

func defaultLabel(r Run) string {
	s := r.Setup()
	if s.Engine != "" {
		if s.DType != "" {
			return s.Engine + " " + s.DType
		}
		return s.Engine
	}
	if r.Path != "" {
		return strings.TrimSuffix(filepath.Base(r.Path), ".json")
	}
	return "run"
}

// Setup is what a run measured, in the words a reader needs to judge the comparison.
type Setup struct {
	Model string
	// Weights is what the server said ("random (seed 0)", a path, ...); WeightsKind is
	// "random", "real" or "unknown".
	Weights     string
	WeightsKind string
	Engine      string
	DType       string
	Pooling     string
	// Device is "CPU", "GPU" or what the server said, with the GPU names telemetry saw.
	Device string
}

// healthFields are the /health fields beyond those stress.ServerInfo already extracts.
type healthFields struct {
	Backend      string `json:"backend"`
	Engine       string `json:"engine"`
	Pooling      string `json:"pooling"`
	Device       string `json:"device"`
	GPUAvailable *bool  `json:"gpu_available"`
}

// Setup reads the run's setup from the server's self-description and the GPU telemetry.
func (r Run) Setup() Setup {
	res := r.Result
	s := Setup{
		Model:   res.Server.Model,
		Weights: res.Server.Weights,
		Engine:  res.Server.Engine,
		DType:   res.Server.DType,
	}
	var h healthFields
	if len(res.Server.Health) > 0 {
		// A malformed body was already reported by stress; the fields simply stay unknown.
		_ = json.Unmarshal(res.Server.Health, &h)
	}
	if s.Engine == "" {
		s.Engine = firstNonEmpty(h.Engine, h.Backend)
	}
	s.Pooling = h.Pooling
	switch w := strings.ToLower(s.Weights); {
	case w == "":
		s.WeightsKind = "unknown"
	case strings.Contains(w, "random"):
		s.WeightsKind = "random"
	default:
		s.WeightsKind = "real"
	}
	s.Device = h.Device
	if s.Device == "" && h.GPUAvailable != nil {
		s.Device = "CPU"
		if *h.GPUAvailable {
			s.Device = "GPU"
		}
	}
	var names []string
	for _, d := range res.GPU.Devices {
		if d.Name != "" {
			names = append(names, d.Name)
		}
	}
	if len(names) > 0 && !strings.Contains(s.Device, names[0]) {
		s.Device = strings.TrimSpace(s.Device + " " + strings.Join(names, ", "))
	}
	return s
}

func firstNonEmpty(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}
