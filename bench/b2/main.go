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
	"flag"
	"fmt"
	"os"
	"runtime/pprof"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"virality/event"
	"virality/gen"
	"virality/kafkaio"
	"virality/processor"
	"virality/service"
	"virality/store"
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
	catchUp, err := liveCatchUp(ctx, kc, events)
	if err != nil {
		return err
	}
	fmt.Printf("B2 events: %d in %d partitions (embedded broker)\n", events, partitions)
	fmt.Printf("B2 plain consumer (fetch + decode): %.0f events/s\n", ceiling)
	fmt.Printf("B2 virality run catch-up: %.0f events/s\n", catchUp)
	fmt.Printf("B2 ratio to the plain consumer: %.3f (target >= 0.7)\n", catchUp/ceiling)
	return nil
}

// plainConsumer reads and decodes every partition, one goroutine each.
func plainConsumer(ctx context.Context, kc kafkaio.Config, partitions, events int) (float64, error) {
	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, partitions)
	for part := range partitions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, end, err := kafkaio.FirstLastOffsets(ctx, kc, "likes", part)
			if err != nil {
				errs <- err
				return
			}
			src, err := kafkaio.NewPartitionSource(kc, "likes", part, kafkaio.FirstOffset)
			if err != nil {
				errs <- err
				return
			}
			defer src.Close()
			var recs []processor.Record
			var ev event.Event
			for src.Offset() < end {
				if recs, err = src.Next(ctx, recs); err != nil {
					errs <- err
					return
				}
				for i := range recs {
					_ = event.Decode(recs[i].Value, recs[i].Time, &ev)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return 0, err
	}
	return float64(events) / time.Since(start).Seconds(), nil
}

// liveCatchUp runs the service from the earliest offset until it has
// taken every record.
func liveCatchUp(ctx context.Context, kc kafkaio.Config, events int) (float64, error) {
	dir, err := os.MkdirTemp("", "virality-b2-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	db, err := store.Open(dir, store.DefaultOptions())
	if err != nil {
		return 0, err
	}
	defer db.Close()
	cfg := service.DefaultConfig()
	cfg.Kafka = kc
	svc, err := service.New(cfg, db, nil, zerolog.Nop())
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- svc.Run(ctx) }()
	for svc.EventsIn.Load() < int64(events) {
		select {
		case err := <-done:
			cancel()
			return 0, fmt.Errorf("the service stopped: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	rate := float64(events) / time.Since(start).Seconds()
	cancel()
	return rate, <-done
}
