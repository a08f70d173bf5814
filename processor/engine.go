// Package processor is virality's engine: it applies like events of one
// input partition to exact state and emits scores, trending snapshots and
// dead letters. Files and Kafka plug in through [Source] and [Sink]; the
// same engine serves backfill, replay and the live service.
package processor

import (
	"errors"
	"fmt"
	"strconv"

	"virality/event"
	"virality/scoring"
	"virality/store"
)

// Stats count what the engine did.
type Stats struct {
	Records      int64 // input records taken
	Applied      int64 // events applied to state
	DeadLetters  int64
	DeadByReason map[string]int64
	StrayUnlikes int64 // unlikes with no standing like
	IgnoredLikes int64 // likes while a like stood
	Scores       int64 // score records emitted
	Snapshots    int64 // trending records emitted
	Commits      int64
}

// video is a video's state in the cache, with its windowed sums, which are
// derived from the like times and not stored.
type video struct {
	store.Video
	win     [scoring.NumWindows]window
	dirty   bool
	pending bool // the pending marker must be written
}

type window struct{ n, w int64 }

type pair struct {
	video, user string
	p           store.Pair
	dirty       bool
}

// Engine applies the records of one input partition in order. One
// goroutine owns it; it takes no locks.
//
// Invariants. The state in the store, the input offset and the output
// positions always describe the same point of the input: a commit first
// flushes every output record emitted so far (so none is lost), then writes
// every changed piece of state, the offset and the positions in one batch.
// Between commits the caches hold the only copy of changed state, so
// nothing dirty is ever evicted. Event time only ever comes from the data;
// the watermark is the largest event time accepted minus the lateness, and
// ticks of trending fire when the largest event time first reaches them.
type Engine struct {
	cfg   Config
	g     *Group
	id    int32
	model scoring.Model
	part  *store.Partition
	out   Outputs
	meta  store.Meta

	lateness, skew, tick, horizon, interval, bucket int64

	videos      map[string]*video
	dirtyVideos []*video
	pairs       map[string]*pair
	dirtyPairs  []*pair
	filter      *filter
	accounts    *accounts
	rank        *ranking

	stats Stats
	key   []byte
	buf   []byte
	msg   Message
	hdr   [5]Header
}

// newEngine opens the engine of one partition on its committed state.
func newEngine(g *Group, id int32, part *store.Partition, filterBits int) (*Engine, error) {
	cfg := g.cfg
	model, _ := scoring.Lookup(cfg.Model)
	e := &Engine{
		cfg:      cfg,
		g:        g,
		id:       id,
		model:    model,
		part:     part,
		out:      g.out,
		lateness: cfg.Lateness.Milliseconds(),
		skew:     cfg.FutureSkew.Milliseconds(),
		tick:     cfg.Tick.Milliseconds(),
		horizon:  cfg.TrendingHorizon.Milliseconds(),
		interval: cfg.EmitInterval.Milliseconds(),
		videos:   map[string]*video{},
		pairs:    map[string]*pair{},
		filter:   newFilter(filterBits),
		stats:    Stats{DeadByReason: map[string]int64{}},
	}
	e.bucket = max(accountBucketMS, e.lateness)
	e.accounts = newAccounts(part, e.bucket, cfg.MaxAccounts, cfg.AccountThreshold)
	e.rank = newRanking(e.tick, e.horizon)
	meta, ok, err := part.Meta()
	if err != nil {
		return nil, err
	}
	if ok && meta.Fingerprint != cfg.fingerprint() {
		return nil, fmt.Errorf("processor: the state of partition %d was built with other settings (%s) than these (%s): use the same settings or a fresh state directory", id, meta.Fingerprint, cfg.fingerprint())
	}
	e.meta = meta
	e.meta.Fingerprint = cfg.fingerprint()
	if !ok {
		return e, nil
	}
	if err := part.ScanPairs(func(k []byte) { e.filter.add(k) }); err != nil {
		return nil, fmt.Errorf("load pair filter of partition %d: %w", id, err)
	}
	if err := part.ScanCandidates(func(c store.Candidate) error { e.rank.load(c); return nil }); err != nil {
		return nil, fmt.Errorf("load trending candidates of partition %d: %w", id, err)
	}
	if err := e.accounts.load(floorDiv(meta.MaxTS, e.bucket)); err != nil {
		return nil, fmt.Errorf("load accounts of partition %d: %w", id, err)
	}
	return e, nil
}

// NextOffset is the offset of the first record of the partition that the
// engine has not taken.
func (e *Engine) NextOffset() int64 { return e.meta.Offset }

// Watermark is the partition's watermark in ms (0 before any event).
func (e *Engine) Watermark() int64 {
	if e.meta.MaxTS == 0 {
		return 0
	}
	return e.watermark()
}

// Stats returns the counters so far. The map is shared: read it only from
// the goroutine that runs the engine.
func (e *Engine) Stats() Stats { return e.stats }

// Apply takes one record; ev and decodeErr are its decoded event or the
// reason it could not be decoded.
func (e *Engine) Apply(rec *Record, ev *event.Event, decodeErr error) error {
	e.stats.Records++
	if err := e.take(rec, ev, decodeErr); err != nil {
		return err
	}
	e.meta.Offset = rec.Offset + 1
	return nil
}

func (e *Engine) take(rec *Record, ev *event.Event, decodeErr error) error {
	if decodeErr != nil {
		var de *event.Error
		if errors.As(decodeErr, &de) {
			return e.deadLetter(rec, 0, string(de.Reason), de.Detail)
		}
		return e.deadLetter(rec, 0, string(event.ReasonBadJSON), decodeErr.Error())
	}
	ref := rec.Time
	if ref <= 0 {
		ref = e.cfg.Now
	}
	if ref > 0 && ev.TS > ref+e.skew {
		return e.deadLetter(rec, ev.TS, string(event.ReasonFuture),
			fmt.Sprintf("event time %d is %dms after the reference time %d, more than the allowed %dms", ev.TS, ev.TS-ref, ref, e.skew))
	}
	if e.meta.MaxTS > 0 && ev.TS < e.meta.MaxTS-e.lateness {
		return e.deadLetter(rec, ev.TS, string(event.ReasonLate),
			fmt.Sprintf("event time %d is %dms before the latest %d, more than the allowed lateness %dms", ev.TS, e.meta.MaxTS-ev.TS, e.meta.MaxTS, e.lateness))
	}
	if ev.TS > e.meta.MaxTS {
		if err := e.advance(ev.TS); err != nil {
			return err
		}
	}
	e.stats.Applied++
	return e.apply(ev)
}

// advance moves the largest event time to ts, first emitting the trending
// snapshots of every tick it reaches.
func (e *Engine) advance(ts int64) error {
	if e.meta.NextTick == 0 {
		e.meta.NextTick = (floorDiv(ts, e.tick) + 1) * e.tick
	}
	for ts >= e.meta.NextTick {
		if e.rank.empty() {
			// Nothing to list until this event: skip the quiet ticks.
			e.meta.NextTick = (floorDiv(ts, e.tick) + 1) * e.tick
			break
		}
		if err := e.snapshot(e.meta.NextTick); err != nil {
			return err
		}
		e.meta.NextTick += e.tick
	}
	e.meta.MaxTS = ts
	return e.g.merger.progress(e.id, e.meta.NextTick)
}

// AdvanceTicks closes the ticks before upTo as if event time had reached
// them, without moving the watermark: an idle partition must not hold
// back the trending snapshots of the others.
func (e *Engine) AdvanceTicks(upTo int64) error {
	if e.meta.NextTick == 0 || upTo <= e.meta.NextTick {
		return nil
	}
	for e.meta.NextTick < upTo && !e.rank.empty() {
		if err := e.snapshot(e.meta.NextTick); err != nil {
			return err
		}
		e.meta.NextTick += e.tick
	}
	if e.meta.NextTick < upTo {
		e.meta.NextTick = ceilDiv(upTo, e.tick) * e.tick
	}
	return e.g.merger.progress(e.id, e.meta.NextTick)
}

func (e *Engine) watermark() int64 { return e.meta.MaxTS - e.lateness }

func (e *Engine) apply(ev *event.Event) error {
	pr, err := e.pair(ev.VideoID, ev.UserID)
	if err != nil {
		return err
	}
	v, err := e.video(ev.VideoID)
	if err != nil {
		return err
	}
	before := pr.p
	beforeLike := before.Like
	changed := e.setClock(v, ev.TS)
	wm := e.watermark()
	switch ev.Action {
	case event.Like:
		w, err := e.accounts.like(ev.UserID, ev.TS)
		if err != nil {
			return err
		}
		if applyLike(&pr.p, store.Like{TS: ev.TS, Weight: w, Region: ev.Region, EventID: ev.EventID}, wm) {
			e.stats.IgnoredLikes++
		}
		if v.FirstLike == 0 || ev.TS < v.FirstLike {
			v.FirstLike = ev.TS
			changed = true
		}
	case event.Unlike:
		if applyUnlike(&pr.p, ev.TS, wm) {
			e.stats.StrayUnlikes++
		}
	}
	e.markPair(pr)
	if !before.EverLiked && pr.p.EverLiked {
		v.Unique++
		changed = true
	}
	if before.Liked != pr.p.Liked || beforeLike.TS != pr.p.Like.TS || beforeLike.Weight != pr.p.Like.Weight || beforeLike.Region != pr.p.Like.Region {
		if before.Liked {
			e.standing(v, &beforeLike, -1)
		}
		if pr.p.Liked {
			e.standing(v, &pr.p.Like, +1)
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
	for i, w := range scoring.WindowMS {
		lo := searchEntries(v.Entries, old-w)
		hi := searchEntries(v.Entries, ts-w)
		for _, en := range v.Entries[lo:hi] {
			v.win[i].n--
			v.win[i].w -= en.Weight
		}
	}
	if cut := searchEntries(v.Entries, ts-scoring.WindowMS[scoring.W24h]); cut > 0 {
		v.Entries = v.Entries[cut:]
	}
	for h, hl := range scoring.HalfLifeMS {
		v.Decay[h] = scoring.DecayPrune(v.Decay[h], ts, hl)
	}
	e.markVideo(v)
	return true
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
func (e *Engine) standing(v *video, l *store.Like, sign int64) {
	v.Likes += sign
	if l.Region != "" {
		addRegion(&v.Video, l.Region, sign)
	}
	if l.TS > v.Clock-scoring.WindowMS[scoring.W24h] {
		i := searchEntries(v.Entries, l.TS-1)
		// Entries with this time sit at [i, j); keep them sorted by weight.
		for i < len(v.Entries) && v.Entries[i].TS == l.TS && v.Entries[i].Weight < l.Weight {
			i++
		}
		found := true
		if sign > 0 {
			v.Entries = append(v.Entries, store.Entry{})
			copy(v.Entries[i+1:], v.Entries[i:])
			v.Entries[i] = store.Entry{TS: l.TS, Weight: l.Weight}
		} else if i < len(v.Entries) && v.Entries[i].TS == l.TS && v.Entries[i].Weight == l.Weight {
			v.Entries = append(v.Entries[:i], v.Entries[i+1:]...)
		} else {
			found = false
		}
		if found {
			for k, w := range scoring.WindowMS {
				if l.TS > v.Clock-w {
					v.win[k].n += sign
					v.win[k].w += sign * l.Weight
				}
			}
			v.TimesChanged(l.TS)
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

func (e *Engine) input(v *video, ts int64) scoring.Input { return inputOf(v, ts) }

func inputOf(v *video, ts int64) scoring.Input {
	in := scoring.Input{TS: ts, FirstLike: v.FirstLike, Likes: v.Likes, UniqueLikers: v.Unique}
	for i := range v.win {
		in.Windows[i] = v.win[i].n
		in.Weighted[i] = v.win[i].w
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
	score := e.model.Score(&in)
	e.rank.update(v.ID, score, v.Clock, homeRegion(&v.Video))
	if e.shouldEmit(v, score) {
		return e.emit(v, &in, score)
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
	e.buf = appendScore(e.buf[:0], v.ID, v.Seq, e.model.Name(), score, in)
	e.msg = Message{Key: append(e.key[:0], v.ID...), Value: e.buf, Time: in.TS}
	e.stats.Scores++
	return e.out.Scores.Write(&e.msg)
}

func (e *Engine) snapshot(tick int64) error {
	e.g.merger.report(e.id, e.rank.snapshot(tick, e.cfg.TopK))
	return nil
}

func (e *Engine) deadLetter(rec *Record, ts int64, reason, detail string) error {
	e.stats.DeadLetters++
	e.stats.DeadByReason[reason]++
	if rec.Time > 0 {
		// The source's own time: the event time may be what is wrong.
		ts = rec.Time
	}
	e.hdr = [5]Header{
		{Key: HeaderReason, Value: []byte(reason)},
		{Key: HeaderError, Value: []byte(detail)},
		{Key: HeaderTopic, Value: []byte(rec.Topic)},
		{Key: HeaderPartition, Value: strconv.AppendInt(nil, int64(rec.Partition), 10)},
		{Key: HeaderOffset, Value: strconv.AppendInt(nil, rec.Offset, 10)},
	}
	e.msg = Message{Key: rec.Key, Value: rec.Value, Time: ts, Headers: e.hdr[:]}
	return e.out.DeadLetters.Write(&e.msg)
}

func (e *Engine) markVideo(v *video) {
	if !v.dirty {
		v.dirty = true
		e.dirtyVideos = append(e.dirtyVideos, v)
	}
}

func (e *Engine) markPair(p *pair) {
	if !p.dirty {
		p.dirty = true
		e.dirtyPairs = append(e.dirtyPairs, p)
	}
}

// pair returns the state of a (user, video) pair from the cache, the store
// or, for a pair the filter has never seen, new.
func (e *Engine) pair(videoID, user string) (*pair, error) {
	e.key = store.PairKey(e.key[:0], videoID, user)
	if p, ok := e.pairs[string(e.key)]; ok {
		return p, nil
	}
	p := &pair{video: videoID, user: user}
	if e.filter.mayContain(e.key) {
		sp, ok, err := e.part.Pair(videoID, user)
		if err != nil {
			return nil, err
		}
		if ok {
			p.p = sp
		}
	} else {
		e.filter.add(e.key)
	}
	e.pairs[string(e.key)] = p
	return p, nil
}

// video returns a video's state from the cache, the store or new, with its
// windows computed from its like times.
func (e *Engine) video(id string) (*video, error) {
	if v, ok := e.videos[id]; ok {
		return v, nil
	}
	sv, ok, err := e.part.Video(id)
	if err != nil {
		return nil, err
	}
	if !ok {
		sv = store.NewVideo(id)
	}
	v := loadedVideo(sv)
	e.videos[id] = v
	return v, nil
}

// loadedVideo derives what is not stored of a video: its windows.
func loadedVideo(sv *store.Video) *video {
	v := &video{Video: *sv}
	if cut := searchEntries(v.Entries, v.Clock-scoring.WindowMS[scoring.W24h]); cut > 0 {
		v.Entries = v.Entries[cut:]
	}
	for _, en := range v.Entries {
		for i, w := range scoring.WindowMS {
			if en.TS > v.Clock-w {
				v.win[i].n++
				v.win[i].w += en.Weight
			}
		}
	}
	return v
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
		v := loadedVideo(sv)
		in := inputOf(v, v.Clock)
		return appendScore(nil, v.ID, v.Seq, model.Name(), model.Score(&in), &in), true, nil
	}
	return nil, false, nil
}

// write adds the state changed since the last commit to w.
func (e *Engine) write(w *store.Writer) error {
	for _, v := range e.dirtyVideos {
		if err := w.SetVideo(&v.Video); err != nil {
			return err
		}
		if v.pending {
			if err := w.SetPending(v.ID, v.Pending); err != nil {
				return err
			}
		}
		v.dirty, v.pending = false, false
	}
	e.dirtyVideos = e.dirtyVideos[:0]
	for _, p := range e.dirtyPairs {
		if err := w.SetPair(p.video, p.user, &p.p); err != nil {
			return err
		}
		p.dirty = false
	}
	e.dirtyPairs = e.dirtyPairs[:0]
	if err := e.accounts.save(w, floorDiv(e.meta.MaxTS, e.bucket)); err != nil {
		return err
	}
	if err := e.rank.save(w); err != nil {
		return err
	}
	return w.SetMeta(&e.meta)
}

// evict trims the caches to their bounds once everything in them is clean.
// Which entries go does not matter for correctness, only for speed.
func (e *Engine) evict(maxVideos, maxPairs, maxAccounts int) {
	if n := len(e.videos) - maxVideos*3/4; n > 0 && len(e.videos) > maxVideos/2 {
		for id := range e.videos {
			if n <= 0 {
				break
			}
			delete(e.videos, id)
			n--
		}
	}
	if n := len(e.pairs) - maxPairs/2; n > 0 {
		for k := range e.pairs {
			if n <= 0 {
				break
			}
			delete(e.pairs, k)
			n--
		}
	}
	e.accounts.max = maxAccounts
	e.accounts.evict(floorDiv(e.meta.MaxTS, e.bucket))
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
	return e.emit(v, &in, e.model.Score(&in))
}
