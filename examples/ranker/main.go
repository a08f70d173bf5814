// Command ranker is a small "For You" ranker on top of package view: it
// opens a view of the scores and trending topics and, every second, prints
// the top 10 global videos of the newest trending tick with the likes and
// velocity of their latest score records.
//
//	go run ./examples/ranker --brokers 127.0.0.1:9092
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/viralityhq/virality/view"
)

func main() {
	cfg := view.DefaultConfig()
	brokers := flag.String("brokers", strings.Join(cfg.Kafka.Brokers, ","), "Kafka brokers, HOST:PORT,...")
	flag.StringVar(&cfg.ScoresTopic, "scores-topic", cfg.ScoresTopic, "compacted topic of score records")
	flag.StringVar(&cfg.TrendingTopic, "trending-topic", cfg.TrendingTopic, "topic of trending lists")
	k := flag.Int("k", 10, "videos to print")
	flag.IntVar(&cfg.MaxVideos, "max-videos", cfg.MaxVideos, "videos the view holds at most (the oldest are dropped)")
	flag.Parse()
	cfg.Kafka.Brokers = strings.Split(*brokers, ",")
	cfg.Kafka.ClientID = "virality-ranker"

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, *k); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "ranker:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg view.Config, k int) error {
	start := time.Now()
	v, err := view.Open(ctx, cfg)
	if err != nil {
		return err
	}
	defer v.Close()
	if err := v.WaitReady(ctx); err != nil {
		return err
	}
	st := v.Stats()
	fmt.Printf("view ready in %v: %d videos, %d regions\n", time.Since(start).Round(time.Millisecond), st.Videos, st.Regions)

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		show(v, k)
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

func show(v *view.View, k int) {
	event, seen := v.Staleness()
	top, ok := v.Top("global", k)
	if !ok {
		fmt.Printf("%s  no global trending list yet\n", time.Now().Format(time.TimeOnly))
		return
	}
	fmt.Printf("%s  tick %s  newest event %s (seen %v ago)\n", time.Now().Format(time.TimeOnly),
		time.UnixMilli(top.TS).UTC().Format(time.DateTime), event.UTC().Format(time.DateTime), time.Since(seen).Round(time.Millisecond))
	if err := v.Err(); err != nil {
		fmt.Println("  warning:", err)
	}
	fmt.Printf("  %3s  %-24s %10s %8s %10s  %s\n", "#", "video", "score", "likes", "velocity", "damped (last hour)")
	for i, e := range top.Videos {
		likes, velocity, damped := "-", "-", ""
		if s, ok := v.Get(e.VideoID); ok {
			likes, velocity = fmt.Sprint(s.Likes), fmt.Sprintf("%.2f/min", s.Velocity)
			// Why a video with many likes scores low: the likes damping
			// took away, and the signal that damped them.
			if s.DampedLikes1h > 0 {
				damped = fmt.Sprintf("%d of %d (%s)", s.DampedLikes1h, s.Likes1h, s.DampedReason)
			}
		}
		fmt.Printf("  %3d  %-24s %10.3f %8s %10s  %s\n", i+1, e.VideoID, e.Score, likes, velocity, damped)
	}
}
