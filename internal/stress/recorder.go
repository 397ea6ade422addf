package stress

import (
	"sync"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Error classes besides "http_<status>".
const (
	ErrClassTimeout     = "timeout"
	ErrClassConnection  = "connection"
	ErrClassBadResponse = "bad_response"
)

// outcome is what one request came to.
type outcome struct {
	intended time.Time // when it was meant to go (open loop) or went (closed loop)
	sent     time.Time
	done     time.Time
	class    string // "" for success
	message  string
	// unreachable says no connection could be made (a connection error, but not every one is).
	unreachable bool
	passages    int
	checked     checked
	timing      serverTimes
	reqBytes    int
	respBytes   int
}

// serverTimes holds the X-Embedbench-*-Ms headers of one response; negative when absent.
type serverTimes struct{ queue, tokenize, inference, total time.Duration }

func (t serverTimes) any() bool {
	return t.queue >= 0 || t.tokenize >= 0 || t.inference >= 0 || t.total >= 0
}

// recorder aggregates outcomes. One mutex guards it: recording is a few hundred nanoseconds,
// far below what a request costs, so contention is no bottleneck at tens of thousands per second.
type recorder struct {
	mu       sync.Mutex
	openLoop bool
	// windowStart is the end of warm-up; outcomes whose intended time is earlier are warm-up.
	windowStart time.Time

	corrected, uncorrected, sendLag    *hdrhistogram.Histogram
	failed                             *hdrhistogram.Histogram // latency of failed requests
	queue, tokenize, inference, total  *hdrhistogram.Histogram
	timedResponses                     int64
	overheadSum                        time.Duration
	overheadCount                      int64
	lateThreshold                      time.Duration
	late                               int64
	warmup, finished, successes, fails int64
	passages, tokens                   int64
	tokensSeen, tokensFromUsage        bool
	reqBytes, respBytes                int64
	errors                             map[string]int64
	examples                           map[string]string
	model                              string
	dim                                int
	inFlight, maxInFlight              int
	sentInWindow, unfinished           int64

	// Per-second accumulation: cur is the second being filled; finished seconds are summarised
	// into series and the histogram reused.
	cur       int
	curPoint  SecondPoint
	curHist   *hdrhistogram.Histogram
	curTokens int64
	series    []SecondPoint

	// connErrSince is when the current streak of failures to connect began (zero when the last
	// outcome was anything else); the run gives up when the streak lasts too long. A slow
	// server that has not answered yet is no streak, nor one that drops connections it took.
	connErrSince time.Time
}

func newRecorder(openLoop bool, windowStart time.Time, lateThreshold time.Duration) *recorder {
	return &recorder{
		openLoop:      openLoop,
		windowStart:   windowStart,
		corrected:     newHist(),
		uncorrected:   newHist(),
		failed:        newHist(),
		sendLag:       newHist(),
		queue:         newHist(),
		tokenize:      newHist(),
		inference:     newHist(),
		total:         newHist(),
		lateThreshold: lateThreshold,
		errors:        map[string]int64{},
		examples:      map[string]string{},
		curHist:       newHist(),
	}
}

// advance closes every second before the one holding now. Called with mu held.
func (r *recorder) advance(now time.Time) {
	if now.Before(r.windowStart) {
		return
	}
	sec := int(now.Sub(r.windowStart) / time.Second)
	for r.cur < sec {
		r.closeSecond(1)
	}
}

// closeSecond summarises the current second, which lasted length seconds (less than 1 only for
// the last, cut by the end of the run), so that its rates are per second all the same.
func (r *recorder) closeSecond(length float64) {
	p := r.curPoint
	p.Second = r.cur
	p.IntervalSeconds = length
	p.RequestsPerSecond = float64(p.Successes) / length
	p.PassagesPerSecond /= length
	p.Time = r.windowStart.Add(time.Duration(r.cur) * time.Second).UTC()
	p.Latency = summarize(r.curHist)
	p.LatencyHDR = encodeHist(r.curHist)
	p.InFlight = r.inFlight
	if r.tokensSeen {
		p.TokensPerSecond = ptr(float64(r.curTokens) / length)
	}
	r.series = append(r.series, p)
	r.cur++
	r.curPoint = SecondPoint{}
	r.curTokens = 0
	r.curHist.Reset()
}

// sent notes a request leaving; it returns false for a warm-up request.
func (r *recorder) sent(intended, now time.Time, capped bool) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight++
	r.maxInFlight = max(r.maxInFlight, r.inFlight)
	if intended.Before(r.windowStart) {
		return false
	}
	r.advance(now)
	r.curPoint.Sent++
	r.sentInWindow++
	if r.openLoop {
		lag := now.Sub(intended)
		recordDuration(r.sendLag, lag)
		if capped && lag > r.lateThreshold {
			r.late++
		}
	}
	return true
}

// abandoned notes a request that ended without an outcome (the run was cancelled under it).
func (r *recorder) abandoned(intended time.Time) {
	r.mu.Lock()
	r.inFlight--
	if !intended.Before(r.windowStart) {
		r.unfinished++
	}
	r.mu.Unlock()
}

// record adds a finished request.
func (r *recorder) record(o *outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.inFlight--
	switch {
	case !o.unreachable:
		r.connErrSince = time.Time{}
	case r.connErrSince.IsZero():
		r.connErrSince = o.done
	}
	if o.intended.Before(r.windowStart) {
		r.warmup++
		return
	}
	r.advance(o.done)
	r.finished++
	r.curPoint.Completed++
	r.reqBytes += int64(o.reqBytes)
	r.respBytes += int64(o.respBytes)
	if o.class != "" {
		r.fails++
		recordDuration(r.failed, o.done.Sub(o.intended))
		r.curPoint.Errors++
		r.errors[o.class]++
		if _, ok := r.examples[o.class]; !ok {
			r.examples[o.class] = o.message
		}
		return
	}
	r.successes++
	r.curPoint.Successes++
	r.passages += int64(o.passages)
	r.curPoint.PassagesPerSecond += float64(o.passages)
	if o.checked.tokens >= 0 {
		r.tokensSeen = true
		r.tokensFromUsage = o.checked.usage
		r.tokens += o.checked.tokens
		r.curTokens += o.checked.tokens
	}
	if r.model == "" {
		r.model = o.checked.model
	}
	if r.dim == 0 && o.checked.dim > 0 {
		r.dim = o.checked.dim
	}
	latency := o.done.Sub(o.intended)
	service := o.done.Sub(o.sent)
	recordDuration(r.corrected, latency)
	recordDuration(r.curHist, latency)
	if r.openLoop {
		recordDuration(r.uncorrected, service)
	}
	if o.timing.any() {
		r.timedResponses++
		for _, st := range []struct {
			d time.Duration
			h *hdrhistogram.Histogram
		}{{o.timing.queue, r.queue}, {o.timing.tokenize, r.tokenize}, {o.timing.inference, r.inference}, {o.timing.total, r.total}} {
			if st.d >= 0 {
				recordDuration(st.h, st.d)
			}
		}
		if o.timing.total >= 0 {
			r.overheadSum += service - o.timing.total
			r.overheadCount++
		}
	}
}

// deadFor says how long only connection errors have been seen.
func (r *recorder) deadFor(now time.Time) time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.connErrSince.IsZero() {
		return 0
	}
	return now.Sub(r.connErrSince)
}

// Progress is a live view of a run, for a progress display.
type Progress struct {
	// Elapsed counts from the start of the run (warm-up included); Total is the planned length.
	Elapsed, Total time.Duration
	Warmup         bool
	Requests       int64   // finished in the measured window
	Errors         int64   // failed in the measured window
	RequestsPerSec float64 // successes per second of measured window so far
	P99            time.Duration
	InFlight       int
}

func (r *recorder) progress(now time.Time) Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	p := Progress{Requests: r.finished, Errors: r.fails, InFlight: r.inFlight, Warmup: now.Before(r.windowStart)}
	if el := now.Sub(r.windowStart); el > 0 {
		p.RequestsPerSec = float64(r.successes) / el.Seconds()
	}
	if r.corrected.TotalCount() > 0 {
		p.P99 = time.Duration(r.corrected.ValueAtPercentile(99)) * time.Microsecond
	}
	return p
}

func ptr[T any](v T) *T { return &v }
