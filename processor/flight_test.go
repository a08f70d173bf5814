package processor

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
	"weak"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/gen"
	"github.com/viralityhq/virality/store"
)

// detachSink is an in-memory Detacher: what is written goes out when a
// detached send runs, on a flight's goroutine; the sends numbered in fail,
// and those that hold a record numbered in failRecs (from 0, in the order
// sent), fail once and send nothing.
type detachSink struct {
	buf      []Message // written, not detached: the applying goroutine's
	fail     map[int]bool
	failRecs map[int]bool

	mu      sync.Mutex
	gate    chan struct{} // if set, sends detached now wait until it is closed (setGate)
	sent    []Message
	sends   int
	pending int // detached, not yet acknowledged
}

func (s *detachSink) Write(m *Message) error {
	s.buf = append(s.buf, cloneMessage(m))
	return nil
}

func (s *detachSink) Flush(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sent = append(s.sent, s.buf...)
	s.buf = nil
	return nil
}

func (s *detachSink) BufferedBytes() int {
	n := 0
	for _, m := range s.buf {
		n += len(m.Key) + len(m.Value)
	}
	return n
}

// setGate makes the sends detached from now on wait until gate is closed
// (nil: none waits).
func (s *detachSink) setGate(gate chan struct{}) {
	s.mu.Lock()
	s.gate = gate
	s.mu.Unlock()
}

func (s *detachSink) Detach() func(context.Context) error {
	if len(s.buf) == 0 {
		return nil
	}
	out := s.buf
	s.buf = nil
	s.mu.Lock()
	gate := s.gate
	s.pending++
	s.mu.Unlock()
	return func(context.Context) error {
		if gate != nil {
			<-gate
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.sends++
		if s.fail[s.sends] {
			return errors.New("broker away")
		}
		for i := range out {
			if s.failRecs[len(s.sent)+i] {
				delete(s.failRecs, len(s.sent)+i)
				return errors.New("broker away")
			}
		}
		s.sent = append(s.sent, out...)
		s.pending--
		return nil
	}
}

// detachLog is an in-memory changelog whose sends check that every
// output's records detached before them are acknowledged.
type detachLog struct {
	detachSink
	outputs []*detachSink
	early   int // sends that found an output's records unacknowledged
}

func (l *detachLog) Detach() func(context.Context) error {
	send := l.detachSink.Detach()
	if send == nil {
		return nil
	}
	return func(ctx context.Context) error {
		for _, o := range l.outputs {
			o.mu.Lock()
			pending := o.pending
			o.mu.Unlock()
			if pending > 0 {
				l.early++
				break
			}
		}
		return send(ctx)
	}
}

func (l *detachLog) Ends(_ context.Context, parts []int32) (map[int32]int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ends := map[int32]int64{}
	for _, p := range parts {
		ends[p] = int64(len(l.sent))
	}
	return ends, nil
}

// openFlying opens a coordinator of four sources and partitions on out,
// whose outputs all detach, so that its commits fly.
func openFlying(t *testing.T, cfg Config, out Outputs) *Coordinator {
	t.Helper()
	c, err := NewCoordinator(cfg, openMemStore(t), out, perSource(4, 2))
	if err != nil {
		t.Fatal(err)
	}
	for p := range 4 {
		if _, err := c.Open(int32(p)); err != nil {
			t.Fatal(err)
		}
	}
	if !c.async {
		t.Fatal("every output detaches, yet commits do not fly")
	}
	return c
}

// TestFlightLogsAfterOutputs: a commit in flight sends the changelog's
// records only once every output has acknowledged its own, and none
// while one fails. A restart brings a partition's state up to the last
// complete commit in the changelog and resumes after the input it covers:
// the records that input made must be out already, or they are lost (a
// crash between the changelog's acknowledgement and the by-user topic's
// lost likes in the live service).
func TestFlightLogsAfterOutputs(t *testing.T) {
	recs := generated(t, nil)[:20_000]
	byUser := func(ev *event.Event) string { return ev.UserID }
	run := func(p int) int { return 97 + 13*p }
	scores := &detachSink{fail: map[int]bool{2: true, 5: true}}
	trending, dead := &detachSink{}, &detachSink{fail: map[int]bool{3: true}}
	log := &detachLog{outputs: []*detachSink{scores, trending, dead}}
	c := openFlying(t, DefaultConfig(), Outputs{Scores: scores, Trending: trending, DeadLetters: dead, Changelog: log})
	ctx := context.Background()
	failed := 0
	feedSources(t, c, recs, 4, byUser, run, func(err error) {
		var ce *CommitError
		if errors.As(err, &ce) {
			failed++
		} else if err != nil {
			t.Fatal(err)
		}
		if _, err := c.StartCommit(ctx); errors.As(err, &ce) {
			failed++
		} else if err != nil {
			t.Fatal(err)
		}
	})
	if failed == 0 {
		t.Fatal("no flight failed: the test shows nothing")
	}
	if log.sends < 5 {
		t.Fatalf("%d changelog sends, want many", log.sends)
	}
	if log.early > 0 {
		t.Errorf("%d of %d changelog sends went out while an output's records were not acknowledged", log.early, log.sends)
	}
}

// counting wraps a sink, as the live service's counters do.
type counting struct {
	Sink
	n int
}

func (c *counting) Write(m *Message) error { c.n++; return c.Sink.Write(m) }
func (c *counting) Unwrap() Sink           { return c.Sink }

// TestFlightsMatchCommits: commits and flushes that fly on their own
// goroutine while the partitions go on applying, some failing and flown
// again, some waited for when the outputs hold too much, with caches so small that every landing evicts while entries
// changed since the commit was written are in them, give the records of
// commits made in line, in the same order.
// Videos the cache lets go are read back from the store, or from those
// kept packed.
func TestFlightsMatchCommits(t *testing.T) {
	recs := generated(t, func(c *gen.Config) { c.LateShare = 0.001 })
	byUser := func(ev *event.Event) string { return ev.UserID }
	run := func(p int) int { return 97 + 13*p }
	want := runSources(t, DefaultConfig(), recs, 4, byUser, run)
	for _, packed := range []int64{0, 60_000} {
		t.Run(fmt.Sprintf("packed=%d", packed), func(t *testing.T) {
			flightsMatchCommits(t, recs, want, packed)
		})
	}
}

func flightsMatchCommits(t *testing.T, recs []Record, want testOutputs, packed int64) {
	byUser := func(ev *event.Event) string { return ev.UserID }
	run := func(p int) int { return 97 + 13*p }
	cfg := DefaultConfig()
	cfg.CacheVideos, cfg.CachePairs, cfg.MaxAccounts = 40, 500, 300
	cfg.PackedVideoBytes = packed
	scores := &detachSink{fail: map[int]bool{3: true}}
	trending, dead := &detachSink{}, &detachSink{fail: map[int]bool{2: true}}
	counted := &counting{Sink: scores}
	c := openFlying(t, cfg, Outputs{Scores: counted, Trending: trending, DeadLetters: dead})
	ctx := context.Background()
	var started, failed, flushes int
	check := func(err error) {
		var ce *CommitError
		if errors.As(err, &ce) {
			failed++ // as the service does, go on: it flies again
		} else if err != nil {
			t.Fatal(err)
		}
	}
	// A turn may commit in line too (the caches are full), landing the
	// flight in the air first.
	feedSources(t, c, recs, 4, byUser, run, func(err error) {
		check(err)
		switch flushes++; flushes % 5 {
		case 1:
			check(c.FlushOutputs(ctx))
			return
		case 2:
			check(c.Throttle(ctx, 1000))
			return
		}
		ok, err := c.StartCommit(ctx)
		if ok {
			started++
		}
		check(err)
	})
	if failed != 2 {
		t.Errorf("%d flights failed, want 2", failed)
	}
	if started < 10 {
		t.Errorf("%d commits started in flight, want many", started)
	}
	if c.Committing() {
		t.Error("a flight is still in the air after Finish")
	}
	sameMessages(t, "scores", want.scores.msgs, scores.sent)
	sameMessages(t, "trending", want.trending.msgs, trending.sent)
	sameMessages(t, "dead letters", want.dead.msgs, dead.sent)
	if counted.n != len(scores.sent) {
		t.Errorf("%d scores counted, %d sent", counted.n, len(scores.sent))
	}
}

// TestTrimWaitsForFlight: the caches let go what they hold unchanged
// since the last commit when they are full, without a commit, but not
// while that commit is in flight: what it wrote is not in the store until
// it lands, and a cache that let it go would read an older state back.
func TestTrimWaitsForFlight(t *testing.T) {
	recs := generated(t, nil)[:20_000]
	byUser := func(ev *event.Event) string { return ev.UserID }
	run := func(p int) int { return 97 + 13*p }
	want := runSources(t, DefaultConfig(), recs, 4, byUser, run)
	scores := &detachSink{}
	trending, dead := &detachSink{}, &detachSink{}
	c := openFlying(t, DefaultConfig(), Outputs{Scores: scores, Trending: trending, DeadLetters: dead})
	ctx := context.Background()
	held := func() (pairs, videos int) {
		for _, e := range c.engines {
			pairs, videos = pairs+e.pairs.Len(), videos+len(e.videos)
		}
		return pairs, videos
	}
	// full calls commitDue with bounds far below what the caches hold.
	full := func() bool {
		bounds := c.cfg
		defer func() { c.cfg = bounds }()
		c.cfg.CacheVideos, c.cfg.CachePairs = 8, 8
		return c.commitDue()
	}
	turns, checked := 0, 0
	feedSources(t, c, recs, 4, byUser, run, func(err error) {
		if err != nil {
			t.Fatal(err)
		}
		if turns++; turns%20 != 0 {
			return
		}
		if err := c.Land(ctx); err != nil {
			t.Fatal(err)
		}
		gate := make(chan struct{})
		scores.setGate(gate)
		started, err := c.StartCommit(ctx)
		scores.setGate(nil)
		if err != nil || !started {
			t.Fatalf("commit not started: %v", err)
		}
		p0, v0 := held()
		if !full() {
			t.Fatal("caches over their bounds with a commit in flight: no commit due")
		}
		if p, v := held(); p != p0 || v != v0 {
			t.Fatalf("with a commit in flight the caches went from %d pairs and %d videos to %d and %d", p0, v0, p, v)
		}
		close(gate)
		if err := c.Land(ctx); err != nil {
			t.Fatal(err)
		}
		if full() {
			t.Fatal("caches of entries all committed: a commit due")
		}
		if p, v := held(); p > 8 || v > 8 {
			t.Fatalf("caches of entries all committed trimmed to %d pairs and %d videos, want at most 8 of each", p, v)
		}
		checked++
	})
	if checked < 5 {
		t.Fatalf("%d checks, want many", checked)
	}
	sameMessages(t, "scores", want.scores.msgs, scores.sent)
	sameMessages(t, "trending", want.trending.msgs, trending.sent)
	sameMessages(t, "dead letters", want.dead.msgs, dead.sent)
}

// TestEvictKeepsDirty: a commit that lands while the partitions went on
// applying trims the caches of what it made durable only: videos and pairs
// changed since it was written stay, whatever the bounds.
func TestEvictKeepsDirty(t *testing.T) {
	e := engineWithVideos(t, 100, 0)
	for i := range 100 {
		id := fmt.Sprintf("v%d", i)
		if err := e.pairs.set(-1, store.PairKey(nil, id, "u"), &store.Pair{}); err != nil {
			t.Fatal(err)
		}
		if i%10 == 0 {
			e.videos[id].dirty = true
		} else {
			e.pairs.t.Val(i).dirty = false // as written by the commit
		}
	}
	e.evict(1, 1, 1)
	for i := 0; i < 100; i += 10 {
		id := fmt.Sprintf("v%d", i)
		if _, ok := e.videos[id]; !ok {
			t.Errorf("video %s changed since the commit was evicted", id)
		}
		if e.pairs.find(store.PairKey(nil, id, "u")) < 0 {
			t.Errorf("pair of %s changed since the commit was evicted", id)
		}
	}
	if len(e.videos) != 10 || e.pairs.Len() != 10 {
		t.Errorf("%d videos and %d pairs left, want the 10 changed of each", len(e.videos), e.pairs.Len())
	}
}

// TestEvictedVideosAreFreed checks that a video the cache let go is not
// kept alive by the engine, but as one of its few spares, emptied: the
// list of changed videos, cut after each write, once kept every video of
// its largest commit.
func TestEvictedVideosAreFreed(t *testing.T) {
	e := engineWithVideos(t, 100, 1000)
	write := func() {
		t.Helper()
		if err := e.write(e.part.NewWriter()); err != nil {
			t.Fatal(err)
		}
	}
	var gone []weak.Pointer[video]
	for id, v := range e.videos {
		e.markVideo(v)
		if id != "v0" {
			gone = append(gone, weak.Make(v))
		}
	}
	write() // a commit of every video
	e.markVideo(e.videos["v0"])
	write() // a commit of one
	e.markVideo(e.videos["v0"])
	e.evict(1, 1, 1)
	if len(e.videos) != 1 {
		t.Fatalf("%d videos left in the cache, want the one changed", len(e.videos))
	}
	runtime.GC()
	alive := 0
	for _, p := range gone {
		v := p.Value()
		if v == nil {
			continue
		}
		if !slices.Contains(e.spare, v) {
			alive++
		} else if v.ID != "" || v.Likes != 0 || len(v.Entries) != 0 {
			t.Errorf("a spare video holds state: %q, %d likes, %d like times", v.ID, v.Likes, len(v.Entries))
		}
	}
	if alive > 0 {
		t.Errorf("%d of %d videos evicted from the cache are still reachable", alive, len(gone))
	}
	if len(e.spare) != minSpareVideos {
		t.Errorf("%d spare videos kept, want %d", len(e.spare), minSpareVideos)
	}
	runtime.KeepAlive(e) // the engine is what must not hold them
}

// TestFlushBesideCommit: a flush flies while a commit's changelog and
// batch are still in the air, once the commit's outputs are acknowledged,
// so that outputs do not wait for them; the next commit waits for both.
// When both fail, they fly again as one, the flush's outputs first, and
// every output still holds each record once, in order.
func TestFlushBesideCommit(t *testing.T) {
	recs := generated(t, nil)[:30_000]
	byUser := func(ev *event.Event) string { return ev.UserID }
	run := func(p int) int { return 97 + 13*p }
	want := runSources(t, DefaultConfig(), recs, 4, byUser, run)
	scores := &detachSink{fail: map[int]bool{}}
	trending, dead := &detachSink{}, &detachSink{}
	log := &detachLog{detachSink: detachSink{fail: map[int]bool{}}, outputs: []*detachSink{scores, trending, dead}}
	c := openFlying(t, DefaultConfig(), Outputs{Scores: scores, Trending: trending, DeadLetters: dead, Changelog: log})
	ctx := context.Background()
	sends := func(s *detachSink) int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.sends
	}
	var gate chan struct{}
	turns, beside, failed := 0, 0, 0
	feedSources(t, c, recs, 4, byUser, run, func(err error) {
		if err != nil {
			t.Fatal(err)
		}
		switch turns++; turns % 20 {
		case 0:
			if err := c.Land(ctx); err != nil {
				t.Fatal(err)
			}
			// The gate holds each changelog send of the commit,
			// detached once its outputs are acknowledged.
			gate = make(chan struct{})
			log.setGate(gate)
			started, err := c.StartCommit(ctx)
			if err != nil || !started {
				t.Fatalf("commit not started: %v", err)
			}
			for !c.flight.outAcked.Load() {
				runtime.Gosched()
			}
		case 1:
			if gate == nil {
				return
			}
			defer func() { gate = nil; log.setGate(nil) }()
			if scores.BufferedBytes() == 0 { // nothing to flush beside it
				close(gate)
				if err := c.Land(ctx); err != nil {
					t.Fatal(err)
				}
				return
			}
			logged := sends(&log.detachSink)
			if (beside+failed)%2 == 1 {
				// The commit's changelog send fails once its gate
				// opens, and so does the flush's scores send.
				log.mu.Lock()
				log.fail[logged+1] = true
				log.mu.Unlock()
				scores.mu.Lock()
				scores.fail[scores.sends+1] = true
				scores.mu.Unlock()
			}
			if err := c.FlushOutputs(ctx); err != nil {
				t.Fatal(err)
			}
			b := c.beside
			if b == nil {
				t.Fatal("no flush beside a commit whose outputs are acknowledged")
			}
			<-b.done
			if scores.BufferedBytes() != 0 {
				t.Fatal("scores left behind by the flush")
			}
			if sends(&log.detachSink) != logged {
				t.Fatal("the changelog was sent while its gate was shut")
			}
			if started, err := c.StartCommit(ctx); started || err != nil {
				t.Fatalf("a commit started beside one in flight (err %v)", err)
			}
			if b.err == nil {
				beside++
			}
			close(gate)
			err := c.Land(ctx)
			var ce *CommitError
			if b.err != nil {
				if !errors.As(err, &ce) || c.failed == nil {
					t.Fatalf("flush and commit failed, yet Land returned %v and kept nothing to fly again", err)
				}
				if err := c.Land(ctx); err != nil {
					t.Fatalf("flown again: %v", err)
				}
				failed++
			} else if err != nil {
				t.Fatal(err)
			}
		}
	})
	if beside < 5 || failed < 5 {
		t.Fatalf("%d flushes beside a commit and %d failures of both, want many", beside, failed)
	}
	sameMessages(t, "scores", want.scores.msgs, scores.sent)
	sameMessages(t, "trending", want.trending.msgs, trending.sent)
	sameMessages(t, "dead letters", want.dead.msgs, dead.sent)
}

// TestCommitDueFliesBeside: where commits fly (run), a commit due for
// CommitEvery takes off and the partitions go on applying while it is in
// the air: with its changelog held back, turn after turn is applied,
// past CommitEvery, and no other commit starts. The outputs are those of
// commits in line.
func TestCommitDueFliesBeside(t *testing.T) {
	recs := generated(t, nil)[:30_000]
	byUser := func(ev *event.Event) string { return ev.UserID }
	run := func(p int) int { return 97 + 13*p }
	cfg := DefaultConfig()
	cfg.CommitEvery = 2_000
	want := runSources(t, cfg, recs, 4, byUser, run)
	scores, trending, dead := &detachSink{}, &detachSink{}, &detachSink{}
	log := &detachLog{outputs: []*detachSink{scores, trending, dead}}
	c := openFlying(t, cfg, Outputs{Scores: scores, Trending: trending, DeadLetters: dead, Changelog: log})
	ctx := context.Background()
	var (
		gate    chan struct{}
		release func()
		held    *flight
		beside  int // turns applied while a commit due was held in the air
		past    bool
	)
	turns := 0
	feedSources(t, c, recs, 4, byUser, run, func(err error) {
		if err != nil {
			t.Fatal(err)
		}
		switch turns++; {
		case gate == nil && turns%40 == 1 && turns < 200:
			// Hold the changelog of the next commit. Should a turn
			// wait for that commit, the watchdog lets it go on, to fail.
			if err := c.Land(ctx); err != nil {
				t.Fatal(err)
			}
			gate = make(chan struct{})
			log.setGate(gate)
			var once sync.Once
			release = func() { once.Do(func() { close(gate) }) }
			watchdog := time.AfterFunc(30*time.Second, func() {
				t.Error("a turn waited for the commit due in the air")
				release()
			})
			t.Cleanup(func() { watchdog.Stop() })
		case gate != nil && c.flight != nil && c.flight.w != nil && !c.flight.isDone():
			if held != nil && c.flight != held {
				t.Fatalf("another commit took off while one was in the air (turn %d, beside %d)", turns, beside)
			}
			held = c.flight
			beside++
			past = past || c.sinceCommit >= c.cfg.CommitEvery
			if turns%40 == 30 {
				release()
				log.setGate(nil)
				gate, held = nil, nil
				if err := c.Land(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
	if beside < 20 || !past {
		t.Fatalf("%d turns applied beside a commit due in the air (past CommitEvery: %v), want many and past it", beside, past)
	}
	sameMessages(t, "scores", want.scores.msgs, scores.sent)
	sameMessages(t, "trending", want.trending.msgs, trending.sent)
	sameMessages(t, "dead letters", want.dead.msgs, dead.sent)
}

// TestCommitSlices: with the partitions fed by topic and CommitSlices 2,
// each StartCommit commits partitions 0 and 2, then 1 and 3, in turn:
// their offsets are durable, with their state, and the others' stay at
// their last commit until their turn. Commit takes every partition.
func TestCommitSlices(t *testing.T) {
	recs := generated(t, nil)[:4_000]
	byUser := func(ev *event.Event) string { return ev.UserID }
	db := openMemStore(t)
	out := Outputs{Scores: &detachSink{}, Trending: &detachSink{}, DeadLetters: &detachSink{},
		ByUser: &detachSink{}, Repartition: &detachSink{}}
	c, err := NewCoordinator(DefaultConfig(), db, out, perSource(4, 2))
	if err != nil {
		t.Fatal(err)
	}
	for p := range 4 {
		if _, err := c.Open(int32(p)); err != nil {
			t.Fatal(err)
		}
	}
	c.CommitSlices = 2
	ctx := context.Background()
	// Committed offsets as a coordinator opened on the store finds them.
	stored := func() [4]int64 {
		t.Helper()
		var got [4]int64
		for p := range 4 {
			m, _, err := db.Partition(int32(p)).Meta()
			if err != nil {
				t.Fatal(err)
			}
			got[p] = m.Route.Offset
		}
		return got
	}
	var want [4]int64
	turn := 0
	feedSources(t, c, recs[:2_000], 4, byUser, func(int) int { return 50 }, func(err error) {
		if err != nil {
			t.Fatal(err)
		}
		ok, err := c.StartCommit(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return
		}
		slice := []int32{0, 2}
		if turn%2 == 1 {
			slice = []int32{1, 3}
		}
		turn++
		for _, p := range slice {
			want[p] = c.NextOffset(p)
		}
		if err := c.Land(ctx); err != nil {
			t.Fatal(err)
		}
		if got := stored(); got != want {
			t.Fatalf("commit %d (partitions %v): stored offsets %v, want %v", turn, slice, got, want)
		}
		for p := range int32(4) {
			if got := c.CommittedOffset(p); got != want[p] {
				t.Fatalf("commit %d: CommittedOffset(%d) = %d, want %d", turn, p, got, want[p])
			}
		}
	})
	if turn < 4 {
		t.Fatalf("%d commits in slices, want several", turn)
	}
	// Finish committed every partition.
	for p := range int32(4) {
		want[p] = c.NextOffset(p)
	}
	if got := stored(); got != want || want == [4]int64{} {
		t.Fatalf("after Finish: stored offsets %v, want %v", got, want)
	}
}
