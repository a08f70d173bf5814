package processor

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/viralityhq/virality/scoring"
)

// Config holds the engine's settings. Start from DefaultConfig.
type Config struct {
	// Model names the scoring model (scoring.Names).
	Model string
	// Lateness is how far behind the largest event time seen a record may
	// be and still be applied; older records are dead-lettered as late.
	Lateness time.Duration
	// Reorder is the window of event time within which a partition applies
	// events sorted, whatever order they arrived in: each partition holds
	// events until its sources' event times are this far past them. Wider
	// windows make outputs deterministic under more disorder and delay
	// them by as much; state is exact either way (up to Lateness).
	Reorder time.Duration
	// FutureSkew is how far an event time may lie ahead of its reference
	// time: the record's own timestamp, or Now when it has none.
	FutureSkew time.Duration
	// Now is the reference time for records without a timestamp of their
	// own (files), in ms. The caller sets it; the engine reads no clock.
	Now int64
	// EmitThreshold: a score is emitted when it changes by more than this
	// fraction of the last emitted one...
	EmitThreshold float64
	// EmitInterval: ...or when this much event time has passed since the
	// last record of the video.
	EmitInterval time.Duration
	// EmitEveryChange emits a record on every change of a video's state.
	EmitEveryChange bool
	// Tick is the event-time interval of trending snapshots.
	Tick time.Duration
	// TopK is the length of each trending list.
	TopK int
	// TrendingEvery: each region's list is written to the trending output
	// at every TrendingEvery-th tick of event time (ticks whose start is a
	// multiple of TrendingEvery × Tick since the epoch), so that the output
	// stays smaller than the scores; the latest list (HTTP, Latest) follows
	// every tick.
	TrendingEvery int
	// TrendingHorizon: a video is listed only while its latest like is
	// less than this much event time before the tick.
	TrendingHorizon time.Duration
	// CommitEvery is the number of input records between commits.
	CommitEvery int
	// CacheVideos and CachePairs bound the state kept in memory. A video's
	// state grows with its likes of the last day, so the video cache is
	// also held to CacheVideos times VideoBytes bytes.
	CacheVideos int
	CachePairs  int
	// PackedVideoBytes bounds the bytes of videos the video cache let go
	// that are kept packed in memory (a few bytes a like time), so that
	// taking one back reads nothing from the store; 0: none are.
	PackedVideoBytes int64
	// CreatorBytes bounds the bytes of creator state the creator merger
	// keeps in memory beside what it must (the creators changed since the
	// last commit, and those that may be listed as rising); beyond it, the
	// others are read back from the store when liked (creators.go). 0:
	// none are kept.
	CreatorBytes int64
	// CreatorDecodedBytes bounds, within CreatorBytes, the creators kept
	// decoded once unchanged for a minute of tick time; past it they are
	// kept encoded, without pointers, at a fraction of the bytes (0: half
	// of CreatorBytes).
	CreatorDecodedBytes int64
	// MaxAccounts bounds the accounts whose recent like counts are kept in
	// memory; beyond it they are read back from the store when needed. An
	// account that liked in more buckets than an entry holds (8 of its
	// last 29) is held whole and counts as 4 (processor/accounts.go).
	MaxAccounts int
	// AccountThreshold is the likes an hour above which an account's likes
	// are damped as abnormal (scoring.AccountWeight); 0 (the default)
	// follows the traffic (scoring.AutoAccountThreshold, rates.go).
	AccountThreshold int
	// TrendingMinLikers is the accounts that must have liked a video in its
	// first 30 minutes before it is listed in trending lists, so that the
	// lockstep signal has judged it (lockstep.go); 0 (the default): listed
	// from its first like.
	TrendingMinLikers int
	// TrendingMinAge is the event time that must have passed since a
	// video's first like before it is listed in trending lists: the
	// lockstep signal judges a campaign by its likers as the crews that
	// deliver it arrive, within minutes of each other, and the trending
	// model would list a new video with a handful of likes before then.
	// Organic bursts build for minutes before they are listed anyway.
	// 0: listed from its first like.
	TrendingMinAge time.Duration
	// CreatorMinLikes is the likes in the last hour a creator needs to be
	// listed as rising (creators.go).
	CreatorMinLikes int
	// PairFilterBits sizes the in-memory Bloom filters that spare a store
	// read for pairs never seen (split among the partitions expected).
	PairFilterBits int
	// NoCreators: creator momentum is not computed, as no output takes it
	// (a backfill without creator outputs). The partitions tally no
	// creator likes, so the creator merger has nothing to merge, store or
	// emit; video scores and trending lists are the same either way. A
	// state built without creators is not resumed with them, nor the
	// other way round (fingerprint).
	NoCreators bool
}

// DefaultConfig returns the documented defaults.
func DefaultConfig() Config {
	return Config{
		Model:             scoring.DefaultModel,
		Lateness:          5 * time.Minute,
		Reorder:           5 * time.Second,
		FutureSkew:        5 * time.Minute,
		EmitThreshold:     0.05,
		EmitInterval:      time.Minute,
		Tick:              10 * time.Second,
		TopK:              100,
		TrendingEvery:     6,
		TrendingHorizon:   10 * time.Minute,
		CommitEvery:       200_000,
		CacheVideos:       500_000,
		CachePairs:        1_000_000,
		PackedVideoBytes:  128 << 20,
		CreatorBytes:      64 << 20,
		MaxAccounts:       2_000_000,
		PairFilterBits:    1 << 27,
		AccountThreshold:  0,
		TrendingMinLikers: DefaultTrendingMinLikers,
		TrendingMinAge:    DefaultTrendingMinAge,
		CreatorMinLikes:   DefaultCreatorMinLikes,
	}
}

// minHalfLife bounds Lateness: a late like must never land in a decay
// epoch already dropped as negligible (see scoring).
var minHalfLife = time.Duration(scoring.HalfLifeMS[scoring.H5m]) * time.Millisecond

// Validate reports settings a user must fix, naming the setting.
func (c *Config) Validate() error {
	var errs []error
	if _, err := scoring.Lookup(c.Model); err != nil {
		errs = append(errs, err)
	}
	if c.Lateness < 0 || c.Lateness > 24*minHalfLife {
		errs = append(errs, fmt.Errorf("lateness %v must be between 0 and %v", c.Lateness, 24*minHalfLife))
	}
	if c.Reorder < 0 || c.Reorder > c.Lateness {
		errs = append(errs, fmt.Errorf("reorder window %v must be between 0 and the lateness (%v)", c.Reorder, c.Lateness))
	}
	if c.FutureSkew < 0 {
		errs = append(errs, fmt.Errorf("future skew %v must not be negative", c.FutureSkew))
	}
	if c.EmitThreshold < 0 {
		errs = append(errs, fmt.Errorf("emit threshold %v must not be negative", c.EmitThreshold))
	}
	if c.EmitInterval < 0 {
		errs = append(errs, fmt.Errorf("emit interval %v must not be negative", c.EmitInterval))
	}
	if c.Tick < time.Millisecond {
		errs = append(errs, fmt.Errorf("tick %v must be at least 1ms", c.Tick))
	}
	if c.TopK < 1 || c.TopK > 10_000 {
		errs = append(errs, fmt.Errorf("top-k %d must be between 1 and 10000", c.TopK))
	}
	if c.TrendingEvery < 1 {
		errs = append(errs, fmt.Errorf("trending every %d ticks must be at least 1", c.TrendingEvery))
	}
	if c.TrendingHorizon < c.Tick {
		errs = append(errs, fmt.Errorf("trending horizon %v must be at least one tick (%v)", c.TrendingHorizon, c.Tick))
	}
	if c.CommitEvery < 1 {
		errs = append(errs, fmt.Errorf("commit interval %d records must be positive", c.CommitEvery))
	}
	if c.CacheVideos < 1 || c.CachePairs < 1 || c.MaxAccounts < 1 {
		errs = append(errs, errors.New("cache sizes must be positive"))
	}
	if c.PackedVideoBytes < 0 {
		errs = append(errs, fmt.Errorf("packed video bytes %d must not be negative", c.PackedVideoBytes))
	}
	if c.CreatorBytes < 0 || c.CreatorDecodedBytes < 0 {
		errs = append(errs, fmt.Errorf("creator bytes %d (decoded %d) must not be negative", c.CreatorBytes, c.CreatorDecodedBytes))
	}
	if c.AccountThreshold < 0 {
		errs = append(errs, fmt.Errorf("account threshold %d likes an hour must be at least 1, or 0 to follow the traffic", c.AccountThreshold))
	}
	if c.TrendingMinLikers < 0 {
		errs = append(errs, fmt.Errorf("trending min likers %d must not be negative", c.TrendingMinLikers))
	}
	if c.TrendingMinAge < 0 || c.TrendingMinAge > lockTrackMS*time.Millisecond {
		errs = append(errs, fmt.Errorf("trending min age %v must be between 0 and %v", c.TrendingMinAge, lockTrackMS*time.Millisecond))
	}
	if c.CreatorMinLikes < 0 {
		errs = append(errs, fmt.Errorf("creator min likes %d must not be negative", c.CreatorMinLikes))
	}
	if c.PairFilterBits < 1024 {
		errs = append(errs, fmt.Errorf("pair filter bits %d must be at least 1024", c.PairFilterBits))
	}
	return errors.Join(errs...)
}

// settingsDiff says how fingerprint now differs from was, the state's:
// each setting the state has with another value or not at all now, and
// each it lacks. A state built by a backfill without creator outputs,
// resumed with one, says "creator-momentum=off then, not now".
func settingsDiff(was, now string) string {
	set := func(f string) map[string]string {
		m := map[string]string{}
		for _, kv := range strings.Fields(f) {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
		return m
	}
	a, b := set(was), set(now)
	var diff []string
	for _, kv := range strings.Fields(was) {
		k, v, _ := strings.Cut(kv, "=")
		if w, ok := b[k]; !ok {
			diff = append(diff, kv+" then, not now")
		} else if w != v {
			diff = append(diff, fmt.Sprintf("%s=%s then, %s now", k, v, w))
		}
	}
	for _, kv := range strings.Fields(now) {
		k, _, _ := strings.Cut(kv, "=")
		if _, ok := a[k]; !ok {
			diff = append(diff, kv+" now, not then")
		}
	}
	if len(diff) == 0 {
		return was + " against " + now
	}
	return strings.Join(diff, "; ")
}

// fingerprint names the settings that shape state and output: a state
// directory built with one must not be resumed with another.
func (c *Config) fingerprint() string {
	f := fmt.Sprintf("model=%s lateness=%d reorder=%d tick=%d topk=%d horizon=%d emit=%g/%d/%t accounts=%d every=%d creators=%d minlikers=%d minage=%d",
		c.Model, c.Lateness.Milliseconds(), c.Reorder.Milliseconds(), c.Tick.Milliseconds(), c.TopK,
		c.TrendingHorizon.Milliseconds(), c.EmitThreshold, c.EmitInterval.Milliseconds(), c.EmitEveryChange,
		c.AccountThreshold, c.TrendingEvery, c.CreatorMinLikes, c.TrendingMinLikers, c.TrendingMinAge.Milliseconds())
	if c.NoCreators {
		f += " creator-momentum=off" // only then: states built before it resume
	}
	return f
}
