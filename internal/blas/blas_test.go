package blas

import (
	"math"
	"math/rand/v2"
	"testing"
)

func openOrSkip(t testing.TB) *Library {
	t.Helper()
	lib, err := Open()
	if err != nil {
		t.Skipf("no BLAS here (scripts/test.sh installs libopenblas0-pthread): %v", err)
	}
	return lib
}

// naive is the definition Sgemm must match.
func naive(batch, m, n, k int, transA, transB bool, a, b []float32) []float32 {
	c := make([]float32, batch*m*n)
	for p := range batch {
		for i := range m {
			for j := range n {
				var s float64
				for l := range k {
					ai := p*m*k + i*k + l
					if transA {
						ai = p*m*k + l*m + i
					}
					bi := p*k*n + l*n + j
					if transB {
						bi = p*k*n + j*k + l
					}
					s += float64(a[ai]) * float64(b[bi])
				}
				c[p*m*n+i*n+j] = float32(s)
			}
		}
	}
	return c
}

// eachLibrary runs fn on every library of the candidates found here (scripts/test.sh installs
// oneDNN and OpenBLAS), by path, so that both kinds of binding are checked.
func eachLibrary(t *testing.T, fn func(t *testing.T, lib *Library)) {
	found := 0
	for _, name := range candidates {
		t.Setenv(EnvLibrary, name)
		lib, err := Open()
		if err != nil {
			continue
		}
		found++
		t.Run(name, func(t *testing.T) { fn(t, lib) })
	}
	if found == 0 {
		t.Skip("no BLAS here (scripts/test.sh installs libopenblas0-pthread and libdnnl2)")
	}
}

func TestSgemmMatchesTheDefinition(t *testing.T) {
	eachLibrary(t, testSgemm)
}

func testSgemm(t *testing.T, lib *Library) {
	t.Logf("BLAS: %s", lib)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, tc := range []struct{ batch, m, n, k int }{{1, 1, 1, 1}, {1, 7, 5, 3}, {3, 33, 65, 17}, {2, 128, 96, 200}} {
		for _, transA := range []bool{false, true} {
			for _, transB := range []bool{false, true} {
				a := make([]float32, tc.batch*tc.m*tc.k)
				b := make([]float32, tc.batch*tc.k*tc.n)
				for i := range a {
					a[i] = rng.Float32()*2 - 1
				}
				for i := range b {
					b[i] = rng.Float32()*2 - 1
				}
				c := make([]float32, tc.batch*tc.m*tc.n)
				for i := range c {
					c[i] = float32(math.NaN()) // overwritten, never accumulated into
				}
				lib.Sgemm(tc.batch, tc.m, tc.n, tc.k, transA, transB, a, b, c)
				want := naive(tc.batch, tc.m, tc.n, tc.k, transA, transB, a, b)
				for i := range want {
					if d := math.Abs(float64(c[i] - want[i])); !(d <= 1e-4*float64(tc.k)) {
						t.Fatalf("%+v transA=%v transB=%v: c[%d] = %g, want %g", tc, transA, transB, i, c[i], want[i])
					}
				}
			}
		}
	}
}

func TestOffIsHonoured(t *testing.T) {
	t.Setenv(EnvLibrary, "off")
	if lib, err := Open(); err == nil {
		t.Fatalf("%s=off still loaded %s", EnvLibrary, lib)
	}
}

func TestAMissingLibraryIsAnError(t *testing.T) {
	t.Setenv(EnvLibrary, "/nonexistent/libopenblas.so")
	if _, err := Open(); err == nil {
		t.Fatal("a missing library was reported loaded")
	}
}

func TestGemmStridedAddsIntoC(t *testing.T) {
	eachLibrary(t, testGemmStrided)
}

func testGemmStrided(t *testing.T, lib *Library) {
	// a is the 2×3 block at column 1 of a 2×5 array; b is 3×2 stored transposed (2×3) inside a
	// 2×4 array; c is 2×2 inside a 2×3 array and starts at ones: c = 2·a·b + 1·c.
	a := []float32{9, 1, 2, 3, 9, 9, 4, 5, 6, 9}
	b := []float32{1, 0, 1, 9, 0, 1, 1, 9}
	c := []float32{1, 1, 7, 1, 1, 7}
	lib.Gemm(false, true, 2, 2, 3, 2, a[1:], 5, b, 4, 1, c, 3)
	// a·b = [[1+3, 2+3], [4+6, 5+6]] = [[4, 5], [10, 11]]
	want := []float32{9, 11, 7, 21, 23, 7}
	for i := range want {
		if c[i] != want[i] {
			t.Fatalf("c = %v, want %v", c, want)
		}
	}
}

// bf16 products (oneDNN) equal the float32 definition on values bf16 holds exactly, added to
// what y held (beta 1), and so do bf16x3's, whose low parts are then zero.
func TestLinearBF16IsExactOnBF16Values(t *testing.T) {
	eachLibrary(t, func(t *testing.T, lib *Library) {
		if !lib.HasBF16() {
			t.Skipf("%s has no bf16 product", lib.Path)
		}
		rng := rand.New(rand.NewPCG(7, 8))
		m, n, k := x3MinRows+9, 300, 70 // enough rows for bf16x3's products, split over the threads
		x, w := make([]float32, m*k), make([]float32, n*k)
		for i := range x {
			x[i] = float32(rng.IntN(17)-8) / 8 // exact in bf16
		}
		for i := range w {
			w[i] = float32(rng.IntN(9)-4) / 4
		}
		want := naive(1, m, n, k, false, true, x, w)
		for i := range want {
			want[i] += 2
		}
		for _, p := range []Precision{BFloat16, BFloat16x3} {
			ln, err := lib.NewLinear(w, n, k, p)
			if err != nil {
				t.Fatal(err)
			}
			y := make([]float32, m*n)
			for i := range y {
				y[i] = 2
			}
			ln.Apply(m, x, 1, y)
			for i := range want {
				if y[i] != want[i] {
					t.Fatalf("%s: y[%d] = %g, want %g", p, i, y[i], want[i])
				}
			}
		}
	})
}
