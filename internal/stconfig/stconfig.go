// Package stconfig reads what a sentence-transformers checkpoint says to compute around its
// transformer: the modules after it (Pooling, Dense, Normalize), the maximum sequence length
// and the prompts. It reads both layouts found on disk: the classic one (sentence-transformers
// 2.x and 3.x: sentence_transformers.models.* in modules.json, pooling_mode_* booleans,
// max_seq_length in sentence_bert_config.json) and the current one (5.x and 6.x: classes under
// sentence_transformers.base.modules and sentence_transformers.sentence_transformer.modules,
// "pooling_mode", the length in tokenizer_config.json). A module it cannot apply is refused by
// name, so that nothing serves silently wrong vectors.
package stconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/embedbench/embedbench/internal/modernbert"
)

// Files a checkpoint's root may hold besides the transformer's own.
const (
	ModulesFile  = "modules.json"
	STConfigFile = "config_sentence_transformers.json"
	BertFile     = "sentence_bert_config.json"
	TokenizerCfg = "tokenizer_config.json"
)

// Pipeline is a checkpoint's sentence-transformers configuration.
type Pipeline struct {
	// Layout is "classic" or "current" (see the package comment).
	Layout string
	// TransformerDir is the folder of the transformer's files (config.json, weights,
	// tokenizer): the root, or a subfolder in old checkpoints.
	TransformerDir string
	Pooling        modernbert.Pooling
	// PoolingDim is the token embedding size the Pooling module expects (0: not said).
	PoolingDim int
	// IncludePrompt false leaves a prompt's tokens out of pooling.
	IncludePrompt bool
	Dense         []Dense
	Normalize     bool
	// MaxSeqLength is the longest sequence, in tokens with [CLS]/[SEP], that the checkpoint
	// says; 0 when it says none (the model's max_position_embeddings then applies).
	MaxSeqLength int
	// Prompts map a prompt name to the text prepended to an input; DefaultPromptName is
	// applied when a request names none ("" = no default).
	Prompts           map[string]string
	DefaultPromptName string
}

// Dense is a Dense module with its weights.
type Dense struct {
	Name  string // the module's folder, e.g. "2_Dense"
	Layer modernbert.Dense
}

// PromptNames lists the prompts' names, sorted.
func (p *Pipeline) PromptNames() []string {
	names := make([]string, 0, len(p.Prompts))
	for n := range p.Prompts {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// DenseLayers are the Dense modules' layers, in order.
func (p *Pipeline) DenseLayers() []modernbert.Dense {
	out := make([]modernbert.Dense, len(p.Dense))
	for i, d := range p.Dense {
		out[i] = d.Layer
	}
	return out
}

// Has reports whether dir holds a sentence-transformers checkpoint (a modules.json).
func Has(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, ModulesFile))
	return err == nil
}

// module is one entry of modules.json.
type module struct {
	Idx  int    `json:"idx"`
	Name string `json:"name"`
	Path string `json:"path"`
	Type string `json:"type"`
}

// Module kinds, by class name.
const (
	kindTransformer = "Transformer"
	kindPooling     = "Pooling"
	kindDense       = "Dense"
	kindNormalize   = "Normalize"
	kindDropout     = "Dropout" // the identity at inference
)

// classicPackages and currentPackages are where each layout's module classes live; a type is
// the package, optionally a module file named after the class, then the class.
var (
	classicPackages = []string{"sentence_transformers.models"}
	currentPackages = []string{"sentence_transformers.base.modules", "sentence_transformers.sentence_transformer.modules",
		"sentence_transformers.base.models", "sentence_transformers.sentence_transformer.models"}
)

// classify names the kind of a module type and its layout, or says why it is not understood.
func classify(typ string) (kind, layout string, err error) {
	cut := strings.LastIndex(typ, ".")
	if cut < 0 {
		return "", "", fmt.Errorf("module type %q is not a sentence-transformers module", typ)
	}
	pkg, class := typ[:cut], typ[cut+1:]
	switch class {
	case kindTransformer, kindPooling, kindDense, kindNormalize, kindDropout:
	default:
		return "", "", fmt.Errorf("module type %s is not supported (embedbench applies Transformer, Pooling, Dense, Normalize and Dropout)", typ)
	}
	// "sentence_transformers.models.Pooling" or "...models.pooling.Pooling" / "...models.Pooling.Pooling".
	file := strings.ToLower(class)
	for _, set := range []struct {
		pkgs   []string
		layout string
	}{{classicPackages, "classic"}, {currentPackages, "current"}} {
		for _, p := range set.pkgs {
			if pkg == p || strings.EqualFold(pkg, p+"."+file) {
				return class, set.layout, nil
			}
		}
	}
	return "", "", fmt.Errorf("module type %s is not one of sentence-transformers' own classes", typ)
}

// Load reads the sentence-transformers files of the checkpoint in dir. It fails, naming the
// module, on anything it cannot apply exactly.
func Load(dir string) (*Pipeline, error) {
	data, err := os.ReadFile(filepath.Join(dir, ModulesFile))
	if err != nil {
		return nil, fmt.Errorf("reading sentence-transformers modules: %w", err)
	}
	var mods []module
	if err := json.Unmarshal(data, &mods); err != nil {
		return nil, fmt.Errorf("%s: parsing %s: %w", dir, ModulesFile, err)
	}
	sort.SliceStable(mods, func(a, b int) bool { return mods[a].Idx < mods[b].Idx })
	p := &Pipeline{IncludePrompt: true, Pooling: modernbert.Mean}
	var kinds []string
	for i, m := range mods {
		kind, layout, err := classify(m.Type)
		if err != nil {
			return nil, fmt.Errorf("%s: module %d (%q): %w", dir, m.Idx, m.Path, err)
		}
		if p.Layout == "" {
			p.Layout = layout
		}
		if err := checkRelPath(m.Path); err != nil {
			return nil, fmt.Errorf("%s: module %d (%s): %w", dir, m.Idx, m.Type, err)
		}
		mdir := filepath.Join(dir, m.Path)
		where := fmt.Sprintf("%s: module %d (%s, %q)", dir, m.Idx, m.Type, m.Path)
		switch kind {
		case kindTransformer:
			if i != 0 {
				return nil, fmt.Errorf("%s: the transformer must be the first module", where)
			}
			p.TransformerDir = mdir
			if err := p.readTransformer(mdir); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
		case kindPooling:
			if slices.Contains(kinds, kindPooling) {
				return nil, fmt.Errorf("%s: a second Pooling module is not supported", where)
			}
			if err := p.readPooling(mdir); err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
		case kindDense:
			if !slices.Contains(kinds, kindPooling) {
				return nil, fmt.Errorf("%s: a Dense module before pooling (on token embeddings) is not supported", where)
			}
			d, err := readDense(mdir)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", where, err)
			}
			d.Name = filepath.Base(filepath.Clean(mdir))
			p.Dense = append(p.Dense, d)
		case kindNormalize:
			p.Normalize = true
		case kindDropout: // inference: nothing to do
		}
		if kind != kindTransformer && kind != kindDropout && p.Normalize && kind != kindNormalize {
			return nil, fmt.Errorf("%s: a module after Normalize is not supported (Normalize must come last)", where)
		}
		kinds = append(kinds, kind)
	}
	if p.TransformerDir == "" {
		return nil, fmt.Errorf("%s: %s names no Transformer module", dir, ModulesFile)
	}
	if !slices.Contains(kinds, kindPooling) {
		return nil, fmt.Errorf("%s: %s names no Pooling module: token embeddings cannot be served as one vector", dir, ModulesFile)
	}
	if err := p.readPrompts(dir); err != nil {
		return nil, err
	}
	return p, nil
}

// checkRelPath refuses module paths that leave the checkpoint.
func checkRelPath(p string) error {
	if p == "" {
		return nil
	}
	if filepath.IsAbs(p) || strings.HasPrefix(filepath.Clean(p), "..") {
		return fmt.Errorf("module path %q leaves the model folder", p)
	}
	return nil
}

// readTransformer reads the transformer module's sentence_bert_config.json and, when that says
// no max_seq_length, tokenizer_config.json's model_max_length (what sentence-transformers 5.x
// and 6.x save it as).
func (p *Pipeline) readTransformer(dir string) error {
	var cfg struct {
		MaxSeqLength    *int    `json:"max_seq_length"`
		DoLowerCase     bool    `json:"do_lower_case"`
		TransformerTask *string `json:"transformer_task"`
		OutputName      *string `json:"module_output_name"`
	}
	if err := readJSON(filepath.Join(dir, BertFile), &cfg, true); err != nil {
		return err
	}
	if cfg.DoLowerCase {
		return errors.New("do_lower_case is not supported (the texts would have to be lowercased as Python does)")
	}
	if cfg.TransformerTask != nil && *cfg.TransformerTask != "feature-extraction" {
		return fmt.Errorf("transformer_task %q is not supported (only feature-extraction)", *cfg.TransformerTask)
	}
	if cfg.OutputName != nil && *cfg.OutputName != "token_embeddings" {
		return fmt.Errorf("module_output_name %q is not supported (only token_embeddings)", *cfg.OutputName)
	}
	if cfg.MaxSeqLength != nil {
		if *cfg.MaxSeqLength < 2 {
			return fmt.Errorf("%s: max_seq_length %d is too small", BertFile, *cfg.MaxSeqLength)
		}
		p.MaxSeqLength = *cfg.MaxSeqLength
		return nil
	}
	var tok struct {
		ModelMaxLength *float64 `json:"model_max_length"`
	}
	if err := readJSON(filepath.Join(dir, TokenizerCfg), &tok, true); err != nil {
		return err
	}
	// Tokenizers without a limit say 1e30: that is no limit, and max_position_embeddings rules.
	if l := tok.ModelMaxLength; l != nil && *l >= 2 && *l < 1<<31 && *l == math.Trunc(*l) {
		p.MaxSeqLength = int(*l)
	}
	return nil
}

// classicPoolingKeys map the classic booleans to the modes, in sentence-transformers' order.
var classicPoolingKeys = []struct{ key, mode string }{
	{"pooling_mode_cls_token", "cls"}, {"pooling_mode_max_tokens", "max"}, {"pooling_mode_mean_tokens", "mean"},
	{"pooling_mode_mean_sqrt_len_tokens", "mean_sqrt_len_tokens"}, {"pooling_mode_weightedmean_tokens", "weightedmean"},
	{"pooling_mode_lasttoken", "lasttoken"},
}

func (p *Pipeline) readPooling(dir string) error {
	var raw map[string]json.RawMessage
	if err := readJSON(filepath.Join(dir, "config.json"), &raw, false); err != nil {
		return err
	}
	var modes []string
	meanByDefault := false
	if msg, ok := raw["pooling_mode"]; ok && !bytes.Equal(bytes.TrimSpace(msg), []byte("null")) {
		var one string
		if err := json.Unmarshal(msg, &one); err == nil {
			modes = []string{one}
		} else if err := json.Unmarshal(msg, &modes); err != nil {
			return fmt.Errorf("pooling_mode %s: want a mode name or a list of them", msg)
		}
	} else {
		// sentence-transformers builds Pooling(**config), whose pooling_mode_mean_tokens
		// defaults to true and every other flag to false: a config that sets cls alone and
		// omits the mean flag pools cls and mean concatenated.
		for _, k := range classicPoolingKeys {
			msg, ok := raw[k.key]
			on := !ok && k.mode == "mean"
			if ok {
				if err := json.Unmarshal(msg, &on); err != nil {
					return fmt.Errorf("%s %s: want true or false", k.key, msg)
				}
			}
			if on {
				modes = append(modes, k.mode)
				meanByDefault = meanByDefault || !ok
			}
		}
	}
	if len(modes) == 0 {
		return errors.New("no pooling mode is on: set pooling_mode, or one pooling_mode_* flag to true")
	}
	if len(modes) != 1 {
		why := ""
		if meanByDefault {
			why = "; pooling_mode_mean_tokens is absent, which sentence-transformers reads as true"
		}
		return fmt.Errorf("pooling modes %s concatenated are not supported (one mode only%s)", strings.Join(modes, "+"), why)
	}
	mode, err := modernbert.ParsePooling(modes[0])
	if err != nil {
		return err
	}
	p.Pooling = mode
	for _, key := range []string{"embedding_dimension", "word_embedding_dimension"} {
		if msg, ok := raw[key]; ok {
			if err := json.Unmarshal(msg, &p.PoolingDim); err != nil {
				return fmt.Errorf("%s %s: want an integer", key, msg)
			}
			break
		}
	}
	if msg, ok := raw["include_prompt"]; ok {
		if err := json.Unmarshal(msg, &p.IncludePrompt); err != nil {
			return fmt.Errorf("include_prompt %s: want true or false", msg)
		}
	}
	return nil
}

// activations are the torch classes a Dense module may name, by their full name.
var activations = map[string]modernbert.Activation{
	"torch.nn.modules.linear.Identity":     modernbert.ActIdentity,
	"torch.nn.modules.activation.Tanh":     modernbert.ActTanh,
	"torch.nn.modules.activation.ReLU":     modernbert.ActReLU,
	"torch.nn.modules.activation.GELU":     modernbert.ActGELU,
	"torch.nn.modules.activation.Sigmoid":  modernbert.ActSigmoid,
	"torch.nn.modules.activation.SiLU":     modernbert.ActSiLU,
	"torch.nn.modules.activation.Identity": modernbert.ActIdentity,
}

func readDense(dir string) (Dense, error) {
	var cfg struct {
		In          int     `json:"in_features"`
		Out         int     `json:"out_features"`
		Bias        *bool   `json:"bias"`
		Activation  *string `json:"activation_function"`
		InputName   *string `json:"module_input_name"`
		OutputName  *string `json:"module_output_name"`
		UseResidual bool    `json:"use_residual"`
	}
	if err := readJSON(filepath.Join(dir, "config.json"), &cfg, false); err != nil {
		return Dense{}, err
	}
	for _, n := range []*string{cfg.InputName, cfg.OutputName} {
		if n != nil && *n != "sentence_embedding" {
			return Dense{}, fmt.Errorf("a Dense on %q is not supported (only on sentence_embedding)", *n)
		}
	}
	if cfg.In < 1 || cfg.Out < 1 {
		return Dense{}, fmt.Errorf("in_features %d, out_features %d: want positive sizes", cfg.In, cfg.Out)
	}
	act := modernbert.ActTanh // sentence-transformers' default when the config names none
	if cfg.Activation != nil {
		a, ok := activations[*cfg.Activation]
		if !ok {
			return Dense{}, fmt.Errorf("activation_function %s is not supported (Identity, Tanh, ReLU, GELU, Sigmoid and SiLU are)", *cfg.Activation)
		}
		act = a
	}
	path := filepath.Join(dir, "model.safetensors")
	if _, err := os.Stat(path); err != nil {
		if _, binErr := os.Stat(filepath.Join(dir, "pytorch_model.bin")); binErr == nil {
			return Dense{}, errors.New("its weights are only in pytorch_model.bin (a pickle), which embedbench does not read: save the model again with safe_serialization (model.safetensors)")
		}
		return Dense{}, fmt.Errorf("reading its weights: %w", err)
	}
	tensors, err := modernbert.ReadSafetensors(path)
	if err != nil {
		return Dense{}, err
	}
	get := func(name string, shape ...int) ([]float32, error) {
		t, ok := tensors[name]
		if !ok {
			return nil, fmt.Errorf("%s lacks %s", path, name)
		}
		if !slices.Equal(t.Shape, shape) {
			return nil, fmt.Errorf("%s: %s has shape %v, the config wants %v", path, name, t.Shape, shape)
		}
		return t.Data, nil
	}
	layer := modernbert.Dense{In: cfg.In, Out: cfg.Out, Activation: act, Residual: cfg.UseResidual}
	if layer.Weight, err = get("linear.weight", cfg.Out, cfg.In); err != nil {
		return Dense{}, err
	}
	if cfg.Bias == nil || *cfg.Bias {
		if layer.Bias, err = get("linear.bias", cfg.Out); err != nil {
			return Dense{}, err
		}
	}
	if cfg.UseResidual && cfg.In != cfg.Out {
		if layer.ResidualWeight, err = get("residual.weight", cfg.Out, cfg.In); err != nil {
			return Dense{}, err
		}
	}
	return Dense{Layer: layer}, nil
}

// readPrompts reads config_sentence_transformers.json's prompts, when there is one.
func (p *Pipeline) readPrompts(dir string) error {
	var cfg struct {
		Prompts           map[string]string `json:"prompts"`
		DefaultPromptName *string           `json:"default_prompt_name"`
	}
	path := filepath.Join(dir, STConfigFile)
	if err := readJSON(path, &cfg, true); err != nil {
		return err
	}
	p.Prompts = cfg.Prompts
	if p.Prompts == nil {
		p.Prompts = map[string]string{}
	}
	if cfg.DefaultPromptName != nil && *cfg.DefaultPromptName != "" {
		if _, ok := p.Prompts[*cfg.DefaultPromptName]; !ok {
			return fmt.Errorf("%s: default_prompt_name %q is not one of the prompts (%s)", path, *cfg.DefaultPromptName, strings.Join(p.PromptNames(), ", "))
		}
		p.DefaultPromptName = *cfg.DefaultPromptName
	}
	return nil
}

// readJSON decodes path into v; a missing file is no error when optional.
func readJSON(path string, v any, optional bool) error {
	data, err := os.ReadFile(path)
	if err != nil {
		if optional && errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("reading %s: %w", filepath.Base(path), err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("parsing %s: %w", path, err)
	}
	return nil
}
