package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"testing"

	"github.com/embedbench/embedbench/internal/localdata"
)

func TestBenchModelReportsRealTokenRateAndWaste(t *testing.T) {
	data, err := localdata.MSMARCODir()
	if err != nil {
		t.Skip("shared MS MARCO sample not available:", err)
	}
	for _, layout := range []string{"packed", "padded"} {
		args := append(tinyEmbedArgs(t), "--data", filepath.Join(data, "collection.sample.tsv"),
			"--passages", "300", "--seconds", "0.5", "--layout", layout)
		var out bytes.Buffer
		if err := benchModelCommand(context.Background(), args, &out); err != nil {
			t.Fatal(err)
		}
		var rep benchModelReport
		if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
			t.Fatal(err)
		}
		if rep.Layout != layout || rep.TokensPerSecond <= 0 || rep.Steps == 0 || rep.RealTokens > rep.SlotTokens ||
			rep.PaddingWaste < 0 || rep.PaddingWaste >= 1 || rep.Passages != 300 || rep.Model.Weights != "random (seed 0)" {
			t.Fatalf("%s: implausible report %+v", layout, rep)
		}
		t.Logf("%s: %.0f tokens/s, waste %.2f", layout, rep.TokensPerSecond, rep.PaddingWaste)
	}
}
