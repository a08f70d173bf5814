package main

import (
	"bufio"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
	"time"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/gen"
	"github.com/viralityhq/virality/kafkaio"
)

func init() {
	register("gen", "generate realistic like events (JSON lines) with a ground-truth file", runGen)
}

func runGen(ctx context.Context, args []string) error {
	d := gen.DefaultConfig()
	fs := newFlagSet("gen", "gen [--out FILE | --topic TOPIC] [--truth-out FILE] [flags]\n\n"+
		"Generates like events as JSON lines, with viral bursts and bought-like campaigns planted\n"+
		"(--truth-out lists them). They go to --out, or with --topic to a Kafka topic: keyed by\n"+
		"video_id (partitioned as Java clients partition keys), record time = event time, and\n"+
		"acknowledged by all in-sync replicas; malformed lines (--bad-share) are published unkeyed.\n\n"+
		"Pacing, for demos: --rate N writes N events a second of wall time; --realtime starts event\n"+
		"time at now and releases each event when the wall clock reaches its event time, so that\n"+
		"the stream looks live (with --rate too, --duration becomes --events/--rate).\n\n"+
		"Examples:\n  virality gen --events 1000000 --out likes.jsonl.gz --truth-out truth.jsonl\n"+
		"  virality gen --topic likes --partitions 8 --realtime --rate 200 --events 1200000   # 100 min live")
	out := fs.String("out", "-", "events file (JSON lines); - is standard output, a .gz name is gzipped")
	truthOut := fs.String("truth-out", "", "file for the ground truth: one JSON line per planted burst or campaign (none if empty; .gz is gzipped)")
	seed := fs.Int64("seed", d.Seed, "random seed; the same flags and seed give byte-identical output")
	events := fs.Int("events", d.Events, "lines to write, malformed ones included")
	videos := fs.Int("videos", d.Videos, "background video catalogue size (v0..)")
	users := fs.Int("users", d.Users, "normal users (u0..)")
	start := fs.String("start", d.Start.Format(time.RFC3339), "event time of the first event, RFC 3339")
	duration := fs.Duration("duration", d.Duration, "event-time span of the run")
	unlikeShare := fs.Float64("unlike-share", d.UnlikeShare, "share of events that unlike an earlier like of the same user")
	repeatShare := fs.Float64("repeat-share", d.RepeatShare, "share of events that repeat a like the user already gave")
	strayShare := fs.Float64("stray-unlike-share", d.StrayUnlikeShare, "share of events that unlike a like never given")
	bursts := fs.Int("bursts", d.Bursts, "organic viral bursts (videos vb0..)")
	campaigns := fs.Int("campaigns", d.Campaigns, "bought-like campaigns (videos vc0..)")
	rising := fs.Int("rising-creators", d.RisingCreators, "planted rising creators (creators cr0.., videos vr0-0..): likes over several videos of a\ncreator rise together, in the truth as kind rising_creator")
	farmAccounts := fs.Int("farm-accounts", d.FarmAccounts, "accounts in the like-farm pool (f0..)")
	farmRate := fs.Float64("farm-rate", d.FarmRate, "`N` likes a minute by the average farm account in the background, each account at 2/3 to\n4/3 of it (0: 3-6 a minute, slowed down so that farm likes stay at most 13% of the events)")
	spreadCampaigns := fs.Int("spread-campaigns", d.SpreadCampaigns, "bought-like campaigns from a farm spread over every region (videos vs0..), in the truth\nas kind spread_campaign")
	spreadAccounts := fs.Int("spread-accounts", d.SpreadAccounts, "accounts of the spread farm (f<farm-accounts>..): they like as the farm does, from every region")
	crewCampaigns := fs.Int("crew-campaigns", d.CrewCampaigns, "bought-like campaigns delivered by lockstep crews (videos vl0..), in the truth as kind\ncrew_campaign")
	crewAccounts := fs.Int("crew-accounts", d.CrewAccounts, "accounts in lockstep crews of 20-60 (u<users>..): they like at human rates, and 3-6 crews\ndeliver each crew campaign, each crew within a few minutes, the same crews again and again")
	jitter := fs.Duration("jitter", d.Jitter, "each event's ts is moved back by up to this much, so lines arrive slightly out of order")
	lateShare := fs.Float64("late-share", d.LateShare, "share of events 10-30 min late (beyond a 5 min allowed lateness)")
	badShare := fs.Float64("bad-share", d.BadShare, "share of malformed lines (broken JSON, missing or oversized ids, unknown action, bad or future ts)")
	topic := fs.String("topic", "", "publish to this Kafka `TOPIC` instead of writing --out")
	partitions := fs.Int("partitions", 0, "create --topic with `N` partitions when it does not exist (0: do not create it)")
	rate := fs.Float64("rate", 0, "write `N` events a second of wall time (0: as fast as possible)")
	realtime := fs.Bool("realtime", false, "start event time at now and release each event when the wall clock reaches its\nevent time (with --rate, --duration is --events/--rate); not with --start")
	kf := addKafkaFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q: gen takes only flags (see --help)", fs.Arg(0))
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case *topic != "" && set["out"]:
		return usagef("--out and --topic: give one (a file, or a Kafka topic)")
	case *rate < 0 || math.IsNaN(*rate) || math.IsInf(*rate, 0):
		return usagef("--rate %v: must be 0 (as fast as possible) or more events a second", *rate)
	case *partitions < 0:
		return usagef("--partitions %d: must not be negative", *partitions)
	case *realtime && set["start"]:
		return usagef("--realtime starts event time at now: drop --start")
	case *realtime && *rate > 0 && set["duration"]:
		return usagef("--realtime with --rate sets --duration to --events/--rate: drop one of --rate and --duration")
	}
	st, err := time.Parse(time.RFC3339, *start)
	if err != nil {
		return usagef("--start %q: want an RFC 3339 time such as 2026-11-01T00:00:00Z", *start)
	}
	pace := &pacer{rate: *rate, realtime: *realtime}
	if *realtime {
		st = time.Now().UTC().Truncate(time.Millisecond)
		if *rate > 0 {
			*duration = time.Duration(float64(*events) / *rate * float64(time.Second)).Round(time.Millisecond)
			pace.rate = 0 // event time paces
		}
	}
	var kc kafkaio.Config
	if *topic != "" {
		if kc, err = kf.config(); err != nil {
			return err
		}
	}
	cfg := gen.Config{
		Seed: *seed, Events: *events, Videos: *videos, Users: *users,
		Start: st.UTC(), Duration: *duration,
		UnlikeShare: *unlikeShare, RepeatShare: *repeatShare, StrayUnlikeShare: *strayShare,
		Bursts: *bursts, Campaigns: *campaigns, FarmAccounts: *farmAccounts, FarmRate: *farmRate,
		SpreadCampaigns: *spreadCampaigns, SpreadAccounts: *spreadAccounts,
		CrewCampaigns: *crewCampaigns, CrewAccounts: *crewAccounts,
		Jitter: *jitter, LateShare: *lateShare, BadShare: *badShare,
		RisingCreators: *rising,
	}
	if err := cfg.Validate(); err != nil {
		// Validate names settings as words ("farm accounts"); they are
		// the flags of the same names.
		return usagef("%s", strings.TrimPrefix(err.Error(), "gen: "))
	}

	began := time.Now()
	g, err := gen.New(cfg)
	if err != nil {
		return err
	}
	var n, unkeyed int64
	dest := *out
	if *topic != "" {
		dest = fmt.Sprintf("topic %q at %s", *topic, strings.Join(kc.Brokers, ","))
		n, unkeyed, err = genPublish(ctx, kc, *topic, *partitions, g, pace)
	} else {
		n, err = genWriteEvents(ctx, *out, g, pace)
	}
	if err != nil {
		if n > 0 {
			fmt.Fprintf(os.Stderr, "gen: stopped after %d events to %s\n", n, dest)
		}
		return err
	}
	if *truthOut != "" {
		err := genWriteFile(*truthOut, func(w io.Writer) error { return gen.WriteTruth(w, g.Truth()) })
		if err != nil {
			return fmt.Errorf("write truth: %w", err)
		}
	}
	planted := fmt.Sprintf("%d bursts, %d campaigns", cfg.Bursts, cfg.Campaigns)
	if cfg.SpreadCampaigns > 0 || cfg.CrewCampaigns > 0 {
		planted += fmt.Sprintf(", %d spread campaigns, %d crew campaigns", cfg.SpreadCampaigns, cfg.CrewCampaigns)
	}
	if *topic != "" {
		fmt.Fprintf(os.Stderr, "gen: published %d events (%d unkeyed malformed lines; %s) to %s in %.2fs\n",
			n, unkeyed, planted, dest, time.Since(began).Seconds())
		return nil
	}
	fmt.Fprintf(os.Stderr, "gen: wrote %d events (%s) in %.2fs\n",
		n, planted, time.Since(began).Seconds())
	return nil
}

// genPublish publishes every line of g to topic, keyed by video id with
// record time = event time, paced by pace, and returns the number of
// events acknowledged and how many of the lines were malformed (published
// unkeyed, with the generator's clock as record time).
func genPublish(ctx context.Context, kc kafkaio.Config, topic string, partitions int, g *gen.Generator, pace *pacer) (n, unkeyed int64, err error) {
	if err := kafkaio.Ping(ctx, kc); err != nil {
		return 0, 0, err
	}
	if err := ensureTopic(ctx, kc, topic, partitions); err != nil {
		return 0, 0, err
	}
	p, err := kafkaio.NewProducer(kc, topic)
	if err != nil {
		return 0, 0, err
	}
	defer func() {
		err = errors.Join(err, p.Close())
		n = p.Writes()
		unkeyed = min(unkeyed, n)
	}()
	var (
		ev   event.Event
		line []byte
		key  []byte
	)
	for {
		var ts int64
		var ok bool
		if line, ts, ok = g.Next(line[:0]); !ok {
			return 0, unkeyed, p.Flush(ctx)
		}
		if err := pace.wait(ctx, ts, p.Flush); err != nil {
			return 0, unkeyed, finishProduce(p, err)
		}
		k := []byte(nil)
		if event.Decode(line, ts, &ev) == nil {
			key = append(key[:0], ev.VideoID...)
			k, ts = key, ev.TS
		} else {
			unkeyed++
		}
		if err := p.Produce(ctx, k, line, time.UnixMilli(ts)); err != nil {
			return 0, unkeyed, finishProduce(p, err)
		}
	}
}

// genWriteEvents writes every line of g to path, paced by pace, stopping
// early when ctx is done.
func genWriteEvents(ctx context.Context, path string, g *gen.Generator, pace *pacer) (int64, error) {
	var n int64
	err := genWriteFile(path, func(w io.Writer) error {
		// Paced lines are flushed before each wait, so that readers of
		// the file see them when due.
		var flush func(context.Context) error
		if bw, ok := w.(*bufio.Writer); ok {
			flush = func(context.Context) error { return bw.Flush() }
		}
		buf := make([]byte, 0, 512)
		for {
			var ok bool
			var ts int64
			if buf, ts, ok = g.Next(buf[:0]); !ok {
				return nil
			}
			if err := pace.wait(ctx, ts, flush); err != nil {
				return err
			}
			buf = append(buf, '\n')
			if _, err := w.Write(buf); err != nil {
				return err
			}
			if n++; n%(1<<16) == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
		}
	})
	if err != nil {
		return n, fmt.Errorf("write events to %s: %w", path, err)
	}
	return n, nil
}

// genWriteFile opens path ("-" is standard output; a .gz name is gzipped),
// gives write a buffered writer, and flushes and closes everything.
func genWriteFile(path string, write func(io.Writer) error) (err error) {
	var f io.WriteCloser = genStdout{os.Stdout}
	if path != "-" {
		file, err := os.Create(path)
		if err != nil {
			return err
		}
		f = file
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	var zw *gzip.Writer
	var w io.Writer = f
	if strings.HasSuffix(path, ".gz") {
		zw, _ = gzip.NewWriterLevel(f, gzip.BestSpeed) // a valid level: no error
		w = zw
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	if err := write(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	if zw != nil {
		return zw.Close()
	}
	return nil
}

type genStdout struct{ io.Writer }

func (genStdout) Close() error { return nil }
