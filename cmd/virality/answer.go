package main

import (
	"context"
	"encoding/json"
	"sort"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/viralityhq/virality/processor"
	"github.com/viralityhq/virality/service"
	"github.com/viralityhq/virality/view"
)

// anyVideo answers the HTTP API for every video and region, whichever
// instance is asked: from the service for the partitions it owns (its
// freshest records) and for the lists it merges, from a view of the output
// topics for the rest. Behind one address, instances answer alike.
type anyVideo struct {
	*service.Service
	view     atomic.Pointer[view.View]     // nil until the topics exist and it opened
	creators atomic.Pointer[view.Creators] // likewise, for the creator topics
}

// Creator answers from the service on partition 0's holder, else from the
// view of the creator-scores topic (the record re-encoded, field for
// field).
func (a *anyVideo) Creator(ctx context.Context, id string) ([]byte, bool, error) {
	rec, ok, err := a.Service.Creator(ctx, id)
	if ok || err != nil {
		return rec, ok, err
	}
	if c := a.creators.Load(); c != nil {
		if s, ok := c.Get(id); ok {
			b, err := json.Marshal(s)
			return b, err == nil, err
		}
	}
	return nil, false, nil
}

// RisingCreators answers from the service on partition 0's holder, else
// from the view of the rising-creators topic.
func (a *anyVideo) RisingCreators(region string) (processor.CreatorList, int64, bool) {
	if l, tick, ok := a.Service.RisingCreators(region); ok {
		return l, tick, true
	}
	c := a.creators.Load()
	if c == nil {
		return processor.CreatorList{}, 0, false
	}
	r, ok := c.Rising(region, 0)
	if !ok {
		return processor.CreatorList{}, 0, false
	}
	l := processor.CreatorList{Region: r.Region, Creators: make([]processor.RankedCreator, len(r.Creators))}
	for i, e := range r.Creators {
		l.Creators[i] = processor.RankedCreator{Creator: e.CreatorID, Momentum: e.Momentum, Likes1h: e.Likes1h}
	}
	return l, r.TS, true
}

// steer checks every second which of the views' score topics the
// service answers for itself, and has the views read only the others: the
// scores topic while the service does not hold every partition, the
// creator scores while it does not hold partition 0. A single instance so
// does not read back every record it writes (a tenth of its CPU on a
// catch-up); once a rebalance takes partitions away, the view reads on
// from where it stopped.
func (a *anyVideo) steer(ctx context.Context, log zerolog.Logger) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		all, first := a.Service.Holds()
		a.follow(!all, !first, log)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// follow has the views read the scores topic (scores) and the creator
// scores topic (creators) or not, and logs a change.
func (a *anyVideo) follow(scores, creators bool, log zerolog.Logger) {
	if v := a.view.Load(); v != nil && v.FollowingScores() != scores {
		v.FollowScores(scores)
		log.Info().Bool("following", scores).Msg("HTTP view of the scores topic (off while this instance holds every partition)")
	}
	if c := a.creators.Load(); c != nil && c.FollowingScores() != creators {
		c.FollowScores(creators)
		log.Info().Bool("following", creators).Msg("HTTP view of the creator scores topic (off while this instance holds partition 0)")
	}
}

// openWhenReady opens a view of output topics once they exist (the
// service creates them as it starts), retrying every second until ctx
// ends, keeps it in p while ctx lasts, then closes it.
func openWhenReady[V any, PV interface {
	*V
	Close() error
}](ctx context.Context, p *atomic.Pointer[V], open func(context.Context) (PV, error), log zerolog.Logger, what string) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for attempt := 1; ; attempt++ {
		v, err := open(ctx)
		if err == nil {
			p.Store((*V)(v))
			log.Info().Msgf("HTTP answers for every instance's %s from a view of the output topics", what)
			<-ctx.Done()
			_ = v.Close()
			return
		}
		if attempt%30 == 0 {
			log.Warn().Err(err).Msgf("view of the output topics; the HTTP API answers only this instance's %s until it opens", what)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Score answers from the service when it holds the video, else from the
// view (the video's last record on the scores topic).
func (a *anyVideo) Score(ctx context.Context, id string) ([]byte, bool, error) {
	rec, ok, err := a.Service.Score(ctx, id)
	if ok || err != nil {
		return rec, ok, err
	}
	if v := a.view.Load(); v != nil {
		if s, ok := v.Get(id); ok {
			return s.Raw, true, nil
		}
	}
	return nil, false, nil
}

// Trending answers from the service when it merges the lists (it has
// every tick's), else from the view (the lists on the topic).
func (a *anyVideo) Trending(region string) (processor.Snapshot, bool) {
	if s, ok := a.Service.Trending(region); ok {
		return s, true
	}
	v := a.view.Load()
	if v == nil {
		return processor.Snapshot{}, false
	}
	l, ok := v.Top(region, 0)
	if !ok {
		return processor.Snapshot{}, false
	}
	list := processor.List{Region: l.Region, Videos: make([]processor.Ranked, len(l.Videos))}
	for i, e := range l.Videos {
		list.Videos[i] = processor.Ranked{Video: e.VideoID, Score: e.Score}
	}
	return processor.Snapshot{Tick: l.TS, Lists: []processor.List{list}}, true
}

// Regions lists the regions of the service's lists, else the view's.
func (a *anyVideo) Regions() []string {
	if r := a.Service.Regions(); len(r) > 0 {
		return r
	}
	v := a.view.Load()
	if v == nil {
		return nil
	}
	r := v.Regions()
	sort.Slice(r, func(i, j int) bool {
		if (r[i] == processor.GlobalRegion) != (r[j] == processor.GlobalRegion) {
			return r[i] == processor.GlobalRegion
		}
		return r[i] < r[j]
	})
	return r
}
