package modernbert

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Rung is one compiled step of a layout's ladder: Rows rows of RowLength token slots.
type Rung struct {
	RowLength int `json:"row_length"`
	Rows      int `json:"rows"`
	Slots     int `json:"slots"`
}

// Rungs lists the compiled steps of layout, by row length and then size. With packed, row
// lengths below the packed row length hold one short row each (what a lone query runs on).
func (m *Model) Rungs(layout Layout) []Rung {
	ladders := m.packed
	if layout == Padded {
		ladders = m.padded
	}
	var out []Rung
	for _, l := range m.opts.RowLengths {
		for _, st := range ladders[l] {
			out = append(out, Rung{RowLength: l, Rows: st.spec.rows, Slots: st.spec.rows * l})
		}
	}
	return out
}

// RungResult is Bench's figures for calls that each fill exactly one step of Rung. Skipped,
// when set, says why the rung was not timed (the sequences given never run on it), and the
// figures are absent.
type RungResult struct {
	Rung
	*BenchResult
	// Occupancy is the share of the rung's token slots that held real tokens.
	Occupancy float64 `json:"occupancy,omitempty"`
	Skipped   string  `json:"skipped,omitempty"`
}

// BenchRung is Bench on one rung: every Embed call holds as many of seqs as one step of the
// rung carries, so that each step the device runs is that rung's (checked), as when a server's
// queue holds that much work. Only sequences that run on the rung's row length are used; they
// are repeated when too few to fill the step twice.
func BenchRung(ctx context.Context, m *Model, seqs [][]int32, layout Layout, r Rung, d time.Duration, callers int) (RungResult, error) {
	out := RungResult{Rung: r}
	target := m.rungStep(layout, r)
	if target == nil {
		return out, fmt.Errorf("no compiled %s step of %d rows of %d tokens", layout, r.Rows, r.RowLength)
	}
	var stream [][]int32
	tokens := 0
	lo, hi := m.tokensFor(layout, r.RowLength)
	for _, s := range seqs {
		if len(s) >= lo && len(s) <= hi {
			stream = append(stream, s)
			tokens += len(s)
		}
	}
	if len(stream) == 0 {
		out.Skipped = fmt.Sprintf("none of the %d sequences has the %d-%d tokens that run on rows of %d", len(seqs), lo, hi, r.RowLength)
		return out, nil
	}
	once := stream[:len(stream):len(stream)]
	for total := tokens; total < 2*r.Slots; total += tokens {
		stream = append(stream, once...)
	}
	batches := m.rungBatches(layout, stream, target)
	if len(batches) == 0 {
		out.Skipped = fmt.Sprintf("the sequences that run on rows of %d tokens never fill a step of %d rows", r.RowLength, r.Rows)
		return out, nil
	}
	var (
		mu   sync.Mutex
		next int
	)
	take := func() [][]int32 {
		mu.Lock()
		defer mu.Unlock()
		b := batches[next]
		next = (next + 1) % len(batches)
		return b
	}
	res, total, err := benchLoop(ctx, []*Model{m}, layout, d, BenchResult{Layout: layout.String(), Callers: max(1, callers)}, take)
	if err != nil {
		return out, fmt.Errorf("rung of %d rows of %d tokens: %w", r.Rows, r.RowLength, err)
	}
	for _, st := range total.PerStep {
		if st.Slots != r.Slots {
			return out, fmt.Errorf("rung of %d rows of %d tokens: a step ran on %d slots, not the rung's %d", r.Rows, r.RowLength, st.Slots, r.Slots)
		}
	}
	if res.Steps == 0 {
		return out, errors.New("no step finished in the time given: raise the duration")
	}
	out.BenchResult = &res
	out.Occupancy = float64(res.RealTokens) / float64(res.SlotTokens)
	return out, nil
}

// rungStep is the compiled step of layout that r names, or nil.
func (m *Model) rungStep(layout Layout, r Rung) *step {
	ladder := m.packed[r.RowLength]
	if layout == Padded {
		ladder = m.padded[r.RowLength]
	}
	for _, st := range ladder {
		if st.spec.rows == r.Rows {
			return st
		}
	}
	return nil
}

// tokensFor is the range of sequence lengths that run on rows of length l: padded, l's
// length bucket; packed, l's group (planPacked), or up to l for the short rows below the packed
// row length.
func (m *Model) tokensFor(layout Layout, l int) (lo, hi int) {
	lo = 1
	if layout == Padded || l > m.packedRow {
		for _, r := range m.opts.RowLengths {
			if r < l {
				lo = r + 1
			}
		}
	}
	return lo, l
}

// rungBatches cuts stream, in order, into calls that each plan to exactly one step, target:
// each call takes the most sequences whose plan is one step no larger than target (found by
// bisection, as that grows with the sequences taken); a call that lands on a smaller step (the
// stream's end) is left out.
func (m *Model) rungBatches(layout Layout, stream [][]int32, target *step) [][][]int32 {
	plan := m.planPacked
	if layout == Padded {
		plan = m.planPadded
	}
	slots := target.spec.rows * target.spec.rowLen
	lengths := make([]int, len(stream))
	for i, s := range stream {
		lengths[i] = len(s)
	}
	within := func(ls []int) (bool, bool) {
		p := plan(ls)
		if len(p) != 1 {
			return false, false
		}
		return p[0].st.spec.rows*p[0].st.spec.rowLen <= slots, p[0].st == target
	}
	var out [][][]int32
	for i := 0; i < len(lengths); {
		// No step holds more tokens than its slots: the bisection starts below that bound.
		hi, sum := i, 0
		for hi < len(lengths) && sum+lengths[hi] <= slots {
			sum += lengths[hi]
			hi++
		}
		lo := i + 1 // one sequence that runs on this row length always fits its smallest rung
		if hi < lo {
			hi = lo
		}
		for hi > lo {
			mid := (lo + hi + 1) / 2
			if ok, _ := within(lengths[i:mid]); ok {
				lo = mid
			} else {
				hi = mid - 1
			}
		}
		if _, on := within(lengths[i:lo]); on {
			out = append(out, stream[i:lo])
		}
		i = lo
	}
	return out
}
