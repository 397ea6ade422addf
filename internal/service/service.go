// Package service assembles what one embedding service runs: the model replicas, an engine
// over them, and the server's view of both (server.Backend). `embedbench serve` and the demo
// both build theirs here, so the demo measures exactly what serve serves.
package service

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/embedbench/embedbench/internal/engine"
	"github.com/embedbench/embedbench/internal/modernbert"
	"github.com/embedbench/embedbench/internal/server"
	"github.com/embedbench/embedbench/internal/tokenizer"
)

// Engine names, as `embedbench serve --engine` spells them.
const (
	Sequential = "sequential"
	Continuous = "continuous"
)

// DefaultBusyBatchCut is the continuous engine's cut to a smaller step that serve and the demo
// use: on an H200 (run 48, both orders in one lease) it took 256 one-text clients from 15.5 k
// to 17.0 k requests/s at the same p99, with the open loop's tails at 50% and 70% of peak
// inside their bounds (docs/notes/modernbert.md, session 16).
const DefaultBusyBatchCut = 0.15

// Spec is what to build.
type Spec struct {
	Engine    string // Sequential or Continuous
	Config    modernbert.Config
	Weights   *modernbert.Weights
	Tokenizer *tokenizer.Tokenizer
	// Model holds the backend, dtype, pooling and limits; Build sets the layout the engine
	// uses, the device of each replica and, for the sequential engine, the padded batch.
	Model modernbert.Options
	// Prompts are the model's prompts (Model.ExcludePrompt must match Prompts.Exclude).
	Prompts engine.Prompts
	// PoolingSource ("model", "flag" or "default") and STLayout ("classic", "current" or "")
	// are reported in /health.
	PoolingSource, STLayout string
	// Replicas is the number of replicas (continuous engine only; 0 = 1): on XLA, of GPUs, a
	// replica on each (times ReplicasPerGPU).
	Replicas int
	// ReplicasPerGPU runs that many replicas on each GPU (continuous engine on XLA; 0 = 1), each
	// on a PJRT client of its own (modernbert.Options.Client) and so on a device stream of its
	// own: the GPU runs one replica's kernels in the gaps between the other's.
	ReplicasPerGPU int
	// BatchSize is the sequential engine's fixed padded batch.
	BatchSize int
	// BusyBatchCut is the continuous engine's engine.Config.BusyBatchCut (serve's default:
	// DefaultBusyBatchCut).
	BusyBatchCut       float64
	MaxQueuedSequences int
	OnBatch            func(engine.BatchReport)
	GPUAvailable       bool
	Log                *slog.Logger
}

// Service is a built engine over its replicas, ready for server.SetReady.
type Service struct {
	Backend server.Backend
	models  []*modernbert.Model
}

// Close stops the engine first (it finishes its work), then frees the replicas.
func (s *Service) Close() {
	s.Backend.Engine.Close()
	for _, m := range s.models {
		m.Close()
	}
}

// Build compiles and warms up the replicas and starts the engine over them.
func Build(ctx context.Context, spec Spec) (*Service, error) {
	log := spec.Log
	if log == nil {
		log = slog.Default()
	}
	gpus, perGPU := max(1, spec.Replicas), max(1, spec.ReplicasPerGPU)
	replicas := gpus * perGPU
	if spec.Prompts.Exclude != spec.Model.ExcludePrompt {
		return nil, errors.New("prompts leave their tokens out of pooling only if the model compiles the pooling mask (Options.ExcludePrompt)")
	}
	layout := modernbert.Packed
	switch spec.Engine {
	case Continuous:
	case Sequential:
		if replicas > 1 {
			return nil, errors.New("the sequential engine serves one request at a time on one replica")
		}
		layout = modernbert.Padded
		spec.Model.PaddedRows = spec.BatchSize
	default:
		return nil, fmt.Errorf("engine %q: want %s or %s", spec.Engine, Sequential, Continuous)
	}
	// Each engine drives its model in one layout: compiling only that one halves start-up.
	spec.Model.Layouts = []modernbert.Layout{layout}
	onGPU := strings.HasPrefix(spec.Model.Backend, "xla:")
	if perGPU > 1 && !onGPU {
		return nil, errors.New("several replicas to a GPU need XLA on a GPU: on a CPU they would only share its cores")
	}

	s := &Service{}
	ok := false
	defer func() {
		if !ok {
			for _, m := range s.models {
				m.Close()
			}
		}
	}()
	// The replicas load at once: replicas on one client share its compiled steps (the later
	// ones wait for a shape being compiled), and another client's compile on cores of their own
	// (XLA compiles a shape mostly on one core), so --replicas-per-gpu costs less start-up.
	// The first failure stops the others and is the one reported: theirs follow from it.
	loadCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	loaded := make([]*modernbert.Model, replicas)
	var (
		wg       sync.WaitGroup
		failOnce sync.Once
		failure  error
	)
	for i := range replicas {
		opts := spec.Model
		if onGPU {
			// Replicas 0..gpus-1 take a GPU each on the shared client; the next ones do it again,
			// each round on a client of its own.
			opts.DeviceIndex, opts.Client = i%gpus, i/gpus
		}
		wg.Go(func() {
			t0 := time.Now()
			m, err := modernbert.New(loadCtx, spec.Config, spec.Weights, opts)
			if err != nil {
				failOnce.Do(func() {
					failure = fmt.Errorf("%s engine: loading replica %d: %w", spec.Engine, i, err)
					cancel()
				})
				return
			}
			loaded[i] = m
			info := m.Info()
			log.Info("replica ready", "engine", spec.Engine, "replica", i, "backend", info.Backend, "device", info.Device, "client", opts.Client,
				"dtype", info.DType, "attention", info.Attention, "products", info.Products, "product_programs", info.ProductPrograms, "residual", info.Residual, "downloads", info.Downloads, "shapes", strings.Join(info.Shapes, " "), "took", time.Since(t0).Round(time.Millisecond))
		})
	}
	wg.Wait()
	for _, m := range loaded {
		if m != nil {
			s.models = append(s.models, m) // closed by the deferred clean-up on an error
		}
	}
	if failure != nil {
		return nil, failure
	}
	if err := ctx.Err(); err != nil { // cancelled as the last replica finished
		return nil, fmt.Errorf("%s engine: loading replicas: %w", spec.Engine, err)
	}
	runners := make([]engine.Runner, replicas)
	for i, m := range s.models {
		runners[i] = engine.ModelRunner(m, layout)
	}

	m := s.models[0]
	ecfg := engine.Config{
		Tokenizer:          spec.Tokenizer,
		Prompts:            spec.Prompts,
		MaxSequenceLength:  m.MaxSequenceLength(),
		MaxQueuedSequences: spec.MaxQueuedSequences,
		OnBatch:            spec.OnBatch,
		BusyBatchCut:       spec.BusyBatchCut,
	}
	if onGPU {
		// Two batches in flight per replica (so per GPU, times ReplicasPerGPU: run 71 measured
		// two replicas to a GPU so): the next is packed and copied while one computes. On the
		// CPU both would only fight over the same cores.
		ecfg.BatchesPerReplica = 2
		// A step's fixed cost on the H200 is about 1.2 ms with two in flight, what 2,000 slots of
		// work cost (bench-model --per-rung, run 19): smaller batches wait to be merged instead.
		ecfg.MinPipelineTokens = 2048
	}
	var eng engine.Engine
	var err error
	if spec.Engine == Sequential {
		eng, err = engine.NewSequential(ecfg, runners[0], spec.BatchSize)
	} else {
		eng, err = engine.NewContinuous(ecfg, runners, m.MaxBatchTokens())
	}
	if err != nil {
		return nil, fmt.Errorf("%s engine: %w", spec.Engine, err)
	}

	info := m.Info()
	device := info.Device
	if !onGPU && !strings.HasPrefix(device, "cpu") { // the native CPU path names itself
		device = "cpu (GoMLX simplego): " + device
	}
	tok := spec.Tokenizer
	s.Backend = server.Backend{
		Engine: eng, Dim: m.Dim(), VocabSize: tok.VocabSize(), MaxSequenceLength: m.MaxSequenceLength(),
		Tokenize: func(text string, addSpecial, offsets bool, maxLength int) ([]int32, [][2]int, int) {
			enc := tok.Encode(text, tokenizer.EncodeOptions{AddSpecialTokens: addSpecial, MaxLength: maxLength})
			if !offsets {
				return enc.IDs, nil, enc.TotalTokens
			}
			return enc.IDs, enc.Offsets, enc.TotalTokens
		},
		Info: server.Info{
			Device: device, DType: info.DType, Pooling: info.Pooling, PoolingSource: spec.PoolingSource,
			IncludePrompt: !spec.Prompts.Exclude, Dense: info.Dense, Normalize: info.Normalize,
			Prompts: spec.Prompts.Texts, DefaultPrompt: spec.Prompts.Default, STLayout: spec.STLayout,
			Weights: info.Weights, Replicas: replicas, GPUAvailable: spec.GPUAvailable,
		},
		StepSlots: info.StepSlots,
	}
	ok = true
	return s, nil
}
