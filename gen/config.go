package gen

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// Config describes one generated run. Start from DefaultConfig: the zero
// Config is not valid (it has no events and no time span).
type Config struct {
	Seed     int64         // default 1
	Events   int           // total lines to emit, malformed ones included (default 1_000_000)
	Videos   int           // background video catalogue size (default 100_000)
	Users    int           // normal users (default 500_000)
	Start    time.Time     // event time where the run begins (default 2026-11-01T00:00:00Z; never the wall clock); jitter and late lines can put a ts before it
	Duration time.Duration // event-time span of the run (default 24h)

	UnlikeShare      float64 // share of events that unlike an earlier like by the same user (default 0.02)
	RepeatShare      float64 // share of events that repeat a like the user already gave (default 0.01)
	StrayUnlikeShare float64 // share of events that unlike a (user, video) that never liked (default 0.001)

	Bursts       int // organic viral bursts (default 20)
	Campaigns    int // bought-like campaigns from the rate farm (default 20)
	FarmAccounts int // accounts in the like-farm pool (default 2000)
	// FarmRate is the likes a minute of the average farm account in the
	// background, each account's rate spread evenly over [2/3, 4/3] of it
	// (default 0: 3-6 likes a minute, slowed down together so that farm
	// likes stay at most 13% of the events). Set, it is kept as it is: a
	// farm of 400 accounts liking about once a minute.
	FarmRate float64

	// Adversaries beyond the rate farm (adversary.go); zero turns each
	// off, and the output is then what it was without them.
	//
	// SpreadCampaigns are bought-like campaigns (videos "vs0"..) from a
	// second farm of SpreadAccounts accounts ("f{FarmAccounts}"..) that
	// behaves as the rate farm but lives in every region, so that a
	// campaign's likes come from all of them.
	SpreadCampaigns int
	SpreadAccounts  int
	// CrewCampaigns are campaigns (videos "vl0"..) delivered by lockstep
	// crews: CrewAccounts accounts ("u{Users}"..: named and behaving as
	// people, at human rates) split into crews of 20-60 that each like a
	// campaign's video within a few minutes of each other, the same crews
	// serving many campaigns.
	CrewCampaigns int
	CrewAccounts  int

	// Jitter: events are produced in event-time order, then each event's ts
	// is moved back by a uniform random delay in [0, Jitter], so arrival is
	// slightly out of order, as from real producers (default 2s).
	Jitter time.Duration
	// LateShare is the share of events whose ts is 10-30 min before the
	// current event time, beyond a 5 min allowed lateness (default 0).
	LateShare float64
	// BadShare is the share of malformed lines (default 0): broken JSON,
	// missing video_id, missing user_id, an oversized (200 byte) id, action
	// "share", ts "yesterday", ts one year in the future, in equal parts.
	BadShare float64

	// Plants are bursts and campaigns planted at chosen times, besides
	// the Bursts and Campaigns placed at random (default none). Their
	// videos are named after the random ones: with Bursts = 2, the first
	// planted burst is "vb2". They draw from a random stream of their
	// own, so the random bursts and campaigns are the same with or
	// without plants (the background around them is not: plants take
	// some of the Events).
	Plants []Plant

	// RisingCreators is the number of planted rising creators (default
	// 0): creators of new ids whose likes over several videos rise
	// together (creators.go).
	RisingCreators int
}

// Plant is a burst or campaign planted at a chosen time.
type Plant struct {
	Kind string        // KindBurst, KindCampaign, KindSpreadCampaign or KindCrewCampaign
	At   time.Duration // event time from Config.Start to its first like (before jitter)
	// Rate, for a burst: likes a minute when it starts (0: drawn from 1/3
	// to 1/2, as for random bursts). A higher rate makes a burst that
	// catches on at once; it still doubles every 4-6 min up to its peak
	// of 30-80 likes a minute (at least Rate).
	Rate float64
}

// DefaultConfig returns a day of traffic: a million events, 20 viral bursts
// and 20 bought-like campaigns.
func DefaultConfig() Config {
	return Config{
		Seed:             1,
		Events:           1_000_000,
		Videos:           100_000,
		Users:            500_000,
		Start:            time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC),
		Duration:         24 * time.Hour,
		UnlikeShare:      0.02,
		RepeatShare:      0.01,
		StrayUnlikeShare: 0.001,
		Bursts:           20,
		Campaigns:        20,
		FarmAccounts:     2000,
		Jitter:           2 * time.Second,
	}
}

// Model constants. The ranges are the ones the package comment promises.
const (
	// Farm accounts like background videos at 3-6 likes/min each, unless
	// that would exceed farmShareMax of the events; then every account
	// slows down by the same factor.
	farmRateMin  = 3.0
	farmRateMax  = 6.0
	farmShareMax = 0.13 // background farm likes; campaigns add ~1-3%

	// farmOverHuman: the most active human likes at most 1/farmOverHuman
	// of the slowest farm account's rate, and never more than
	// humanRateMax likes/min, so per-account rate is what gives farms away.
	farmOverHuman = 5.0
	humanRateMax  = 1.0

	// Upper bounds on planted likes, used to check that Events can hold
	// them. A burst at the extreme of every range plants ~5400 likes.
	burstMaxLikes    = 5500
	campaignMinLikes = 300
	campaignMaxLikes = 1500
	plantedMaxShare  = 0.5

	// A burst ramps for up to ~48 min and holds its peak for up to 30.
	burstMinDuration = 90 * time.Minute
	// burstMaxRate bounds a planted burst's starting rate, likes/min: at
	// most its largest peak, so that it plants at most burstMaxLikes.
	burstMaxRate = 80

	// sharesMax bounds the sum of the special-event shares, so that plain
	// likes stay the bulk of the background.
	sharesMax = 0.3

	idMax = 1 << 30 // ids are int32 internally
)

// budget is the part of the plan that follows from the Config alone; New
// and Validate share it so that what Validate accepts, New can build.
//
// The adversaries (spread farm, crews) take their likes from the events
// on top of the rate farm and leave the rest as it was: the farm's pace,
// the human ceiling and each person's cap follow from the rate farm alone,
// so that turning an adversary on changes no person's weight, hence no
// burst. People then produce fewer likes, and stay further below the cap.
type budget struct {
	minutes     float64 // Duration in minutes
	farmLikes   int64   // background likes by farm accounts (rate and spread farms)
	farmMinRate float64 // likes/min of the slowest farm account
	humanCap    float64 // likes/min the most active human may reach
	humanLikes  int64   // events that the humans' caps are set against: all but the rate farm's likes

	crews        int     // lockstep crews
	crewCampRate float64 // campaign likes a minute of the average crew account
	crewLikes    int64   // background likes by crew accounts
}

func (c Config) budget() budget {
	b := budget{minutes: c.Duration.Minutes(), humanCap: humanRateMax}
	// The spread farm paces itself as the rate farm, or alone without one.
	farm := float64(c.FarmAccounts)
	if farm == 0 {
		farm = float64(c.SpreadAccounts)
	}
	mean := (farmRateMin + farmRateMax) / 2
	switch {
	case farm > 0 && c.FarmRate > 0:
		// A rate asked for is kept; Validate bounds the likes it makes.
		b.farmLikes = int64(farm * c.FarmRate * b.minutes)
		b.farmMinRate = c.FarmRate * farmRateMin / mean
		b.humanCap = math.Min(humanRateMax, b.farmMinRate/farmOverHuman)
	// With no farm likes at all (a handful of events), nothing to outpace.
	case farm > 0 && int64(farmShareMax*float64(c.Events)) > 0:
		full := farm * mean * b.minutes
		b.farmLikes = int64(math.Min(full, farmShareMax*float64(c.Events)))
		b.farmMinRate = float64(b.farmLikes) / full * farmRateMin
		b.humanCap = math.Min(humanRateMax, b.farmMinRate/farmOverHuman)
	}
	b.humanLikes = int64(c.Events)
	if c.FarmAccounts > 0 {
		b.humanLikes -= b.farmLikes
		if c.SpreadAccounts > 0 {
			b.farmLikes += int64(float64(c.SpreadAccounts) * b.farmMinRate * mean / farmRateMin * b.minutes)
		}
	}
	if c.CrewAccounts > 0 {
		// Crew accounts like campaigns besides the catalogue: their
		// background makes up the rest of their human rates.
		b.crews = crewCount(c.CrewAccounts)
		_, _, campaigns := c.campaigns()
		perCampaign := 0.0
		for d := range crewsPerCampaignMax - crewsPerCampaignMin + 1 {
			perCampaign += float64(min(crewsPerCampaignMin+d, b.crews))
		}
		perCampaign /= crewsPerCampaignMax - crewsPerCampaignMin + 1
		b.crewCampRate = float64(campaigns) * perCampaign / float64(b.crews) * crewTurnout / b.minutes
		b.crewLikes = int64(float64(c.CrewAccounts) * max(0, float64(crewRateMean*b.humanCap)-b.crewCampRate) * b.minutes)
	}
	return b
}

// campaigns counts the campaigns of each kind, random and planted.
func (c Config) campaigns() (rate, spread, crew int) {
	rate, spread, crew = c.Campaigns, c.SpreadCampaigns, c.CrewCampaigns
	for _, p := range c.Plants {
		switch p.Kind {
		case KindCampaign:
			rate++
		case KindSpreadCampaign:
			spread++
		case KindCrewCampaign:
			crew++
		}
	}
	return rate, spread, crew
}

// plantedMax is an upper bound on the likes all bursts and campaigns plant.
func (c Config) plantedMax() int64 {
	bursts := int64(c.Bursts)
	for _, p := range c.Plants {
		if p.Kind == KindBurst {
			bursts++
		}
	}
	rate, spread, crew := c.campaigns()
	return bursts*burstMaxLikes + int64(rate)*int64(min(campaignMaxLikes, c.FarmAccounts)) +
		int64(spread)*int64(min(campaignMaxLikes, c.SpreadAccounts)) +
		int64(crew)*int64(min(crewCampaignMaxLikes, c.CrewAccounts)) +
		int64(max(c.RisingCreators, 0))*risingMaxLikes
}

// Validate reports the first setting that cannot produce the traffic the
// package promises, saying what to change.
func (c Config) Validate() error {
	switch {
	case c.Events <= 0:
		return errors.New("gen: events must be > 0")
	case c.Videos <= 0 || c.Videos > idMax:
		return fmt.Errorf("gen: videos must be in [1, %d], got %d", idMax, c.Videos)
	case c.Users <= 0 || c.Users > idMax:
		return fmt.Errorf("gen: users must be in [1, %d], got %d", idMax, c.Users)
	case c.FarmAccounts < 0 || c.FarmAccounts > idMax:
		return fmt.Errorf("gen: farm accounts must be in [0, %d], got %d", idMax, c.FarmAccounts)
	case c.SpreadAccounts < 0 || c.CrewAccounts < 0 || int64(c.Users)+int64(c.FarmAccounts)+int64(c.SpreadAccounts)+int64(c.CrewAccounts) > idMax:
		return fmt.Errorf("gen: spread and crew accounts must be >= 0, and users, farm, spread and crew accounts at most %d in all", idMax)
	case !(c.FarmRate >= 0 && c.FarmRate <= farmRateLimit):
		return fmt.Errorf("gen: farm rate must be in [0, %v] likes a minute (0: 3-6, slowed to the traffic), got %v", farmRateLimit, c.FarmRate)
	case c.Bursts < 0:
		return fmt.Errorf("gen: bursts must be >= 0, got %d", c.Bursts)
	case c.Campaigns < 0:
		return fmt.Errorf("gen: campaigns must be >= 0, got %d", c.Campaigns)
	case c.SpreadCampaigns < 0:
		return fmt.Errorf("gen: spread campaigns must be >= 0, got %d", c.SpreadCampaigns)
	case c.CrewCampaigns < 0:
		return fmt.Errorf("gen: crew campaigns must be >= 0, got %d", c.CrewCampaigns)
	case c.RisingCreators < 0 || c.RisingCreators > 0 && c.Duration < burstMinDuration:
		return fmt.Errorf("gen: rising creators must be >= 0 and need a duration of at least %s, got %d over %s", burstMinDuration, c.RisingCreators, c.Duration)
	case c.Start.IsZero():
		return errors.New("gen: start must be set (an event time such as 2026-11-01T00:00:00Z)")
	case c.Start.Year() < 1971 || c.Start.Year() > 9998:
		return fmt.Errorf("gen: start must be between years 1971 and 9998, got %s", c.Start.Format(time.RFC3339))
	case c.Duration < time.Minute:
		return fmt.Errorf("gen: duration must be at least 1m, got %s", c.Duration)
	case c.Jitter < 0 || c.Jitter > time.Hour:
		return fmt.Errorf("gen: jitter must be in [0, 1h], got %s", c.Jitter)
	}
	shares := []struct {
		name string
		v    float64
	}{
		{"unlike share", c.UnlikeShare},
		{"repeat share", c.RepeatShare},
		{"stray unlike share", c.StrayUnlikeShare},
		{"late share", c.LateShare},
		{"bad share", c.BadShare},
	}
	sum := 0.0
	for _, s := range shares {
		if !(s.v >= 0 && s.v < 1) { // also rejects NaN
			return fmt.Errorf("gen: %s must be in [0, 1), got %v", s.name, s.v)
		}
		sum += s.v
	}
	if sum > sharesMax {
		return fmt.Errorf("gen: unlike, repeat, stray unlike, late and bad shares add up to %.3f; keep them at most %.1f so that plain likes stay the bulk of the traffic", sum, sharesMax)
	}
	for i, p := range c.Plants {
		switch {
		case p.Kind != KindBurst && !isCampaign(p.Kind):
			return fmt.Errorf("gen: plant %d: kind %q: want %q, %q, %q or %q", i, p.Kind, KindBurst, KindCampaign, KindSpreadCampaign, KindCrewCampaign)
		case p.At < 0 || p.At >= c.Duration:
			return fmt.Errorf("gen: plant %d: at %s: must lie within the run, in [0, %s)", i, p.At, c.Duration)
		case !(p.Rate >= 0 && p.Rate <= burstMaxRate):
			return fmt.Errorf("gen: plant %d: rate %v: must be in [0, %v] likes a minute", i, p.Rate, burstMaxRate)
		case isCampaign(p.Kind) && p.Rate != 0:
			return fmt.Errorf("gen: plant %d: a campaign has no rate (it delivers its likes in 3-10 min)", i)
		}
	}
	campaigns, spread, crew := c.campaigns()
	if campaigns > 0 && c.FarmAccounts < campaignMinLikes {
		return fmt.Errorf("gen: campaigns need at least %d farm accounts (each farm account likes a campaign video at most once), got %d; raise farm accounts or set campaigns to 0", campaignMinLikes, c.FarmAccounts)
	}
	if spread > 0 && c.SpreadAccounts < campaignMinLikes {
		return fmt.Errorf("gen: spread campaigns need at least %d spread accounts (each likes a campaign video at most once), got %d; raise spread accounts or set spread campaigns to 0", campaignMinLikes, c.SpreadAccounts)
	}
	if crew > 0 && c.CrewAccounts < crewSizeMin {
		return fmt.Errorf("gen: crew campaigns need at least %d crew accounts (one crew), got %d; raise crew accounts or set crew campaigns to 0", crewSizeMin, c.CrewAccounts)
	}
	if b := c.budget(); b.crewCampRate > crewRateMin*b.humanCap {
		return fmt.Errorf("gen: %d crew campaigns would have each of %d crew accounts like %.4f campaign videos a minute, more than %.1f of the human ceiling (%.4f a minute), and crews must like at human rates; raise crew accounts or lower crew campaigns",
			crew, c.CrewAccounts, b.crewCampRate, crewRateMin, b.humanCap)
	}
	if c.Bursts > 0 && c.Duration < burstMinDuration {
		return fmt.Errorf("gen: duration %s is too short for viral bursts (they ramp up for up to 48 min and peak for 15-30 min); raise duration to at least %s or set bursts to 0", c.Duration, burstMinDuration)
	}
	if pm := c.plantedMax(); float64(pm) > plantedMaxShare*float64(c.Events) {
		return fmt.Errorf("gen: %d events are too few for %d bursts and %d campaigns: they may plant up to %d likes, at most half of the events; raise events to %d or lower bursts/campaigns",
			c.Events, c.Bursts, c.Campaigns, pm, int64(math.Ceil(float64(pm)/plantedMaxShare)))
	}
	// Humans must be able to produce the background while each stays
	// below humanCap; worst case, nothing is planted.
	b := c.budget()
	if b.farmLikes+b.crewLikes > int64(adversaryShareMax*float64(c.Events)) {
		return fmt.Errorf("gen: the farm's %d and the crews' %d background likes would be more than half of %d events; raise events, or lower the farm rate or the farm, spread or crew accounts",
			b.farmLikes, b.crewLikes, c.Events)
	}
	human := float64(b.humanLikes)
	if capacity := float64(c.Users) * b.humanCap * b.minutes; capacity < human {
		if c.FarmAccounts > 0 {
			return fmt.Errorf("gen: %d users cannot produce ~%.0f likes in %s while each stays 5x slower than the slowest farm account (%.4f likes/min); raise users or duration, lower events, or lower farm accounts (at most ~users/50)",
				c.Users, human, c.Duration, b.farmMinRate)
		}
		return fmt.Errorf("gen: %d users cannot produce ~%.0f likes in %s at most %v like/min each; raise users or duration, or lower events",
			c.Users, human, c.Duration, humanRateMax)
	}
	return nil
}
