package main

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/viralityhq/virality/gen"
	"github.com/viralityhq/virality/jsonl"
	"github.com/viralityhq/virality/processor"
	"github.com/viralityhq/virality/service"
	"github.com/viralityhq/virality/store"
)

// TestDemoCampaignsStayOut: the demo's traffic (an hour of history, then
// live likes with a planted burst and a planted campaign a minute in, and
// one of each every 10 minutes) through the engine of the demo's service
// with its default configuration over the demo's 4 partitions: the first
// burst reaches the global top 10 within 5 minutes of the start of the
// live traffic, and no planted campaign is ever in it. The demo runs at
// 2,000 likes/s; this test at 250 (VIRALITY_DEMO_RATE sets it), the same
// shape at an eighth of the volume, and over the first 35 minutes.
// VIRALITY_DEMO_HISTORY and VIRALITY_DEMO_START set the history and the
// start of the live traffic (the demo's is the wall clock): with 500, 20m
// and 2026-11-01T13:13:29Z the first burst is damped as account_rate and
// lockstep from its 61st like and never listed (issue 8, bench/RESULTS.md).
func TestDemoCampaignsStayOut(t *testing.T) {
	if testing.Short() {
		t.Skip("an hour and a half of generated traffic; skipped with -short")
	}
	rate := 250.0
	if v := os.Getenv("VIRALITY_DEMO_RATE"); v != "" {
		var err error
		if rate, err = strconv.ParseFloat(v, 64); err != nil {
			t.Fatal(err)
		}
	}
	history := time.Hour // VIRALITY_DEMO_HISTORY sets it (TestDemoWarmStart's demo has 20m)
	if v := os.Getenv("VIRALITY_DEMO_HISTORY"); v != "" {
		var err error
		if history, err = time.ParseDuration(v); err != nil {
			t.Fatal(err)
		}
	}
	live := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC) // VIRALITY_DEMO_START sets it (RFC 3339)
	if v := os.Getenv("VIRALITY_DEMO_START"); v != "" {
		var err error
		if live, err = time.Parse(time.RFC3339, v); err != nil {
			t.Fatal(err)
		}
	}
	gcfg := demoGen(rate, 1, live, history, 35*time.Minute, 10*time.Minute, processor.DefaultTrendingMinAge)
	g, err := gen.New(gcfg)
	if err != nil {
		t.Fatal(err)
	}
	var recs []processor.Record
	for {
		line, _, ok := g.Next(nil)
		if !ok {
			break
		}
		recs = append(recs, processor.Record{Value: line, Topic: "demo", Offset: int64(len(recs))})
	}
	cfg := service.DefaultConfig().Engine
	cfg.Now = live.Add(2 * time.Hour).UnixMilli()
	o := store.DefaultOptions()
	o.FS = vfs.NewMem()
	db, err := store.Open("state", o)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	top := &demoTop{lists: map[int64][]string{}, k: 10}
	const parts = 4
	c, err := processor.NewCoordinator(cfg, db, processor.Outputs{Scores: jsonl.Discard, Trending: top, DeadLetters: jsonl.Discard},
		processor.Topology{Partitions: parts, Partitioner: service.Partitioner, Stream: true, Workers: 2, Expect: parts})
	if err != nil {
		t.Fatal(err)
	}
	for p := range parts {
		if _, err := c.Open(int32(p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := processor.Run(context.Background(), c, &demoRecords{recs: recs}, processor.RunOptions{Decoders: 1}); err != nil {
		t.Fatal(err)
	}
	start := live.UnixMilli()
	var firstBurst *gen.Truth
	campaigns := map[string]bool{}
	for _, tr := range g.Truth() {
		switch {
		case tr.Kind == gen.KindBurst && firstBurst == nil:
			firstBurst = &tr
		case tr.Kind == gen.KindCampaign:
			campaigns[tr.VideoID] = true
		}
	}
	if firstBurst == nil || len(campaigns) == 0 {
		t.Fatalf("the demo's traffic planted no burst or no campaign: %+v", g.Truth())
	}
	listed := int64(0)
	shown := 0
	for T, ids := range top.lists {
		for _, id := range ids {
			if id == firstBurst.VideoID && T >= start && (listed == 0 || T < listed) {
				listed = T
			}
			if campaigns[id] && T >= start {
				if shown < 5 {
					t.Errorf("planted campaign %s is in the global top 10 at %s", id, time.UnixMilli(T).UTC().Format(time.TimeOnly))
				}
				shown++
			}
		}
	}
	if shown > 0 {
		t.Errorf("planted campaigns were in the global top 10 at %d tick-places", shown)
	}
	if listed == 0 || listed-start > (5*time.Minute).Milliseconds() {
		t.Errorf("the first burst (%s, planted at %s) reached the global top 10 at %s; want within 5 minutes of the live start %s",
			firstBurst.VideoID, time.UnixMilli(firstBurst.Start).UTC().Format(time.TimeOnly),
			time.UnixMilli(listed).UTC().Format(time.TimeOnly), live.Format(time.TimeOnly))
	}
	t.Logf("%d likes at %v/s; %d campaigns never in the global top 10 of %d ticks; burst %s listed %v after the live start",
		len(recs), rate, len(campaigns), len(top.lists), firstBurst.VideoID, time.Duration(listed-start)*time.Millisecond)
}

// demoTop keeps the first k videos of each global trending list.
type demoTop struct {
	lists map[int64][]string
	k     int
}

func (s *demoTop) Write(m *processor.Message) error {
	var r struct {
		TS     int64  `json:"ts"`
		Region string `json:"region"`
		Videos []struct {
			VideoID string `json:"video_id"`
		} `json:"videos"`
	}
	if err := json.Unmarshal(m.Value, &r); err != nil {
		return err
	}
	if r.Region != processor.GlobalRegion {
		return nil
	}
	ids := make([]string, 0, s.k)
	for _, v := range r.Videos[:min(s.k, len(r.Videos))] {
		ids = append(ids, v.VideoID)
	}
	s.lists[r.TS] = ids
	return nil
}

func (s *demoTop) Flush(context.Context) error { return nil }

// demoRecords is generated traffic as a processor.Source.
type demoRecords struct {
	recs []processor.Record
	pos  int
}

func (s *demoRecords) Next(_ context.Context, buf []processor.Record) ([]processor.Record, error) {
	buf = buf[:0]
	if s.pos >= len(s.recs) {
		return buf, io.EOF
	}
	end := min(s.pos+4096, len(s.recs))
	buf = append(buf, s.recs[s.pos:end]...)
	s.pos = end
	return buf, nil
}
