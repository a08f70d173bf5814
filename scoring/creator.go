package scoring

import "math"

// CreatorInput is the state of one creator at a tick: standing likes
// counted by the minute (and, for the day, the hour) of their like time.
type CreatorInput struct {
	TS        int64 // the tick, ms: the state reflects every like before it
	FirstLike int64 // start of the minute of the creator's first like, ms (0: none)
	Likes5m   int64 // likes in the 5 minutes up to the tick's minute
	Likes24h  int64 // likes in the 24 hours up to the tick's hour (includes Likes5m)
}

// CreatorPrior is the prior of creator momentum: the trending model's.
var CreatorPrior = Trending{Alpha: 1, Beta: 60}

// CreatorMomentum returns a creator's momentum and baseline (likes per
// minute).
//
// A creator's momentum is the trending model applied to the likes of all
// the creator's videos together: how surprising the likes of the last 5
// minutes, n, are against the creator's own baseline, the b likes of the
// 24 hours before them, under the same Gamma(α = 1, β = 60 min) prior
// shrunk towards "not surprising" for creators with few likes:
//
//	μ = 5(α+b)/(β+T),  momentum = max(0, (n - μ) / sqrt(μ + μ²/(α+b) + 1))
//
// with T the minutes of the baseline interval after the creator's first
// like. The baseline is the posterior mean rate (α+b)/(β+T). Like times
// are counted by minute (see [CreatorInput]), and likes are not weighted
// by account: account weights are kept per partition of videos, and a
// creator's likes come from every partition.
func CreatorMomentum(in *CreatorInput) (momentum, baseline float64) {
	const recentMin = 5.0
	m := CreatorPrior
	n := float64(in.Likes5m)
	b := float64(max(in.Likes24h-in.Likes5m, 0))
	exposure := 0.0
	if in.FirstLike > 0 {
		end := in.TS - WindowMS[W5m]
		start := max(in.FirstLike, in.TS-WindowMS[W24h])
		if end > start {
			exposure = float64(end-start) / 60_000
		}
	}
	shape := m.Alpha + b
	baseline = shape / (m.Beta + exposure)
	mu := float64(recentMin * baseline)
	z := (n - mu) / math.Sqrt(mu+float64(mu*mu)/shape+1)
	if z < 0 || math.IsNaN(z) {
		z = 0
	}
	return z, baseline
}
