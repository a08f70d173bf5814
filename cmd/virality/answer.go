package main

import (
	"context"
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
	view atomic.Pointer[view.View] // nil until the topics exist and it opened
}

// openView opens the view of the service's output topics once they exist
// (the service creates them as it starts), retrying until ctx ends, and
// closes it then.
func (a *anyVideo) openView(ctx context.Context, cfg view.Config, log zerolog.Logger) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for attempt := 1; ; attempt++ {
		v, err := view.Open(ctx, cfg)
		if err == nil {
			a.view.Store(v)
			log.Info().Str("scores", cfg.ScoresTopic).Str("trending", cfg.TrendingTopic).
				Msg("HTTP answers for every video from a view of the output topics")
			<-ctx.Done()
			_ = v.Close()
			return
		}
		if attempt%30 == 0 {
			log.Warn().Err(err).Msg("view of the output topics; the HTTP API answers for this instance's partitions only until it opens")
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
