package processor

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/store"
)

// Outputs are the outputs of a coordinator.
type Outputs struct {
	Scores      Sink
	Trending    Sink
	DeadLetters Sink
	// Changelog, if set, receives every partition's changes of state at
	// each commit, acknowledged before the local commit.
	Changelog Changelog
	// Partials, if set, takes each partition's trending lists, for the
	// one coordinator that merges them (the holder of partition 0) to read
	// back with TakePartials; without it lists are merged in process.
	Partials Sink
	// ByUser and Repartition, if set, are the live service's internal
	// topics: ByUser takes every event a source routes to the account
	// stage of its user's partition (read back with
	// [Coordinator.TakeByUser]), Repartition the events a stage sends on
	// to another partition than its own, by video (read back with
	// [Coordinator.TakeRepartitioned]). Set both or neither: without them
	// every partition is fed in process.
	ByUser      Sink
	Repartition Sink
	// Creators and RisingCreators, if set, take the creator score records
	// and the rising-creators lists (creators.go) from the merger.
	Creators       Sink
	RisingCreators Sink
}

// Names under which output positions are committed.
const (
	sinkScores      = "scores"
	sinkTrending    = "trending"
	sinkDeadLetters = "dead-letters"
	sinkRepartition = "repartition"
	sinkByUser      = "by-user"
	sinkPartials    = "partials"
	sinkCreators    = "creators"
	sinkRising      = "rising-creators"
)

// ReasonTooLarge is the dead-letter reason of a record too large for the
// topic it would have to be written to whole.
const ReasonTooLarge = "too_large"

// forwardHeaderRoom is as large as any HeaderForward.
var forwardHeaderRoom = []Header{{Key: HeaderForward, Value: make([]byte, 64)}}

// fitter is a sink that can tell whether a message fits it whole.
type fitter interface{ Fits(m *Message) bool }

// groupPartition holds the coordinator's own meta record, beside the
// partitions'.
const groupPartition = -1

// stepRecords is how many records of a source make one step of a bounded
// input: steps end at fixed offsets, so that outputs are drained in the
// same order whatever the reads, the workers and the restarts.
const stepRecords = 4096

// Topology says how the input is spread over partitions of state.
type Topology struct {
	// Partitions is the number of partitions of state; a video belongs to
	// Partitioner(video, Partitions).
	Partitions  int
	Partitioner Partitioner
	// Sources are the source partitions that feed every partition of
	// state: the topic's partitions for Kafka, each committed with the
	// partition of state of the same number. Empty with Stream.
	Sources []int32
	// Stream: the input is one stream of records (files), split into
	// Partitions sources by video, as a producer keyed by video splits a
	// topic, so that a backfill judges lateness as a live run over such a
	// topic does. Steps end at fixed offsets of the stream, so outputs
	// are the same whatever the reads, the workers and the restarts.
	Stream bool
	// Workers is the number of goroutines that apply partitions in
	// parallel (at least 1).
	Workers int
	// Lineage names where the input comes from (the live service: its
	// group and input topic): state of another lineage is never resumed.
	Lineage string
	// Expect is the number of partitions this process will likely hold,
	// over which the memory bounds of Config are shared.
	Expect int
	// WrittenListsOnly: the partitions rank and the merger merges only the
	// trending lists of the ticks written to the outputs (every
	// Config.TrendingEvery-th); the ticks between them only advance the
	// ranking, and Latest follows the written ticks. For batch runs, where
	// nothing reads Latest while they run; the outputs are the same.
	WrittenListsOnly bool
}

// Coordinator owns what the partitions of one process share: the sinks,
// the commits and the trending merge. It routes each source record to the
// partition that owns its video (through the repartition output when that
// partition is fed by topic), lets the partitions apply their events in
// parallel, then drains their outboxes in partition order.
//
// Invariants. A commit first flushes every output record produced so far
// (scores, trending, dead letters and repartitioned events: none is lost),
// then writes every partition's changed state with its sources' offsets,
// the routers' offsets and watermarks, the merger's pending lists and the
// output positions, all in one Pebble batch: state, offsets and outputs
// always describe the same point of the input.
type Coordinator struct {
	cfg   Config
	topo  Topology
	db    *store.DB
	out   Outputs
	meta  store.Meta
	gpart *store.Partition

	merger  *merger
	engines map[int32]*Engine
	ids     []int32 // sorted
	// repairs are, per partition, the keys a commit cut short changed in
	// the changelog after its last complete commit (Restore), to be
	// logged again, as committed, at its next commit (logRepairs).
	repairs map[int32][][]byte
	routers map[int32]*router
	parts   []int32 // every partition, held here or not
	// marked is, per (source, stage) and, in sent, per (stage, partition)
	// fed by topic, the largest event time last told, so that progress
	// markers go out only when it moved.
	marked      map[[2]int32]int64
	sent        map[[2]int32]told
	markerEvery int64
	// idle are the sources held here that the caller marked idle
	// (SetIdle); woken, those the account stages made active again when
	// another source woke, for the caller (Woken).
	idle  map[int32]bool
	woken []int32

	sinceCommit  int
	commits      int64
	listsWritten int64 // trending lists written to the output
	changelog    Changelog
	latest       *atomic.Pointer[latest] // the merger's last snapshot, for readers
	creators     atomic.Pointer[creatorMerger]
	// unacked is a commit whose changelog records (unackedLog) were not
	// all acknowledged: it is committed, as it is, once they are, before
	// any later one.
	unacked    *store.Writer
	unackedLog *changeLog
	logChunk   int   // logChunkBytes, but in tests
	stats      Stats // records routed and dead letters; engines count the rest
	hdr        [5]Header
	rbuf       []byte
	// fwd, key and vbuf are the message a forward writes, its key and its
	// value (an event in event.AppendBinary's encoding, or a report): a
	// sink copies what it keeps.
	fwd  Message
	key  []byte
	vbuf []byte
	// forwarded counts the records written to each partition of the
	// by-user and of the repartition topic (forwardKind; Forwarded).
	forwarded [2][]atomic.Int64

	// async: every output is a Detacher, and commits and flushes fly on
	// their own goroutine (flight.go); flight is the one in the air, failed
	// one that failed, to fly again before anything newer.
	async bool
	// flyState: the outputs are flushed in line, but a commit's batch of
	// state lands on its own goroutine (a flight without sends) while the
	// partitions go on applying; the next commit waits for it (FlyState).
	flyState       bool
	pipeCreators   bool            // PipeCreators: the merger opened runs a pipe
	detachers      []namedDetacher // the outputs', in sinkOrder, then the changelog's
	flight, failed *flight
	beside         *flight         // a flush beside a commit in flight (flushAsync)
	committed      map[int32]int64 // sources' offsets of the last commit made durable, by partition
	slice          int             // the next slice of the partitions StartCommit commits

	// CommitSlices, if more than 1 and the partitions are fed by topic
	// (ByUser and Repartition), makes each StartCommit commit one slice
	// of the partitions held, in turn (partitions i, i+n, ... of n
	// slices), not all of them: the partitions stop applying while a
	// commit writes its batch, for a time that grows with the changes in
	// it (30 ms a second at 20,000 likes/s), and smaller stops more often
	// hold a like up less. It is sound only there: a partition's state
	// and its offsets describe one point of its own inputs, and all that
	// passes between partitions goes through topics. Commit, Close and
	// commits due for the caches' sake take every partition.
	CommitSlices int

	// AfterCommit, if set, is called after each commit is durable, e.g. to
	// commit the input offsets (CommittedOffset) to a Kafka consumer group
	// as well.
	AfterCommit func(ctx context.Context) error
	// CommitTook, if set, is told how long each commit took, from its
	// start to its batch being durable.
	CommitTook func(time.Duration)
}

// NewCoordinator opens a coordinator on the state in db. It resumes from
// the last commit, cutting positioned outputs back to what that commit
// reflects, or starts fresh, cutting them to nothing.
func NewCoordinator(cfg Config, db *store.DB, out Outputs, topo Topology) (*Coordinator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	switch {
	case topo.Partitions < 1:
		return nil, fmt.Errorf("processor: %d partitions: need at least 1", topo.Partitions)
	case topo.Partitioner == nil:
		return nil, errors.New("processor: no partitioner")
	case topo.Stream && len(topo.Sources) > 0:
		return nil, errors.New("processor: a stream has no sources of its own")
	case !topo.Stream && len(topo.Sources) != topo.Partitions:
		return nil, fmt.Errorf("processor: %d sources for %d partitions: give one per partition", len(topo.Sources), topo.Partitions)
	case (out.ByUser == nil) != (out.Repartition == nil):
		return nil, errors.New("processor: the by-user and repartition outputs go together: set both or neither")
	case cfg.NoCreators && (out.Creators != nil || out.RisingCreators != nil || out.Partials != nil):
		return nil, errors.New("processor: creator outputs (or partials) given with Config.NoCreators: creator momentum would never be computed for them")
	}
	if topo.Stream {
		for p := range topo.Partitions {
			topo.Sources = append(topo.Sources, int32(p))
		}
	}
	topo.Workers = max(topo.Workers, 1)
	var parts []int32
	for p := range topo.Partitions {
		parts = append(parts, int32(p))
	}
	topo.Expect = max(topo.Expect, 1)
	c := &Coordinator{
		cfg:         cfg,
		topo:        topo,
		parts:       parts,
		db:          db,
		out:         out,
		gpart:       db.Partition(groupPartition),
		engines:     map[int32]*Engine{},
		repairs:     map[int32][][]byte{},
		logChunk:    logChunkBytes,
		routers:     map[int32]*router{},
		marked:      map[[2]int32]int64{},
		sent:        map[[2]int32]told{},
		markerEvery: max(min(cfg.Reorder.Milliseconds()/2, 1000), 10),
		stats:       Stats{DeadByReason: map[string]int64{}},
		forwarded:   [2][]atomic.Int64{make([]atomic.Int64, topo.Partitions), make([]atomic.Int64, topo.Partitions)},
		changelog:   out.Changelog,
		latest:      &atomic.Pointer[latest]{},
	}
	meta, ok, err := c.gpart.Meta()
	if err != nil {
		return nil, err
	}
	if ok && meta.Fingerprint != c.fingerprint() {
		return nil, fmt.Errorf("processor: the state was built with other settings than these (%s): use the same settings or a fresh state directory", settingsDiff(meta.Fingerprint, c.fingerprint()))
	}
	c.meta = meta
	c.meta.Fingerprint = c.fingerprint()
	c.findDetachers()
	if out.Partials == nil {
		c.merger, err = newMerger(cfg.TopK, meta.Merger, c.writeSnapshot)
		if err != nil {
			return nil, fmt.Errorf("load trending merger: %w", err)
		}
		c.merger.written = c.cfg.writtenTick
		if err := c.gpart.ScanReports(c.merger.load); err != nil {
			return nil, fmt.Errorf("load trending reports: %w", err)
		}
		if err := c.openCreators(c.merger, c.db.Partition(groupPartition)); err != nil {
			return nil, err
		}
		c.merger.latest = c.latest
	}
	positions := map[string]int64{}
	for _, s := range meta.Sinks {
		positions[s.Name] = s.Pos
	}
	for name, s := range c.sinks() {
		if p, isPos := s.(Positioned); isPos {
			if err := p.Restore(positions[name]); err != nil {
				return nil, fmt.Errorf("restore %s output: %w", name, err)
			}
		}
	}
	return c, nil
}

// fingerprint adds the topology to the settings a state must match.
func (c *Coordinator) fingerprint() string {
	return c.cfg.fingerprint() + " partitions=" + strconv.Itoa(c.topo.Partitions) + " stream=" + strconv.FormatBool(c.topo.Stream) + " lineage=" + c.topo.Lineage
}

func (c *Coordinator) newRouter(src int32, st *store.RouteState) *router {
	return &router{id: src, st: st, parts: c.topo.Partitions, part: c.topo.Partitioner,
		lateness: c.cfg.Lateness.Milliseconds(), skew: c.cfg.FutureSkew.Milliseconds(), now: c.cfg.Now}
}

func (c *Coordinator) sinks() map[string]Sink {
	m := map[string]Sink{sinkScores: c.out.Scores, sinkTrending: c.out.Trending, sinkDeadLetters: c.out.DeadLetters}
	if c.out.Repartition != nil {
		m[sinkRepartition] = c.out.Repartition
		m[sinkByUser] = c.out.ByUser
	}
	if c.out.Partials != nil {
		m[sinkPartials] = c.out.Partials
	}
	if c.out.Creators != nil {
		m[sinkCreators] = c.out.Creators
	}
	if c.out.RisingCreators != nil {
		m[sinkRising] = c.out.RisingCreators
	}
	return m
}

// Open adds a partition of state, on its committed state. With one source
// per partition, the partition's source router comes with it.
func (c *Coordinator) Open(id int32) (*Engine, error) {
	if e, ok := c.engines[id]; ok {
		return e, nil
	}
	// The partition's state is read from the store: a commit in flight
	// must have landed. One that fails is kept, to be retried.
	_ = c.Land(context.Background())
	if id < 0 || int(id) >= c.topo.Partitions {
		return nil, fmt.Errorf("processor: partition %d out of range [0, %d)", id, c.topo.Partitions)
	}
	e, err := newEngine(c.cfg, c.fingerprint(), id, c.db.Partition(id), c.parts, c.topo.Sources, max(c.cfg.PairFilterBits/c.topo.Expect, 1<<16))
	if err != nil {
		return nil, err
	}
	e.packed = newPackedVideos(c.cfg.PackedVideoBytes / int64(max(c.topo.Expect, 1)))
	e.writtenOnly = c.topo.WrittenListsOnly && c.out.Partials == nil
	e.partials = c.out.Partials != nil
	e.rank.reuse = e.partials
	c.engines[id] = e
	c.ids = append(c.ids, id)
	slices.Sort(c.ids)
	c.routers[id] = c.newRouter(id, &e.meta.Route)
	if c.out.Partials == nil {
		c.merger.join(id, e.meta.NextTick)
	} else if id == mergePartition {
		if err := c.openMerger(e); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// Close commits and drops a partition, e.g. when the consumer group takes
// it away; its state stays in the store. The partition is dropped even if
// the commit fails: its state and offsets then stay at the last commit,
// together, and whoever takes it next resumes from there.
func (c *Coordinator) Close(ctx context.Context, id int32) error {
	if _, ok := c.engines[id]; !ok {
		return nil
	}
	err := c.Commit(ctx)
	delete(c.engines, id)
	delete(c.routers, id)
	delete(c.committed, id)
	c.ids = slices.DeleteFunc(c.ids, func(x int32) bool { return x == id })
	if c.out.Partials != nil {
		if id == mergePartition && c.merger != nil {
			// The commit waited for the creators' job, unless it failed
			// before; what is queued is read again from the partials
			// topic by whoever takes partition 0.
			err = errors.Join(err, c.merger.waitCreators())
			c.merger = nil
		}
		return err
	}
	return errors.Join(err, c.merger.leave(id))
}

// PipeCreators runs the creator merger on a goroutine of its own (on),
// or back on the caller's after its last job (off), for a caller that
// calls nothing else of the coordinator concurrently; where the merger is
// fed by the partials topic, the merger that this coordinator opens when
// it takes partition 0 does too. It does nothing on one worker, or where a
// creator output is also another output.
func (c *Coordinator) PipeCreators(on bool) error {
	if c.topo.Workers < 2 {
		return nil
	}
	for _, s := range []Sink{c.out.Creators, c.out.RisingCreators} {
		if s == nil {
			continue
		}
		for name, o := range c.sinks() {
			if name != sinkCreators && name != sinkRising && sameSink(s, o) {
				return nil
			}
		}
	}
	c.pipeCreators = on
	if c.merger == nil {
		return nil
	}
	return c.merger.pipeCreators(on)
}

// Engine returns the engine of a partition held here.
func (c *Coordinator) Engine(id int32) (*Engine, bool) {
	e, ok := c.engines[id]
	return e, ok
}

// Partitions lists the partitions held here, sorted.
func (c *Coordinator) Partitions() []int32 { return slices.Clone(c.ids) }

// NextOffset is the next offset of source src to read: where its router
// stands (0 when src is not routed here); of a stream, src is ignored.
func (c *Coordinator) NextOffset(src int32) int64 {
	if c.topo.Stream {
		return c.meta.Offset
	}
	if r, ok := c.routers[src]; ok {
		return r.st.Offset
	}
	return 0
}

// RepartitionedOffset is the next offset of partition id's share of the
// repartition topic to read.
func (c *Coordinator) RepartitionedOffset(id int32) int64 {
	if e, ok := c.engines[id]; ok {
		return e.meta.Repartitioned
	}
	return 0
}

// ByUserOffset is the next offset of partition id's share of the by-user
// topic to read.
func (c *Coordinator) ByUserOffset(id int32) int64 {
	if e, ok := c.engines[id]; ok {
		return e.meta.Stage.ByUser
	}
	return 0
}

// TakeInput routes a decoded batch of source partition src (of a
// stream: src is ignored): dead letters go out at once, events to the
// partitions that own their videos. Records before the resume offset
// (taken before a restart) are skipped. A stream steps at fixed offsets;
// other inputs step after each batch.
func (c *Coordinator) TakeInput(ctx context.Context, src int32, b *Batch) error {
	if c.topo.Stream {
		return c.takeStream(ctx, b)
	}
	// Its first records since it went idle: its markers say it woke.
	wake := c.idle[src] && len(b.Recs) > 0
	if wake {
		delete(c.idle, src)
	}
	if err := c.Route(ctx, src, b); err != nil {
		return err
	}
	if err := c.tell(src, false, wake); err != nil {
		return err
	}
	return c.step(ctx)
}

// takeStream routes records of a stream, each from the source its video
// would be produced to (records that cannot be decoded: source 0).
func (c *Coordinator) takeStream(ctx context.Context, b *Batch) error {
	for i := range b.Recs {
		rec := &b.Recs[i]
		if rec.Offset < c.meta.Offset {
			continue
		}
		src := int32(0)
		if b.Errs[i] == nil {
			src = c.topo.Partitioner(b.Events[i].VideoID, c.topo.Partitions)
		}
		if err := c.route(c.routers[src], rec, &b.Events[i], b.Errs[i]); err != nil {
			return err
		}
		c.meta.Offset = rec.Offset + 1
		if c.meta.Offset%stepRecords == 0 {
			if err := c.Step(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// Route routes a decoded batch of source src without ending a step: a
// driver that merges several sources in a fixed order (replay) calls Step
// itself.
func (c *Coordinator) Route(ctx context.Context, src int32, b *Batch) error {
	r, ok := c.routers[src]
	if !ok {
		return fmt.Errorf("processor: records of source %d, which is not routed here", src)
	}
	for i := range b.Recs {
		rec := &b.Recs[i]
		if rec.Offset < r.st.Offset {
			continue
		}
		if err := c.route(r, rec, &b.Events[i], b.Errs[i]); err != nil {
			return err
		}
	}
	return nil
}

// Step tells the partitions every source's progress and lets them apply.
func (c *Coordinator) Step(ctx context.Context) error {
	srcs := make([]int32, 0, len(c.routers))
	for src := range c.routers {
		srcs = append(srcs, src)
	}
	slices.Sort(srcs)
	for _, src := range srcs {
		if err := c.tell(src, false, false); err != nil {
			return err
		}
	}
	return c.step(ctx)
}

func (c *Coordinator) route(r *router, rec *Record, ev *event.Event, decodeErr error) error {
	v := r.route(rec, ev, decodeErr)
	r.st.Offset = rec.Offset + 1
	c.stats.Records++
	c.sinceCommit++
	if v.reason != "" {
		return c.deadLetter(rec, v)
	}
	a := v.part
	if c.out.ByUser != nil {
		// Every event, even one for this partition's own stage: a stage
		// takes one log in one order (stage.go). The event as decoded, not
		// the record's JSON: the stage reads it back without parsing.
		c.vbuf = event.AppendBinary(c.vbuf[:0], ev)
		c.key = append(c.key[:0], ev.UserID...)
		c.fwd = Message{Key: c.key, Value: c.vbuf, Headers: forwardHeaderRoom}
		if f, ok := c.out.ByUser.(fitter); ok && !f.Fits(&c.fwd) {
			// It cannot be forwarded whole, and a cut one would not decode.
			return c.deadLetter(rec, verdict{ts: ev.TS, reason: ReasonTooLarge,
				detail: fmt.Sprintf("%d bytes do not fit the by-user topic", len(c.vbuf))})
		}
		c.marked[[2]int32{r.id, a}] = r.st.MaxTS
		// Forwarded, the event is read only while it is written: not
		// allocated (routing took 6% of the bytes a catch-up allocated).
		rt := routed{ev: *ev, src: r.id, off: rec.Offset, srcMax: r.st.MaxTS}
		return c.forward(c.out.ByUser, a, c.vbuf, rec.Time, &rt, false)
	}
	e, ok := c.engines[a]
	if !ok {
		return fmt.Errorf("processor: an event for the account stage of partition %d, which is not held here", a)
	}
	rt := e.spares.get()
	rt.ev, rt.src, rt.off, rt.srcMax = *ev, r.id, rec.Offset, r.st.MaxTS
	e.stage.inbox = append(e.stage.inbox, rt)
	return nil
}

// tell passes a source's progress to the account stages it feeds: in
// process as markers in their inboxes, in order with its events; by topic
// as markers when its watermark moved. wake: the source was idle and has
// records again, which the markers say (stage.wake).
func (c *Coordinator) tell(src int32, idle, wake bool) error {
	r := c.routers[src]
	if c.out.ByUser == nil {
		for _, id := range c.ids {
			st := c.engines[id].stage
			m := st.spares.marker(src, 0, r.st.MaxTS, idle)
			m.wake = wake
			st.inbox = append(st.inbox, m)
		}
		return nil
	}
	for _, q := range c.parts {
		k := [2]int32{src, q}
		last, seen := c.marked[k]
		if idle || !seen || r.st.MaxTS >= last+c.markerEvery {
			c.marked[k] = r.st.MaxTS
			if idle {
				delete(c.marked, k) // the next record or marker wakes it
			}
			if err := c.forward(c.out.ByUser, q, nil, 0, &routed{src: src, srcMax: r.st.MaxTS, off: r.st.Offset, wake: wake}, idle); err != nil {
				return err
			}
		}
	}
	return nil
}

// SetIdle marks a source as idle (caught up and quiet for a while) or
// active again: an idle source holds back no partition's ticks. Only the
// live service calls it, on its wall clock.
//
// When an idle source has records again, the other idle sources may have
// records too, as old, not yet read (the input resumes after a pause of
// its producers or of the broker): the account stages, on every
// instance, make them active again, so that the first source read does
// not pass them by (stage.wake). Those held here are then no longer idle
// for the coordinator either; Woken lists them, and the caller marks
// each idle again once a read of it, begun after the wake, finds nothing.
func (c *Coordinator) SetIdle(ctx context.Context, src int32, idle bool) error {
	if _, ok := c.routers[src]; !ok {
		return nil
	}
	if idle {
		if c.idle == nil {
			c.idle = map[int32]bool{}
		}
		c.idle[src] = true
	} else {
		delete(c.idle, src)
	}
	if err := c.tell(src, idle, false); err != nil {
		return err
	}
	return c.step(ctx)
}

// wakeIdle: if an account stage saw an idle source wake, the sources
// held here that were idle are not any more (SetIdle).
func (c *Coordinator) wakeIdle() {
	woke := false
	for _, id := range c.ids {
		if st := c.engines[id].stage; st.woke {
			st.woke, woke = false, true
		}
	}
	if !woke || len(c.idle) == 0 {
		return
	}
	for src := range c.idle {
		c.woken = append(c.woken, src)
	}
	clear(c.idle)
	slices.Sort(c.woken)
}

// Woken returns the sources held here that were idle and that the
// account stages made active again since the last call (SetIdle).
func (c *Coordinator) Woken() []int32 {
	w := c.woken
	c.woken = nil
	return w
}

// TakeRepartitioned takes a batch of partition id's share of the
// repartition topic: events and progress markers from other sources. It
// decodes the events itself, as their sources did.
func (c *Coordinator) TakeRepartitioned(ctx context.Context, id int32, b *Batch) error {
	e, ok := c.engines[id]
	if !ok {
		return fmt.Errorf("processor: repartitioned records of partition %d, which is not held here", id)
	}
	for i := range b.Recs {
		rec := &b.Recs[i]
		if rec.Offset < e.meta.Repartitioned {
			continue
		}
		e.meta.Repartitioned = rec.Offset + 1
		f, err := parseForward(rec)
		if err != nil {
			return fmt.Errorf("repartitioned record %d of partition %d: %w", rec.Offset, id, err)
		}
		if f.marker {
			if f.src != id {
				// In order with the events: an event after a marker says
				// its source is active again, a marker after an event may
				// say it is idle.
				e.inbox = append(e.inbox, e.spares.marker(f.src, 0, f.srcMax, f.idle))
			}
			continue
		}
		r := e.spares.get()
		r.src, r.off, r.srcMax, r.weight, r.keys = f.src, f.off, f.srcMax, f.weight, f.keys
		if err := f.decodeEvent(rec.Value, &r.ev); err != nil {
			return fmt.Errorf("repartitioned record %d of partition %d: %w", rec.Offset, id, err)
		}
		e.inbox = append(e.inbox, r)
	}
	return c.step(ctx)
}

// TakeByUser takes a batch of partition id's share of the by-user topic:
// events and progress markers of every source, for the partition's
// account stage.
func (c *Coordinator) TakeByUser(ctx context.Context, id int32, b *Batch) error {
	e, ok := c.engines[id]
	if !ok {
		return fmt.Errorf("processor: by-user records of partition %d, which is not held here", id)
	}
	st := e.stage
	for i := range b.Recs {
		rec := &b.Recs[i]
		if rec.Offset < e.meta.Stage.ByUser {
			continue
		}
		e.meta.Stage.ByUser = rec.Offset + 1
		f, err := parseForward(rec)
		if err != nil {
			return fmt.Errorf("by-user record %d of partition %d: %w", rec.Offset, id, err)
		}
		r := st.spares.get()
		r.src, r.off, r.srcMax, r.marker, r.idle, r.wake = f.src, f.off, f.srcMax, f.marker, f.idle, f.wake
		if f.report {
			if r.report, err = decodeReport(rec.Value); err != nil {
				return fmt.Errorf("by-user record %d of partition %d: %w", rec.Offset, id, err)
			}
		} else if !f.marker {
			if err := f.decodeEvent(rec.Value, &r.ev); err != nil {
				return fmt.Errorf("by-user record %d of partition %d: %w", rec.Offset, id, err)
			}
		}
		st.inbox = append(st.inbox, r)
	}
	return c.step(ctx)
}

// step lets every partition take its queued events and apply what its
// watermark releases, in parallel, then drains the outboxes in partition
// order, and commits when due.
func (c *Coordinator) step(ctx context.Context) error {
	if err := c.settle(); err != nil {
		return err
	}
	if err := c.flushQuiet(ctx); err != nil {
		return err
	}
	if c.sinceCommit >= c.cfg.CommitEvery || c.commitDue() {
		commit := c.Commit
		if c.async {
			commit = c.commitBeside
		}
		if err := commit(ctx); err != nil {
			c.sinceCommit = 0 // retry after another interval, not on every step
			return err
		}
	}
	return nil
}

// commitBeside starts a commit of every partition, due for the caches or
// for CommitEvery, when commits fly (async), and goes on applying while it
// is in the air. Waiting for it, as Commit does, stopped every partition
// for the whole flight (0.1-0.3 s, once or twice a second of a catch-up);
// beside them, no interval's commit starts while it flies, so commits are
// fewer and larger, and a catch-up compacted a quarter to a third fewer
// bytes (bench/RESULTS.md). A commit already in the air is waited for
// only once the caches hold a quarter more than their bounds: its landing
// is what lets them trim.
func (c *Coordinator) commitBeside(ctx context.Context) error {
	if f := c.flight; f != nil && f.committing() && !c.cachesOver(5, 5) {
		return nil
	}
	if err := c.Land(ctx); err != nil {
		return err
	}
	if c.sinceCommit < c.cfg.CommitEvery && !c.commitDue() {
		return nil // the commit that landed let the caches trim
	}
	return c.launchCommit(ctx, c.ids)
}

// settle lets the account stages take their inboxes and sends on what they
// weighed, lets the partitions apply, and drains their outboxes.
func (c *Coordinator) settle() error {
	if err := c.runStages(func(e *Engine) error { return e.stage.run() }); err != nil {
		return err
	}
	c.wakeIdle()
	if err := c.parallel(func(e *Engine) error {
		if err := e.takeInbox(); err != nil {
			return err
		}
		return e.release()
	}); err != nil {
		return err
	}
	return c.drain()
}

// runStages runs fn on every account stage and sends on what they weighed,
// again while in-process reports of their rates free more.
func (c *Coordinator) runStages(fn func(e *Engine) error) error {
	for {
		if err := c.parallel(fn); err != nil {
			return err
		}
		more, err := c.sendOn()
		if err != nil || !more {
			return err
		}
		fn = func(e *Engine) error { return e.stage.run() }
	}
}

// sendOn passes what the account stages weighed to the partitions of the
// videos, stage by stage in partition order, then each stage's progress
// and its reports of rates. It reports whether it gave reports to stages
// in process, which have yet to take them.
func (c *Coordinator) sendOn() (reported bool, err error) {
	for _, id := range c.ids {
		st := c.engines[id].stage
		for _, rep := range st.rates.out {
			if c.out.ByUser == nil {
				for _, q := range c.ids {
					if q != id {
						c.engines[q].stage.inbox = append(c.engines[q].stage.inbox, &routed{report: rep})
						reported = true
					}
				}
				continue
			}
			c.vbuf = appendReport(c.vbuf[:0], rep)
			for _, q := range c.parts {
				if q == id {
					continue
				}
				f := forward{part: q, src: id, report: true}
				c.rbuf = appendForward(c.rbuf[:0], &f)
				c.hdr[0] = Header{Key: HeaderForward, Value: c.rbuf}
				if err := c.out.ByUser.Write(&Message{Value: c.vbuf, Headers: c.hdr[:1], Time: st.low}); err != nil {
					return false, err
				}
				c.countForward(true, q)
			}
		}
		clear(st.rates.out)
		st.rates.out = st.rates.out[:0]
	}
	for _, id := range c.ids {
		st := c.engines[id].stage
		for i, r := range st.out {
			st.out[i] = nil
			v := c.topo.Partitioner(r.ev.VideoID, c.topo.Partitions)
			if c.out.Repartition != nil && v != id {
				c.sent[[2]int32{id, v}] = told{r.srcMax, false}
				c.vbuf = event.AppendBinary(c.vbuf[:0], &r.ev)
				if err := c.forward(c.out.Repartition, v, c.vbuf, r.ev.TS, r, false); err != nil {
					return false, err
				}
				c.engines[id].spares.keep(r)
				continue
			}
			e, ok := c.engines[v]
			if !ok {
				return false, fmt.Errorf("processor: an event for partition %d, which is not held here", v)
			}
			e.inbox = append(e.inbox, r)
		}
		st.out = st.out[:0]
		low, idle := st.promise(), st.quiet()
		if c.out.Repartition == nil {
			for _, q := range c.ids {
				e := c.engines[q]
				e.inbox = append(e.inbox, e.spares.marker(id, 0, low, idle))
			}
			continue
		}
		e := c.engines[id]
		e.inbox = append(e.inbox, e.spares.marker(id, 0, low, idle))
		for _, q := range c.parts {
			if q == id {
				continue
			}
			k := [2]int32{id, q}
			last, seen := c.sent[k]
			if !seen || idle != last.idle || low >= last.low+c.markerEvery {
				c.sent[k] = told{low, idle}
				if err := c.forward(c.out.Repartition, q, nil, 0, &routed{src: id, srcMax: low, off: st.st.Sent}, idle); err != nil {
					return false, err
				}
			}
		}
	}
	return reported, nil
}

// told is the progress a stage last told a partition by topic.
type told struct {
	low  int64
	idle bool
}

// parallel runs fn on every partition, on up to Workers goroutines.
func (c *Coordinator) parallel(fn func(e *Engine) error) error {
	return c.parallelOn(c.ids, fn)
}

// parallelOn runs fn on partitions ids, on up to Workers goroutines.
func (c *Coordinator) parallelOn(ids []int32, fn func(e *Engine) error) error {
	w := min(c.topo.Workers, len(ids))
	if w <= 1 {
		for _, id := range ids {
			if err := fn(c.engines[id]); err != nil {
				return err
			}
		}
		return nil
	}
	// The caller works too, and waits for the partitions taken, not for
	// the goroutines: a live step has little to do, and one started
	// after the caller has done it all finds nothing and holds no one up
	// (waiting for each to be scheduled put a delay of the scheduler's
	// on every step while the cores were busy).
	var next, left atomic.Int32
	left.Store(int32(len(ids)))
	errs := make([]error, len(ids))
	done := make(chan struct{})
	work := func() {
		for {
			i := int(next.Add(1)) - 1
			if i >= len(ids) {
				return
			}
			errs[i] = fn(c.engines[ids[i]])
			if left.Add(-1) == 0 {
				close(done)
			}
		}
	}
	for range w - 1 {
		go work()
	}
	work()
	<-done
	return errors.Join(errs...)
}

// cachesOver reports whether an engine's cache holds more than quarters/4
// of its bound of pairs or of videos.
func (c *Coordinator) cachesOver(pairQuarters, videoQuarters int) bool {
	n := max(len(c.engines), 1)
	for _, e := range c.engines {
		if e.pairs.Len() > c.cfg.CachePairs/n*pairQuarters/4 || len(e.videos) > c.cfg.CacheVideos/n*videoQuarters/4 {
			return true
		}
	}
	return false
}

// commitDue reports whether a commit is due for the caches' sake, first
// trimming them when it may: an engine's cache holds more than its bound
// of pairs or videos, and letting go those unchanged since the last
// commit (Engine.evict: down to half the pairs and three quarters of the
// videos) does not bring it to where a trim goes. Only the entries
// changed since the last commit make a commit due; those unchanged are
// trimmed here only when the last commit is durable (none in flight, or
// waiting for the changelog), as after it lands. When any full cache made
// a commit due, a backfill of 1M likes over 1M videos under 512 MiB
// committed 46 times, not 19, and ran 13% slower: each commit writes
// again the videos, accounts and creators changed since the last
// (bench/RESULTS.md).
func (c *Coordinator) commitDue() bool {
	if !c.cachesOver(4, 4) {
		return false
	}
	if c.flyState && c.flight != nil {
		// The batch of state in flight is most likely down: wait, and
		// trim as after a commit in line, rather than commit again.
		if err := c.await(context.Background()); err != nil {
			return true // the commit due returns the error
		}
	}
	if c.flight != nil || c.failed != nil || c.unacked != nil {
		return true
	}
	c.trim()
	return c.cachesOver(2, 3)
}

// trim lets go what the caches hold beyond their bounds among the entries
// unchanged since the last commit, which must be durable. Each partition
// trims its own, in parallel: one after another, a backfill over 1M
// videos spent 9% of its time in the coordinator trimming while the
// partitions waited.
func (c *Coordinator) trim() {
	n := max(len(c.engines), 1)
	_ = c.parallel(func(e *Engine) error {
		e.evict(c.cfg.CacheVideos/n, c.cfg.CachePairs/n, c.cfg.MaxAccounts/n)
		return nil
	})
}

// drain writes out what the partitions produced, in partition order.
func (c *Coordinator) drain() error {
	for _, id := range c.ids {
		e := c.engines[id]
		if c.out.Partials != nil {
			if err := c.takeCreators(id, e); err != nil {
				return err
			}
			if err := c.sendPartials(id, e); err != nil {
				return err
			}
			if err := e.box.drain(c.out.Scores, nil); err != nil {
				return err
			}
			continue
		}
		if err := e.box.drain(c.out.Scores, func(s *Snapshot) { c.merger.report(id, s) }); err != nil {
			return err
		}
		if err := c.takeCreators(id, e); err != nil {
			return err
		}
		if err := c.merger.progress(id, e.box.next); err != nil {
			return err
		}
	}
	if c.merger != nil && c.out.Partials == nil {
		return c.merger.kickCreators()
	}
	return nil
}

// WaitsOnInput reports whether an account stage held here waits on its
// sources' progress: it has closed the buckets as far as their largest
// event times allow, so that only more input lets it weigh the likes it
// holds and report further (the stages' reports to one another free the
// rest, input or none). A service that holds back its input to bound
// what the stages hold must let it on while this is so.
func (c *Coordinator) WaitsOnInput() bool {
	for _, id := range c.ids {
		if st := c.engines[id].stage; st.rates.reported >= st.st.Closed {
			return true
		}
	}
	return false
}

// Quiet reports whether every partition held here has gone idle and
// emitted its held-back scores.
func (c *Coordinator) Quiet() bool {
	for _, e := range c.engines {
		if !e.quiet {
			return false
		}
	}
	return len(c.engines) > 0
}

// flushQuiet emits the held-back scores of partitions whose sources have
// all gone idle (live only): the ranker must not wait for the next like to
// see the last ones.
func (c *Coordinator) flushQuiet(ctx context.Context) error {
	var quiet []int32
	for _, id := range c.ids {
		if e := c.engines[id]; !e.quiet && e.idle() {
			quiet = append(quiet, id)
		}
	}
	if len(quiet) == 0 {
		return nil
	}
	if err := c.Commit(ctx); err != nil {
		return err
	}
	for _, id := range quiet {
		if err := c.flushPartition(ctx, id); err != nil {
			return err
		}
		c.engines[id].quiet = true
	}
	return nil
}

// FlushOutputs sends every output record produced so far, without
// committing state: a live service does it often, so that its outputs do
// not wait for the next commit.
//
// The sinks are flushed at once, each on its own goroutine: a flush waits
// for the broker, and a commit waits for them all. A sink given under two
// names is flushed once.
//
// When every output is a Detacher, FlushOutputs only starts the flush,
// unless a flush or commit is in flight (then the records wait for the
// next), and returns the error of the one before, if it failed.
func (c *Coordinator) FlushOutputs(ctx context.Context) error {
	if c.async {
		return c.flushAsync(ctx)
	}
	if err := c.merger.settleCreators(); err != nil {
		return err
	}
	sinks := c.sinks()
	names := make([]string, 0, len(sinks))
	for _, name := range sinkOrder {
		if s, ok := sinks[name]; ok && !slices.ContainsFunc(names, func(n string) bool { return sameSink(sinks[n], s) }) {
			names = append(names, name)
		}
	}
	errs := make([]error, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Go(func() { errs[i] = sinks[name].Flush(ctx) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			return &CommitError{fmt.Errorf("flush %s output: %w", names[i], err)}
		}
	}
	return nil
}

// sameSink reports whether a and b are one sink: the same pointer.
func sameSink(a, b Sink) bool {
	pa, pb := reflect.ValueOf(a), reflect.ValueOf(b)
	return pa.Kind() == reflect.Pointer && pb.Kind() == reflect.Pointer && pa.Pointer() == pb.Pointer()
}

// CommitError is a commit that failed, most often because an output could
// not be flushed (a broker away). Nothing of it was committed and the
// state in memory is intact: a later Commit may succeed.
type CommitError struct{ Err error }

func (e *CommitError) Error() string { return e.Err.Error() }
func (e *CommitError) Unwrap() error { return e.Err }

// Commit makes everything so far durable: outputs first, then the
// changes of state to the changelog (if any), then the state of every
// partition with its offsets, in one batch. It returns once all is.
func (c *Coordinator) Commit(ctx context.Context) error {
	if c.async {
		if err := c.Land(ctx); err != nil {
			return err
		}
		if err := c.launchCommit(ctx, c.ids); err != nil {
			return err
		}
		return c.await(ctx)
	}
	start := time.Now()
	if c.failed != nil {
		return c.failed.err // a batch of state that failed to land (flyState)
	}
	if err := c.await(ctx); err != nil {
		return err
	}
	if err := c.settle(); err != nil {
		return err
	}
	if err := c.FlushOutputs(ctx); err != nil {
		return err
	}
	if c.unacked != nil {
		if err := c.commitLogged(ctx, c.unacked, c.unackedLog); err != nil {
			return err
		}
		c.unacked, c.unackedLog = nil, nil
	}
	w, cl, err := c.prepare(c.ids)
	if err != nil {
		return err
	}
	if c.changelog != nil {
		if err := c.commitLogged(ctx, w, cl); err != nil {
			// The batch waits, whole, for its changelog records.
			c.unacked, c.unackedLog = w, cl
			return err
		}
	} else if c.flyState {
		c.sinceCommit = 0
		c.launch(ctx, &flight{w: w, offsets: c.offsets(c.ids)})
		return nil
	} else if err := w.Commit(); err != nil {
		return fmt.Errorf("commit state: %w", err)
	}
	c.sinceCommit = 0
	c.landed(c.offsets(c.ids), time.Since(start))
	return c.afterCommit(ctx)
}

func (c *Coordinator) afterCommit(ctx context.Context) error {
	if c.AfterCommit != nil {
		return c.AfterCommit(ctx)
	}
	return nil
}

// prepare writes a commit's batch: partitions ids' changed state, and,
// with a changelog, the changes' records to it, under a new commit id.
func (c *Coordinator) prepare(ids []int32) (*store.Writer, *changeLog, error) {
	w := c.gpart.NewWriter()
	var cl *changeLog
	var log func(id int32, forks []*store.Writer) error
	if c.changelog != nil {
		cl = newChangeLog(c.logChunk)
		log = func(id int32, forks []*store.Writer) error { return c.addToLog(cl, id, forks) }
	}
	if err := c.write(w, log, ids); err != nil {
		return nil, nil, errors.Join(fmt.Errorf("prepare commit: %w", err), w.Abort())
	}
	if cl != nil {
		cl.r = w.ChangeReader()
		for _, id := range ids {
			delete(c.repairs, id) // in the changelog's records now, sent again if they fail
		}
	}
	return w, cl, nil
}

// commitLogged commits a batch once the changelog has acknowledged its
// records, with the changelog offsets the state then reflects.
func (c *Coordinator) commitLogged(ctx context.Context, w *store.Writer, cl *changeLog) error {
	if err := cl.send(ctx, c.changelog); err != nil {
		return &CommitError{fmt.Errorf("flush changelog: %w", err)}
	}
	ends, err := c.changelog.Ends(ctx, c.ids)
	if err != nil {
		return &CommitError{fmt.Errorf("read changelog offsets: %w", err)}
	}
	for _, id := range c.ids {
		if err := w.For(c.engines[id].part).SetChangelogEnd(ends[id]); err != nil {
			return err
		}
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("commit state: %w", err)
	}
	return nil
}

// write writes every partition's changed state into w's batch. Each
// partition writes into a fork of its own, on the workers (a backfill's
// commit spent 2 of its 4 seconds in a row there; a catch-up's, 8.5% of
// its CPU on the goroutine that applies events, bench/RESULTS.md);
// partition 0's merger saves into another beside them. The forks are
// joined in partition order, each as soon as its partition is written;
// the partitions' keys are apart, so the state committed is the same as
// if written in a row. With log, log sees each partition's forks (the
// merger's first) before they are joined: their batches are the
// partition's changes of the commit, in the order w's batch then holds
// them (see changeLog).
func (c *Coordinator) write(w *store.Writer, log func(id int32, forks []*store.Writer) error, ids []int32) error {
	logged := log != nil
	forks := make(map[int32][]*store.Writer, len(ids))
	var merged chan error
	for _, id := range ids {
		e := c.engines[id]
		if c.out.Partials != nil && id == mergePartition && c.merger != nil {
			// The merger's state goes into the partition's meta record,
			// which the engine writes: taken first, as the merger saves.
			e.meta.Merger = c.merger.marshal(e.meta.Merger[:0])
			mf := w.Fork(e.part, logged)
			forks[id] = append(forks[id], mf)
			merged = make(chan error, 1)
			go func() { merged <- c.merger.save(mf) }()
		}
		forks[id] = append(forks[id], w.Fork(e.part, logged))
	}
	// The workers write the partitions in order, each taking the next;
	// this goroutine logs and joins each partition as soon as it is
	// written, while the workers write those after it (the logging and
	// joining were a quarter of a live commit's stop, done after all).
	written := make(map[int32]chan error, len(ids))
	for _, id := range ids {
		written[id] = make(chan error, 1)
	}
	go c.parallelOn(ids, func(e *Engine) error {
		fs := forks[e.id]
		written[e.id] <- e.write(fs[len(fs)-1]) // the engine's fork is the partition's last
		return nil
	})
	var err error
	for _, id := range ids {
		err = errors.Join(err, <-written[id])
		if merged != nil && id == mergePartition {
			err = errors.Join(err, <-merged)
		}
		if err == nil && log != nil {
			err = log(id, forks[id])
		}
		for _, f := range forks[id] {
			if err == nil {
				err = w.Join(f)
			} else {
				_ = f.Abort()
			}
		}
	}
	if err != nil {
		return err
	}
	c.meta.Sinks = c.meta.Sinks[:0]
	for name, s := range c.sinks() {
		if p, ok := s.(Positioned); ok {
			c.meta.Sinks = append(c.meta.Sinks, store.SinkPos{Name: name, Pos: p.Position()})
		}
	}
	sort.Slice(c.meta.Sinks, func(i, j int) bool { return c.meta.Sinks[i].Name < c.meta.Sinks[j].Name })
	if c.out.Partials == nil {
		if err := c.merger.save(w); err != nil {
			return err
		}
		c.meta.Merger = c.merger.marshal(c.meta.Merger[:0])
	}
	return w.SetMeta(&c.meta)
}

// FlushPending emits a record for every video whose state is newer than
// its last record, partition by partition in video order. The live
// service calls it when its input goes quiet.
func (c *Coordinator) FlushPending(ctx context.Context) error {
	if err := c.Commit(ctx); err != nil {
		return err
	}
	for _, id := range c.ids {
		if err := c.flushPartition(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

func (c *Coordinator) flushPartition(ctx context.Context, id int32) error {
	e := c.engines[id]
	if err := c.await(ctx); err != nil { // the scan reads the store (FlyState)
		return err
	}
	ids, err := e.pendingVideos()
	if err != nil {
		return fmt.Errorf("scan pending videos of partition %d: %w", id, err)
	}
	for i, v := range ids {
		if err := e.emitPending(v); err != nil {
			return err
		}
		if i%c.cfg.CommitEvery == c.cfg.CommitEvery-1 {
			if err := c.drain(); err != nil {
				return err
			}
			if err := c.Commit(ctx); err != nil {
				return err
			}
		}
	}
	return c.drain()
}

// Finish ends a bounded input: every held event is applied, every video
// with state newer than its last record gets a final record, trending
// ticks that every partition has reported are all emitted, and all is
// committed.
func (c *Coordinator) Finish(ctx context.Context) error {
	if err := c.Step(ctx); err != nil {
		return err
	}
	if err := c.runStages(func(e *Engine) error { return e.stage.finish() }); err != nil {
		return err
	}
	if err := c.parallel(func(e *Engine) error {
		if err := e.takeInbox(); err != nil {
			return err
		}
		return e.finish()
	}); err != nil {
		return err
	}
	if err := c.drain(); err != nil {
		return err
	}
	if err := c.FlushPending(ctx); err != nil {
		return err
	}
	if err := c.await(ctx); err != nil { // finish may read the store (FlyState)
		return err
	}
	if c.merger != nil {
		if err := c.merger.finish(); err != nil {
			return err
		}
	}
	return c.Commit(ctx)
}

// Stats sums the counters of the coordinator and its partitions.
func (c *Coordinator) Stats() Stats {
	s := Stats{DeadByReason: map[string]int64{}, Commits: c.commits,
		Records: c.stats.Records, DeadLetters: c.stats.DeadLetters}
	for r, n := range c.stats.DeadByReason {
		s.DeadByReason[r] = n
	}
	for _, id := range c.ids {
		es := c.engines[id].Stats()
		s.Applied += es.Applied
		s.StrayUnlikes += es.StrayUnlikes
		s.IgnoredLikes += es.IgnoredLikes
		s.Scores += es.Scores
		s.Repeated += es.Repeated
		s.Reordered += es.Reordered
		s.Buffered += es.Buffered
		s.HeldForWeight += es.HeldForWeight
		s.LateWeighed += es.LateWeighed
	}
	s.Snapshots = c.listsWritten
	return s
}

// Latest returns the last emitted trending snapshot of a region. Unlike
// the rest of the coordinator, it is safe to call from any goroutine.
func (c *Coordinator) Latest(region string) (Snapshot, bool) {
	l := c.latest.Load()
	if l == nil {
		return Snapshot{}, false
	}
	list, ok := l.lists[region]
	return Snapshot{Tick: l.tick, Lists: []List{list}}, ok
}

// Regions lists the regions of the last emitted snapshot, global first.
// Safe to call from any goroutine.
func (c *Coordinator) Regions() []string {
	if l := c.latest.Load(); l != nil {
		return l.regions
	}
	return nil
}

func (c *Coordinator) writeSnapshot(s *Snapshot) error {
	if !c.cfg.writtenTick(s.Tick) {
		return nil // between written ticks: the latest list has it
	}
	var buf, key []byte
	for i := range s.Lists {
		buf = AppendList(buf[:0], s.Tick, &s.Lists[i])
		key = append(key[:0], s.Lists[i].Region...)
		m := Message{Key: key, Value: buf, Time: s.Tick}
		if err := c.out.Trending.Write(&m); err != nil {
			return err
		}
		c.listsWritten++
	}
	return nil
}

func (c *Coordinator) deadLetter(rec *Record, v verdict) error {
	c.stats.DeadLetters++
	c.stats.DeadByReason[v.reason]++
	ts := v.ts
	if rec.Time > 0 {
		// The source's own time: the event time may be what is wrong.
		ts = rec.Time
	}
	c.hdr = [5]Header{
		{Key: HeaderReason, Value: []byte(v.reason)},
		{Key: HeaderError, Value: []byte(v.detail)},
		{Key: HeaderTopic, Value: []byte(rec.Topic)},
		{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(rec.Partition), 10)},
		{Key: HeaderOffset, Value: strconv.AppendInt(nil, rec.Offset, 10)},
	}
	m := Message{Key: rec.Key, Value: rec.Value, Time: ts, Headers: c.hdr[:]}
	return c.out.DeadLetters.Write(&m)
}
