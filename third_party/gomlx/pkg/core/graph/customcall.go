package graph

// Added by embedbench (see third_party/README.md): custom calls, for backends that offer them
// (the XLA backend does; simplego does not).

import (
	"fmt"
	"strings"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/pkg/core/shapes"
	"github.com/pkg/errors"
)

// NodeTypeCustomCall is the type of nodes made by CustomCall. It lies outside the generated
// range of node types.
const NodeTypeCustomCall NodeType = 10_000

// customCaller is implemented by backend builders that can emit custom calls.
type customCaller interface {
	CustomCall(target string, apiVersion int, operands []backends.Op, outputShapes []shapes.Shape, backendConfig string,
		operandLayouts, resultLayouts [][]int) ([]backends.Op, error)
}

// SupportsCustomCall reports whether g's backend can emit custom calls.
func SupportsCustomCall(g *Graph) bool {
	_, ok := g.builder.(customCaller)
	return ok
}

type nodeInputsCustomCall struct {
	target         string
	apiVersion     int
	operands       []*Node
	outputShapes   []shapes.Shape
	backendConfig  string
	operandLayouts [][]int
	resultLayouts  [][]int
}

// Type implements the interface NodeInputs.
func (ni *nodeInputsCustomCall) Type() NodeType { return NodeTypeCustomCall }

// String implements the interface NodeInputs.
func (ni *nodeInputsCustomCall) String() string {
	ids := make([]string, len(ni.operands))
	for i, n := range ni.operands {
		ids[i] = fmt.Sprintf("#%d", n.Id())
	}
	return fmt.Sprintf("CustomCall(target=%q, operands=[%s], outputs=%v)", ni.target, strings.Join(ids, ", "), ni.outputShapes)
}

// CustomCall emits a call of target on operands that returns one node per outputShapes
// entry. backendConfig and the minor-to-major layouts (nil: the backend's defaults) are
// passed to the backend as given: the config as a string with apiVersion 2, as the text of an
// MLIR dictionary attribute with apiVersion 4 (XLA's typed FFI). It panics, as graph building does, if the backend has no
// custom calls: check SupportsCustomCall first. It has no gradient.
func CustomCall(target string, apiVersion int, operands []*Node, outputShapes []shapes.Shape, backendConfig string,
	operandLayouts, resultLayouts [][]int) []*Node {
	g := validateBuildingGraphFromInputs(operands...)
	caller, ok := g.builder.(customCaller)
	if !ok {
		panic(errors.Errorf("CustomCall(%q): backend %q does not support custom calls", target, g.backend.Name()))
	}
	ops := make([]backends.Op, len(operands))
	for i, n := range operands {
		ops[i] = n.outputOps[0]
	}
	outs, err := caller.CustomCall(target, apiVersion, ops, outputShapes, backendConfig, operandLayouts, resultLayouts)
	if err != nil {
		panic(errors.WithMessagef(err, "CustomCall(%q)", target))
	}
	node := &Node{
		outputOps:    outs,
		outputShapes: outputShapes,
		graph:        g,
		inputs: &nodeInputsCustomCall{target: target, apiVersion: apiVersion, operands: operands, outputShapes: outputShapes,
			backendConfig: backendConfig, operandLayouts: operandLayouts, resultLayouts: resultLayouts},
		inputNodes: operands,
	}
	g.registerNode(node)
	if len(outs) == 1 {
		return []*Node{node}
	}
	return splitNode(node)
}
