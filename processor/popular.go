package processor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/viralityhq/virality/detmath"
)

// Popular keys. A lockstep key (video and 10 minutes) shared by five of a
// new video's first twenty likers is evidence of a crew only if few
// accounts liked that video then: a hit that a twentieth of the active
// accounts liked in those minutes is carried by about one liker in twenty
// of any video, and its heaviest users share it with a new organic burst
// by chance (the demo's first burst was once found a campaign so).
//
// So each key carries its popularity: the likes of its video in the
// key's bucket, over the accounts that liked anything in it. Each account
// stage counts the likes it weighs in a count-min sketch per bucket
// (Cormode and Muthukrishnan, J. Algorithms 2005) and the accounts whose
// first like of the bucket it is; its reports of rates carry the
// sketches, and every stage sums them (rates.go). A sum of sketches is
// the sketch of the union, so the estimates are the same for any
// partitioning; a key is read from buckets b-2 and before only once G
// reaches b-2, when every stage has reported them, so they are complete.
// A count-min estimate never falls below the true count: a key is at
// worst thought more popular than it is, which only makes it weaker
// evidence.
//
// The tracker (lockstep.go) then asks that the shared key be unlikely by
// chance: that among n likers, each carrying the key with probability at
// most its popularity p, c or more would carry it less often than
// lockAlpha under a Poisson law of mean n·p.
const (
	sketchDepth   = 2
	sketchBits    = 10
	sketchWidth   = 1 << sketchBits
	sketchVersion = 1
	// lockAlpha is the chance of a shared key below which it is taken
	// for a crew's.
	lockAlpha = 1e-4
)

// keySketch is a bucket's likes by key, and its active accounts.
type keySketch struct {
	accounts uint64
	c        [sketchDepth][sketchWidth]uint32
}

// sketchSlot is key's counter in row: the key is a hash already, mixed
// once more per row so that the rows collide on different keys.
func sketchSlot(key uint32, row int) int {
	h := key
	if row > 0 {
		h ^= h >> 16
		h *= 0x85ebca6b
		h ^= h >> 13
	}
	return int((h * 0x9e3779b1) >> (32 - sketchBits))
}

// add counts a like of key.
func (s *keySketch) add(key uint32) {
	for r := range sketchDepth {
		if c := &s.c[r][sketchSlot(key, r)]; *c < math.MaxUint32 {
			*c++
		}
	}
}

// merge adds o's counts to s.
func (s *keySketch) merge(o *keySketch) {
	s.accounts += o.accounts
	for r := range sketchDepth {
		for i, n := range o.c[r] {
			s.c[r][i] = uint32(min(uint64(s.c[r][i])+uint64(n), math.MaxUint32))
		}
	}
}

// estimate is at least the likes of key.
func (s *keySketch) estimate(key uint32) uint32 {
	e := uint32(math.MaxUint32)
	for r := range sketchDepth {
		e = min(e, s.c[r][sketchSlot(key, r)])
	}
	return e
}

// popularity is key's popularity byte: popByte of its likes over the
// active accounts.
func (s *keySketch) popularity(key uint32) uint8 {
	if s == nil || s.accounts == 0 {
		return 0
	}
	return popByte(float64(s.estimate(key)) / float64(s.accounts))
}

// popByte quantises a popularity p in (0, 1] to a byte b, p <= 2^(-b/8):
// 0 is "as popular as can be" (or unknown), which no share makes
// evidence; each 8 more halve it.
func popByte(p float64) uint8 {
	if !(p < 1) {
		return 0
	}
	if p <= 0 {
		return math.MaxUint8
	}
	return uint8(min(math.Floor(-8*detmath.Log2(p)), math.MaxUint8))
}

// popProb is the popularity a byte stands for.
func popProb(b uint8) float64 { return detmath.Exp2(-float64(b) / 8) }

// unlikely reports whether count of likers carrying a key of popularity
// pop is too many for chance: P(X >= count) < lockAlpha for X Poisson
// of mean likers·p.
func unlikely(likers, count int64, pop uint8) bool {
	mu := float64(float64(likers) * popProb(pop))
	k := float64(count)
	if mu >= k {
		return false
	}
	// The tail's terms fall by mu/(i+1) < 1 from the first on.
	lg, _ := detmath.Lgamma(k + 1)
	term := detmath.Exp(-mu + float64(k*detmath.Log(mu)) - lg)
	tail := 0.0
	for i := k; term > tail*1e-12 && i < k+1000; i++ {
		tail += term
		term *= mu / (i + 1)
	}
	return tail < lockAlpha
}

func (s *keySketch) marshal(b []byte) []byte {
	b = append(b, sketchVersion)
	b = binary.AppendUvarint(b, s.accounts)
	for r := range sketchDepth {
		for _, n := range s.c[r] {
			b = binary.AppendUvarint(b, uint64(n))
		}
	}
	return b
}

var errSketch = errors.New("processor: corrupt key sketch")

// readSketch decodes a sketch from the front of b and returns the rest.
func readSketch(b []byte) (*keySketch, []byte, error) {
	if len(b) == 0 {
		return nil, nil, errSketch
	}
	if b[0] != sketchVersion {
		return nil, nil, fmt.Errorf("%w: version %d, this binary reads %d", errSketch, b[0], sketchVersion)
	}
	d := &ratesReader{b: b[1:]}
	s := &keySketch{accounts: d.uvarint()}
	for r := range sketchDepth {
		for i := range s.c[r] {
			n := d.uvarint()
			if n > math.MaxUint32 {
				d.bad = true
			}
			s.c[r][i] = uint32(n)
		}
	}
	if d.bad {
		return nil, nil, errSketch
	}
	return s, d.b, nil
}
