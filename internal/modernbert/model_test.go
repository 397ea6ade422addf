package modernbert

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// tinyConfig is a small model of the real architecture: windows matter from 9 tokens on.
func tinyConfig() Config {
	c := DefaultConfig().Scaled(4, 48, 3, 96)
	c.VocabSize, c.MaxPositionEmbeddings, c.LocalAttention = 512, 2048, 16
	c.PadTokenID, c.CLSTokenID, c.SEPTokenID = 3, 1, 2
	return c
}

func randomSeqs(rng *rand.Rand, cfg Config, lengths ...int) [][]int32 {
	seqs := make([][]int32, len(lengths))
	for i, n := range lengths {
		seq := make([]int32, n)
		for j := range seq {
			seq[j] = int32(5 + rng.IntN(cfg.VocabSize-5))
		}
		seq[0] = cfg.CLSTokenID
		if n > 1 {
			seq[n-1] = cfg.SEPTokenID
		}
		seqs[i] = seq
	}
	return seqs
}

func newTiny(t *testing.T, opts Options) *Model {
	t.Helper()
	cfg := tinyConfig()
	if opts.Backend == "" {
		opts.Backend = "simplego"
	}
	if opts.MaxSequenceLength == 0 {
		opts.MaxSequenceLength = 256
	}
	m, err := New(context.Background(), cfg, RandomWeights(cfg, 7), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Close)
	return m
}

func maxAbsDiff(a, b []float32) float64 {
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}

func TestPackingDoesNotChangeVectors(t *testing.T) {
	m := newTiny(t, Options{MaxBatchTokens: 512})
	rng := rand.New(rand.NewPCG(1, 2))
	seqs := randomSeqs(rng, m.Config(), 1, 2, 5, 17, 40, 64, 65, 100, 200, 256, 3, 9)
	packed, pstats := mustEmbed(t, m, seqs, Packed)
	padded, _ := mustEmbed(t, m, seqs, Padded)
	for i, seq := range seqs {
		alone, _ := mustEmbed(t, m, [][]int32{seq}, Packed)
		if d := maxAbsDiff(alone[0], packed[i]); d > 1e-5 {
			t.Errorf("sequence %d (%d tokens): packed with others differs from alone by %g", i, len(seq), d)
		}
		if d := maxAbsDiff(alone[0], padded[i]); d > 1e-5 {
			t.Errorf("sequence %d (%d tokens): padded differs from packed alone by %g", i, len(seq), d)
		}
	}
	if pstats.RealTokens != 762 || pstats.SlotTokens < pstats.RealTokens {
		t.Errorf("stats %+v", pstats)
	}
	t.Logf("packed stats %+v waste %.2f", pstats, pstats.Waste())
}

// One short text runs the smallest step there is (one row of the shortest length), a full batch
// the largest, and the text gets the same vector on every rung.
func TestStepLadder(t *testing.T) {
	t.Setenv(EnvVariant, "cpu-graph") // the compiled steps' planning, which XLA runs
	m := newTiny(t, Options{MaxBatchTokens: 1024, MaxSequenceLength: 256})
	rng := rand.New(rand.NewPCG(3, 4))
	ctx := context.Background()
	query := randomSeqs(rng, m.Config(), 9)
	t0 := time.Now()
	alone, st, err := m.Embed(ctx, query, Packed)
	took := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.PerStep) != 1 || st.PerStep[0].Slots != m.opts.RowLengths[0] || st.PerStep[0].RealTokens != 9 {
		t.Fatalf("one 9-token text ran steps %+v, want one row of %d slots", st.PerStep, m.opts.RowLengths[0])
	}
	// Where the step's time went: every phase measured, none negative, together within the call.
	var sum time.Duration
	for p, d := range st.PerStep[0].Phases {
		if d < 0 || (p == PhaseExecute && d == 0) {
			t.Errorf("phase %s took %v", PhaseNames[p], d)
		}
		sum += d
	}
	if sum > took {
		t.Errorf("the step's phases add up to %v, more than the call's %v", sum, took)
	}
	// A few texts take a small rung; many fill the largest one.
	few := append(randomSeqs(rng, m.Config(), 30, 200, 150), query[0])
	_, st, err = m.Embed(ctx, few, Packed)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.PerStep) != 1 || st.PerStep[0].Slots >= m.MaxBatchTokens() || st.PerStep[0].Slots < st.RealTokens {
		t.Errorf("4 texts, %d tokens: steps %+v, want one step smaller than %d", st.RealTokens, st.PerStep, m.MaxBatchTokens())
	}
	many := append(randomSeqs(rng, m.Config(), slices.Repeat([]int{60}, 16)...), query[0])
	full, st := mustEmbed(t, m, many, Packed)
	if st.PerStep[0].Slots != m.MaxBatchTokens() {
		t.Errorf("%d tokens: first step %+v, want the full %d slots", st.RealTokens, st.PerStep[0], m.MaxBatchTokens())
	}
	if d := maxAbsDiff(alone[0], full[len(full)-1]); d > 1e-5 {
		t.Errorf("the text alone and in a full step differ by %g", d)
	}
	// Padded, as HF pads: one text is one row of its length bucket.
	padded, st := mustEmbed(t, m, query, Padded)
	if len(st.PerStep) != 1 || st.PerStep[0].Slots != m.opts.RowLengths[0] {
		t.Errorf("one text padded ran %+v, want one row of %d", st.PerStep, m.opts.RowLengths[0])
	}
	if d := maxAbsDiff(alone[0], padded[0]); d > 1e-5 {
		t.Errorf("packed alone and padded alone differ by %g", d)
	}
}

func TestEmbedRefusesBadInput(t *testing.T) {
	m := newTiny(t, Options{Layouts: []Layout{Packed}, MaxSequenceLength: 128, RowLengths: []int{64, 128}})
	ctx := context.Background()
	cases := map[string][][]int32{
		"is empty":            {{1, 2}, {}},
		"more than the max":   {make([]int32, 129)},
		"outside the vocabul": {{1, 600, 2}},
		"outside the vocab":   {{1, -1, 2}},
	}
	for want, seqs := range cases {
		if _, _, err := m.Embed(ctx, seqs, Packed); err == nil || !strings.Contains(err.Error(), strings.Fields(want)[0]) {
			t.Errorf("%v: error %v, want one saying %q", seqs, err, want)
		}
	}
	if _, _, err := m.Embed(ctx, [][]int32{{1, 2}}, Padded); err == nil || !strings.Contains(err.Error(), "Options.Layouts") {
		t.Errorf("padded on a packed-only model: error %v", err)
	}
	got, stats, err := m.Embed(ctx, nil, Packed)
	if err != nil || len(got) != 0 || stats.Steps != 0 {
		t.Errorf("no sequences: %v %+v %v", got, stats, err)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, _, err := m.Embed(cancelled, [][]int32{{1, 2}}, Packed); err == nil {
		t.Error("a cancelled context must stop Embed")
	}
}

func TestConcurrentEmbedCallsAgree(t *testing.T) {
	m := newTiny(t, Options{Layouts: []Layout{Packed}, MaxSequenceLength: 128, RowLengths: []int{64, 128}, MaxBatchTokens: 256, Pipeline: 2})
	rng := rand.New(rand.NewPCG(3, 4))
	seqs := randomSeqs(rng, m.Config(), 5, 60, 33, 128, 2, 90, 17, 64, 70, 8)
	want, stats := mustEmbed(t, m, seqs, Packed)
	if stats.Steps < 2 {
		t.Fatalf("want several pipelined steps, got %+v", stats)
	}
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for g := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, _, err := m.Embed(context.Background(), seqs, Packed)
			if err != nil {
				errs[g] = err
				return
			}
			for i := range seqs {
				if d := maxAbsDiff(got[i], want[i]); d > 1e-6 {
					errs[g] = fmt.Errorf("sequence %d differs by %g under concurrency", i, d)
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
}

func TestFitPackedFillsOneStep(t *testing.T) {
	t.Setenv(EnvVariant, "cpu-graph") // the compiled steps' planning, which XLA runs
	m := newTiny(t, Options{Layouts: []Layout{Packed}, MaxSequenceLength: 128, RowLengths: []int{64, 128}, MaxBatchTokens: 256, PackedRowLength: 64})
	lengths := []int{60, 60, 60, 60, 10, 10}
	if n, slots := m.FitPacked(lengths), m.PackedStepSlots(lengths[:4]); n != 4 || slots != 256 {
		t.Fatalf("FitPacked(%v) = %d in %d slots, want 4 in 256 (4 rows of 64)", lengths, n, slots)
	}
	if n := m.FitPacked([]int{128, 128, 128}); n != 2 {
		t.Fatalf("two 128-token rows per 256-token step, got %d", n)
	}
	// A long sequence no longer ends the step: the short ones fill its second 128-token row.
	if n := m.FitPacked([]int{100, 30, 30, 30, 30, 30}); n != 5 {
		t.Fatalf("mixed lengths: FitPacked = %d, want 5 (100 | 30+30+30+30 in two rows of 128)", n)
	}
	if n, slots := m.FitPacked([]int{5}), m.PackedStepSlots([]int{5}); n != 1 || slots == 0 || slots > 64 {
		t.Fatalf("a single sequence always fits, in a row of its size: got %d in %d slots", n, slots)
	}
	// Below the 256-slot step: the rung of 128 slots holds two rows of 64.
	if n, slots := m.FitPackedBelow(lengths, 256); n != 2 || slots != 128 {
		t.Fatalf("FitPackedBelow(%v, 256) = %d in %d slots, want 2 in 128", lengths, n, slots)
	}
	if n, slots := m.FitPackedBelow([]int{60}, 64); n != 0 || slots != 0 {
		t.Fatalf("nothing fits below a 60-token text's own step: got %d in %d slots", n, slots)
	}
}

// TestBiasesAreApplied covers configs with norm, attention and MLP biases (none of the
// published checkpoints has them): zero biases change nothing, a non-zero one changes vectors.
func TestBiasesAreApplied(t *testing.T) {
	plain := tinyConfig()
	plain.NumHiddenLayers = 2
	biased := plain
	biased.NormBias, biased.AttentionBias, biased.MLPBias = true, true, true
	opts := Options{Backend: "simplego", Layouts: []Layout{Packed}, MaxSequenceLength: 64, RowLengths: []int{64}}
	seqs := randomSeqs(rand.New(rand.NewPCG(5, 6)), plain, 10, 40)
	embed := func(cfg Config, w *Weights) [][]float32 { return embedOnce(t, cfg, w, opts, seqs, Packed) }
	want := embed(plain, RandomWeights(plain, 9))
	wb := RandomWeights(biased, 9) // biases are zeros; the other tensors draw the same numbers
	for _, name := range []string{"layers.1.attn.Wqkv.bias", "layers.1.mlp.Wo.bias", "final_norm.bias"} {
		if _, ok := wb.Tensors[name]; !ok {
			t.Fatalf("random weights of a biased config lack %s", name)
		}
	}
	got := embed(biased, wb)
	for i := range seqs {
		if d := maxAbsDiff(got[i], want[i]); d > 1e-6 {
			t.Fatalf("zero biases changed sequence %d by %g", i, d)
		}
	}
	wb.Tensors["layers.1.mlp.Wo.bias"].Data[0] = 0.5
	got = embed(biased, wb)
	if d := maxAbsDiff(got[0], want[0]); d < 1e-4 {
		t.Fatalf("a non-zero MLP bias did not change the vector (diff %g)", d)
	}
}

func TestReplicasShareCompiledSteps(t *testing.T) {
	t.Setenv(EnvVariant, "cpu-graph") // the compiled steps' planning, which XLA runs
	opts := Options{Layouts: []Layout{Packed}, MaxSequenceLength: 64, RowLengths: []int{64}}
	a := newTiny(t, opts)
	b := newTiny(t, opts)
	if !slices.Equal(a.packed[64], b.packed[64]) {
		t.Fatal("two replicas of the same shapes on one backend compiled twice")
	}
	seqs := randomSeqs(rand.New(rand.NewPCG(8, 9)), a.Config(), 7, 30)
	a.Close()
	got, _, err := b.Embed(context.Background(), seqs, Packed)
	if err != nil || len(got) != 2 {
		t.Fatalf("the other replica must keep working after one closes: %v", err)
	}
}

func TestFitPackedMatchesLinearSearch(t *testing.T) {
	t.Setenv(EnvVariant, "cpu-graph") // the compiled steps' planning, which XLA runs
	m := newTiny(t, Options{Layouts: []Layout{Packed}, MaxSequenceLength: 128, RowLengths: []int{64, 128}, MaxBatchTokens: 512, PackedRowLength: 64})
	rng := rand.New(rand.NewPCG(11, 12))
	for trial := range 50 {
		lengths := make([]int, 40)
		for i := range lengths {
			lengths[i] = 1 + rng.IntN(64)
			if trial%5 == 0 && i == 20 {
				lengths[i] = 100 // a long one: the short ones join its step when they fit
			}
		}
		want := 1
		for k := 2; k <= len(lengths); k++ {
			if len(m.planPacked(lengths[:k])) > 1 {
				break
			}
			want = k
		}
		if got := m.FitPacked(lengths); got != want {
			t.Fatalf("trial %d: FitPacked = %d, linear search says %d (lengths %v)", trial, got, want, lengths)
		}
		slots := m.PackedStepSlots(lengths[:want])
		// Below that step: the longest prefix whose one step has fewer slots.
		wantBelow := 0
		for k := 1; k <= want; k++ {
			if m.packedStepSlots(lengths[:k]) >= slots {
				break
			}
			wantBelow = k
		}
		if got, _ := m.FitPackedBelow(lengths, slots); got != wantBelow {
			t.Fatalf("trial %d: FitPackedBelow(%d slots) = %d, linear search says %d (lengths %v)", trial, slots, got, wantBelow, lengths)
		}
	}
}

func TestUnknownVariantIsRefused(t *testing.T) {
	t.Setenv(EnvVariant, "scores-f32,bogus")
	cfg := tinyConfig()
	_, err := New(context.Background(), cfg, RandomWeights(cfg, 7), Options{Backend: "simplego", MaxSequenceLength: 64, RowLengths: []int{64}})
	if err == nil || !strings.Contains(err.Error(), `"bogus"`) {
		t.Fatalf("New with %s=scores-f32,bogus: got %v, want an error naming the bad variant", EnvVariant, err)
	}
}

// Options no device could run are refused by New, whichever command passed them.
func TestOptionsOutOfRangeAreRefused(t *testing.T) {
	cfg := tinyConfig()
	for _, o := range []Options{
		{MaxBatchTokens: -1}, {MemoryFraction: -0.5}, {MemoryFraction: 1.5}, {MemoryFraction: math.NaN()},
	} {
		o.Backend, o.MaxSequenceLength = "simplego", 64
		if m, err := New(context.Background(), cfg, RandomWeights(cfg, 7), o); err == nil {
			m.Close()
			t.Errorf("New accepted %+v", o)
		}
	}
}

// TestMixedLengthsShareOneStep: short sequences join a long one's step (its spare row and the
// gap after it) instead of running a mostly empty step of their own, and keep their vectors.
func TestMixedLengthsShareOneStep(t *testing.T) {
	t.Setenv(EnvVariant, "cpu-graph") // the compiled steps' planning, which XLA runs
	m := newTiny(t, Options{Layouts: []Layout{Packed}, MaxSequenceLength: 128, RowLengths: []int{64, 128}, MaxBatchTokens: 256, PackedRowLength: 64})
	seqs := randomSeqs(rand.New(rand.NewPCG(3, 4)), m.Config(), 100, 30, 20, 60, 10)
	got, stats := mustEmbed(t, m, seqs, Packed)
	if stats.Steps != 1 {
		t.Fatalf("%d steps for 220 tokens in one 2x128 step's room, want 1", stats.Steps)
	}
	for i, seq := range seqs {
		alone, _ := mustEmbed(t, m, [][]int32{seq}, Packed)
		if d := maxAbsDiff(alone[0], got[i]); d > 1e-5 {
			t.Errorf("sequence %d (%d tokens): sharing a step changed it by %g", i, len(seq), d)
		}
	}
}

// embedOnce builds a model, embeds seqs in layout and closes the model.
func embedOnce(t *testing.T, cfg Config, w *Weights, opts Options, seqs [][]int32, layout Layout) [][]float32 {
	t.Helper()
	m, err := New(context.Background(), cfg, w, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	got, _ := mustEmbed(t, m, seqs, layout)
	return got
}

// The default ladder on XLA is dense where short texts run (so that a step costs about what is
// queued) and the same shape below another top; simplego's is every power of two.
func TestDefaultStepSlots(t *testing.T) {
	for _, c := range []struct {
		spec string
		top  int
		want []int
	}{
		{"xla:cuda", 16384, []int{1024, 2048, 3072, 4096, 6144, 8192, 10240, 12288, 14336, 16384}},
		{"xla:cuda", 8192, []int{1024, 1536, 2048, 3072, 4096, 5120, 6144, 7168, 8192}},
		{"xla:cuda", 1024, []int{1024}},
		{"simplego", 2048, []int{64, 128, 256, 512, 1024, 2048}},
	} {
		if got := defaultStepSlots(c.spec, c.top); !slices.Equal(got, c.want) {
			t.Errorf("%s, top %d: %v, want %v", c.spec, c.top, got, c.want)
		}
	}
}

// Rows of the packed length get every rung of the ladder; longer rows, rarer, keep rungs 4x
// apart and the top; rows shorter than the packed length run one row alone. Shapes compile
// concurrently and each is compiled once.
func TestLadderShapes(t *testing.T) {
	t.Setenv(EnvVariant, "cpu-graph") // the compiled steps, which XLA runs
	m := newTiny(t, Options{MaxBatchTokens: 2048, MaxSequenceLength: 1024, StepSlots: []int{256, 512, 1024, 1536, 2048},
		Layouts: []Layout{Packed}})
	want := []string{"1x64/8", "1x128/16", "1x256/32", "2x256/32", "4x256/32", "6x256/32", "8x256/32",
		"1x512/64", "4x512/64", "1x1024/64", "2x1024/64"}
	if got := m.Info().Shapes; !slices.Equal(got, want) {
		t.Errorf("shapes %v, want %v", got, want)
	}
	if got, want := m.Info().StepSlots, []int{64, 128, 256, 512, 1024, 1536, 2048}; !slices.Equal(got, want) {
		t.Errorf("step slots %v, want those of the shapes, once each: %v", got, want)
	}
	// Padded (the sequential engine): one row first, then rungs 4x apart, up to PaddedRows.
	padded := newTiny(t, Options{MaxBatchTokens: 2048, MaxSequenceLength: 256, StepSlots: []int{1024, 2048},
		PaddedRows: 32, Layouts: []Layout{Padded}})
	wantPadded := []string{"1x64/1", "16x64/1", "32x64/1", "1x128/1", "8x128/1", "16x128/1", "1x256/1", "4x256/1", "8x256/1"}
	if got := padded.Info().Shapes; !slices.Equal(got, wantPadded) {
		t.Errorf("padded shapes %v, want %v", got, wantPadded)
	}
	for _, c := range []struct{ in, want []int }{
		{[]int{1, 2, 4, 8, 12, 16, 24, 32}, []int{1, 4, 16, 32}},
		{[]int{2, 4, 8}, []int{2, 8}},
		{[]int{5}, []int{5}},
	} {
		if got := thinLadder(c.in); !slices.Equal(got, c.want) {
			t.Errorf("thinLadder(%v) = %v, want %v", c.in, got, c.want)
		}
	}
}

func TestCompileParallelism(t *testing.T) {
	if n := compileParallelism(); n < 2 || n > 6 {
		t.Errorf("default %d shapes at once, want 2 to 6", n)
	}
	t.Setenv(EnvCompileParallelism, "1")
	if n := compileParallelism(); n != 1 {
		t.Errorf("%s=1 gave %d", EnvCompileParallelism, n)
	}
	t.Setenv(EnvCompileParallelism, "many")
	if n := compileParallelism(); n < 2 {
		t.Errorf("an unreadable %s gave %d, want the default", EnvCompileParallelism, n)
	}
}

// A start-up cancelled while shapes compile returns the context's error and leaves no compiled
// step behind; replicas built at once share each shape.
func TestCompileCancelsAndShares(t *testing.T) {
	t.Setenv(EnvVariant, "cpu-graph") // the compiled steps, which XLA runs
	cfg := tinyConfig()
	opts := Options{Backend: "simplego", MaxBatchTokens: 2048, MaxSequenceLength: 256, Layouts: []Layout{Packed}}
	compiled := func() int {
		compiledMu.Lock()
		defer compiledMu.Unlock()
		return len(compiledSteps)
	}
	before := compiled()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := New(ctx, cfg, RandomWeights(cfg, 7), opts); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled start-up returned %v, want context.Canceled", err)
	}
	if left := compiled() - before; left != 0 {
		t.Errorf("%d compiled steps left behind by a cancelled start-up", left)
	}

	models := make([]*Model, 3)
	errs := make([]error, len(models))
	var wg sync.WaitGroup
	for i := range models {
		wg.Go(func() { models[i], errs[i] = New(context.Background(), cfg, RandomWeights(cfg, 7), opts) })
	}
	wg.Wait()
	for i, m := range models {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		defer m.Close()
		if !slices.Equal(m.packed[256], models[0].packed[256]) {
			t.Errorf("replica %d compiled its own steps", i)
		}
	}
}

// mustEmbed is m.Embed that ends the test on an error.
func mustEmbed(t *testing.T, m *Model, seqs [][]int32, layout Layout) ([][]float32, Stats) {
	t.Helper()
	got, st, err := m.Embed(context.Background(), seqs, layout)
	if err != nil {
		t.Fatal(err)
	}
	return got, st
}

// Models on different PJRT clients never share a compiled step (an executable belongs to its
// client); on simplego, which has one backend, Client changes nothing; a negative one is refused.
func TestClientsKeepTheirOwnSteps(t *testing.T) {
	gs := graphSpec{cfg: tinyConfig(), rows: 4, rowLen: 64, segments: 8}
	on := func(spec string, client int) string {
		return (&Model{backendSpec: spec, opts: Options{Client: client}}).stepKey(gs)
	}
	if on("xla:/plugin.so", 0) == on("xla:/plugin.so", 1) || on("xla:/plugin.so", 1) == on("xla:/plugin.so", 2) {
		t.Error("two XLA clients share a compiled step")
	}
	if on("xla:/plugin.so", 1) != on("xla:/plugin.so", 1) || on("simplego", 0) != on("simplego", 3) {
		t.Error("the same client (or simplego's one backend) does not find its own compiled step")
	}
	first := newTiny(t, Options{Layouts: []Layout{Packed}})
	second := newTiny(t, Options{Layouts: []Layout{Packed}, Client: 1})
	if first.backend != second.backend {
		t.Error("simplego opened a second backend for Client 1")
	}
	cfg := tinyConfig()
	if _, err := New(context.Background(), cfg, RandomWeights(cfg, 7), Options{Backend: "simplego", Client: -1}); err == nil || !strings.Contains(err.Error(), "client -1") {
		t.Errorf("Client -1: err = %v, want a refusal", err)
	}
}
