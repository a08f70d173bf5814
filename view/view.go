package view

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/viralityhq/virality/kafkaio"
	"github.com/viralityhq/virality/processor"
)

// Score is one record of the scores topic, as docs/schemas/score.schema.json
// describes it, with the record's value as read (Raw).
type Score struct {
	VideoID      string  `json:"video_id"`
	TS           int64   `json:"ts"`
	Seq          int64   `json:"seq"`
	Model        string  `json:"model"`
	Score        float64 `json:"score"`
	Likes        int64   `json:"likes"`
	UniqueLikers int64   `json:"unique_likers"`
	Unlikes      int64   `json:"unlikes"`
	Likes1m      int64   `json:"likes_1m"`
	Likes5m      int64   `json:"likes_5m"`
	Likes1h      int64   `json:"likes_1h"`
	Likes24h     int64   `json:"likes_24h"`
	Rate5m       float64 `json:"rate_5m"`
	Rate1h       float64 `json:"rate_1h"`
	Rate24h      float64 `json:"rate_24h"`
	Velocity     float64 `json:"velocity"`
	Acceleration float64 `json:"acceleration"`
	// DampedLikes5m and DampedLikes1h are the likes of Likes5m and Likes1h
	// that damping took away (bought likes), and DampedReason names why
	// ("account_rate"; "" when nothing of the hour was damped).
	DampedLikes5m int64  `json:"damped_likes_5m"`
	DampedLikes1h int64  `json:"damped_likes_1h"`
	DampedReason  string `json:"damped_reason"`
	// Raw is the record's value, byte for byte. It is shared by every
	// caller of Get: do not modify it.
	Raw []byte `json:"-"`
}

// Time returns ts as a time.
func (s Score) Time() time.Time { return time.UnixMilli(s.TS) }

// Entry is one video of a trending list.
type Entry struct {
	VideoID string  `json:"video_id"`
	Score   float64 `json:"score"`
}

// List is one record of the trending topic: the ranked videos of a region
// at one tick, highest score first.
type List struct {
	TS     int64   `json:"ts"`
	Region string  `json:"region"`
	Videos []Entry `json:"videos"`
}

// Stats counts what the view has read since Open.
type Stats struct {
	// Videos and Regions are held now.
	Videos, Regions int
	// Applied score records changed a video; Repeats did not (their seq
	// was not above the one held); Deleted are tombstones that removed a
	// video; Evicted videos were dropped to stay within MaxVideos.
	Applied, Repeats, Deleted, Evicted int64
	// Lists are trending records read (older ticks included).
	Lists int64
	// Invalid records (both topics) could not be decoded and were skipped.
	Invalid int64
	// Rereads counts the times a partition was read again from its first
	// offset because the offset to read next was gone.
	Rereads int64
}

// ErrClosed is returned by WaitReady when the view is closed first.
var ErrClosed = errors.New("view: closed")

// View holds the latest score of each video and the latest trending list
// of each region. Its methods may be called from any goroutine.
type View struct {
	cfg    Config
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once
	done   chan struct{}

	pending atomic.Int64 // partitions still bootstrapping
	ready   chan struct{}
	scores  gate // shut: the scores topic is not read (FollowScores)

	mu     sync.RWMutex
	videos map[string]*entry
	heap   []*entry // min-heap of videos by ts, for eviction
	lists  map[string]List
	st     Stats
	newest int64 // newest ts of a valid score record, ms; -1: none
	seenAt time.Time

	errMu sync.Mutex
	errs  map[*part]failure // partitions whose last read failed
}

type failure struct {
	err error
	at  time.Time
}

type entry struct {
	s   Score
	idx int // position in View.heap
}

// part is one partition being followed.
type part struct {
	topic      string
	partition  int
	scores     bool  // scores topic, else trending
	first, end int64 // offsets listed at Open
	caught     bool
}

// Open lists the partitions of the topics and their offsets, then reads
// them in the background until Close; see Ready for the end of the
// bootstrap. It fails when a topic does not exist or the cluster cannot
// be reached. ctx bounds Open itself, not the view's life.
func Open(ctx context.Context, cfg Config) (*View, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	var parts []*part
	topics := []string{cfg.ScoresTopic}
	if cfg.TrendingTopic != "" {
		topics = append(topics, cfg.TrendingTopic)
	}
	for i, topic := range topics {
		n, err := kafkaio.Partitions(ctx, cfg.Kafka, topic)
		if err != nil {
			return nil, fmt.Errorf("view: %w", err)
		}
		for p := range n {
			first, end, err := kafkaio.FirstLastOffsets(ctx, cfg.Kafka, topic, p)
			if err != nil {
				return nil, fmt.Errorf("view: %w", err)
			}
			parts = append(parts, &part{topic: topic, partition: p, scores: i == 0, first: first, end: end})
		}
	}
	v := newView(cfg)
	sources := make([]*kafkaio.PartitionSource, len(parts))
	for i, p := range parts {
		src, err := v.source(p, p.first)
		if err != nil {
			for _, s := range sources[:i] {
				s.Close()
			}
			return nil, fmt.Errorf("view: %w", err)
		}
		sources[i] = src
	}
	var fctx context.Context
	fctx, v.cancel = context.WithCancel(context.Background())
	v.pending.Store(int64(len(parts)))
	for i, p := range parts {
		if p.first >= p.end {
			v.caughtUp(p)
		}
		v.wg.Add(1)
		go v.follow(fctx, p, sources[i])
	}
	if len(parts) == 0 {
		close(v.ready)
	}
	return v, nil
}

func newView(cfg Config) *View {
	return &View{
		cfg:    cfg,
		done:   make(chan struct{}),
		ready:  make(chan struct{}),
		videos: make(map[string]*entry),
		lists:  make(map[string]List),
		errs:   make(map[*part]failure),
		newest: -1,
	}
}

func (v *View) source(p *part, offset int64) (*kafkaio.PartitionSource, error) {
	src, err := kafkaio.NewPartitionSource(v.cfg.Kafka, p.topic, p.partition, offset)
	if err != nil {
		return nil, err
	}
	src.MaxWait = v.cfg.MaxWait
	return src, nil
}

// Close stops following the topics and waits for the goroutines to end.
// The view stays readable, frozen as it was.
func (v *View) Close() error {
	v.once.Do(func() {
		close(v.done)
		if v.cancel != nil {
			v.cancel()
		}
		v.wg.Wait()
	})
	return nil
}

// FollowScores(false) stops reading the scores topic, after the fetch
// under way, until FollowScores(true) reads on from where it stopped; the
// trending topic is read all along. Meanwhile Get answers what was read
// before, and Ready waits. A view follows from Open: a service that holds
// every video itself turns it off rather than read its own records back.
func (v *View) FollowScores(on bool) { v.scores.set(on) }

// FollowingScores reports whether the view reads the scores topic (see
// FollowScores).
func (v *View) FollowingScores() bool { return v.scores.isOpen() }

// Ready reports whether every partition has been read up to the end
// offset it had when Open was called.
func (v *View) Ready() bool {
	select {
	case <-v.ready:
		return true
	default:
		return false
	}
}

// WaitReady waits until Ready, ctx is done (ctx.Err()) or the view is
// closed (ErrClosed).
func (v *View) WaitReady(ctx context.Context) error {
	select {
	case <-v.ready:
		return nil
	default:
	}
	select {
	case <-v.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-v.done:
		return ErrClosed
	}
}

// Get returns the held record of video: the one of the highest seq read.
func (v *View) Get(video string) (Score, bool) {
	v.mu.RLock()
	e, ok := v.videos[video]
	var s Score
	if ok {
		s = e.s
	}
	v.mu.RUnlock()
	return s, ok
}

// Top returns the newest trending list of region ("global", or a region
// code), cut to its first k videos (k <= 0: all). The list's Videos are
// shared: do not modify them.
func (v *View) Top(region string, k int) (List, bool) {
	v.mu.RLock()
	l, ok := v.lists[region]
	v.mu.RUnlock()
	if k > 0 && k < len(l.Videos) {
		l.Videos = l.Videos[:k:k]
	}
	return l, ok
}

// Regions returns the regions that have a trending list, in no order.
func (v *View) Regions() []string {
	v.mu.RLock()
	defer v.mu.RUnlock()
	out := make([]string, 0, len(v.lists))
	for r := range v.lists {
		out = append(out, r)
	}
	return out
}

// Staleness returns the newest event time (ts) of any score record read,
// and the wall time at which the view first read a record that new; both
// are zero before the first record. now - seen bounds how long the
// scores topic has brought nothing newer; seen - event is how far the
// output trailed the events when it was read.
func (v *View) Staleness() (event, seen time.Time) {
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.newest < 0 {
		return time.Time{}, time.Time{}
	}
	return time.UnixMilli(v.newest), v.seenAt
}

// Stats returns the counts of what was read.
func (v *View) Stats() Stats {
	v.mu.RLock()
	defer v.mu.RUnlock()
	st := v.st
	st.Videos = len(v.videos)
	st.Regions = len(v.lists)
	return st
}

// Err returns the newest failure among the partitions whose last read
// failed, nil when every partition's last read succeeded (the view keeps
// retrying a failing partition until Close).
func (v *View) Err() error {
	v.errMu.Lock()
	defer v.errMu.Unlock()
	var last failure
	for _, f := range v.errs {
		if last.err == nil || f.at.After(last.at) {
			last = f
		}
	}
	return last.err
}

func (v *View) setErr(p *part, err error) {
	v.errMu.Lock()
	v.errs[p] = failure{err: err, at: time.Now()}
	v.errMu.Unlock()
}

func (v *View) clearErr(p *part) {
	v.errMu.Lock()
	delete(v.errs, p)
	v.errMu.Unlock()
}

func (v *View) caughtUp(p *part) {
	if p.caught {
		return
	}
	p.caught = true
	if v.pending.Add(-1) == 0 {
		close(v.ready)
	}
}

// applyChunk is the number of records decoded, then applied under one
// lock.
const applyChunk = 256

// follow reads one partition until ctx is done.
func (v *View) follow(ctx context.Context, p *part, src *kafkaio.PartitionSource) {
	defer v.wg.Done()
	defer func() { src.Close() }()
	var (
		buf    []processor.Record
		items  []item
		lists  []List
		failed bool
	)
	for {
		if p.scores && !v.scores.wait(ctx) {
			return
		}
		recs, err := src.Next(ctx, buf)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			if errors.Is(err, kafkaio.ErrOffsetOutOfRange) {
				// The records to read are gone (retention, a recreated
				// topic): read what remains, from the first offset.
				if s, err2 := v.source(p, kafkaio.FirstOffset); err2 == nil {
					src.Close()
					src = s
					v.mu.Lock()
					v.st.Rereads++
					v.mu.Unlock()
					continue
				}
			}
			v.setErr(p, fmt.Errorf("view: %w", err))
			failed = true
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
			continue
		}
		if failed {
			v.clearErr(p)
			failed = false
		}
		buf = recs
		// Apply in chunks: the scratch space stays small, and readers
		// never wait long for the lock.
		for len(recs) > 0 {
			n := min(len(recs), applyChunk)
			if p.scores {
				items = v.applyScores(recs[:n], items[:0])
			} else {
				lists = v.applyLists(recs[:n], lists[:0])
			}
			recs = recs[n:]
		}
		if !p.caught && src.Offset() >= p.end {
			v.caughtUp(p)
		}
	}
}

// decodeScore decodes one record of the scores topic; tombstone reports a
// record without a value, which deletes key.
func decodeScore(key, value []byte, s *Score) (tombstone, ok bool) {
	if value == nil {
		return true, len(key) > 0
	}
	if err := unmarshalScore(value, s); err != nil {
		return false, false
	}
	if s.VideoID == "" {
		if len(key) == 0 {
			return false, false
		}
		s.VideoID = string(key)
	}
	if s.Seq < 1 {
		return false, false
	}
	s.Model = internModel(s.Model)
	s.Raw = append([]byte(nil), value...)
	return false, true
}

func internModel(m string) string {
	switch m {
	case "trending":
		return "trending"
	case "hn":
		return "hn"
	case "reddit-hot":
		return "reddit-hot"
	}
	return m
}

// item is a decoded record of the scores topic: a score, or a tombstone
// of del.
type item struct {
	s   Score
	del []byte
}

// applyScores decodes recs outside the lock, then applies them in order
// under one write lock. items is scratch space, returned for reuse.
func (v *View) applyScores(recs []processor.Record, items []item) []item {
	if len(recs) == 0 {
		return items
	}
	var invalid int64
	for _, r := range recs {
		items = append(items, item{})
		it := &items[len(items)-1]
		tomb, ok := decodeScore(r.Key, r.Value, &it.s)
		switch {
		case !ok:
			invalid++
			items = items[:len(items)-1]
		case tomb:
			it.del = r.Key
		}
	}
	now := time.Now()
	v.mu.Lock()
	v.st.Invalid += invalid
	for i := range items {
		it := &items[i]
		if it.del != nil {
			if e, ok := v.videos[string(it.del)]; ok {
				v.remove(e)
				v.st.Deleted++
			}
			continue
		}
		v.put(&it.s, now)
	}
	v.mu.Unlock()
	clear(items) // let go of the raw values and ids
	return items
}

// put applies one decoded score; v.mu is held.
func (v *View) put(s *Score, now time.Time) {
	if s.TS > v.newest {
		v.newest = s.TS
		v.seenAt = now
	}
	if e, ok := v.videos[s.VideoID]; ok {
		if s.Seq <= e.s.Seq {
			v.st.Repeats++
			return
		}
		s.VideoID = e.s.VideoID // keep one copy of the id: the map's key
		e.s = *s
		v.fix(e.idx)
		v.st.Applied++
		return
	}
	e := &entry{s: *s, idx: len(v.heap)}
	v.videos[s.VideoID] = e
	v.heap = append(v.heap, e)
	v.up(e.idx)
	v.st.Applied++
	for len(v.videos) > v.cfg.MaxVideos {
		v.remove(v.heap[0])
		v.st.Evicted++
	}
}

// remove drops e from the map and the heap; v.mu is held.
func (v *View) remove(e *entry) {
	delete(v.videos, e.s.VideoID)
	i, last := e.idx, len(v.heap)-1
	if i != last {
		v.swap(i, last)
	}
	v.heap[last] = nil
	v.heap = v.heap[:last]
	if i != last {
		v.fix(i)
	}
	e.idx = -1
}

func (v *View) less(i, j int) bool { return v.heap[i].s.TS < v.heap[j].s.TS }

func (v *View) swap(i, j int) {
	h := v.heap
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}

func (v *View) fix(i int) {
	if !v.down(i) {
		v.up(i)
	}
}

func (v *View) up(j int) {
	for j > 0 {
		i := (j - 1) / 2
		if !v.less(j, i) {
			break
		}
		v.swap(i, j)
		j = i
	}
}

func (v *View) down(i0 int) bool {
	n := len(v.heap)
	i := i0
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		j := l
		if r := l + 1; r < n && v.less(r, l) {
			j = r
		}
		if !v.less(j, i) {
			break
		}
		v.swap(i, j)
		i = j
	}
	return i > i0
}

// applyLists decodes and applies records of the trending topic.
func (v *View) applyLists(recs []processor.Record, lists []List) []List {
	if len(recs) == 0 {
		return lists
	}
	var invalid int64
	for _, r := range recs {
		if r.Value == nil {
			continue // a tombstone: no list to replace the held one with
		}
		var l List
		if err := json.Unmarshal(r.Value, &l); err != nil || l.Region == "" {
			invalid++
			continue
		}
		lists = append(lists, l)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.st.Invalid += invalid
	for _, l := range lists {
		v.st.Lists++
		if cur, ok := v.lists[l.Region]; ok && l.TS < cur.TS {
			continue
		}
		v.lists[l.Region] = l
	}
	clear(lists)
	return lists
}
