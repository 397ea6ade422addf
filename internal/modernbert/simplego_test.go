package modernbert

import (
	"testing"
	"time"

	"github.com/gomlx/gomlx/backends"
	"github.com/gomlx/gomlx/backends/simplego"
	"github.com/gomlx/gomlx/pkg/core/dtypes"
	"github.com/gomlx/gomlx/pkg/core/graph"
	"github.com/gomlx/gomlx/pkg/core/shapes"
)

// Many independent batched products at once on a small worker pool: simplego runs each in a
// worker, and each splits its batch over more workers. Upstream, a worker waited for a free
// slot while holding its own, so a full pool deadlocked (it hung `embed` on CPU once attention
// ran in query blocks); third_party's simplego runs such work inline when the pool is full.
func TestSimplegoNestedParallelismDoesNotDeadlock(t *testing.T) {
	backend, err := simplego.New("parallelism=1") // a pool of two workers
	if err != nil {
		t.Fatal(err)
	}
	defer backend.Finalize()
	g := graph.NewGraph(backend, "independent_products")
	x := graph.Parameter(g, "x", shapes.Make(dtypes.Float32, 8, 96, 64))
	var sum *graph.Node
	for i := range 24 {
		y := graph.Einsum("bqd,bkd->bqk", graph.AddScalar(x, float64(i)), x) // [8, 96, 96]
		e := graph.Erf(graph.MulScalar(y, 1e-3))                             // erf splits its work too
		if sum == nil {
			sum = e
		} else {
			sum = graph.Add(sum, e)
		}
	}
	g.Compile(graph.ReduceAllSum(sum))
	input := make([]float32, 8*96*64)
	for i := range input {
		input[i] = float32(i%7) * 0.01
	}
	buf, err := backend.BufferFromFlatData(0, input, shapes.Make(dtypes.Float32, 8, 96, 64))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 20 {
			for _, out := range g.RunWithBuffers([]backends.Buffer{buf}, []bool{false}, 0) {
				_ = out.FinalizeAll()
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("simplego deadlocked: 24 independent products on a pool of two workers did not finish in 2 minutes")
	}
}
