package processor

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/viralityhq/virality/scoring"
	"github.com/viralityhq/virality/store"
)

// TestWindowsFollowTheClock checks a video's windows against a count from
// its like times after each of a random run of likes, unlikes (in and out
// of order) and clock moves, small and large: the windows' starts that
// setClock keeps between calls (video.from) must never stand in for a
// search when a like time added, removed or cut has moved them.
func TestWindowsFollowTheClock(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	e := &Engine{}
	v := &video{}
	v.Reset("v")
	const hour = 3_600_000
	v.Clock = 100 * 24 * hour
	if err := v.derive(); err != nil {
		t.Fatal(err)
	}
	for step := range 40_000 {
		switch op := rng.IntN(10); {
		case op < 2: // the clock moves: mostly a little, now and then a day
			d := rng.Int64N(2 * 60_000)
			if rng.IntN(50) == 0 {
				d = rng.Int64N(30 * hour)
			}
			e.setClock(v, v.Clock+d)
		case op < 8: // a like, mostly the latest, some late, some ahead
			ts := v.Clock - rng.Int64N(60_000)
			switch rng.IntN(8) {
			case 0:
				ts = v.Clock - rng.Int64N(25*hour)
			case 1:
				ts = v.Clock + rng.Int64N(5*60_000)
			}
			ts -= ts % 5_000 // many likes at one time: kept in order of weight
			if ts > v.Clock {
				e.setClock(v, ts)
			}
			l := store.Like{TS: ts, Weight: rng.Int64N(4) * scoring.WeightOne / 4, Damp: scoring.Damping(rng.IntN(4))}
			e.standing(v, &l, +1)
		default: // an unlike of a like time held
			if len(v.Entries) == 0 {
				continue
			}
			en := v.Entries[rng.IntN(len(v.Entries))]
			l := store.Like{TS: en.TS, Weight: int64(en.Weight), Damp: en.Damp}
			e.standing(v, &l, -1)
		}
		for i, w := range scoring.WindowMS {
			var want window
			for _, en := range v.Entries {
				if en.TS > v.Clock-w {
					want.add(int64(en.Weight), en.Damp, +1)
				}
			}
			if v.win[i] != want {
				t.Fatalf("step %d, window %d ms: %+v, want %+v (clock %d, %d like times)", step, w, v.win[i], want, v.Clock, len(v.Entries))
			}
		}
		if !slices.IsSortedFunc(v.Entries, compareEntries) {
			t.Fatalf("step %d: like times out of order", step)
		}
		if n := len(v.Entries); n > 0 && v.Entries[0].TS <= v.Clock-scoring.WindowMS[scoring.W24h] {
			t.Fatalf("step %d: a like time %d ms before the clock is held", step, v.Clock-v.Entries[0].TS)
		}
	}
}
