package processor

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/viralityhq/virality/gen"
	"github.com/viralityhq/virality/store"
)

// stopAfter yields records until a budget runs out, then fails as a crash
// would: the engine stops mid-batch without committing.
type stopAfter struct {
	sliceSource
	budget int
}

var errCrash = fmt.Errorf("simulated crash")

func (s *stopAfter) Next(ctx context.Context, buf []Record) ([]Record, error) {
	if s.budget <= 0 {
		return buf[:0], errCrash
	}
	recs, err := s.sliceSource.Next(ctx, buf)
	s.budget -= len(recs)
	return recs, err
}

// TestRestartAfterCrash stops the engine at several points without a final
// commit, drops everything it held in memory, and resumes on the same
// state and outputs: the outputs end byte-identical to an uninterrupted
// run, so no like is lost or counted twice and nothing emitted differs.
func TestRestartAfterCrash(t *testing.T) {
	recs := generated(t, func(c *gen.Config) { c.LateShare = 0.001; c.BadShare = 0.001 })
	cfg := DefaultConfig()
	cfg.CommitEvery = 4_000
	want := runRecords(t, cfg, recs)

	for _, crashes := range [][]int{{10_000}, {3_999, 4_001, 30_123}, {59_000}} {
		t.Run(fmt.Sprint(crashes), func(t *testing.T) {
			db := openMemStore(t)
			out := newTestOutputs()
			for _, at := range crashes {
				g := openGroup(t, cfg, db, out)
				src := &stopAfter{sliceSource: sliceSource{recs: recs, step: 97}, budget: at}
				if err := Run(context.Background(), g, src, RunOptions{Decoders: 2}); err != errCrash {
					t.Fatalf("run until crash: %v", err)
				}
			}
			g := openGroup(t, cfg, db, out)
			if err := Run(context.Background(), g, &sliceSource{recs: recs}, RunOptions{}); err != nil {
				t.Fatal(err)
			}
			sameOutputs(t, "uninterrupted", "with crashes", want, out)
		})
	}
}

// TestHeldEventsInStore: after commits at many points of a run, the store
// holds exactly the events each partition has taken and not yet applied
// (none the release point passed, so none is applied twice on resume), and
// a finished run leaves none.
func TestHeldEventsInStore(t *testing.T) {
	recs := generated(t, func(c *gen.Config) { c.LateShare = 0.01 })
	cfg := DefaultConfig()
	cfg.CommitEvery = 1_000
	db := openMemStore(t)
	out := newTestOutputs()
	held := 0
	for _, at := range []int{2_500, 7_000, 13_000, 21_000, 30_000, 41_000} {
		g := openGroup(t, cfg, db, out)
		src := &stopAfter{sliceSource: sliceSource{recs: recs, step: 97}, budget: at}
		if err := Run(context.Background(), g, src, RunOptions{}); err != errCrash {
			t.Fatalf("run until crash: %v", err)
		}
		// Resume on what was committed: what is loaded as held must be
		// after the release point.
		g = openGroup(t, cfg, db, out)
		for _, id := range g.Partitions() {
			e, _ := g.Engine(id)
			for _, h := range e.buf.h {
				r := h.r
				if r.ev.TS < e.released {
					t.Fatalf("crash at %d: partition %d holds an event at %d, before its release point %d", at, id, r.ev.TS, e.released)
				}
			}
			held += len(e.buf.h)
		}
	}
	if held == 0 {
		t.Fatal("no event held at any of the commits: the test checks nothing")
	}
	g := openGroup(t, cfg, db, out)
	if err := Run(context.Background(), g, &sliceSource{recs: recs}, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, id := range g.Partitions() {
		n := 0
		if err := db.Partition(id).ScanBuffered(func([]byte) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("partition %d: %d held events left in the store after the run", id, n)
		}
	}
}

// TestSmallCaches: caches far smaller than the state (a few videos, pairs
// and accounts, evicted at every commit and read back from the store, or
// from the videos kept packed) give byte-identical outputs, and the video
// caches stay within their bytes. A crash halfway makes the resumed run
// build its filter of keys from the store: the videos, pairs and accounts
// it does not list are not read.
func TestSmallCaches(t *testing.T) {
	recs := generated(t, func(c *gen.Config) { c.LateShare = 0.001 })
	cfg := DefaultConfig()
	cfg.CommitEvery = 2_000
	want := runRecords(t, cfg, recs)

	// None packed, some (most videos the cache lets go are read back
	// from the store), and all.
	for _, packed := range []int64{0, 60_000, 64 << 20} {
		t.Run(fmt.Sprintf("packed=%d", packed), func(t *testing.T) {
			cfg := cfg
			cfg.CacheVideos, cfg.CachePairs, cfg.MaxAccounts = 40, 500, 300
			cfg.PackedVideoBytes = packed
			out, g := runCrashedHalfway(t, cfg, recs)
			sameOutputs(t, "with large caches", "with small ones", want, out)
			e, _ := g.Engine(0)
			// Twice: videos taken since the last pass get a second chance.
			e.evict(cfg.CacheVideos, cfg.CachePairs, cfg.MaxAccounts)
			e.evict(cfg.CacheVideos, cfg.CachePairs, cfg.MaxAccounts)
			if total, limit := e.videoCacheBytes(), int64(cfg.CacheVideos)*VideoBytes; total > limit {
				t.Errorf("video cache holds %d bytes, above its bound of %d", total, limit)
			}
			// The count kept as videos come and are written is what they hold.
			if e.videoBytes != e.videoCacheBytes() {
				t.Errorf("video cache counted at %d bytes, holds %d", e.videoBytes, e.videoCacheBytes())
			}
			if e.packed.bytes() > e.packed.max {
				t.Errorf("packed videos take %d bytes, above their bound of %d", e.packed.bytes(), e.packed.max)
			}
			if packed > 0 && (e.packed.Len() == 0 || e.packed.taken == 0) {
				t.Errorf("%d videos kept packed within %d bytes, %d taken back", e.packed.Len(), e.packed.max, e.packed.taken)
			}
			// A clean video packs as what the store holds of it (the
			// record it was last written with, not encoded again).
			for _, v := range e.videos {
				b := v.AppendPacked(nil)
				if v.dirty || len(v.AllEntries(nil)) > 16 {
					continue // packed with what it tracks of its buckets of like times
				}
				sv, ok, err := e.part.Video(v.ID)
				if err != nil || !ok || !bytes.Equal(b, sv.AppendPacked(nil)) {
					t.Errorf("video %s packs as other than the store holds (%v, %v)", v.ID, ok, err)
				}
			}
			if e.stage.acc.t.Len() > cfg.MaxAccounts {
				t.Errorf("account cache holds %d accounts, above its bound of %d", e.stage.acc.t.Len(), cfg.MaxAccounts)
			}
		})
	}
}

// TestVideoCacheBytes: videos with many likes of the last day are evicted
// by their bytes, though their number is within the count.
func TestVideoCacheBytes(t *testing.T) {
	e := engineWithVideos(t, 100, 1000) // 16 KB of like times each
	e.evict(1000, 1000, 1000)           // 100 videos are within 1000, 1.6 MB is not within 800 KB
	if total := e.videoCacheBytes(); total > 1000*VideoBytes || len(e.videos) == 0 {
		t.Errorf("%d videos of %d bytes left in the cache; bound %d bytes", len(e.videos), e.videoCacheBytes(), 1000*VideoBytes)
	}
}

// TestVideoCachePopular: a video taken since the last pass whose like
// times pass the cache's bound in bytes stays while the cache holds less
// than twice the bound, and goes beyond it; one not taken goes.
func TestVideoCachePopular(t *testing.T) {
	e := engineWithVideos(t, 2, 1000) // 16 KB of like times each
	if _, err := e.video("v0"); err != nil {
		t.Fatal(err)
	}
	e.evict(15, 1000, 1000) // 12 KB: twice the bound holds one video, not two
	if _, ok := e.videos["v0"]; !ok {
		t.Error("the video taken since the last pass went, though within twice the bound")
	}
	if _, ok := e.videos["v1"]; ok {
		t.Error("the video not taken stayed above the bound")
	}
	if _, err := e.video("v0"); err != nil {
		t.Fatal(err)
	}
	e.evict(5, 1000, 1000) // 4 KB: twice the bound does not hold it
	if _, ok := e.videos["v0"]; ok {
		t.Error("the video taken since the last pass stayed above twice the bound")
	}
	if _, ok := e.packed.take("v0"); !ok {
		t.Error("the video let go was not kept packed")
	}
}

// TestVideoCacheSecondChance: eviction keeps the videos taken from the
// cache since it last passed, and drops the others first; when all were
// taken, some still go.
func TestVideoCacheSecondChance(t *testing.T) {
	e := engineWithVideos(t, 100, 0)
	hot := map[string]bool{}
	for i := range 20 {
		id := fmt.Sprintf("v%d", i*5)
		hot[id] = true
		if _, err := e.video(id); err != nil {
			t.Fatal(err)
		}
	}
	e.evict(80, 1000, 1000) // down to 60 videos
	if len(e.videos) != 60 {
		t.Fatalf("%d videos left, want 60", len(e.videos))
	}
	for id := range hot {
		if _, ok := e.videos[id]; !ok {
			t.Errorf("video %s, taken from the cache, was evicted before videos never taken", id)
		}
	}
	// Every video taken again: a pass clears the marks, then evicts.
	for id := range e.videos {
		if _, err := e.video(id); err != nil {
			t.Fatal(err)
		}
	}
	e.evict(40, 1000, 1000) // down to 30
	if len(e.videos) != 30 {
		t.Fatalf("%d videos left, want 30", len(e.videos))
	}
	if e.videoBytes != e.videoCacheBytes() {
		t.Errorf("video cache counted at %d bytes, holds %d", e.videoBytes, e.videoCacheBytes())
	}
}

// engineWithVideos returns partition 0's engine with n videos v0, v1, ...
// in its cache, each with entries like times.
func engineWithVideos(t *testing.T, n, entries int) *Engine {
	t.Helper()
	g := openGroup(t, DefaultConfig(), openMemStore(t), newTestOutputs())
	e, err := g.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		v, err := loadedVideo(store.NewVideo(fmt.Sprintf("v%d", i)))
		if err != nil {
			t.Fatal(err)
		}
		if entries > 0 {
			v.Entries = make([]store.Entry, entries)
		}
		e.videos[v.ID] = v
		e.counted(v)
	}
	return e
}

// sameOutputs fails unless two runs' outputs are byte-identical.
func sameOutputs(t *testing.T, wantName, gotName string, want, got testOutputs) {
	t.Helper()
	for name, pair := range map[string][2]*memSink{
		"scores": {want.scores, got.scores}, "trending": {want.trending, got.trending}, "dead letters": {want.dead, got.dead},
	} {
		a, b := pair[0].msgs, pair[1].msgs
		if len(a) != len(b) {
			t.Fatalf("%s: %d records %s, %d %s", name, len(a), wantName, len(b), gotName)
		}
		for i := range a {
			if !bytes.Equal(a[i].Value, b[i].Value) {
				t.Fatalf("%s record %d differs:\n%s\n%s", name, i, a[i].Value, b[i].Value)
			}
		}
	}
}

// videoCacheBytes sums the bytes of the cached videos as they are now,
// against which the engine's running count (videoBytes) is checked.
func (e *Engine) videoCacheBytes() int64 {
	var total int64
	for _, v := range e.videos {
		total += v.bytes()
	}
	return total
}

// runCrashedHalfway runs recs on a fresh store until a crash halfway,
// then opens the group again and runs them to the end. It returns the
// outputs of both runs and the group of the second.
func runCrashedHalfway(t *testing.T, cfg Config, recs []Record) (testOutputs, *Coordinator) {
	t.Helper()
	db := openMemStore(t)
	out := newTestOutputs()
	src := &stopAfter{sliceSource: sliceSource{recs: recs, step: 97}, budget: len(recs) / 2}
	if err := Run(context.Background(), openGroup(t, cfg, db, out), src, RunOptions{}); err != errCrash {
		t.Fatalf("run until crash: %v", err)
	}
	g := openGroup(t, cfg, db, out)
	if err := Run(context.Background(), g, &sliceSource{recs: recs}, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	return out, g
}

// TestSealedLikeTimes runs a generated workload (late likes, unlikes of
// old likes, campaigns) with every whole bucket of like times sealed as
// soon as it is written, through a crash and small caches that let videos
// go packed and read them back, and checks that the outputs are those of
// a run that seals only what the lateness no longer reaches.
func TestSealedLikeTimes(t *testing.T) {
	recs := generated(t, func(c *gen.Config) { c.LateShare = 0.002 })
	cfg := DefaultConfig()
	cfg.CommitEvery = 2_000
	want := runRecords(t, cfg, recs)

	defer func(m int64) { sealMarginMS = m }(sealMarginMS)
	sealMarginMS = -cfg.Lateness.Milliseconds() - cfg.Reorder.Milliseconds()
	for _, small := range []bool{false, true} {
		t.Run(fmt.Sprintf("small=%v", small), func(t *testing.T) {
			cfg := cfg
			if small {
				cfg.CacheVideos, cfg.PackedVideoBytes = 40, 200_000
			}
			out, g := runCrashedHalfway(t, cfg, recs)
			sameOutputs(t, "sealed after the lateness", "sealed at once", want, out)
			e, _ := g.Engine(0)
			sealed := 0
			for _, v := range e.videos {
				sealed += v.SealedLen()
			}
			if !small && sealed == 0 {
				t.Error("no like time is held sealed")
			}
		})
	}
}

// TestAccountEpochsDropped: over ten hours of likes, the store drops the
// accounts' records of the epochs no like can read any more, and small
// caches, which read accounts back from the store, and a crash halfway
// still give the outputs of large caches.
func TestAccountEpochsDropped(t *testing.T) {
	recs := generated(t, func(c *gen.Config) {
		c.Duration = 10 * time.Hour
		c.LateShare = 0.001
	})
	cfg := DefaultConfig()
	cfg.CommitEvery = 2_000
	want := runRecords(t, cfg, recs)
	cfg.CacheVideos, cfg.CachePairs, cfg.MaxAccounts = 40, 500, 300
	out, g := runCrashedHalfway(t, cfg, recs)
	sameOutputs(t, "with large caches", "with small ones", want, out)
	e, _ := g.Engine(0)
	eps, err := e.part.AccountEpochs()
	if err != nil {
		t.Fatal(err)
	}
	first := epochOf(floorDiv(gen.DefaultConfig().Start.UnixMilli(), e.stage.bucket))
	if len(eps) == 0 || eps[0] < first+2 || len(eps) > 4 {
		t.Errorf("the store holds accounts of epochs %v; the likes began in %d, and only the last three or four may be left", eps, first)
	}
	if e.stage.acc.reads == 0 {
		t.Error("no account was read back from the store: the test checks nothing")
	}
}
