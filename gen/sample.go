package gen

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/viralityhq/virality/detmath"
)

// alias draws an index with fixed weights in O(1) (Walker/Vose alias
// method): one uniform 64-bit word picks a column (upper half) and decides
// between the column and its alias (lower half).
type alias struct {
	keep  []uint32 // keep column i when the lower 32 bits are below keep[i]
	other []int32
}

func newAlias(w []float64) alias {
	n := len(w)
	a := alias{keep: make([]uint32, n), other: make([]int32, n)}
	sum := 0.0
	for _, x := range w {
		sum += x
	}
	p := make([]float64, n)
	small := make([]int32, 0, n)
	large := make([]int32, 0, n)
	for i, x := range w {
		p[i] = x / sum * float64(n)
		if p[i] < 1 {
			small = append(small, int32(i))
		} else {
			large = append(large, int32(i))
		}
	}
	for len(small) > 0 && len(large) > 0 {
		s, l := small[len(small)-1], large[len(large)-1]
		small = small[:len(small)-1]
		a.keep[s] = uint32(p[s] * (1 << 32))
		a.other[s] = l
		p[l] -= 1 - p[s]
		if p[l] < 1 {
			large = large[:len(large)-1]
			small = append(small, l)
		}
	}
	// What is left has weight 1 up to rounding: always keep it.
	for _, i := range append(small, large...) {
		a.keep[i] = math.MaxUint32
		a.other[i] = i
	}
	return a
}

func (a *alias) draw(x uint64) int32 {
	i := int32((x >> 32) * uint64(len(a.keep)) >> 32)
	if uint32(x) < a.keep[i] {
		return i
	}
	return a.other[i]
}

// clock yields the times of exactly n points spread over [0, span) ms as
// the order statistics of n uniform (or warped) draws: the gaps are
// exponential, as in a Poisson process, normalised by the sum of all n+1
// gaps. The sum is computed up front by drawing the gaps once from a copy
// of the source, so the count is exact and nothing is stored.
type clock struct {
	src   rand.PCG
	rng   *rand.Rand // over src
	left  int64
	sum   float64
	scale float64 // span / (sum of the n+1 gaps)
	span  float64
	warp  *warp // nil: uniform density
	start int64
	next  int64 // absolute ms of the next point; math.MaxInt64 when done
}

func newClock(seed, stream uint64, n, start int64, span time.Duration, w *warp) *clock {
	c := &clock{src: *rand.NewPCG(seed, stream), left: n, warp: w, start: start, span: float64(span.Milliseconds())}
	c.rng = rand.New(&c.src)
	probe := c.src
	r := rand.New(&probe)
	total := 0.0
	for i := int64(0); i <= n; i++ {
		total += r.ExpFloat64()
	}
	c.scale = 1 / total
	c.advance()
	return c
}

func (c *clock) advance() {
	if c.left == 0 {
		c.next = math.MaxInt64
		return
	}
	c.left--
	c.sum += c.rng.ExpFloat64()
	u := min(c.sum*c.scale, 1)
	var off float64
	if c.warp != nil {
		off = c.warp.at(u)
	} else {
		off = u * c.span
	}
	c.next = c.start + min(int64(off), int64(c.span)-1)
}

// warp maps a uniform u in [0, 1) to an offset in ms following a piecewise
// constant density over equal cells. Calls must come with non-decreasing u.
type warp struct {
	cum    []float64 // cum[i] = mass of cells before i; cum[len-1] = 1
	cellMs float64
	cur    int
}

// diurnal is the background density: ±25% around the mean over a UTC day,
// highest at 14:00 UTC when the Americas, Europe and Asia overlap most.
func diurnal(start time.Time, span time.Duration) *warp {
	const cells = 4096
	w := &warp{cum: make([]float64, cells+1), cellMs: float64(span.Milliseconds()) / cells}
	day := float64(24 * time.Hour / time.Millisecond)
	startMs := float64(start.UnixMilli())
	for i := range cells {
		mid := startMs + float64((float64(i)+0.5)*w.cellMs)
		phase := math.Mod(mid, day)/day - 14.0/24 + 0.25
		w.cum[i+1] = w.cum[i] + 1 + float64(0.25*detmath.Sin(2*math.Pi*phase))
	}
	total := w.cum[cells]
	for i := range w.cum {
		w.cum[i] /= total
	}
	return w
}

func (w *warp) at(u float64) float64 {
	last := len(w.cum) - 2
	for w.cur < last && w.cum[w.cur+1] <= u {
		w.cur++
	}
	lo, hi := w.cum[w.cur], w.cum[w.cur+1]
	return (float64(w.cur) + (u-lo)/(hi-lo)) * w.cellMs
}

// reserved marks 1 in 256 (user, catalogue video) pairs that background
// likes avoid, so that a stray unlike can pick a pair nobody ever liked
// without remembering every pair.
func reserved(user, video int32) bool {
	x := uint64(uint32(user))<<32 | uint64(uint32(video))
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x>>56 == 0
}

// unit turns a random word into a float in [0, 1).
func unit(x uint64) float64 { return float64(x>>11) * (1.0 / (1 << 53)) }
