package view_test

import (
	"context"
	"fmt"
	"time"

	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/view"
)

// A view of the topics of an embedded broker: the repeat of seq 1 written
// after seq 2 does not move v42 back.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	broker, err := kafkaio.StartEmbedded(ctx, "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer broker.Close()
	cfg := view.DefaultConfig()
	cfg.Kafka = broker.Config()
	if _, err := kafkaio.EnsureTopics(ctx, cfg.Kafka, []kafkaio.TopicSpec{
		{Name: cfg.ScoresTopic, Partitions: 4, Compacted: true},
		{Name: cfg.TrendingTopic, Partitions: 1},
	}); err != nil {
		panic(err)
	}
	write := func(topic, key, value string) {
		p, err := kafkaio.NewProducer(cfg.Kafka, topic)
		if err != nil {
			panic(err)
		}
		defer p.Close()
		if err := p.Produce(ctx, []byte(key), []byte(value), time.Time{}); err != nil {
			panic(err)
		}
		if err := p.Flush(ctx); err != nil {
			panic(err)
		}
	}
	const rest = `"model":"trending","likes":40,"unique_likers":42,"unlikes":2,"likes_1m":5,"likes_5m":21,"likes_1h":40,"likes_24h":40,"rate_5m":4.1,"rate_1h":0.62,"rate_24h":0.027,"velocity":4.1,"acceleration":3.48`
	write(cfg.ScoresTopic, "v42", `{"video_id":"v42","ts":1793491200000,"seq":1,"score":10.5,`+rest+`}`)
	write(cfg.ScoresTopic, "v42", `{"video_id":"v42","ts":1793491260000,"seq":2,"score":12.5,`+rest+`}`)
	write(cfg.ScoresTopic, "v42", `{"video_id":"v42","ts":1793491200000,"seq":1,"score":10.5,`+rest+`}`)
	write(cfg.TrendingTopic, "global", `{"ts":1793491270000,"region":"global","videos":[{"video_id":"v42","score":12.5},{"video_id":"v7","score":9.1}]}`)

	v, err := view.Open(ctx, cfg)
	if err != nil {
		panic(err)
	}
	defer v.Close()
	if err := v.WaitReady(ctx); err != nil {
		panic(err)
	}
	s, _ := v.Get("v42")
	fmt.Println(s.VideoID, s.Seq, s.Score, s.Likes, s.Velocity)
	top, _ := v.Top("global", 10)
	for i, e := range top.Videos {
		fmt.Println(i+1, e.VideoID, e.Score)
	}
	// Output:
	// v42 2 12.5 40 4.1
	// 1 v42 12.5
	// 2 v7 9.1
}
