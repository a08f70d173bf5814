package processor

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/scoring"
)

// eventRecords is evs as input records of one topic partition, in order.
func eventRecords(evs []event.Event) []Record {
	recs := make([]Record, len(evs))
	for i := range evs {
		recs[i] = Record{Value: event.AppendJSON(nil, &evs[i]), Topic: "in", Offset: int64(i)}
	}
	return recs
}

// dampedRecord is what the damping tests read of a score record.
type dampedRecord struct {
	VideoID  string  `json:"video_id"`
	Score    float64 `json:"score"`
	Likes    int64   `json:"likes"`
	Likes5m  int64   `json:"likes_5m"`
	Likes1h  int64   `json:"likes_1h"`
	Damped5m int64   `json:"damped_likes_5m"`
	Damped1h int64   `json:"damped_likes_1h"`
	Reason   string  `json:"damped_reason"`
}

func decodeDamped(t *testing.T, value []byte) dampedRecord {
	t.Helper()
	var r dampedRecord
	if err := json.Unmarshal(value, &r); err != nil {
		t.Fatalf("%s: %v", value, err)
	}
	return r
}

// A campaign of bought likes from accounts that like far faster than a
// person, with the default account threshold, against an organic video
// liked by as many ordinary users at the same time: the campaign's
// records say that its likes were damped and why, the organic video's
// say nothing was, and the campaign scores below it.
func TestDampingExplained(t *testing.T) {
	const (
		farm    = 40 // accounts of the farm
		fillers = 80 // likes each gives in the 40 minutes before the campaign
		minute  = 60_000
	)
	t0 := scenarioEpoch
	var evs []event.Event
	// Before the campaign each farm account likes 80 other videos in 40
	// minutes, two a minute: above the default 60 an hour.
	for i := range fillers {
		for a := range farm {
			evs = append(evs, event.Event{
				VideoID: fmt.Sprintf("f%04d", i*farm+a),
				UserID:  fmt.Sprintf("farm%02d", a),
				TS:      t0 + int64(i)*minute/2 + int64(a)*100,
			})
		}
	}
	// At 00:50 the farm likes vc, and as many ordinary users like vo.
	for a := range farm {
		ts := t0 + 50*minute + int64(a)*1000
		evs = append(evs,
			event.Event{VideoID: "vc", UserID: fmt.Sprintf("farm%02d", a), TS: ts},
			event.Event{VideoID: "vo", UserID: fmt.Sprintf("u%02d", a), TS: ts + 500})
	}
	recs := eventRecords(evs)
	// The farm is most of the accounts here, so a threshold that follows
	// the traffic would follow the farm: this test is about what records
	// say, with the fixed threshold of 60.
	cfg := DefaultConfig()
	cfg.AccountThreshold = scoring.DefaultAccountThreshold
	out := runRecords(t, cfg, recs)

	last := map[string]dampedRecord{}
	for _, m := range out.scores.msgs {
		r := decodeDamped(t, m.Value)
		// Every record: the damped likes are some of the window's, and a
		// reason is given exactly when likes of the hour were damped.
		if r.Damped5m < 0 || r.Damped5m > r.Likes5m || r.Damped1h < 0 || r.Damped1h > r.Likes1h ||
			r.Damped5m > r.Damped1h || (r.Reason == "") != (r.Damped1h == 0) {
			t.Errorf("inconsistent record %s", m.Value)
		}
		last[r.VideoID] = r
	}
	vc, vo := last["vc"], last["vo"]
	t.Logf("campaign %+v", vc)
	t.Logf("organic  %+v", vo)
	// Each farm like counts 2^(-20/3) of a like (80 likes in the counted
	// hour against 60): all but a hundredth of each is taken away.
	if vc.Likes5m != farm || vc.Damped5m != farm || vc.Damped1h != farm || vc.Reason != "account_rate" {
		t.Errorf("campaign vc: likes_5m %d, damped_likes_5m %d, damped_likes_1h %d, damped_reason %q; want %d, %d, %d, account_rate",
			vc.Likes5m, vc.Damped5m, vc.Damped1h, vc.Reason, farm, farm, farm)
	}
	if vo.Likes5m != farm || vo.Damped5m != 0 || vo.Damped1h != 0 || vo.Reason != "" {
		t.Errorf("organic vo: likes_5m %d, damped_likes_5m %d, damped_likes_1h %d, damped_reason %q; want %d, 0, 0, empty",
			vo.Likes5m, vo.Damped5m, vo.Damped1h, vo.Reason, farm)
	}
	if vc.Score >= vo.Score {
		t.Errorf("campaign scores %v, the organic video %v: the damped likes were not demoted", vc.Score, vo.Score)
	}
	// What a reader of the record gets (the service's marks).
	d, err := ScoreDamping(lastScores(out.scores.msgs)["vc"])
	if err != nil || d.Share() != 1 || d.Reason != "account_rate" {
		t.Errorf("ScoreDamping of vc: %+v, share %v, err %v", d, d.Share(), err)
	}
}
