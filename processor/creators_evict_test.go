package processor

import (
	"encoding/json"
	"slices"
	"testing"
)

// TestCreatorEviction: a creator idle for a day leaves the merger's memory
// and is read back from the store, exactly, when liked again (and when an
// old like of it is withdrawn), by the merger that let it go and by one
// opened afresh on the store (its filter of known creators built there).
func TestCreatorEviction(t *testing.T) {
	for _, reopen := range []bool{false, true} {
		testCreatorEviction(t, reopen)
	}
}

func testCreatorEviction(t *testing.T, reopen bool) {
	db := openMemStore(t)
	part := db.Partition(groupPartition)
	last := map[string][]byte{}
	var cm *creatorMerger
	open := func() {
		var err error
		if cm, err = newCreatorMerger(DefaultConfig(), part); err != nil {
			t.Fatal(err)
		}
		cm.writeRecord = func(k, v []byte, _ int64) error { last[string(k)] = slices.Clone(v); return nil }
	}
	open()
	commit := func() {
		w := part.NewWriter()
		if err := cm.save(w); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	const tick, base = int64(10_000), int64(1793491200000) // a whole minute
	report := func(at int64, creator, video string, counts ...int64) {
		// counts: pairs of (like time, n)
		r := &creatorReport{Tick: at}
		for i := 0; i < len(counts); i += 2 {
			m := floorDiv(counts[i], minuteMS)
			r.Counts = append(r.Counts, creatorCount{creator, "US", m, counts[i+1]})
			if counts[i+1] > 0 {
				r.Videos = append(r.Videos, creatorVideo{creator, video, m, m})
			}
		}
		cm.add(0, r, true)
		if err := cm.emitBefore(at + 1); err != nil {
			t.Fatal(err)
		}
	}
	report(base+tick, "A", "va", base, 5)
	commit()
	for i := int64(1); i <= 150; i++ { // another creator, every 10 min for 25 h
		at := base + i*600_000
		report(at+tick, "B", "vb", at, 1)
		commit()
	}
	if cm.holds("A") {
		t.Fatal("creator A, idle for 25 h, is still in memory")
	}
	if reopen {
		// Its stored record still counts its hours: the merger opened
		// again loads it, and lets it go at its first commit.
		open()
		commit()
		if cm.holds("A") {
			t.Fatal("creator A, idle for 25 h, is still in the memory of a merger opened again")
		}
	}
	now := base + 25*3_600_000 + 300_000
	report(now+tick, "A", "va", base, -1, now, 1)
	var got struct {
		Seq      int64 `json:"seq"`
		Likes    int64 `json:"likes"`
		Likes1h  int64 `json:"likes_1h"`
		Likes24h int64 `json:"likes_24h"`
		Videos   int64 `json:"videos_liked_1h"`
		Region   string
	}
	if err := json.Unmarshal(last["A"], &got); err != nil {
		t.Fatal(err)
	}
	if got.Seq != 2 || got.Likes != 5 || got.Likes1h != 1 || got.Likes24h != 1 || got.Videos != 1 || got.Region != "US" {
		t.Errorf("creator A read back (merger opened again: %v): %s", reopen, last["A"])
	}
}

// holds reports whether the merger holds a creator in memory, decoded or
// cold.
func (cm *creatorMerger) holds(id string) bool {
	_, cold := cm.cold[id]
	return cm.creators[id] != nil || cold
}
