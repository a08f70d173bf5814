package view

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/viralityhq/virality/kafkaio"
)

// TestFollowScoresOff: with FollowScores(false) the view's readers of the
// scores topic stop before their next fetch, a score record written then
// is not read while trending lists still are, and FollowScores(true) reads
// it; likewise for the creator scores of Creators.
func TestFollowScoresOff(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b, err := kafkaio.StartEmbedded(ctx, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	cfg := DefaultConfig()
	cfg.Kafka = b.Config()
	cfg.MaxWait = 20 * time.Millisecond
	ccfg := CreatorsConfig{Kafka: cfg.Kafka, CreatorScoresTopic: "creator-scores", RisingCreatorsTopic: "rising-creators", MaxWait: cfg.MaxWait}
	const parts = 3
	if _, err := kafkaio.EnsureTopics(ctx, cfg.Kafka, []kafkaio.TopicSpec{
		{Name: cfg.ScoresTopic, Partitions: parts, Compacted: true},
		{Name: cfg.TrendingTopic, Partitions: 1},
		{Name: ccfg.CreatorScoresTopic, Partitions: parts, Compacted: true},
		{Name: ccfg.RisingCreatorsTopic, Partitions: 1},
	}); err != nil {
		t.Fatal(err)
	}
	produce := func(topic, key, value string) {
		t.Helper()
		p, err := kafkaio.NewProducer(cfg.Kafka, topic)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		if err := p.Produce(ctx, []byte(key), []byte(value), time.Time{}); err != nil {
			t.Fatal(err)
		}
		if err := p.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for !cond() {
			select {
			case <-ctx.Done():
				t.Fatalf("still not %s", what)
			case <-tick.C:
			}
		}
	}
	score := func(video string, ts int64) string {
		return fmt.Sprintf(`{"video_id":%q,"ts":%d,"seq":1,"model":"trending","score":1}`, video, ts)
	}
	list := func(ts int64) string {
		return fmt.Sprintf(`{"ts":%d,"region":"global","videos":[{"video_id":"v1","score":1}]}`, ts)
	}

	v, err := Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	c, err := OpenCreators(ctx, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	produce(cfg.ScoresTopic, "v1", score("v1", 1000))
	produce(ccfg.CreatorScoresTopic, "c1", `{"creator_id":"c1","ts":1000,"seq":1}`)
	waitFor("reading v1 and c1", func() bool {
		_, ok := v.Get("v1")
		_, cok := c.Get("c1")
		return ok && cok
	})

	v.FollowScores(false)
	c.FollowScores(false)
	if v.FollowingScores() || c.FollowingScores() {
		t.Fatal("FollowingScores() after FollowScores(false)")
	}
	waitFor("holding every reader of the score topics", func() bool {
		return v.scores.waiting.Load() == parts && c.scores.waiting.Load() == parts
	})
	produce(cfg.ScoresTopic, "v2", score("v2", 2000))
	produce(ccfg.CreatorScoresTopic, "c2", `{"creator_id":"c2","ts":2000,"seq":1}`)
	produce(cfg.TrendingTopic, "global", list(60000))
	produce(ccfg.RisingCreatorsTopic, "global", `{"ts":60000,"region":"global","creators":[]}`)
	waitFor("reading the lists", func() bool {
		l, ok := v.Top("global", 0)
		r, rok := c.Rising("global", 0)
		return ok && l.TS == 60000 && rok && r.TS == 60000
	})
	if _, ok := v.Get("v2"); ok {
		t.Fatal("v2 read while the scores topic was not followed")
	}
	if _, ok := c.Get("c2"); ok {
		t.Fatal("c2 read while the creator scores topic was not followed")
	}
	if _, ok := v.Get("v1"); !ok {
		t.Fatal("v1 forgotten while the scores topic was not followed")
	}

	v.FollowScores(true)
	c.FollowScores(true)
	waitFor("reading v2 and c2 once followed again", func() bool {
		_, ok := v.Get("v2")
		_, cok := c.Get("c2")
		return ok && cok
	})
}
