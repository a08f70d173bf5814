package service

import (
	"context"

	"github.com/viralityhq/virality/scoring"
)

// What the HTTP page and the demo's view read of a video's recent likes:
// its velocity over the last hour and how much of it was damped as bought.
// Both come from the committed state, as Score's fallback does, so nothing
// is kept for them in memory.

// RecentLikes calls fn with the like time (epoch ms) and account weight of
// each standing like of the video in the last 24 h of its event time,
// oldest first, and returns the video's latest event time. A weight is 1
// for a like from a normal account and down to 1/1024 for one from an
// account liking far above --account-threshold (bought likes). ok is false
// when no partition this instance holds has the video. The state read is
// the last committed one (at most --commit-interval old).
func (s *Service) RecentLikes(ctx context.Context, id string, fn func(ts int64, weight float64)) (clock int64, ok bool, err error) {
	owned := s.owned.Load()
	if owned == nil {
		return 0, false, nil
	}
	for _, p := range *owned {
		if err := ctx.Err(); err != nil {
			return 0, false, err
		}
		v, found, err := s.db.Partition(p).Video(id)
		if err != nil {
			return 0, false, err
		}
		if !found || v.Unique == 0 {
			continue
		}
		from := v.Clock - scoring.WindowMS[scoring.W24h]
		for _, en := range v.Entries {
			if en.TS > from {
				fn(en.TS, float64(en.Weight)/scoring.WeightOne)
			}
		}
		return v.Clock, true, nil
	}
	return 0, false, nil
}

// DampedShare returns the share of the video's likes of the last hour of
// its event time that account damping discounted: 1 - (sum of their
// weights) / (their number). 0 means every like of the hour came from a
// normal account; 0.4 means 40% of the hour's likes did not count, as
// bought. likes is the number of standing likes of the hour; ok is false
// when this instance does not hold the video.
func (s *Service) DampedShare(id string) (share float64, likes int64, ok bool) {
	var weight float64
	var times []int64
	var weights []float64
	clock, ok, err := s.RecentLikes(context.Background(), id, func(ts int64, w float64) {
		times = append(times, ts)
		weights = append(weights, w)
	})
	if err != nil || !ok {
		return 0, 0, false
	}
	from := clock - scoring.WindowMS[scoring.W1h]
	for i, ts := range times {
		if ts > from {
			likes++
			weight += weights[i]
		}
	}
	if likes == 0 {
		return 0, 0, true
	}
	return max(0, 1-weight/float64(likes)), likes, true
}
