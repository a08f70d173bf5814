package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/viralityhq/virality/httpapi"
	"github.com/viralityhq/virality/metrics"
	"github.com/viralityhq/virality/service"
	"github.com/viralityhq/virality/store"
	"github.com/viralityhq/virality/view"
)

func init() {
	register("run", "the live service: consume likes from Kafka, keep scores and trending lists current in Kafka", runRun)
}

// runFlags are the flags of `virality run`.
type runFlags struct {
	svc        service.Config
	kafka      *kafkaFlags
	stateDir   string
	httpAddr   string
	logLevel   string
	cacheMB    int
	memTableMB int
	budget     memoryBudget
	// viewVideos bounds the view behind the HTTP API (0: none).
	viewVideos int
}

// addServiceFlags defines the flags of the live service's settings.
func addServiceFlags(fs *flag.FlagSet, c *service.Config) {
	fs.StringVar(&c.Group, "group", c.Group, "consumer group `ID`: instances with the same group share the input partitions")
	fs.StringVar(&c.InputTopic, "input-topic", c.InputTopic, "`TOPIC` of like events (keyed by video id, recommended)")
	fs.StringVar(&c.ScoresTopic, "scores-topic", c.ScoresTopic, "compacted `TOPIC` of score records, keyed by video id")
	fs.StringVar(&c.TrendingTopic, "trending-topic", c.TrendingTopic, "`TOPIC` of trending snapshots, keyed by region")
	fs.StringVar(&c.DeadLetterTopic, "dead-letter-topic", c.DeadLetterTopic, "`TOPIC` of records that cannot be used, with the reason in headers")
	fs.StringVar(&c.CreatorScoresTopic, "creator-scores-topic", c.CreatorScoresTopic, "compacted `TOPIC` of creator score records (creator momentum), keyed by creator id (empty: not written)")
	fs.StringVar(&c.RisingCreatorsTopic, "rising-creators-topic", c.RisingCreatorsTopic, "`TOPIC` of rising-creators lists, keyed by region, one per region each minute (empty: not written)")
	fs.StringVar(&c.StartFrom, "start-from", c.StartFrom, "where a group with no committed offsets starts: earliest or latest")
	fs.Var(mebibytes{&c.MinFreeDisk}, "min-free-disk-mb", "free `MiB` on the state's file system below which the service does not start and reports not ready (0: no check)")
	fs.DurationVar(&c.SessionTimeout, "session-timeout", c.SessionTimeout, "how long the consumer group waits for a heartbeat (one a second) of an instance before it gives\nthe instance's partitions to the others: the pause after a kill (brokers accept 6s to 30m by default)")
	fs.StringVar(&c.OnOffsetOutOfRange, "on-offset-out-of-range", c.OnOffsetOutOfRange, "when a partition's next offset was deleted by retention: earliest (resume at the first offset it holds; the records between are lost, logged and counted) or fail (stop with an error)")
	fs.DurationVar(&c.CommitInterval, "commit-interval", c.CommitInterval, "wall-clock time between commits of state, outputs and offsets")
	fs.IntVar(&c.CommitSlices, "commit-slices", c.CommitSlices, "commit the partitions held in this many slices, one every --commit-interval/N (each partition once an\ninterval): applying stops while a commit writes its batch, and a slice's stop is shorter")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", c.IdleTimeout, "a partition quiet for this long flushes held-back scores and stops holding back trending ticks")
	fs.DurationVar(&c.MaxInputSkew, "max-input-skew", c.MaxInputSkew, "an input partition reads at most this far ahead, in event time, of the slowest of the instance's\npartitions still being read; what it read ahead would wait in memory (0: no limit)")
	fs.DurationVar(&c.FlushInterval, "flush-interval", c.FlushInterval, "send emitted records to Kafka this often between commits (0: only at commits)")
	fs.IntVar(&c.Workers, "workers", c.Workers, "`N` goroutines applying partitions in parallel")
	fs.BoolVar(&c.CreateTopics, "create-topics", c.CreateTopics, "create missing output topics (scores compacted)")
}

func parseRun(args []string) (*runFlags, error) {
	f := &runFlags{svc: service.DefaultConfig()}
	fs := newFlagSet("run", "run [flags]\n\n"+
		"The live service. Instances with the same --group share the partitions of --input-topic;\n"+
		"each keeps the state of its partitions in --state-dir (Pebble), commits it together with\n"+
		"the input offsets, and writes score records, trending snapshots and dead letters to Kafka.\n"+
		"HTTP on --http-addr: /v1/videos/{id}, /v1/trending?region=global&k=20, /metrics, /healthz,\n"+
		"/readyz and a page at /.\n\n"+
		"Example:\n  virality run --brokers kafka-1:9092,kafka-2:9092 --state-dir /var/lib/virality")
	f.kafka = addKafkaFlags(fs)
	addServiceFlags(fs, &f.svc)
	fs.StringVar(&f.stateDir, "state-dir", "virality-state", "state `DIR` (Pebble); a restarted instance resumes from it")
	fs.StringVar(&f.httpAddr, "http-addr", "127.0.0.1:8080", "HTTP listen `ADDRESS` (empty: no HTTP)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `LEVEL`: debug, info, warn or error")
	addStoreFlags(fs, &f.cacheMB, &f.memTableMB)
	addMemoryBudgetFlag(fs, &f.budget)
	fs.IntVar(&f.viewVideos, "http-view-videos", 200_000, "the HTTP API answers for every video and region, whichever instance owns them, from a\nview of the output topics holding up to `N` videos (about 560 bytes each; 0: no view, the\nAPI answers for this instance's partitions and, on partition 0's holder, the lists; with\n--memory-budget: its share of it)")
	addEngineFlags(fs, &f.svc.Engine)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	f.budget.apply(setFlags(fs), sizes{engine: &f.svc.Engine, cacheMB: &f.cacheMB, memTableMB: &f.memTableMB,
		viewVideos: &f.viewVideos, fetchBytes: &f.svc.FetchMaxBytes, inputBytes: &f.svc.InputMaxBytes, outputBytes: &f.svc.OutputMaxBytes,
		recent: &f.svc.RecentScores, held: &f.svc.MaxHeldEvents})
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q: run takes only flags", fs.Arg(0))
	}
	kc, err := f.kafka.config()
	if err != nil {
		return nil, err
	}
	f.svc.Kafka = kc
	if err := validateEngine(&f.svc.Engine); err != nil {
		return nil, err
	}
	if err := f.svc.Validate(); err != nil {
		return nil, usageError{err.Error()}
	}
	if _, err := zerolog.ParseLevel(f.logLevel); err != nil || f.logLevel == "" {
		return nil, usagef("--log-level %q: choose debug, info, warn or error", f.logLevel)
	}
	if f.stateDir == "" {
		return nil, usagef("--state-dir: must not be empty")
	}
	if err := validateStore(f.cacheMB, f.memTableMB); err != nil {
		return nil, err
	}
	if f.viewVideos < 0 {
		return nil, usagef("--http-view-videos %d: must be 0 (no view) or more", f.viewVideos)
	}
	return f, nil
}

func runRun(ctx context.Context, args []string) error {
	f, err := parseRun(args)
	if err != nil {
		return err
	}
	log := newLogger(f.logLevel)
	defer f.budget.limitHeap(true)()
	return serveWith(ctx, serveOptions{cfg: f.svc, stateDir: f.stateDir, cacheMB: f.cacheMB, memTableMB: f.memTableMB,
		httpAddr: f.httpAddr, viewVideos: f.viewVideos, log: log})
}

func newLogger(level string) zerolog.Logger {
	lvl, _ := zerolog.ParseLevel(level)
	return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.TimeOnly, NoColor: true}).
		Level(lvl).With().Timestamp().Logger()
}

// serveOptions are what serveWith runs.
type serveOptions struct {
	cfg      service.Config
	stateDir string
	cacheMB  int
	// memTableMB is the size of Pebble's memtables (0: the store's default).
	memTableMB int
	httpAddr   string
	// viewVideos > 0: the HTTP API also answers for videos and lists of
	// other instances, from a view of the output topics holding up to
	// this many videos.
	viewVideos int
	log        zerolog.Logger
	started    func(*service.Service, string)
}

// serveWith runs the service with its state and HTTP interface until ctx
// ends.
func serveWith(ctx context.Context, o serveOptions) (err error) {
	cfg, stateDir, cacheMB, httpAddr, log, started := o.cfg, o.stateDir, o.cacheMB, o.httpAddr, o.log, o.started
	// The service and its view keep the metadata of their own topics, not
	// of every topic of the cluster.
	cfg.Kafka.MetadataTopics = cfg.Topics()
	db, err := store.Open(stateDir, storeOptions(cacheMB, o.memTableMB))
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, db.Close()) }()
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	svc, err := service.New(cfg, db, m, log)
	if err != nil {
		return usageError{err.Error()}
	}
	httpURL := ""
	if httpAddr != "" {
		var backend httpapi.Backend = svc
		if o.viewVideos > 0 {
			a := &anyVideo{Service: svc}
			vcfg := view.Config{Kafka: cfg.Kafka, ScoresTopic: cfg.ScoresTopic, TrendingTopic: cfg.TrendingTopic,
				MaxVideos: o.viewVideos}
			vctx, stopView := context.WithCancel(ctx)
			defer stopView()
			go openWhenReady(vctx, &a.view, func(ctx context.Context) (*view.View, error) { return view.Open(ctx, vcfg) },
				log, "videos and lists")
			if cfg.CreatorScoresTopic != "" {
				ccfg := view.CreatorsConfig{Kafka: cfg.Kafka, CreatorScoresTopic: cfg.CreatorScoresTopic,
					RisingCreatorsTopic: cfg.RisingCreatorsTopic}
				go openWhenReady(vctx, &a.creators, func(ctx context.Context) (*view.Creators, error) { return view.OpenCreators(ctx, ccfg) },
					log, "creators")
			}
			go a.steer(vctx, log)
			backend = a
		}
		srv := httpapi.New(httpAddr, backend, reg)
		addr, err := srv.Start()
		if err != nil {
			return fmt.Errorf("--http-addr %s: %w", httpAddr, err)
		}
		httpURL = "http://" + addr.String()
		log.Info().Str("url", httpURL).Msg("HTTP listening")
		defer func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			defer cancel()
			err = errors.Join(err, srv.Shutdown(sctx))
		}()
	}
	if started != nil {
		started(svc, httpURL)
	}
	// Graceful shutdown: the service commits and returns; if that takes
	// longer than 10 s, give up rather than hang.
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-ctx.Done():
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				fmt.Fprintln(os.Stderr, "virality: shutdown took over 10s; exiting without a final commit (the state resumes from the last one)")
				os.Exit(1)
			}
		}
	}()
	err = svc.Run(ctx)
	if err != nil && strings.Contains(err.Error(), "context canceled") && ctx.Err() != nil {
		return nil
	}
	return err
}

// mebibytes is a flag in MiB that sets a size in bytes.
type mebibytes struct{ bytes *int64 }

func (m mebibytes) String() string {
	if m.bytes == nil {
		return "0"
	}
	return strconv.FormatInt(*m.bytes>>20, 10)
}

func (m mebibytes) Set(v string) error {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || n > 1<<30 {
		return fmt.Errorf("want a whole number of MiB from 0 to %d", 1<<30)
	}
	*m.bytes = n << 20
	return nil
}
