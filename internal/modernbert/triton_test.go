package modernbert

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gomlx/go-xla/pkg/stablehlo"
	xladtypes "github.com/gomlx/go-xla/pkg/types/dtypes"
	xlashapes "github.com/gomlx/go-xla/pkg/types/shapes"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

// The Triton kernel, run program by program on the CPU (ttInterp), computes what attention
// over packed rows computes, written out here the plain way: each query's keys are those of its
// own sequence (and, in a local layer, within the window), q and k are the product scaled by the
// token's factor and rotated as HF's rotate_half does, v is scaled the same way.
func TestTritonAttentionKernelComputesAttention(t *testing.T) {
	for _, c := range []struct {
		name                                 string
		rows, rowLen, heads, headDim, window int
		seqs                                 [][]int // each row's sequence lengths; the rest is padding
		blocks                               tritonBlocks
	}{
		{"global, head 16", 2, 128, 2, 16, 0, [][]int{{50, 70}, {10, 30, 20, 68}}, defaultTritonBlocks},
		{"local, head 16", 2, 128, 2, 16, 8, [][]int{{100}, {3, 90}}, defaultTritonBlocks},
		{"global, head 32", 2, 128, 2, 32, 0, [][]int{{50, 70}, {10, 30, 20, 68}}, defaultTritonBlocks},
		{"local, head 32", 2, 128, 2, 32, 8, [][]int{{100}, {3, 90}}, defaultTritonBlocks},
		{"local as ModernBERT-base, head 64", 1, 256, 1, 64, 64, [][]int{{200, 40}}, defaultTritonBlocks},
		{"a row of padding only", 2, 64, 1, 32, 0, [][]int{{64}, {}}, defaultTritonBlocks},
		{"tiles of 128 queries and 32 keys", 1, 256, 2, 32, 64, [][]int{{5, 100, 120}}, tritonBlocks{128, 32, 8, 2}},
		{"a window of 63 over tiles of 16", 1, 256, 2, 32, 63, [][]int{{30, 150, 60}}, tritonBlocks{16, 16, 4, 2}},
		// The window's first key falls on a block's first key: one off in its bound skips a block.
		{"a window of 17 over tiles of 16", 1, 128, 1, 32, 17, [][]int{{120}}, tritonBlocks{16, 16, 4, 2}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(c.headDim+c.window)))
			n, hidden, half := c.rows*c.rowLen, c.heads*c.headDim, c.headDim/2
			qkv := make([]float64, n*3*hidden)
			for i := range qkv {
				qkv[i] = rng.NormFloat64()
			}
			scale, cos, sin := make([]float64, n), make([]float64, n*half), make([]float64, n*half)
			start, end := make([]float64, n), make([]float64, n)
			cosT, sinT := ropeTableData(c.rowLen, c.headDim, 10000)
			for r, lengths := range c.seqs {
				i := r * c.rowLen
				for tok := i; tok < i+c.rowLen; tok++ {
					start[tok], end[tok], scale[tok] = float64(c.rowLen), 0, 0.5+rng.Float64()
				}
				for _, l := range lengths {
					for p := range l {
						tok := i + p
						start[tok], end[tok] = float64(i-r*c.rowLen), float64(i-r*c.rowLen+l)
						for d := range half {
							cos[tok*half+d], sin[tok*half+d] = float64(cosT[p*half+d]), float64(sinT[p*half+d])
						}
					}
					i += l
				}
			}
			// rotated is part (0: q, 1: k) of token tok for head h, scaled and rotated.
			rotated := func(tok, part, h int) []float64 {
				x := qkv[tok*3*hidden+part*hidden+h*c.headDim:][:c.headDim]
				r := make([]float64, c.headDim)
				for d := range c.headDim {
					rot := -x[(d+half)%c.headDim] // rotate_half: (-x2, x1)
					if d >= half {
						rot = x[d-half]
					}
					r[d] = scale[tok] * (x[d]*cos[tok*half+d%half] + rot*sin[tok*half+d%half])
				}
				return r
			}
			// compare returns the largest difference of out from attention written out, and
			// fails the test on a padding token whose result is not finite (or was not written).
			compare := func(out []float64) float64 {
				var worst float64
				for tok := range n {
					row := tok / c.rowLen
					for h := range c.heads {
						got := out[tok*hidden+h*c.headDim:][:c.headDim]
						if end[tok] == 0 { // padding: anything finite
							for _, g := range got {
								if math.IsNaN(g) || math.IsInf(g, 0) {
									t.Errorf("padding token %d, head %d: %v", tok, h, got)
								}
							}
							continue
						}
						q := rotated(tok, 0, h)
						var keys []int
						for j := int(start[tok]); j < int(end[tok]); j++ {
							if c.window == 0 || math.Abs(float64(tok-row*c.rowLen-j)) <= float64(c.window) {
								keys = append(keys, row*c.rowLen+j)
							}
						}
						scores := make([]float64, len(keys))
						top := math.Inf(-1)
						for i, kt := range keys {
							kv := rotated(kt, 1, h)
							for d := range c.headDim {
								scores[i] += q[d] * kv[d]
							}
							scores[i] /= math.Sqrt(float64(c.headDim))
							top = math.Max(top, scores[i])
						}
						want := make([]float64, c.headDim)
						var sum float64
						for i, kt := range keys {
							p := math.Exp(scores[i] - top)
							sum += p
							for d := range c.headDim {
								want[d] += p * scale[kt] * qkv[kt*3*hidden+2*hidden+h*c.headDim+d]
							}
						}
						for d := range c.headDim {
							worst = math.Max(worst, math.Abs(got[d]-want[d]/sum))
						}
					}
				}
				return worst
			}
			// The plain kernel reads q, k and v scaled and rotated (v only scaled), as XLA writes them.
			plain := [3][]float64{make([]float64, n*hidden), make([]float64, n*hidden), make([]float64, n*hidden)}
			for tok := range n {
				for h := range c.heads {
					copy(plain[0][tok*hidden+h*c.headDim:], rotated(tok, 0, h))
					copy(plain[1][tok*hidden+h*c.headDim:], rotated(tok, 1, h))
					for d := range c.headDim {
						plain[2][tok*hidden+h*c.headDim+d] = scale[tok] * qkv[tok*3*hidden+2*hidden+h*c.headDim+d]
					}
				}
			}
			// The packed form reads the same q, k and v side by side, as the RoPE product kernel
			// writes them.
			packed := make([]float64, n*3*hidden)
			for tok := range n {
				for part := range 3 {
					copy(packed[tok*3*hidden+part*hidden:][:hidden], plain[part][tok*hidden:])
				}
			}
			for _, form := range []attentionInput{readsProduct, readsProductRotatedK, readsQKV, readsPacked} {
				rope := form == readsProduct || form == readsProductRotatedK
				if rope && c.headDim < 32 {
					continue // the rotated halves' products need 16 lanes each
				}
				out := make([]float64, n*hidden)
				for i := range out {
					out[i] = math.NaN()
				}
				in := dtypes.BFloat16 // the default form reads XLA's bf16 q, k and v
				if rope {
					in = dtypes.Float16 // Wqkv's product under the fp16 stream
				}
				k := newTritonKernel(c.rows, c.rowLen, c.heads, c.headDim, c.window, form, in, dtypes.BFloat16, c.blocks)
				it, err := parseTTIR(k.ttir())
				if err != nil {
					t.Fatal(err)
				}
				switch form {
				case readsProduct:
					it.bufs = [][]float64{qkv, scale, cos, sin, start, end, out}
				case readsProductRotatedK: // k as XLA's pass writes it
					it.bufs = [][]float64{qkv, plain[1], scale, cos, sin, start, end, out}
				case readsQKV:
					it.bufs = [][]float64{plain[0], plain[1], plain[2], start, end, out}
				case readsPacked:
					it.bufs = [][]float64{packed, start, end, out}
				}
				gx, gy, gz := k.grid()
				for z := range gz {
					for y := range gy {
						for x := range gx {
							if err := it.run([3]int{x, y, z}); err != nil {
								t.Fatalf("input %d, program (%d, %d, %d): %v", form, x, y, z, err)
							}
						}
					}
				}
				if worst := compare(out); worst > 1e-6 || math.IsNaN(worst) { // the scores' factor 1/√D·log2(e) is an f32 constant
					t.Errorf("input %d: max abs difference from attention written out: %g", form, worst)
				}
			}
		})
	}
}

// The kernel's config is the dictionary XLA's Triton call parses: its IR quoted the MLIR way,
// and a grid of one program per block of queries, head and row.
func TestTritonBackendConfig(t *testing.T) {
	k := newTritonKernel(64, 256, 12, 64, 64, readsProduct, dtypes.Float16, dtypes.BFloat16, defaultTritonBlocks)
	cfg := k.backendConfig()
	for _, want := range []string{
		`{name = "embedbench_attention_local64_rope_f16", ir = "module {\0A`,
		`num_warps = 4 : i32`, `grid_x = 4 : i32, grid_y = 12 : i32, grid_z = 64 : i32`,
	} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %s", want)
		}
	}
	if !strings.HasSuffix(cfg, "debug = false}") {
		t.Errorf("config ends %q", cfg[len(cfg)-40:])
	}
}

func TestTritonAttentionOK(t *testing.T) {
	for _, c := range []struct {
		dtype                         dtypes.DType
		headDim, rows, rowLen, hidden int
		want                          bool
	}{
		{dtypes.BFloat16, 64, 64, 256, 768, true},
		{dtypes.BFloat16, 16, 1, 128, 48, true},
		{dtypes.Float32, 64, 64, 256, 768, false}, // float32 keeps cuDNN's kernel in fp16
		{dtypes.BFloat16, 48, 64, 256, 768, false},
		{dtypes.BFloat16, 8, 64, 256, 768, false},
		{dtypes.BFloat16, 64, 64, 96, 768, false},
		{dtypes.BFloat16, 64, 4096, 1024, 768, false}, // offsets past int32
	} {
		if got := tritonAttentionOK(c.dtype, c.headDim, c.rows, c.rowLen, c.hidden, defaultTritonBlocks); got != c.want {
			t.Errorf("tritonAttentionOK(%s, head %d, %dx%d, hidden %d) = %v", c.dtype, c.headDim, c.rows, c.rowLen, c.hidden, got)
		}
	}
}

func TestTritonVariants(t *testing.T) {
	v, err := parseGraphVariant("triton-rope, triton-blocks=128x32x8x2")
	if err != nil || !v.tritonRoPE || v.tritonBlocks != (tritonBlocks{128, 32, 8, 2}) {
		t.Errorf("parse: %+v, %v", v, err)
	}
	if v, _ := parseGraphVariant(""); v.blocks() != defaultTritonBlocks || v.cudnnAttention {
		t.Errorf("defaults: %+v", v)
	}
	for _, bad := range []string{"triton-blocks=64x48x4x3", "triton-blocks=8x64x4x3", "triton-blocks=64x64x3x3", "triton-blocks=64x64x4x0", "triton-blocks=64x64",
		"triton-blocks=64x64x4x3x9", "triton-blocks=64x64x4x3junk", "triton-blocks=64x 32x4x3"} {
		if _, err := parseGraphVariant(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

// The custom call goes to XLA as JAX's Pallas writes it: api_version 4 with the config as an
// MLIR dictionary, not a string.
func TestTritonCustomCallProgramText(t *testing.T) {
	b := stablehlo.New("attention")
	fn := b.Main()
	qkv, err := fn.Input(xlashapes.Make(xladtypes.BFloat16, 128, 48))
	if err != nil {
		t.Fatal(err)
	}
	k := newTritonKernel(1, 128, 1, 16, 0, readsQKV, dtypes.BFloat16, dtypes.BFloat16, defaultTritonBlocks)
	outs, err := stablehlo.CustomCall(tritonTarget, 4, []*stablehlo.Value{qkv}, []xlashapes.Shape{xlashapes.Make(xladtypes.BFloat16, 128, 16)},
		k.backendConfig(), [][]int{{1, 0}}, [][]int{{1, 0}})
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []struct {
		version int
		config  string
	}{{4, `"a string"`}, {3, "{}"}} {
		if _, err := stablehlo.CustomCall(tritonTarget, bad.version, []*stablehlo.Value{qkv}, []xlashapes.Shape{xlashapes.Make(xladtypes.BFloat16, 128, 16)},
			bad.config, nil, nil); err == nil {
			t.Errorf("api_version %d with config %s: no error", bad.version, bad.config)
		}
	}
	if err := fn.Return(outs[0]); err != nil {
		t.Fatal(err)
	}
	text, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`call_target_name = "__gpu$xla.gpu.triton"`,
		`api_version = 4 : i32`,
		`backend_config = {name = "embedbench_attention_global_bf16", ir = "module {\0A`,
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("program lacks %s", want)
		}
	}
}
