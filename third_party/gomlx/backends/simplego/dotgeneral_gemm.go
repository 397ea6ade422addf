package simplego

// embedbench addition: DotGeneral on float32 through an external matrix-product kernel (a BLAS
// sgemm), registered at run time by the program. simplego's own kernels reach about 4% of what
// a tuned sgemm does on the same cores; the product is most of a transformer's work, so this is
// the one place where handing off pays. Layouts that already read as row-major matrices go to
// the kernel as they are; others are copied once into [batch, cross, contracting].

import (
	"sync/atomic"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

// Float32Gemm computes c[i] = op(a[i]) · op(b[i]) for i in [0, batch), where op(a[i]) is m×k,
// op(b[i]) is k×n and c[i] is m×n, all row-major and packed one after another. transA means a[i]
// is stored k×m; transB means b[i] is stored n×k. It overwrites c.
type Float32Gemm func(batch, m, n, k int, transA, transB bool, a, b, c []float32)

type registeredGemm struct {
	fn       Float32Gemm
	minFlops int
}

var float32Gemm atomic.Pointer[registeredGemm]

// SetFloat32Gemm makes every backend run float32 DotGeneral products of at least minFlops
// multiply-adds (batch·m·n·k) through fn; nil goes back to simplego's own kernels.
func SetFloat32Gemm(fn Float32Gemm, minFlops int) {
	if fn == nil {
		float32Gemm.Store(nil)
		return
	}
	float32Gemm.Store(&registeredGemm{fn: fn, minFlops: minFlops})
}

// execDotGeneralGemm runs the product through the registered kernel and reports whether it did.
func execDotGeneralGemm(backend *Backend, lhs, rhs *Buffer, params *dotGeneralNodeData, output *Buffer) bool {
	if lhs.shape.DType != dtypes.Float32 {
		return false
	}
	g := float32Gemm.Load()
	batch, m, n, k := params.batchSize, params.lhsCrossSize, params.rhsCrossSize, params.contractingSize
	if g == nil || batch*m*n*k < g.minFlops {
		return false
	}
	a, kFirstA, tmpA := gemmOperand(backend, lhs, params.lhsContractingAxes, params.lhsBatchAxes, batch, m, k)
	b, kFirstB, tmpB := gemmOperand(backend, rhs, params.rhsContractingAxes, params.rhsBatchAxes, batch, n, k)
	// c = a·bᵀ in the [batch, cross, contracting] layout: a is m×k as stored unless k comes first;
	// b is n×k, so it is transposed unless k comes first.
	g.fn(batch, m, n, k, kFirstA, !kFirstB, a, b, output.flat.([]float32))
	if tmpA != nil {
		backend.putBuffer(tmpA)
	}
	if tmpB != nil {
		backend.putBuffer(tmpB)
	}
	return true
}

// gemmOperand returns the operand's values as batch matrices of cross×contracting (kFirst
// false) or contracting×cross (kFirst true), copying them only when the axes are in neither
// order; tmp is the copy to give back to the pool.
func gemmOperand(backend *Backend, x *Buffer, contractingAxes, batchAxes []int, batch, cross, contracting int) (flat []float32, kFirst bool, tmp *Buffer) {
	if kFirst, ok := gemmLayout(x.shape.Rank(), contractingAxes, batchAxes); ok {
		return x.flat.([]float32), kFirst, nil
	}
	tmp = dgNormalizeShape[float32](backend, x, contractingAxes, batchAxes, batch, cross, contracting)
	if tmp == nil { // Already [batch, cross, contracting]; gemmLayout says so too, but be safe.
		return x.flat.([]float32), false, nil
	}
	return tmp.flat.([]float32), false, tmp
}

// gemmLayout reports whether the axes read as [batch..., cross..., contracting...] (kFirst
// false) or [batch..., contracting..., cross...] (kFirst true), each group in the order given,
// so that the flat values are already row-major matrices.
func gemmLayout(rank int, contractingAxes, batchAxes []int) (kFirst, ok bool) {
	kind := make([]byte, rank) // 'x' cross, 'k' contracting, 'b' batch
	for i := range kind {
		kind[i] = 'x'
	}
	for i, axis := range batchAxes {
		if axis != i { // batch axes lead, in order
			return false, false
		}
		kind[axis] = 'b'
	}
	for _, axis := range contractingAxes {
		kind[axis] = 'k'
	}
	rest := kind[len(batchAxes):]
	// The contracting axes must be one run, in the order given.
	start := -1
	for i, c := range rest {
		if c == 'k' {
			start = i
			break
		}
	}
	if start < 0 { // nothing contracted: k = 1, either order reads the same
		return false, true
	}
	for i, axis := range contractingAxes {
		if axis != len(batchAxes)+start+i {
			return false, false
		}
	}
	end := start + len(contractingAxes)
	switch {
	case end == len(rest):
		return false, true
	case start == 0:
		return true, true
	}
	return false, false
}
