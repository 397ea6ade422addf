package modernbert

import (
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/gomlx/gomlx/backends"
)

// prefixOnly is the simplego backend with the host-transfer calls the XLA backend adds:
// registration succeeds without doing anything, and a partial copy returns exactly the bytes
// asked for. A step that reads vectors beyond what it downloaded then returns stale or zero
// vectors, which the test below sees.
type prefixOnly struct {
	backends.Backend
	partialCopies int
}

func (*prefixOnly) DmaMap(unsafe.Pointer, int) error { return nil }
func (*prefixOnly) DmaUnmap(unsafe.Pointer) error    { return nil }

func (b *prefixOnly) BufferCopyRawToHost(buf backends.Buffer, dst []byte, offset int) error {
	shape, err := b.BufferShape(buf)
	if err != nil {
		return err
	}
	all := make([]float32, shape.Size())
	if err := b.BufferToFlatData(buf, all); err != nil {
		return err
	}
	copy(dst, unsafe.Slice((*byte)(unsafe.Pointer(&all[0])), len(all)*4)[offset:])
	b.partialCopies++
	return nil
}

// Steps download only the segments their fullest row reached, into registered host arrays that
// are reused: every vector must still be the one a whole download gives, for calls whose rows
// hold many sequences, then few (so that a short download would leave the last call's vectors).
func TestPartialDownloadsGiveTheVectorsOfWholeOnes(t *testing.T) {
	t.Setenv(EnvVariant, "cpu-graph") // the compiled steps, which XLA runs
	opts := Options{MaxBatchTokens: 512}
	whole := newTiny(t, opts)
	part := newTiny(t, opts)
	dma := &prefixOnly{Backend: part.backend}
	part.dma = dma
	rng := rand.New(rand.NewPCG(3, 4))
	calls := [][][]int32{
		randomSeqs(rng, part.Config(), 3, 5, 4, 6, 3, 9, 7, 5, 4, 3, 8, 6, 5, 40, 3, 4),
		randomSeqs(rng, part.Config(), 200, 150, 3, 90),
		randomSeqs(rng, part.Config(), 7),
	}
	for _, layout := range []Layout{Packed, Padded} {
		for c, seqs := range calls {
			want, _ := mustEmbed(t, whole, seqs, layout)
			got, _ := mustEmbed(t, part, seqs, layout)
			for i := range seqs {
				if d := maxAbsDiff(got[i], want[i]); d > 1e-6 {
					t.Errorf("%s call %d: sequence %d (%d tokens) differs from a whole download by %.2g", layout, c, i, len(seqs[i]), d)
				}
			}
		}
	}
	if dma.partialCopies == 0 || part.partialOff.Load() || part.dmaOff.Load() {
		t.Fatalf("the partial path did not run: %d partial copies, partial off %v, registration off %v",
			dma.partialCopies, part.partialOff.Load(), part.dmaOff.Load())
	}
	if got := part.transfersSummary(); got != "registered, partial downloads" {
		t.Errorf("transfers %q, want registered, partial downloads", got)
	}
}
