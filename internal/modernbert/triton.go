package modernbert

import (
	"fmt"
	"math"

	"github.com/gomlx/go-xla/pkg/stablehlo"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:staticcheck // the graph DSL reads best unqualified
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// Attention through a Triton kernel of our own, bf16's default on XLA (variant
// "cudnn-attention" turns it off). XLA compiles a custom call to `__gpu$xla.gpu.triton` from the
// Triton IR in its backend config, as JAX's Pallas emits it, so the kernel needs nothing at run
// time beyond the PJRT plugin.
//
// Why a kernel of our own: cuDNN's fused attention over packed rows scores every query of a
// 256-token row against every key and takes the mask as a bias read from memory (session 14's
// kernel table: 1.95 ms of a 10 ms step; 1.23 ms with this kernel, run 54). This kernel
// computes which keys a query sees from the span of its sequence (and a local layer's window),
// and visits only the key blocks those spans reach. It reads q, k and v as XLA's RoPE pass
// writes them; with "triton-rope" it reads Wqkv's raw product instead and scales and rotates q
// and k as it loads them (slower on the H200: each query block rotates every key block again).
const tritonTarget = "__gpu$xla.gpu.triton"

// attentionInput is what the attention kernel reads.
type attentionInput int

const (
	// readsQKV: q, k and v, scaled and rotated, as XLA's RoPE fusion writes them (the default).
	readsQKV attentionInput = iota
	// readsPacked: the same side by side in one [n, 3·hidden] buffer, as the RoPE product kernel
	// writes them (triton-products, triton_products.go).
	readsPacked
	// readsProduct: Wqkv's raw product; the kernel scales and rotates q and k itself (triton-rope).
	readsProduct
	// readsProductRotatedK: q and v from Wqkv's raw product, k as XLA's pass writes it, scaled
	// and rotated (triton-rope-q): each query block rotates its q once, and v's scale goes onto
	// the probabilities, so the pass before the kernel reads and writes only k.
	readsProductRotatedK
)

// attentionReads is what our attention kernel reads under v.
func (v graphVariant) attentionReads() attentionInput {
	switch {
	case v.tritonRoPE:
		return readsProduct
	case v.tritonRoPEQ:
		return readsProductRotatedK
	}
	return readsQKV
}

// tritonKernel is one attention kernel's shape: it is generated for it (Triton's tensors have
// static shapes).
type tritonKernel struct {
	rows, rowLen, heads, headDim int
	window                       int // a sliding-window layer's reach on each side; 0: global
	input                        attentionInput
	in                           dtypes.DType // the dtype of what the kernel reads
	out                          dtypes.DType // the result (bf16); q, k, v and the probabilities too, but with readsProductRotatedK (in)
	scale                        float64      // of the scores, 1/√headDim
	blockM, blockN               int          // queries and keys a program holds at once
	warps, stages                int
}

// tritonAttentionOK says whether the kernel takes a model of this shape computing in dtype:
// bf16 (Triton's products take bf16 here; float32 keeps cuDNN in fp16), a head dimension that is
// a power of two from 16 to 128 (tensor dimensions must be powers of two, products at least 16
// deep), rows a whole number of the kernel's blocks, and offsets that fit int32.
func tritonAttentionOK(dtype dtypes.DType, headDim, rows, rowLen, hidden int, blocks tritonBlocks) bool {
	pow2 := headDim&(headDim-1) == 0
	return dtype == dtypes.BFloat16 && pow2 && headDim >= 16 && headDim <= 128 && rowLen%blocks.m == 0 && rowLen%blocks.n == 0 &&
		int64(rows)*int64(rowLen)*int64(3*hidden) < math.MaxInt32
}

// tritonBlocks are a kernel's tile sizes and launch parameters.
type tritonBlocks struct{ m, n, warps, stages int }

// defaultTritonBlocks: 64 queries by 64 keys, four warps (one warpgroup, as Hopper's wgmma
// takes 64 rows), three pipeline stages (Pallas's default).
var defaultTritonBlocks = tritonBlocks{m: 64, n: 64, warps: 4, stages: 3}

// valid says whether Triton can build these: tiles of powers of two from 16 (the products'
// least) to 256, a power of two of warps up to 16, and 1 to 8 stages.
func (b tritonBlocks) valid() bool {
	pow2 := func(x, lo, hi int) bool { return x >= lo && x <= hi && x&(x-1) == 0 }
	return pow2(b.m, 16, 256) && pow2(b.n, 16, 256) && pow2(b.warps, 1, 16) && b.stages >= 1 && b.stages <= 8
}

// blocks are the Triton kernel's tiles for v: triton-blocks's, else the default.
func (v graphVariant) blocks() tritonBlocks {
	if v.tritonBlocks == (tritonBlocks{}) {
		return defaultTritonBlocks
	}
	return v.tritonBlocks
}

// tritonRoPEOK says whether the kernel can read Wqkv's raw product itself (triton-rope,
// triton-rope-q): the
// product must be completed by a per-token factor alone (a folded norm over a centred stream,
// no bias), and each half of a head must be 16 deep for its products.
func tritonRoPEOK(cfg Config, v graphVariant) bool {
	return v.lnFold && v.centered && !cfg.AttentionBias && cfg.HeadDim() >= 32
}

func newTritonKernel(rows, rowLen, heads, headDim, window int, input attentionInput, in, out dtypes.DType, blocks tritonBlocks) tritonKernel {
	return tritonKernel{rows: rows, rowLen: rowLen, heads: heads, headDim: headDim, window: window, input: input, in: in, out: out,
		scale: 1 / math.Sqrt(float64(headDim)), blockM: blocks.m, blockN: blocks.n, warps: blocks.warps, stages: blocks.stages}
}

// mlirElem is the MLIR element type of a kernel dtype.
func mlirElem(dt dtypes.DType) string {
	switch dt {
	case dtypes.BFloat16:
		return "bf16"
	case dtypes.Float16:
		return "f16"
	case dtypes.Float32:
		return "f32"
	case dtypes.Int32:
		return "i32"
	}
	panic(fmt.Sprintf("modernbert: no Triton element type for %s", dt))
}

// grid is the kernel's launch grid: a program per block of queries, head and row.
func (k tritonKernel) grid() (x, y, z int) { return k.rowLen / k.blockM, k.heads, k.rows }

// name is the kernel function's name.
func (k tritonKernel) name() string {
	kind := "global"
	if k.window > 0 {
		kind = fmt.Sprintf("local%d", k.window)
	}
	switch k.input {
	case readsProduct:
		kind += "_rope"
	case readsProductRotatedK:
		kind += "_ropeq"
	case readsPacked:
		kind += "_packed"
	}
	return fmt.Sprintf("embedbench_attention_%s_%s", kind, mlirElem(k.in))
}

// backendConfig is the dictionary XLA's Triton call reads: the kernel's name and IR, its
// launch grid, warps and pipeline stages.
func (k tritonKernel) backendConfig() string {
	x, y, z := k.grid()
	return tritonConfig(k.name(), k.ttir(), k.warps, k.stages, x, y, z)
}

// tritonConfig is the dictionary XLA's Triton call reads for a kernel.
func tritonConfig(name, ir string, warps, stages, x, y, z int) string {
	return fmt.Sprintf("{name = %s, ir = %s, num_stages = %d : i32, num_warps = %d : i32, grid_x = %d : i32, grid_y = %d : i32, grid_z = %d : i32, debug = false}",
		stablehlo.MLIRString(name), stablehlo.MLIRString(ir), stages, warps, x, y, z)
}

// callTritonKernel emits XLA's Triton call of a kernel with config on operands (row-major, as
// the kernels index them), returning its one result of shape out.
func callTritonKernel(config string, out shapes.Shape, operands ...*Node) *Node {
	layouts := make([][]int, len(operands))
	for i, o := range operands {
		layouts[i] = []int{0}
		if o.Rank() == 2 {
			layouts[i] = []int{1, 0}
		}
	}
	return CustomCall(tritonTarget, 4, operands, []shapes.Shape{out}, config, layouts, [][]int{{1, 0}})[0]
}

// ttir writes the kernel. Its arguments are XLA's buffers, operands then result. Reading the
// product (readsProduct):
//
//	qkv   [n, 3·hidden] in: Wqkv's product, q, k and v side by side, heads within each
//	scale [n] f32: each token's factor completing the product (the folded norm's 1/rms)
//	cos, sin [n, headDim/2] f32: RoPE's tables at each token's position
//
// with readsProductRotatedK, the same with k's third replaced, after qkv, by
//
//	krot  [n, hidden] in: k scaled and rotated, as XLA's pass writes it
//
// else q, k, v [n, hidden] in the attention dtype (in = out), scaled and rotated, or packed
//
//	qkv [n, 3·hidden]: q, k and v side by side, scaled and rotated
//
// then
//
//	start, end [n] i32: the span of the token's sequence within its row, [start, end); a
//	  padding token has start = rowLen and end = 0, so no query sees it and its own result is
//	  some finite mix of the values its block visits (zeros in a block of padding only),
//	  which nothing reads
//	out   [n, hidden] out: the attention's result, heads side by side
//
// A program takes blockM queries of one head of one row and runs the online softmax over the
// key blocks that the queries' spans reach. Reading the product, it rotates its queries once
// and (readsProduct) each block's keys as it loads them. Scores are scaled by log2(e) so that
// the softmax runs on exp2.
func (k tritonKernel) ttir() string {
	var b ttBuilder
	in, out := mlirElem(k.in), mlirElem(k.out)
	bm, bn, d, half := k.blockM, k.blockN, k.headDim, k.headDim/2
	hidden := k.heads * k.headDim
	args := []ttArg{{"%q", in}, {"%k", in}, {"%v", in}, {"%start", "i32"}, {"%end", "i32"}, {"%out", out}}
	switch k.input {
	case readsProduct:
		args = append([]ttArg{{"%qkv", in}, {"%scale", "f32"}, {"%cos", "f32"}, {"%sin", "f32"}}, args[3:]...)
	case readsProductRotatedK:
		args = append([]ttArg{{"%qkv", in}, {"%krot", in}, {"%scale", "f32"}, {"%cos", "f32"}, {"%sin", "f32"}}, args[3:]...)
	case readsPacked:
		args = append([]ttArg{{"%qkv", in}}, args[3:]...)
	}
	// What q, k and the probabilities are rounded to for the products: the attention dtype,
	// or with q and v from the product the product's dtype, which k and v are in.
	qk := out
	if k.input == readsProductRotatedK {
		qk = in
	}
	ptr := b.begin(k.name(), args)

	qBlock, head, row := b.programID("x"), b.programID("y"), b.programID("z")
	q0 := b.op("arith.muli", qBlock, b.i32(bm))           // the block's first query, within the row
	rowStart := b.op("arith.muli", row, b.i32(k.rowLen))  // the row's first token
	headCol := b.op("arith.muli", head, b.i32(d))         // the head's first column within q, k or v
	rm, rn, rd := b.arange(bm), b.arange(bn), b.arange(d) // query, key and head-dimension lanes
	qi := b.op("arith.addi", b.splat(q0, []int{bm}), rm)  // queries' positions in the row
	qTok := b.op("arith.addi", b.splat(rowStart, []int{bm}), qi)

	// tile broadcasts a [width] vector of lanes and a [n] vector of tokens to a tile of n tokens
	// by width lanes: [n, width] (rowsMajor) or [width, n].
	tile := func(n, width int, rowsMajor bool) (lanes, tokens func(ttVal) ttVal) {
		if rowsMajor {
			return func(v ttVal) ttVal { return b.row(v, n) }, func(v ttVal) ttVal { return b.column(v, width) }
		}
		return func(v ttVal) ttVal { return b.column(v, n) }, func(v ttVal) ttVal { return b.row(v, width) }
	}
	// load loads part 0, 1 or 2 (q, k or v) of tokens tok as [len(tok), D] (rowsMajor) or
	// transposed to [D, len(tok)], as it is stored; v scaled by the token's factor when the
	// kernel reads Wqkv's product and rotates both q and k (rotated reads those then).
	load := func(tok ttVal, part int, rowsMajor bool) ttVal {
		n := tok.t.shape[0]
		lanes, tokens := tile(n, d, rowsMajor)
		if k.input == readsQKV {
			base := b.op("arith.addi", b.op("arith.muli", tok, b.splat(b.i32(hidden), []int{n})), b.splat(headCol, []int{n}))
			return b.gather(ptr[[]string{"%q", "%k", "%v"}[part]], b.op("arith.addi", tokens(base), lanes(rd)))
		}
		base := b.op("arith.addi", b.op("arith.muli", tok, b.splat(b.i32(3*hidden), []int{n})),
			b.splat(b.op("arith.addi", headCol, b.i32(part*hidden)), []int{n}))
		loaded := b.gather(ptr["%qkv"], b.op("arith.addi", tokens(base), lanes(rd)))
		if k.input != readsProduct {
			return loaded
		}
		x := b.convert("arith.extf", loaded, "f32")
		return b.convert("arith.truncf", b.op("arith.mulf", x, tokens(b.gather(ptr["%scale"], tok))), out)
	}
	// rotated loads q or k (part 0 or 1) of tokens tok from Wqkv's product, scaled and rotated
	// the rotate-half way, as its two halves: [len(tok), D/2] each (rowsMajor) or transposed.
	// Halves keep every load contiguous, and a score is then the sum of two products.
	rotated := func(tok ttVal, part int, rowsMajor bool) (first, second ttVal) {
		n := tok.t.shape[0]
		rh := b.arange(half)
		lanes, tokens := tile(n, half, rowsMajor)
		base := b.op("arith.addi", b.op("arith.muli", tok, b.splat(b.i32(3*hidden), []int{n})),
			b.splat(b.op("arith.addi", headCol, b.i32(part*hidden)), []int{n}))
		off1 := b.op("arith.addi", tokens(base), lanes(rh))
		off2 := b.op("arith.addi", off1, b.splat(b.i32(half), off1.t.shape))
		x1 := b.convert("arith.extf", b.gather(ptr["%qkv"], off1), "f32")
		x2 := b.convert("arith.extf", b.gather(ptr["%qkv"], off2), "f32")
		table := b.op("arith.addi", tokens(b.op("arith.muli", tok, b.splat(b.i32(half), []int{n}))), lanes(rh))
		cos, sin := b.gather(ptr["%cos"], table), b.gather(ptr["%sin"], table)
		sc := tokens(b.gather(ptr["%scale"], tok))
		r1 := b.op("arith.subf", b.op("arith.mulf", x1, cos), b.op("arith.mulf", x2, sin))
		r2 := b.op("arith.addf", b.op("arith.mulf", x2, cos), b.op("arith.mulf", x1, sin))
		return b.convert("arith.truncf", b.op("arith.mulf", r1, sc), qk), b.convert("arith.truncf", b.op("arith.mulf", r2, sc), qk)
	}
	// rotatedK loads the first or second half (at 0 or D/2) of XLA's rotated k for tokens tok,
	// transposed: [D/2, len(tok)].
	rotatedK := func(tok ttVal, at int) ttVal {
		n := tok.t.shape[0]
		lanes, tokens := tile(n, half, false)
		base := b.op("arith.addi", b.op("arith.muli", tok, b.splat(b.i32(hidden), []int{n})), b.splat(b.op("arith.addi", headCol, b.i32(at)), []int{n}))
		return b.gather(ptr["%krot"], b.op("arith.addi", tokens(base), lanes(b.arange(half))))
	}
	// scores is q·kᵀ for the block's queries and the keys of tokens kTok, in f32.
	var scores func(kTok ttVal) ttVal
	switch k.input {
	case readsProduct:
		q1, q2 := rotated(qTok, 0, true)
		scores = func(kTok ttVal) ttVal {
			k1, k2 := rotated(kTok, 1, false)
			return b.dot(q2, k2, b.dot(q1, k1, b.fillF32([]int{bm, bn}, 0)))
		}
	case readsProductRotatedK:
		q1, q2 := rotated(qTok, 0, true)
		scores = func(kTok ttVal) ttVal {
			return b.dot(q2, rotatedK(kTok, half), b.dot(q1, rotatedK(kTok, 0), b.fillF32([]int{bm, bn}, 0)))
		}
	default:
		q := load(qTok, 0, true)
		scores = func(kTok ttVal) ttVal { return b.dot(q, load(kTok, 1, false), b.fillF32([]int{bm, bn}, 0)) }
	}

	// The keys the block's queries see: their sequences' spans, and a local layer's window.
	starts, ends := b.gather(ptr["%start"], qTok), b.gather(ptr["%end"], qTok)
	lo, hi := b.reduce(starts, 0, "arith.minsi"), b.reduce(ends, 0, "arith.maxsi")
	if k.window > 0 {
		lo = b.op("arith.maxsi", lo, b.op("arith.subi", q0, b.i32(k.window)))
		hi = b.op("arith.minsi", hi, b.op("arith.addi", q0, b.i32(bm+k.window)))
	}
	bnC := b.i32(bn)
	lo = b.op("arith.muli", b.op("arith.divsi", lo, bnC), bnC)
	startCol, endCol := b.column(starts, bn), b.column(ends, bn)
	qiCol := b.column(qi, bn)
	scoreScale := b.fillF32([]int{bm, bn}, k.scale*math.Log2E)
	masked := b.fillF32([]int{bm, bn}, -1e30)

	init := []ttVal{b.fillF32([]int{bm, d}, 0), b.fillF32([]int{bm}, -1e30), b.fillF32([]int{bm}, 0)}
	final := b.loop(lo, hi, bnC, init, func(kb ttVal, carried []ttVal) []ttVal {
		acc, mPrev, lPrev := carried[0], carried[1], carried[2]
		ki := b.op("arith.addi", b.splat(kb, []int{bn}), rn)
		kTok := b.op("arith.addi", b.splat(rowStart, []int{bn}), ki)
		s := b.op("arith.mulf", scores(kTok), scoreScale)
		kiRow := b.row(ki, bm)
		sees := b.op("arith.andi", b.cmpi("sge", kiRow, startCol), b.cmpi("slt", kiRow, endCol))
		if k.window > 0 {
			dist := b.op("arith.subi", qiCol, kiRow)
			sees = b.op("arith.andi", sees, b.cmpi("sle", dist, b.splat(b.i32(k.window), []int{bm, bn})))
			sees = b.op("arith.andi", sees, b.cmpi("sge", dist, b.splat(b.i32(-k.window), []int{bm, bn})))
		}
		s = b.sel(sees, s, masked)
		mNew := b.op("arith.maxnumf", mPrev, b.reduce(s, 1, "arith.maxnumf"))
		alpha := b.exp2(b.op("arith.subf", mPrev, mNew))
		p := b.exp2(b.op("arith.subf", s, b.column(mNew, bn)))
		lNew := b.op("arith.addf", b.op("arith.mulf", lPrev, alpha), b.reduce(p, 1, "arith.addf"))

		v := load(kTok, 2, true)
		if k.input == readsProductRotatedK {
			// v as the product left it: its keys' factors scale the probabilities instead,
			// after their sum (the softmax's denominator) took them unscaled.
			p = b.op("arith.mulf", p, b.row(b.gather(ptr["%scale"], kTok), bm))
		}
		acc = b.dot(b.convert("arith.truncf", p, qk), v, b.op("arith.mulf", acc, b.column(alpha, d)))
		return []ttVal{acc, mNew, lNew}
	})
	// A query whose loop ran no block (a padding block) has l = 0 and acc = 0: it writes zeros.
	l := b.op("arith.maxnumf", final[2], b.fillF32([]int{bm}, 1e-30))
	o := b.convert("arith.truncf", b.op("arith.divf", final[0], b.column(l, d)), out)
	outOff := b.op("arith.addi", b.column(b.op("arith.addi", b.op("arith.muli", qTok, b.splat(b.i32(hidden), []int{bm})),
		b.splat(headCol, []int{bm})), d), b.row(rd, bm))
	b.scatter(ptr["%out"], outOff, o)
	return b.end()
}

// tritonAttentionRoPE runs the kernel on Wqkv's product qkv [n, 3·hidden] (its own dtype) with
// rowScale [n, 1] fp32 (nil: none), the layer's RoPE tables and the step's sequence spans,
// returning [n, hidden] in the compute dtype (bf16).
func tritonAttentionRoPE(spec graphSpec, qkv, rowScale *Node, rp rotary, sp seqSpans, window int) *Node {
	n, half := spec.rows*spec.rowLen, spec.cfg.HeadDim()/2
	if rowScale == nil {
		rowScale = Ones(qkv.Graph(), shapes.Make(dtypes.Float32, n))
	}
	return callTriton(spec, readsProduct, qkv.DType(), window, sp,
		qkv, Reshape(rowScale, n), Reshape(rp.cos, n, half), Reshape(rp.sin, n, half))
}

// tritonAttentionPlain runs the kernel on q, k and v [n, hidden] in the compute dtype, as
// XLA's fusion writes them (scaled and rotated).
func tritonAttentionPlain(spec graphSpec, q, k, v *Node, sp seqSpans, window int) *Node {
	return callTriton(spec, readsQKV, q.DType(), window, sp, q, k, v)
}

// tritonAttentionRoPEQ runs the kernel on Wqkv's product qkv [n, 3·hidden] (its own dtype)
// with rowScale [n, 1] fp32 (nil: none) and the layer's RoPE tables, as triton-rope does, but
// with k scaled and rotated by XLA first: one pass over k's third of the product.
func tritonAttentionRoPEQ(spec graphSpec, qkv, rowScale *Node, rp rotary, sp seqSpans, window int) *Node {
	cfg := spec.cfg
	rows, rowLen, heads, headDim, hidden := spec.rows, spec.rowLen, cfg.NumAttentionHeads, cfg.HeadDim(), cfg.HiddenSize
	n, half := rows*rowLen, headDim/2
	k := ConvertDType(Reshape(SliceAxis(qkv, 1, AxisRange(hidden, 2*hidden)), rows, rowLen, heads, headDim), dtypes.Float32)
	if rowScale == nil {
		rowScale = Ones(qkv.Graph(), shapes.Make(dtypes.Float32, n, 1))
	} else {
		k = Mul(k, Reshape(rowScale, rows, rowLen, 1, 1))
	}
	kRot := Reshape(ConvertDType(rp.apply(k), qkv.DType()), n, hidden)
	return callTriton(spec, readsProductRotatedK, qkv.DType(), window, sp,
		qkv, kRot, Reshape(rowScale, n), Reshape(rp.cos, n, half), Reshape(rp.sin, n, half))
}

// tritonAttentionPacked runs the kernel on q, k and v side by side in qkv [n, 3·hidden] (the
// compute dtype), scaled and rotated, as the RoPE product kernel writes them.
func tritonAttentionPacked(spec graphSpec, qkv *Node, sp seqSpans, window int) *Node {
	return callTriton(spec, readsPacked, qkv.DType(), window, sp, qkv)
}

// callTriton emits the custom call of the kernel for spec's shape on operands (what input
// says) and the spans.
func callTriton(spec graphSpec, input attentionInput, in dtypes.DType, window int, sp seqSpans, operands ...*Node) *Node {
	cfg := spec.cfg
	k := newTritonKernel(spec.rows, spec.rowLen, cfg.NumAttentionHeads, cfg.HeadDim(), window, input, in, spec.dtype,
		spec.variant.blocks())
	operands = append(operands, sp.start, sp.end)
	return callTritonKernel(k.backendConfig(), shapes.Make(spec.dtype, spec.rows*spec.rowLen, cfg.HiddenSize), operands...)
}

// seqSpans holds, for each token of a step, the span [start, end) of its sequence within its
// row, [n] int32; padding has start = rowLen and end = 0.
type seqSpans struct{ start, end *Node }

// sequenceSpans computes the spans from seg [rows, rowLen] (sequence numbers from 1, 0 for
// padding), once a step for every layer.
func sequenceSpans(seg *Node, rowLen int) seqSpans {
	g := seg.Graph()
	rows := seg.Shape().Dimensions[0]
	zero := ScalarZero(g, dtypes.Int32)
	same := sameSequence(seg)
	keys := Iota(g, shapes.Make(dtypes.Int32, rows, rowLen, rowLen), 2)
	start := ReduceMin(Where(same, keys, Scalar(g, dtypes.Int32, rowLen)), -1)
	count := ReduceSum(ConvertDType(same, dtypes.Int32), -1)
	end := Where(NotEqual(seg, zero), Add(start, count), zero)
	n := rows * rowLen
	return seqSpans{start: Reshape(start, n), end: Reshape(end, n)}
}
