package modernbert

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

// DType is the element type of the model's matrix multiplications. Norms, softmax, the
// residual stream and pooling are always fp32.
type DType int

const (
	Float32 DType = iota
	BFloat16
)

func (d DType) String() string {
	if d == BFloat16 {
		return "bfloat16"
	}
	return "float32"
}

func (d DType) gomlx() dtypes.DType {
	if d == BFloat16 {
		return dtypes.BFloat16
	}
	return dtypes.Float32
}

// ParseDType accepts float32/fp32/f32 and bfloat16/bf16.
func ParseDType(s string) (DType, error) {
	switch strings.ToLower(s) {
	case "float32", "fp32", "f32":
		return Float32, nil
	case "bfloat16", "bf16":
		return BFloat16, nil
	}
	return 0, fmt.Errorf("dtype %q: want float32 or bfloat16", s)
}

// Pooling picks how a sequence's token states become one vector: sentence-transformers'
// pooling modes, over the sequence's pooled tokens ([CLS] and [SEP] included, a prompt's tokens
// left out when Options.ExcludePrompt asks).
type Pooling int

const (
	// Mean averages the tokens (sentence-transformers' default for ModernBERT).
	Mean Pooling = iota
	// CLS takes the first pooled token's state.
	CLS
	// MaxTokens takes each component's largest value over the tokens.
	MaxTokens
	// LastToken takes the last token's state.
	LastToken
	// MeanSqrtLen is the sum of the tokens divided by the square root of their count.
	MeanSqrtLen
	// WeightedMean weighs the token at position p (from 0) by p+1.
	WeightedMean
)

// poolingNames are sentence-transformers' names of the modes, in Pooling order.
var poolingNames = []string{"mean", "cls", "max", "lasttoken", "mean_sqrt_len_tokens", "weightedmean"}

func (p Pooling) String() string {
	if int(p) < 0 || int(p) >= len(poolingNames) {
		return fmt.Sprintf("pooling(%d)", int(p))
	}
	return poolingNames[p]
}

// ParsePooling accepts sentence-transformers' mode names: mean, cls, max, lasttoken,
// mean_sqrt_len_tokens and weightedmean.
func ParsePooling(s string) (Pooling, error) {
	for i, name := range poolingNames {
		if strings.EqualFold(s, name) {
			return Pooling(i), nil
		}
	}
	return 0, fmt.Errorf("pooling %q: want one of %s", s, strings.Join(poolingNames, ", "))
}

// Activation is the function a Dense layer applies after its linear map.
type Activation int

const (
	ActIdentity Activation = iota
	ActTanh
	ActReLU
	ActGELU // exact (erf), torch.nn.GELU's default
	ActSigmoid
	ActSiLU
)

var activationNames = []string{"identity", "tanh", "relu", "gelu", "sigmoid", "silu"}

func (a Activation) String() string {
	if int(a) < 0 || int(a) >= len(activationNames) {
		return fmt.Sprintf("activation(%d)", int(a))
	}
	return activationNames[a]
}

// Dense is a linear layer applied to the pooled vector, then its activation
// (sentence-transformers' Dense module): y = act(x Wᵀ + b), plus x (or x Rᵀ when the sizes
// differ) when Residual.
type Dense struct {
	In, Out    int
	Weight     []float32 // [Out, In]
	Bias       []float32 // [Out], or nil
	Activation Activation
	Residual   bool
	// ResidualWeight is the residual's projection [Out, In] when In != Out.
	ResidualWeight []float32
}

func (d Dense) check(in int) error {
	switch {
	case d.In != in:
		return fmt.Errorf("takes %d inputs, the vector before it has %d", d.In, in)
	case d.Out < 1 || len(d.Weight) != d.In*d.Out:
		return fmt.Errorf("weight has %d values, want %d x %d", len(d.Weight), d.Out, d.In)
	case d.Bias != nil && len(d.Bias) != d.Out:
		return fmt.Errorf("bias has %d values, want %d", len(d.Bias), d.Out)
	case d.Residual && d.In != d.Out && len(d.ResidualWeight) != d.In*d.Out:
		return fmt.Errorf("residual projection has %d values, want %d x %d", len(d.ResidualWeight), d.Out, d.In)
	case int(d.Activation) < 0 || int(d.Activation) >= len(activationNames):
		return fmt.Errorf("unknown activation %d", d.Activation)
	}
	return nil
}

// Layout is how a batch of sequences is laid out on the device.
type Layout int

const (
	// Packed puts many sequences in each row (block-diagonal attention, positions restarting
	// per sequence): little padding. The continuous engine's layout.
	Packed Layout = iota
	// Padded puts one sequence per row, padded to a length bucket: what HF does. The
	// sequential engine's layout.
	Padded
)

func (l Layout) String() string {
	if l == Padded {
		return "padded"
	}
	return "packed"
}

// ParseLayout accepts packed and padded.
func ParseLayout(s string) (Layout, error) {
	switch strings.ToLower(s) {
	case "packed":
		return Packed, nil
	case "padded":
		return Padded, nil
	}
	return 0, fmt.Errorf("layout %q: want packed or padded", s)
}

// Options configure New.
type Options struct {
	// Backend is "simplego" (pure Go, CPU), "xla:/abs/path/plugin.so" (a PJRT plugin, e.g. the
	// CUDA one), or "" for auto: XLA with the plugin FindXLAPlugin finds, else simplego.
	// Nothing is ever downloaded.
	Backend string
	// DeviceIndex is the device holding this replica (XLA: one of the plugin's devices).
	DeviceIndex int
	DType       DType
	Pooling     Pooling
	// ExcludePrompt compiles the pooling mask that EmbedFrom uses to leave a prompt's tokens out
	// of pooling (sentence-transformers' include_prompt false). Without it EmbedFrom refuses
	// offsets, and the step has one input less.
	ExcludePrompt bool
	// Dense layers run after pooling, in order, in fp32 (sentence-transformers' Dense modules).
	Dense []Dense
	// Normalize L2-normalises the final vectors (sentence-transformers' Normalize module).
	Normalize bool
	// MaxBatchTokens is the token slots of the largest device step (rows x row length).
	// Default: 16384 on XLA, 2048 on simplego.
	MaxBatchTokens int
	// StepSlots is the ladder of step sizes in token slots, up to MaxBatchTokens: each row
	// length gets one compiled step per rung (rows = slots / row length, at least 1), and a
	// call runs the smallest rung that holds its work, so one short text costs a small step.
	// Default on XLA: 1,024, 2,048, 3,072, 4,096, then every 2,048 up to 16,384 (the same
	// shape below another MaxBatchTokens); rows longer than PackedRowLength, and padded
	// batches, keep only rungs 4x apart. On simplego: every power of two from 64.
	StepSlots []int
	// MaxSequenceLength is the longest sequence accepted, ids with [CLS]/[SEP] included.
	// Default and upper bound: the config's max_position_embeddings.
	MaxSequenceLength int
	// RowLengths are the row lengths compiled at start-up, ascending; the last must be at least
	// MaxSequenceLength. Default: 64, 128, 256, 512, 2048, 8192, cut at MaxSequenceLength
	// (which is added when it falls between two).
	RowLengths []int
	// PackedRowLength is the row length short sequences are packed into (one of RowLengths).
	// Default: 256 (attention costs grow with the row length; MS MARCO passages are under 256
	// tokens), or the largest row length if smaller.
	PackedRowLength int
	// Layouts are the layouts compiled at start-up; Embed refuses the others. Default: both.
	Layouts []Layout
	// PaddedRows is the rows of a padded step (at most MaxBatchTokens / row length). Default 32,
	// the batch size of a sentence-transformers service.
	PaddedRows int
	// Pipeline is how many steps of one Embed call run at once, so that host work and
	// transfers of one overlap the device time of another. Default: 2 on XLA, 1 on simplego
	// (which already uses every core for one step).
	Pipeline int
	// MemoryFraction caps the share of device memory the XLA client may use; 0 leaves the
	// plugin's default. Preallocation is always off, so memory grows as needed.
	MemoryFraction float64
	// Client picks which of the process's PJRT clients the model runs on (XLA only): models
	// on different clients enqueue their steps on different device streams, so that the
	// device can run one's kernels in the gaps between the other's. 0, the default, is the
	// client every model shares.
	Client int
}

// Stats describe the device work of one Embed call.
type Stats struct {
	RealTokens int // tokens of the sequences
	SlotTokens int // token slots run on the device (rows x row length); waste = SlotTokens - RealTokens
	Steps      int // device steps
	Device     time.Duration
	PerStep    []StepUse // each step's size and fill, in the order they ended
}

// StepUse is one device step: its size (the rung), the real tokens it carried, and where its
// wall time went.
type StepUse struct {
	Slots, RealTokens int
	Phases            [NumPhases]time.Duration
}

// A step's phases, in order; PhaseNames names them.
const (
	PhasePack     = iota // the inputs laid out on the host
	PhaseUpload          // copied to the device, each copy waited for
	PhaseExecute         // the step, from its launch to its end (behind other steps on the device included)
	PhaseDownload        // the pooled vectors copied back
	PhaseUnpack          // each sequence's vector copied out
	NumPhases
)

// PhaseNames are the names of a step's phases, as metrics label them.
var PhaseNames = [NumPhases]string{"pack", "upload", "execute", "download", "unpack"}

// Add accumulates o into s.
func (s *Stats) Add(o Stats) {
	s.RealTokens += o.RealTokens
	s.SlotTokens += o.SlotTokens
	s.Steps += o.Steps
	s.Device += o.Device
	s.PerStep = append(s.PerStep, o.PerStep...)
}

// Waste is the share of token slots that held padding.
func (s Stats) Waste() float64 {
	if s.SlotTokens == 0 {
		return 0
	}
	return float64(s.SlotTokens-s.RealTokens) / float64(s.SlotTokens)
}

// Info describes a loaded model for logs, /health and reports.
type Info struct {
	Backend     string   `json:"backend"`
	Device      string   `json:"device"`
	DType       string   `json:"dtype"`
	Pooling     string   `json:"pooling"`
	Dense       []string `json:"dense,omitempty"` // each layer as "IN->OUT activation"
	Normalize   bool     `json:"normalize"`
	Weights     string   `json:"weights"`
	StoredDType string   `json:"stored_dtype"`
	Params      int      `json:"params"`
	Config      string   `json:"config"`
	Shapes      []string `json:"shapes"`
	// StepSlots are the distinct token slots of the compiled steps, ascending: the step
	// ladder's rungs. Empty on the native CPU pass, whose steps are sized to what is queued.
	StepSlots   []int         `json:"step_slots,omitempty"`
	CompileTime time.Duration `json:"compile_time_ns"`
	// Products says how the compiled steps run Wqkv and Wi: "unfused" (graph ops: the products,
	// then the passes; the default), "triton" (both through our kernels, RoPE and GeGLU in their
	// epilogues: triton-products), or which ran where, as "triton Wi; the rest unfused"; empty
	// on the native CPU pass.
	Products string `json:"products,omitempty"`
	// ProductPrograms is how many programs our product kernels run persistent over
	// (triton-gemm-persistent; a bare one takes the card's SM count); 0 for a program per tile.
	// A step with fewer tiles than that runs one program per tile.
	ProductPrograms int `json:"product_programs,omitempty"`
	// Attention says how the compiled steps attend: "triton BFloat16" (our Triton kernel,
	// bf16's default on the GPU), "cudnn-fused BFloat16" or "cudnn-fused Float16" (a float32
	// model's attention on the GPU), "unfused" (graph ops), or a mix; empty on the native CPU
	// pass.
	Attention string `json:"attention,omitempty"`
	// Residual says how the compiled steps carry the residual stream between layers: its dtype,
	// "norms folded" when the LayerNorms before Wqkv and Wi are folded into them, and "rows
	// centred" when its rows are kept at mean zero (both bf16's default on XLA); empty on the
	// native CPU pass.
	Residual string `json:"residual,omitempty"`
	// Downloads says what compiled steps copy back: "partial" (the part of the pooled vectors
	// a step used) or "whole"; empty on the native CPU pass.
	Downloads string `json:"downloads,omitempty"`
	// CPU says how the model runs on a CPU: the native forward pass over a BLAS, or the
	// simplego graph and why (and what runs its products).
	CPU string `json:"cpu,omitempty"`
}

// EnvVariant selects graph variants for device experiments (scripts/gpu/perf_model.sh): a
// comma-separated list of "scores-f32" (store the attention scores in fp32 rather than the
// compute dtype), "ln-twopass" (LayerNorm variance from the centred values, a second read of the input),
// "xla-attention" (attention as XLA ops even where our Triton kernel or cuDNN's applies), "wo-f32" (a
// float32 model's attention output projection in float32 after its fp16 fused attention),
// "attention-whole" (XLA attention over whole rows, not blocks of queries),
// "residual-bf16" / "residual-f16" / "residual-f32" (the residual stream between layers in that
// dtype; residual-f32 alone is the default before session 12: fp32, nothing folded),
// "full-download" (every step downloads its whole output),
// "ln-fold" (each LayerNorm before a projection folded into it: see normed.project; the
// default for float32 on XLA),
// "fold-f16" (ln-fold with an fp16 residual stream read by fp16 folded products; alone, bf16's
// default on XLA before session 13),
// "centered" (the stream's rows kept at mean zero, output projections centred at upload: with
// fold-f16 the default for bf16 on XLA, see streamDefaults),
// "fused-attention" (try our Triton kernel and cuDNN's on any backend; where they fail to
// build, XLA-style attention is used), "cudnn-attention" (cuDNN's fused kernel where our Triton
// kernel, bf16's default on XLA, would run), "triton-rope" (our kernel reads Wqkv's raw product
// and scales and rotates q and k itself, instead of reading them from XLA's RoPE fusion; where
// it cannot, see tritonRoPEOK, cuDNN's kernel runs), "triton-rope-q" (the same for q and v, with
// k scaled and rotated by XLA: one pass over k alone),
// "triton-blocks=MxNxWxS" (its query and key tiles, warps and pipeline stages; default 64x64x4x3),
// "triton-products" (Wqkv and Wi through our Triton product kernels with RoPE and GeGLU in their
// epilogues, where they apply, see tritonProductOK; slower than cuBLAS's products and XLA's
// passes on the H200, run 58; "triton-qkv" and "triton-geglu" for one of the two),
// "triton-gemm-blocks=MxNxKxWxS" (those kernels' row, column-pair and depth tiles, warps and
// stages; default 128x128x64x8x3), "triton-gemm-persistent=N" (those kernels persistent over N
// programs; with triton-geglu alone 0.7-1.1% faster on the H200 at its SM count, runs 66 and
// 67), "triton-gemm-persistent" (over the card's SM count, as its PJRT plugin reports it)
// and
// "skip-attention" / "skip-mlp" (leave those blocks out: wrong vectors, for timing a step's
// parts only) and "cpu-graph" (on CPU, the simplego graph rather than the native forward
// pass). Unset: the defaults.
const EnvVariant = "EMBEDBENCH_MODERNBERT_VARIANT"

// graphVariant is how the graph is laid out for an experiment; scoresF32 computes the same
// function up to rounding, the skips do not.
type graphVariant struct {
	scoresF32              bool         // scores tensor in fp32 (else the compute dtype; softmax is fp32 either way)
	lnTwoPass              bool         // LayerNorm variance from the centred values (else E[x²]-E[x]²)
	xlaAttention           bool         // attention as XLA ops even where our Triton kernel or cuDNN's applies
	woFloat32              bool         // after a float32 model's fp16 fused attention, Wo as a float32 (TF32) product
	attentionWhole         bool         // XLA attention scores a whole row at once (else blocks of attentionBlock queries)
	fusedAttention         bool         // try our Triton kernel and cuDNN's on any backend (falling back where they fail)
	cudnnAttention         bool         // cuDNN's fused kernel even where our Triton kernel applies (the default before session 17)
	tritonRoPE             bool         // our Triton kernel reads Wqkv's raw product and rotates q and k itself
	tritonRoPEQ            bool         // our Triton kernel reads q and v from Wqkv's raw product and rotates q itself
	tritonBlocks           tritonBlocks // zero: defaultTritonBlocks (see blocks)
	tritonQKV, tritonGeGLU bool         // Wqkv with RoPE (Wi with GeGLU) through our Triton product kernel
	gemmBlocks             gemmBlocks   // zero: defaultGEMMBlocks (see gemmBlocksOf)
	gemmPrograms           int          // the product kernels persistent, over this many programs (0: a program per tile; gemmProgramsFromCard until New resolves it)
	skipAttention, skipMLP bool         // leave the blocks out (timing only: the vectors are wrong)
	cpuGraph               bool         // on CPU, run the simplego graph even where the native forward pass could
	// residual, when set (bf16 or fp16), is the residual stream's dtype between layers instead
	// of fp32, halving the bytes its adds and LayerNorms move; the adds and LayerNorm still
	// compute in fp32.
	residual     dtypes.DType
	fullDownload bool // download a step's whole output even where part of it would do
	lnFold       bool // LayerNorms before Wqkv and Wi folded into those projections (normed.project)
	// foldF16 runs the folded projections in fp16 straight on the fp16 residual stream, so that
	// no copy of it is written for them (with lnFold and an fp16 residual).
	foldF16 bool
	// centered keeps the residual stream's rows at mean zero (centeredOutputs), so that a folded
	// LayerNorm needs only the sum of squares (normed.project).
	centered bool
}

func parseGraphVariant(s string) (graphVariant, error) {
	var v graphVariant
	for _, f := range strings.Split(s, ",") {
		if spec, ok := strings.CutPrefix(strings.TrimSpace(f), "triton-gemm-blocks="); ok {
			var b gemmBlocks
			n, err := parseDims(spec, 5)
			if err == nil {
				b = gemmBlocks{m: n[0], n: n[1], k: n[2], warps: n[3], stages: n[4]}
			}
			if err != nil || !b.valid() {
				return v, fmt.Errorf("%s: triton-gemm-blocks=%q: want MxNxKxWARPSxSTAGES: tiles of powers of two from 16 to 256, warps a power of two up to 16, 1 to 8 stages", EnvVariant, spec)
			}
			v.gemmBlocks = b
			continue
		}
		if strings.TrimSpace(f) == "triton-gemm-persistent" {
			v.gemmPrograms = gemmProgramsFromCard
			continue
		}
		if spec, ok := strings.CutPrefix(strings.TrimSpace(f), "triton-gemm-persistent="); ok {
			n, err := strconv.Atoi(spec)
			if err != nil || n < 1 || n > 65535 {
				return v, fmt.Errorf("%s: triton-gemm-persistent=%q: want the number of programs, 1 to 65535 (the GPU's SM count: 132 on an H200)", EnvVariant, spec)
			}
			v.gemmPrograms = n
			continue
		}
		if spec, ok := strings.CutPrefix(strings.TrimSpace(f), "triton-blocks="); ok {
			b, err := parseTritonBlocks(spec)
			if err != nil || !b.valid() {
				return v, fmt.Errorf("%s: triton-blocks=%q: want MxNxWARPSxSTAGES: tiles of powers of two from 16 to 256, warps a power of two up to 16, 1 to 8 stages", EnvVariant, spec)
			}
			v.tritonBlocks = b
			continue
		}
		switch strings.TrimSpace(f) {
		case "":
		case "scores-f32":
			v.scoresF32 = true
		case "ln-twopass":
			v.lnTwoPass = true
		case "xla-attention":
			v.xlaAttention = true
		case "wo-f32":
			v.woFloat32 = true
		case "attention-whole":
			v.attentionWhole = true
		case "fused-attention":
			v.fusedAttention = true
		case "cudnn-attention":
			v.cudnnAttention = true
		case "triton-rope":
			v.tritonRoPE = true
		case "triton-rope-q":
			v.tritonRoPEQ = true
		case "triton-products":
			v.tritonQKV, v.tritonGeGLU = true, true
		case "triton-qkv":
			v.tritonQKV = true
		case "triton-geglu":
			v.tritonGeGLU = true
		case "skip-attention":
			v.skipAttention = true
		case "skip-mlp":
			v.skipMLP = true
		case "cpu-graph":
			v.cpuGraph = true
		case "residual-bf16":
			v.residual = dtypes.BFloat16
		case "residual-f16":
			v.residual = dtypes.Float16
		case "residual-f32":
			v.residual = dtypes.Float32
		case "fold-f16":
			v.lnFold, v.residual, v.foldF16 = true, dtypes.Float16, true
		case "full-download":
			v.fullDownload = true
		case "ln-fold":
			v.lnFold = true
		case "centered":
			v.centered = true
		default:
			return v, fmt.Errorf("%s: unknown variant %q (want scores-f32, ln-twopass, xla-attention, wo-f32, attention-whole, fused-attention, cudnn-attention, triton-rope, triton-rope-q, triton-blocks=MxNxWxS, triton-products, triton-qkv, triton-geglu, triton-gemm-blocks=MxNxKxWxS, triton-gemm-persistent[=N], skip-attention, skip-mlp, cpu-graph, residual-bf16, residual-f16, residual-f32, full-download, ln-fold, fold-f16, centered)", EnvVariant, f)
		}
	}
	// Variants that would each quietly undo the other.
	switch {
	case v.tritonRoPE && v.tritonRoPEQ:
		return v, fmt.Errorf("%s: triton-rope and triton-rope-q are two ways for the attention kernel to read Wqkv: pick one", EnvVariant)
	case v.tritonQKV && (v.tritonRoPE || v.tritonRoPEQ || v.cudnnAttention || v.xlaAttention):
		return v, fmt.Errorf("%s: triton-qkv (and triton-products) writes q, k and v for our attention kernel's packed form, which triton-rope, triton-rope-q, cudnn-attention and xla-attention turn off", EnvVariant)
	}
	return v, nil
}

// parseTritonBlocks reads triton-blocks's "MxNxWARPSxSTAGES".
func parseTritonBlocks(spec string) (tritonBlocks, error) {
	n, err := parseDims(spec, 4)
	if err != nil {
		return tritonBlocks{}, err
	}
	return tritonBlocks{m: n[0], n: n[1], warps: n[2], stages: n[3]}, nil
}

// parseDims reads count integers joined by "x".
func parseDims(spec string, count int) ([]int, error) {
	parts := strings.Split(spec, "x")
	if len(parts) != count {
		return nil, fmt.Errorf("%q has %d numbers, want %d", spec, len(parts), count)
	}
	n := make([]int, count)
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil {
			return nil, err
		}
		n[i] = v
	}
	return n, nil
}
