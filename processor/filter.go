package processor

import (
	"hash/maphash"
	"math/bits"
)

// filter is a Bloom filter of the pairs and the videos in the store
// (store.PairKey, store.VideoKey). A pair or a video it has never seen
// needs no store read, which is most pairs (most likes are the first of
// their user and video) and most videos a backfill meets. False positives
// cost one read, never a wrong answer, so a filter fuller than planned only
// slows down.
type filter struct {
	bits  []uint64
	mask  uint64
	seed  maphash.Seed
	count int
}

const filterProbes = 4

func newFilter(nbits int) *filter {
	n := uint64(1) << (64 - bits.LeadingZeros64(uint64(nbits-1)))
	return &filter{bits: make([]uint64, n/64), mask: n - 1, seed: maphash.MakeSeed()}
}

func (f *filter) add(key []byte) {
	h := maphash.Bytes(f.seed, key)
	h1, h2 := h, h>>32|h<<32
	for i := uint64(0); i < filterProbes; i++ {
		b := (h1 + i*h2) & f.mask
		f.bits[b/64] |= 1 << (b % 64)
	}
	f.count++
}

func (f *filter) mayContain(key []byte) bool {
	h := maphash.Bytes(f.seed, key)
	h1, h2 := h, h>>32|h<<32
	for i := uint64(0); i < filterProbes; i++ {
		b := (h1 + i*h2) & f.mask
		if f.bits[b/64]&(1<<(b%64)) == 0 {
			return false
		}
	}
	return true
}
