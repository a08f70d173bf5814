package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/viralityhq/virality/kafkaio"
)

// TestReplay: replaying a topic's time range twice gives byte-identical
// outputs, and a replay of the whole topic ends with the same record for
// every video as a backfill of the same partitions; a sub-range takes
// exactly the records whose timestamps lie in it.
func TestReplay(t *testing.T) {
	kc := testKafka(t)
	brokers := strings.Join(kc.Brokers, ",")
	dir := t.TempDir()
	topic := fmt.Sprintf("likes-replay-%d", time.Now().UnixNano())
	in := filepath.Join(dir, "likes.jsonl")
	runCommand(t, "gen", "--events", "150000", "--videos", "20000", "--users", "100000", "--duration", "6h",
		"--bursts", "5", "--campaigns", "5", "--farm-accounts", "300", "--late-share", "0.001", "--bad-share", "0.001", "--out", in)
	if _, err := kafkaio.EnsureTopics(context.Background(), kc, []kafkaio.TopicSpec{{Name: topic, Partitions: 4}}); err != nil {
		t.Fatal(err)
	}
	runCommand(t, "produce", "--brokers", brokers, "--topic", topic, "--in", in)

	replay := func(name, from, to string) string {
		out := filepath.Join(dir, name)
		stderr := runCommand(t, "replay", "--brokers", brokers, "--input-topic", topic, "--from", from, "--to", to,
			"--out", out+"-scores.jsonl", "--trending-out", out+"-trending.jsonl", "--dead-letter-out", out+"-dlq.jsonl")
		return stderr
	}
	all := func(name string) []byte {
		var b []byte
		for _, s := range []string{"-scores.jsonl", "-trending.jsonl", "-dlq.jsonl"} {
			x, err := os.ReadFile(filepath.Join(dir, name+s))
			if err != nil {
				t.Fatal(err)
			}
			b = append(b, x...)
		}
		return b
	}
	replay("a", "2026-10-31T00:00:00Z", "2100-01-01T00:00:00Z")
	replay("b", "2026-10-31T00:00:00Z", "2100-01-01T00:00:00Z")
	if a, b := all("a"), all("b"); len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatalf("two replays of the same range differ (%d and %d bytes)", len(a), len(b))
	}

	back := filepath.Join(dir, "backfill-scores.jsonl")
	runCommand(t, "backfill", "--in", in, "--partitions", "4", "--progress", "0", "--now", time.Now().UTC().Format(time.RFC3339),
		"--out", back, "--dead-letter-out", filepath.Join(dir, "backfill-dlq.jsonl"))
	got, want := lastScoresFile(t, filepath.Join(dir, "a-scores.jsonl")), lastScoresFile(t, back)
	if len(got) != len(want) || len(want) == 0 {
		t.Fatalf("%d videos replayed, %d backfilled", len(got), len(want))
	}
	for id, w := range want {
		if got[id] != w {
			t.Fatalf("video %s:\n replay:   %s\n backfill: %s", id, got[id], w)
		}
	}

	// A sub-range: the first hour. Kafka locates it by record time, and
	// jittered or late likes near its end fall out, so about all of the
	// likes of the hour are taken, and no record is after it.
	stderr := replay("c", "2026-11-01T00:00:00Z", "2026-11-01T01:00:00Z")
	m := regexp.MustCompile(`replay: (\d+) records`).FindStringSubmatch(stderr)
	lines, err := os.ReadFile(in)
	if err != nil {
		t.Fatal(err)
	}
	hour := strings.Count(string(lines), `"ts":"2026-11-01T00:`)
	took := 0
	if m != nil {
		fmt.Sscan(m[1], &took)
	}
	if took < hour*9/10 || took > hour+hour/100 {
		t.Fatalf("sub-range replay took %d records; the first hour has %d likes\n%s", took, hour, stderr)
	}
	end := time.Date(2026, 11, 1, 1, 0, 0, 0, time.UTC).UnixMilli()
	for id, rec := range lastScoresFile(t, filepath.Join(dir, "c-scores.jsonl")) {
		var ts int64
		fmt.Sscanf(rec[strings.Index(rec, `"ts":`)+5:], "%d", &ts)
		if ts >= end {
			t.Fatalf("video %s scored at %d, after the range: %s", id, ts, rec)
		}
	}
}
