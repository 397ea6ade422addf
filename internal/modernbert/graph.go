package modernbert

import (
	"fmt"
	"math"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:staticcheck // the graph DSL reads best unqualified, as in GoMLX's own models
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// maskedScore replaces the scores of keys a query may not see. It is finite so that a
// fully masked row (a padding token) gives a uniform softmax instead of NaN.
const maskedScore = -1e30

// graphSpec fixes everything a compiled step depends on besides the weights.
type graphSpec struct {
	cfg      Config
	dtype    dtypes.DType // matmul dtype: Float32 or BFloat16
	rows     int          // rows per step
	rowLen   int          // tokens per row
	segments int          // pooled vectors per row
	pooling  Pooling
	// poolMask adds the step input saying which tokens are pooled (Options.ExcludePrompt).
	poolMask  bool
	dense     []denseSpec
	normalize bool
	variant   graphVariant
	// fusedAttention runs attention as cuDNN's fused kernel (XLA on a GPU, bf16; see cudnn.go).
	fusedAttention bool
	// tritonAttention runs attention as our Triton kernel (XLA on a GPU, bf16; see triton.go),
	// taking precedence over fusedAttention.
	tritonAttention bool
	// tritonQKV and tritonGeGLU run Wqkv with RoPE and Wi with GeGLU through our Triton product
	// kernels (triton_products.go); tritonQKV needs tritonAttention, which reads what it writes.
	tritonQKV, tritonGeGLU bool
}

// denseSpec is the shape of one Dense layer; its weights are graph parameters.
type denseSpec struct {
	in, out          int
	bias             bool
	act              Activation
	residual, resMat bool // resMat: the residual is projected (in != out)
}

// outDim is the size of the step's vectors: the last Dense layer's, else the hidden size.
func (s graphSpec) outDim() int {
	if len(s.dense) > 0 {
		return s.dense[len(s.dense)-1].out
	}
	return s.cfg.HiddenSize
}

// stepInputs are the per-step inputs, all int32 [rows, rowLen]; pool (1 = pooled) only when
// the spec has poolMask.
type stepInputs struct {
	ids, pos, seg, pool *Node
}

// encoder builds the forward pass: token ids to pooled vectors [segments, rows, outDim] (fp32),
// through the Dense layers and normalisation when the spec has them.
//
// seg gives each token its sequence number within its row (1, 2, ...; 0 for padding) and pos
// its position within that sequence: attention never crosses sequences, RoPE positions and
// sliding windows count from each sequence's start, and pooling is per sequence. A row holding
// one sequence is exactly HF's padded layout.
func encoder(spec graphSpec, params map[string]*Node, rope ropeTables, in stepInputs) *Node {
	cfg := spec.cfg
	rows, rowLen, hidden := spec.rows, spec.rowLen, cfg.HiddenSize
	n := rows * rowLen

	flatIDs := Reshape(in.ids, n, 1)
	h := ConvertDType(Gather(params["embeddings.tok_embeddings.weight"], flatIDs), dtypes.Float32) // [n, hidden]
	h = layerNorm(spec, params, "embeddings.norm", h)
	firstAttention := h // layer 0's attention has no norm: it reads the embeddings as they are
	if spec.variant.centered {
		// The stream is carried less its row means, which the LayerNorms after it remove anyway;
		// every output projection adding to it is centred at upload (centeredOutputs).
		h = Sub(h, ReduceAndKeep(h, ReduceMean, -1))
	}
	if r := spec.variant.residual; r != dtypes.InvalidDType {
		h, firstAttention = ConvertDType(h, r), ConvertDType(firstAttention, r)
	}

	var globalMask, localMask *Node
	var spans seqSpans
	switch {
	case spec.tritonAttention:
		spans = sequenceSpans(in.seg, rowLen) // the kernel computes its masks from these
	case spec.fusedAttention:
		globalMask, localMask = attentionMasks(cfg, in.pos, in.seg)
		dt := fusedAttentionDType(spec.dtype)
		globalMask, localMask = fusedAttentionBias(globalMask, dt), fusedAttentionBias(localMask, dt)
	default:
		globalMask, localMask = attentionMasks(cfg, in.pos, in.seg)
	}
	globalRope := rope.lookup(in.pos, true)
	localRope := rope.lookup(in.pos, false)

	for i := range cfg.NumHiddenLayers {
		p := fmt.Sprintf("layers.%d.", i)
		x := normed{h: firstAttention}
		if i > 0 {
			x = normed{h: h, norm: p + "attn_norm"}
		}
		mask, rp, window := localMask, localRope, cfg.HalfWindow()
		if cfg.IsGlobal(i) {
			mask, rp, window = globalMask, globalRope, 0
		}
		if !spec.variant.skipAttention {
			h = Add(h, ConvertDType(attention(spec, params, p+"attn.", x, mask, spans, rp, window), h.DType()))
		}
		if !spec.variant.skipMLP {
			h = Add(h, ConvertDType(mlp(spec, params, p+"mlp.", normed{h: h, norm: p + "mlp_norm"}), h.DType()))
		}
	}
	h = layerNorm(spec, params, "final_norm", h)
	h = Reshape(h, rows, rowLen, hidden)
	out := pool(spec, h, in.pos, in.seg, in.pool)
	if len(spec.dense) > 0 {
		flat := Reshape(out, rows*spec.segments, hidden)
		for i, d := range spec.dense {
			flat = denseLayer(params, fmt.Sprintf("dense.%d.", i), d, flat)
		}
		out = Reshape(flat, rows, spec.segments, spec.outDim())
	}
	if spec.normalize {
		g := out.Graph()
		norm := Sqrt(ReduceAndKeep(Square(out), ReduceSum, -1))
		out = Div(out, Max(norm, Scalar(g, dtypes.Float32, 1e-12)))
	}
	// Segment-major, so that what a step used is a prefix: rows hold their sequences from
	// segment 1 on, and a step can download only the segments its fullest row reached.
	return TransposeAllAxes(out, 1, 0, 2)
}

// layerNorm normalises x [n, hidden] over its last axis, in fp32 whatever x's dtype.
func layerNorm(spec graphSpec, params map[string]*Node, prefix string, x *Node) *Node {
	x = ConvertDType(x, dtypes.Float32)
	mean, rstd := normStats(spec, x)
	y := Mul(Sub(x, mean), rstd)
	y = Mul(y, InsertAxes(params[prefix+".weight"], 0))
	if b, ok := params[prefix+".bias"]; ok {
		y = Add(y, InsertAxes(b, 0))
	}
	return y
}

// normed is a block's input: the residual stream h under the LayerNorm whose parameters are
// at norm ("" for none: layer 0's attention).
type normed struct {
	h    *Node
	norm string
}

// project returns the projection at prefix of the normalised input, fp32 [n, out]. With the
// ln-fold variant (lnFoldTargets) the norm's weight γ is folded into the projection's weight at
// upload, W' = W·diag(γ), and its statistics correct the product of the unnormalised stream:
// LN(h)·Wᵀ = rstd·(h·W'ᵀ - mean·s) with s = W'·1, or with a centred stream (the centered
// variant) rstd·h·W'ᵀ. No normalised copy of h is written.
func (x normed) project(spec graphSpec, params map[string]*Node, prefix string) *Node {
	var y *Node
	switch {
	case x.norm == "":
		return linear(spec, params, prefix, x.h)
	case !spec.variant.lnFold:
		return linear(spec, params, prefix, layerNorm(spec, params, x.norm, x.h))
	case spec.variant.centered:
		product, rstd := x.projectProduct(spec, params, prefix)
		y = Mul(ConvertDType(product, dtypes.Float32), rstd)
	default:
		mean, rstd := normStats(spec, ConvertDType(x.h, dtypes.Float32))
		y = ConvertDType(foldedProduct(spec, params, prefix, x.h), dtypes.Float32)
		y = Mul(Sub(y, Mul(mean, InsertAxes(params[prefix+foldSumSuffix], 0))), rstd)
	}
	if b, ok := params[prefix+".bias"]; ok {
		y = Add(y, InsertAxes(ConvertDType(b, dtypes.Float32), 0))
	}
	return y
}

// projectProduct returns the matrix product the projection at prefix starts from, in the
// product's own dtype, and the per-token factor [n, 1] fp32 that completes it (nil: none),
// leaving out any bias: the plain product where the input has no norm, and with a folded norm
// over a centred stream h·W'ᵀ and 1/rms(h). Those are the only cases it serves (the Triton
// kernel's triton-rope and triton-rope-q forms, see tritonRoPEOK, and project's centred one).
func (x normed) projectProduct(spec graphSpec, params map[string]*Node, prefix string) (product, rowScale *Node) {
	if x.norm == "" {
		w := ConvertDType(params[prefix+".weight"], spec.dtype)
		return DotGeneral(ConvertDType(x.h, spec.dtype), []int{1}, nil, w, []int{1}, nil), nil
	}
	return foldedProduct(spec, params, prefix, x.h), x.rowScale(spec)
}

// rowScale is 1/rms(h) [n, 1] fp32, what completes a folded product over a centred stream: its
// rows have mean zero, so LN(h) = γ·h·rstd with rstd from the squares alone.
func (x normed) rowScale(spec graphSpec) *Node {
	meanSquare := ReduceAndKeep(Square(ConvertDType(x.h, dtypes.Float32)), ReduceMean, -1)
	return Rsqrt(AddScalar(meanSquare, spec.cfg.NormEps))
}

// foldedProduct is h·W'ᵀ for the folded weight at prefix, in the folded weight's dtype (fp16
// under fold-f16, which reads the fp16 stream itself).
func foldedProduct(spec graphSpec, params map[string]*Node, prefix string, h *Node) *Node {
	dt := foldedDType(spec.variant, spec.dtype)
	return DotGeneral(ConvertDType(h, dt), []int{1}, nil, ConvertDType(params[prefix+".weight"], dt), []int{1}, nil)
}

// normStats returns LayerNorm's mean and 1/sqrt(variance + eps) of fp32 x [n, hidden], each
// [n, 1].
func normStats(spec graphSpec, x *Node) (mean, rstd *Node) {
	mean = ReduceAndKeep(x, ReduceMean, -1)
	var variance *Node
	if spec.variant.lnTwoPass {
		variance = ReduceAndKeep(Square(Sub(x, mean)), ReduceMean, -1)
	} else {
		// E[x²] - E[x]²: both reductions read x in one pass, 2% faster on the H200 than
		// reducing the centred values. The residual stream's mean is small against its spread,
		// so fp32 loses nothing measurable (parity in docs/BENCHMARKS.md); the Max guards the
		// rounding of a constant row.
		variance = Max(Sub(ReduceAndKeep(Square(x), ReduceMean, -1), Square(mean)), ScalarZero(x.Graph(), dtypes.Float32))
	}
	return mean, Rsqrt(AddScalar(variance, spec.cfg.NormEps))
}

// linear applies x @ W^T (+ b) with W [out, in] in the compute dtype; the result is fp32.
func linear(spec graphSpec, params map[string]*Node, prefix string, x *Node) *Node {
	return linearIn(spec.dtype, params, prefix, x)
}

// linearIn is linear with the product in dtype, whatever the weights are stored in.
func linearIn(dtype dtypes.DType, params map[string]*Node, prefix string, x *Node) *Node {
	x = ConvertDType(x, dtype)
	y := DotGeneral(x, []int{1}, nil, ConvertDType(params[prefix+".weight"], dtype), []int{1}, nil)
	y = ConvertDType(y, dtypes.Float32)
	if b, ok := params[prefix+".bias"]; ok {
		y = Add(y, InsertAxes(ConvertDType(b, dtypes.Float32), 0))
	}
	return y
}

// attention is one multi-head self-attention block on x (fp32 [n, hidden] under its norm); mask [rows, 1,
// rowLen, rowLen] says which keys each query sees (with fusedAttention, as an additive bias),
// rp holds the rotary tables for this layer's kind, and window is how far a query sees on each
// side in a sliding-window layer (0: global). With tritonAttention the kernel takes the
// sequences' spans instead of a mask.
func attention(spec graphSpec, params map[string]*Node, prefix string, x normed, mask *Node, spans seqSpans, rp rotary, window int) *Node {
	cfg := spec.cfg
	rows, rowLen, heads, headDim := spec.rows, spec.rowLen, cfg.NumAttentionHeads, cfg.HeadDim()
	if spec.tritonQKV {
		qkv := tritonQKV(spec, params, prefix+"Wqkv", x, rp)
		return linear(spec, params, prefix+"Wo", tritonAttentionPacked(spec, qkv, spans, window))
	}
	if reads := spec.variant.attentionReads(); spec.tritonAttention && reads != readsQKV {
		product, rowScale := x.projectProduct(spec, params, prefix+"Wqkv")
		if reads == readsProductRotatedK {
			return linear(spec, params, prefix+"Wo", tritonAttentionRoPEQ(spec, product, rowScale, rp, spans, window))
		}
		return linear(spec, params, prefix+"Wo", tritonAttentionRoPE(spec, product, rowScale, rp, spans, window))
	}
	qkv := x.project(spec, params, prefix+"Wqkv") // [n, 3*hidden] fp32
	qkv = Reshape(qkv, rows, rowLen, 3, heads, headDim)
	part := func(i int) *Node {
		return Reshape(SliceAxis(qkv, 2, AxisRange(i, i+1)), rows, rowLen, heads, headDim)
	}
	q, k, v := rp.apply(part(0)), rp.apply(part(1)), part(2)
	if spec.tritonAttention {
		flat := func(x *Node) *Node { return Reshape(ConvertDType(x, spec.dtype), rows*rowLen, cfg.HiddenSize) }
		return linear(spec, params, prefix+"Wo", tritonAttentionPlain(spec, flat(q), flat(k), flat(v), spans, window))
	}
	var out *Node
	if spec.fusedAttention {
		dt := fusedAttentionDType(spec.dtype)
		out = cudnnAttention(ConvertDType(q, dt), ConvertDType(k, dt), ConvertDType(v, dt), mask, 1/math.Sqrt(float64(headDim)))
		if !spec.variant.woFloat32 {
			// The output projection stays in the attention's dtype. For a float32 model that is
			// fp16: its input is the kernel's fp16 output either way, Wo is rounded to TF32's
			// mantissa as a TF32 product would round it, the product accumulates in fp32 and its
			// result is rounded to fp16 before the fp32 residual add, and it runs at fp16's rate
			// (+5.6% on the H200, vectors within 1.2e-5 of HF's fp32: run 28).
			return linearIn(dt, params, prefix+"Wo", Reshape(out, rows*rowLen, cfg.HiddenSize))
		}
	} else {
		q = ConvertDType(MulScalar(q, 1/math.Sqrt(float64(headDim))), spec.dtype)
		out = blockedAttention(spec, q, ConvertDType(k, spec.dtype), ConvertDType(v, spec.dtype), mask, window)
	}
	out = Reshape(ConvertDType(out, dtypes.Float32), rows*rowLen, cfg.HiddenSize)
	return linear(spec, params, prefix+"Wo", out)
}

// attentionBlock is the most queries one XLA attention product scores at once. Longer rows are
// split into blocks of queries: the fp32 scores of an 8192-token row need never exist whole
// (XLA's allocator keeps its peak, so one such warm-up held 33 GB for the life of a server),
// and in sliding-window layers a block scores only the keys its window reaches.
const attentionBlock = 512

// blockedAttention computes attention for scaled q and k, v [rows, L, heads, D] (compute dtype)
// one block of attentionBlock queries at a time (see attentionBlock), returning [rows, L,
// heads, D]. A block of a sliding-window layer (window > 0) sees only keys within window rows
// of it: within a row a sequence's tokens are contiguous, so those hold every key its mask
// admits, and the result is exactly the unblocked one.
func blockedAttention(spec graphSpec, q, k, v, mask *Node, window int) *Node {
	rowLen := spec.rowLen
	block := attentionBlock
	if spec.variant.attentionWhole {
		block = rowLen
	}
	if rowLen <= block {
		return attend(spec, q, k, v, mask)
	}
	var outs []*Node
	for start := 0; start < rowLen; start += block {
		end := min(start+block, rowLen)
		keysFrom, keysTo := 0, rowLen
		if window > 0 {
			keysFrom, keysTo = max(0, start-window), min(rowLen, end+window)
		}
		keys := AxisRange(keysFrom, keysTo)
		outs = append(outs, attend(spec, SliceAxis(q, 1, AxisRange(start, end)), SliceAxis(k, 1, keys), SliceAxis(v, 1, keys),
			Slice(mask, AxisRange(), AxisRange(), AxisRange(start, end), keys)))
	}
	return Concatenate(outs, 1)
}

// attend is softmax(q·kᵀ masked)·v for q [rows, Q, heads, D], k and v [rows, K, heads, D] and
// mask [rows, 1, Q, K]; the result is [rows, Q, heads, D] in the compute dtype.
func attend(spec graphSpec, q, k, v, mask *Node) *Node {
	scores := Einsum("rqhd,rkhd->rhqk", q, k)
	if spec.variant.scoresF32 {
		scores = ConvertDType(scores, dtypes.Float32)
	}
	// The softmax runs in fp32 inside its fusions; the stored scores tensor (the largest per
	// layer) stays in the compute dtype unless the variant asks for fp32. Masked scores are
	// selected away with the boolean mask (1 byte a score) rather than by adding an fp32 bias:
	// 1.6% faster on the H200.
	g := q.Graph()
	masked := ConvertDType(scores, dtypes.Float32)
	masked = Where(BroadcastToShape(mask, shapes.Make(dtypes.Bool, masked.Shape().Dimensions...)), masked, Scalar(g, dtypes.Float32, maskedScore))
	probs := Softmax(masked, -1)
	return Einsum("rhqk,rkhd->rqhd", ConvertDType(probs, spec.dtype), v)
}

// mlp is the GeGLU block: Wi -> split into (input, gate) -> gelu(input)*gate -> Wo.
func mlp(spec graphSpec, params map[string]*Node, prefix string, x normed) *Node {
	if spec.tritonGeGLU {
		return linear(spec, params, prefix+"Wo", tritonGeGLU(spec, params, prefix+"Wi", x))
	}
	inter := spec.cfg.IntermediateSize
	wi := x.project(spec, params, prefix+"Wi")
	input := SliceAxis(wi, 1, AxisRange(0, inter))
	gate := SliceAxis(wi, 1, AxisRange(inter, 2*inter))
	return linear(spec, params, prefix+"Wo", Mul(gelu(input), gate))
}

// gelu is the exact (erf) GELU that HF's "gelu" activation is.
func gelu(x *Node) *Node {
	return Mul(MulScalar(x, 0.5), OnePlus(Erf(MulScalar(x, 1/math.Sqrt2))))
}

// attentionMasks returns which keys each query sees, [rows, 1, rowLen, rowLen] booleans, in
// global and sliding-window layers: keys of its own sequence, and in sliding-window layers only
// those within ±LocalAttention/2 positions.
func attentionMasks(cfg Config, pos, seg *Node) (global, local *Node) {
	g := pos.Graph()
	same := sameSequence(seg)
	dist := Abs(Sub(InsertAxes(pos, 2), InsertAxes(pos, 1)))
	near := LessOrEqual(dist, Scalar(g, dtypes.Int32, cfg.HalfWindow()))
	return InsertAxes(same, 1), InsertAxes(LogicalAnd(same, near), 1)
}

// sameSequence says which pairs of tokens of seg [rows, L] (sequence numbers from 1, 0 for
// padding) share a sequence, [rows, L, L] booleans: query, key.
func sameSequence(seg *Node) *Node {
	segQ, segK := InsertAxes(seg, 2), InsertAxes(seg, 1) // [rows, L, 1], [rows, 1, L]
	return LogicalAnd(Equal(segQ, segK), NotEqual(segK, ScalarZero(seg.Graph(), dtypes.Int32)))
}

// fusedMaskedScore is the bias of keys a query may not see in the fused attention: far below
// any real score, yet finite in the bias's dtype and far from overflow whatever the kernel does
// with it, so a padding token's fully masked row still gives finite (ignored) values. fp16 tops
// out at 65,504, so there it is -30,000, still far below any scaled q·k.
func fusedMaskedScore(dtype dtypes.DType) float64 {
	if dtype == dtypes.Float16 {
		return -3e4
	}
	return -1e9
}

// fusedAttentionBias turns a boolean mask into the additive bias the fused attention takes.
func fusedAttentionBias(mask *Node, dtype dtypes.DType) *Node {
	g := mask.Graph()
	return Where(mask, ScalarZero(g, dtype), Scalar(g, dtype, fusedMaskedScore(dtype)))
}

// pool reduces fp32 hidden [rows, rowLen, hidden] to [rows, segments, hidden] as
// sentence-transformers' Pooling does, over each sequence's pooled tokens: all of them ([CLS]
// and [SEP] included), less those poolMask (when given) marks 0.
func pool(spec graphSpec, hidden, pos, seg, poolMask *Node) *Node {
	g := hidden.Graph()
	if poolMask != nil {
		// A token left out of pooling belongs to no sequence here; attention still saw it.
		seg = Where(NotEqual(poolMask, ScalarZero(g, dtypes.Int32)), seg, ZerosLike(seg))
	}
	if spec.pooling == MaxTokens {
		return maxPool(spec, hidden, seg)
	}
	segShape := shapes.Make(dtypes.Int32, spec.rows, spec.segments, spec.rowLen)
	segNum := AddScalar(Iota(g, segShape, 1), 1)
	member := Equal(BroadcastToShape(InsertAxes(seg, 1), segShape), segNum) // [rows, S, L]
	posS := BroadcastToShape(InsertAxes(pos, 1), segShape)
	switch spec.pooling {
	case CLS: // the first pooled token (after a left-out prompt, as sentence-transformers picks it)
		first := ReduceAndKeep(Where(member, posS, Scalar(g, dtypes.Int32, math.MaxInt32)), ReduceMin, -1)
		member = LogicalAnd(member, Equal(posS, first))
	case LastToken:
		last := ReduceAndKeep(Where(member, posS, Scalar(g, dtypes.Int32, -1)), ReduceMax, -1)
		member = LogicalAnd(member, Equal(posS, last))
	}
	weights := ConvertDType(member, dtypes.Float32)
	counts := ReduceAndKeep(weights, ReduceSum, -1) // [rows, S, 1]
	if spec.pooling == WeightedMean {
		// Each token weighs its position + 1; scaling the states first keeps the dot's weights
		// 0/1, which the TF32 note below needs.
		w := ConvertDType(AddScalar(pos, 1), dtypes.Float32) // [rows, L]
		hidden = Mul(hidden, InsertAxes(w, -1))
		counts = ReduceAndKeep(Mul(weights, InsertAxes(w, 1)), ReduceSum, -1)
	}
	// On the GPU XLA's default precision lets this fp32 dot round its inputs to TF32 (11
	// significant bits): packed rows (several segments) moved pooled vectors by ~5e-4, while
	// padded rows (one segment) were exact. The 0/1 weights are exact in TF32; the hidden states
	// are split (Veltkamp) into an 11-bit high part, exact in TF32, and the small remainder, so
	// the sum of the two dots is accurate to ~1e-7 relative (packed now 1.2e-5, as padded).
	high, low := splitTF32(hidden)
	pooled := Add(Einsum("rsl,rlh->rsh", weights, high), Einsum("rsl,rlh->rsh", weights, low))
	counts = Max(counts, ScalarOne(g, dtypes.Float32))
	if spec.pooling == MeanSqrtLen {
		counts = Sqrt(counts)
	}
	return Div(pooled, counts)
}

// splitTF32 splits fp32 x into a high part exact in TF32 and the remainder (Veltkamp).
func splitTF32(x *Node) (high, low *Node) {
	split := MulScalar(x, 1<<13+1)
	high = Sub(split, Sub(split, x))
	return high, Sub(x, high)
}

// maxPool is max pooling: each token's state is scattered (max) into its sequence's vector;
// tokens of no sequence go to a spare slot that is dropped. A sequence with no pooled token
// (a prompt longer than the truncated text) gets zeros rather than -inf, which JSON cannot carry.
func maxPool(spec graphSpec, hidden, seg *Node) *Node {
	g := hidden.Graph()
	rows, rowLen, segs, h := spec.rows, spec.rowLen, spec.segments, spec.cfg.HiddenSize
	rowIdx := Iota(g, shapes.Make(dtypes.Int32, rows, rowLen), 0)
	target := Add(MulScalar(rowIdx, segs), AddScalar(seg, -1))
	idx := Where(NotEqual(seg, ScalarZero(g, dtypes.Int32)), target, Scalar(g, dtypes.Int32, rows*segs))
	lowest := Scalar(g, dtypes.Float32, -math.MaxFloat32)
	out := ScatterMax(BroadcastToDims(lowest, rows*segs+1, h), Reshape(idx, rows*rowLen, 1), Reshape(hidden, rows*rowLen, h), false, false)
	out = Slice(out, AxisRange(0, rows*segs))
	out = Where(LessOrEqual(out, lowest), ZerosLike(out), out)
	return Reshape(out, rows, segs, h)
}

// denseLayer applies one Dense layer to fp32 x [m, in]. Its products are split as in pool, so
// that XLA's TF32 rounding on the GPU does not cost the layer its fp32 accuracy.
func denseLayer(params map[string]*Node, prefix string, d denseSpec, x *Node) *Node {
	y := preciseMatMul(x, params[prefix+"weight"])
	if d.bias {
		y = Add(y, InsertAxes(params[prefix+"bias"], 0))
	}
	switch d.act {
	case ActTanh:
		y = Tanh(y)
	case ActReLU:
		y = Max(y, ZerosLike(y))
	case ActGELU:
		y = gelu(y)
	case ActSigmoid:
		y = Sigmoid(y)
	case ActSiLU:
		y = Mul(y, Sigmoid(y))
	}
	if d.residual {
		if d.resMat {
			y = Add(y, preciseMatMul(x, params[prefix+"residual"]))
		} else {
			y = Add(y, x)
		}
	}
	return y
}

// preciseMatMul is x [m, in] @ wᵀ (w [out, in]) to ~fp32 accuracy under TF32 rounding: three
// products of the split parts (the low·low one is below fp32's resolution).
func preciseMatMul(x, w *Node) *Node {
	xh, xl := splitTF32(x)
	wh, wl := splitTF32(w)
	dot := func(a, b *Node) *Node { return DotGeneral(a, []int{1}, nil, b, []int{1}, nil) }
	return Add(dot(xh, wh), Add(dot(xh, wl), dot(xl, wh)))
}

// ropeTables are cos/sin of every position for both RoPE thetas, [maxPos, headDim/2] fp32,
// computed on the host in float64 so long positions lose no accuracy.
type ropeTables struct {
	globalCos, globalSin, localCos, localSin *Node
}

// rotary holds one layer kind's cos/sin gathered for this step's positions, [rows, L, 1, D/2].
type rotary struct{ cos, sin *Node }

func (t ropeTables) lookup(pos *Node, global bool) rotary {
	cosT, sinT := t.localCos, t.localSin
	if global {
		cosT, sinT = t.globalCos, t.globalSin
	}
	idx := InsertAxes(pos, -1) // [rows, L, 1]
	return rotary{cos: InsertAxes(Gather(cosT, idx), 2), sin: InsertAxes(Gather(sinT, idx), 2)}
}

// apply rotates x [rows, L, heads, D] (fp32) the rotate-half way:
// [x1, x2] -> [x1*cos - x2*sin, x2*cos + x1*sin]. x is seen as [rows, L, heads, 2, D/2], and
// each half of the result is x1·a + x2·b with per-half coefficients a = (cos, sin) and b =
// (-sin, cos) chosen by the half's index, so the rotation is one elementwise loop: XLA fuses
// q's, k's and the copy of v out of their projection into one kernel a layer, where writing
// the halves with a concatenation gave each of q and k a concatenation kernel of its own (run
// 47: 0.83 ms of a full step's GPU time against 0.99, and 42 kernels fewer).
func (r rotary) apply(x *Node) *Node {
	dims := x.Shape().Dimensions
	rows, rowLen, heads, half := dims[0], dims[1], dims[2], dims[3]/2
	halves := Reshape(x, rows, rowLen, heads, 2, half)
	x1 := SliceAxis(halves, 3, AxisRange(0, 1))
	x2 := SliceAxis(halves, 3, AxisRange(1, 2))
	coeff := []int{rows, rowLen, 1, 2, half}
	cos := BroadcastToDims(InsertAxes(r.cos, 3), coeff...)
	sin := BroadcastToDims(InsertAxes(r.sin, 3), coeff...)
	first := Equal(Iota(x.Graph(), shapes.Make(dtypes.Int32, coeff...), 3), ScalarZero(x.Graph(), dtypes.Int32))
	a := Where(first, cos, sin)
	b := Where(first, Neg(sin), cos)
	return Reshape(Add(Mul(x1, a), Mul(x2, b)), rows, rowLen, heads, 2*half)
}

// ropeTableData computes cos and sin [maxPos * headDim/2] for one theta, as HF's default RoPE:
// inv_freq[i] = theta^(-2i/headDim).
func ropeTableData(maxPos, headDim int, theta float64) (cosData, sinData []float32) {
	half := headDim / 2
	cosData = make([]float32, maxPos*half)
	sinData = make([]float32, maxPos*half)
	for i := range half {
		invFreq := 1 / math.Pow(theta, float64(2*i)/float64(headDim))
		for p := range maxPos {
			angle := float64(p) * invFreq
			cosData[p*half+i] = float32(math.Cos(angle))
			sinData[p*half+i] = float32(math.Sin(angle))
		}
	}
	return cosData, sinData
}
