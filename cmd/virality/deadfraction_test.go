package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackfillMaxDeadLetterFraction: a backfill whose records mostly go
// to the dead letters (here 6 lines of 10 are not JSON) exits with status
// 1 and says why, with every output written; at or under the fraction, or
// with --max-dead-letter-fraction 1, it succeeds.
func TestBackfillMaxDeadLetterFraction(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "likes.jsonl")
	var b strings.Builder
	for i := range 10 {
		if i < 6 {
			fmt.Fprintf(&b, "not json %d\n", i)
		} else {
			fmt.Fprintf(&b, `{"video_id":"v%d","user_id":"u%d","ts":1793491200000}`+"\n", i, i)
		}
	}
	if err := os.WriteFile(in, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	backfill := func(extra ...string) (string, error) {
		dlq := filepath.Join(t.TempDir(), "dlq.jsonl")
		args := append([]string{"backfill", "--in", in, "--now", "2026-11-26T00:00:00Z", "--progress", "0",
			"--out", filepath.Join(dir, "scores.jsonl"), "--dead-letter-out", dlq}, extra...)
		var stderr bytes.Buffer
		cmd := child(context.Background(), args...)
		cmd.Stderr = &stderr
		err := cmd.Run()
		if got, _ := os.ReadFile(dlq); bytes.Count(got, []byte("\n")) != 6 {
			t.Fatalf("virality %v: %d dead letters written, want 6\n%s", args, bytes.Count(got, []byte("\n")), stderr.String())
		}
		return stderr.String(), err
	}

	stderr, err := backfill()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("60%% dead letters with the default fraction: %v, want exit status 1\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "6 of 10 records (60.0%) went to the dead letters, above --max-dead-letter-fraction 0.5") {
		t.Fatalf("the message does not say why:\n%s", stderr)
	}
	for _, frac := range []string{"0.6", "1"} {
		if stderr, err := backfill("--max-dead-letter-fraction", frac); err != nil {
			t.Fatalf("--max-dead-letter-fraction %s: %v\n%s", frac, err, stderr)
		}
	}
}
