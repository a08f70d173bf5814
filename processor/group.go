package processor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"

	"virality/event"
	"virality/store"
)

// Outputs are the three ordered outputs of a group.
type Outputs struct {
	Scores      Sink
	Trending    Sink
	DeadLetters Sink
}

// Names under which output positions are committed.
const (
	sinkScores      = "scores"
	sinkTrending    = "trending"
	sinkDeadLetters = "dead-letters"
)

// groupPartition holds the group's own meta record, beside the partitions'.
const groupPartition = -1

// Route names the input partition whose state a record belongs to. ev is
// nil when the record could not be decoded.
type Route func(rec *Record, ev *event.Event) int32

// ByRecordPartition routes each record to its source partition: the live
// service's routing, where a Kafka partition is a partition of state.
func ByRecordPartition(rec *Record, _ *event.Event) int32 { return rec.Partition }

// Group runs the engines of several input partitions on one goroutine.
// They share the outputs, one trending merger and one commit.
//
// Invariants. A commit first flushes every output record emitted so far
// (so none is lost), then writes every engine's changed state and input
// offset, the merger's pending lists and the output positions, all in one
// Pebble batch: the state of all partitions, the offsets and the outputs
// always describe the same point of the input. Between commits the caches
// hold the only copy of changed state, so nothing dirty is ever evicted.
type Group struct {
	cfg    Config
	db     *store.DB
	out    Outputs
	route  Route
	meta   store.Meta
	gpart  *store.Partition
	merger *merger

	engines     map[int32]*Engine
	ids         []int32 // sorted
	expect      int     // partitions expected, to share memory bounds
	sinceCommit int
	commits     int64

	// AfterCommit, if set, is called after each commit, e.g. to commit the
	// input offsets to a Kafka consumer group as well.
	AfterCommit func(ctx context.Context) error
}

// NewGroup opens a group on the state in db. expect is the number of
// partitions it will likely hold, over which the memory bounds of cfg are
// shared. It resumes from the last commit, cutting positioned outputs back
// to what that commit reflects, or starts fresh, cutting them to nothing.
func NewGroup(cfg Config, db *store.DB, out Outputs, route Route, expect int) (*Group, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if route == nil {
		route = ByRecordPartition
	}
	g := &Group{
		cfg:     cfg,
		db:      db,
		out:     out,
		route:   route,
		gpart:   db.Partition(groupPartition),
		engines: map[int32]*Engine{},
		expect:  max(expect, 1),
	}
	meta, ok, err := g.gpart.Meta()
	if err != nil {
		return nil, err
	}
	if ok && meta.Fingerprint != cfg.fingerprint() {
		return nil, fmt.Errorf("processor: the state was built with other settings (%s) than these (%s): use the same settings or a fresh state directory", meta.Fingerprint, cfg.fingerprint())
	}
	g.meta = meta
	g.meta.Fingerprint = cfg.fingerprint()
	g.merger, err = newMerger(cfg.TopK, meta.Merger, g.writeSnapshot)
	if err != nil {
		return nil, fmt.Errorf("load trending merger: %w", err)
	}
	g.merger.advance = func(id int32, upTo int64) error { return g.engines[id].AdvanceTicks(upTo) }
	if err := g.gpart.ScanReports(g.merger.load); err != nil {
		return nil, fmt.Errorf("load trending reports: %w", err)
	}
	positions := map[string]int64{}
	for _, s := range meta.Sinks {
		positions[s.Name] = s.Pos
	}
	for name, s := range g.sinks() {
		if p, isPos := s.(Positioned); isPos {
			if err := p.Restore(positions[name]); err != nil {
				return nil, fmt.Errorf("restore %s output: %w", name, err)
			}
		}
	}
	return g, nil
}

func (g *Group) sinks() map[string]Sink {
	return map[string]Sink{sinkScores: g.out.Scores, sinkTrending: g.out.Trending, sinkDeadLetters: g.out.DeadLetters}
}

// Open adds a partition to the group, on its committed state.
func (g *Group) Open(id int32) (*Engine, error) {
	if e, ok := g.engines[id]; ok {
		return e, nil
	}
	e, err := newEngine(g, id, g.db.Partition(id), max(g.cfg.PairFilterBits/g.expect, 1<<16))
	if err != nil {
		return nil, err
	}
	g.engines[id] = e
	g.ids = append(g.ids, id)
	slices.Sort(g.ids)
	g.merger.join(id, e.meta.NextTick)
	return e, nil
}

// Close commits and drops a partition from the group, e.g. when the
// consumer group takes it away; its state stays in the store. The
// partition is dropped even if the commit fails: its state and offsets
// then stay at the last commit, together, and whoever takes it next
// resumes from there.
func (g *Group) Close(ctx context.Context, id int32) error {
	if _, ok := g.engines[id]; !ok {
		return nil
	}
	err := g.Commit(ctx)
	delete(g.engines, id)
	g.ids = slices.DeleteFunc(g.ids, func(x int32) bool { return x == id })
	return errors.Join(err, g.merger.leave(id))
}

// Engine returns the engine of a partition in the group.
func (g *Group) Engine(id int32) (*Engine, bool) {
	e, ok := g.engines[id]
	return e, ok
}

// Partitions lists the partitions in the group, sorted.
func (g *Group) Partitions() []int32 { return slices.Clone(g.ids) }

// NextOffset is, for a source that is one stream (files), the offset of
// the first record not taken.
func (g *Group) NextOffset() int64 { return g.meta.Offset }

// Apply takes one record; ev and decodeErr are its decoded event or the
// reason it could not be decoded. It commits every Config.CommitEvery
// records, and sooner when the caches are full.
func (g *Group) Apply(ctx context.Context, rec *Record, ev *event.Event, decodeErr error) error {
	var routed *event.Event
	if decodeErr == nil {
		routed = ev
	}
	id := g.route(rec, routed)
	e, ok := g.engines[id]
	if !ok {
		return fmt.Errorf("processor: record of partition %d, which the group does not hold", id)
	}
	if err := e.Apply(rec, ev, decodeErr); err != nil {
		return err
	}
	g.meta.Offset = rec.Offset + 1
	g.sinceCommit++
	if g.sinceCommit >= g.cfg.CommitEvery || len(e.pairs) > g.cfg.CachePairs/len(g.engines) ||
		len(e.videos) > g.cfg.CacheVideos/len(g.engines) {
		if err := g.Commit(ctx); err != nil {
			g.sinceCommit = 0 // retry after another interval, not on every record
			return err
		}
	}
	return nil
}

// FlushOutputs sends every output record emitted so far, without
// committing state: a live service does it often, so that its outputs do
// not wait for the next commit.
func (g *Group) FlushOutputs(ctx context.Context) error {
	for name, s := range g.sinks() {
		if err := s.Flush(ctx); err != nil {
			return &CommitError{fmt.Errorf("flush %s output: %w", name, err)}
		}
	}
	return nil
}

// CommitError is a commit that failed, most often because an output could
// not be flushed (a broker away). Nothing of it was committed and the
// state in memory is intact: a later Commit may succeed.
type CommitError struct{ Err error }

func (e *CommitError) Error() string { return e.Err.Error() }
func (e *CommitError) Unwrap() error { return e.Err }

// Commit makes everything so far durable: outputs first, then the state of
// every partition with its offset, in one batch.
func (g *Group) Commit(ctx context.Context) error {
	if err := g.FlushOutputs(ctx); err != nil {
		return err
	}
	w := g.gpart.NewWriter()
	if err := g.write(w); err != nil {
		return errors.Join(fmt.Errorf("prepare commit: %w", err), w.Abort())
	}
	if err := w.Commit(); err != nil {
		return fmt.Errorf("commit state: %w", err)
	}
	g.commits++
	g.sinceCommit = 0
	n := max(len(g.engines), 1)
	for _, id := range g.ids {
		g.engines[id].evict(g.cfg.CacheVideos/n, g.cfg.CachePairs/n, g.cfg.MaxAccounts/n)
	}
	if g.AfterCommit != nil {
		return g.AfterCommit(ctx)
	}
	return nil
}

func (g *Group) write(w *store.Writer) error {
	for _, id := range g.ids {
		e := g.engines[id]
		if err := e.write(w.For(e.part)); err != nil {
			return err
		}
	}
	g.meta.Sinks = g.meta.Sinks[:0]
	for name, s := range g.sinks() {
		if p, ok := s.(Positioned); ok {
			g.meta.Sinks = append(g.meta.Sinks, store.SinkPos{Name: name, Pos: p.Position()})
		}
	}
	sort.Slice(g.meta.Sinks, func(i, j int) bool { return g.meta.Sinks[i].Name < g.meta.Sinks[j].Name })
	if err := g.merger.save(w); err != nil {
		return err
	}
	g.meta.Merger = g.merger.marshal(g.meta.Merger[:0])
	return w.SetMeta(&g.meta)
}

// FlushPending emits a record for every video whose state is newer than
// its last record, partition by partition in video order. The live
// service calls it when its input goes quiet.
func (g *Group) FlushPending(ctx context.Context) error {
	if err := g.Commit(ctx); err != nil {
		return err
	}
	for _, id := range g.ids {
		if err := g.flushPartition(ctx, id); err != nil {
			return err
		}
	}
	return nil
}

// FlushPartition is FlushPending for one partition.
func (g *Group) FlushPartition(ctx context.Context, id int32) error {
	if err := g.Commit(ctx); err != nil {
		return err
	}
	return g.flushPartition(ctx, id)
}

func (g *Group) flushPartition(ctx context.Context, id int32) error {
	e := g.engines[id]
	ids, err := e.pendingVideos()
	if err != nil {
		return fmt.Errorf("scan pending videos of partition %d: %w", id, err)
	}
	for i, v := range ids {
		if err := e.emitPending(v); err != nil {
			return err
		}
		if i%g.cfg.CommitEvery == g.cfg.CommitEvery-1 {
			if err := g.Commit(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

// Finish ends a bounded input: every video with state newer than its last
// record gets a final record, trending ticks that every partition has
// passed are all emitted, and all is committed.
func (g *Group) Finish(ctx context.Context) error {
	if err := g.FlushPending(ctx); err != nil {
		return err
	}
	if err := g.merger.finish(); err != nil {
		return err
	}
	return g.Commit(ctx)
}

// Stats sums the counters of the group's engines.
func (g *Group) Stats() Stats {
	s := Stats{DeadByReason: map[string]int64{}, Commits: g.commits}
	for _, id := range g.ids {
		es := g.engines[id].stats
		s.Records += es.Records
		s.Applied += es.Applied
		s.DeadLetters += es.DeadLetters
		s.StrayUnlikes += es.StrayUnlikes
		s.IgnoredLikes += es.IgnoredLikes
		s.Scores += es.Scores
		for r, n := range es.DeadByReason {
			s.DeadByReason[r] += n
		}
	}
	s.Snapshots = g.merger.written
	return s
}

// Latest returns the last emitted trending snapshot of a region. Unlike
// the rest of the group, it is safe to call from any goroutine.
func (g *Group) Latest(region string) (Snapshot, bool) {
	l := g.merger.latest.Load()
	if l == nil {
		return Snapshot{}, false
	}
	list, ok := l.lists[region]
	return Snapshot{Tick: l.tick, Lists: []List{list}}, ok
}

// Regions lists the regions of the last emitted snapshot, global first.
// Safe to call from any goroutine.
func (g *Group) Regions() []string {
	if l := g.merger.latest.Load(); l != nil {
		return l.regions
	}
	return nil
}

// SetIdle marks a partition as idle (or active again): an idle partition
// does not hold back the trending snapshots of the others.
func (g *Group) SetIdle(id int32, idle bool) error {
	return g.merger.setIdle(id, idle)
}

func (g *Group) writeSnapshot(s *Snapshot) error {
	var buf, key []byte
	for i := range s.Lists {
		buf = AppendList(buf[:0], s.Tick, &s.Lists[i])
		key = append(key[:0], s.Lists[i].Region...)
		m := Message{Key: key, Value: buf, Time: s.Tick}
		if err := g.out.Trending.Write(&m); err != nil {
			return err
		}
	}
	return nil
}
