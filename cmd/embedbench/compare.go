package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/embedbench/embedbench/internal/dataset"
	"github.com/embedbench/embedbench/internal/fairness"
	"github.com/embedbench/embedbench/internal/localdata"
	"github.com/embedbench/embedbench/internal/report"
)

func init() {
	register("compare", "compare stress results side by side (table, --html report) and check two services embed alike", runCompare)
}

// exitFairness is the exit code when --check-embeddings finds the services disagree.
const exitFairness = 3

func runCompare(ctx context.Context, args []string) error {
	fs := newFlagSet("compare")
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintln(out, "usage: embedbench compare [flags] RESULT.json [RESULT.json ...]")
		fmt.Fprintln(out, "       embedbench compare --check-embeddings [flags] URL_A URL_B [RESULT.json ...]")
		fmt.Fprintln(out, "\nOne column a run, ratios against the first. With --check-embeddings the same passages are")
		fmt.Fprintf(out, "sent to both services and their vectors compared; exit status %d when they disagree.\n", exitFairness)
		fmt.Fprintln(out, "\nThe HTML report's latency-against-throughput chart draws p50 and p99 against achieved")
		fmt.Fprintln(out, "requests/s, one point per result file, one line per series. By default a series is one service")
		fmt.Fprintln(out, "(the engine and dtype it reported, else its URL, else the run's label) at one client batch size,")
		fmt.Fprintln(out, "so stress runs at several loads (--max-concurrent-requests, --rate) join into one curve;")
		fmt.Fprintln(out, "--series names each file's series instead.")
		fmt.Fprintln(out, "\nflags:")
		fs.PrintDefaults()
	}
	html := fs.String("html", "", "also write the self-contained HTML report to this file")
	title := fs.String("title", "", "the HTML report's title")
	markdown := fs.String("markdown", "", "also write the table as Markdown to this file (for docs pages)")
	labels := fs.String("labels", "", "comma-separated names for the runs, in order (default: engine and dtype, else the file name)")
	series := fs.String("series", "", "comma-separated series names for the latency-against-throughput chart, one per result file in order; files with the same name form one line (default: one series per service and client batch size)")
	check := fs.Bool("check-embeddings", false, "the first two arguments are service URLs: check that they compute the same embeddings")
	apiKey := fs.String("api-key", os.Getenv("EMBEDBENCH_API_KEY"), "with --check-embeddings: sent to both services as \"Authorization: Bearer\" (default $EMBEDBENCH_API_KEY)")
	dataFile := fs.String("data-file", "", "passages for the check: a JSON list of strings (default: a sample of the shared MS MARCO passages)")
	passages := fs.Int("passages", 64, "how many passages the check sends")
	api := fs.String("api", "", "the check's endpoint: embed (the seed's /embed), openai (/v1/embeddings), tei (TEI's /embed), or empty to detect")
	minCosine := fs.Float64("min-cosine", 0, "the check's threshold (default: 0.99999 when both run fp32, else 0.999)")
	checkOut := fs.String("check-output", "", "write the check's result as JSON to this file (for --fairness later)")
	fairnessFiles := fs.String("fairness", "", "comma-separated check results (from --check-output) to show in the table and report")
	rest, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}

	var checks []fairness.Result
	if *fairnessFiles != "" {
		for _, path := range strings.Split(*fairnessFiles, ",") {
			res, err := readCheck(path)
			if err != nil {
				return exitError{1, err}
			}
			fmt.Println(res.Summary())
			checks = append(checks, res)
		}
	}
	var fair *fairness.Result
	if *check {
		if len(rest) < 2 || !isURL(rest[0]) || !isURL(rest[1]) {
			fmt.Fprintln(fs.Output(), "--check-embeddings needs two service URLs (http://host:port) first")
			return errUsage
		}
		if *passages < 1 {
			return exitError{2, fmt.Errorf("--passages %d: want at least 1", *passages)}
		}
		texts, source, err := checkPassages(ctx, *dataFile, *passages)
		if err != nil {
			return err
		}
		slog.Info("checking embeddings", "a", rest[0], "b", rest[1], "passages", len(texts), "source", source)
		res, err := fairness.Check(ctx, rest[0], rest[1], texts, fairness.Options{API: *api, MinCosine: *minCosine, APIKey: *apiKey})
		if err != nil {
			return err
		}
		fmt.Println(res.Summary())
		if *checkOut != "" {
			if err := writeJSON(*checkOut, res); err != nil {
				return err
			}
		}
		fair = &res
		checks = append(checks, res)
		rest = rest[2:]
	} else if *checkOut != "" {
		return exitError{2, errors.New("--check-output needs --check-embeddings")}
	}

	if len(rest) == 0 {
		if fair == nil && len(checks) == 0 {
			fs.Usage()
			return errUsage
		}
		if *html != "" || *markdown != "" {
			return exitError{2, errors.New("--html and --markdown need result files to report on")}
		}
		return fairnessExit(fair)
	}
	var names []string
	if *labels != "" {
		names = strings.Split(*labels, ",")
	}
	runs, err := report.Load(rest, names)
	if err != nil {
		return exitError{1, err}
	}
	if *series != "" {
		groups := strings.Split(*series, ",")
		if len(groups) != len(runs) {
			return exitError{2, fmt.Errorf("--series: %d names for %d result files", len(groups), len(runs))}
		}
		for i := range runs {
			runs[i].Series = strings.TrimSpace(groups[i])
		}
	}
	if fair != nil {
		fmt.Println()
	}
	table := report.Compare(runs, checks...)
	if err := table.WriteText(os.Stdout); err != nil {
		return err
	}
	if *markdown != "" {
		if err := writeMarkdown(*markdown, table); err != nil {
			return err
		}
		fmt.Printf("\nMarkdown table: %s\n", *markdown)
	}
	if *html != "" {
		if err := report.WriteHTMLFile(*html, runs, report.HTMLOptions{Title: *title, Fairness: checks}); err != nil {
			return err
		}
		fmt.Printf("\nHTML report: %s\n", *html)
	}
	return fairnessExit(fair)
}

// parseInterspersed parses flags wherever they stand among the arguments: the flag package
// stops at the first positional one, and people write `compare --check-embeddings A B
// --passages 256`.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := parseFlags(fs, args, true); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

func readCheck(path string) (fairness.Result, error) {
	var res fairness.Result
	data, err := os.ReadFile(path)
	if err != nil {
		return res, fmt.Errorf("reading a fairness check: %w", err)
	}
	if err := json.Unmarshal(data, &res); err != nil {
		return res, fmt.Errorf("fairness check %s: %w", path, err)
	}
	if res.Passages == 0 || res.A.URL == "" || res.B.URL == "" {
		return res, fmt.Errorf("fairness check %s: not a result of --check-output (no passages or URLs)", path)
	}
	return res, nil
}

func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", path, err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func writeMarkdown(path string, t report.Table) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("writing the Markdown table: %w", err)
	}
	if err := t.WriteMarkdown(f); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func fairnessExit(res *fairness.Result) error {
	if res == nil || res.OK() {
		return nil
	}
	return exitError{exitFairness, errors.New("the services do not compute the same embeddings (see the warnings above)")}
}

func isURL(s string) bool {
	return strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://")
}

// checkPassages picks the fairness check's passages: the data file, else a reproducible
// sample of the shared MS MARCO passages.
func checkPassages(ctx context.Context, dataFile string, n int) ([]string, string, error) {
	if dataFile != "" {
		texts, err := dataset.Load(dataFile)
		if err != nil {
			return nil, "", err
		}
		return texts[:min(n, len(texts))], dataFile, nil
	}
	dir, err := localdata.MSMARCODir()
	if err != nil {
		return nil, "", fmt.Errorf("no --data-file and no shared MS MARCO passages: %w", err)
	}
	sample, err := dataset.SampleSource(ctx, dir, n, 1)
	if err != nil {
		return nil, "", err
	}
	return sample.Passages, dir, nil
}
