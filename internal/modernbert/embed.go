package modernbert

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
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
	return m.EmbedFrom(ctx, seqs, nil, layout)
}

// EmbedFrom is Embed with the first poolFrom[i] tokens of sequence i left out of its pooling
// (they are still attended to): sentence-transformers' include_prompt false, where they are
// [CLS] and the prompt's tokens. poolFrom nil or all zero pools every token; other values need
// Options.ExcludePrompt.
func (m *Model) EmbedFrom(ctx context.Context, seqs [][]int32, poolFrom []int, layout Layout) ([][]float32, Stats, error) {
	var stats Stats
	if m.closed {
		return nil, stats, errors.New("model is closed")
	}
	if err := m.check(seqs); err != nil {
		return nil, stats, err
	}
	if poolFrom != nil {
		if len(poolFrom) != len(seqs) {
			return nil, stats, fmt.Errorf("%d pooling offsets for %d sequences", len(poolFrom), len(seqs))
		}
		for i, from := range poolFrom {
			switch {
			case from < 0:
				return nil, stats, fmt.Errorf("sequence %d: negative pooling offset %d", i, from)
			case from > 0 && !m.opts.ExcludePrompt:
				return nil, stats, fmt.Errorf("sequence %d: pooling offset %d, but the model was built without Options.ExcludePrompt", i, from)
			}
		}
	}
	if len(seqs) == 0 {
		return [][]float32{}, stats, nil
	}
	if m.cpu != nil {
		return m.embedCPU(ctx, seqs, layout)
	}
	if (layout == Packed && len(m.packed) == 0) || (layout == Padded && len(m.padded) == 0) {
		return nil, stats, fmt.Errorf("layout %s was not compiled (Options.Layouts)", layout)
	}
	lengths := make([]int, len(seqs))
	for i, seq := range seqs {
		lengths[i] = len(seq)
	}
	var plan []stepPlan
	switch layout {
	case Packed:
		plan = m.planPacked(lengths)
	case Padded:
		plan = m.planPadded(lengths)
	default:
		return nil, stats, fmt.Errorf("unknown layout %d", layout)
	}
	out := make([][]float32, len(seqs))
	// Steps run on up to m.pipeline goroutines so that one step's host work and transfers
	// overlap another's device time.
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	next := make(chan stepPlan)
	for range min(m.pipeline, len(plan)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range next {
				st, err := m.runPlan(p, seqs, poolFrom, out)
				mu.Lock()
				stats.Add(st)
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	for _, p := range plan {
		mu.Lock()
		failed := firstErr != nil
		mu.Unlock()
		if failed || ctx.Err() != nil {
			break
		}
		next <- p
	}
	close(next)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return nil, stats, firstErr
	}
	return out, stats, nil
}

// runPlan runs one planned step and stores each sequence's vector in out.
func (m *Model) runPlan(p stepPlan, seqs [][]int32, poolFrom []int, out [][]float32) (Stats, error) {
	var stats Stats
	var phases [NumPhases]time.Duration
	st := p.st
	packed := time.Now()
	in := st.getInputs()
	defer st.inputs.Put(in)
	for r, row := range p.rows {
		off := r * st.spec.rowLen
		for s, idx := range row {
			seq := seqs[idx]
			copy(in.ids[off:], seq)
			from := 0
			if poolFrom != nil {
				from = poolFrom[idx]
			}
			for j := range seq {
				in.pos[off+j] = int32(j)
				in.seg[off+j] = int32(s + 1)
				if in.pool != nil && j >= from {
					in.pool[off+j] = 1
				}
			}
			off += len(seq)
			stats.RealTokens += len(seq)
		}
	}
	t0 := time.Now()
	phases[PhasePack] = t0.Sub(packed)
	// The output is [segments, rows, dim]: what this step used is a prefix of it.
	dim := st.spec.outDim()
	used := 0
	for r, row := range p.rows {
		if len(row) > 0 {
			used = max(used, ((len(row)-1)*st.spec.rows+r+1)*dim)
		}
	}
	pooled, err := m.run(st, in, used, &phases)
	stats.Device = time.Since(t0)
	if err != nil {
		return stats, err
	}
	stats.Steps = 1
	stats.SlotTokens = st.spec.rows * st.spec.rowLen
	for r, row := range p.rows {
		for s, idx := range row {
			base := (s*st.spec.rows + r) * dim
			out[idx] = append([]float32(nil), pooled[base:base+dim]...)
		}
	}
	phases[PhaseUnpack] = time.Since(t0) - stats.Device
	stats.PerStep = []StepUse{{Slots: stats.SlotTokens, RealTokens: stats.RealTokens, Phases: phases}}
	return stats, nil
}

// check refuses empty, too long or out-of-vocabulary sequences before any device work.
func (m *Model) check(seqs [][]int32) error {
	for i, seq := range seqs {
		if err := m.CheckSequence(seq); err != nil {
			return fmt.Errorf("sequence %d: %w", i, err)
		}
	}
	return nil
}

// CheckSequence says why the model cannot embed seq (ids with [CLS]/[SEP]), or returns nil:
// empty, longer than MaxSequenceLength, or an id outside the vocabulary. Embed checks every
// sequence so; callers use it to name the bad input before it joins a batch.
func (m *Model) CheckSequence(seq []int32) error {
	if len(seq) == 0 {
		return errors.New("it is empty")
	}
	if len(seq) > m.opts.MaxSequenceLength {
		return fmt.Errorf("%d tokens, more than the maximum %d", len(seq), m.opts.MaxSequenceLength)
	}
	for _, id := range seq {
		if id < 0 || int(id) >= m.cfg.VocabSize {
			return fmt.Errorf("token id %d is outside the vocabulary (0..%d)", id, m.cfg.VocabSize-1)
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

// planPadded puts each sequence alone in a row, as HF does: sequences sorted by decreasing
// length, each step padded to the row length bucket of its longest sequence, holding up to
// PaddedRows sequences, on the smallest rung with rows for them all.
func (m *Model) planPadded(lengths []int) []stepPlan {
	idxs := make([]int, len(lengths))
	for i := range idxs {
		idxs[i] = i
	}
	sort.SliceStable(idxs, func(a, b int) bool { return lengths[idxs[a]] > lengths[idxs[b]] })
	var plan []stepPlan
	for len(idxs) > 0 {
		st := rung(m.padded[m.rowLengthFor(lengths[idxs[0]], 0)], len(idxs))
		n := min(st.spec.rows, len(idxs))
		p := stepPlan{st: st}
		for _, idx := range idxs[:n] {
			p.rows = append(p.rows, []int{idx})
		}
		plan = append(plan, p)
		idxs = idxs[n:]
	}
	return plan
}

// planPacked packs sequences into rows first-fit by decreasing length: sequences up to the
// packed row length share rows of that length; longer ones go to the shortest row length
// holding them, packed among themselves. Each step is the smallest rung of its row length
// that holds the rows left. A group whose last step would be partly empty moves those
// sequences into a longer group's last step when that costs no more slots than running them
// alone, so a call mixing short and long sequences costs no extra step.
func (m *Model) planPacked(lengths []int) []stepPlan {
	groups := map[int][]int{}
	for i, n := range lengths {
		l := m.rowLengthFor(n, m.packedRow)
		groups[l] = append(groups[l], i)
	}
	var present []int
	for _, l := range m.opts.RowLengths {
		if len(groups[l]) > 0 {
			present = append(present, l)
		}
	}
	rowsOf := map[int][][]int{}
	for _, l := range present {
		rowsOf[l] = m.packRows(groups[l], lengths, l)
	}
	for i, l := range present[:max(0, len(present)-1)] {
		stRows := m.topRung(l).spec.rows
		rows := rowsOf[l]
		full := len(rows) / stRows * stRows
		if full == len(rows) {
			continue
		}
		var tail []int
		for _, row := range rows[full:] {
			tail = append(tail, row...)
		}
		up := present[i+1]
		merged := m.packRows(append(slices.Clone(groups[up]), tail...), lengths, up)
		// Merged, the tail saves a step; it must not cost more slots than it ran alone.
		if m.packedSlots(up, len(merged)) <= m.packedSlots(up, len(rowsOf[up]))+m.packedSlots(l, len(rows)-full) {
			groups[up] = append(groups[up], tail...)
			rowsOf[up] = merged
			rowsOf[l] = rows[:full]
		}
	}
	var plan []stepPlan
	if len(present) == 1 && present[0] == m.packedRow && len(rowsOf[m.packedRow]) == 1 {
		if st := m.shortRow(rowsOf[m.packedRow][0], lengths); st != nil {
			return []stepPlan{{st: st, rows: rowsOf[m.packedRow]}}
		}
	}
	for _, l := range present {
		rows := rowsOf[l]
		for len(rows) > 0 {
			st := rung(m.packed[l], len(rows))
			n := min(st.spec.rows, len(rows))
			plan = append(plan, stepPlan{st: st, rows: rows[:n]})
			rows = rows[n:]
		}
	}
	return plan
}

// shortRow is the one-row packed step of the shortest row length below the packed row
// length that holds row, or nil: a single query then costs a row of its own size.
func (m *Model) shortRow(row []int, lengths []int) *step {
	n := 0
	for _, idx := range row {
		n += lengths[idx]
	}
	for _, l := range m.opts.RowLengths {
		if l >= m.packedRow {
			break
		}
		if l >= n && len(row) <= packedSegments(l) && len(m.packed[l]) > 0 {
			return m.packed[l][0]
		}
	}
	return nil
}

// topRung is the largest packed step of row length l.
func (m *Model) topRung(l int) *step { return m.packed[l][len(m.packed[l])-1] }

// packedSlots is the token slots that rows packed rows of length l cost, on the rungs
// planPacked would pick: full top steps, then the smallest rung holding the rest.
func (m *Model) packedSlots(l, rows int) int {
	slots := 0
	for rows > 0 {
		st := rung(m.packed[l], rows)
		slots += st.spec.rows * st.spec.rowLen
		rows -= min(rows, st.spec.rows)
	}
	return slots
}

// packRows packs the sequences idxs into rows of rowLen, first fit by decreasing length, at
// most the step's segments per row.
func (m *Model) packRows(idxs, lengths []int, rowLen int) [][]int {
	segments := m.topRung(rowLen).spec.segments
	idxs = slices.Clone(idxs)
	sort.SliceStable(idxs, func(a, b int) bool { return lengths[idxs[a]] > lengths[idxs[b]] })
	var rows [][]int
	var free []int
	first := 0 // rows before it are full (no room for even one token)
	for _, idx := range idxs {
		n := lengths[idx]
		placed := false
		for r := first; r < len(rows); r++ {
			if free[r] >= n && len(rows[r]) < segments {
				rows[r] = append(rows[r], idx)
				free[r] -= n
				placed = true
				break
			}
		}
		if !placed {
			rows = append(rows, []int{idx})
			free = append(free, rowLen-n)
		}
		for first < len(rows) && (free[first] == 0 || len(rows[first]) == segments) {
			first++
		}
	}
	return rows
}

// FitPacked returns how many of the leading sequences of these lengths one packed step holds,
// at least 1 (a sequence alone always fits a step of its row length). An engine forming
// token-budget batches can call it to fill steps exactly.
func (m *Model) FitPacked(lengths []int) int {
	if len(lengths) == 0 {
		return 0
	}
	return max(1, m.fitPacked(lengths, math.MaxInt))
}

// FitPackedBelow is FitPacked for a step of fewer than slots token slots: the most leading
// sequences such a step holds (0 when even the first needs that many) and the slots it costs.
// A busy engine uses it to leave a small tail to its next batch rather than pay a whole rung
// above for it.
func (m *Model) FitPackedBelow(lengths []int, slots int) (n, below int) {
	if n = m.fitPacked(lengths, slots-1); n == 0 {
		return 0, 0
	}
	return n, m.PackedStepSlots(lengths[:n])
}

// PackedStepSlots is the token slots the packed steps for these sequences cost (their tokens on
// the native CPU path, which pads nothing).
func (m *Model) PackedStepSlots(lengths []int) int {
	if m.cpu != nil {
		sum := 0
		for _, l := range lengths {
			sum += l
		}
		return sum
	}
	return m.packedStepSlots(m.clampedLengths(lengths))
}

// clampedLengths is lengths as a step will hold them: truncated to the longest sequence, and at
// least one token.
func (m *Model) clampedLengths(lengths []int) []int {
	clamped := make([]int, len(lengths))
	for i, n := range lengths {
		clamped[i] = max(1, min(n, m.opts.MaxSequenceLength))
	}
	return clamped
}

// fitPacked is the most leading sequences that one packed step of at most maxSlots slots holds
// (possibly 0).
func (m *Model) fitPacked(lengths []int, maxSlots int) int {
	if m.cpu != nil { // native CPU steps cost their tokens
		n := m.fitTokens(len(lengths), func(i int) int { return lengths[i] })
		sum := 0
		for _, l := range lengths[:n] {
			sum += l
		}
		for n > 0 && sum > maxSlots {
			n--
			sum -= lengths[n]
		}
		return n
	}
	if len(m.packed) == 0 {
		return len(lengths) // nothing to plan on: Embed refuses the layout
	}
	clamped := m.clampedLengths(lengths)
	fits := func(k int) bool {
		plan := m.planPacked(clamped[:k])
		return len(plan) == 1 && plan[0].st.spec.rows*plan[0].st.spec.rowLen <= maxSlots
	}
	// No step holds more tokens than its slots: cut the search there first, so the usual answer
	// costs one or two plans of the step's own size.
	st := m.topRung(m.rowLengthFor(clamped[0], m.packedRow))
	capacity, sum, hi := min(maxSlots, st.spec.rows*st.spec.rowLen), 0, 0
	for hi < len(clamped) && sum+clamped[hi] <= capacity {
		sum += clamped[hi]
		hi++
	}
	// The answer is usually a few sequences short of the bound: gallop down from it. fits(lo)
	// holds; after the first miss, fits(hi) does not.
	lo := 0
	for gap := 1; ; gap *= 2 {
		k := hi - gap + 1
		if k <= lo {
			break
		}
		if fits(k) {
			if k == hi {
				return hi
			}
			lo = k
			break
		}
		hi = k
	}
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if fits(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// packedStepSlots is the token slots of the steps planPacked picks for these lengths.
func (m *Model) packedStepSlots(lengths []int) int {
	slots := 0
	for _, p := range m.planPacked(lengths) {
		slots += p.st.spec.rows * p.st.spec.rowLen
	}
	return slots
}
