package processor

import (
	"bytes"
	"cmp"
	"container/heap"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync/atomic"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/scoring"
	"github.com/viralityhq/virality/store"
)

// Creator momentum. A like's creator is the event's creator_id (events
// without one count for no creator). Each engine counts, per (creator,
// region, minute of like time), the changes of standing likes it applies
// (+1 for a like that stands, -1 for one an unlike removes, so repeats and
// stray unlikes count nothing), and which of a creator's videos got a
// standing like in which minute. When it closes a tick it hands these
// counts, its creator report, to the merger along with its trending lists
// (in run: kind 'c' on the partials topic); it closes a tick whenever it
// has counts to report, even with nothing to list. The merger sums the
// reports of tick T once every partition has passed T, as it does the
// lists, so the creators' state at T reflects exactly the likes before T,
// whatever the partitioning and the number of instances.
//
// Memory: the merger keeps its creators decoded (at most 60 minute
// counts, 24 hour counts and the videos liked in the last hour each) while
// they take less than Config.CreatorDecodedBytes (half of
// Config.CreatorBytes unless set). Past it, it holds
// encoded (cold), as the store holds them, at a few hundred bytes each,
// those not changed in the last minute of tick time that cannot be listed
// as rising before they change; past all of it, a commit lets go those
// stored as they are. Those let go, and the creators without a like in
// the last 24 hours of event time, stay in the store and are read back
// when liked.

const (
	// creatorsFormat is the version of creator reports and tallies, of
	// the merger's own record, and of creators' states before
	// creatorStateFormat.
	creatorsFormat = 1
	// creatorStateFormat is the version of a creator's state as marshal
	// writes it: its minutes, hours and ticks as differences from its last
	// change (format 1, still read, held them whole). B1's 100,000 creators
	// took 178 bytes each that way, and their records, written again at
	// each commit they changed, were 31% of the bytes its commits wrote.
	creatorStateFormat = 2
	partialCreators    = 'c'
	minuteMS           = 60_000
	creatorModelName   = "momentum"
	// DefaultCreatorMinLikes is the likes in the last hour a creator needs
	// to be listed as rising.
	DefaultCreatorMinLikes = 20
)

var errCreatorFormat = errors.New("processor: corrupt creator record")

type creatorCountKey struct {
	creator, region string
	minute          int64
}

type creatorVideoKey struct{ creator, video string }

// creatorTally is what an engine applied since it last closed a tick.
// The store holds it as a chunk per commit of what changed in it.
//
// Each map gives the index of an entry in a slice, which says whether it
// changed since the last commit: a like costs a lookup of its count and
// one of its video (a map each for the counts, the videos and what
// changed in each took six, 7% of the live service's CPU).
type creatorTally struct {
	countAt map[creatorCountKey]int32
	counts  []tallyCount // a count of 0 stays until the tick closes
	videoAt map[creatorVideoKey]int32
	videos  []tallyVideo
	nonzero int // counts not 0
	// the entries changed since the last commit; reset: emptied since
	// then, so the stored chunks must go.
	changedCounts, changedVideos []int32
	reset                        bool
	order, spare                 []sortEntry // report's, kept for the next
}

type tallyCount struct {
	key     creatorCountKey
	n       int64
	changed bool
}

type tallyVideo struct {
	key         creatorVideoKey
	first, last int64 // first and last minute with a new standing like
	changed     bool
}

func newCreatorTally() creatorTally {
	return creatorTally{countAt: map[creatorCountKey]int32{}, videoAt: map[creatorVideoKey]int32{}}
}

func (t *creatorTally) empty() bool { return t.nonzero == 0 && len(t.videos) == 0 }

// count returns the index of k's entry, added at 0 if there is none:
// hint, if it is that entry's (see tallyHint), without a lookup.
func (t *creatorTally) count(k creatorCountKey, hint int32) int32 {
	if hint >= 0 && int(hint) < len(t.counts) {
		// The minute and the region first: they differ more often,
		// and the creator's bytes are another read from memory.
		if x := &t.counts[hint].key; x.minute == k.minute && x.region == k.region && x.creator == k.creator {
			return hint
		}
	}
	i, ok := t.countAt[k]
	if !ok {
		i = int32(len(t.counts))
		t.countAt[k] = i
		t.counts = append(t.counts, tallyCount{key: k})
	}
	return i
}

func (t *creatorTally) setCount(i int32, n int64) {
	c := &t.counts[i]
	switch {
	case c.n == 0 && n != 0:
		t.nonzero++
	case c.n != 0 && n == 0:
		t.nonzero--
	}
	c.n = n
	if !c.changed {
		c.changed = true
		t.changedCounts = append(t.changedCounts, i)
	}
}

// video returns the index of k's entry, marked changed, and whether it
// was there: hint, if it is that entry's, without a lookup.
func (t *creatorTally) video(k creatorVideoKey, hint int32) (int32, bool) {
	i, ok := hint, hint >= 0 && int(hint) < len(t.videos) && t.videos[hint].key == k
	if !ok {
		i, ok = t.videoAt[k]
	}
	if !ok {
		i = int32(len(t.videos))
		t.videoAt[k] = i
		t.videos = append(t.videos, tallyVideo{key: k})
	}
	v := &t.videos[i]
	if !v.changed {
		v.changed = true
		t.changedVideos = append(t.changedVideos, i)
	}
	return i, ok
}

// tallyHint is where a video's likes were last tallied: the indexes of
// the entries of its creator's count and of the video in the creator
// tally, which its next like most often finds again without the tally's
// maps (their lookups took 6% of the live service's CPU, most of it
// waiting on memory). An index is only a hint: the entry there must have
// the key looked up, and keys are unique in the tally.
type tallyHint struct{ count, video int32 }

// clear empties the tally.
func (t *creatorTally) clear() {
	clear(t.countAt)
	clear(t.videoAt)
	clear(t.counts) // their strings
	clear(t.videos)
	t.counts, t.videos = t.counts[:0], t.videos[:0]
	t.changedCounts, t.changedVideos = t.changedCounts[:0], t.changedVideos[:0]
	t.nonzero = 0
}

// creatorReport is a chunk of a partition's creator likes of one tick,
// sorted. Chunks hold at most about creatorChunkBytes, so that no record
// of the partials topic or the changelog grows with the traffic.
type creatorReport struct {
	Tick   int64
	Chunk  int32
	Counts []creatorCount
	Videos []creatorVideo
}

// creatorChunkBytes is a variable for the tests.
var creatorChunkBytes = 256 << 10

// chunks splits a sorted report into chunks of bounded size, numbered
// from 0; deterministic, so that a report sent again after a crash
// replaces each chunk by the same.
func (r *creatorReport) chunks() []*creatorReport {
	// Items are the counts, then the videos; chunks share r's arrays (most
	// reports make one chunk, and copying them was 3% of what the live
	// service allocated).
	nc, n := len(r.Counts), len(r.Counts)+len(r.Videos)
	size := func(i int) int {
		if i < nc {
			return len(r.Counts[i].Creator) + len(r.Counts[i].Region) + 24
		}
		v := &r.Videos[i-nc]
		return len(v.Creator) + len(v.Video) + 24
	}
	var out []*creatorReport
	cut := func(from, to int) {
		c, v := min(from, nc), max(from-nc, 0)
		out = append(out, &creatorReport{Tick: r.Tick, Chunk: int32(len(out)),
			Counts: r.Counts[c:min(to, nc):min(to, nc)], Videos: r.Videos[v:max(to-nc, 0):max(to-nc, 0)]})
	}
	from, bytes := 0, 0
	for i := range n {
		if s := size(i); bytes > 0 && bytes+s > creatorChunkBytes {
			cut(from, i)
			from, bytes = i, s
		} else {
			bytes += s
		}
	}
	cut(from, n)
	return out
}

type creatorCount struct {
	Creator, Region string
	Minute, N       int64
}

type creatorVideo struct {
	Creator, Video string
	First, Last    int64 // minutes of like time
}

// creatorLike records a change of standing like l (sign +1 or -1) of the
// event's video v for its creator.
func (e *Engine) creatorLike(v *video, ev *event.Event, l *store.Like, sign int64) {
	if ev.CreatorID == "" || e.cfg.NoCreators {
		return
	}
	t := &e.ctally
	if t.countAt == nil {
		*t = newCreatorTally()
	}
	m := floorDiv(l.TS, minuteMS)
	h := &v.tally
	h.count = t.count(creatorCountKey{ev.CreatorID, l.Region, m}, h.count)
	t.setCount(h.count, t.counts[h.count].n+sign)
	if sign > 0 {
		i, ok := t.video(creatorVideoKey{ev.CreatorID, ev.VideoID}, h.video)
		h.video = i
		if x := &t.videos[i]; !ok {
			x.first, x.last = m, m
		} else {
			x.first, x.last = min(x.first, m), max(x.last, m)
		}
	}
}

// report turns the tally into the report of a tick and empties it: its
// counts sorted by (creator, region, minute), its videos by (creator,
// video). Entries are sorted by the first 8 bytes of their creator as an
// integer (a radix sort), then in full within each run of equal ones: the
// same order as comparing the strings, since a string before another has
// a prefix no greater, at a fifth of the cost (sorting by the strings
// took most of the 5-9 ms an engine spent closing a tick at 20,000
// likes/s, while every batch waited).
func (t *creatorTally) report(tick int64) *creatorReport {
	r := &creatorReport{Tick: tick, Counts: make([]creatorCount, 0, t.nonzero), Videos: make([]creatorVideo, 0, len(t.videos))}
	order := t.order[:0]
	for i := range t.counts {
		if c := &t.counts[i]; c.n != 0 {
			order = append(order, sortEntry{prefix(c.key.creator), int32(i)})
		}
	}
	order, t.spare = sortByPrefix(order, t.spare, func(a, b int32) int {
		x, y := &t.counts[a].key, &t.counts[b].key
		return cmp.Or(cmp.Compare(x.creator, y.creator), cmp.Compare(x.region, y.region), cmp.Compare(x.minute, y.minute))
	})
	for _, o := range order {
		c := &t.counts[o.i]
		r.Counts = append(r.Counts, creatorCount{c.key.creator, c.key.region, c.key.minute, c.n})
	}
	order = order[:0]
	for i := range t.videos {
		order = append(order, sortEntry{prefix(t.videos[i].key.creator), int32(i)})
	}
	order, t.spare = sortByPrefix(order, t.spare, func(a, b int32) int {
		x, y := &t.videos[a].key, &t.videos[b].key
		return cmp.Or(cmp.Compare(x.creator, y.creator), cmp.Compare(x.video, y.video))
	})
	for _, o := range order {
		v := &t.videos[o.i]
		r.Videos = append(r.Videos, creatorVideo{v.key.creator, v.key.video, v.first, v.last})
	}
	t.order = order[:0]
	t.clear()
	t.reset = true
	return r
}

// sortEntry is an entry of the tally to sort: the prefix of its creator,
// its index.
type sortEntry struct {
	prefix uint64
	i      int32
}

// prefix returns the first 8 bytes of s as a big-endian integer, padded
// with zeros: if s < u then prefix(s) <= prefix(u).
func prefix(s string) uint64 {
	var b [8]byte
	copy(b[:], s)
	return binary.BigEndian.Uint64(b[:])
}

// sortByPrefix sorts s by prefix, a byte at a time from the last (a byte
// all share is skipped), then each run of equal prefixes by full, and
// returns s sorted and a spare slice of its length, to use again.
func sortByPrefix(s, spare []sortEntry, full func(a, b int32) int) (sorted, spareOut []sortEntry) {
	var counts [8][256]int
	for _, e := range s {
		for b := range 8 {
			counts[b][byte(e.prefix>>(8*b))]++
		}
	}
	spare = slices.Grow(spare[:0], len(s))[:len(s)]
	for b := range 8 {
		c := &counts[b]
		if len(s) == 0 || c[byte(s[0].prefix>>(8*b))] == len(s) {
			continue // every entry has this byte
		}
		at := 0
		for i, n := range c {
			c[i], at = at, at+n
		}
		for _, e := range s {
			d := byte(e.prefix >> (8 * b))
			spare[c[d]] = e
			c[d]++
		}
		s, spare = spare, s
	}
	for i := 0; i < len(s); {
		j := i + 1
		for j < len(s) && s[j].prefix == s[i].prefix {
			j++
		}
		if j-i > 1 {
			slices.SortFunc(s[i:j], func(a, b sortEntry) int { return full(a.i, b.i) })
		}
		i = j
	}
	return s, spare
}

// closeCreators reports the tally at tick, if there is anything in it.
func (e *Engine) closeCreators(tick int64) {
	if e.ctally.empty() {
		return
	}
	e.box.creators = append(e.box.creators, e.ctally.report(tick).chunks()...)
}

// loadCreatorTally restores the tally committed with the partition: its
// chunks in order, each what a commit changed (a count of 0: gone).
func (e *Engine) loadCreatorTally() error {
	e.ctally, e.ctallyChunks = newCreatorTally(), 0
	err := e.part.ScanCreatorTally(func(v []byte) error {
		r, err := decodeCreatorReport(v)
		if err != nil {
			return err
		}
		e.ctallyChunks++
		t := &e.ctally
		for _, c := range r.Counts {
			t.setCount(t.count(creatorCountKey{c.Creator, c.Region, c.Minute}, -1), c.N)
		}
		for _, v := range r.Videos {
			i, _ := t.video(creatorVideoKey{v.Creator, v.Video}, -1)
			t.videos[i].first, t.videos[i].last = v.First, v.Last
		}
		return nil
	})
	if err != nil {
		return err
	}
	// What is stored is not what this commit changed.
	for _, i := range e.ctally.changedCounts {
		e.ctally.counts[i].changed = false
	}
	for _, i := range e.ctally.changedVideos {
		e.ctally.videos[i].changed = false
	}
	e.ctally.changedCounts, e.ctally.changedVideos = e.ctally.changedCounts[:0], e.ctally.changedVideos[:0]
	return nil
}

// saveCreatorTally writes what changed in the tally since the last commit
// as the next chunk (or chunks, when it is large), and drops the stored
// chunks once the tally was emptied by a closed tick.
func (e *Engine) saveCreatorTally(w *store.Writer) error {
	t := &e.ctally
	if t.reset {
		for i := range e.ctallyChunks {
			if err := w.DeleteCreatorTally(i); err != nil {
				return err
			}
		}
		e.ctallyChunks, t.reset = 0, false
	}
	if len(t.changedCounts) == 0 && len(t.changedVideos) == 0 {
		return nil
	}
	r := &creatorReport{Counts: make([]creatorCount, 0, len(t.changedCounts)), Videos: make([]creatorVideo, 0, len(t.changedVideos))}
	for _, i := range t.changedCounts {
		c := &t.counts[i]
		c.changed = false
		r.Counts = append(r.Counts, creatorCount{c.key.creator, c.key.region, c.key.minute, c.n})
	}
	for _, i := range t.changedVideos {
		v := &t.videos[i]
		v.changed = false
		r.Videos = append(r.Videos, creatorVideo{v.key.creator, v.key.video, v.first, v.last})
	}
	t.changedCounts, t.changedVideos = t.changedCounts[:0], t.changedVideos[:0]
	// In the order of change, unsorted: a chunk is loaded into the
	// tally, and each key is in it once. Sorting took a fifth of a live
	// commit's writes, which the partitions wait for.
	for _, c := range r.chunks() {
		if err := w.SetCreatorTally(e.ctallyChunks, encodeCreatorReport(nil, c)); err != nil {
			return err
		}
		e.ctallyChunks++
	}
	return nil
}

// encodeCreatorReport appends a report (without its tick) in a compact
// binary form, versioned by its first byte.
func encodeCreatorReport(b []byte, r *creatorReport) []byte {
	b = append(b, creatorsFormat)
	b = binary.AppendUvarint(b, uint64(len(r.Counts)))
	for _, c := range r.Counts {
		b = appendStr(b, c.Creator)
		b = appendStr(b, c.Region)
		b = binary.AppendVarint(b, c.Minute)
		b = binary.AppendVarint(b, c.N)
	}
	b = binary.AppendUvarint(b, uint64(len(r.Videos)))
	for _, v := range r.Videos {
		b = appendStr(b, v.Creator)
		b = appendStr(b, v.Video)
		b = binary.AppendVarint(b, v.First)
		b = binary.AppendVarint(b, v.Last)
	}
	return b
}

func appendStr(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// creatorReader decodes the binary forms of this file.
type creatorReader struct {
	b     []byte
	bad   bool
	names map[string]string // regions interned (nil: none)
}

func (r *creatorReader) uvarint() uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.bad, r.b = true, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *creatorReader) varint() int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.bad, r.b = true, nil
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *creatorReader) count() int {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.bad, r.b = true, nil
		return 0
	}
	return int(n)
}

// next returns the next length-prefixed bytes, in r's buffer.
func (r *creatorReader) next() []byte {
	n := r.uvarint()
	if n > uint64(len(r.b)) {
		r.bad, r.b = true, nil
		return nil
	}
	b := r.b[:n]
	r.b = r.b[n:]
	return b
}

func (r *creatorReader) str() string { return string(r.next()) }

// strAgain is str, but returns last, not a copy, when the string is last.
func (r *creatorReader) strAgain(last string) string {
	if b := r.next(); string(b) != last {
		return string(b)
	}
	return last
}

// region is str for a region: the few regions are interned, not
// allocated at every decoding.
func (r *creatorReader) region() string {
	b := r.next()
	if s, ok := r.names[string(b)]; ok {
		return s
	}
	s := string(b)
	if r.names != nil && len(r.names) < maxRegionNames {
		r.names[s] = s
	}
	return s
}

// maxRegionNames bounds the regions a creator merger interns.
const maxRegionNames = 1024

func (r *creatorReader) float() float64 {
	if len(r.b) < 8 {
		r.bad, r.b = true, nil
		return 0
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(r.b))
	r.b = r.b[8:]
	return f
}

func decodeCreatorReport(b []byte) (*creatorReport, error) {
	if len(b) < 1 || b[0] != creatorsFormat {
		return nil, errCreatorFormat
	}
	// A report is sorted by creator: a creator's entries are in a row and
	// share its string, and the few regions are interned.
	r := &creatorReader{b: b[1:], names: map[string]string{}}
	out := &creatorReport{}
	n := r.count()
	out.Counts = make([]creatorCount, 0, n)
	creator := ""
	for ; n > 0 && !r.bad; n-- {
		creator = r.strAgain(creator)
		out.Counts = append(out.Counts, creatorCount{Creator: creator, Region: r.region(), Minute: r.varint(), N: r.varint()})
	}
	n = r.count()
	out.Videos = make([]creatorVideo, 0, n)
	for ; n > 0 && !r.bad; n-- {
		creator = r.strAgain(creator)
		out.Videos = append(out.Videos, creatorVideo{Creator: creator, Video: r.str(), First: r.varint(), Last: r.varint()})
	}
	if r.bad || len(r.b) != 0 {
		return nil, errCreatorFormat
	}
	return out, nil
}

// appendCreatorPartial is a creator report as the partials topic carries
// it: the partials header, kind 'c', then the report.
func appendCreatorPartial(b []byte, part int32, r *creatorReport) []byte {
	b = append(b, partialsVersion, partialCreators)
	b = binary.AppendUvarint(b, uint64(part))
	b = binary.AppendVarint(b, r.Tick)
	b = binary.AppendUvarint(b, uint64(r.Chunk))
	return encodeCreatorReport(b, r)
}

func isCreatorPartial(b []byte) bool {
	return len(b) >= 2 && b[0] == partialsVersion && b[1] == partialCreators
}

func decodeCreatorPartial(b []byte) (int32, *creatorReport, error) {
	if !isCreatorPartial(b) {
		return 0, nil, errors.New(errPartialFormat)
	}
	b = b[2:]
	p, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, nil, errors.New(errPartialFormat)
	}
	b = b[n:]
	tick, n := binary.Varint(b)
	if n <= 0 {
		return 0, nil, errors.New(errPartialFormat)
	}
	b = b[n:]
	chunk, n := binary.Uvarint(b)
	if n <= 0 || chunk > math.MaxInt32 {
		return 0, nil, errors.New(errPartialFormat)
	}
	r, err := decodeCreatorReport(b[n:])
	if err != nil {
		return 0, nil, err
	}
	r.Tick, r.Chunk = tick, int32(chunk)
	return int32(p), r, nil
}

// bucket is the likes of one minute or hour of like time.
type bucket struct{ idx, n int64 }

func addBucket(bs []bucket, idx, n int64) []bucket {
	// Most likes are of the latest minute or hour, or a later one.
	if k := len(bs) - 1; k < 0 || bs[k].idx < idx {
		return append(bs, bucket{idx, n})
	} else if bs[k].idx == idx {
		if bs[k].n += n; bs[k].n == 0 {
			bs = bs[:k]
		}
		return bs
	}
	i, found := slices.BinarySearchFunc(bs, idx, func(b bucket, t int64) int { return cmp.Compare(b.idx, t) })
	if found {
		bs[i].n += n
		if bs[i].n == 0 {
			bs = slices.Delete(bs, i, i+1)
		}
		return bs
	}
	return slices.Insert(bs, i, bucket{idx, n})
}

// sumBuckets is the likes of the buckets in (lo, hi].
func sumBuckets(bs []bucket, lo, hi int64) int64 {
	var s int64
	for i := len(bs) - 1; i >= 0 && bs[i].idx > lo; i-- {
		if bs[i].idx <= hi {
			s += bs[i].n
		}
	}
	return s
}

func pruneBuckets(bs []bucket, lo int64) []bucket {
	i := 0
	for i < len(bs) && bs[i].idx <= lo {
		i++
	}
	if i == 0 {
		return bs
	}
	return append(bs[:0], bs[i:]...)
}

// creator is a creator's state in the merger.
type creator struct {
	id        string
	likes     int64 // standing likes of all its videos
	regions   []store.RegionCount
	first     int64    // start of the minute of its first like, ms
	minutes   []bucket // likes by minute of like time, the last hour
	hours     []bucket // likes by hour of like time, the last day
	videos    videoLasts
	seq       int64
	lastEmit  int64 // tick of the last record
	lastScore float64
	changed   int64 // tick of the last change
	cool      int64 // tick of its latest entry in the merger's cooling queue
	pending   bool  // changed since the last record
	dirty     bool
	queued    bool // in the list of creators changed at this tick
	// gone: let go from the merger's decoded creators (a later decode
	// makes another); its entries in the cooling queue are stale.
	gone bool
}

// size estimates the bytes a decoded creator takes on the heap: the
// struct, its map entries and slices, and its videos (videoLasts.size).
func (c *creator) size() int64 {
	return int64(256 + len(c.id) + 32*cap(c.regions) + 16*(cap(c.minutes)+cap(c.hours)) + c.videos.size())
}

// creatorCoolMS is how long, in tick time, a creator stays decoded after
// its last change; a variable for the tests.
var creatorCoolMS int64 = minuteMS

type coolEntry struct {
	c    *creator
	tick int64
}

// creatorWindows are a creator's counts at a tick.
type creatorWindows struct {
	likes5m, likes1h, likes24h, videos1h int64
	momentum, baseline                   float64
}

func tickMinute(tick int64) int64 { return floorDiv(tick-1, minuteMS) }

func (c *creator) windows(tick int64) creatorWindows {
	w := c.counts(tick)
	m := tickMinute(tick)
	w.videos1h = c.videos.count(m-60, m)
	return w
}

// counts is windows without videos1h, for ranking.
func (c *creator) counts(tick int64) creatorWindows {
	m := tickMinute(tick)
	h := floorDiv(tick-1, 3_600_000)
	w := creatorWindows{
		likes5m:  sumBuckets(c.minutes, m-5, m),
		likes1h:  sumBuckets(c.minutes, m-60, m),
		likes24h: sumBuckets(c.hours, h-24, h),
	}
	in := scoring.CreatorInput{TS: tick, FirstLike: c.first, Likes5m: w.likes5m, Likes24h: w.likes24h}
	w.momentum, w.baseline = scoring.CreatorMomentum(&in)
	return w
}

// prune drops what no window at tick can see any more.
func (c *creator) prune(tick int64) {
	m := tickMinute(tick)
	c.minutes = pruneBuckets(c.minutes, m-60)
	c.hours = pruneBuckets(c.hours, floorDiv(tick-1, 3_600_000)-24)
	c.videos.prune(m - 60)
}

func (c *creator) idle() bool {
	return len(c.hours) == 0 && len(c.minutes) == 0 && c.videos.len() == 0 && !c.pending && !c.dirty
}

// lastMinute is the latest minute with likes counted (MinInt64: none).
func (c *creator) lastMinute() int64 { return lastIdx(c.minutes) }

func (c *creator) marshal(b []byte) []byte {
	b = append(b, creatorStateFormat)
	b = binary.AppendVarint(b, c.likes)
	b = binary.AppendVarint(b, c.changed)
	b = binary.AppendVarint(b, c.changed-c.first)
	b = binary.AppendVarint(b, c.seq)
	b = binary.AppendVarint(b, c.changed-c.lastEmit)
	b = binary.LittleEndian.AppendUint64(b, math.Float64bits(c.lastScore))
	if c.pending {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(c.regions)))
	for _, r := range c.regions {
		b = appendStr(b, r.Region)
		b = binary.AppendVarint(b, r.Likes)
	}
	m, h := c.bases()
	b = appendBuckets(b, c.minutes, m)
	b = appendBuckets(b, c.hours, h)
	return c.videos.appendTo(b, m)
}

// bases are the minute and the hour a creator's encoding (format 2)
// writes its minutes and hours from: those of its last change.
func (c *creator) bases() (minute, hour int64) {
	return tickMinute(c.changed), floorDiv(c.changed-1, 3_600_000)
}

// appendBuckets appends buckets in order, each index as its difference
// from the one before (the first from base).
func appendBuckets(b []byte, bs []bucket, base int64) []byte {
	b = binary.AppendUvarint(b, uint64(len(bs)))
	for _, x := range bs {
		b = binary.AppendVarint(b, x.idx-base)
		b = binary.AppendVarint(b, x.n)
		base = x.idx
	}
	return b
}

// readBuckets reads what appendBuckets appended from base, or, whole,
// indexes as they are (format 1), into an array from sp with room for
// one more than read, for the like that took the creator back (a new
// minute and hour): growing them was a quarter of the decoding.
func readBuckets(r *creatorReader, base int64, whole bool, sp *creatorSpares) []bucket {
	n := r.count()
	bs := sp.buckets(n + 1)
	for ; n > 0 && !r.bad; n-- {
		idx := r.varint()
		if !whole {
			idx += base
			base = idx
		}
		bs = append(bs, bucket{idx, r.varint()})
	}
	return bs
}

// unmarshalCreator decodes a creator.marshal, of format 2 or 1; names, if
// not nil, interns its regions.
func unmarshalCreator(id string, b []byte, names map[string]string) (*creator, error) {
	return decodeCreator(id, b, names, nil)
}

// decodeCreator is unmarshalCreator, with the arrays of its buckets and
// videos taken from sp (nil: new ones).
func decodeCreator(id string, b []byte, names map[string]string, sp *creatorSpares) (*creator, error) {
	if len(b) < 1 || b[0] != creatorStateFormat && b[0] != creatorsFormat {
		return nil, errCreatorFormat
	}
	whole := b[0] == creatorsFormat // format 1: no differences
	r := &creatorReader{b: b[1:], names: names}
	c := &creator{id: id}
	if whole {
		c.likes, c.first, c.seq, c.lastEmit = r.varint(), r.varint(), r.varint(), r.varint()
		c.lastScore = r.float()
		c.changed = r.varint()
	} else {
		c.likes, c.changed = r.varint(), r.varint()
		c.first = c.changed - r.varint()
		c.seq = r.varint()
		c.lastEmit = c.changed - r.varint()
		c.lastScore = r.float()
	}
	if len(r.b) < 1 {
		return nil, errCreatorFormat
	}
	c.pending, r.b = r.b[0] == 1, r.b[1:]
	// Sized as read (the buckets with room for one more, readBuckets).
	if n := r.count(); n > 0 {
		c.regions = make([]store.RegionCount, 0, n)
		for ; n > 0 && !r.bad; n-- {
			c.regions = append(c.regions, store.RegionCount{Region: r.region(), Likes: r.varint()})
		}
	}
	m, h := c.bases()
	if whole {
		m, h = 0, 0 // indexes and minutes whole: from 0, not each from the one before
	}
	c.minutes = readBuckets(r, m, whole, sp)
	c.hours = readBuckets(r, h, whole, sp)
	var ok bool
	if c.videos, ok = readVideoLasts(r, m, sp); !ok {
		return nil, errCreatorFormat
	}
	if r.bad || len(r.b) != 0 {
		return nil, errCreatorFormat
	}
	return c, nil
}

// creatorSpares are the arrays of creators the merger let go encoded
// (coolDown), for decoding others into: each decode of a creator taken
// back from the cold arena made new ones, a tenth of what a backfill over
// 1M videos allocated (bench/RESULTS.md). A creator let go is still in
// the cooling queue and maybe in the list of changed ones, which read
// only its flags, so its struct stays its own. Arrays are made and kept
// in three sizes (spareCaps), so that most fit the next creator decoded.
type creatorSpares struct {
	bs     [len(spareCaps)][][]bucket
	videos [len(spareCaps)][][]videoLast
}

// spareCaps are the capacities of the arrays decoded into, the last
// room for maxListedVideos and the like that took the creator back (a
// day's hours, an hour's minutes and a few more fit it too).
var spareCaps = [...]int{4, 16, maxListedVideos + 1}

// maxCreatorSpares bounds the arrays of each size kept.
const maxCreatorSpares = 512

// spareClass is the index in spareCaps of the smallest capacity of at
// least n (len(spareCaps): none).
func spareClass(n int) int {
	for i, c := range spareCaps {
		if n <= c {
			return i
		}
	}
	return len(spareCaps)
}

// keep takes the arrays of c, let go, as spares.
func (sp *creatorSpares) keep(c *creator) {
	keepSpare(&sp.bs, c.minutes)
	keepSpare(&sp.bs, c.hours)
	clear(c.videos.s[:cap(c.videos.s)]) // their IDs
	keepSpare(&sp.videos, c.videos.s)
	c.minutes, c.hours, c.videos = nil, nil, videoLasts{}
}

// buckets returns an empty array of buckets with room for n.
func (sp *creatorSpares) buckets(n int) []bucket {
	if sp == nil {
		return make([]bucket, 0, n)
	}
	return takeSpare(&sp.bs, n)
}

// videoLasts returns an empty array of videos with room for n.
func (sp *creatorSpares) videoLasts(n int) []videoLast {
	if sp == nil {
		return make([]videoLast, 0, n)
	}
	return takeSpare(&sp.videos, n)
}

// keepSpare keeps s, emptied, among spares if its capacity is one of
// spareCaps and fewer than maxCreatorSpares of it are kept.
func keepSpare[T any](spares *[len(spareCaps)][][]T, s []T) {
	if k := spareClass(cap(s)); k < len(spareCaps) && cap(s) == spareCaps[k] && len(spares[k]) < maxCreatorSpares {
		spares[k] = append(spares[k], s[:0])
	}
}

// takeSpare returns an empty array with room for n: a spare, or a new one
// of one of spareCaps if n fits one.
func takeSpare[T any](spares *[len(spareCaps)][][]T, n int) []T {
	k := spareClass(n)
	if k == len(spareCaps) {
		return make([]T, 0, n)
	}
	if l := len(spares[k]); l > 0 {
		s := spares[k][l-1]
		spares[k][l-1] = nil
		spares[k] = spares[k][:l-1]
		return s
	}
	return make([]T, 0, spareCaps[k])
}

// RankedCreator is one entry of a rising-creators list.
type RankedCreator struct {
	Creator  string
	Momentum float64
	Likes1h  int64
}

// CreatorList is the rising creators of one region at a tick.
type CreatorList struct {
	Region   string
	Creators []RankedCreator
}

type latestCreators struct {
	tick    int64
	lists   map[string]CreatorList
	regions []string
}

type creatorChunkKey struct {
	tick        int64
	part, chunk int32
}

// creatorMerger keeps every creator's state from the partitions' creator
// reports, merged per tick like the trending lists; see the top of the
// file.
type creatorMerger struct {
	cfg       Config
	tick      int64
	part      *store.Partition                      // where the state is kept
	pending   map[int64]map[[2]int32]*creatorReport // by partition and chunk
	ticks     int64Heap
	done      int64
	savedDone int64
	saved     [2]int64 // done and risingMinute as last stored
	// risingMinute is the minute of tick time of the last rising list.
	risingMinute int64
	unsaved      []creatorChunkKey
	creators     map[string]*creator // decoded
	dirty        []*creator
	active       map[string]*creator // may be rising (mayRise at their last change)
	// cold holds the creators encoded (coldcreators.go): one not changed
	// in the last minute of tick time that cannot be listed as rising
	// before it changes again. coldDirty lists those changed since the
	// last commit (some may have been taken back since).
	cold      *coldCreators
	coldDirty []string
	// cooling queues the decoded creators by the tick of their last
	// change (from coolHead), to be encoded creatorCoolMS later.
	cooling  []coolEntry
	coolHead int
	maxBytes int64 // Config.CreatorBytes
	// decodedBytes is Config.CreatorDecodedBytes, or half of maxBytes.
	decodedBytes int64
	// decodedSize is the mean size of a decoded creator at the last
	// commit, by which coolDown tells the bytes held.
	decodedSize int64
	// letGo counts the cold creators let go to the store for the bytes;
	// read counts the creators read back from the store.
	letGo, read int64
	// known holds every creator the store may hold: one it has never seen
	// is new, and not read.
	known *filter
	fkey  []byte
	buf   []byte
	// regionNames interns the regions of the creators decoded.
	regionNames map[string]string
	spares      creatorSpares

	minLikes    int64
	writeRecord func(key, value []byte, ts int64) error // nil: not written
	writeList   func(key, value []byte, ts int64) error // nil: not written
	records     int64
	latest      atomic.Pointer[latestCreators]
}

// knownCreatorBits sizes the creator merger's filter of the creators the
// store holds (512 KiB: 1% false positives with 350,000 creators; a false
// positive costs a read).
const knownCreatorBits = 1 << 22

// creatorsMetaID is the key of the creator merger's own record: no
// creator has an empty id.
const creatorsMetaID = ""

func newCreatorMerger(cfg Config, part *store.Partition) (*creatorMerger, error) {
	cm := &creatorMerger{
		cfg:          cfg,
		tick:         cfg.Tick.Milliseconds(),
		part:         part,
		pending:      map[int64]map[[2]int32]*creatorReport{},
		creators:     map[string]*creator{},
		active:       map[string]*creator{},
		cold:         newColdCreators(),
		maxBytes:     cfg.CreatorBytes,
		decodedBytes: cmp.Or(min(cfg.CreatorDecodedBytes, cfg.CreatorBytes), cfg.CreatorBytes/2),
		// A guess until the first commit measures it (B1: 1.25 KB).
		decodedSize: 1 << 10,
		minLikes:    int64(cfg.CreatorMinLikes),
		known:       newFilter(knownCreatorBits),
		regionNames: map[string]string{},
	}
	err := part.ScanCreators(func(id string, v []byte) error {
		cm.known.add([]byte(id))
		if id == creatorsMetaID {
			r := &creatorReader{b: v}
			if len(v) < 1 || v[0] != creatorsFormat {
				return errCreatorFormat
			}
			r.b = v[1:]
			cm.done, cm.risingMinute = r.varint(), r.varint()
			if r.bad || len(r.b) != 0 {
				return errCreatorFormat
			}
			cm.savedDone, cm.saved = cm.done, [2]int64{cm.done, cm.risingMinute}
			return nil
		}
		c, err := unmarshalCreator(id, v, cm.regionNames)
		if err != nil {
			return err
		}
		switch {
		case len(c.minutes) > 0: // may be rising: decoded until it cools
			cm.creators[id] = c
			cm.active[id] = c
			cm.enqueue(c, cm.done)
		case len(c.hours) > 0 || c.videos.len() > 0 || c.pending:
			if !cm.cold.put([]byte(id), v, coldRef{changed: c.changed, lastHour: lastIdx(c.hours), pending: c.pending}) {
				cm.creators[id] = c // the arena is full: decoded
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = part.ScanCreatorReports(func(tick int64, p, chunk int32, v []byte) error {
		r, err := decodeCreatorReport(v)
		if err != nil {
			return err
		}
		r.Tick, r.Chunk = tick, chunk
		if tick > cm.done {
			cm.add(p, r, false)
		}
		return nil
	})
	return cm, err
}

func (cm *creatorMerger) add(part int32, r *creatorReport, unsaved bool) {
	if r.Tick <= cm.done {
		return
	}
	byPart := cm.pending[r.Tick]
	if byPart == nil {
		byPart = map[[2]int32]*creatorReport{}
		cm.pending[r.Tick] = byPart
		heap.Push(&cm.ticks, r.Tick)
	}
	byPart[[2]int32{part, r.Chunk}] = r
	if unsaved {
		cm.unsaved = append(cm.unsaved, creatorChunkKey{r.Tick, part, r.Chunk})
	}
}

func (cm *creatorMerger) hasPending() bool { return len(cm.pending) > 0 }

// emitBefore merges and emits every pending tick before f.
func (cm *creatorMerger) emitBefore(f int64) error {
	for cm.ticks.Len() > 0 && cm.ticks[0] < f {
		t := heap.Pop(&cm.ticks).(int64)
		byPart := cm.pending[t]
		delete(cm.pending, t)
		cm.done = t
		if err := cm.mergeTick(t, byPart); err != nil {
			return err
		}
	}
	return nil
}

// get returns a creator's state decoded from memory, the store or new.
func (cm *creatorMerger) get(id string) (*creator, error) {
	if c := cm.creators[id]; c != nil {
		return c, nil
	}
	cm.fkey = append(cm.fkey[:0], id...)
	if i := cm.cold.find(cm.fkey); i >= 0 {
		c, err := decodeCreator(id, cm.cold.encoded(i), cm.regionNames, &cm.spares)
		if err != nil {
			return nil, err
		}
		dirty := cm.cold.ref(i).dirty
		cm.cold.remove(i)
		cm.creators[id] = c
		if dirty {
			cm.markDirty(c)
		}
		return c, nil
	}
	c := &creator{id: id}
	if cm.known.seen(cm.fkey) {
		v, ok, err := cm.part.Creator(id)
		if err != nil {
			return nil, err
		}
		if ok {
			cm.read++
			if c, err = unmarshalCreator(id, v, cm.regionNames); err != nil {
				return nil, err
			}
		}
	}
	cm.creators[id] = c
	return c, nil
}

func (cm *creatorMerger) enqueue(c *creator, t int64) {
	c.cool = t
	cm.cooling = append(cm.cooling, coolEntry{c, t})
}

// mayRise reports whether a creator may be listed as rising at a tick
// after t without another change: rising needs CreatorMinLikes likes in
// the last hour and a like in the last 5 minutes, and without a change
// its likes in the last hour only fall (a minute's count is never
// negative), and its last like only ages.
func (cm *creatorMerger) mayRise(c *creator, t int64) bool {
	m := tickMinute(t)
	return c.likes >= cm.minLikes && c.lastMinute() > m-5 && sumBuckets(c.minutes, m-60, m) >= cm.minLikes
}

// coolDown encodes the creators not changed in the last creatorCoolMS of
// tick time that cannot be listed as rising before they change again, the
// longest unchanged first, while the creators in memory take more than
// decodedBytes. Below it encoding buys nothing, and it costs: a creator
// encoded is decoded again at its next like (5% of a backfill of 13,000
// creators under the 15.7 MiB of a 512 MiB budget).
func (cm *creatorMerger) coolDown(t int64) {
	held := cm.cold.bytes() + int64(len(cm.creators))*cm.decodedSize
	for n := len(cm.cooling); cm.coolHead < n && held > cm.decodedBytes; {
		x := cm.cooling[cm.coolHead]
		if x.tick > t-creatorCoolMS {
			break
		}
		cm.cooling[cm.coolHead] = coolEntry{}
		cm.coolHead++
		c := x.c
		if c.cool != x.tick || c.gone {
			continue // changed since, or let go
		}
		if cm.mayRise(c, t) {
			cm.enqueue(c, t)
			continue
		}
		cm.buf = c.marshal(cm.buf[:0])
		cm.fkey = append(cm.fkey[:0], c.id...)
		if !cm.cold.put(cm.fkey, cm.buf, coldRef{changed: c.changed, lastHour: lastIdx(c.hours), dirty: c.dirty, pending: c.pending}) {
			cm.enqueue(c, t) // the arena is full: decoded
			break
		}
		if c.dirty {
			c.dirty = false // the cold entry is: save skips c
			cm.coldDirty = append(cm.coldDirty, c.id)
		}
		delete(cm.creators, c.id)
		delete(cm.active, c.id)
		c.gone = true
		cm.spares.keep(c)
		held += entryBytes(cm.fkey, uint32(len(cm.buf))) - cm.decodedSize
	}
	switch q := cm.cooling[cm.coolHead:]; {
	case len(q) > 2*len(cm.creators)+1024:
		// Most are of creators changed again since, queued behind one
		// left decoded: keep each creator's latest, in order.
		n := 0
		for _, x := range q {
			if x.c.cool == x.tick && !x.c.gone {
				cm.cooling[n] = x
				n++
			}
		}
		clear(cm.cooling[n:])
		cm.cooling, cm.coolHead = cm.cooling[:n], 0
	case cm.coolHead > 1024 && cm.coolHead > len(cm.cooling)/2:
		n := copy(cm.cooling, q)
		clear(cm.cooling[n:])
		cm.cooling, cm.coolHead = cm.cooling[:n], 0
	}
}

// lastIdx is the index of the last bucket (MinInt64: none).
func lastIdx(bs []bucket) int64 {
	if len(bs) == 0 {
		return math.MinInt64
	}
	return bs[len(bs)-1].idx
}

func (cm *creatorMerger) mergeTick(t int64, byPart map[[2]int32]*creatorReport) error {
	ids := make([][2]int32, 0, len(byPart))
	for id := range byPart {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b [2]int32) int { return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1])) })
	var changed []*creator
	touch := func(c *creator) {
		if !c.queued {
			c.queued = true
			changed = append(changed, c)
		}
	}
	// A report is sorted by creator: look each up once in a row.
	var last *creator
	get := func(id string) (*creator, error) {
		if last != nil && last.id == id {
			return last, nil
		}
		c, err := cm.get(id)
		last = c
		return c, err
	}
	for _, id := range ids {
		r := byPart[id]
		// Its counts and its videos are each sorted by creator: taken
		// together in that order, a creator's are in a row.
		for i, j := 0, 0; i < len(r.Counts) || j < len(r.Videos); {
			if j == len(r.Videos) || i < len(r.Counts) && r.Counts[i].Creator <= r.Videos[j].Creator {
				x := &r.Counts[i]
				i++
				c, err := get(x.Creator)
				if err != nil {
					return err
				}
				c.likes += x.N
				if x.Region != "" {
					addCreatorRegion(c, x.Region, x.N)
				}
				c.minutes = addBucket(c.minutes, x.Minute, x.N)
				c.hours = addBucket(c.hours, floorDiv(x.Minute, 60), x.N)
				touch(c)
				continue
			}
			x := &r.Videos[j]
			j++
			c, err := get(x.Creator)
			if err != nil {
				return err
			}
			c.videos.set(x.Video, x.Last)
			if c.first == 0 || x.First*minuteMS < c.first {
				c.first = x.First * minuteMS
			}
			touch(c)
		}
	}
	slices.SortFunc(changed, func(a, b *creator) int { return cmp.Compare(a.id, b.id) })
	for _, c := range changed {
		c.queued = false
		c.prune(t)
		c.changed = t
		if cm.mayRise(c, t) {
			cm.active[c.id] = c
		}
		w := c.windows(t)
		if cm.shouldEmit(c, t, w.momentum) {
			if err := cm.emit(c, t, &w); err != nil {
				return err
			}
		} else {
			c.pending = true
		}
		cm.markDirty(c)
		cm.enqueue(c, t)
	}
	// One list per minute of tick time: the windows move by the minute.
	if m := floorDiv(t, minuteMS); m > cm.risingMinute {
		cm.risingMinute = m
		if err := cm.rising(t); err != nil {
			return err
		}
	}
	cm.coolDown(t)
	return nil
}

func addCreatorRegion(c *creator, region string, n int64) {
	for i := range c.regions {
		if c.regions[i].Region == region {
			c.regions[i].Likes += n
			if c.regions[i].Likes == 0 {
				c.regions = slices.Delete(c.regions, i, i+1)
			}
			return
		}
	}
	c.regions = append(c.regions, store.RegionCount{Region: region, Likes: n})
}

// homeRegion: the region with most standing likes, ties to the smaller name.
func (c *creator) homeRegion() string {
	best := ""
	var n int64
	for _, rc := range c.regions {
		if rc.Likes > n || (rc.Likes == n && rc.Region < best) {
			best, n = rc.Region, rc.Likes
		}
	}
	return best
}

func (cm *creatorMerger) shouldEmit(c *creator, t int64, score float64) bool {
	if cm.cfg.EmitEveryChange || c.seq == 0 || t-c.lastEmit >= cm.cfg.EmitInterval.Milliseconds() {
		return true
	}
	last := c.lastScore
	if last == score {
		return false
	}
	if last == 0 {
		return true
	}
	d := (score - last) / last
	return d > cm.cfg.EmitThreshold || -d > cm.cfg.EmitThreshold
}

func (cm *creatorMerger) emit(c *creator, t int64, w *creatorWindows) error {
	c.seq++
	c.lastEmit = t
	c.lastScore = w.momentum
	c.pending = false
	cm.markDirty(c)
	cm.records++
	if cm.writeRecord == nil {
		return nil
	}
	cm.buf = appendCreatorScore(cm.buf[:0], c, t, w)
	return cm.writeRecord([]byte(c.id), cm.buf, t)
}

func (cm *creatorMerger) markDirty(c *creator) {
	if !c.dirty {
		c.dirty = true
		cm.dirty = append(cm.dirty, c)
	}
}

// rising lists, at tick t, the creators with the highest momentum among
// those with at least CreatorMinLikes likes in the last hour, globally and
// by home region.
func (cm *creatorMerger) rising(t int64) error {
	type cand struct {
		RankedCreator
		region string
	}
	var cands []cand
	for id, c := range cm.active {
		// Without a like in its last 5 minutes a creator has no
		// momentum, and most have too few likes in the last hour to be
		// listed. Neither comes back without a change, which adds the
		// creator again (mayRise).
		if !cm.mayRise(c, t) {
			delete(cm.active, id)
			continue
		}
		w := c.counts(t)
		if w.momentum <= 0 {
			continue
		}
		cands = append(cands, cand{RankedCreator{Creator: id, Momentum: w.momentum, Likes1h: w.likes1h}, c.homeRegion()})
	}
	slices.SortFunc(cands, func(a, b cand) int {
		return cmp.Or(-cmp.Compare(a.Momentum, b.Momentum), cmp.Compare(a.Creator, b.Creator))
	})
	k := cm.cfg.TopK
	global := make([]RankedCreator, 0, min(k, len(cands)))
	by := map[string][]RankedCreator{}
	for _, x := range cands {
		if len(global) < k {
			global = append(global, x.RankedCreator)
		}
		if r := x.region; r != "" && len(by[r]) < k {
			by[r] = append(by[r], x.RankedCreator)
		}
	}
	lists := []CreatorList{{Region: GlobalRegion, Creators: global}}
	names := make([]string, 0, len(by))
	for r := range by {
		names = append(names, r)
	}
	slices.Sort(names)
	for _, r := range names {
		lists = append(lists, CreatorList{Region: r, Creators: by[r]})
	}
	l := &latestCreators{tick: t, lists: map[string]CreatorList{}}
	for _, x := range lists {
		l.lists[x.Region] = x
		l.regions = append(l.regions, x.Region)
		if cm.writeList != nil {
			cm.buf = AppendCreatorList(cm.buf[:0], t, &x)
			if err := cm.writeList([]byte(x.Region), cm.buf, t); err != nil {
				return err
			}
		}
	}
	cm.latest.Store(l)
	return nil
}

// finish emits a final record of every creator whose state is newer than
// its last record: a bounded input has ended.
func (cm *creatorMerger) finish() error {
	var ids []string
	for id, c := range cm.creators {
		if c.pending {
			ids = append(ids, id)
		}
	}
	for i := range cm.cold.len() {
		if cm.cold.ref(i).pending {
			ids = append(ids, string(cm.cold.id(i)))
		}
	}
	if cm.letGo > 0 {
		// Those let go are in the store as they were: clean.
		err := cm.part.ScanCreators(func(id string, v []byte) error {
			if id == creatorsMetaID || cm.creators[id] != nil {
				return nil
			}
			if cm.cold.find([]byte(id)) >= 0 {
				return nil
			}
			c, err := unmarshalCreator(id, v, cm.regionNames)
			if err != nil {
				return err
			}
			if c.pending {
				ids = append(ids, id)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	slices.Sort(ids)
	for _, id := range ids {
		c, err := cm.get(id)
		if err != nil {
			return err
		}
		w := c.windows(c.changed)
		if err := cm.emit(c, c.changed, &w); err != nil {
			return err
		}
	}
	return nil
}

// save writes the creators changed since the last commit, the reports
// received since then that are still pending, and drops those merged;
// creators idle and clean since the commit before are evicted from memory.
func (cm *creatorMerger) save(w *store.Writer) error {
	// Creators clean since the last commit, which every earlier batch
	// has reached, can be read back from the store: drop the idle ones.
	// A pending creator is neither pruned nor dropped: its next record,
	// the final one if no like comes, counts its windows at its last
	// change, which pruning to the latest tick would cut (the outputs then
	// depended on when commits came).
	if cm.done > 0 {
		for id, c := range cm.creators {
			if c.dirty || c.pending {
				continue
			}
			c.prune(cm.done)
			if c.idle() {
				delete(cm.creators, id)
				delete(cm.active, id)
				c.gone = true
			}
		}
		// A cold creator whose last hour with likes is a day old has
		// nothing left for any window (see prune).
		h := floorDiv(cm.done-1, 3_600_000) - 24
		for i := cm.cold.len() - 1; i >= 0; i-- { // remove moves the last to i
			if r := cm.cold.ref(i); !r.dirty && !r.pending && r.lastHour <= h {
				cm.cold.remove(i)
			}
		}
	}
	cm.holdToBytes()
	if cm.done > cm.savedDone {
		if err := w.DeleteCreatorReportsThrough(cm.done); err != nil {
			return err
		}
		cm.savedDone = cm.done
	}
	for _, r := range cm.unsaved {
		rep, ok := cm.pending[r.tick][[2]int32{r.part, r.chunk}]
		if !ok {
			continue
		}
		cm.buf = encodeCreatorReport(cm.buf[:0], rep)
		if err := w.SetCreatorReport(r.tick, r.part, r.chunk, cm.buf); err != nil {
			return err
		}
	}
	cm.unsaved = cm.unsaved[:0]
	for _, c := range cm.dirty {
		if !c.dirty {
			continue // encoded since: its cold entry is
		}
		c.dirty = false
		cm.buf = c.marshal(cm.buf[:0])
		if err := w.SetCreator(c.id, cm.buf); err != nil {
			return err
		}
	}
	clear(cm.dirty)
	cm.dirty = cm.dirty[:0]
	for _, id := range cm.coldDirty {
		cm.fkey = append(cm.fkey[:0], id...)
		i := cm.cold.find(cm.fkey)
		if i < 0 || !cm.cold.ref(i).dirty {
			continue // taken back since, or listed twice
		}
		if err := w.SetCreator(id, cm.cold.encoded(i)); err != nil {
			return err
		}
		cm.cold.ref(i).dirty = false
	}
	clear(cm.coldDirty)
	cm.coldDirty = cm.coldDirty[:0]
	if st := [2]int64{cm.done, cm.risingMinute}; st != cm.saved {
		cm.saved = st
		cm.buf = append(cm.buf[:0], creatorsFormat)
		cm.buf = binary.AppendVarint(cm.buf, cm.done)
		cm.buf = binary.AppendVarint(cm.buf, cm.risingMinute)
		if err := w.SetCreator(creatorsMetaID, cm.buf); err != nil {
			return err
		}
	}
	return nil
}

// holdToBytes lets the cold creators go to the store, the longest
// unchanged first, while the creators in memory take more than
// Config.CreatorBytes, down to three quarters of it. Only those stored as
// they are (clean since the commit before, which every later read sees)
// can go; those changed since must be written first, and the decoded ones
// are changing or may be rising.
func (cm *creatorMerger) holdToBytes() {
	var decoded int64
	for _, c := range cm.creators {
		decoded += c.size()
	}
	if len(cm.creators) > 0 {
		cm.decodedSize = decoded / int64(len(cm.creators))
	}
	total := cm.cold.bytes() + decoded
	if total <= cm.maxBytes {
		return
	}
	// The clean, the longest unchanged first; removed from the highest
	// index down, as remove moves the last entry to the one removed.
	var cands []int32
	for i := range cm.cold.len() {
		if !cm.cold.ref(i).dirty {
			cands = append(cands, int32(i))
		}
	}
	slices.SortFunc(cands, func(a, b int32) int {
		return cmp.Or(cmp.Compare(cm.cold.ref(int(a)).changed, cm.cold.ref(int(b)).changed), bytes.Compare(cm.cold.id(int(a)), cm.cold.id(int(b))))
	})
	n := 0
	for _, i := range cands {
		if total <= cm.maxBytes/4*3 {
			break
		}
		total -= entryBytes(cm.cold.id(int(i)), cm.cold.ref(int(i)).n)
		n++
	}
	cands = cands[:n]
	slices.Sort(cands)
	for _, i := range slices.Backward(cands) {
		cm.cold.remove(int(i))
		cm.letGo++
	}
}

// appendCreatorScore appends a creator-scores record.
func appendCreatorScore(b []byte, c *creator, t int64, w *creatorWindows) []byte {
	b = append(b, `{"creator_id":`...)
	b = event.AppendString(b, c.id)
	b = append(b, `,"ts":`...)
	b = strconv.AppendInt(b, t, 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendInt(b, c.seq, 10)
	b = append(b, `,"model":"`+creatorModelName+`","momentum":`...)
	b = appendFloat(b, w.momentum)
	b = append(b, `,"baseline":`...)
	b = appendFloat(b, w.baseline)
	b = append(b, `,"likes":`...)
	b = strconv.AppendInt(b, c.likes, 10)
	b = append(b, `,"likes_5m":`...)
	b = strconv.AppendInt(b, w.likes5m, 10)
	b = append(b, `,"likes_1h":`...)
	b = strconv.AppendInt(b, w.likes1h, 10)
	b = append(b, `,"likes_24h":`...)
	b = strconv.AppendInt(b, w.likes24h, 10)
	b = append(b, `,"videos_liked_1h":`...)
	b = strconv.AppendInt(b, w.videos1h, 10)
	b = append(b, `,"region":`...)
	b = event.AppendString(b, c.homeRegion())
	return append(b, '}')
}

// AppendCreatorList appends the rising-creators record of one region at a
// tick.
func AppendCreatorList(b []byte, tick int64, l *CreatorList) []byte {
	b = append(b, `{"ts":`...)
	b = strconv.AppendInt(b, tick, 10)
	b = append(b, `,"region":`...)
	b = event.AppendString(b, l.Region)
	b = append(b, `,"creators":[`...)
	for i, x := range l.Creators {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"creator_id":`...)
		b = event.AppendString(b, x.Creator)
		b = append(b, `,"momentum":`...)
		b = appendFloat(b, x.Momentum)
		b = append(b, `,"likes_1h":`...)
		b = strconv.AppendInt(b, x.Likes1h, 10)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// openCreators gives the merger its creator state, kept in part.
func (c *Coordinator) openCreators(m *merger, part *store.Partition) error {
	cm, err := newCreatorMerger(c.cfg, part)
	if err != nil {
		return fmt.Errorf("load creators: %w", err)
	}
	// One message each, reused (a sink copies what it keeps): a new one
	// at every creator record escaped to the heap.
	if s := c.out.Creators; s != nil {
		var msg Message
		cm.writeRecord = func(key, value []byte, ts int64) error {
			msg = Message{Key: key, Value: value, Time: ts}
			return s.Write(&msg)
		}
	}
	if s := c.out.RisingCreators; s != nil {
		var msg Message
		cm.writeList = func(key, value []byte, ts int64) error {
			msg = Message{Key: key, Value: value, Time: ts}
			return s.Write(&msg)
		}
	}
	m.creators = cm
	c.creators.Store(cm)
	return nil
}

// takeCreators hands the creator reports of a partition's outbox to the
// merger in process, or to the partials output.
func (c *Coordinator) takeCreators(id int32, e *Engine) error {
	for _, r := range e.box.creators {
		if c.out.Partials != nil {
			c.rbuf = appendCreatorPartial(c.rbuf[:0], id, r)
			key := strconv.AppendInt(nil, int64(id), 10)
			if err := c.out.Partials.Write(&Message{Key: key, Value: c.rbuf, Time: r.Tick}); err != nil {
				return err
			}
		} else {
			c.merger.addCreators(id, r)
		}
	}
	clear(e.box.creators)
	e.box.creators = e.box.creators[:0]
	return nil
}

// takeCreatorPartial feeds the merger a creator report read from the
// partials topic at offset; a pipe's job decodes it (v is copied).
func (m *merger) takeCreatorPartial(v []byte, offset int64) error {
	if m.creators != nil && m.pipe != nil {
		if !isCreatorPartial(v) {
			return errors.New(errPartialFormat)
		}
		m.pipe.queue = append(m.pipe.queue, creatorAdd{raw: bytes.Clone(v), offset: offset})
		return nil
	}
	part, r, err := decodeCreatorPartial(v)
	if err != nil {
		return err
	}
	if m.creators != nil {
		m.addCreators(part, r)
	}
	return nil
}

// RisingCreators returns the last rising-creators list of a region. Safe
// to call from any goroutine.
func (c *Coordinator) RisingCreators(region string) (CreatorList, int64, bool) {
	cm := c.creators.Load()
	if cm == nil {
		return CreatorList{}, 0, false
	}
	l := cm.latest.Load()
	if l == nil {
		return CreatorList{}, 0, false
	}
	x, ok := l.lists[region]
	return x, l.tick, ok
}

// ReadCreator computes a creator's record from the committed state of the
// merger kept with partition 0 (the live service's), as its last record
// would show it at its last change. It may be called from any goroutine:
// it only reads the store.
func ReadCreator(db *store.DB, id string) ([]byte, bool, error) {
	if id == creatorsMetaID {
		return nil, false, nil
	}
	v, ok, err := db.Partition(mergePartition).Creator(id)
	if err != nil || !ok {
		return nil, false, err
	}
	c, err := unmarshalCreator(id, v, nil)
	if err != nil {
		return nil, false, fmt.Errorf("read creator %q: %w", id, err)
	}
	if c.changed == 0 {
		return nil, false, nil
	}
	w := c.windows(c.changed)
	return appendCreatorScore(nil, c, c.changed, &w), true, nil
}
