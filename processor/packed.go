package processor

import "math"

// packedVideos holds videos the video cache let go, packed
// (store.Video.AppendPacked): a few bytes a like time, in one arena the
// garbage collector does not scan, which grows to the bound and is then
// reused. A video the cache misses is taken from here before it is read
// from the store, which costs a point read, a scan of its buckets of like
// times and their decoding: under a small memory budget, reading videos
// back took a fifth to a quarter of the live service's CPU
// (bench/RESULTS.md).
//
// Only clean videos are packed, so an entry is what the store holds, and
// taking one back is as if the cache had never let it go. A video taken
// back leaves: it may change, and is packed again when let go again.
// Beyond the bound, the least liked of a few entries drawn at random goes
// (see put); which go does not matter for correctness, only for speed.
type packedVideos struct {
	t     *table[packedRef]
	data  []byte // arena of packed videos
	dead  int    // bytes of data no entry uses
	max   int64  // bound on bytes()
	live  int64  // bytes of data entries use
	state uint64 // of the eviction order (xorshift)
	taken int64  // videos taken back
	order []uint64
}

// packedRef is where a packed video is in the arena, and its like times
// of the last day when it was packed: the weight eviction goes by.
type packedRef struct {
	arenaSpan
	likes uint32
}

// packedDraws is how many entries eviction draws to let the least liked
// go. Likes follow a power law: most videos get a like now and then, a
// few most of them, and a video liked more in the last day is more likely
// to be liked again. Drawing one (any entry) let the popular videos go as
// often as the rest: B1 read 2.0M videos back from the store, a fifth of
// its likes; 1.62M with four draws, 1.58M with eight (bench/RESULTS.md).
const packedDraws = 4

// packedEntryBytes is what an entry takes beside its packed bytes: the
// table's entry and index, and the key's bytes' share of the arena.
const packedEntryBytes = 48

// maxPackedBytes bounds an engine's packed videos (offsets are 32 bits).
const maxPackedBytes = 1 << 31

func newPackedVideos(maxBytes int64) *packedVideos {
	return &packedVideos{t: newTable[packedRef](), max: min(maxBytes, maxPackedBytes), state: 0x9e3779b97f4a7c15}
}

// Len returns the number of videos held.
func (p *packedVideos) Len() int { return p.t.Len() }

// bytes estimates the memory the held videos take.
func (p *packedVideos) bytes() int64 { return p.live + int64(p.t.Len())*packedEntryBytes }

// put holds id's packed video b (copied), which had likes like times in
// the last day. It replaces what id held. Beyond the bound, entries go
// one by one, each the least liked of packedDraws drawn at random.
func (p *packedVideos) put(id string, b []byte, likes int) {
	if int64(len(b))+packedEntryBytes > p.max/4 {
		p.drop(id)
		return // nothing is held; or one video would take a quarter
	}
	for p.bytes()+int64(len(b))+packedEntryBytes > p.max && p.t.Len() > 0 {
		p.remove(p.leastLiked())
	}
	if len(p.data)+len(b) > cap(p.data) {
		p.makeRoom(len(b))
	}
	// One lookup: a video is packed only when the cache lets it go, and
	// taken out when the cache takes it back, so id is mostly not held.
	i, added := p.t.Put([]byte(id))
	if !added {
		old := p.t.Val(i).n
		p.dead += int(old)
		p.live -= int64(old)
	}
	*p.t.Val(i) = packedRef{arenaSpan{off: uint32(len(p.data)), n: uint32(len(b))}, uint32(min(likes, math.MaxUint32))}
	p.data = append(p.data, b...)
	p.live += int64(len(b))
}

// take returns id's packed video and lets it go; the bytes are valid
// until the next put.
func (p *packedVideos) take(id string) ([]byte, bool) {
	if p.t.Len() == 0 {
		return nil, false
	}
	i := p.t.Find([]byte(id))
	if i < 0 {
		return nil, false
	}
	r := *p.t.Val(i)
	p.remove(i)
	p.taken++
	return r.bytes(p.data), true
}

// leastLiked draws packedDraws entries at random (xorshift: the same
// draws for the same puts and takes) and returns the least liked.
func (p *packedVideos) leastLiked() int {
	least := -1
	for range packedDraws {
		p.state ^= p.state << 13
		p.state ^= p.state >> 7
		p.state ^= p.state << 17
		i := int(p.state % uint64(p.t.Len()))
		if least < 0 || p.t.Val(i).likes < p.t.Val(least).likes {
			least = i
		}
	}
	return least
}

// drop lets id's packed video go, if held.
func (p *packedVideos) drop(id string) {
	if p.t.Len() == 0 {
		return
	}
	if i := p.t.Find([]byte(id)); i >= 0 {
		p.remove(i)
	}
}

func (p *packedVideos) remove(i int) {
	n := int(p.t.Val(i).n)
	p.t.Delete(i)
	p.dead += n
	p.live -= int64(n)
}

// makeRoom makes the arena's capacity hold n more bytes after its end.
// The arena grows by doubling up to the bound and is then only compacted
// in place: a live service lets videos go and takes them back all the
// time, and an arena copied anew at each compaction allocated as many
// bytes as the videos packed (bench/RESULTS.md).
func (p *packedVideos) makeRoom(n int) {
	span := func(r *packedRef) *arenaSpan { return &r.arenaSpan }
	if need := int(p.live) + n; need > cap(p.data)*3/4 && cap(p.data) < int(p.max) {
		dst := make([]byte, 0, min(max(2*cap(p.data), need*2, 64<<10), int(p.max)+n)) // grow
		p.data = moveSpans(p.t, span, p.data, dst)
	} else {
		p.data, p.order = compactSpans(p.t, span, p.data, p.order)
	}
	p.dead = 0
}
