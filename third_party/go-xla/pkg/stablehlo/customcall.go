package stablehlo

// Added by embedbench (see third_party/README.md): upstream v0.1.4 has no way to emit a
// custom call, which is how XLA reaches cuDNN's fused attention.

import (
	"fmt"
	"strings"

	"github.com/gomlx/go-xla/internal/optypes"
	"github.com/gomlx/go-xla/pkg/types/shapes"
	"github.com/pkg/errors"
)

// CustomCall adds a stablehlo.custom_call of target taking inputs and returning one value per
// outputShapes entry. With apiVersion 2, backendConfig is handed to the target verbatim, as a
// string; with apiVersion 4 (XLA's typed FFI, which its Triton calls use) it is the text of an
// MLIR dictionary attribute, written as is. operandLayouts and resultLayouts, if not nil, give
// each operand's and result's minor-to-major layout, as XLA's GPU custom calls require.
func CustomCall(target string, apiVersion int, inputs []*Value, outputShapes []shapes.Shape, backendConfig string,
	operandLayouts, resultLayouts [][]int) ([]*Value, error) {
	op := optypes.CustomCall
	if len(inputs) == 0 {
		return nil, errors.Errorf("%s %q: no inputs", op, target)
	}
	fn := inputs[0].fn
	if fn.Returned {
		return nil, errors.Errorf("cannot add operation %s after returning, in function %q", op, fn.Name)
	}
	for i, in := range inputs {
		if in.fn != fn {
			return nil, errors.Errorf("%s %q: input #%d belongs to another function", op, target, i)
		}
	}
	if operandLayouts != nil && len(operandLayouts) != len(inputs) {
		return nil, errors.Errorf("%s %q: %d operand layouts for %d inputs", op, target, len(operandLayouts), len(inputs))
	}
	if resultLayouts != nil && len(resultLayouts) != len(outputShapes) {
		return nil, errors.Errorf("%s %q: %d result layouts for %d outputs", op, target, len(resultLayouts), len(outputShapes))
	}
	config := literalStr(mlirString(backendConfig))
	switch apiVersion {
	case 2:
	case 4:
		if !strings.HasPrefix(backendConfig, "{") || !strings.HasSuffix(backendConfig, "}") {
			return nil, errors.Errorf("%s %q: api_version 4 takes a dictionary attribute, not %.40q", op, target, backendConfig)
		}
		config = literalStr(backendConfig)
	default:
		return nil, errors.Errorf("%s %q: api_version %d is not supported (2 or 4)", op, target, apiVersion)
	}
	stmt := fn.addMultiOp(op, outputShapes, inputs)
	stmt.Attributes = map[string]any{
		"call_target_name": literalStr(mlirString(target)),
		"api_version":      literalStr(fmt.Sprintf("%d : i32", apiVersion)),
		"backend_config":   config,
	}
	if operandLayouts != nil {
		stmt.Attributes["operand_layouts"] = layoutsLiteral(operandLayouts)
	}
	if resultLayouts != nil {
		stmt.Attributes["result_layouts"] = layoutsLiteral(resultLayouts)
	}
	return stmt.Outputs, nil
}

// MLIRString quotes s as an MLIR string literal, for a dictionary backend config's values.
func MLIRString(s string) string { return mlirString(s) }

// mlirString quotes s as an MLIR string literal: quotes, backslashes and control characters
// as two-digit hex escapes.
func mlirString(s string) string {
	var sb strings.Builder
	sb.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '"' || c == '\\' || c < 0x20 || c == 0x7f {
			fmt.Fprintf(&sb, "\\%02X", c)
		} else {
			sb.WriteByte(c)
		}
	}
	sb.WriteByte('"')
	return sb.String()
}

// layoutsLiteral renders layouts as [dense<[3, 2, 1, 0]> : tensor<4xindex>, ...].
func layoutsLiteral(layouts [][]int) literalStr {
	parts := make([]string, len(layouts))
	for i, layout := range layouts {
		dims := make([]string, len(layout))
		for j, d := range layout {
			dims[j] = fmt.Sprint(d)
		}
		if len(layout) == 0 {
			parts[i] = "dense<> : tensor<0xindex>"
			continue
		}
		parts[i] = fmt.Sprintf("dense<[%s]> : tensor<%dxindex>", strings.Join(dims, ", "), len(layout))
	}
	return literalStr("[" + strings.Join(parts, ", ") + "]")
}
