package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/viralityhq/virality/kafkaio"
)

// testKafka returns the brokers to test against: KAFKA_BROKERS (a real
// Apache Kafka in CI) or an embedded broker in this process.
func testKafka(t *testing.T) kafkaio.Config {
	t.Helper()
	kc := kafkaio.DefaultConfig()
	if b := os.Getenv("KAFKA_BROKERS"); b != "" {
		kc.Brokers = strings.Split(b, ",")
		return kc
	}
	emb, err := kafkaio.StartEmbedded(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(emb.Close)
	kc.Brokers = []string{emb.Addr()}
	return kc
}

// committed sums the offsets the group has committed on topic.
func committed(t *testing.T, kc kafkaio.Config, group, topic string, n int) int64 {
	t.Helper()
	cl, err := kc.Client()
	if err != nil {
		t.Fatal(err)
	}
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	res, err := cl.OffsetFetch(context.Background(), &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return 0
	}
	var sum int64
	for _, p := range res.Topics[topic] {
		if p.CommittedOffset > 0 {
			sum += p.CommittedOffset
		}
	}
	return sum
}

// lastScores reads a scores topic and returns each video's last record.
func lastScores(t *testing.T, kc kafkaio.Config, topic string) map[string]string {
	t.Helper()
	ctx := context.Background()
	n, err := kafkaio.Partitions(ctx, kc, topic)
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]string{}
	for p := range n {
		first, end, err := kafkaio.FirstLastOffsets(ctx, kc, topic, p)
		if err != nil {
			t.Fatal(err)
		}
		src, err := kafkaio.NewPartitionSource(kc, topic, p, first)
		if err != nil {
			t.Fatal(err)
		}
		for src.Offset() < end {
			recs, err := src.Next(ctx, nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				last[string(r.Key)] = string(r.Value)
			}
		}
		src.Close()
	}
	return last
}

// countRecords counts the records topic holds.
func countRecords(t *testing.T, kc kafkaio.Config, topic string) int64 {
	t.Helper()
	ctx := context.Background()
	n, err := kafkaio.Partitions(ctx, kc, topic)
	if err != nil {
		t.Fatal(err)
	}
	var sum int64
	for p := range n {
		first, end, err := kafkaio.FirstLastOffsets(ctx, kc, topic, p)
		if err != nil {
			t.Fatal(err)
		}
		sum += end - first
	}
	return sum
}

func lastScoresFile(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	last := map[string]string{}
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		l := sc.Text()
		id := l[len(`{"video_id":"`):strings.Index(l, `","ts"`)]
		last[id] = l
	}
	return last
}

// TestRunRestarts: the live service is stopped mid-stream, once gracefully
// (SIGTERM) and once with SIGKILL, each time a real child process, and
// started again on the same state: the final score of every video equals
// that of a backfill of the same partitions, so no like was lost or
// counted twice, and so does every trending list (after the SIGKILL the
// merger reads the reports it had not merged again from the partials
// topic).
func TestRunRestarts(t *testing.T) {
	kc := testKafka(t)
	brokers := strings.Join(kc.Brokers, ",")
	dir := t.TempDir()
	suffix := fmt.Sprintf("-restarts-%d", time.Now().UnixNano())
	topic, scores, group := "likes"+suffix, "video-scores"+suffix, "virality"+suffix
	const n = 8
	in := filepath.Join(dir, "likes.jsonl")
	runCommand(t, "gen", "--events", "150000", "--videos", "20000", "--users", "100000", "--duration", "6h", "--bursts", "5", "--campaigns", "5",
		"--farm-accounts", "300", "--late-share", "0.001", "--bad-share", "0.001", "--out", in)
	if _, err := kafkaio.EnsureTopics(context.Background(), kc, []kafkaio.TopicSpec{{Name: topic, Partitions: n}}); err != nil {
		t.Fatal(err)
	}
	runCommand(t, "produce", "--brokers", brokers, "--topic", topic, "--in", in)

	// What an uninterrupted run ends with.
	want, wantTrending := filepath.Join(dir, "backfill-scores.jsonl"), filepath.Join(dir, "backfill-trending.jsonl")
	runCommand(t, "backfill", "--in", in, "--partitions", "8", "--progress", "0", "--now", time.Now().UTC().Format(time.RFC3339),
		"--commit-every", "5000", "--out", want, "--trending-out", wantTrending, "--dead-letter-out", filepath.Join(dir, "backfill-dlq.jsonl"))

	args := []string{"run", "--brokers", brokers, "--group", group, "--input-topic", topic,
		"--scores-topic", scores, "--trending-topic", "trending" + suffix, "--dead-letter-topic", "likes.dlq" + suffix,
		"--state-dir", filepath.Join(dir, "state"), "--http-addr", "", "--log-level", "warn",
		"--idle-timeout", "1s", "--commit-interval", "200ms", "--commit-every", "5000"}
	total := int64(150_000)
	for _, stop := range []struct {
		sig   syscall.Signal
		after int64
	}{{syscall.SIGTERM, total / 4}, {syscall.SIGKILL, total / 2}} {
		cmd := child(context.Background(), args...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(2 * time.Minute)
		for committed(t, kc, group, topic, n) < stop.after {
			if time.Now().After(deadline) {
				cmd.Process.Kill()
				t.Fatalf("no progress past %d records: %s", stop.after, stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := cmd.Process.Signal(stop.sig); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		if stop.sig == syscall.SIGTERM && err != nil {
			t.Fatalf("graceful stop: %v\n%s", err, stderr.String())
		}
		if stop.sig == syscall.SIGTERM && strings.Contains(stderr.String(), "commit at the end") {
			t.Errorf("the graceful stop did not commit what it had applied:\n%s", stderr.String())
		}
		t.Logf("stopped with %v after %d records committed; stderr: %s", stop.sig, committed(t, kc, group, topic, n), stderr.String())
	}
	cmd := child(context.Background(), args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Minute)
	for committed(t, kc, group, topic, n) < total {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatalf("not all consumed: %d of %d: %s", committed(t, kc, group, topic, n), total, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Once the input is idle, held-back scores are flushed: wait for the
	// last record of every video to be the backfill's.
	exp := lastScoresFile(t, want)
	var got map[string]string
	converged := func() bool {
		got = lastScores(t, kc, scores)
		for id, w := range exp {
			if got[id] != w {
				return false
			}
		}
		return len(got) == len(exp)
	}
	start := time.Now()
	ok := eventually(time.Minute, converged) // checked below, with the difference
	t.Logf("converged: %v, after %v", ok, time.Since(start).Round(time.Millisecond))
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("final stop: %v\n%s", err, stderr.String())
	}
	if len(exp) == 0 {
		t.Fatal("the backfill wrote no scores")
	}
	var missing, differ []string
	for id, w := range exp {
		switch g, ok := got[id]; {
		case !ok:
			missing = append(missing, id)
		case g != w:
			differ = append(differ, id)
		}
	}
	if len(missing)+len(differ) > 0 || len(got) != len(exp) {
		for i, id := range missing[:min(5, len(missing))] {
			t.Errorf("missing %d: backfill: %s", i, exp[id])
		}
		for i, id := range differ[:min(5, len(differ))] {
			t.Errorf("differs %d:\n live:     %s\n backfill: %s", i, got[id], exp[id])
		}
		dlq, _ := os.ReadFile(filepath.Join(dir, "backfill-dlq.jsonl"))
		t.Logf("last run's stderr: %s", stderr.String())
		t.Fatalf("%d videos live, %d in the backfill: %d missing, %d differ; dead letters: %d live, %d in the backfill",
			len(got), len(exp), len(missing), len(differ), countRecords(t, kc, "likes.dlq"+suffix), strings.Count(string(dlq), "\n"))
	}
	live, compared, back := compareTrending(t, kc, "trending"+suffix, wantTrending)
	t.Logf("%d videos agree after a graceful stop and a SIGKILL; %d (tick, region) lists, one each, %d of them compared with the backfill's %d",
		len(exp), live, compared, back)
}
