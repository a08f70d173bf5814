package processor

import (
	"fmt"

	"github.com/viralityhq/virality/store"
)

// pairCache holds the (user, video) pairs an engine read or changed since
// its last commit, encoded as the store holds them (store.Pair.Append), in
// one arena the garbage collector does not scan, indexed by a table
// without pointers (table.go). Most pairs a backfill or a catch-up meets
// are new and liked once, so the cache is mostly the pairs changed since
// the last commit, which must stay until it is written, and a commit is
// due when it is full (Coordinator.commitDue). A pair takes its key and
// its encoding (about 14 and 22 bytes on generated traffic) and its entry
// and index, about PairBytes in all, where a Go map of decoded pairs took
// about 250 bytes and three objects: the same share of a memory budget
// holds more than twice as many, and a backfill commits less often
// (bench/RESULTS.md).
type pairCache struct {
	t     *table[pairRef]
	data  []byte // arena of encoded pairs
	dead  int    // bytes of data no entry uses
	enc   []byte
	order []uint64 // scratch of compact
}

type pairRef struct {
	arenaSpan
	dirty bool // changed since the last write
}

// PairBytes is the memory a cached pair takes on average: its key and
// encoding, its entry and index, and their share of the slack the arena
// and the table's arrays keep to grow (103 bytes in BenchmarkPairCacheBytes;
// 99 when the table's slots were half as wide and its entries kept a hash).
const PairBytes = 103

func newPairCache() *pairCache { return &pairCache{t: newTable[pairRef]()} }

// Len returns the number of pairs held.
func (c *pairCache) Len() int { return c.t.Len() }

// find returns the index of key's pair ([store.PairKey]), or -1. The index
// is valid until the next evict.
func (c *pairCache) find(key []byte) int {
	if c.t.Len() == 0 {
		return -1
	}
	return c.t.Find(key)
}

// get decodes pair i into p.
func (c *pairCache) get(i int, p *store.Pair) error {
	r := c.t.Val(i)
	if err := p.Decode(r.bytes(c.data)); err != nil {
		return fmt.Errorf("cached pair %q: %w", c.t.Key(i), err)
	}
	return nil
}

// set holds p as key's pair, changed since the last write; i is key's
// index (find), or -1 to add it.
func (c *pairCache) set(i int, key []byte, p *store.Pair) error {
	c.enc = p.Append(c.enc[:0])
	if i < 0 {
		i, _ = c.t.Put(key) // a new entry's ref is zero: no bytes yet
	}
	r := c.t.Val(i)
	if int(r.n) >= len(c.enc) {
		// In place: a pair's encoding rarely grows (a second like of the
		// same pair, kept for a late unlike).
		copy(c.data[r.off:], c.enc)
		c.dead += int(r.n) - len(c.enc)
	} else {
		c.dead += int(r.n)
		r.n = 0
		if len(c.data)+len(c.enc) > cap(c.data) && c.dead > len(c.data)/2 {
			c.compact()
			r = c.t.Val(i)
		}
		if len(c.data)+len(c.enc) > maxPairArena {
			c.t.Delete(i)
			return fmt.Errorf("processor: more than %d bytes of pairs changed since the last commit: lower --cache-pairs or --commit-every", maxPairArena)
		}
		r.off = uint32(len(c.data))
		c.data = append(c.data, c.enc...)
	}
	r.n, r.dirty = uint32(len(c.enc)), true
	return nil
}

// maxPairArena bounds the arena (offsets are 32 bits).
const maxPairArena = 1<<32 - 1

// write adds the pairs changed since the last write to w, each trimmed
// of what no event at or after wm, the engine's watermark, can need
// (store.TrimPair).
func (c *pairCache) write(w *store.Writer, wm int64) error {
	for i := range c.t.Len() {
		r := c.t.Val(i)
		if !r.dirty {
			continue
		}
		b := r.bytes(c.data)
		if t := store.TrimPair(b, wm); len(t) < len(b) {
			c.dead += len(b) - len(t)
			r.n, b = uint32(len(t)), t
		}
		if err := w.SetPairEncoded(c.t.Key(i), b); err != nil {
			return err
		}
		r.dirty = false
	}
	return nil
}

// evict lets pairs unchanged since the last write go until at most keep
// are held (those changed since stay, whatever their number).
func (c *pairCache) evict(keep int) {
	for i := 0; i < c.t.Len() && c.t.Len() > keep; {
		r := c.t.Val(i)
		if r.dirty {
			i++
			continue
		}
		c.dead += int(r.n)
		c.t.Delete(i) // the last entry takes index i: look at it next
	}
	if c.dead > 1<<16 && c.dead > len(c.data)/2 {
		c.compact()
	}
}

// compact moves the pairs held to the start of the arena, in place (at
// most half of it is live when it is called), so that the arena, once
// grown to what the cache holds between commits, is not made again: a
// new arena at each compaction, grown again by appends, was 3% of what
// B1 allocated (bench/RESULTS.md). An arena more than four times what is
// live (after a burst of changes) is copied to a smaller one, with room
// for as many again as half of them.
func (c *pairCache) compact() {
	span := func(r *pairRef) *arenaSpan { return &r.arenaSpan }
	live := len(c.data) - c.dead
	if cap(c.data) > 4*(live+len(c.enc)+1<<16) {
		data := make([]byte, 0, live+live/2+len(c.enc))
		c.data = moveSpans(c.t, span, c.data, data)
	} else {
		c.data, c.order = compactSpans(c.t, span, c.data, c.order)
	}
	c.dead = 0
}
