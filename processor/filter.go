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
//
// It is blocked: every probe of a key falls in one 512-bit block, a cache
// line, so a check costs one miss of the processor's cache, not one a
// probe (the filter is megabytes, checked at most likes: with four probes
// across the whole filter, checks took 3.5% of a backfill's CPU). Its
// false positives are about 1.2% at 10 bits a key, against 1.1%.
type filter struct {
	bits   []uint64
	blocks uint64 // number of blocks (a power of two) - 1: a mask
	seed   maphash.Seed
}

const (
	filterProbes     = 4
	filterBlockWords = 8 // 512 bits
)

func newFilter(nbits int) *filter {
	n := uint64(1) << (64 - bits.LeadingZeros64(uint64(max(nbits, 64*filterBlockWords)-1)))
	return &filter{bits: make([]uint64, n/64), blocks: n/(64*filterBlockWords) - 1, seed: maphash.MakeSeed()}
}

func (f *filter) add(key []byte) { f.seen(key) }

// seen adds key and reports whether the filter may have held it before:
// false means the key is new (the store cannot hold it), true that the
// store must be asked. One hash picks the block, and its other bits,
// mixed, the probes in it.
func (f *filter) seen(key []byte) bool { return f.seenHash(maphash.Bytes(f.seed, key)) }

// seenHash is seen for a key's hash (filters made with one seed share it).
func (f *filter) seenHash(h uint64) bool {
	blk, p := f.block(h)
	was := true
	for range filterProbes {
		b := p & (64*filterBlockWords - 1)
		p >>= 9
		w, m := &blk[b/64], uint64(1)<<(b%64)
		if *w&m == 0 {
			was = false
			*w |= m
		}
	}
	return was
}

// hasHash reports whether the filter may hold the key of hash h, without
// adding it.
func (f *filter) hasHash(h uint64) bool {
	blk, p := f.block(h)
	for range filterProbes {
		b := p & (64*filterBlockWords - 1)
		p >>= 9
		if blk[b/64]&(uint64(1)<<(b%64)) == 0 {
			return false
		}
	}
	return true
}

// block returns the block of hash h and the bits its probes are taken
// from, 9 at a time.
func (f *filter) block(h uint64) ([]uint64, uint64) {
	return f.bits[(h&f.blocks)*filterBlockWords:][:filterBlockWords], bits.RotateLeft64(h, 32) * 0x9e3779b97f4a7c15
}
