package kafkaio

import (
	"sync"
	"sync/atomic"
)

// Chunks. Sinks copy the records written to them, and sources the records
// they fetch, into chunks of chunkSize bytes taken from one free list for
// the process, and give them back once the records are acknowledged (a
// sink) or the caller is done with them (a source). So the bytes a sink or
// source holds follow what it holds now, not the most it ever held: as
// arrays grown by append, each of a catch-up's sinks kept up to three of
// its largest buffers (74 MB of a 390 MB heap under a 512 MiB budget) and
// each of its sources a fetch's worth, between fetches too
// (bench/RESULTS.md).
const (
	// chunkSize is the size of a chunk. A part of a record (key, value,
	// header value) larger than a quarter of it gets an array of its
	// own, which goes to the garbage collector after use.
	chunkSize = 64 << 10
	// maxFreeChunks is the most chunks the free list keeps (16 MiB):
	// more are left to the garbage collector. Since the sources read
	// whole records into chunks, a catch-up gave back more than 8 MiB at
	// once often enough that chunks were 4.6% of all it allocated; with
	// 16 MiB it allocated 4.5% fewer bytes a like and used 7% less CPU
	// (three alternating pairs, bench/RESULTS.md).
	maxFreeChunks = 256
)

// chunkPool is a free list of chunks.
type chunkPool struct {
	mu   sync.Mutex
	free [][]byte

	made atomic.Int64 // chunks allocated so far (tests)
}

// chunks is the process's free list.
var chunks chunkPool

// get returns an empty chunk with a capacity of chunkSize.
func (p *chunkPool) get() []byte {
	p.mu.Lock()
	if n := len(p.free); n > 0 {
		c := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		p.mu.Unlock()
		return c[:0]
	}
	p.mu.Unlock()
	p.made.Add(1)
	return make([]byte, 0, chunkSize)
}

// put gives back the chunks of cs that get returned (arrays of another
// size are left alone) and clears cs.
func (p *chunkPool) put(cs [][]byte) {
	p.mu.Lock()
	for _, c := range cs {
		if cap(c) == chunkSize && len(p.free) < maxFreeChunks {
			p.free = append(p.free, c[:0])
		}
	}
	p.mu.Unlock()
	clear(cs)
}

// arena holds bytes in chunks: a byte slice put into it is copied whole
// into one chunk, or into an array of its own when large.
type arena struct {
	chunks [][]byte
	fill   int // chunks[fill-1] is the chunk being filled; 0: none
}

// put copies p into the arena and returns the copy, with its place as a
// span (the chunk's index in the high 32 bits, the offset in it in the
// low ones). A nil p is not copied: it returns nil and 0.
func (a *arena) put(p []byte) ([]byte, int) {
	if p == nil {
		return nil, 0
	}
	q, off := a.grow(len(p))
	copy(q, p)
	return q, off
}

// grow returns the next n bytes of the arena, and their span.
func (a *arena) grow(n int) ([]byte, int) {
	if n > chunkSize/4 {
		a.chunks = append(a.chunks, make([]byte, n))
		return a.chunks[len(a.chunks)-1], (len(a.chunks) - 1) << 32
	}
	if a.fill == 0 || len(a.chunks[a.fill-1])+n > chunkSize {
		a.chunks = append(a.chunks, chunks.get())
		a.fill = len(a.chunks)
	}
	c := a.chunks[a.fill-1]
	off := len(c)
	c = c[:off+n]
	a.chunks[a.fill-1] = c
	return c[off : off+n : off+n], (a.fill-1)<<32 | off
}

// at returns the n bytes at span off.
func (a *arena) at(off, n int) []byte {
	c := a.chunks[off>>32]
	i := off & (1<<32 - 1)
	return c[i : i+n : i+n]
}

// release gives the chunks back to the free list: the bytes put into the
// arena must no longer be used.
func (a *arena) release() {
	chunks.put(a.chunks)
	a.chunks, a.fill = a.chunks[:0], 0
}

// drop leaves the chunks to the garbage collector, for when their bytes
// may still be read (a request of a failed attempt still being encoded).
func (a *arena) drop() { a.chunks, a.fill = nil, 0 }

// Chunks is the memory of fetched records taken out of their source
// (PartitionSource.Detach): the records' bytes stay valid until Release.
type Chunks struct{ a arena }

// Bytes returns the memory the chunks take.
func (c *Chunks) Bytes() int {
	n := 0
	for _, p := range c.a.chunks {
		n += cap(p)
	}
	return n
}

// Release gives the memory back for other sources and sinks to use: the
// records' bytes must no longer be used. Releasing twice, or the zero
// Chunks, does nothing.
func (c *Chunks) Release() { c.a.release() }
