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

// With Config.BusyBatchCut, a busy replica's batch that spills a little over a rung runs on
// the rung below, the spill going with the next batch; an idle replica's batch, a large spill,
// or a batch that the rung below would not fill better, stays whole. Without it, nothing is cut.
func TestBusyBatchLeavesASmallSpillToTheNextBatch(t *testing.T) {
	m := newRungModel(t)
	fitter := ModelRunner(m, modernbert.Packed).(StepFitter)
	c := &Continuous{cfg: Config{BusyBatchCut: 0.15}}
	rng := rand.New(rand.NewPCG(22, 23))
	batchOf := func(lengths ...int) []queued {
		var b []queued
		for _, ids := range randomSeqs(rng, lengths...) {
			b = append(b, queued{ids: ids})
		}
		return b
	}
	for _, tc := range []struct {
		what    string
		lengths []int
		busy    bool
		wantN   int
	}{
		{"idle: three rows take the 256-slot rung", []int{60, 60, 5, 5}, false, 4},
		{"busy: 10 of 130 tokens wait, two rows of 60 fill 128 slots", []int{60, 60, 5, 5}, true, 2},
		{"busy, a spill of 60 of 180 tokens: whole", []int{60, 60, 30, 30}, true, 4},
		{"busy, a full step: the rung below is no fuller", []int{60, 60, 60, 60}, true, 4},
	} {
		n, cut := c.fit(fitter, batchOf(tc.lengths...), tc.busy)
		if n != tc.wantN || cut != (n < len(tc.lengths)) {
			t.Errorf("%s: fit = %d sequences (cut %v), want %d", tc.what, n, cut, tc.wantN)
		}
	}
	off := &Continuous{}
	if n, cut := off.fit(fitter, batchOf(60, 60, 5, 5), true); n != 4 || cut {
		t.Errorf("BusyBatchCut 0, busy: fit = %d sequences (cut %v), want all 4 whole", n, cut)
	}
}

// Through the engine: the spill of a busy replica's batch waits in the queue, and every vector
// still matches the sequence's vector alone.
func TestBusyReplicaRunsTheSpillWithTheNextBatch(t *testing.T) {
	m := newRungModel(t)
	var mu sync.Mutex
	var batches []int
	cfg := Config{MaxSequenceLength: 64, MaxQueuedSequences: 100, BatchesPerReplica: 2, BusyBatchCut: 0.15}
	cfg.OnBatch = func(b BatchReport) {
		mu.Lock()
		defer mu.Unlock()
		batches = append(batches, b.Sequences)
	}
	runner := ModelRunner(m, modernbert.Packed)
	held := &heldRunner{Runner: runner, held: make(chan struct{}), release: make(chan struct{})}
	eng, err := NewContinuous(cfg, []Runner{heldFitter{held, runner.(StepCutter)}}, 256)
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
	// The cut batch leaves its spill queued at once, but it must also come back before the held
	// one is let go, or the order below is the scheduler's.
	reported := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(batches)
	}
	for deadline := time.Now().Add(30 * time.Second); eng.Stats().QueuedSequences != 2 || reported() != 1; {
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s, %d sequences queued and %d batches back: the busy batch was not cut", eng.Stats().QueuedSequences, reported())
		}
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

// heldFitter is a heldRunner that can still fit and cut steps.
type heldFitter struct {
	*heldRunner
	StepCutter
}

func (h heldFitter) Run(ctx context.Context, seqs [][]int32, poolFrom []int) ([][]float32, BatchStats, error) {
	return h.heldRunner.Run(ctx, seqs, poolFrom)
}

func TestBusyBatchCutOutsideZeroToOneIsRefused(t *testing.T) {
	m := newRungModel(t)
	for _, cut := range []float64{-0.1, 1.5} {
		cfg := Config{MaxSequenceLength: 64, MaxQueuedSequences: 10, BusyBatchCut: cut}
		if eng, err := NewContinuous(cfg, []Runner{ModelRunner(m, modernbert.Packed)}, 256); err == nil {
			eng.Close()
			t.Errorf("BusyBatchCut %g accepted", cut)
		}
	}
}
