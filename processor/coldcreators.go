package processor

// coldCreators holds the creator merger's cold creators: each encoded as
// the store holds it (creator.marshal), in one byte arena, keyed by a
// table without pointers (table.go). A Go map of them held an object per
// creator and its key for the collector to scan: with 100,000 creators
// (B4's file over 1M videos) a fifth of the live objects, and each taken
// back and encoded again at most of its likes.
//
// Entry indexes are the table's: stable until remove, which moves the
// last entry into the removed one's place.
type coldCreators struct {
	t     *table[coldRef]
	data  []byte   // arena of encoded creators
	dead  int      // bytes of data no entry uses
	held  int64    // bytes() without the arena's dead bytes
	order []uint64 // scratch of makeRoom
}

// coldRef is a cold creator: where its encoding is in the arena, and what
// the merger reads of it without decoding it.
type coldRef struct {
	arenaSpan
	changed  int64 // tick of its last change
	lastHour int64 // latest hour with likes counted (MinInt64: none)
	dirty    bool  // changed since the last commit: data is to be stored
	pending  bool  // changed since its last record
}

// coldEntryBytes is what an entry takes beside its key and encoding: the
// table's entry and its share of the index.
const coldEntryBytes = 64

func newColdCreators() *coldCreators { return &coldCreators{t: newTable[coldRef]()} }

func (cc *coldCreators) len() int { return cc.t.Len() }

// bytes estimates the memory the cold creators take.
func (cc *coldCreators) bytes() int64 { return cc.held }

func entryBytes(id []byte, n uint32) int64 { return coldEntryBytes + int64(len(id)) + int64(n) }

// find returns id's entry index, or -1.
func (cc *coldCreators) find(id []byte) int {
	if cc.t.Len() == 0 {
		return -1
	}
	return cc.t.Find(id)
}

// ref returns entry i's ref, to read or change its flags in place; valid
// until the next put or remove.
func (cc *coldCreators) ref(i int) *coldRef { return cc.t.Val(i) }

// id returns entry i's creator ID; valid until the next put or remove.
func (cc *coldCreators) id(i int) []byte { return cc.t.Key(i) }

// encoded returns entry i's encoding; valid until the next put.
func (cc *coldCreators) encoded(i int) []byte {
	r := cc.t.Val(i)
	return r.bytes(cc.data)
}

// put holds id's encoding b (copied) with r's fields, replacing what id
// held. It reports false, holding nothing new, when the arena cannot
// take b (past maxColdArena).
func (cc *coldCreators) put(id []byte, b []byte, r coldRef) bool {
	if len(cc.data)+len(b) > cap(cc.data) {
		if !cc.makeRoom(len(b)) {
			return false
		}
	}
	i, added := cc.t.Put(id) // one lookup: mostly, id is not held
	if !added {
		old := cc.t.Val(i)
		cc.held -= entryBytes(id, old.n)
		cc.dead += int(old.n)
	}
	r.off, r.n = uint32(len(cc.data)), uint32(len(b))
	*cc.t.Val(i) = r
	cc.data = append(cc.data, b...)
	cc.held += entryBytes(id, r.n)
	return true
}

// remove lets entry i go; the last entry takes its index.
func (cc *coldCreators) remove(i int) {
	r := cc.t.Val(i)
	cc.held -= entryBytes(cc.t.Key(i), r.n)
	cc.dead += int(r.n)
	cc.t.Delete(i)
}

// maxColdArena bounds the arena (offsets are 32 bits).
const maxColdArena = 1<<32 - 1

// makeRoom makes the arena's capacity hold n more bytes after its end.
// The live encodings are compacted in place while they and n fill at most
// three quarters of the arena, and it is at most twice as large as they
// are; otherwise they are copied to a new arena, half as large again as
// they are (so that the arena's spare and dead bytes, which bytes() does
// not count, stay within what it does). Creators are taken back and
// encoded again at most of their likes: with a new arena at each
// compaction, B4's file over 1M videos allocated 177 MB of arenas for
// 10 MB of creators. It reports false, changing nothing, past
// maxColdArena.
func (cc *coldCreators) makeRoom(n int) bool {
	live := len(cc.data) - cc.dead
	if live+n > maxColdArena {
		return false
	}
	span := func(r *coldRef) *arenaSpan { return &r.arenaSpan }
	if c := cap(cc.data); live+n <= c*3/4 && c <= 2*max(live+n, 64<<10) {
		cc.data, cc.order = compactSpans(cc.t, span, cc.data, cc.order)
	} else {
		data := make([]byte, 0, min(max((live+n)*3/2, 64<<10), maxColdArena))
		cc.data = moveSpans(cc.t, span, cc.data, data)
	}
	cc.dead = 0
	return true
}
