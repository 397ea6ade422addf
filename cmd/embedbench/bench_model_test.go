package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/embedbench/embedbench/internal/localdata"
	"github.com/embedbench/embedbench/internal/modernbert"
)

func TestBenchModelReportsRealTokenRateAndWaste(t *testing.T) {
	data, err := localdata.MSMARCODir()
	if err != nil {
		t.Skip("shared MS MARCO sample not available:", err)
	}
	for _, layout := range []string{"packed", "padded"} {
		rep := benchModelJSON(t, append(tinyEmbedArgs(t), "--data", filepath.Join(data, "collection.sample.tsv"),
			"--passages", "300", "--seconds", "0.5", "--layout", layout))
		if rep.Layout != layout || rep.TokensPerSecond <= 0 || rep.Steps == 0 || rep.RealTokens > rep.SlotTokens ||
			rep.PaddingWaste < 0 || rep.PaddingWaste >= 1 || rep.Passages != 300 || rep.Model.Weights != "random (seed 0)" ||
			rep.MeanPhaseMillis["execute"] <= 0 {
			t.Fatalf("%s: implausible report %+v", layout, rep)
		}
		t.Logf("%s: %.0f tokens/s, waste %.2f", layout, rep.TokensPerSecond, rep.PaddingWaste)
	}
}

// TestBenchModelPerRung times each rung of the ladder asked for with --step-slots, as someone
// choosing rungs would: one entry per compiled step, in order, every step of an entry on its
// rung, and rungs the passages never reach listed with the reason.
func TestBenchModelPerRung(t *testing.T) {
	data, err := localdata.MSMARCODir()
	if err != nil {
		t.Skip("shared MS MARCO sample not available:", err)
	}
	// The compiled graph has the ladder (the native CPU pass sizes steps to the work).
	t.Setenv(modernbert.EnvVariant, "cpu-graph")
	args := append(tinyEmbedArgs(t), "--max-length", "512", "--step-slots", "512,2048", "--dtype", "bfloat16",
		"--data", filepath.Join(data, "collection.sample.tsv"), "--passages", "300", "--seconds", "0.2", "--per-rung")
	var out bytes.Buffer
	if err := benchModelCommand(context.Background(), args, &out); err != nil {
		t.Fatal(err)
	}
	// The JSON's own names, as a script reading the output sees them.
	var rep struct {
		TokensPerSecond *float64 `json:"tokens_per_second"`
		MaxPassage      int      `json:"max_passage_tokens"`
		Rungs           []struct {
			RowLength       int                `json:"row_length"`
			Rows            int                `json:"rows"`
			Slots           int                `json:"slots"`
			Steps           int                `json:"steps"`
			RealTokens      int                `json:"real_tokens"`
			SlotTokens      int                `json:"slot_tokens"`
			TokensPerSecond float64            `json:"tokens_per_second"`
			MeanStepMillis  float64            `json:"mean_step_ms"`
			MeanPhaseMillis map[string]float64 `json:"mean_phase_ms"`
			Occupancy       float64            `json:"occupancy"`
			Skipped         string             `json:"skipped"`
		} `json:"rungs"`
	}
	dec := json.NewDecoder(&out)
	if err := dec.Decode(&rep); err != nil {
		t.Fatal(err)
	}
	if rep.TokensPerSecond != nil {
		t.Errorf("--per-rung also reported a whole-run tokens/s (%v): the figures belong to the rungs", *rep.TokensPerSecond)
	}
	if rep.MaxPassage > 256 {
		t.Fatalf("the sample has a passage of %d tokens; the test expects none beyond 256", rep.MaxPassage)
	}
	// Rows of 64 and 128 are the one-row short steps; 256 is the packed row (512 and 2,048
	// slots: 2 and 8 rows); 512-token rows (1 and 4 rows) carry only passages the sample lacks.
	want := [][3]int{{64, 1, 64}, {128, 1, 128}, {256, 2, 512}, {256, 8, 2048}, {512, 1, 512}, {512, 4, 2048}}
	if len(rep.Rungs) != len(want) {
		t.Fatalf("%d rungs reported, want %d: %+v", len(rep.Rungs), len(want), rep.Rungs)
	}
	for i, r := range rep.Rungs {
		if got := [3]int{r.RowLength, r.Rows, r.Slots}; got != want[i] {
			t.Errorf("rung %d is %v (row length, rows, slots), want %v", i, got, want[i])
		}
		if r.RowLength == 512 {
			if r.Skipped == "" || r.Steps != 0 {
				t.Errorf("rung %v was timed on passages that never use it: %+v", want[i], r)
			}
			continue
		}
		if r.Skipped != "" || r.Steps == 0 || r.TokensPerSecond <= 0 || r.MeanStepMillis <= 0 {
			t.Errorf("rung %v not timed: %+v", want[i], r)
			continue
		}
		if r.SlotTokens != r.Steps*r.Slots {
			t.Errorf("rung %v: %d slots over %d steps: some step ran on another rung", want[i], r.SlotTokens, r.Steps)
		}
		if occ := float64(r.RealTokens) / float64(r.SlotTokens); r.Occupancy <= 0 || r.Occupancy > 1 || r.Occupancy != occ {
			t.Errorf("rung %v: occupancy %v, want real/slot tokens %v", want[i], r.Occupancy, occ)
		}
		// Where a step's time went: every phase reported; upload, execute and download are
		// parts of the step's device call, so together no longer than it.
		for _, name := range modernbert.PhaseNames {
			if ms, ok := r.MeanPhaseMillis[name]; !ok || ms < 0 {
				t.Errorf("rung %v: phase %q is %v (reported %v)", want[i], name, ms, ok)
			}
		}
		inner := r.MeanPhaseMillis["upload"] + r.MeanPhaseMillis["execute"] + r.MeanPhaseMillis["download"]
		if r.MeanPhaseMillis["execute"] <= 0 || inner > r.MeanStepMillis*(1+1e-9) {
			t.Errorf("rung %v: phases %v against a step of %.3f ms", want[i], r.MeanPhaseMillis, r.MeanStepMillis)
		}
		t.Logf("rung %v: %.1f ms a step, %.0f tokens/s, occupancy %.2f", want[i], r.MeanStepMillis, r.TokensPerSecond, r.Occupancy)
	}
}

// --clients runs copies of the model with the callers spread over them, and says so; it needs
// a positive count, a caller for each copy, and one copy with --per-rung. (On a CPU the copies
// share simplego's one backend; TestParityXLA checks on the GPU that they get clients of their
// own.)
func TestBenchModelClients(t *testing.T) {
	data, err := localdata.MSMARCODir()
	if err != nil {
		t.Skip("shared MS MARCO sample not available:", err)
	}
	rep := benchModelJSON(t, append(tinyEmbedArgs(t), "--data", filepath.Join(data, "collection.sample.tsv"),
		"--passages", "300", "--seconds", "0.3", "--clients", "2", "--callers", "4"))
	if rep.Clients != 2 || rep.Callers != 4 || rep.TokensPerSecond <= 0 || rep.Steps == 0 {
		t.Fatalf("--clients 2 --callers 4: implausible report %+v", rep)
	}
	for _, bad := range [][]string{{"--clients", "0"}, {"--clients", "2", "--per-rung"}, {"--clients", "3", "--callers", "2"}} {
		args := append(tinyEmbedArgs(t), append([]string{"--data", "unused.tsv"}, bad...)...)
		if err := benchModelCommand(context.Background(), args, &bytes.Buffer{}); !errors.Is(err, errUsage) {
			t.Errorf("%v: %v, want a usage error", bad, err)
		}
	}
}

// A duration that measures nothing (NaN, infinite, negative, a picosecond) is a usage error,
// not a report of zero calls.
func TestBenchModelRefusesDurationsThatMeasureNothing(t *testing.T) {
	for _, s := range []string{"NaN", "Inf", "-1", "1e-12", "0"} {
		args := append(tinyEmbedArgs(t), "--data", "unused.tsv", "--seconds", s)
		if err := benchModelCommand(context.Background(), args, &bytes.Buffer{}); !errors.Is(err, errUsage) {
			t.Errorf("--seconds %s: %v, want a usage error", s, err)
		}
	}
}

// benchModelJSON runs bench-model with args and reads its JSON report.
func benchModelJSON(t *testing.T, args []string) benchModelReport {
	t.Helper()
	var out bytes.Buffer
	if err := benchModelCommand(context.Background(), args, &out); err != nil {
		t.Fatal(err)
	}
	var rep benchModelReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	return rep
}
