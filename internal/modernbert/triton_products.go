package modernbert

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:staticcheck // the graph DSL reads best unqualified
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// Projections through Triton GEMM kernels of our own that finish the elementwise work XLA
// would run as a pass of its own after cuBLAS's product: Wi with GeGLU, Wqkv with RoPE (issue
// 16). On a full 16,384-slot step on the H200 the GeGLU and RoPE passes are 0.83 and 0.82 ms
// of a 9.1 ms step (run 54's replay), each reading back a product just written. XLA does not
// fuse either into cuBLAS's epilogue (session 16), and GoMLX cannot ask it to.
//
// They are a variant, not the default ("triton-products", "triton-qkv", "triton-geglu"): on the
// H200 these kernels take 134 µs (GeGLU) and 156 µs (RoPE) a layer where cuBLAS's product and
// XLA's pass take 120 and 121 (run 58), since a tile's 12 steps of depth 64 leave its pipeline's
// fill and its epilogue exposed, which cuBLAS's persistent kernels overlap. Full steps run 4%
// slower with both. "triton-gemm-persistent=N" makes them persistent over N programs: GeGLU's
// kernel alone, so, runs full steps 0.7-1.1% faster than cuBLAS's product and XLA's pass on
// the H200 with N its SM count, 132, or twice that (runs 66 and 67), the only form of these
// kernels that gains. N should be a multiple of the card's SM count (by arithmetic, other
// counts leave a last wave of programs mostly empty); a bare "triton-gemm-persistent" reads
// it from the card (resolvePrograms; 132 on the H200, run 68). It is not the default: made
// the default, it ran level in run 69's lease and slower on all rungs alone but one, 5-11% on
// the small steps that carry queries. The tile loop is not marked tt.flatten: this XLA's Triton
// fuses a flattened loop with the depth loop but then does not pipeline it (no async copies at
// all; full steps 2.7x slower, runs 61 and 63). TMA loads would not close the gap to cuBLAS:
// PyTorch's Triton 3.6 compiled GeGLU's kernel with tensor descriptors at 124 µs a layer, level
// with cuBLAS's product and XLA's pass in our steps, and its warp-specialised forms computed
// NaNs (run 68, scripts/gpu/triton_tma_geglu.py).
//
// Both are "paired" products: each output value combines two columns of the product, x = a·w₁ᵀ
// and y = a·w₂ᵀ (GeGLU's input and gate, RoPE's two halves of a head), so a program computes a
// tile of each with two accumulators over the same loads of a, and combines them before
// anything is written.

// pairKind is what a paired product's epilogue computes.
type pairKind int

const (
	pairGeGLU pairKind = iota // gelu(x)·y, from Wi's input and gate halves
	pairRoPE                  // q and k rotated the rotate-half way, v as it is
)

// gemmBlocks are a product kernel's tiles (rows, column pairs, depth) and launch parameters.
type gemmBlocks struct{ m, n, k, warps, stages int }

// defaultGEMMBlocks: 128 rows by 128 column pairs (two 128x128 fp32 accumulators, as one
// 128x256 tile, a usual Hopper tile), 64 deep, eight warps, three stages (two 48 KB stages in
// flight while a third is read: 144 KB of the H200's 228 KB of shared memory).
var defaultGEMMBlocks = gemmBlocks{m: 128, n: 128, k: 64, warps: 8, stages: 3}

// valid says whether Triton can build these: tiles of powers of two from 16 to 256, a power
// of two of warps up to 16, and 1 to 8 stages.
func (b gemmBlocks) valid() bool {
	pow2 := func(x, lo, hi int) bool { return x >= lo && x <= hi && x&(x-1) == 0 }
	return pow2(b.m, 16, 256) && pow2(b.n, 16, 256) && pow2(b.k, 16, 256) && pow2(b.warps, 1, 16) && b.stages >= 1 && b.stages <= 8
}

// fit shrinks the tiles to a product of m rows, pairs column pairs and depth k: each halves
// (to no less than 16) until it divides its dimension. ok is false where none does.
func (b gemmBlocks) fit(m, pairs, k int) (gemmBlocks, bool) {
	shrink := func(t, dim int) int {
		for t > 16 && dim%t != 0 {
			t /= 2
		}
		return t
	}
	b.m, b.n, b.k = shrink(b.m, m), shrink(b.n, pairs), shrink(b.k, k)
	return b, m%b.m == 0 && pairs%b.n == 0 && k%b.k == 0
}

// gemmBlocksOf are the product kernels' tiles for v: triton-gemm-blocks's, else the default.
func (v graphVariant) gemmBlocksOf() gemmBlocks {
	if v.gemmBlocks == (gemmBlocks{}) {
		return defaultGEMMBlocks
	}
	return v.gemmBlocks
}

// pairedProduct is one product kernel's shape: it is generated for it.
type pairedProduct struct {
	kind   pairKind
	m, k   int // rows (tokens) and depth (the input's width)
	pairs  int // output column pairs: the intermediate size (GeGLU), 3·hidden/2 (RoPE)
	hidden int // RoPE: the width of each of q, k and v
	half   int // RoPE: half a head
	scaled bool
	in     dtypes.DType // a's and w's dtype
	out    dtypes.DType
	blocks gemmBlocks
	// programs, when set, makes the kernel persistent: that many programs loop over the tiles
	// (triton-gemm-persistent; the card's SM count is the usual choice).
	programs int
}

// outWidth is the width of the kernel's output: gelu(x)·y per pair, or both values of a pair.
func (p pairedProduct) outWidth() int {
	if p.kind == pairGeGLU {
		return p.pairs
	}
	return 2 * p.pairs
}

// grid: a program per tile of column pairs (x, the fastest, so that the programs sharing rows
// of a run together and read them from L2) and of rows (y); persistent, programs of them (no
// more than there are tiles), each taking every programs-th tile in that order.
func (p pairedProduct) grid() (x, y, z int) {
	nTiles, mTiles := p.pairs/p.blocks.n, p.m/p.blocks.m
	if p.programs > 0 {
		return min(p.programs, nTiles*mTiles), 1, 1
	}
	return nTiles, mTiles, 1
}

func (p pairedProduct) name() string {
	kind := "geglu"
	if p.kind == pairRoPE {
		kind = "qkv_rope"
	}
	return fmt.Sprintf("embedbench_%s_%s", kind, mlirElem(p.in))
}

func (p pairedProduct) backendConfig() string {
	x, y, z := p.grid()
	return tritonConfig(p.name(), p.ttir(), p.blocks.warps, p.blocks.stages, x, y, z)
}

// ttir writes the kernel. Its arguments are XLA's buffers, operands then result:
//
//	a     [m, k] in: the input rows (the residual stream, or the embeddings in layer 0)
//	w     [2·pairs, k] in: the weight, one row an output column (Wi, Wqkv as stored)
//	scale [m] f32 (when scaled): each row's factor completing the product (a folded norm's 1/rms)
//	cos, sin [m, half] f32 (RoPE): the rotation's tables at each token's position
//	out   [m, outWidth] out
//
// Pair j's two weight rows are j and pairs+j for GeGLU; for RoPE they are the two halves'
// d-th rows of a head, part·hidden + head·D + d and that + D/2, where j counts (part, head, d)
// with part 0, 1, 2 for q, k, v. Its outputs go to the same two columns; v is not rotated.
func (p pairedProduct) ttir() string {
	var b ttBuilder
	in := mlirElem(p.in)
	args := []ttArg{{"%a", in}, {"%w", in}}
	if p.scaled {
		args = append(args, ttArg{"%scale", "f32"})
	}
	if p.kind == pairRoPE {
		args = append(args, ttArg{"%cos", "f32"}, ttArg{"%sin", "f32"})
	}
	ptr := b.begin(p.name(), append(args, ttArg{"%out", mlirElem(p.out)}))
	if p.programs <= 0 {
		p.tile(&b, ptr, b.programID("x"), b.programID("y"))
		return b.end()
	}
	// Persistent: program i takes tiles i, i + programs, ... Triton pipelines the depth loop
	// inside as in a program per tile.
	nTiles := p.pairs / p.blocks.n
	b.forEach(b.programID("x"), b.i32(nTiles*(p.m/p.blocks.m)), b.i32(p.programs), func(t ttVal) {
		p.tile(&b, ptr, b.op("arith.remsi", t, b.i32(nTiles)), b.op("arith.divsi", t, b.i32(nTiles)))
	})
	return b.end()
}

// tile writes the work of one tile of column pairs (tileN) and rows (tileM).
func (p pairedProduct) tile(b *ttBuilder, ptr map[string]ttVal, tileN, tileM ttVal) {
	outE := mlirElem(p.out)
	bm, bn, bk := p.blocks.m, p.blocks.n, p.blocks.k
	vec := func(x ttVal, n int) ttVal { return b.splat(x, []int{n}) }
	rows := b.op("arith.addi", vec(b.op("arith.muli", tileM, b.i32(bm)), bm), b.arange(bm)) // [bm] token
	pair := b.op("arith.addi", vec(b.op("arith.muli", tileN, b.i32(bn)), bn), b.arange(bn)) // [bn] pair
	// first and second: each pair's two weight rows, which are also its output columns (RoPE).
	var first, second, part ttVal
	if p.kind == pairGeGLU {
		first = pair
		second = b.op("arith.addi", pair, vec(b.i32(p.pairs), bn))
	} else {
		perPart, half := vec(b.i32(p.hidden/2), bn), vec(b.i32(p.half), bn)
		part = b.op("arith.divsi", pair, perPart)
		within := b.op("arith.remsi", pair, perPart)
		head, d := b.op("arith.divsi", within, half), b.op("arith.remsi", within, half)
		first = b.op("arith.addi", b.op("arith.addi", b.op("arith.muli", part, vec(b.i32(p.hidden), bn)),
			b.op("arith.muli", head, vec(b.i32(2*p.half), bn))), d)
		second = b.op("arith.addi", first, half)
	}

	kVec := func(x ttVal, n int) ttVal { return b.op("arith.muli", x, vec(b.i32(p.k), n)) }
	aOff := b.op("arith.addi", b.column(kVec(rows, bm), bk), b.row(b.arange(bk), bm)) // [bm, bk]
	// A weight tile is [bk, bn]: depth down, column pairs across (wᵀ, read along w's rows).
	wOff := func(wRows ttVal) ttVal {
		return b.op("arith.addi", b.row(kVec(wRows, bn), bk), b.column(b.arange(bk), bn))
	}
	w1Off, w2Off := wOff(first), wOff(second)
	zero := b.fillF32([]int{bm, bn}, 0)
	acc := b.loop(b.i32(0), b.i32(p.k), b.i32(bk), []ttVal{zero, zero}, func(k0 ttVal, carried []ttVal) []ttVal {
		at := func(off ttVal) ttVal { return b.op("arith.addi", off, b.splat(k0, off.t.shape)) }
		a := b.gather(ptr["%a"], at(aOff))
		x := b.dot(a, b.gather(ptr["%w"], at(w1Off)), carried[0])
		y := b.dot(a, b.gather(ptr["%w"], at(w2Off)), carried[1])
		return []ttVal{x, y}
	})
	x, y := acc[0], acc[1]
	if p.scaled {
		s := b.column(b.gather(ptr["%scale"], rows), bn)
		x, y = b.op("arith.mulf", x, s), b.op("arith.mulf", y, s)
	}
	store := func(cols, width, v ttVal) {
		off := b.op("arith.addi", b.column(b.op("arith.muli", rows, vec(width, bm)), bn), b.row(cols, bm))
		b.scatter(ptr["%out"], off, b.convert("arith.truncf", v, outE))
	}
	width := b.i32(p.outWidth())
	if p.kind == pairGeGLU {
		// HF's exact GELU: x/2 · (1 + erf(x/√2)).
		erf := b.erf(b.op("arith.mulf", x, b.fillF32([]int{bm, bn}, 1/math.Sqrt2)))
		gelu := b.op("arith.mulf", b.op("arith.mulf", x, b.fillF32([]int{bm, bn}, 0.5)), b.op("arith.addf", erf, b.fillF32([]int{bm, bn}, 1)))
		store(pair, width, b.op("arith.mulf", gelu, y))
	} else {
		// v's pairs (part 2) rotate by the identity: cos 1, sin 0.
		tab := b.op("arith.addi", b.column(b.op("arith.muli", rows, vec(b.i32(p.half), bm)), bn),
			b.row(b.op("arith.remsi", pair, vec(b.i32(p.half), bn)), bm))
		isV := b.row(b.cmpi("eq", part, vec(b.i32(2), bn)), bm)
		cos := b.sel(isV, b.fillF32([]int{bm, bn}, 1), b.gather(ptr["%cos"], tab))
		sin := b.sel(isV, zero, b.gather(ptr["%sin"], tab))
		store(first, width, b.op("arith.subf", b.op("arith.mulf", x, cos), b.op("arith.mulf", y, sin)))
		store(second, width, b.op("arith.addf", b.op("arith.mulf", y, cos), b.op("arith.mulf", x, sin)))
	}
}

// gemmProgramsFromCard marks graphVariant.gemmPrograms for a bare "triton-gemm-persistent": as
// many programs as the card has SMs, which New reads from the backend (resolvePrograms).
const gemmProgramsFromCard = -1

// deviceAttributes is what the XLA backend adds to backends.Backend about a device
// (third_party/gomlx/backends/xla/device_attributes.go).
type deviceAttributes interface {
	DeviceAttributes(device backends.DeviceNum) (map[string]any, error)
}

// smCount is the device's SM count as its PJRT plugin reports it (XLA's CUDA plugin:
// "core_count"), or 0 and why where the backend does not say.
func smCount(backend backends.Backend, device backends.DeviceNum) (int, error) {
	da, ok := backend.(deviceAttributes)
	if !ok {
		return 0, errors.New("the backend reports no device attributes")
	}
	attrs, err := da.DeviceAttributes(device)
	if err != nil {
		return 0, err
	}
	if n, ok := attrs["core_count"].(int64); ok && n > 0 { // PJRT's integers are int64
		return int(n), nil
	}
	return 0, fmt.Errorf("core_count is %v", attrs["core_count"])
}

// resolvePrograms gives a bare triton-gemm-persistent the SM count of the backend's device,
// asking only then. Without one the product kernels run a program per tile: a guessed count
// above the card's would run the programs past it as a second, mostly empty wave.
func (v *graphVariant) resolvePrograms(backend backends.Backend, device backends.DeviceNum) {
	if v.gemmPrograms != gemmProgramsFromCard {
		return
	}
	sms, why := smCount(backend, device)
	v.gemmPrograms = sms
	if sms == 0 && (v.tritonQKV || v.tritonGeGLU) {
		slog.Warn("triton-gemm-persistent: the device does not report its SM count; the product kernels run a program per tile", "why", why)
	}
}

// tritonProductOK says whether a model of this shape computing in dtype takes the product
// kernel of kind for steps of m tokens: bf16, the folded norms over a centred stream (a
// product is then completed by a row factor alone), no bias on the projection, tiles that fit
// (see fit), and offsets that fit int32. The RoPE kernel's output is read by our attention
// kernel only, which the caller checks.
func tritonProductOK(kind pairKind, cfg Config, v graphVariant, dtype dtypes.DType, m int) bool {
	if dtype != dtypes.BFloat16 || !v.lnFold || !v.centered {
		return false
	}
	hidden, pairs, width := cfg.HiddenSize, cfg.IntermediateSize, cfg.IntermediateSize
	if kind == pairRoPE {
		if cfg.AttentionBias || hidden%2 != 0 || cfg.HeadDim()%2 != 0 {
			return false
		}
		pairs, width = 3*hidden/2, 3*hidden
	} else if cfg.MLPBias {
		return false
	}
	_, ok := v.gemmBlocksOf().fit(m, pairs, hidden)
	return ok && int64(m)*int64(max(width, hidden)) < math.MaxInt32
}

// tritonGeGLU is gelu(input)·gate of the MLP's Wi projection at prefix of x: [n, inter] in the
// compute dtype, from the folded product over the centred stream.
func tritonGeGLU(spec graphSpec, params map[string]*Node, prefix string, x normed) *Node {
	inter := spec.cfg.IntermediateSize
	return callProduct(spec, pairGeGLU, inter, x, params[prefix+".weight"], nil)
}

// tritonQKV is Wqkv's projection at prefix of x with q and k rotated: [n, 3·hidden] in the
// compute dtype, q, k and v side by side as the packed attention kernel reads them.
func tritonQKV(spec graphSpec, params map[string]*Node, prefix string, x normed, rp rotary) *Node {
	return callProduct(spec, pairRoPE, 3*spec.cfg.HiddenSize/2, x, params[prefix+".weight"], &rp)
}

// callProduct emits the custom call of a paired product of x (its norm folded into w, or no
// norm at all) for spec's shape.
func callProduct(spec graphSpec, kind pairKind, pairs int, x normed, w *Node, rp *rotary) *Node {
	cfg := spec.cfg
	n := spec.rows * spec.rowLen
	dt := spec.dtype // the plain product (no norm: layer 0's attention)
	if x.norm != "" {
		dt = foldedDType(spec.variant, spec.dtype)
	}
	blocks, _ := spec.variant.gemmBlocksOf().fit(n, pairs, cfg.HiddenSize)
	p := pairedProduct{kind: kind, m: n, k: cfg.HiddenSize, pairs: pairs, hidden: cfg.HiddenSize, half: cfg.HeadDim() / 2,
		scaled: x.norm != "", in: dt, out: spec.dtype, blocks: blocks, programs: spec.variant.gemmPrograms}
	operands := []*Node{ConvertDType(x.h, dt), ConvertDType(w, dt)}
	if p.scaled {
		operands = append(operands, Reshape(x.rowScale(spec), n))
	}
	if rp != nil {
		operands = append(operands, Reshape(rp.cos, n, p.half), Reshape(rp.sin, n, p.half))
	}
	return callTritonKernel(p.backendConfig(), shapes.Make(spec.dtype, n, p.outWidth()), operands...)
}

// productsSummary is Info.Products for steps compiled shapes, of which qkv run our RoPE
// product kernel for Wqkv and geglu our GeGLU kernel for Wi.
func productsSummary(qkv, geglu, steps int) string {
	switch {
	case steps == 0:
		return ""
	case qkv == steps && geglu == steps:
		return "triton"
	}
	parts := onShapes(steps, shapeCount{"triton Wqkv", qkv}, shapeCount{"triton Wi", geglu})
	if len(parts) == 0 {
		return "unfused"
	}
	return strings.Join(parts, ", ") + "; the rest unfused"
}
