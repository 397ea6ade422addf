// Package modernbert runs the ModernBERT text encoder (answerdotai/ModernBERT-base and its
// relatives) with GoMLX: config and safetensors loading, the encoder graph, pooling, and the
// packed and padded batch layouts, on the pure-Go simplego backend (CPU) or XLA through a PJRT
// plugin (GPU).
package modernbert

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
)

// Layer types as transformers 5.x names them in config.json's layer_types.
const (
	LayerFullAttention    = "full_attention"
	LayerSlidingAttention = "sliding_attention"
)

// Config is the architecture of a ModernBERT encoder, read from a HF config.json.
type Config struct {
	VocabSize              int
	HiddenSize             int
	IntermediateSize       int
	NumHiddenLayers        int
	NumAttentionHeads      int
	MaxPositionEmbeddings  int
	LocalAttention         int // total sliding window: a token sees ±LocalAttention/2 tokens
	GlobalAttnEveryNLayers int // layer i is global when i%N == 0 (used when LayerTypes is empty)
	GlobalRopeTheta        float64
	LocalRopeTheta         float64
	NormEps                float64
	PadTokenID             int32
	CLSTokenID             int32
	SEPTokenID             int32

	// LayerTypes, when set (transformers 5.x configs), gives each layer's attention kind
	// (LayerFullAttention or LayerSlidingAttention) and overrides GlobalAttnEveryNLayers.
	LayerTypes []string
	// NormBias, AttentionBias and MLPBias say whether the LayerNorms, attention projections and
	// MLP projections carry biases (false in every published ModernBERT).
	NormBias      bool
	AttentionBias bool
	MLPBias       bool
}

// rawConfig holds the config.json keys of both transformers generations.
type rawConfig struct {
	ModelType              string          `json:"model_type"`
	Architectures          []string        `json:"architectures"`
	VocabSize              *int            `json:"vocab_size"`
	HiddenSize             *int            `json:"hidden_size"`
	IntermediateSize       *int            `json:"intermediate_size"`
	NumHiddenLayers        *int            `json:"num_hidden_layers"`
	NumAttentionHeads      *int            `json:"num_attention_heads"`
	MaxPositionEmbeddings  *int            `json:"max_position_embeddings"`
	LocalAttention         *int            `json:"local_attention"`
	GlobalAttnEveryNLayers *int            `json:"global_attn_every_n_layers"`
	GlobalRopeTheta        *float64        `json:"global_rope_theta"`
	LocalRopeTheta         *float64        `json:"local_rope_theta"`
	RopeTheta              *float64        `json:"rope_theta"`
	NormEps                *float64        `json:"norm_eps"`
	PadTokenID             *int32          `json:"pad_token_id"`
	CLSTokenID             *int32          `json:"cls_token_id"`
	SEPTokenID             *int32          `json:"sep_token_id"`
	HiddenActivation       *string         `json:"hidden_activation"`
	NormBias               bool            `json:"norm_bias"`
	AttentionBias          bool            `json:"attention_bias"`
	MLPBias                bool            `json:"mlp_bias"`
	LayerTypes             []string        `json:"layer_types"`
	RopeParameters         json.RawMessage `json:"rope_parameters"`
	RopeScaling            json.RawMessage `json:"rope_scaling"`
}

type ropeParams struct {
	RopeType string   `json:"rope_type"`
	Type     string   `json:"type"`
	Theta    *float64 `json:"rope_theta"`
}

// DefaultConfig is ModernBERT-base as transformers defines it.
func DefaultConfig() Config {
	return Config{
		VocabSize: 50368, HiddenSize: 768, IntermediateSize: 1152, NumHiddenLayers: 22,
		NumAttentionHeads: 12, MaxPositionEmbeddings: 8192, LocalAttention: 128,
		GlobalAttnEveryNLayers: 3, GlobalRopeTheta: 160000, LocalRopeTheta: 10000, NormEps: 1e-5,
		PadTokenID: 50283, CLSTokenID: 50281, SEPTokenID: 50282,
	}
}

// LoadConfig reads a HF config.json (transformers 4.x or 5.x keys) of a ModernBERT model.
// path may be the file or the model directory holding it.
func LoadConfig(path string) (Config, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = path + string(os.PathSeparator) + "config.json"
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading model config: %w", err)
	}
	cfg, err := ParseConfig(data)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig parses the contents of a HF config.json; see LoadConfig.
func ParseConfig(data []byte) (Config, error) {
	var raw rawConfig
	if err := json.Unmarshal(data, &raw); err != nil {
		return Config{}, fmt.Errorf("parsing config.json: %w", err)
	}
	if raw.ModelType != "modernbert" {
		arch := strings.Join(raw.Architectures, ", ")
		return Config{}, fmt.Errorf("model_type %q (architectures %q) is not supported: only ModernBERT (model_type \"modernbert\") is", raw.ModelType, arch)
	}
	cfg := DefaultConfig()
	setInt := func(dst *int, src *int) {
		if src != nil {
			*dst = *src
		}
	}
	setInt(&cfg.VocabSize, raw.VocabSize)
	setInt(&cfg.HiddenSize, raw.HiddenSize)
	setInt(&cfg.IntermediateSize, raw.IntermediateSize)
	setInt(&cfg.NumHiddenLayers, raw.NumHiddenLayers)
	setInt(&cfg.NumAttentionHeads, raw.NumAttentionHeads)
	setInt(&cfg.MaxPositionEmbeddings, raw.MaxPositionEmbeddings)
	setInt(&cfg.LocalAttention, raw.LocalAttention)
	setInt(&cfg.GlobalAttnEveryNLayers, raw.GlobalAttnEveryNLayers)
	if raw.GlobalRopeTheta != nil {
		cfg.GlobalRopeTheta = *raw.GlobalRopeTheta
	}
	if raw.LocalRopeTheta != nil {
		cfg.LocalRopeTheta = *raw.LocalRopeTheta
	}
	if raw.NormEps != nil {
		cfg.NormEps = *raw.NormEps
	}
	if raw.PadTokenID != nil {
		cfg.PadTokenID = *raw.PadTokenID
	}
	if raw.CLSTokenID != nil {
		cfg.CLSTokenID = *raw.CLSTokenID
	}
	if raw.SEPTokenID != nil {
		cfg.SEPTokenID = *raw.SEPTokenID
	}
	cfg.NormBias, cfg.AttentionBias, cfg.MLPBias = raw.NormBias, raw.AttentionBias, raw.MLPBias
	if raw.HiddenActivation != nil && *raw.HiddenActivation != "gelu" {
		return Config{}, fmt.Errorf("hidden_activation %q is not supported (only \"gelu\")", *raw.HiddenActivation)
	}
	if len(raw.RopeScaling) > 0 && string(raw.RopeScaling) != "null" {
		return Config{}, fmt.Errorf("rope_scaling %s is not supported (only the default RoPE)", raw.RopeScaling)
	}
	if len(raw.LayerTypes) > 0 {
		cfg.LayerTypes = slices.Clone(raw.LayerTypes)
	}
	if len(raw.RopeParameters) > 0 && string(raw.RopeParameters) != "null" {
		if err := applyRopeParameters(&cfg, raw.RopeParameters); err != nil {
			return Config{}, err
		}
	}
	if err := cfg.Validate(); err != nil {
		return Config{}, err
	}
	return cfg, nil
}

// applyRopeParameters reads transformers 5.x rope_parameters: either one set for all layers or
// one per layer type.
func applyRopeParameters(cfg *Config, data json.RawMessage) error {
	var perType map[string]json.RawMessage
	if err := json.Unmarshal(data, &perType); err != nil {
		return fmt.Errorf("parsing rope_parameters: %w", err)
	}
	parse := func(key string, msg json.RawMessage, theta *float64) error {
		var p ropeParams
		if err := json.Unmarshal(msg, &p); err != nil {
			return fmt.Errorf("parsing rope_parameters[%q]: %w", key, err)
		}
		kind := cmpOr(p.RopeType, p.Type, "default")
		if kind != "default" {
			return fmt.Errorf("rope_parameters[%q].rope_type %q is not supported (only \"default\")", key, kind)
		}
		if p.Theta != nil {
			*theta = *p.Theta
		}
		return nil
	}
	full, hasFull := perType[LayerFullAttention]
	sliding, hasSliding := perType[LayerSlidingAttention]
	if !hasFull && !hasSliding {
		// One parameter set shared by every layer.
		var theta float64 = cfg.GlobalRopeTheta
		if err := parse("*", data, &theta); err != nil {
			return err
		}
		cfg.GlobalRopeTheta, cfg.LocalRopeTheta = theta, theta
		return nil
	}
	if hasFull {
		if err := parse(LayerFullAttention, full, &cfg.GlobalRopeTheta); err != nil {
			return err
		}
	}
	if hasSliding {
		if err := parse(LayerSlidingAttention, sliding, &cfg.LocalRopeTheta); err != nil {
			return err
		}
	}
	return nil
}

func cmpOr(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// Validate reports the first inconsistency in c.
func (c Config) Validate() error {
	var errs []error
	positive := func(name string, v int) {
		if v <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive, got %d", name, v))
		}
	}
	positive("vocab_size", c.VocabSize)
	positive("hidden_size", c.HiddenSize)
	positive("intermediate_size", c.IntermediateSize)
	positive("num_hidden_layers", c.NumHiddenLayers)
	positive("num_attention_heads", c.NumAttentionHeads)
	positive("max_position_embeddings", c.MaxPositionEmbeddings)
	positive("local_attention", c.LocalAttention)
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if c.HiddenSize%c.NumAttentionHeads != 0 {
		errs = append(errs, fmt.Errorf("hidden_size %d is not a multiple of num_attention_heads %d", c.HiddenSize, c.NumAttentionHeads))
	} else if c.HeadDim()%2 != 0 {
		errs = append(errs, fmt.Errorf("head size %d must be even for rotary embeddings", c.HeadDim()))
	}
	if len(c.LayerTypes) == 0 && c.GlobalAttnEveryNLayers <= 0 {
		errs = append(errs, fmt.Errorf("global_attn_every_n_layers must be positive, got %d", c.GlobalAttnEveryNLayers))
	}
	if len(c.LayerTypes) > 0 && len(c.LayerTypes) != c.NumHiddenLayers {
		errs = append(errs, fmt.Errorf("layer_types has %d entries for %d layers", len(c.LayerTypes), c.NumHiddenLayers))
	}
	for i, t := range c.LayerTypes {
		if t != LayerFullAttention && t != LayerSlidingAttention {
			errs = append(errs, fmt.Errorf("layer_types[%d] = %q: want %q or %q", i, t, LayerFullAttention, LayerSlidingAttention))
		}
	}
	for _, th := range []struct {
		name string
		v    float64
	}{{"global rope theta", c.GlobalRopeTheta}, {"local rope theta", c.LocalRopeTheta}, {"norm_eps", c.NormEps}} {
		if !(th.v > 0) || math.IsInf(th.v, 0) {
			errs = append(errs, fmt.Errorf("%s must be positive and finite, got %v", th.name, th.v))
		}
	}
	for _, id := range []struct {
		name string
		v    int32
	}{{"pad_token_id", c.PadTokenID}, {"cls_token_id", c.CLSTokenID}, {"sep_token_id", c.SEPTokenID}} {
		if id.v < 0 || int(id.v) >= c.VocabSize {
			errs = append(errs, fmt.Errorf("%s %d is outside the vocabulary (%d)", id.name, id.v, c.VocabSize))
		}
	}
	return errors.Join(errs...)
}

// HeadDim is the size of one attention head.
func (c Config) HeadDim() int { return c.HiddenSize / c.NumAttentionHeads }

// LinearFLOPsPerToken is what the linear layers cost one token, counting a multiply-add as two:
// per layer the fused QKV projection, the attention output, GeGLU's input (two halves) and
// the MLP output. ModernBERT-base: 0.2206 GFLOP. Attention scores are not linear layers and
// depend on the row; they are left out, as CPU FLOP rates are usually quoted.
func (c Config) LinearFLOPsPerToken() float64 {
	h, i := float64(c.HiddenSize), float64(c.IntermediateSize)
	perLayer := h*3*h + h*h + h*2*i + i*h
	return 2 * perLayer * float64(c.NumHiddenLayers)
}

// IsGlobal says whether layer i attends globally (else it uses the sliding window).
func (c Config) IsGlobal(i int) bool {
	if len(c.LayerTypes) > 0 {
		return c.LayerTypes[i] == LayerFullAttention
	}
	return i%c.GlobalAttnEveryNLayers == 0
}

// HalfWindow is how far a token sees on each side in a sliding-window layer.
func (c Config) HalfWindow() int { return c.LocalAttention / 2 }

// Scaled returns a smaller (or larger) model of the same architecture: the given number of
// layers, hidden size, heads and intermediate size; vocabulary, special ids, windows and RoPE
// are kept. It is meant for CPU demos and tests with random weights.
func (c Config) Scaled(layers, hidden, heads, intermediate int) Config {
	s := c
	s.NumHiddenLayers, s.HiddenSize, s.NumAttentionHeads, s.IntermediateSize = layers, hidden, heads, intermediate
	if len(c.LayerTypes) > 0 {
		s.LayerTypes = make([]string, layers)
		for i := range layers {
			s.LayerTypes[i] = c.LayerTypes[i%len(c.LayerTypes)]
		}
	}
	return s
}

// Summary is a one-line description such as "ModernBERT 22 layers, hidden 768, 12 heads, ...".
func (c Config) Summary() string {
	globals := 0
	for i := range c.NumHiddenLayers {
		if c.IsGlobal(i) {
			globals++
		}
	}
	return fmt.Sprintf("ModernBERT %d layers (%d global), hidden %d, %d heads, intermediate %d, vocab %d, window %d, max positions %d",
		c.NumHiddenLayers, globals, c.HiddenSize, c.NumAttentionHeads, c.IntermediateSize, c.VocabSize, c.LocalAttention, c.MaxPositionEmbeddings)
}
