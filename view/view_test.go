package view_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/view"
)

// broker starts an embedded broker with a scores topic of scoreParts
// partitions (compacted) and a trending topic of one partition.
func broker(t testing.TB, ctx context.Context, scoreParts int) view.Config {
	t.Helper()
	b, err := kafkaio.StartEmbedded(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cfg := view.DefaultConfig()
	cfg.Kafka = b.Config()
	cfg.MaxWait = 20 * time.Millisecond
	if _, err := kafkaio.EnsureTopics(ctx, cfg.Kafka, []kafkaio.TopicSpec{
		{Name: cfg.ScoresTopic, Partitions: scoreParts, Compacted: true},
		{Name: cfg.TrendingTopic, Partitions: 1},
	}); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func scoreJSON(video string, ts, seq int64, score float64) string {
	return fmt.Sprintf(`{"video_id":%q,"ts":%d,"seq":%d,"model":"trending","score":%g,"likes":%d,"unique_likers":%d,"unlikes":0,`+
		`"likes_1m":1,"likes_5m":2,"likes_1h":3,"likes_24h":4,"rate_5m":1.5,"rate_1h":0.5,"rate_24h":0.1,"velocity":1.5,"acceleration":1}`,
		video, ts, seq, score, seq*10, seq*10)
}

// produce writes key/value pairs (a value "" is a tombstone) to topic
// and waits for their acknowledgement.
func produce(t testing.TB, ctx context.Context, cfg view.Config, topic string, kv ...string) {
	t.Helper()
	p, err := kafkaio.NewProducer(cfg.Kafka, topic)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	for i := 0; i < len(kv); i += 2 {
		var v []byte
		if kv[i+1] != "" {
			v = []byte(kv[i+1])
		}
		if err := p.Produce(ctx, []byte(kv[i]), v, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func open(t *testing.T, ctx context.Context, cfg view.Config) *view.View {
	t.Helper()
	v, err := view.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := v.WaitReady(wctx); err != nil {
		t.Fatalf("WaitReady: %v (last error: %v)", err, v.Err())
	}
	if !v.Ready() {
		t.Fatal("Ready() is false after WaitReady")
	}
	return v
}

// eventually waits until cond holds, failing the test after 20s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not %s after 20s", what)
		}
		<-tick.C
	}
}

func TestBootstrapAndFollow(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := broker(t, ctx, 3)

	v1s1, v1s3, v1s2 := scoreJSON("v1", 1000, 1, 1.0), scoreJSON("v1", 3000, 3, 3.0), scoreJSON("v1", 2000, 2, 2.0)
	produce(t, ctx, cfg, cfg.ScoresTopic,
		"v1", v1s1,
		"v1", v1s3,
		"v1", v1s2, // a repeat of an older record, after the newer one
		"v1", v1s3, // the newest, repeated
		"v2", scoreJSON("v2", 1500, 1, 0.5),
		"v9", `not json`,
	)
	produce(t, ctx, cfg, cfg.TrendingTopic,
		"global", `{"ts":10000,"region":"global","videos":[{"video_id":"v2","score":0.5}]}`,
		"global", `{"ts":20000,"region":"global","videos":[{"video_id":"v1","score":3},{"video_id":"v2","score":0.5}]}`,
		"US", `{"ts":20000,"region":"US","videos":[{"video_id":"v2","score":0.5}]}`,
		"global", `{"ts":10000,"region":"global","videos":[{"video_id":"v2","score":0.5}]}`, // an older tick, late
	)

	v := open(t, ctx, cfg)
	s, ok := v.Get("v1")
	if !ok || s.Seq != 3 || s.TS != 3000 || s.Score != 3 || s.Likes != 30 || s.Velocity != 1.5 || s.Model != "trending" {
		t.Fatalf("Get(v1) = %+v, %v; want the record of seq 3", s, ok)
	}
	if string(s.Raw) != v1s3 {
		t.Errorf("Get(v1).Raw = %s, want %s", s.Raw, v1s3)
	}
	if s, ok := v.Get("v2"); !ok || s.Seq != 1 || s.VideoID != "v2" {
		t.Errorf("Get(v2) = %+v, %v", s, ok)
	}
	if _, ok := v.Get("v9"); ok {
		t.Error("Get(v9): an invalid record was kept")
	}
	if _, ok := v.Get("nope"); ok {
		t.Error("Get(nope) found a video")
	}
	l, ok := v.Top("global", 1)
	if !ok || l.TS != 20000 || l.Region != "global" || len(l.Videos) != 1 || l.Videos[0] != (view.Entry{VideoID: "v1", Score: 3}) {
		t.Errorf("Top(global, 1) = %+v, %v", l, ok)
	}
	if l, ok := v.Top("global", 0); !ok || len(l.Videos) != 2 {
		t.Errorf("Top(global, 0) = %+v, %v; want both videos", l, ok)
	}
	if l, ok := v.Top("US", 10); !ok || l.TS != 20000 || len(l.Videos) != 1 {
		t.Errorf("Top(US, 10) = %+v, %v", l, ok)
	}
	if _, ok := v.Top("FR", 10); ok {
		t.Error("Top(FR) found a list")
	}
	st := v.Stats()
	if st.Videos != 2 || st.Applied != 3 || st.Repeats != 2 || st.Invalid != 1 || st.Lists != 4 || st.Regions != 2 {
		t.Errorf("Stats = %+v", st)
	}
	ev, seen := v.Staleness()
	if ev.UnixMilli() != 3000 || seen.IsZero() {
		t.Errorf("Staleness = %v, %v; want event time 3000ms", ev, seen)
	}

	// Records written after the bootstrap are followed, while readers
	// read (for the race detector).
	stop := make(chan struct{})
	readers := make(chan struct{})
	go func() {
		defer close(readers)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if s, ok := v.Get("v1"); !ok || s.Seq < 3 {
				t.Errorf("Get(v1) = seq %d, %v while following", s.Seq, ok)
				return
			}
			v.Top("global", 10)
			v.Stats()
			v.Staleness()
		}
	}()
	defer func() { close(stop); <-readers }()
	produce(t, ctx, cfg, cfg.ScoresTopic,
		"v1", scoreJSON("v1", 4000, 4, 4.0),
		"v3", scoreJSON("v3", 5000, 1, 9.0),
		"v1", v1s2, // older again: ignored
	)
	produce(t, ctx, cfg, cfg.TrendingTopic,
		"global", `{"ts":30000,"region":"global","videos":[{"video_id":"v3","score":9}]}`,
	)
	eventually(t, "following new records", func() bool {
		s, ok := v.Get("v3")
		l, _ := v.Top("global", 10)
		return ok && s.Seq == 1 && l.TS == 30000 && v.Stats().Repeats == 3
	})
	if s, _ := v.Get("v1"); s.Seq != 4 {
		t.Errorf("Get(v1).Seq = %d after following, want 4", s.Seq)
	}
	if ev, _ := v.Staleness(); ev.UnixMilli() != 5000 {
		t.Errorf("Staleness event time = %d, want 5000", ev.UnixMilli())
	}
	if err := v.Err(); err != nil {
		t.Errorf("Err = %v", err)
	}

	v.Close()
	if err := v.WaitReady(ctx); err != nil {
		t.Errorf("WaitReady after Close of a ready view = %v", err)
	}
	if s, ok := v.Get("v3"); !ok || s.Seq != 1 {
		t.Error("a closed view forgot its videos")
	}
}

func TestTombstoneAndEmptyTopics(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := broker(t, ctx, 2)

	// Empty topics: ready at once.
	v := open(t, ctx, cfg)
	if st := v.Stats(); st.Videos != 0 {
		t.Fatalf("Stats = %+v", st)
	}
	if ev, seen := v.Staleness(); !ev.IsZero() || !seen.IsZero() {
		t.Errorf("Staleness of an empty view = %v, %v", ev, seen)
	}
	produce(t, ctx, cfg, cfg.ScoresTopic, "v1", scoreJSON("v1", 1000, 1, 1))
	eventually(t, "seeing v1", func() bool { _, ok := v.Get("v1"); return ok })
	produce(t, ctx, cfg, cfg.ScoresTopic, "v1", "")
	eventually(t, "deleting v1", func() bool { _, ok := v.Get("v1"); return !ok })
	if st := v.Stats(); st.Deleted != 1 || st.Videos != 0 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestEvictsOldest(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := broker(t, ctx, 1)
	cfg.MaxVideos = 2
	produce(t, ctx, cfg, cfg.ScoresTopic,
		"a", scoreJSON("a", 100, 1, 1),
		"b", scoreJSON("b", 300, 1, 1),
		"c", scoreJSON("c", 200, 1, 1), // a (oldest ts) goes
		"b", scoreJSON("b", 400, 2, 1),
		"d", scoreJSON("d", 350, 1, 1), // c goes
	)
	v := open(t, ctx, cfg)
	for id, want := range map[string]bool{"a": false, "b": true, "c": false, "d": true} {
		if _, ok := v.Get(id); ok != want {
			t.Errorf("Get(%s) found = %v, want %v", id, ok, want)
		}
	}
	if st := v.Stats(); st.Evicted != 2 || st.Videos != 2 {
		t.Errorf("Stats = %+v", st)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := broker(t, ctx, 1)

	missing := cfg
	missing.TrendingTopic = "no-such-topic"
	if _, err := view.Open(ctx, missing); err == nil || !strings.Contains(err.Error(), "no-such-topic") {
		t.Errorf("Open with a missing topic: %v", err)
	}

	noTrending := cfg
	noTrending.TrendingTopic = ""
	v := open(t, ctx, noTrending)
	if _, ok := v.Top("global", 10); ok {
		t.Error("Top without a trending topic found a list")
	}

	for _, bad := range []func(*view.Config){
		func(c *view.Config) { c.ScoresTopic = "" },
		func(c *view.Config) { c.MaxVideos = 0 },
		func(c *view.Config) { c.TrendingTopic = c.ScoresTopic },
		func(c *view.Config) { c.Kafka.Brokers = nil },
		func(c *view.Config) { c.Kafka.SASL.Mechanism = "nope" },
	} {
		c := view.DefaultConfig()
		bad(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("Validate(%+v) = nil", c)
		}
	}
	if err := view.DefaultConfig().Validate(); err != nil {
		t.Errorf("DefaultConfig().Validate() = %v", err)
	}
}

func TestWaitReadyClosed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := broker(t, ctx, 1)
	produce(t, ctx, cfg, cfg.ScoresTopic, "v1", scoreJSON("v1", 1000, 1, 1))
	v, err := view.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	v.Close()
	if err := v.WaitReady(ctx); err != nil && !errors.Is(err, view.ErrClosed) {
		t.Errorf("WaitReady after Close = %v, want nil or ErrClosed", err)
	}
	v.Close() // twice is fine
}

// A topic recreated under the view: the offset to read is gone, and the
// partition is read again from its first offset.
func TestRereadAfterRecreate(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cfg := broker(t, ctx, 1)
	produce(t, ctx, cfg, cfg.ScoresTopic,
		"v1", scoreJSON("v1", 1000, 1, 1),
		"v2", scoreJSON("v2", 1000, 1, 1),
		"v3", scoreJSON("v3", 1000, 1, 1),
	)
	v := open(t, ctx, cfg)
	cl, err := cfg.Kafka.Client()
	if err != nil {
		t.Fatal(err)
	}
	res, err := cl.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{cfg.ScoresTopic}})
	if err != nil || res.Errors[cfg.ScoresTopic] != nil {
		t.Fatalf("delete topic: %v %v", err, res)
	}
	if _, err := kafkaio.EnsureTopics(ctx, cfg.Kafka, []kafkaio.TopicSpec{{Name: cfg.ScoresTopic, Partitions: 1, Compacted: true}}); err != nil {
		t.Fatal(err)
	}
	produce(t, ctx, cfg, cfg.ScoresTopic, "v4", scoreJSON("v4", 2000, 1, 1))
	eventually(t, "reading the recreated topic", func() bool {
		_, ok := v.Get("v4")
		return ok && v.Stats().Rereads >= 1
	})
	if _, ok := v.Get("v1"); !ok {
		t.Error("v1, read before the topic was recreated, was forgotten")
	}
}
