package modernbert

import (
	"fmt"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/dtypes/bfloat16"
)

// The ln-fold variant (issue 16's elementwise traffic): a LayerNorm whose output feeds only a
// projection need not be written. Its weight γ goes into the projection's weight at upload,
// W' = W·diag(γ), and its statistics correct the product of the unnormalised stream in the
// consumers' fusions: LN(h)·Wᵀ = rstd·(h·W'ᵀ - mean·s), s = W'·1 (normed.project).

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
// (rounded to bf16 when dt is), so that the correction cancels exactly what the product added.
func foldNorm(w, gamma []float32, out, in int, dt dtypes.DType) (folded, sums []float32) {
	folded = make([]float32, len(w))
	sums = make([]float32, out)
	for o := range out {
		var sum float64
		for i := range in {
			v := w[o*in+i] * gamma[i]
			if dt == dtypes.BFloat16 {
				v = bfloat16.FromFloat32(v).Float32()
			}
			folded[o*in+i] = v
			sum += float64(v)
		}
		sums[o] = float32(sum)
	}
	return folded, sums
}
