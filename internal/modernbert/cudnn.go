package modernbert

import (
	"fmt"
	"strings"

	"github.com/gomlx/gomlx/pkg/core/dtypes"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:staticcheck // the graph DSL reads best unqualified
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// cudnnAttentionTarget is XLA's custom call for cuDNN's fused (flash) attention with an
// additive bias: softmax(scale·QKᵀ + bias)·V in one kernel, never writing the [L, L] scores or
// probabilities to memory, and reading Q, K, V in the [rows, L, heads, D] layout the
// projection produces, so no transposes either. JAX's dot_product_attention(implementation=
// "cudnn") emits the same call; scripts/gpu/jax_profile.py shows the text.
const cudnnAttentionTarget = "__cudnn$fmhaScaleBiasSoftmax"

// fusedAttentionOK says whether cuDNN's fused attention takes these shapes for a model computing
// in dtype (see fusedAttentionDType): head dimension a multiple of 8 up to 128, and rows a
// multiple of 64 tokens long.
func fusedAttentionOK(dtype dtypes.DType, headDim, rowLen int) bool {
	return fusedAttentionDType(dtype) != dtypes.InvalidDType && headDim%8 == 0 && headDim <= 128 && rowLen%64 == 0
}

// fusedAttentionDType is the dtype cuDNN's fused attention runs in for a model computing in
// dtype, or InvalidDType where it has none (the kernel takes bf16 and fp16 only). A float32
// model attends in fp16: its 10-bit mantissa is what XLA's default (TF32) products already round
// fp32 attention's q, k, probabilities and v to on the GPU, the scores still accumulate and the
// softmax still runs in fp32 inside the kernel, and it spares the step the fp32 [L, L] scores
// that XLA's attention writes and reads back. The output projection Wo then runs in fp16 too
// (see attention).
func fusedAttentionDType(dtype dtypes.DType) dtypes.DType {
	switch dtype {
	case dtypes.BFloat16:
		return dtypes.BFloat16
	case dtypes.Float32:
		return dtypes.Float16
	}
	return dtypes.InvalidDType
}

// cudnnAttention computes attention for q, k, v [rows, L, heads, D] in bf16 or fp16 with bias
// [rows, 1, L, L] (the same dtype; 0 where a query sees a key, a large negative number
// elsewhere) and returns [rows, L, heads, D] in that dtype.
func cudnnAttention(q, k, v, bias *Node, scale float64) *Node {
	dims := q.Shape().Dimensions
	rows, rowLen, heads, headDim := dims[0], dims[1], dims[2], dims[3]
	// The result is [rows, heads, L, D] laid out as [rows, L, heads, D] (minor-to-major 3,1,2,0),
	// so the transpose below is free; the second result is cuDNN's (empty) workspace.
	outs := CustomCall(cudnnAttentionTarget, 2, []*Node{q, k, v, bias},
		[]shapes.Shape{shapes.Make(q.DType(), rows, heads, rowLen, headDim), shapes.Make(dtypes.Uint8, 0)},
		cudnnAttentionConfig(q.DType(), rows, heads, rowLen, scale),
		[][]int{{3, 2, 1, 0}, {3, 2, 1, 0}, {3, 2, 1, 0}, {3, 2, 1, 0}}, [][]int{{3, 1, 2, 0}, {0}})
	return TransposeAllDims(outs[0], 0, 2, 1, 3)
}

// cudnnAttentionConfig is the backend config XLA's cuDNN attention expects, as JAX writes it:
// flash attention, no dropout, the mask carried by the bias, Q/K/V as [batch, seq, heads, dim]
// in dtype (bf16 or fp16).
func cudnnAttentionConfig(dtype dtypes.DType, rows, heads, rowLen int, scale float64) string {
	element := "BF16"
	if dtype == dtypes.Float16 {
		element = "F16"
	}
	return fmt.Sprintf(`{"operation_queue_id": "0", "cudnn_fmha_backend_config": {`+
		`"algorithm": {"algo_id": "0", "math_type": "TENSOR_OP_MATH", "tuning_knobs": {"17": "1", "24": "0"}, "is_cudnn_frontend": true, "workspace_size": "0"}, `+
		`"fmha_scale": %g, `+
		`"intermediate_tensor_shape": {"element_type": "%s", "dimensions": ["%d", "%d", "%d", "%d"], "tuple_shapes": [], `+
		`"layout": {"dim_level_types": [], "dim_unique": [], "dim_ordered": [], "minor_to_major": ["3", "2", "1", "0"], "tiles": [], "element_size_in_bits": "0", "memory_space": "0", "index_primitive_type": "PRIMITIVE_TYPE_INVALID", "pointer_primitive_type": "PRIMITIVE_TYPE_INVALID", "dynamic_shape_metadata_prefix_bytes": "0"}, `+
		`"is_dynamic_dimension": [false, false, false, false]}, `+
		`"is_flash_attention": true, "mask_type": "NO_MASK", `+
		`"bmm1_dot_dimension_numbers": {"lhs_contracting_dimensions": ["3"], "rhs_contracting_dimensions": ["3"], "lhs_batch_dimensions": ["0", "2"], "rhs_batch_dimensions": ["0", "2"]}, `+
		`"bmm2_dot_dimension_numbers": {"lhs_contracting_dimensions": ["3"], "rhs_contracting_dimensions": ["1"], "lhs_batch_dimensions": ["0", "1"], "rhs_batch_dimensions": ["0", "2"]}, `+
		`"dropout_rate": 0.0, "seed": 42, "sliding_window_length": 0, "max_seg_per_batch": 1, "is_paged_attention": false}}`,
		scale, element, rows, heads, rowLen, rowLen)
}

// shapeCount is how many compiled shapes run a kernel, by its name in Info.
type shapeCount struct {
	name string
	n    int
}

// onShapes names each of kernels that some of steps compiled shapes run, adding "on n of
// steps shapes" where fewer than all do.
func onShapes(steps int, kernels ...shapeCount) []string {
	var parts []string
	for _, k := range kernels {
		switch {
		case k.n == 0:
		case k.n < steps:
			parts = append(parts, fmt.Sprintf("%s on %d of %d shapes", k.name, k.n, steps))
		default:
			parts = append(parts, k.name)
		}
	}
	return parts
}

// attentionSummary says how the compiled steps attend (Info.Attention): triton of them through
// our Triton kernel, fused through cuDNN's, the rest as separate graph ops (XLA's or simplego's).
func attentionSummary(dtype dtypes.DType, triton, fused, steps int) string {
	if steps == 0 {
		return ""
	}
	if triton == 0 && fused == 0 {
		return "unfused"
	}
	parts := onShapes(steps, shapeCount{"triton " + dtype.String(), triton}, shapeCount{"cudnn-fused " + fusedAttentionDType(dtype).String(), fused})
	if triton+fused < steps {
		parts = append(parts, "unfused on the rest")
	}
	return strings.Join(parts, ", ")
}
