package blas

import (
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/cpu"
)

// Precision is how a Linear's products are computed.
type Precision int

const (
	// Float32 is the library's sgemm.
	Float32 Precision = iota
	// BFloat16 rounds inputs and weights to bf16 and accumulates in float32.
	BFloat16
	// BFloat16x3 keeps float32 accuracy at bf16 speed: each value is split into two bf16
	// parts, x = hi + lo (16 significant bits of its 24), and x·w is the sum of the three
	// products that matter, hi·hi + hi·lo + lo·hi, with float32 accumulation. What is dropped
	// (lo·lo and the bits below lo) is about 2^-16 of each term: a product's error is ~1e-5 of
	// its terms' magnitude, some 30x smaller than the TF32 products XLA runs "float32" matmuls
	// with on a GPU. It is XLA's BF16_BF16_F32_X3 algorithm and what PyTorch's "high" float32
	// matmul precision may use. It pays only where bf16 products run more than three times as
	// fast as sgemm, as oneDNN's do on the AMX tiles of some Xeons (see Float32Products).
	BFloat16x3
)

func (p Precision) String() string {
	switch p {
	case Float32:
		return "float32"
	case BFloat16:
		return "bfloat16"
	case BFloat16x3:
		return "bfloat16x3"
	}
	return fmt.Sprintf("Precision(%d)", int(p))
}

// EnvFloat32Products overrides Float32Products: "sgemm" or "bf16x3".
const EnvFloat32Products = "EMBEDBENCH_FP32_PRODUCTS"

// Float32Products is the precision that float32 linear layers should use here: BFloat16x3
// where the library has a bf16 product, the CPU has AMX, and three bf16 products measured
// faster than one sgemm; else Float32. The measurement (about 0.1 s, once per library file) is
// needed because AMX alone does not decide it: with the same oneDNN, bf16x3 ran 1.2x to 1.9x
// sgemm's rate on this project's 2-core Xeon but 0.7x on 2 cores of the GPU machine's Xeon
// (docs/notes/cpu.md). Without AMX three bf16 products cost about what one sgemm does.
func (l *Library) Float32Products() (Precision, error) {
	switch v := os.Getenv(EnvFloat32Products); v {
	case "":
	case "sgemm":
		return Float32, nil
	case "bf16x3":
		if !l.HasBF16() {
			return Float32, fmt.Errorf("%s=%s: %s has no bf16 product", EnvFloat32Products, v, l.Path)
		}
		return BFloat16x3, nil
	default:
		return Float32, fmt.Errorf("%s=%q: want sgemm or bf16x3", EnvFloat32Products, v)
	}
	if !l.HasBF16() || !cpu.X86.HasAMXBF16 {
		return Float32, nil
	}
	measured.Lock()
	defer measured.Unlock()
	p, ok := measured.choice[l.Path]
	if !ok {
		p = Float32
		if x3, sgemm := l.compareX3(); x3 >= x3MinGain*sgemm {
			p = BFloat16x3
		}
		measured.choice[l.Path] = p
	}
	return p, nil
}

// measured holds Float32Products' choice per library file: a property of the machine and the
// library, so each Library opened in the process (the demo opens its own to size the model)
// reuses it instead of timing the products again. The lock keeps two measurements from running
// at once and slowing each other.
var measured = struct {
	sync.Mutex
	choice map[string]Precision
}{choice: map[string]Precision{}}

// x3MinGain is how much faster than sgemm bf16x3 must measure to be chosen: a margin over the
// measurement's noise, not worth a precision change for less.
const x3MinGain = 1.15

// compareX3 times bf16x3 and sgemm products on the model's widest projection (512 rows,
// 768 → 2,304), alternating so that both see the same machine, and returns their rates.
func (l *Library) compareX3() (x3, sgemm float64) {
	m, n, k := 512, 2304, 768
	x, w, y := probeOperands(m, n, k)
	exact, err1 := l.NewLinear(w, n, k, Float32)
	split, err2 := l.NewLinear(w, n, k, BFloat16x3)
	if err1 != nil || err2 != nil {
		return 0, 1
	}
	exact.Apply(m, x, 0, y) // warm-up: pages, packing buffers
	split.Apply(m, x, 0, y)
	var tExact, tSplit time.Duration
	for range 4 {
		t0 := time.Now()
		exact.Apply(m, x, 0, y)
		t1 := time.Now()
		split.Apply(m, x, 0, y)
		tExact, tSplit = tExact+t1.Sub(t0), tSplit+time.Since(t1)
	}
	return 1 / tSplit.Seconds(), 1 / tExact.Seconds()
}

// Linear is a linear layer's weight W [n, k] prepared once for the products y = x·Wᵀ in one
// precision: rounded or split into bf16 where the precision asks for it.
type Linear struct {
	lib       *Library
	n, k      int
	precision Precision
	w         []float32 // Float32, and BFloat16x3's small products
	wb        []uint16  // BFloat16: [n, k]; BFloat16x3: [n, 3k], each row [hi | lo | hi]
	inputs    sync.Pool // *[]uint16: x in bf16, as wb's rows are laid out
}

// x3MinRows is the fewest rows worth BFloat16x3's three products: below it, the bf16
// product's fixed costs and the conversions make sgemm faster (2-core Xeon with AMX: sgemm 222
// against 202 GFLOP/s at 96 rows, 271 against 304 at 160, 337 against 482 at 512).
const x3MinRows = 128

// NewLinear prepares w ([n, k], row-major, as a linear layer stores it) for Apply. Float32 and
// BFloat16x3 (for products under x3MinRows rows) keep w itself, which must then stay unchanged;
// the bf16 forms are copies.
func (l *Library) NewLinear(w []float32, n, k int, p Precision) (*Linear, error) {
	if n <= 0 || k <= 0 || len(w) != n*k {
		return nil, fmt.Errorf("blas.NewLinear: %d values for a %d×%d weight", len(w), n, k)
	}
	ln := &Linear{lib: l, n: n, k: k, precision: p}
	switch p {
	case Float32:
		ln.w = w
	case BFloat16, BFloat16x3:
		if p == BFloat16x3 {
			ln.w = w
		}
		if !l.HasBF16() {
			return nil, fmt.Errorf("blas.NewLinear: %s precision needs a bf16 product; %s has none", p, l.Path)
		}
		ln.wb = make([]uint16, n*ln.depth())
		for r := range n {
			src, dst := w[r*k:(r+1)*k], ln.wb[r*ln.depth():(r+1)*ln.depth()]
			if p == BFloat16 {
				ToBF16(dst, src)
			} else {
				SplitBF16(dst[:k], dst[k:2*k], src)
				copy(dst[2*k:], dst[:k])
			}
		}
	default:
		return nil, fmt.Errorf("blas.NewLinear: unknown precision %d", int(p))
	}
	return ln, nil
}

// Precision is the precision the layer was prepared in.
func (ln *Linear) Precision() Precision { return ln.precision }

// depth is the length of the products' inner dimension: 3k for BFloat16x3.
func (ln *Linear) depth() int {
	if ln.precision == BFloat16x3 {
		return 3 * ln.k
	}
	return ln.k
}

// Apply computes y = x·Wᵀ + beta·y for x [m, k] and y [m, n], row-major and dense. With beta
// 1 the product is added to y, which is how a residual connection costs no pass of its own.
func (ln *Linear) Apply(m int, x []float32, beta float32, y []float32) {
	n, k := ln.n, ln.k
	if m <= 0 {
		return
	}
	if len(x) < m*k || len(y) < m*n {
		panic(fmt.Sprintf("blas.Linear.Apply: %d×%d·(%d×%d)ᵀ needs more values than x=%d y=%d", m, k, n, k, len(x), len(y)))
	}
	if ln.precision == Float32 || ln.precision == BFloat16x3 && m < x3MinRows {
		ln.lib.Gemm(false, true, m, n, k, 1, x, k, ln.w, k, beta, y, n)
		return
	}
	d := ln.depth()
	buf, _ := ln.inputs.Get().(*[]uint16)
	if buf == nil {
		buf = new([]uint16)
	}
	if cap(*buf) < m*d {
		*buf = make([]uint16, m*d)
	}
	xb := (*buf)[:m*d]
	// Each thread converts its own rows and multiplies them while they are in its cache.
	ln.lib.split(m, n*d, func(lo, hi int) {
		ln.lib.linearBF16(hi-lo, n, k, ln.precision == BFloat16x3, x[lo*k:], xb[lo*d:], ln.wb, beta, y[lo*n:])
	})
	ln.inputs.Put(buf)
}

// ToBF16 writes src rounded to bf16 (to nearest, ties to even) into dst and returns it. The
// values are finite activations and weights: NaN needs no care.
func ToBF16(dst []uint16, src []float32) []uint16 {
	for i, f := range src {
		dst[i] = bf16(f)
	}
	return dst
}

// SplitBF16 writes each src value as hi + lo: hi is the value rounded to bf16, lo the rest
// rounded to bf16, so hi + lo holds 16 significant bits of the value's 24.
func SplitBF16(hi, lo []uint16, src []float32) {
	for i, f := range src {
		h := bf16(f)
		hi[i] = h
		lo[i] = bf16(f - math.Float32frombits(uint32(h)<<16))
	}
}

func bf16(f float32) uint16 {
	u := math.Float32bits(f)
	return uint16((u + 0x7fff + (u>>16)&1) >> 16)
}
