// Command embedbench serves text-embedding models and measures embedding services under load.
//
// Each subcommand lives in its own file and registers itself in init, so the command table
// here never needs editing when one is added.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// version is the tool version written into every result file; set with -ldflags "-X main.version=...".
var version = "0.1.0-dev"

// command is one subcommand: run receives the arguments after the subcommand's name.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string) error
}

var commands = map[string]command{}

func register(name, summary string, run func(ctx context.Context, args []string) error) {
	commands[name] = command{name: name, summary: summary, run: run}
}

// errUsage marks an error already explained by the flag package's own usage output.
var errUsage = errors.New("usage")

func main() {
	os.Exit(realMain(os.Args[1:], os.Stderr))
}

func realMain(args []string, stderr io.Writer) int {
	global := flag.NewFlagSet("embedbench", flag.ContinueOnError)
	global.SetOutput(stderr)
	logFormat := global.String("log-format", "text", "log format: text or json")
	logLevel := global.String("log-level", "info", "log level: debug, info, warn or error")
	showVersion := global.Bool("version", false, "print the version and exit")
	global.Usage = func() { usage(stderr) }
	if err := global.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) { // asked for: the usage is the answer
			return 0
		}
		return 2
	}
	if *showVersion {
		fmt.Println(version)
		return 0
	}
	if err := setupLogging(stderr, *logFormat, *logLevel); err != nil {
		fmt.Fprintln(stderr, "embedbench:", err)
		return 2
	}
	rest := global.Args()
	if len(rest) == 0 {
		usage(stderr)
		return 2
	}
	if rest[0] == "version" {
		fmt.Println(version)
		return 0
	}
	cmd, ok := commands[rest[0]]
	if !ok {
		fmt.Fprintf(stderr, "embedbench: unknown command %q\n\n", rest[0])
		usage(stderr)
		return 2
	}

	// The first SIGINT/SIGTERM cancels the context so commands can finish cleanly (write
	// partial results, drain requests); a second one kills the process the default way.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()

	if err := cmd.run(ctx, rest[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if errors.Is(err, errUsage) {
			return 2
		}
		var exit exitError
		if errors.As(err, &exit) {
			if exit.err != nil {
				fmt.Fprintf(stderr, "embedbench %s: %v\n", cmd.name, exit.err)
			}
			return exit.code
		}
		fmt.Fprintf(stderr, "embedbench %s: %v\n", cmd.name, err)
		return 1
	}
	return 0
}

// exitError lets a command choose its exit code (for example, stress on an SLO breach).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e exitError) Unwrap() error { return e.err }

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: embedbench [--log-format text|json] [--log-level LEVEL] <command> [flags]")
	fmt.Fprintln(w, "\ncommands:")
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		fmt.Fprintf(w, "  %-10s %s\n", name, commands[name].summary)
	}
	fmt.Fprintf(w, "  %-10s %s\n", "version", "print the version")
	fmt.Fprintln(w, "\nRun 'embedbench <command> --help' for a command's flags.")
}

func setupLogging(w io.Writer, format, level string) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch strings.ToLower(format) {
	case "text":
		slog.SetDefault(slog.New(slog.NewTextHandler(w, opts)))
	case "json":
		slog.SetDefault(slog.New(slog.NewJSONHandler(w, opts)))
	default:
		return fmt.Errorf("--log-format %q: want text or json", format)
	}
	return nil
}

// newFlagSet returns a flag set for a subcommand whose parse errors are returned, not fatal.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet("embedbench "+name, flag.ContinueOnError)
	return fs
}

// parseFlags parses args and refuses stray positional arguments unless allowPositional.
func parseFlags(fs *flag.FlagSet, args []string, allowPositional bool) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	if !allowPositional && fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	return nil
}
