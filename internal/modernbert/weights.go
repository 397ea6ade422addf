package modernbert

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/x448/float16"
)

// Tensor is one weight on the host, as float32 (BF16 and F16 widen exactly).
type Tensor struct {
	Shape []int
	Data  []float32
}

// Weights are the encoder's parameters on the host, keyed by their HF names without the
// "model." prefix (e.g. "layers.3.attn.Wqkv.weight"). New uploads them; drop the Weights
// afterwards so that no second full copy stays in host memory.
type Weights struct {
	Tensors map[string]Tensor
	// Source says where they came from: a path, or "random (seed N)".
	Source string
	// StoredDType is the checkpoint's element type ("F32", "BF16", "F16", mixed as "BF16+F32").
	StoredDType string
}

// tensorSpec is one parameter the graph needs.
type tensorSpec struct {
	name  string
	shape []int
	init  initKind
}

type initKind int

const (
	initOnes initKind = iota
	initZeros
	initIn  // truncated normal, std = initializer_range
	initOut // truncated normal, std = initializer_range / sqrt(2 * layers)
)

// specs lists the tensors of cfg in a fixed order (the graph's parameter order).
func specs(cfg Config) []tensorSpec {
	h, inter := cfg.HiddenSize, cfg.IntermediateSize
	var out []tensorSpec
	add := func(name string, init initKind, shape ...int) {
		out = append(out, tensorSpec{name: name, shape: shape, init: init})
	}
	norm := func(prefix string) {
		add(prefix+".weight", initOnes, h)
		if cfg.NormBias {
			add(prefix+".bias", initZeros, h)
		}
	}
	linear := func(prefix string, bias bool, init initKind, outDim, inDim int) {
		add(prefix+".weight", init, outDim, inDim)
		if bias {
			add(prefix+".bias", initZeros, outDim)
		}
	}
	add("embeddings.tok_embeddings.weight", initIn, cfg.VocabSize, h)
	norm("embeddings.norm")
	for i := range cfg.NumHiddenLayers {
		p := fmt.Sprintf("layers.%d.", i)
		if i > 0 {
			norm(p + "attn_norm")
		}
		linear(p+"attn.Wqkv", cfg.AttentionBias, initIn, 3*h, h)
		linear(p+"attn.Wo", cfg.AttentionBias, initOut, h, h)
		norm(p + "mlp_norm")
		linear(p+"mlp.Wi", cfg.MLPBias, initIn, 2*inter, h)
		linear(p+"mlp.Wo", cfg.MLPBias, initOut, h, inter)
	}
	norm("final_norm")
	return out
}

// RandomWeights returns weights of cfg's real shapes drawn like HF's initialisation
// (truncated normals, unit norms) from seed: the same seed gives the same weights.
func RandomWeights(cfg Config, seed int64) *Weights {
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6d6f6465726e6265))
	const rangeStd, cutoff = 0.02, 2.0
	w := &Weights{Tensors: map[string]Tensor{}, Source: fmt.Sprintf("random (seed %d)", seed), StoredDType: "F32"}
	for _, s := range specs(cfg) {
		n := 1
		for _, d := range s.shape {
			n *= d
		}
		data := make([]float32, n)
		switch s.init {
		case initOnes:
			for i := range data {
				data[i] = 1
			}
		case initIn, initOut:
			std := rangeStd
			if s.init == initOut {
				std /= math.Sqrt(2 * float64(cfg.NumHiddenLayers))
			}
			for i := range data {
				v := rng.NormFloat64()
				for math.Abs(v) > cutoff {
					v = rng.NormFloat64()
				}
				data[i] = float32(v * std)
			}
		}
		w.Tensors[s.name] = Tensor{Shape: slices.Clone(s.shape), Data: data}
	}
	return w
}

// stEntry is one tensor of a safetensors header.
type stEntry struct {
	DType       string   `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// stFile is an open safetensors file with its parsed header.
type stFile struct {
	path      string
	f         *os.File
	dataStart int64
	size      int64
	entries   map[string]stEntry
}

func openSafetensors(path string) (*stFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("opening weights: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("opening weights: %w", err)
	}
	var lenBuf [8]byte
	if _, err := io.ReadFull(f, lenBuf[:]); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: reading safetensors header length: %w", path, err)
	}
	headerLen := binary.LittleEndian.Uint64(lenBuf[:])
	if headerLen > 100<<20 || int64(headerLen) > st.Size()-8 {
		f.Close()
		return nil, fmt.Errorf("%s: not a safetensors file (header length %d, file size %d)", path, headerLen, st.Size())
	}
	header := make([]byte, headerLen)
	if _, err := io.ReadFull(f, header); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: reading safetensors header: %w", path, err)
	}
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(header, &raw); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: parsing safetensors header: %w", path, err)
	}
	sf := &stFile{path: path, f: f, dataStart: 8 + int64(headerLen), size: st.Size(), entries: map[string]stEntry{}}
	for name, msg := range raw {
		if name == "__metadata__" {
			continue
		}
		var e stEntry
		if err := json.Unmarshal(msg, &e); err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: tensor %q: bad header entry: %w", path, name, err)
		}
		sf.entries[name] = e
	}
	return sf, nil
}

func elemSize(dtype string) (int, error) {
	switch dtype {
	case "F32":
		return 4, nil
	case "BF16", "F16":
		return 2, nil
	case "F64":
		return 8, nil
	}
	return 0, fmt.Errorf("element type %s is not supported (F32, BF16, F16, F64 are)", dtype)
}

// read loads one tensor, widened to float32.
func (sf *stFile) read(name string) (Tensor, string, error) {
	e := sf.entries[name]
	size, err := elemSize(e.DType)
	if err != nil {
		return Tensor{}, "", fmt.Errorf("%s: tensor %q: %w", sf.path, name, err)
	}
	n := 1
	for _, d := range e.Shape {
		if d < 0 {
			return Tensor{}, "", fmt.Errorf("%s: tensor %q: negative dimension in shape %v", sf.path, name, e.Shape)
		}
		n *= d
	}
	begin, end := e.DataOffsets[0], e.DataOffsets[1]
	if begin < 0 || end < begin || end-begin != int64(n*size) || sf.dataStart+end > sf.size {
		return Tensor{}, "", fmt.Errorf("%s: tensor %q: data offsets %v do not match shape %v of %s in a file of %d bytes",
			sf.path, name, e.DataOffsets, e.Shape, e.DType, sf.size)
	}
	raw := make([]byte, end-begin)
	if _, err := sf.f.ReadAt(raw, sf.dataStart+begin); err != nil {
		return Tensor{}, "", fmt.Errorf("%s: reading tensor %q: %w", sf.path, name, err)
	}
	data := make([]float32, n)
	switch e.DType {
	case "F32":
		for i := range data {
			data[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case "BF16":
		for i := range data {
			data[i] = math.Float32frombits(uint32(binary.LittleEndian.Uint16(raw[2*i:])) << 16)
		}
	case "F16":
		for i := range data {
			data[i] = float16.Frombits(binary.LittleEndian.Uint16(raw[2*i:])).Float32()
		}
	case "F64":
		for i := range data {
			data[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:])))
		}
	}
	return Tensor{Shape: slices.Clone(e.Shape), Data: data}, e.DType, nil
}

// LoadWeights reads the encoder's weights of cfg from dir: model.safetensors, or the shards
// listed in model.safetensors.index.json. Names may carry the "model." prefix of a
// ModernBertForMaskedLM checkpoint; its head.* and decoder.* tensors are ignored.
func LoadWeights(dir string, cfg Config) (*Weights, error) {
	files, err := weightFiles(dir)
	if err != nil {
		return nil, err
	}
	opened := make([]*stFile, 0, len(files))
	defer func() {
		for _, sf := range opened {
			sf.f.Close()
		}
	}()
	for _, path := range files {
		sf, err := openSafetensors(path)
		if err != nil {
			return nil, err
		}
		opened = append(opened, sf)
	}
	find := func(name string) (*stFile, string) {
		for _, candidate := range []string{name, "model." + name} {
			for _, sf := range opened {
				if _, ok := sf.entries[candidate]; ok {
					return sf, candidate
				}
			}
		}
		return nil, ""
	}
	w := &Weights{Tensors: map[string]Tensor{}, Source: dir}
	stored := map[string]bool{}
	var missing []string
	for _, s := range specs(cfg) {
		sf, stName := find(s.name)
		if sf == nil {
			missing = append(missing, s.name)
			continue
		}
		t, dtype, err := sf.read(stName)
		if err != nil {
			return nil, err
		}
		if !slices.Equal(t.Shape, s.shape) {
			return nil, fmt.Errorf("%s: tensor %q has shape %v, the config wants %v", sf.path, stName, t.Shape, s.shape)
		}
		stored[dtype] = true
		w.Tensors[s.name] = t
	}
	if len(missing) > 0 {
		more := ""
		if len(missing) > 5 {
			more = fmt.Sprintf(" and %d more", len(missing)-5)
			missing = missing[:5]
		}
		return nil, fmt.Errorf("weights in %s lack %s%s (with or without the \"model.\" prefix)", dir, strings.Join(missing, ", "), more)
	}
	kinds := make([]string, 0, len(stored))
	for k := range stored {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	w.StoredDType = strings.Join(kinds, "+")
	return w, nil
}

// weightFiles lists the safetensors files of a model directory.
func weightFiles(dir string) ([]string, error) {
	index := filepath.Join(dir, "model.safetensors.index.json")
	if data, err := os.ReadFile(index); err == nil {
		var idx struct {
			WeightMap map[string]string `json:"weight_map"`
		}
		if err := json.Unmarshal(data, &idx); err != nil {
			return nil, fmt.Errorf("parsing %s: %w", index, err)
		}
		seen := map[string]bool{}
		var files []string
		for _, file := range idx.WeightMap {
			if strings.Contains(file, "/") || strings.Contains(file, `\`) || file == ".." {
				return nil, fmt.Errorf("%s: shard name %q must be a plain file name", index, file)
			}
			if !seen[file] {
				seen[file] = true
				files = append(files, filepath.Join(dir, file))
			}
		}
		if len(files) == 0 {
			return nil, fmt.Errorf("%s: empty weight_map", index)
		}
		sort.Strings(files)
		return files, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("reading %s: %w", index, err)
	}
	single := filepath.Join(dir, "model.safetensors")
	if _, err := os.Stat(single); err != nil {
		return nil, fmt.Errorf("no model.safetensors or model.safetensors.index.json in %s: %w", dir, err)
	}
	return []string{single}, nil
}

// NumParams is the number of scalar parameters.
func (w *Weights) NumParams() int {
	n := 0
	for _, t := range w.Tensors {
		n += len(t.Data)
	}
	return n
}

// ReadSafetensors reads every tensor of one safetensors file, widened to float32: for small
// files such as a sentence-transformers Dense module's weights.
func ReadSafetensors(path string) (map[string]Tensor, error) {
	sf, err := openSafetensors(path)
	if err != nil {
		return nil, err
	}
	defer sf.f.Close()
	out := make(map[string]Tensor, len(sf.entries))
	for name := range sf.entries {
		t, _, err := sf.read(name)
		if err != nil {
			return nil, err
		}
		out[name] = t
	}
	return out, nil
}
