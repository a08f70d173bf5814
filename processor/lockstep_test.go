package processor

import (
	"fmt"
	"slices"
	"testing"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/scoring"
	"github.com/viralityhq/virality/store"
)

// TestLockTracker: a key shared by lockMin likers, and by lockShare
// percent of them, makes the video a campaign; fewer, or a share below it
// among many likers, or a key so popular that as many would share it by
// chance, does not.
func TestLockTracker(t *testing.T) {
	keys := func(ks ...uint32) *lockKeys {
		var x lockKeys
		for _, k := range ks {
			x.add(k, popByte(1e-4)) // one in 10,000 active accounts liked it
		}
		return &x
	}
	var tr lockTracker
	for i := range lockMin - 1 {
		if tr.observe(keys(7, uint32(100+i))) {
			t.Fatalf("liker %d: a campaign with %d likers sharing a key", i+1, i+1)
		}
	}
	if !tr.observe(keys(uint32(99), 7)) {
		t.Fatalf("%d likers share key 7: not a campaign", lockMin)
	}

	// 100 likers with keys of their own, then lockMin sharing one: 6 of
	// 106 is below lockShare percent.
	tr = lockTracker{}
	for i := range 100 {
		tr.observe(keys(uint32(1000 + i)))
	}
	for range lockMin {
		if tr.observe(keys(7)) {
			t.Fatalf("%d of %d likers share a key: a campaign", lockMin, tr.likers)
		}
	}

	// 5 of 20 likers share a key: a campaign if one account in a
	// thousand liked its video then, not if one in twenty did (a hit
	// that heavy users like: the demo's false positive).
	for _, tc := range []struct {
		p    float64
		want bool
	}{{0.001, true}, {0.01, true}, {0.05, false}, {1, false}} {
		tr = lockTracker{}
		var got bool
		for i := range 20 {
			var x lockKeys
			x.add(uint32(1000+i), popByte(1e-4))
			if i%4 == 3 {
				x.add(7, popByte(tc.p))
			}
			got = tr.observe(&x) || got
		}
		if got != tc.want {
			t.Errorf("5 of 20 likers share a key of popularity %v: campaign %v, want %v", tc.p, got, tc.want)
		}
	}

	// Keys past lockMaxKeys are not counted; those counted go on.
	tr = lockTracker{}
	tr.observe(keys(7))
	for i := range lockMaxKeys {
		tr.observe(keys(uint32(1000 + i)))
	}
	if len(tr.keys) != lockMaxKeys || !slices.IsSorted(tr.keys) {
		t.Fatalf("%d keys (sorted: %v), want %d", len(tr.keys), slices.IsSorted(tr.keys), lockMaxKeys)
	}

	// Stored and read back.
	b := tr.marshal(nil)
	got, err := unmarshalLock(b)
	if err != nil || got.likers != tr.likers || got.flagged != tr.flagged || !slices.Equal(got.keys, tr.keys) || !slices.Equal(got.counts, tr.counts) || !slices.Equal(got.pops, tr.pops) {
		t.Fatalf("read back %+v, %v", got, err)
	}
	b[0] = lockVersion + 1
	if _, err := unmarshalLock(b); err == nil {
		t.Error("a tracker of another version was read")
	}
	if x, err := unmarshalLock(nil); x != nil || err != nil {
		t.Errorf("no tracker: %v, %v", x, err)
	}
}

// TestLockstepExplained: a crew of accounts that liked a video within a
// minute of each other likes a new video together 40 minutes later; as
// many ordinary users like another new video at the same time. The crew's
// video is a campaign: every like of it is damped, the first ones too,
// and its records say "lockstep"; the ordinary one's say nothing. An
// unlike of one of the crew's first likes, after the video was found,
// takes exactly that like away. The same records come from 1 and 4
// partitions.
func TestLockstepExplained(t *testing.T) {
	const (
		crew   = 12
		minute = 60_000
	)
	t0 := scenarioEpoch
	var evs []event.Event
	for a := range crew {
		user := fmt.Sprintf("crew%02d", a)
		evs = append(evs,
			event.Event{VideoID: "p1", UserID: user, TS: t0 + int64(a)*3_000},
			event.Event{VideoID: "c1", UserID: user, TS: t0 + 40*minute + int64(a)*4_000},
			event.Event{VideoID: "o1", UserID: fmt.Sprintf("u%02d", a), TS: t0 + 40*minute + int64(a)*4_000 + 500})
	}
	// Others like p1 too, and a video of their own, so that the accounts
	// of the crew are not all there is; a thousand more like other videos
	// in the minutes the crew liked p1, so that p1 is not the hit of
	// those minutes (a hit's key is no evidence: popular.go).
	for a := range 1000 {
		evs = append(evs, event.Event{VideoID: fmt.Sprintf("b%03d", a%300), UserID: fmt.Sprintf("y%03d", a), TS: t0 + int64(a)*200})
	}
	for a := range 40 {
		evs = append(evs,
			event.Event{VideoID: "p1", UserID: fmt.Sprintf("x%02d", a), TS: t0 + 20*minute + int64(a)*10_000},
			event.Event{VideoID: fmt.Sprintf("w%02d", a), UserID: fmt.Sprintf("x%02d", a), TS: t0 + 21*minute + int64(a)*10_000})
	}
	evs = append(evs, event.Event{Action: event.Unlike, VideoID: "c1", UserID: "crew00", TS: t0 + 44*minute})
	slices.SortFunc(evs, func(a, b event.Event) int { return int(a.TS - b.TS) })
	recs := eventRecords(evs)
	cfg := DefaultConfig()
	out := runRecords(t, cfg, recs)

	last := map[string]dampedRecord{}
	for _, m := range out.scores.msgs {
		r := decodeDamped(t, m.Value)
		if r.Damped1h < 0 || r.Damped1h > r.Likes1h || (r.Reason == "") != (r.Damped1h == 0) {
			t.Errorf("inconsistent record %s", m.Value)
		}
		last[r.VideoID] = r
	}
	c1, o1, p1 := last["c1"], last["o1"], last["p1"]
	t.Logf("crew     %+v", c1)
	t.Logf("ordinary %+v", o1)
	if c1.Likes != crew-1 || c1.Likes1h != crew-1 || c1.Damped1h != crew-1 || c1.Reason != "lockstep" {
		t.Errorf("c1: likes %d, likes_1h %d, damped_likes_1h %d, damped_reason %q; want %d, %d, %d, lockstep",
			c1.Likes, c1.Likes1h, c1.Damped1h, c1.Reason, crew-1, crew-1, crew-1)
	}
	if o1.Likes1h != crew || o1.Damped1h != 0 || o1.Reason != "" {
		t.Errorf("o1: likes_1h %d, damped_likes_1h %d, damped_reason %q; want %d, 0, empty", o1.Likes1h, o1.Damped1h, o1.Reason, crew)
	}
	if p1.Damped1h != 0 {
		t.Errorf("p1, the crew's first video together, has damped likes: %+v", p1)
	}
	if c1.Score >= o1.Score {
		t.Errorf("c1 scores %v, o1 %v: the lockstep likes were not demoted", c1.Score, o1.Score)
	}
	d, err := ScoreDamping(lastScores(out.scores.msgs)["c1"])
	if err != nil || d.Share() != 1 || d.Reason != "lockstep" {
		t.Errorf("ScoreDamping of c1: %+v, share %v, err %v", d, d.Share(), err)
	}

	four := runTopology(t, cfg, recs, oneSource(4, 2))
	want, got := finalRecords(out.scores.msgs), finalRecords(four.scores.msgs)
	for id, w := range want {
		if got[id] != w {
			t.Errorf("video %s:\n 1 partition:  %s\n 4 partitions: %s", id, w, got[id])
		}
	}
}

// TestLockstepWeight: a lockstep like keeps a smaller account weight, and
// both signals are named.
func TestLockstepWeight(t *testing.T) {
	v := &video{}
	v.LockFrom, v.LockTo = 100, 200
	for _, tc := range []struct {
		in, want int64
		d        scoring.Damping
	}{
		{scoring.WeightOne, scoring.LockstepWeight, scoring.DampedLockstep},
		{3, 3, scoring.DampedAccountRate | scoring.DampedLockstep},
	} {
		var d0 scoring.Damping
		if tc.in < scoring.WeightOne {
			d0 = scoring.DampedAccountRate
		}
		in, after := store.Like{TS: 150, Weight: tc.in, Damp: d0}, store.Like{TS: 201, Weight: tc.in, Damp: d0}
		got := v.counted(&in)
		if got.Weight != tc.want || got.Damp != tc.d {
			t.Errorf("weight %d: counted as %d, %v; want %d, %v", tc.in, got.Weight, got.Damp, tc.want, tc.d)
		}
		if out := v.counted(&after); out.Weight != tc.in || out.Damp != d0 {
			t.Errorf("a like after the span was changed: %+v", out)
		}
	}
	if s := (scoring.DampedAccountRate | scoring.DampedLockstep).String(); s != "account_rate,lockstep" {
		t.Errorf("names %q", s)
	}
}
