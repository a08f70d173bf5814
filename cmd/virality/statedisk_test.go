package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/store"
)

// TestRunReadOnlyState: `virality run` on a state directory it cannot
// write stops at once with one line that names the directory and the
// cause, and exit code store.ExitDisk, before it talks to any broker.
// As root the state lies on a tmpfs remounted read-only (an existing
// state directory, and one still to be made); otherwise on directories
// without write permission.
func TestRunReadOnlyState(t *testing.T) {
	base := filepath.Join(t.TempDir(), "ro")
	if err := os.MkdirAll(filepath.Join(base, "state"), 0o755); err != nil {
		t.Fatal(err)
	}
	cause := "permission denied"
	if os.Geteuid() == 0 {
		// Root writes through permission bits: mount a read-only file system.
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", base).CombinedOutput(); err != nil {
			t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
		}
		t.Cleanup(func() { _ = exec.Command("umount", base).Run() })
		if err := os.Mkdir(filepath.Join(base, "state"), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "-o", "remount,ro", base).CombinedOutput(); err != nil {
			t.Fatalf("remount read-only: %v: %s", err, out)
		}
		cause = "read-only file system"
	} else {
		for _, d := range []string{filepath.Join(base, "state"), base} {
			if err := os.Chmod(d, 0o555); err != nil {
				t.Fatal(err)
			}
		}
		t.Cleanup(func() { _ = os.Chmod(base, 0o755); _ = os.Chmod(filepath.Join(base, "state"), 0o755) })
	}
	for _, state := range []string{filepath.Join(base, "state"), filepath.Join(base, "new")} {
		var stderr bytes.Buffer
		cmd := child(context.Background(), "run", "--brokers", "127.0.0.1:1", "--state-dir", state, "--http-addr", "")
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		msg := strings.TrimSpace(stderr.String())
		if !errors.As(err, &ee) || ee.ExitCode() != store.ExitDisk {
			t.Fatalf("run on %s: %v, want exit code %d\n%s", state, err, store.ExitDisk, msg)
		}
		if strings.Count(msg, "\n") > 0 || !strings.Contains(msg, "state "+state+": "+cause) {
			t.Fatalf("run on %s: want one line naming the directory and %q:\n%s", state, cause, msg)
		}
		t.Logf("exit %d: %s", ee.ExitCode(), msg)
	}
}

// TestRunReadyzLowDisk: a running service whose state's file system fills
// up below --min-free-disk-mb answers 503 on /readyz with the reason, and
// 200 again once there is room. It fills a real tmpfs, so it runs as root
// (CI) and is skipped elsewhere; service's TestReadyReportsLowDisk covers
// the same with the free space injected.
func TestRunReadyzLowDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	small := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(small, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=160m", "tmpfs", small).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", small).Run() })
	kc := testKafka(t)
	suffix := fmt.Sprintf("-readyz-disk-%d", time.Now().UnixNano())
	if _, err := kafkaio.EnsureTopics(context.Background(), kc, []kafkaio.TopicSpec{{Name: "likes" + suffix, Partitions: 1}}); err != nil {
		t.Fatal(err)
	}
	stderr := &lockedBuffer{}
	cmd := child(context.Background(), "run", "--brokers", strings.Join(kc.Brokers, ","), "--group", "virality"+suffix,
		"--input-topic", "likes"+suffix, "--scores-topic", "video-scores"+suffix, "--trending-topic", "trending"+suffix,
		"--dead-letter-topic", "likes.dlq"+suffix, "--state-dir", filepath.Join(small, "state"),
		"--http-addr", "127.0.0.1:0", "--min-free-disk-mb", "64")
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	listening := regexp.MustCompile(`HTTP listening url=(\S+)`)
	var url string
	if !eventually(time.Minute, func() bool {
		m := listening.FindStringSubmatch(stderr.String())
		if m != nil {
			url = m[1]
		}
		return m != nil
	}) {
		t.Fatalf("no HTTP address in the log:\n%s", stderr.String())
	}
	readyz := func() (int, string) {
		res, err := http.Get(url + "/readyz")
		if err != nil {
			return 0, err.Error()
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(body)
	}
	var code int
	var why string
	if !eventually(time.Minute, func() bool { code, why = readyz(); return code == http.StatusOK }) {
		t.Fatalf("not ready with room on disk: %d %s\n%s", code, why, stderr.String())
	}
	// Leave less than 64 MiB free.
	free, err := store.FreeBytes(small)
	if err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(small, "filler")
	if err := os.WriteFile(filler, make([]byte, free-32<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	if !eventually(time.Minute, func() bool { code, why = readyz(); return code == http.StatusServiceUnavailable }) {
		t.Fatalf("/readyz still %d with 32 MiB free: %s", code, why)
	}
	for _, want := range []string{filepath.Join(small, "state"), "almost no space left", "below --min-free-disk-mb 64"} {
		if !strings.Contains(why, want) {
			t.Fatalf("/readyz says %q; want it to say %q", why, want)
		}
	}
	t.Logf("/readyz %d: %s", code, strings.TrimSpace(why))
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if !eventually(time.Minute, func() bool { code, why = readyz(); return code == http.StatusOK }) {
		t.Fatalf("/readyz still %d with room again: %s", code, why)
	}
}

// lockedBuffer is a bytes.Buffer a child process writes while the test
// reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
