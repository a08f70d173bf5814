package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
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
// (--workers 1 and 2).
func TestBackfillTwiceIdentical(t *testing.T) {
	dir := t.TempDir()
	in := filepath.Join(dir, "likes.jsonl")
	runCommand(t, "gen", "--events", "300000", "--videos", "20000", "--users", "100000", "--duration", "6h", "--farm-accounts", "300",
		"--late-share", "0.001", "--bad-share", "0.001", "--out", in)
	outs := [][]byte{}
	for i, run := range []struct{ decoders, workers string }{{"0", "1"}, {"2", "2"}} {
		out := filepath.Join(dir, run.decoders)
		runCommand(t, "backfill", "--in", in, "--now", "2026-11-26T00:00:00Z", "--progress", "0", "--decoders", run.decoders,
			"--workers", run.workers,
			"--out", out+"-scores.jsonl", "--trending-out", out+"-trending.jsonl", "--dead-letter-out", out+"-dlq.jsonl")
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
	if !bytes.Equal(outs[0], outs[1]) {
		t.Fatal("two backfills of the same input differ")
	}
}
