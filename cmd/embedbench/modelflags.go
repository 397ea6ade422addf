package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/embedbench/embedbench/internal/demo"
	"github.com/embedbench/embedbench/internal/hub"
	"github.com/embedbench/embedbench/internal/modernbert"
	"github.com/embedbench/embedbench/internal/tokenizer"
)

// modelFlags are the flags that choose and place a ModernBERT model; embed and bench-model
// share them.
type modelFlags struct {
	model          string
	tokenizer      string
	config         string
	weights        string
	seed           int64
	scale          string
	modelSize      string
	device         string
	deviceIndex    int
	xlaPlugin      string
	dtype          string
	pooling        string
	normalize      optionalBool
	maxLength      int
	batchTokens    int
	stepSlots      []int
	packedRow      int
	memoryFraction float64
	client         int // which PJRT client of the process (modernbert.Options.Client); not a flag
}

func addModelFlags(fs *flag.FlagSet, f *modelFlags, defaultMaxLength int) {
	fs.StringVar(&f.model, "model", "", "model directory, hub cache snapshot or hub id (org/name) with config.json and (for texts) tokenizer.json")
	fs.StringVar(&f.tokenizer, "tokenizer", "", "tokenizer.json, or a folder holding one, to use instead of the model's")
	fs.StringVar(&f.config, "config", "", "config.json to use instead of the model's (e.g. a different size with --weights random)")
	fs.StringVar(&f.weights, "weights", "model", "model (or real, serve's name): the model's safetensors; random: random weights of the config's shapes")
	fs.Int64Var(&f.seed, "seed", 0, "seed of --weights random")
	fs.StringVar(&f.scale, "scale", "", "with --weights random, a smaller model of the same architecture: LAYERS,HIDDEN,HEADS,INTERMEDIATE (e.g. 4,256,4,384)")
	fs.StringVar(&f.modelSize, "model-size", "", "one of serve's and demo's sizes, "+sizeNames()+": the smaller ones need --weights random, base is the config's shapes (default: the config's shapes, or --scale)")
	fs.StringVar(&f.device, "device", "auto", "cpu (a native forward pass over oneDNN or OpenBLAS when one loads, else pure Go), cuda (XLA with the CUDA PJRT plugin) or auto")
	fs.IntVar(&f.deviceIndex, "device-index", 0, "which GPU (cuda)")
	fs.StringVar(&f.xlaPlugin, "xla-plugin", "", "PJRT plugin .so for cuda (default $"+modernbert.EnvXLAPlugin+" or the JAX CUDA plugin found on disk)")
	fs.StringVar(&f.dtype, "dtype", "float32", "float32 or bfloat16")
	fs.StringVar(&f.pooling, "pooling", "", "override the model's pooling: mean, cls, max, lasttoken, mean_sqrt_len_tokens or weightedmean (default: its sentence-transformers files', else mean over all tokens, [CLS]/[SEP] included)")
	fs.Var(&f.normalize, "normalize", "L2-normalise the vectors (default: as the model's sentence-transformers files say, a Normalize module; a bare model: true)")
	fs.IntVar(&f.maxLength, "max-length", defaultMaxLength, "longest sequence in tokens, [CLS]/[SEP] and any prompt included; longer texts are truncated (0: the model's maximum, its sentence-transformers max_seq_length when it has one)")
	fs.IntVar(&f.batchTokens, "batch-tokens", 0, "token slots of the largest device step (0: 16384 on cuda, 2048 on cpu)")
	fs.Func("step-slots", "the ladder of device step sizes in token slots, comma-separated, up to --batch-tokens (default on cuda: 1024,2048,3072,4096, then every eighth of the largest; powers of two from 64 on cpu)", intListFlag(&f.stepSlots))
	fs.IntVar(&f.packedRow, "packed-row", 0, "row length short sequences are packed into (0: 256)")
	fs.Float64Var(&f.memoryFraction, "memory-fraction", 0, "cap on the share of GPU memory XLA may use (0: no cap; preallocation is always off)")
}

// backend maps --device and --xla-plugin to modernbert's backend string.
func (f *modelFlags) backend() (string, error) {
	switch f.device {
	case "cpu":
		return "simplego", nil
	case "cuda", "gpu":
		plugin := f.xlaPlugin
		if plugin == "" {
			plugin = modernbert.FindXLAPlugin()
		}
		if plugin == "" {
			return "", fmt.Errorf("--device cuda: no PJRT plugin: pass --xla-plugin PATH or set %s", modernbert.EnvXLAPlugin)
		}
		return "xla:" + plugin, nil
	case "auto", "":
		if f.xlaPlugin != "" {
			return "xla:" + f.xlaPlugin, nil
		}
		return "", nil
	}
	return "", fmt.Errorf("--device %q: want cpu, cuda or auto", f.device)
}

// optionalBool is a boolean flag that remembers whether it was given.
type optionalBool struct{ value, set bool }

func (b *optionalBool) String() string   { return strconv.FormatBool(b.value) }
func (b *optionalBool) IsBoolFlag() bool { return true }
func (b *optionalBool) Set(s string) error {
	v, err := strconv.ParseBool(s)
	if err != nil {
		return fmt.Errorf("%q: want true or false", s)
	}
	b.value, b.set = v, true
	return nil
}

// load resolves the model, reads its config, weights and tokenizer, and builds the model with
// the given layouts compiled. The tokenizer is nil when the model has none and --tokenizer is
// not given (a test model, say, fed token ids).
func (f *modelFlags) load(ctx context.Context, layouts ...modernbert.Layout) (*modernbert.Model, *tokenizer.Tokenizer, error) {
	m, tok, _, err := f.loadST(ctx, layouts...)
	return m, tok, err
}

// loadST is load that also returns what the model's sentence-transformers files say (its
// prompts, for texts).
func (f *modelFlags) loadST(ctx context.Context, layouts ...modernbert.Layout) (*modernbert.Model, *tokenizer.Tokenizer, stModel, error) {
	var none stModel
	if f.model == "" {
		return nil, nil, none, fmt.Errorf("--model is required (it gives the tokenizer, and the config unless --config)")
	}
	random := false
	switch f.weights {
	case "model", "real":
	case "random":
		random = true
	default:
		return nil, nil, none, fmt.Errorf("--weights %q: want model, real or random", f.weights)
	}
	scaledBy, scale, err := f.scaleSpec()
	if err != nil {
		return nil, nil, none, err
	}
	if scale != "" && !random {
		return nil, nil, none, fmt.Errorf("%s needs --weights random: a checkpoint's weights only fit its own shapes", scaledBy)
	}
	opts := modernbert.Options{DeviceIndex: f.deviceIndex, MaxSequenceLength: f.maxLength,
		MaxBatchTokens: f.batchTokens, StepSlots: f.stepSlots, PackedRowLength: f.packedRow, MemoryFraction: f.memoryFraction, Layouts: layouts, Client: f.client}
	if opts.Backend, err = f.backend(); err != nil {
		return nil, nil, none, err
	}
	if opts.DType, err = modernbert.ParseDType(f.dtype); err != nil {
		return nil, nil, none, fmt.Errorf("--dtype: %w", err)
	}
	dir, err := hub.NewClientFromEnv().ResolveModel(ctx, f.model, !random)
	if err != nil {
		return nil, nil, none, err
	}
	stm, err := readST(dir)
	if err != nil {
		return nil, nil, none, err
	}
	dir = stm.modelDir
	configPath := f.config
	if configPath == "" {
		configPath = filepath.Join(dir, "config.json")
	}
	cfg, err := modernbert.LoadConfig(configPath)
	if err != nil {
		return nil, nil, none, err
	}
	if scale != "" {
		if cfg, err = scaleConfig(cfg, scale); err != nil {
			return nil, nil, none, err
		}
		if p := stm.pipeline; p != nil && (len(p.Dense) > 0 || p.PoolingDim != 0) {
			slog.Warn("scaled random model: the checkpoint's Dense layers are left out", "dense_layers", len(p.Dense))
			p.Dense, p.PoolingDim = nil, 0
		}
	}
	if err := stm.apply(cfg, f.pooling, &opts); err != nil {
		return nil, nil, none, err
	}
	// A bare model's vectors are normalised unless asked not to; a sentence-transformers model
	// normalises when it has a Normalize module. --normalize decides either way.
	opts.Normalize = opts.Normalize || stm.pipeline == nil
	if f.normalize.set {
		if stm.pipeline != nil && stm.pipeline.Normalize && !f.normalize.value {
			slog.Warn("--normalize=false leaves out the model's Normalize module: sentence-transformers' encode() always applies it, so these vectors are not what it gives")
		}
		opts.Normalize = f.normalize.value
	}
	if opts.MaxSequenceLength == 0 || opts.MaxSequenceLength > cfg.MaxPositionEmbeddings {
		opts.MaxSequenceLength = cfg.MaxPositionEmbeddings
	}
	stm.logLoaded(opts)
	tok, err := f.loadTokenizer(dir)
	if err != nil {
		return nil, nil, none, err
	}
	var w *modernbert.Weights
	if random {
		w = modernbert.RandomWeights(cfg, f.seed)
	} else if w, err = modernbert.LoadWeights(dir, cfg); err != nil {
		return nil, nil, none, err
	}
	m, err := modernbert.New(ctx, cfg, w, opts)
	if err != nil {
		return nil, nil, none, err
	}
	info := m.Info()
	slog.Info("model ready", "backend", info.Backend, "device", info.Device, "dtype", info.DType, "pooling", info.Pooling,
		"normalize", info.Normalize, "weights", info.Weights, "config", info.Config, "attention", info.Attention, "products", info.Products, "product_programs", info.ProductPrograms, "residual", info.Residual, "downloads", info.Downloads, "shapes", strings.Join(info.Shapes, " "), "compile", info.CompileTime)
	return m, tok, stm, nil
}

// loadTokenizer reads --tokenizer (a tokenizer.json or a folder holding one), else the model
// folder's tokenizer.json, which may be missing: then it returns nil.
func (f *modelFlags) loadTokenizer(modelDir string) (*tokenizer.Tokenizer, error) {
	path := f.tokenizer
	if path == "" {
		path = filepath.Join(modelDir, "tokenizer.json")
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
	} else if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, "tokenizer.json")
	}
	tok, err := tokenizer.LoadFile(path)
	if err != nil && f.tokenizer != "" {
		return nil, fmt.Errorf("--tokenizer: %w", err)
	}
	return tok, err
}

// scaleSpec is the shapes to scale the config to ("" for its own) and the flag that asked for
// them: --scale, or the smaller --model-size it names.
func (f *modelFlags) scaleSpec() (flagName, spec string, err error) {
	if f.modelSize == "" {
		return "--scale", f.scale, nil
	}
	size, err := demo.SizeByName(f.modelSize)
	switch {
	case err != nil:
		return "", "", fmt.Errorf("--model-size: %w", err)
	case f.scale != "":
		return "", "", errors.New("give --scale or --model-size, not both")
	case size.Layers == 0: // base: the config's own shapes
		return "", "", nil
	}
	return "--model-size " + size.Name, fmt.Sprintf("%d,%d,%d,%d", size.Layers, size.Hidden, size.Heads, size.Intermediate), nil
}

// scaleConfig applies --scale LAYERS,HIDDEN,HEADS,INTERMEDIATE.
func scaleConfig(cfg modernbert.Config, spec string) (modernbert.Config, error) {
	parts := strings.Split(spec, ",")
	if len(parts) != 4 {
		return cfg, fmt.Errorf("--scale %q: want LAYERS,HIDDEN,HEADS,INTERMEDIATE", spec)
	}
	var v [4]int
	for i, p := range parts {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n <= 0 {
			return cfg, fmt.Errorf("--scale %q: %q is not a positive integer", spec, p)
		}
		v[i] = n
	}
	scaled := cfg.Scaled(v[0], v[1], v[2], v[3])
	if err := scaled.Validate(); err != nil {
		return cfg, fmt.Errorf("--scale %q: %w", spec, err)
	}
	return scaled, nil
}

// intListFlag parses a comma-separated list of positive integers into *dst.
func intListFlag(dst *[]int) func(string) error {
	return func(s string) error {
		*dst = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				return fmt.Errorf("%q: want positive integers separated by commas", s)
			}
			*dst = append(*dst, n)
		}
		return nil
	}
}
