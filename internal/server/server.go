// Package server is the HTTP face of the embedding service: the seed's /embed and /health,
// OpenAI's /v1/embeddings, /tokenize and Prometheus /metrics, over an engine.Engine. It owns
// admission (429 beyond the concurrency limit), body limits, auth, request logs, metrics and
// graceful shutdown; batching and devices are the engine's business.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/embedbench/embedbench/internal/engine"
	"github.com/embedbench/embedbench/internal/gpu"
)

// Config is what the server needs before the model is loaded.
type Config struct {
	EngineName string // "sequential" or "continuous"
	ModelID    string // the model's name in responses
	// MaxConcurrentRequests is how many requests are admitted at once; beyond it the answer is
	// 429 at once.
	MaxConcurrentRequests int
	MaxClientBatchSize    int    // inputs in one request
	MaxBodyBytes          int64  // request body limit
	APIKey                string // when set, work endpoints want "Authorization: Bearer <key>"
	// BodyReadTimeout bounds the time from a request's arrival to the last byte of its body; a
	// slower upload is answered 408 and its connection closed. The body is read before the
	// request is admitted, so uploads never hold admission slots.
	BodyReadTimeout   time.Duration
	HeaderReadTimeout time.Duration // from a connection's first byte to the end of its headers
	IdleTimeout       time.Duration // how long a keep-alive connection may wait for its next request
	// WriteTimeout bounds the writing of one answer, from its first byte; model work before it
	// is not counted.
	WriteTimeout   time.Duration
	MaxHeaderBytes int // beyond it the answer is 431
	// MaxConnections bounds open connections, MaxConnectionsPerClient those from one client
	// address (0: unbounded). A connection beyond either is answered 503 or 429 and closed.
	MaxConnections          int
	MaxConnectionsPerClient int
	// MaxConnectionAge, when set, closes a kept-alive connection after the first answer past
	// this age ("Connection: close"), so that clients reconnect and a load balancer can send
	// them to replicas added since (gRPC's MaxConnectionAge, Envoy's max_connection_duration).
	MaxConnectionAge time.Duration
	// ShutdownTimeout bounds how long Serve waits for requests in flight after ctx ends.
	ShutdownTimeout time.Duration
	GPU             *gpu.Monitor // optional: NVML series on /metrics
	Logger          *slog.Logger
}

// Backend is what the server serves once the model is warm.
type Backend struct {
	Engine            engine.Engine
	Dim               int
	VocabSize         int
	MaxSequenceLength int
	// Tokenize serves /tokenize: ids (specials added when asked), byte offsets when asked,
	// and the length before truncation (maxLength 0 = none).
	Tokenize func(text string, addSpecial, offsets bool, maxLength int) (ids []int32, spans [][2]int, total int)
	Info     Info
	// StepSlots are the step sizes the model compiled (none where steps are sized to what is
	// queued): embedbench_step_slots gets a bucket for each.
	StepSlots []int
}

// Info describes the running model in /health and /v1/models.
type Info struct {
	Device  string
	DType   string
	Pooling string
	// PoolingSource is "model", "flag" or "default" (api.HealthResponse).
	PoolingSource string
	IncludePrompt bool
	Dense         []string
	// Normalize says the model's own vectors are unit length (a Normalize module).
	Normalize bool
	Prompts   map[string]string
	// DefaultPrompt names the prompt applied when a request names none ("" = none).
	DefaultPrompt string
	// STLayout is "classic" or "current" for a sentence-transformers checkpoint, else "".
	STLayout     string
	Weights      string
	Replicas     int
	GPUAvailable bool
}

// Server serves embeddings over HTTP. Create it with New, start Serve (it answers /health with
// 503 "loading" at once), and call SetReady when the model is warm.
type Server struct {
	cfg      Config
	log      *slog.Logger
	started  time.Time
	backend  atomic.Pointer[Backend]
	admitted chan struct{} // a token per admitted request
	conns    *connLimits
	stopping atomic.Bool
	metrics  *metrics
	handler  http.Handler
	// probeHandler serves /health and /metrics alone (ServeProbes).
	probeHandler http.Handler
	bufs         sync.Pool
}

// Defaults for the connection-level limits left zero in Config.
const (
	DefaultBodyReadTimeout   = 30 * time.Second
	DefaultHeaderReadTimeout = 10 * time.Second
	DefaultIdleTimeout       = time.Minute
	DefaultWriteTimeout      = 30 * time.Second
	DefaultMaxHeaderBytes    = 64 << 10
)

// degradedFor is how long /health reports "degraded" after a device error.
const degradedFor = time.Minute

// New builds a server; nothing listens until Serve.
func New(cfg Config) (*Server, error) {
	if cfg.MaxConcurrentRequests < 1 {
		return nil, fmt.Errorf("max concurrent requests %d must be positive", cfg.MaxConcurrentRequests)
	}
	if cfg.MaxClientBatchSize < 1 {
		return nil, fmt.Errorf("max client batch size %d must be positive", cfg.MaxClientBatchSize)
	}
	if cfg.MaxBodyBytes < 1 {
		return nil, fmt.Errorf("max body bytes %d must be positive", cfg.MaxBodyBytes)
	}
	if cfg.MaxConnections < 0 || cfg.MaxConnectionsPerClient < 0 || cfg.MaxConnectionAge < 0 {
		return nil, fmt.Errorf("connection limits %d, %d and %s must not be negative", cfg.MaxConnections, cfg.MaxConnectionsPerClient, cfg.MaxConnectionAge)
	}
	defaults := []struct {
		d   *time.Duration
		def time.Duration
	}{{&cfg.ShutdownTimeout, time.Minute}, {&cfg.BodyReadTimeout, DefaultBodyReadTimeout}, {&cfg.HeaderReadTimeout, DefaultHeaderReadTimeout}, {&cfg.IdleTimeout, DefaultIdleTimeout}, {&cfg.WriteTimeout, DefaultWriteTimeout}}
	for _, d := range defaults {
		if *d.d <= 0 {
			*d.d = d.def
		}
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger, started: time.Now(), admitted: make(chan struct{}, cfg.MaxConcurrentRequests)}
	s.metrics = newMetrics(s)
	s.conns = newConnLimits(cfg.MaxConnections, cfg.MaxConnectionsPerClient, s.metrics.connRefused)
	s.handler = s.routes()
	s.probeHandler = s.probeRoutes()
	return s, nil
}

// ServeProbes answers GET /health and /metrics on ln, outside the connection limits that
// Serve's clients may fill: a kubelet opens a new connection for every probe, and a server
// holding --max-connections would otherwise fail its probes and be restarted for being busy
// (TEI serves its metrics on a port of their own too). Other paths get 404. It stops when
// ctx ends: start it before Serve and end it after Serve returns, so that /health says
// "shutting_down" throughout the drain.
func (s *Server) ServeProbes(ctx context.Context, ln net.Listener) error {
	hs := s.httpServer(s.probeHandler)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	s.log.Info("answering /health and /metrics", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("serving probes on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	_ = hs.Close() // probes are short and idempotent: nothing to drain
	<-errc
	return nil
}

// httpServer is net/http's server for handler, with the configured header, idle and size bounds.
func (s *Server) httpServer(handler http.Handler) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: s.cfg.HeaderReadTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    s.cfg.MaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
}

// connOpenedKey keys a request's context to when its connection was accepted.
type connOpenedKey struct{}

// agedOut says r's connection is older than MaxConnectionAge.
func (s *Server) agedOut(r *http.Request) bool {
	if s.cfg.MaxConnectionAge <= 0 {
		return false // off: no context lookup and no clock read on every request
	}
	opened, ok := r.Context().Value(connOpenedKey{}).(time.Time)
	return ok && time.Since(opened) > s.cfg.MaxConnectionAge
}

// SetReady makes the server answer work requests with b.
func (s *Server) SetReady(b Backend) {
	s.metrics.stepSlots.use(b.StepSlots)
	s.backend.Store(&b)
}

// ObserveBatch records one device batch in the metrics; pass it as engine.Config.OnBatch.
func (s *Server) ObserveBatch(b engine.BatchReport) { s.metrics.observeBatch(b) }

// Handler is the server's whole HTTP surface.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve answers on ln, under the connection limits, until ctx ends, then stops accepting, answers every request already
// received (up to ShutdownTimeout) and returns nil. The engine is the caller's to close after.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	defer s.metrics.gpu.close()
	hs := s.httpServer(s.handler)
	hs.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, connOpenedKey{}, time.Now())
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(&listener{Listener: ln, limits: s.conns}) }()
	s.log.Info("listening", "addr", ln.Addr().String(), "engine", s.cfg.EngineName)
	select {
	case err := <-errc:
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	s.stopping.Store(true)
	s.log.Info("shutting down: answering requests in flight", "in_flight", len(s.admitted))
	shutdownCtx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	if err := hs.Shutdown(shutdownCtx); err != nil {
		// Close what is left, so that its requests' contexts end (the engine drops their
		// queued work) and shutdown takes the time it was given, not as long as they run.
		_ = hs.Close()
		return fmt.Errorf("shutting down with requests still in flight after %s: %w", s.cfg.ShutdownTimeout, err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	}
	s.log.Info("shut down cleanly")
	return nil
}
