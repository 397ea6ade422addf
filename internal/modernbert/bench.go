package modernbert

import (
	"context"
	"errors"
	"sync"
	"time"
)

// BenchResult is the model-only throughput of Bench: ids in, pooled vectors out.
type BenchResult struct {
	Layout             string  `json:"layout"`
	Callers            int     `json:"callers"` // goroutines calling Embed at once
	Seconds            float64 `json:"seconds"`
	Calls              int     `json:"calls"`
	Sequences          int     `json:"sequences"`
	Steps              int     `json:"steps"`
	RealTokens         int     `json:"real_tokens"`
	SlotTokens         int     `json:"slot_tokens"`
	TokensPerSecond    float64 `json:"tokens_per_second"` // real tokens only
	SequencesPerSecond float64 `json:"sequences_per_second"`
	PaddingWaste       float64 `json:"padding_waste"` // share of token slots holding padding
	DeviceSeconds      float64 `json:"device_seconds"`
	MeanStepMillis     float64 `json:"mean_step_ms"`
	// MeanPhaseMillis is where a step's wall time went on average, by phase (PhaseNames): the
	// host's share around the device's.
	MeanPhaseMillis map[string]float64 `json:"mean_phase_ms,omitempty"`
}

// Bench embeds seqs over and over for about d from `callers` goroutines at once (Embed calls
// overlap on the device): packed calls hold exactly one full step (FitPacked); padded calls
// hold PaddedRows sequences in data order, as a sequential HF-style service batches them.
// With more than one model (the same model on several clients or devices) caller i calls
// ms[i mod len(ms)].
func Bench(ctx context.Context, ms []*Model, seqs [][]int32, layout Layout, d time.Duration, callers int) (BenchResult, error) {
	if len(ms) == 0 {
		return BenchResult{}, errors.New("no model to benchmark")
	}
	m := ms[0]
	res := BenchResult{Layout: layout.String(), Callers: max(1, callers)}
	if len(seqs) == 0 {
		return res, errors.New("no sequences to benchmark")
	}
	lengths := make([]int, len(seqs))
	for i, s := range seqs {
		lengths[i] = len(s)
	}
	// The window FitPacked looks at: enough sequences to fill a step several times.
	window := max(1, 4*m.MaxBatchTokens()/max(1, meanLen(lengths)))
	var (
		mu   sync.Mutex
		next int
	)
	take := func() [][]int32 {
		mu.Lock()
		defer mu.Unlock()
		var batch [][]int32
		if layout == Packed {
			end := min(len(seqs), next+window)
			batch = seqs[next : next+m.FitPacked(lengths[next:end])]
		} else {
			batch = seqs[next:min(len(seqs), next+m.opts.PaddedRows)]
		}
		next += len(batch)
		if next >= len(seqs) {
			next = 0
		}
		return batch
	}
	res, _, err := benchLoop(ctx, ms, layout, d, res, take)
	return res, err
}

// benchLoop calls Embed with take's batches from res.Callers goroutines for about d and fills
// in res's counts and rates; it also returns the summed Stats, every step's use included.
func benchLoop(ctx context.Context, ms []*Model, layout Layout, d time.Duration, res BenchResult, take func() [][]int32) (BenchResult, Stats, error) {
	var (
		mu       sync.Mutex
		total    Stats
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	for i := range res.Callers {
		m := ms[i%len(ms)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < d && ctx.Err() == nil {
				batch := take()
				_, st, err := m.Embed(ctx, batch, layout)
				mu.Lock()
				if err != nil {
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				total.Add(st)
				res.Calls++
				res.Sequences += len(batch)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return res, total, firstErr
	}
	elapsed := time.Since(start).Seconds()
	res.Seconds = elapsed
	res.Steps, res.RealTokens, res.SlotTokens = total.Steps, total.RealTokens, total.SlotTokens
	res.TokensPerSecond = float64(total.RealTokens) / elapsed
	res.SequencesPerSecond = float64(res.Sequences) / elapsed
	res.PaddingWaste = total.Waste()
	res.DeviceSeconds = total.Device.Seconds()
	if total.Steps > 0 {
		res.MeanStepMillis = total.Device.Seconds() * 1000 / float64(total.Steps)
	}
	if len(total.PerStep) > 0 {
		var sum [NumPhases]time.Duration
		for _, u := range total.PerStep {
			for p, d := range u.Phases {
				sum[p] += d
			}
		}
		res.MeanPhaseMillis = map[string]float64{}
		for p, d := range sum {
			res.MeanPhaseMillis[PhaseNames[p]] = d.Seconds() * 1000 / float64(len(total.PerStep))
		}
	}
	return res, total, nil
}

func meanLen(lengths []int) int {
	sum := 0
	for _, n := range lengths {
		sum += n
	}
	return sum / len(lengths)
}
