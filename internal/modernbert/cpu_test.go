package modernbert

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/embedbench/embedbench/internal/blas"
)

// newTinyCPU builds the tiny model on the native CPU path, or skips where no BLAS is loaded
// (scripts/test.sh installs OpenBLAS, so CI runs it).
func newTinyCPU(t *testing.T, opts Options) *Model {
	t.Helper()
	if _, err := cpuBLAS(); err != nil {
		t.Skipf("no BLAS: %v", err)
	}
	m := newTiny(t, opts)
	if m.cpu == nil {
		t.Fatalf("the native CPU path was not chosen: %s", m.Info().CPU)
	}
	return m
}

func TestNativeCPUMatchesTheGraph(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	cfg := tinyConfig()
	// Lengths on both sides of the sliding window (16) and of the packed row, one of the maximum.
	seqs := randomSeqs(rng, cfg, 1, 2, 7, 8, 9, 17, 40, 64, 65, 130, 256)
	for _, pooling := range []Pooling{Mean, CLS} {
		for _, normalize := range []bool{true, false} {
			opts := Options{Pooling: pooling, Normalize: normalize}
			native := newTinyCPU(t, opts)
			t.Setenv(EnvVariant, "cpu-graph")
			graph := newTiny(t, opts)
			t.Setenv(EnvVariant, "")
			if graph.cpu != nil {
				t.Fatal("cpu-graph still ran the native path")
			}
			for _, layout := range []Layout{Packed, Padded} {
				want, _ := mustEmbed(t, graph, seqs, layout)
				got, st := mustEmbed(t, native, seqs, layout)
				for i := range seqs {
					if d := maxAbsDiff(got[i], want[i]); d > 2e-5 {
						t.Errorf("%s normalize=%v %s: sequence %d (%d tokens) differs from the graph by %.2g", pooling, normalize, layout, i, len(seqs[i]), d)
					}
				}
				if layout == Packed && st.SlotTokens != st.RealTokens {
					t.Errorf("packed: %d slots for %d tokens: the native path pads nothing", st.SlotTokens, st.RealTokens)
				}
				if layout == Padded && st.SlotTokens <= st.RealTokens {
					t.Errorf("padded: %d slots for %d tokens: HF's batches pad to their longest", st.SlotTokens, st.RealTokens)
				}
			}
		}
	}
}

func TestNativeCPUStepsFollowTheWork(t *testing.T) {
	m := newTinyCPU(t, Options{MaxBatchTokens: 300})
	rng := rand.New(rand.NewPCG(7, 8))
	_, st := mustEmbed(t, m, randomSeqs(rng, m.Config(), 5), Packed)
	if st.Steps != 1 || st.SlotTokens != 5 {
		t.Fatalf("one 5-token text ran %d steps of %d slots, want one of 5", st.Steps, st.SlotTokens)
	}
	seqs := randomSeqs(rng, m.Config(), 100, 100, 100, 100, 100)
	if n, slots := m.FitPacked([]int{100, 100, 100, 100, 100}), m.PackedStepSlots([]int{100, 100, 100}); n != 3 || slots != 300 {
		t.Fatalf("FitPacked: %d of five 100-token texts in a %d-slot step, want 3 in 300", n, slots)
	}
	if n, slots := m.FitPackedBelow([]int{100, 100, 100}, 300); n != 2 || slots != 200 {
		t.Fatalf("FitPackedBelow: %d texts in %d slots below 300, want 2 in 200", n, slots)
	}
	_, st = mustEmbed(t, m, seqs, Packed)
	if st.Steps != 2 || st.RealTokens != 500 {
		t.Fatalf("500 tokens in steps of 300: %d steps, %d tokens", st.Steps, st.RealTokens)
	}
	if !strings.Contains(m.Info().CPU, "native") {
		t.Fatalf("Info().CPU = %q", m.Info().CPU)
	}
}

func TestNativeCPUStopsWhenCancelled(t *testing.T) {
	m := newTinyCPU(t, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rng := rand.New(rand.NewPCG(9, 9))
	if _, _, err := m.Embed(ctx, randomSeqs(rng, m.Config(), 50), Packed); !errors.Is(err, context.Canceled) {
		t.Fatalf("a cancelled call returned %v", err)
	}
}

func TestExp32(t *testing.T) {
	worst := 0.0
	for i := 0; i <= 900000; i++ {
		x := -float64(i) / 10000 // 0 .. -90
		want := math.Exp(float64(float32(x)))
		got := float64(exp32(float32(x)))
		if want < 0x1p-126 { // below float32's normal range: 0 or tiny is right
			if got > 0x1p-126 {
				t.Fatalf("exp32(%g) = %g, want ~%g", x, got, want)
			}
			continue
		}
		worst = max(worst, math.Abs(got-want)/want)
	}
	if worst > 2.5e-7 {
		t.Fatalf("exp32 is %.2g from math.Exp at worst on [-90, 0] (relative)", worst)
	}
}

func TestErf32(t *testing.T) {
	worst := 0.0
	for i := -60000; i <= 60000; i++ {
		x := float64(i) / 10000 // -6 .. 6
		worst = max(worst, math.Abs(float64(erf32(float32(x)))-math.Erf(x)))
	}
	if worst > 5e-7 {
		t.Fatalf("erf32 is %.2g from math.Erf at worst on [-6, 6]", worst)
	}
}

// float32 linear layers as three bf16 products (the default where AMX runs them faster) give
// float32's vectors: within 1e-5 of the exact sgemm's, far closer than bf16's own noise.
func TestNativeCPUFloat32AsBF16x3(t *testing.T) {
	if lib, err := cpuBLAS(); err != nil || !lib.HasBF16() {
		t.Skip("no bf16 product here (oneDNN: Debian's libdnnl2)")
	}
	rng := rand.New(rand.NewPCG(13, 14))
	seqs := randomSeqs(rng, tinyConfig(), 3, 17, 64, 130)
	t.Setenv(blas.EnvFloat32Products, "sgemm")
	exact := newTinyCPU(t, Options{Normalize: true})
	t.Setenv(blas.EnvFloat32Products, "bf16x3")
	split := newTinyCPU(t, Options{Normalize: true})
	if !strings.Contains(split.Info().CPU, "bfloat16x3") || !strings.Contains(exact.Info().CPU, "float32 products") {
		t.Fatalf("Info().CPU: %q and %q", exact.Info().CPU, split.Info().CPU)
	}
	want, _ := mustEmbed(t, exact, seqs, Packed)
	got, _ := mustEmbed(t, split, seqs, Packed)
	for i := range seqs {
		if d := maxAbsDiff(got[i], want[i]); d > 1e-5 || d == 0 {
			t.Errorf("sequence %d (%d tokens): bf16x3 differs from sgemm by %.2g, want (0, 1e-5]", i, len(seqs[i]), d)
		}
	}
}

// bf16 on CPU (oneDNN's product): the linear layers' inputs and weights rounded to bf16,
// accumulated in float32; the vectors stay within bf16's noise of float32's.
func TestNativeCPUBFloat16(t *testing.T) {
	if lib, err := cpuBLAS(); err != nil || !lib.HasBF16() {
		t.Skip("no bf16 product here (oneDNN: Debian's libdnnl2)")
	}
	rng := rand.New(rand.NewPCG(11, 12))
	seqs := randomSeqs(rng, tinyConfig(), 3, 17, 64, 130)
	f32 := newTinyCPU(t, Options{Normalize: true})
	bf16 := newTinyCPU(t, Options{Normalize: true, DType: BFloat16})
	want, _ := mustEmbed(t, f32, seqs, Packed)
	got, _ := mustEmbed(t, bf16, seqs, Packed)
	for i := range seqs {
		var dot float64
		for j := range got[i] {
			dot += float64(got[i][j]) * float64(want[i][j])
		}
		if dot < 0.999 || dot > 1.0001 {
			t.Errorf("sequence %d: bf16 against float32 cosine %.6f", i, dot)
		}
		if maxAbsDiff(got[i], want[i]) == 0 {
			t.Errorf("sequence %d: bf16 gave float32's vector exactly: the bf16 product did not run", i)
		}
	}
	if !strings.Contains(bf16.Info().CPU, "bfloat16") {
		t.Errorf("Info().CPU = %q", bf16.Info().CPU)
	}
}
