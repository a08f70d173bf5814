package kafkaio

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/viralityhq/virality/processor"
)

func TestStartEmbedded(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:9092"} {
		if _, err := StartEmbedded(context.Background(), addr); err == nil || !strings.Contains(err.Error(), "listens on a loopback address only") {
			t.Errorf("StartEmbedded(%q): %v", addr, err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	e, err := StartEmbedded(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if !strings.HasPrefix(e.Addr(), "127.0.0.1:") {
		t.Errorf("address %q, want 127.0.0.1:PORT", e.Addr())
	}
	if err := Ping(ctx, e.Config()); err != nil {
		t.Fatal(err)
	}
	cancel() // stops the broker
	c := e.Config()
	c.DialTimeout = time.Second
	deadline := time.Now().Add(2 * time.Second)
	for Ping(context.Background(), c) == nil {
		if time.Now().After(deadline) {
			t.Fatal("the broker still answers after its context ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestEmbeddedRetention: with retention set, the broker drops records
// older than the retention time and the oldest beyond the retention bytes
// of each partition, keeps the latest record per key of compacted topics,
// and does so by itself every clean interval.
func TestEmbeddedRetention(t *testing.T) {
	ctx := testCtx(t, 30*time.Second)
	if _, err := StartEmbeddedWith(ctx, "", EmbeddedOptions{RetentionBytes: -1}); err == nil {
		t.Error("negative retention bytes: no error")
	}
	e, err := StartEmbeddedWith(ctx, "", EmbeddedOptions{
		RetentionTime:  time.Hour,
		RetentionBytes: 64 << 10,
		SegmentBytes:   8 << 10,
		CleanInterval:  time.Hour, // Clean below does it
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c := e.Config()
	mustTopics(t, c, TopicSpec{Name: "old", Partitions: 1}, TopicSpec{Name: "big", Partitions: 1},
		TopicSpec{Name: "latest", Partitions: 1, Compacted: true})
	now := time.Now().UnixMilli()
	fill(t, c, "old", 20, now-2*time.Hour.Milliseconds()) // older than the retention time
	fill(t, c, "old", 5, now)                             // younger
	writeN := func(topic string, n, keys int, size int) {
		s, err := NewSink(c, topic, SinkOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		for i := range n {
			m := processor.Message{Key: fmt.Appendf(nil, "k%d", i%keys), Value: bytes.Repeat([]byte{'x'}, size), Time: now}
			if err := s.Write(&m); err != nil {
				t.Fatal(err)
			}
			if i%100 == 99 { // several batches, so that retention can drop some
				if err := s.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := s.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	writeN("big", 2000, 2000, 200) // ~400 KB
	writeN("latest", 1000, 10, 100)
	e.Clean()

	offsets := func(topic string) (first, end int64) {
		first, end, err := FirstLastOffsets(ctx, c, topic, 0)
		if err != nil {
			t.Fatal(err)
		}
		return first, end
	}
	if first, end := offsets("old"); first != 20 || end != 25 {
		t.Errorf("old: offsets [%d, %d) after retention, want [20, 25): the 20 records older than an hour dropped", first, end)
	}
	first, end := offsets("big")
	if end != 2000 || first == 0 {
		t.Errorf("big: offsets [%d, %d), want the first dropped", first, end)
	}
	// 64 KiB of ~220-byte records is ~300; a segment more may stay.
	if kept := end - first; kept < 200 || kept > 400+8<<10/200 {
		t.Errorf("big: %d records kept under 64 KiB of retention", kept)
	}
	src, err := NewPartitionSource(c, "latest", 0, FirstOffset)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	src.MaxWait = 50 * time.Millisecond
	if offs, _ := drain(t, src); len(offs) == 0 || len(offs) > 200 {
		t.Errorf("latest: %d records after compaction of 1000 records over 10 keys", len(offs))
	}

	// By itself, every clean interval.
	e2, err := StartEmbeddedWith(ctx, "", EmbeddedOptions{RetentionTime: time.Hour, CleanInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer e2.Close()
	c2 := e2.Config()
	mustTopics(t, c2, TopicSpec{Name: "old", Partitions: 1})
	fill(t, c2, "old", 10, 1_000_000) // 1970
	for {
		if first, _, err := FirstLastOffsets(ctx, c2, "old", 0); err == nil && first == 10 {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatal("records older than the retention time are still there")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// metadataAsked starts an embedded broker and counts the metadata
// requests it gets from then on, by topic asked for ("*": every topic,
// "": none). asked returns the counts so far.
func metadataAsked(t *testing.T) (e *Embedded, asked func() map[string]int) {
	t.Helper()
	e, err := StartEmbedded(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	var mu sync.Mutex
	counts := map[string]int{}
	e.c.ControlKey(int16(kmsg.Metadata), func(r kmsg.Request) (kmsg.Response, error, bool) {
		e.c.KeepControl()
		req := r.(*kmsg.MetadataRequest)
		mu.Lock()
		defer mu.Unlock()
		switch {
		case req.Topics == nil:
			counts["*"]++
		case len(req.Topics) == 0:
			counts[""]++
		}
		for _, t := range req.Topics {
			if t.Topic != nil {
				counts[*t.Topic]++
			}
		}
		return nil, nil, false
	})
	return e, func() map[string]int {
		mu.Lock()
		defer mu.Unlock()
		return maps.Clone(counts)
	}
}

// TestPingAsksForNoTopic: Ping's metadata request names no topic (an empty
// list, not null, which is every topic of the cluster): the live service
// pings every second, and a cluster of hundreds of topics made each ping
// parse all of their metadata. It still finds the brokers.
func TestPingAsksForNoTopic(t *testing.T) {
	e, asked := metadataAsked(t)
	c := e.Config()
	for i := range 5 {
		mustTopics(t, c, TopicSpec{Name: fmt.Sprintf("other-%d", i), Partitions: 2})
	}
	before := asked()
	if err := Ping(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	got := asked()
	if got["*"] > before["*"] || got[""] == before[""] {
		t.Fatalf("metadata asked for %v before Ping, %v after: want Ping to ask for no topic only", before, got)
	}
}

// TestMetadataTopics: a config with MetadataTopics writes, reads and lists
// the offsets of its topics, and its connections never ask the cluster
// for the metadata of every topic, nor of another.
func TestMetadataTopics(t *testing.T) {
	e, asked := metadataAsked(t)
	c := e.Config()
	mustTopics(t, c, TopicSpec{Name: "mine", Partitions: 1}, TopicSpec{Name: "other", Partitions: 1})
	before := asked()
	c.MetadataTopics = []string{"mine"}
	fill(t, c, "mine", 20, 1_700_000_000_000)
	src, err := NewPartitionSource(c, "mine", 0, FirstOffset)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if offsets, _ := drain(t, src); len(offsets) != 20 {
		t.Fatalf("read %d records back, want 20", len(offsets))
	}
	if first, last, err := FirstLastOffsets(testCtx(t, 10*time.Second), c, "mine", 0); err != nil || first != 0 || last != 20 {
		t.Fatalf("offsets %d-%d (%v), want 0-20", first, last, err)
	}
	got := asked()
	if got["*"] > before["*"] || got["other"] > before["other"] || got["mine"] == before["mine"] {
		t.Fatalf("metadata asked for %v before, %v after: want %q only", before, got, "mine")
	}
}
