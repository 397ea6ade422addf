package main

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/embedbench/embedbench/internal/localdata"
	"github.com/embedbench/embedbench/internal/tokenizer"
)

func TestTokenizeCommand(t *testing.T) {
	dir, err := localdata.ModernBERTDir()
	if err != nil {
		t.Skipf("no shared ModernBERT tokenizer: %v", err)
	}
	tok, err := tokenizer.LoadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	texts := []string{"Hello world", "a  b\tc", "", "[MASK] \u00e9\u0301 😀", strings.Repeat("long ", 300)}
	var in strings.Builder
	for _, text := range texts {
		fmt.Fprintf(&in, "{\"text\": %q}\n", text)
	}
	idsLine := func(ids []int32) string {
		return strings.ReplaceAll(fmt.Sprint(ids), " ", ",")
	}

	for _, c := range []struct {
		args []string
		opts tokenizer.EncodeOptions
	}{
		{[]string{"--model", dir}, tokenizer.EncodeOptions{AddSpecialTokens: true}},
		{[]string{"--model", filepath.Join(dir, "tokenizer.json"), "--max-length", "16"}, tokenizer.EncodeOptions{AddSpecialTokens: true, MaxLength: 16}},
		{[]string{"--model", dir, "--no-special-tokens"}, tokenizer.EncodeOptions{}},
	} {
		var out bytes.Buffer
		if err := tokenizeCommand(context.Background(), c.args, strings.NewReader(in.String()), &out); err != nil {
			t.Fatalf("%v: %v", c.args, err)
		}
		var want strings.Builder
		for _, text := range texts {
			fmt.Fprintf(&want, "{\"ids\":%s}\n", idsLine(tok.Encode(text, c.opts).IDs))
		}
		if out.String() != want.String() {
			t.Errorf("%v:\n got %s\nwant %s", c.args, out.String(), want.String())
		}
	}

	// A last line without "\n" still counts.
	var out bytes.Buffer
	if err := tokenizeCommand(context.Background(), []string{"--model", dir}, strings.NewReader(`{"text": "hi"}`), &out); err != nil || out.String() != "{\"ids\":[50281,5801,50282]}\n" {
		t.Errorf("unterminated last line: %q, %v", out.String(), err)
	}
}

func TestTokenizeCommandBadInput(t *testing.T) {
	dir, err := localdata.ModernBERTDir()
	if err != nil {
		t.Skipf("no shared ModernBERT tokenizer: %v", err)
	}
	for _, c := range []struct{ input, wantErr string }{
		{"{\"text\": \"a\"}\n{\"text\": \"b\"}\nnot json\n{\"text\": \"c\"}\n", "line 3"},
		{"{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"txt\": \"c\"}\n", "line 3: no \"text\""},
		{"{\"text\": \"a\"}\n{\"text\": \"b\"}\n\n", "line 3: empty line"},
		{"{\"text\": \"a\"}\n{\"text\": \"b\"}\n{\"text\": 7}\n", "line 3"},
	} {
		var out bytes.Buffer
		err := tokenizeCommand(context.Background(), []string{"--model", dir}, strings.NewReader(c.input), &out)
		if err == nil || !strings.Contains(err.Error(), c.wantErr) {
			t.Errorf("%q: err = %v, want one naming %q", c.input, err, c.wantErr)
		}
		// The lines before the bad one are written.
		if got := strings.Count(out.String(), "\n"); got != 2 {
			t.Errorf("%q: %d lines written before the error, want 2: %q", c.input, got, out.String())
		}
	}
	for _, args := range [][]string{{}, {"--model", dir, "--max-length", "-1"}, {"--model", dir, "extra"}} {
		if err := tokenizeCommand(context.Background(), args, strings.NewReader(""), &bytes.Buffer{}); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	if err := tokenizeCommand(context.Background(), []string{"--model", filepath.Join(t.TempDir(), "missing")}, strings.NewReader(""), &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "--model") {
		t.Errorf("missing model dir: %v", err)
	}
}

func TestTokenizeCommandStopsOnCancel(t *testing.T) {
	dir, err := localdata.ModernBERTDir()
	if err != nil {
		t.Skipf("no shared ModernBERT tokenizer: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err = tokenizeCommand(ctx, []string{"--model", dir}, strings.NewReader("{\"text\": \"a\"}\n"), &bytes.Buffer{})
	if err != context.Canceled {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}
