// Package blas finds a matrix-product library on the machine at run time (oneDNN or a BLAS:
// OpenBLAS, BLIS, MKL) and exposes its single-precision product and, with oneDNN, its bf16 one
// (bf16 inputs, float32 accumulation and output), which a Linear uses for bf16 layers and for
// float32 ones as three bf16 products where that is faster.
//
// It is loaded with dlopen, not linked: a binary built here must start on a machine without
// OpenBLAS and run the pure-Go path there, saying why. The Go bindings that exist (gonum's
// netlib) link the library at build time, so the binary would not start without it; hence this
// small hand-written loader. Built without cgo, Open always reports the library unavailable.
package blas

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/cpu"

	"github.com/embedbench/embedbench/internal/parallel"
)

// EnvLibrary selects the library: "off" disables it, a path loads that file only; unset tries
// the usual sonames (oneDNN, OpenBLAS, BLIS, MKL) in order.
const EnvLibrary = "EMBEDBENCH_BLAS"

// candidates are tried in order; each must export cblas_sgemm or dnnl_sgemm. oneDNN comes
// first: on this project's 2-core EPYC its sgemm ran 329 GFLOP/s against Debian OpenBLAS's 160,
// and its bf16 product 673 (docs/notes/cpu.md).
var candidates = []string{
	"libdnnl.so.3", "libdnnl.so.2",
	"libopenblas.so.0", "libopenblas.so",
	"libblis.so.4", "libblis.so",
	"libmkl_rt.so.2", "libmkl_rt.so",
}

// Library is a loaded BLAS.
type Library struct {
	// Path is the file dlopen found; Config what the library says of itself (OpenBLAS's build
	// and core), or "".
	Path, Config string
	// Threads is how many goroutines a large product is split over.
	Threads int
	sgemm   sgemmFunc
	gemm    gemmFunc
	// linearBF16 is one thread's rows of a bf16 Linear: x [rows, k] converted into xb as the
	// weight w's rows are laid out (split: [hi | hi | lo]), then y = xb·wᵀ + beta·y. Nil
	// without a bf16 product (oneDNN has one).
	linearBF16 func(rows, n, k int, split bool, x []float32, xb, w []uint16, beta float32, y []float32)
}

// String describes the library for logs and model info.
func (l *Library) String() string {
	s := l.Path
	if l.Config != "" {
		s += " (" + l.Config + ")"
	}
	s += ", " + strconv.Itoa(l.Threads) + " threads"
	return s
}

// Open loads the library EnvLibrary names, or the first candidate found. The library itself
// runs single-threaded; Gemm and Sgemm split large products over GOMAXPROCS goroutines (or
// OPENBLAS_NUM_THREADS, when set). Small products, such as one head of attention, then cost no
// thread hand-off: OpenBLAS's own threads made those 5x slower than running them inline, and
// callers that already run many small products in parallel get no oversubscription.
func Open() (*Library, error) {
	names := candidates
	switch v := os.Getenv(EnvLibrary); v {
	case "":
	case "off", "none", "0":
		return nil, fmt.Errorf("%s=%s", EnvLibrary, v)
	default:
		names = []string{v}
	}
	chooseOpenBLASCore()
	threads := runtime.GOMAXPROCS(0)
	if v, err := strconv.Atoi(os.Getenv("OPENBLAS_NUM_THREADS")); err == nil && v > 0 {
		threads = v
	}
	return open(names, threads)
}

// Sgemm computes c[i] = op(a[i]) · op(b[i]) for i in [0, batch): op(a[i]) is m×k, op(b[i]) is
// k×n, c[i] is m×n, all row-major and packed one after another; transA means a[i] is stored
// k×m, transB that b[i] is stored n×k. c is overwritten.
func (l *Library) Sgemm(batch, m, n, k int, transA, transB bool, a, b, c []float32) {
	if batch <= 0 || m <= 0 || n <= 0 {
		return
	}
	if len(a) < batch*m*k || len(b) < batch*k*n || len(c) < batch*m*n {
		panic(fmt.Sprintf("blas.Sgemm: %d×(%d×%d·%d×%d) needs more values than a=%d b=%d c=%d", batch, m, k, k, n, len(a), len(b), len(c)))
	}
	if k == 0 {
		clear(c[:batch*m*n])
		return
	}
	if batch == 1 {
		lda, ldb := k, n // as stored: a is m×k or k×m, b k×n or n×k
		if transA {
			lda = m
		}
		if transB {
			ldb = k
		}
		l.Gemm(transA, transB, m, n, k, 1, a, lda, b, ldb, 0, c, n)
		return
	}
	l.split(batch, m*n*k, func(lo, hi int) {
		l.sgemm(hi-lo, m, n, k, transA, transB, a[lo*m*k:], b[lo*k*n:], c[lo*m*n:])
	})
}

// splitMultiplyAdds is the smallest product worth splitting over goroutines (about 0.1 ms of
// one core's work).
const splitMultiplyAdds = 1 << 20

// split runs fn over [0, n) in one range per thread when work (multiply-adds per unit times n)
// is large enough, else inline.
func (l *Library) split(n, work int, fn func(lo, hi int)) {
	parallel.Ranges(min(l.Threads, max(1, n*work/splitMultiplyAdds)), n, func(_, lo, hi int) { fn(lo, hi) })
}

// Gemm computes c = alpha·op(a)·op(b) + beta·c on row-major matrices inside larger arrays:
// op(a) is m×k, op(b) k×n, c m×n; lda, ldb and ldc are the strides between their rows as
// stored (a is stored k×m when transA, b n×k when transB). With beta 1 the product is added to
// c, which is how a residual connection costs no pass of its own.
func (l *Library) Gemm(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	checkGemm("Gemm", transA, transB, m, n, k, len(a), lda, len(b), ldb, len(c), ldc)
	l.splitRows(transA, m, n, k, lda, ldc, func(aOff, cOff, rows int) {
		l.gemm(transA, transB, rows, n, k, alpha, a[aOff:], lda, b, ldb, beta, c[cOff:], ldc)
	})
}

// HasBF16 reports whether the library has a bf16 product (oneDNN), which Linear's BFloat16
// and BFloat16x3 precisions need.
func (l *Library) HasBF16() bool { return l.linearBF16 != nil }

// checkGemm refuses sizes and strides that would read or write past the arrays.
func checkGemm(what string, transA, transB bool, m, n, k, lenA, lda, lenB, ldb, lenC, ldc int) {
	if m <= 0 || n <= 0 || k <= 0 {
		panic(fmt.Sprintf("blas.%s: sizes m=%d n=%d k=%d", what, m, n, k))
	}
	rowsA, colsA := m, k
	if transA {
		rowsA, colsA = k, m
	}
	rowsB, colsB := k, n
	if transB {
		rowsB, colsB = n, k
	}
	if lda < colsA || ldb < colsB || ldc < n || lenA < (rowsA-1)*lda+colsA || lenB < (rowsB-1)*ldb+colsB || lenC < (m-1)*ldc+n {
		panic(fmt.Sprintf("blas.%s: %d×%d·%d×%d with strides %d, %d, %d overruns a=%d b=%d c=%d values", what, m, k, k, n, lda, ldb, ldc, lenA, lenB, lenC))
	}
}

// splitRows splits the rows of c over threads: a's rows (its columns when transposed) go with
// them. fn gets the offsets into a and c and the rows of its part.
func (l *Library) splitRows(transA bool, m, n, k, lda, ldc int, fn func(aOff, cOff, rows int)) {
	l.split(m, n*k, func(lo, hi int) {
		aOff := lo * lda
		if transA {
			aOff = lo
		}
		fn(aOff, lo*ldc, hi-lo)
	})
}

type sgemmFunc func(batch, m, n, k int, transA, transB bool, a, b, c []float32)

type gemmFunc func(transA, transB bool, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int)

// chooseOpenBLASCore sets OPENBLAS_CORETYPE where OpenBLAS would choose badly. Debian's
// OpenBLAS 0.3.21 does not know AMD's Zen 4 and 5 and falls back to its Haswell (AVX2) kernels;
// its SkylakeX (AVX-512) kernels run the model's widest projection 1.5x faster on this
// project's 2-core EPYC (docs/notes/cpu.md). A value the user set is kept.
func chooseOpenBLASCore() {
	if os.Getenv("OPENBLAS_CORETYPE") != "" {
		return
	}
	if cpu.X86.HasAVX512F && cpu.X86.HasAVX512CD && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512DQ && cpu.X86.HasAVX512VL {
		os.Setenv("OPENBLAS_CORETYPE", "SkylakeX")
	}
}

// SgemmRate is the library's sgemm rate in GFLOP/s on repeated products of an m×k matrix with
// a k×n one (stored transposed, as a linear layer's weight is) for about d: the reference a
// model's linear layers are judged against on this machine.
func (l *Library) SgemmRate(m, n, k int, d time.Duration) float64 {
	return l.LinearRate(Float32, m, n, k, d)
}

// LinearRate is SgemmRate for a Linear in precision p: the float32-equivalent rate (2mnk over
// the time) that a layer of that precision gets here, conversions included.
func (l *Library) LinearRate(p Precision, m, n, k int, d time.Duration) float64 {
	x, w, y := probeOperands(m, n, k)
	ln, err := l.NewLinear(w, n, k, p)
	if err != nil {
		return 0
	}
	ln.Apply(m, x, 0, y) // warm-up: pages, packing buffers
	calls := 0
	start := time.Now()
	for calls == 0 || time.Since(start) < d {
		ln.Apply(m, x, 0, y)
		calls++
	}
	return 2 * float64(m) * float64(n) * float64(k) * float64(calls) / time.Since(start).Seconds() / 1e9
}

// probeOperands are x [m, k], w [n, k] and y [m, n] for timing products: small values, none
// zero-heavy, so the timing is that of real data.
func probeOperands(m, n, k int) (x, w, y []float32) {
	x, w, y = make([]float32, m*k), make([]float32, n*k), make([]float32, m*n)
	for i := range x {
		x[i] = float32(i%13) * 0.01
	}
	for i := range w {
		w[i] = float32(i%7) * 0.01
	}
	return x, w, y
}
