package engine

import (
	"context"

	"github.com/embedbench/embedbench/internal/modernbert"
)

// modelRunner drives one *modernbert.Model in a fixed layout.
type modelRunner struct {
	m      *modernbert.Model
	layout modernbert.Layout
}

// ModelRunner adapts a model replica to a Runner: Packed for the continuous engine, Padded
// for the sequential one.
func ModelRunner(m *modernbert.Model, layout modernbert.Layout) Runner {
	if layout == modernbert.Packed {
		return modelFitter{modelRunner{m: m, layout: layout}}
	}
	return modelRunner{m: m, layout: layout}
}

func (r modelRunner) Run(ctx context.Context, seqs [][]int32, poolFrom []int) ([][]float32, BatchStats, error) {
	vectors, st, err := r.m.EmbedFrom(ctx, seqs, poolFrom, r.layout)
	steps := make([]StepUse, len(st.PerStep))
	for i, u := range st.PerStep {
		phases := make([]Phase, len(u.Phases))
		for p, took := range u.Phases {
			phases[p] = Phase{Name: modernbert.PhaseNames[p], Took: took}
		}
		steps[i] = StepUse{Slots: u.Slots, RealTokens: u.RealTokens, Phases: phases}
	}
	return vectors, BatchStats{RealTokens: st.RealTokens, SlotTokens: st.SlotTokens, Steps: st.Steps, Device: st.Device, PerStep: steps}, err
}

// modelFitter is a packed modelRunner, which knows how its steps fill.
type modelFitter struct{ modelRunner }

func (r modelFitter) FitStep(lengths []int) int { return r.m.FitPacked(lengths) }

func (r modelFitter) StepSlots(lengths []int) int { return r.m.PackedStepSlots(lengths) }

func (r modelFitter) FitStepBelow(lengths []int, slots int) (n, below int) {
	return r.m.FitPackedBelow(lengths, slots)
}
