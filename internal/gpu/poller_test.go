package gpu

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingSampler stands in for NVML: each reading carries its own sequence number as the
// power draw, so a test can tell which reading it was handed.
type countingSampler struct {
	calls  atomic.Int64
	closed atomic.Bool
}

func (c *countingSampler) sample() ([]DeviceSample, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("%w: monitor closed", ErrUnavailable)
	}
	n := float64(c.calls.Add(1))
	return []DeviceSample{{Index: 0, PowerWatts: &n}}, nil
}

// Readers as many and as frequent as they like cause no reading of their own: the device is
// read once at the first call and then on the poller's cadence, so GPM windows are the
// cadence's whoever scrapes.
func TestPollerReadsOnItsOwnCadenceWhoeverAsks(t *testing.T) {
	c := &countingSampler{}
	const interval = 50 * time.Millisecond
	p := newPoller(c.sample, interval)
	defer p.Close()
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for time.Since(start) < 400*time.Millisecond {
				s, err := p.Latest()
				if err != nil || len(s) != 1 {
					t.Errorf("Latest: %v, %d devices", err, len(s))
					return
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if most := int64(elapsed/interval) + 2; c.calls.Load() > most {
		t.Errorf("%d readings in %v by four busy readers; the cadence allows %d", c.calls.Load(), elapsed, most)
	}
	if c.calls.Load() < 3 {
		t.Errorf("%d readings in %v: the cadence did not run", c.calls.Load(), elapsed)
	}
	// What a reader gets is the newest reading.
	time.Sleep(2 * interval)
	s, _ := p.Latest()
	if got, calls := *s[0].PowerWatts, float64(c.calls.Load()); got < calls-1 {
		t.Errorf("Latest gave reading %g of %g", got, calls)
	}
}

// A monitor that closes ends the cadence; Close after that, twice, or before any reading is
// fine, and a poller closed unread says it has nothing.
func TestPollerStopsWithItsMonitorAndCloses(t *testing.T) {
	c := &countingSampler{}
	p := newPoller(c.sample, 10*time.Millisecond)
	if _, err := p.Latest(); err != nil {
		t.Fatal(err)
	}
	c.closed.Store(true)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Fatal("the cadence ran on after its monitor closed")
	}
	if _, err := p.Latest(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Latest after the monitor closed: %v, want ErrUnavailable", err)
	}
	p.Close()
	p.Close()

	unread := newPoller(c.sample, time.Millisecond)
	unread.Close()
	if _, err := unread.Latest(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Latest on a poller closed unread: %v, want ErrUnavailable", err)
	}
	if c.calls.Load() != 1 {
		t.Errorf("%d readings, want the one before the monitor closed", c.calls.Load())
	}
}
