package gen

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/viralityhq/virality/detmath"
)

// Truth is one planted burst or campaign, as it appears in the output.
type Truth struct {
	Kind     string `json:"kind"` // "burst", "campaign", "spread_campaign", "crew_campaign" or "rising_creator"
	VideoID  string `json:"video_id"`
	Start    int64  `json:"start"`    // epoch ms of its first like (the ts written, after jitter)
	Peak     int64  `json:"peak"`     // epoch ms when it first runs at full rate (bursts); == Start for campaigns of every kind
	End      int64  `json:"end"`      // epoch ms of its last like (the ts written)
	Likes    int    `json:"likes"`    // likes it planted
	Accounts int    `json:"accounts"` // distinct accounts that liked
	// CreatorID names a planted rising creator (kind "rising_creator",
	// no video_id; creators.go).
	CreatorID string `json:"creator_id,omitempty"`
}

// Truth kinds.
const (
	KindBurst    = "burst"
	KindCampaign = "campaign"
)

// planted is one like of a burst or campaign, fixed in New.
type planted struct {
	t     int64 // event time the merge orders by
	ts    int64 // t minus jitter: the ts written
	user  int32 // global user index: humans, then farm accounts (rate, then spread), then crews
	video int32 // index into Generator.plantedVideos
}

type plantedVideo struct {
	name        string
	creator     int
	creatorName string // a rising creator's, instead of creator (creators.go)
}

// burst parameters (minutes, likes/min), drawn per burst from these ranges.
type burst struct {
	r0, doubling, peak, plateau, halfLife float64
	ramp, decay                           float64 // derived lengths
}

func (b burst) rate(m float64) float64 {
	switch {
	case m < b.ramp:
		return b.r0 * detmath.Exp2(m/b.doubling)
	case m < b.ramp+b.plateau:
		return b.peak
	default:
		return b.peak * detmath.Exp2(-(m-b.ramp-b.plateau)/b.halfLife)
	}
}

// pending is a planted burst or campaign whose truth is not complete yet.
type pending struct {
	kind  string
	video int32
	peak  int64
	n     int
	users map[int32]struct{}
}

// drawBurst draws a burst's shape; rate > 0 sets its starting rate (and
// raises its peak to at least that).
func drawBurst(r *rand.Rand, rate float64) burst {
	b := burst{
		r0:       1 / uniform(r, 2, 3),
		doubling: uniform(r, 4, 6),
		peak:     uniform(r, 30, 80),
		plateau:  uniform(r, 15, 30),
		halfLife: uniform(r, 8, 20),
	}
	if rate > 0 {
		b.r0 = rate
		b.peak = max(b.peak, rate)
	}
	b.ramp = float64(b.doubling * detmath.Log2(b.peak/b.r0))
	b.decay = float64(b.halfLife * detmath.Log2(b.peak/b.r0))
	return b
}

// plantBurst plants the likes of burst b beginning at begin (ms from the
// start) on a new video named name.
func (g *Generator) plantBurst(r *rand.Rand, b burst, begin int64, name string, add func(planted)) pending {
	span := g.cfg.Duration.Milliseconds()
	// Often one region dominates a burst (a local trend).
	dom, domShare := -1, 0.0
	if r.Float64() < 0.7 {
		dom, domShare = int(g.regionOf.draw(r.Uint64())), uniform(r, 0.5, 0.8)
	}
	v := int32(len(g.plantedVideos))
	g.plantedVideos = append(g.plantedVideos, plantedVideo{name: name, creator: r.IntN(g.creators)})
	p := pending{kind: KindBurst, video: v, peak: g.startMs + begin + int64(b.ramp*60e3), users: map[int32]struct{}{}}
	// Thinning: candidates at the peak rate, each kept with
	// probability rate/peak.
	end := b.ramp + b.plateau + b.decay
	for m := r.ExpFloat64() / b.peak; m < end; m += r.ExpFloat64() / b.peak {
		if r.Float64()*b.peak >= b.rate(m) {
			continue
		}
		t := begin + int64(m*60e3)
		if t >= span {
			break
		}
		u, ok := g.burstLiker(r, p.users, dom, domShare)
		if !ok {
			continue
		}
		add(planted{t: t, user: u, video: v})
		p.n++
	}
	return p
}

// plantCampaign plants a campaign of likes from as many farm accounts of
// pool, over length ms from begin, on a new video named name. It
// reorders pool.
func (g *Generator) plantCampaign(r *rand.Rand, kind string, pool []int32, likes int, begin, length int64, name string, add func(planted)) pending {
	v := int32(len(g.plantedVideos))
	g.plantedVideos = append(g.plantedVideos, plantedVideo{name: name, creator: r.IntN(g.creators)})
	// Partial Fisher-Yates: the first likes entries of pool are a
	// random subset, each account liking once.
	for j := range likes {
		k := j + r.IntN(len(pool)-j)
		pool[j], pool[k] = pool[k], pool[j]
		add(planted{t: begin + r.Int64N(length), user: pool[j], video: v})
	}
	// Abrupt start: the peak is the first like.
	return pending{kind: kind, video: v, n: likes}
}

// plan draws every burst and campaign, their likes and their truth.
func (g *Generator) plan(r *rand.Rand) {
	span := g.cfg.Duration.Milliseconds()
	jitter := g.cfg.Jitter.Milliseconds()
	var todo []pending
	add := func(p planted) {
		p.t += g.startMs
		p.ts = p.t - r.Int64N(jitter+1)
		g.planted = append(g.planted, p)
	}

	for i := range g.cfg.Bursts {
		b := drawBurst(r, 0)
		latest := max(0, float64(0.85*float64(span))-float64((b.ramp+b.plateau)*60e3))
		begin := int64(r.Float64() * latest)
		todo = append(todo, g.plantBurst(r, b, begin, "vb"+itoa(i), add))
	}

	pool := make([]int32, g.cfg.FarmAccounts)
	for i := range pool {
		pool[i] = int32(g.cfg.Users + i)
	}
	for i := range g.cfg.Campaigns {
		likes := campaignLikes(r, len(pool))
		begin, length := campaignSpan(r, span)
		todo = append(todo, g.plantCampaign(r, KindCampaign, pool, likes, begin, length, "vc"+itoa(i), add))
	}

	// Plants at chosen times: random streams of their own, so that the
	// draws above do not change.
	rp := rand.New(rand.NewPCG(uint64(g.cfg.Seed), streamPlants))
	nb, nc := g.cfg.Bursts, g.cfg.Campaigns
	ns, nl := g.cfg.SpreadCampaigns, g.cfg.CrewCampaigns
	var spread []int32
	for _, pl := range g.cfg.Plants {
		begin := pl.At.Milliseconds()
		switch pl.Kind {
		case KindBurst:
			todo = append(todo, g.plantBurst(rp, drawBurst(rp, pl.Rate), begin, "vb"+itoa(nb), add))
			nb++
		case KindCampaign:
			likes := campaignLikes(rp, len(pool))
			length := max(1, min(int64(uniform(rp, 3, 10)*60e3), span-begin))
			todo = append(todo, g.plantCampaign(rp, KindCampaign, pool, likes, begin, length, "vc"+itoa(nc), add))
			nc++
		case KindSpreadCampaign:
			if spread == nil {
				spread = g.spreadPool()
			}
			likes := campaignLikes(rp, len(spread))
			length := max(1, min(int64(uniform(rp, 3, 10)*60e3), span-begin))
			todo = append(todo, g.plantCampaign(rp, KindSpreadCampaign, spread, likes, begin, length, "vs"+itoa(ns), add))
			ns++
		case KindCrewCampaign:
			length := max(1, min(int64(uniform(rp, 3, 10)*60e3), span-begin))
			todo = append(todo, g.plantCrewCampaign(rp, begin, length, "vl"+itoa(nl), add))
			nl++
		}
	}

	rising := g.plantRising(add)
	todo = append(todo, g.planAdversaries(add)...)

	slices.SortFunc(g.planted, func(a, b planted) int {
		return cmp.Or(cmp.Compare(a.t, b.t), cmp.Compare(a.video, b.video), cmp.Compare(a.user, b.user))
	})

	first := make([]int64, len(g.plantedVideos))
	last := make([]int64, len(g.plantedVideos))
	for i := range first {
		first[i], last[i] = math.MaxInt64, math.MinInt64
	}
	for _, p := range g.planted {
		first[p.video] = min(first[p.video], p.ts)
		last[p.video] = max(last[p.video], p.ts)
	}
	for _, p := range todo {
		t := Truth{Kind: p.kind, VideoID: g.plantedVideos[p.video].name, Likes: p.n, Accounts: p.n,
			Start: first[p.video], Peak: p.peak, End: last[p.video]}
		if p.n == 0 {
			t.Start, t.End = p.peak, p.peak
		}
		if isCampaign(p.kind) {
			t.Peak = t.Start
		}
		g.truth = append(g.truth, t)
	}
	g.truth = append(g.truth, g.risingTruth(rising)...)
	slices.SortFunc(g.truth, func(a, b Truth) int {
		return cmp.Or(cmp.Compare(a.Start, b.Start), cmp.Compare(a.VideoID, b.VideoID))
	})
}

// burstLiker draws a human who has not liked this burst yet, from the
// dominant region with probability domShare. ok is false when the draws
// keep hitting users who already liked (tiny user bases): that like is
// dropped.
func (g *Generator) burstLiker(r *rand.Rand, seen map[int32]struct{}, dom int, domShare float64) (int32, bool) {
	wantDom := dom >= 0 && r.Float64() < domShare
	for range 256 {
		u := g.users.draw(r.Uint64())
		if wantDom && int(g.userRegion[u]) != dom {
			continue
		}
		if _, dup := seen[u]; dup {
			continue
		}
		seen[u] = struct{}{}
		return u, true
	}
	return 0, false
}

func uniform(r *rand.Rand, lo, hi float64) float64 { return lo + float64(r.Float64()*(hi-lo)) }
