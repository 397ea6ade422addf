package modernbert

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// The elementwise kernels (vectorised C where built with cgo) give what the Go loops give, up
// to the rounding of reordered sums.
func TestCPUKernelsMatchTheGoLoops(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	normal := func(n int, scale float64) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(rng.NormFloat64() * scale)
		}
		return s
	}
	check := func(what string, got, want []float32, tol float64) {
		t.Helper()
		if d := maxAbsDiff(got, want); d > tol {
			t.Errorf("%s: differs from the Go loop by %.2g (tolerance %.2g)", what, d, tol)
		}
	}
	softmaxRows(nil, 0, 0) // an empty sequence: nothing to do, no panic
	gegluRows(nil, nil, 0, 8)
	layerNormRows(nil, nil, nil, nil, 0, 8, 1e-5)
	for _, L := range []int{1, 7, 33, 200} {
		for _, window := range []int{0, 4} {
			scores := normal(L*L, 3)
			want := slices.Clone(scores)
			softmaxRows(scores, L, window)
			softmaxRowsGo(want, L, window)
			check("softmax", scores, want, 1e-6)
		}
	}
	rows, I, H := 5, 37, 51 // sizes no vector width divides
	wi := normal(rows*2*I, 2)
	act, want := make([]float32, rows*I), make([]float32, rows*I)
	gegluRows(wi, act, rows, I)
	gegluRowsGo(wi, want, rows, I)
	check("geglu", act, want, 1e-5)
	src, w, b := normal(rows*H, 4), normal(H, 1), normal(H, 1)
	for i := range src {
		src[i] += 10 // a mean far from 0
	}
	for _, bias := range [][]float32{b, nil} {
		dst, want := make([]float32, rows*H), make([]float32, rows*H)
		layerNormRows(dst, src, w, bias, rows, H, 1e-5)
		layerNormRowsGo(want, src, w, bias, rows, H, 1e-5)
		check("layer norm", dst, want, 1e-5)
	}
}
