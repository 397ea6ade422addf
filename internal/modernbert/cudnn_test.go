package modernbert

import (
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gomlx/go-xla/pkg/stablehlo"
	xladtypes "github.com/gomlx/go-xla/pkg/types/dtypes"
	xlashapes "github.com/gomlx/go-xla/pkg/types/shapes"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
)

// The fused attention itself runs only on a GPU (TestParityXLA checks its vectors there);
// these check what is built on the host: when it is chosen, its config and the program text.

func TestFusedAttentionOnlyWhereCuDNNTakesIt(t *testing.T) {
	for _, c := range []struct {
		dtype           dtypes.DType
		headDim, rowLen int
		want            bool
	}{
		{dtypes.BFloat16, 64, 256, true},
		{dtypes.BFloat16, 16, 128, true},
		{dtypes.Float32, 64, 256, true},  // attends in fp16
		{dtypes.Float64, 64, 256, false}, // cuDNN's fused kernel is bf16/fp16 only
		{dtypes.BFloat16, 64, 100, false},
		{dtypes.BFloat16, 12, 256, false},
		{dtypes.BFloat16, 256, 256, false},
	} {
		if got := fusedAttentionOK(c.dtype, c.headDim, c.rowLen); got != c.want {
			t.Errorf("fusedAttentionOK(%s, head %d, row %d) = %v, want %v", c.dtype, c.headDim, c.rowLen, got, c.want)
		}
	}
}

func TestCuDNNAttentionConfig(t *testing.T) {
	var cfg struct {
		Fmha struct {
			Scale        float64 `json:"fmha_scale"`
			Flash        bool    `json:"is_flash_attention"`
			Mask         string  `json:"mask_type"`
			Intermediate struct {
				Element string   `json:"element_type"`
				Dims    []string `json:"dimensions"`
			} `json:"intermediate_tensor_shape"`
		} `json:"cudnn_fmha_backend_config"`
	}
	for dtype, element := range map[dtypes.DType]string{dtypes.BFloat16: "BF16", dtypes.Float16: "F16"} {
		if err := json.Unmarshal([]byte(cudnnAttentionConfig(dtype, 64, 12, 256, 0.125)), &cfg); err != nil {
			t.Fatalf("%s backend config is not JSON: %v", dtype, err)
		}
		f := cfg.Fmha
		if f.Scale != 0.125 || !f.Flash || f.Mask != "NO_MASK" || f.Intermediate.Element != element ||
			strings.Join(f.Intermediate.Dims, ",") != "64,12,256,256" {
			t.Errorf("%s config = %+v, want scale 0.125, flash, NO_MASK (the bias masks), %s scores 64x12x256x256", dtype, f, element)
		}
	}
}

// A float32 model attends in fp16, whose range is what the mask's bias must stay inside.
func TestFusedAttentionDTypes(t *testing.T) {
	for model, want := range map[dtypes.DType]dtypes.DType{
		dtypes.BFloat16: dtypes.BFloat16, dtypes.Float32: dtypes.Float16, dtypes.Float64: dtypes.InvalidDType,
	} {
		if got := fusedAttentionDType(model); got != want {
			t.Errorf("fusedAttentionDType(%s) = %s, want %s", model, got, want)
		}
	}
	for dt, largest := range map[dtypes.DType]float64{dtypes.BFloat16: math.MaxFloat32, dtypes.Float16: 65504} {
		if bias := fusedMaskedScore(dt); bias < -largest || bias > -1e4 {
			t.Errorf("%s masked score %g, want finite in that dtype (down to %g) and below -1e4", dt, bias, -largest)
		}
	}
}

func TestCustomCallProgramText(t *testing.T) {
	b := stablehlo.New("attention")
	fn := b.Main()
	qkv, err := fn.Input(xlashapes.Make(xladtypes.BFloat16, 2, 64, 3, 16))
	if err != nil {
		t.Fatal(err)
	}
	bias, err := fn.Input(xlashapes.Make(xladtypes.BFloat16, 2, 1, 64, 64))
	if err != nil {
		t.Fatal(err)
	}
	outs, err := stablehlo.CustomCall(cudnnAttentionTarget, 2, []*stablehlo.Value{qkv, qkv, qkv, bias},
		[]xlashapes.Shape{xlashapes.Make(xladtypes.BFloat16, 2, 3, 64, 16), xlashapes.Make(xladtypes.Uint8, 0)},
		cudnnAttentionConfig(dtypes.BFloat16, 2, 3, 64, 0.25), [][]int{{3, 2, 1, 0}, {3, 2, 1, 0}, {3, 2, 1, 0}, {3, 2, 1, 0}},
		[][]int{{3, 1, 2, 0}, {0}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stablehlo.CustomCall(cudnnAttentionTarget, 2, []*stablehlo.Value{qkv}, nil, "{}", [][]int{{0}, {1}}, nil); err == nil {
		t.Error("CustomCall with 2 operand layouts for 1 input: no error")
	}
	if err := fn.Return(outs[0]); err != nil {
		t.Fatal(err)
	}
	text, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`= "stablehlo.custom_call"(%arg0, %arg0, %arg0, %arg1)`,
		`call_target_name = "__cudnn$fmhaScaleBiasSoftmax"`,
		`api_version = 2 : i32`,
		`backend_config = "{\22operation_queue_id\22`, // quotes escaped the MLIR way
		`result_layouts = [dense<[3, 1, 2, 0]> : tensor<4xindex>, dense<[0]> : tensor<1xindex>]`,
		`-> (tensor<2x3x64x16xbf16>, tensor<0xui8>)`,
	} {
		if !strings.Contains(string(text), want) {
			t.Errorf("program lacks %s:\n%s", want, text)
		}
	}
}

// A backend that cannot build the fused attention (here simplego, asked to try it) falls back
// to XLA-style attention at start-up and still matches HF.
func TestFusedAttentionFallsBackWhereUnavailable(t *testing.T) {
	t.Setenv(EnvVariant, "fused-attention")
	cfg, w, ref := loadFixture(t, filepath.Join("testdata", "tiny4x"))
	for _, pc := range []parityCase{{BFloat16, Mean, true}, {Float32, Mean, true}} {
		m, err := New(context.Background(), cfg, w, Options{Backend: "simplego", DType: pc.dtype, Pooling: pc.pooling,
			Normalize: pc.normalize, MaxSequenceLength: 1024, RowLengths: []int{128, 512, 1024}, MaxBatchTokens: 1024})
		if err != nil {
			t.Fatalf("%s: New with the fused attention unavailable: %v, want a fallback", pc.dtype, err)
		}
		defer m.Close()
		if a := m.Info().Attention; a != "unfused" { // neither our Triton kernel nor cuDNN's builds on simplego
			t.Errorf("%s: Info().Attention = %q after the fallback, want unfused", pc.dtype, a)
		}
		got, _, err := m.Embed(context.Background(), refSeqs(ref), Packed)
		if err != nil {
			t.Fatal(err)
		}
		checkParity(t, "fallback", pc, ref, got)
	}
}

func TestAttentionSummary(t *testing.T) {
	for _, c := range []struct {
		dtype                dtypes.DType
		triton, fused, steps int
		want                 string
	}{
		{dtypes.Float32, 0, 0, 0, ""},
		{dtypes.Float32, 0, 0, 5, "unfused"},
		{dtypes.Float32, 0, 5, 5, "cudnn-fused Float16"},
		{dtypes.BFloat16, 0, 3, 5, "cudnn-fused BFloat16 on 3 of 5 shapes, unfused on the rest"},
		{dtypes.BFloat16, 5, 0, 5, "triton BFloat16"},
		{dtypes.BFloat16, 4, 1, 5, "triton BFloat16 on 4 of 5 shapes, cudnn-fused BFloat16 on 1 of 5 shapes"},
	} {
		if got := attentionSummary(c.dtype, c.triton, c.fused, c.steps); got != c.want {
			t.Errorf("attentionSummary(%s, %d, %d, %d) = %q, want %q", c.dtype, c.triton, c.fused, c.steps, got, c.want)
		}
	}
}
