package modernbert

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/dtypes/bfloat16"
	"github.com/x448/float16"
)

// The ln-fold variant (issue 16's elementwise traffic): a LayerNorm whose output feeds only a
// projection need not be written. Its weight γ goes into the projection's weight at upload,
// W' = W·diag(γ), and its statistics correct the product of the unnormalised stream in the
// consumers' fusions: LN(h)·Wᵀ = rstd·(h·W'ᵀ - mean·s), s = W'·1 (normed.project).
//
// The centered variant goes one step further. A LayerNorm does not see a shift of its row, so
// the stream can be carried less its row means: the embeddings' output is centred once, and every
// output projection that adds to the stream is centred over its output axis at upload
// (centeredOutputs), so that what it adds has mean zero. A folded norm then needs only the mean
// square, and the correction by mean·s goes. Rounding leaves the stream a mean far below its
// spread (the same weights' bf16 or fp16 rounding, not a drift): full-size parity did not move.

// streamDefaults fills in the residual stream's layout where the experiment variant left it
// open (run 37, full H200 steps, against the unfolded fp32 stream in the same lease):
//   - bf16 on XLA carries the stream in fp16 and folds the LayerNorms before Wqkv and Wi into
//     fp16 products that read it directly (fold-f16): +7.8% real tokens/s, cosine with HF fp32
//     0.9999971 (0.9999972 before). fp16 rounds the stream 8x finer than bf16 and holds values to
//     65,504, the range TEI's float16 default relies on for ModernBERT checkpoints; a step that
//     overflowed would give non-finite vectors, which are refused, and residual-f32 restores the
//     fp32 stream.
//     It also carries the stream's rows centred (centered, run 40): +1.3% on full steps, one
//     reduction less in each add's fusion, cosine unchanged (0.99999715).
//   - float32 on XLA keeps its fp32 stream and folds the same norms into its products (ln-fold):
//     +10%, max abs diff with HF fp32 9.8e-6 (1.15e-5 before).
//
// simplego keeps the plain graph (it has no fp16 kernels, and the native CPU pass is what runs
// there), and a LayerNorm bias cannot be folded.
func streamDefaults(v graphVariant, dt DType, backend string, cfg Config) graphVariant {
	if v.residual != dtypes.InvalidDType || v.lnFold || backend == "simplego" || cfg.NormBias {
		return v
	}
	v.lnFold = true
	if dt == BFloat16 {
		v.residual, v.foldF16, v.centered = dtypes.Float16, true, true
	}
	return v
}

// residualSummary is Info.Residual: the stream's dtype, and whether norms are folded.
func residualSummary(v graphVariant) string {
	s := "Float32"
	if v.residual != dtypes.InvalidDType {
		s = v.residual.String()
	}
	if v.lnFold {
		s += ", norms folded into Wqkv and Wi"
	}
	if v.centered {
		s += ", rows centred"
	}
	return s
}

// foldedDType is the dtype of a folded projection's weight: fp16 under fold-f16, where the
// product reads the fp16 stream, else the compute dtype.
func foldedDType(v graphVariant, compute dtypes.DType) dtypes.DType {
	if v.foldF16 {
		return dtypes.Float16
	}
	return compute
}

// needsFoldSums says whether the folded projections' row sums s are step parameters: a
// centred stream has no mean for them to correct.
func (v graphVariant) needsFoldSums() bool {
	return v.lnFold && !v.centered
}

// foldSumSuffix names a folded projection's row sums s among the graph parameters.
const foldSumSuffix = ".fold_sum"

// lnFoldTarget is one LayerNorm folded into the projection after it.
type lnFoldTarget struct {
	norm, proj string // parameter prefixes
	out        int    // the projection's output size, the length of its row sums
}

// lnFoldTargets lists them in a fixed order (upload and compile agree on it): each layer's
// attention norm (layer 0 has none) into Wqkv, and its MLP norm into Wi.
func lnFoldTargets(cfg Config) []lnFoldTarget {
	var out []lnFoldTarget
	for i := range cfg.NumHiddenLayers {
		p := fmt.Sprintf("layers.%d.", i)
		if i > 0 {
			out = append(out, lnFoldTarget{p + "attn_norm", p + "attn.Wqkv", 3 * cfg.HiddenSize})
		}
		out = append(out, lnFoldTarget{p + "mlp_norm", p + "mlp.Wi", 2 * cfg.IntermediateSize})
	}
	return out
}

// foldNorm returns W·diag(γ) for W [out, in] and the row sums of it as the product sees it
// (rounded to dt, bf16 or fp16, when it is one), so that the correction cancels exactly what
// the product added.
func foldNorm(w, gamma []float32, out, in int, dt dtypes.DType) (folded, sums []float32) {
	folded = make([]float32, len(w))
	sums = make([]float32, out)
	for o := range out {
		var sum float64
		for i := range in {
			v := w[o*in+i] * gamma[i]
			switch dt {
			case dtypes.BFloat16:
				v = bfloat16.FromFloat32(v).Float32()
			case dtypes.Float16:
				v = float16.Fromfloat32(v).Float32()
			}
			folded[o*in+i] = v
			sum += float64(v)
		}
		sums[o] = float32(sum)
	}
	return folded, sums
}

// centeredOutputs lists the tensors the centered variant centres at upload: every output
// projection that adds to the residual stream (each layer's attention and MLP Wo, with their
// biases). Centred over the output axis, each adds a vector of mean zero to every row, so a
// stream that starts centred stays so.
func centeredOutputs(cfg Config) map[string]bool {
	out := map[string]bool{}
	for i := range cfg.NumHiddenLayers {
		for _, proj := range []string{"attn.Wo", "mlp.Wo"} {
			out[fmt.Sprintf("layers.%d.%s.weight", i, proj)] = true
			out[fmt.Sprintf("layers.%d.%s.bias", i, proj)] = true
		}
	}
	return out
}

// centerOutputs returns w [out, in] (in is 1 for a bias) less its mean over the output axis,
// column by column.
func centerOutputs(w []float32, out, in int) []float32 {
	centred := make([]float32, len(w))
	for i := range in {
		var sum float64
		for o := range out {
			sum += float64(w[o*in+i])
		}
		mean := sum / float64(out)
		for o := range out {
			centred[o*in+i] = float32(float64(w[o*in+i]) - mean)
		}
	}
	return centred
}
