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
	"strings"
)

// EnvShared overrides where the shared folder is looked for.
const EnvShared = "EMBEDBENCH_SHARED"

// ErrNotFound is returned when no shared folder can be located.
var ErrNotFound = errors.New("shared data folder not found (set " + EnvShared + ", or run from inside a checkout with ../shared beside it)")

// SharedDir returns the shared data folder: $EMBEDBENCH_SHARED if set, otherwise the first
// "shared" folder holding models/ or data/ found beside the working directory or one of its
// parents, or else beside the running binary's folder or one of its parents (a binary built
// into the checkout and run from elsewhere).
func SharedDir() (string, error) {
	if dir := os.Getenv(EnvShared); dir != "" {
		if !isDir(dir) {
			return "", fmt.Errorf("%s=%q is not a directory", EnvShared, dir)
		}
		return dir, nil
	}
	var starts []string
	if wd, err := os.Getwd(); err == nil {
		starts = append(starts, wd)
	}
	if exe, err := os.Executable(); err == nil {
		starts = append(starts, filepath.Dir(exe))
	}
	for _, start := range starts {
		if dir, ok := sharedAbove(start); ok {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%w; looked above %s", ErrNotFound, strings.Join(starts, " and "))
}

// sharedAbove looks for shared/ or ../shared beside start and each of its parents.
func sharedAbove(start string) (string, bool) {
	for dir := start; ; dir = filepath.Dir(dir) {
		for _, candidate := range []string{filepath.Join(dir, "shared"), filepath.Join(dir, "..", "shared")} {
			if isDir(filepath.Join(candidate, "models")) || isDir(filepath.Join(candidate, "data")) {
				return filepath.Clean(candidate), true
			}
		}
		if parent := filepath.Dir(dir); parent == dir {
			return "", false
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
