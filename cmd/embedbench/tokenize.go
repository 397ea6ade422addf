package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/embedbench/embedbench/internal/tokenizer"
)

func init() {
	register("tokenize", "encode JSON lines {\"text\": ...} to token ids, as HF tokenizers does", runTokenize)
}

func runTokenize(ctx context.Context, args []string) error {
	return tokenizeCommand(ctx, args, os.Stdin, os.Stdout)
}

// tokenizeCommand is runTokenize with its input and output given, for tests.
func tokenizeCommand(ctx context.Context, args []string, in io.Reader, out io.Writer) error {
	fs := newFlagSet("tokenize")
	modelDir := fs.String("model", "", "model directory holding tokenizer.json (or the tokenizer.json file)")
	maxLength := fs.Int("max-length", 0, "keep at most N tokens, special tokens included; the end is cut (0: no truncation)")
	noSpecial := fs.Bool("no-special-tokens", false, "do not add the special tokens ([CLS] ... [SEP])")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: embedbench tokenize --model DIR [--max-length N] [--no-special-tokens] < texts.jsonl > ids.jsonl")
		fmt.Fprintln(fs.Output(), "\nReads one {\"text\": \"...\"} per line and writes one {\"ids\": [...]} per line.")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args, false); err != nil {
		return err
	}
	if *modelDir == "" {
		fmt.Fprintln(fs.Output(), "--model is required")
		return errUsage
	}
	if *maxLength < 0 {
		fmt.Fprintf(fs.Output(), "--max-length %d: want 0 (no truncation) or more\n", *maxLength)
		return errUsage
	}
	path := *modelDir
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("--model: %w", err)
	}
	if st.IsDir() {
		path = filepath.Join(path, "tokenizer.json")
	}
	tok, err := tokenizer.LoadFile(path)
	if err != nil {
		return err
	}
	opts := tokenizer.EncodeOptions{AddSpecialTokens: !*noSpecial, MaxLength: *maxLength}
	return tokenizeLines(ctx, tok, opts, in, out)
}

// tokenizeLines encodes each JSON line of in and writes its ids to out, one line for one. On a
// bad line it stops with an error naming the line, after writing the lines before it.
func tokenizeLines(ctx context.Context, tok *tokenizer.Tokenizer, opts tokenizer.EncodeOptions, in io.Reader, out io.Writer) (err error) {
	w := bufio.NewWriterSize(out, 1<<20)
	defer func() {
		if ferr := w.Flush(); ferr != nil && err == nil {
			err = fmt.Errorf("writing ids: %w", ferr)
		}
	}()
	var (
		ids []int32
		buf []byte
	)
	return readRecords(ctx, in, false, false, func(_ int, rec inputRecord) error {
		if opts.AddSpecialTokens && !opts.TruncateLeft {
			ids, _ = tok.AppendIDs(ids[:0], *rec.Text, opts.MaxLength)
		} else {
			ids = tok.Encode(*rec.Text, opts).IDs
		}
		buf = append(buf[:0], `{"ids":[`...)
		for i, id := range ids {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = strconv.AppendInt(buf, int64(id), 10)
		}
		buf = append(buf, "]}\n"...)
		if _, err := w.Write(buf); err != nil {
			return fmt.Errorf("writing ids: %w", err)
		}
		return nil
	})
}
