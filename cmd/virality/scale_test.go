package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/viralityhq/virality/kafkaio"
)

// instance is one `virality run` child process.
type instance struct {
	name   string
	cmd    *exec.Cmd
	stderr *strings.Builder
}

func startInstance(t *testing.T, name string, args ...string) *instance {
	t.Helper()
	in := &instance{name: name, cmd: child(context.Background(), args...), stderr: &strings.Builder{}}
	in.cmd.Stderr = in.stderr
	if err := in.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if in.cmd.ProcessState == nil {
			_ = in.cmd.Process.Kill()
			_ = in.cmd.Wait()
		}
	})
	return in
}

func (in *instance) stop(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := in.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	err := in.cmd.Wait()
	if sig == syscall.SIGTERM && err != nil {
		t.Fatalf("instance %s, stopped with SIGTERM: %v\n%s", in.name, err, in.stderr.String())
	}
	t.Logf("instance %s stopped with %v", in.name, sig)
}

// trendingLists reads trending records (JSON lines or a topic's values)
// into lists by (tick, region).
func trendingLists(t *testing.T, values []string) map[string][]string {
	t.Helper()
	m := map[string][]string{}
	for _, v := range values {
		var r struct {
			TS     int64           `json:"ts"`
			Region string          `json:"region"`
			Videos json.RawMessage `json:"videos"`
		}
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			t.Fatalf("trending record %q: %v", v, err)
		}
		k := fmt.Sprintf("%d/%s", r.TS, r.Region)
		m[k] = append(m[k], string(r.Videos))
	}
	return m
}

// compareTrending checks the trending topic against the backfill's file:
// one list per (tick, region), the backfill's, for at least 9 in 10 of
// the backfill's (a tick every partition passed only as the input ended
// may be missing). It returns how many lists the topic holds, how many
// were compared, and how many the backfill wrote.
func compareTrending(t *testing.T, kc kafkaio.Config, topic, wantFile string) (live, compared, back int) {
	t.Helper()
	var liveValues []string
	for _, r := range readAll(t, kc, topic) {
		liveValues = append(liveValues, string(r.Value))
	}
	got, want := trendingLists(t, liveValues), trendingLists(t, fileLines(t, wantFile))
	if len(got) == 0 {
		t.Fatal("no trending lists")
	}
	for k, lists := range got {
		for _, l := range lists[1:] {
			if l != lists[0] {
				t.Fatalf("trending %s has conflicting lists:\n%s\n%s", k, lists[0], l)
			}
		}
		if b, ok := want[k]; ok {
			if b[0] != lists[0] {
				t.Fatalf("trending %s:\n live:     %.400s\n backfill: %.400s", k, lists[0], b[0])
			}
			compared++
		}
	}
	if compared < len(want)*9/10 {
		t.Fatalf("only %d of the backfill's %d trending lists were written live", compared, len(want))
	}
	return len(got), compared, len(want)
}

func fileLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		out = append(out, sc.Text())
	}
	return out
}

// withoutSeq drops a score record's seq, which counts emissions.
func withoutSeq(rec string) string {
	var m map[string]any
	if json.Unmarshal([]byte(rec), &m) != nil {
		return rec
	}
	delete(m, "seq")
	b, _ := json.Marshal(m)
	return string(b)
}

// TestScaleOut: likes keyed by user flow into an 8-partition topic while
// instances of `virality run` come and go in one consumer group: three
// start, one is killed with SIGKILL, a fourth joins with an empty state
// directory, two stop gracefully and the fourth finishes alone. Each
// partition's state follows it through the changelog topic and each
// record reaches its video's partition through the repartition topic, so
// that in the end every video's last record equals the last record of a
// single-process backfill of the same likes, and the trending topic holds
// one list per (tick, region), the backfill's.
func TestScaleOut(t *testing.T) {
	if testing.Short() {
		t.Skip("four child processes and a minute of traffic: not in -short")
	}
	kc := testKafka(t)
	brokers := strings.Join(kc.Brokers, ",")
	dir := t.TempDir()
	suffix := fmt.Sprintf("-scale-%d", time.Now().UnixNano())
	topic, scores, trending, group := "likes"+suffix, "video-scores"+suffix, "trending"+suffix, "virality"+suffix
	const n = 8
	in := filepath.Join(dir, "likes.jsonl")
	runCommand(t, "gen", "--events", "120000", "--videos", "10000", "--users", "60000", "--duration", "4h", "--bursts", "4", "--campaigns", "4",
		"--farm-accounts", "300", "--late-share", "0.001", "--bad-share", "0.001", "--out", in)
	if _, err := kafkaio.EnsureTopics(context.Background(), kc, []kafkaio.TopicSpec{{Name: topic, Partitions: n}}); err != nil {
		t.Fatal(err)
	}

	// What one process makes of the same likes.
	wantScores, wantTrending := filepath.Join(dir, "backfill-scores.jsonl"), filepath.Join(dir, "backfill-trending.jsonl")
	runCommand(t, "backfill", "--in", in, "--partitions", "8", "--progress", "0", "--now", time.Now().UTC().Format(time.RFC3339),
		"--out", wantScores, "--trending-out", wantTrending, "--dead-letter-out", filepath.Join(dir, "backfill-dlq.jsonl"))

	args := func(name string) []string {
		return []string{"run", "--brokers", brokers, "--group", group, "--input-topic", topic,
			"--scores-topic", scores, "--trending-topic", trending, "--dead-letter-topic", "likes.dlq" + suffix,
			"--state-dir", filepath.Join(dir, "state-"+name), "--http-addr", "", "--log-level", "warn",
			"--idle-timeout", "1s", "--commit-interval", "200ms", "--commit-every", "5000"}
	}
	total := int64(len(fileLines(t, in)))
	waitCommitted := func(what string, atLeast int64) {
		t.Helper()
		if !eventually(3*time.Minute, func() bool { return committed(t, kc, group, topic, n) >= atLeast }) {
			t.Fatalf("timed out waiting for %s: %d of %d committed", what, committed(t, kc, group, topic, n), atLeast)
		}
	}

	// Likes flow in steadily for about 40 s, keyed by user, while
	// instances come and go. (A pause in the input would let partitions
	// go idle and close ticks early, which a live run may do.)
	producer := startInstance(t, "producer", "produce", "--brokers", brokers, "--topic", topic, "--key", "user", "--rate", "3000", "--in", in)
	a, b, c := startInstance(t, "a", args("a")...), startInstance(t, "b", args("b")...), startInstance(t, "c", args("c")...)
	waitCommitted("a fifth of the likes", total/5)
	b.stop(t, syscall.SIGKILL)
	d := startInstance(t, "d", args("d")...) // an empty state directory
	waitCommitted("half of the likes", total/2)
	a.stop(t, syscall.SIGTERM)
	c.stop(t, syscall.SIGTERM)
	if err := producer.cmd.Wait(); err != nil {
		t.Fatalf("produce: %v\n%s", err, producer.stderr.String())
	}
	waitCommitted("every like", total)

	// Once the input is idle, held-back scores are flushed: wait for the
	// last record of every video to be the backfill's.
	exp := lastScoresFile(t, wantScores)
	var got map[string]string
	converged := func() bool {
		got = lastScores(t, kc, scores)
		for id, w := range exp {
			if withoutSeq(got[id]) != withoutSeq(w) {
				return false
			}
		}
		return len(got) == len(exp)
	}
	eventually(2*time.Minute, converged) // checked below, with the difference
	d.stop(t, syscall.SIGTERM)
	for id, w := range exp {
		if withoutSeq(got[id]) != withoutSeq(w) {
			t.Fatalf("video %s:\n live:     %s\n backfill: %s\n%s", id, got[id], w, d.stderr.String())
		}
	}
	if len(got) != len(exp) || len(exp) == 0 {
		t.Fatalf("%d videos live, %d in the backfill", len(got), len(exp))
	}

	// One list per (tick, region), the backfill's, for every tick that
	// every partition passed well before the input ended.
	live, compared, back := compareTrending(t, kc, trending, wantTrending)
	t.Logf("%d videos agree; %d (tick, region) lists, one each, %d of them compared with the backfill's %d",
		len(exp), live, compared, back)
}
