package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestDemo runs `virality demo` as a user would: it prints the broker's
// address first, shows trending videos within 15 s, answers on HTTP while
// it runs, lets kcat (librdkafka) produce likes that it scores and read
// the scores back, and stops cleanly on Ctrl-C.
func TestDemo(t *testing.T) {
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Skip("kcat is not installed (CI installs it: apt-get install kcat)")
	}
	httpAddr := freePort(t)
	cmd := child(context.Background(), "demo", "--view", "plain", "--rate", "500", "--http-addr", httpAddr)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	next := func(limit time.Duration) string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("demo ended: %s", stderr.String())
			}
			return l
		case <-time.After(limit):
			t.Fatalf("no output for %v; stderr: %s", limit, stderr.String())
		}
		return ""
	}
	first := next(10 * time.Second)
	broker, ok := strings.CutPrefix(first, "broker: ")
	if !ok {
		t.Fatalf("first line %q, want broker: HOST:PORT", first)
	}
	for {
		l := next(15*time.Second - time.Since(start))
		if strings.HasPrefix(l, "trending @") && strings.Contains(l, "(") {
			t.Logf("trending after %v: %.120s", time.Since(start).Round(time.Millisecond), l)
			break
		}
	}
	base := "http://" + httpAddr
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/v1/trending?region=global&k=5", "/v1/regions", "/"} {
		if code, body := httpGet(t, base+path); code != 200 {
			t.Errorf("GET %s: %d %s", path, code, body)
		}
	}

	// kcat produces likes for a video of its own into the demo's topic...
	now := time.Now().UnixMilli()
	var in strings.Builder
	for i := range 3 {
		fmt.Fprintf(&in, "kcat-video|{\"video_id\":\"kcat-video\",\"user_id\":\"kcat-user-%d\",\"ts\":%d,\"region\":\"US\"}\n", i, now+int64(i))
	}
	prod := exec.Command(kcat, "-b", broker, "-t", "likes", "-P", "-K", "|")
	prod.Stdin = strings.NewReader(in.String())
	if out, err := prod.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v: %s", err, out)
	}
	// ...which the demo scores: over HTTP, then on video-scores read by kcat.
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, body := httpGet(t, base+"/v1/videos/kcat-video")
		if code == 200 && strings.Contains(body, `"likes":3,`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kcat's likes not scored: %d %s", code, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The HTTP answer may come before the commit that writes the record to
	// Kafka: read until it is there.
	var last map[string]any
	for deadline := time.Now().Add(20 * time.Second); ; {
		// The demo writes all the time, so kcat may never see every
		// partition at its end at once: read for a few seconds at most.
		kctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		out, err := exec.CommandContext(kctx, kcat, "-b", broker, "-t", "video-scores", "-C", "-e", "-q", "-f", "%k\t%s\n").Output()
		cancel()
		if err != nil && kctx.Err() == nil {
			t.Fatalf("kcat -C: %v", err)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if k, v, ok := strings.Cut(l, "\t"); ok && k == "kcat-video" {
				last = nil
				if err := json.Unmarshal([]byte(v), &last); err != nil {
					t.Fatal(err)
				}
			}
		}
		if last != nil && last["likes"] == 3.0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kcat read no record with 3 likes for kcat-video: %v", last)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if last["unique_likers"] != 3.0 {
		t.Fatalf("kcat-video: %v", last)
	}

	// Ctrl-C stops it cleanly.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		for range lines {
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("demo did not stop cleanly: %v\n%s", err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatal("demo did not stop within 15 s of Ctrl-C")
	}
}
