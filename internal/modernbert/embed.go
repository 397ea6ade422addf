package modernbert

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"
)

// stepPlan is one device step: which sequences go in which row.
type stepPlan struct {
	st   *step
	rows [][]int // sequence indices per row, in row order
}

// Embed returns one vector per sequence (ids with [CLS]/[SEP], each at most
// MaxSequenceLength long), running as many device steps as needed. Packing and padding never
// change a vector beyond rounding.
func (m *Model) Embed(ctx context.Context, seqs [][]int32, layout Layout) ([][]float32, Stats, error) {
	var stats Stats
	if m.closed {
		return nil, stats, errors.New("model is closed")
	}
	if err := m.check(seqs); err != nil {
		return nil, stats, err
	}
	if len(seqs) == 0 {
		return [][]float32{}, stats, nil
	}
	var plan []stepPlan
	switch layout {
	case Packed:
		plan = m.planPacked(seqs)
	case Padded:
		plan = m.planPadded(seqs)
	default:
		return nil, stats, fmt.Errorf("unknown layout %d", layout)
	}
	out := make([][]float32, len(seqs))
	hidden := m.cfg.HiddenSize
	for _, p := range plan {
		if err := ctx.Err(); err != nil {
			return nil, stats, err
		}
		st := p.st
		st.clear()
		for r, row := range p.rows {
			off := r * st.spec.rowLen
			for s, idx := range row {
				seq := seqs[idx]
				copy(st.ids[off:], seq)
				for j := range seq {
					st.pos[off+j] = int32(j)
					st.seg[off+j] = int32(s + 1)
				}
				off += len(seq)
				stats.RealTokens += len(seq)
			}
		}
		t0 := time.Now()
		pooled, err := m.run(st)
		stats.Device += time.Since(t0)
		if err != nil {
			return nil, stats, err
		}
		stats.Steps++
		stats.SlotTokens += st.spec.rows * st.spec.rowLen
		for r, row := range p.rows {
			for s, idx := range row {
				base := (r*st.spec.segments + s) * hidden
				out[idx] = append([]float32(nil), pooled[base:base+hidden]...)
			}
		}
	}
	return out, stats, nil
}

// check refuses empty, too long or out-of-vocabulary sequences before any device work.
func (m *Model) check(seqs [][]int32) error {
	for i, seq := range seqs {
		if len(seq) == 0 {
			return fmt.Errorf("sequence %d is empty", i)
		}
		if len(seq) > m.opts.MaxSequenceLength {
			return fmt.Errorf("sequence %d has %d tokens, more than the maximum %d", i, len(seq), m.opts.MaxSequenceLength)
		}
		for _, id := range seq {
			if id < 0 || int(id) >= m.cfg.VocabSize {
				return fmt.Errorf("sequence %d: token id %d is outside the vocabulary (%d)", i, id, m.cfg.VocabSize)
			}
		}
	}
	return nil
}

// rowLengthFor is the shortest compiled row length holding n tokens, at least minLen.
func (m *Model) rowLengthFor(n, minLen int) int {
	for _, l := range m.opts.RowLengths {
		if l >= n && l >= minLen {
			return l
		}
	}
	return m.opts.RowLengths[len(m.opts.RowLengths)-1]
}

// planPadded puts each sequence alone in a row of the shortest row length holding it.
func (m *Model) planPadded(seqs [][]int32) []stepPlan {
	groups := map[int][]int{}
	for i, seq := range seqs {
		l := m.rowLengthFor(len(seq), 0)
		groups[l] = append(groups[l], i)
	}
	var plan []stepPlan
	for _, l := range m.opts.RowLengths {
		st := m.padded[l]
		idxs := groups[l]
		for len(idxs) > 0 {
			n := min(st.spec.rows, len(idxs))
			p := stepPlan{st: st}
			for _, idx := range idxs[:n] {
				p.rows = append(p.rows, []int{idx})
			}
			plan = append(plan, p)
			idxs = idxs[n:]
		}
	}
	return plan
}

// planPacked packs sequences into rows first-fit by decreasing length: sequences up to the
// packed row length share rows of that length; longer ones go to the shortest row length
// holding them, packed among themselves.
func (m *Model) planPacked(seqs [][]int32) []stepPlan {
	groups := map[int][]int{}
	for i, seq := range seqs {
		l := m.rowLengthFor(len(seq), m.packedRow)
		groups[l] = append(groups[l], i)
	}
	var plan []stepPlan
	for _, l := range m.opts.RowLengths {
		idxs := groups[l]
		if len(idxs) == 0 {
			continue
		}
		st := m.packed[l]
		sort.SliceStable(idxs, func(a, b int) bool { return len(seqs[idxs[a]]) > len(seqs[idxs[b]]) })
		var rows [][]int
		var free []int
		first := 0 // rows before it are full (no room for even one token)
		for _, idx := range idxs {
			n := len(seqs[idx])
			placed := false
			for r := first; r < len(rows); r++ {
				if free[r] >= n && len(rows[r]) < st.spec.segments {
					rows[r] = append(rows[r], idx)
					free[r] -= n
					placed = true
					break
				}
			}
			if !placed {
				rows = append(rows, []int{idx})
				free = append(free, l-n)
			}
			for first < len(rows) && (free[first] == 0 || len(rows[first]) == st.spec.segments) {
				first++
			}
		}
		for len(rows) > 0 {
			n := min(st.spec.rows, len(rows))
			plan = append(plan, stepPlan{st: st, rows: rows[:n]})
			rows = rows[n:]
		}
	}
	return plan
}
