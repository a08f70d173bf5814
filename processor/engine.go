// Package processor is virality's dataflow: routers judge each input
// record and route it by video; per-partition engines apply the events in
// event-time order to exact state and write score records and trending
// lists to their outboxes; a coordinator owns the sinks, the commits (with
// the changelog) and the trending merge. Files and Kafka plug in through
// [Source], [Sink] and [Changelog]; the same dataflow serves backfill,
// replay and the live service.
package processor

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/scoring"
	"github.com/viralityhq/virality/store"
)

// Stats count what the engine did.
type Stats struct {
	Records   int64 // input records taken
	Applied   int64 // events applied to state
	Repeated  int64 // events a partition had taken already (after a crash)
	Reordered int64 // events that came after the release point passed them
	Buffered  int64 // events held in reorder buffers
	// HeldForWeight: likes the account stages hold until the buckets their
	// weights read are closed. LateWeighed: likes weighed after their own
	// bucket had closed (from a source that was idle), whose likes no
	// earlier weight counted.
	HeldForWeight int64
	LateWeighed   int64
	DeadLetters   int64
	DeadByReason  map[string]int64
	StrayUnlikes  int64 // unlikes with no standing like
	IgnoredLikes  int64 // likes while a like stood
	Scores        int64 // score records emitted
	Snapshots     int64 // trending records emitted
	Commits       int64
}

// video is a video's state in the cache, with its windowed sums, which are
// derived from the like times and not stored.
type video struct {
	store.Video
	win     [scoring.NumWindows]window
	lock    *lockTracker // lockstep.go; nil: not tracked
	dirty   bool
	pending bool  // the pending marker must be written
	sized   int64 // bytes() when last counted in Engine.videoBytes
	used    bool  // taken from the cache since eviction last passed it
	tally   tallyHint
	// from is, per window, where the last clock change found the first
	// like time inside it (see entryAfter): a hint, checked before use.
	from [scoring.NumWindows]int32
}

// window is a video's standing likes in one window: how many, their
// weights' sum, and how many each damping signal damped (bit i of
// scoring.Damping in damped[i]).
type window struct {
	n, w   int64
	damped [2]int64
}

// add adds (sign +1) or removes (-1) a like of weight w damped by d.
func (x *window) add(w int64, d scoring.Damping, sign int64) {
	x.n += sign
	x.w += sign * w
	for i := range x.damped {
		if d&(1<<i) != 0 {
			x.damped[i] += sign
		}
	}
}

// damping names the signals that damped at least one of the window's likes.
func (x *window) damping() scoring.Damping {
	var d scoring.Damping
	for i, c := range x.damped {
		if c > 0 {
			d |= 1 << i
		}
	}
	return d
}

// A window has a count for every damping signal (this fails to compile
// when it has too few).
const _ = uint(1<<len(window{}.damped) - 1 - int(scoring.DampedAccountRate|scoring.DampedLockstep))

// sealMarginMS is how far before the lateness a video's like times stay
// out of its sealed ones: a like later than the lateness (from a source
// whose clock trails another's) unseals them, which costs a decoding of
// every sealed like time after it.
var sealMarginMS int64 = 60_000

// VideoBytes is the memory a cached video takes on average, for the
// bound of the video cache in bytes: its record, windows and map entry,
// and about 25 like times of the last day (16 bytes each).
const VideoBytes = 800

// bytes estimates the memory v holds.
func (v *video) bytes() int64 {
	b := int64(400+len(v.ID)+16*cap(v.Entries)+32*cap(v.Regions)+cap(v.Lockstep)) + v.lock.bytes() + v.TrackedBytes() + v.SealedBytes() + v.WrittenBytes()
	for _, d := range v.Decay {
		b += 16 * int64(cap(d))
	}
	return b
}

// counted counts v's bytes anew in e.videoBytes: when it enters the cache
// and when it is written, after every change.
func (e *Engine) counted(v *video) {
	n := v.bytes()
	e.videoBytes += n - v.sized
	v.sized = n
}

// bufKey names a held event in the store.
type bufKey struct{ ts, seq int64 }

// Engine owns the state of one partition of videos: it takes the events
// routed to it from every source, applies them in event-time order once
// its watermark passes them, and writes what they produce (score records,
// its trending lists at each tick, its progress through the ticks) to its
// outbox. It knows nothing of sinks, commits or other partitions: the
// coordinator drains its outbox and commits its state. One goroutine at a
// time runs it; it takes no locks.
//
// Order. Each source promises, through the largest event time it has
// seen (srcMax), that none of its later records lies more than the
// lateness before it. The engine holds events in a reorder buffer and
// applies those before its release point, the smallest srcMax of its
// active sources minus the reorder window, sorted by routedLess. Within
// the window the order of application, and so every output, depends only
// on the events, not on how sources interleaved: live, replay and
// backfill, over any number of partitions and instances, apply the same
// events in the same order. An event that arrives after the release point
// passed it (more disorder than the window) is applied at once: the state
// stays exact, as pairs are order-independent, but outputs may differ.
//
// Invariants. The watermark (the smallest srcMax of all its sources,
// minus the lateness) never passes an event still to come, so pairs and
// accounts can drop what no later event can need. Between commits the
// caches hold the only copy of changed state, so nothing dirty is ever
// evicted.
type Engine struct {
	cfg   Config
	id    int32
	model scoring.Model
	part  *store.Partition
	meta  store.Meta

	lateness, reorder, tick, horizon, interval, bucket int64
	// sealAfter: a video's like times this far behind its clock, which
	// likes within the lateness do not reach, are held sealed
	// (store.Video.Seal) once written.
	sealAfter int64

	inbox    []*routed // routed here since the last step
	spares   spares    // routed records done with, to route here again
	sources  []int32   // every source that feeds the partition
	inputs   map[int32]*store.InputPos
	buf      reorder
	savedSeq int64     // BufSeq of the last commit: held events after it are not in the store
	unsaved  []*routed // scratch for write
	stored   []bufKey  // held events in the store, to delete once applied
	released int64     // release point so far: events before it are applied
	quiet    bool      // every source idle, and held-back scores emitted since
	savedRel int64     // release point of the last commit

	videos      map[string]*video
	videoBytes  int64         // the cached videos' bytes, each as last written (counted)
	packed      *packedVideos // videos the cache let go, packed (packed.go)
	pbuf        []byte
	dirtyVideos []*video
	spare       []*video // let go, for reading others into (spareVideo)
	pairs       *pairCache
	pr          store.Pair // the pair apply works on
	pkey        []byte     // its key
	filter      *filter
	stage       *stage // the account stage of the partition's users
	rank        *ranking
	writtenOnly bool // lists only at written ticks (Topology.WrittenListsOnly)
	// partials: the lists go to the partials topic, encoded at once into
	// the outbox, so that the ranking reuses its arrays (ranking.reuse).
	partials bool

	box outbox
	// ctally: creator likes applied since the last closed tick (creators.go).
	ctally       creatorTally
	ctallyChunks int32 // chunks of the tally in the store
	sentNext     int64 // next tick last sent as progress to the partials topic
	stats        Stats
	key          []byte
	buf2         []byte
	in           scoring.Input // scratch of input
}

// newEngine opens the engine of one partition on its committed state. It
// is fed by the given sources.
func newEngine(cfg Config, fingerprint string, id int32, part *store.Partition, sources, stageSources []int32, filterBits int) (*Engine, error) {
	model, _ := scoring.Lookup(cfg.Model)
	e := &Engine{
		cfg:      cfg,
		id:       id,
		model:    model,
		part:     part,
		lateness: cfg.Lateness.Milliseconds(),
		reorder:  cfg.Reorder.Milliseconds(),
		tick:     cfg.Tick.Milliseconds(),
		horizon:  cfg.TrendingHorizon.Milliseconds(),
		interval: cfg.EmitInterval.Milliseconds(),
		videos:   map[string]*video{},
		packed:   newPackedVideos(0),
		pairs:    newPairCache(),
		filter:   newFilter(filterBits),
		inputs:   map[int32]*store.InputPos{},
		stats:    Stats{DeadByReason: map[string]int64{}},
	}
	e.bucket = max(accountBucketMS, e.lateness)
	e.sealAfter = e.lateness + e.reorder + sealMarginMS
	e.rank = newRanking(e.tick, e.horizon)
	meta, ok, err := part.Meta()
	if err != nil {
		return nil, fmt.Errorf("read state of partition %d: %w", id, err)
	}
	if ok && meta.Fingerprint != fingerprint {
		return nil, fmt.Errorf("processor: the state of partition %d was built with other settings than these (%s): use the same settings or a fresh state directory", id, settingsDiff(meta.Fingerprint, fingerprint))
	}
	e.meta = meta
	e.meta.Fingerprint = fingerprint
	if !ok {
		e.meta.Stage.Closed = math.MinInt64
	}
	if e.stage, err = newStage(cfg, id, part, stageSources, len(sources), &e.meta.Stage, e.bucket); err != nil {
		return nil, fmt.Errorf("open the account stage of partition %d: %w", id, err)
	}
	e.stage.acc.filter = e.filter
	e.stage.spares = &e.spares
	e.savedSeq = meta.BufSeq
	for i := range e.meta.Inputs {
		in := e.meta.Inputs[i]
		e.inputs[in.Source] = &in
	}
	e.setSources(sources)
	e.released = e.releasePoint()
	e.savedRel = e.released
	if !ok {
		return e, nil
	}
	if err := part.ScanPairs(func(k []byte) { e.filter.add(k) }); err != nil {
		return nil, fmt.Errorf("load pair filter of partition %d: %w", id, err)
	}
	if err := part.ScanVideoKeys(func(k []byte) { e.filter.add(k) }); err != nil {
		return nil, fmt.Errorf("load pair filter of partition %d: %w", id, err)
	}
	if err := part.ScanAccountKeys(func(k []byte) { e.filter.add(k) }); err != nil {
		return nil, fmt.Errorf("load pair filter of partition %d: %w", id, err)
	}
	if err := part.ScanCandidates(func(c store.Candidate) error { e.rank.load(c); return nil }); err != nil {
		return nil, fmt.Errorf("load trending candidates of partition %d: %w", id, err)
	}
	if err := e.stage.open(); err != nil {
		return nil, fmt.Errorf("load the account stage of partition %d: %w", id, err)
	}
	if err := e.loadCreatorTally(); err != nil {
		return nil, fmt.Errorf("load creator likes of partition %d: %w", id, err)
	}
	err = part.ScanBuffered(func(v []byte) error {
		r, err := decodeRouted(v)
		if err != nil {
			return err
		}
		e.buf.push(r)
		e.stored = append(e.stored, bufKey{r.ev.TS, r.seq})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load reorder buffer of partition %d: %w", id, err)
	}
	return e, nil
}

// setSources names the sources that feed the partition; the release point
// waits for each of them.
func (e *Engine) setSources(sources []int32) {
	e.sources = slices.Clone(sources)
	for _, s := range sources {
		if e.inputs[s] == nil {
			e.inputs[s] = &store.InputPos{Source: s}
		}
	}
}

// Watermark is the partition's watermark in ms (0 before any event).
func (e *Engine) Watermark() int64 {
	if low := e.low(); low > 0 && low < math.MaxInt64 {
		return low - e.lateness
	}
	return 0
}

// Stats returns the counters so far, the account stage's included. The
// map is shared: read it only from the goroutine that runs the engine.
func (e *Engine) Stats() Stats {
	s := e.stats
	s.Buffered = int64(e.buf.len())
	s.Repeated += e.stage.repeated
	s.HeldForWeight = int64(e.stage.held.len())
	s.LateWeighed = e.stage.lateWeighed
	return s
}

// low is the smallest largest-event-time of the sources: 0 while one has
// reported nothing.
func (e *Engine) low() int64 {
	low := int64(math.MaxInt64)
	for _, s := range e.sources {
		low = min(low, e.inputs[s].MaxTS)
	}
	return low
}

// idle reports whether every source of the partition is idle.
func (e *Engine) idle() bool {
	for _, s := range e.sources {
		if !e.inputs[s].Idle {
			return false
		}
	}
	return true
}

// releasePoint is the event time before which every event is applied:
// the reorder window before the smallest event time of the active
// sources. While one has said nothing yet, nothing is released; once all
// are idle (caught up and quiet, live only), everything they sent is, so
// that the last likes before a pause are not held back.
func (e *Engine) releasePoint() int64 {
	low, high, active := int64(math.MaxInt64), int64(0), false
	for _, s := range e.sources {
		in := e.inputs[s]
		high = max(high, in.MaxTS)
		if in.Idle {
			continue
		}
		active = true
		low = min(low, in.MaxTS)
	}
	switch {
	case !active && high > 0:
		return max(e.released, high+1)
	case !active || low == 0:
		return e.released
	}
	return max(e.released, low-e.reorder)
}

func (e *Engine) watermark() int64 {
	if low := e.low(); low > 0 && low < math.MaxInt64 {
		return low - e.lateness
	}
	return math.MinInt64
}

// take offers an event to the partition. An event the partition already
// took from its source (repeated after a crash) is skipped.
func (e *Engine) take(r *routed) error {
	in := e.inputs[r.src]
	if in == nil {
		return fmt.Errorf("processor: partition %d got an event from source %d, which does not feed it", e.id, r.src)
	}
	if r.off < in.Offset {
		e.stats.Repeated++
		e.spares.keep(r)
		return nil
	}
	in.Offset = r.off + 1
	in.MaxTS = max(in.MaxTS, r.srcMax)
	in.Idle = false
	e.quiet = false
	e.stats.Records++
	if r.ev.TS < e.released {
		e.stats.Reordered++
		if err := e.applyEvent(r); err != nil {
			return err
		}
		e.spares.keep(r)
		return nil
	}
	e.meta.BufSeq++
	r.seq = e.meta.BufSeq
	e.buf.push(r)
	return nil
}

// takeInbox takes the events and progress markers sent here since the
// last step, in order.
func (e *Engine) takeInbox() error {
	for i, r := range e.inbox {
		e.inbox[i] = nil
		if r.marker {
			e.progress(r.src, r.srcMax, r.idle)
			e.spares.keep(r)
			continue
		}
		if err := e.take(r); err != nil {
			return err
		}
	}
	e.inbox = e.inbox[:0]
	return nil
}

// progress records a source's progress without an event for this
// partition: how far it has read and its largest event time, or that it
// is idle (caught up and quiet), so that it holds back no tick.
func (e *Engine) progress(src int32, maxTS int64, idle bool) {
	if in := e.inputs[src]; in != nil {
		in.MaxTS = max(in.MaxTS, maxTS)
		in.Idle = idle
	}
}

// release applies the held events before the release point, in order,
// and closes the ticks it reaches.
func (e *Engine) release() error {
	r := e.releasePoint()
	if r <= e.released {
		return nil
	}
	for {
		ev, ok := e.buf.popBefore(r)
		if !ok {
			break
		}
		if err := e.applyEvent(ev); err != nil {
			return err
		}
		e.spares.keep(ev)
	}
	e.released = r
	return e.closeTicks(r)
}

// finish applies every held event: the input has ended.
func (e *Engine) finish() error {
	for {
		ev, ok := e.buf.popBefore(math.MaxInt64)
		if !ok {
			break
		}
		if err := e.applyEvent(ev); err != nil {
			return err
		}
	}
	e.released = max(e.released, e.meta.MaxTS+1)
	e.closeCreators(e.meta.NextTick)
	e.box.next = math.MaxInt64
	return nil
}

func (e *Engine) applyEvent(r *routed) error {
	ev := &r.ev
	if ev.TS > e.meta.MaxTS {
		if err := e.advance(ev.TS); err != nil {
			return err
		}
	}
	e.stats.Applied++
	return e.apply(ev, r.weight, &r.keys)
}

// advance moves the largest applied event time to ts, first closing every
// tick it reaches.
func (e *Engine) advance(ts int64) error {
	if e.meta.NextTick == 0 {
		e.meta.NextTick = (floorDiv(ts, e.tick) + 1) * e.tick
	}
	for ts >= e.meta.NextTick {
		if e.rank.empty() && e.ctally.empty() {
			// Nothing to list until this event: skip the quiet ticks.
			e.meta.NextTick = (floorDiv(ts, e.tick) + 1) * e.tick
			break
		}
		e.closeCreators(e.meta.NextTick)
		if e.rank.empty() {
			e.meta.NextTick += e.tick
			continue
		}
		e.snapshot(e.meta.NextTick)
		e.meta.NextTick += e.tick
	}
	e.meta.MaxTS = ts
	e.box.next = e.meta.NextTick
	return nil
}

// closeTicks closes the ticks up to upTo: every event before them is
// applied, so the partition's lists at them are final.
func (e *Engine) closeTicks(upTo int64) error {
	if e.meta.NextTick == 0 {
		return nil
	}
	for e.meta.NextTick <= upTo && !(e.rank.empty() && e.ctally.empty()) {
		e.closeCreators(e.meta.NextTick)
		if e.rank.empty() {
			e.meta.NextTick += e.tick
			continue
		}
		e.snapshot(e.meta.NextTick)
		e.meta.NextTick += e.tick
	}
	if e.meta.NextTick <= upTo {
		e.meta.NextTick = (floorDiv(upTo, e.tick) + 1) * e.tick
	}
	e.box.next = e.meta.NextTick
	return nil
}

// apply applies an event; a like with the weight its account stage gave
// and the lockstep keys of its account.
func (e *Engine) apply(ev *event.Event, w int64, keys *lockKeys) error {
	pi, err := e.pair(ev.VideoID, ev.UserID)
	if err != nil {
		return err
	}
	v, err := e.video(ev.VideoID)
	if err != nil {
		return err
	}
	pr := &e.pr
	before := *pr
	beforeLike := before.Like
	changed := e.setClock(v, ev.TS)
	wm := e.watermark()
	switch ev.Action {
	case event.Like:
		var d scoring.Damping
		if w < scoring.WeightOne {
			d |= scoring.DampedAccountRate
		}
		if e.lockstep(v, ev.TS, keys, !before.EverLiked) {
			d |= scoring.DampedLockstep
			w = min(w, scoring.LockstepWeight)
		}
		if applyLike(pr, store.Like{TS: ev.TS, Weight: w, Damp: d, Region: ev.Region, EventID: ev.EventID}, wm) {
			e.stats.IgnoredLikes++
		}
		if v.FirstLike == 0 || ev.TS < v.FirstLike {
			v.FirstLike = ev.TS
			changed = true
		}
	case event.Unlike:
		if applyUnlike(pr, ev.TS, wm) {
			e.stats.StrayUnlikes++
		}
	}
	if err := e.pairs.set(pi, e.pkey, pr); err != nil {
		return err
	}
	if !before.EverLiked && pr.EverLiked {
		v.Unique++
		changed = true
	}
	if before.Liked != pr.Liked || beforeLike.TS != pr.Like.TS || beforeLike.Weight != pr.Like.Weight || beforeLike.Damp != pr.Like.Damp || beforeLike.Region != pr.Like.Region {
		if before.Liked {
			e.standing(v, &beforeLike, -1)
			e.creatorLike(v, ev, &beforeLike, -1)
		}
		if pr.Liked {
			e.standing(v, &pr.Like, +1)
			e.creatorLike(v, ev, &pr.Like, +1)
		}
		changed = true
	}
	if changed {
		return e.changed(v)
	}
	return nil
}

// setClock moves a video's clock to ts if later: likes leave the windows
// they no longer lie in, and like times and decay epochs too old to matter
// are dropped.
func (e *Engine) setClock(v *video, ts int64) bool {
	if ts <= v.Clock {
		return false
	}
	old := v.Clock
	v.Clock = ts
	sealedEnd := v.SealedEnd()
	for i, w := range scoring.WindowMS {
		if old-w < sealedEnd {
			win := &v.win[i]
			v.EachSealed(i, old-w, ts-w, func(en store.Entry) { win.add(int64(en.Weight), en.Damp, -1) })
		}
		// The like times that leave the window are those from the first
		// inside it at the old clock on; they are removed one by one
		// anyway, so walking to the first inside it now costs no more.
		hi := v.entryAfter(i, old-w)
		for ; hi < len(v.Entries) && v.Entries[hi].TS <= ts-w; hi++ {
			en := &v.Entries[hi]
			v.win[i].add(int64(en.Weight), en.Damp, -1)
		}
		v.from[i] = int32(hi)
	}
	if cut := v.from[scoring.W24h]; cut > 0 {
		v.Entries = v.Entries[cut:]
		for i := range v.from {
			v.from[i] -= cut // the shorter windows start after the day's
		}
	}
	v.DropSealed(ts - scoring.WindowMS[scoring.W24h])
	for h, hl := range scoring.HalfLifeMS {
		v.Decay[h] = scoring.DecayPrune(v.Decay[h], ts, hl)
	}
	e.markVideo(v)
	return true
}

// entryAfter returns the index of the first like time after t, as
// searchEntries does, found at v.from[i] when that is where it is: a clock
// change walks each window's start forward from where the last one left
// it, and a like time added or removed since then only makes the hint
// miss. Nine binary searches a clock change, over a popular video's
// thousands of like times, were half of what changing it cost.
func (v *video) entryAfter(i int, t int64) int {
	h, es := int(v.from[i]), v.Entries
	if h >= 0 && h <= len(es) && (h == 0 || es[h-1].TS <= t) && (h == len(es) || es[h].TS > t) {
		return h
	}
	return searchEntries(es, t)
}

// searchEntries returns the index of the first entry with time after t.
func searchEntries(es []store.Entry, t int64) int {
	lo, hi := 0, len(es)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if es[m].TS <= t {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// standing adds (sign +1) or removes (-1) a standing like from a video.
func (e *Engine) standing(v *video, like *store.Like, sign int64) {
	l := v.counted(like)
	v.Likes += sign
	if l.Region != "" {
		addRegion(&v.Video, l.Region, sign)
	}
	if l.TS > v.Clock-scoring.WindowMS[scoring.W24h] {
		en := store.Entry{TS: l.TS, Weight: int32(l.Weight), Damp: l.Damp}
		found := true
		if l.TS < v.SealedEnd() && sign < 0 {
			// An unlike of a like time sealed: out of its bucket, which
			// the next write rewrites.
			found = v.SealedRemove(en)
		} else {
			if l.TS < v.SealedEnd() {
				v.Unseal(l.TS) // a like later than the lateness allows for
			}
			// Most likes are the video's latest: no search for those.
			i := len(v.Entries)
			if i > 0 && v.Entries[i-1].TS >= l.TS {
				i = searchEntries(v.Entries, l.TS-1)
			}
			// Entries with this time sit at [i, j); keep them sorted by
			// weight, then damping.
			for i < len(v.Entries) && compareEntries(v.Entries[i], en) < 0 {
				i++
			}
			if sign > 0 {
				v.Entries = append(v.Entries, store.Entry{})
				copy(v.Entries[i+1:], v.Entries[i:])
				v.Entries[i] = en
			} else if i < len(v.Entries) && v.Entries[i] == en {
				v.Entries = append(v.Entries[:i], v.Entries[i+1:]...)
			} else {
				found = false
			}
			if found {
				v.TimesChanged(l.TS)
			}
		}
		if found {
			for k, w := range scoring.WindowMS {
				if l.TS > v.Clock-w {
					v.win[k].add(l.Weight, l.Damp, sign)
				}
			}
		}
	}
	for h, hl := range scoring.HalfLifeMS {
		v.Decay[h] = scoring.DecayAdd(v.Decay[h], l.TS, hl, sign < 0)
	}
}

func addRegion(v *store.Video, region string, sign int64) {
	for i := range v.Regions {
		if v.Regions[i].Region == region {
			v.Regions[i].Likes += sign
			if v.Regions[i].Likes == 0 {
				v.Regions = append(v.Regions[:i], v.Regions[i+1:]...)
			}
			return
		}
	}
	if sign > 0 {
		v.Regions = append(v.Regions, store.RegionCount{Region: region, Likes: sign})
	}
}

// homeRegion is the region with the most standing likes; ties go to the
// smaller name, so the choice does not depend on arrival order.
func homeRegion(v *store.Video) string {
	best := ""
	var n int64
	for _, rc := range v.Regions {
		if rc.Likes > n || (rc.Likes == n && rc.Region < best) {
			best, n = rc.Region, rc.Likes
		}
	}
	return best
}

// input returns the model's input for v at ts, in the engine's scratch
// (valid until the next call): passed to the model, an interface, a
// value of its own escaped to the heap at every change of a video.
func (e *Engine) input(v *video, ts int64) *scoring.Input {
	e.in = inputOf(v, ts)
	return &e.in
}

func inputOf(v *video, ts int64) scoring.Input {
	in := scoring.Input{TS: ts, FirstLike: v.FirstLike, Likes: v.Likes, UniqueLikers: v.Unique}
	for i := range v.win {
		in.Windows[i] = v.win[i].n
		in.Weighted[i] = v.win[i].w
		in.Damping[i] = v.win[i].damping()
	}
	for h, hl := range scoring.HalfLifeMS {
		in.Rates[h] = scoring.DecayRate(v.Decay[h], ts, hl)
	}
	return in
}

// changed scores a video whose state changed, emits a record if the
// emission policy says so, and updates its trending candidate.
func (e *Engine) changed(v *video) error {
	e.markVideo(v)
	if v.Unique == 0 {
		// Only unlikes so far: there is nothing to score.
		return nil
	}
	in := e.input(v, v.Clock)
	score := e.model.Score(in)
	listed := score
	if v.judging(e.cfg.TrendingMinLikers, e.cfg.TrendingMinAge.Milliseconds()) {
		listed = 0
	}
	e.rank.update(v.ID, listed, v.Clock, homeRegion(&v.Video))
	if e.shouldEmit(v, score) {
		return e.emit(v, in, score)
	}
	if !v.Pending {
		v.Pending = true
		v.pending = true
	}
	return nil
}

func (e *Engine) shouldEmit(v *video, score float64) bool {
	if e.cfg.EmitEveryChange || v.Seq == 0 || v.Clock-v.LastEmitTS >= e.interval {
		return true
	}
	last := v.LastScore
	if last == score {
		return false
	}
	if last == 0 {
		return true
	}
	d := (score - last) / last
	return d > e.cfg.EmitThreshold || -d > e.cfg.EmitThreshold
}

func (e *Engine) emit(v *video, in *scoring.Input, score float64) error {
	v.Seq++
	v.LastEmitTS = in.TS
	v.LastScore = score
	if v.Pending {
		v.Pending = false
		v.pending = true
	}
	e.markVideo(v)
	e.buf2 = appendScore(e.buf2[:0], v.ID, v.Seq, e.model.Name(), score, in)
	e.box.addScore(v.ID, e.buf2, in.TS)
	e.stats.Scores++
	return nil
}

func (e *Engine) snapshot(tick int64) {
	if e.writtenOnly && !e.cfg.writtenTick(tick) {
		e.rank.advance(tick) // no one reads the lists between written ticks
		return
	}
	s := e.rank.snapshot(tick, e.cfg.TopK)
	if e.partials {
		e.box.addPartial(e.id, s)
		return
	}
	e.box.reports = append(e.box.reports, s)
}

func (e *Engine) markVideo(v *video) {
	if !v.dirty {
		v.dirty = true
		e.dirtyVideos = append(e.dirtyVideos, v)
	}
}

// pair sets e.pr to the state of a (user, video) pair from the cache, the
// store or, for a pair the filter has never seen, new, and e.pkey to its
// key. It returns the pair's index in the cache (-1: not held), for
// e.pairs.set.
//
// The filter is asked first: every pair the cache holds was put there
// after this found it (the filter then added it), so a pair the filter
// has never seen is in neither, and most likes (their user's first of the
// video) cost no lookup in the cache.
func (e *Engine) pair(videoID, user string) (int, error) {
	e.pkey = store.PairKey(e.pkey[:0], videoID, user)
	e.pr = store.Pair{}
	if !e.filter.seen(e.pkey) {
		return -1, nil
	}
	if i := e.pairs.find(e.pkey); i >= 0 {
		return i, e.pairs.get(i, &e.pr)
	}
	sp, ok, err := e.part.Pair(videoID, user)
	if err != nil {
		return -1, err
	}
	if ok {
		e.pr = sp
	}
	return -1, nil
}

// video returns a video's state from the cache, the store or new, with its
// windows computed from its like times.
func (e *Engine) video(id string) (*video, error) {
	if v, ok := e.videos[id]; ok {
		v.used = true
		return v, nil
	}
	// A video the filter has never seen is new: no store read (most
	// videos a backfill meets are; a read of a key in no level costs an
	// index and a data block of the last level).
	v := e.spareVideo()
	if b, held := e.packed.take(id); held {
		if err := v.Unpack(id, b); err != nil {
			return nil, fmt.Errorf("video %q, packed: %w", id, err)
		}
	} else if e.key = store.VideoKey(e.key[:0], id); e.filter.seen(e.key) {
		if _, err := e.part.ReadVideo(&v.Video, id); err != nil {
			return nil, err
		}
	} else {
		v.Reset(id)
	}
	if err := v.derive(); err != nil {
		return nil, fmt.Errorf("video %q: %w", id, err)
	}
	v.Seal(v.Clock - e.sealAfter)
	e.videos[id] = v
	e.counted(v)
	return v, nil
}

// loadedVideo is a video of the state sv, with what is not stored
// derived (see derive).
func loadedVideo(sv *store.Video) (*video, error) {
	v := &video{Video: *sv}
	return v, v.derive()
}

// The videos the cache let go are kept for reading others into
// (Engine.spareVideo), up to a quarter of the cache's bound (what a pass
// of eviction lets go, and the cache takes again before the next) and at
// least minSpareVideos; maxSpareEntries bounds the like times' array kept
// with each: a popular video's would hold its memory, uncounted.
const (
	minSpareVideos  = 64
	maxSpareEntries = 256
)

// spareVideo returns a video to read a video's state into: one the cache
// let go, with its arrays (store.Video.Reset), or a new one. Each video
// read back took a new one: 1.7 of the 23 GB B1 had allocated 220 s in
// (bench/RESULTS.md).
func (e *Engine) spareVideo() *video {
	n := len(e.spare)
	if n == 0 {
		return &video{}
	}
	v := e.spare[n-1]
	e.spare[n-1] = nil
	e.spare = e.spare[:n-1]
	return v
}

// letGo keeps v, which the cache let go and nothing else refers to, as a
// spare while there are fewer than most.
func (e *Engine) letGo(v *video, most int) {
	if len(e.spare) >= most {
		return
	}
	sv := v.Video
	if cap(sv.Entries) > maxSpareEntries {
		sv.Entries = nil
	}
	sv.Reset("")
	*v = video{Video: sv}
	e.spare = append(e.spare, v)
}

// derive computes what is not stored of a video read: its windows, and
// its lockstep tracker decoded.
func (v *video) derive() error {
	lock, err := unmarshalLock(v.Lockstep)
	if err != nil {
		return err
	}
	v.win, v.lock = [scoring.NumWindows]window{}, lock
	if cut := searchEntries(v.Entries, v.Clock-scoring.WindowMS[scoring.W24h]); cut > 0 {
		v.Entries = v.Entries[cut:]
	}
	add := func(en store.Entry) {
		for i, w := range scoring.WindowMS {
			if en.TS > v.Clock-w {
				v.win[i].add(int64(en.Weight), en.Damp, +1)
			}
		}
	}
	v.EachSealedAll(add)
	for _, en := range v.Entries {
		add(en)
	}
	return nil
}

// compareEntries orders like times: by time, then weight, then damping.
func compareEntries(a, b store.Entry) int {
	return cmp.Or(cmp.Compare(a.TS, b.TS), cmp.Compare(a.Weight, b.Weight), cmp.Compare(a.Damp, b.Damp))
}

// ReadScore computes the record of a video from the committed state of the
// given partitions, as its last record would show it. It may be called
// from any goroutine: it only reads the store.
func ReadScore(db *store.DB, cfg Config, parts []int32, id string) ([]byte, bool, error) {
	model, err := scoring.Lookup(cfg.Model)
	if err != nil {
		return nil, false, err
	}
	for _, p := range parts {
		sv, ok, err := db.Partition(p).Video(id)
		if err != nil {
			return nil, false, err
		}
		if !ok || sv.Unique == 0 {
			continue
		}
		v, err := loadedVideo(sv)
		if err != nil {
			return nil, false, err
		}
		in := inputOf(v, v.Clock)
		return appendScore(nil, v.ID, v.Seq, model.Name(), model.Score(&in), &in), true, nil
	}
	return nil, false, nil
}

// write adds the state changed since the last commit to w.
func (e *Engine) write(w *store.Writer) error {
	for _, v := range e.dirtyVideos {
		v.Lockstep = v.lock.marshal(v.Lockstep)
		if err := w.SetVideo(&v.Video); err != nil {
			return err
		}
		v.Seal(v.Clock - e.sealAfter)
		if v.pending {
			if err := w.SetPending(v.ID, v.Pending); err != nil {
				return err
			}
		}
		v.dirty, v.pending = false, false
		e.counted(v)
	}
	// Cleared, not only cut: the array would otherwise keep every video
	// of the largest commit so far alive after the cache let it go.
	clear(e.dirtyVideos)
	e.dirtyVideos = e.dirtyVideos[:0]
	if err := e.pairs.write(w, e.watermark()); err != nil {
		return err
	}
	if err := e.stage.write(w); err != nil {
		return err
	}
	if err := e.rank.save(w); err != nil {
		return err
	}
	if err := e.saveCreatorTally(w); err != nil {
		return err
	}
	if e.released > e.savedRel {
		// Delete the applied ones by key: a range deletion would read the
		// batch and the store to list them for the changelog.
		keep := e.stored[:0]
		for _, k := range e.stored {
			if k.ts >= e.released {
				keep = append(keep, k)
			} else if err := w.DeleteBuffered(k.ts, k.seq); err != nil {
				return err
			}
		}
		e.stored = keep
		e.savedRel = e.released
	}
	// The held events taken since the last commit; those applied since
	// are gone from the buffer, and no longer kept in memory for this.
	e.buf.each(func(r *routed) {
		if r.seq > e.savedSeq {
			e.unsaved = append(e.unsaved, r)
		}
	})
	slices.SortFunc(e.unsaved, func(a, b *routed) int { return cmp.Compare(a.seq, b.seq) })
	for _, r := range e.unsaved {
		e.buf2 = appendRouted(e.buf2[:0], r)
		if err := w.SetBuffered(r.ev.TS, r.seq, e.buf2); err != nil {
			return err
		}
		e.stored = append(e.stored, bufKey{r.ev.TS, r.seq})
	}
	e.savedSeq = e.meta.BufSeq
	clear(e.unsaved)
	e.unsaved = e.unsaved[:0]
	e.meta.Inputs = e.meta.Inputs[:0]
	for _, s := range e.sources {
		e.meta.Inputs = append(e.meta.Inputs, *e.inputs[s])
	}
	return w.SetMeta(&e.meta)
}

// evict trims the caches to their bounds once a commit is durable. Only
// clean entries go: what they hold is in the store. Entries changed since
// that commit (it may have been written while the partitions went on, see
// flight.go) stay for the next. Which entries go does not matter for
// correctness, only for speed.
func (e *Engine) evict(maxVideos, maxPairs, maxAccounts int) {
	e.evictVideos(maxVideos)
	e.pairs.evict(maxPairs / 2)
	e.stage.evict(maxAccounts)
}

// evictVideos trims the video cache to 3/4 of its bounds once it passes
// one: the bound on videos, or on their bytes, which grow with their likes
// of the last day. A video taken from the cache since the last pass gets a
// second chance (CLOCK): popular videos, whose like times are many and
// costly to read back, stay, and those liked once go first. (Random
// eviction read the most liked videos back again and again: reading
// videos took 10% of the live service's CPU at 5,000 likes/s, 7.4% with
// the second chance.) For their bytes, videos taken since the last pass
// go only while the cache holds more than twice its bound: a popular
// video's like times can take more than a partition's share of the bound,
// and a live service that let such videos go at every commit read them
// back within the second, a copy of all their like times each time
// (bench/RESULTS.md).
func (e *Engine) evictVideos(maxVideos int) {
	limit := int64(maxVideos) * VideoBytes
	count := len(e.videos) > maxVideos*3/4
	size := e.videoBytes > limit
	if !count && !size {
		return
	}
	spares := max(minSpareVideos, maxVideos/4)
	done := func(pass int) bool {
		goal := limit * 3 / 4
		if pass > 0 {
			goal = 2 * limit
		}
		return (!count || len(e.videos) <= maxVideos*3/4) && (!size || e.videoBytes <= goal)
	}
	for pass := 0; pass < 2 && !done(pass); pass++ {
		for id, v := range e.videos {
			if done(pass) {
				return
			}
			if v.dirty || v.used && pass == 0 {
				v.used = false
				continue
			}
			e.videoBytes -= v.sized
			delete(e.videos, id)
			e.pbuf = v.AppendPacked(e.pbuf[:0])
			e.packed.put(id, e.pbuf, len(v.Entries)+v.SealedLen())
			e.letGo(v, spares)
		}
	}
}

// pendingVideos lists, in key order, the committed videos whose state is
// newer than their last record.
func (e *Engine) pendingVideos() ([]string, error) {
	var ids []string
	err := e.part.ScanPending(func(id string) error { ids = append(ids, id); return nil })
	return ids, err
}

// emitPending emits the record of a video whose state is newer than its
// last record.
func (e *Engine) emitPending(id string) error {
	v, err := e.video(id)
	if err != nil {
		return err
	}
	if !v.Pending {
		return nil
	}
	in := e.input(v, v.Clock)
	return e.emit(v, in, e.model.Score(in))
}
