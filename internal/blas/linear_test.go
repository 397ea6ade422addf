package blas

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"golang.org/x/sys/cpu"
)

// Each precision against the float64 definition, on values that bf16 does not hold exactly:
// BFloat16x3 must be as good as float32 needs (error ~2^-16 of the terms' magnitude), and
// plain BFloat16 visibly worse, or the split would not be doing anything.
func TestLinearPrecisions(t *testing.T) {
	eachLibrary(t, func(t *testing.T, lib *Library) {
		rng := rand.New(rand.NewPCG(3, 4))
		m, n, k := x3MinRows+22, 90, 300 // enough rows for the three products, split over the threads
		x, w := make([]float32, m*k), make([]float32, n*k)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		for i := range w {
			w[i] = float32(rng.NormFloat64() * 0.05)
		}
		// worst is the largest error over an entry's scale, Σ|x·w| of its terms.
		worst := func(p Precision) float64 {
			ln, err := lib.NewLinear(w, n, k, p)
			if err != nil {
				t.Skipf("%s: %v", p, err)
			}
			y := make([]float32, m*n)
			for i := range y {
				y[i] = 1
			}
			ln.Apply(m, x, 1, y) // beta 1: the product is added to the ones
			var e float64
			for i := range m {
				for j := range n {
					var s, scale float64
					for l := range k {
						s += float64(x[i*k+l]) * float64(w[j*k+l])
						scale += math.Abs(float64(x[i*k+l]) * float64(w[j*k+l]))
					}
					e = max(e, math.Abs(float64(y[i*n+j])-1-s)/scale)
				}
			}
			return e
		}
		f32 := worst(Float32)
		if f32 > 1e-6 {
			t.Errorf("Float32: worst relative error %.2g, want ≤ 1e-6", f32)
		}
		if !lib.HasBF16() {
			return
		}
		x3, b16 := worst(BFloat16x3), worst(BFloat16)
		t.Logf("worst error over the terms' magnitude: float32 %.2g, bfloat16x3 %.2g, bfloat16 %.2g", f32, x3, b16)
		if x3 > 1.5e-5 {
			t.Errorf("BFloat16x3: worst relative error %.2g, want ≤ 1.5e-5 (2^-16)", x3)
		}
		if b16 < 20*x3 {
			t.Errorf("BFloat16's error %.2g is within 20x of BFloat16x3's %.2g: the split is not measured", b16, x3)
		}
		// Below x3MinRows rows BFloat16x3 runs sgemm: the same values as Float32.
		exact, _ := lib.NewLinear(w, n, k, Float32)
		split, _ := lib.NewLinear(w, n, k, BFloat16x3)
		a, b := make([]float32, 3*n), make([]float32, 3*n)
		exact.Apply(3, x, 0, a)
		split.Apply(3, x, 0, b)
		if !slices.Equal(a, b) {
			t.Error("a 3-row BFloat16x3 product differs from sgemm's")
		}
	})
}

func TestToBF16RoundsToNearestEven(t *testing.T) {
	for _, tc := range []struct {
		in   float32
		want uint16
	}{
		{1, 0x3f80}, {-2, 0xc000}, {0, 0},
		{math.Float32frombits(0x3f808000), 0x3f80}, // a tie: to even (down)
		{math.Float32frombits(0x3f818000), 0x3f82}, // a tie: to even (up)
		{math.Float32frombits(0x3f808001), 0x3f81}, // above the tie: up
	} {
		if got := ToBF16(make([]uint16, 1), []float32{tc.in})[0]; got != tc.want {
			t.Errorf("ToBF16(%#x) = %#x, want %#x", math.Float32bits(tc.in), got, tc.want)
		}
	}
}

func TestSplitBF16(t *testing.T) {
	src := []float32{1, -3.14159265, 1e-20, 6.5e4, 0.1, -0}
	hi, lo := make([]uint16, len(src)), make([]uint16, len(src))
	SplitBF16(hi, lo, src)
	for i, v := range src {
		h, l := math.Float32frombits(uint32(hi[i])<<16), math.Float32frombits(uint32(lo[i])<<16)
		if h != math.Float32frombits(uint32(bf16(v))<<16) {
			t.Errorf("%g: hi %g is not the value rounded to bf16", v, h)
		}
		if d := math.Abs(float64(h) + float64(l) - float64(v)); d > math.Abs(float64(v))*math.Pow(2, -16) {
			t.Errorf("%g = %g + %g leaves %g, more than 2^-16 of it", v, h, l, d)
		}
	}
}

func TestFloat32Products(t *testing.T) {
	lib := openOrSkip(t)
	t.Setenv(EnvFloat32Products, "sgemm")
	if p, err := lib.Float32Products(); err != nil || p != Float32 {
		t.Errorf("%s=sgemm: %v, %v; want float32", EnvFloat32Products, p, err)
	}
	t.Setenv(EnvFloat32Products, "fast")
	if _, err := lib.Float32Products(); err == nil {
		t.Errorf("%s=fast was accepted", EnvFloat32Products)
	}
	t.Setenv(EnvFloat32Products, "")
	p, err := lib.Float32Products()
	if err != nil || (p != Float32 && p != BFloat16x3) || (!cpu.X86.HasAMXBF16 && p != Float32) {
		t.Errorf("default here (AMX %v): %v, %v", cpu.X86.HasAMXBF16, p, err)
	}
	other, err := Open() // the same file opened again reuses the measurement
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := other.Float32Products(); again != p {
		t.Errorf("the measured choice changed from %v to %v for the same library", p, again)
	}
	t.Logf("float32 products here: %v", p)
	t.Setenv(EnvFloat32Products, "bf16x3")
	p, err = lib.Float32Products()
	if lib.HasBF16() != (err == nil && p == BFloat16x3) {
		t.Errorf("%s=bf16x3 with a bf16 product %v: %v, %v", EnvFloat32Products, lib.HasBF16(), p, err)
	}
}

func TestNewLinearRefusesAWrongShape(t *testing.T) {
	lib := openOrSkip(t)
	if _, err := lib.NewLinear(make([]float32, 10), 3, 4, Float32); err == nil {
		t.Error("10 values were accepted as a 3×4 weight")
	}
}

// BenchmarkLinear is the machine's reference rate for the model's linear layers, 2,048 tokens
// through ModernBERT-base's widest projection (768 → 2,304), in each precision: the rate is
// float32-equivalent (2mnk over the time), so BFloat16x3's figure is what a float32 layer gets
// from it (BenchmarkLinear/float32 was BenchmarkSgemm).
func BenchmarkLinear(b *testing.B) {
	lib := openOrSkip(b)
	m, n, k := 2048, 2304, 768
	x, w, y := probeOperands(m, n, k)
	for _, p := range []Precision{Float32, BFloat16, BFloat16x3} {
		b.Run(p.String(), func(b *testing.B) {
			ln, err := lib.NewLinear(w, n, k, p)
			if err != nil {
				b.Skip(err)
			}
			for b.Loop() {
				ln.Apply(m, x, 0, y)
			}
			b.ReportMetric(2*float64(m*n*k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}
