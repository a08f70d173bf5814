package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"virality/event"
	"virality/gen"
	"virality/kafkaio"
	"virality/processor"
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
