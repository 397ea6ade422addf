package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/embedbench/embedbench/internal/engine"
	"github.com/embedbench/embedbench/internal/gpu"
	"github.com/embedbench/embedbench/internal/modernbert"
	"github.com/embedbench/embedbench/internal/server"
	"github.com/embedbench/embedbench/internal/tokenizer"
)

// Engine names, as `embedbench serve --engine` spells them.
const (
	Sequential = "sequential"
	Continuous = "continuous"
)

// service is one engine behind the real HTTP server, listening on a local port.
type service struct {
	name   string
	url    string
	model  *modernbert.Model
	engine engine.Engine
	stop   context.CancelFunc
	done   chan error
}

// serviceSpec is what one service runs.
type serviceSpec struct {
	name      string // Sequential or Continuous
	dtype     modernbert.DType
	modelID   string
	cfg       modernbert.Config
	weights   *modernbert.Weights
	modelOpts modernbert.Options
	tok       *tokenizer.Tokenizer
	gpu       *gpu.Monitor
	// batchSize is the sequential engine's fixed batch (32, what sentence-transformers uses).
	batchSize int
	log       *slog.Logger
}

// startService builds the model, the engine and the server, and serves on 127.0.0.1 at a
// free port until close. It returns once /health would answer "healthy".
func startService(ctx context.Context, spec serviceSpec) (*service, error) {
	layout := modernbert.Packed
	if spec.name == Sequential {
		layout = modernbert.Padded
	}
	// Each engine drives its model in one layout: compiling only that one halves start-up.
	spec.modelOpts.Layouts = []modernbert.Layout{layout}
	t0 := time.Now()
	m, err := modernbert.New(ctx, spec.cfg, spec.weights, spec.modelOpts)
	if err != nil {
		return nil, fmt.Errorf("%s engine: loading the model: %w", spec.name, err)
	}
	spec.log.Info("model ready", "engine", spec.name, "took", time.Since(t0).Round(time.Millisecond),
		"backend", m.Info().Backend, "device", m.Info().Device, "dtype", m.Info().DType)

	srv, err := server.New(server.Config{
		EngineName:            spec.name,
		ModelID:               spec.modelID,
		MaxConcurrentRequests: 512,
		MaxClientBatchSize:    2048,
		MaxBodyBytes:          64 << 20,
		ShutdownTimeout:       30 * time.Second,
		GPU:                   spec.gpu,
		Logger:                spec.log.With("engine", spec.name),
	})
	if err != nil {
		m.Close()
		return nil, err
	}
	ecfg := engine.Config{
		Tokenizer:          spec.tok,
		MaxSequenceLength:  m.MaxSequenceLength(),
		MaxQueuedSequences: 1 << 16,
		OnBatch:            srv.ObserveBatch,
	}
	var eng engine.Engine
	if spec.name == Sequential {
		eng, err = engine.NewSequential(ecfg, engine.ModelRunner(m, layout), spec.batchSize)
	} else {
		eng, err = engine.NewContinuous(ecfg, []engine.Runner{engine.ModelRunner(m, layout)}, m.MaxBatchTokens())
	}
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("%s engine: %w", spec.name, err)
	}
	info := m.Info()
	device := info.Device
	if spec.modelOpts.Backend == "simplego" {
		device = "cpu (GoMLX simplego)"
	}
	srv.SetReady(server.Backend{
		Engine:            eng,
		Dim:               m.Dim(),
		VocabSize:         spec.tok.VocabSize(),
		MaxSequenceLength: m.MaxSequenceLength(),
		Tokenize:          tokenizeFunc(spec.tok),
		Info: server.Info{
			Device: device, DType: info.DType, Pooling: info.Pooling, Weights: info.Weights,
			Replicas: 1, GPUAvailable: spec.gpu != nil && spec.gpu.Available(),
		},
	})

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		eng.Close()
		m.Close()
		return nil, fmt.Errorf("%s engine: listening: %w", spec.name, err)
	}
	sctx, stop := context.WithCancel(context.Background())
	s := &service{name: spec.name, url: "http://" + ln.Addr().String(), model: m, engine: eng, stop: stop, done: make(chan error, 1)}
	go func() { s.done <- srv.Serve(sctx, ln) }()
	if err := waitHealthy(ctx, s.url); err != nil {
		s.close()
		return nil, fmt.Errorf("%s engine: %w", spec.name, err)
	}
	return s, nil
}

// close shuts the server down (answering requests in flight), then the engine and the model.
func (s *service) close() error {
	s.stop()
	err := <-s.done
	s.engine.Close()
	s.model.Close()
	return err
}

func waitHealthy(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/health", nil)
		if err != nil {
			return err
		}
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return errors.Join(fmt.Errorf("%s/health never answered healthy", url), ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// tokenizeFunc serves /tokenize with the real tokenizer.
func tokenizeFunc(tok *tokenizer.Tokenizer) func(string, bool, bool, int) ([]int32, [][2]int, int) {
	return func(text string, addSpecial, offsets bool, maxLength int) ([]int32, [][2]int, int) {
		enc := tok.Encode(text, tokenizer.EncodeOptions{AddSpecialTokens: addSpecial, MaxLength: maxLength})
		if !offsets {
			return enc.IDs, nil, enc.TotalTokens
		}
		return enc.IDs, enc.Offsets, enc.TotalTokens
	}
}
