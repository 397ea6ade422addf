package modernbert

import (
	"context"
	"errors"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

// runProduct runs product kernel p program by program on the CPU over a [m, k], w [2·pairs, k],
// the row factors scale and, for RoPE, the tables cos and sin [m, half], returning its output.
func runProduct(t *testing.T, p pairedProduct, a, w, scale, cos, sin []float64) []float64 {
	t.Helper()
	it, err := parseTTIR(p.ttir())
	if err != nil {
		t.Fatal(err)
	}
	out := make([]float64, p.m*p.outWidth())
	for i := range out {
		out[i] = math.NaN() // a value the kernel never writes shows
	}
	it.bufs = [][]float64{a, w}
	if p.scaled {
		it.bufs = append(it.bufs, scale)
	}
	if p.kind == pairRoPE {
		it.bufs = append(it.bufs, cos, sin)
	}
	it.bufs = append(it.bufs, out)
	gx, gy, _ := p.grid()
	for y := range gy {
		for x := range gx {
			if err := it.run([3]int{x, y, 0}); err != nil {
				t.Fatalf("program (%d, %d): %v", x, y, err)
			}
		}
	}
	return out
}

func normals(rng *rand.Rand, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = rng.NormFloat64()
	}
	return out
}

// rowProducts is s_r·(a·wᵀ) written out: [m, rows of w].
func rowProducts(a, w, scale []float64, m, k int) []float64 {
	n := len(w) / k
	out := make([]float64, m*n)
	for r := range m {
		for c := range n {
			var s float64
			for j := range k {
				s += a[r*k+j] * w[c*k+j]
			}
			if scale != nil {
				s *= scale[r]
			}
			out[r*n+c] = s
		}
	}
	return out
}

// The GeGLU kernel computes the MLP's first half as the graph does: the product of the input
// with Wi, scaled by the row's factor, split into input and gate, gelu(input)·gate, with HF's
// exact GELU.
func TestTritonGeGLUKernelComputesGeGLU(t *testing.T) {
	for _, c := range []struct {
		name       string
		m, k, pair int
		scaled     bool
		blocks     gemmBlocks
		programs   int
	}{
		{"tiles of 16", 64, 48, 48, true, gemmBlocks{16, 16, 16, 4, 2}, 0},
		{"wide tiles, no factor", 32, 64, 64, false, gemmBlocks{32, 32, 32, 4, 3}, 0},
		{"tiles fitted to the shape", 48, 80, 48, true, defaultGEMMBlocks, 0},
		// 12 tiles over 5 programs: two take three tiles, three take two.
		{"persistent", 64, 48, 48, true, gemmBlocks{16, 16, 16, 4, 2}, 5},
		{"persistent, more programs than tiles", 32, 32, 32, true, gemmBlocks{16, 16, 16, 4, 2}, 64},
	} {
		t.Run(c.name, func(t *testing.T) {
			blocks, ok := c.blocks.fit(c.m, c.pair, c.k)
			if !ok {
				t.Fatalf("%+v does not fit %dx%d (depth %d)", c.blocks, c.m, c.pair, c.k)
			}
			p := pairedProduct{kind: pairGeGLU, m: c.m, k: c.k, pairs: c.pair, scaled: c.scaled,
				in: dtypes.Float16, out: dtypes.BFloat16, blocks: blocks, programs: c.programs}
			if loops := strings.Count(p.ttir(), "scf.for "); loops != 1+min(c.programs, 1) {
				t.Errorf("%d loops, want the depth loop and, when persistent, the tile loop", loops)
			}
			rng := rand.New(rand.NewPCG(2, uint64(c.m)))
			a, w := normals(rng, c.m*c.k), normals(rng, 2*c.pair*c.k)
			var scale []float64
			if c.scaled {
				scale = make([]float64, c.m)
				for i := range scale {
					scale[i] = 0.5 + rng.Float64()
				}
			}
			got := runProduct(t, p, a, w, scale, nil, nil)
			wi := rowProducts(a, w, scale, c.m, c.k)
			var worst float64
			for r := range c.m {
				for j := range c.pair {
					x, g := wi[r*2*c.pair+j], wi[r*2*c.pair+c.pair+j]
					want := x / 2 * (1 + math.Erf(x/math.Sqrt2)) * g
					worst = math.Max(worst, math.Abs(got[r*c.pair+j]-want))
				}
			}
			if worst > 1e-6 || math.IsNaN(worst) { // 1/√2 is an f32 constant
				t.Errorf("max abs difference from GeGLU written out: %g", worst)
			}
		})
	}
}

// The RoPE kernel writes Wqkv's product, scaled by the row's factor, with every head of q and k
// rotated as HF's rotate_half does at the token's position, and v as it is: what the packed
// attention kernel reads.
func TestTritonQKVKernelRotatesQAndK(t *testing.T) {
	for _, c := range []struct {
		name              string
		m, heads, headDim int
		blocks            gemmBlocks
		scaled            bool
		programs          int
	}{
		{"head 32, tiles of 16", 32, 2, 32, gemmBlocks{16, 16, 16, 4, 2}, true, 0},
		// A tile of 32 pairs spans q's last head and k's first: the part changes within it.
		{"head 32, tiles of 32 across parts", 32, 3, 32, gemmBlocks{32, 32, 32, 4, 3}, true, 0},
		{"head 64, default tiles fitted", 64, 2, 64, defaultGEMMBlocks, true, 0},
		// Layer 0's attention has no norm: no factor, and the tables are the third argument.
		{"no factor", 32, 2, 32, gemmBlocks{16, 32, 32, 4, 2}, false, 0},
		{"persistent", 32, 2, 32, gemmBlocks{16, 16, 16, 4, 2}, true, 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			hidden, half := c.heads*c.headDim, c.headDim/2
			pairs := 3 * hidden / 2
			blocks, ok := c.blocks.fit(c.m, pairs, hidden)
			if !ok {
				t.Fatalf("%+v does not fit %dx%d (depth %d)", c.blocks, c.m, pairs, hidden)
			}
			p := pairedProduct{kind: pairRoPE, m: c.m, k: hidden, pairs: pairs, hidden: hidden, half: half, scaled: c.scaled,
				in: dtypes.Float16, out: dtypes.BFloat16, blocks: blocks, programs: c.programs}
			rng := rand.New(rand.NewPCG(3, uint64(c.headDim)))
			a, w := normals(rng, c.m*hidden), normals(rng, 3*hidden*hidden)
			scale := make([]float64, c.m)
			cos, sin := make([]float64, c.m*half), make([]float64, c.m*half)
			cosT, sinT := ropeTableData(c.m, c.headDim, 10000)
			for tok := range c.m {
				scale[tok] = 0.5 + rng.Float64()
				pos := (tok * 7) % c.m // positions out of token order, as packed rows have them
				for d := range half {
					cos[tok*half+d], sin[tok*half+d] = float64(cosT[pos*half+d]), float64(sinT[pos*half+d])
				}
			}
			if !c.scaled {
				scale = nil
			}
			got := runProduct(t, p, a, w, scale, cos, sin)
			qkv := rowProducts(a, w, scale, c.m, hidden)
			var worst float64
			for tok := range c.m {
				for part := range 3 {
					for h := range c.heads {
						x := qkv[tok*3*hidden+part*hidden+h*c.headDim:][:c.headDim]
						for d := range c.headDim {
							want := x[d]
							if part < 2 {
								rot := -x[(d+half)%c.headDim] // rotate_half: (-x2, x1)
								if d >= half {
									rot = x[d-half]
								}
								want = x[d]*cos[tok*half+d%half] + rot*sin[tok*half+d%half]
							}
							worst = math.Max(worst, math.Abs(got[tok*3*hidden+part*hidden+h*c.headDim+d]-want))
						}
					}
				}
			}
			if worst > 1e-9 || math.IsNaN(worst) {
				t.Errorf("max abs difference from RoPE written out: %g", worst)
			}
		})
	}
}

// Tiles shrink to the shape by halves, down to 16; a dimension none divides is refused.
func TestGEMMBlocksFit(t *testing.T) {
	for _, c := range []struct {
		m, pairs, k int
		want        gemmBlocks
		ok          bool
	}{
		{16384, 1152, 768, defaultGEMMBlocks, true},
		{64, 1152, 768, gemmBlocks{64, 128, 64, 8, 3}, true},
		{64, 96, 48, gemmBlocks{64, 32, 16, 8, 3}, true},
		{40, 1152, 768, gemmBlocks{16, 128, 64, 8, 3}, false},
	} {
		got, ok := defaultGEMMBlocks.fit(c.m, c.pairs, c.k)
		if ok != c.ok || (ok && got != c.want) {
			t.Errorf("fit(%d, %d, %d) = %+v, %v; want %+v, %v", c.m, c.pairs, c.k, got, ok, c.want, c.ok)
		}
	}
}

// A product kernel runs where a row factor completes its product: bf16, the folded norms over
// a centred stream, no bias on its projection, and tiles that fit.
func TestTritonProductOK(t *testing.T) {
	base := Config{HiddenSize: 768, IntermediateSize: 1152, NumAttentionHeads: 12}
	folded := graphVariant{lnFold: true, centered: true, foldF16: true}
	for _, kind := range []pairKind{pairGeGLU, pairRoPE} {
		if !tritonProductOK(kind, base, folded, dtypes.BFloat16, 16384) {
			t.Errorf("kind %d: base's shapes, folded and centred, bf16: refused", kind)
		}
	}
	mlpBias, attentionBias := base, base
	mlpBias.MLPBias, attentionBias.AttentionBias = true, true
	for name, ok := range map[string]bool{
		"float32":                     tritonProductOK(pairGeGLU, base, folded, dtypes.Float32, 16384),
		"not centred":                 tritonProductOK(pairGeGLU, base, graphVariant{lnFold: true, foldF16: true}, dtypes.BFloat16, 16384),
		"not folded":                  tritonProductOK(pairRoPE, base, graphVariant{centered: true}, dtypes.BFloat16, 16384),
		"Wi with an MLP bias":         tritonProductOK(pairGeGLU, mlpBias, folded, dtypes.BFloat16, 16384),
		"Wqkv with an attention bias": tritonProductOK(pairRoPE, attentionBias, folded, dtypes.BFloat16, 16384),
		"40 rows":                     tritonProductOK(pairRoPE, base, folded, dtypes.BFloat16, 40),
		"an intermediate size no tile of 16 divides": tritonProductOK(pairGeGLU, Config{HiddenSize: 64, IntermediateSize: 72, NumAttentionHeads: 4}, folded, dtypes.BFloat16, 64),
	} {
		if ok {
			t.Errorf("%s: accepted", name)
		}
	}
	// Each kernel minds its own projection's bias only.
	if !tritonProductOK(pairRoPE, mlpBias, folded, dtypes.BFloat16, 16384) || !tritonProductOK(pairGeGLU, attentionBias, folded, dtypes.BFloat16, 16384) {
		t.Error("a bias on the other projection refused the kernel")
	}
}

func TestProductsSummary(t *testing.T) {
	for _, c := range []struct {
		qkv, geglu, steps int
		want              string
	}{
		{0, 0, 0, ""},
		{0, 0, 5, "unfused"},
		{5, 5, 5, "triton"},
		{0, 5, 5, "triton Wi; the rest unfused"},
		{3, 5, 5, "triton Wqkv on 3 of 5 shapes, triton Wi; the rest unfused"},
	} {
		if got := productsSummary(c.qkv, c.geglu, c.steps); got != c.want {
			t.Errorf("productsSummary(%d, %d, %d) = %q, want %q", c.qkv, c.geglu, c.steps, got, c.want)
		}
	}
}

// The config names the kernel and launches a program per tile of column pairs and of rows.
func TestPairedProductBackendConfig(t *testing.T) {
	p := pairedProduct{kind: pairRoPE, m: 16384, k: 768, pairs: 1152, hidden: 768, half: 32, scaled: true,
		in: dtypes.Float16, out: dtypes.BFloat16, blocks: defaultGEMMBlocks}
	cfg := p.backendConfig()
	for _, want := range []string{`{name = "embedbench_qkv_rope_f16", ir = "module {\0A`, `num_warps = 8 : i32`, `num_stages = 3 : i32`,
		`grid_x = 9 : i32, grid_y = 128 : i32, grid_z = 1 : i32`} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %s", want)
		}
	}
	if strings.Contains(cfg, "math.erf") {
		t.Error("the RoPE kernel computes a GELU")
	}
}

func TestTritonProductVariants(t *testing.T) {
	v, err := parseGraphVariant("triton-products, triton-gemm-blocks=64x32x128x4x2, triton-gemm-persistent=132")
	if err != nil || !v.tritonQKV || !v.tritonGeGLU || v.gemmBlocksOf() != (gemmBlocks{64, 32, 128, 4, 2}) || v.gemmPrograms != 132 {
		t.Errorf("parse: %+v, %v", v, err)
	}
	if v, err := parseGraphVariant("triton-geglu, triton-gemm-persistent"); err != nil || v.gemmPrograms != gemmProgramsFromCard {
		t.Errorf("a bare triton-gemm-persistent: programs %d, %v; want the SM count's marker", v.gemmPrograms, err)
	}
	if v, err := parseGraphVariant("triton-geglu,cudnn-attention"); err != nil || !v.tritonGeGLU || v.tritonQKV {
		t.Errorf("triton-geglu with cuDNN's attention: %+v, %v", v, err)
	}
	if v, _ := parseGraphVariant(""); v.gemmBlocksOf() != defaultGEMMBlocks || v.tritonQKV || v.tritonGeGLU {
		t.Errorf("defaults: %+v", v)
	}
	for _, bad := range []string{"triton-rope,triton-rope-q", "triton-products,triton-rope", "triton-qkv,triton-rope-q", "triton-qkv,cudnn-attention",
		"triton-products,xla-attention", "triton-gemm-persistent=0", "triton-gemm-persistent=", "triton-gemm-persistent=x",
		"triton-gemm-persistent=70000", "triton-gemm-blocks=128x128x64x8", "triton-gemm-blocks=128x96x64x8x3", "triton-gemm-blocks=128x128x8x8x3",
		"triton-gemm-blocks=128x128x64x6x3", "triton-gemm-blocks=128x128x64x8x9", "triton-gemm-blocks=128x128x64x8x3x1", "triton-gemm-blocks=axbxcxdxe"} {
		if _, err := parseGraphVariant(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// A backend that cannot build the product kernels (here simplego, asked to try them) falls back
// to the graph's products at start-up, with the vectors the graph's products give.
func TestTritonProductsFallBackWhereUnavailable(t *testing.T) {
	cfg := DefaultConfig().Scaled(2, 64, 2, 96) // tiles fit: 96 pairs of Wqkv and of Wi
	cfg.VocabSize, cfg.PadTokenID, cfg.CLSTokenID, cfg.SEPTokenID = 512, 3, 1, 2
	folded := graphVariant{lnFold: true, centered: true}
	if !tritonProductOK(pairRoPE, cfg, folded, dtypes.BFloat16, 64) || !tritonProductOK(pairGeGLU, cfg, folded, dtypes.BFloat16, 64) {
		t.Fatal("the test's model does not take the product kernels")
	}
	w := RandomWeights(cfg, 3)
	seqs := randomSeqs(rand.New(rand.NewPCG(4, 5)), cfg, 5, 40, 64, 100)
	logger := slog.Default()
	defer slog.SetDefault(logger)
	embed := func(variant string) ([][]float32, Info) {
		t.Setenv(EnvVariant, variant)
		m, err := New(context.Background(), cfg, w, Options{Backend: "simplego", DType: BFloat16, Normalize: true,
			MaxSequenceLength: 128, RowLengths: []int{128}, MaxBatchTokens: 256})
		if err != nil {
			t.Fatalf("%s: %v", variant, err)
		}
		defer m.Close()
		got, _, err := m.Embed(context.Background(), seqs, Packed)
		if err != nil {
			t.Fatal(err)
		}
		return got, m.Info()
	}
	want, _ := embed("ln-fold,centered")
	for _, c := range []struct {
		variant  string
		warnings []string // in order: each kernel is given up once, the products first
	}{
		{"fused-attention,triton-products,ln-fold,centered",
			[]string{"Triton product kernels unavailable", "Triton attention unavailable", "cuDNN fused attention unavailable"}},
		// GeGLU's kernel is tried without any attention kernel: nothing reads its output but Wo.
		{"fused-attention,xla-attention,triton-geglu,ln-fold,centered", []string{"Triton product kernels unavailable"}},
		// simplego does not report an SM count: a bare triton-gemm-persistent says so first.
		{"fused-attention,xla-attention,triton-geglu,triton-gemm-persistent,ln-fold,centered",
			[]string{"does not report its SM count", "Triton product kernels unavailable"}},
		{"fused-attention,xla-attention,triton-geglu,triton-gemm-persistent=132,ln-fold,centered",
			[]string{"Triton product kernels unavailable"}},
	} {
		var warnings []string
		slog.SetDefault(slog.New(warningRecorder{&warnings}))
		got, info := embed(c.variant)
		slog.SetDefault(logger)
		if info.Products != "unfused" || info.Attention != "unfused" || info.ProductPrograms != 0 {
			t.Errorf("%s, after the fallback: products %q over %d programs, attention %q; want both unfused", c.variant, info.Products, info.ProductPrograms, info.Attention)
		}
		if len(warnings) != len(c.warnings) {
			t.Fatalf("%s: warnings %q, want %q in that order", c.variant, warnings, c.warnings)
		}
		for i, w := range c.warnings {
			if !strings.Contains(warnings[i], w) {
				t.Errorf("%s: warning %d is %q, want %q", c.variant, i, warnings[i], w)
			}
		}
		for i := range want {
			if d := maxAbsDiff(want[i], got[i]); d != 0 {
				t.Errorf("%s, text %d: %g from the graph's products' vector", c.variant, i, d)
			}
		}
	}
}

// attributesBackend is a backend whose device reports attrs (or err), as XLA's CUDA plugin does.
type attributesBackend struct {
	backends.Backend
	attrs map[string]any
	err   error
}

func (b attributesBackend) DeviceAttributes(backends.DeviceNum) (map[string]any, error) {
	return b.attrs, b.err
}

// A bare triton-gemm-persistent runs as many programs as the card has SMs, read from its PJRT
// plugin's "core_count"; where the backend does not say, a program per tile.
func TestPersistentProgramsFollowTheSMCount(t *testing.T) {
	for _, c := range []struct {
		name    string
		backend backends.Backend
		want    int
	}{
		{"H200", attributesBackend{attrs: map[string]any{"core_count": int64(132), "compute_capability": "9.0"}}, 132},
		{"no count", attributesBackend{attrs: map[string]any{"compute_capability": "9.0"}}, 0},
		{"a count of another type", attributesBackend{attrs: map[string]any{"core_count": "132"}}, 0},
		{"a negative count", attributesBackend{attrs: map[string]any{"core_count": int64(-1)}}, 0},
		{"an error", attributesBackend{err: errors.New("no description")}, 0},
		{"a backend without attributes", struct{ backends.Backend }{}, 0},
	} {
		got, why := smCount(c.backend, 0)
		if got != c.want || (got == 0) != (why != nil) {
			t.Errorf("%s: smCount %d (%v), want %d, and a reason only without one", c.name, got, why, c.want)
		}
		v := graphVariant{tritonGeGLU: true, gemmPrograms: gemmProgramsFromCard}
		v.resolvePrograms(c.backend, 0)
		if v.gemmPrograms != c.want {
			t.Errorf("%s: %d programs, want %d", c.name, v.gemmPrograms, c.want)
		}
	}
	v := graphVariant{tritonGeGLU: true, gemmPrograms: 64}
	if v.resolvePrograms(attributesBackend{attrs: map[string]any{"core_count": int64(132)}}, 0); v.gemmPrograms != 64 {
		t.Errorf("triton-gemm-persistent=64 became %d programs", v.gemmPrograms)
	}
}

// warningRecorder is a slog handler keeping the messages of warnings.
type warningRecorder struct{ messages *[]string }

func (warningRecorder) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }
func (r warningRecorder) Handle(_ context.Context, rec slog.Record) error {
	*r.messages = append(*r.messages, rec.Message)
	return nil
}
func (r warningRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r warningRecorder) WithGroup(string) slog.Handler      { return r }
