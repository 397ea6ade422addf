package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/embedbench/embedbench/internal/demo"
	"github.com/embedbench/embedbench/internal/gpu"
	"github.com/embedbench/embedbench/internal/hub"
	"github.com/embedbench/embedbench/internal/modernbert"
	"github.com/embedbench/embedbench/internal/server"
	"github.com/embedbench/embedbench/internal/service"
	"github.com/embedbench/embedbench/internal/tokenizer"
)

func init() {
	register("serve", "serve embeddings over HTTP (/embed, OpenAI /v1/embeddings, /tokenize, /health, /metrics) with the sequential or continuous engine", runServe)
}

const (
	engineSequential = service.Sequential
	engineContinuous = service.Continuous
)

// serveFlags are `embedbench serve`'s flags.
type serveFlags struct {
	engine          string
	pprofAddr       string
	host            string
	port            int
	metricsPort     int
	model           string
	servedName      string
	weights         string
	seed            int64
	modelSize       string
	device          string
	xlaPlugin       string
	replicas        int
	replicasPerGPU  int
	dtype           string
	pooling         string
	maxConcurrent   int
	maxBatchTokens  int
	stepSlots       []int
	maxClientBatch  int
	batchSize       int
	maxSeqLen       int
	maxBodyBytes    int64
	apiKey          string
	shutdownTimeout time.Duration
	memoryFraction  float64
	busyBatchCut    float64
	busyBatchCutSet bool // given on the command line, not the default
	conn            connFlags
}

// connFlags bound what one connection, and one client, may hold.
type connFlags struct {
	bodyReadTimeout, headerReadTimeout, idleTimeout, writeTimeout, maxAge time.Duration
	maxHeaderBytes, maxConns, maxConnsPerClient                           int
}

func runServe(ctx context.Context, args []string) error {
	f, err := parseServeFlags(args)
	if err != nil {
		return err
	}
	if f.port == 0 {
		f.port = 8000
		if f.engine == engineContinuous {
			f.port = 8001
		}
	}
	return serve(ctx, f)
}

func sizeNames() string {
	names := make([]string, len(demo.Sizes))
	for i, s := range demo.Sizes {
		names[i] = s.Name
	}
	return strings.Join(names, ", ")
}

// parseServeFlags reads serve's flags and refuses bad ones (errUsage) before anything loads.
func parseServeFlags(args []string) (serveFlags, error) {
	fs := newFlagSet("serve")
	var f serveFlags
	fs.StringVar(&f.engine, "engine", engineContinuous, "sequential (one request at a time, fixed padded batches: what an HF/LangChain service does) or continuous (token-budget batches across requests: what vLLM does)")
	fs.StringVar(&f.host, "host", "127.0.0.1", "address to listen on")
	fs.IntVar(&f.port, "port", 0, "port (default 8000 for sequential, 8001 for continuous, as in the seed)")
	fs.IntVar(&f.metricsPort, "metrics-port", 0, "also answer GET /health and /metrics on this port, outside the connection limits, for Kubernetes probes and Prometheus (as TEI's --prometheus-port); 0: off")
	fs.StringVar(&f.model, "model", demo.DefaultModelID, "model directory, hub cache snapshot or hub id (downloaded on demand) with config.json and tokenizer.json")
	fs.StringVar(&f.servedName, "served-model-name", "", "model name in responses and /health (default: --model, with the size when scaled)")
	fs.StringVar(&f.weights, "weights", "auto", "auto (the checkpoint's weights when the model has them and --model-size is base, else random), random, or real")
	fs.Int64Var(&f.seed, "seed", 0, "seed of random weights")
	fs.StringVar(&f.modelSize, "model-size", "base", "base (the checkpoint's configuration) or a scaled random model for CPUs: "+sizeNames())
	fs.StringVar(&f.device, "device", "auto", "auto (cuda when a GPU and the XLA PJRT plugin are found, else cpu), cpu (a native forward pass over oneDNN or OpenBLAS when one loads, else pure Go) or cuda")
	fs.StringVar(&f.xlaPlugin, "xla-plugin", "", "PJRT plugin .so for cuda (default $"+modernbert.EnvXLAPlugin+" or the JAX CUDA plugin found on disk)")
	fs.IntVar(&f.replicas, "replicas", 0, "GPUs to run a replica on (continuous engine; default: every GPU on cuda; 1 on cpu); /health and the metrics count replicas × --replicas-per-gpu")
	fs.IntVar(&f.replicasPerGPU, "replicas-per-gpu", 1, "replicas on each GPU, each on a device stream of its own, so that the GPU runs one's kernels in the gaps between another's (continuous engine on cuda; costs their memory and start-up again; on an H200 +2.9% for 32-passage requests at saturation, -3.8% for one-text requests from 256 clients, run 71)")
	fs.StringVar(&f.dtype, "dtype", "auto", "auto (bfloat16 for continuous on cuda, else float32), float32 or bfloat16")
	fs.StringVar(&f.pooling, "pooling", "", "override the model's pooling: mean, cls, max, lasttoken, mean_sqrt_len_tokens or weightedmean (default: what its sentence-transformers files say, else mean); /health says which")
	fs.IntVar(&f.maxConcurrent, "max-concurrent-requests", 512, "requests admitted at once; beyond it the answer is 429 at once")
	fs.IntVar(&f.maxBatchTokens, "max-batch-tokens", 0, "token slots of the largest device step (0: 16384 on cuda, 2048 on cpu)")
	fs.Func("step-slots", "the ladder of device step sizes in token slots, comma-separated, up to --max-batch-tokens: work runs on the smallest that holds it (default on cuda: 1024,2048,3072,4096, then every eighth of the largest; powers of two from 64 on cpu)", intListFlag(&f.stepSlots))
	fs.Float64Var(&f.busyBatchCut, "busy-batch-cut", service.DefaultBusyBatchCut, "continuous engine: a busy replica's batch that spills a little over a step size runs on the size below when that is fuller, leaving at most this share of its tokens to the next batch (0: never; 0.15 gave 9% more requests/s from 256 one-text clients on an H200, the open loop's tail no longer)")
	fs.IntVar(&f.maxClientBatch, "max-client-batch-size", 1024, "inputs in one request; more is refused with 413")
	fs.IntVar(&f.batchSize, "batch-size", 32, "sequential engine: texts per padded batch (sentence-transformers' default)")
	fs.IntVar(&f.maxSeqLen, "max-sequence-length", 0, "longest sequence in tokens, [CLS]/[SEP] and any prompt included (0: the model's maximum, its sentence-transformers max_seq_length when it has one; on cpu at most 512, where compiling 8192-token shapes takes minutes); longer texts are truncated, or refused when the request says \"truncate\": false")
	fs.Int64Var(&f.maxBodyBytes, "max-body-bytes", 32<<20, "request body limit; more is refused with 413")
	fs.StringVar(&f.apiKey, "api-key", os.Getenv("EMBEDBENCH_API_KEY"), "bearer token the work endpoints require (default $EMBEDBENCH_API_KEY; empty: none)")
	fs.DurationVar(&f.conn.bodyReadTimeout, "body-read-timeout", server.DefaultBodyReadTimeout, "time from a request's arrival to the last byte of its body; a slower upload gets 408 and its connection is closed")
	fs.DurationVar(&f.conn.headerReadTimeout, "header-read-timeout", server.DefaultHeaderReadTimeout, "time to receive a request's headers")
	fs.DurationVar(&f.conn.idleTimeout, "idle-timeout", server.DefaultIdleTimeout, "how long an idle keep-alive connection is kept open")
	fs.DurationVar(&f.conn.maxAge, "max-connection-age", 0, "close a kept-alive connection after its first answer past this age, so that clients reconnect and a load balancer spreads them over replicas added since (0: never)")
	fs.DurationVar(&f.conn.writeTimeout, "write-timeout", server.DefaultWriteTimeout, "how long writing one answer may take, from its first byte (a client that does not read is cut)")
	fs.IntVar(&f.conn.maxHeaderBytes, "max-header-bytes", server.DefaultMaxHeaderBytes, "request header limit; more is refused with 431")
	fs.StringVar(&f.pprofAddr, "pprof-addr", "", "serve Go's profiler (/debug/pprof/) on this address, e.g. 127.0.0.1:6060, apart from the API (default: off)")
	fs.IntVar(&f.conn.maxConns, "max-connections", 4096, "open connections in all; one more is answered 503 and closed (0: no limit)")
	fs.IntVar(&f.conn.maxConnsPerClient, "max-connections-per-client", 1024, "open connections from one client address; one more is answered 429 and closed (0: no limit; behind a proxy every client has its address)")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", time.Minute, "on SIGTERM, how long to wait for requests in flight")
	fs.Float64Var(&f.memoryFraction, "memory-fraction", 0, "cap on the share of GPU memory XLA may use per replica (0: no cap; preallocation is off); with --replicas-per-gpu, for each of them")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: embedbench serve [--engine sequential|continuous] [--port N] [--model DIR|ID] [--weights auto|random|real] [--device auto|cpu|cuda] ...")
		fmt.Fprintln(fs.Output(), "\nOn a CPU, try: embedbench serve --model-size tiny --weights random --device cpu")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, false); err != nil {
		return f, err
	}
	fs.Visit(func(fl *flag.Flag) { f.busyBatchCutSet = f.busyBatchCutSet || fl.Name == "busy-batch-cut" })
	if err := f.check(); err != nil {
		fmt.Fprintln(fs.Output(), err)
		return f, errUsage
	}
	if f.engine == engineSequential {
		f.busyBatchCut = 0 // the default's; no batch in flight to cut beside
	}
	return f, nil
}

func (f *serveFlags) check() error {
	switch {
	case f.engine != engineSequential && f.engine != engineContinuous:
		return fmt.Errorf("--engine %q: want sequential or continuous", f.engine)
	case f.weights != "auto" && f.weights != "random" && f.weights != "real":
		return fmt.Errorf("--weights %q: want auto, random or real", f.weights)
	case f.port < 0 || f.port > 65535:
		return fmt.Errorf("--port %d: want 0..65535", f.port)
	case f.metricsPort < 0 || f.metricsPort > 65535 || (f.metricsPort != 0 && f.metricsPort == f.port):
		return fmt.Errorf("--metrics-port %d: want 1..65535, not --port's, or 0 for none", f.metricsPort)
	case f.maxConcurrent < 1, f.maxClientBatch < 1, f.batchSize < 1, f.maxBodyBytes < 1:
		return errors.New("--max-concurrent-requests, --max-client-batch-size, --batch-size and --max-body-bytes must be positive")
	case f.maxBatchTokens < 0 || f.maxSeqLen < 0 || f.replicas < 0:
		return errors.New("--max-batch-tokens, --max-sequence-length and --replicas must not be negative")
	case f.replicasPerGPU < 1:
		return errors.New("--replicas-per-gpu must be positive")
	case f.engine == engineSequential && f.replicasPerGPU > 1:
		return errors.New("--replicas-per-gpu: the sequential engine runs one model, as an HF service does")
	case f.device == "cpu" && f.replicasPerGPU > 1:
		return errors.New("--replicas-per-gpu: on a CPU the replicas would only share its cores")
	case f.memoryFraction*float64(f.replicasPerGPU) > 1:
		return fmt.Errorf("--memory-fraction %g for each of %d replicas on a GPU: more than its memory", f.memoryFraction, f.replicasPerGPU)
	case f.conn.bodyReadTimeout <= 0, f.conn.headerReadTimeout <= 0, f.conn.idleTimeout <= 0, f.conn.writeTimeout <= 0, f.conn.maxHeaderBytes < 1:
		return errors.New("--body-read-timeout, --header-read-timeout, --idle-timeout, --write-timeout and --max-header-bytes must be positive")
	case f.conn.maxConns < 0, f.conn.maxConnsPerClient < 0, f.conn.maxAge < 0:
		return errors.New("--max-connections, --max-connections-per-client and --max-connection-age must not be negative")
	case f.engine == engineSequential && f.replicas > 1:
		return errors.New("--replicas: the sequential engine runs one model, as an HF service does")
	case f.busyBatchCut < 0 || f.busyBatchCut > 1 || math.IsNaN(f.busyBatchCut):
		return fmt.Errorf("--busy-batch-cut %g: want 0..1", f.busyBatchCut)
	case f.engine == engineSequential && f.busyBatchCutSet && f.busyBatchCut > 0:
		return errors.New("--busy-batch-cut: the sequential engine runs one request at a time, with no batch in flight to cut beside")
	}
	if _, err := f.size(); err != nil {
		return fmt.Errorf("--model-size: %w", err)
	}
	if f.modelSize != "base" && f.weights == "real" {
		return errors.New("--weights real needs --model-size base: a checkpoint's weights only fit its own size")
	}
	// Checked again where they are applied; here so that a typo fails before a download.
	if f.dtype != "auto" {
		if _, err := modernbert.ParseDType(f.dtype); err != nil {
			return fmt.Errorf("--dtype: %w", err)
		}
	}
	if f.pooling != "" {
		if _, err := modernbert.ParsePooling(f.pooling); err != nil {
			return fmt.Errorf("--pooling: %w", err)
		}
	}
	return nil
}

func (f *serveFlags) size() (demo.Size, error) { return demo.SizeByName(f.modelSize) }

// serve listens at once (so /health answers "loading" while the model compiles), loads the
// model replicas and the engine, and serves until ctx ends; then it answers what it has
// received, and closes the engine and the models.
func serve(ctx context.Context, f serveFlags) error {
	mon, err := gpu.Open()
	if err != nil {
		slog.Warn("GPU telemetry unavailable", "err", err)
		mon = nil
	} else {
		defer mon.Close()
	}
	backend, err := f.backend(mon)
	if err != nil {
		return err
	}
	name := f.servedName
	if name == "" {
		name = f.model
		if st, err := os.Stat(f.model); err == nil && st.IsDir() {
			name = filepath.Base(filepath.Clean(f.model))
		}
		if f.modelSize != "base" {
			name += "-" + f.modelSize
		}
	}
	srv, err := server.New(server.Config{
		EngineName: f.engine, ModelID: name, MaxConcurrentRequests: f.maxConcurrent,
		MaxClientBatchSize: f.maxClientBatch, MaxBodyBytes: f.maxBodyBytes, APIKey: f.apiKey,
		ShutdownTimeout: f.shutdownTimeout, GPU: mon, Logger: slog.Default(),
		BodyReadTimeout: f.conn.bodyReadTimeout, HeaderReadTimeout: f.conn.headerReadTimeout,
		IdleTimeout: f.conn.idleTimeout, WriteTimeout: f.conn.writeTimeout, MaxHeaderBytes: f.conn.maxHeaderBytes,
		MaxConnections: f.conn.maxConns, MaxConnectionsPerClient: f.conn.maxConnsPerClient, MaxConnectionAge: f.conn.maxAge,
	})
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(f.host, strconv.Itoa(f.port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	// The probes answer until serve returns, after the engine has closed: /health says
	// "shutting_down" through the whole drain.
	probesCtx, stopProbes := context.WithCancel(context.Background())
	defer stopProbes()
	if f.metricsPort != 0 {
		paddr := net.JoinHostPort(f.host, strconv.Itoa(f.metricsPort))
		pln, err := net.Listen("tcp", paddr)
		if err != nil {
			ln.Close()
			return fmt.Errorf("listening on %s (--metrics-port): %w", paddr, err)
		}
		go func() {
			if err := srv.ServeProbes(probesCtx, pln); err != nil {
				slog.Error("probe port stopped", "err", err)
			}
		}()
	}
	serveCtx, stopServing := context.WithCancel(ctx)
	defer stopServing()
	if f.pprofAddr != "" {
		if err := servePprof(serveCtx, f.pprofAddr); err != nil {
			return err
		}
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(serveCtx, ln) }()

	loadStart := time.Now()
	loaded, err := f.load(ctx, backend, mon, srv)
	if err != nil {
		stopServing()
		<-served
		if ctx.Err() != nil {
			return nil // asked to stop while loading: nothing was in flight
		}
		return err
	}
	defer loaded.Close()
	srv.SetReady(loaded.Backend)
	info := loaded.Backend.Info
	slog.Info("ready", "engine", f.engine, "url", "http://"+ln.Addr().String(), "model", name,
		"device", info.Device, "dtype", info.DType, "weights", info.Weights,
		"replicas", info.Replicas, "max_sequence_length", loaded.Backend.MaxSequenceLength,
		"load_and_warm_up", time.Since(loadStart).Round(time.Millisecond))
	return <-served
}

// backend picks modernbert's backend for --device and --xla-plugin.
func (f *serveFlags) backend(mon *gpu.Monitor) (string, error) {
	plugin := f.xlaPlugin
	if plugin == "" {
		plugin = modernbert.FindXLAPlugin()
	}
	switch f.device {
	case "cpu":
		return "simplego", nil
	case "cuda", "gpu":
		if plugin == "" {
			return "", fmt.Errorf("--device cuda: no PJRT plugin found: pass --xla-plugin PATH or set %s", modernbert.EnvXLAPlugin)
		}
		return "xla:" + plugin, nil
	case "auto":
		if plugin != "" && mon != nil && mon.Available() {
			return "xla:" + plugin, nil
		}
		return "simplego", nil
	}
	return "", fmt.Errorf("--device %q: want auto, cpu or cuda", f.device)
}

func (f *serveFlags) load(ctx context.Context, backend string, mon *gpu.Monitor, srv *server.Server) (*service.Service, error) {
	onGPU := strings.HasPrefix(backend, "xla:")
	if f.replicasPerGPU > 1 && !onGPU {
		return nil, fmt.Errorf("--replicas-per-gpu %d: no GPU found (--device %s), and on a CPU the replicas would only share its cores", f.replicasPerGPU, f.device)
	}
	size, _ := f.size()
	random := f.weights == "random" || (f.weights == "auto" && size.Name != "base")
	client := hub.NewClientFromEnv()
	// With --weights auto, a local directory without weights means random weights; a hub id
	// means the checkpoint, downloaded if needed.
	if f.weights == "auto" && !random {
		if st, err := os.Stat(f.model); err == nil && st.IsDir() && !hasWeightFiles(f.model) {
			random = true
		}
	}
	dir, err := client.ResolveModel(ctx, f.model, !random)
	if err != nil {
		return nil, fmt.Errorf("resolving model %s: %w", f.model, err)
	}
	stm, err := readST(dir)
	if err != nil {
		return nil, err
	}
	dir = stm.modelDir
	cfg, err := modernbert.LoadConfig(dir)
	if err != nil {
		return nil, err
	}
	if size.Name != "base" {
		cfg = cfg.Scaled(size.Layers, size.Hidden, size.Heads, size.Intermediate)
		if p := stm.pipeline; p != nil && (len(p.Dense) > 0 || p.PoolingDim != 0) {
			// A scaled random model has another hidden size: the checkpoint's Dense weights cannot apply.
			slog.Warn("scaled random model: the checkpoint's Dense layers are left out", "dense_layers", len(p.Dense))
			p.Dense, p.PoolingDim = nil, 0
		}
	}
	tok, err := tokenizer.LoadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		return nil, err
	}
	var w *modernbert.Weights
	if random {
		w = modernbert.RandomWeights(cfg, f.seed)
		slog.Warn("serving RANDOM weights: vectors are meaningless, speed is real", "seed", f.seed, "config", cfg.Summary())
	} else if w, err = modernbert.LoadWeights(dir, cfg); err != nil {
		return nil, err
	}

	// The model normalises only when it ends in a Normalize module; the server normalises per
	// request ("normalize", and always on /v1/embeddings), so "normalize": false returns the
	// model's own vectors.
	opts := modernbert.Options{
		Backend: backend, MaxBatchTokens: f.maxBatchTokens, StepSlots: f.stepSlots, MaxSequenceLength: f.maxSeqLen,
		MemoryFraction: f.memoryFraction,
	}
	if err := stm.apply(cfg, f.pooling, &opts); err != nil {
		return nil, err
	}
	if f.maxSeqLen == 0 && !onGPU {
		limit := opts.MaxSequenceLength
		if limit == 0 {
			limit = cfg.MaxPositionEmbeddings
		}
		if limit > 512 {
			slog.Warn("on cpu texts are cut at 512 tokens, below the model's limit: pass --max-sequence-length to serve it whole", "model_max_sequence_length", limit)
			limit = 512
		}
		opts.MaxSequenceLength = limit
	}
	stm.logLoaded(opts)
	switch {
	case f.dtype != "auto":
		if opts.DType, err = modernbert.ParseDType(f.dtype); err != nil {
			return nil, fmt.Errorf("--dtype: %w", err)
		}
	case f.engine == engineContinuous && onGPU:
		opts.DType = modernbert.BFloat16
	default:
		opts.DType = modernbert.Float32 // HF's default, and simplego has no fast bf16
	}
	replicas := f.replicas
	if replicas == 0 {
		replicas = 1
		if onGPU && mon != nil && mon.Available() {
			if samples, err := mon.Sample(); err == nil && len(samples) > 0 {
				replicas = len(samples)
			}
		}
	}
	return service.Build(ctx, service.Spec{
		Engine: f.engine, Config: cfg, Weights: w, Tokenizer: tok, Model: opts,
		Prompts: stm.prompts(), PoolingSource: stm.poolingSource, STLayout: stm.layout(),
		Replicas: replicas, ReplicasPerGPU: f.replicasPerGPU, BatchSize: f.batchSize, BusyBatchCut: f.busyBatchCut,
		MaxQueuedSequences: f.maxConcurrent * f.maxClientBatch,
		OnBatch:            srv.ObserveBatch,
		GPUAvailable:       mon != nil && mon.Available(),
	})
}

func hasWeightFiles(dir string) bool {
	for _, name := range []string{"model.safetensors", "model.safetensors.index.json"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

// servePprof serves net/http/pprof on its own listener until ctx ends, so that profiling a
// loaded server needs no route on the API's port.
func servePprof(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--pprof-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() { _ = srv.Serve(ln) }()
	slog.Info("profiler", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	return nil
}
