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
//
// Its blocks are as many as its bits allow, not a power of two: a hash
// picks one by multiplying, not masking. A power of two rounded the
// budget's share of the pairs' filter down to half (8 MiB of 15.7 under
// 512 MiB), and B1 read 265,000 pairs from the store that it did not
// hold, 62% of its reads of pairs (bench/RESULTS.md).
type filter struct {
	bits   []uint64
	blocks uint64 // number of blocks
	seed   maphash.Seed
}

const (
	filterProbes     = 4
	filterBlockWords = 8 // 512 bits
)

// newFilter returns a filter of at least nbits bits (whole blocks).
func newFilter(nbits int) *filter {
	blocks := uint64(max(nbits, 1)+64*filterBlockWords-1) / (64 * filterBlockWords)
	return &filter{bits: make([]uint64, blocks*filterBlockWords), blocks: blocks, seed: maphash.MakeSeed()}
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
// from, 9 at a time: the block by the high bits of h (h times the blocks,
// over 2^64), the probes mixed from its low bits.
func (f *filter) block(h uint64) ([]uint64, uint64) {
	i, _ := bits.Mul64(h, f.blocks)
	return f.bits[i*filterBlockWords:][:filterBlockWords], h * 0x9e3779b97f4a7c15
}
