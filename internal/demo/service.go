package demo

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/embedbench/embedbench/internal/gpu"
	"github.com/embedbench/embedbench/internal/modernbert"
	"github.com/embedbench/embedbench/internal/server"
	"github.com/embedbench/embedbench/internal/service"
	"github.com/embedbench/embedbench/internal/tokenizer"
)

// Engine names, as `embedbench serve --engine` spells them.
const (
	Sequential = service.Sequential
	Continuous = service.Continuous
)

// demoService is one engine behind the real HTTP server, listening on a local port.
type demoService struct {
	name  string
	url   string
	built *service.Service
	stop  context.CancelFunc
	done  chan error
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

// startService builds the model, the engine and the server as `embedbench serve` does, and
// serves on 127.0.0.1 at a free port until close. It returns once /health answers "healthy".
func startService(ctx context.Context, spec serviceSpec) (*demoService, error) {
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
		return nil, err
	}
	built, err := service.Build(ctx, service.Spec{
		Engine: spec.name, Config: spec.cfg, Weights: spec.weights, Tokenizer: spec.tok,
		Model: spec.modelOpts, BatchSize: spec.batchSize, MaxQueuedSequences: 1 << 16,
		BusyBatchCut: busyBatchCut(spec.name),
		OnBatch:      srv.ObserveBatch, GPUAvailable: spec.gpu != nil && spec.gpu.Available(), Log: spec.log,
	})
	if err != nil {
		return nil, err
	}
	srv.SetReady(built.Backend)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		built.Close()
		return nil, fmt.Errorf("%s engine: listening: %w", spec.name, err)
	}
	sctx, stop := context.WithCancel(context.Background())
	s := &demoService{name: spec.name, url: "http://" + ln.Addr().String(), built: built, stop: stop, done: make(chan error, 1)}
	go func() { s.done <- srv.Serve(sctx, ln) }()
	if err := waitHealthy(ctx, s.url); err != nil {
		s.close()
		return nil, fmt.Errorf("%s engine: %w", spec.name, err)
	}
	return s, nil
}

// close shuts the server down (answering requests in flight), then the engine and the model.
func (s *demoService) close() error {
	s.stop()
	err := <-s.done
	s.built.Close()
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

// busyBatchCut is serve's default cut for the continuous engine; the sequential one has no
// batch in flight to cut beside.
func busyBatchCut(engine string) float64 {
	if engine == service.Continuous {
		return service.DefaultBusyBatchCut
	}
	return 0
}
