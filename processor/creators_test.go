package processor

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/store"

	"github.com/viralityhq/virality/gen"
	"github.com/viralityhq/virality/scoring"
)

// creatorOutputs are a test's outputs with the creator sinks.
type creatorOutputs struct {
	testOutputs
	creators, rising *memSink
}

func newCreatorOutputs() creatorOutputs {
	return creatorOutputs{newTestOutputs(), &memSink{}, &memSink{}}
}

// openCreators opens a coordinator on db that writes to out, with every
// partition of topo open.
func openCreators(t *testing.T, cfg Config, db *store.DB, out creatorOutputs, topo Topology) *Coordinator {
	t.Helper()
	o := out.outputs()
	o.Creators, o.RisingCreators = out.creators, out.rising
	c, err := NewCoordinator(cfg, db, o, topo)
	if err != nil {
		t.Fatal(err)
	}
	for p := range topo.Partitions {
		if _, err := c.Open(int32(p)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

func runCreators(t *testing.T, cfg Config, recs []Record, topo Topology) creatorOutputs {
	t.Helper()
	out := newCreatorOutputs()
	c := openCreators(t, cfg, openMemStore(t), out, topo)
	if err := Run(context.Background(), c, &sliceSource{recs: recs, step: 500}, RunOptions{Decoders: 1}); err != nil {
		t.Fatal(err)
	}
	return out
}

type creatorRecord struct {
	Creator  string  `json:"creator_id"`
	TS       int64   `json:"ts"`
	Seq      int64   `json:"seq"`
	Model    string  `json:"model"`
	Momentum float64 `json:"momentum"`
	Baseline float64 `json:"baseline"`
	Likes    int64   `json:"likes"`
	Likes5m  int64   `json:"likes_5m"`
	Likes1h  int64   `json:"likes_1h"`
	Likes24h int64   `json:"likes_24h"`
	Videos1h int64   `json:"videos_liked_1h"`
	Region   string  `json:"region"`
}

// TestCreatorsRecomputation checks each creator's last record against a
// recomputation from the raw lines with plain maps, and the creator
// outputs for 1, 4 and 8 partitions against each other: with one worker
// the creator merger runs on the coordinator's goroutine, with two on
// its own (creatorPipe).
func TestCreatorsRecomputation(t *testing.T) {
	recs := generated(t, nil)
	cfg := DefaultConfig()
	tick := cfg.Tick.Milliseconds()

	var first creatorOutputs
	for i, n := range []int{1, 4, 8} {
		out := runCreators(t, cfg, recs, oneSource(n, min(n, 2)))
		if len(out.creators.msgs) == 0 || len(out.rising.msgs) == 0 {
			t.Fatalf("%d partitions: %d creator records, %d rising lists", n, len(out.creators.msgs), len(out.rising.msgs))
		}
		if i == 0 {
			first = out
			continue
		}
		sameMessages(t, fmt.Sprintf("creators, %d partitions", n), first.creators.msgs, out.creators.msgs)
		sameMessages(t, fmt.Sprintf("rising creators, %d partitions", n), first.rising.msgs, out.rising.msgs)
	}

	// The recomputation: per pair, the events sorted as the SPEC says,
	// folded into transitions of a standing like (+1 at a like, -1 at the
	// unlike that withdraws it), each at its like time, counted for the
	// event's creator at the first tick after the event.
	type ev struct {
		EventID string `json:"event_id"`
		Video   string `json:"video_id"`
		User    string `json:"user_id"`
		Creator string `json:"creator_id"`
		Action  string `json:"action"`
		TS      string `json:"ts"`
		Region  string `json:"region"`
		ts      int64
	}
	type transition struct {
		sign           int64
		likeTS, tickAt int64
		region, video  string
	}
	pairs := map[[2]string][]ev{}
	for _, r := range recs {
		var e ev
		if err := json.Unmarshal(r.Value, &e); err != nil {
			t.Fatal(err)
		}
		ts, err := time.Parse(time.RFC3339Nano, e.TS)
		if err != nil {
			t.Fatal(err)
		}
		e.ts = ts.UnixMilli()
		k := [2]string{e.Video, e.User}
		pairs[k] = append(pairs[k], e)
	}
	if len(first.dead.msgs) != 0 {
		t.Fatalf("%d dead letters: the workload should have none", len(first.dead.msgs))
	}
	byCreator := map[string][]transition{}
	for _, evs := range pairs {
		sort.Slice(evs, func(i, j int) bool {
			a, b := evs[i], evs[j]
			if a.ts != b.ts {
				return a.ts < b.ts
			}
			if a.Action != b.Action {
				return a.Action != "unlike"
			}
			return a.EventID < b.EventID
		})
		liked := false
		var like ev
		for _, e := range evs {
			at := (floorDiv(e.ts, tick) + 1) * tick
			switch {
			case e.Action == "unlike" && liked:
				liked = false
				byCreator[e.Creator] = append(byCreator[e.Creator], transition{-1, like.ts, at, like.Region, e.Video})
			case e.Action != "unlike" && !liked:
				liked, like = true, e
				byCreator[e.Creator] = append(byCreator[e.Creator], transition{+1, e.ts, at, e.Region, e.Video})
			}
		}
	}

	last := map[string]creatorRecord{}
	for _, m := range first.creators.msgs {
		var r creatorRecord
		if err := json.Unmarshal(m.Value, &r); err != nil {
			t.Fatal(err)
		}
		if string(m.Key) != r.Creator {
			t.Fatalf("record keyed %q is of creator %q", m.Key, r.Creator)
		}
		if p, ok := last[r.Creator]; ok && r.Seq != p.Seq+1 {
			t.Fatalf("creator %s: seq %d after %d", r.Creator, r.Seq, p.Seq)
		}
		last[r.Creator] = r
	}
	checked := 0
	for id, trs := range byCreator {
		var w creatorRecord
		w.Creator, w.Model = id, "momentum"
		regions := map[string]int64{}
		videos := map[string]bool{}
		var firstLike int64
		for _, x := range trs {
			w.TS = max(w.TS, x.tickAt)
			w.Likes += x.sign
			regions[x.region] += x.sign
			if x.sign > 0 && (firstLike == 0 || floorDiv(x.likeTS, minuteMS)*minuteMS < firstLike) {
				firstLike = floorDiv(x.likeTS, minuteMS) * minuteMS
			}
		}
		m := floorDiv(w.TS-1, minuteMS)
		h := floorDiv(w.TS-1, 3_600_000)
		for _, x := range trs {
			lm, lh := floorDiv(x.likeTS, minuteMS), floorDiv(x.likeTS, 3_600_000)
			if lm > m-5 && lm <= m {
				w.Likes5m += x.sign
			}
			if lm > m-60 && lm <= m {
				w.Likes1h += x.sign
				if x.sign > 0 {
					videos[x.video] = true
				}
			}
			if lh > h-24 && lh <= h {
				w.Likes24h += x.sign
			}
		}
		w.Videos1h = int64(len(videos))
		var best int64
		for r, n := range regions {
			if r != "" && (n > best || (n == best && r < w.Region)) {
				w.Region, best = r, n
			}
		}
		in := scoring.CreatorInput{TS: w.TS, FirstLike: firstLike, Likes5m: w.Likes5m, Likes24h: w.Likes24h}
		w.Momentum, w.Baseline = scoring.CreatorMomentum(&in)
		got, ok := last[id]
		if !ok {
			t.Errorf("creator %s: no record", id)
			continue
		}
		w.Seq = got.Seq
		// Floats as the record writes them.
		w.Momentum, w.Baseline = roundTrip(w.Momentum), roundTrip(w.Baseline)
		if got != w {
			t.Errorf("creator %s:\n engine     %+v\n recomputed %+v", id, got, w)
		}
		checked++
	}
	if len(last) != len(byCreator) {
		t.Errorf("%d creators have records, %d recomputed", len(last), len(byCreator))
	}
	t.Logf("checked %d creators (%d records, %d rising lists)", checked, len(first.creators.msgs), len(first.rising.msgs))
}

func roundTrip(f float64) float64 {
	var g float64
	if err := json.Unmarshal(appendFloat(nil, f), &g); err != nil {
		panic(err)
	}
	return g
}

// TestCreatorsRestart: a run killed at every few commits and resumed ends
// with the creator outputs of an uninterrupted run, with reports and
// tallies cut into small chunks.
func TestCreatorsRestart(t *testing.T) {
	recs := generated(t, func(c *gen.Config) { c.Events = 40_000; c.Duration = 2 * time.Hour; c.CrewCampaigns = 1 })
	cfg := DefaultConfig()
	cfg.CommitEvery = 3_000
	want := runCreators(t, cfg, recs, oneSource(4, 2))

	// Small chunks: reports and tallies of many chunks, whose outputs are
	// those of whole ones. Commits every 100 likes, a few within a tick:
	// the stored tally is a chunk per commit of what changed, and a crash
	// between them must find all of it.
	defer func(n int) { creatorChunkBytes = n }(creatorChunkBytes)
	creatorChunkBytes = 300
	cfg.CommitEvery = 100
	db := openMemStore(t)
	out := newCreatorOutputs()
	open := func() *Coordinator { return openCreators(t, cfg, db, out, oneSource(4, 2)) }
	for _, at := range []int{5_000, 2_999, 9_001, 24_000, 24_350} {
		src := &stopAfter{sliceSource: sliceSource{recs: recs, step: 97}, budget: at}
		if err := Run(context.Background(), open(), src, RunOptions{Decoders: 2}); err != errCrash {
			t.Fatalf("run until crash: %v", err)
		}
	}
	if err := Run(context.Background(), open(), &sliceSource{recs: recs}, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	sameMessages(t, "creators after restarts", want.creators.msgs, out.creators.msgs)
	sameMessages(t, "rising creators after restarts", want.rising.msgs, out.rising.msgs)
}

// TestCreatorTallyChunks commits the tally after every few changes, a
// chunk of what changed each time, and reads it back between commits: what
// is read is the tally, through ticks that empty it.
func TestCreatorTallyChunks(t *testing.T) {
	e := openOneEngine(t)
	defer func(n int) { creatorChunkBytes = n }(creatorChunkBytes)
	creatorChunkBytes = 200 // a commit's changes in several chunks
	rng := rand.New(rand.NewPCG(3, 4))
	vs := map[string]*video{}
	for step := range 400 {
		for range rng.IntN(30) {
			ev := event.Event{CreatorID: fmt.Sprintf("c%d", rng.IntN(20)), VideoID: fmt.Sprintf("v%d", rng.IntN(50))}
			l := store.Like{TS: int64(rng.IntN(5)) * minuteMS, Region: []string{"eu", "us"}[rng.IntN(2)]}
			sign := int64(1)
			if rng.IntN(3) == 0 {
				sign = -1
			}
			e.creatorLike(videoOf(vs, ev.VideoID), &ev, &l, sign)
		}
		if rng.IntN(8) == 0 && !e.ctally.empty() {
			e.closeCreators(int64(step) * minuteMS)
		}
		w := e.part.NewWriter()
		if err := e.saveCreatorTally(w); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
		counts, videos := e.ctally.standing()
		if err := e.loadCreatorTally(); err != nil {
			t.Fatal(err)
		}
		gotCounts, gotVideos := e.ctally.standing()
		if !maps.Equal(counts, gotCounts) || !maps.Equal(videos, gotVideos) {
			t.Fatalf("step %d: read back %d counts and %d videos, want %d and %d", step,
				len(gotCounts), len(gotVideos), len(counts), len(videos))
		}
		if e.ctally.empty() != (len(counts) == 0 && len(videos) == 0) {
			t.Fatalf("step %d: empty() %v with %d counts and %d videos", step, e.ctally.empty(), len(counts), len(videos))
		}
	}
}

// TestCreatorReportChunks: a report's chunks, in order, hold its counts and
// videos, each chunk within the bound unless one item passes it alone,
// numbered from 0; a chunk may hold the last counts and the first videos.
func TestCreatorReportChunks(t *testing.T) {
	defer func(n int) { creatorChunkBytes = n }(creatorChunkBytes)
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, limit := range []int{1, 40, 100, 333, 1 << 20} {
		creatorChunkBytes = limit
		for _, n := range [][2]int{{0, 0}, {1, 0}, {0, 1}, {7, 0}, {0, 9}, {13, 17}, {200, 3}} {
			r := &creatorReport{Tick: 42}
			for i := range n[0] {
				r.Counts = append(r.Counts, creatorCount{fmt.Sprintf("c%d", i), "eu", int64(i), rnd.Int64N(9) + 1})
			}
			for i := range n[1] {
				r.Videos = append(r.Videos, creatorVideo{fmt.Sprintf("c%d", i), fmt.Sprintf("v%d", rnd.IntN(1000)), 1, 2})
			}
			var counts []creatorCount
			var videos []creatorVideo
			chunks := r.chunks()
			for i, c := range chunks {
				if c.Tick != 42 || c.Chunk != int32(i) {
					t.Fatalf("limit %d, %v: chunk %d is tick %d, number %d", limit, n, i, c.Tick, c.Chunk)
				}
				size := 0
				for _, x := range c.Counts {
					size += len(x.Creator) + len(x.Region) + 24
				}
				for _, x := range c.Videos {
					size += len(x.Creator) + len(x.Video) + 24
				}
				if size > limit && len(c.Counts)+len(c.Videos) > 1 {
					t.Errorf("limit %d, %v: chunk %d holds %d bytes in %d items", limit, n, i, size, len(c.Counts)+len(c.Videos))
				}
				counts = append(counts, c.Counts...)
				videos = append(videos, c.Videos...)
			}
			if fmt.Sprint(counts) != fmt.Sprint(r.Counts) || fmt.Sprint(videos) != fmt.Sprint(r.Videos) {
				t.Errorf("limit %d, %v: chunks hold %d counts and %d videos, not the report's %d and %d",
					limit, n, len(counts), len(videos), len(r.Counts), len(r.Videos))
			}
			if limit == 1<<20 && len(chunks) != 1 {
				t.Errorf("%v: %d chunks of a report within the bound", n, len(chunks))
			}
		}
	}
}

// TestCreatorsCommitCadence: the creator outputs do not depend on when
// commits come. A creator whose last change was not emitted keeps what
// its final record counts, however many commits pass before the input
// ends (a commit once pruned it to the merger's latest tick, so that the
// final record of a creator last liked over an hour before a commit
// counted fewer likes in its last hour).
func TestCreatorsCommitCadence(t *testing.T) {
	recs := generated(t, func(c *gen.Config) { c.Events = 60_000; c.Videos = 3_000; c.Duration = 8 * time.Hour })
	cfg := DefaultConfig()
	cfg.CommitEvery = 1 << 30
	want := runCreators(t, cfg, recs, oneSource(2, 2))
	cfg.CommitEvery = 700
	got := runCreators(t, cfg, recs, oneSource(2, 2))
	sameMessages(t, "creators, commits every 700 records", want.creators.msgs, got.creators.msgs)
	sameMessages(t, "rising creators, commits every 700 records", want.rising.msgs, got.rising.msgs)
}

// TestCreatorsHeldCold: creators encoded as soon as a tick is merged, and
// all but those changed since the last commit let go to the store at each
// commit, through restarts, give the creator outputs of a run that keeps
// every creator decoded.
func TestCreatorsHeldCold(t *testing.T) {
	recs := generated(t, func(c *gen.Config) {
		c.Events, c.Videos, c.Duration, c.CrewCampaigns = 40_000, 20_000, 3*time.Hour, 1
	})
	cfg := DefaultConfig()
	cfg.CommitEvery = 500
	defer func(ms int64) { creatorCoolMS = ms }(creatorCoolMS)
	creatorCoolMS = math.MaxInt64 / 4
	want := runCreators(t, cfg, recs, oneSource(4, 2))

	creatorCoolMS, cfg.CreatorBytes = 0, 0
	db := openMemStore(t)
	out := newCreatorOutputs()
	var read, letGo int64
	open := func() *Coordinator { return openCreators(t, cfg, db, out, oneSource(4, 2)) }
	count := func(c *Coordinator) {
		cm := c.creators.Load()
		read += cm.read
		letGo += cm.letGo
	}
	for _, at := range []int{7_000, 19_001} {
		c := open()
		src := &stopAfter{sliceSource: sliceSource{recs: recs, step: 97}, budget: at}
		if err := Run(context.Background(), c, src, RunOptions{Decoders: 2}); err != errCrash {
			t.Fatalf("run until crash: %v", err)
		}
		count(c)
	}
	c := open()
	if err := Run(context.Background(), c, &sliceSource{recs: recs}, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	count(c)
	sameMessages(t, "creators held cold", want.creators.msgs, out.creators.msgs)
	sameMessages(t, "rising creators held cold", want.rising.msgs, out.rising.msgs)
	if read < 1_000 || letGo < 1_000 {
		t.Errorf("%d creators let go to the store and %d read back: the test does not hold them cold", letGo, read)
	}
	t.Logf("%d creators let go, %d read back; %d creator records, %d rising lists", letGo, read, len(out.creators.msgs), len(out.rising.msgs))
}

// standing returns a tally's counts not 0 and its videos, as maps.
func (t *creatorTally) standing() (map[creatorCountKey]int64, map[creatorVideoKey][2]int64) {
	counts, videos := map[creatorCountKey]int64{}, map[creatorVideoKey][2]int64{}
	for _, c := range t.counts {
		if c.n != 0 {
			counts[c.key] = c.n
		}
	}
	for _, v := range t.videos {
		videos[v.key] = [2]int64{v.first, v.last}
	}
	return counts, videos
}

// TestCreatorReportOrder checks that a tick's report lists its counts and
// videos in the order of their strings, whatever order they were tallied
// in, including creators that share their first 8 bytes, are prefixes of
// one another or hold zero bytes.
func TestCreatorReportOrder(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 9))
	creators := []string{"c", "c1", "c1\x00", "c1\x00x", "c10", "c1000000", "c10000000", "c10000001", "c100000000", "d", "\xff\xff", "creator-long-name-1", "creator-long-name-2"}
	regions := []string{"", "BR", "US"}
	var e Engine
	vs := map[string]*video{}
	for range 5000 {
		c := creators[r.IntN(len(creators))]
		ev := event.Event{CreatorID: c, VideoID: fmt.Sprintf("v%d", r.IntN(40))}
		l := store.Like{TS: int64(r.IntN(5)) * minuteMS, Region: regions[r.IntN(len(regions))]}
		e.creatorLike(videoOf(vs, ev.VideoID), &ev, &l, 1-2*int64(r.IntN(4)/3))
	}
	rep := e.ctally.report(10 * minuteMS)
	if len(rep.Counts) == 0 || len(rep.Videos) == 0 {
		t.Fatalf("report of %d counts, %d videos: want some of each", len(rep.Counts), len(rep.Videos))
	}
	if !slices.IsSortedFunc(rep.Counts, func(a, b creatorCount) int {
		return cmp.Or(strings.Compare(a.Creator, b.Creator), strings.Compare(a.Region, b.Region), cmp.Compare(a.Minute, b.Minute))
	}) {
		t.Errorf("counts not in the order of (creator, region, minute): %v", rep.Counts)
	}
	if !slices.IsSortedFunc(rep.Videos, func(a, b creatorVideo) int {
		return cmp.Or(strings.Compare(a.Creator, b.Creator), strings.Compare(a.Video, b.Video))
	}) {
		t.Errorf("videos not in the order of (creator, video): %v", rep.Videos)
	}
}

// BenchmarkCreatorReport closes a tick of 25,000 likes over 16,000 videos
// of 1,600 creators and 5 regions, as an engine of B3's 8 does at 20,000
// likes/s.
func BenchmarkCreatorReport(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	evs := make([]event.Event, 25_000)
	likes := make([]store.Like, len(evs))
	regions := []string{"US", "BR", "IN", "DE", "JP"}
	for i := range evs {
		v := r.IntN(16_000)
		evs[i] = event.Event{CreatorID: fmt.Sprintf("c%d", v/10), VideoID: fmt.Sprintf("v%d", v)}
		likes[i] = store.Like{TS: int64(r.IntN(10_000)), Region: regions[r.IntN(len(regions))]}
	}
	var e Engine
	vs := map[string]*video{}
	for i := range evs {
		e.creatorLike(videoOf(vs, evs[i].VideoID), &evs[i], &likes[i], 1)
	}
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for i := range evs {
			e.creatorLike(videoOf(vs, evs[i].VideoID), &evs[i], &likes[i], 1)
		}
		b.StartTimer()
		e.closeCreators(10_000)
		e.box.creators = e.box.creators[:0]
	}
}

// videoOf returns the video id of vs, made on first use, as an engine's
// cache holds it.
func videoOf(vs map[string]*video, id string) *video {
	v := vs[id]
	if v == nil {
		v = &video{}
		vs[id] = v
	}
	return v
}

// TestCreatorTallyHints: the tally a video's hints help fill is the one
// plain lookups give, however the likes of a video change creator, region
// and minute, and through ticks that empty the tally and reloads that
// fill it in another order.
func TestCreatorTallyHints(t *testing.T) {
	e := openOneEngine(t)
	r := rand.New(rand.NewPCG(5, 6))
	vs := map[string]*video{}
	counts, videos := map[creatorCountKey]int64{}, map[creatorVideoKey][2]int64{}
	for step := range 3000 {
		ev := event.Event{CreatorID: fmt.Sprintf("c%d", r.IntN(6)), VideoID: fmt.Sprintf("v%d", r.IntN(12))}
		l := store.Like{TS: int64(r.IntN(3)) * minuteMS, Region: []string{"eu", "us", ""}[r.IntN(3)]}
		sign := 1 - 2*int64(r.IntN(3)/2)
		e.creatorLike(videoOf(vs, ev.VideoID), &ev, &l, sign)
		m := l.TS / minuteMS
		k := creatorCountKey{ev.CreatorID, l.Region, m}
		if counts[k] += sign; counts[k] == 0 {
			delete(counts, k)
		}
		if sign > 0 {
			vk := creatorVideoKey{ev.CreatorID, ev.VideoID}
			if x, ok := videos[vk]; ok {
				videos[vk] = [2]int64{min(x[0], m), max(x[1], m)}
			} else {
				videos[vk] = [2]int64{m, m}
			}
		}
		switch r.IntN(100) {
		case 0:
			e.closeCreators(int64(step) * minuteMS)
			clear(counts)
			clear(videos)
		case 1:
			w := e.part.NewWriter()
			if err := e.saveCreatorTally(w); err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			if err := e.loadCreatorTally(); err != nil {
				t.Fatal(err)
			}
		}
		gotCounts, gotVideos := e.ctally.standing()
		if !maps.Equal(counts, gotCounts) || !maps.Equal(videos, gotVideos) {
			t.Fatalf("step %d: tally of %v and %v, want %v and %v", step, gotCounts, gotVideos, counts, videos)
		}
	}
}

// openOneEngine opens partition 0 of one source, on a store in memory.
func openOneEngine(t *testing.T) *Engine {
	t.Helper()
	c, err := NewCoordinator(DefaultConfig(), openMemStore(t), newTestOutputs().outputs(), oneSource(1, 1))
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// marshalFormat1 is creator.marshal as format 1 wrote it: every minute,
// hour and tick whole.
func marshalFormat1(c *creator) []byte {
	b := []byte{creatorsFormat}
	for _, x := range []int64{c.likes, c.first, c.seq, c.lastEmit} {
		b = binary.AppendVarint(b, x)
	}
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(c.lastScore))
	b = binary.AppendVarint(b, c.changed)
	b = append(b, 0)
	if c.pending {
		b[len(b)-1] = 1
	}
	b = binary.AppendUvarint(b, uint64(len(c.regions)))
	for _, r := range c.regions {
		b = appendStr(b, r.Region)
		b = binary.AppendVarint(b, r.Likes)
	}
	for _, bs := range [][]bucket{c.minutes, c.hours} {
		b = binary.AppendUvarint(b, uint64(len(bs)))
		for _, x := range bs {
			b = binary.AppendVarint(b, x.idx)
			b = binary.AppendVarint(b, x.n)
		}
	}
	return c.videos.appendTo(b, 0)
}

// TestCreatorStateFormats decodes random creators' states as marshal
// writes them (format 2) and as format 1 did, which state directories
// written before still hold: both read back as the creator, which encodes
// again to the same bytes, as does one decoded into the arrays of
// creators let go (creatorSpares). Format 2 is the shorter for a creator
// with likes in several hours, and a cut or corrupt encoding does not
// decode.
func TestCreatorStateFormats(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var long1, long2 int
	var spares creatorSpares
	held := func() (n int) {
		for k := range spareCaps {
			n += len(spares.bs[k]) + len(spares.videos[k])
		}
		return n
	}
	reused := 0
	for i := range 2000 {
		tick := int64(1_780_000_000_000) + rng.Int64N(1e9)
		c := &creator{id: fmt.Sprintf("c%d", i), likes: rng.Int64N(1e6), seq: rng.Int64N(1e4),
			changed: tick, first: tick - rng.Int64N(1e10), lastEmit: tick - rng.Int64N(1e8),
			lastScore: rng.Float64() * 100, pending: rng.IntN(2) == 0}
		if i%7 == 0 {
			c.changed, c.first, c.lastEmit = 0, 0, math.MinInt64 // extremes round-trip too
		}
		for _, r := range []string{"US", "JP", "BR"}[:rng.IntN(4)] {
			c.regions = append(c.regions, store.RegionCount{Region: r, Likes: rng.Int64N(1000)})
		}
		m, h := tickMinute(tick), floorDiv(tick-1, 3_600_000)
		for j := range rng.IntN(60) {
			if rng.IntN(3) == 0 {
				c.minutes = append(c.minutes, bucket{m - 60 + int64(j), 1 + rng.Int64N(50)})
			}
		}
		for j := range rng.IntN(25) {
			c.hours = append(c.hours, bucket{h - 24 + int64(j), 1 + rng.Int64N(500)})
		}
		for range rng.IntN(2 * maxListedVideos) {
			c.videos.set(fmt.Sprintf("v%d", rng.IntN(1000)), m-rng.Int64N(60))
		}
		enc2 := c.marshal(nil)
		enc1 := marshalFormat1(c)
		for _, enc := range [][]byte{enc2, enc1} {
			got, err := unmarshalCreator(c.id, enc, map[string]string{})
			if err != nil {
				t.Fatalf("creator %d, format %d: %v", i, enc[0], err)
			}
			if again := got.marshal(nil); !slices.Equal(again, enc2) {
				t.Fatalf("creator %d, format %d: encodes again as %x, want %x", i, enc[0], again, enc2)
			}
			if got.likes != c.likes || got.first != c.first || got.changed != c.changed || got.lastEmit != c.lastEmit ||
				got.seq != c.seq || got.lastScore != c.lastScore || got.pending != c.pending ||
				!slices.Equal(got.minutes, c.minutes) || !slices.Equal(got.hours, c.hours) ||
				!slices.Equal(got.regions, c.regions) || got.videos.len() != c.videos.len() {
				t.Fatalf("creator %d, format %d: read back as %+v, want %+v", i, enc[0], got, c)
			}
		}
		// Decoded into the arrays of creators let go before, as the
		// merger does (their old contents still there past their length).
		before := held()
		got, err := decodeCreator(c.id, enc2, nil, &spares)
		if err != nil {
			t.Fatalf("creator %d, decoded into spares: %v", i, err)
		}
		if held() < before {
			reused++
		}
		if again := got.marshal(nil); !slices.Equal(again, enc2) {
			t.Fatalf("creator %d, decoded into spares: encodes again as %x, want %x", i, again, enc2)
		}
		spares.keep(got)
		if len(got.minutes)+len(got.hours)+got.videos.len() != 0 {
			t.Fatalf("creator %d: a creator let go kept its arrays", i)
		}
		if len(c.hours) >= 4 && c.changed != 0 {
			long1 += len(enc1)
			long2 += len(enc2)
		}
		for n := 0; i%50 == 0 && n < len(enc2); n++ {
			if _, err := unmarshalCreator(c.id, enc2[:n], nil); err == nil {
				t.Fatalf("creator %d: cut to %d of %d bytes, decoded", i, n, len(enc2))
			}
		}
	}
	if long2 >= long1 {
		t.Errorf("creators with likes in several hours: format 2 took %d bytes, format 1 %d", long2, long1)
	}
	if _, err := unmarshalCreator("c", []byte{3}, nil); err == nil {
		t.Error("format 3 decoded")
	}
	if reused < 1000 {
		t.Errorf("%d of 2,000 creators decoded into spare arrays, want most", reused)
	}
	t.Logf("creators with likes in 4 hours or more: %d bytes in format 1, %d in format 2; %d decoded into spares", long1, long2, reused)
}

// TestNoCreators: with Config.NoCreators (a backfill without creator
// outputs) the partitions tally no creator likes and the store holds no
// creator, and the video scores and trending lists are byte for byte
// those of a run that computes creator momentum. A creator output given
// with NoCreators is refused.
func TestNoCreators(t *testing.T) {
	recs := generated(t, nil)
	topo := oneSource(4, 2)
	with := runCreators(t, DefaultConfig(), recs, topo)
	if len(with.creators.msgs) == 0 {
		t.Fatal("no creator records: the workload should have creators")
	}

	cfg := DefaultConfig()
	cfg.NoCreators = true
	db := openMemStore(t)
	out := newTestOutputs()
	c := openCoordinator(t, cfg, db, out, topo)
	if err := Run(context.Background(), c, &sliceSource{recs: recs, step: 500}, RunOptions{Decoders: 1}); err != nil {
		t.Fatal(err)
	}
	sameMessages(t, "scores", with.scores.msgs, out.scores.msgs)
	sameMessages(t, "trending lists", with.trending.msgs, out.trending.msgs)
	stored := 0
	for p := int32(groupPartition); p < int32(topo.Partitions); p++ {
		part := db.Partition(p)
		if err := part.ScanCreators(func(string, []byte) error { stored++; return nil }); err != nil {
			t.Fatal(err)
		}
		if err := part.ScanCreatorTally(func([]byte) error { stored++; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if stored != 0 {
		t.Fatalf("%d creator records or tallies stored without creators", stored)
	}

	o := out.outputs()
	o.Creators = &memSink{}
	if _, err := NewCoordinator(cfg, openMemStore(t), o, topo); err == nil {
		t.Fatal("a creators output with NoCreators was accepted")
	}
}

// TestSettingsDiff: a state of other settings says which differ.
func TestSettingsDiff(t *testing.T) {
	for _, c := range []struct{ was, now, want string }{
		{"model=a tick=10", "model=a tick=10 creator-momentum=off", "creator-momentum=off now, not then"},
		{"model=a tick=10 creator-momentum=off", "model=a tick=10", "creator-momentum=off then, not now"},
		{"model=a tick=10", "model=b tick=20", "model=a then, b now; tick=10 then, 20 now"},
		{"model=a", "model=a", "model=a against model=a"},
	} {
		if got := settingsDiff(c.was, c.now); got != c.want {
			t.Errorf("settingsDiff(%q, %q) = %q, want %q", c.was, c.now, got, c.want)
		}
	}
}
