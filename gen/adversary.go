package gen

import (
	"math"
	"math/rand/v2"
	"slices"
)

// Adversaries. Besides the rate farm (accounts that like several times
// faster than any person and deliver KindCampaign), the generator can
// plant two harder kinds of bought likes, each with its ground truth:
//
//   - Spread farm (KindSpreadCampaign, videos "vs0"..): SpreadAccounts
//     accounts "f{FarmAccounts}".. that like the catalogue as the rate
//     farm does, at its rate, but live in every region (drawn uniformly),
//     so that a campaign's 300-1500 likes come from all regions rather
//     than one or two.
//   - Lockstep crews (KindCrewCampaign, videos "vl0"..): CrewAccounts
//     accounts "u{Users}".., named as people and liking the catalogue as
//     people do (by popularity, over the day, in home regions drawn as
//     people's; each at 0.2-0.6 of the human ceiling, campaigns included),
//     split into crews of 20-60. A campaign is delivered by 3-6 crews:
//     each crew's accounts (nine in ten of them) like the video within 1-4
//     minutes of each other, the crews within the campaign's 3-10 minutes.
//     The same crews serve campaign after campaign, so the same groups of
//     accounts like the same videos within minutes again and again (the
//     lockstep behaviour of CopyCatch and SynchroTrap), while no account
//     likes faster than a person. Generator.Crews lists them.
//
// Both draw from random streams of their own: turned on, they leave the
// bursts, the rate-farm campaigns and the rising creators as they were
// (the background around them changes: they take some of the Events).

// Truth kinds of the adversaries.
const (
	KindSpreadCampaign = "spread_campaign"
	KindCrewCampaign   = "crew_campaign"
)

// isCampaign reports whether kind is one of bought likes.
func isCampaign(kind string) bool {
	return kind == KindCampaign || kind == KindSpreadCampaign || kind == KindCrewCampaign
}

const (
	// farmRateLimit bounds Config.FarmRate, likes a minute.
	farmRateLimit = 60.0
	// adversaryShareMax bounds the farm's and the crews' background likes
	// together, as a share of the events.
	adversaryShareMax = 0.5

	crewSizeMin  = 20
	crewSizeMax  = 60
	crewSizeMean = 40
	// Crew accounts' rates, campaigns and background together, as shares
	// of the human ceiling, spread evenly over [crewRateMin, crewRateMax]:
	// as fast as active people, never faster than the most active.
	crewRateMin  = 0.2
	crewRateMax  = 0.6
	crewRateMean = (crewRateMin + crewRateMax) / 2

	crewsPerCampaignMin  = 3
	crewsPerCampaignMax  = 6
	crewCampaignMaxLikes = crewsPerCampaignMax * crewSizeMax
	// A crew likes a video within crewWindowMin-Max minutes; each of its
	// accounts joins a campaign with probability crewTurnout.
	crewWindowMin = 1.0
	crewWindowMax = 4.0
	crewTurnout   = 0.9

	streamSpread     = 0x5b4ead
	streamSpreadPlan = 0x5b4eae
	streamCrews      = 0xc4e3
	streamCrewPlan   = 0xc4e4
	streamCrewClock  = 0xc4e5
)

// crew is a lockstep crew: its accounts (global user indices, sorted) and
// the planted videos it delivered likes to.
type crew struct {
	members []int32
	videos  []int32
}

// Crew is a planted lockstep crew: its accounts and the campaign videos
// it delivered, in the order they were planted.
type Crew struct {
	Accounts []string
	Videos   []string
}

// Crews returns the lockstep crews (none without Config.CrewAccounts).
func (g *Generator) Crews() []Crew {
	out := make([]Crew, 0, len(g.crews))
	for _, c := range g.crews {
		var x Crew
		for _, u := range c.members {
			x.Accounts = append(x.Accounts, g.userID(u))
		}
		for _, v := range c.videos {
			x.Videos = append(x.Videos, g.plantedVideos[v].name)
		}
		out = append(out, x)
	}
	return out
}

// userID is the id written for global user index u.
func (g *Generator) userID(u int32) string {
	switch n := int(u); {
	case n < g.cfg.Users:
		return "u" + itoa(n)
	case n >= int(g.crewBase):
		return "u" + itoa(g.cfg.Users+n-int(g.crewBase))
	default:
		return "f" + itoa(n-g.cfg.Users)
	}
}

// setupSpread appends the spread farm's accounts to the farm: rates as
// the rate farm's, regions drawn uniformly from all of them.
func (g *Generator) setupSpread(seed uint64, fw []float64) []float64 {
	n := g.cfg.SpreadAccounts
	r := rand.New(rand.NewPCG(seed, streamSpread))
	w := make([]float64, n)
	for i, j := range r.Perm(n) {
		w[j] = farmRateMin + (farmRateMax-farmRateMin)*(float64(i)+0.5)/float64(n)
	}
	for range n {
		g.farmRegion = append(g.farmRegion, uint8(r.IntN(len(regions))))
	}
	return append(fw, w...)
}

// crewCount is the number of crews of n accounts: n/k lies in
// [crewSizeMin, crewSizeMax] for n >= crewSizeMin.
func crewCount(n int) int { return max(1, int(math.Round(float64(n)/crewSizeMean))) }

// setupCrews draws the crew accounts' regions and background rates, and
// splits them into crews of about crewSizeMean.
func (g *Generator) setupCrews(seed uint64, b budget) {
	n := g.cfg.CrewAccounts
	r := rand.New(rand.NewPCG(seed, streamCrews))
	// Account i likes at w[i] a minute in all, b.crewCampRate of it
	// campaigns (Validate keeps that below crewRateMin of the ceiling).
	w := make([]float64, n)
	for i, j := range r.Perm(n) {
		w[j] = float64((crewRateMin+(crewRateMax-crewRateMin)*(float64(i)+0.5)/float64(n))*b.humanCap) - b.crewCampRate
	}
	g.crewUsers = newAlias(w)
	g.crewRegion = make([]uint8, n)
	for i := range g.crewRegion {
		g.crewRegion[i] = uint8(g.regionOf.draw(r.Uint64()))
	}
	k := b.crews
	sizes := make([]int, k)
	for i := range sizes {
		sizes[i] = n / k
		if i < n%k {
			sizes[i]++
		}
	}
	// Moving accounts between crews varies their sizes within bounds.
	for range 8 * k {
		i, j, d := r.IntN(k), r.IntN(k), r.IntN(11)
		if i != j && sizes[i]-d >= crewSizeMin && sizes[j]+d <= crewSizeMax {
			sizes[i] -= d
			sizes[j] += d
		}
	}
	members := r.Perm(n)
	for _, s := range sizes {
		var c crew
		for _, m := range members[:s] {
			c.members = append(c.members, g.crewBase+int32(m))
		}
		slices.Sort(c.members)
		members = members[s:]
		g.crews = append(g.crews, c)
	}
}

// campaignLikes draws a farm campaign's size: 300-1500 likes, at most one
// per account of a pool of n.
func campaignLikes(r *rand.Rand, n int) int {
	return min(campaignMinLikes+r.IntN(campaignMaxLikes-campaignMinLikes+1), n)
}

// campaignSpan draws a random campaign's length and start (ms from the
// start of the run), as for the rate farm's.
func campaignSpan(r *rand.Rand, span int64) (begin, length int64) {
	length = min(int64(uniform(r, 3, 10)*60e3), span)
	lo := int64(0.05 * float64(span))
	hi := max(lo, int64(0.9*float64(span))-length)
	return min(lo+r.Int64N(hi-lo+1), span-length), length
}

// plantCrewCampaign plants a campaign of 3-6 crews over length ms from
// begin on a new video named name: each crew's accounts like it within a
// window of 1-4 minutes, the first crew from begin on.
func (g *Generator) plantCrewCampaign(r *rand.Rand, begin, length int64, name string, add func(planted)) pending {
	v := int32(len(g.plantedVideos))
	g.plantedVideos = append(g.plantedVideos, plantedVideo{name: name, creator: r.IntN(g.creators)})
	k := min(crewsPerCampaignMin+r.IntN(crewsPerCampaignMax-crewsPerCampaignMin+1), len(g.crews))
	chosen := r.Perm(len(g.crews))[:k]
	p := pending{kind: KindCrewCampaign, video: v, peak: g.startMs + begin}
	for j, ci := range chosen {
		c := &g.crews[ci]
		c.videos = append(c.videos, v)
		window := min(int64(uniform(r, crewWindowMin, crewWindowMax)*60e3), length)
		off := int64(0)
		if j > 0 {
			off = r.Int64N(length - window + 1)
		}
		for _, u := range c.members {
			if r.Float64() >= crewTurnout {
				continue
			}
			add(planted{t: begin + off + r.Int64N(window), user: u, video: v})
			p.n++
		}
	}
	return p
}

// planAdversaries plants the random spread and crew campaigns, each kind
// from a random stream of its own.
func (g *Generator) planAdversaries(add func(planted)) []pending {
	span := g.cfg.Duration.Milliseconds()
	seed := uint64(g.cfg.Seed)
	var todo []pending
	if n := g.cfg.SpreadCampaigns; n > 0 {
		r := rand.New(rand.NewPCG(seed, streamSpreadPlan))
		pool := g.spreadPool()
		for i := range n {
			likes := campaignLikes(r, len(pool))
			begin, length := campaignSpan(r, span)
			todo = append(todo, g.plantCampaign(r, KindSpreadCampaign, pool, likes, begin, length, "vs"+itoa(i), add))
		}
	}
	if n := g.cfg.CrewCampaigns; n > 0 {
		r := rand.New(rand.NewPCG(seed, streamCrewPlan))
		for i := range n {
			begin, length := campaignSpan(r, span)
			todo = append(todo, g.plantCrewCampaign(r, begin, length, "vl"+itoa(i), add))
		}
	}
	return todo
}

// spreadPool is the spread farm's accounts, global user indices.
func (g *Generator) spreadPool() []int32 {
	pool := make([]int32, g.cfg.SpreadAccounts)
	for i := range pool {
		pool[i] = int32(g.cfg.Users + g.cfg.FarmAccounts + i)
	}
	return pool
}
