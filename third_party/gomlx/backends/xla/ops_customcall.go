package xla

// Added by embedbench (see third_party/README.md): a custom call, which XLA uses to reach
// library kernels such as cuDNN's fused attention. It is not part of backends.Builder: callers
// find it with a type assertion (see graph.CustomCall) and fall back where it is missing.

import (
	"github.com/gomlx/go-xla/pkg/stablehlo"
	xlashapes "github.com/gomlx/go-xla/pkg/types/shapes"
	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/pkg/errors"
)

// CustomCall emits a stablehlo.custom_call of target on operands, with one result per
// outputShapes entry; backendConfig and the minor-to-major layouts are passed to XLA as given,
// the config as a string (apiVersion 2) or as an MLIR dictionary attribute's text (apiVersion 4).
func (b *Builder) CustomCall(target string, apiVersion int, operands []backends.Op, outputShapes []shapes.Shape, backendConfig string,
	operandLayouts, resultLayouts [][]int) ([]backends.Op, error) {
	nodes, err := b.verifyAndCastValues("CustomCall", operands...)
	if err != nil {
		return nil, err
	}
	values := make([]*stablehlo.Value, len(nodes))
	for i, n := range nodes {
		values[i] = n.value
	}
	xlaShapes := make([]xlashapes.Shape, len(outputShapes))
	for i, s := range outputShapes {
		xlaShapes[i] = ShapeToXLA(s)
		if !xlaShapes[i].Ok() {
			return nil, errors.Errorf("CustomCall %q: invalid output shape #%d: %s", target, i, s)
		}
	}
	outputs, err := stablehlo.CustomCall(target, apiVersion, values, xlaShapes, backendConfig, operandLayouts, resultLayouts)
	if err != nil {
		return nil, err
	}
	ops := make([]backends.Op, len(outputs))
	for i, v := range outputs {
		ops[i] = b.newNode(v)
	}
	return ops, nil
}
