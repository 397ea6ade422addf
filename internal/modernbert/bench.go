package modernbert

import (
	"context"
	"errors"
	"time"
)

// BenchResult is the model-only throughput of Bench: ids in, pooled vectors out.
type BenchResult struct {
	Layout             string  `json:"layout"`
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
}

// Bench embeds seqs over and over for about d: packed calls hold exactly one full step
// (FitPacked); padded calls hold PaddedRows sequences in data order, as a sequential
// HF-style service would batch them.
func Bench(ctx context.Context, m *Model, seqs [][]int32, layout Layout, d time.Duration) (BenchResult, error) {
	res := BenchResult{Layout: layout.String()}
	if len(seqs) == 0 {
		return res, errors.New("no sequences to benchmark")
	}
	lengths := make([]int, len(seqs))
	for i, s := range seqs {
		lengths[i] = len(s)
	}
	// The window FitPacked looks at: enough sequences to fill a step several times.
	window := max(1, 4*m.MaxBatchTokens()/max(1, meanLen(lengths)))
	var total Stats
	start := time.Now()
	next := 0
	for time.Since(start) < d {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		var batch [][]int32
		switch layout {
		case Packed:
			end := min(len(seqs), next+window)
			batch = seqs[next : next+m.FitPacked(lengths[next:end])]
		default:
			batch = seqs[next:min(len(seqs), next+m.opts.PaddedRows)]
		}
		next += len(batch)
		if next >= len(seqs) {
			next = 0
		}
		_, st, err := m.Embed(ctx, batch, layout)
		if err != nil {
			return res, err
		}
		total.Add(st)
		res.Calls++
		res.Sequences += len(batch)
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
	return res, nil
}

func meanLen(lengths []int) int {
	sum := 0
	for _, n := range lengths {
		sum += n
	}
	return sum / len(lengths)
}
