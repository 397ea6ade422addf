package dataset

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/rand/v2"
	"strings"
)

// ErrTooFewPassages is wrapped when a source holds fewer distinct passages than asked for.
var ErrTooFewPassages = errors.New("not enough distinct passages")

// Sample is a reproducible random choice of distinct, non-empty passages from a source.
type Sample struct {
	Passages   []string // in random order
	Distinct   int      // distinct non-empty passages the source holds
	Empty      int      // empty (or whitespace-only) passages dropped
	Duplicates int      // repeated passages dropped
}

// SampleSource reads the source at path once and keeps count passages chosen uniformly at
// random among its distinct non-empty ones (reservoir sampling, so memory stays at count
// passages plus one 8-byte hash per distinct passage). The same source and seed give the same
// sample. Passages are trimmed of surrounding whitespace. A source with fewer than count
// distinct passages is an error wrapping ErrTooFewPassages that says how many it has, returned
// with all of them (shuffled); the sample is never padded with repeats.
func SampleSource(ctx context.Context, path string, count int, seed uint64) (Sample, error) {
	if count <= 0 {
		return Sample{}, fmt.Errorf("count %d: want at least 1", count)
	}
	s := newSampler(count, seed)
	if err := Each(ctx, path, s.add); err != nil {
		return Sample{}, err
	}
	return s.finish(path)
}

type sampler struct {
	count int
	rng   *rand.Rand
	seen  map[uint64]struct{}
	out   Sample
}

func newSampler(count int, seed uint64) *sampler {
	return &sampler{
		count: count,
		rng:   rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		seen:  map[uint64]struct{}{},
		out:   Sample{Passages: make([]string, 0, min(count, 1<<20))},
	}
}

// add is Algorithm R over the distinct passages. Duplicates are found by a 64-bit FNV-1a hash
// rather than by keeping every passage: the full collection (8.8 M passages, 3 GB) stays
// within memory, at a collision chance near 1e-6 that would drop one passage.
func (s *sampler) add(passage string) error {
	passage = strings.TrimSpace(passage)
	if passage == "" {
		s.out.Empty++
		return nil
	}
	h := fnv.New64a()
	_, _ = io.WriteString(h, passage)
	key := h.Sum64()
	if _, dup := s.seen[key]; dup {
		s.out.Duplicates++
		return nil
	}
	s.seen[key] = struct{}{}
	n := s.out.Distinct
	s.out.Distinct++
	if n < s.count {
		s.out.Passages = append(s.out.Passages, passage)
	} else if j := s.rng.IntN(n + 1); j < s.count {
		s.out.Passages[j] = passage
	}
	return nil
}

func (s *sampler) finish(source string) (Sample, error) {
	// The reservoir keeps early passages in source order: shuffle so batches mix lengths.
	s.rng.Shuffle(len(s.out.Passages), func(i, j int) {
		s.out.Passages[i], s.out.Passages[j] = s.out.Passages[j], s.out.Passages[i]
	})
	if s.out.Distinct < s.count { // every distinct passage comes back too, for callers that can use fewer
		return s.out, fmt.Errorf("%s has %d distinct non-empty passages (after dropping %d empty and %d duplicates); asked for %d: %w",
			source, s.out.Distinct, s.out.Empty, s.out.Duplicates, s.count, ErrTooFewPassages)
	}
	return s.out, nil
}
