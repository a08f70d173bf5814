package processor

import (
	"bytes"
	"fmt"
	"testing"
)

// TestPackedVideos: what is put is taken back once, byte for byte, through
// evictions and compactions of the arena, and the held bytes stay within
// the bound.
func TestPackedVideos(t *testing.T) {
	const bound = 64 << 10
	p := newPackedVideos(bound)
	val := func(i, n int) []byte { return bytes.Repeat([]byte{byte(i), byte(i >> 8)}, n) }
	size := func(i int) int { return 10 + i%300 }
	held := map[int]bool{}
	for i := range 20_000 {
		p.put(fmt.Sprint("v", i), val(i, size(i)), i%97)
		held[i] = true
		if p.bytes() > bound {
			t.Fatalf("after %d puts: %d bytes held, above %d", i+1, p.bytes(), bound)
		}
		if i%7 == 0 { // take one back now and then
			j := i - i%50
			b, ok := p.take(fmt.Sprint("v", j))
			if ok && !bytes.Equal(b, val(j, size(j))) {
				t.Fatalf("v%d taken back differs", j)
			}
			if ok && !held[j] {
				t.Fatalf("v%d taken back twice", j)
			}
			delete(held, j)
		}
	}
	if p.Len() == 0 || p.Len() > bound/packedEntryBytes {
		t.Fatalf("%d videos held", p.Len())
	}
	n := 0
	for i := range 20_000 {
		if b, ok := p.take(fmt.Sprint("v", i)); ok {
			n++
			if !held[i] || !bytes.Equal(b, val(i, size(i))) {
				t.Fatalf("v%d: taken back wrong (held %v)", i, held[i])
			}
		}
	}
	if n == 0 || p.Len() != 0 || p.bytes() != 0 {
		t.Fatalf("%d taken back, %d left, %d bytes", n, p.Len(), p.bytes())
	}
	if len(p.data) > 2*bound {
		t.Errorf("arena of %d bytes for a bound of %d", len(p.data), bound)
	}
	// A put replaces what the video held.
	p.put("w", val(1, 40), 1)
	p.put("w", val(2, 10), 1)
	if b, ok := p.take("w"); !ok || !bytes.Equal(b, val(2, 10)) || p.Len() != 0 || p.bytes() != 0 {
		t.Errorf("put twice: took %v (%d bytes), %d left, %d bytes", ok, len(b), p.Len(), p.bytes())
	}
	// A bound of 0 holds nothing.
	z := newPackedVideos(0)
	z.put("v", []byte("x"), 1)
	if _, ok := z.take("v"); ok || z.Len() != 0 {
		t.Error("a bound of 0 held a video")
	}
}

// TestPackedVideosKeepTheMostLiked: beyond the bound, the videos liked
// least in the last day go first, so that those most likely to be liked
// again are not read back from the store. A tenth of the videos put are
// liked a hundred times as much; with room for a fifth of all, at least
// three in four of those stay (89% with four draws; one draw, random
// eviction, kept a fifth).
func TestPackedVideosKeepTheMostLiked(t *testing.T) {
	const n, size = 20_000, 60
	p := newPackedVideos(n / 5 * (size + packedEntryBytes))
	popular := func(i int) bool { return i%10 == 0 }
	for i := range n {
		likes := 1
		if popular(i) {
			likes = 100
		}
		p.put(fmt.Sprint("v", i), bytes.Repeat([]byte{byte(i)}, size), likes)
	}
	var kept, keptPopular int
	for i := range n {
		if _, ok := p.take(fmt.Sprint("v", i)); ok {
			kept++
			if popular(i) {
				keptPopular++
			}
		}
	}
	if kept < n/6 {
		t.Fatalf("%d of %d videos kept, room for %d", kept, n, n/5)
	}
	if keptPopular < n/10*3/4 {
		t.Errorf("%d of the %d most liked videos kept (%d kept in all)", keptPopular, n/10, kept)
	}
}
