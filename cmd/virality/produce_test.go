package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/gen"
	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/processor"
)

// embeddedKafka starts an embedded broker for one test.
func embeddedKafka(t *testing.T) kafkaio.Config {
	t.Helper()
	e, err := kafkaio.StartEmbedded(context.Background(), "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e.Config()
}

// readAll returns every record of topic, partition by partition, with
// copied bytes.
func readAll(t *testing.T, kc kafkaio.Config, topic string) []processor.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, err := kafkaio.Partitions(ctx, kc, topic)
	if err != nil {
		t.Fatal(err)
	}
	var all []processor.Record
	for p := range n {
		src, err := kafkaio.NewPartitionSource(kc, topic, p, kafkaio.FirstOffset)
		if err != nil {
			t.Fatal(err)
		}
		src.MaxWait = 50 * time.Millisecond
		var buf []processor.Record
		for {
			if buf, err = src.Next(ctx, buf); err != nil {
				t.Fatal(err)
			}
			if len(buf) == 0 {
				break
			}
			for _, r := range buf {
				r.Key, r.Value, r.Headers = bytes.Clone(r.Key), bytes.Clone(r.Value), nil
				all = append(all, r)
			}
		}
		src.Close()
	}
	return all
}

func TestProduceFiles(t *testing.T) {
	kc := embeddedKafka(t)
	lines := []string{
		`{"event_id":"e1","video_id":"v1","user_id":"u1","action":"like","ts":"2026-11-26T06:00:00.123Z"}`,
		`{"event_id":"e2","video_id":"v2","user_id":"u1","ts":1764136801000}`,
		`{"video_id":"v1","user_id":"u2","action":"share","ts":"2026-11-26T06:00:02Z"}`, // bad action: unkeyed
		`not json`,
		``,                                 // blank: skipped
		`{"video_id":"v3","user_id":"u3"}`, // no ts: record time = now
	}
	path := filepath.Join(t.TempDir(), "likes.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	o := produceOptions{kafka: kc, topic: "likes", in: []string{path}}
	if _, err := produceFiles(ctx, o); err == nil ||
		err.Error() != `topic "likes" does not exist at `+kc.Brokers[0]+`: create it, or give --partitions N to create it with N partitions` {
		t.Fatalf("without the topic: %v", err)
	}

	o.partitions = 4
	before := time.Now()
	res, err := produceFiles(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	if res.records != 5 || res.unkeyed != 2 {
		t.Errorf("published %d records, %d unkeyed; want 5 and 2", res.records, res.unkeyed)
	}
	got := readAll(t, kc, "likes")
	if len(got) != 5 {
		t.Fatalf("topic holds %d records, want 5", len(got))
	}
	byValue := map[string]processor.Record{}
	for _, r := range got {
		byValue[string(r.Value)] = r
	}
	for _, tc := range []struct {
		line string
		key  string
		time int64 // 0: the wall clock of the run
	}{
		{lines[0], "v1", 1795672800123},
		{lines[1], "v2", 1764136801000},
		// Lines that do not decode keep the record time of the line before.
		{lines[2], "", 1764136801000},
		{lines[3], "", 1764136801000},
		{lines[5], "v3", 0},
	} {
		r, ok := byValue[tc.line]
		if !ok {
			t.Errorf("line %s was not published as it is", tc.line)
			continue
		}
		if string(r.Key) != tc.key || (tc.key == "") != (r.Key == nil) {
			t.Errorf("line %s: key %q, want %q", tc.line, r.Key, tc.key)
		}
		if tc.key != "" && int(r.Partition) != kafkaio.PartitionOf(r.Key, 4) {
			t.Errorf("line %s: partition %d, want %d", tc.line, r.Partition, kafkaio.PartitionOf(r.Key, 4))
		}
		switch {
		case tc.time != 0 && r.Time != tc.time:
			t.Errorf("line %s: record time %d, want the event time %d", tc.line, r.Time, tc.time)
		case tc.time == 0 && (r.Time < before.UnixMilli() || r.Time > time.Now().UnixMilli()):
			t.Errorf("line %s: record time %d, want the wall clock of the run", tc.line, r.Time)
		}
	}
}

func TestGenPublish(t *testing.T) {
	kc := embeddedKafka(t)
	cfg := gen.DefaultConfig()
	cfg.Events, cfg.Videos, cfg.Users, cfg.Duration = 3000, 200, 20_000, time.Hour
	cfg.Bursts, cfg.Campaigns, cfg.FarmAccounts, cfg.BadShare = 0, 0, 40, 0.01
	g, err := gen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	n, unkeyed, err := genPublish(ctx, kc, "likes", 3, g, &pacer{})
	if err != nil {
		t.Fatal(err)
	}
	if n != 3000 || unkeyed == 0 || unkeyed > 100 {
		t.Errorf("published %d events, %d unkeyed", n, unkeyed)
	}
	got := readAll(t, kc, "likes")
	if len(got) != 3000 {
		t.Fatalf("topic holds %d records, want 3000", len(got))
	}
	var ev event.Event
	for _, r := range got {
		if err := event.Decode(r.Value, 0, &ev); err != nil {
			if r.Key != nil {
				t.Errorf("malformed line %s has key %q", r.Value, r.Key)
			}
			continue
		}
		// A record time in the future becomes the clock (brokers refuse it).
		now := time.Now().UnixMilli()
		timeOK := r.Time == ev.TS || (ev.TS > now && r.Time <= now)
		if string(r.Key) != ev.VideoID || !timeOK || int(r.Partition) != kafkaio.PartitionOf(r.Key, 3) {
			t.Errorf("record %s: key %q, time %d, partition %d", r.Value, r.Key, r.Time, r.Partition)
		}
	}
}

func TestPacer(t *testing.T) {
	ctx := context.Background()
	p := pacer{rate: 200}
	flushes := 0
	flush := func(context.Context) error { flushes++; return nil }
	start := time.Now()
	for range 21 {
		if err := p.wait(ctx, 0, flush); err != nil {
			t.Fatal(err)
		}
	}
	// 21 records at 200/s: the last is due 100ms after the first.
	if d := time.Since(start); d < 95*time.Millisecond || d > 500*time.Millisecond {
		t.Errorf("21 records at 200/s took %v", d)
	}
	if flushes != 0 {
		t.Errorf("%d flushes before waits of 5ms, want none", flushes)
	}

	rt := pacer{realtime: true}
	due := time.Now().Add(60 * time.Millisecond)
	if err := rt.wait(ctx, due.UnixMilli(), flush); err != nil {
		t.Fatal(err)
	}
	if time.Now().Before(due.Truncate(time.Millisecond)) || flushes != 1 {
		t.Errorf("realtime: returned %v before the event time, after %d flushes", time.Until(due), flushes)
	}
	if err := rt.wait(ctx, 0, flush); err != nil || flushes != 1 {
		t.Errorf("realtime, event time in the past: %v, %d flushes", err, flushes)
	}

	var zero pacer
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := zero.wait(cctx, 0, nil); err != nil {
		t.Errorf("no pacing: %v", err)
	}
}

// maxRecordLine returns a like line of video v1 that, published as a
// record keyed v1 without headers, takes exactly room+delta bytes as the
// producer counts them (kafka-go: 22 + key + value + 1 for no headers),
// room being a record batch of maxBytes minus its 61 bytes of header.
func maxRecordLine(t *testing.T, maxBytes, delta int, ts int64) string {
	t.Helper()
	head := fmt.Sprintf(`{"video_id":"v1","user_id":"u1","ts":%d,"pad":"`, ts)
	n := maxBytes - 61 + delta - (22 + len("v1") + 1) - len(head) - len(`"}`)
	line := head + strings.Repeat("x", n) + `"}`
	var ev event.Event
	if err := event.Decode([]byte(line), 0, &ev); err != nil || ev.VideoID != "v1" {
		t.Fatalf("padded line does not decode: %v", err)
	}
	return line
}

// createTopicWith creates a topic with topic configs.
func createTopicWith(t *testing.T, kc kafkaio.Config, name string, partitions int, configs map[string]string) {
	t.Helper()
	cl, err := kc.Client()
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Transport.(*kafka.Transport).CloseIdleConnections()
	tc := kafka.TopicConfig{Topic: name, NumPartitions: partitions, ReplicationFactor: 1}
	for k, v := range configs {
		tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := cl.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{tc}})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Errors[name]; err != nil {
		t.Fatal(err)
	}
}

// TestProduceTooLarge: lines too large for the topic are skipped, counted
// and kept aside, and the lines after them are published.
func TestProduceTooLarge(t *testing.T) {
	kc := embeddedKafka(t)
	const limit = 1048588 // Kafka's default max.message.bytes
	ts := time.Now().Add(-time.Minute).UnixMilli()
	small := fmt.Sprintf(`{"video_id":"v2","user_id":"u1","ts":%d}`, ts)
	lines := []string{
		small,
		maxRecordLine(t, limit, 0, ts),  // at the limit
		maxRecordLine(t, limit, -1, ts), // just below
		maxRecordLine(t, limit, 1, ts),  // just above
		`not json ` + strings.Repeat("y", 2<<20),
		small,
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "likes.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dlq := filepath.Join(dir, "too-large.jsonl")
	// A file from before, longer than the new one: replaced.
	if err := os.WriteFile(dlq, bytes.Repeat([]byte("stale\n"), 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := produceFiles(ctx, produceOptions{kafka: kc, topic: "likes", in: []string{path}, partitions: 2, deadLetterOut: dlq})
	if err != nil {
		t.Fatal(err)
	}
	if res.records != 4 || res.tooLarge != 2 || res.unkeyed != 0 || res.maxBytes != limit {
		t.Errorf("published %d, skipped %d, unkeyed %d, limit %d; want 4, 2, 0, %d", res.records, res.tooLarge, res.unkeyed, res.maxBytes, limit)
	}
	got := map[string]bool{}
	for _, r := range readAll(t, kc, "likes") {
		got[string(r.Value)] = true
	}
	for i, l := range lines {
		if want := i != 3 && i != 4; got[l] != want {
			t.Errorf("line %d (%d bytes): published %v, want %v", i, len(l), got[l], want)
		}
	}

	data, err := os.ReadFile(dlq)
	if err != nil {
		t.Fatal(err)
	}
	var letters []struct {
		Reason, Error, Topic, Value string
		Partition, Offset           int64
	}
	for _, l := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var d struct {
			Reason, Error, Topic, Value string
			Partition, Offset           int64
		}
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("dead letter %.100s: %v", l, err)
		}
		letters = append(letters, d)
	}
	if len(letters) != 2 {
		t.Fatalf("%d dead letters, want 2", len(letters))
	}
	for i, d := range letters {
		line := lines[3+i]
		if d.Reason != "too_large" || d.Topic != path || d.Offset != int64(3+i) || d.Value != line ||
			!strings.Contains(d.Error, fmt.Sprintf("a line of %d bytes", len(line))) || !strings.Contains(d.Error, "max.message.bytes") {
			t.Errorf("dead letter %d: %s %q %s offset %d, value of %d bytes", i, d.Reason, d.Error, d.Topic, d.Offset, len(d.Value))
		}
	}

	// The command: a count at the end, without --dead-letter-out too.
	out := runCommand(t, "produce", "--brokers", kc.Brokers[0], "--topic", "likes", path)
	if !strings.Contains(out, "published 4 records") ||
		!strings.Contains(out, `skipped 2 lines too large for topic "likes" (a record batch holds at most 1048588 bytes, max.message.bytes)`+"\n") {
		t.Errorf("produce said:\n%s", out)
	}
}

// TestProduceRecordTime: --record-time event keeps event times and warns
// of records older than the topic's retention; now stamps the wall clock.
func TestProduceRecordTime(t *testing.T) {
	kc := embeddedKafka(t)
	createTopicWith(t, kc, "recent", 1, map[string]string{"retention.ms": "3600000"})
	now := time.Now()
	old, fresh := now.Add(-2*time.Hour).UnixMilli(), now.Add(-time.Minute).UnixMilli()
	lines := []string{
		fmt.Sprintf(`{"video_id":"v1","user_id":"u1","ts":%d}`, old),
		fmt.Sprintf(`{"video_id":"v1","user_id":"u2","ts":%d}`, old+1),
		fmt.Sprintf(`{"video_id":"v2","user_id":"u1","ts":%d}`, fresh),
		`not json`, // takes the time of the line before
	}
	path := filepath.Join(t.TempDir(), "likes.jsonl")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	res, err := produceFiles(ctx, produceOptions{kafka: kc, topic: "recent", in: []string{path}})
	if err != nil {
		t.Fatal(err)
	}
	if res.records != 4 || res.old != 2 || res.retention != time.Hour {
		t.Errorf("event time: published %d, %d older than the retention %v; want 4, 2, 1h", res.records, res.old, res.retention)
	}
	times := map[string]int64{}
	for _, r := range readAll(t, kc, "recent") {
		times[string(r.Value)] = r.Time
	}
	for i, want := range []int64{old, old + 1, fresh, fresh} {
		if times[lines[i]] != want {
			t.Errorf("event time: line %d has record time %d, want %d", i, times[lines[i]], want)
		}
	}

	before := time.Now().UnixMilli()
	res, err = produceFiles(ctx, produceOptions{kafka: kc, topic: "recent", in: []string{path}, wallClock: true})
	if err != nil {
		t.Fatal(err)
	}
	after := time.Now().UnixMilli()
	if res.records != 4 || res.old != 0 {
		t.Errorf("wall clock: published %d, %d older than the retention; want 4, 0", res.records, res.old)
	}
	all := readAll(t, kc, "recent")
	if len(all) != 8 {
		t.Fatalf("topic holds %d records, want 8", len(all))
	}
	for _, r := range all[4:] {
		if r.Time < before || r.Time > after {
			t.Errorf("wall clock: record %s has record time %d, not in [%d, %d]", r.Value, r.Time, before, after)
		}
	}

	// The command warns on standard error, and refuses other modes.
	out := runCommand(t, "produce", "--brokers", kc.Brokers[0], "--topic", "recent", "--record-time", "event", path)
	if !strings.Contains(out, fmt.Sprintf(`warning: record 0 of %s has record time %s, older than the retention of topic "recent" (1h0m0s)`,
		path, time.UnixMilli(old).UTC().Format(time.RFC3339))) ||
		!strings.Contains(out, `warning: 2 records have a record time older than the retention of topic "recent" (1h0m0s)`) {
		t.Errorf("produce said:\n%s", out)
	}
	out = runCommand(t, "produce", "--brokers", kc.Brokers[0], "--topic", "recent", "--record-time", "now", path)
	if strings.Contains(out, "warning") {
		t.Errorf("--record-time now warns:\n%s", out)
	}
	// A topic that stamps append times keeps records by those: no warning.
	createTopicWith(t, kc, "stamped", 1, map[string]string{"retention.ms": "3600000", "message.timestamp.type": "LogAppendTime"})
	if res, err := produceFiles(ctx, produceOptions{kafka: kc, topic: "stamped", in: []string{path}}); err != nil || res.records != 4 || res.old != 0 {
		t.Errorf("topic with append times: %d published, %d old, %v; want 4, 0", res.records, res.old, err)
	}
	if b, err := child(ctx, "produce", "--record-time", "later", path).CombinedOutput(); err == nil || !strings.Contains(string(b), "--record-time") {
		t.Errorf("--record-time later: %v\n%s", err, b)
	}
}
