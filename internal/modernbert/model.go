package modernbert

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/dtypes/bfloat16"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/x448/float16"
)

// Model is one replica of the encoder on one device: weights uploaded once, one compiled step
// per shape. Embed may be called from several goroutines at once (their steps overlap on the
// device); Close must not race with Embed.
type Model struct {
	cfg         Config
	opts        Options
	backendSpec string
	backend     backends.Backend
	device      backends.DeviceNum
	weights     []backends.Buffer // graph parameters in specs order, then the RoPE tables
	packed      map[int][]*step   // by row length, the ladder of rungs by ascending rows: many sequences per row
	padded      map[int][]*step   // by row length, the ladder of rungs by ascending rows: one sequence per row
	packedRow   int               // row length short sequences are packed into
	pipeline    int               // steps of one Embed call in flight at once
	variant     graphVariant
	cpu         *cpuEncoder // on CPU with a BLAS: the native forward pass, no compiled steps
	// partial downloads only the used part of a step's output where the backend can (XLA);
	// partialOff turns it off after its first failure.
	partial    partialDownloader
	partialOff atomic.Bool
	info       Info
	closed     bool
}

// step is one compiled shape. Executions of it may overlap (each has its own hostInputs).
type step struct {
	spec   graphSpec
	g      *graph.Graph
	inputs sync.Pool // *hostInputs of this shape
}

// hostInputs are one execution's host arrays. data holds its int32 [rows*rowLen] inputs one
// after another, uploaded as one [k, rows, rowLen] array (one transfer a step, not four): token
// ids, position within the sequence, sequence number within the row with 0 = padding, and with
// a pooling mask 1 for the pooled tokens. out receives the pooled vectors [segments, rows,
// outDim].
type hostInputs struct {
	data                []int32
	ids, pos, seg, pool []int32
	out                 []float32
}

// inputKinds is how many int32 arrays a step of spec uploads.
func inputKinds(spec graphSpec) int {
	if spec.poolMask {
		return 4
	}
	return 3
}

// getInputs returns cleared input arrays (all padding).
func (st *step) getInputs() *hostInputs {
	if in, ok := st.inputs.Get().(*hostInputs); ok {
		clear(in.data)
		return in
	}
	n := st.spec.rows * st.spec.rowLen
	in := &hostInputs{data: make([]int32, inputKinds(st.spec)*n),
		out: make([]float32, st.spec.rows*st.spec.segments*st.spec.outDim())}
	in.ids, in.pos, in.seg = in.data[:n], in.data[n:2*n], in.data[2*n:3*n]
	if st.spec.poolMask {
		in.pool = in.data[3*n : 4*n]
	}
	return in
}

// partialDownloader is what the XLA backend adds to backends.Backend for downloads
// (third_party/gomlx/backends/xla/copy_raw.go): part of a buffer. A step's whole output is
// rows x segments x outDim float32 (6.3 MB for a full step on the GPU), of which packed MS MARCO
// passages use about a tenth; it came back at about 4 GB/s, 1.5 ms of a 13.5 ms step on the
// H200, and 0.46 ms as a prefix (run 34).
type partialDownloader interface {
	BufferCopyRawToHost(buffer backends.Buffer, dst []byte, offset int) error
}

// New uploads w to the device, compiles one step per row length and runs each once, so the
// model is ready when New returns. w is not referenced afterwards.
func New(ctx context.Context, cfg Config, w *Weights, opts Options) (*Model, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("model config: %w", err)
	}
	if w == nil {
		return nil, errors.New("no weights given")
	}
	if opts.Pooling < Mean || int(opts.Pooling) >= len(poolingNames) {
		return nil, fmt.Errorf("unknown pooling %d", opts.Pooling)
	}
	dim := cfg.HiddenSize
	for i, d := range opts.Dense {
		if err := d.check(dim); err != nil {
			return nil, fmt.Errorf("dense layer %d: %w", i, err)
		}
		dim = d.Out
	}
	spec, err := ResolveBackend(opts.Backend)
	if err != nil {
		return nil, err
	}
	variant, err := parseGraphVariant(os.Getenv(EnvVariant))
	if err != nil {
		return nil, err
	}
	if variant.lnFold && cfg.NormBias {
		return nil, fmt.Errorf("%s=ln-fold: the model's LayerNorms have a bias, which the fold does not carry", EnvVariant)
	}
	if err := fillDefaults(cfg, spec, &opts); err != nil {
		return nil, err
	}
	variant = streamDefaults(variant, opts.DType, spec, cfg)
	if spec == "simplego" && variant.residual == dtypes.Float16 {
		return nil, fmt.Errorf("%s: an fp16 residual stream needs XLA (simplego has no fp16 kernels)", EnvVariant)
	}
	backend, err := acquireBackend(spec, opts.Client, opts.MemoryFraction)
	if err != nil {
		return nil, err
	}
	m := &Model{cfg: cfg, opts: opts, backendSpec: spec, backend: backend, device: backends.DeviceNum(opts.DeviceIndex), packedRow: opts.PackedRowLength,
		pipeline: opts.Pipeline, variant: variant}
	if pd, ok := backend.(partialDownloader); ok && !variant.fullDownload {
		m.partial = pd
	}
	ok := false
	defer func() {
		if !ok {
			m.Close()
		}
	}()
	if n := backend.NumDevices(); opts.DeviceIndex < 0 || opts.DeviceIndex >= n {
		return nil, fmt.Errorf("device index %d: backend %s has %d device(s)", opts.DeviceIndex, spec, n)
	}
	m.variant.resolvePrograms(backend, m.device)
	start := time.Now()
	cpuPath := ""
	if spec == "simplego" {
		m.cpu, cpuPath, err = newCPUPath(cfg, w, opts, m.variant)
		if err != nil {
			return nil, err
		}
	}
	if m.cpu == nil {
		if err := m.upload(w); err != nil {
			return nil, err
		}
		if err := m.compileAll(ctx); err != nil {
			return nil, err
		}
	}
	m.info = Info{
		Backend: spec, Device: backend.DeviceDescription(m.device), DType: opts.DType.String(),
		Pooling: opts.Pooling.String(), Normalize: opts.Normalize, Weights: w.Source, StoredDType: w.StoredDType,
		Params: w.NumParams(), Config: cfg.Summary(), CompileTime: time.Since(start),
	}
	for _, d := range opts.Dense {
		m.info.Dense = append(m.info.Dense, fmt.Sprintf("%d->%d %s", d.In, d.Out, d.Activation))
	}
	m.info.CPU = cpuPath
	if m.cpu != nil {
		m.info.Device = "cpu (native forward pass, " + m.cpu.products.String() + " products through " + m.cpu.lib.Path + ")"
	}
	fused, triton, qkv, geglu := 0, 0, 0, 0
	for _, st := range m.allSteps() {
		if st.spec.tritonQKV {
			qkv++
		}
		if st.spec.tritonGeGLU {
			geglu++
		}
		m.info.Shapes = append(m.info.Shapes, fmt.Sprintf("%dx%d/%d", st.spec.rows, st.spec.rowLen, st.spec.segments))
		if slots := st.spec.rows * st.spec.rowLen; !slices.Contains(m.info.StepSlots, slots) {
			m.info.StepSlots = append(m.info.StepSlots, slots)
		}
		switch {
		case st.spec.tritonAttention:
			triton++
		case st.spec.fusedAttention:
			fused++
		}
	}
	slices.Sort(m.info.StepSlots)
	m.info.Attention = attentionSummary(opts.DType.gomlx(), triton, fused, len(m.info.Shapes))
	m.info.Products = productsSummary(qkv, geglu, len(m.info.Shapes))
	if qkv+geglu > 0 {
		m.info.ProductPrograms = m.variant.gemmPrograms
	}
	if m.cpu == nil {
		m.info.Downloads = m.downloadsSummary()
		m.info.Residual = residualSummary(m.variant)
	}
	ok = true
	return m, nil
}

// compileAll compiles (and warms up) the steps of both layouts: packed rows of
// PackedRowLength and longer, padded rows of every row length. Identical shapes share a step.
// Shapes compile on several goroutines at once: XLA compiles one module mostly on one core, and
// the ladder has a score of shapes.
func (m *Model) compileAll(ctx context.Context) error {
	type key struct{ rows, rowLen, segments int }
	var keys []key
	want := func(rows, rowLen, segments int) key {
		k := key{rows, rowLen, segments}
		if !slices.Contains(keys, k) {
			keys = append(keys, k)
		}
		return k
	}
	packedKeys, paddedKeys := map[int][]key{}, map[int][]key{}
	for _, l := range m.opts.RowLengths {
		top := max(1, m.opts.MaxBatchTokens/l)
		if slices.Contains(m.opts.Layouts, Packed) {
			ladder := rungRows(m.opts.StepSlots, l, top)
			switch {
			case l < m.packedRow:
				ladder = []int{1} // a lone short row: work that fits one row this short
			case l > m.packedRow:
				ladder = thinLadder(ladder) // long texts are rare: a short ladder keeps start-up short
			}
			for _, rows := range ladder {
				packedKeys[l] = append(packedKeys[l], want(rows, l, packedSegments(l)))
			}
		}
		if slices.Contains(m.opts.Layouts, Padded) {
			// One row first: the sequential engine's one-text batch is one row, as HF pads it.
			ladder := rungRows(m.opts.StepSlots, l, max(1, min(top, m.opts.PaddedRows)))
			if ladder[0] > 1 {
				ladder = append([]int{1}, ladder...)
			}
			for _, rows := range thinLadder(ladder) {
				paddedKeys[l] = append(paddedKeys[l], want(rows, l, 1))
			}
		}
	}

	var fusedFailed, tritonFailed, productsFailed atomic.Bool // once a kernel fails, later shapes do not try it
	// Kernels of our own need XLA on a GPU; "fused-attention" tries them on any backend.
	kernels := m.backendSpec != "simplego" || m.variant.fusedAttention
	fused := kernels && !m.variant.xlaAttention
	// Our Triton kernel where it applies (bf16), then cuDNN's: "fused-attention" tries both
	// on any backend, falling back where they fail to build.
	triton := fused && !m.variant.cudnnAttention &&
		(m.variant.attentionReads() == readsQKV || tritonRoPEOK(m.cfg, m.variant))
	specOf := func(k key) graphSpec {
		dt := m.opts.DType.gomlx()
		gs := graphSpec{cfg: m.cfg, dtype: dt, rows: k.rows, rowLen: k.rowLen, segments: k.segments,
			pooling: m.opts.Pooling, poolMask: m.opts.ExcludePrompt, dense: m.denseSpecs(), normalize: m.opts.Normalize, variant: m.variant,
			fusedAttention:  fused && !fusedFailed.Load() && fusedAttentionOK(dt, m.cfg.HeadDim(), k.rowLen),
			tritonAttention: triton && !tritonFailed.Load() && tritonAttentionOK(dt, m.cfg.HeadDim(), k.rows, k.rowLen, m.cfg.HiddenSize, m.variant.blocks())}
		products := kernels && !productsFailed.Load()
		// The RoPE product kernel writes q, k and v for our attention kernel's packed form only.
		gs.tritonQKV = products && m.variant.tritonQKV && gs.tritonAttention && m.variant.attentionReads() == readsQKV &&
			tritonProductOK(pairRoPE, m.cfg, m.variant, dt, k.rows*k.rowLen)
		gs.tritonGeGLU = products && m.variant.tritonGeGLU && tritonProductOK(pairGeGLU, m.cfg, m.variant, dt, k.rows*k.rowLen)
		return gs
	}
	// fallBack gives up the kernel of its own gs used after err, for this shape and the ones
	// after it: our Triton product kernels first, then our attention kernel, then cuDNN's fused
	// attention (which needs a recent GPU and cuDNN); XLA's own products and attention compute
	// the same vectors, more slowly. It says false where gs used none.
	fallBack := func(k key, gs *graphSpec, err error) bool {
		switch {
		case gs.tritonQKV || gs.tritonGeGLU:
			if !productsFailed.Swap(true) {
				slog.Warn("modernbert: Triton product kernels unavailable, using the graph's products", "rows", k.rows, "row_len", k.rowLen, "err", err)
			}
			gs.tritonQKV, gs.tritonGeGLU = false, false
		case gs.tritonAttention:
			if !tritonFailed.Swap(true) {
				slog.Warn("modernbert: Triton attention unavailable, using cuDNN's or XLA's", "rows", k.rows, "row_len", k.rowLen, "err", err)
			}
			gs.tritonAttention = false
		case gs.fusedAttention:
			if !fusedFailed.Swap(true) {
				slog.Warn("modernbert: cuDNN fused attention unavailable, using XLA attention", "rows", k.rows, "row_len", k.rowLen, "err", err)
			}
			gs.fusedAttention = false
		default:
			return false
		}
		return true
	}
	// compile builds k's step, falling back to the next attention while the build fails.
	compile := func(k key) (*step, error) {
		gs := specOf(k)
		st, err := m.compileShared(gs)
		for err != nil && fallBack(k, &gs, err) {
			st, err = m.compileShared(gs)
		}
		return st, err
	}
	// warm runs k's compiled step once, and once more if that fails (the device is quiet); a
	// step whose warm-up still fails with a kernel of its attention is rebuilt without it.
	warm := func(k key, st *step) (*step, error) {
		for {
			err := m.warmUp(st)
			if err != nil {
				err = m.warmUp(st)
			}
			if err == nil {
				return st, nil
			}
			m.releaseStep(st)
			gs := st.spec
			for fallBack(k, &gs, err) {
				if st, err = m.compileShared(gs); err == nil {
					break
				}
			}
			if err != nil {
				return nil, err
			}
		}
	}
	steps := make(map[key]*step, len(keys))
	// The first shape compiles and warms up alone, so that a GPU without cuDNN's fused
	// attention is found once, before the others compile.
	if len(keys) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		st, err := compile(keys[0])
		if err == nil {
			st, err = warm(keys[0], st)
		}
		if err != nil {
			return err
		}
		steps[keys[0]] = st
	}
	// The others compile concurrently, then warm up one at a time with nothing else on the
	// device: a shape's first execution is where XLA captures its CUDA graphs and cuDNN builds
	// its attention graph, by stream capture, and another execution, or a compile autotuning
	// on the device, invalidates the capture (run 20).
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	sem := make(chan struct{}, compileParallelism())
	for _, k := range keys[min(1, len(keys)):] {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			mu.Lock()
			failed := firstErr != nil
			mu.Unlock()
			if failed || ctx.Err() != nil {
				return
			}
			t0 := time.Now()
			st, err := compile(k)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				firstErr = cmp.Or(firstErr, err)
				return
			}
			slog.Debug("modernbert: compiled step", "rows", k.rows, "row_len", k.rowLen, "segments", k.segments, "took", time.Since(t0))
			steps[k] = st
		})
	}
	wg.Wait()
	for _, k := range keys[min(1, len(keys)):] {
		st := steps[k]
		if st == nil || firstErr != nil {
			break
		}
		if firstErr = ctx.Err(); firstErr != nil {
			break
		}
		delete(steps, k) // warm releases a step that fails
		if st, firstErr = warm(k, st); firstErr == nil {
			steps[k] = st
		}
	}
	// Steps are assigned before any error is returned, so that Close releases every one.
	m.packed, m.padded = map[int][]*step{}, map[int][]*step{}
	for l, ks := range packedKeys {
		for _, k := range ks {
			if st := steps[k]; st != nil {
				m.packed[l] = append(m.packed[l], st)
			}
		}
	}
	for l, ks := range paddedKeys {
		for _, k := range ks {
			if st := steps[k]; st != nil {
				m.padded[l] = append(m.padded[l], st)
			}
		}
	}
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// compileParallelism is how many shapes compile at once: XLA spends seconds on a shape, mostly
// on one core, so several at once pay while cores are free (simplego's graphs take
// microseconds either way). EnvCompileParallelism overrides it; 1 compiles one at a time.
func compileParallelism() int {
	if n, err := strconv.Atoi(os.Getenv(EnvCompileParallelism)); err == nil && n > 0 {
		return n
	}
	return min(6, max(2, runtime.NumCPU()/2))
}

// EnvCompileParallelism names the environment variable that sets how many step shapes
// compile at once on XLA.
const EnvCompileParallelism = "EMBEDBENCH_COMPILE_PARALLELISM"

// denseSpecs are the shapes of Options.Dense.
func (m *Model) denseSpecs() []denseSpec {
	var out []denseSpec
	for _, d := range m.opts.Dense {
		out = append(out, denseSpec{in: d.In, out: d.Out, bias: d.Bias != nil, act: d.Activation,
			residual: d.Residual, resMat: d.Residual && d.In != d.Out})
	}
	return out
}

// rungRows is the ladder of row counts for rows of length l: one rung per step size in slots
// (at least one row each), capped at top rows, which is always the last rung.
func rungRows(slots []int, l, top int) []int {
	var rows []int
	for _, s := range slots {
		if r := min(top, max(1, s/l)); len(rows) == 0 || r > rows[len(rows)-1] {
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 || rows[len(rows)-1] < top {
		rows = append(rows, top)
	}
	return rows
}

// thinLadder keeps the rungs of an ascending ladder that are at least 4 times the rows of the
// last kept one, and the top: for rows longer than the packed row, and the sequential engine's
// padded batches, where requests are too few for a dense ladder to pay its compile time.
func thinLadder(rows []int) []int {
	var out []int
	for i, r := range rows {
		if i == len(rows)-1 || len(out) == 0 || r >= 4*out[len(out)-1] {
			out = append(out, r)
		}
	}
	return out
}

// rung is the smallest step of ladder with at least n rows, else the largest.
func rung(ladder []*step, n int) *step {
	for _, st := range ladder {
		if st.spec.rows >= n {
			return st
		}
	}
	return ladder[len(ladder)-1]
}

// packedSegments is how many sequences a packed row of rowLen may hold: rowLen/8, capped at 64
// (the pooling matrix is rows x segments x rowLen). Rows longer than the packed row length hold
// long sequences, and short ones in their gaps when a call mixes both (planPacked).
func packedSegments(rowLen int) int {
	return max(1, min(rowLen/8, 64))
}

// allSteps lists the distinct compiled steps.
func (m *Model) allSteps() []*step {
	var out []*step
	for _, l := range m.opts.RowLengths {
		for _, st := range slices.Concat(m.packed[l], m.padded[l]) {
			if !slices.Contains(out, st) {
				out = append(out, st)
			}
		}
	}
	return out
}

func fillDefaults(cfg Config, spec string, opts *Options) error {
	switch {
	case opts.MaxBatchTokens < 0:
		return fmt.Errorf("max batch tokens %d: must not be negative (0: the device's default)", opts.MaxBatchTokens)
	case !(opts.MemoryFraction >= 0 && opts.MemoryFraction <= 1): // NaN fails too
		return fmt.Errorf("memory fraction %g: want 0..1 (0: no cap)", opts.MemoryFraction)
	case opts.Client < 0:
		return fmt.Errorf("client %d: must not be negative (0: the client every model shares)", opts.Client)
	}
	if opts.MaxBatchTokens == 0 {
		opts.MaxBatchTokens = 16384
		if spec == "simplego" {
			opts.MaxBatchTokens = 2048
		}
	}
	if opts.MaxSequenceLength == 0 {
		opts.MaxSequenceLength = cfg.MaxPositionEmbeddings
	}
	if opts.MaxSequenceLength < 1 || opts.MaxSequenceLength > cfg.MaxPositionEmbeddings {
		return fmt.Errorf("max sequence length %d: want 1..%d (max_position_embeddings)", opts.MaxSequenceLength, cfg.MaxPositionEmbeddings)
	}
	if len(opts.RowLengths) == 0 {
		for _, l := range []int{64, 128, 256, 512, 2048, 8192} {
			if l >= opts.MaxSequenceLength {
				break
			}
			opts.RowLengths = append(opts.RowLengths, l)
		}
		opts.RowLengths = append(opts.RowLengths, opts.MaxSequenceLength)
	} else {
		opts.RowLengths = slices.Clone(opts.RowLengths)
		sort.Ints(opts.RowLengths)
		opts.RowLengths = slices.Compact(opts.RowLengths)
		if opts.RowLengths[0] < 1 {
			return fmt.Errorf("row lengths %v: must be positive", opts.RowLengths)
		}
		if last := opts.RowLengths[len(opts.RowLengths)-1]; last < opts.MaxSequenceLength || last > cfg.MaxPositionEmbeddings {
			return fmt.Errorf("row lengths %v: the longest must be in %d..%d", opts.RowLengths, opts.MaxSequenceLength, cfg.MaxPositionEmbeddings)
		}
	}
	if opts.MaxBatchTokens < opts.RowLengths[len(opts.RowLengths)-1] {
		opts.MaxBatchTokens = opts.RowLengths[len(opts.RowLengths)-1]
	}
	if len(opts.StepSlots) == 0 {
		opts.StepSlots = defaultStepSlots(spec, opts.MaxBatchTokens)
	} else {
		opts.StepSlots = slices.Clone(opts.StepSlots)
		sort.Ints(opts.StepSlots)
		opts.StepSlots = slices.Compact(opts.StepSlots)
		if opts.StepSlots[0] < 1 || opts.StepSlots[len(opts.StepSlots)-1] > opts.MaxBatchTokens {
			return fmt.Errorf("step sizes %v: want 1..%d token slots (the largest step)", opts.StepSlots, opts.MaxBatchTokens)
		}
	}
	if opts.Pipeline <= 0 {
		opts.Pipeline = 2
		if spec == "simplego" {
			opts.Pipeline = 1
		}
	}
	if len(opts.Layouts) == 0 {
		opts.Layouts = []Layout{Packed, Padded}
	}
	if opts.PaddedRows == 0 {
		opts.PaddedRows = 32
	}
	if opts.PackedRowLength == 0 {
		opts.PackedRowLength = opts.RowLengths[0]
		for _, l := range opts.RowLengths {
			if l <= 256 {
				opts.PackedRowLength = l
			}
		}
	} else if !slices.Contains(opts.RowLengths, opts.PackedRowLength) {
		return fmt.Errorf("packed row length %d is not one of the row lengths %v", opts.PackedRowLength, opts.RowLengths)
	}
	return nil
}

// defaultStepSlots is the ladder of step sizes when Options.StepSlots is empty. On XLA, for
// the 16,384-slot top: 1,024, 2,048, 3,072 and 4,096 slots, then every 2,048 (an eighth of the
// top) up to the top, so that rounding a step up to its rung wastes at most a quarter of it and
// the engine runs what is queued at about its own cost. On the H200 (bench-model --per-rung,
// run 19) a step alone costs about 1.6 ms plus 0.7 µs a slot: rungs of one or two rows of 256
// saved at most 0.25 ms against four and cost start-up. On simplego a shape costs only its
// graph, so every power of two from 64 slots up.
func defaultStepSlots(spec string, maxBatchTokens int) []int {
	var slots []int
	if spec == "simplego" {
		for s := 64; s < maxBatchTokens; s *= 2 {
			slots = append(slots, s)
		}
		return append(slots, maxBatchTokens)
	}
	top := maxBatchTokens
	s := 1024
	for ; s < top && s < top/8; s *= 2 {
		slots = append(slots, s)
	}
	for ; s < top && s < top/4; s += max(1, top/16) {
		slots = append(slots, s)
	}
	for ; s < top; s += max(1, top/8) {
		slots = append(slots, s)
	}
	return append(slots, top)
}

// upload copies the weights (in the compute dtype; norms and biases in fp32) and the RoPE
// tables to the device, one tensor at a time.
func (m *Model) upload(w *Weights) error {
	dt := m.opts.DType.gomlx()
	folds := m.foldedNorms()
	centered := centeredOutputs(m.cfg)
	var foldSums [][]float32 // in lnFoldTargets order
	for _, s := range specs(m.cfg) {
		t, ok := w.Tensors[s.name]
		if !ok {
			return fmt.Errorf("weights lack %s", s.name)
		}
		if !slices.Equal(t.Shape, s.shape) {
			return fmt.Errorf("weight %s has shape %v, the config wants %v", s.name, t.Shape, s.shape)
		}
		data, pdt := t.Data, paramDType(s, dt)
		if m.variant.centered && centered[s.name] {
			in := 1
			if len(s.shape) == 2 {
				in = s.shape[1]
			}
			data = centerOutputs(data, s.shape[0], in)
		}
		if norm, ok := folds[s.name]; ok {
			var sums []float32
			pdt = foldedDType(m.variant, dt)
			data, sums = foldNorm(data, w.Tensors[norm].Data, s.shape[0], s.shape[1], pdt)
			if m.variant.needsFoldSums() {
				foldSums = append(foldSums, sums)
			}
		}
		buf, err := m.uploadFloat(data, pdt, s.shape)
		if err != nil {
			return fmt.Errorf("uploading %s: %w", s.name, err)
		}
		m.weights = append(m.weights, buf)
	}
	half := m.cfg.HeadDim() / 2
	for _, theta := range []float64{m.cfg.GlobalRopeTheta, m.cfg.LocalRopeTheta} {
		cosData, sinData := ropeTableData(m.cfg.MaxPositionEmbeddings, m.cfg.HeadDim(), theta)
		for _, data := range [][]float32{cosData, sinData} {
			buf, err := m.uploadFloat(data, dtypes.Float32, []int{m.cfg.MaxPositionEmbeddings, half})
			if err != nil {
				return fmt.Errorf("uploading RoPE tables: %w", err)
			}
			m.weights = append(m.weights, buf)
		}
	}
	for _, sums := range foldSums {
		buf, err := m.uploadFloat(sums, dtypes.Float32, []int{len(sums)})
		if err != nil {
			return fmt.Errorf("uploading folded norm sums: %w", err)
		}
		m.weights = append(m.weights, buf)
	}
	// Dense layers stay fp32 whatever the compute dtype: they are small, and parity with
	// sentence-transformers is judged on their output.
	type tensor struct {
		data []float32
		dims []int
	}
	for i, d := range m.opts.Dense {
		tensors := []tensor{{d.Weight, []int{d.Out, d.In}}}
		if d.Bias != nil {
			tensors = append(tensors, tensor{d.Bias, []int{d.Out}})
		}
		if d.Residual && d.In != d.Out {
			tensors = append(tensors, tensor{d.ResidualWeight, []int{d.Out, d.In}})
		}
		for _, t := range tensors {
			buf, err := m.uploadFloat(t.data, dtypes.Float32, t.dims)
			if err != nil {
				return fmt.Errorf("uploading dense layer %d: %w", i, err)
			}
			m.weights = append(m.weights, buf)
		}
	}
	return nil
}

// foldedNorms maps each folded projection's weight to the norm weight folded into it (none
// without ln-fold).
func (m *Model) foldedNorms() map[string]string {
	folds := map[string]string{}
	if m.variant.lnFold {
		for _, f := range lnFoldTargets(m.cfg) {
			folds[f.proj+".weight"] = f.norm + ".weight"
		}
	}
	return folds
}

// paramDType keeps vectors (norm weights, biases) in fp32 and matrices in the compute dtype.
func paramDType(s tensorSpec, compute dtypes.DType) dtypes.DType {
	if len(s.shape) == 1 {
		return dtypes.Float32
	}
	return compute
}

func (m *Model) uploadFloat(data []float32, dt dtypes.DType, dims []int) (backends.Buffer, error) {
	shape := shapes.Make(dt, dims...)
	switch dt {
	case dtypes.BFloat16:
		conv := make([]bfloat16.BFloat16, len(data))
		for i, v := range data {
			conv[i] = bfloat16.FromFloat32(v)
		}
		return m.backend.BufferFromFlatData(m.device, conv, shape)
	case dtypes.Float16:
		conv := make([]float16.Float16, len(data))
		for i, v := range data {
			conv[i] = float16.Fromfloat32(v)
		}
		return m.backend.BufferFromFlatData(m.device, conv, shape)
	}
	return m.backend.BufferFromFlatData(m.device, data, shape)
}

// compiledSteps lets replicas on the same backend and client (e.g. one per GPU) share compiled
// steps: XLA executables are portable, so one compilation runs on every device of a client
// (another client compiles its own).
var (
	compiledMu    sync.Mutex
	compiledSteps = map[string]*sharedStep{}
	warmMu        sync.Mutex // held through a step's first execution
)

type sharedStep struct {
	st    *step
	err   error
	refs  int
	ready chan struct{} // closed once st or err is set
}

func (m *Model) stepKey(gs graphSpec) string {
	return fmt.Sprintf("%s|%#v", clientKey(m.backendSpec, m.opts.Client), gs)
}

// warmUp runs a compiled step once. XLA's first execution of a shape on a device loads it
// there, allocates, and captures its CUDA graphs; simplego has nothing to warm: its first
// execution costs what every one does. Warm-ups run one at a time, across replicas too.
func (m *Model) warmUp(st *step) error {
	if m.backendSpec == "simplego" {
		return nil
	}
	warmMu.Lock()
	defer warmMu.Unlock()
	in := st.getInputs()
	defer st.inputs.Put(in)
	// Each row one sequence filling it, so that the run does a real step's work: an attention
	// kernel that skips padding (ours) would otherwise not run its key loop here, where a
	// failure still falls back.
	for i := range in.seg {
		in.seg[i], in.pos[i] = 1, int32(i%st.spec.rowLen)
		if in.pool != nil {
			in.pool[i] = 1
		}
	}
	var phases [NumPhases]time.Duration
	if _, err := m.run(st, in, len(in.out), &phases); err != nil {
		return fmt.Errorf("warm-up of the %dx%d step: %w", st.spec.rows, st.spec.rowLen, err)
	}
	return nil
}

// compileShared returns the compiled step for gs, compiling it if no replica has yet. Distinct
// shapes compile concurrently; a caller wanting a shape another is compiling waits for it.
func (m *Model) compileShared(gs graphSpec) (*step, error) {
	key := m.stepKey(gs)
	compiledMu.Lock()
	if ss, ok := compiledSteps[key]; ok {
		ss.refs++
		compiledMu.Unlock()
		<-ss.ready
		return ss.st, ss.err
	}
	ss := &sharedStep{refs: 1, ready: make(chan struct{})}
	compiledSteps[key] = ss
	compiledMu.Unlock()
	ss.st, ss.err = m.compile(gs)
	if ss.err != nil {
		compiledMu.Lock()
		delete(compiledSteps, key) // a later call tries again
		compiledMu.Unlock()
	}
	close(ss.ready)
	return ss.st, ss.err
}

// releaseStep drops this replica's reference to a step, freeing it with the last one.
func (m *Model) releaseStep(st *step) {
	key := m.stepKey(st.spec)
	compiledMu.Lock()
	defer compiledMu.Unlock()
	if ss, ok := compiledSteps[key]; ok && ss.st == st {
		ss.refs--
		if ss.refs == 0 {
			st.g.Finalize()
			delete(compiledSteps, key)
		}
	}
}

// compile builds and compiles one step shape.
func (m *Model) compile(gs graphSpec) (st *step, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("building the %dx%d step: %v", gs.rows, gs.rowLen, r)
		}
	}()
	g := graph.NewGraph(m.backend, fmt.Sprintf("modernbert_%dx%d", gs.rows, gs.rowLen))
	dt := gs.dtype
	params := map[string]*graph.Node{}
	folds := m.foldedNorms()
	for _, s := range specs(m.cfg) {
		pdt := paramDType(s, dt)
		if _, ok := folds[s.name]; ok {
			pdt = foldedDType(gs.variant, dt)
		}
		// Plain identifiers: StableHLO argument names allow no dots.
		params[s.name] = graph.Parameter(g, strings.ReplaceAll(s.name, ".", "_"), shapes.Make(pdt, s.shape...))
	}
	tableShape := shapes.Make(dtypes.Float32, m.cfg.MaxPositionEmbeddings, m.cfg.HeadDim()/2)
	rope := ropeTables{
		globalCos: graph.Parameter(g, "rope_global_cos", tableShape),
		globalSin: graph.Parameter(g, "rope_global_sin", tableShape),
		localCos:  graph.Parameter(g, "rope_local_cos", tableShape),
		localSin:  graph.Parameter(g, "rope_local_sin", tableShape),
	}
	if gs.variant.needsFoldSums() {
		for i, f := range lnFoldTargets(m.cfg) {
			params[f.proj+foldSumSuffix] = graph.Parameter(g, fmt.Sprintf("fold_sum_%d", i), shapes.Make(dtypes.Float32, f.out))
		}
	}
	// Same order as upload: weight, bias (when present), residual projection (when present).
	for i, d := range gs.dense {
		p := fmt.Sprintf("dense.%d.", i)
		params[p+"weight"] = graph.Parameter(g, fmt.Sprintf("dense_%d_weight", i), shapes.Make(dtypes.Float32, d.out, d.in))
		if d.bias {
			params[p+"bias"] = graph.Parameter(g, fmt.Sprintf("dense_%d_bias", i), shapes.Make(dtypes.Float32, d.out))
		}
		if d.resMat {
			params[p+"residual"] = graph.Parameter(g, fmt.Sprintf("dense_%d_residual", i), shapes.Make(dtypes.Float32, d.out, d.in))
		}
	}
	// One upload a step: the int32 inputs one after another (see hostInputs).
	all := graph.Parameter(g, "inputs", shapes.Make(dtypes.Int32, inputKinds(gs), gs.rows, gs.rowLen))
	input := func(i int) *graph.Node {
		return graph.Reshape(graph.SliceAxis(all, 0, graph.AxisElem(i)), gs.rows, gs.rowLen)
	}
	in := stepInputs{ids: input(0), pos: input(1), seg: input(2)}
	if gs.poolMask {
		in.pool = input(3)
	}
	g.Compile(encoder(gs, params, rope, in))
	return &step{spec: gs, g: g}, nil
}

// run executes st on the host inputs and returns the pooled vectors [segments, rows, outDim],
// with the time of its upload, execution and download in phases. Only the first used floats of
// the output need be right: where the backend can, only those come back from the device.
func (m *Model) run(st *step, in *hostInputs, used int, phases *[NumPhases]time.Duration) (out []float32, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("running the %dx%d step: %v", st.spec.rows, st.spec.rowLen, r)
		}
	}()
	t0 := time.Now()
	// The input is freed right after the step rather than donated: a donated buffer's handle
	// would otherwise wait for a finalizer.
	inBuf, err := m.backend.BufferFromFlatData(m.device, in.data,
		shapes.Make(dtypes.Int32, inputKinds(st.spec), st.spec.rows, st.spec.rowLen))
	if err != nil {
		return nil, fmt.Errorf("uploading step inputs: %w", err)
	}
	defer func() { _ = m.backend.BufferFinalize(inBuf) }()
	inputs := append(slices.Clone(m.weights), inBuf)
	donate := make([]bool, len(inputs))
	t1 := time.Now()
	phases[PhaseUpload] = t1.Sub(t0)
	outputs := st.g.RunWithBuffers(inputs, donate, m.device)
	t2 := time.Now()
	phases[PhaseExecute] = t2.Sub(t1)
	defer func() {
		for _, t := range outputs {
			_ = t.FinalizeAll()
		}
	}()
	buf, err := outputs[0].Buffer(m.backend, m.device)
	if err != nil {
		return nil, fmt.Errorf("reading pooled vectors: %w", err)
	}
	if err := m.download(buf, in, used); err != nil {
		return nil, fmt.Errorf("reading pooled vectors: %w", err)
	}
	phases[PhaseDownload] = time.Since(t2)
	return in.out, nil
}

// download copies the output buffer into in.out: its first used floats where the backend can
// copy part of a buffer, else all of it. Either way into the reusable host array rather than a
// fresh one per step (megabytes per step).
func (m *Model) download(buf backends.Buffer, in *hostInputs, used int) error {
	if m.partialDownloads() {
		dst := unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(in.out))), used*4)
		err := m.partial.BufferCopyRawToHost(buf, dst, 0)
		if err == nil {
			return nil
		}
		if m.partialOff.CompareAndSwap(false, true) {
			slog.Warn("the device cannot copy part of a buffer: steps download their whole output", "err", err)
		}
	}
	return m.backend.BufferToFlatData(buf, in.out)
}

// partialDownloads says whether steps download only what they used: the backend can, and has
// not failed to.
func (m *Model) partialDownloads() bool { return m.partial != nil && !m.partialOff.Load() }

// downloadsSummary is Info.Downloads: what the warm-ups found the device can do.
func (m *Model) downloadsSummary() string {
	if m.partialDownloads() {
		return "partial"
	}
	return "whole"
}

// Close releases the device buffers and compiled steps. The Model is unusable afterwards.
func (m *Model) Close() {
	if m.closed {
		return
	}
	m.closed = true
	for _, st := range m.allSteps() {
		m.releaseStep(st)
	}
	for _, b := range m.weights {
		_ = m.backend.BufferFinalize(b)
	}
	m.packed, m.padded, m.weights, m.cpu = nil, nil, nil, nil
	releaseBackend(m.backendSpec, m.opts.Client)
}

// MaxBatchTokens is the token slots of one device step.
func (m *Model) MaxBatchTokens() int { return m.opts.MaxBatchTokens }

// MaxSequenceLength is the longest sequence Embed accepts (ids with [CLS]/[SEP]).
func (m *Model) MaxSequenceLength() int { return m.opts.MaxSequenceLength }

// Dim is the length of the returned vectors: the last Dense layer's size, else the hidden size.
func (m *Model) Dim() int {
	if n := len(m.opts.Dense); n > 0 {
		return m.opts.Dense[n-1].Out
	}
	return m.cfg.HiddenSize
}

// Config is the model's architecture.
func (m *Model) Config() Config { return m.cfg }

// Info describes the model.
func (m *Model) Info() Info { return m.info }
