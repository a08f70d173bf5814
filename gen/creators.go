package gen

import (
	"math"
	"math/rand/v2"

	"github.com/viralityhq/virality/detmath"
)

// Rising creators. With Config.RisingCreators > 0, the generator plants
// creators whose likes over all their videos rise together, while no one
// video of theirs bursts: each rising creator "cr<i>" (a creator id no
// other creator has) gets risingVideos new videos "vr<i>-<j>", and likes
// that ramp up over all of them at a doubling every 6-10 min from 1/2 a
// minute to a peak of 10-20 likes a minute, hold it for 30-45 min, then
// decay with a half-life of 15-25 min. Each like goes to one of the
// creator's videos at random (3-5 likes a minute each at the peak, a
// tenth of a burst's), from a human who has not liked the creator yet,
// often of one region. They draw from a random stream of their own:
// without rising creators the output is unchanged, with them only the
// background around them changes (they take some of the Events).

// KindRisingCreator is the truth kind of a planted rising creator.
const KindRisingCreator = "rising_creator"

const (
	risingVideos   = 4
	risingMaxLikes = 2_500 // at the extreme of every range
	streamRising   = 0x72c4ea70
)

// risingCreator is a planted rising creator whose truth is not complete.
type risingCreator struct {
	name   string
	videos []int32 // into plantedVideos
	peak   int64
	n      int
}

// plantRising plants the rising creators' likes through add.
func (g *Generator) plantRising(add func(planted)) []risingCreator {
	if g.cfg.RisingCreators <= 0 {
		return nil
	}
	r := rand.New(rand.NewPCG(uint64(g.cfg.Seed), streamRising))
	span := g.cfg.Duration.Milliseconds()
	var out []risingCreator
	for i := range g.cfg.RisingCreators {
		b := burst{
			r0:       0.5,
			doubling: uniform(r, 6, 10),
			peak:     uniform(r, 10, 20),
			plateau:  uniform(r, 30, 45),
			halfLife: uniform(r, 15, 25),
		}
		b.ramp = float64(b.doubling * detmath.Log2(b.peak/b.r0))
		b.decay = float64(b.halfLife * detmath.Log2(b.peak/b.r0))
		lo := float64(0.1 * float64(span))
		hi := max(lo, float64(0.85*float64(span))-float64((b.ramp+b.plateau)*60e3))
		begin := int64(lo + float64(r.Float64()*(hi-lo)))
		dom, domShare := -1, 0.0
		if r.Float64() < 0.7 {
			dom, domShare = int(g.regionOf.draw(r.Uint64())), uniform(r, 0.5, 0.8)
		}
		c := risingCreator{name: "cr" + itoa(i), peak: g.startMs + begin + int64(b.ramp*60e3)}
		for j := range risingVideos {
			c.videos = append(c.videos, int32(len(g.plantedVideos)))
			g.plantedVideos = append(g.plantedVideos, plantedVideo{name: "vr" + itoa(i) + "-" + itoa(j), creatorName: c.name})
		}
		seen := map[int32]struct{}{}
		end := b.ramp + b.plateau + b.decay
		for m := r.ExpFloat64() / b.peak; m < end; m += r.ExpFloat64() / b.peak {
			if r.Float64()*b.peak >= b.rate(m) {
				continue
			}
			t := begin + int64(m*60e3)
			if t >= span {
				break
			}
			u, ok := g.burstLiker(r, seen, dom, domShare)
			if !ok {
				continue
			}
			add(planted{t: t, user: u, video: c.videos[r.IntN(risingVideos)]})
			c.n++
		}
		out = append(out, c)
	}
	return out
}

// risingTruth is the truth of the planted rising creators, once their
// likes are sorted.
func (g *Generator) risingTruth(cs []risingCreator) []Truth {
	var out []Truth
	for _, c := range cs {
		t := Truth{Kind: KindRisingCreator, CreatorID: c.name, Likes: c.n, Accounts: c.n,
			Start: math.MaxInt64, End: math.MinInt64, Peak: c.peak}
		for _, p := range g.planted {
			if g.plantedVideos[p.video].creatorName == c.name {
				t.Start, t.End = min(t.Start, p.ts), max(t.End, p.ts)
			}
		}
		if c.n == 0 {
			t.Start, t.End = c.peak, c.peak
		}
		out = append(out, t)
	}
	return out
}
