package processor

import (
	"math/rand/v2"
	"testing"
)

// TestKeySketch: the sum of the sketches of any split of the likes is
// the sketch of all of them, whatever the split (so popularity is the
// same for any partitioning); an estimate is never below the true count;
// a sketch reads back as written.
func TestKeySketch(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var all keySketch
	parts := make([]keySketch, 3)
	truth := map[uint32]uint32{}
	for i := range 50_000 {
		k := uint32(rng.IntN(5_000))
		if i%10 == 0 {
			k = 7 // a hit
		}
		truth[k]++
		all.add(k)
		parts[rng.IntN(len(parts))].add(k)
	}
	all.accounts = 20_000
	parts[0].accounts = 20_000
	var sum keySketch
	for i := range parts {
		sum.merge(&parts[i])
	}
	if sum != all {
		t.Fatal("the sum of the parts' sketches is not the sketch of all the likes")
	}
	for k, n := range truth {
		if e := all.estimate(k); e < n {
			t.Fatalf("key %d: estimate %d below its %d likes", k, e, n)
		}
	}
	if e := all.estimate(7); e > truth[7]+200 {
		t.Errorf("the hit's estimate %d, its likes %d", e, truth[7])
	}
	// The hit: 5,000 likes over 20,000 accounts; a rare key: a few.
	if p := popProb(all.popularity(7)); p < 0.25 || p > 0.5 {
		t.Errorf("the hit's popularity reads as %v, want at least its 0.25", p)
	}
	if p := popProb(all.popularity(4999)); p > 0.05 {
		t.Errorf("a rare key's popularity reads as %v", p)
	}
	var none *keySketch
	if none.popularity(7) != 0 {
		t.Error("a key of no sketch is not as popular as can be")
	}

	b := all.marshal([]byte{42})
	got, rest, err := readSketch(b[1:])
	if err != nil || len(rest) != 0 || *got != all {
		t.Fatalf("read back: %v, %d bytes left", err, len(rest))
	}
	b[1] = sketchVersion + 1
	if _, _, err := readSketch(b[1:]); err == nil {
		t.Error("a sketch of another version was read")
	}
	if _, _, err := readSketch(b[1:100]); err == nil {
		t.Error("a cut sketch was read")
	}
}

// TestUnlikely: the chance test of a shared key.
func TestUnlikely(t *testing.T) {
	for _, tc := range []struct {
		likers, count int64
		p             float64
		want          bool
	}{
		{5, 5, 0.001, true},   // 5 of 5 sharing what 1 in 1,000 liked
		{20, 5, 0.01, true},   // mean 0.2: P(>=5) about 2e-6
		{20, 5, 0.05, false},  // mean 1: P(>=5) about 0.004
		{20, 5, 0.0, true},    // unknown to the sketch: as rare as can be
		{100, 20, 0.1, false}, // mean 10: P(>=20) about 0.003
		{100, 30, 0.1, true},  // P(>=30) about 1e-7
		{10, 5, 1, false},     // no evidence
	} {
		if got := unlikely(tc.likers, tc.count, popByte(tc.p)); got != tc.want {
			t.Errorf("%d of %d likers share a key of popularity %v: unlikely %v, want %v", tc.count, tc.likers, tc.p, got, tc.want)
		}
	}
	for _, p := range []float64{1, 0.5, 0.01, 1e-6} {
		if q := popProb(popByte(p)); q < p || q > p*1.1 {
			t.Errorf("popularity %v reads back as %v", p, q)
		}
	}
}

// TestRatesSketches: a stage's sketch goes out with its report and is
// summed by every stage; the sketches stored at a commit read back into a
// fresh stage's rates with the same popularity; those too old are
// dropped, from the store too.
func TestRatesSketches(t *testing.T) {
	db := openMemStore(t)
	r0, r1 := newRates(0, 0, 2, 4), newRates(1, 0, 2, 4)
	for i := range 1000 {
		r0.countKey(10, uint32(i%100), true)
		r1.countKey(10, 7, i%2 == 0)
	}
	r0.report(10)
	r1.report(10)
	for _, rep := range r0.out {
		rep2, err := decodeReport(appendReport(nil, rep))
		if err != nil {
			t.Fatal(err)
		}
		r1.absorb(rep2)
	}
	for _, rep := range r1.out {
		r0.absorb(rep)
	}
	if r0.closed() != 10 || r1.closed() != 10 {
		t.Fatalf("G: %d and %d, want 10", r0.closed(), r1.closed())
	}
	for _, k := range []uint32{7, 8, 99} {
		if a, b := r0.popularity(10, k), r1.popularity(10, k); a != b || a == 0 && k != 7 {
			t.Errorf("key %d: popularity %d and %d", k, a, b)
		}
	}
	// Key 7: 1,010 of 1,500 likes by 1,500 first likes of accounts.
	if p := popProb(r0.popularity(10, 7)); p < 0.67 {
		t.Errorf("key 7 reads as popularity %v", p)
	}

	part := db.Partition(1)
	w := part.NewWriter()
	if err := r1.saveSketches(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	again := newRates(1, 0, 2, 4)
	if err := part.ScanKeySketches(again.loadSketch); err != nil {
		t.Fatal(err)
	}
	for k := range uint32(100) {
		if a, b := again.popularity(10, k), r1.popularity(10, k); a != b {
			t.Fatalf("key %d: popularity %d read back, %d before", k, a, b)
		}
	}
	if len(again.ownKeys) != 0 {
		t.Errorf("the reported bucket's own sketch was stored: %d", len(again.ownKeys))
	}

	// G moves 5 buckets on: bucket 10 is past keep (4) and goes.
	r1.absorb(&rateReport{from: 0, through: 15})
	r1.absorb(&rateReport{from: 1, through: 15})
	if r1.popularity(10, 7) != 0 {
		t.Error("an old bucket's sketch was kept")
	}
	w = part.NewWriter()
	if err := r1.saveSketches(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	n := 0
	if err := part.ScanKeySketches(func(bool, int64, []byte) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d sketches left in the store", n)
	}
}
