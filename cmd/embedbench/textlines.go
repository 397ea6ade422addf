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

// readTextLines calls fn with each {"text": "..."} line of in, numbered from 1, for the
// commands that answer one output line per input record (embed, tokenize). A line that is not
// such an object stops it with an error naming the line. Blank lines are skipped when
// skipBlank, else they are such an error (tokenize answers line for line). A last line
// without "\n" counts.
func readTextLines(ctx context.Context, in io.Reader, skipBlank bool, fn func(line int, text string) error) error {
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
				return fmt.Errorf("line %d: empty line, want {\"text\": \"...\"}", line)
			}
			if readErr != nil {
				return nil
			}
			continue
		}
		var rec struct {
			Text *string `json:"text"`
		}
		if err := json.Unmarshal(data, &rec); err != nil {
			return fmt.Errorf("line %d: want {\"text\": \"...\"}: %w", line, err)
		}
		if rec.Text == nil {
			return fmt.Errorf("line %d: no \"text\" string", line)
		}
		if err := fn(line, *rec.Text); err != nil {
			return err
		}
		if readErr != nil {
			return nil // a last line without "\n"
		}
	}
}
