package gpu

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Poller reads every GPU on a fixed cadence of its own and hands out the newest reading, as
// DCGM's exporter does. A server needs it because GPM's activity figures are differences
// between two readings: were every scrape to take its own reading, each scraper would shorten
// the others' windows (Prometheus every 15 s and a stress tester every second would leave
// Prometheus a window of under a second). With a Poller every reader sees the same
// one-interval windows, and a scrape costs no NVML call.
type Poller struct {
	sample   func() ([]DeviceSample, error)
	interval time.Duration

	start, closeOnce sync.Once
	stop, done       chan struct{}

	mu   sync.Mutex
	last []DeviceSample
	err  error
}

// NewPoller reads mon every interval once Latest is first called, until Close or until mon
// is closed.
func NewPoller(mon *Monitor, interval time.Duration) *Poller {
	return newPoller(mon.Sample, interval)
}

func newPoller(sample func() ([]DeviceSample, error), interval time.Duration) *Poller {
	return &Poller{sample: sample, interval: interval, stop: make(chan struct{}), done: make(chan struct{})}
}

// Latest returns the newest reading, at most one interval old. The first call reads at once
// and starts the cadence, so a process nobody scrapes makes no NVML calls. That first reading
// carries no GPM figures: they would cover everything since the monitor's previous reading
// (start-up and compilation, say), not an interval.
func (p *Poller) Latest() ([]DeviceSample, error) {
	p.start.Do(func() {
		p.read()
		p.mu.Lock()
		for i := range p.last {
			p.last[i].SMActivityPercent, p.last[i].TensorActivityPercent = nil, nil
		}
		p.mu.Unlock()
		go p.loop()
	})
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last, p.err
}

func (p *Poller) read() {
	s, err := p.sample()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last, p.err = s, err
}

func (p *Poller) loop() {
	defer close(p.done)
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.read()
			p.mu.Lock()
			gone := errors.Is(p.err, ErrUnavailable)
			p.mu.Unlock()
			if gone { // the monitor was closed: nothing more will come of it
				return
			}
		}
	}
}

// Close stops the cadence and waits for it; Latest then reports ErrUnavailable, since no
// reading would be current. Safe to call more than once, and before Latest.
func (p *Poller) Close() {
	p.closeOnce.Do(func() {
		p.start.Do(func() { close(p.done) }) // never started: no cadence to wait for
		close(p.stop)
	})
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last, p.err = nil, fmt.Errorf("%w: poller closed", ErrUnavailable)
}
