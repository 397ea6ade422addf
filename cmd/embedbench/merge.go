package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/embedbench/embedbench/internal/stress"
)

func init() {
	register("merge", "combine the results of load generators that ran at once into one result (counts add, histograms merge)", runMerge)
}

func runMerge(_ context.Context, args []string) error {
	fs := newFlagSet("merge")
	output := fs.String("output", "", "the merged result file to write (required); never one of the inputs")
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintln(out, "usage: embedbench merge --output merged.json RESULT.json|DIR RESULT.json|DIR [...]")
		fmt.Fprintln(out, "\nCombines stress results of load generators that ran at the same time (N pods against one")
		fmt.Fprintln(out, "Service): counts and errors add, latency histograms merge and percentiles are read from the")
		fmt.Fprintln(out, "merged histogram, time series are aligned by wall clock, and throughput is summed over the")
		fmt.Fprintln(out, "window all parts shared. The result has the stress schema: compare and --html read it.")
		fmt.Fprintln(out, "A folder stands for the stress_test_results_*.json files in it and below it (a Job's pods")
		fmt.Fprintln(out, "each write into their own folder of one volume, and the image has no shell to glob).")
		fmt.Fprintf(out, "\nflags:\n")
		fs.PrintDefaults()
	}
	args, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	paths, err := expandResultDirs(args)
	if err != nil {
		return exitError{1, err}
	}
	if *output == "" {
		return exitError{2, errors.New("--output is required: the file to write the merged result to")}
	}
	if len(paths) < 2 {
		return exitError{2, fmt.Errorf("merge needs at least two result files, got %d", len(paths))}
	}
	inputs := make([]stress.MergeInput, 0, len(paths))
	for _, path := range paths {
		if sameFile(path, *output) {
			return exitError{2, fmt.Errorf("--output %s is also an input: merging would overwrite it", *output)}
		}
		res, err := stress.ReadResult(path)
		if err != nil {
			return exitError{1, err}
		}
		inputs = append(inputs, stress.MergeInput{Name: path, Result: res})
	}
	merged, err := stress.Merge(inputs, version)
	if err != nil {
		return exitError{1, err}
	}
	for _, w := range merged.Merged.Warnings {
		slog.Warn("merged results need care", "warning", w)
	}
	if err := stress.WriteResultFile(*output, merged); err != nil {
		return err
	}
	lm := merged.LatencyMetrics
	window := fmt.Sprintf("over the %.1f s all %d ran at once", merged.TestDurationSeconds, len(merged.Merged.Parts))
	if merged.Merged.OverlapSeconds == 0 {
		window = fmt.Sprintf("over the whole %.1f s span (the windows do not overlap)", merged.TestDurationSeconds)
	}
	fmt.Printf("merged %d results: %d requests (%d ok), p50 %s, p99 %s, %.2f requests/s %s\nwrote %s\n",
		len(merged.Merged.Parts), merged.TotalRequests, merged.SuccessfulRequests,
		formatLatency(lm.P50), formatLatency(lm.P99), merged.RequestsPerSecond, window, *output)
	return nil
}

// expandResultDirs replaces each folder among args by the result files in it and below it,
// in name order; a folder holding none is an error, not a silent omission.
func expandResultDirs(args []string) ([]string, error) {
	var out []string
	for _, arg := range args {
		st, err := os.Stat(arg)
		if err != nil {
			return nil, err // a path that is not there says so, before any count of files does
		}
		if !st.IsDir() {
			out = append(out, arg)
			continue
		}
		var found []string
		err = filepath.WalkDir(arg, func(path string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			name := d.Name()
			if !d.IsDir() && strings.HasPrefix(name, stress.ResultFilePrefix) && strings.HasSuffix(name, ".json") {
				found = append(found, path)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("listing result files in %s: %w", arg, err)
		}
		if len(found) == 0 {
			return nil, fmt.Errorf("%s holds no %s*.json files", arg, stress.ResultFilePrefix)
		}
		sort.Strings(found)
		out = append(out, found...)
	}
	return out, nil
}

// sameFile reports whether a and b name one file: the same path, or (when both exist) the
// same file under two names.
func sameFile(a, b string) bool {
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	if errA == nil && errB == nil && absA == absB {
		return true
	}
	sa, errA := os.Stat(a)
	sb, errB := os.Stat(b)
	return errA == nil && errB == nil && os.SameFile(sa, sb)
}

func formatLatency(seconds float64) string {
	return fmt.Sprintf("%.2f ms", seconds*1000)
}
