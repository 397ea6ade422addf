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
	return []DeviceSample{{Index: 0, PowerWatts: &n, SMActivityPercent: &n}}, nil
}

// Readers as many and as frequent as they like cause no reading of their own: the device is
// read once at the first call and then on the poller's cadence, so GPM windows are the
// cadence's whoever scrapes.
func TestPollerReadsOnItsOwnCadenceWhoeverAsks(t *testing.T) {
	c := &countingSampler{}
	const interval = 100 * time.Millisecond
	p := newPoller(c.sample, interval)
	defer p.Close()
	start := time.Now()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for time.Since(start) < 600*time.Millisecond {
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

// The first reading's GPM figures would cover everything since the monitor's previous reading
// (start-up, compilation), so they are left out; the cadence's readings carry them.
func TestPollerFirstReadingHasNoGPMWindow(t *testing.T) {
	c := &countingSampler{}
	p := newPoller(c.sample, 20*time.Millisecond)
	defer p.Close()
	s, err := p.Latest()
	if err != nil || s[0].SMActivityPercent != nil || s[0].PowerWatts == nil {
		t.Fatalf("first reading: %v, SM activity %v, power %v; want power and no SM activity", err, s[0].SMActivityPercent, s[0].PowerWatts)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if s, _ := p.Latest(); s[0].SMActivityPercent != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no reading of the cadence carried SM activity")
		}
	}
}

// A monitor that closes ends the cadence; Close after that, twice, or before any reading is
// fine, and a closed poller gives no reading, since none would be current.
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
	after := c.calls.Load()
	if _, err := p.Latest(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Latest after the monitor closed: %v, want ErrUnavailable", err)
	}
	p.Close()
	p.Close()
	time.Sleep(30 * time.Millisecond)
	if c.calls.Load() != after {
		t.Errorf("%d readings after the cadence ended", c.calls.Load()-after)
	}

	unread := newPoller(c.sample, time.Millisecond)
	unread.Close()
	if _, err := unread.Latest(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Latest on a poller closed unread: %v, want ErrUnavailable", err)
	}

	read := newPoller((&countingSampler{}).sample, time.Hour)
	if _, err := read.Latest(); err != nil {
		t.Fatal(err)
	}
	read.Close()
	if s, err := read.Latest(); !errors.Is(err, ErrUnavailable) || s != nil {
		t.Errorf("Latest after Close: %d devices, %v; want none and ErrUnavailable", len(s), err)
	}
}
