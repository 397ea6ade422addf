package modernbert

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

// TestParityXLA runs the HF parity checks on the XLA backend (GPU machine): set
// EMBEDBENCH_XLA_PLUGIN or have the JAX CUDA plugin installed. Skipped elsewhere. On a machine
// with several GPUs it also places a replica on the last one. A copy on a second PJRT client
// (its own device stream, as serve --replicas-per-gpu runs them) embeds at the same time as
// the first and must pass too.
func TestParityXLA(t *testing.T) {
	plugin := FindXLAPlugin()
	if plugin == "" {
		t.Skip("no PJRT plugin (set " + EnvXLAPlugin + ")")
	}
	for _, dir := range parityFixtures() {
		cfg, w, ref := loadFixture(t, dir)
		seqs := refSeqs(ref)
		maxLen, rowLengths := fixtureLengths(cfg, 128, 512)
		for _, pc := range parityCases {
			t.Run(fixtureName(dir)+"/"+pc.dtype.String()+"/"+pc.pooling.String(), func(t *testing.T) {
				opts := Options{Backend: "xla:" + plugin, DType: pc.dtype, Pooling: pc.pooling, Normalize: pc.normalize,
					MaxSequenceLength: maxLen, RowLengths: rowLengths, MaxBatchTokens: 4096}
				m, err := New(context.Background(), cfg, w, opts)
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				for _, layout := range []Layout{Packed, Padded} {
					got, _, err := m.Embed(context.Background(), seqs, layout)
					if err != nil {
						t.Fatal(err)
					}
					checkParity(t, "xla, mixed batch, "+layout.String(), pc, ref, got)
				}
				if n := m.backend.NumDevices(); n > 1 {
					opts.DeviceIndex = n - 1
					other, err := New(context.Background(), cfg, w, opts)
					if err != nil {
						t.Fatal(err)
					}
					defer other.Close()
					got, _, err := other.Embed(context.Background(), seqs, Packed)
					if err != nil {
						t.Fatal(err)
					}
					checkParity(t, "xla, device "+other.Info().Device, pc, ref, got)
				}
				opts.DeviceIndex, opts.Client = 0, 1
				second, err := New(context.Background(), cfg, w, opts)
				if err != nil {
					t.Fatal(err)
				}
				defer second.Close()
				if second.backend == m.backend {
					t.Fatal("Client 1 shares client 0's backend")
				}
				for l, steps := range m.packed {
					if second.packed[l][0] == steps[0] {
						t.Fatalf("client 1 runs client 0's compiled %d-token rows", l)
					}
				}
				var (
					wg      sync.WaitGroup
					gotBoth [2][][]float32
					errs    [2]error
				)
				for i, mm := range []*Model{m, second} {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for range 5 { // several calls each, so that the two clients' steps overlap
							if gotBoth[i], _, errs[i] = mm.Embed(context.Background(), seqs, Packed); errs[i] != nil {
								return
							}
						}
					}()
				}
				wg.Wait()
				for i, err := range errs {
					if err != nil {
						t.Fatalf("client %d: %v", i, err)
					}
					checkParity(t, fmt.Sprintf("xla, client %d of two at once", i), pc, ref, gotBoth[i])
				}
			})
		}
	}
}

// TestStepLadderXLA checks on the GPU that a text gets the same vector whichever rung of the
// default ladder carries it: alone (a one-row step), among a few texts (a small rung) and in a
// full step; fp32 within rounding, bf16 within its precision.
func TestStepLadderXLA(t *testing.T) {
	plugin := FindXLAPlugin()
	if plugin == "" {
		t.Skip("no PJRT plugin (set " + EnvXLAPlugin + ")")
	}
	cfg := tinyConfig()
	w := RandomWeights(cfg, 7)
	rng := rand.New(rand.NewPCG(3, 4))
	query := randomSeqs(rng, cfg, 9)
	few := append(randomSeqs(rng, cfg, 30, 200, 150), query[0])
	many := append(randomSeqs(rng, cfg, slices.Repeat([]int{60}, 60)...), query[0])
	for _, c := range []struct {
		dtype DType
		tol   float64 // max abs difference of unit vectors
	}{{Float32, 1e-5}, {BFloat16, 2e-2}} {
		t.Run(c.dtype.String(), func(t *testing.T) {
			m, err := New(context.Background(), cfg, w, Options{Backend: "xla:" + plugin, DType: c.dtype, Normalize: true,
				MaxSequenceLength: 256, MaxBatchTokens: 4096, Layouts: []Layout{Packed}})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			var vectors [][]float32
			for _, seqs := range [][][]int32{query, few, many} {
				got, st, err := m.Embed(context.Background(), seqs, Packed)
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%d texts, %d tokens: steps %+v", len(seqs), st.RealTokens, st.PerStep)
				vectors = append(vectors, got[len(got)-1])
			}
			for i, how := range []string{"in a small rung", "in a full step"} {
				d := maxAbsDiff(vectors[0], vectors[i+1])
				t.Logf("alone and %s: max abs diff %.2g", how, d)
				if d > c.tol {
					t.Errorf("alone and %s differ by %g, want <= %g", how, d, c.tol)
				}
			}
		})
	}
}

// TestTritonAttentionXLA checks on the GPU that attention through our Triton kernel gives the
// vectors cuDNN's fused attention gives, for the tiny model and ModernBERT-base's shapes (random
// weights): texts shorter and longer than the sliding window, several to a packed row, and
// long rows; and that the kernel, not a fallback, ran. triton-products also runs Wqkv and Wi
// through our product kernels (RoPE and GeGLU in their epilogues) where their tiles fit.
func TestTritonAttentionXLA(t *testing.T) {
	plugin := FindXLAPlugin()
	if plugin == "" {
		t.Skip("no PJRT plugin (set " + EnvXLAPlugin + ")")
	}
	for _, c := range []struct {
		name string
		cfg  Config
	}{{"tiny", tinyConfig()}, {"tiny, heads of 32", DefaultConfig().Scaled(4, 64, 2, 96)}, {"base", DefaultConfig()}} {
		t.Run(c.name, func(t *testing.T) {
			w := RandomWeights(c.cfg, 11)
			rng := rand.New(rand.NewPCG(5, 6))
			seqs := randomSeqs(rng, c.cfg, 1, 7, 60, 64, 65, 129, 200, 255, 256, 300, 700)
			for range 90 {
				seqs = append(seqs, randomSeqs(rng, c.cfg, 8+rng.IntN(120))...)
			}
			embed := func(variant string) ([][]float32, Info) {
				t.Setenv(EnvVariant, variant)
				m, err := New(context.Background(), c.cfg, w, Options{Backend: "xla:" + plugin, DType: BFloat16, Normalize: true,
					MaxSequenceLength: 1024, MaxBatchTokens: 8192})
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				var out [][]float32
				for _, layout := range []Layout{Packed, Padded} {
					got, _, err := m.Embed(context.Background(), seqs, layout)
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, got...)
				}
				return out, m.Info()
			}
			want, how := embed("cudnn-attention")
			variants := []string{"", "triton-rope-q", "triton-products", "triton-rope"}
			if v := os.Getenv("EMBEDBENCH_TRITON_TEST_VARIANTS"); v != "" {
				variants = strings.Split(v, ";")
			}
			for _, variant := range variants {
				got, info := embed(variant)
				t.Logf("default: %s; %s: %s, products %s (%d programs)", how.Attention, variant, info.Attention, info.Products, info.ProductPrograms)
				if info.Attention != "triton BFloat16" {
					t.Fatalf("%s attends %q, want our Triton kernel on every shape", variant, info.Attention)
				}
				folded := graphVariant{lnFold: true, centered: true, foldF16: true} // bf16's defaults on XLA
				fits := tritonProductOK(pairRoPE, c.cfg, folded, dtypes.BFloat16, 64) && tritonProductOK(pairGeGLU, c.cfg, folded, dtypes.BFloat16, 64)
				if strings.HasPrefix(variant, "triton-products") && fits && info.Products != "triton" {
					t.Fatalf("products %q, want our kernels on every shape", info.Products)
				}
				// A bare triton-gemm-persistent reads the SM count from the plugin.
				if strings.Contains(variant, "triton-gemm-persistent") && info.Products != "unfused" && info.ProductPrograms <= 0 {
					t.Fatalf("%s: product kernels over %d programs, want persistent", variant, info.ProductPrograms)
				}
				worst, minCos := 0.0, 1.0
				for i := range want {
					worst = max(worst, maxAbsDiff(want[i], got[i]))
					var dot float64
					for j := range want[i] {
						dot += float64(want[i][j]) * float64(got[i][j])
					}
					minCos = min(minCos, dot)
				}
				t.Logf("%s, %d vectors: max abs diff %.3g, min cosine %.8f", variant, len(want), worst, minCos)
				if minCos < 0.9999 || worst > 2e-2 {
					t.Errorf("%s: Triton's vectors differ from cuDNN's: min cosine %.8f, max abs diff %.3g", variant, minCos, worst)
				}
			}
		})
	}
}
