package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/embedbench/embedbench/internal/modernbert"
)

// The tests run the real model (a tiny random ModernBERT on the pure-Go backend): the engine's
// promises are about what reaches a device and what comes back, so nothing is faked.

const testMaxSeq = 128

func tinyConfig() modernbert.Config {
	return modernbert.DefaultConfig().Scaled(2, 64, 4, 128)
}

func newTinyModel(t *testing.T) *modernbert.Model {
	t.Helper()
	cfg := tinyConfig()
	m, err := modernbert.New(context.Background(), cfg, modernbert.RandomWeights(cfg, 1), modernbert.Options{
		Backend: "simplego", MaxSequenceLength: testMaxSeq, MaxBatchTokens: 1024, PaddedRows: 8,
	})
	if err != nil {
		t.Fatalf("building the tiny model: %v", err)
	}
	t.Cleanup(m.Close)
	return m
}

// randomSeqs makes sequences of the given lengths shaped like tokenizer output.
func randomSeqs(rng *rand.Rand, lengths ...int) [][]int32 {
	cfg := tinyConfig()
	seqs := make([][]int32, len(lengths))
	for i, n := range lengths {
		seq := make([]int32, n)
		for j := range seq {
			seq[j] = int32(rng.IntN(50000))
		}
		seq[0], seq[n-1] = cfg.CLSTokenID, cfg.SEPTokenID
		seqs[i] = seq
	}
	return seqs
}

func randomLengths(rng *rand.Rand, n, lo, hi int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = lo + rng.IntN(hi-lo+1)
	}
	return out
}

func cosine(a, b []float32) float64 {
	var dot, na, nb float64
	for i := range a {
		dot += float64(a[i]) * float64(b[i])
		na += float64(a[i]) * float64(a[i])
		nb += float64(b[i]) * float64(b[i])
	}
	return dot / math.Sqrt(na*nb)
}

func checkClose(t *testing.T, what string, got, want [][]float32) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d vectors, want %d", what, len(got), len(want))
	}
	for i := range want {
		if c := cosine(got[i], want[i]); c < 0.999 || math.IsNaN(c) {
			t.Fatalf("%s: vector %d has cosine %.6f with the reference, want >= 0.999", what, i, c)
		}
	}
}

func testConfig() Config {
	return Config{MaxSequenceLength: testMaxSeq, MaxQueuedSequences: 4096}
}

func TestSequentialAndContinuousAgree(t *testing.T) {
	m := newTinyModel(t)
	rng := rand.New(rand.NewPCG(1, 2))
	seqs := randomSeqs(rng, randomLengths(rng, 40, 2, testMaxSeq)...)
	seqs = append(seqs, randomSeqs(rng, 2)...) // an empty text is [CLS][SEP]

	// The reference: each sequence alone, so no batching choice can hide in it.
	want := make([][]float32, len(seqs))
	for i, s := range seqs {
		v, _, err := m.Embed(context.Background(), [][]int32{s}, modernbert.Padded)
		if err != nil {
			t.Fatal(err)
		}
		want[i] = v[0]
	}

	seq, err := NewSequential(testConfig(), ModelRunner(m, modernbert.Padded), 8)
	if err != nil {
		t.Fatal(err)
	}
	res, err := seq.Embed(context.Background(), Job{IDs: seqs})
	seq.Close()
	if err != nil {
		t.Fatal(err)
	}
	checkClose(t, "sequential", res.Vectors, want)
	if st := seq.Stats(); st.Batches != 6 || st.Sequences != uint64(len(seqs)) {
		t.Errorf("sequential ran %d batches of %d sequences in all, want 6 batches (42 texts by 8) and %d", st.Batches, st.Sequences, len(seqs))
	}

	cont, err := NewContinuous(testConfig(), []Runner{ModelRunner(m, modernbert.Packed)}, 1024)
	if err != nil {
		t.Fatal(err)
	}
	res, err = cont.Embed(context.Background(), Job{IDs: seqs})
	cont.Close()
	if err != nil {
		t.Fatal(err)
	}
	checkClose(t, "continuous", res.Vectors, want)
	for i, n := range res.Tokens {
		if n != len(seqs[i]) {
			t.Fatalf("input %d: %d tokens reported, want %d", i, n, len(seqs[i]))
		}
	}
	if res.Timing.Inference <= 0 {
		t.Errorf("inference time %v, want > 0", res.Timing.Inference)
	}
}

func TestContinuousSpreadsConcurrentJobsOverReplicas(t *testing.T) {
	models := []*modernbert.Model{newTinyModel(t), newTinyModel(t)}
	for _, depth := range []int{1, 2} {
		t.Run(fmt.Sprintf("%d batches in flight per replica", depth), func(t *testing.T) {
			testReplicas(t, models, depth)
		})
	}
}

func testReplicas(t *testing.T, models []*modernbert.Model, depth int) {
	var mu sync.Mutex
	perReplica := map[int]int{}
	requestsInBatch := 0
	cfg := testConfig()
	cfg.BatchesPerReplica = depth
	cfg.OnBatch = func(b BatchReport) {
		mu.Lock()
		defer mu.Unlock()
		perReplica[b.Replica] += b.Sequences
		requestsInBatch = max(requestsInBatch, b.Requests)
		if b.Stats.RealTokens > 512 {
			t.Errorf("batch of %d real tokens over the budget of 512", b.Stats.RealTokens)
		}
	}
	eng, err := NewContinuous(cfg, []Runner{ModelRunner(models[0], modernbert.Packed), ModelRunner(models[1], modernbert.Packed)}, 512)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()

	rng := rand.New(rand.NewPCG(3, 4))
	jobs := make([][][]int32, 12)
	for i := range jobs {
		jobs[i] = randomSeqs(rng, randomLengths(rng, 1+rng.IntN(8), 2, 100)...)
	}
	results := make([]Result, len(jobs))
	errs := make([]error, len(jobs))
	var wg sync.WaitGroup
	for i := range jobs {
		wg.Go(func() { results[i], errs[i] = eng.Embed(context.Background(), Job{IDs: jobs[i]}) })
	}
	wg.Wait()

	total := 0
	for i, seqs := range jobs {
		if errs[i] != nil {
			t.Fatalf("job %d: %v", i, errs[i])
		}
		want, _, err := models[0].Embed(context.Background(), seqs, modernbert.Padded)
		if err != nil {
			t.Fatal(err)
		}
		checkClose(t, "job", results[i].Vectors, want)
		total += len(seqs)
	}
	mu.Lock()
	defer mu.Unlock()
	if perReplica[0]+perReplica[1] != total || perReplica[0] == 0 || perReplica[1] == 0 {
		t.Errorf("sequences per replica %v, want all %d spread over both", perReplica, total)
	}
	if requestsInBatch < 2 {
		t.Errorf("no batch mixed sequences of several requests (max %d)", requestsInBatch)
	}
}

// busyWith submits a job big enough to keep the single replica busy for several batches, and
// returns once its first batch is on the device.
func busyWith(t *testing.T, eng Engine, seqs [][]int32) <-chan error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := eng.Embed(context.Background(), Job{IDs: seqs})
		done <- err
	}()
	deadline := time.Now().Add(10 * time.Second)
	for eng.Stats().BusyReplicas == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the engine never started the big job")
		}
		time.Sleep(time.Millisecond)
	}
	return done
}

func TestContinuousDropsQueuedWorkOfCancelledJob(t *testing.T) {
	eng, held, release := newHeldEngine(t, testConfig(), 256)
	rng := rand.New(rand.NewPCG(5, 6))
	big := randomSeqs(rng, slices.Repeat([]int{100}, 16)...) // 8 batches of two, 56 tokens left in each
	bigDone := make(chan error, 1)
	go func() {
		_, err := eng.Embed(context.Background(), Job{IDs: big})
		bigDone <- err
	}()
	<-held.held // the big job's first batch is on the device

	// The small job queues behind the big one's remaining sequences (oldest first), and none of
	// its sequences fits what a big batch leaves, so it cannot reach the device before its
	// caller gives up.
	small := randomSeqs(rng, 60, 70, 80)
	ctx, cancel := context.WithCancel(context.Background())
	smallDone := make(chan error, 1)
	go func() {
		_, err := eng.Embed(ctx, Job{IDs: small})
		smallDone <- err
	}()
	for eng.Stats().QueuedRequests < 2 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-smallDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled job returned %v, want context.Canceled", err)
	}
	st := eng.Stats()
	if st.DroppedSequences != uint64(len(small)) {
		t.Errorf("%d sequences dropped, want the cancelled job's %d", st.DroppedSequences, len(small))
	}
	release()
	if err := <-bigDone; err != nil {
		t.Fatalf("big job: %v", err)
	}
	if st := eng.Stats(); st.Sequences != uint64(len(big)) || st.QueuedSequences != 0 {
		t.Errorf("devices embedded %d sequences (queue %d), want only the big job's %d", st.Sequences, st.QueuedSequences, len(big))
	}
}

func TestSequentialDropsCancelledJobBeforeTheDevice(t *testing.T) {
	eng, err := NewSequential(testConfig(), ModelRunner(newTinyModel(t), modernbert.Padded), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	rng := rand.New(rand.NewPCG(7, 8))
	big := randomSeqs(rng, randomLengths(rng, 48, 100, testMaxSeq)...)
	bigDone := busyWith(t, eng, big)

	small := randomSeqs(rng, 10, 20, 30)
	ctx, cancel := context.WithCancel(context.Background())
	smallDone := make(chan error, 1)
	go func() {
		_, err := eng.Embed(ctx, Job{IDs: small})
		smallDone <- err
	}()
	for eng.Stats().QueuedRequests < 2 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-smallDone; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled job returned %v, want context.Canceled", err)
	}
	// It leaves the queue's figures when its caller goes, not when the worker reaches it.
	if st := eng.Stats(); st.QueuedRequests > 1 || st.QueuedSequences != 0 || st.DroppedSequences != uint64(len(small)) || st.QueuedTokens != -1 {
		t.Errorf("after the waiting job's caller left: %d requests and %d sequences queued, %d dropped, tokens %d; want at most the big one (on the device), 0, %d and -1 (not known before the worker tokenizes)",
			st.QueuedRequests, st.QueuedSequences, st.DroppedSequences, st.QueuedTokens, len(small))
	}
	if err := <-bigDone; err != nil {
		t.Fatalf("big job: %v", err)
	}
	eng.Close() // the worker has passed the cancelled job once Close returns
	if st := eng.Stats(); st.DroppedSequences != uint64(len(small)) || st.Sequences != uint64(len(big)) {
		t.Errorf("dropped %d and embedded %d sequences, want %d dropped and only the big job's %d embedded",
			st.DroppedSequences, st.Sequences, len(small), len(big))
	}
}

func TestDeviceErrorFailsTheBatchAndTheEngineLivesOn(t *testing.T) {
	m := newTinyModel(t)
	m.Close() // a device that can no longer run anything
	eng, err := NewContinuous(testConfig(), []Runner{ModelRunner(m, modernbert.Packed)}, 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	rng := rand.New(rand.NewPCG(9, 10))
	for range 2 {
		_, err := eng.Embed(context.Background(), Job{IDs: randomSeqs(rng, 5, 6)})
		var dev *DeviceError
		if !errors.As(err, &dev) {
			t.Fatalf("got %v, want a *DeviceError", err)
		}
	}
	if st := eng.Stats(); st.DeviceErrors != 2 || st.LastError == "" || st.LastErrorAt.IsZero() {
		t.Errorf("stats %+v, want 2 device errors with the last one described", st)
	}
	// A job larger than a step fails with its first batch; the rest of it leaves the queue,
	// and is not counted as dropped for a client that went away.
	long := randomSeqs(rng, slices.Repeat([]int{120}, 20)...)
	if _, err := eng.Embed(context.Background(), Job{IDs: long}); err == nil {
		t.Fatal("a job on a broken device succeeded")
	}
	if st := eng.Stats(); st.DroppedSequences != 0 || st.QueuedSequences != 0 {
		t.Errorf("after a failed job: %d sequences counted dropped by departed clients, %d queued; want 0 and 0", st.DroppedSequences, st.QueuedSequences)
	}
}

func TestQueueBoundAndClose(t *testing.T) {
	cfg := testConfig()
	cfg.MaxQueuedSequences = 4
	m := newTinyModel(t)
	rng := rand.New(rand.NewPCG(11, 12))
	cont, err := NewContinuous(cfg, []Runner{ModelRunner(m, modernbert.Packed)}, 1024)
	if err != nil {
		t.Fatal(err)
	}
	seq, err := NewSequential(cfg, ModelRunner(m, modernbert.Padded), 4)
	if err != nil {
		t.Fatal(err)
	}
	for name, eng := range map[string]Engine{"continuous": cont, "sequential": seq} {
		if _, err := eng.Embed(context.Background(), Job{IDs: randomSeqs(rng, 3, 3, 3, 3, 3)}); !errors.Is(err, ErrOverloaded) {
			t.Errorf("%s: 5 sequences into a queue of 4 gave %v, want ErrOverloaded", name, err)
		}
		if _, err := eng.Embed(context.Background(), Job{IDs: randomSeqs(rng, 3, 3)}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		eng.Close()
		if _, err := eng.Embed(context.Background(), Job{IDs: randomSeqs(rng, 3)}); !errors.Is(err, ErrClosed) {
			t.Errorf("%s: after Close got %v, want ErrClosed", name, err)
		}
	}
}

func TestInvalidTokenInput(t *testing.T) {
	eng, err := NewContinuous(testConfig(), []Runner{ModelRunner(newTinyModel(t), modernbert.Packed)}, 1024)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	var invalid *InvalidInputError
	if _, err := eng.Embed(context.Background(), Job{IDs: [][]int32{{1, 2}, {}}}); !errors.As(err, &invalid) || invalid.Index != 1 {
		t.Errorf("empty token list gave %v, want an InvalidInputError for input 1", err)
	}
	if _, err := eng.Embed(context.Background(), Job{IDs: [][]int32{make([]int32, testMaxSeq+1)}}); !errors.As(err, &invalid) {
		t.Errorf("over-long token list gave %v, want an InvalidInputError", err)
	}
	if _, err := eng.Embed(context.Background(), Job{Texts: []string{"no tokenizer"}}); err == nil {
		t.Error("texts without a tokenizer were accepted")
	}
}

// A job of no inputs is answered at once with no vectors, by both engines: nothing queued for
// it would ever finish it, and an engine that waited would also hold up its own Close.
func TestEmptyJobIsAnsweredAtOnce(t *testing.T) {
	m := newTinyModel(t)
	seq, err := NewSequential(testConfig(), ModelRunner(m, modernbert.Padded), 8)
	if err != nil {
		t.Fatal(err)
	}
	cont, err := NewContinuous(testConfig(), []Runner{ModelRunner(m, modernbert.Packed)}, 1024)
	if err != nil {
		t.Fatal(err)
	}
	for name, eng := range map[string]Engine{"sequential": seq, "continuous": cont} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		res, err := eng.Embed(ctx, Job{IDs: [][]int32{}})
		cancel()
		if err != nil || len(res.Vectors) != 0 {
			t.Errorf("%s: %d vectors, err %v; want none, at once", name, len(res.Vectors), err)
		}
		closed := make(chan struct{})
		go func() { eng.Close(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: Close still waiting 10 s after the empty jobs", name)
		}
	}
}

// A stream of one-text jobs must not starve a big one: oldest first, the big job's sequences
// go out ahead of the small jobs that came after it, in about as many steps as it needs alone.
func TestSmallJobsDoNotStarveABigOne(t *testing.T) {
	m := newTinyModel(t)
	var clients sync.WaitGroup
	var mu sync.Mutex
	// The stream's texts are 6 tokens, 48 at most in a batch; the big job's sequences 90 to 110.
	// Its cost is the batches from the first that carries one of them to the last.
	batches, first, last := 0, 0, 0
	cfg := testConfig()
	cfg.OnBatch = func(b BatchReport) {
		mu.Lock()
		defer mu.Unlock()
		batches++
		if b.Stats.RealTokens >= 90 {
			first = cmp.Or(first, batches)
			last = batches
		}
	}
	eng, err := NewContinuous(cfg, []Runner{ModelRunner(m, modernbert.Packed)}, 512)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	stop := make(chan struct{})
	for i := range 8 {
		seq := randomSeqs(rand.New(rand.NewPCG(uint64(i), 1)), 6)
		clients.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := eng.Embed(context.Background(), Job{IDs: seq}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	time.Sleep(100 * time.Millisecond) // the stream is flowing
	big := randomSeqs(rng, randomLengths(rng, 40, 90, 110)...)
	done := make(chan error, 1)
	go func() {
		_, err := eng.Embed(context.Background(), Job{IDs: big})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("a 40-sequence job beside a stream of one-text jobs did not finish in 60 s: starved")
	}
	close(stop)
	clients.Wait()
	mu.Lock()
	defer mu.Unlock()
	// About 4,000 tokens is 8 steps of 512; allow the small jobs ahead of it and rounding.
	if during := last - first + 1; first == 0 || during > 16 {
		t.Errorf("the big job took %d batches, want at most 16 (it needs 8 alone)", during)
	}
}

// heldRunner runs the real model but holds its first batch until release is closed.
type heldRunner struct {
	Runner
	started atomic.Bool
	held    chan struct{} // closed once the first batch is held
	release chan struct{}
}

func (r *heldRunner) Run(ctx context.Context, seqs [][]int32, poolFrom []int) ([][]float32, BatchStats, error) {
	if !r.started.Swap(true) {
		close(r.held)
		<-r.release
	}
	return r.Runner.Run(ctx, seqs, poolFrom)
}

// newHeldEngine starts a one-replica continuous engine over the tiny model whose first batch
// stays on the device until release is called, or the test ends.
func newHeldEngine(t *testing.T, cfg Config, budget int) (eng *Continuous, held *heldRunner, release func()) {
	t.Helper()
	held = &heldRunner{Runner: ModelRunner(newTinyModel(t), modernbert.Packed), held: make(chan struct{}), release: make(chan struct{})}
	eng, err := NewContinuous(cfg, []Runner{held}, budget)
	if err != nil {
		t.Fatal(err)
	}
	release = sync.OnceFunc(func() { close(held.release) })
	t.Cleanup(eng.Close)
	t.Cleanup(release) // cleanups run last first: the release before Close, which waits for the held batch
	return eng, held, release
}

// With a batch in flight, a replica starts a second one once half as many tokens wait, not
// only when a full batch does (a closed loop of clients would otherwise run one batch at a
// time); a trickle smaller than that waits to join a fuller batch.
func TestBusyReplicaStartsTheNextBatchAtHalfTheWorkInFlight(t *testing.T) {
	cfg := testConfig()
	cfg.BatchesPerReplica = 2
	eng, held, release := newHeldEngine(t, cfg, 512)
	rng := rand.New(rand.NewPCG(8, 9))
	embed := func(seqs [][]int32) <-chan error {
		done := make(chan error, 1)
		go func() {
			_, err := eng.Embed(context.Background(), Job{IDs: seqs})
			done <- err
		}()
		return done
	}
	first := embed(randomSeqs(rng, 50, 50, 50, 50)) // 200 tokens, held on the device
	<-held.held
	select {
	case err := <-embed(randomSeqs(rng, 60, 60)): // 120 tokens: at least half of 200
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("a job of 120 tokens waited behind a 200-token batch in flight: no second batch was started")
	}
	trickle := embed(randomSeqs(rng, 10)) // 10 tokens: under half of 200
	time.Sleep(50 * time.Millisecond)
	if st := eng.Stats(); st.QueuedSequences != 1 {
		t.Errorf("%d sequences queued while a 200-token batch is in flight, want the 10-token one waiting", st.QueuedSequences)
	}
	release()
	for _, done := range []<-chan error{first, trickle} {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// Below Config.MinPipelineTokens a second batch is not worth its step's fixed cost: the work
// waits for the replica to be free, then runs as one batch.
func TestSmallWorkWaitsForTheReplicaBelowThePipelineFloor(t *testing.T) {
	var mu sync.Mutex
	var batches []int // sequences per batch
	cfg := testConfig()
	cfg.BatchesPerReplica = 2
	cfg.MinPipelineTokens = 300
	cfg.OnBatch = func(b BatchReport) {
		mu.Lock()
		defer mu.Unlock()
		batches = append(batches, b.Sequences)
	}
	eng, held, release := newHeldEngine(t, cfg, 512)
	rng := rand.New(rand.NewPCG(10, 11))
	var jobs sync.WaitGroup
	embed := func(seqs [][]int32) {
		jobs.Go(func() {
			if _, err := eng.Embed(context.Background(), Job{IDs: seqs}); err != nil {
				t.Error(err)
			}
		})
	}
	embed(randomSeqs(rng, 50, 50, 50, 50)) // 200 tokens, held on the device
	<-held.held
	embed(randomSeqs(rng, 60, 60)) // half of 200, under the floor of 300
	embed(randomSeqs(rng, 70))
	for eng.Stats().QueuedSequences < 3 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if st := eng.Stats(); st.QueuedSequences != 3 {
		t.Errorf("%d sequences queued, want all 3 (190 tokens) waiting below the floor of 300", st.QueuedSequences)
	}
	release()
	jobs.Wait()
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(batches, []int{4, 3}) {
		t.Errorf("batches of %v sequences, want [4 3]: the waiting work runs as one batch once the replica is free", batches)
	}
}
