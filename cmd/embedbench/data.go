package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/embedbench/embedbench/internal/dataset"
	"github.com/embedbench/embedbench/internal/hub"
	"github.com/embedbench/embedbench/internal/tokenizer"
)

func init() {
	register("data", "sample MS MARCO passages into test_sentences.json", runData)
}

func runData(ctx context.Context, args []string) error {
	fs := newFlagSet("data")
	source := fs.String("source", "msmarco", "passages: a collection .tsv, a BEIR corpus .jsonl[.gz], a .parquet (microsoft/ms_marco or BeIR/msmarco layout), a folder of them, "+
		"'msmarco' ("+dataset.MSMARCO+", through the HF cache) or any hf://datasets/org/name[@rev]/file")
	output := fs.String("output", "test_sentences.json", "where to write the JSON list of passages")
	count := fs.Int("count", 10000, "how many distinct passages to sample")
	seed := fs.Uint64("seed", 42, "random seed: the same source and seed give the same file")
	model := fs.String("model", "", "optional model directory or hub id whose tokenizer.json gives token-length statistics")
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *count < 1 {
		return exitError{2, fmt.Errorf("--count %d: want at least 1", *count)}
	}
	// The output's place is checked before the source is read: on the full collection a typo
	// would otherwise cost a whole pass.
	if st, err := os.Stat(*output); err == nil && st.IsDir() {
		return exitError{2, fmt.Errorf("--output %s is a folder: give the file to write, e.g. %s", *output, filepath.Join(*output, "test_sentences.json"))}
	}
	if st, err := os.Stat(filepath.Dir(*output)); err != nil || !st.IsDir() {
		return exitError{2, fmt.Errorf("--output %s: its folder %s does not exist", *output, filepath.Dir(*output))}
	}

	start := time.Now()
	client := hub.NewClientFromEnv()
	// Load the tokenizer first, so a bad --model fails before the sampling work.
	var tok *tokenizer.Tokenizer
	if *model != "" {
		dir, err := client.ResolveModel(ctx, *model, false)
		if err != nil {
			return err
		}
		if tok, err = tokenizer.LoadFile(filepath.Join(dir, "tokenizer.json")); err != nil {
			return fmt.Errorf("--model %s: %w", *model, err)
		}
	}
	path, err := dataset.ResolveSource(ctx, client, *source)
	if err != nil {
		return err
	}
	sample, err := dataset.SampleSource(ctx, path, *count, *seed)
	if errors.Is(err, dataset.ErrTooFewPassages) {
		return exitError{1, fmt.Errorf("%w; lower --count or use a larger --source", err)}
	}
	if err != nil {
		return err
	}
	if err := dataset.Write(*output, sample.Passages); err != nil {
		return err
	}
	chars := dataset.DescribeLengths(dataset.CharLengths(sample.Passages), "characters")
	slog.Info("wrote passages", "output", *output, "count", len(sample.Passages), "source", path,
		"distinct_in_source", sample.Distinct, "dropped_empty", sample.Empty, "dropped_duplicates", sample.Duplicates,
		"seed", *seed, "elapsed", time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(os.Stdout, "wrote %d passages to %s (seed %d; source %s: %d distinct, %d empty and %d duplicates dropped)\n",
		len(sample.Passages), *output, *seed, path, sample.Distinct, sample.Empty, sample.Duplicates)
	fmt.Fprintf(os.Stdout, "  %s\n", chars)
	if tok != nil {
		tokens := dataset.DescribeLengths(tokenLengths(tok, sample.Passages), "tokens (with [CLS]/[SEP])")
		slog.Info("token lengths", "model", *model, "min", tokens.Min, "mean", tokens.Mean, "p50", tokens.P50, "p90", tokens.P90, "max", tokens.Max)
		fmt.Fprintf(os.Stdout, "  %s\n", tokens)
	}
	return nil
}

func tokenLengths(tok *tokenizer.Tokenizer, passages []string) []int {
	lengths := make([]int, len(passages))
	var ids []int32
	for i, p := range passages {
		ids, lengths[i] = tok.AppendIDs(ids[:0], p, 0)
	}
	return lengths
}
