package processor

import (
	"hash/maphash"
	"math"
	"math/bits"
)

// leftAccounts tells which accounts the store may hold a record of that a
// like still needs. An account's record matters to a like in bucket b only
// if its newest bucket is at least b-keyKeep: an older record is cleared
// by the like, as an account never seen (acctRec.add), and gives the same
// weight and keys. Most accounts a long backfill takes back from the
// store liked last hours before (B1's 5M accounts like twice a day on
// average), and reading their records took 8% of its CPU for nothing.
//
// Records reach the store only from memory, so an account not in memory
// whose stored record is newer than from has left memory since the
// partition was opened (accounts.drop), and the filter of the span of its
// newest bucket holds it: a filter a span of leftSpan buckets, for the
// leftSpans spans up to the newest. A like older than what they cover
// reads the store as before. False positives cost a read, never a wrong
// weight.
type leftAccounts struct {
	// from is the first bucket the filters are complete for: every
	// account not in memory whose stored newest bucket is at or after it
	// is in the filter of that bucket's span. The spans from its span to
	// hi are held, span s in filters[slot(s)].
	from    int64
	hi      int64 // newest span held (math.MinInt64: none)
	filters [leftSpans]*filter
	seed    maphash.Seed
	// left counts the accounts added to hi's filter, to size the next.
	left int
}

const (
	leftSpan = 8 // buckets: 40 minutes of 5-minute buckets
	// leftSpans are the spans held: 5 hours and 20 minutes. A like whose
	// bucket lies within about 28 buckets (2 hours 20 minutes) of the
	// newest account let go is judged by them; an older one reads.
	leftSpans = 8
	// leftBitsPerKey sizes a span's filter by the accounts that left in
	// the span before it: about 1% false positives.
	leftBitsPerKey = 10
	leftMinBits    = 1 << 16 // 8 KiB
)

// newLeftAccounts returns the filters of a stage whose store holds no
// account with a like at or after from (math.MinInt64: none at all).
func newLeftAccounts(from int64) *leftAccounts {
	return &leftAccounts{from: from, hi: math.MinInt64, seed: maphash.MakeSeed()}
}

func spanOf(bucket int64) int64 { return floorDiv(bucket, leftSpan) }

// slot is the index of span s's filter.
func slot(s int64) int64 { return s - floorDiv(s, leftSpans)*leftSpans }

// add records that an account whose newest bucket is newest left memory;
// its record in the store is up to date. maxAccounts is the stage's bound
// on accounts (Config.MaxAccounts): a filter takes at most a byte an
// account of it, so that the filters take at most leftSpans bytes an
// account.
func (l *leftAccounts) add(key []byte, newest int64, maxAccounts int) {
	if newest < l.from {
		return // a like that needs it reads the store: it is before from
	}
	s := spanOf(newest)
	if s > l.hi {
		l.advance(s, max(leftMinBits, 1<<(bits.Len(uint(max(maxAccounts, 1)*8))-1)))
	}
	l.filters[slot(s)].seenHash(maphash.Bytes(l.seed, key))
	if s == l.hi {
		l.left++
	}
}

// advance makes s the newest span held, letting go the oldest ones (from
// then moves past them); the new filters take at most maxBits.
func (l *leftAccounts) advance(s int64, maxBits int) {
	// Rounded up to a power of two (maxBits is one): the room above
	// leftBitsPerKey takes a span in which more accounts leave than in
	// the one before (sized exactly, B1 read 17% more accounts).
	nbits := min(1<<bits.Len(uint(max(leftMinBits, l.left*leftBitsPerKey)-1)), maxBits)
	for sp := max(s-leftSpans+1, l.hi+1); sp <= s; sp++ {
		l.filters[slot(sp)] = newFilter(nbits)
	}
	l.from = max(l.from, (s-leftSpans+1)*leftSpan)
	l.hi, l.left = s, 0
}

// may reports whether the store may hold a record of the account that a
// like in bucket b needs: one newer than b-keyKeep-1; and the latest
// bucket its newest like may be in (the end of the latest span whose
// filter holds it, or math.MaxInt64 when the filters do not tell).
func (l *leftAccounts) may(key []byte, b int64) (upTo int64, ok bool) {
	lo := b - keyKeep
	if lo < l.from {
		return math.MaxInt64, true
	}
	if l.hi == math.MinInt64 || spanOf(lo) > l.hi {
		return 0, false
	}
	h := maphash.Bytes(l.seed, key)
	for s := l.hi; s >= spanOf(lo); s-- {
		if l.filters[slot(s)].hasHash(h) {
			return (s+1)*leftSpan - 1, true
		}
	}
	return 0, false
}
