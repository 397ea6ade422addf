package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// inputRecord is one JSON line of embed's or tokenize's input: {"text": "..."}, or, where the
// command takes them, {"ids": [...]}: token ids as `embedbench tokenize` writes them.
type inputRecord struct {
	Text *string `json:"text"`
	IDs  []int32 `json:"ids"`
}

// readRecords calls fn with each JSON line of in, numbered from 1, for the commands that answer
// one output line per input record (embed, tokenize). A line that is not such an object stops
// it with an error naming the line. With allowIDs a line holds a text or ids, never both;
// without, it holds a text. Blank lines are skipped when skipBlank, else they are such an error
// (tokenize answers line for line). A last line without "\n" counts.
func readRecords(ctx context.Context, in io.Reader, skipBlank, allowIDs bool, fn func(line int, rec inputRecord) error) error {
	want := `{"text": "..."}`
	if allowIDs {
		want = `{"text": "..."} or {"ids": [...]}`
	}
	r := bufio.NewReaderSize(in, 1<<20)
	for line := 1; ; line++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, readErr := r.ReadBytes('\n')
		if readErr != nil && !errors.Is(readErr, io.EOF) {
			return fmt.Errorf("reading line %d: %w", line, readErr)
		}
		if len(data) == 0 && readErr != nil {
			return nil // end of input
		}
		if len(bytes.TrimSpace(data)) == 0 {
			if !skipBlank {
				return fmt.Errorf("line %d: empty line, want %s", line, want)
			}
			if readErr != nil {
				return nil
			}
			continue
		}
		var rec inputRecord
		if err := json.Unmarshal(data, &rec); err != nil {
			return fmt.Errorf("line %d: want %s: %w", line, want, err)
		}
		switch {
		case rec.IDs != nil && !allowIDs:
			return fmt.Errorf("line %d: \"ids\" are not taken here, want %s", line, want)
		case rec.IDs != nil && rec.Text != nil:
			return fmt.Errorf("line %d: both \"text\" and \"ids\", want one of them", line)
		case rec.IDs == nil && rec.Text == nil:
			return fmt.Errorf("line %d: no \"text\" string, want %s", line, want)
		}
		if err := fn(line, rec); err != nil {
			return err
		}
		if readErr != nil {
			return nil // a last line without "\n"
		}
	}
}
