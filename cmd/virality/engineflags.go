package main

import (
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/viralityhq/virality/processor"
	"github.com/viralityhq/virality/scoring"
)

// addEngineFlags defines the flags of the engine's settings, shared by
// every command that runs the engine.
func addEngineFlags(fs *flag.FlagSet, c *processor.Config) {
	def := processor.DefaultConfig()
	fs.StringVar(&c.Model, "model", def.Model, "scoring `MODEL`: one of "+strings.Join(scoring.Names(), ", "))
	fs.DurationVar(&c.Lateness, "lateness", def.Lateness, "how far behind the largest event time seen a like may arrive and still count")
	fs.DurationVar(&c.Reorder, "reorder", def.Reorder, "window of event time within which each partition applies likes sorted, whatever order they\narrived in (at most --lateness): outputs are deterministic for input whose disorder stays\nwithin it, and come this much later")
	fs.DurationVar(&c.FutureSkew, "future-skew", def.FutureSkew, "how far ahead of --now an event time may lie before it is dead-lettered")
	fs.Float64Var(&c.EmitThreshold, "emit-threshold", def.EmitThreshold, "emit a video's score when it changes by more than this `FRACTION`")
	fs.DurationVar(&c.EmitInterval, "emit-interval", def.EmitInterval, "...or when this much event time has passed since the video's last record")
	fs.BoolVar(&c.EmitEveryChange, "emit-every-change", def.EmitEveryChange, "emit a score record on every change of a video (large output; for tests)")
	fs.DurationVar(&c.Tick, "tick", def.Tick, "event-time interval of trending snapshots")
	fs.IntVar(&c.TopK, "top-k", def.TopK, "length of each trending list (1 to 10000)")
	fs.IntVar(&c.TrendingEvery, "trending-every", def.TrendingEvery, "write each region's trending list every `N` ticks of event time (1: every tick); the HTTP API's\nlatest list follows every tick")
	fs.DurationVar(&c.TrendingHorizon, "trending-horizon", def.TrendingHorizon, "list a video only while its latest like is this recent (at least one --tick)")
	fs.IntVar(&c.CommitEvery, "commit-every", def.CommitEvery, "input `RECORDS` between commits of state and outputs (a resume repeats at most this many)")
	fs.IntVar(&c.CacheVideos, "cache-videos", def.CacheVideos, "videos kept in memory (with --memory-budget: its share of it)")
	mibFlag(fs, &c.PackedVideoBytes, "packed-videos-mb", fmt.Sprintf("`MiB` of videos let go from the video cache kept packed in memory (a few bytes a like\ntime), so that they are not read back from the store; 0: none (default %d; with --memory-budget:\nits share of it)", def.PackedVideoBytes>>20))
	fs.IntVar(&c.CachePairs, "cache-pairs", def.CachePairs, "(user, video) pairs kept in memory (with --memory-budget: its share of it)")
	fs.IntVar(&c.MaxAccounts, "max-accounts", def.MaxAccounts, "accounts whose recent like counts are kept in memory; one that liked in more than 8 of its last 29 buckets\ncounts as 4 (with --memory-budget: its share of it)")
	fs.IntVar(&c.AccountThreshold, "account-threshold", def.AccountThreshold, "likes an `HOUR` above which an account's likes are damped as abnormal (bot farms); 0: follow\nthe traffic (4 times the 95th percentile of active accounts' likes in the hour, at least 12)")
	fs.IntVar(&c.TrendingMinLikers, "trending-min-likers", def.TrendingMinLikers, "accounts that must have liked a video in its first 30 minutes before it is listed in trending\nlists, so that lockstep groups can be told from people, at the price of listing organic bursts\nlater (0: listed from its first like)")
	fs.DurationVar(&c.TrendingMinAge, "trending-min-age", def.TrendingMinAge, "event time since a video's first like before it is listed in trending lists, so that the\nlockstep signal sees the crews that deliver a campaign (0 to 30m; 0: listed from its first like)")
	fs.IntVar(&c.CreatorMinLikes, "creator-min-likes", def.CreatorMinLikes, "likes in the last hour a creator needs to be listed in the rising-creators lists")
	mibFlag(fs, &c.CreatorBytes, "creator-state-mb", fmt.Sprintf("`MiB` of creators' state kept in memory beside the creators changed since the last commit and\nthose that may be rising; the others are read back from the store when liked (default %d; with\n--memory-budget: its share of it)", def.CreatorBytes>>20))
	fs.IntVar(&c.PairFilterBits, "pair-filter-bits", def.PairFilterBits, "size in bits of the in-memory filter of known pairs (with --memory-budget: its share of\nit)")
}

// mibFlag defines a flag of whole MiB (0 to 1 TiB) that sets bytes in *dst.
func mibFlag(fs *flag.FlagSet, dst *int64, name, usage string) {
	fs.Func(name, usage, func(v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > 1<<20 {
			return fmt.Errorf("%q: give whole MiB between 0 and %d", v, 1<<20)
		}
		*dst = n << 20
		return nil
	})
}

// validateEngine checks the engine's settings, naming the flag and what to
// fix.
func validateEngine(c *processor.Config) error {
	if _, err := scoring.Lookup(c.Model); err != nil {
		return usagef("--model %q: unknown; choose one of %s", c.Model, strings.Join(scoring.Names(), ", "))
	}
	maxLateness := 24 * time.Duration(scoring.HalfLifeMS[scoring.H5m]) * time.Millisecond
	switch {
	case c.Lateness < 0 || c.Lateness > maxLateness:
		return usagef("--lateness %v: must be between 0 and %v", c.Lateness, maxLateness)
	case c.Reorder < 0 || c.Reorder > c.Lateness:
		return usagef("--reorder %v: must be between 0 and --lateness (%v)", c.Reorder, c.Lateness)
	case c.FutureSkew < 0:
		return usagef("--future-skew %v: must not be negative", c.FutureSkew)
	case c.EmitThreshold < 0 || math.IsNaN(c.EmitThreshold) || math.IsInf(c.EmitThreshold, 0):
		return usagef("--emit-threshold %v: must be a fraction of at least 0 (0.05 is 5%%)", c.EmitThreshold)
	case c.EmitInterval < 0:
		return usagef("--emit-interval %v: must not be negative", c.EmitInterval)
	case c.Tick < time.Millisecond:
		return usagef("--tick %v: must be at least 1ms", c.Tick)
	case c.TopK < 1 || c.TopK > 10_000:
		return usagef("--top-k %d: must be between 1 and 10000", c.TopK)
	case c.TrendingEvery < 1:
		return usagef("--trending-every %d: must be at least 1 tick", c.TrendingEvery)
	case c.TrendingHorizon < c.Tick:
		return usagef("--trending-horizon %v: must be at least one --tick (%v)", c.TrendingHorizon, c.Tick)
	case c.CommitEvery < 1:
		return usagef("--commit-every %d: must be at least 1", c.CommitEvery)
	case c.CacheVideos < 1:
		return usagef("--cache-videos %d: must be at least 1", c.CacheVideos)
	case c.CachePairs < 1:
		return usagef("--cache-pairs %d: must be at least 1", c.CachePairs)
	case c.MaxAccounts < 1:
		return usagef("--max-accounts %d: must be at least 1", c.MaxAccounts)
	case c.TrendingMinLikers < 0:
		return usagef("--trending-min-likers %d: must be 0 or more", c.TrendingMinLikers)
	case c.TrendingMinAge < 0 || c.TrendingMinAge > 30*time.Minute:
		return usagef("--trending-min-age %v: must be between 0 and 30m", c.TrendingMinAge)
	case c.AccountThreshold < 0:
		return usagef("--account-threshold %d: must be at least 1 like an hour, or 0 to follow the traffic", c.AccountThreshold)
	case c.CreatorMinLikes < 0:
		return usagef("--creator-min-likes %d: must not be negative", c.CreatorMinLikes)
	case c.PairFilterBits < 1024 || c.PairFilterBits > 1<<34:
		return usagef("--pair-filter-bits %d: must be between 1024 and %d", c.PairFilterBits, int64(1)<<34)
	}
	return nil
}
