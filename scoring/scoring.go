// Package scoring is the pure math of virality: decayed rates, account
// weights and the scoring models. It reads no clock, does no I/O and knows
// nothing of Kafka or Pebble; every function is a function of its arguments,
// so live runs, replays and backfills that feed it the same state agree to
// the bit.
//
// # Inputs
//
// A video's state, kept exactly by the processor, is summarised in an
// [Input]: standing likes, unique likers, exact windowed counts of standing
// likes whose like time lies in (ts-w, ts] for w in 1 min, 5 min, 1 h and
// 24 h, the same windows with each like weighted by its account weight, and
// decayed like rates.
//
// # Decayed rates (forward decay)
//
// The rate at half-life h is λ·Σ 2^(-(ts-t_i)/h) over standing likes t_i,
// with λ = ln 2 / h, in likes per minute: for a steady rate of r likes per
// minute it converges to r. Following forward decay (Cormode, Shkapenyuk,
// Srivastava, Xu, ICDE 2009) each like is stored once as a weight relative
// to a landmark, 2^((t_i-L)/h), so adding and removing a like are exact
// inverses and the sum does not depend on the order of arrival. To keep the
// weights bounded, landmarks are fixed points of a grid: epoch k covers
// [k·E, (k+1)·E) with E = 12 half-lives, and a like contributes
// round(2^(20 + (t_i-k·E)/h)) — at most 2^32 — to its epoch's integer sum.
// Integer sums make the state bit-identical for any arrival order; the
// only floating-point step is the read-out at ts. An epoch whose end lies
// more than 40 half-lives before ts contributes under 2^-28 of its weight
// and is dropped.
//
// # Account weights (bought likes)
//
// A like is weighted by how abnormal its account's like rate is: with c the
// account's likes in the hour before the like (see the processor for the
// exact, order-independent window), the weight is 1 up to a threshold c0,
// by default 60 likes an hour (one a minute for an hour, more than a person
// plausibly does), and halves with every further 5% of c0 above it,
// 2^(-20(c/c0-1)), down to a floor of 1/1024. An account at one and a half
// times the threshold counts a thousandth of a like: a farm that delivers 1500 likes in five minutes
// moves n by about 1.5. Weights are fixed point with [WeightOne] as 1 so
// that windowed sums of them are exact integers, too, and so is what
// damping took from a window ([Input.DampedLikes]); [Input.Damping] names
// the signals that damped it, so that a record can say why a video with
// many likes scores low.
//
// # The trending model
//
// The default model, "trending", scores how surprising the weighted likes
// of the last 5 minutes, n, are against the video's own baseline. The
// baseline rate λ (weighted likes per minute) gets a Gamma(α, β) prior
// with α = 1 and β = 60 minutes (a new video is expected to get one like an
// hour), updated with the b weighted likes of (ts-24h, ts-5m] over the
// exposure T, the minutes of that interval after the video's first like:
// the posterior is Gamma(α+b, β+T). The count in 5 minutes is then
// negative-binomial with mean μ = 5(α+b)/(β+T) and variance μ + μ²/(α+b).
// The score is the standardised excess
//
//	z = (n - μ) / sqrt(μ + μ²/(α+b) + 1)
//
// clamped at 0. The prior shrinks videos with few likes towards "not
// surprising" (three likes on a new video is z ≈ 2.9, not infinity), the +1
// keeps tiny counts from dominating, steady popular videos score near 0 as
// their own baseline explains them, and a burst scores roughly its excess in
// standard deviations, which grows with its size. Bought likes count only
// by their weight, so a campaign of farm accounts barely moves n.
//
// # Baselines
//
// "hn" is Hacker News' gravity, (likes-1)/(age_h+2)^1.8 with age from the
// first like; "reddit-hot" is Reddit's hot rank, log10(max(likes,1)) +
// (first like in s - 1134028003)/45000. Neither knows about accounts.
//
// # Bits across machines
//
// Go lets a compiler fuse x*y + z into one multiply-add that rounds once
// instead of twice, and the compilers for arm64 (and for amd64 from
// GOAMD64=v3) do. The bits then depend on the build: a backfill built for
// GOAMD64=v3 wrote 5 of 1.1M score records with another last digit of
// acceleration, the difference of two close rates. So every product here
// and in the processor that feeds an addition is converted explicitly,
// float64(x*y), which rounds it and prevents the fusion;
// TestNoFusedMultiplyAdd compiles both packages, detmath and the generator
// for arm64 and fails on any fused instruction. Built for amd64 at v1 and
// at v3, a backfill of 1.3M generated likes (bench/handloop.sh's file)
// now writes the same bytes.
//
// Go's math package cannot be held to the bit either: Exp and Log are
// assembly on amd64, Exp and Exp2 on arm64, and the rest is Go fused as
// above on arm64; each of Exp, Exp2, Log, Log2, Log10, Pow, Lgamma and Sin
// gave other bits on arm64 than on amd64 for some of 500,000 arguments.
// So this package, the processor and the generator use detmath, math's Go
// code with its products rounded and no assembly. TestSameBitsOnArm64
// (detmath) runs it compiled for arm64 under QEMU and compares its bits
// with amd64's; TestBackfillSameBytesOnArm64 (cmd/virality) does the same
// for the outputs of a whole backfill.
package scoring

import (
	"fmt"
	"math"
	"math/bits"
	"sort"
	"strings"

	"github.com/viralityhq/virality/detmath"
)

// Windows, in the order of [Input.Windows].
const (
	W1m = iota
	W5m
	W1h
	W24h
	NumWindows
)

// WindowMS holds the window lengths in milliseconds.
var WindowMS = [NumWindows]int64{60_000, 300_000, 3_600_000, 86_400_000}

// Half-lives of the decayed rates, in the order of [Input.Rates].
const (
	H5m = iota
	H1h
	H24h
	NumHalfLives
)

// HalfLifeMS holds the half-lives in milliseconds.
var HalfLifeMS = [NumHalfLives]int64{300_000, 3_600_000, 86_400_000}

// Input is the state of one video at event time TS.
type Input struct {
	TS           int64 // event time of the computation, ms
	FirstLike    int64 // event time of the video's first like, ms (0: none)
	Likes        int64 // standing likes
	UniqueLikers int64 // users with at least one like
	// Windows counts standing likes with like time in (TS-w, TS].
	Windows [NumWindows]int64
	// Weighted is Windows with each like weighted by its account weight,
	// in units of WeightOne.
	Weighted [NumWindows]int64
	// Rates are decayed like rates in likes per minute.
	Rates [NumHalfLives]float64
	// Damping names, for each window, the signals that damped at least
	// one of its likes (gave it a weight below WeightOne).
	Damping [NumWindows]Damping
}

// DampedLikes is how many likes of window w damping took away: the
// window's likes minus the sum of their weights, rounded up to a whole
// like, so that it is 0 exactly when no like of the window was damped and
// never more than Windows[w].
func (in *Input) DampedLikes(w int) int64 {
	lost := in.Windows[w]*WeightOne - in.Weighted[w]
	if lost <= 0 {
		return 0
	}
	return (lost + WeightOne - 1) / WeightOne
}

// Velocity is the current like rate in likes per minute: the 5-minute
// half-life rate.
func (in *Input) Velocity() float64 { return in.Rates[H5m] }

// Acceleration is the short rate against the long one, likes per minute:
// positive while a video gains pace over its last hour.
func (in *Input) Acceleration() float64 { return in.Rates[H5m] - in.Rates[H1h] }

// A Model turns a video's state into one score; higher is more trending.
// Models are pure: the same Input always gives the same score.
type Model interface {
	Name() string
	Score(in *Input) float64
}

// DefaultModel is the name of the model used when none is chosen.
const DefaultModel = "trending"

var models = map[string]Model{
	"trending":   Trending{Alpha: 1, Beta: 60},
	"hn":         HN{},
	"reddit-hot": RedditHot{},
}

// Lookup returns the model with the given name.
func Lookup(name string) (Model, error) {
	m, ok := models[name]
	if !ok {
		return nil, fmt.Errorf("scoring: unknown model %q (choose one of %s)", name, strings.Join(Names(), ", "))
	}
	return m, nil
}

// Names lists the models, sorted.
func Names() []string {
	names := make([]string, 0, len(models))
	for n := range models {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Trending is the default model; see the package comment.
type Trending struct {
	Alpha float64 // prior shape: pseudo-likes
	Beta  float64 // prior rate: pseudo-minutes
}

// Name implements Model.
func (Trending) Name() string { return "trending" }

// Score implements Model.
func (m Trending) Score(in *Input) float64 {
	const recentMin = 5.0
	// Each product is converted explicitly, here and in the rest of the
	// package (a division by WeightOne, a power of two, is compiled as
	// one): a conversion rounds, so that no compiler fuses it into a
	// multiply-add, which rounds once and gives other bits (see "Bits
	// across machines" in the package comment).
	n := float64(float64(in.Weighted[W5m]) / WeightOne)
	b := float64(float64(in.Weighted[W24h]-in.Weighted[W5m]) / WeightOne)
	// Exposure: minutes of (ts-24h, ts-5m] after the first like.
	exposure := 0.0
	if in.FirstLike > 0 {
		end := in.TS - WindowMS[W5m]
		start := max(in.FirstLike, in.TS-WindowMS[W24h])
		if end > start {
			exposure = float64(end-start) / 60_000
		}
	}
	shape := m.Alpha + b
	mu := float64(recentMin*shape) / (m.Beta + exposure)
	z := (n - mu) / math.Sqrt(mu+float64(mu*mu)/shape+1)
	if z < 0 || math.IsNaN(z) {
		return 0
	}
	return z
}

// HN is Hacker News' gravity ranking on likes.
type HN struct{}

// Name implements Model.
func (HN) Name() string { return "hn" }

// Score implements Model.
func (HN) Score(in *Input) float64 {
	if in.Likes < 1 || in.FirstLike == 0 {
		return 0
	}
	ageH := float64(max(in.TS-in.FirstLike, 0)) / 3_600_000
	return float64(in.Likes-1) / detmath.Pow(ageH+2, 1.8)
}

// RedditHot is Reddit's hot ranking on likes, dated by the first like.
type RedditHot struct{}

// Name implements Model.
func (RedditHot) Name() string { return "reddit-hot" }

// Score implements Model.
func (RedditHot) Score(in *Input) float64 {
	if in.Likes < 1 || in.FirstLike == 0 {
		return 0
	}
	order := float64(detmath.Log10(float64(in.Likes)))
	seconds := float64(in.FirstLike)/1000 - 1134028003
	return order + seconds/45000
}

// WeightOne is the fixed-point weight of a like from a normal account.
const WeightOne = 1024

// DefaultAccountThreshold was the fixed default c0 before the threshold
// followed the traffic ([AutoAccountThreshold]); the generator's tests use
// it as a fixed setting.
const DefaultAccountThreshold = 60

// The threshold that follows the traffic: AutoThresholdTimes the
// AutoThresholdQuantile of active accounts' likes in the hour before, and
// at least AutoThresholdFloor.
const (
	AutoThresholdQuantile = 0.95
	AutoThresholdTimes    = 4
	AutoThresholdFloor    = 12
)

// RateUnit is the weight of one account in a [RateHist]: divisible by every
// number of buckets in an hour (1 to 12), so that an account active in k
// of them counts RateUnit/k in each, exactly.
const RateUnit = 27720

// RateBins is the number of bins of a [RateHist].
const RateBins = 60

// RateHist counts accounts by their likes in an hour, in units of
// RateUnit: bin r holds r likes for r below 32, then each bin twice as
// wide as the one before.
type RateHist [RateBins]uint64

// RateBin is the bin of an account with r likes in the hour.
func RateBin(r int64) int {
	if r < 32 {
		return int(max(r, 0))
	}
	return min(32+bits.Len64(uint64(r))-6, RateBins-1)
}

// binLow is the fewest likes of bin i.
func binLow(i int) int64 {
	if i < 32 {
		return int64(i)
	}
	return 1 << (i - 32 + 5)
}

// AutoAccountThreshold is the account threshold for accounts counted in
// h: AutoThresholdTimes their AutoThresholdQuantile, at least
// AutoThresholdFloor. A quantile lets the threshold follow the traffic's
// volume; a farm of more than 5% of the accounts active in an hour moves
// it, a smaller one does not.
func AutoAccountThreshold(h *RateHist) int64 {
	var n uint64
	for _, c := range h {
		n += c
	}
	if n == 0 {
		return AutoThresholdFloor
	}
	want := uint64(math.Ceil(AutoThresholdQuantile * float64(n)))
	var cum uint64
	for i, c := range h {
		cum += c
		if cum >= want {
			return max(AutoThresholdFloor, AutoThresholdTimes*binLow(i))
		}
	}
	return AutoThresholdFloor
}

// AccountWeight is the fixed-point weight of a like from an account that gave
// recent likes in the hour before it, for the threshold c0. It is never 0
// so that every like is still seen by the windows.
func AccountWeight(recent, c0 int64) int64 {
	if recent <= c0 {
		return WeightOne
	}
	x := float64(recent)/float64(c0) - 1
	w := int64(math.Round(WeightOne * detmath.Exp2(-20*x)))
	return max(w, 1)
}

// Damping is a set of the signals that damp a like, one bit each, so that
// a window whose likes were damped for different reasons names them all.
// Two signals so far: the account's like rate ([AccountWeight]) and
// lockstep groups; a new one takes the next bit and a name.
type Damping uint8

// The damping signals.
const (
	// DampedAccountRate: the like's account liked faster than the account
	// threshold in the hour before the like.
	DampedAccountRate Damping = 1 << iota
	// DampedLockstep: the like's account is one of a group that liked
	// the same videos within minutes of each other before, and liked this
	// young video with them, or the video is one such groups drive
	// (processor/lockstep.go).
	DampedLockstep
	numDampings = iota
)

// LockstepWeight is the fixed-point weight of a like damped as lockstep:
// 1/64 of a like (a smaller account weight stays as it was).
const LockstepWeight = WeightOne / 64

// dampingNames are the names of the signals, in bit order, as score
// records give them.
var dampingNames = [numDampings]string{"account_rate", "lockstep"}

// AppendNames appends the names of d's signals, comma-separated in bit
// order ("account_rate"); nothing when d is empty.
func (d Damping) AppendNames(b []byte) []byte {
	first := true
	for i, name := range dampingNames {
		if d&(1<<i) == 0 {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		b = append(b, name...)
		first = false
	}
	return b
}

// String returns the names of d's signals, as AppendNames.
func (d Damping) String() string { return string(d.AppendNames(nil)) }

// Decay epochs: see the package comment.
const (
	epochHalfLives = 12
	decayScaleBits = 20
	dropHalfLives  = 40
)

// DecaySum is one epoch's integer sum of forward-decay weights.
type DecaySum struct {
	Epoch int64
	Sum   uint64
}

// DecayContribution is the integer weight of a like at t for half-life h,
// and the epoch it belongs to.
func DecayContribution(t, h int64) (epoch int64, c uint64) {
	e := h * epochHalfLives
	epoch = floorDiv(t, e)
	x := float64(t-epoch*e) / float64(h)
	return epoch, uint64(math.Round(detmath.Exp2(decayScaleBits + x)))
}

// DecayEpoch is the epoch of half-life h that time t is in.
func DecayEpoch(t, h int64) int64 { return floorDiv(t, h*epochHalfLives) }

// DecayAdd adds (or with neg, removes) a like at t to sums kept sorted by
// epoch, and returns the updated slice.
func DecayAdd(sums []DecaySum, t, h int64, neg bool) []DecaySum {
	epoch, c := DecayContribution(t, h)
	i := sort.Search(len(sums), func(i int) bool { return sums[i].Epoch >= epoch })
	if i == len(sums) || sums[i].Epoch != epoch {
		if neg {
			// The epoch was dropped as negligible: nothing left to remove.
			return sums
		}
		sums = append(sums, DecaySum{})
		copy(sums[i+1:], sums[i:])
		sums[i] = DecaySum{Epoch: epoch}
	}
	if neg {
		sums[i].Sum -= c
		if sums[i].Sum == 0 {
			sums = append(sums[:i], sums[i+1:]...)
		}
	} else {
		sums[i].Sum += c
	}
	return sums
}

// DecayPrune drops epochs that end more than 40 half-lives before ts.
func DecayPrune(sums []DecaySum, ts, h int64) []DecaySum {
	e := h * epochHalfLives
	n := 0
	for n < len(sums) && (sums[n].Epoch+1)*e < ts-dropHalfLives*h {
		n++
	}
	if n == 0 {
		return sums
	}
	return append(sums[:0], sums[n:]...)
}

// DecayRate reads the rate at ts, in likes per minute, out of sums.
func DecayRate(sums []DecaySum, ts, h int64) float64 {
	e := h * epochHalfLives
	var total float64
	for _, s := range sums {
		age := float64(ts-s.Epoch*e) / float64(h)
		total += float64(float64(s.Sum) * detmath.Exp2(-decayScaleBits-age))
	}
	return total * math.Ln2 * 60_000 / float64(h)
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
