package engine

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sync"
	"time"
)

// Sequential is what a HuggingFace/LangChain service does: one job at a time, in arrival
// order; the job's texts tokenized, sorted by length (longest first, as sentence-transformers
// does) and cut into batches of batchSize, each padded to its longest by the Runner.
type Sequential struct {
	cfg       Config
	runner    Runner
	batchSize int

	jobs chan *seqJob // waiting jobs; never more than MaxQueuedSequences, as each holds one or more

	mu      sync.Mutex
	closing bool
	queuedS int // sequences of jobs waiting for the worker, abandoned ones left out
	// abandoned counts jobs still in the channel whose callers have gone: out of the queue's
	// figures at once, skipped when the worker reaches them.
	abandoned int
	stats     Stats
	busy      bool

	worker sync.WaitGroup
}

// maxWaitingJobs caps the job channel's buffer: the sequence bound usually bites first, and a
// full channel is refused like a full queue.
const maxWaitingJobs = 1 << 14

type seqJob struct {
	ctx      context.Context
	job      Job
	enqueued time.Time
	res      Result
	err      error
	done     chan struct{}
	// started and gone are guarded by Sequential.mu: the worker took the job, or its caller
	// left before that.
	started, gone bool
}

// NewSequential starts the single worker. runner should pad (one sequence per row).
func NewSequential(cfg Config, runner Runner, batchSize int) (*Sequential, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if batchSize < 1 {
		return nil, errors.New("engine: batch size must be positive")
	}
	s := &Sequential{cfg: cfg, runner: runner, batchSize: batchSize, jobs: make(chan *seqJob, min(cfg.MaxQueuedSequences, maxWaitingJobs))}
	s.stats.Replicas = 1
	s.worker.Add(1)
	go s.work()
	return s, nil
}

// Embed implements Engine. Tokenization happens on the worker, as in a single-threaded
// Python service, so its time is part of the serial work.
func (s *Sequential) Embed(ctx context.Context, job Job) (Result, error) {
	if err := s.cfg.CheckJob(job); err != nil {
		return Result{}, err
	}
	sj := &seqJob{ctx: ctx, job: job, done: make(chan struct{})}
	n := job.size()
	s.mu.Lock()
	switch {
	case s.closing:
		s.mu.Unlock()
		return Result{}, ErrClosed
	case s.queuedS+n > s.cfg.MaxQueuedSequences:
		s.mu.Unlock()
		return Result{}, ErrOverloaded
	}
	sj.enqueued = time.Now()
	select {
	case s.jobs <- sj:
		s.queuedS += n
	default:
		s.mu.Unlock()
		return Result{}, ErrOverloaded
	}
	s.mu.Unlock()
	select {
	case <-sj.done:
		return sj.res, sj.err
	case <-ctx.Done():
		// Still waiting: it leaves the queue's figures now, and the worker skips it. Taken
		// already: the worker stops it at its next batch.
		s.mu.Lock()
		if !sj.started {
			sj.gone = true
			s.abandoned++
			s.queuedS -= n
			s.stats.DroppedSequences += uint64(n)
		}
		s.mu.Unlock()
		return Result{}, ctx.Err()
	}
}

func (s *Sequential) work() {
	defer s.worker.Done()
	for sj := range s.jobs {
		s.mu.Lock()
		if sj.gone {
			s.abandoned--
			s.mu.Unlock()
			close(sj.done)
			continue
		}
		sj.started = true
		s.queuedS -= sj.job.size()
		s.busy = true
		s.mu.Unlock()
		sj.res, sj.err = s.run(sj)
		s.mu.Lock()
		s.busy = false
		s.mu.Unlock()
		close(sj.done)
	}
}

func (s *Sequential) run(sj *seqJob) (Result, error) {
	var res Result
	if err := sj.ctx.Err(); err != nil {
		s.drop(sj.job.size())
		return res, err
	}
	start := time.Now()
	res.Timing.Queue = start.Sub(sj.enqueued)
	seqs, from, err := tokenize(&s.cfg, sj.job)
	if err != nil {
		return res, err
	}
	var poolFrom []int
	if from > 0 {
		poolFrom = make([]int, 0, s.batchSize)
	}
	res.Tokens = seqLens(seqs)
	inferStart := time.Now()
	res.Timing.Tokenize = inferStart.Sub(start)

	order := make([]int, len(seqs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(len(seqs[b]), len(seqs[a])) })
	res.Vectors = make([][]float32, len(seqs))
	batch := make([][]int32, 0, s.batchSize)
	for lo := 0; lo < len(order); lo += s.batchSize {
		if err := sj.ctx.Err(); err != nil {
			s.drop(len(order) - lo)
			return res, err
		}
		hi := min(lo+s.batchSize, len(order))
		batch = batch[:0]
		for _, i := range order[lo:hi] {
			batch = append(batch, seqs[i])
		}
		if poolFrom != nil {
			poolFrom = poolFrom[:0]
			for range batch {
				poolFrom = append(poolFrom, from)
			}
		}
		vectors, stats, err := s.runner.Run(context.Background(), batch, poolFrom)
		if err == nil && len(vectors) != len(batch) {
			err = errors.New("the model returned a wrong number of vectors")
		}
		s.record(len(batch), stats, err)
		if err != nil {
			return res, &DeviceError{Err: err}
		}
		for k, i := range order[lo:hi] {
			res.Vectors[i] = vectors[k]
		}
	}
	res.Timing.Inference = time.Since(inferStart)
	return res, nil
}

func (s *Sequential) drop(n int) {
	s.mu.Lock()
	s.stats.DroppedSequences += uint64(n)
	s.mu.Unlock()
}

func (s *Sequential) record(n int, stats BatchStats, err error) {
	s.mu.Lock()
	s.stats.Batches++
	if err != nil {
		s.stats.DeviceErrors++
		s.stats.LastError = err.Error()
		s.stats.LastErrorAt = time.Now()
	} else {
		s.stats.Sequences += uint64(n)
		s.stats.RealTokens += uint64(stats.RealTokens)
		s.stats.SlotTokens += uint64(stats.SlotTokens)
	}
	s.mu.Unlock()
	if s.cfg.OnBatch != nil {
		s.cfg.OnBatch(BatchReport{Requests: 1, Sequences: n, Stats: stats, Err: err})
	}
}

// Stats implements Engine.
func (s *Sequential) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.QueuedRequests = len(s.jobs) - s.abandoned
	st.QueuedSequences = s.queuedS
	st.QueuedTokens = -1 // texts are tokenized on the worker, as an HF service does: not known yet
	if s.busy {
		st.BusyReplicas = 1
		st.QueuedRequests++ // the one on the device is not answered yet either
	}
	return st
}

// Close implements Engine: jobs already accepted are run (or dropped if their callers left).
func (s *Sequential) Close() {
	s.mu.Lock()
	if !s.closing {
		s.closing = true
		close(s.jobs)
	}
	s.mu.Unlock()
	s.worker.Wait()
}
