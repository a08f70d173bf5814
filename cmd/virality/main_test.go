package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary act as the virality command, so that tests
// can run it as a real child process (and kill it) without a build step.
func TestMain(m *testing.M) {
	if os.Getenv("VIRALITY_TEST_AS_MAIN") == "1" {
		os.Args = append([]string{"virality"}, os.Args[1:]...)
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// child returns the virality command as a child process.
func child(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), "VIRALITY_TEST_AS_MAIN=1")
	return cmd
}

// eventually polls cond until it holds or limit passes, and reports
// whether it held: the one way these tests wait for a child process or a
// topic to reach a state.
func eventually(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

func runCommand(t *testing.T, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := child(context.Background(), args...)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("virality %v: %v\n%s", args, err, stderr.String())
	}
	return stderr.String()
}

// TestBackfillKilledAndResumed: a backfill killed with SIGKILL and started
// again on the same --state-dir ends with exactly the outputs (and so the
// state) of an uninterrupted run.
func TestBackfillKilledAndResumed(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "likes.jsonl")
	runCommand(t, "gen", "--events", "400000", "--videos", "20000", "--users", "100000", "--duration", "6h", "--farm-accounts", "300",
		"--late-share", "0.001", "--bad-share", "0.001", "--out", in)

	args := func(out string) []string {
		return []string{"backfill", "--in", in, "--now", "2026-11-26T00:00:00Z", "--progress", "0",
			"--commit-every", "20000",
			"--out", filepath.Join(out, "scores.jsonl"),
			"--trending-out", filepath.Join(out, "trending.jsonl"),
			"--dead-letter-out", filepath.Join(out, "dlq.jsonl"),
			"--state-dir", filepath.Join(out, "state")}
	}
	want := filepath.Join(dir, "uninterrupted")
	runCommand(t, args(want)...)

	got := filepath.Join(dir, "killed")
	kills := 0
	for kills < 2 {
		cmd := child(context.Background(), args(got)...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Let it commit a few times, then kill it without warning.
		deadline := time.Now().Add(60 * time.Second)
		for {
			fi, err := os.Stat(filepath.Join(got, "scores.jsonl"))
			if err == nil && fi.Size() > int64(kills+1)*2_000_000 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("backfill wrote nothing for 60 s")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
			t.Fatalf("backfill was not killed (it ended first: %v); make the input larger", err)
		}
		kills++
	}
	runCommand(t, args(got)...)

	for _, name := range []string{"scores.jsonl", "trending.jsonl", "dlq.jsonl"} {
		a, err := os.ReadFile(filepath.Join(want, name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(got, name))
		if err != nil {
			t.Fatal(err)
		}
		if len(a) == 0 || !bytes.Equal(a, b) {
			t.Fatalf("%s: %d bytes uninterrupted, %d after %d kills; not identical", name, len(a), len(b), kills)
		}
	}
}

// TestBackfillTwiceIdentical: the same input and settings give
// byte-identical outputs, whatever the number of decoders and of workers
// (--workers 1 and 2), and whether creator momentum is computed or not
// (with --creators-out, or without: then it is not).
func TestBackfillTwiceIdentical(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "likes.jsonl")
	runCommand(t, "gen", "--events", "300000", "--videos", "20000", "--users", "100000", "--duration", "6h", "--farm-accounts", "300",
		"--late-share", "0.001", "--bad-share", "0.001", "--out", in)
	outs := [][]byte{}
	for i, run := range []struct {
		decoders, workers string
		creators          bool
	}{{"0", "1", false}, {"2", "2", false}, {"1", "2", true}} {
		out := filepath.Join(dir, run.decoders)
		args := []string{"backfill", "--in", in, "--now", "2026-11-26T00:00:00Z", "--progress", "0", "--decoders", run.decoders,
			"--workers", run.workers,
			"--out", out + "-scores.jsonl", "--trending-out", out + "-trending.jsonl", "--dead-letter-out", out + "-dlq.jsonl"}
		if run.creators {
			args = append(args, "--creators-out", out+"-creators.jsonl")
		}
		runCommand(t, args...)
		if run.creators && len(readLines(t, out+"-creators.jsonl")) == 0 {
			t.Fatal("no creator records")
		}
		var all []byte
		for _, name := range []string{"-scores.jsonl", "-trending.jsonl", "-dlq.jsonl"} {
			b, err := os.ReadFile(out + name)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) == 0 {
				t.Fatalf("run %d: %s is empty", i, name)
			}
			all = append(all, b...)
		}
		outs = append(outs, all)
	}
	for i := 1; i < len(outs); i++ {
		if !bytes.Equal(outs[0], outs[i]) {
			t.Fatalf("backfill %d of the same input differs from the first", i+1)
		}
	}
}

// TestBackfillCreatorsResumed: a state built by a backfill without
// creator outputs, which computes no creator momentum, is not resumed by
// one with them (its creators would be missing): the backfill stops and
// says which setting differs. The other way round, too.
func TestBackfillCreatorsResumed(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "likes.jsonl")
	runCommand(t, "gen", "--events", "30000", "--videos", "3000", "--users", "100000", "--duration", "3h",
		"--bursts", "1", "--campaigns", "1", "--farm-accounts", "300", "--out", in)
	for _, first := range []bool{false, true} {
		state := filepath.Join(dir, fmt.Sprintf("state-%t", first))
		args := func(creators bool) []string {
			a := []string{"backfill", "--in", in, "--now", "2026-11-26T00:00:00Z", "--progress", "0",
				"--out", filepath.Join(dir, "scores.jsonl"), "--state-dir", state}
			if creators {
				a = append(a, "--creators-out", filepath.Join(dir, "creators.jsonl"))
			}
			return a
		}
		runCommand(t, args(first)...)
		var stderr bytes.Buffer
		cmd := child(context.Background(), args(!first)...)
		cmd.Stderr = &stderr
		if err := cmd.Run(); err == nil {
			t.Fatalf("a state built with creators %t was resumed with creators %t", first, !first)
		}
		if !strings.Contains(stderr.String(), "creator-momentum=off") || !strings.Contains(stderr.String(), "other settings") {
			t.Fatalf("creators %t, then %t: the error does not say which setting differs:\n%s", first, !first, stderr.String())
		}
	}
}
