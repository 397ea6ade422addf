package modernbert

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/x448/float16"
)

// writeSafetensors writes tensors (names as given) in one file, converting to dtype.
func writeSafetensors(t *testing.T, path string, tensors map[string]Tensor, dtype string) {
	t.Helper()
	names := make([]string, 0, len(tensors))
	for name := range tensors {
		names = append(names, name)
	}
	sort.Strings(names)
	header := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	var data []byte
	for _, name := range names {
		tt := tensors[name]
		begin := len(data)
		for _, v := range tt.Data {
			switch dtype {
			case "F32":
				data = binary.LittleEndian.AppendUint32(data, math.Float32bits(v))
			case "BF16":
				data = binary.LittleEndian.AppendUint16(data, uint16(math.Float32bits(v)>>16))
			case "F16":
				data = binary.LittleEndian.AppendUint16(data, float16.Fromfloat32(v).Bits())
			}
		}
		header[name] = map[string]any{"dtype": dtype, "shape": tt.Shape, "data_offsets": []int{begin, len(data)}}
	}
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	out := binary.LittleEndian.AppendUint64(nil, uint64(len(h)))
	out = append(append(out, h...), data...)
	if err := os.WriteFile(path, out, 0o644); err != nil {
		t.Fatal(err)
	}
}

func smallConfig() Config {
	c := tinyConfig()
	c.NumHiddenLayers = 2
	return c
}

func TestLoadWeightsShardedPrefixedF16(t *testing.T) {
	cfg := smallConfig()
	want := RandomWeights(cfg, 3)
	dir := t.TempDir()
	// Two shards, "model." names, plus the MaskedLM head the embedder must ignore.
	shards := []map[string]Tensor{{}, {}}
	index := map[string]string{}
	i := 0
	for name, tt := range want.Tensors {
		shard := i % 2
		shards[shard]["model."+name] = tt
		index["model."+name] = []string{"a.safetensors", "b.safetensors"}[shard]
		i++
	}
	shards[1]["head.dense.weight"] = Tensor{Shape: []int{2, 2}, Data: []float32{1, 2, 3, 4}}
	index["head.dense.weight"] = "b.safetensors"
	writeSafetensors(t, filepath.Join(dir, "a.safetensors"), shards[0], "F16")
	writeSafetensors(t, filepath.Join(dir, "b.safetensors"), shards[1], "F16")
	idx, _ := json.Marshal(map[string]any{"metadata": map[string]any{}, "weight_map": index})
	if err := os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), idx, 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := LoadWeights(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if got.StoredDType != "F16" || len(got.Tensors) != len(want.Tensors) {
		t.Fatalf("stored %s, %d tensors; want F16, %d", got.StoredDType, len(got.Tensors), len(want.Tensors))
	}
	for name, wt := range want.Tensors {
		gt := got.Tensors[name]
		for j := range wt.Data {
			if d := math.Abs(float64(gt.Data[j] - wt.Data[j])); d > 1e-3*math.Abs(float64(wt.Data[j]))+1e-7 {
				t.Fatalf("%s[%d] = %g, want %g", name, j, gt.Data[j], wt.Data[j])
			}
		}
	}
}

func TestLoadWeightsExactF32AndBF16(t *testing.T) {
	cfg := smallConfig()
	want := RandomWeights(cfg, 4)
	for _, dtype := range []string{"F32", "BF16"} {
		dir := t.TempDir()
		writeSafetensors(t, filepath.Join(dir, "model.safetensors"), want.Tensors, dtype)
		got, err := LoadWeights(dir, cfg)
		if err != nil {
			t.Fatal(err)
		}
		for name, wt := range want.Tensors {
			for j, v := range wt.Data {
				exp := v
				if dtype == "BF16" {
					exp = math.Float32frombits(math.Float32bits(v) &^ 0xffff) // truncation, as written
				}
				if got.Tensors[name].Data[j] != exp {
					t.Fatalf("%s %s[%d] = %g, want %g", dtype, name, j, got.Tensors[name].Data[j], exp)
				}
			}
		}
	}
}

func TestLoadWeightsErrorsNameTheTensor(t *testing.T) {
	cfg := smallConfig()
	base := RandomWeights(cfg, 5).Tensors
	cases := []struct {
		name   string
		mutate func(map[string]Tensor)
		want   string
	}{
		{"missing", func(m map[string]Tensor) { delete(m, "layers.1.mlp.Wi.weight") }, "layers.1.mlp.Wi.weight"},
		{"misshaped", func(m map[string]Tensor) {
			m["layers.0.attn.Wo.weight"] = Tensor{Shape: []int{48, 47}, Data: make([]float32, 48*47)}
		}, "layers.0.attn.Wo.weight"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tensors := map[string]Tensor{}
			for k, v := range base {
				tensors[k] = v
			}
			c.mutate(tensors)
			dir := t.TempDir()
			writeSafetensors(t, filepath.Join(dir, "model.safetensors"), tensors, "F32")
			_, err := LoadWeights(dir, cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %s", err, c.want)
			}
		})
	}
	t.Run("truncated", func(t *testing.T) {
		dir := t.TempDir()
		path := filepath.Join(dir, "model.safetensors")
		writeSafetensors(t, path, base, "F32")
		data, _ := os.ReadFile(path)
		if err := os.WriteFile(path, data[:len(data)-100], 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadWeights(dir, cfg); err == nil || !strings.Contains(err.Error(), "data offsets") {
			t.Fatalf("error %v, want a data offsets error", err)
		}
	})
	t.Run("not safetensors", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "model.safetensors"), []byte("<html>not found</html>"), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadWeights(dir, cfg); err == nil {
			t.Fatal("no error for a file that is not safetensors")
		}
	})
	t.Run("no weights", func(t *testing.T) {
		if _, err := LoadWeights(t.TempDir(), cfg); err == nil || !strings.Contains(err.Error(), "model.safetensors") {
			t.Fatalf("error %v, want one naming model.safetensors", err)
		}
	})
}

func TestRandomWeightsAreSeeded(t *testing.T) {
	cfg := smallConfig()
	a, b, c := RandomWeights(cfg, 1), RandomWeights(cfg, 1), RandomWeights(cfg, 2)
	name := "layers.1.attn.Wqkv.weight"
	if a.Tensors[name].Data[17] != b.Tensors[name].Data[17] || a.Tensors[name].Data[17] == c.Tensors[name].Data[17] {
		t.Fatal("the same seed must give the same weights and another seed other weights")
	}
	if _, ok := a.Tensors["layers.0.attn_norm.weight"]; ok {
		t.Fatal("layer 0 has no attn_norm")
	}
	if a.Source != "random (seed 1)" {
		t.Fatalf("source %q", a.Source)
	}
}
