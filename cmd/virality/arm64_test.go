package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// TestBackfillSameBytesOnArm64: the virality command built for arm64 and
// run under QEMU's user-mode emulator (Debian's qemu-user-static)
// generates the same likes as this build and backfills them into the
// same bytes: scores, trending lists, creators, rising creators and dead
// letters. arm64's compiler fuses multiply-adds and Go's math package
// runs other code there, so this is what the explicit roundings and
// detmath are for (the scoring package comment, "Bits across machines").
// A build from before the roundings wrote other scores for this input.
func TestBackfillSameBytesOnArm64(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds the command for arm64 and runs a backfill emulated")
	}
	if runtime.GOARCH == "arm64" {
		t.Skip("already on arm64")
	}
	qemu, err := exec.LookPath("qemu-aarch64-static")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("qemu-aarch64-static is not installed: CI must install Debian's qemu-user-static (%v)", err)
		}
		t.Skipf("qemu-aarch64-static is not installed (Debian: apt-get install qemu-user-static): %v", err)
	}
	dir := t.TempDir()
	arm := filepath.Join(dir, "virality-arm64")
	build := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", arm, ".")
	build.Env = append(os.Environ(), "GOOS=linux", "GOARCH=arm64", "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build for arm64: %v\n%s", err, out)
	}
	emulated := func(args ...string) {
		t.Helper()
		cmd := exec.Command(qemu, append([]string{arm}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("virality %v on arm64: %v\n%s", args, err, out)
		}
	}

	gen := func(out string) []string {
		return []string{"gen", "--seed", "1", "--events", "300000", "--videos", "30000", "--users", "150000", "--duration", "24h",
			"--bad-share", "0.001", "--out", filepath.Join(out, "likes.jsonl"), "--truth-out", filepath.Join(out, "truth.jsonl")}
	}
	files := []string{"scores.jsonl", "trending.jsonl", "creators.jsonl", "rising.jsonl", "dlq.jsonl"}
	backfill := func(in, out string) []string {
		return []string{"backfill", "--in", in, "--now", "2026-11-26T00:00:00Z", "--progress", "0",
			"--out", filepath.Join(out, files[0]), "--trending-out", filepath.Join(out, files[1]),
			"--creators-out", filepath.Join(out, files[2]), "--rising-creators-out", filepath.Join(out, files[3]),
			"--dead-letter-out", filepath.Join(out, files[4]), "--state-dir", filepath.Join(out, "state")}
	}
	here, there := filepath.Join(dir, "amd64"), filepath.Join(dir, "arm64")
	for _, d := range []string{here, there} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	runCommand(t, gen(here)...)
	emulated(gen(there)...)
	in := filepath.Join(here, "likes.jsonl")
	runCommand(t, backfill(in, here)...)
	emulated(backfill(in, there)...)

	for _, name := range append([]string{"likes.jsonl", "truth.jsonl"}, files...) {
		a, err := os.ReadFile(filepath.Join(here, name))
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(filepath.Join(there, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs on arm64 (%d bytes, %d here) from line %d", name, len(b), len(a), bytes.Count(a[:commonPrefix(a, b)], []byte("\n"))+1)
			continue
		}
		if len(a) == 0 && name != "dlq.jsonl" {
			t.Errorf("%s is empty: the backfill wrote nothing to compare", name)
		}
		t.Logf("%s: %d bytes, the same on arm64", name, len(a))
	}
}

// commonPrefix returns the length of the longest common prefix of a and b.
func commonPrefix(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return n
}
