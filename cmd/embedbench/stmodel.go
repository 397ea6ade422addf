package main

import (
	"fmt"
	"log/slog"

	"github.com/embedbench/embedbench/internal/engine"
	"github.com/embedbench/embedbench/internal/modernbert"
	"github.com/embedbench/embedbench/internal/stconfig"
)

// stModel is what a model folder's sentence-transformers files say (pipeline nil for a bare
// model), once --pooling is applied: serve and embed follow the same rules through it.
type stModel struct {
	pipeline *stconfig.Pipeline
	// modelDir holds the transformer's files (config.json, weights, tokenizer).
	modelDir string
	// poolingSource is "model", "flag" or "default" (a bare model: mean).
	poolingSource string
}

// readST reads dir's sentence-transformers files, if it has them; a module it cannot apply
// fails start-up with its name.
func readST(dir string) (stModel, error) {
	if !stconfig.Has(dir) {
		return stModel{modelDir: dir, poolingSource: "default"}, nil
	}
	p, err := stconfig.Load(dir)
	if err != nil {
		return stModel{}, fmt.Errorf("sentence-transformers model: %w", err)
	}
	return stModel{pipeline: p, modelDir: p.TransformerDir, poolingSource: "model"}, nil
}

// apply sets the options the model's files decide: pooling (unless poolingFlag overrides it),
// Dense layers, prompt exclusion, normalisation and, when maxLength is 0, the sequence limit.
func (s *stModel) apply(cfg modernbert.Config, poolingFlag string, opts *modernbert.Options) error {
	opts.Pooling = modernbert.Mean
	if p := s.pipeline; p != nil {
		if p.PoolingDim != 0 && p.PoolingDim != cfg.HiddenSize {
			return fmt.Errorf("sentence-transformers model: its Pooling module expects %d-dimensional token embeddings, the transformer gives %d", p.PoolingDim, cfg.HiddenSize)
		}
		opts.Pooling, opts.Dense, opts.Normalize = p.Pooling, p.DenseLayers(), p.Normalize
		opts.ExcludePrompt = !p.IncludePrompt && len(p.Prompts) > 0
		if opts.MaxSequenceLength == 0 {
			opts.MaxSequenceLength = cfg.MaxPositionEmbeddings
			if p.MaxSeqLength > 0 {
				opts.MaxSequenceLength = min(p.MaxSeqLength, cfg.MaxPositionEmbeddings)
			}
		}
	}
	if poolingFlag != "" {
		pooling, err := modernbert.ParsePooling(poolingFlag)
		if err != nil {
			return fmt.Errorf("--pooling: %w", err)
		}
		if s.pipeline != nil && pooling != s.pipeline.Pooling {
			slog.Warn("--pooling overrides the model's pooling: vectors will differ from sentence-transformers'", "model", s.pipeline.Pooling.String(), "flag", pooling.String())
		}
		opts.Pooling, s.poolingSource = pooling, "flag"
	}
	return nil
}

// prompts are the engine's view of the model's prompts.
func (s *stModel) prompts() engine.Prompts {
	if s.pipeline == nil {
		return engine.Prompts{}
	}
	return engine.Prompts{Texts: s.pipeline.Prompts, Default: s.pipeline.DefaultPromptName,
		Exclude: !s.pipeline.IncludePrompt && len(s.pipeline.Prompts) > 0}
}

// layout is the files' layout for /health ("" for a bare model).
func (s *stModel) layout() string {
	if s.pipeline == nil {
		return ""
	}
	return s.pipeline.Layout
}

// logLoaded says what the files decided.
func (s *stModel) logLoaded(opts modernbert.Options) {
	if s.pipeline == nil {
		return
	}
	p := s.pipeline
	slog.Info("sentence-transformers model", "layout", p.Layout, "pooling", opts.Pooling.String(), "pooling_source", s.poolingSource,
		"include_prompt", p.IncludePrompt, "dense_layers", len(p.Dense), "normalize", opts.Normalize,
		"max_sequence_length", opts.MaxSequenceLength, "prompts", p.PromptNames(), "default_prompt", p.DefaultPromptName)
}
