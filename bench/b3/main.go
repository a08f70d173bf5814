// Command b3 measures B3 of BENCH.md on the embedded broker: a steady load
// of generated likes (20,000/s by default) for a minute, with the live
// service emitting on every change; every 50 ms a probe like for a video
// of its own is appended, and the time from its acknowledged append to the
// first score record of its video on video-scores is measured.
//
//	go run ./bench/b3 -rate 20000 -duration 60s
//	go run ./bench/b3 -reorder 0     # scores as soon as applied, in arrival order
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/gen"
	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/service"
	"github.com/viralityhq/virality/store"
)

func main() {
	rate := flag.Float64("rate", 20_000, "offered likes per second")
	duration := flag.Duration("duration", 60*time.Second, "how long to offer the load")
	reorder := flag.Duration("reorder", service.DefaultConfig().Engine.Reorder, "the service's --reorder: a score comes at least this long after its like (0: at once, in arrival order)")
	flag.Parse()
	if err := run(*rate, *duration, *reorder); err != nil {
		fmt.Fprintln(os.Stderr, "b3:", err)
		os.Exit(1)
	}
}

func run(rate float64, duration, reorder time.Duration) error {
	ctx := context.Background()
	emb, err := kafkaio.StartEmbedded(ctx, "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer emb.Close()
	kc := emb.Config()
	if _, err := kafkaio.EnsureTopics(ctx, kc, []kafkaio.TopicSpec{{Name: "likes", Partitions: 8}}); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "virality-b3-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	db, err := store.Open(dir, store.DefaultOptions())
	if err != nil {
		return err
	}
	defer db.Close()
	cfg := service.DefaultConfig()
	cfg.Kafka = kc
	cfg.Engine.EmitEveryChange = true
	cfg.Engine.Reorder = reorder
	svc, err := service.New(cfg, db, nil, zerolog.Nop())
	if err != nil {
		return err
	}
	sctx, stop := context.WithCancel(ctx)
	svcDone := make(chan error, 1)
	go func() { svcDone <- svc.Run(sctx) }()
	stopped := false
	stopService := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stop()
		return <-svcDone
	}
	defer stopService() // before the state closes
	for ok, _ := svc.Ready(); !ok; ok, _ = svc.Ready() {
		time.Sleep(50 * time.Millisecond)
	}

	// Watch video-scores for the probes' first records.
	var mu sync.Mutex
	appended := map[string]time.Time{}
	var latencies []time.Duration
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	var watchers sync.WaitGroup
	n, err := waitPartitions(ctx, kc, cfg.ScoresTopic)
	if err != nil {
		return err
	}
	for p := range n {
		watchers.Add(1)
		go func() {
			defer watchers.Done()
			src, err := kafkaio.NewPartitionSource(kc, cfg.ScoresTopic, p, kafkaio.EndOffset)
			if err != nil {
				return
			}
			defer src.Close()
			src.MaxWait = 10 * time.Millisecond
			seen := map[string]bool{}
			for wctx.Err() == nil {
				recs, err := src.Next(wctx, nil)
				if err != nil {
					return
				}
				now := time.Now()
				for _, r := range recs {
					k := string(r.Key)
					mu.Lock()
					if t, ok := appended[k]; ok && !seen[k] {
						seen[k] = true
						latencies = append(latencies, now.Sub(t))
					}
					mu.Unlock()
				}
			}
		}()
	}

	// The load: generated likes with event time = now, paced.
	gcfg := gen.DefaultConfig()
	gcfg.Start = time.Now().UTC()
	gcfg.Duration = duration + time.Minute
	gcfg.Events = int(rate * gcfg.Duration.Seconds())
	gcfg.Videos = 100_000
	// People like at most about once a minute.
	gcfg.Users = max(1_000_000, 3*gcfg.Events/int(max(gcfg.Duration.Minutes(), 1)))
	gcfg.Bursts, gcfg.Campaigns, gcfg.FarmAccounts = 0, 0, 0
	g, err := gen.New(gcfg)
	if err != nil {
		return err
	}
	load, err := kafkaio.NewProducer(kc, "likes")
	if err != nil {
		return err
	}
	probes, err := kafkaio.NewProducer(kc, "likes")
	if err != nil {
		return err
	}
	begin := time.Now()
	var offered atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var ev event.Event
		for i := 0; time.Since(begin) < duration; i++ {
			line, ts, ok := g.Next(nil)
			if !ok {
				return
			}
			if d := time.Until(begin.Add(time.Duration(float64(i) / rate * float64(time.Second)))); d > time.Millisecond {
				_ = load.Flush(ctx)
				time.Sleep(d)
			}
			var key []byte
			if event.Decode(line, 0, &ev) == nil {
				key = []byte(ev.VideoID)
			}
			_ = load.Produce(ctx, key, line, time.UnixMilli(ts))
			offered.Add(1)
		}
		_ = load.Flush(ctx)
	}()
	for i := 0; time.Since(begin) < duration; i++ {
		id := fmt.Sprintf("probe-%d", i)
		v := fmt.Sprintf(`{"video_id":%q,"user_id":"probe","ts":%d}`, id, time.Now().UnixMilli())
		if err := probes.Produce(ctx, []byte(id), []byte(v), time.Now()); err != nil {
			return err
		}
		if err := probes.Flush(ctx); err != nil {
			return err
		}
		mu.Lock()
		appended[id] = time.Now()
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
	}
	wg.Wait()
	time.Sleep(2 * time.Second)
	stopWatch()
	watchers.Wait()
	if err := stopService(); err != nil {
		return err
	}
	_ = load.Close()
	_ = probes.Close()

	mu.Lock()
	defer mu.Unlock()
	slices.Sort(latencies)
	pct := func(p float64) time.Duration {
		if len(latencies) == 0 {
			return 0
		}
		return latencies[min(len(latencies)-1, int(p*float64(len(latencies))))]
	}
	el := time.Since(begin)
	fmt.Printf("B3 offered load: %.0f likes/s for %v (achieved %.0f/s)\n", rate, duration, float64(offered.Load())/min(el, duration).Seconds())
	fmt.Printf("B3 probes: %d appended, %d seen on video-scores\n", len(appended), len(latencies))
	if len(latencies) > 0 {
		fmt.Printf("B3 latency p50: %v, p99: %v, max: %v (target p99 <= 100ms)\n",
			pct(0.50).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), latencies[len(latencies)-1].Round(time.Millisecond))
	}
	return nil
}

// waitPartitions waits for the service to create a topic.
func waitPartitions(ctx context.Context, kc kafkaio.Config, topic string) (int, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		n, err := kafkaio.Partitions(ctx, kc, topic)
		if err == nil {
			return n, nil
		}
		if time.Now().After(deadline) {
			return 0, err
		}
		time.Sleep(100 * time.Millisecond)
	}
}
