package processor

import (
	"bytes"
	"hash/maphash"
	"slices"
)

// table maps string keys to values of a type without pointers, and holds
// no pointers itself: keys are packed in one byte arena, entries in one
// slice, the index is open addressing over 64-bit slots. The garbage
// collector never scans it, and an entry costs its value, its key's bytes
// and about 24 bytes more, against the 50 to 100 bytes and two or three
// objects of a Go map from string to a slice or a pointer. Caches of millions of
// entries (the accounts' counts) are what it is for.
//
// A slot holds, beside its entry's index, the low 32 bits of its key's
// hash: a probe reads an entry only when those match (about one in
// 2^(32-log2 slots) of the others), and the index grows and shifts slots
// back on Delete without reading an entry. In a table far larger than
// the CPU's caches each entry read is a cache miss, and a probe run at
// three quarters full passes a few slots. Entries keep no hash of their
// own (the slots' second four bytes cost what that saves): Delete hashes
// a key again to find its slot.
//
// Entry indexes (0 .. Len()-1) are stable until Delete, which moves the
// last entry into the deleted one's place.
type table[V any] struct {
	seed  maphash.Seed
	slots []uint64 // the key's hash's low 32 bits, then entry index + 1; 0: empty. len is a power of two.
	ents  []tableEntry[V]
	keys  []byte // arena of keys
	dead  int    // bytes of the arena no entry uses
	// hint, if not 0, is the most entries the table is expected to hold:
	// below it, the entries and the keys' arena double as they fill.
	// Past 256 elements append grows a slice by a quarter at a time, so a
	// table grown to its bound that way allocates about five times its
	// size (the accounts' tables took 260 MB of the live service's 2.2 GB
	// allocated in B3's first 40 s), and twice its size doubling. Past
	// the hint, append's quarter: the bound's share of a memory budget
	// counts the entries, not room for twice as many.
	hint int
}

type tableEntry[V any] struct {
	off  uint32
	klen uint32
	val  V
}

func newTable[V any]() *table[V] {
	return &table[V]{seed: maphash.MakeSeed(), slots: make([]uint64, 16)}
}

// Len returns the number of entries.
func (t *table[V]) Len() int { return len(t.ents) }

// Key returns entry i's key. It is valid until the next Put or Delete.
func (t *table[V]) Key(i int) []byte {
	e := &t.ents[i]
	return t.keys[e.off : e.off+e.klen]
}

// Val returns entry i's value, to read or change in place. It is valid
// until the next Put or Delete.
func (t *table[V]) Val(i int) *V { return &t.ents[i].val }

// Find returns the index of key's entry, or -1.
func (t *table[V]) Find(key []byte) int {
	h := maphash.Bytes(t.seed, key)
	_, i := t.lookup(h, key)
	return i
}

// lookup returns the slot where key is or would go, and its entry index
// (-1 if absent).
func (t *table[V]) lookup(h uint64, key []byte) (slot, idx int) {
	mask := len(t.slots) - 1
	tag := h << 32
	for s := int(h) & mask; ; s = (s + 1) & mask {
		x := t.slots[s]
		if x == 0 {
			return s, -1
		}
		if x&^0xffffffff != tag {
			continue
		}
		i := int(uint32(x)) - 1
		if e := &t.ents[i]; bytes.Equal(t.keys[e.off:e.off+e.klen], key) {
			return s, i
		}
	}
}

// slotVal is what the slot of entry i, of hash h, holds.
func slotVal(h uint64, i int) uint64 { return h<<32 | uint64(i+1) }

// slotHome is the slot where a probe for the entry in slot value x
// starts.
func slotHome(x uint64, mask int) int { return int(x>>32) & mask }

// Put returns the index of key's entry, adding one with the zero value
// if there is none (added reports which).
func (t *table[V]) Put(key []byte) (idx int, added bool) {
	h := maphash.Bytes(t.seed, key)
	s, i := t.lookup(h, key)
	if i >= 0 {
		return i, false
	}
	if (len(t.ents)+1)*4 > len(t.slots)*3 {
		t.grow()
		s, _ = t.lookup(h, key)
	}
	if len(t.ents) < t.hint {
		t.ents = doubled(t.ents, 1, t.hint)
		t.keys = doubled(t.keys, len(key), 0)
	}
	t.ents = append(t.ents, tableEntry[V]{off: uint32(len(t.keys)), klen: uint32(len(key))})
	t.keys = append(t.keys, key...)
	t.slots[s] = slotVal(h, len(t.ents)-1)
	return len(t.ents) - 1, true
}

// doubled returns s with room for n more elements: s itself if it has
// it, else a copy with twice its capacity (or what n needs), but not more
// than limit unless n needs it (0: no limit).
func doubled[E any](s []E, n, limit int) []E {
	if len(s)+n <= cap(s) {
		return s
	}
	c := max(2*cap(s), 16)
	if limit > 0 {
		c = min(c, limit)
	}
	d := make([]E, len(s), max(c, len(s)+n))
	copy(d, s)
	return d
}

func (t *table[V]) grow() {
	old := t.slots
	t.slots = make([]uint64, 2*len(old))
	mask := len(t.slots) - 1
	for _, x := range old {
		if x == 0 {
			continue
		}
		s := slotHome(x, mask)
		for t.slots[s] != 0 {
			s = (s + 1) & mask
		}
		t.slots[s] = x
	}
}

// slotOf returns the slot that holds entry i.
func (t *table[V]) slotOf(i int) int {
	mask := len(t.slots) - 1
	for s := int(maphash.Bytes(t.seed, t.Key(i))) & mask; ; s = (s + 1) & mask {
		if int(uint32(t.slots[s])) == i+1 {
			return s
		}
	}
}

// Delete removes entry i; the last entry takes its index.
func (t *table[V]) Delete(i int) {
	mask := len(t.slots) - 1
	// Empty its slot and shift back the entries of the probe run after it,
	// so that every lookup still finds them (no tombstones).
	s := t.slotOf(i)
	t.slots[s] = 0
	for n := (s + 1) & mask; t.slots[n] != 0; n = (n + 1) & mask {
		home := slotHome(t.slots[n], mask)
		// The entry at n may move to s if s lies in [home, n) cyclically.
		if (n-home)&mask >= (n-s)&mask {
			t.slots[s], t.slots[n] = t.slots[n], 0
			s = n
		}
	}
	t.dead += int(t.ents[i].klen)
	last := len(t.ents) - 1
	if i != last {
		s := t.slotOf(last)
		t.slots[s] = slotVal(t.slots[s]>>32, i) // its hash, entry i
		t.ents[i] = t.ents[last]
	}
	t.ents = t.ents[:last]
	if t.dead > 1<<16 && t.dead > len(t.keys)/2 {
		t.compactKeys()
	}
}

// arenaSpan is where a value's bytes are in an arena of their own beside
// a table (the pair cache's, the cold creators', the packed videos').
type arenaSpan struct{ off, n uint32 }

// bytes returns the span's bytes in arena.
func (s arenaSpan) bytes(arena []byte) []byte { return arena[s.off : s.off+s.n] }

// moveSpans appends every entry's bytes from arena to dst, in entry
// order, points the entries at their new place, and returns dst: an
// arena compacted into a new one.
func moveSpans[V any](t *table[V], span func(*V) *arenaSpan, arena, dst []byte) []byte {
	for i := range t.ents {
		s := span(&t.ents[i].val)
		b := s.bytes(arena)
		s.off = uint32(len(dst))
		dst = append(dst, b...)
	}
	return dst
}

// compactSpans moves every entry's bytes towards the start of arena, in
// the order of their offsets (none then lands on bytes still to move; the
// copies may overlap their sources, as append's allow), points the
// entries at their new place, and returns arena cut to them: an arena
// compacted in place. order is scratch, returned for the next call: each
// entry's offset and index in one integer, sorted without a comparison
// function (with one that read both entries' spans, compacting 100,000
// entries took 2.5 times as long).
func compactSpans[V any](t *table[V], span func(*V) *arenaSpan, arena []byte, order []uint64) ([]byte, []uint64) {
	order = order[:0]
	for i := range t.ents {
		order = append(order, uint64(span(&t.ents[i].val).off)<<32|uint64(i))
	}
	slices.Sort(order)
	dst := arena[:0]
	for _, o := range order {
		s := span(&t.ents[uint32(o)].val)
		b := s.bytes(arena)
		s.off = uint32(len(dst))
		dst = append(dst, b...)
	}
	return dst, order
}

// compactKeys copies the live keys to a new arena.
func (t *table[V]) compactKeys() {
	// Room for twice the live keys (less than the arena held, as more
	// than half of it was dead): an arena of the live keys alone was
	// copied again, a quarter larger at a time, by the keys added next
	// (the pair cache's took 2% of the live service's allocations).
	keys := make([]byte, 0, 2*(len(t.keys)-t.dead))
	for i := range t.ents {
		e := &t.ents[i]
		k := t.keys[e.off : e.off+e.klen]
		e.off = uint32(len(keys))
		keys = append(keys, k...)
	}
	t.keys, t.dead = keys, 0
}
