package store

import (
	"cmp"
	"encoding/binary"
	"slices"

	"github.com/viralityhq/virality/scoring"
)

// Like times held sealed.
//
// A video's like times of the last day let its windows forget each like
// exactly when it passes out of them. A popular video gets hundreds of
// thousands a day, and at 16 bytes an Entry they grew to most of a live
// service's heap under 512 MiB (bench/RESULTS.md). So the buckets of like
// times that no late like can reach any more are held sealed: encoded as
// the store holds them, a few bytes a like time. The windows read them
// through cursors that only move forward, as the clock does; an unlike
// takes its like time out of its sealed bucket, which the next write
// rewrites; anything else that would change a sealed like time unseals
// the buckets from it on first ([Video.Unseal]). Entries are the like
// times after the sealed ones.
//
// A sealed bucket's data is its parts as the store holds them, one after
// the other: each part of partEntries like times is encoded as deltas from
// the bucket's start (encodeEntries).
type sealedTimes struct {
	buckets []sealedBucket // by bucket, before every entry in Entries
	n       int            // like times in all
	bytes   int64          // bytes of data in all
	dirty   bool           // some bucket is dirty
	gen     uint32         // changes whenever a bucket's data changes or buckets go from the middle
	cursors [scoring.NumWindows]sealedCursor
}

type sealedBucket struct {
	bucket int64
	n      int32
	dirty  bool // changed since written: the next write rewrites it
	data   []byte
}

// sealedCursor is where a window's trailing edge is among the sealed like
// times: the like times up to upTo lie behind it, and the next one is the
// i-th of bucket, at byte off of its data, after a time of prev.
type sealedCursor struct {
	gen    uint32 // sealedTimes.gen when placed; any other: place it again
	set    bool
	upTo   int64
	bucket int64
	i      int32
	off    int32
	prev   int64
}

// minSealed is the fewest like times worth sealing at once: below it the
// bucket headers and cursors cost more than the entries.
const minSealed = 256

// SealedLen is the number of like times held sealed.
func (v *Video) SealedLen() int {
	if v.sealed == nil {
		return 0
	}
	return v.sealed.n
}

// SealedBytes is the memory the sealed like times take.
func (v *Video) SealedBytes() int64 {
	if v.sealed == nil {
		return 0
	}
	return v.sealed.bytes + int64(cap(v.sealed.buckets))*48 + 240
}

// SealedEnd is the time before which like times may be sealed: the end
// of the last sealed bucket, or the smallest time when none is.
func (v *Video) SealedEnd() int64 {
	if v.sealed == nil || len(v.sealed.buckets) == 0 {
		return minTime
	}
	return (v.sealed.buckets[len(v.sealed.buckets)-1].bucket + 1) * bucketMS
}

// Seal seals the whole buckets of Entries that end at or before `before`,
// when they are in the store as they are (written since their last change)
// and there are enough of them. It changes nothing the store or a reader
// of the like times sees.
func (v *Video) Seal(before int64) {
	if !v.bucketed || v.dirtyFrom == minTime {
		return // the store does not hold the like times by bucket
	}
	before = min(floorDiv(before, bucketMS)*bucketMS, floorDiv(v.dirtyFrom, bucketMS)*bucketMS)
	n := searchTime(v.Entries, before-1)
	if n < minSealed {
		return
	}
	if v.sealed == nil {
		v.sealed = &sealedTimes{}
	}
	s := v.sealed
	for i := 0; i < n; {
		h := floorDiv(v.Entries[i].TS, bucketMS)
		j := i
		for j < n && floorDiv(v.Entries[j].TS, bucketMS) == h {
			j++
		}
		b := sealedBucket{bucket: h, n: int32(j - i), data: encodeParts(nil, v.Entries[i:j], h*bucketMS)}
		b.data = slices.Clip(b.data)
		s.buckets = append(s.buckets, b)
		s.n += j - i
		s.bytes += int64(len(b.data))
		i = j
	}
	v.Entries = slices.Clone(v.Entries[n:])
	// A cursor past the last sealed like time must see the new ones.
	s.gen++
}

// encodeParts appends like times of one bucket as the store holds them:
// in parts of partEntries, each as deltas from base.
func encodeParts(b []byte, es []Entry, base int64) []byte {
	for i := 0; i < len(es); i += partEntries {
		b = encodeEntries(b, es[i:min(i+partEntries, len(es))], base)
	}
	return b
}

// decode appends the bucket's like times to dst.
func (b *sealedBucket) decode(dst []Entry) []Entry {
	var c sealedCursor
	for c.i < b.n {
		dst = append(dst, b.next(&c))
	}
	return dst
}

// next reads the like time at c and moves c past it.
func (b *sealedBucket) next(c *sealedCursor) Entry {
	if c.i%partEntries == 0 {
		c.prev = b.bucket * bucketMS
	}
	d, n := binary.Uvarint(b.data[c.off:])
	c.prev += int64(d)
	x, m := binary.Uvarint(b.data[int(c.off)+n:])
	w, damp := splitWeight(x)
	c.off += int32(n + m)
	c.i++
	return Entry{TS: c.prev, Weight: int32(w), Damp: damp}
}

// Unseal moves the sealed buckets from the one of time ts on back into
// Entries.
func (v *Video) Unseal(ts int64) {
	s := v.sealed
	if s == nil {
		return
	}
	k, _ := s.find(floorDiv(ts, bucketMS))
	if k == len(s.buckets) {
		return
	}
	n := 0
	for _, b := range s.buckets[k:] {
		n += int(b.n)
	}
	es := make([]Entry, 0, n+len(v.Entries))
	for i := k; i < len(s.buckets); i++ {
		b := &s.buckets[i]
		es = b.decode(es)
		if b.dirty {
			// Its rewrite is now Entries' to do.
			v.TimesChanged(b.bucket * bucketMS)
		}
		s.n -= int(b.n)
		s.bytes -= int64(len(b.data))
	}
	v.Entries = append(es, v.Entries...)
	clear(s.buckets[k:])
	s.buckets = s.buckets[:k]
	s.gen++
	s.dirty = slices.ContainsFunc(s.buckets, func(b sealedBucket) bool { return b.dirty })
	if len(s.buckets) == 0 {
		v.sealed = nil
	}
}

// SealedRemove takes a like time out of its sealed bucket and reports
// whether it was there. The next write rewrites the bucket.
func (v *Video) SealedRemove(en Entry) bool {
	s := v.sealed
	if s == nil {
		return false
	}
	k, ok := s.find(floorDiv(en.TS, bucketMS))
	if !ok {
		return false
	}
	b := &s.buckets[k]
	es := b.decode(nil)
	i := slices.Index(es, en)
	if i < 0 {
		return false
	}
	es = slices.Delete(es, i, i+1)
	s.n--
	s.bytes -= int64(len(b.data))
	b.n--
	b.data = slices.Clip(encodeParts(nil, es, b.bucket*bucketMS))
	s.bytes += int64(len(b.data))
	b.dirty, s.dirty = true, true
	s.gen++
	return true
}

// EachSealed calls fn with the sealed like times in (lo, hi], for the
// trailing edge of window k, which moves only forward: a call whose lo is
// the hi of the last call for k goes on from where that call stopped.
func (v *Video) EachSealed(k int, lo, hi int64, fn func(Entry)) {
	s := v.sealed
	if s == nil || hi <= lo {
		return
	}
	c := &s.cursors[k]
	if !c.set || c.gen != s.gen || c.upTo != lo {
		// At the start of lo's bucket (or the next), then past lo.
		*c = sealedCursor{gen: s.gen, set: true, bucket: floorDiv(lo, bucketMS)}
		s.advance(c, lo, nil)
	}
	s.advance(c, hi, fn)
}

// advance moves c past the sealed like times up to hi, and calls fn (when
// not nil) with each.
func (s *sealedTimes) advance(c *sealedCursor, hi int64, fn func(Entry)) {
	for j, _ := s.find(c.bucket); j < len(s.buckets); j++ {
		b := &s.buckets[j]
		if b.bucket != c.bucket {
			// The cursor's bucket is done (or gone): the next one's start.
			*c = sealedCursor{gen: s.gen, set: true, bucket: b.bucket}
		}
		for c.i < b.n {
			save := *c
			en := b.next(c)
			if en.TS > hi {
				*c = save
				c.upTo = hi
				return
			}
			if fn != nil {
				fn(en)
			}
		}
	}
	// Past every sealed bucket: the next one sealed, if any, starts anew.
	*c = sealedCursor{gen: s.gen, set: true, upTo: hi, bucket: maxTime}
}

// find returns the index of bucket h among the sealed ones, or of the
// first after it, and whether it is there.
func (s *sealedTimes) find(h int64) (int, bool) {
	return slices.BinarySearchFunc(s.buckets, h, func(b sealedBucket, h int64) int { return cmp.Compare(b.bucket, h) })
}

// EachSealedAll calls fn with every sealed like time, in order (those the
// day has left behind too, until their bucket goes).
func (v *Video) EachSealedAll(fn func(Entry)) {
	if v.sealed == nil {
		return
	}
	for i := range v.sealed.buckets {
		b := &v.sealed.buckets[i]
		var c sealedCursor
		for c.i < b.n {
			fn(b.next(&c))
		}
	}
}

// DropSealed lets go of the sealed buckets whose like times are all at or
// before t. The store deletes their keys at the next write.
func (v *Video) DropSealed(t int64) {
	s := v.sealed
	if s == nil {
		return
	}
	k := 0
	for k < len(s.buckets) && (s.buckets[k].bucket+1)*bucketMS-1 <= t {
		b := &s.buckets[k]
		s.n -= int(b.n)
		s.bytes -= int64(len(b.data))
		k++
	}
	if k == 0 {
		return
	}
	if k == len(s.buckets) {
		v.sealed = nil
		return
	}
	// Cursors name their bucket, not its index: they stay.
	s.buckets = slices.Delete(s.buckets, 0, k)
	s.dirty = slices.ContainsFunc(s.buckets, func(b sealedBucket) bool { return b.dirty })
}

// AllEntries appends every like time, sealed or not, to dst.
func (v *Video) AllEntries(dst []Entry) []Entry {
	if v.sealed != nil {
		for i := range v.sealed.buckets {
			dst = v.sealed.buckets[i].decode(dst)
		}
	}
	return append(dst, v.Entries...)
}

// searchTime returns the index of the first entry with time after t.
func searchTime(es []Entry, t int64) int {
	i, _ := slices.BinarySearchFunc(es, t+1, func(e Entry, t int64) int { return cmp.Compare(e.TS, t) })
	return i
}
