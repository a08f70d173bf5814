// Package gen generates realistic, seeded like traffic for a short-video
// platform: JSON lines in the input format of the virality processor, plus
// the ground truth of what was planted in them.
//
// The traffic is the merge, in event-time order, of three processes:
//
//   - Background: normal users ("u0".."u{Users-1}") liking catalogue videos
//     ("v0".."v{Videos-1}") at a constant rate with a mild (±25%) UTC-day
//     curve. Videos are chosen by a Zipf-like popularity (weight 1/(rank+3),
//     ranks shuffled by the seed). Users have heavy-tailed (lognormal)
//     activity, capped so that nobody likes more than 1 per minute, nor
//     more than a fifth of the slowest farm account's rate. Each user has a
//     home region (US 30%, BR 15%, IN 15%, ID 10%, MX 8%, GB 8%, DE 7%,
//     JP 7%), the region of all their events. Unlikes withdraw a like the
//     same user gave seconds to hours before; repeats re-send a recent like;
//     stray unlikes withdraw a like that was never given; malformed and
//     late lines are mixed in at the configured shares.
//   - Farm: accounts "f0".."f{FarmAccounts-1}" like random catalogue videos
//     all the time, each at 3-6 likes/min, slowed down together when that
//     would exceed 13% of the events (or, with Config.FarmRate, at 2/3 to
//     4/3 of that rate). Farms live in one or two regions.
//   - Planted: organic viral bursts on fresh videos "vb0".. start slowly (a
//     like every 2-3 min), double every 4-6 min up to 30-80 likes/min, hold
//     for 15-30 min and decay, liked by normal users, often mostly from one
//     region. Bought-like campaigns on fresh videos "vc0".. deliver 300-1500
//     likes in 3-10 min from as many distinct farm accounts, from the first
//     minute. Config.Plants adds bursts and campaigns at chosen times, a
//     burst possibly catching on at once (a higher starting rate).
//   - Adversaries, when asked for (adversary.go): a farm spread over every
//     region, and lockstep crews of accounts that like at human rates but
//     deliver campaigns together, with their own campaigns in the truth.
//
// Every event's ts is then moved back by a uniform delay of up to Jitter,
// so lines arrive slightly out of event-time order. Bursts and campaigns are
// planned in New and reported by Truth; their likes are never unliked,
// repeated, late or malformed, so a video's likes in the output are exactly
// Truth.Likes.
//
// The output is a pure function of the Config: one PCG stream per purpose,
// no map iteration, no goroutines, no wall clock. Its arithmetic rounds
// every product and takes its functions from detmath, so another
// architecture computes the same bits; what is left is math/rand/v2's
// NormFloat64 and ExpFloat64, whose rare tail draws use math's Exp and Log
// (TestBackfillSameBytesOnArm64 finds the same 300,000 likes generated on
// arm64).
package gen

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/viralityhq/virality/detmath"
)

var regions = []struct {
	name   string
	weight float64
}{
	{"US", 30}, {"BR", 15}, {"IN", 15}, {"ID", 10}, {"MX", 8}, {"GB", 8}, {"DE", 7}, {"JP", 7},
}

// Unlikes and repeats pick from the likes remembered in two rings: every
// background like enters recent; one in eight of those pushed out of recent
// moves to old, which reaches hours back. An entry lives in one ring at a
// time and is withdrawn (video = -1) when unliked, so no like is unliked
// twice. Planted, late and repeated likes are never remembered.
const (
	recentMax   = 1 << 17
	oldMax      = 1 << 15
	oldKeepMask = 7

	lateMin = 10 * time.Minute
	lateMax = 30 * time.Minute
)

type likeRec struct {
	t           int64 // event time of the like, before jitter
	user, video int32 // video -1: withdrawn
}

// event is one line before encoding.
type event struct {
	t       int64 // event time, the merge order
	ts      int64 // the ts written
	user    int32 // global: humans, then farm accounts
	video   int32 // catalogue index, or plantedVideos index when planted
	planted bool
	unlike  bool
}

// Generator emits the events of one Config, one per Next call. It is not
// safe for concurrent use.
//
// Next merges four sources by event time before jitter (ties: planted,
// then farm, then crews, then background): the planted likes, sorted in
// New; the farm clock; the crews' clock (empty without crews); the
// background clock. Each source's count is fixed in New and they add up to
// Events, so the merge ends exactly at Events lines. Only
// the ts written is jittered; the merge, the rings and Truth.Peak use the
// event time before jitter.
type Generator struct {
	cfg      Config
	startMs  int64
	jitter   int64 // ms
	gap      int64 // ms an unlike or repeat comes at least after its like, so jitter cannot reorder them
	creators int

	src *rand.PCG // hot path
	rng *rand.Rand

	emitted int64
	bg      *clock // background slots: human likes, unlikes, repeats, strays, bad lines
	farm    *clock // farm likes of catalogue videos
	crew    *clock // crew accounts' likes of catalogue videos

	planted       []planted
	pi            int
	plantedVideos []plantedVideo
	truth         []Truth

	videos     alias
	users      alias
	userRegion []uint8
	regionOf   alias
	farms      alias
	farmRegion []uint8 // rate farm, then spread farm

	crewBase   int32 // global index of the first crew account
	crews      []crew
	crewUsers  alias
	crewRegion []uint8

	// Cumulative thresholds for a background slot's kind, and the chance
	// that a like is late.
	cBad, cStray, cUnlike, cRepeat, pLate float64

	farmLikes int64
	crewLikes int64

	recent        []likeRec
	recentN, elig int64 // likes ever remembered; those old enough to unlike
	old           []likeRec
	oldN          int64

	tsDay  int64  // day of the cached date
	tsDate []byte // "YYYY-MM-DDT" of tsDay
}

// PCG stream ids: one per purpose, so that e.g. a different BadShare does
// not change the catalogue or the bursts.
const (
	streamCatalogue = iota + 1
	streamUsers
	streamFarm
	streamPlan
	streamBackgroundClock
	streamFarmClock
	streamEvents
	streamPlants
)

// New plans a run: the catalogue, users, farm and crew accounts, and every
// burst and campaign. It costs O(Videos + Users + accounts + planted likes)
// time and memory, plus one pass of cheap draws over Events.
func New(cfg Config) (*Generator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	seed := uint64(cfg.Seed)
	g := &Generator{
		cfg:      cfg,
		startMs:  cfg.Start.UnixMilli(),
		jitter:   cfg.Jitter.Milliseconds(),
		creators: max(1, cfg.Videos/10),
		tsDay:    math.MinInt64,
	}
	g.gap = g.jitter + 1000
	b := cfg.budget()
	g.farmLikes, g.crewLikes = b.farmLikes, b.crewLikes
	g.crewBase = int32(cfg.Users + cfg.FarmAccounts + cfg.SpreadAccounts)

	regionW := make([]float64, len(regions))
	for i, r := range regions {
		regionW[i] = r.weight
	}
	g.regionOf = newAlias(regionW)

	// Catalogue: weight 1/(rank+3) with ranks shuffled, so v0 is not
	// always the hottest video.
	r := rand.New(rand.NewPCG(seed, streamCatalogue))
	vw := make([]float64, cfg.Videos)
	for rank, v := range r.Perm(cfg.Videos) {
		vw[v] = 1 / float64(rank+3)
	}
	g.videos = newAlias(vw)

	// Users: lognormal activity, capped (see budget) against the largest
	// possible background.
	r = rand.New(rand.NewPCG(seed, streamUsers))
	uw := make([]float64, cfg.Users)
	g.userRegion = make([]uint8, cfg.Users)
	for i := range uw {
		uw[i] = detmath.Exp(1.3 * r.NormFloat64())
		g.userRegion[i] = uint8(g.regionOf.draw(r.Uint64()))
	}
	capShare := b.humanCap * b.minutes / float64(b.humanLikes)
	g.users = newAlias(capWeights(uw, capShare))

	// Farm accounts: rates spread evenly over [3, 6] (relative), shuffled;
	// mostly one region, the rest another.
	r = rand.New(rand.NewPCG(seed, streamFarm))
	var fw []float64
	if n := cfg.FarmAccounts; n > 0 {
		fw = make([]float64, n)
		for i, j := range r.Perm(n) {
			fw[j] = farmRateMin + (farmRateMax-farmRateMin)*(float64(i)+0.5)/float64(n)
		}
		home := r.Perm(len(regions))
		g.farmRegion = make([]uint8, n)
		for i := range g.farmRegion {
			g.farmRegion[i] = uint8(home[0])
			if r.Float64() < 0.25 {
				g.farmRegion[i] = uint8(home[1])
			}
		}
	}
	if cfg.SpreadAccounts > 0 {
		fw = g.setupSpread(seed, fw)
	}
	if len(fw) > 0 {
		g.farms = newAlias(fw)
	}
	if cfg.CrewAccounts > 0 {
		g.setupCrews(seed, b)
	}

	g.plan(rand.New(rand.NewPCG(seed, streamPlan)))

	bg := int64(cfg.Events) - g.farmLikes - g.crewLikes - int64(len(g.planted))
	if bg <= 0 {
		return nil, fmt.Errorf("gen: %d planted, %d farm and %d crew likes leave no room for background traffic in %d events; raise events or lower bursts/campaigns", len(g.planted), g.farmLikes, g.crewLikes, cfg.Events)
	}
	n, m := float64(cfg.Events), float64(bg)
	g.cBad = cfg.BadShare * n / m
	g.cStray = g.cBad + cfg.StrayUnlikeShare*n/m
	g.cUnlike = g.cStray + cfg.UnlikeShare*n/m
	g.cRepeat = g.cUnlike + cfg.RepeatShare*n/m
	if g.cRepeat > 1 {
		return nil, errors.New("gen: unlike, repeat, stray unlike and bad shares exceed the background traffic; lower them or plant fewer bursts/campaigns")
	}
	likes := float64(m*(1-g.cUnlike)) + float64(g.farmLikes) + float64(g.crewLikes)
	g.pLate = min(1, cfg.LateShare*n/likes)

	g.bg = newClock(seed, streamBackgroundClock, bg, g.startMs, cfg.Duration, diurnal(cfg.Start, cfg.Duration))
	g.farm = newClock(seed, streamFarmClock, g.farmLikes, g.startMs, cfg.Duration, nil)
	// Crews like over the day as people do.
	g.crew = newClock(seed, streamCrewClock, g.crewLikes, g.startMs, cfg.Duration, diurnal(cfg.Start, cfg.Duration))
	g.src = rand.NewPCG(seed, streamEvents)
	g.rng = rand.New(g.src)

	size := int64(recentMax)
	for size/2 >= int64(cfg.Events) && size > 64 {
		size /= 2
	}
	g.recent = make([]likeRec, size)
	g.old = make([]likeRec, min(size, oldMax))
	return g, nil
}

// capWeights scales w so that it sums to 1 with no entry above limit,
// by clipping the largest entries and spreading their excess over the rest
// (water-filling). It assumes len(w)*limit >= 1 (checked by Validate).
func capWeights(w []float64, limit float64) []float64 {
	sum, lo := 0.0, math.Inf(1)
	for _, x := range w {
		sum += x
		lo = min(lo, x)
	}
	clipped := func(lambda float64) float64 {
		s := 0.0
		for _, x := range w {
			s += min(lambda*x, limit)
		}
		return s
	}
	lambda := 1 / sum
	if clipped(lambda) < 1-1e-12 {
		a, b := lambda, limit/lo // sum(a) < 1 <= sum(b)
		for range 60 {
			mid := (a + b) / 2
			if clipped(mid) < 1 {
				a = mid
			} else {
				b = mid
			}
		}
		lambda = b
	}
	out := make([]float64, len(w))
	for i, x := range w {
		out[i] = min(lambda*x, limit)
	}
	return out
}

// Truth returns the planted bursts and campaigns, sorted by Start then
// VideoID. It is known from New on and does not change.
func (g *Generator) Truth() []Truth { return append([]Truth(nil), g.truth...) }

// Next appends the next line (JSON, no trailing newline) to dst and returns
// it with the line's event time in epoch ms: its ts, or for a malformed line
// the generator's clock. ok is false once Events lines have been emitted.
func (g *Generator) Next(dst []byte) (line []byte, ts int64, ok bool) {
	if g.emitted >= int64(g.cfg.Events) {
		return dst, 0, false
	}
	id := g.emitted
	g.emitted++
	tp := int64(math.MaxInt64)
	if g.pi < len(g.planted) {
		tp = g.planted[g.pi].t
	}
	var e event
	switch {
	case tp <= g.farm.next && tp <= g.crew.next && tp <= g.bg.next:
		p := g.planted[g.pi]
		g.pi++
		e = event{t: p.t, ts: p.ts, user: p.user, video: p.video, planted: true}
	case g.farm.next <= g.crew.next && g.farm.next <= g.bg.next:
		e.t = g.farm.next
		g.farm.advance()
		x := g.src.Uint64()
		e.user = int32(g.cfg.Users) + g.farms.draw(x)
		e.video = int32((g.src.Uint64() >> 32) * uint64(g.cfg.Videos) >> 32)
		g.like(&e, true)
	case g.crew.next <= g.bg.next:
		// A crew account likes as a person does: popular videos more.
		e.t = g.crew.next
		g.crew.advance()
		e.user = g.crewBase + g.crewUsers.draw(g.src.Uint64())
		e.video = g.videos.draw(g.src.Uint64())
		g.like(&e, true)
	default:
		e.t = g.bg.next
		g.bg.advance()
		if bad := g.background(&e); bad != badNone {
			return g.appendEvent(dst, id, &e, bad), e.t, true
		}
	}
	return g.appendEvent(dst, id, &e, badNone), e.ts, true
}

// background fills e (whose t is set) as the next background slot.
func (g *Generator) background(e *event) badKind {
	x := unit(g.src.Uint64())
	switch {
	case x < g.cBad:
		g.humanPair(e)
		e.ts = e.t - g.jitterDelay()
		bad := badKind(1 + g.src.Uint64()%badKinds)
		if bad == badTSFuture {
			e.ts = e.t + 365*msPerDay
		}
		return bad
	case x < g.cStray:
		if g.stray(e) {
			return badNone
		}
	case x < g.cUnlike:
		if g.unlike(e) {
			return badNone
		}
	case x < g.cRepeat:
		if rec := g.pickRecent(e.t, 0.5); rec != nil {
			e.user, e.video = rec.user, rec.video
			g.like(e, false)
			return badNone
		}
	}
	g.humanPair(e)
	g.like(e, true)
	return badNone
}

func (g *Generator) jitterDelay() int64 {
	if g.jitter == 0 {
		return 0
	}
	return int64(g.src.Uint64() % uint64(g.jitter+1))
}

// like sets e's ts, late with probability pLate, and remembers the like
// for later unlikes and repeats when asked and it is not late.
func (g *Generator) like(e *event, remember bool) {
	if unit(g.src.Uint64()) < g.pLate {
		span := (lateMax - lateMin).Milliseconds()
		e.ts = e.t - lateMin.Milliseconds() - int64(g.src.Uint64()%uint64(span+1))
		return
	}
	e.ts = e.t - g.jitterDelay()
	if !remember {
		return
	}
	i := g.recentN & int64(len(g.recent)-1)
	if g.recentN >= int64(len(g.recent)) {
		if out := g.recent[i]; out.video >= 0 && g.src.Uint64()&oldKeepMask == 0 {
			g.old[g.oldN&int64(len(g.old)-1)] = out
			g.oldN++
		}
	}
	g.recent[i] = likeRec{t: e.t, user: e.user, video: e.video}
	g.recentN++
}

// humanPair draws a normal user and a catalogue video they may like (not a
// reserved pair).
func (g *Generator) humanPair(e *event) {
	e.user = g.users.draw(g.src.Uint64())
	e.video = g.videos.draw(g.src.Uint64())
	for range 32 {
		if !reserved(e.user, e.video) {
			return
		}
		e.video = g.videos.draw(g.src.Uint64())
	}
}

// stray makes e an unlike of a reserved pair, which no like ever uses.
func (g *Generator) stray(e *event) bool {
	for range 1 << 14 {
		u, v := g.users.draw(g.src.Uint64()), g.videos.draw(g.src.Uint64())
		if reserved(u, v) {
			e.user, e.video, e.unlike = u, v, true
			e.ts = e.t - g.jitterDelay()
			return true
		}
	}
	return false // a catalogue too small to hold reserved pairs
}

// unlike makes e withdraw a remembered like: a quarter from the old ring
// (hours back), the rest from the recent ring, mostly seconds back.
func (g *Generator) unlike(e *event) bool {
	for range 4 {
		var rec *likeRec
		if n := min(g.oldN, int64(len(g.old))); n > 0 && g.src.Uint64()&3 == 0 {
			rec = &g.old[(g.oldN-1-g.rng.Int64N(n))&int64(len(g.old)-1)]
			if rec.video < 0 {
				rec = nil
			}
		} else {
			rec = g.pickRecent(e.t, 0.6)
		}
		if rec == nil {
			continue
		}
		e.user, e.video, e.unlike = rec.user, rec.video, true
		e.ts = e.t - g.jitterDelay()
		rec.video = -1
		return true
	}
	return false
}

// pickRecent returns a standing like from the recent ring given at least
// gap before now: with probability near, one of the last few eligible
// (seconds back); otherwise any. nil when none is found.
func (g *Generator) pickRecent(now int64, near float64) *likeRec {
	size := int64(len(g.recent))
	mask := size - 1
	lo := max(0, g.recentN-size)
	g.elig = max(g.elig, lo)
	for g.elig < g.recentN && g.recent[g.elig&mask].t <= now-g.gap {
		g.elig++
	}
	n := g.elig - lo
	if n == 0 {
		return nil
	}
	var k int64
	if unit(g.src.Uint64()) < near {
		k = g.elig - 1 - min(int64(g.rng.ExpFloat64()*64), n-1)
	} else {
		k = lo + g.rng.Int64N(n)
	}
	if rec := &g.recent[k&mask]; rec.video >= 0 {
		return rec
	}
	return nil
}
