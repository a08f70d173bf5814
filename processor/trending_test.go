package processor

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/viralityhq/virality/store"
)

// refRanking is the definition the ranking must match: a video is listed
// at tick t when its latest score is above 0 and its latest event lies
// less than a horizon before t (counted in whole ticks, as expiresAt does);
// each list is its listed videos by score, then video id, cut to k.
type refRanking struct {
	tick, horizon int64
	cands         map[string]candidate
}

func (r *refRanking) snapshot(t int64, k int) *Snapshot {
	var all []candidate
	for _, c := range r.cands {
		if c.score > 0 && ceilDiv(c.last+r.horizon, r.tick) > t/r.tick {
			all = append(all, c)
		}
	}
	slices.SortFunc(all, func(a, b candidate) int {
		switch {
		case a.score > b.score:
			return -1
		case a.score < b.score:
			return 1
		}
		return cmpString(a.video, b.video)
	})
	lists := map[string][]Ranked{GlobalRegion: {}}
	var regions []string
	for _, c := range all {
		rk := Ranked{Video: c.video, Score: c.score}
		if len(lists[GlobalRegion]) < k {
			lists[GlobalRegion] = append(lists[GlobalRegion], rk)
		}
		if c.region == "" {
			continue
		}
		if _, ok := lists[c.region]; !ok {
			regions = append(regions, c.region)
		}
		if len(lists[c.region]) < k {
			lists[c.region] = append(lists[c.region], rk)
		}
	}
	slices.Sort(regions)
	s := &Snapshot{Tick: t, Lists: []List{{Region: GlobalRegion, Videos: lists[GlobalRegion]}}}
	for _, reg := range regions {
		s.Lists = append(s.Lists, List{Region: reg, Videos: lists[reg]})
	}
	return s
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestRankingMatchesDefinition drives the ranking with random changes
// (scores that rise, fall, tie and drop to 0; regions that move; videos
// that expire and come back) and compares every snapshot with the
// definition, for lists shorter and longer than the candidates.
func TestRankingMatchesDefinition(t *testing.T) {
	for _, tc := range []struct {
		name            string
		videos, k       int
		ticks, perTick  int
		scores, regions int
	}{
		{name: "few videos, long lists", videos: 30, k: 50, ticks: 300, perTick: 5, scores: 20, regions: 3},
		{name: "many videos, short lists", videos: 3000, k: 10, ticks: 400, perTick: 60, scores: 50, regions: 4},
		{name: "ties everywhere", videos: 500, k: 20, ticks: 300, perTick: 40, scores: 3, regions: 2},
		{name: "k of 1", videos: 200, k: 1, ticks: 300, perTick: 10, scores: 1000, regions: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const tick, horizon = 10_000, 60_000
			rng := rand.New(rand.NewPCG(1, uint64(tc.videos)))
			got := newRanking(tick, horizon)
			want := &refRanking{tick: tick, horizon: horizon, cands: map[string]candidate{}}
			last := map[string]int64{}
			for i := 1; i <= tc.ticks; i++ {
				now := int64(i) * tick
				// Quiet stretches let whole lists expire.
				n := tc.perTick
				if i%50 >= 40 {
					n = 0
				}
				for range n {
					v := fmt.Sprintf("v%d", rng.IntN(tc.videos))
					ts := max(last[v], now-tick+rng.Int64N(tick))
					last[v] = ts
					score := float64(rng.IntN(tc.scores)) / 4
					region := ""
					if r := rng.IntN(tc.regions + 1); r > 0 {
						region = fmt.Sprintf("R%d", r)
					}
					got.update(v, score, ts, region)
					if _, ok := want.cands[v]; ok || score > 0 {
						want.cands[v] = candidate{video: v, score: score, last: ts, region: region}
					}
				}
				g, w := got.snapshot(now, tc.k), want.snapshot(now, tc.k)
				if err := sameSnapshot(g, w); err != nil {
					t.Fatalf("tick %d: %v", i, err)
				}
			}
		})
	}
}

func sameSnapshot(got, want *Snapshot) error {
	if len(got.Lists) != len(want.Lists) {
		return fmt.Errorf("%d lists, want %d (%v, want %v)", len(got.Lists), len(want.Lists), regionsOf(got), regionsOf(want))
	}
	for i, g := range got.Lists {
		w := want.Lists[i]
		if g.Region != w.Region || len(g.Videos) != len(w.Videos) {
			return fmt.Errorf("list %d: region %s with %d videos, want %s with %d", i, g.Region, len(g.Videos), w.Region, len(w.Videos))
		}
		for j, r := range g.Videos {
			if r.Video != w.Videos[j].Video || r.Score != w.Videos[j].Score {
				return fmt.Errorf("%s #%d: %s %v, want %s %v", g.Region, j, r.Video, r.Score, w.Videos[j].Video, w.Videos[j].Score)
			}
			if r.encoded != nil && !bytes.Equal(r.encoded, appendRanked(nil, r.Video, r.Score)) {
				return fmt.Errorf("%s #%d: encoded as %s", g.Region, j, r.encoded)
			}
		}
	}
	return nil
}

func regionsOf(s *Snapshot) []string {
	var out []string
	for _, l := range s.Lists {
		out = append(out, l.Region)
	}
	return out
}

// TestWrittenListsOnly: ranking only the lists of written ticks (batch
// runs) writes the same bytes as ranking every tick, also across crashes
// with trending reports pending at commits.
func TestWrittenListsOnly(t *testing.T) {
	recs := generated(t, nil)
	cfg := DefaultConfig()
	cfg.CommitEvery = 1_500
	every := oneSource(3, 2)
	want := runTopology(t, cfg, recs, every)
	sparse := every
	sparse.WrittenListsOnly = true
	got := runTopology(t, cfg, recs, sparse)
	sameMessages(t, "scores", want.scores.msgs, got.scores.msgs)
	sameMessages(t, "trending", want.trending.msgs, got.trending.msgs)
	if len(want.trending.msgs) == 0 {
		t.Fatal("no trending output")
	}

	db, resumed := openMemStore(t), newTestOutputs()
	for _, at := range []int{7_777, 20_001, 41_234} {
		src := &stopAfter{sliceSource: sliceSource{recs: recs, step: 250}, budget: at}
		if err := Run(context.Background(), openCoordinator(t, cfg, db, resumed, sparse), src, RunOptions{}); err != errCrash {
			t.Fatalf("run until crash: %v", err)
		}
	}
	if err := Run(context.Background(), openCoordinator(t, cfg, db, resumed, sparse), &sliceSource{recs: recs, step: 250}, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	sameMessages(t, "scores after crashes", want.scores.msgs, resumed.scores.msgs)
	sameMessages(t, "trending after crashes", want.trending.msgs, resumed.trending.msgs)
}

// TestCandidateRecords: a commit writes the candidates changed since the
// last one and deletes the records of those dropped; a candidate listed
// and dropped between two commits writes nothing, not even a deletion;
// one dropped and listed again keeps a record; a loaded candidate's drop
// deletes its record, and so does the first commit after a load for a
// record of score 0, which the load does not list.
func TestCandidateRecords(t *testing.T) {
	db := openMemStore(t)
	part := db.Partition(0)
	const tick, horizon = 10_000, 60_000
	r := newRanking(tick, horizon)
	var deletes int
	commit := func() {
		t.Helper()
		// A logged fork, as run writes its changelog from: its changes
		// are what the commit writes.
		w := part.NewWriter()
		f := w.Fork(part, true)
		if err := r.save(f); err != nil {
			t.Fatal(err)
		}
		if err := f.Changes(func(c store.Change) error {
			if c.Delete {
				deletes++
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if err := w.Join(f); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	stored := func() map[string]float64 {
		t.Helper()
		got := map[string]float64{}
		if err := part.ScanCandidates(func(c store.Candidate) error { got[c.Video] = c.Score; return nil }); err != nil {
			t.Fatal(err)
		}
		return got
	}
	drop := func(video string) {
		r.update(video, 0, 1000, "US")
		r.settle()
	}
	r.update("kept", 5, 1000, "US")
	r.update("brief", 3, 1000, "US")
	r.settle()
	drop("brief")
	commit()
	if got := stored(); len(got) != 1 || got["kept"] != 5 || deletes != 0 {
		t.Fatalf("after the first commit: records %v, %d deletions; want kept alone and none", got, deletes)
	}
	r.update("back", 2, 1000, "US")
	r.settle()
	commit()
	drop("back")
	r.update("back", 4, 2000, "US") // listed again before the next commit
	r.settle()
	drop("kept")
	commit()
	if got := stored(); len(got) != 1 || got["back"] != 4 || deletes != 1 {
		t.Fatalf("after the third commit: records %v, %d deletions; want back at 4 alone, one deletion (kept)", got, deletes)
	}
	drop("back")
	commit()
	if got := stored(); len(got) != 0 || deletes != 2 {
		t.Fatalf("after the last commit: records %v, %d deletions; want none, two", got, deletes)
	}
	// Loaded from the store, a candidate's drop deletes its record.
	r.update("again", 1, 3000, "JP")
	r.settle()
	commit()
	r = newRanking(tick, horizon)
	if err := part.ScanCandidates(func(c store.Candidate) error { r.load(c); return nil }); err != nil {
		t.Fatal(err)
	}
	drop("again")
	commit()
	if got := stored(); len(got) != 0 || deletes != 3 {
		t.Fatalf("a loaded candidate dropped: records %v, %d deletions; want none, three", got, deletes)
	}
	// A record of score 0 (committed before the drop that would have
	// deleted it) is not listed when loaded, and the next commit deletes
	// it, unless its video is listed again by then.
	w := part.NewWriter()
	for _, v := range []string{"zero", "relisted"} {
		if err := w.SetCandidate(&store.Candidate{Video: v, LastLike: 4000, Region: "US"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	r = newRanking(tick, horizon)
	if err := part.ScanCandidates(func(c store.Candidate) error { r.load(c); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(r.cands) != 0 {
		t.Fatalf("records of score 0 loaded as candidates: %v", r.cands)
	}
	r.update("relisted", 6, 5000, "US")
	r.settle()
	commit()
	if got := stored(); len(got) != 1 || got["relisted"] != 6 || deletes != 4 {
		t.Fatalf("after records of score 0 were loaded: records %v, %d deletions; want relisted at 6 alone, four", got, deletes)
	}
}
