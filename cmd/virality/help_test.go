package main

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// TestHelp: every subcommand's --help lists its flags with what they do,
// and exits 0.
func TestHelp(t *testing.T) {
	for name := range commands {
		t.Run(name, func(t *testing.T) {
			out, err := child(context.Background(), name, "--help").CombinedOutput()
			if err != nil {
				t.Fatalf("--help: %v\n%s", err, out)
			}
			s := string(out)
			if !strings.Contains(s, "Usage: virality "+name) || strings.Count(s, "\n  -") < 3 {
				t.Fatalf("--help does not list the flags:\n%s", s)
			}
			for _, line := range strings.Split(s, "\n") {
				if strings.HasPrefix(line, "  -") && len(strings.Fields(line)) == 1 && !strings.Contains(s, line+"\n    \t") {
					t.Errorf("flag without a description: %q", line)
				}
			}
		})
	}
}

// TestUsageErrors: a bad flag value or an unreachable broker gets one line
// that says what to fix, not a stack trace.
func TestUsageErrors(t *testing.T) {
	state := "--state-dir=" + t.TempDir()
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"run", "--top-k", "0"}, 2, "--top-k 0"},
		{[]string{"run", "--model", "nope"}, 2, "--model"},
		{[]string{"run", "--sasl-mechanism", "FOO"}, 2, "--sasl-mechanism"},
		{[]string{"run", "--lateness", "soon"}, 2, "lateness"},
		{[]string{"backfill", "--in", "x.jsonl", "--tick", "0s"}, 2, "--tick"},
		{[]string{"backfill"}, 2, "no input"},
		{[]string{"nosuch"}, 2, "unknown command"},
		{[]string{"run", "--brokers", "127.0.0.1:1", "--http-addr", "", state}, 1, "127.0.0.1:1"},
		{[]string{"produce", "--brokers", "127.0.0.1:1", "--in", "-"}, 1, "127.0.0.1:1"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			out, err := child(context.Background(), tc.args...).CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != tc.code {
				t.Fatalf("exit %v, want %d:\n%s", err, tc.code, out)
			}
			s := strings.TrimSpace(string(out))
			if strings.Count(s, "\n") > 0 && !strings.Contains(s, "Usage:") {
				t.Errorf("more than one line:\n%s", s)
			}
			first := strings.SplitN(s, "\n", 2)[0]
			if !strings.Contains(first, tc.want) || strings.Contains(s, "goroutine ") {
				t.Errorf("first line %q does not name %q", first, tc.want)
			}
		})
	}
}
