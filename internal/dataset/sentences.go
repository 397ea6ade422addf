package dataset

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Write stores passages as the seed's test_sentences.json, a JSON list of strings, one per
// line. It writes a temporary file beside path and renames it, so a crash or a full disk
// never leaves a half-written file where the old one was.
func Write(path string, passages []string) error {
	if len(passages) == 0 {
		return fmt.Errorf("writing %s: no passages", path)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	defer os.Remove(tmp.Name()) // a no-op after the rename
	w := bufio.NewWriterSize(tmp, 1<<20)
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	w.WriteString("[\n")
	for i, p := range passages {
		buf.Reset()
		if err := enc.Encode(p); err != nil {
			tmp.Close()
			return fmt.Errorf("writing %s: passage %d: %w", path, i, err)
		}
		w.WriteString("  ")
		w.Write(bytes.TrimRight(buf.Bytes(), "\n"))
		if i < len(passages)-1 {
			w.WriteByte(',')
		}
		w.WriteByte('\n')
	}
	w.WriteString("]\n")
	if err := w.Flush(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// Load reads a test_sentences.json: a non-empty JSON list of non-empty strings. Anything else
// is an error saying what is wrong and where.
func Load(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading sentences: %w", err)
	}
	data = bytes.TrimPrefix(data, []byte("\ufeff")) // a byte-order mark from Windows tools
	var raw []json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var syntax *json.SyntaxError
		if errors.As(err, &syntax) {
			line, col := position(data, syntax.Offset-1) // Offset counts the offending byte
			return nil, fmt.Errorf("%s:%d:%d: not valid JSON: %w", path, line, col, err)
		}
		return nil, fmt.Errorf("%s: want a JSON list of strings: %w", path, err)
	}
	if len(raw) == 0 {
		return nil, fmt.Errorf("%s: the list is empty; want at least one sentence", path)
	}
	sentences := make([]string, len(raw))
	for i, item := range raw {
		if err := json.Unmarshal(item, &sentences[i]); err != nil || bytes.Equal(bytes.TrimSpace(item), []byte("null")) {
			return nil, fmt.Errorf("%s: element %d is %s, want a string", path, i, describe(item))
		}
		if strings.TrimSpace(sentences[i]) == "" {
			return nil, fmt.Errorf("%s: element %d is an empty string", path, i)
		}
	}
	return sentences, nil
}

func describe(item json.RawMessage) string {
	s := string(bytes.TrimSpace(item))
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return s
}

// position turns a 0-based byte offset into a 1-based line and column.
func position(data []byte, offset int64) (line, col int) {
	offset = min(max(offset, 0), int64(len(data)))
	before := data[:offset]
	line = bytes.Count(before, []byte{'\n'}) + 1
	col = int(offset) - bytes.LastIndexByte(before, '\n')
	return line, col
}
