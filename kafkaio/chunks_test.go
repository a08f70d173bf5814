package kafkaio

import (
	"bytes"
	"testing"
)

// TestArena: parts are copied whole into chunks, a large part into an
// array of its own; spans find them again; released chunks come back to
// the free list, which keeps at most maxFreeChunks.
func TestArena(t *testing.T) {
	var a arena
	type part struct {
		want []byte
		off  int
	}
	var parts []part
	for i := range 3000 {
		n := i % 100
		if i%500 == 0 {
			n = chunkSize/4 + 1 + i // its own array
		}
		p := bytes.Repeat([]byte{byte(i)}, n)
		q, off := a.put(p)
		if !bytes.Equal(q, p) || cap(q) != len(q) {
			t.Fatalf("part %d: put returned %d bytes (capacity %d), want a copy of %d", i, len(q), cap(q), len(p))
		}
		parts = append(parts, part{p, off})
	}
	if q, off := a.put(nil); q != nil || off != 0 {
		t.Fatalf("put(nil) = %v, %d; want nil, 0", q, off)
	}
	for i, p := range parts {
		if got := a.at(p.off, len(p.want)); !bytes.Equal(got, p.want) {
			t.Fatalf("part %d read back as %d bytes, want %d", i, len(got), len(p.want))
		}
	}
	small, large := 0, 0
	for _, c := range a.chunks {
		if cap(c) == chunkSize {
			small++
		} else {
			large++
		}
	}
	// 2994 parts of 0-99 bytes, about 148 KB: three chunks.
	if small != 3 || large != 6 {
		t.Errorf("%d chunks and %d arrays of their own, want 3 and 6", small, large)
	}

	chunks.mu.Lock()
	chunks.free = nil
	chunks.mu.Unlock()
	a.release()
	if len(a.chunks) != 0 || a.fill != 0 {
		t.Fatalf("after release: %d chunks, fill %d; want none", len(a.chunks), a.fill)
	}
	if n := len(chunks.free); n != 3 {
		t.Errorf("%d chunks free after release, want the 3 of the arena", n)
	}
	made := chunks.made.Load()
	a.put([]byte("x"))
	if n := chunks.made.Load() - made; n != 0 {
		t.Errorf("a put after release allocated %d chunks, want 0", n)
	}

	var many arena
	for range maxFreeChunks + 10 {
		many.grow(chunkSize)
	}
	many.release()
	if n := len(chunks.free); n != maxFreeChunks {
		t.Errorf("%d chunks free, want at most %d", n, maxFreeChunks)
	}
}
