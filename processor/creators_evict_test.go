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
	return cm.creators[id] != nil || cm.cold.find([]byte(id)) >= 0
}

// TestCreatorCooling: while the creators take less than
// CreatorDecodedBytes (half of CreatorBytes unless set) none is encoded,
// and the cooling queue stays bounded by the creators held however often
// one of them changes; past it, the creators not changed in the last
// minute are encoded, but for one that may be listed as rising.
func TestCreatorCooling(t *testing.T) {
	db := openMemStore(t)
	cfg := DefaultConfig()
	for _, c := range []struct{ total, decoded, want int64 }{
		{64 << 20, 0, 32 << 20}, {64 << 20, 8 << 20, 8 << 20}, {4 << 20, 8 << 20, 4 << 20},
	} {
		cfg.CreatorBytes, cfg.CreatorDecodedBytes = c.total, c.decoded
		cm, err := newCreatorMerger(cfg, db.Partition(groupPartition))
		if err != nil {
			t.Fatal(err)
		}
		if cm.decodedBytes != c.want {
			t.Errorf("CreatorBytes %d, CreatorDecodedBytes %d: creators held decoded up to %d bytes, want %d", c.total, c.decoded, cm.decodedBytes, c.want)
		}
	}
	cm, err := newCreatorMerger(DefaultConfig(), db.Partition(groupPartition))
	if err != nil {
		t.Fatal(err)
	}
	const tick, base = int64(10_000), int64(1793491200000)
	like := func(at int64, creators ...string) {
		r := &creatorReport{Tick: at + tick}
		for _, c := range creators {
			m := floorDiv(at, minuteMS)
			r.Counts = append(r.Counts, creatorCount{c, "US", m, 1})
			r.Videos = append(r.Videos, creatorVideo{c, "v" + c, m, m})
		}
		cm.add(0, r, true)
		if err := cm.emitBefore(at + tick + 1); err != nil {
			t.Fatal(err)
		}
	}
	like(base, "A", "B")
	for i := int64(1); i <= 5_000; i++ {
		like(base+i*tick, "A")
		if q := len(cm.cooling) - cm.coolHead; q > 2*len(cm.creators)+1024 {
			t.Fatalf("tick %d: %d entries queued for %d creators", i, q, len(cm.creators))
		}
	}
	if cm.cold.len() != 0 {
		t.Fatalf("%d creators encoded, far under half of CreatorBytes", cm.cold.len())
	}
	// Past it (CreatorBytes still far from reached): two minutes of likes
	// of C only. A, liked 360 times in the last hour and 2 minutes ago,
	// may still rise; B may not.
	cm.decodedBytes = 0
	for i := int64(5_001); i <= 5_012; i++ {
		like(base+i*tick, "C")
	}
	if ok := cm.cold.find([]byte("B")) >= 0; !ok || cm.creators["A"] == nil {
		t.Errorf("past CreatorDecodedBytes: B (idle) encoded %v, A (rising) decoded %v", ok, cm.creators["A"] != nil)
	}
	// Five minutes after its last like, A cannot rise any more.
	for i := int64(5_013); i <= 5_036; i++ {
		like(base+i*tick, "C")
	}
	if cm.cold.find([]byte("A")) < 0 {
		t.Error("A, its last like 6 minutes old, is still decoded")
	}
}
