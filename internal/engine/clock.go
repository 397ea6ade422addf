package engine

import (
	"slices"
	"time"
)

// deviceClock predicts when a replica's device will have finished the batches in flight, so
// that a busy replica forms its next batch at the last moment the device could start it
// without idling. A batch formed earlier cannot start any sooner (the device runs one step at
// a time), and everything that arrives in between would wait a whole extra step.
//
// Both halves of the prediction are learned from the batches themselves. A batch sent while
// another was still on the device starts when that one ends, so the gap between their landings
// (Run returning) is its step's device time. A batch sent to an idle device lands after the
// host's share before the step (packing, copying in) and after it (copying out, unpacking) as
// well as the step: less its step's time, that is the host overhead, which the clock also needs,
// because a landing comes that much after the device was done. Until a step size has been seen
// queued behind another, and for sizes below every one seen, the clock has no answer and the
// engine falls back to its queue-size rule. Guarded by Continuous.mu.
type deviceClock struct {
	margin   time.Duration         // how much earlier than predicted to send
	cost     map[int]time.Duration // device time of a step by its slots (moving averages)
	overhead map[int]time.Duration // host time around a step by its slots (moving averages)
	inflight []*flight             // in the order sent
}

// flight is one batch on its way through a replica.
type flight struct {
	sent   time.Time
	slots  int
	ahead  *flight   // the batch in flight when this one was sent, if any
	landed time.Time // when Run returned; zero while in flight or when it failed
}

// sampleWeight is the weight of a new sample in a moving average.
const sampleWeight = 0.2

func newDeviceClock(margin time.Duration) *deviceClock {
	return &deviceClock{margin: margin, cost: map[int]time.Duration{}, overhead: map[int]time.Duration{}}
}

// send records a batch of slots sent to the device at now.
func (d *deviceClock) send(now time.Time, slots int) *flight {
	f := &flight{sent: now, slots: slots}
	if n := len(d.inflight); n > 0 {
		f.ahead = d.inflight[n-1]
	}
	d.inflight = append(d.inflight, f)
	return f
}

// land records that f's Run returned at now (zero: it failed, which teaches nothing), and
// learns from it: a step's cost when f queued behind a batch still on the device, the host
// overhead when f found the device idle.
func (d *deviceClock) land(f *flight, now time.Time) {
	f.landed = now
	a := f.ahead
	f.ahead = nil // the batch behind f keeps f, not the whole chain
	d.inflight = slices.DeleteFunc(d.inflight, func(g *flight) bool { return g == f })
	if now.IsZero() || f.slots <= 0 {
		return
	}
	switch {
	case a == nil || (!a.landed.IsZero() && !a.landed.After(f.sent)):
		if c, ok := d.cost[f.slots]; ok {
			learn(d.overhead, f.slots, now.Sub(f.sent)-c)
		}
	case !a.landed.IsZero():
		// f reached the device overhead after it was sent at the latest; a was done on the
		// device by then if it landed less than that after f was sent.
		if o, ok := estimate(d.overhead, f.slots); !ok || a.landed.Sub(f.sent) > o {
			learn(d.cost, f.slots, now.Sub(a.landed))
		}
	}
}

func learn(avg map[int]time.Duration, slots int, sample time.Duration) {
	sample = max(sample, 0)
	if old, ok := avg[slots]; ok {
		sample = old + time.Duration(sampleWeight*float64(sample-old))
	}
	avg[slots] = sample
}

// estimate is a moving average at slots: the one seen there, or interpolated between the
// nearest sizes seen around it, or the largest size seen below it (for a step's cost an
// underestimate, which only sends the next batch early). ok is false below every size seen.
func estimate(avg map[int]time.Duration, slots int) (time.Duration, bool) {
	if v, ok := avg[slots]; ok {
		return v, true
	}
	lo, hi := -1, -1
	for s := range avg {
		if s < slots && (lo < 0 || s > lo) {
			lo = s
		}
		if s > slots && (hi < 0 || s < hi) {
			hi = s
		}
	}
	switch {
	case lo < 0:
		return 0, false
	case hi < 0:
		return avg[lo], true
	}
	frac := float64(slots-lo) / float64(hi-lo)
	return avg[lo] + time.Duration(frac*float64(avg[hi]-avg[lo])), true
}

// stepCost is the predicted device time of a step of slots.
func (d *deviceClock) stepCost(slots int) (time.Duration, bool) { return estimate(d.cost, slots) }

// sendAt is when the next batch should leave for the device: so that its host share before the
// step ends as the device finishes the batches in flight, less the margin. ok is false when
// some batch in flight has a step the clock cannot predict.
//
// For a batch f, S(f) is when a batch sent would reach the device just as f's step ends:
// S(f) = max(f.sent, S') + cost(f), where S' is when f's step could start, in the same terms:
// f's own send when the device was idle, the landing of the batch ahead of f less the host
// overhead (its step was done that long before it landed), or S of that batch while it is in
// flight itself.
func (d *deviceClock) sendAt() (time.Time, bool) {
	var s time.Time
	for i, f := range d.inflight {
		c, ok := d.stepCost(f.slots)
		if !ok {
			return time.Time{}, false
		}
		start := f.sent
		if i == 0 && f.ahead != nil && !f.ahead.landed.IsZero() {
			o, ok := estimate(d.overhead, f.ahead.slots)
			if !ok {
				o = d.margin
			}
			start = later(start, f.ahead.landed.Add(-o))
		} else if i > 0 {
			start = later(start, s)
		}
		s = start.Add(c)
	}
	return s.Add(-d.margin), true
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
