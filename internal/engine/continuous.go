package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Continuous is what vLLM does for embeddings: jobs are tokenized on arrival, in the callers'
// goroutines (in parallel); their sequences wait in one bounded queue; each replica, the
// moment it is free, takes the oldest waiting sequences of all jobs that fit its token budget
// (never waiting for a fuller batch while it would sit idle). A replica already running a batch
// starts another once the queue holds half the tokens of the one in flight (nextBatchThreshold),
// so the device has the next batch ready and batches stay about the size of what arrives.
// Response encoding happens in the callers' goroutines, overlapping the next device batch.
type Continuous struct {
	cfg            Config
	replicas       []Runner
	maxBatchTokens int

	mu      sync.Mutex
	wake    *sync.Cond // signalled when work arrives or the engine closes
	queue   []queued
	queuedT int // tokens in queue
	pending int // jobs accepted and not yet answered
	closing bool
	busyOn  []int // batches in flight per replica
	busyT   []int // tokens in flight per replica
	stats   Stats

	workers sync.WaitGroup
}

// queued is one waiting sequence.
type queued struct {
	job  *contJob
	idx  int
	ids  []int32
	from int // leading tokens left out of pooling
}

// contJob is one accepted job's state, guarded by Continuous.mu.
type contJob struct {
	vectors    [][]float32
	left       int // sequences not yet back from a device
	queued     int // sequences still in the queue
	enqueued   time.Time
	firstStart time.Time
	lastEnd    time.Time
	err        error
	finished   bool
	done       chan struct{}
}

// NewContinuous starts one worker per replica. maxBatchTokens is the token budget of one
// batch; it must hold at least one sequence of the longest allowed length.
func NewContinuous(cfg Config, replicas []Runner, maxBatchTokens int) (*Continuous, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if len(replicas) == 0 {
		return nil, errors.New("engine: no replicas")
	}
	if maxBatchTokens < cfg.MaxSequenceLength {
		return nil, fmt.Errorf("engine: batch token budget %d is below the sequence limit %d", maxBatchTokens, cfg.MaxSequenceLength)
	}
	c := &Continuous{cfg: cfg, replicas: replicas, maxBatchTokens: maxBatchTokens, busyOn: make([]int, len(replicas)), busyT: make([]int, len(replicas))}
	c.wake = sync.NewCond(&c.mu)
	c.stats.Replicas = len(replicas)
	for i, r := range replicas {
		for range max(1, cfg.BatchesPerReplica) {
			c.workers.Add(1)
			go c.work(i, r)
		}
	}
	return c, nil
}

// Embed implements Engine.
func (c *Continuous) Embed(ctx context.Context, job Job) (Result, error) {
	start := time.Now()
	seqs, poolFrom, err := tokenize(&c.cfg, job)
	if err != nil {
		return Result{}, err
	}
	res := Result{Tokens: seqLens(seqs)}
	res.Timing.Tokenize = time.Since(start)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if len(seqs) == 0 { // nothing to queue, and nothing would ever finish it
		res.Vectors = [][]float32{}
		return res, nil
	}

	j := &contJob{vectors: make([][]float32, len(seqs)), left: len(seqs), queued: len(seqs), done: make(chan struct{})}
	c.mu.Lock()
	switch {
	case c.closing:
		c.mu.Unlock()
		return res, ErrClosed
	case len(c.queue)+len(seqs) > c.cfg.MaxQueuedSequences:
		c.mu.Unlock()
		return res, ErrOverloaded
	}
	j.enqueued = time.Now()
	for i, ids := range seqs {
		c.queue = append(c.queue, queued{job: j, idx: i, ids: ids, from: poolFrom})
		c.queuedT += len(ids)
	}
	c.pending++
	c.mu.Unlock()
	c.wake.Broadcast()

	select {
	case <-j.done:
	case <-ctx.Done():
		c.abandon(j, ctx.Err())
		<-j.done
	}
	if j.err != nil {
		return res, j.err
	}
	res.Vectors = j.vectors
	res.Timing.Queue = j.firstStart.Sub(j.enqueued)
	res.Timing.Inference = j.lastEnd.Sub(j.firstStart)
	return res, nil
}

// abandon drops a job whose caller has gone: its queued sequences leave the queue now, before
// any device sees them; those already on a device are discarded when they come back.
func (c *Continuous) abandon(j *contJob, cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stats.DroppedSequences += uint64(c.failLocked(j, cause))
}

// failLocked finishes j with err and removes its queued sequences, returning how many.
func (c *Continuous) failLocked(j *contJob, err error) (removed int) {
	if j.finished {
		return 0
	}
	removed = j.queued
	if j.queued > 0 {
		kept := c.queue[:0]
		for _, q := range c.queue {
			if q.job == j {
				c.queuedT -= len(q.ids)
				continue
			}
			kept = append(kept, q)
		}
		clear(c.queue[len(kept):]) // let the dropped ids be collected
		c.queue = kept
		j.queued = 0
	}
	j.err = err
	c.finishLocked(j)
	return removed
}

func (c *Continuous) finishLocked(j *contJob) {
	j.finished = true
	c.pending--
	close(j.done)
	if c.closing && c.pending == 0 {
		c.wake.Broadcast()
	}
}

// work drives one replica (one of its in-flight slots) until the engine closes and the queue is empty.
func (c *Continuous) work(replica int, r Runner) {
	defer c.workers.Done()
	for {
		batch, ok := c.take(replica, r)
		if !ok {
			return
		}
		seqs := make([][]int32, len(batch))
		var poolFrom []int
		for i, q := range batch {
			seqs[i] = q.ids
			if q.from > 0 {
				if poolFrom == nil {
					poolFrom = make([]int, len(batch))
				}
				poolFrom[i] = q.from
			}
		}
		started := time.Now()
		vectors, stats, err := r.Run(context.Background(), seqs, poolFrom)
		ended := time.Now()
		if err == nil && len(vectors) != len(seqs) {
			err = fmt.Errorf("the model returned %d vectors for %d sequences", len(vectors), len(seqs))
		}
		c.deliver(replica, batch, vectors, stats, err, started, ended)
	}
}

// maxLookahead bounds how far into the queue the batch former looks for sequences that fit.
const maxLookahead = 8192

// take blocks until there is work, then forms a batch for replica r: the oldest sequences
// first, each that still fits the token budget (first fit, so short ones fill what long ones
// leave), trimmed to what one device step holds when the runner can tell. The oldest always
// fits an empty budget, so nothing starves; the model packs the batch by length.
func (c *Continuous) take(replica int, r Runner) ([]queued, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.queue) == 0 || (c.busyOn[replica] > 0 && c.queuedT < c.nextBatchThreshold(replica)) {
		if c.closing && c.pending == 0 {
			return nil, false
		}
		c.wake.Wait()
	}
	budget := c.maxBatchTokens
	var batch []queued
	var taken []int // queue positions of batch
	for i, q := range c.queue {
		if i == maxLookahead {
			break // a deep queue is not rescanned from end to end for every batch
		}
		if len(q.ids) <= budget {
			budget -= len(q.ids)
			batch = append(batch, q)
			taken = append(taken, i)
			if budget < 2 { // no sequence is shorter than [CLS][SEP]
				break
			}
		}
	}
	if fitter, ok := r.(StepFitter); ok && len(batch) > 1 {
		n, cut := c.fit(fitter, batch, c.busyOn[replica] > 0)
		batch, taken = batch[:n], taken[:n]
		if cut {
			c.stats.CutBatches++
		}
	}
	kept := c.queue[:0]
	next := 0
	for i, q := range c.queue {
		if next < len(taken) && taken[next] == i {
			next++
			q.job.queued--
			c.queuedT -= len(q.ids)
			continue
		}
		kept = append(kept, q)
	}
	clear(c.queue[len(kept):])
	c.queue = kept
	c.busyOn[replica]++
	for _, q := range batch {
		c.busyT[replica] += len(q.ids)
	}
	return batch, true
}

// fit trims batch to what one device step holds, and says whether it was cut to the rung
// below. With Config.BusyBatchCut, a busy replica's batch that spills a little over a rung
// runs on the rung below, the spill waiting for the next batch (at the front of the queue):
// the device is busy anyway, and the rung above would cost its whole step for the few tokens.
func (c *Continuous) fit(fitter StepFitter, batch []queued, busy bool) (n int, cut bool) {
	lengths := make([]int, len(batch))
	for i, q := range batch {
		lengths[i] = len(q.ids)
	}
	n = max(1, min(fitter.FitStep(lengths), len(batch)))
	cutter, ok := fitter.(StepCutter)
	if !busy || c.cfg.BusyBatchCut == 0 || !ok || n < 2 {
		return n, false
	}
	slots, all := cutter.StepSlots(lengths[:n]), 0
	for _, l := range lengths[:n] {
		all += l
	}
	// A step 90% full has little to gain, and the search below costs a few plans (0.1-0.2 ms
	// for a GPU-sized step, under the engine's lock).
	if slots == 0 || float64(all) >= 0.9*float64(slots) {
		return n, false
	}
	k, below := cutter.FitStepBelow(lengths[:n], slots)
	if k == 0 || below == 0 {
		return n, false
	}
	kept := 0
	for _, l := range lengths[:k] {
		kept += l
	}
	fuller := float64(kept)/float64(below) > float64(all)/float64(slots)
	if fuller && float64(all-kept) <= c.cfg.BusyBatchCut*float64(all) {
		return k, true
	}
	return n, false
}

// nextBatchThreshold is the queued tokens at which a replica with a batch in flight starts
// another: half the tokens in flight and at least Config.MinPipelineTokens, at most a full
// batch. An idle replica takes whatever waits. Waiting for half keeps a busy device from
// being handed a trickle of small batches, each paying a step's fixed cost, while a second
// batch is still ready before the first ends, so the device does not idle between them;
// under a steady load the two batches in flight settle near equal halves of the work, each on
// the rung that holds it. Starting only on a full batch, as before, made a closed loop of 256
// clients run about one 10 k-token batch at a time on the 16 k-slot rung. (Sending the next
// batch just before the device is predicted free instead, with all that waits then, kept the
// H200 idle between steps: docs/notes/modernbert.md, session 10.)
func (c *Continuous) nextBatchThreshold(replica int) int {
	return min(c.maxBatchTokens, max(1, c.busyT[replica]/2, c.cfg.MinPipelineTokens))
}

// deliver hands a batch's vectors to their jobs, or fails them all with the device's error.
func (c *Continuous) deliver(replica int, batch []queued, vectors [][]float32, stats BatchStats, err error, started, ended time.Time) {
	jobs := make(map[*contJob]struct{}, 8)
	for _, q := range batch {
		jobs[q.job] = struct{}{}
	}
	// Reported before any job of the batch is answered, so that a caller who has its answer
	// sees the batch in the metrics.
	if c.cfg.OnBatch != nil {
		c.cfg.OnBatch(BatchReport{Replica: replica, Requests: len(jobs), Sequences: len(batch), Stats: stats, Err: err})
	}
	c.mu.Lock()
	c.busyOn[replica]--
	for _, q := range batch {
		c.busyT[replica] -= len(q.ids)
	}
	if len(c.queue) > 0 {
		c.wake.Broadcast() // a worker of this replica may have been waiting for it to be idle
	}
	c.stats.Batches++
	if err != nil {
		c.stats.DeviceErrors++
		c.stats.LastError = err.Error()
		c.stats.LastErrorAt = ended
	} else {
		c.stats.Sequences += uint64(len(batch))
		c.stats.RealTokens += uint64(stats.RealTokens)
		c.stats.SlotTokens += uint64(stats.SlotTokens)
	}
	for i, q := range batch {
		j := q.job
		if j.finished {
			continue // its caller left, or an earlier batch failed it
		}
		if err != nil {
			c.failLocked(j, &DeviceError{Replica: replica, Err: err})
			continue
		}
		if j.firstStart.IsZero() || started.Before(j.firstStart) {
			j.firstStart = started
		}
		if ended.After(j.lastEnd) {
			j.lastEnd = ended
		}
		j.vectors[q.idx] = vectors[i]
		j.left--
		if j.left == 0 {
			c.finishLocked(j)
		}
	}
	c.mu.Unlock()
}

// Stats implements Engine.
func (c *Continuous) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.stats
	s.QueuedRequests = c.pending
	s.QueuedSequences = len(c.queue)
	s.QueuedTokens = c.queuedT
	for _, n := range c.busyOn {
		if n > 0 {
			s.BusyReplicas++
		}
	}
	return s
}

// Close implements Engine: accepted jobs are finished first.
func (c *Continuous) Close() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.wake.Broadcast()
	c.workers.Wait()
}
