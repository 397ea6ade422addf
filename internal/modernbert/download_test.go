package modernbert

import (
	"errors"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/gomlx/gomlx/backends"
)

// prefixOnly is the simplego backend with the partial copy the XLA backend adds, returning
// exactly the bytes asked for. A step that reads vectors beyond what it downloaded then returns
// stale or zero vectors, which the test below sees.
type prefixOnly struct {
	backends.Backend
	partialCopies int
}

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

// Steps download only the segments their fullest row reached, into host arrays that are reused:
// every vector must still be the one a whole download gives, for calls whose rows hold many
// sequences, then few (so that a short download would leave the last call's vectors).
func TestPartialDownloadsGiveTheVectorsOfWholeOnes(t *testing.T) {
	t.Setenv(EnvVariant, "cpu-graph") // the compiled steps, which XLA runs
	opts := Options{MaxBatchTokens: 512}
	whole := newTiny(t, opts)
	part := newTiny(t, opts)
	dma := &prefixOnly{Backend: part.backend}
	part.partial = dma
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
	if dma.partialCopies == 0 || part.partialOff.Load() {
		t.Fatalf("the partial path did not run: %d partial copies, turned off %v", dma.partialCopies, part.partialOff.Load())
	}
	if got := part.downloadsSummary(); got != "partial" {
		t.Errorf("downloads %q, want partial", got)
	}
}

// refusesPartial is a backend whose partial copy fails, as a plugin without one answers.
type refusesPartial struct{ backends.Backend }

func (refusesPartial) BufferCopyRawToHost(backends.Buffer, []byte, int) error {
	return errors.New("PJRT_Buffer_CopyRawToHost: not supported by this PJRT plugin")
}

// A device that cannot copy part of a buffer costs the first step nothing but a whole download,
// and later steps do not try again.
func TestAFailedPartialDownloadFallsBackToWholeOnes(t *testing.T) {
	t.Setenv(EnvVariant, "cpu-graph") // the compiled steps, which XLA runs
	m := newTiny(t, Options{MaxBatchTokens: 512})
	rng := rand.New(rand.NewPCG(5, 6))
	seqs := randomSeqs(rng, m.Config(), 3, 9, 40, 5)
	want, _ := mustEmbed(t, m, seqs, Packed)
	m.partial = refusesPartial{m.backend}
	got, _ := mustEmbed(t, m, seqs, Packed)
	for i := range seqs {
		if d := maxAbsDiff(got[i], want[i]); d > 1e-6 {
			t.Errorf("sequence %d differs by %.2g after the failed partial download", i, d)
		}
	}
	if !m.partialOff.Load() || m.downloadsSummary() != "whole" {
		t.Errorf("partial downloads still on (%s) after the device refused one", m.downloadsSummary())
	}
}
