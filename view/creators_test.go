package view_test

import (
	"context"
	"testing"
	"time"

	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/view"
)

// TestCreators: the creators view holds each creator's record of highest
// seq, forgets a tombstoned creator, and holds the newest rising list of
// each region, also for records written after it was ready.
func TestCreators(t *testing.T) {
	ctx := context.Background()
	vc := broker(t, ctx, 1)
	cfg := view.DefaultCreatorsConfig()
	cfg.Kafka = vc.Kafka
	cfg.MaxWait = 20 * time.Millisecond
	if _, err := kafkaio.EnsureTopics(ctx, cfg.Kafka, []kafkaio.TopicSpec{
		{Name: cfg.CreatorScoresTopic, Partitions: 2, Compacted: true},
		{Name: cfg.RisingCreatorsTopic, Partitions: 1},
	}); err != nil {
		t.Fatal(err)
	}
	pc := view.Config{Kafka: cfg.Kafka}
	produce(t, ctx, pc, cfg.CreatorScoresTopic,
		"c1", `{"creator_id":"c1","ts":60000,"seq":1,"model":"momentum","momentum":1.5,"baseline":0.2,"likes":3,"likes_5m":3,"likes_1h":3,"likes_24h":3,"videos_liked_1h":2,"region":"US"}`,
		"c1", `{"creator_id":"c1","ts":120000,"seq":2,"model":"momentum","momentum":4,"baseline":0.2,"likes":9,"likes_5m":9,"likes_1h":9,"likes_24h":9,"videos_liked_1h":3,"region":"US"}`,
		"c2", `{"creator_id":"c2","ts":60000,"seq":1,"model":"momentum","momentum":0,"baseline":1,"likes":1,"likes_5m":1,"likes_1h":1,"likes_24h":1,"videos_liked_1h":1,"region":""}`,
		"c2", "")
	produce(t, ctx, pc, cfg.RisingCreatorsTopic,
		"global", `{"ts":60000,"region":"global","creators":[{"creator_id":"c2","momentum":1,"likes_1h":20}]}`,
		"global", `{"ts":120000,"region":"global","creators":[{"creator_id":"c1","momentum":4,"likes_1h":29},{"creator_id":"c3","momentum":2,"likes_1h":21}]}`)
	c, err := view.OpenCreators(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := c.WaitReady(wctx); err != nil {
		t.Fatalf("WaitReady: %v (%v)", err, c.Err())
	}
	if s, ok := c.Get("c1"); !ok || s.Seq != 2 || s.Momentum != 4 || s.VideosLiked1h != 3 || s.Region != "US" {
		t.Errorf("c1: %+v %v", s, ok)
	}
	if s, ok := c.Get("c2"); ok {
		t.Errorf("c2 tombstoned but held: %+v", s)
	}
	if l, ok := c.Rising("global", 1); !ok || l.TS != 120000 || len(l.Creators) != 1 || l.Creators[0].CreatorID != "c1" {
		t.Errorf("rising: %+v %v", l, ok)
	}
	produce(t, ctx, pc, cfg.RisingCreatorsTopic, "US", `{"ts":180000,"region":"US","creators":[{"creator_id":"c1","momentum":3,"likes_1h":30}]}`)
	eventually(t, "the US list written after Ready read", func() bool {
		l, ok := c.Rising("US", 0)
		return ok && l.TS == 180000
	})
}
