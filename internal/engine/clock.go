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
// A step's device time is learned from the steps themselves: a batch sent while another was
// still running starts when that one ends, so the gap between their landings is its own device
// time (their host work after the device being about the same). Batches sent to an idle device
// teach nothing (their landing includes the host's share); until a step size has been seen
// this way, and for sizes below every one seen, the clock has no answer and the engine falls
// back to its queue-size rule. Guarded by Continuous.mu.
type deviceClock struct {
	lead     time.Duration         // the host's share before a batch reaches the device
	cost     map[int]time.Duration // device time of a step by its slots (moving average)
	inflight []*flight             // in the order sent
}

// flight is one batch on its way through a replica.
type flight struct {
	sent   time.Time
	slots  int
	ahead  *flight   // the batch in flight when this one was sent, if any
	landed time.Time // when Run returned; zero while in flight
}

// costWeight is the weight of a new sample in the moving average of a step size's cost.
const costWeight = 0.2

func newDeviceClock(lead time.Duration) *deviceClock {
	return &deviceClock{lead: lead, cost: map[int]time.Duration{}}
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

// land records that f's Run returned at now, and learns its step's cost when f queued behind
// another batch that landed after f could have reached the device.
func (d *deviceClock) land(f *flight, now time.Time) {
	f.landed = now
	if a := f.ahead; a != nil && !a.landed.IsZero() && a.landed.After(f.sent.Add(d.lead)) && f.slots > 0 {
		sample := now.Sub(a.landed)
		if old, ok := d.cost[f.slots]; ok {
			sample = old + time.Duration(costWeight*float64(sample-old))
		}
		d.cost[f.slots] = max(sample, 0)
	}
	f.ahead = nil // the batch behind f keeps f, not the whole chain
	d.inflight = slices.DeleteFunc(d.inflight, func(g *flight) bool { return g == f })
}

// stepCost is the predicted device time of a step of slots: the average seen at that size, or
// interpolated between the nearest sizes seen around it, or the largest size seen below it (an
// underestimate, which only sends the next batch early). ok is false below every size seen.
func (d *deviceClock) stepCost(slots int) (time.Duration, bool) {
	if c, ok := d.cost[slots]; ok {
		return c, true
	}
	lo, hi := -1, -1
	for s := range d.cost {
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
		return d.cost[lo], true
	}
	frac := float64(slots-lo) / float64(hi-lo)
	return d.cost[lo] + time.Duration(frac*float64(d.cost[hi]-d.cost[lo])), true
}

// sendAt is when the next batch should leave for the device: lead before the batches in
// flight are predicted to finish. ok is false when some batch in flight has a step size the
// clock cannot predict.
func (d *deviceClock) sendAt() (time.Time, bool) {
	var free time.Time
	for _, f := range d.inflight {
		c, ok := d.stepCost(f.slots)
		if !ok {
			return time.Time{}, false
		}
		start := f.sent.Add(d.lead)
		if f.ahead != nil && !f.ahead.landed.IsZero() {
			start = later(start, f.ahead.landed)
		}
		free = later(start, free).Add(c)
	}
	return free.Add(-d.lead), true
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
