package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/viralityhq/virality/kafkaio"
)

// TestReplay: replaying a topic's time range twice gives byte-identical
// outputs, with creator momentum computed or not, and a replay of the
// whole topic ends with the same record for every video as a backfill of
// the same partitions; a sub-range takes exactly the records whose
// timestamps lie in it.
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

	replay := func(name, from, to string, more ...string) string {
		out := filepath.Join(dir, name)
		stderr := runCommand(t, append([]string{"replay", "--brokers", brokers, "--input-topic", topic, "--from", from, "--to", to,
			"--out", out + "-scores.jsonl", "--trending-out", out + "-trending.jsonl", "--dead-letter-out", out + "-dlq.jsonl"}, more...)...)
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
	// The second computes creator momentum too (the first has no creator
	// output, so does not): the other outputs are the same.
	replay("a", "2026-10-31T00:00:00Z", "2100-01-01T00:00:00Z")
	replay("b", "2026-10-31T00:00:00Z", "2100-01-01T00:00:00Z", "--creators-out", filepath.Join(dir, "b-creators.jsonl"))
	if a, b := all("a"), all("b"); len(a) == 0 || !bytes.Equal(a, b) {
		t.Fatalf("two replays of the same range differ (%d and %d bytes)", len(a), len(b))
	}
	if len(readLines(t, filepath.Join(dir, "b-creators.jsonl"))) == 0 {
		t.Fatal("a replay with --creators-out wrote no creator record")
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

// TestReplayWarmup: a replay of the second half of a topic with --warmup
// all ends with the same record for every video (apart from seq) as a
// backfill of the whole file, and writes the same trending list for every
// tick from --from on; its outputs are exactly those of a replay of the
// whole topic from --from on (score records and lists by event time, dead
// letters by offset), byte for byte. Progress lines name the phase.
func TestReplayWarmup(t *testing.T) {
	kc := testKafka(t)
	brokers := strings.Join(kc.Brokers, ",")
	dir := t.TempDir()
	topic := fmt.Sprintf("likes-warmup-%d", time.Now().UnixNano())
	in := filepath.Join(dir, "likes.jsonl")
	runCommand(t, "gen", "--events", "120000", "--videos", "15000", "--users", "80000", "--duration", "6h",
		"--bursts", "5", "--campaigns", "5", "--farm-accounts", "300", "--late-share", "0.001", "--bad-share", "0.001", "--out", in)
	const parts = 4
	createKeptTopic(t, kc, topic, parts)
	runCommand(t, "produce", "--brokers", brokers, "--topic", topic, "--in", in)
	from := time.Date(2026, 11, 1, 3, 0, 0, 0, time.UTC)
	t1 := from.UnixMilli()

	out := func(name, kind string) string { return filepath.Join(dir, name+"-"+kind+".jsonl") }
	replay := func(name, from string, extra ...string) string {
		args := append([]string{"replay", "--brokers", brokers, "--input-topic", topic, "--from", from, "--to", "2100-01-01T00:00:00Z",
			"--out", out(name, "scores"), "--trending-out", out(name, "trending"), "--dead-letter-out", out(name, "dlq")}, extra...)
		return runCommand(t, args...)
	}
	stderr := replay("warm", from.Format(time.RFC3339), "--warmup", "all", "--progress", "50ms")
	for _, want := range []string{"replay: warming up, ", "replay: in range, ", "records of warm-up (all)"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("no %q on standard error:\n%s", want, stderr)
		}
	}
	runCommand(t, "backfill", "--in", in, "--partitions", fmt.Sprint(parts), "--progress", "0", "--now", time.Now().UTC().Format(time.RFC3339),
		"--out", out("backfill", "scores"), "--trending-out", out("backfill", "trending"), "--dead-letter-out", out("backfill", "dlq"))

	read := func(path string) []byte {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	since := func(m map[string]json.RawMessage) bool { return jsonInt(t, m["ts"]) >= t1 }
	// Final records: of the backfill, those of event time from T1 on.
	fromT1 := filepath.Join(dir, "backfill-from-t1.jsonl")
	if err := os.WriteFile(fromT1, filterLines(t, read(out("backfill", "scores")), since), 0o644); err != nil {
		t.Fatal(err)
	}
	got, want := lastScoresFile(t, out("warm", "scores")), lastScoresFile(t, fromT1)
	if len(want) == 0 || len(got) != len(want) {
		t.Fatalf("%d videos replayed with warm-up, %d backfilled from %s on", len(got), len(want), from)
	}
	for id, w := range want {
		if stripSeq(got[id]) != stripSeq(w) {
			t.Fatalf("video %s:\n replay:   %s\n backfill: %s", id, got[id], w)
		}
	}
	// Trending: every (tick, region) from T1 on.
	lists := func(b []byte) map[string]string {
		m := map[string]string{}
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			var r struct {
				TS     int64  `json:"ts"`
				Region string `json:"region"`
			}
			if err := json.Unmarshal([]byte(l), &r); err != nil {
				t.Fatalf("%v: %s", err, l)
			}
			m[fmt.Sprint(r.TS, " ", r.Region)] = l
		}
		return m
	}
	gotLists, wantLists := lists(read(out("warm", "trending"))), lists(filterLines(t, read(out("backfill", "trending")), since))
	if len(wantLists) == 0 || len(gotLists) != len(wantLists) {
		t.Fatalf("%d lists replayed with warm-up, %d backfilled from %s on", len(gotLists), len(wantLists), from)
	}
	for k, w := range wantLists {
		if gotLists[k] != w {
			t.Fatalf("tick and region %s:\n replay:   %s\n backfill: %s", k, gotLists[k], w)
		}
	}

	// A replay of the whole topic, cut at T1: the same bytes.
	replay("whole", "2026-10-31T00:00:00Z", "--progress", "0")
	starts := make([]int64, parts)
	for p := range parts {
		var err error
		if starts[p], err = kafkaio.OffsetForTime(context.Background(), kc, topic, p, from); err != nil {
			t.Fatal(err)
		}
	}
	inRange := func(m map[string]json.RawMessage) bool {
		return jsonInt(t, m["offset"]) >= starts[jsonInt(t, m["partition"])]
	}
	for _, c := range []struct {
		kind string
		keep func(map[string]json.RawMessage) bool
	}{{"scores", since}, {"trending", since}, {"dlq", inRange}} {
		w, g := filterLines(t, read(out("whole", c.kind)), c.keep), read(out("warm", c.kind))
		if len(w) == 0 || !bytes.Equal(g, w) {
			t.Fatalf("%s: %d bytes with warm-up, %d of a replay of the whole topic from %s on: not identical", c.kind, len(g), len(w), from)
		}
	}
}

// createKeptTopic creates a topic without time-based retention: generated
// likes carry event times older than a real broker's default retention,
// which would delete them between two replays.
func createKeptTopic(t *testing.T, kc kafkaio.Config, topic string, parts int) {
	t.Helper()
	cl, err := kc.Client()
	if err != nil {
		t.Fatal(err)
	}
	res, err := cl.CreateTopics(context.Background(), &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{
		Topic: topic, NumPartitions: parts, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: "retention.ms", ConfigValue: "-1"}},
	}}})
	if err == nil {
		err = res.Errors[topic]
	}
	if err != nil {
		t.Fatal(err)
	}
}
