package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"

	"github.com/embedbench/embedbench/internal/api"
	"github.com/embedbench/embedbench/internal/engine"
	"github.com/embedbench/embedbench/internal/modernbert"
)

func init() {
	register("embed", "embed JSON lines {\"text\": ...} with ModernBERT, one {\"embedding\": [...]} per line", runEmbed)
}

func runEmbed(ctx context.Context, args []string) error {
	return embedCommand(ctx, args, os.Stdin, os.Stdout)
}

// embedCommand is runEmbed with its input and output given, for tests.
func embedCommand(ctx context.Context, args []string, in io.Reader, out io.Writer) error {
	fs := newFlagSet("embed")
	var mf modelFlags
	addModelFlags(fs, &mf, 0)
	batch := fs.Int("batch-size", 256, "texts per model call")
	promptName := fs.String("prompt-name", "", "one of the model's prompts (config_sentence_transformers.json) to put before every text (default: the model's default prompt, if any)")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: embedbench embed --model DIR|ID [--prompt-name NAME] [--weights random] [--device cpu|cuda] [--dtype float32|bfloat16] [--pooling MODE] < texts.jsonl > vectors.jsonl")
		fmt.Fprintln(fs.Output(), "\nReads one {\"text\": \"...\"} per line and writes one {\"embedding\": [...]} per line, as sentence-transformers' encode() would for the model")
		fmt.Fprintln(fs.Output(), "(its pooling, Dense layers, normalisation, prompts and maximum length); texts longer than the maximum are truncated.")
		fmt.Fprintln(fs.Output(), "A line may give token ids instead, {\"ids\": [...]} as `embedbench tokenize` writes them ([CLS]/[SEP] included, never truncated).")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *batch < 1 {
		fmt.Fprintf(fs.Output(), "--batch-size %d: want 1 or more\n", *batch)
		return errUsage
	}
	m, tok, stm, err := mf.loadST(ctx, modernbert.Packed)
	if err != nil {
		return err
	}
	defer m.Close()
	texts := engine.Config{MaxSequenceLength: m.MaxSequenceLength(), Prompts: stm.prompts()}
	if tok != nil {
		texts.Tokenizer = tok
	}
	// An unknown prompt is refused before any input is read.
	if err := texts.CheckJob(engine.Job{Texts: []string{}, PromptName: *promptName}); err != nil {
		return fmt.Errorf("--prompt-name: %w", err)
	}
	return embedLines(ctx, m, texts, *promptName, *batch, in, out)
}

// embedLines embeds each JSON line of in, batch lines per model call, and writes the vectors to
// out one line for one. Texts are tokenized by texts (the model's tokenizer and prompts) with
// the prompt promptName names. On a bad line it stops with an error naming it, after writing
// the vectors of every line before it.
func embedLines(ctx context.Context, m *modernbert.Model, texts engine.Config, promptName string, batch int, in io.Reader, out io.Writer) (err error) {
	w := bufio.NewWriterSize(out, 1<<20)
	defer func() {
		if ferr := w.Flush(); ferr != nil && err == nil {
			err = fmt.Errorf("writing vectors: %w", ferr)
		}
	}()
	var (
		seqs     [][]int32
		poolFrom []int // leading tokens (a prompt) left out of pooling, per sequence
		buf      []byte
		first    int // input line of seqs[0]
	)
	flush := func() error {
		if len(seqs) == 0 {
			return nil
		}
		pending, from := seqs, poolFrom
		seqs, poolFrom = nil, nil
		vecs, _, err := m.EmbedFrom(ctx, pending, from, modernbert.Packed)
		if err != nil {
			return fmt.Errorf("embedding input lines %d-%d: %w", first, first+len(pending)-1, err)
		}
		for i, v := range vecs {
			// JSON has no form for them, and a vector holding one is no embedding (an fp16
			// stream that overflowed, say): the lines before it are kept, as for a bad line.
			if !api.CheckFinite(v) {
				return fmt.Errorf("input line %d: the model produced a non-finite value", first+i)
			}
			buf = append(api.AppendFloats(append(buf[:0], `{"embedding":`...), v), "}\n"...)
			if _, err := w.Write(buf); err != nil {
				return fmt.Errorf("writing vectors: %w", err)
			}
		}
		return nil
	}
	err = readRecords(ctx, in, true, true, func(line int, rec inputRecord) error {
		ids, from := rec.IDs, 0
		if rec.Text != nil {
			if texts.Tokenizer == nil {
				return fmt.Errorf("line %d: a text needs a tokenizer, and the model has no tokenizer.json: pass --tokenizer, or give {\"ids\": [...]} lines", line)
			}
			tokenized, f, err := texts.Tokenize(engine.Job{Texts: []string{*rec.Text}, Truncate: true, PromptName: promptName})
			if err != nil {
				return fmt.Errorf("line %d: %w", line, err)
			}
			ids, from = tokenized[0], f
		} else if err := m.CheckSequence(ids); err != nil {
			// Ids are taken as given, never truncated: cutting would drop the final [SEP].
			return fmt.Errorf("line %d: ids: %w", line, err)
		}
		if len(seqs) == 0 {
			first = line
		}
		seqs, poolFrom = append(seqs, ids), append(poolFrom, from)
		if len(seqs) >= batch {
			return flush()
		}
		return nil
	})
	// The lines before a bad one are still answered.
	if ferr := flush(); err == nil {
		err = ferr
	}
	return err
}
