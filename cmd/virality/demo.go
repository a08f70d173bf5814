package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"os"
	"sync"
	"time"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/gen"
	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/service"
)

func init() {
	register("demo", "the whole pipeline in one command: embedded broker, generator, processor, live view", runDemo)
}

type demoFlags struct {
	svc        service.Config
	kafka      *kafkaFlags
	brokers    string
	partitions int
	rate       float64
	seed       int64
	duration   time.Duration
	stateDir   string
	httpAddr   string
	logLevel   string
	view       string
}

func parseDemo(args []string) (*demoFlags, error) {
	f := &demoFlags{svc: service.DefaultConfig()}
	f.svc.Group = "virality-demo"
	f.svc.IdleTimeout = 2 * time.Second
	f.svc.CommitInterval = 500 * time.Millisecond
	fs := newFlagSet("demo", "demo [flags]\n\n"+
		"Starts an embedded Kafka-protocol broker on loopback (unless --brokers names one), prints\n"+
		"its address as 'broker: HOST:PORT' so that any Kafka client (kcat, ...) can connect,\n"+
		"creates the topics, publishes generated likes at --rate with event time = now (viral\n"+
		"bursts and bought-like campaigns included), runs the live service on them and shows the\n"+
		"trending videos, refreshed. HTTP on --http-addr as for 'virality run'. Ctrl-C stops it.")
	f.kafka = addKafkaFlags(fs)
	fs.StringVar(&f.brokers, "embedded-addr", "127.0.0.1:0", "listen `ADDRESS` of the embedded broker (port 0: any free port); ignored with --brokers")
	fs.IntVar(&f.partitions, "partitions", 8, "partitions of the likes topic")
	fs.Float64Var(&f.rate, "rate", 2000, "likes per second of generated traffic")
	fs.Int64Var(&f.seed, "seed", 1, "generator seed")
	fs.DurationVar(&f.duration, "duration", 2*time.Hour, "event time the generator plans for (bursts and campaigns fall inside it); it stops after")
	fs.StringVar(&f.stateDir, "state-dir", "", "state `DIR` (empty: a temporary directory removed at the end)")
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:8080", "HTTP listen `ADDRESS` (empty: no HTTP)")
	fs.StringVar(&f.logLevel, "log-level", "warn", "log `LEVEL`: debug, info, warn or error")
	fs.StringVar(&f.view, "view", "auto", "live view: auto (redraw on a terminal, else a line per new tick), plain, or off")
	addEngineFlags(fs, &f.svc.Engine)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	if _, ok := os.LookupEnv("VIRALITY_BROKERS"); !set["brokers"] && !ok {
		f.kafka.brokers = "" // embedded
	}
	switch {
	case f.partitions < 1 || f.partitions > 1024:
		return nil, usagef("--partitions %d: must be between 1 and 1024", f.partitions)
	case !(f.rate > 0) || f.rate > 1e6:
		return nil, usagef("--rate %v: must be above 0 and at most 1000000 likes a second", f.rate)
	case f.duration < 90*time.Minute:
		return nil, usagef("--duration %v: must be at least 1h30m (viral bursts take that long)", f.duration)
	case f.view != "auto" && f.view != "plain" && f.view != "off":
		return nil, usagef("--view %q: choose auto, plain or off", f.view)
	}
	if err := validateEngine(&f.svc.Engine); err != nil {
		return nil, err
	}
	return f, nil
}

func runDemo(ctx context.Context, args []string) (err error) {
	f, err := parseDemo(args)
	if err != nil {
		return err
	}
	// The broker's address comes first, on a line of its own.
	if f.kafka.brokers == "" {
		// The broker outlives ctx: the service commits to it on the way out.
		emb, err := kafkaio.StartEmbedded(context.WithoutCancel(ctx), f.brokers)
		if err != nil {
			return fmt.Errorf("start the embedded broker: %w", err)
		}
		defer emb.Close()
		f.kafka.brokers = emb.Addr()
	}
	kc, err := f.kafka.config()
	if err != nil {
		return err
	}
	fmt.Printf("broker: %s\n", kc.Brokers[0])
	f.svc.Kafka = kc

	log := newLogger(f.logLevel)
	if _, err := kafkaio.EnsureTopics(ctx, kc, []kafkaio.TopicSpec{{Name: f.svc.InputTopic, Partitions: f.partitions}}); err != nil {
		return err
	}
	gcfg := gen.DefaultConfig()
	gcfg.Seed = f.seed
	gcfg.Start = time.Now().UTC().Truncate(time.Millisecond)
	gcfg.Duration = f.duration
	gcfg.Events = int(f.rate * f.duration.Seconds())
	gcfg.Videos = max(gcfg.Events/100, 1000)
	gcfg.Users = max(gcfg.Events/20, 50_000)
	gcfg.FarmAccounts = max(300, gcfg.Users/200)
	gcfg.Bursts = 6
	gcfg.Campaigns = 6
	if err := gcfg.Validate(); err != nil {
		return usagef("generator: %v (try another --rate or --duration)", err)
	}
	// The generator slows people down to the traffic it makes; the
	// account threshold follows, as in the model comparison test.
	f.svc.Engine.AccountThreshold = int(math.Ceil(2*gcfg.HumanCeiling())) + 2
	g, err := gen.New(gcfg)
	if err != nil {
		return err
	}

	stateDir := f.stateDir
	if stateDir == "" {
		dir, err := os.MkdirTemp("", "virality-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		stateDir = dir
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	var pubErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := publishPaced(ctx, kc, f.svc.InputTopic, g, gcfg.Start); err != nil && ctx.Err() == nil {
			pubErr = err
			cancel()
		}
	}()
	started := func(svc *service.Service, httpURL string) {
		if httpURL != "" {
			fmt.Printf("http: %s\n", httpURL)
		}
		if f.view == "off" {
			return
		}
		tty := f.view == "auto" && isTerminal(os.Stdout)
		wg.Add(1)
		go func() {
			defer wg.Done()
			last, lastT := int64(0), time.Now()
			stats := func() viewStats {
				in := svc.EventsIn.Load()
				now := time.Now()
				rate := float64(in-last) / now.Sub(lastT).Seconds()
				last, lastT = in, now
				return viewStats{Broker: kc.Brokers[0], HTTPAddr: httpURL, EventsIn: in, Applied: svc.Applied.Load(),
					DeadLetters: svc.DeadLetters.Load(), ScoresOut: svc.ScoresOut.Load(), Lag: svc.Lag.Load(), EventsPerSec: rate}
			}
			runView(ctx, os.Stdout, svc, stats, time.Second, tty)
		}()
	}
	err = serve(ctx, f.svc, stateDir, 64, f.httpAddr, log, started)
	cancel()
	wg.Wait()
	if err == nil && pubErr != nil {
		err = fmt.Errorf("publish generated likes: %w", pubErr)
	}
	if err == nil {
		fmt.Println("demo: stopped")
	}
	return err
}

// publishPaced publishes the generator's likes keyed by video with record
// time = event time, each once the wall clock reaches its event time.
func publishPaced(ctx context.Context, kc kafkaio.Config, topic string, g *gen.Generator, start time.Time) (err error) {
	p, err := kafkaio.NewProducer(kc, topic)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, p.Close()) }()
	var ev event.Event
	var line []byte
	lastFlush := time.Now()
	for {
		var ts int64
		var ok bool
		line, ts, ok = g.Next(line[:0])
		if !ok {
			return p.Flush(ctx)
		}
		if wait := time.Until(time.UnixMilli(ts)); wait > 5*time.Millisecond {
			if err := p.Flush(ctx); err != nil {
				return err
			}
			lastFlush = time.Now()
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		var key []byte
		t := time.UnixMilli(ts)
		if event.Decode(line, 0, &ev) == nil {
			key = []byte(ev.VideoID)
			t = time.UnixMilli(ev.TS)
		}
		if err := p.Produce(ctx, key, line, t); err != nil {
			return err
		}
		if time.Since(lastFlush) > 100*time.Millisecond {
			if err := p.Flush(ctx); err != nil {
				return err
			}
			lastFlush = time.Now()
		}
	}
}
