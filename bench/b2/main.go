// Command b2 measures B2 of BENCH.md on the embedded broker: generated likes
// preloaded in an 8-partition topic, then (1) a plain consumer that only
// fetches and decodes every partition, the ceiling, and (2) the live
// service catching up from the earliest offset, in the same run. It prints
// one line per figure.
//
//	go run ./bench/b2 -events 2000000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"time"

	"github.com/rs/zerolog"

	"github.com/viralityhq/virality/bench/internal/live"
	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/gen"
	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/service"
	"github.com/viralityhq/virality/store"
)

var cpuProfile *string

func main() {
	events := flag.Int("events", 2_000_000, "likes to preload")
	partitions := flag.Int("partitions", 8, "partitions of the likes topic")
	cpuProfile = flag.String("cpuprofile", "", "write a CPU profile of the catch-up to `FILE`")
	flag.Parse()
	if err := run(*events, *partitions); err != nil {
		fmt.Fprintln(os.Stderr, "b2:", err)
		os.Exit(1)
	}
}

func run(events, partitions int) error {
	ctx := context.Background()
	emb, err := kafkaio.StartEmbedded(ctx, "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer emb.Close()
	kc := emb.Config()
	if _, err := kafkaio.EnsureTopics(ctx, kc, []kafkaio.TopicSpec{{Name: "likes", Partitions: partitions}}); err != nil {
		return err
	}
	cfg := gen.DefaultConfig()
	cfg.Events = events
	cfg.Videos = max(events/10, 1000)
	cfg.Users = max(events/2, 50_000)
	g, err := gen.New(cfg)
	if err != nil {
		return err
	}
	p, err := kafkaio.NewProducer(kc, "likes")
	if err != nil {
		return err
	}
	var ev event.Event
	for {
		line, ts, ok := g.Next(nil)
		if !ok {
			break
		}
		var key []byte
		if event.Decode(line, 0, &ev) == nil {
			key, ts = []byte(ev.VideoID), ev.TS
		}
		if err := p.Produce(ctx, key, line, time.UnixMilli(ts)); err != nil {
			return err
		}
	}
	if err := p.Close(); err != nil {
		return err
	}

	ceiling, err := plainConsumer(ctx, kc, partitions, events)
	if err != nil {
		return err
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	fmt.Printf("B2 events: %d in %d partitions (embedded broker)\n", events, partitions)
	fmt.Printf("B2 plain consumer (fetch + decode): %.0f events/s\n", ceiling)
	for _, workers := range []int{1, 2} {
		r, err := liveCatchUp(ctx, kc, events, workers)
		if err != nil {
			return err
		}
		fmt.Printf("B2 virality run catch-up, --workers %d: %.0f events/s, ratio to the plain consumer %.3f (target >= 0.7)\n",
			workers, r.rate, r.rate/ceiling)
		if workers == 2 {
			fmt.Printf("B6 restore of all %d partitions from the changelog into an empty state directory: %d state records in %.2f s, %.0f records/s (%.1f s per 1,000,000)\n",
				partitions, r.restored, r.restore.Seconds(), float64(r.restored)/r.restore.Seconds(), 1e6*r.restore.Seconds()/float64(r.restored))
		}
	}
	pause, second, err := rebalancePause(ctx, kc, partitions)
	if err != nil {
		return err
	}
	fmt.Printf("B6 pause a rebalance causes (a second instance joins one consuming 2,000 likes/s; longest stretch with no like taken by either): %.2f s; the second took %d likes in the next 20 s\n", pause.Seconds(), second)
	return nil
}

// rebalancePause measures the longest stretch in which no like is applied
// while a second instance joins one that consumes a steady stream.
func rebalancePause(ctx context.Context, kc kafkaio.Config, partitions int) (time.Duration, int64, error) {
	const topic, rate = "likes-rebalance", 2000
	if _, err := kafkaio.EnsureTopics(ctx, kc, []kafkaio.TopicSpec{{Name: topic, Partitions: partitions}}); err != nil {
		return 0, 0, err
	}
	cfg := service.DefaultConfig()
	cfg.Kafka = kc
	cfg.InputTopic = topic
	cfg.Group = "b6-rebalance"
	cfg.ScoresTopic, cfg.TrendingTopic, cfg.DeadLetterTopic = "b6-scores", "b6-trending", "b6-dlq"
	gc := gen.DefaultConfig()
	gc.Events = 60 * rate
	gc.Videos, gc.Users = 5_000, 200_000
	gc.Bursts, gc.Campaigns = 2, 2
	g, err := gen.New(gc)
	if err != nil {
		return 0, 0, err
	}
	p, err := kafkaio.NewProducer(kc, topic)
	if err != nil {
		return 0, 0, err
	}
	pctx, stopProducing := context.WithCancel(ctx)
	defer stopProducing()
	produced := make(chan error, 1)
	go func() {
		var ev event.Event
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for pctx.Err() == nil {
			<-tick.C
			for range rate / 100 {
				line, _, ok := g.Next(nil)
				if !ok {
					break
				}
				var key []byte
				if event.Decode(line, 0, &ev) == nil {
					key = []byte(ev.VideoID)
				}
				if err := p.Produce(pctx, key, line, time.Now()); err != nil && pctx.Err() == nil {
					produced <- err
					return
				}
			}
			_ = p.Flush(pctx)
		}
		produced <- p.Close()
	}()
	a, stopA, err := start(ctx, cfg)
	if err != nil {
		return 0, 0, err
	}
	// Consuming steadily: then the second instance joins.
	for a.EventsIn.Load() < 5*rate {
		if err := a.Failed(); err != nil {
			return 0, 0, err
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, stopB, err := start(ctx, cfg)
	if err != nil {
		return 0, 0, err
	}
	var longest time.Duration
	last, lastChange := int64(-1), time.Now()
	for end := time.Now().Add(20 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if n := a.EventsIn.Load() + b.EventsIn.Load(); n != last {
			last, lastChange = n, time.Now()
		}
		longest = max(longest, time.Since(lastChange))
	}
	stopProducing()
	return longest, b.EventsIn.Load(), errors.Join(<-produced, stopB(), stopA())
}

// plainConsumer reads and decodes every partition, one goroutine each.
func plainConsumer(ctx context.Context, kc kafkaio.Config, partitions, events int) (float64, error) {
	start := time.Now()
	if _, err := live.ReadAll(ctx, kc, "likes", partitions); err != nil {
		return 0, err
	}
	return float64(events) / time.Since(start).Seconds(), nil
}

type catchUp struct {
	rate     float64       // events/s
	restore  time.Duration // a second instance's restore of every partition
	restored int64         // changelog records it read
}

// liveCatchUp runs the service from the earliest offset until it has
// applied every record, then a second instance of the same group on an
// empty state directory until it has restored every partition.
func liveCatchUp(ctx context.Context, kc kafkaio.Config, events, workers int) (catchUp, error) {
	var r catchUp
	cfg := service.DefaultConfig()
	cfg.Kafka = kc
	cfg.Workers = workers
	cfg.Group = fmt.Sprintf("b2-workers-%d", workers)
	svc, stop, err := start(ctx, cfg)
	if err != nil {
		return r, err
	}
	begin := time.Now()
	// Caught up once every like is applied, ignored or dead-lettered:
	// taken from the input, a like still has the hops through the
	// internal topics ahead of it.
	for svc.Applied.Load()+svc.Ignored.Load()+svc.DeadLetters.Load() < int64(events) {
		if err := svc.Failed(); err != nil {
			return r, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.rate = float64(events) / time.Since(begin).Seconds()
	if err := stop(); err != nil {
		return r, err
	}

	n, err := kafkaio.Partitions(ctx, kc, cfg.ChangelogTopic())
	if err != nil {
		return r, err
	}
	for p := range n {
		_, end, err := kafkaio.FirstLastOffsets(ctx, kc, cfg.ChangelogTopic(), p)
		if err != nil {
			return r, err
		}
		r.restored += end
	}
	begin = time.Now()
	svc, stop, err = start(ctx, cfg)
	if err != nil {
		return r, err
	}
	for {
		if ok, _ := svc.Ready(); ok {
			break
		}
		if err := svc.Failed(); err != nil {
			return r, err
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.restore = time.Since(begin)
	return r, stop()
}

type running struct {
	*service.Service
	done chan error
	err  error
}

// Failed returns the error the service stopped with, if it stopped.
func (r *running) Failed() error {
	if r.err != nil {
		return r.err
	}
	select {
	case err := <-r.done:
		r.err = fmt.Errorf("the service stopped: %v", err)
		return r.err
	default:
		return nil
	}
}

// start runs a service on a fresh state directory until stop is called.
func start(ctx context.Context, cfg service.Config) (*running, func() error, error) {
	dir, err := os.MkdirTemp("", "virality-b2-")
	if err != nil {
		return nil, nil, err
	}
	db, err := store.Open(dir, store.DefaultOptions())
	if err != nil {
		return nil, nil, err
	}
	svc, err := service.New(cfg, db, nil, zerolog.Nop())
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	r := &running{Service: svc, done: make(chan error, 1)}
	go func() { r.done <- svc.Run(ctx) }()
	return r, func() error {
		cancel()
		err := r.err
		if err == nil {
			err = <-r.done
		}
		return errors.Join(err, db.Close(), os.RemoveAll(dir))
	}, nil
}
