package processor

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/viralityhq/virality/store"
)

// Detacher is a Sink whose buffered records can be taken out and sent on
// another goroutine while new ones are written. When every output is one
// (the live service's Kafka topics), flushes and commits wait on the
// broker and the disk off the goroutine that applies events.
type Detacher interface {
	Sink
	// Detach takes out the records written so far and returns the
	// function that sends them, nil when there are none. The function
	// returns once they are durable, as Flush does; after an error it may
	// be called again and sends what was not acknowledged. The sends of
	// a sink run one at a time, in the order of their Detach calls, and
	// never at the same time as its Flush.
	Detach() func(ctx context.Context) error
}

// Wrapper is a Sink that passes what it is given on to another, after
// looking at it (counting, keeping the last record): a flight detaches
// records from the sink it wraps.
type Wrapper interface {
	Sink
	Unwrap() Sink
}

// detacherOf returns s, or the sink it wraps, as a Detacher.
func detacherOf(s Sink) (Detacher, bool) {
	for {
		if d, ok := s.(Detacher); ok {
			return d, true
		}
		w, ok := s.(Wrapper)
		if !ok {
			return nil, false
		}
		s = w.Unwrap()
	}
}

// sinkOrder is the order in which outputs are flushed and named.
var sinkOrder = []string{sinkByUser, sinkRepartition, sinkDeadLetters, sinkScores, sinkPartials, sinkTrending, sinkCreators, sinkRising}

// flight is a flush of the outputs, or a commit, that runs on its own
// goroutine while the partitions go on applying: the sends of the records
// detached from each sink, then, for a commit, the Pebble batch of the
// state that reflects them, written on the applying goroutine before the
// flight took off. One flight is in the air at a time, so that each
// sink's sends and the batches stay in order, but for a flush beside a
// commit whose outputs are acknowledged (see flushAsync). A flight that
// failed is kept whole, and flown again before anything newer is sent or
// committed.
type flight struct {
	sends []send
	// A commit: the batch, its changelog records (log, with a changelog)
	// and the partitions whose changelog ends it then records, and the
	// sources' offsets it holds.
	w       *store.Writer
	commit  bool // w was set at launch; fly clears w once the batch is written
	log     *changeLog
	ids     []int32
	parts   []*store.Partition
	offsets map[int32]int64

	start time.Time
	took  time.Duration
	done  chan struct{}
	err   error
	// outAcked: every output's records are acknowledged; what is left is
	// the changelog's and the batch.
	outAcked atomic.Bool
}

// isDone reports whether f has come down, landed or failed.
func (f *flight) isDone() bool {
	select {
	case <-f.done:
		return true
	default:
		return false
	}
}

type send struct {
	name string
	fn   func(ctx context.Context) error // nil once sent
	log  bool                            // the changelog's
}

// fly runs f: every output's send at once, each on its own goroutine,
// then, once all are acknowledged, the changelog's, then the batch.
//
// The changelog goes last because a restart replays it: a partition whose
// local state is behind its changelog (a crash between the changelog's
// acknowledgement and the batch) is brought up to the last complete
// commit there, and so resumes after the input that commit covers. The
// records that input made must then be in the outputs already, or they
// are never written: a by-user record lost so loses the like.
func (f *flight) fly(ctx context.Context, log Changelog) {
	defer func() {
		f.took = time.Since(f.start)
		close(f.done)
	}()
	if !f.sendAll(ctx, false) {
		return
	}
	f.outAcked.Store(true)
	if !f.sendAll(ctx, true) {
		return
	}
	if f.w == nil {
		return
	}
	if f.log != nil {
		if err := f.log.send(ctx, log); err != nil {
			f.err = &CommitError{fmt.Errorf("flush changelog output: %w", err)}
			return
		}
		ends, err := log.Ends(ctx, f.ids)
		if err != nil {
			f.err = &CommitError{fmt.Errorf("read changelog offsets: %w", err)}
			return
		}
		for i, id := range f.ids {
			if err := f.w.For(f.parts[i]).SetChangelogEnd(ends[id]); err != nil {
				f.err = err
				return
			}
		}
	}
	if err := f.w.Commit(); err != nil {
		f.err = fmt.Errorf("commit state: %w", err)
		return
	}
	f.w = nil
}

// sendAll runs the sends of the outputs (log false) or of the changelog
// (log true) not yet acknowledged, each on its own goroutine, and reports
// whether all were; f.err says why not.
func (f *flight) sendAll(ctx context.Context, log bool) bool {
	errs := make([]error, len(f.sends))
	var wg sync.WaitGroup
	for i := range f.sends {
		s := &f.sends[i]
		if s.fn == nil || s.log != log {
			continue
		}
		wg.Go(func() {
			if errs[i] = s.fn(ctx); errs[i] == nil {
				s.fn = nil
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			f.err = &CommitError{fmt.Errorf("flush %s output: %w", f.sends[i].name, err)}
			return false
		}
	}
	return true
}

// committing reports whether f is a commit whose batch is not written:
// in the air, or failed and kept. fly clears f.w once the batch is
// written, so f.w is read only once f has come down.
func (f *flight) committing() bool {
	if !f.isDone() {
		return f.commit
	}
	return f.w != nil
}

// launch sends f on its way.
func (c *Coordinator) launch(ctx context.Context, f *flight) {
	f.commit = f.w != nil
	c.flight = f
	f.takeOff(ctx, c.changelog)
}

// takeOff sends f on its way on a goroutine of its own, from the start:
// a flight flown again sends only what was not acknowledged.
func (f *flight) takeOff(ctx context.Context, log Changelog) {
	f.done, f.err, f.start = make(chan struct{}), nil, time.Now()
	f.outAcked.Store(false)
	go f.fly(ctx, log)
}

// await waits for the flights in the air, if any, and returns the error
// of one that failed: a failed flight is kept, to be flown again by the
// next commit or flush. A commit that landed counts, and the caches may
// shed what it made durable.
func (c *Coordinator) await(ctx context.Context) error {
	f, b := c.flight, c.beside
	if f == nil {
		return nil
	}
	for _, x := range []*flight{f, b} {
		if x == nil {
			continue
		}
		select {
		case <-x.done:
		case <-ctx.Done():
			return &CommitError{fmt.Errorf("wait for the commit in flight: %w", ctx.Err())}
		}
	}
	c.flight, c.beside = nil, nil
	err := c.come(ctx, f)
	if b != nil {
		if err2 := c.come(ctx, b); err == nil {
			err = err2
		}
	}
	return err
}

// come takes in flight f, come down: a commit that landed counts; one
// that failed is kept to be flown again, with any flight that failed
// before it. Only a flush fails after a commit it flew beside, and only
// its outputs' sends are then left, so the two fly again as one: the
// flush's outputs, then the commit's changelog and batch.
func (c *Coordinator) come(ctx context.Context, f *flight) error {
	if f.err != nil {
		if c.failed == nil {
			c.failed = f
		} else {
			c.failed.sends = append(c.failed.sends, f.sends...)
		}
		return f.err
	}
	if f.offsets != nil {
		c.landed(f.offsets, f.took)
		return c.afterCommit(ctx)
	}
	return nil
}

// landed records a commit made durable, with the sources' offsets it
// holds, and trims the caches: whatever they shed can be read back.
func (c *Coordinator) landed(offsets map[int32]int64, took time.Duration) {
	c.commits++
	if c.committed == nil {
		c.committed = make(map[int32]int64, len(offsets))
	}
	maps.Copy(c.committed, offsets)
	c.trim()
	if c.CommitTook != nil {
		c.CommitTook(took)
	}
}

// offsets returns the next offsets of sources ids, as a commit records
// them.
func (c *Coordinator) offsets(ids []int32) map[int32]int64 {
	m := make(map[int32]int64, len(ids))
	for _, id := range ids {
		m[id] = c.NextOffset(id)
	}
	return m
}

// CommittedOffset is the next offset of source src to read, as the last
// commit made durable holds it (0 before any).
func (c *Coordinator) CommittedOffset(src int32) int64 { return c.committed[src] }

// Committing reports whether a commit or flush is in flight, or failed
// and waits to be flown again: StartCommit must be called again even if
// nothing new was applied.
func (c *Coordinator) Committing() bool { return c.flight != nil || c.failed != nil }

// Land waits until no flush or commit is in flight, flying a failed one
// again first, and returns its error; whatever failed is kept for the
// next commit. Reading the store needs it, and a caller that must not let
// the changes since the last commit grow (the broker takes commits slower
// than they come) waits here before it starts the next.
func (c *Coordinator) Land(ctx context.Context) error {
	if err := c.await(ctx); err != nil {
		return err
	}
	_ = c.Poll(ctx) // none in the air: flies a failed one again
	return c.await(ctx)
}

// namedDetacher is an output, or the changelog, that can be detached.
type namedDetacher struct {
	name     string
	d        Detacher
	log      bool                             // the changelog, sent by commits only
	creators bool                             // a creator output, which the creator merger's job writes
	sized    interface{ BufferedBytes() int } // an output that tells the bytes it holds
}

// findDetachers lists the outputs, in sinkOrder, and the changelog, once
// each (a sink given under two names is listed once), and turns commits in
// flight on when every one can be detached and none is positioned (a
// position is read after a Flush).
func (c *Coordinator) findDetachers() {
	sinks := c.sinks()
	c.async = true
	add := func(name string, s Sink, log bool) {
		d, ok := detacherOf(s)
		if _, pos := s.(Positioned); !ok || pos {
			c.async = false
			return
		}
		if slices.ContainsFunc(c.detachers, func(x namedDetacher) bool { return x.d == d }) {
			return
		}
		x := namedDetacher{name: name, d: d, log: log, creators: name == sinkCreators || name == sinkRising}
		if b, ok := d.(interface{ BufferedBytes() int }); ok && !log {
			x.sized = b
		}
		c.detachers = append(c.detachers, x)
	}
	for _, name := range sinkOrder {
		if s, ok := sinks[name]; ok {
			add(name, s, false)
		}
	}
	if c.changelog != nil {
		add("changelog", c.changelog, true)
	}
	if !c.async {
		c.detachers = nil
	}
}

// detach takes out the records of every output, and of the changelog for
// a commit; not those of the creator outputs while the creator merger's
// job writes to them (a commit's batch holds the merger's state, whose
// save waited for the job).
func (c *Coordinator) detach(commit bool) []send {
	var sends []send
	busy := c.merger.creatorsBusy()
	for _, x := range c.detachers {
		if x.log && !commit || busy && x.creators {
			continue
		}
		if fn := x.d.Detach(); fn != nil {
			sends = append(sends, send{name: x.name, fn: fn, log: x.log})
		}
	}
	return sends
}

// StartCommit begins a commit and returns before it is durable, when every
// output is a Detacher: the outputs and the changelog are flushed and the
// state committed on another goroutine, while the partitions go on
// applying. It starts nothing, and returns false, while a flush or commit
// is in flight, or when one has failed: it returns that one's error, and
// flies it again, whole, before anything newer (see Poll); one that has
// landed is counted first. Reading the store, and Commit, wait for a
// commit in flight. With an output that is not a Detacher, StartCommit is
// Commit.
func (c *Coordinator) StartCommit(ctx context.Context) (started bool, err error) {
	if !c.async {
		err := c.Commit(ctx)
		return err == nil, err
	}
	if err := c.Poll(ctx); err != nil || c.flight != nil {
		return false, err
	}
	return true, c.launchCommit(ctx, c.nextSlice())
}

// FlyState, on, lets each commit's batch of state land on a goroutine of
// its own while the partitions go on applying, where commits are made in
// line (outputs that cannot be detached, as a backfill's files) and there
// is no changelog: the outputs are flushed first as ever, and the next
// commit, or a trim of the caches, waits for the batch in flight. Off, it
// waits for that batch and stops. A backfill's coordinator spent 7% of
// its time in Pebble taking the batch while the partitions waited.
// Nothing may read the store while a batch is in flight but the
// partitions, whose caches hold whatever the batch changes until it lands.
func (c *Coordinator) FlyState(ctx context.Context, on bool) error {
	if !on {
		err := c.await(ctx)
		c.flyState = false
		return err
	}
	c.flyState = !c.async && c.changelog == nil
	return nil
}

// Poll lands the flights that are done, returning the error of one that
// failed, and flies a failed one again; it never waits.
func (c *Coordinator) Poll(ctx context.Context) error {
	if f := c.flight; f != nil {
		b := c.beside
		switch {
		case b == nil && f.isDone():
			return c.await(ctx)
		case b == nil:
		case !f.isDone():
			if b.isDone() && b.err == nil {
				c.beside = nil // a flush that failed waits for the commit
			}
		case b.isDone():
			return c.await(ctx)
		default:
			// The commit is down, the flush beside it is not: the flush
			// is the flight in the air now.
			c.flight, c.beside = b, nil
			return c.come(ctx, f)
		}
		return nil
	}
	if f := c.failed; f != nil {
		c.failed = nil
		c.launch(ctx, f)
	}
	return nil
}

// Commits returns the number of commits made durable so far.
func (c *Coordinator) Commits() int64 { return c.commits }

// nextSlice returns the partitions the next StartCommit commits (see
// CommitSlices).
func (c *Coordinator) nextSlice() []int32 {
	n := min(c.CommitSlices, len(c.ids))
	if n <= 1 || c.out.ByUser == nil {
		return c.ids
	}
	k := c.slice % n
	c.slice++
	var ids []int32
	for i := k; i < len(c.ids); i += n {
		ids = append(ids, c.ids[i])
	}
	return ids
}

// launchCommit writes a commit's batch of partitions ids and sends it off
// with the records detached from every output and the changelog.
func (c *Coordinator) launchCommit(ctx context.Context, ids []int32) error {
	if err := c.settle(); err != nil {
		return err
	}
	w, cl, err := c.prepare(ids)
	if err != nil {
		return err
	}
	f := &flight{w: w, log: cl, offsets: c.offsets(ids)}
	if cl != nil {
		f.ids = slices.Clone(ids)
		for _, id := range ids {
			f.parts = append(f.parts, c.engines[id].part)
		}
	}
	f.sends = c.detach(true)
	c.sinceCommit = 0
	c.launch(ctx, f)
	return nil
}

// Throttle holds the partitions back while the outputs take records
// slower than the partitions make them: when more than max bytes wait in
// the outputs (of those that tell, with BufferedBytes), it waits for the
// flight in the air and sends them off in a new one. Without it, records
// made while a flight is in the air pile up without bound.
func (c *Coordinator) Throttle(ctx context.Context, max int64) error {
	if !c.async || c.backlog() <= max {
		return nil
	}
	if err := c.Land(ctx); err != nil {
		return err
	}
	if sends := c.detach(false); len(sends) > 0 {
		c.launch(ctx, &flight{sends: sends})
	}
	return nil
}

// backlog returns the bytes written to the outputs and not yet detached,
// of the outputs that can tell.
func (c *Coordinator) backlog() int64 {
	var n int64
	busy := c.merger.creatorsBusy()
	for _, x := range c.detachers {
		if x.sized != nil && !(busy && x.creators) {
			n += int64(x.sized.BufferedBytes())
		}
	}
	return n
}

// flushAsync starts a flush of the outputs unless a flight is in the air
// or failed (see Poll): then what was written waits for the next. The
// exception is a commit whose outputs are acknowledged, with its
// changelog and batch to go (tens of milliseconds, once a second): a
// flush flies beside it, as its outputs' sends are over and newer records
// may go out before the changelog of the commit before them. The next
// commit waits for both.
func (c *Coordinator) flushAsync(ctx context.Context) error {
	if err := c.Poll(ctx); err != nil {
		return err
	}
	// Creator reports queued while a job ran start their own.
	if err := c.merger.kickCreators(); err != nil {
		return err
	}
	if f := c.flight; f != nil {
		if f.offsets == nil || c.beside != nil || c.failed != nil || !f.outAcked.Load() {
			return nil
		}
		if sends := c.detach(false); len(sends) > 0 {
			c.beside = &flight{sends: sends}
			c.beside.takeOff(ctx, c.changelog)
		}
		return nil
	}
	if sends := c.detach(false); len(sends) > 0 {
		c.launch(ctx, &flight{sends: sends})
	}
	return nil
}
