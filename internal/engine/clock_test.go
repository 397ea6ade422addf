package engine

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/embedbench/embedbench/internal/modernbert"
)

func TestDeviceClockLearnsStepCostsAndHostOverhead(t *testing.T) {
	margin := time.Millisecond
	d := newDeviceClock(margin)
	t0 := time.Now()
	at := func(ms float64) time.Time { return t0.Add(time.Duration(ms * float64(time.Millisecond))) }
	costIs := func(slots int, want time.Duration) {
		t.Helper()
		if got, ok := d.stepCost(slots); !ok || got != want {
			t.Fatalf("stepCost(%d) = %v, %v; want %v", slots, got, ok, want)
		}
	}

	// Nothing is known at first: a batch that ran on an idle device lands after the host's
	// share as well as its step, so it says nothing of either alone.
	a := d.send(at(0), 4096)
	d.land(a, at(6))
	if _, ok := d.stepCost(4096); ok {
		t.Fatal("learned a step cost from a batch that ran on an idle device")
	}

	// b runs; c is sent while b runs and lands 4 ms after it: c's step costs 4 ms.
	b := d.send(at(10), 4096)
	c := d.send(at(11), 4096)
	if _, ok := d.sendAt(); ok {
		t.Fatal("predicted the device's end with no step size ever measured")
	}
	d.land(b, at(15))
	d.land(c, at(19))
	costIs(4096, 4*time.Millisecond)

	// Now a batch on an idle device teaches the host overhead: 6 ms less its 4 ms step.
	e := d.send(at(30), 4096)
	d.land(e, at(36))
	if got, ok := estimate(d.overhead, 4096); !ok || got != 2*time.Millisecond {
		t.Fatalf("overhead(4096) = %v, %v; want 2ms", got, ok)
	}

	// A batch sent 0.5 ms before the one ahead landed reached the device after that one was
	// done (the overhead is 2 ms): its landing gap is not its step's cost.
	g := d.send(at(40), 4096)
	h := d.send(at(45.5), 4096)
	d.land(g, at(46))
	d.land(h, at(60))
	costIs(4096, 4*time.Millisecond)

	// Other sizes: between two seen they are interpolated, above all seen they take the largest
	// below (an underestimate), below all seen they have no answer.
	i := d.send(at(60), 4096)
	j := d.send(at(61), 8192)
	d.land(i, at(66))
	d.land(j, at(72))
	k := d.send(at(80), 4096)
	l := d.send(at(81), 12288)
	d.land(k, at(86))
	d.land(l, at(94))
	for _, tc := range []struct {
		slots int
		want  time.Duration
		ok    bool
	}{{4096, 4 * time.Millisecond, true}, {8192, 6 * time.Millisecond, true}, {10240, 7 * time.Millisecond, true},
		{12288, 8 * time.Millisecond, true}, {16384, 8 * time.Millisecond, true}, {1024, 0, false}} {
		if got, ok := d.stepCost(tc.slots); got != tc.want || ok != tc.ok {
			t.Errorf("stepCost(%d) = %v, %v; want %v, %v", tc.slots, got, ok, tc.want, tc.ok)
		}
	}
	// The average moves a fifth of the way toward each new sample.
	m := d.send(at(100), 12288)
	n := d.send(at(101), 12288)
	d.land(m, at(110))
	d.land(n, at(128))
	costIs(12288, 10*time.Millisecond)

	// Two in flight, p on an idle device: the next batch should leave so as to reach the device
	// as q's step ends, less the margin: p's step ends 4 ms after it was sent (plus the host's
	// share before it, which the next batch needs too), q's 10 ms after that.
	p := d.send(at(200), 4096)
	d.send(at(201), 12288)
	want := at(200 + 4 + 10 - 1)
	if got, ok := d.sendAt(); !ok || !got.Equal(want) {
		t.Fatalf("sendAt = %v, %v; want %v", got.Sub(t0), ok, want.Sub(t0))
	}
	// p lands late, at 208: its overhead sample (4 ms) moves the average to 2.4 ms, so p's step
	// was done at 205.6 and q's ends 10 ms after that.
	d.land(p, at(208))
	want = at(205.6 + 10 - 1)
	if got, ok := d.sendAt(); !ok || !got.Equal(want) {
		t.Fatalf("sendAt after p landed = %v, %v; want %v", got.Sub(t0), ok, want.Sub(t0))
	}
}

// serialDevice runs the tiny model as a device with a step time would: after the host's share
// (hostTime, concurrent), one step at a time for stepTime, as a GPU's stream runs the steps it
// is sent. It records each batch's sequences.
type serialDevice struct {
	modelFitter
	hostTime, stepTime time.Duration
	device             sync.Mutex

	mu      sync.Mutex
	batches []int
}

func (d *serialDevice) Run(ctx context.Context, seqs [][]int32, poolFrom []int) ([][]float32, BatchStats, error) {
	d.mu.Lock()
	d.batches = append(d.batches, len(seqs))
	d.mu.Unlock()
	time.Sleep(d.hostTime)
	d.device.Lock()
	time.Sleep(d.stepTime)
	d.device.Unlock()
	return d.modelFitter.Run(ctx, seqs, poolFrom)
}

func (d *serialDevice) seen() []int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.batches)
}

// Once a replica knows what its steps cost, a busy one sends its next batch just before the
// device is free, with everything that arrived meanwhile, instead of sending the first half
// batch that waits (which would leave the rest a whole step behind).
func TestBusyReplicaSendsTheNextBatchJustBeforeTheDeviceIsFree(t *testing.T) {
	dev := &serialDevice{modelFitter: modelFitter{modelRunner{m: newTinyModel(t), layout: modernbert.Packed}},
		hostTime: 20 * time.Millisecond, stepTime: 300 * time.Millisecond}
	cfg := testConfig()
	cfg.BatchesPerReplica = 2
	cfg.PipelineMargin = 20 * time.Millisecond
	eng, err := NewContinuous(cfg, []Runner{dev}, 1024)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	rng := rand.New(rand.NewPCG(20, 21))
	var jobs sync.WaitGroup
	embed := func(lengths ...int) {
		seqs := randomSeqs(rng, lengths...)
		jobs.Go(func() {
			if _, err := eng.Embed(context.Background(), Job{IDs: seqs}); err != nil {
				t.Error(err)
			}
		})
	}
	waitSent := func(n int) {
		for len(dev.seen()) < n {
			time.Sleep(time.Millisecond)
		}
	}

	// Learning: the second batch (at least half the tokens in flight) is sent at once and
	// queues behind the first, which teaches the clock what a 200-slot step costs.
	embed(50, 50, 50, 50)
	waitSent(1)
	embed(50, 50, 50, 50)
	jobs.Wait()
	if got := dev.seen(); !slices.Equal(got, []int{4, 4}) {
		t.Fatalf("learning batches of %v sequences, want [4 4]", got)
	}

	// A 200-token batch runs; a job past the half-batch rule arrives 20 ms in, three small ones
	// over the next 150 ms. They go together, just before the device is free.
	embed(50, 50, 50, 50)
	waitSent(3)
	time.Sleep(20 * time.Millisecond)
	embed(60, 60)
	for range 3 {
		time.Sleep(50 * time.Millisecond)
		embed(10)
	}
	jobs.Wait()
	if got := dev.seen(); !slices.Equal(got, []int{4, 4, 4, 5}) {
		t.Fatalf("batches of %v sequences, want [4 4 4 5]: the jobs that arrived during the third batch's step go as one", got)
	}
	if st := eng.Stats(); st.ClockedBatches != 1 {
		t.Errorf("%d batches sent by the device clock, want 1 (the fourth)", st.ClockedBatches)
	}
}

// newRungModel is the tiny model on compiled steps of rows of 64: rungs of 64, 128 and 256 slots.
func newRungModel(t *testing.T) *modernbert.Model {
	t.Helper()
	t.Setenv(modernbert.EnvVariant, "cpu-graph") // the compiled steps' planning, which XLA runs
	cfg := tinyConfig()
	m, err := modernbert.New(context.Background(), cfg, modernbert.RandomWeights(cfg, 1), modernbert.Options{
		Backend: "simplego", Layouts: []modernbert.Layout{modernbert.Packed}, MaxSequenceLength: 64,
		RowLengths: []int{64}, PackedRowLength: 64, MaxBatchTokens: 256,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

// A busy replica's batch that spills a little over a rung runs on the rung below, the spill
// going with the next batch; an idle replica's batch, a large spill, or a batch that the rung
// below would not fill better, stays whole.
func TestBusyBatchLeavesASmallSpillToTheNextBatch(t *testing.T) {
	m := newRungModel(t)
	fitter := ModelRunner(m, modernbert.Packed).(StepFitter)
	c := &Continuous{}
	rng := rand.New(rand.NewPCG(22, 23))
	batchOf := func(lengths ...int) []queued {
		var b []queued
		for _, ids := range randomSeqs(rng, lengths...) {
			b = append(b, queued{ids: ids})
		}
		return b
	}
	for _, tc := range []struct {
		what           string
		lengths        []int
		busy           bool
		wantN, wantSlt int
	}{
		{"idle: three rows take the 256-slot rung", []int{60, 60, 5, 5}, false, 4, 256},
		{"busy: 10 of 130 tokens wait, two rows of 60 fill 128 slots", []int{60, 60, 5, 5}, true, 2, 128},
		{"busy, a spill of 60 of 180 tokens: whole", []int{60, 60, 30, 30}, true, 4, 256},
		{"busy, a full step: the rung below is no fuller", []int{60, 60, 60, 60}, true, 4, 256},
	} {
		n, slots, cut := c.fit(fitter, batchOf(tc.lengths...), tc.busy)
		if n != tc.wantN || slots != tc.wantSlt || cut != (n < len(tc.lengths)) {
			t.Errorf("%s: fit = %d sequences in %d slots (cut %v), want %d in %d", tc.what, n, slots, cut, tc.wantN, tc.wantSlt)
		}
	}
}

// Through the engine: the spill of a busy replica's batch waits in the queue, and every vector
// still matches the sequence's vector alone.
func TestBusyReplicaRunsTheSpillWithTheNextBatch(t *testing.T) {
	m := newRungModel(t)
	var mu sync.Mutex
	var batches []int
	cfg := Config{MaxSequenceLength: 64, MaxQueuedSequences: 100, BatchesPerReplica: 2}
	cfg.OnBatch = func(b BatchReport) {
		mu.Lock()
		defer mu.Unlock()
		batches = append(batches, b.Sequences)
	}
	runner := ModelRunner(m, modernbert.Packed)
	held := &heldRunner{Runner: runner, held: make(chan struct{}), release: make(chan struct{})}
	eng, err := NewContinuous(cfg, []Runner{heldFitter{held, runner.(StepFitter)}}, 256)
	if err != nil {
		t.Fatal(err)
	}
	release := sync.OnceFunc(func() { close(held.release) })
	t.Cleanup(eng.Close)
	t.Cleanup(release)

	rng := rand.New(rand.NewPCG(24, 25))
	var jobs sync.WaitGroup
	embed := func(lengths ...int) {
		seqs := randomSeqs(rng, lengths...)
		jobs.Go(func() {
			res, err := eng.Embed(context.Background(), Job{IDs: seqs})
			if err != nil {
				t.Error(err)
				return
			}
			for i, s := range seqs {
				solo, _, err := m.Embed(context.Background(), [][]int32{s}, modernbert.Packed)
				if err != nil {
					t.Error(err)
					return
				}
				if c := cosine(res.Vectors[i], solo[0]); c < 0.999 {
					t.Errorf("a sequence of %d tokens: cosine %.6f with its vector alone", len(s), c)
				}
			}
		})
	}
	embed(60, 60, 5, 5) // idle: whole, held on the device
	<-held.held
	embed(60, 60, 5, 5) // busy: the two fives wait
	for eng.Stats().QueuedSequences != 2 {
		time.Sleep(time.Millisecond)
	}
	release()
	jobs.Wait()
	mu.Lock()
	defer mu.Unlock()
	// In the order they came back: the busy batch cut to two rows (while the first is held),
	// the held batch, then the spill.
	if !slices.Equal(batches, []int{2, 4, 2}) {
		t.Fatalf("batches of %v sequences, want [2 4 2]: the busy batch cut to the rung below, its spill after", batches)
	}
	if st := eng.Stats(); st.CutBatches != 1 {
		t.Errorf("%d batches cut, want 1", st.CutBatches)
	}
}

// heldFitter is a heldRunner that can still fit steps.
type heldFitter struct {
	*heldRunner
	StepFitter
}

func (h heldFitter) Run(ctx context.Context, seqs [][]int32, poolFrom []int) ([][]float32, BatchStats, error) {
	return h.heldRunner.Run(ctx, seqs, poolFrom)
}
