package stress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Arrival processes for open loop.
const (
	ArrivalConstant = "constant"
	ArrivalPoisson  = "poisson"
)

// Options configure a run. Zero values take the documented defaults.
type Options struct {
	ServiceURL string
	API        string // APIEmbed (default), APIOpenAI or APITEI
	Model      string // sent in openai requests
	Passages   []string
	DataFile   string // recorded in the result only
	BatchSize  int    // passages per request (default 32)
	// MaxConcurrent is the number of closed-loop workers, or the in-flight cap in open loop
	// (default 10).
	MaxConcurrent int
	// Rate > 0 selects open loop: requests per second on the Arrival schedule.
	Rate    float64
	Arrival string // ArrivalConstant (default) or ArrivalPoisson
	Seed    int64  // for Poisson arrivals
	// Duration is the measured window, after Warmup.
	Duration time.Duration
	Warmup   time.Duration
	Timeout  time.Duration // per request (default 30s)
	// MaxRequests ends the run after this many requests sent in the measured window (0: none).
	MaxRequests int64
	// SLO, when set, is evaluated into Result.SLO.
	SLO *SLO
	// GPU chooses telemetry: GPUAuto (default), GPUNVML, GPUMetrics or GPUNone.
	GPU string
	// DeadAfter ends the run when every request for this long failed to connect (refused or
	// unreachable; default 3s; negative: never). A server that accepts connections and drops
	// them under load is measured, its errors counted, not given up on.
	DeadAfter time.Duration
	// APIKey, when set, goes with every request as "Authorization: Bearer" (embedbench serve
	// --api-key, vLLM's --api-key, OpenAI).
	APIKey string
	// WaitReachable is how long a service that refuses connections at the start is waited
	// for (0: not at all, the run fails at once).
	WaitReachable time.Duration
	// Progress, when set, is called about twice a second from another goroutine.
	Progress func(Progress)

	ToolVersion string
	CommandLine []string
}

// lateThreshold is how far behind its intended time an open-loop request that waited for the
// in-flight cap may leave before it counts as late. Scheduler jitter alone never makes a
// request late: only the cap does.
const lateThreshold = time.Millisecond

// ErrBadOptions is the error of a run refused for its options, before it touched the network.
var ErrBadOptions = errors.New("bad options")

// ErrServiceDown ends a run whose service stopped accepting connections.
var ErrServiceDown = errors.New("service unreachable")

func (o *Options) defaults() error {
	if o.API == "" {
		o.API = APIEmbed
	}
	if o.BatchSize == 0 {
		o.BatchSize = 32
	}
	if o.MaxConcurrent == 0 {
		o.MaxConcurrent = 10
	}
	if o.Arrival == "" {
		o.Arrival = ArrivalConstant
	}
	if o.Timeout == 0 {
		o.Timeout = 30 * time.Second
	}
	if o.GPU == "" {
		o.GPU = GPUAuto
	}
	if o.DeadAfter == 0 {
		o.DeadAfter = 3 * time.Second
	}
	switch {
	case o.ServiceURL == "":
		return errors.New("no service URL")
	case !strings.HasPrefix(o.ServiceURL, "http://") && !strings.HasPrefix(o.ServiceURL, "https://"):
		return fmt.Errorf("service URL %q: want http:// or https://", o.ServiceURL)
	case o.GPU != GPUAuto && o.GPU != GPUNVML && o.GPU != GPUMetrics && o.GPU != GPUNone:
		return fmt.Errorf("GPU telemetry %q: want %s, %s, %s or %s", o.GPU, GPUAuto, GPUNVML, GPUMetrics, GPUNone)
	case strings.ContainsAny(o.ServiceURL, "?#"):
		return fmt.Errorf("service URL %q: give the server's base URL, without a query or fragment (the API's paths are added to it)", o.ServiceURL)
	case o.BatchSize < 1:
		return fmt.Errorf("batch size %d: must be at least 1", o.BatchSize)
	case o.MaxConcurrent < 1:
		return fmt.Errorf("max concurrent requests %d: must be at least 1", o.MaxConcurrent)
	case o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0):
		return fmt.Errorf("rate %v: must be a positive number of requests per second", o.Rate)
	case o.Arrival != ArrivalConstant && o.Arrival != ArrivalPoisson:
		return fmt.Errorf("arrival %q: want constant or poisson", o.Arrival)
	case o.Duration <= 0 && o.MaxRequests <= 0:
		return errors.New("no duration and no request limit: the run would never end")
	case o.Duration < 0 || o.Warmup < 0 || o.Timeout < 0:
		return errors.New("durations must not be negative")
	case o.MaxRequests < 0:
		return fmt.Errorf("max requests %d: must not be negative", o.MaxRequests)
	}
	return nil
}

// Run drives load at the service as configured and returns the result. The result is returned
// (marked Partial) even when the run was cut short by ctx or by a dead service; the error then
// says why. An error with a nil result means the run could not start.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if err := opts.defaults(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadOptions, err)
	}
	// Check the payload before touching the network, so bad options fail at once.
	if _, err := newPayload(opts.API, opts.ServiceURL, opts.Model, opts.Passages, opts.BatchSize); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadOptions, err)
	}
	var connections atomic.Int64
	client := newClient(opts.MaxConcurrent, opts.Timeout, &connections)

	server, err := fetchHealth(ctx, client, opts.ServiceURL, opts.APIKey, opts.WaitReachable)
	if err != nil {
		return nil, err
	}
	describeModel(ctx, client, opts.API, opts.ServiceURL, opts.APIKey, &server)
	if opts.API == APIOpenAI && opts.Model == "" {
		// OpenAI-style servers may insist on a model name; use the one the server serves.
		opts.Model = server.Model
	}
	pl, err := newPayload(opts.API, opts.ServiceURL, opts.Model, opts.Passages, opts.BatchSize)
	if err != nil {
		return nil, err
	}
	if opts.APIKey != "" {
		pl.header.Set("Authorization", "Bearer "+opts.APIKey)
	}
	telemetry := openTelemetry(ctx, client, opts)
	defer telemetry.close()

	r := &runner{opts: opts, pl: pl, client: client}
	res, runErr := r.run(ctx, telemetry)
	res.Server = server
	if res.Server.Model == "" {
		res.Server.Model = r.rec.model
	}
	res.Server.EmbeddingDim = r.rec.dim
	res.Client.Connections = connections.Load()
	if opts.SLO != nil {
		res.SLO = opts.SLO.Evaluate(res)
	}
	return res, runErr
}

type runner struct {
	opts   Options
	pl     *payload
	client *http.Client
	rec    *recorder

	// next numbers requests, which picks each one's batch of passages.
	next atomic.Int64
	// stop is closed when no more requests may be sent.
	stop     chan struct{}
	stopOnce sync.Once
	stopWhy  error
	// stoppedAt is when sending stopped (UnixNano).
	stoppedAt atomic.Int64
	// claimed counts requests claimed in the measured window, for MaxRequests.
	claimed atomic.Int64
	// unsent is the open-loop backlog left when the run ended.
	unsent atomic.Int64
}

func (r *runner) halt(why error) {
	r.stopOnce.Do(func() {
		r.stopWhy = why
		r.stoppedAt.Store(time.Now().UnixNano())
		close(r.stop)
	})
}

func (r *runner) run(ctx context.Context, telemetry *telemetry) (*Result, error) {
	opts := r.opts
	openLoop := opts.Rate > 0
	start := time.Now()
	windowStart := start.Add(opts.Warmup)
	r.rec = newRecorder(openLoop, windowStart, lateThreshold)
	r.stop = make(chan struct{})

	// Requests carry reqCtx, cancelled only on interruption: at the planned end, requests in
	// flight are let finish (each bounded by the timeout) so that slow answers are counted.
	reqCtx, cancelRequests := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRequests()
	stopOnInterrupt := context.AfterFunc(ctx, func() {
		r.halt(ctx.Err())
		cancelRequests()
	})
	defer stopOnInterrupt()

	var bg sync.WaitGroup
	bgCtx, stopBG := context.WithCancel(ctx)
	defer stopBG()
	bg.Go(func() { r.watch(bgCtx, ctx, start, windowStart) })
	bg.Go(func() { telemetry.sampleFrom(bgCtx, windowStart) })

	var cpuAtWindow time.Duration
	var windowCPU sync.Once
	markWindow := func() { windowCPU.Do(func() { cpuAtWindow = cpuTime() }) }
	if opts.Warmup == 0 {
		markWindow()
	} else {
		bg.Go(func() {
			t := time.NewTimer(opts.Warmup)
			defer t.Stop()
			select {
			case <-t.C:
				markWindow()
			case <-bgCtx.Done():
			}
		})
	}

	var workers sync.WaitGroup
	if openLoop {
		r.openLoop(reqCtx, &workers, start, windowStart)
	} else {
		for range opts.MaxConcurrent {
			workers.Go(func() { r.closedWorker(reqCtx) })
		}
	}
	workers.Wait()
	end := time.Now()
	stopBG()
	bg.Wait()
	markWindow()
	cpu := cpuTime() - cpuAtWindow

	duringWarmup := end.Before(windowStart)
	if duringWarmup { // the window never opened: an empty one, where the run stopped
		windowStart = end
	}
	res := r.result(windowStart, end, cpu, telemetry)
	if ctx.Err() != nil {
		res.Partial, res.PartialReason = true, "interrupted"
		if duringWarmup {
			res.PartialReason = "interrupted during the warm-up: nothing was measured"
		}
		return res, fmt.Errorf("run interrupted after %s: %w", end.Sub(start).Round(time.Millisecond), ctx.Err())
	}
	if errors.Is(r.stopWhy, ErrServiceDown) {
		res.Partial, res.PartialReason = true, r.stopWhy.Error()
		return res, r.stopWhy
	}
	return res, nil
}

// watch ends the run at its planned time, spots a dead service, and feeds the progress display.
func (r *runner) watch(bgCtx, runCtx context.Context, start, windowStart time.Time) {
	var deadline <-chan time.Time
	if r.opts.Duration > 0 && r.opts.Rate == 0 { // an open loop's schedule ends itself
		t := time.NewTimer(time.Until(windowStart.Add(r.opts.Duration)))
		defer t.Stop()
		deadline = t.C
	}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	total := r.opts.Warmup + r.opts.Duration
	for {
		select {
		case <-bgCtx.Done():
			return
		case <-runCtx.Done():
			return
		case <-deadline:
			r.halt(nil)
			deadline = nil
		case now := <-tick.C:
			if d := r.rec.deadFor(now); r.opts.DeadAfter > 0 && d >= r.opts.DeadAfter {
				r.halt(fmt.Errorf("%w: no connection to %s could be made for %s (%s)",
					ErrServiceDown, r.opts.ServiceURL, d.Round(100*time.Millisecond), r.rec.example(ErrClassConnection)))
			}
			if r.opts.Progress != nil {
				p := r.rec.progress(now)
				p.Elapsed, p.Total = now.Sub(start), total
				r.opts.Progress(p)
			}
		}
	}
}

func (r *recorder) example(class string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.examples[class]
}

// stopped reports whether sending has stopped.
func (r *runner) stopped() bool {
	select {
	case <-r.stop:
		return true
	default:
		return false
	}
}

// claim takes the next request number, or reports that the request limit was reached.
func (r *runner) claim(intended time.Time) (int64, bool) {
	if r.opts.MaxRequests > 0 && !intended.Before(r.rec.windowStart) && r.claimed.Add(1) > r.opts.MaxRequests {
		r.halt(nil)
		return 0, false
	}
	return r.next.Add(1) - 1, true
}

func (r *runner) closedWorker(ctx context.Context) {
	buf := make([]byte, 0, 64<<10)
	for !r.stopped() {
		now := time.Now()
		n, ok := r.claim(now)
		if !ok {
			return
		}
		buf = r.do(ctx, n, now, false, buf)
	}
}

// openLoop sends requests on schedule from this goroutine to a pool of MaxConcurrent workers.
// A request that finds every worker busy waits, and its latency still counts from its intended
// time: a stalled server cannot slow the schedule down and so hide its stall.
func (r *runner) openLoop(ctx context.Context, workers *sync.WaitGroup, start, windowStart time.Time) {
	type job struct {
		intended time.Time
		capped   bool // every worker was busy when it was due
	}
	jobs := make(chan job)
	// busy counts workers holding a job: raised here on hand-over, lowered by the worker when
	// done, so it is exact at the moment a job finds no free worker.
	var busy atomic.Int64
	for range r.opts.MaxConcurrent {
		workers.Go(func() {
			buf := make([]byte, 0, 64<<10)
			for j := range jobs {
				if n, ok := r.claim(j.intended); ok {
					buf = r.do(ctx, n, j.intended, j.capped, buf)
				}
				busy.Add(-1)
			}
		})
	}
	defer close(jobs)

	// The schedule, not the watcher, ends an open-loop run: every request due before the end
	// is sent or counted as unsent, whatever the timers' jitter.
	end := time.Time{}
	var deadline <-chan time.Time
	if r.opts.Duration > 0 {
		end = windowStart.Add(r.opts.Duration)
		t := time.NewTimer(time.Until(end))
		defer t.Stop()
		deadline = t.C
	}
	gap := r.arrivals()
	sleep := time.NewTimer(time.Hour)
	defer sleep.Stop()
	intended := start
	for {
		if !end.IsZero() && !intended.Before(end) {
			// The next request is due after the end: the window still lasts its planned
			// length, so that rates at low loads are counted over it, not over a window cut
			// short at the last request.
			select {
			case <-deadline:
			case <-r.stop:
			}
			r.halt(nil)
			return
		}
		if r.stopped() { // checked on every turn: behind schedule, the loop never sleeps
			r.countUnsent(intended, windowStart, gap)
			return
		}
		if d := time.Until(intended); d > 0 {
			sleep.Reset(d)
			select {
			case <-sleep.C:
			case <-r.stop:
				r.countUnsent(intended, windowStart, gap)
				return
			}
		}
		select {
		case jobs <- job{intended: intended}:
		default:
			// No worker free: wait for one, or for the end.
			capped := busy.Load() >= int64(r.opts.MaxConcurrent)
			select {
			case jobs <- job{intended: intended, capped: capped}:
			case <-deadline:
				r.halt(nil)
				r.countUnsent(intended, windowStart, gap)
				return
			case <-r.stop:
				r.countUnsent(intended, windowStart, gap)
				return
			}
		}
		busy.Add(1)
		intended = intended.Add(gap())
	}
}

// arrivals returns the inter-arrival gap generator.
func (r *runner) arrivals() func() time.Duration {
	mean := float64(time.Second) / r.opts.Rate
	if r.opts.Arrival == ArrivalPoisson {
		rng := rand.New(rand.NewPCG(uint64(r.opts.Seed), 0x9e3779b97f4a7c15))
		return func() time.Duration { return time.Duration(rng.ExpFloat64() * mean) }
	}
	// Constant gaps accumulate rounding; keep the exact schedule by counting.
	var k int64
	return func() time.Duration {
		k++
		return time.Duration(float64(k)*mean) - time.Duration(float64(k-1)*mean)
	}
}

// countUnsent counts the requests that were due inside the measured window, from intended on,
// but never left because the run ended first.
func (r *runner) countUnsent(intended, windowStart time.Time, gap func() time.Duration) {
	end := time.Unix(0, r.stoppedAt.Load())
	if r.opts.Duration > 0 {
		end = minTime(end, windowStart.Add(r.opts.Duration))
	}
	var n int64
	for t := intended; t.Before(end); t = t.Add(gap()) {
		if !t.Before(windowStart) {
			n++
		}
	}
	if limit := r.opts.MaxRequests; limit > 0 { // the requests past the last one asked for are no backlog
		n = min(n, limit-min(r.claimed.Load(), limit))
	}
	r.unsent.Store(n)
}

// sendRate is sent requests a second over the time they were being sent: from the window's
// start to when sending stopped (the planned end, or earlier when the run was cut short),
// not to the last answer, so that one slow answer does not read as a schedule not kept.
func (r *runner) sendRate(sent int64, windowStart, end time.Time) float64 {
	if stopped := r.stoppedAt.Load(); stopped != 0 {
		end = minTime(end, time.Unix(0, stopped))
	}
	if r.opts.Duration > 0 {
		end = minTime(end, windowStart.Add(r.opts.Duration))
	}
	secs := end.Sub(windowStart).Seconds()
	if secs <= 0 {
		return 0
	}
	return float64(sent) / secs
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// do sends request n and records its outcome; capped says it waited for the in-flight cap;
// buf is the worker's reusable response buffer.
func (r *runner) do(ctx context.Context, n int64, intended time.Time, capped bool, buf []byte) []byte {
	body := r.pl.body(n)
	// A context deadline rather than http.Client.Timeout: the client's timeout costs a goroutine
	// and a timer per request, the context only a timer.
	reqCtx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	req := r.pl.request(reqCtx, body)
	o := outcome{intended: intended, reqBytes: len(body), passages: r.opts.BatchSize}
	o.sent = time.Now()
	r.rec.sent(intended, o.sent, capped)
	resp, err := r.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			r.rec.abandoned(intended)
			return buf
		}
		o.done = time.Now()
		o.class, o.message = classify(err), err.Error()
		o.unreachable = dialFailed(err)
		if o.class == ErrClassTimeout {
			o.message = fmt.Sprintf("no answer within --timeout %s: %v", r.opts.Timeout, err)
		}
		r.rec.record(&o)
		return buf
	}
	buf, err = readAll(resp.Body, buf[:0])
	resp.Body.Close()
	o.done = time.Now()
	o.respBytes = len(buf)
	switch {
	case err != nil && ctx.Err() != nil:
		r.rec.abandoned(intended)
		return buf
	case errors.Is(err, errResponseTooLarge):
		o.class, o.message = ErrClassBadResponse, err.Error()
	case err != nil:
		o.class, o.message = classify(err), "reading response: "+err.Error()
	case resp.StatusCode != http.StatusOK:
		o.class = "http_" + strconv.Itoa(resp.StatusCode)
		o.message = fmt.Sprintf("%s: %s", resp.Status, truncate(buf, 300))
	default:
		var bad string
		o.checked, bad = r.pl.check(buf, resp.Header)
		if bad != "" {
			o.class, o.message = ErrClassBadResponse, bad
		}
		o.timing = parseTiming(resp.Header)
	}
	r.rec.record(&o)
	return buf
}

// maxResponseBytes bounds a response body: far above any real embedding answer (32 x 4096
// floats is about 1.5 MB), low enough that a broken server cannot exhaust memory.
const maxResponseBytes = 256 << 20

var errResponseTooLarge = errors.New("response larger than 256 MiB")

// readAll reads body into buf, growing it as needed, so a worker reuses one buffer.
func readAll(body io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) >= maxResponseBytes {
			return buf, errResponseTooLarge
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

func truncate(b []byte, n int) string {
	s := strings.TrimSpace(string(b[:min(len(b), n)]))
	if len(b) > n {
		s += "..."
	}
	return s
}

// classify names the error class of a failed round trip. Failing to connect is a connection
// error even when the dial timed out; a timeout is a request that got no answer in time.
func classify(err error) string {
	if dialFailed(err) {
		return ErrClassConnection
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return ErrClassTimeout
	}
	return ErrClassConnection
}

// dialFailed says no connection could be made (refused, unreachable, or the dial timed out),
// as against one that was made and then reset or closed.
func dialFailed(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

func parseTiming(h http.Header) serverTimes {
	get := func(name string) time.Duration {
		v := h.Get(name)
		if v == "" {
			return -1
		}
		ms, err := strconv.ParseFloat(v, 64)
		if err != nil || ms < 0 || math.IsNaN(ms) || math.IsInf(ms, 0) {
			return -1
		}
		return time.Duration(ms * float64(time.Millisecond))
	}
	return serverTimes{queue: get(HeaderQueueMs), tokenize: get(HeaderTokenizeMs), inference: get(HeaderInferenceMs), total: get(HeaderTotalMs)}
}

// newClient returns an HTTP client tuned for load: one kept-alive connection per worker, no
// compression (embeddings do not compress well and gzip costs client CPU), and big buffers.
func newClient(workers int, timeout time.Duration, connections *atomic.Int64) *http.Client {
	dialer := &net.Dialer{Timeout: min(timeout, 10*time.Second), KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err == nil {
				connections.Add(1)
			}
			return c, err
		},
		MaxIdleConns:          workers + 16,
		MaxIdleConnsPerHost:   workers + 16,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
		WriteBufferSize:       64 << 10,
		ReadBufferSize:        64 << 10,
		ExpectContinueTimeout: 0,
	}
	// No Client.Timeout: each request carries its own deadline (see do).
	return &http.Client{Transport: transport}
}

// result assembles the Result once all workers have stopped.
func (r *runner) result(windowStart, end time.Time, cpu time.Duration, telemetry *telemetry) *Result {
	rec := r.rec
	rec.mu.Lock()
	defer rec.mu.Unlock()
	rec.advance(end)
	if !end.Before(windowStart) {
		last := end.Sub(windowStart).Seconds() - float64(rec.cur)
		rec.closeSecond(max(last, 1e-3))
	}
	window := max(end.Sub(windowStart), 0)
	secs := window.Seconds()
	per := func(n int64) float64 {
		if secs == 0 {
			return 0
		}
		return float64(n) / secs
	}
	opts := r.opts
	res := &Result{
		SchemaVersion:       SchemaVersion,
		TestDurationSeconds: secs,
		TotalRequests:       rec.finished,
		SuccessfulRequests:  rec.successes,
		RequestsPerSecond:   per(rec.successes),
		LatencyMetrics:      summarize(rec.corrected),
		FailedRequests:      rec.fails,
		WarmupRequests:      rec.warmup,
		UnfinishedRequests:  rec.unfinished,
		Passages:            rec.passages,
		PassagesPerSecond:   per(rec.passages),
		Tokens:              rec.tokens,
		RequestBytes:        rec.reqBytes,
		ResponseBytes:       rec.respBytes,
		LatencySpectrum:     spectrum(rec.corrected),
		LatencyHistogram:    histogramBuckets(rec.corrected),
		Histograms:          &Histograms{Unit: HistogramUnit, Latency: encodeHist(rec.corrected)},
		Errors:              rec.errors,
		TimeSeries:          rec.series,
		StartedAt:           windowStart.UTC(),
		EndedAt:             end.UTC(),
		Tool:                Tool{Name: "embedbench", Version: opts.ToolVersion, GoVersion: runtime.Version()},
		Machine:             machineInfo(),
	}
	if rec.finished > 0 {
		res.SuccessRate = float64(rec.successes) / float64(rec.finished)
	}
	if rec.fails > 0 {
		res.LatencyMetricsAll = allLatency(rec.corrected, rec.failed)
		res.Histograms.LatencyFailed = encodeHist(rec.failed)
	}
	if len(rec.examples) > 0 {
		res.ErrorExamples = rec.examples
	}
	if rec.tokensSeen {
		res.TokensPerSecond = ptr(per(rec.tokens))
		res.TokensSource = "header"
		if rec.tokensFromUsage {
			res.TokensSource = "usage"
		}
	}
	if opts.Rate > 0 {
		res.LatencyMetricsUncorrected = ptr(summarize(rec.uncorrected))
		res.LatencySpectrumUncorrected = spectrum(rec.uncorrected)
		res.Histograms.LatencyUncorrected = encodeHist(rec.uncorrected)
		res.Histograms.SendLag = encodeHist(rec.sendLag)
		unsent := r.unsent.Load()
		ol := &OpenLoopStats{
			TargetRate:           opts.Rate,
			Arrival:              opts.Arrival,
			SentRequests:         rec.sentInWindow,
			ScheduledRequests:    rec.sentInWindow + unsent,
			AchievedSendRate:     r.sendRate(rec.sentInWindow, windowStart, end),
			LateRequests:         rec.late,
			LateThresholdSeconds: lateThreshold.Seconds(),
			UnsentRequests:       unsent,
			SendLag:              summarize(rec.sendLag),
		}
		ol.RateKept = ol.LateRequests == 0 && ol.UnsentRequests == 0
		res.OpenLoop = ol
	}
	if rec.timedResponses > 0 {
		st := &ServerTiming{
			Requests:  rec.timedResponses,
			Queue:     summaryPtr(rec.queue),
			Tokenize:  summaryPtr(rec.tokenize),
			Inference: summaryPtr(rec.inference),
			Total:     summaryPtr(rec.total),
		}
		res.Histograms.ServerQueue, res.Histograms.ServerTokenize = encodeHist(rec.queue), encodeHist(rec.tokenize)
		res.Histograms.ServerInference, res.Histograms.ServerTotal = encodeHist(rec.inference), encodeHist(rec.total)
		if rec.overheadCount > 0 {
			st.ClientOverheadMeanSeconds = ptr((rec.overheadSum / time.Duration(rec.overheadCount)).Seconds())
		}
		res.ServerTiming = st
	}
	res.Client = ClientStats{CPUSeconds: cpu.Seconds(), MaxInFlight: rec.maxInFlight}
	if rec.finished > 0 {
		res.Client.CPUPerRequestSeconds = cpu.Seconds() / float64(rec.finished)
	}
	res.GPU, res.GPUUtilizationPercent = telemetry.summary(windowStart, end)
	telemetry.fillSeries(res.TimeSeries, windowStart)
	res.Config = Config{
		ServiceURL:            opts.ServiceURL,
		API:                   opts.API,
		Endpoint:              r.pl.endpoint,
		Model:                 opts.Model,
		DataFile:              opts.DataFile,
		DataPassages:          len(opts.Passages),
		BatchSize:             opts.BatchSize,
		Mode:                  "closed",
		MaxConcurrentRequests: opts.MaxConcurrent,
		DurationSeconds:       opts.Duration.Seconds(),
		WarmupSeconds:         opts.Warmup.Seconds(),
		TimeoutSeconds:        opts.Timeout.Seconds(),
		MaxRequests:           opts.MaxRequests,
		CommandLine:           opts.CommandLine,
	}
	if opts.SLO != nil {
		res.Config.SLO = opts.SLO.Spec
	}
	if opts.Rate > 0 {
		res.Config.Mode, res.Config.Rate, res.Config.Arrival = "open", opts.Rate, opts.Arrival
		if opts.Arrival == ArrivalPoisson {
			res.Config.Seed = opts.Seed
		}
	}
	if res.Config.CommandLine == nil {
		res.Config.CommandLine = os.Args
	}
	return res
}
