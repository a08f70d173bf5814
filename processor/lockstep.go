package processor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/viralityhq/virality/store"

	"github.com/viralityhq/virality/scoring"
)

// Lockstep groups. Bought likes can come from accounts that each like at
// a person's rate, so that no rate threshold sees them, but that deliver
// campaigns together: the same groups of accounts like the same videos
// within minutes of each other, again and again (the lockstep behaviour
// of CopyCatch, Beutel et al., WWW 2013, and SynchroTrap, Cao et al., CCS
// 2014). People who like a new video together rarely liked another video
// together, in the same ten minutes, in the two hours before.
//
// In streaming form, split where the data meets:
//
//   - The account stage (partition of the user) knows each account's
//     likes. A like's key names a video and the 10 minutes its like fell
//     in (lockKey). For each account and bucket the stage keeps the key of
//     its newest like there (by event time, then key: a function of the
//     bucket's likes, not of their arrival), and gives each like the keys
//     of the account's lockKeyCount newest buckets with likes among
//     b-2 .. b-25 (two hours): closed buckets, so the keys are the same
//     for any partitioning, like the account weight.
//   - The engine (partition of the video) knows who liked the video. In
//     a video's first lockTrackMS its tracker counts, for each key, the
//     accounts among its likers that carried it (at most lockMaxKeys keys,
//     the first ones seen). Once one key is shared by lockMin likers, and
//     by lockShare percent of them, the video is a campaign: that many
//     accounts liked another video in the same ten minutes before, and
//     now this new one. Every like of its first hour (lockSpanMS) is then
//     damped, those applied already too, so that neither the crew's first
//     likes nor those of crews that never served together before carry
//     it.
//   - A video is not listed in trending lists until Config.TrendingMinAge
//     (5 minutes) of event time has passed since its first like (judging).
//     The trending model lists a new video with a handful of likes; a
//     campaign's first crew may have no history with the others, and the
//     crews that follow, within minutes, show the shared keys. Organic
//     bursts build for minutes before they are listed anyway. With
//     Config.TrendingMinLikers, a video in its first lockTrackMS also
//     waits until that many accounts liked it (off by default).
//
// A lockstep like counts scoring.LockstepWeight and carries the
// DampedLockstep bit, so score records name it (damped_reason
// "lockstep"). The engine applies a partition's likes in one order that
// depends on the events alone (routedLess), and a tracker depends only
// on its video's likes, so the decisions, like every weight, are the same
// for any partitioning and after any restart: the tracker, and the span a
// campaign's likes are damped in, are stored with the video.
//
// What it cannot see: a crew's first campaign (no account of it liked
// with the others before), and a campaign whose crews last served
// together more than two hours before, or whose shared key is not among
// the first lockMaxKeys its tracker saw.
//
// Memory: the stage keeps 6 bytes per account and bucket of the two hours;
// the engine a tracker (at most lockMaxKeys keys and counts) for each
// video in its first lockTrackMS, dropped after.
const (
	lockKeyCount = 6
	lockSlotMS   = 10 * 60_000
	lockTrackMS  = 30 * 60_000
	lockSpanMS   = 60 * 60_000
	lockMaxKeys  = 256
	lockMin      = 5
	lockShare    = 20
)

// DefaultTrendingMinAge is Config.TrendingMinAge by default. On the
// streams of bench/bought it keeps all but 0-2 of 20 crews' campaigns
// out of the global top 20, against 2-8 without it, and delays the
// organic bursts' median listing by 0-0.7 minutes (bench/RESULTS.md).
const DefaultTrendingMinAge = 5 * time.Minute

// DefaultTrendingMinLikers is Config.TrendingMinLikers by default: none.
// 8 kept more crews' campaigns out of one generated stream and none out of
// another, and listed organic bursts a minute later (bench/RESULTS.md).
const DefaultTrendingMinLikers = 0

// lockKeys are the keys a like carries from its account stage, each with
// its popularity (popular.go).
type lockKeys struct {
	k [lockKeyCount]uint32
	p [lockKeyCount]uint8
	n uint8
}

func (ks *lockKeys) slice() []uint32 { return ks.k[:ks.n] }

// add adds a key of popularity pop unless it is there already or the set
// is full.
func (ks *lockKeys) add(k uint32, pop uint8) {
	if int(ks.n) == lockKeyCount || slices.Contains(ks.k[:ks.n], k) {
		return
	}
	ks.k[ks.n], ks.p[ks.n] = k, pop
	ks.n++
}

// lockKey is the key of a like of video at ts: FNV-1a of the video id and
// the 10 minutes of ts. Stored and sent between processes, so it must not
// depend on the process (no seeded hash).
func lockKey(video string, ts int64) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(video); i++ {
		h = (h ^ uint32(video[i])) * 16777619
	}
	slot := uint64(floorDiv(ts, lockSlotMS))
	for i := 0; i < 8; i++ {
		h = (h ^ uint32(byte(slot>>(8*i)))) * 16777619
	}
	return h
}

// lockTracker is a young video's count of its likers' keys. Once the
// video is found to be a campaign it counts no more: only flagged is left.
type lockTracker struct {
	likers  int64    // likes observed since the tracker began
	flagged bool     // the video is a campaign: damp every like
	keys    []uint32 // sorted
	counts  []uint32 // counts[i]: likers that carried keys[i]
	pops    []uint8  // pops[i]: the largest popularity keys[i] came with
}

// observe counts the keys of a new liker and reports whether they make
// the video a campaign (flagged): a key shared by lockMin likers, and
// lockShare percent of them, more than its popularity makes likely.
func (t *lockTracker) observe(ks *lockKeys) bool {
	t.likers++
	for j, k := range ks.slice() {
		i, found := slices.BinarySearch(t.keys, k)
		if !found {
			if len(t.keys) >= lockMaxKeys {
				continue
			}
			t.keys = slices.Insert(t.keys, i, k)
			t.counts = slices.Insert(t.counts, i, 0)
			t.pops = slices.Insert(t.pops, i, ks.p[j])
		}
		t.counts[i]++
		t.pops[i] = min(t.pops[i], ks.p[j])
		if c := int64(t.counts[i]); c >= lockMin && c*100 >= lockShare*t.likers && unlikely(t.likers, c, t.pops[i]) {
			t.flagged, t.keys, t.counts, t.pops = true, nil, nil, nil
			return true
		}
	}
	return false
}

// judging reports whether v is too young for the lockstep signal to have
// judged it: its first like is less than minAge before its latest event,
// or it has fewer likers than minLikers in its first lockTrackMS. It is
// not listed until then.
func (v *video) judging(minLikers int, minAge int64) bool {
	if v.Clock-v.FirstLike < minAge {
		return true
	}
	return v.lock != nil && !v.lock.flagged && v.lock.likers < int64(minLikers)
}

// bytes estimates the tracker's memory.
func (t *lockTracker) bytes() int64 {
	if t == nil {
		return 0
	}
	return 88 + 4*int64(cap(t.keys)+cap(t.counts)) + int64(cap(t.pops))
}

// lockstep decides whether a like of v at ts, carrying keys, is damped as
// lockstep; first: the account's first like of v (a like again after an
// unlike is not counted twice). It starts and ends v's tracker.
func (e *Engine) lockstep(v *video, ts int64, keys *lockKeys, first bool) bool {
	if v.FirstLike != 0 && ts-v.FirstLike > lockTrackMS {
		if v.lock != nil {
			v.lock = nil
			e.markVideo(v)
		}
		return false
	}
	if v.lock == nil {
		if !first || v.LockTo != 0 {
			return false
		}
		v.lock = &lockTracker{}
	}
	if !first || v.lock.flagged {
		return v.lock.flagged
	}
	if !v.lock.observe(keys) {
		return false
	}
	e.campaign(v, ts)
	return true
}

// campaign damps every like of v's first hour, those applied already
// too: v was found to be a campaign. From now on v's like times count
// each like of that span as counted() gives it.
func (e *Engine) campaign(v *video, ts int64) {
	v.LockFrom, v.LockTo = min(v.FirstLike, ts), v.FirstLike+lockSpanMS
	if v.LockFrom < v.SealedEnd() {
		v.Unseal(v.LockFrom)
	}
	lo := searchEntries(v.Entries, v.LockFrom-1)
	hi := searchEntries(v.Entries, v.LockTo)
	for i := lo; i < hi; i++ {
		en := &v.Entries[i]
		l := v.counted(&store.Like{TS: en.TS, Weight: int64(en.Weight), Damp: en.Damp})
		for k, w := range scoring.WindowMS {
			if en.TS > v.Clock-w {
				v.win[k].add(int64(en.Weight), en.Damp, -1)
				v.win[k].add(l.Weight, l.Damp, +1)
			}
		}
		en.Weight, en.Damp = int32(l.Weight), l.Damp
	}
	// Like times of one time stay sorted by weight, then damping.
	slices.SortStableFunc(v.Entries[lo:hi], compareEntries)
	if lo < hi {
		v.TimesChanged(v.Entries[lo].TS)
	}
	e.markVideo(v)
}

// counted is a like as v's like times count it: damped as lockstep if v
// is a campaign and the like lies in its first hour.
func (v *video) counted(l *store.Like) store.Like {
	c := *l
	if v.LockTo != 0 && c.TS >= v.LockFrom && c.TS <= v.LockTo {
		c.Weight = min(c.Weight, scoring.LockstepWeight)
		c.Damp |= scoring.DampedLockstep
	}
	return c
}

// lockVersion is the version of a stored tracker. 2: each key's
// popularity.
const lockVersion = 2

var errLockstep = errors.New("processor: corrupt lockstep tracker")

// marshal encodes the tracker for its video's record (nil: none).
func (t *lockTracker) marshal(b []byte) []byte {
	if t == nil {
		return b[:0]
	}
	b = append(b[:0], lockVersion)
	b = binary.AppendUvarint(b, uint64(t.likers))
	flag := byte(0)
	if t.flagged {
		flag = 1
	}
	b = append(b, flag)
	b = binary.AppendUvarint(b, uint64(len(t.keys)))
	for i, k := range t.keys {
		b = binary.LittleEndian.AppendUint32(b, k)
		b = binary.AppendUvarint(b, uint64(t.counts[i]))
		b = append(b, t.pops[i])
	}
	return b
}

// unmarshalLock decodes a stored tracker (nil for none).
func unmarshalLock(b []byte) (*lockTracker, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if b[0] != lockVersion {
		return nil, fmt.Errorf("%w: version %d, this binary reads %d", errLockstep, b[0], lockVersion)
	}
	d := &ratesReader{b: b[1:]}
	t := &lockTracker{likers: int64(d.uvarint())}
	if d.bad || len(d.b) == 0 {
		return nil, errLockstep
	}
	t.flagged = d.b[0] == 1
	d.b = d.b[1:]
	n := d.uvarint()
	if d.bad || n > lockMaxKeys {
		return nil, errLockstep
	}
	t.keys, t.counts, t.pops = make([]uint32, n), make([]uint32, n), make([]uint8, n)
	for i := range n {
		if len(d.b) < 4 {
			return nil, errLockstep
		}
		t.keys[i] = binary.LittleEndian.Uint32(d.b)
		d.b = d.b[4:]
		t.counts[i] = uint32(d.uvarint())
		if d.bad || len(d.b) == 0 {
			return nil, errLockstep
		}
		t.pops[i] = d.b[0]
		d.b = d.b[1:]
	}
	if d.bad || len(d.b) != 0 || !slices.IsSorted(t.keys) {
		return nil, errLockstep
	}
	return t, nil
}

// appendKeys and readKeys encode a like's keys in the buffered and
// forwarded forms of an event.
func appendKeys(b []byte, ks *lockKeys) []byte {
	b = append(b, ks.n)
	for i, k := range ks.slice() {
		b = binary.LittleEndian.AppendUint32(b, k)
		b = append(b, ks.p[i])
	}
	return b
}

func readKeys(b []byte, ks *lockKeys) ([]byte, bool) {
	if len(b) == 0 || int(b[0]) > lockKeyCount || len(b) < 1+5*int(b[0]) {
		return b, false
	}
	ks.n = b[0]
	b = b[1:]
	for i := range ks.n {
		ks.k[i], ks.p[i] = binary.LittleEndian.Uint32(b), b[4]
		b = b[5:]
	}
	return b, true
}
