package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/viralityhq/virality/store"
)

// TestDiskFull: a backfill whose state directory runs out of space stops
// with one line that names the directory and the cause, and exit code
// store.ExitDisk, never a runtime panic; given room, the same command
// resumes and ends with the outputs of an uninterrupted run. It mounts a
// small tmpfs, so it runs as root (CI) and is skipped elsewhere.
func TestDiskFull(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	dir := t.TempDir()
	small := filepath.Join(dir, "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", small).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", small).Run() })

	in := filepath.Join(dir, "likes.jsonl")
	runCommand(t, "gen", "--events", "400000", "--videos", "20000", "--users", "100000", "--duration", "6h", "--farm-accounts", "300",
		"--late-share", "0.001", "--bad-share", "0.001", "--out", in)
	args := func(out, state string) []string {
		return []string{"backfill", "--in", in, "--now", "2026-11-26T00:00:00Z", "--progress", "0", "--commit-every", "20000",
			"--out", filepath.Join(out, "scores.jsonl"), "--trending-out", filepath.Join(out, "trending.jsonl"),
			"--dead-letter-out", filepath.Join(out, "dlq.jsonl"), "--state-dir", state}
	}
	want := filepath.Join(dir, "uninterrupted")
	got := filepath.Join(dir, "full")
	for _, d := range []string{want, got} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	runCommand(t, args(want, filepath.Join(want, "state"))...)

	var stderr bytes.Buffer
	cmd := child(context.Background(), args(got, filepath.Join(small, "state"))...)
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != store.ExitDisk {
		t.Fatalf("backfill on a full disk: %v, want exit code %d\n%s", err, store.ExitDisk, stderr.String())
	}
	msg := strings.TrimSpace(stderr.String())
	if strings.Contains(msg, "goroutine") || strings.Contains(msg, "panic") || strings.Count(msg, "\n") > 2 ||
		!strings.Contains(msg, "no space left on device") || !strings.Contains(msg, small) {
		t.Fatalf("the error should be one line naming %s and the cause:\n%s", small, msg)
	}
	t.Logf("on a full disk: exit %d: %s", ee.ExitCode(), msg)

	// Room again: the same command resumes from its last commit.
	if out, err := exec.Command("mount", "-o", "remount,size=512m", small).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v: %s", err, out)
	}
	runCommand(t, args(got, filepath.Join(small, "state"))...)
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
			t.Fatalf("%s: %d bytes uninterrupted, %d after the disk filled up and was given room", name, len(a), len(b))
		}
	}
}

// TestRunNeedsFreeSpace: the live service does not start on a state file
// system with less than --min-free-disk-mb free: one line says so, with
// exit code store.ExitDisk.
func TestRunNeedsFreeSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	small := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", small).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", small).Run() })
	var stderr bytes.Buffer
	cmd := child(context.Background(), "run", "--brokers", "127.0.0.1:1", "--state-dir", filepath.Join(small, "state"), "--http-addr", "",
		"--min-free-disk-mb", "64")
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	msg := strings.TrimSpace(stderr.String())
	if !errors.As(err, &ee) || ee.ExitCode() != store.ExitDisk || !strings.Contains(msg, "below --min-free-disk-mb 64") || strings.Count(msg, "\n") > 0 {
		t.Fatalf("run on a 16 MiB file system: %v, want exit code %d and one line:\n%s", err, store.ExitDisk, msg)
	}
	t.Logf("exit %d: %s", ee.ExitCode(), msg)
}
