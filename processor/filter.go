package processor

import (
	"hash/maphash"
	"math/bits"
)

// filter is a Bloom filter of the pairs, the videos and the accounts in
// the store (store.PairKey, store.VideoKey, store.AccountKey), or of the
// creators (the creator merger's own). A key it has never seen needs no
// store read, which is most pairs (most likes are the first of their user
// and video) and most videos and accounts a backfill meets. False
// positives cost one read, never a wrong answer, so a filter fuller than
// planned only slows down.
type filter struct {
	bits []uint64
	mask uint64
	seed maphash.Seed
}

const filterProbes = 4

func newFilter(nbits int) *filter {
	n := uint64(1) << (64 - bits.LeadingZeros64(uint64(nbits-1)))
	return &filter{bits: make([]uint64, n/64), mask: n - 1, seed: maphash.MakeSeed()}
}

func (f *filter) add(key []byte) { f.seen(key) }

// seen adds key and reports whether the filter may have held it before:
// false means the key is new (the store cannot hold it), true that the
// store must be asked. One hash for both.
func (f *filter) seen(key []byte) bool {
	h := maphash.Bytes(f.seed, key)
	h1, h2 := h, h>>32|h<<32
	was := true
	for i := uint64(0); i < filterProbes; i++ {
		b := (h1 + i*h2) & f.mask
		w, m := &f.bits[b/64], uint64(1)<<(b%64)
		if *w&m == 0 {
			was = false
			*w |= m
		}
	}
	return was
}
