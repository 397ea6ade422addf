package demo

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/embedbench/embedbench/internal/blas"
	"github.com/embedbench/embedbench/internal/hub"
	"github.com/embedbench/embedbench/internal/localdata"
	"github.com/embedbench/embedbench/internal/modernbert"
)

// DefaultModelID is the model the demo describes itself as, and downloads config and tokenizer
// of when nothing local is found.
const DefaultModelID = "answerdotai/ModernBERT-base"

// Size is a scaled ModernBERT: the real architecture (alternating global and sliding-window
// attention, GeGLU, RoPE, the real vocabulary) with fewer or narrower layers.
type Size struct {
	Name                                string
	Layers, Hidden, Heads, Intermediate int
}

// Sizes the demo offers. "base" keeps the checkpoint's own configuration.
var Sizes = []Size{
	// tiny is what a 2-core CPU runs in a few minutes: 3 layers keep one global and two
	// sliding-window layers, as the real model alternates them.
	{Name: "tiny", Layers: 3, Hidden: 128, Heads: 2, Intermediate: 256},
	{Name: "small", Layers: 6, Hidden: 256, Heads: 4, Intermediate: 512},
	{Name: "base"},
}

// SizeByName is one of Sizes, by name: the demo's --size and every command's --model-size.
func SizeByName(name string) (Size, error) {
	var names []string
	for _, s := range Sizes {
		if s.Name == name {
			return s, nil
		}
		names = append(names, s.Name)
	}
	return Size{}, fmt.Errorf("size %q: want one of %s", name, strings.Join(names, ", "))
}

// modelSetup is everything both services share: the same configuration and the same weights,
// so that the comparison is fair by construction.
type modelSetup struct {
	dir     string // config.json and tokenizer.json
	modelID string
	cfg     modernbert.Config
	weights *modernbert.Weights
	size    Size
	sizeWhy string // why this size, when the demo chose it
	backend string // "simplego" or "xla:..."
	gpu     bool
}

// resolveModelDir finds config.json and tokenizer.json: --model (a directory or a hub id),
// else the shared copy of ModernBERT-base, else the hub.
func resolveModelDir(ctx context.Context, ref string, withWeights, offline bool) (dir, id string, err error) {
	client := hub.NewClientFromEnv()
	if offline {
		client.Offline = true
	}
	if ref != "" {
		dir, err := client.ResolveModel(ctx, ref, withWeights)
		if err != nil {
			return "", "", err
		}
		id := ref
		if st, err := os.Stat(ref); err == nil && st.IsDir() {
			id = filepath.Base(filepath.Clean(dir))
		}
		return dir, id, nil
	}
	if dir, err := localdata.ModernBERTDir(); err == nil {
		return dir, DefaultModelID, nil
	}
	dir, err = client.ResolveModel(ctx, DefaultModelID, withWeights)
	if err != nil {
		return "", "", fmt.Errorf("no model: no --model, no shared copy of %s (%v), and the hub: %w", DefaultModelID, localdata.ErrNotFound, err)
	}
	return dir, DefaultModelID, nil
}

func hasWeights(dir string) bool {
	for _, name := range []string{"model.safetensors", "model.safetensors.index.json"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return true
		}
	}
	return false
}

// chooseBackend picks where the models run: "cpu" is GoMLX's pure-Go simplego; "gpu" needs
// the XLA PJRT plugin; "auto" takes the GPU when the plugin is found.
func chooseBackend(device string) (backend string, onGPU bool, err error) {
	switch device {
	case "cpu":
		return "simplego", false, nil
	case "gpu", "cuda", "auto", "":
		b, err := modernbert.ResolveBackend("")
		if err != nil {
			return "", false, err
		}
		if strings.HasPrefix(b, "xla:") {
			return b, true, nil
		}
		if device == "auto" || device == "" {
			return b, false, nil
		}
		return "", false, fmt.Errorf("--device %s: no XLA PJRT GPU plugin found (set %s to its path)", device, modernbert.EnvXLAPlugin)
	}
	return "", false, fmt.Errorf("--device %q: want auto, cpu or gpu", device)
}

// setupModel decides the model, its size and weights for the demo.
func setupModel(ctx context.Context, o Options) (modelSetup, error) {
	backend, onGPU, err := chooseBackend(o.Device)
	if err != nil {
		return modelSetup{}, err
	}
	sizeName, sizeWhy := o.Size, ""
	if sizeName == "" {
		sizeName, sizeWhy = "base", "the default on a GPU"
		if !onGPU {
			sizeName, sizeWhy = chooseCPUSize(o)
		}
	}
	size, err := SizeByName(sizeName)
	if err != nil {
		return modelSetup{}, err
	}
	wantReal := o.Weights == "real"
	switch o.Weights {
	case "", "auto", "random", "real":
	default:
		return modelSetup{}, fmt.Errorf("--weights %q: want auto, random or real", o.Weights)
	}
	if wantReal && size.Name != "base" {
		return modelSetup{}, fmt.Errorf("--weights real needs --size base: a checkpoint's weights only fit its own size")
	}
	dir, id, err := resolveModelDir(ctx, o.Model, wantReal, o.Offline)
	if err != nil {
		return modelSetup{}, err
	}
	cfg, err := modernbert.LoadConfig(dir)
	if err != nil {
		return modelSetup{}, err
	}
	if size.Name != "base" {
		cfg = cfg.Scaled(size.Layers, size.Hidden, size.Heads, size.Intermediate)
	}
	var w *modernbert.Weights
	useReal := wantReal || (o.Weights != "random" && size.Name == "base" && hasWeights(dir))
	if useReal {
		if w, err = modernbert.LoadWeights(dir, cfg); err != nil {
			return modelSetup{}, err
		}
	} else {
		w = modernbert.RandomWeights(cfg, 0)
	}
	return modelSetup{dir: dir, modelID: id, cfg: cfg, weights: w, size: size, sizeWhy: sizeWhy, backend: backend, gpu: onGPU}, nil
}

// minDemoRequests is the fewest requests per engine a CPU demo's measured window should hold
// for its percentiles to mean something.
const minDemoRequests = 40

// demoPassageTokens is an MS MARCO passage's mean length in tokens, [CLS]/[SEP] included.
const demoPassageTokens = 80

// cpuLinearShare is the share of the products' own rate (sgemm, or three bf16 products where
// AMX runs them) that the model's linear layers reach in a whole CPU step, conservatively:
// bench-model measured 73% of sgemm on a 2-core EPYC, 91% on 2 cores of a Xeon, and 60% to
// 70% of the bf16x3 rate on this project's 2-core Xeon (docs/notes/cpu.md).
const cpuLinearShare = 0.6

// chooseCPUSize picks the largest size whose measured window holds at least minDemoRequests
// requests per engine at the speed this machine's BLAS predicts, and says why. Without a BLAS
// the model runs in pure Go and the demo stays tiny.
func chooseCPUSize(o Options) (name, why string) {
	lib, err := blas.Open()
	if err != nil {
		return "tiny", "no BLAS on this machine (" + err.Error() + "): the model runs in pure Go"
	}
	base := modernbert.DefaultConfig()
	products, err := lib.Float32Products()
	if err != nil {
		return "tiny", err.Error()
	}
	gflops := lib.LinearRate(products, 256, 3*base.HiddenSize, base.HiddenSize, 300*time.Millisecond)
	o.defaults(false) // the window and batch size the CPU demo will run (o is a copy)
	return pickCPUSize(products.String()+" products", gflops, o.Duration, o.BatchSize)
}

// pickCPUSize is chooseCPUSize's decision for the measured rate of the products the float32
// linear layers will run (named by products).
func pickCPUSize(products string, gflops float64, window time.Duration, batchSize int) (name, why string) {
	base := modernbert.DefaultConfig()
	for i := len(Sizes) - 1; i >= 0; i-- {
		s := Sizes[i]
		cfg := base
		if s.Name != "base" {
			cfg = base.Scaled(s.Layers, s.Hidden, s.Heads, s.Intermediate)
		}
		tokensPerSecond := cpuLinearShare * gflops * 1e9 / cfg.LinearFLOPsPerToken()
		requests := window.Seconds() * tokensPerSecond / float64(batchSize*demoPassageTokens)
		speed := fmt.Sprintf("%s %.0f GFLOP/s, about %.0f tokens/s expected", products, gflops, tokensPerSecond)
		switch {
		case requests >= minDemoRequests:
			return s.Name, fmt.Sprintf("the largest size whose %v window holds %d requests of %d passages per engine here: %s",
				window, minDemoRequests, batchSize, speed)
		case i == 0:
			return s.Name, fmt.Sprintf("the smallest size; even it holds fewer than %d requests of %d passages in the %v window here: %s",
				minDemoRequests, batchSize, window, speed)
		}
	}
	panic("demo: no sizes")
}

// servedID is the model name the services report: a scaled model must not pass for the
// checkpoint it was scaled from.
func (m modelSetup) servedID() string {
	if m.size.Name == "base" {
		return m.modelID
	}
	return fmt.Sprintf("%s-%s (scaled: %d layers, hidden %d)", m.modelID, m.size.Name, m.cfg.NumHiddenLayers, m.cfg.HiddenSize)
}

// describe says in one sentence which model, weights, device and size the demo used.
func (m modelSetup) describe() string {
	kind := "weights loaded from " + m.weights.Source
	if strings.HasPrefix(m.weights.Source, "random") {
		kind = "RANDOM weights " + strings.TrimSpace(strings.TrimPrefix(m.weights.Source, "random")) + ": speed only, the vectors mean nothing"
	}
	device := fmt.Sprintf("CPU (%d cores, GoMLX simplego in pure Go: no BLAS found)", runtime.NumCPU())
	if lib, err := blas.Open(); err == nil {
		device = fmt.Sprintf("CPU (%d cores, the native forward pass, products through %s)", runtime.NumCPU(), lib.Path)
	}
	if m.gpu {
		device = "GPU (GoMLX XLA, " + strings.TrimPrefix(m.backend, "xla:") + ")"
	}
	size := m.size.Name + " size, scaled down to fit this machine: " + m.cfg.Summary()
	if m.size.Name == "base" {
		size = "full size: " + m.cfg.Summary()
	}
	if m.sizeWhy != "" {
		size += " (" + m.sizeWhy + ")"
	}
	return fmt.Sprintf("Model: %s architecture with its real tokenizer (%s), %s; %s; on %s.",
		m.modelID, filepath.Join(m.dir, "tokenizer.json"), size, kind, device)
}
