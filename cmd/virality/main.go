// Command virality turns a stream of like events into virality and trending
// scores. See the README for the subcommands; each has --help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/viralityhq/virality/store"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand: it parses its own flags from args.
type command struct {
	summary string
	run     func(ctx context.Context, args []string) error
}

var commands = map[string]command{}

func register(name, summary string, run func(ctx context.Context, args []string) error) {
	commands[name] = command{summary: summary, run: run}
}

func usage() {
	fmt.Fprintf(os.Stderr, "virality: like events in, virality and trending scores out.\n\nUsage: virality <command> [flags]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(os.Stderr, "\nRun 'virality <command> --help' for the flags of a command.\n"+
		"Every flag can also be set by environment variable: VIRALITY_ and the flag name in\n"+
		"capitals with '-' as '_' (--state-dir is VIRALITY_STATE_DIR).\n")
}

func main() {
	if len(os.Args) < 2 || os.Args[1] == "-h" || os.Args[1] == "--help" || os.Args[1] == "help" {
		usage()
		if len(os.Args) < 2 {
			os.Exit(2)
		}
		return
	}
	cmd, ok := commands[os.Args[1]]
	if !ok {
		fmt.Fprintf(os.Stderr, "virality: unknown command %q; run 'virality --help' for the list\n", os.Args[1])
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := cmd.run(ctx, os.Args[2:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return
		}
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(os.Stderr, "virality %s: %v\n", os.Args[1], err)
			os.Exit(2)
		}
		fmt.Fprintf(os.Stderr, "virality %s: %v\n", os.Args[1], err)
		var de *store.DiskError
		if errors.As(err, &de) {
			os.Exit(store.ExitDisk)
		}
		os.Exit(1)
	}
}

// parseArgs parses args once. --help prints the usage; a bad flag gives a
// one-line usage error rather than the flag package's usage dump.
func parseArgs(fs *flag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(os.Stderr)
		fs.Usage()
		return err
	}
	if err != nil {
		return usagef("%v; run 'virality %s --help' for the flags", err, fs.Name())
	}
	return nil
}

// usageError is a bad flag or argument: the message says what to fix.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// newFlagSet returns a flag set whose errors are returned, not printed with
// a stack of usage text, and whose --help lists every flag with its default.
func newFlagSet(name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: virality %s\n\nFlags (each also settable as VIRALITY_<FLAG>):\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, then fills every flag not given on the command
// line from its environment variable (VIRALITY_ + name in capitals, '-' as
// '_'). Command-line flags win over the environment.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parseArgs(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := "VIRALITY_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, usagef("%s=%q: %v", env, v, err))
			}
		}
	})
	return errors.Join(errs...)
}
