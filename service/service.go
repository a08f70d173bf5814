// Package service is virality's live service: it consumes the likes topic
// in a Kafka consumer group, runs the processor over the partitions it is
// assigned, and keeps scores and trending lists current in Kafka. It is
// the wiring of kafkaio and processor, plus the few uses of the wall clock
// that a live service needs: commit cadence and idle partitions.
package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"math/bits"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"github.com/segmentio/kafka-go"

	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/metrics"
	"github.com/viralityhq/virality/processor"
	"github.com/viralityhq/virality/store"
)

// Config is the live service's configuration.
type Config struct {
	Kafka           kafkaio.Config
	Group           string
	InputTopic      string
	ScoresTopic     string
	TrendingTopic   string
	DeadLetterTopic string
	// CreatorScoresTopic (compacted, keyed by creator) and
	// RisingCreatorsTopic (keyed by region) take the creator score records
	// and the rising-creators lists; empty: not written.
	CreatorScoresTopic  string
	RisingCreatorsTopic string
	// StartFrom is where a group with no committed offset starts:
	// "earliest" or "latest".
	StartFrom string
	Engine    processor.Config
	// CommitInterval is the wall-clock time between commits of a
	// partition (besides every Engine.CommitEvery records).
	CommitInterval time.Duration
	// CommitSlices: the partitions held commit in this many slices, one
	// slice every CommitInterval/CommitSlices, each partition once an
	// interval (processor.Coordinator's CommitSlices). The partitions
	// stop applying while a commit writes its batch; a slice's stop is
	// shorter.
	CommitSlices int
	// IdleTimeout: a partition with no new record for this long is idle:
	// its held-back scores are emitted and it no longer holds back the
	// trending ticks of the others.
	IdleTimeout time.Duration
	// MaxInputSkew is how far, in event time, an input partition may read
	// ahead of the slowest of this instance's partitions still being read
	// (0: no limit). What one reads ahead waits in memory for the others
	// (a like is weighed once every source has passed its buckets), so
	// reading a backlog with no limit holds hours of likes on the heap.
	MaxInputSkew time.Duration
	// MaxInternalBehind is how many records an internal topic's partition
	// may hold unread before the input waits (0: no limit). The input is
	// routed to the by-user topic much faster than the account stages
	// weigh it, and the stages' reports to one another, which close the
	// buckets that free the likes they hold, travel the same topic: behind
	// a backlog of it, every report waits for the whole backlog to be
	// read, while the likes it would free pile up in memory.
	MaxInternalBehind int64
	// MaxHeldEvents is how many likes the account stages may hold for
	// weighing before the input waits, while the stages can weigh them
	// without more input (0: no limit). The reorder buffers are not counted: they hold events for
	// the lateness behind the sources' progress, which only input moves.
	MaxHeldEvents int64
	// FlushInterval is how often records emitted since the last flush are
	// sent to Kafka, between commits, so that the ranker sees a like's
	// effect within about this long (0: only at commits). A like waits for
	// up to three flushes: to its user's partition, to its video's, and
	// its score. 5 ms, not 10: at 20,000 likes/s (bench/b3) the median
	// like is scored after 16-18 ms, not 28, for about 1 ms more CPU a
	// 1,000 likes.
	FlushInterval time.Duration
	// CreateTopics creates missing output topics.
	CreateTopics bool
	// Workers is the number of goroutines applying partitions in parallel.
	Workers int
	// OnOffsetOutOfRange is what a partition whose next offset was
	// deleted by retention does: OutOfRangeEarliest resumes at the first
	// offset it holds (the records between are lost, logged and
	// counted), OutOfRangeFail stops the service with an error.
	OnOffsetOutOfRange string
	// MinFreeDisk is the free space, in bytes, below which the state's
	// file system counts as full: the service does not start, and a
	// running one reports not ready (0: no check).
	MinFreeDisk int64
	// SessionTimeout is how long the group's coordinator waits for a
	// heartbeat of this instance before it counts it dead and gives its
	// partitions to the others: the time a killed instance's partitions
	// stand still, or an instance restarted after a kill waits. The
	// broker accepts group.min.session.timeout.ms (6 s by default) to
	// group.max.session.timeout.ms (30 min). Heartbeats go every
	// HeartbeatInterval from kafka-go's own goroutine, so a long commit
	// or restore does not delay them.
	SessionTimeout time.Duration
	// FetchMaxBytes bounds the records of one fetch of a partition (a
	// record batch larger than this still comes whole); InputMaxBytes
	// may ask for less. Larger fetches save round trips, not much else.
	FetchMaxBytes int
	// InputMaxBytes bounds the input an instance holds read but not yet
	// applied, decoded, over all its partitions and internal topics:
	// while the engine is behind, the fetchers wait and the records stay
	// in the broker. Each fetch then asks for at most a third of this
	// bound's share per fetcher (and FetchMaxBytes), so that every fetcher
	// may wait on the broker at once.
	InputMaxBytes int64
	// OutputMaxBytes bounds the output records waiting to be sent while a
	// flush or commit is in flight, with their buffers (about as much may
	// be in the flight): past it, the engine waits for the broker to take
	// them.
	OutputMaxBytes int64
	// RecentScores is how many videos of its own partitions the instance
	// keeps the last score record of, to answer the HTTP API with it
	// (512 bytes each); another video's is computed from the
	// committed state when asked (0: always).
	RecentScores int
}

// footprint is how many times its raw bytes a fetched batch holds once
// decoded (records, events and their arrays; 2.9 for generated likes).
const footprint = 3

// HeartbeatInterval is how often the instance tells the group's
// coordinator it is alive: a sixth of the shortest session timeout a
// broker accepts by default, so that several heartbeats in a row must
// fail before the session expires.
const HeartbeatInterval = time.Second

// rebalanceTimeout is how long the coordinator waits, in a rebalance,
// for every member to join again: for this instance to end its
// generation (drain what was fetched, commit). A member that takes
// longer is dropped and joins afresh, a second rebalance. It does not
// delay the failover of a killed instance: the coordinator drops a
// member whose session expires without waiting for it.
const rebalanceTimeout = 10 * time.Second

// DefaultConfig returns the defaults of the flags of `virality run`.
func DefaultConfig() Config {
	return Config{
		Kafka:             kafkaio.DefaultConfig(),
		Group:             "virality",
		InputTopic:        "likes",
		ScoresTopic:       "video-scores",
		TrendingTopic:     "trending",
		DeadLetterTopic:   "likes.dlq",
		StartFrom:         "earliest",
		Engine:            processor.DefaultConfig(),
		CommitInterval:    time.Second,
		CommitSlices:      4,
		IdleTimeout:       5 * time.Second,
		MaxInputSkew:      5 * time.Minute,
		MaxInternalBehind: 10_000,
		MaxHeldEvents:     100_000,
		FlushInterval:     5 * time.Millisecond,
		CreateTopics:      true,
		Workers:           runtime.GOMAXPROCS(0),

		CreatorScoresTopic:  "creator-scores",
		RisingCreatorsTopic: "rising-creators",

		OnOffsetOutOfRange: OutOfRangeEarliest,
		MinFreeDisk:        256 << 20,
		SessionTimeout:     6 * time.Second,
		FetchMaxBytes:      1 << 20,
		InputMaxBytes:      64 << 20,
		OutputMaxBytes:     16 << 20,
		RecentScores:       100_000,
	}
}

// Validate reports settings a user must fix, naming the flag.
func (c *Config) Validate() error {
	var errs []error
	if err := c.Kafka.Validate(); err != nil {
		errs = append(errs, err)
	}
	for flag, v := range map[string]string{"--group": c.Group, "--input-topic": c.InputTopic,
		"--scores-topic": c.ScoresTopic, "--trending-topic": c.TrendingTopic, "--dead-letter-topic": c.DeadLetterTopic} {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s: must not be empty", flag))
		}
	}
	if c.StartFrom != "earliest" && c.StartFrom != "latest" {
		errs = append(errs, fmt.Errorf("--start-from %q: choose earliest or latest", c.StartFrom))
	}
	if c.CommitSlices < 1 {
		errs = append(errs, fmt.Errorf("--commit-slices %d: must be at least 1", c.CommitSlices))
	}
	if c.CommitInterval < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("--commit-interval %v: must be at least 10ms", c.CommitInterval))
	}
	if c.FlushInterval < 0 {
		errs = append(errs, fmt.Errorf("--flush-interval %v: must not be negative", c.FlushInterval))
	}
	if c.Workers < 1 || c.Workers > 1024 {
		errs = append(errs, fmt.Errorf("--workers %d: must be between 1 and 1024", c.Workers))
	}
	if c.MaxHeldEvents < 0 {
		errs = append(errs, fmt.Errorf("MaxHeldEvents %d: must be 0 (no limit) or more", c.MaxHeldEvents))
	}
	if c.MaxInternalBehind < 0 {
		errs = append(errs, fmt.Errorf("MaxInternalBehind %d: must be 0 (no limit) or more", c.MaxInternalBehind))
	}
	if c.MaxInputSkew < 0 {
		errs = append(errs, fmt.Errorf("--max-input-skew %v: must be 0 (no limit) or more", c.MaxInputSkew))
	}
	if c.IdleTimeout < 10*time.Millisecond {
		errs = append(errs, fmt.Errorf("--idle-timeout %v: must be at least 10ms", c.IdleTimeout))
	}
	if err := c.Engine.Validate(); err != nil {
		errs = append(errs, err)
	}
	if c.MinFreeDisk < 0 {
		errs = append(errs, fmt.Errorf("--min-free-disk-mb %d: must not be negative (0: no check)", c.MinFreeDisk>>20))
	}
	if c.SessionTimeout < 3*HeartbeatInterval || c.SessionTimeout > 30*time.Minute {
		errs = append(errs, fmt.Errorf("--session-timeout %v: must be between %v (three heartbeats) and 30m; brokers accept 6s to 30m by default",
			c.SessionTimeout, 3*HeartbeatInterval))
	}
	if c.FetchMaxBytes < 1<<10 {
		errs = append(errs, fmt.Errorf("fetch size %d bytes: must be at least 1 KiB", c.FetchMaxBytes))
	}
	if c.RecentScores < 0 {
		errs = append(errs, fmt.Errorf("recent scores %d: must not be negative", c.RecentScores))
	}
	if c.InputMaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("input held %d bytes: must be at least 1 MiB", c.InputMaxBytes))
	}
	if c.OutputMaxBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("output waiting %d bytes: must be at least 1 MiB", c.OutputMaxBytes))
	}
	if c.OnOffsetOutOfRange != OutOfRangeEarliest && c.OnOffsetOutOfRange != OutOfRangeFail {
		errs = append(errs, fmt.Errorf("--on-offset-out-of-range %q: choose earliest or fail", c.OnOffsetOutOfRange))
	}
	return errors.Join(errs...)
}

// Service is one instance of the live service.
type Service struct {
	cfg Config
	db  *store.DB
	m   *metrics.Metrics
	log zerolog.Logger
	now func() time.Time

	group atomic.Pointer[processor.Coordinator]
	owned atomic.Pointer[[]int32]
	// inputPartitions is the input topic's partition count, once known.
	inputPartitions atomic.Int32
	recent          *recentScores
	clog            *changelog
	// counted holds each open partition's counters as last accounted, so
	// that metrics get the increase; owned by the applying goroutine.
	counted map[int32]processor.Stats

	// Readiness: partitions assigned, the broker answering, fetches
	// working. Each is set by the goroutine that knows it.
	readyMu  sync.Mutex
	assigned bool
	problems map[string]string

	// freeBytes tells the free space of the state's file system, and
	// diskEvery how often the loop asks: store.FreeBytes and 5 s but in
	// tests.
	freeBytes func(dir string) (uint64, error)
	diskEvery time.Duration

	// Counters for the demo's view. A like taken (EventsIn) is in time
	// applied, ignored (a repeated like, a stray unlike, one replayed
	// after a restart) or dead-lettered.
	EventsIn, Applied, Ignored, DeadLetters, ScoresOut, Lag atomic.Int64
	// InternalLag is the most records any one partition of the internal
	// topics (by user, repartition, partials) held here had that the
	// service had not taken, as of their last fetches: the demo paces its
	// generator on it, so that the embedded broker's retention never
	// drops an internal record before it is read.
	InternalLag atomic.Int64
	// PartialsLag is the records of the trending partials topic the
	// service had not taken (only the holder of partition 0 reads it). Its
	// records are a partition's candidates at a tick, kilobytes each, so
	// a lag in records the size of InternalLag's can pass a broker's
	// retention by bytes: the demo paces on it apart.
	PartialsLag atomic.Int64
	quiet       atomic.Bool
}

// New returns a service on the state in db. m may be nil.
func New(cfg Config, db *store.DB, m *metrics.Metrics, log zerolog.Logger) (*Service, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Service{cfg: cfg, db: db, m: m, log: log, now: time.Now,
		recent: newRecentScores(cfg.RecentScores), problems: map[string]string{}, counted: map[int32]processor.Stats{},
		freeBytes: store.FreeBytes, diskEvery: 5 * time.Second}, nil
}

// fetched is one fetch of one partition, decoded: of the input topic, or
// of the partition's share of the repartition topic.
type fetched struct {
	processor.Batch
	part     int32
	repart   bool
	byUser   bool
	partials bool
	hw       int64 // high watermark after the fetch
	next     int64 // the source's next offset after the fetch
	written  int64 // of an internal topic: what this instance had written to the partition as the fetch began
	err      error
	held     int64 // bytes taken from the generation's gate
	// data holds the bytes of the records, until the batch is applied.
	data kafkaio.Chunks
}

// Topics are every topic the service reads or writes: its input and
// outputs, and its internal topics.
func (c *Config) Topics() []string {
	ts := []string{c.InputTopic, c.ScoresTopic, c.TrendingTopic, c.DeadLetterTopic,
		c.ByUserTopic(), c.RepartitionTopic(), c.ChangelogTopic(), c.PartialsTopic()}
	for _, t := range []string{c.CreatorScoresTopic, c.RisingCreatorsTopic} {
		if t != "" {
			ts = append(ts, t)
		}
	}
	return ts
}

// PartialsTopic is the internal topic through which each partition's
// trending lists reach the one instance that merges them.
func (c *Config) PartialsTopic() string { return c.Group + "-trending-partials" }

// RepartitionTopic is the internal topic through which weighed likes
// reach the partition that owns their video.
func (c *Config) RepartitionTopic() string { return c.Group + "-likes-by-video" }

// ByUserTopic is the internal topic through which every record reaches the
// account stage of the partition that owns its user.
func (c *Config) ByUserTopic() string { return c.Group + "-likes-by-user" }

// Partitioner names a video's partition as Kafka's default partitioner
// does for a record keyed by the video id: input keyed by video needs no
// repartitioning.
func Partitioner(video string, n int) int32 {
	return int32(kafkaio.PartitionOf([]byte(video), n))
}

// forwardBalancer sends a repartition record to the partition its header
// names.
var forwardBalancer = kafka.BalancerFunc(func(m kafka.Message, partitions ...int) int {
	for _, h := range m.Headers {
		if h.Key == processor.HeaderForward {
			if p, ok := processor.ForwardPartition(h.Value); ok && int(p) < len(partitions) {
				return partitions[p]
			}
		}
	}
	return partitions[0]
})

// Run runs the service until ctx ends, then commits and returns nil.
func (s *Service) Run(ctx context.Context) (err error) {
	if err := s.checkDisk(); err != nil {
		return err
	}
	kc := s.cfg.Kafka
	if err := kafkaio.Ping(ctx, kc); err != nil {
		return err
	}
	n, err := kafkaio.Partitions(ctx, kc, s.cfg.InputTopic)
	if err != nil {
		return fmt.Errorf("input topic: %w", err)
	}
	s.inputPartitions.Store(int32(n))
	if s.cfg.CreateTopics {
		specs := []kafkaio.TopicSpec{
			{Name: s.cfg.ScoresTopic, Partitions: n, Compacted: true},
			{Name: s.cfg.TrendingTopic, Partitions: 1},
			{Name: s.cfg.DeadLetterTopic, Partitions: n},
		}
		if s.cfg.CreatorScoresTopic != "" {
			specs = append(specs, kafkaio.TopicSpec{Name: s.cfg.CreatorScoresTopic, Partitions: n, Compacted: true})
		}
		if s.cfg.RisingCreatorsTopic != "" {
			specs = append(specs, kafkaio.TopicSpec{Name: s.cfg.RisingCreatorsTopic, Partitions: 1})
		}
		warnings, err := kafkaio.EnsureTopics(ctx, kc, specs)
		for _, w := range warnings {
			s.log.Warn().Msg(w)
		}
		if err != nil {
			return err
		}
	}
	// The internal topic is always the service's own: created with the
	// input's partitions, whatever --create-topics says.
	{
		warnings, err := kafkaio.EnsureTopics(ctx, kc, []kafkaio.TopicSpec{
			{Name: s.cfg.ByUserTopic(), Partitions: n, AppendTime: true},
			{Name: s.cfg.RepartitionTopic(), Partitions: n, AppendTime: true},
			{Name: s.cfg.ChangelogTopic(), Partitions: n, Compacted: true},
			{Name: s.cfg.PartialsTopic(), Partitions: 1, AppendTime: true},
		})
		for _, w := range warnings {
			s.log.Warn().Msg(w)
		}
		if err != nil {
			return err
		}
	}
	var sinks []*kafkaio.Sink
	defer func() {
		for _, k := range sinks {
			err = errors.Join(err, k.Close())
		}
	}()
	openWith := func(topic string, opts kafkaio.SinkOptions) (*kafkaio.Sink, error) {
		k, err := kafkaio.NewSink(kc, topic, opts)
		if err == nil {
			sinks = append(sinks, k)
		}
		return k, err
	}
	open := func(topic string) (*kafkaio.Sink, error) {
		return openWith(topic, kafkaio.SinkOptions{})
	}
	var out processor.Outputs
	scores, err := open(s.cfg.ScoresTopic)
	if err != nil {
		return err
	}
	out.Scores = &capture{Sink: scores, recent: s.recent, n: &s.ScoresOut}
	trending, err := open(s.cfg.TrendingTopic)
	if err != nil {
		return err
	}
	out.Trending = &counted{Sink: trending, count: func() {
		if s.m != nil {
			s.m.AddEmitted("trending", 1)
		}
	}}
	if out.DeadLetters, err = open(s.cfg.DeadLetterTopic); err != nil {
		return err
	}
	if out.ByUser, err = openWith(s.cfg.ByUserTopic(), kafkaio.SinkOptions{Balancer: forwardBalancer}); err != nil {
		return err
	}
	if out.Repartition, err = openWith(s.cfg.RepartitionTopic(), kafkaio.SinkOptions{Balancer: forwardBalancer}); err != nil {
		return err
	}
	if out.Partials, err = open(s.cfg.PartialsTopic()); err != nil {
		return err
	}
	if s.cfg.CreatorScoresTopic != "" {
		k, err := open(s.cfg.CreatorScoresTopic)
		if err != nil {
			return err
		}
		out.Creators = &counted{Sink: k, count: func() {
			if s.m != nil {
				s.m.AddEmitted(metrics.KindCreator, 1)
			}
		}}
	}
	if s.cfg.RisingCreatorsTopic != "" {
		k, err := open(s.cfg.RisingCreatorsTopic)
		if err != nil {
			return err
		}
		out.RisingCreators = &counted{Sink: k, count: func() {
			if s.m != nil {
				s.m.AddEmitted(metrics.KindRisingCreators, 1)
			}
		}}
	}
	clogSink, err := openWith(s.cfg.ChangelogTopic(), kafkaio.SinkOptions{Balancer: targetBalancer})
	if err != nil {
		return err
	}
	clog := &changelog{Sink: clogSink, kc: kc, topic: s.cfg.ChangelogTopic()}
	out.Changelog = clog
	s.clog = clog
	topo := processor.Topology{Partitions: n, Partitioner: Partitioner, Workers: s.cfg.Workers, Expect: n,
		Lineage: s.cfg.Group + "/" + s.cfg.InputTopic}
	for p := range n {
		topo.Sources = append(topo.Sources, int32(p))
	}
	g, err := processor.NewCoordinator(s.cfg.Engine, s.db, out, topo)
	if err != nil {
		return err
	}
	// The creators of each tick merge beside the partitions, on the
	// holder of partition 0, not on the goroutine that applies.
	if err := g.PipeCreators(true); err != nil {
		return err
	}
	defer func() { err = errors.Join(err, g.PipeCreators(false)) }()
	if s.m != nil {
		g.CommitTook = s.m.ObserveCommit
	}
	s.group.Store(g)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go s.watchBroker(wctx)

	dialer, err := kc.Dialer()
	if err != nil {
		return err
	}
	start := kafka.FirstOffset
	if s.cfg.StartFrom == "latest" {
		start = kafka.LastOffset
	}
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                s.cfg.Group,
		Brokers:           kc.Brokers,
		Dialer:            dialer,
		Topics:            []string{s.cfg.InputTopic},
		StartOffset:       start,
		HeartbeatInterval: HeartbeatInterval,
		SessionTimeout:    s.cfg.SessionTimeout,
		RebalanceTimeout:  rebalanceTimeout,
		JoinGroupBackoff:  time.Second,
		RetentionTime:     7 * 24 * time.Hour,
	})
	if err != nil {
		return fmt.Errorf("join consumer group %q: %w", s.cfg.Group, err)
	}
	// Close sends LeaveGroup: after a graceful stop the coordinator
	// rebalances at once instead of waiting out the session.
	defer func() { err = errors.Join(err, ignoreClosed(cg.Close())) }()

	for ctx.Err() == nil {
		gen, err := cg.Next(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				break
			}
			if errors.Is(err, kafka.InvalidSessionTimeout) {
				return fmt.Errorf("--session-timeout %v: the broker refuses it (%v): choose one within its group.min.session.timeout.ms and group.max.session.timeout.ms",
					s.cfg.SessionTimeout, err)
			}
			s.setAssigned(false)
			s.setProblem("broker", fmt.Sprintf("joining consumer group: %v", err))
			s.log.Warn().Err(err).Msg("consumer group")
			sleep(ctx, time.Second)
			continue
		}
		if err := s.generation(ctx, g, gen); err != nil {
			return err
		}
	}
	s.setAssigned(false)
	return s.commit(context.WithoutCancel(ctx), g)
}

func ignoreClosed(err error) error {
	if errors.Is(err, kafka.ErrGroupClosed) {
		return nil
	}
	return err
}

// generation runs the partitions one consumer-group generation assigns to
// this instance until the generation ends or ctx does.
func (s *Service) generation(ctx context.Context, g *processor.Coordinator, gen *kafka.Generation) error {
	assigned := map[int32]int64{}
	for _, a := range gen.Assignments[s.cfg.InputTopic] {
		assigned[int32(a.ID)] = a.Offset
	}
	for _, p := range g.Partitions() {
		if _, ok := assigned[p]; !ok {
			if err := g.Close(ctx, p); err != nil {
				// Released all the same, at its last commit.
				s.log.Warn().Err(err).Int32("partition", p).Msg("commit on release")
			}
			delete(s.counted, p)
			if s.m != nil {
				s.m.ForgetPartition(p)
			}
		}
	}
	ids := make([]int32, 0, len(assigned))
	for p := range assigned {
		ids = append(ids, p)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	// The records remembered for /v1/videos are good only for partitions
	// held without a break: another instance may have written newer ones
	// (or older ones again) while this one did not hold the partition.
	var kept []int32
	if prev := s.owned.Load(); prev != nil {
		for _, p := range *prev {
			if _, ok := assigned[p]; ok {
				kept = append(kept, p)
			}
		}
	}
	n := int(s.inputPartitions.Load())
	s.recent.forget(func(id string) bool { return !slices.Contains(kept, Partitioner(id, n)) })
	if err := s.restore(ctx, g, ids); err != nil {
		return err
	}
	starts := map[int32]int64{}
	for _, p := range ids {
		if _, err := g.Open(p); err != nil {
			return fmt.Errorf("open partition %d: %w", p, err)
		}
		var err error
		starts[p], err = s.startOffset(ctx, p, g.NextOffset(p), assigned[p])
		if err != nil {
			return err
		}
	}
	s.owned.Store(&ids)
	if s.m != nil {
		s.m.SetPartitions(len(ids))
	}
	g.AfterCommit = func(context.Context) error {
		offsets := map[int]int64{}
		for _, p := range ids {
			if off := g.CommittedOffset(p); off > 0 {
				offsets[int(p)] = off
			}
		}
		if len(offsets) == 0 {
			return nil
		}
		// The state holds the offsets; the group's copy is for lag tools,
		// so a failure here is not fatal.
		if err := gen.CommitOffsets(map[string]map[int]int64{s.cfg.InputTopic: offsets}); err != nil {
			s.log.Debug().Err(err).Msg("commit offsets to the consumer group")
		}
		return nil
	}
	s.log.Info().Int32("generation", gen.ID).Ints32("partitions", ids).Msg("assigned")

	// The gate, not the channel's capacity, bounds the input held. A
	// fetcher holds its share while it waits on the broker, up to 200 ms
	// when there is nothing new: if the shares of all could not be held at
	// once, a partition with much to read could wait behind idle ones'
	// polls. So each fetch asks for little enough, and the gate holds at
	// least every fetcher's share. (A fetch returns whole record batches:
	// one may hold more than it asked for, and then holds more of the gate.)
	batches := make(chan *fetched, 2*len(ids)+2)
	fetchers := 3 * len(ids)
	if _, ok := g.Merging(); ok {
		fetchers++
	}
	in := &input{maxBytes: int(max(min(int64(s.cfg.FetchMaxBytes), s.cfg.InputMaxBytes/int64(footprint*fetchers)), 4<<10)), forwarded: g.Forwarded}
	in.pace = newPacer(s.cfg.MaxInputSkew.Milliseconds(), s.cfg.MaxInternalBehind, s.cfg.MaxHeldEvents, ids)
	for k := range in.free {
		in.free[k] = make(chan *fetched, len(ids))
	}
	in.gate = newGate(max(s.cfg.InputMaxBytes, int64(fetchers*footprint*in.maxBytes)))
	genDone := make(chan struct{})
	// kafka-go rejoins the group once every function started on the
	// generation has returned: this one returns only after the loop has
	// applied, flushed and committed what it had. Otherwise the next owner
	// of a partition taken away could start while this instance still
	// writes the partition's last outputs, and a stale record would land
	// on the scores topic after the new owner's newer ones (the group
	// waits for this up to the rebalance timeout).
	loopDone := make(chan struct{})
	defer close(loopDone)
	gen.Start(func(gctx context.Context) {
		<-gctx.Done()
		close(genDone)
		<-loopDone
	})
	for _, p := range ids {
		p, off, uoff, roff := p, starts[p], g.ByUserOffset(p), g.RepartitionedOffset(p)
		gen.Start(func(gctx context.Context) { s.fetch(gctx, in, s.cfg.InputTopic, p, false, off, batches) })
		gen.Start(func(gctx context.Context) { s.fetch(gctx, in, s.cfg.ByUserTopic(), p, true, uoff, batches) })
		gen.Start(func(gctx context.Context) { s.fetch(gctx, in, s.cfg.RepartitionTopic(), p, true, roff, batches) })
	}
	if off, ok := g.Merging(); ok {
		// This instance holds partition 0: it merges the trending lists.
		gen.Start(func(gctx context.Context) { s.fetch(gctx, in, s.cfg.PartialsTopic(), 0, true, off, batches) })
	}
	s.setAssigned(true)
	return s.loop(ctx, g, ids, in, batches, genDone)
}

// restore brings the local state of newly assigned partitions up to
// their changelog before they are opened: outside kafka-go's rebalance
// (the generation is already running), with /readyz saying which
// partitions are restoring.
func (s *Service) restore(ctx context.Context, g *processor.Coordinator, ids []int32) error {
	var todo []int32
	for _, p := range ids {
		if _, open := g.Engine(p); !open {
			todo = append(todo, p)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	s.setProblem("restore", fmt.Sprintf("restoring partitions %v from %s", todo, s.cfg.ChangelogTopic()))
	defer s.setProblem("restore", "")
	if s.m != nil {
		s.m.SetRestoring(len(todo))
		defer s.m.SetRestoring(0)
	}
	for _, p := range todo {
		start := s.now()
		last := start
		var st processor.RestoreStats
		var err error
		// A changelog just created may have no leader yet, and a broker
		// may be away for a while: retry, for up to a minute.
		for attempt := 1; ; attempt++ {
			st, err = g.Restore(ctx, p, s.clog, func(read, total int64) {
				if now := s.now(); now.Sub(last) >= 2*time.Second {
					last = now
					s.log.Info().Int32("partition", p).Int64("read", read).Int64("total", total).Msg("restoring")
				}
			})
			if err == nil || ctx.Err() != nil || attempt == 60 {
				break
			}
			s.log.Warn().Err(err).Int32("partition", p).Int("attempt", attempt).Msg("restore failed; retrying")
			sleep(ctx, time.Second)
		}
		if err != nil {
			return fmt.Errorf("restore partition %d: %w", p, err)
		}
		if s.m != nil {
			s.m.AddRestored(st.Records)
		}
		if st.Records > 0 || st.Wiped {
			secs := s.now().Sub(start).Seconds()
			s.log.Info().Int32("partition", p).Str("why", st.Why).Bool("wiped", st.Wiped).
				Int64("from", st.From).Int64("to", st.End).Int64("records", st.Records).Int64("commits", st.Commits).
				Int64("dropped", st.Dropped).Int("repairs", st.Repairs).
				Float64("seconds", secs).Float64("records_per_second", float64(st.Records)/max(secs, 1e-9)).
				Msg("restored partition from the changelog")
		}
	}
	return nil
}

// startOffset is where a partition's reading starts: after the state's
// last commit, else at the group's committed offset, else per StartFrom.
func (s *Service) startOffset(ctx context.Context, p int32, fromState, fromGroup int64) (int64, error) {
	if fromState > 0 {
		return fromState, nil
	}
	if fromGroup >= 0 {
		return fromGroup, nil
	}
	first, last, err := kafkaio.FirstLastOffsets(ctx, s.cfg.Kafka, s.cfg.InputTopic, int(p))
	if err != nil {
		return 0, fmt.Errorf("offsets of partition %d: %w", p, err)
	}
	if s.cfg.StartFrom == "latest" {
		return last, nil
	}
	return first, nil
}

// input is what a generation's fetchers share: the gate on the bytes they
// hold, the pacer of the input partitions, and the most each fetch asks
// for.
type input struct {
	gate     *gate
	pace     *pacer
	maxBytes int
	// forwarded is processor.Coordinator.Forwarded: what the instance has
	// written to an internal topic's partition (internalLag).
	forwarded func(byUser bool, part int32) int64
	// free keeps applied batches, their arrays of records and events, for
	// the fetchers of their topic (batchKind) to fill again (the
	// coordinator copies what it keeps of a record): one for each
	// fetcher. From one sync.Pool for all, which the collector empties,
	// the input's fetchers took the partials' small batches or none, and
	// grew them again: a fifth of all a catch-up under 512 MiB allocated.
	free [kinds]chan *fetched
}

// batch returns a batch for a fetcher of topic kind to fill.
func (in *input) batch(kind int) *fetched {
	select {
	case b := <-in.free[kind]:
		return b
	default:
		return &fetched{}
	}
}

// recycle gives the memory of an applied batch's records back and keeps
// the batch for its topic's fetchers, unless as many wait as there are
// fetchers.
func (in *input) recycle(b *fetched) {
	b.data.Release()
	select {
	case in.free[b.kind()] <- b:
	default:
	}
}

// fetch reads one partition of a topic and sends decoded batches, until
// ctx ends.
func (s *Service) fetch(ctx context.Context, in *input, topic string, p int32, internal bool, offset int64, out chan<- *fetched) {
	// kafka-go's generation context is not one of the context package's
	// own, so each context made from it starts a goroutine to watch it:
	// one for every fetch's timeout (1,900 a second at 20,000 likes/s).
	// Made from this one, they start none.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	partials := topic == s.cfg.PartialsTopic()
	byUser := topic == s.cfg.ByUserTopic()
	repart := internal && !partials && !byUser
	if internal && offset == 0 {
		// The start of what the topic still holds.
		if first, _, err := kafkaio.FirstLastOffsets(ctx, s.cfg.Kafka, topic, int(p)); err == nil {
			offset = first
		}
	}
	src, err := kafkaio.NewPartitionSource(s.cfg.Kafka, topic, int(p), offset)
	if err != nil {
		select {
		case out <- &fetched{part: p, repart: repart, byUser: byUser, partials: partials, err: err}:
		case <-ctx.Done():
		}
		return
	}
	defer src.Close()
	src.MaxBytes = in.maxBytes
	if !internal && s.m != nil {
		s.m.AddLostToRetention(p, 0) // the series, at 0 until a loss
	}
	// stuck: the next offset is gone (retention) and the partition has not
	// read since; it keeps the service not ready (offsetGone).
	stuck, warned := false, false
	defer func() {
		if stuck && !stopsService(err) {
			s.setStuck(topic, p, "")
		}
	}()
	var recs []processor.Record
	for ctx.Err() == nil {
		// Wait for the other partitions before taking a share of the
		// gate: the slowest must find it free.
		if !internal && !in.pace.wait(ctx, p) {
			return
		}
		reserved := int64(footprint * in.maxBytes)
		if !in.gate.acquire(ctx, reserved) {
			return
		}
		var written int64
		if byUser || repart {
			written = in.forwarded(byUser, p)
		}
		recs, err = src.Next(ctx, recs[:0])
		var oor *kafkaio.OffsetOutOfRangeError
		if errors.As(err, &oor) {
			stuck = true
			if err = s.offsetGone(topic, p, src, oor, &warned); err == nil {
				in.gate.release(reserved)
				continue // moved to the first offset the partition holds
			}
		} else if err == nil && stuck {
			stuck, warned = false, false
			s.setStuck(topic, p, "")
		}
		b := in.batch(batchKind(repart, byUser, partials))
		b.part, b.repart, b.byUser, b.partials, b.hw, b.next, b.err = p, repart, byUser, partials, src.HighWatermark(), src.Offset(), err
		b.written = written
		b.Recs = b.Recs[:0]
		if err == nil {
			// The batch takes the fetch's memory, given back once
			// the batch is applied (recycle).
			b.Refer(recs)
			b.data = src.Detach()
			if !internal { // internal records are decoded by the coordinator
				b.Decode()
				if in.pace.paces() {
					in.pace.read(p, len(b.Recs), s.maxEventTime(&b.Batch))
				}
			}
		} else if ctx.Err() != nil {
			return
		}
		b.held = b.Bytes() + int64(b.data.Bytes())
		in.gate.adjust(b.held - reserved)
		select {
		case out <- b:
		case <-ctx.Done():
			return
		}
		if stopsService(err) {
			return // the loop stops the service
		}
		if err != nil {
			sleep(ctx, time.Second)
		}
	}
}

// The topics a batch is fetched from (batchKind).
const (
	kindInput = iota
	kindByUser
	kindRepart
	kindPartials
	kinds
)

// batchKind numbers the topic a batch is fetched from.
func batchKind(repart, byUser, partials bool) int {
	switch {
	case byUser:
		return kindByUser
	case repart:
		return kindRepart
	case partials:
		return kindPartials
	}
	return kindInput
}

// kind is the topic b was fetched from.
func (b *fetched) kind() int { return batchKind(b.repart, b.byUser, b.partials) }

// maxEventTime returns the largest event time of a decoded batch's
// events, of those the engine will not dead-letter as from the future.
func (s *Service) maxEventTime(b *processor.Batch) int64 {
	skew := s.cfg.Engine.FutureSkew.Milliseconds()
	var m int64
	for i := range b.Recs {
		if b.Errs[i] == nil {
			if ts := b.Events[i].TS; ts > m && (b.Recs[i].Time <= 0 || ts <= b.Recs[i].Time+skew) {
				m = ts
			}
		}
	}
	return m
}

// loop applies batches on this goroutine, which owns the group's state,
// and commits on the wall-clock cadence.
func (s *Service) loop(ctx context.Context, g *processor.Coordinator, ids []int32, in *input, batches <-chan *fetched, genDone <-chan struct{}) error {
	gate := in.gate
	// Each commit takes the next slice of the partitions: one slice every
	// interval/slices; changes made wait until every slice has committed.
	slices := max(min(s.cfg.CommitSlices, len(ids)), 1)
	every := s.cfg.CommitInterval / time.Duration(slices)
	g.CommitSlices = slices
	tick := time.NewTicker(min(every, 200*time.Millisecond))
	defer tick.Stop()
	var flushTick <-chan time.Time
	if s.cfg.FlushInterval > 0 {
		t := time.NewTicker(s.cfg.FlushInterval)
		defer t.Stop()
		flushTick = t.C
	}
	unflushed := false
	now := s.now()
	lastCommit := now
	lastData := map[int32]time.Time{}
	idle := map[int32]bool{}
	// caughtUp: the partition's last fetch found nothing new. Only such a
	// partition can be idle; one still being read, however slowly, holds
	// back the ticks it has not reached.
	caughtUp := map[int32]bool{}
	// woken: an idle partition the engine made active again when another
	// partition, here or on another instance, had records again after
	// being idle (processor.Coordinator.SetIdle), and when. It is idle
	// again at its next empty fetch, one that ended after the wake (one
	// comes every fetch wait, 200 ms, behind the batches already on the
	// channel), or once wokenFor has passed if none comes (its fetches
	// fail): a partition that cannot be read holds the others back about
	// as long as a quiet one does, but for at least 5 s, as a fetch that
	// failed is tried again up to a second later.
	woken := map[int32]time.Time{}
	wokenFor := max(s.cfg.IdleTimeout, 5*time.Second)
	syncWoken := func() {
		for _, p := range g.Woken() {
			if idle[p] {
				idle[p], caughtUp[p] = false, false
				woken[p] = s.now()
			}
		}
	}
	for _, p := range ids {
		lastData[p] = now
	}
	internal := internalLag{to: &s.InternalLag, partials: &s.PartialsLag, pace: in.pace, forwarded: in.forwarded}
	defer internal.reset()
	dirty := false // changed since the last commit started
	behind := 0    // slices that may hold changes no commit has taken
	landed := g.Commits()
	var commitFailing time.Time
	failures := &failureLog{log: s.log, every: 10 * time.Second}
	var lastDiskCheck time.Time
	applyOne := func(b *fetched) error {
		syncWoken()
		if b.err != nil {
			if stopsService(b.err) {
				return b.err
			}
			s.setProblem("fetch", fmt.Sprintf("reading partition %d: %v", b.part, b.err))
			return nil
		}
		s.setProblem("fetch", "")
		if len(b.Recs) > 0 {
			s.quiet.Store(false)
		}
		if b.partials || b.repart || b.byUser {
			internal.fetched(b)
		}
		if b.partials {
			if len(b.Recs) == 0 {
				return nil
			}
			dirty, unflushed = true, true
			return s.retryable(g.TakePartials(ctx, &b.Batch), &commitFailing)
		}
		if b.repart || b.byUser {
			if len(b.Recs) == 0 {
				return nil
			}
			dirty, unflushed = true, true
			if b.byUser {
				return s.retryable(g.TakeByUser(ctx, b.part, &b.Batch), &commitFailing)
			}
			return s.retryable(g.TakeRepartitioned(ctx, b.part, &b.Batch), &commitFailing)
		}
		if s.m != nil {
			s.m.SetLag(b.part, max(b.hw-g.NextOffset(b.part), 0))
		}
		caughtUp[b.part] = len(b.Recs) == 0
		if len(b.Recs) == 0 {
			if _, ok := woken[b.part]; ok {
				// Still nothing after another partition woke: idle again.
				delete(woken, b.part)
				idle[b.part] = true
				dirty, unflushed = true, true
				return s.retryable(g.SetIdle(ctx, b.part, true), &commitFailing)
			}
			return nil
		}
		idle[b.part] = false
		delete(woken, b.part)
		lastData[b.part] = s.now()
		dirty, unflushed = true, true
		if err := s.retryable(g.TakeInput(ctx, b.part, &b.Batch), &commitFailing); err != nil {
			return err
		}
		s.account(g, b)
		return nil
	}
	apply := func(b *fetched) error {
		err := applyOne(b)
		internal.update()
		s.count(g, ids, in.pace)
		gate.release(b.held)
		// Every batch goes back to its topic's fetchers, a partial's too
		// (the merger decodes what it keeps into strings of its own).
		in.recycle(b)
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return s.drain(ctx, g, batches, apply)
		case <-genDone:
			return s.drain(ctx, g, batches, apply)
		case b := <-batches:
			if err := apply(b); err != nil {
				return err
			}
			if err := s.retryable(g.Throttle(ctx, s.cfg.OutputMaxBytes), &commitFailing); err != nil {
				return err
			}
		case <-flushTick:
			if unflushed {
				// Outputs may go out before the commit that covers them:
				// a commit only needs them acknowledged by then.
				if err := g.FlushOutputs(ctx); err != nil {
					s.setProblem("commit", err.Error())
					failures.failed(s.now(), "flush", err)
				} else {
					unflushed = false
					if commitFailing.IsZero() {
						s.setProblem("commit", "") // the present, not an old failure
					}
					failures.recovered("flush")
				}
			}
		case <-tick.C:
			now := s.now()
			// Commits fly on their own goroutine (processor.Detacher):
			// land the last one, or retry it if it failed, then start
			// the next when due.
			err := g.Poll(ctx)
			if err == nil && dirty && now.Sub(lastCommit) >= 2*s.cfg.CommitInterval && g.Committing() {
				// The broker takes commits slower than they come: wait
				// for the one in flight, so that the next holds at most
				// about two intervals of changes (their changelog
				// records, and the cached entries that cannot be evicted
				// until it lands).
				err = g.Land(ctx)
			}
			if err == nil && (dirty || behind > 0) && now.Sub(lastCommit) >= every {
				var started bool
				if started, err = g.StartCommit(ctx); started {
					if dirty {
						behind = slices
					}
					lastCommit, dirty, behind = now, false, behind-1
				}
			}
			if err != nil {
				if commitFailing.IsZero() {
					commitFailing = now
				}
				if now.Sub(commitFailing) > 2*time.Minute {
					return err
				}
				s.setProblem("commit", err.Error())
				failures.failed(now, "commit", err)
				if s.m != nil {
					s.m.AddCommitFailure()
				}
				continue
			} else if g.Commits() > landed {
				// One landed, here or in a commit the engine made.
				landed = g.Commits()
				failures.recovered("commit")
				s.setProblem("commit", "")
				commitFailing = time.Time{}
			}
			syncWoken()
			for _, p := range ids {
				if at, ok := woken[p]; ok && now.Sub(at) >= wokenFor {
					delete(woken, p)
					idle[p] = true
					if err := s.retryable(g.SetIdle(ctx, p, true), &commitFailing); err != nil {
						return err
					}
					dirty, unflushed = true, true
				}
				if !idle[p] && caughtUp[p] && now.Sub(lastData[p]) >= s.cfg.IdleTimeout {
					idle[p] = true
					if err := s.retryable(g.SetIdle(ctx, p, true), &commitFailing); err != nil {
						return err
					}
					dirty, unflushed = true, true
				}
			}
			s.count(g, ids, in.pace)
			s.quiet.Store(!dirty && behind == 0 && !unflushed && !g.Committing() && g.Quiet())
			if now.Sub(lastDiskCheck) >= s.diskEvery {
				lastDiskCheck = now
				if err := s.checkDisk(); err != nil {
					s.setProblem("disk", err.Error())
				} else {
					s.setProblem("disk", "")
				}
			}
			if s.m != nil {
				s.m.SetInputHeld(gate.held())
				st := s.db.Stats()
				s.m.SetStateBytes(st.DiskBytes, st.MemTableBytes)
				s.m.SetStateWrites(st.WALBytes, st.FlushedBytes, st.CompactedBytes)
				s.m.SetStateCache(st.CacheHits, st.CacheMisses)
			}
		}
	}
}

// checkDisk reports a state file system with less than MinFreeDisk free.
func (s *Service) checkDisk() error {
	if s.cfg.MinFreeDisk <= 0 || s.db == nil {
		return nil
	}
	free, err := s.freeBytes(s.db.Dir())
	if err != nil {
		return nil // cannot tell: commits will say
	}
	if int64(free) < s.cfg.MinFreeDisk {
		return &store.DiskError{Dir: s.db.Dir(), Cause: "almost no space left",
			Err: fmt.Errorf("%d MiB free, below --min-free-disk-mb %d", free>>20, s.cfg.MinFreeDisk>>20)}
	}
	return nil
}

// failureLog logs failed flushes and commits with their count and the
// latest reason, at most once per interval while they go on, and once when
// they stop: a long outage is neither silent nor a flood.
type failureLog struct {
	log    zerolog.Logger
	every  time.Duration
	counts map[string]int
	last   map[string]time.Time
}

func (f *failureLog) failed(now time.Time, what string, err error) {
	if f.counts == nil {
		f.counts, f.last = map[string]int{}, map[string]time.Time{}
	}
	f.counts[what]++
	if now.Sub(f.last[what]) >= f.every {
		f.last[what] = now
		f.log.Warn().Err(err).Int("failures", f.counts[what]).Msgf("%s failed; retrying", what)
	}
}

func (f *failureLog) recovered(what string) {
	if n := f.counts[what]; n > 0 {
		f.log.Info().Int("failures", n).Msgf("%s succeeds again", what)
		delete(f.counts, what)
		delete(f.last, what)
	}
}

// retryable passes on an error that must stop the service; a commit that
// failed (a broker away) is retried by the commit ticker, which gives up
// after a while, so it only marks the service not ready.
func (s *Service) retryable(err error, failingSince *time.Time) error {
	var ce *processor.CommitError
	if err == nil || !errors.As(err, &ce) {
		return err
	}
	s.setProblem("commit", err.Error())
	if failingSince.IsZero() {
		*failingSince = s.now()
	}
	return nil
}

// drain applies what the ending generation's fetchers already read, then
// commits.
func (s *Service) drain(ctx context.Context, g *processor.Coordinator, batches <-chan *fetched, apply func(*fetched) error) error {
	for {
		select {
		case b := <-batches:
			if ctx.Err() == nil {
				if err := apply(b); err != nil {
					return err
				}
			}
		default:
			cctx := context.WithoutCancel(ctx)
			err := s.commit(cctx, g)
			if errors.As(err, new(*processor.CommitError)) {
				// The commit in flight flew on the generation's context,
				// which a stop cancels: it failed, and flies again now.
				err = s.commit(cctx, g)
			}
			if err != nil {
				s.log.Warn().Err(err).Msg("commit at the end of a generation")
			}
			return nil
		}
	}
}

// commit makes everything so far durable, and waits for it.
func (s *Service) commit(ctx context.Context, g *processor.Coordinator) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return g.Commit(ctx)
}

// count moves the coordinator's and the engines' counters to the
// service's counters and to metrics, and tells the pacer what the engine
// holds. It runs after every batch the loop applies, whichever topic it
// came from (a like taken from the input is applied when it comes back
// from the internal topics), and at ticks. ids are the generation's
// partitions.
func (s *Service) count(g *processor.Coordinator, ids []int32, pace *pacer) {
	prev := s.counted
	// The coordinator's own counters only grow; an engine's drop out of
	// the sums when its partition is given away, so they are counted by
	// engine.
	st := g.Stats()
	p := prev[-1]
	inc := func(now, was int64) int64 { return max(now-was, 0) }
	// Only the stages' held likes: the reorder buffers hold events for
	// the lateness behind the sources' progress, which only more input
	// moves, however many they are.
	pace.holding(st.HeldForWeight, g.WaitsOnInput())
	s.EventsIn.Add(inc(st.Records, p.Records))
	s.DeadLetters.Add(inc(st.DeadLetters, p.DeadLetters))
	if s.m != nil {
		s.m.SetEventsHeld(st.HeldForWeight, st.Buffered)
		s.m.AddEmitted(metrics.KindDeadLetter, inc(st.DeadLetters, p.DeadLetters))
		for r, n := range st.DeadByReason {
			if d := n - p.DeadByReason[r]; d > 0 {
				s.m.AddDead(r, d)
			}
		}
	}
	// The engine counts a repeated like or a stray unlike as applied (it
	// changes nothing); the metrics count it as ignored.
	changed := func(st processor.Stats) int64 { return st.Applied - st.IgnoredLikes - st.StrayUnlikes }
	for _, id := range ids {
		e, ok := g.Engine(id)
		if !ok {
			continue
		}
		es, was := e.Stats(), prev[id]
		applied := inc(changed(es), changed(was))
		repeated, stray, replayed := inc(es.IgnoredLikes, was.IgnoredLikes), inc(es.StrayUnlikes, was.StrayUnlikes), inc(es.Repeated, was.Repeated)
		s.Applied.Add(applied)
		s.Ignored.Add(repeated + stray + replayed)
		if s.m != nil {
			s.m.AddApplied(id, applied)
			s.m.AddIgnored(metrics.IgnoredRepeatedLike, repeated)
			s.m.AddIgnored(metrics.IgnoredStrayUnlike, stray)
			s.m.AddIgnored(metrics.IgnoredReplayed, replayed)
			s.m.AddEmitted(metrics.KindScore, inc(es.Scores, was.Scores))
		}
		prev[id] = processor.Stats{Applied: es.Applied, Scores: es.Scores,
			IgnoredLikes: es.IgnoredLikes, StrayUnlikes: es.StrayUnlikes, Repeated: es.Repeated}
	}
	reasons := make(map[string]int64, len(st.DeadByReason))
	for r, n := range st.DeadByReason {
		reasons[r] = n
	}
	prev[-1] = processor.Stats{Records: st.Records, DeadLetters: st.DeadLetters, DeadByReason: reasons}
}

// account records what an input batch says of its partition: records
// in, the engine's watermark, the lag.
func (s *Service) account(g *processor.Coordinator, b *fetched) {
	if s.m != nil {
		s.m.AddIn(b.part, int64(len(b.Recs)))
		if e, ok := g.Engine(b.part); ok {
			wm := e.Watermark()
			s.m.SetWatermark(b.part, wm)
			if wm > 0 {
				s.m.SetEventTimeLag(b.part, s.now().Sub(time.UnixMilli(wm)))
			}
		}
	}
	s.Lag.Store(max(b.hw-g.NextOffset(b.part), 0))
}

// internalLag keeps, for each internal topic partition the loop takes,
// how many records it has yet to fetch (what retention could drop;
// fetched records are safe in memory), and publishes the largest. That
// is the high watermark its last fetch saw, plus what this instance has
// written to it since that fetch began (processor.Coordinator.Forwarded),
// less the fetch's next offset. A high watermark alone is old news: the
// fetched batch may wait behind others' while the loop writes thousands of
// records to the partition, and that once let the demo's input run on
// until retention dropped records of the by-user topic nobody had read.
type internalLag struct {
	to        *atomic.Int64
	partials  *atomic.Int64 // the partials topic's alone
	pace      *pacer        // told too: the input waits while the most is high
	forwarded func(byUser bool, part int32) int64
	lags      map[[2]int32]fetchedEnd // (batchKind, partition)
}

// fetchedEnd is what the last fetch of an internal topic partition saw.
type fetchedEnd struct {
	hw, next int64
	written  int64 // Forwarded as the fetch began
}

// fetched takes what a fetch of an internal topic partition saw.
func (l *internalLag) fetched(b *fetched) {
	if l.lags == nil {
		l.lags = map[[2]int32]fetchedEnd{}
	}
	l.lags[[2]int32{int32(b.kind()), b.part}] = fetchedEnd{hw: b.hw, next: b.next, written: b.written}
}

// update publishes the most records an internal topic partition has yet
// to fetch.
func (l *internalLag) update() {
	var most, partials int64
	for k, e := range l.lags {
		end := e.hw
		if (k[0] == kindByUser || k[0] == kindRepart) && l.forwarded != nil {
			end += l.forwarded(k[0] == kindByUser, k[1]) - e.written
		}
		most = max(most, end-e.next)
		if k[0] == kindPartials {
			partials = max(partials, end-e.next)
		}
	}
	if l.to.Load() != most {
		l.to.Store(most)
	}
	if l.partials.Load() != partials {
		l.partials.Store(partials)
	}
	l.pace.behind(most)
}

// reset forgets the partitions of a generation that ended.
func (l *internalLag) reset() {
	l.lags = nil
	l.to.Store(0)
	l.partials.Store(0)
	l.pace.behind(0)
}

// setAssigned records whether the service holds its partitions.
func (s *Service) setAssigned(ok bool) {
	s.readyMu.Lock()
	s.assigned = ok
	s.readyMu.Unlock()
	s.publishReady()
}

// setProblem records (why != "") or clears a reason not to be ready, by
// the part that found it.
func (s *Service) setProblem(part, why string) {
	s.readyMu.Lock()
	if why == "" {
		delete(s.problems, part)
	} else {
		s.problems[part] = why
	}
	s.readyMu.Unlock()
	s.publishReady()
}

func (s *Service) publishReady() {
	if s.m != nil {
		ok, _ := s.Ready()
		s.m.SetReady(ok)
	}
}

// Quiet reports whether every partition this instance holds has gone idle
// (its sources caught up and quiet for the idle timeout), emitted its
// held-back records, and committed: what a test or a drained pipeline
// waits for.
func (s *Service) Quiet() bool { return s.quiet.Load() }

// Ready reports whether the service holds its partitions, reaches the
// broker and reads its partitions; if not, why.
func (s *Service) Ready() (bool, string) {
	s.readyMu.Lock()
	defer s.readyMu.Unlock()
	if !s.assigned {
		return false, "waiting for partitions from the consumer group"
	}
	for _, part := range []string{"disk", "restore", "broker", "commit", "fetch", problemRetention} {
		if why := s.problems[part]; why != "" {
			return false, why
		}
	}
	return true, ""
}

// watchBroker checks every second that the broker answers.
func (s *Service) watchBroker(ctx context.Context) {
	for ctx.Err() == nil {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := kafkaio.Ping(pctx, s.cfg.Kafka)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			s.setProblem("broker", err.Error())
		} else {
			s.setProblem("broker", "")
		}
		sleep(ctx, time.Second)
	}
}

// Score returns the current score record of a video of this instance's
// partitions: the last one it emitted if it is still remembered, else
// computed from the committed state. A video of another instance's
// partitions has none here, even if this instance held it once: its
// record here would be out of date.
func (s *Service) Score(_ context.Context, id string) ([]byte, bool, error) {
	owned := s.owned.Load()
	n := s.inputPartitions.Load()
	if owned == nil || n == 0 || !slices.Contains(*owned, Partitioner(id, int(n))) {
		return nil, false, nil
	}
	if rec, ok := s.recent.get(id); ok {
		return rec, true, nil
	}
	return processor.ReadScore(s.db, s.cfg.Engine, *owned, id)
}

// Holds reports whether this instance holds every input partition, and so
// answers for every video itself, and whether it holds partition 0, and so
// merges the trending lists and the creators. Both are false until its
// first partitions are assigned.
func (s *Service) Holds() (all, first bool) {
	owned := s.owned.Load()
	n := int(s.inputPartitions.Load())
	if owned == nil || n == 0 {
		return false, false
	}
	return len(*owned) == n, slices.Contains(*owned, 0)
}

// Trending returns the current snapshot of a region.
func (s *Service) Trending(region string) (processor.Snapshot, bool) {
	g := s.group.Load()
	if g == nil {
		return processor.Snapshot{}, false
	}
	return g.Latest(region)
}

// Regions lists the regions of the current snapshot, global first.
func (s *Service) Regions() []string {
	g := s.group.Load()
	if g == nil {
		return nil
	}
	return g.Regions()
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// capture is the scores sink, remembering the latest record of each video
// for the HTTP interface.
type capture struct {
	processor.Sink
	recent *recentScores
	clog   *changelog
	n      *atomic.Int64
}

func (c *capture) Unwrap() processor.Sink { return c.Sink }

func (c *capture) Write(m *processor.Message) error {
	c.recent.put(m.Key, m.Value)
	c.n.Add(1)
	return c.Sink.Write(m)
}

// counted is a sink that counts what it is given.
type counted struct {
	processor.Sink
	count func()
}

func (c *counted) Unwrap() processor.Sink { return c.Sink }

func (c *counted) Write(m *processor.Message) error {
	c.count()
	return c.Sink.Write(m)
}

// recentScores keeps the latest record of up to max videos, in slots
// of recentSlot bytes (the video's ID, then the record) in one array the
// collector does not scan. The slots go in sets of two, chosen by a hash
// of the ID: a new video takes the empty or the less recently written
// slot of its set. A Go map of record buffers here took 4.8% of the live
// service's CPU at 20,000 likes/s (bench/RESULTS.md).
type recentScores struct {
	mu   sync.RWMutex
	seed maphash.Seed
	meta []recentMeta
	data []byte
	now  uint32 // puts so far, the age of a slot
}

// recentSlot is the bytes a slot holds: a video's ID and its record
// (score records take about 370). A longer pair is not kept.
const recentSlot = 512

// recentMeta describes a slot; hash 0 is an empty one.
type recentMeta struct {
	hash    uint64
	written uint32
	id, rec uint16
}

func newRecentScores(max int) *recentScores {
	return &recentScores{seed: maphash.MakeSeed(), meta: make([]recentMeta, max), data: make([]byte, max*recentSlot)}
}

// set returns the hash of id and the slots of its set.
func (r *recentScores) set(id []byte) (h uint64, lo, hi int) {
	h = maphash.Bytes(r.seed, id) | 1
	sets := (uint64(len(r.meta)) + 1) / 2
	hi64, _ := bits.Mul64(h, sets)
	lo = 2 * int(hi64)
	return h, lo, min(lo+2, len(r.meta))
}

// find returns the slot holding id's record, or -1.
func (r *recentScores) find(h uint64, lo, hi int, id []byte) int {
	for i := lo; i < hi; i++ {
		if r.meta[i].hash == h && bytes.Equal(r.id(i), id) {
			return i
		}
	}
	return -1
}

// id returns the ID in slot i.
func (r *recentScores) id(i int) []byte {
	return r.data[i*recentSlot : i*recentSlot+int(r.meta[i].id)]
}

func (r *recentScores) put(id, rec []byte) {
	if len(r.meta) == 0 {
		return
	}
	h, lo, hi := r.set(id)
	r.mu.Lock()
	defer r.mu.Unlock()
	i := r.find(h, lo, hi, id)
	if len(id)+len(rec) > recentSlot {
		if i >= 0 {
			r.meta[i] = recentMeta{} // its older record would be out of date
		}
		return
	}
	if i < 0 {
		// The first slot if it is empty, else the second if it is empty
		// or written less recently.
		i = lo
		if j := lo + 1; j < hi && r.meta[lo].hash != 0 && (r.meta[j].hash == 0 || r.meta[j].written < r.meta[lo].written) {
			i = j
		}
	}
	r.now++
	b := r.data[i*recentSlot : (i+1)*recentSlot]
	copy(b[copy(b, id):], rec)
	r.meta[i] = recentMeta{hash: h, written: r.now, id: uint16(len(id)), rec: uint16(len(rec))}
}

// forget drops the records of the videos drop says.
func (r *recentScores) forget(drop func(id string) bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, m := range r.meta {
		if m.hash != 0 && drop(string(r.id(i))) {
			r.meta[i] = recentMeta{}
		}
	}
}

func (r *recentScores) get(id string) ([]byte, bool) {
	if len(r.meta) == 0 {
		return nil, false
	}
	b := []byte(id)
	h, lo, hi := r.set(b)
	r.mu.RLock()
	defer r.mu.RUnlock()
	i := r.find(h, lo, hi, b)
	if i < 0 {
		return nil, false
	}
	m := r.meta[i]
	off := i*recentSlot + int(m.id)
	return bytes.Clone(r.data[off : off+int(m.rec)]), true
}
