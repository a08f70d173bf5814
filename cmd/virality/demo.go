package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/gen"
	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/processor"
	"github.com/viralityhq/virality/service"
)

func init() {
	register("demo", "the whole pipeline in one command: embedded broker, generator, processor, live view", runDemo)
}

type demoFlags struct {
	svc         service.Config
	kafka       *kafkaFlags
	brokers     string
	partitions  int
	rate        float64
	seed        int64
	duration    time.Duration
	history     time.Duration
	speed       float64
	plantEvery  time.Duration
	retentionMB int
	stateDir    string
	httpAddr    string
	logLevel    string
	view        string
}

// Memory of the demo: the caches of the engine are smaller than those of
// `virality run` (every account's recent likes stay in memory: reading
// them back costs more than anything else), the embedded broker keeps a
// MiB per partition, Pebble's block cache and memtables are 16 MiB each
// (bench/demo measured a peak RSS of 538 MiB with 32 MiB memtables), and the Go heap is
// held under demoMemoryLimit (GOMEMLIMIT, when set, wins) so that the
// process stays under 512 MiB.
const (
	demoCacheVideos = 50_000
	demoCachePairs  = 100_000
	demoMaxAccounts = 1_200_000
	// demoPackedVideoBytes: the videos the demo's cache lets go, packed.
	demoPackedVideoBytes = 32 << 20
	demoRetentionMB      = 1
	demoAheadRecords     = 8_000 // published records the service may not have read yet (well under the retention)
	// demoInternalAhead bounds the records of any one internal topic
	// partition the service has not read yet: a weighed like, with its
	// forwarding headers, is under 250 bytes, so 2,000 of them stay well
	// under the 1 MiB a partition keeps.
	demoInternalAhead = 2_000
	// demoPartialsAhead is the most records of the trending partials
	// topic the service may not have read: a partial is a partition's
	// candidates at a tick, about 6.5 KB in the demo, so 40 of them are a
	// quarter of what its partition keeps. (Paced by demoInternalAhead
	// alone, TestDemo once lost 20 partials to retention in CI.)
	demoPartialsAhead = 40
	demoCacheMB       = 16
	demoMemTableMB    = 16 // each of Pebble's memtables, two of which may be full at once
	demoMemoryLimit   = 400 << 20
)

func parseDemo(args []string) (*demoFlags, error) {
	f := &demoFlags{svc: service.DefaultConfig()}
	f.svc.Group = "virality-demo"
	f.svc.IdleTimeout = 2 * time.Second
	f.svc.CommitInterval = 500 * time.Millisecond
	// The demo's generator paces itself on the service's input and
	// internal topics (demoBehind); the service's own pacing of its input
	// (service.Config's MaxInputSkew, MaxInternalBehind, MaxHeldEvents)
	// is off: with it on, TestDemo once lost 1,000 records of
	// likes-by-video to the embedded broker's retention (1 MiB a
	// partition) in CI. The internal topics' lag both paced on was then
	// the high watermark of each partition's last fetch, which grows old
	// while the batch waits to be applied (service's internalLag now adds
	// what the instance wrote since); whether that was the whole cause of
	// that loss was not tested.
	f.svc.MaxInputSkew, f.svc.MaxInternalBehind, f.svc.MaxHeldEvents = 0, 0, 0
	fs := newFlagSet("demo", "demo [flags]\n\n"+
		"Starts an embedded Kafka-protocol broker on loopback (unless --brokers names one), prints\n"+
		"its address as 'broker: HOST:PORT' so that any Kafka client (kcat, ...) can connect,\n"+
		"creates the topics, publishes --history of generated likes with event times in the past as\n"+
		"fast as the service applies them (so that every video has a baseline from the first screen),\n"+
		"then likes at --rate with event time = now, runs the live service on them and shows the\n"+
		"trending videos, refreshed. A viral burst is planted to be listed a minute into the live traffic\n"+
		"(it starts --trending-min-age before), a bought-like campaign half a minute later, then one of\n"+
		"each every --plant-every; the view says what to watch.\n"+
		"HTTP on --http-addr as for 'virality run'. Ctrl-C stops it.")
	f.kafka = addKafkaFlags(fs)
	fs.StringVar(&f.brokers, "embedded-addr", "127.0.0.1:0", "listen `ADDRESS` of the embedded broker (port 0: any free port); ignored with --brokers")
	fs.IntVar(&f.partitions, "partitions", 4, "partitions of the likes topic")
	fs.Float64Var(&f.rate, "rate", 2000, "likes per second of generated traffic")
	fs.Int64Var(&f.seed, "seed", 1, "generator seed")
	fs.DurationVar(&f.duration, "duration", 2*time.Hour, "event time the generator plans for after the history; it stops after")
	fs.DurationVar(&f.history, "history", time.Hour, "event time of generated history before now, published first as fast as the service applies it\n(0: start cold, with no baselines)")
	fs.Float64Var(&f.speed, "speed", 1, "event time runs this many times as fast as the wall clock after the history (0: as fast as\nthe service applies it, for benchmarks)")
	fs.DurationVar(&f.plantEvery, "plant-every", 10*time.Minute, "event time between planted bursts, and between planted campaigns, after the first of each\n(1 min into the live traffic)")
	fs.IntVar(&f.retentionMB, "retention-mb", demoRetentionMB, "`MiB` each partition of the embedded broker keeps, the oldest records dropped first")
	fs.StringVar(&f.stateDir, "state-dir", "", "state `DIR` (empty: a temporary directory removed at the end)")
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:8080", "HTTP listen `ADDRESS` (empty: no HTTP)")
	fs.StringVar(&f.logLevel, "log-level", "warn", "log `LEVEL`: debug, info, warn or error")
	fs.StringVar(&f.view, "view", "auto", "live view: auto (redraw on a terminal, else a line per new tick), plain, or off")
	addEngineFlags(fs, &f.svc.Engine)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	set := setFlags(fs)
	if _, ok := os.LookupEnv("VIRALITY_BROKERS"); !set["brokers"] && !ok {
		f.kafka.brokers = "" // embedded
	}
	// The demo's caches are bounded below those of `virality run`, so
	// that it stays small; the flags still set them.
	for name, p := range map[string]*int{"cache-videos": &f.svc.Engine.CacheVideos,
		"cache-pairs": &f.svc.Engine.CachePairs, "max-accounts": &f.svc.Engine.MaxAccounts} {
		_, env := os.LookupEnv("VIRALITY_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_")))
		if !set[name] && !env {
			*p = map[string]int{"cache-videos": demoCacheVideos, "cache-pairs": demoCachePairs, "max-accounts": demoMaxAccounts}[name]
		}
	}
	if _, env := os.LookupEnv("VIRALITY_PACKED_VIDEOS_MB"); !set["packed-videos-mb"] && !env {
		f.svc.Engine.PackedVideoBytes = demoPackedVideoBytes
	}
	switch {
	case f.partitions < 1 || f.partitions > 1024:
		return nil, usagef("--partitions %d: must be between 1 and 1024", f.partitions)
	case !(f.rate > 0) || f.rate > 1e6:
		return nil, usagef("--rate %v: must be above 0 and at most 1000000 likes a second", f.rate)
	case f.duration < 10*time.Minute:
		return nil, usagef("--duration %v: must be at least 10m", f.duration)
	case f.history < 0 || f.history > 24*time.Hour:
		return nil, usagef("--history %v: must be between 0 and 24h", f.history)
	case !(f.speed >= 0) || f.speed > 1e6:
		return nil, usagef("--speed %v: must be 0 (as fast as possible) or a factor up to 1000000", f.speed)
	case f.plantEvery < time.Minute:
		return nil, usagef("--plant-every %v: must be at least 1m", f.plantEvery)
	case f.retentionMB < 1 || f.retentionMB > 1<<20:
		return nil, usagef("--retention-mb %d: must be at least 1", f.retentionMB)
	case f.view != "auto" && f.view != "plain" && f.view != "off":
		return nil, usagef("--view %q: choose auto, plain or off", f.view)
	}
	if err := validateEngine(&f.svc.Engine); err != nil {
		return nil, err
	}
	return f, nil
}

// demoGen is the demo's generator configuration: the traffic of --rate
// over --history and --duration, its catalogue and audience sized on two
// hours of it (so the length of the history changes no video's rate; the
// audience is small enough for the engine to keep every account's recent
// likes in memory), with no bursts or campaigns at random but planted
// ones: a burst that catches on at once (40 likes a minute from its first
// like) and may be listed a minute into the live traffic (it starts
// minAge, --trending-min-age, before that, within the history), a
// campaign at a minute and a half, then one of each every plantEvery.
func demoGen(rate float64, seed int64, live time.Time, history, duration, plantEvery, minAge time.Duration) gen.Config {
	c := gen.DefaultConfig()
	c.Seed = seed
	c.Start = live.Add(-history).UTC()
	c.Duration = history + duration
	c.Events = int(rate * c.Duration.Seconds())
	base := int(rate * 2 * 3600)
	c.Videos = max(base/100, 1000)
	c.Users = max(base/50, 50_000)
	c.FarmAccounts = max(300, c.Users/200)
	c.Bursts, c.Campaigns = 0, 0
	for at := time.Minute; at < duration; at += plantEvery {
		rate, begin := 4.0, history+at // later bursts catch on within minutes
		if at == time.Minute {
			// The first is in the top 10 within a few minutes.
			rate, begin = 40, max(begin-minAge, 0)
		}
		c.Plants = append(c.Plants, gen.Plant{Kind: gen.KindBurst, At: begin, Rate: rate})
		if at+30*time.Second < duration {
			c.Plants = append(c.Plants, gen.Plant{Kind: gen.KindCampaign, At: history + at + 30*time.Second})
		}
	}
	return c
}

func runDemo(ctx context.Context, args []string) (err error) {
	f, err := parseDemo(args)
	if err != nil {
		return err
	}
	// Event time "now": the live traffic starts here, the history ends.
	live := time.Now().UTC().Truncate(time.Second)
	clk := demoClock{wall0: time.Now(), event0: live.UnixMilli(), speed: f.speed}
	// The broker's address comes first, on a line of its own.
	var emb *kafkaio.Embedded
	if f.kafka.brokers == "" {
		// The broker outlives ctx: the service commits to it on the way
		// out. It keeps --retention-mb per partition, and records whose
		// time is within the history and an hour more.
		emb, err = kafkaio.StartEmbeddedWith(context.WithoutCancel(ctx), f.brokers, kafkaio.EmbeddedOptions{
			RetentionTime:  f.history + time.Hour,
			RetentionBytes: int64(f.retentionMB) << 20,
			SegmentBytes:   int64(min(f.retentionMB, 8)) << 17, // an eighth of the retention, at most 1 MiB
			CleanInterval:  2 * time.Second,
		})
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
	gcfg := demoGen(f.rate, f.seed, live, f.history, f.duration, f.plantEvery, f.svc.Engine.TrendingMinAge)
	if err := gcfg.Validate(); err != nil {
		return usagef("generator: %v (try another --rate or --duration)", err)
	}
	g, err := gen.New(gcfg)
	if err != nil {
		return err
	}
	plants := g.Truth()
	if f.history > 0 {
		fmt.Printf("history: %v of event time before %s (%s likes), applied first\n",
			f.history, viewClock(live.UnixMilli()), viewGrouped(int64(f.rate*f.history.Seconds())))
	}
	fmt.Println(demoPlanLine(plants, f.plantEvery))

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
	// The publisher stays at most demoAheadRecords ahead of what the
	// service has read, and waits while any internal topic partition has
	// demoInternalAhead records it has not read, so that retention never
	// drops a record before it is read, however fast the history goes.
	var running atomic.Pointer[service.Service]
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := publishDemo(ctx, kc, f.svc.InputTopic, g, clk, func(published int64) bool {
			return demoBehind(running.Load(), published)
		}); err != nil && ctx.Err() == nil {
			pubErr = err
			cancel()
		}
	}()
	started := func(svc *service.Service, httpURL string) {
		running.Store(svc)
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
				tick := int64(math.MinInt64)
				if s, ok := svc.Trending(processor.GlobalRegion); ok {
					tick = s.Tick
				}
				return viewStats{Broker: kc.Brokers[0], HTTPAddr: httpURL, EventsIn: in, Applied: svc.Applied.Load(),
					DeadLetters: svc.DeadLetters.Load(), ScoresOut: svc.ScoresOut.Load(), Lag: svc.Lag.Load(), EventsPerSec: rate,
					Watch: demoWatch(plants, tick, gcfg.Start.UnixMilli(), live.UnixMilli())}
			}
			runView(ctx, os.Stdout, svc, stats, time.Second, tty)
		}()
	}
	if _, ok := os.LookupEnv("GOMEMLIMIT"); !ok {
		debug.SetMemoryLimit(demoMemoryLimit)
	}
	err = serveWith(ctx, serveOptions{cfg: f.svc, stateDir: stateDir, cacheMB: demoCacheMB, memTableMB: demoMemTableMB,
		httpAddr: f.httpAddr, log: log, started: started})
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

// demoClock maps the wall clock to the demo's event time: event0 at
// wall0, running speed times as fast (0: infinitely fast).
type demoClock struct {
	wall0  time.Time
	event0 int64 // epoch ms
	speed  float64
}

// until returns the wall time until event time ts (ms) is due, 0 when it
// is.
func (c demoClock) until(ts int64) time.Duration {
	if c.speed == 0 {
		return 0
	}
	due := c.wall0.Add(time.Duration(float64(ts-c.event0) / c.speed * float64(time.Millisecond)))
	return max(time.Until(due), 0)
}

// publishDemo publishes the generator's likes keyed by video with record
// time = event time: at once while they lie before the clock's start (the
// history), then each when the clock reaches its event time; never more
// than ahead records beyond read(), the records the service has read.
// demoBehind says whether the service svc (nil before it starts) is too
// far behind the publisher, which has published records so far, for the
// publisher to go on.
func demoBehind(svc *service.Service, published int64) bool {
	var read, internal, partials int64
	if svc != nil {
		read, internal, partials = svc.EventsIn.Load(), svc.InternalLag.Load(), svc.PartialsLag.Load()
	}
	return published-read >= demoAheadRecords || internal >= demoInternalAhead || partials >= demoPartialsAhead
}

// publishDemo publishes g's likes to topic at clk's pace, and waits while
// behind says the service is too far behind.
func publishDemo(ctx context.Context, kc kafkaio.Config, topic string, g *gen.Generator, clk demoClock, behind func(published int64) bool) (err error) {
	p, err := kafkaio.NewProducer(kc, topic)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, p.Close()) }()
	var ev event.Event
	var line, key []byte
	var n int64
	lastFlush := time.Now()
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	for {
		var ts int64
		var ok bool
		line, ts, ok = g.Next(line[:0])
		if !ok {
			return p.Flush(ctx)
		}
		if d := clk.until(ts); d > 5*time.Millisecond {
			if err := p.Flush(ctx); err != nil {
				return err
			}
			lastFlush = time.Now()
			if !wait(d) {
				return nil
			}
		}
		for behind(n) {
			if err := p.Flush(ctx); err != nil {
				return err
			}
			lastFlush = time.Now()
			if !wait(5 * time.Millisecond) {
				return nil
			}
		}
		k := []byte(nil)
		t := time.UnixMilli(ts)
		if event.Decode(line, 0, &ev) == nil {
			key = append(key[:0], ev.VideoID...)
			k, t = key, time.UnixMilli(ev.TS)
		}
		if err := p.Produce(ctx, k, line, t); err != nil {
			return err
		}
		n++
		if time.Since(lastFlush) > 100*time.Millisecond {
			if err := p.Flush(ctx); err != nil {
				return err
			}
			lastFlush = time.Now()
		}
	}
}

// demoPlanLine says what is planted in the live traffic.
func demoPlanLine(plants []gen.Truth, every time.Duration) string {
	var b strings.Builder
	b.WriteString("planted:")
	n := 0
	for _, p := range plants {
		if n == 2 {
			break
		}
		fmt.Fprintf(&b, " %s %s at %s,", demoKind(p.Kind), p.VideoID, viewClock(p.Start))
		n++
	}
	fmt.Fprintf(&b, " then one of each every %v (event time)", every)
	return b.String()
}

func demoKind(kind string) string {
	if kind == gen.KindCampaign {
		return "campaign"
	}
	return "burst"
}

// demoWatch is the view's line of what to watch for at event time tick
// (math.MinInt64: no list yet): while the history is applied, how far it
// is and what comes first; then the planted burst and campaign of the
// last few minutes, and the next to come.
func demoWatch(plants []gen.Truth, tick, start, live int64) string {
	var next *gen.Truth
	for i := range plants {
		if plants[i].Start > tick {
			next = &plants[i]
			break
		}
	}
	upcoming := ""
	if next != nil {
		upcoming = fmt.Sprintf("a %s starts on %s at %s (planted)", demoKind(next.Kind), next.VideoID, viewClock(next.Start))
	}
	if tick < live {
		done := 0.0
		if tick > start && live > start {
			done = float64(tick-start) / float64(live-start)
		}
		w := fmt.Sprintf("warming up: applying %v of history, %.0f%% in", time.Duration(live-start)*time.Millisecond, 100*done)
		if upcoming != "" {
			w += "; then " + upcoming
		}
		return w
	}
	var parts []string
	var burst, campaign *gen.Truth
	for i := range plants {
		p := &plants[i]
		if p.Start > tick || tick-p.Start > 15*time.Minute.Milliseconds() {
			continue
		}
		if p.Kind == gen.KindBurst {
			burst = p
		} else {
			campaign = p
		}
	}
	if burst != nil {
		parts = append(parts, fmt.Sprintf("a burst started on %s at %s (planted): watch it climb", burst.VideoID, viewClock(burst.Start)))
	}
	if campaign != nil {
		parts = append(parts, fmt.Sprintf("bought likes on %s since %s (planted campaign)", campaign.VideoID, viewClock(campaign.Start)))
	}
	if upcoming != "" {
		parts = append(parts, "next: "+upcoming)
	}
	return strings.Join(parts, "; ")
}
