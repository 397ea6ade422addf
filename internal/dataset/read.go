// Package dataset reads MS MARCO passages (collection.tsv, BEIR corpus.jsonl, and the HF
// datasets' parquet layouts), samples them reproducibly, and reads and writes the
// test_sentences.json file the stress tester sends.
package dataset

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// maxLineBytes bounds one line of a text source; MS MARCO passages are a few KB at most.
const maxLineBytes = 16 << 20

// Each calls fn with every passage of the source at path, in order. path is a file
// (.tsv, .jsonl, .parquet, optionally .gz-compressed for the text formats) or a directory,
// whose readable files are read in lexical order. Passages are passed as stored; the caller
// drops empty ones and duplicates. An error names the file and, for text formats, the line.
func Each(ctx context.Context, path string, fn func(passage string) error) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if !st.IsDir() {
		return eachInFile(ctx, path, fn)
	}
	files, err := sourceFiles(path)
	if err != nil {
		return err
	}
	for _, file := range files {
		slog.Info("reading passages", "file", file)
		if err := eachInFile(ctx, file, fn); err != nil {
			return err
		}
	}
	return nil
}

// sourceFiles lists the passage files under dir: .tsv, .jsonl and .parquet files (.gz allowed
// for the text ones), skipping queries and qrels that sit beside a corpus in MS MARCO and BEIR
// downloads, hidden files and partial downloads.
func sourceFiles(dir string) ([]string, error) {
	// WalkDir does not follow a link at its root (a source given as a link to a folder, as
	// shared data folders often are): resolve it first.
	if resolved, err := filepath.EvalSymlinks(dir); err == nil {
		dir = resolved
	}
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if path != dir && strings.HasPrefix(name, ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() {
			return nil
		}
		if formatOf(path) == "" {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		lower := strings.ToLower(rel)
		if strings.Contains(lower, "quer") || strings.Contains(lower, "qrel") {
			return nil
		}
		// Hub-cache snapshots hold symlinks to blobs: follow them.
		if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
			return nil
		}
		files = append(files, path)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", dir, err)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s holds no passage files (collection .tsv, corpus .jsonl[.gz] or .parquet)", dir)
	}
	return files, nil
}

// formatOf names a file's format from its extension: "tsv", "jsonl", "parquet" or "".
func formatOf(path string) string {
	name := strings.TrimSuffix(strings.ToLower(filepath.Base(path)), ".gz")
	switch {
	case strings.HasSuffix(name, ".tsv"):
		return "tsv"
	case strings.HasSuffix(name, ".jsonl"):
		return "jsonl"
	case strings.HasSuffix(name, ".parquet") && !strings.HasSuffix(strings.ToLower(path), ".gz"):
		return "parquet"
	}
	return ""
}

func eachInFile(ctx context.Context, path string, fn func(string) error) error {
	format := formatOf(path)
	if format == "" {
		return fmt.Errorf("%s: unknown format (want .tsv, .jsonl, .jsonl.gz, .tsv.gz or .parquet)", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	defer f.Close()
	if format == "parquet" {
		return eachInParquet(ctx, f, path, fn)
	}
	r, err := maybeGunzip(f)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	first := true
	return eachLine(ctx, r, path, func(line []byte) (string, error) {
		if format == "tsv" {
			header := first && isTSVHeader(line)
			first = false
			if header {
				return "", errSkipLine
			}
			return parseTSVLine(line)
		}
		return parseJSONLine(line)
	}, fn)
}

// maybeGunzip decompresses by content, not by name, so a .gz without the suffix still reads.
func maybeGunzip(f *os.File) (io.Reader, error) {
	br := bufio.NewReaderSize(f, 1<<20)
	magic, err := br.Peek(2)
	if err == nil && magic[0] == 0x1f && magic[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	}
	return br, nil
}

// eachLine reads lines, skipping blank ones, and reports errors as file:line.
func eachLine(ctx context.Context, r io.Reader, path string, parse func([]byte) (string, error), fn func(string) error) error {
	rd := &readErr{r: r}
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 64<<10), maxLineBytes)
	line := 0
	for sc.Scan() {
		line++
		if line%4096 == 0 && ctx.Err() != nil {
			return ctx.Err()
		}
		raw := bytes.TrimRight(sc.Bytes(), "\r")
		if line == 1 {
			raw = bytes.TrimPrefix(raw, []byte("\ufeff")) // a byte-order mark from Windows tools
		}
		if len(bytes.TrimSpace(raw)) == 0 {
			continue
		}
		passage, err := parse(raw)
		if errors.Is(err, errSkipLine) {
			continue
		}
		if err != nil && rd.err != nil { // the line was cut short by the read failing, not malformed
			return fmt.Errorf("%s:%d: reading: %w (a truncated or corrupt file?)", path, line, rd.err)
		}
		if err != nil {
			return fmt.Errorf("%s:%d: %w", path, line, err)
		}
		if err := fn(passage); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("%s:%d: line longer than %d bytes", path, line+1, maxLineBytes)
		}
		return fmt.Errorf("%s:%d: reading: %w (a truncated or corrupt file?)", path, line+1, err)
	}
	return nil
}

// readErr remembers the first error its reader gave other than EOF: the scanner hands over
// the partial last line before it reports that error.
type readErr struct {
	r   io.Reader
	err error
}

func (e *readErr) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.err == nil {
		e.err = err
	}
	return n, err
}

// errSkipLine is a parser's word that a line holds no passage.
var errSkipLine = errors.New("not a passage")

// isTSVHeader says a TSV's first line names its columns ("pid<TAB>passage", as pandas and
// datasets write them) rather than holding a passage: MS MARCO's own file has no header.
func isTSVHeader(line []byte) bool {
	id, _, _ := bytes.Cut(line, []byte{'\t'})
	switch strings.ToLower(string(bytes.TrimSpace(id))) {
	case "pid", "id", "_id", "docid", "doc_id", "passage_id", "corpus-id":
		return true
	}
	return false
}

// parseTSVLine reads MS MARCO's collection.tsv: "pid<TAB>passage".
func parseTSVLine(line []byte) (string, error) {
	id, passage, ok := bytes.Cut(line, []byte{'\t'})
	if !ok || len(bytes.TrimSpace(id)) == 0 {
		return "", errors.New("want pid<TAB>passage, found no tab-separated id")
	}
	return string(passage), nil
}

// parseJSONLine reads a BEIR corpus line: {"_id": ..., "title": ..., "text": ...}. MS MARCO
// passages have no titles, so the passage is the text alone; "contents" (pyserini) and
// "passage" (sentence-transformers) are accepted too.
func parseJSONLine(line []byte) (string, error) {
	var doc struct {
		Text     *string `json:"text"`
		Contents *string `json:"contents"`
		Passage  *string `json:"passage"`
	}
	if err := json.Unmarshal(line, &doc); err != nil {
		return "", fmt.Errorf("not a JSON object: %w", err)
	}
	for _, v := range []*string{doc.Text, doc.Contents, doc.Passage} {
		if v != nil {
			return *v, nil
		}
	}
	return "", errors.New(`no "text" field (want a BEIR corpus line {"_id", "title", "text"})`)
}
