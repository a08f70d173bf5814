package service

import (
	"context"

	"github.com/viralityhq/virality/processor"
	"github.com/viralityhq/virality/scoring"
)

// What the HTTP page and the demo's view read of a video's recent likes:
// its velocity over the last hour and how much of it was damped as bought.
// The likes come from the committed state, as Score's fallback does, so
// nothing is kept for them in memory; the damped marks come from the
// video's score record.

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

// Damping returns what the video's score record says of its damped
// likes (processor.Damping: likes_1h, damped_likes_5m, damped_likes_1h,
// damped_reason), from the freshest record this instance has of it, as
// Score answers it; ok is false when it has none. The demo's view marks
// videos by it, so that it shows what a ranker reading the record sees.
func (s *Service) Damping(id string) (d processor.Damping, ok bool) {
	rec, ok, err := s.Score(context.Background(), id)
	if err != nil || !ok {
		return processor.Damping{}, false
	}
	d, err = processor.ScoreDamping(rec)
	return d, err == nil
}
