package modernbert

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gomlx/gomlx/backends/simplego"
	. "github.com/gomlx/gomlx/pkg/core/graph" //nolint:staticcheck // the graph DSL reads best unqualified
	"github.com/gomlx/gomlx/pkg/core/tensors"
)

// rotary.apply against HF's rotate_half written out on the host: each head's first half becomes
// x1·cos - x2·sin and its second x2·cos + x1·sin. The tiny model barely feels RoPE in its
// vectors, so a sign or a half swapped would hide in the end-to-end tests' tolerances.
func TestRotaryRotatesTheHalvesAsHF(t *testing.T) {
	backend, err := simplego.New("")
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Finalize()
	const rows, rowLen, heads, headDim, half = 2, 7, 3, 8, 4
	cosData, sinData := ropeTableData(rowLen, headDim, 10000) // position p: row p of the tables
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, rows*rowLen*heads*headDim)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	out, err := ExecOnce(backend, func(xs, cos, sin *Node) *Node {
		table := func(t *Node) *Node { return BroadcastToDims(Reshape(t, 1, rowLen, 1, half), rows, rowLen, 1, half) }
		return rotary{cos: table(cos), sin: table(sin)}.apply(xs)
	}, tensors.FromFlatDataAndDimensions(x, rows, rowLen, heads, headDim),
		tensors.FromFlatDataAndDimensions(cosData, rowLen, half), tensors.FromFlatDataAndDimensions(sinData, rowLen, half))
	if err != nil {
		t.Fatal(err)
	}
	got := tensors.MustCopyFlatData[float32](out)
	for r := range rows {
		for p := range rowLen {
			for h := range heads {
				at := ((r*rowLen+p)*heads + h) * headDim
				for i := range half {
					c, s := float64(cosData[p*half+i]), float64(sinData[p*half+i])
					x1, x2 := float64(x[at+i]), float64(x[at+half+i])
					for j, want := range []float64{x1*c - x2*s, x2*c + x1*s} {
						if d := math.Abs(float64(got[at+i+j*half]) - want); d > 1e-6 {
							t.Fatalf("row %d position %d head %d dim %d: got %g, want %g", r, p, h, i+j*half, got[at+i+j*half], want)
						}
					}
				}
			}
		}
	}
}
