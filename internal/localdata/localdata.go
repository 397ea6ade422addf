// Package localdata finds the project's offline copies of public data: the shared folder that
// sits beside a checkout (../shared) holding the ModernBERT tokenizer and MS MARCO samples.
//
// Nothing here downloads; it only locates. Tests, benchmarks and the demo use it so that they
// run on machines that cannot reach the HuggingFace hub.
package localdata

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// EnvShared overrides where the shared folder is looked for.
const EnvShared = "EMBEDBENCH_SHARED"

// ErrNotFound is returned when no shared folder can be located.
var ErrNotFound = errors.New("shared data folder not found (set " + EnvShared + " or place it beside the checkout as ../shared)")

// SharedDir returns the shared data folder: $EMBEDBENCH_SHARED if set, otherwise the first
// "shared" folder holding models/ or data/ found beside the working directory or one of its
// parents.
func SharedDir() (string, error) {
	if dir := os.Getenv(EnvShared); dir != "" {
		if !isDir(dir) {
			return "", fmt.Errorf("%s=%q is not a directory", EnvShared, dir)
		}
		return dir, nil
	}
	wd, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("locating shared data: %w", err)
	}
	for dir := wd; ; dir = filepath.Dir(dir) {
		for _, candidate := range []string{filepath.Join(dir, "shared"), filepath.Join(dir, "..", "shared")} {
			if isDir(filepath.Join(candidate, "models")) || isDir(filepath.Join(candidate, "data")) {
				return filepath.Clean(candidate), nil
			}
		}
		if parent := filepath.Dir(dir); parent == dir {
			return "", ErrNotFound
		}
	}
}

// ModernBERTDir is the folder with ModernBERT-base's tokenizer.json and config.json (no weights).
func ModernBERTDir() (string, error) { return sub("models", "modernbert-base") }

// MSMARCODir is the folder with the MS MARCO samples (collection.sample.tsv, corpus.beir.sample.jsonl).
func MSMARCODir() (string, error) { return sub("data", "msmarco") }

func sub(parts ...string) (string, error) {
	root, err := SharedDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(append([]string{root}, parts...)...)
	if !isDir(dir) {
		return "", fmt.Errorf("%s: %w", dir, ErrNotFound)
	}
	return dir, nil
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}
