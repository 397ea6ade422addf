package engine

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/embedbench/embedbench/internal/localdata"
	"github.com/embedbench/embedbench/internal/tokenizer"
)

// A job of many texts is tokenized in parts on several cores: the sequences must be those of
// one text at a time, in order, and the error the first by index.
func TestTokenizeManyTextsKeepsOrderAndTheFirstError(t *testing.T) {
	dir, err := localdata.ModernBERTDir()
	if err != nil {
		t.Skipf("ModernBERT tokenizer not available: %v", err)
	}
	tok, err := tokenizer.LoadFile(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{MaxSequenceLength: 64, Tokenizer: tok}
	texts := make([]string, 70)
	for i := range texts {
		texts[i] = fmt.Sprintf("passage %d: %s", i, strings.Repeat("word ", i%20))
	}
	seqs, _, err := tokenize(&cfg, Job{Texts: texts, Truncate: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, text := range texts {
		want, _ := tok.AppendIDs(nil, text, 64)
		if !slices.Equal(seqs[i], want) {
			t.Fatalf("text %d: %v, alone it is %v", i, seqs[i], want)
		}
	}
	long := strings.Repeat("long ", 100)
	texts[9], texts[60] = long, long
	_, _, err = tokenize(&cfg, Job{Texts: texts})
	var tooLong *TooLongError
	if !errors.As(err, &tooLong) || tooLong.Index != 9 {
		t.Fatalf("texts 9 and 60 too long: got %v, want the error for text 9", err)
	}
}
