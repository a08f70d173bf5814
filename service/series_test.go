package service

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"math/rand"
	"testing"
	"time"

	"github.com/viralityhq/virality/processor"
	"github.com/viralityhq/virality/scoring"
	"github.com/viralityhq/virality/store"
)

// RecentLikes reads a video's like times and weights from the committed
// state of the partitions the instance holds, and Damping what its score
// record says of them.
func TestRecentLikesAndDamping(t *testing.T) {
	db, err := store.Open(t.TempDir(), store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	const hour = int64(time.Hour / time.Millisecond)
	clock := 100 * hour
	v := store.NewVideo("v1")
	v.Clock, v.FirstLike, v.Likes, v.Unique = clock, clock-30*hour, 5, 6
	for _, en := range []store.Entry{
		{TS: clock - 25*hour, Weight: scoring.WeightOne},                                        // older than 24 h: left out
		{TS: clock - 2*hour, Weight: scoring.WeightOne / 4, Damp: scoring.DampedAccountRate},    // in the 24 h, not the hour
		{TS: clock - 30*60_000, Weight: scoring.WeightOne},                                      // the hour, a normal account
		{TS: clock - 20*60_000, Weight: scoring.WeightOne / 2, Damp: scoring.DampedAccountRate}, // damped by half
		{TS: clock, Weight: 1, Damp: scoring.DampedAccountRate},                                 // the floor, 1/1024
	} {
		v.Entries = append(v.Entries, en)
		v.TimesChanged(en.TS)
	}
	const partitions = 8
	part := Partitioner("v1", partitions)
	other := (part + 1) % partitions
	w := db.Partition(part).NewWriter()
	if err := w.SetVideo(v); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}

	s := &Service{db: db, cfg: DefaultConfig(), recent: newRecentScores(10)}
	s.inputPartitions.Store(partitions)
	if _, ok, err := s.RecentLikes(context.Background(), "v1", func(int64, float64) {}); ok || err != nil {
		t.Fatalf("before any assignment: ok %v, err %v", ok, err)
	}
	s.owned.Store(&[]int32{other, part})
	var times []int64
	var weights []float64
	got, ok, err := s.RecentLikes(context.Background(), "v1", func(ts int64, w float64) {
		times, weights = append(times, ts), append(weights, w)
	})
	if err != nil || !ok || got != clock {
		t.Fatalf("RecentLikes: clock %d, ok %v, err %v", got, ok, err)
	}
	wantT := []int64{clock - 2*hour, clock - 30*60_000, clock - 20*60_000, clock}
	wantW := []float64{0.25, 1, 0.5, 1.0 / 1024}
	if len(times) != len(wantT) {
		t.Fatalf("likes at %v with weights %v, want %v, %v", times, weights, wantT, wantW)
	}
	for i := range wantT {
		if times[i] != wantT[i] || weights[i] != wantW[i] {
			t.Errorf("like %d: %d %v, want %d %v", i, times[i], weights[i], wantT[i], wantW[i])
		}
	}
	// The hour holds weights 1, 1/2 and 1/1024: 1535/1024 of a like lost,
	// rounded up to 2; the last 5 min the like at the floor, 1.
	d, ok := s.Damping("v1")
	want := processor.Damping{Likes1h: 3, Damped5m: 1, Damped1h: 2, Reason: "account_rate"}
	if !ok || d != want {
		t.Errorf("Damping: %+v (ok %v), want %+v", d, ok, want)
	}
	if got, want := d.Share(), 2.0/3; math.Abs(got-want) > 1e-12 {
		t.Errorf("share %v, want %v", got, want)
	}
	if _, ok := s.Damping("v2"); ok {
		t.Error("Damping of a video never seen: ok")
	}
	s.owned.Store(&[]int32{other})
	if _, ok := s.Damping("v1"); ok {
		t.Error("Damping of a video of a partition not held: ok")
	}
}

func TestHolds(t *testing.T) {
	s := &Service{}
	if all, first := s.Holds(); all || first {
		t.Errorf("before any assignment: Holds() = %v, %v", all, first)
	}
	s.inputPartitions.Store(3)
	for _, c := range []struct {
		owned      []int32
		all, first bool
	}{
		{[]int32{}, false, false},
		{[]int32{1, 2}, false, false},
		{[]int32{0, 2}, false, true},
		{[]int32{0, 1, 2}, true, true},
	} {
		s.owned.Store(&c.owned)
		if all, first := s.Holds(); all != c.all || first != c.first {
			t.Errorf("holding %v of 3: Holds() = %v, %v; want %v, %v", c.owned, all, first, c.all, c.first)
		}
	}
}

// TestRecentScores: the cache keeps each video's latest record, at most
// max videos (a new one takes the place of one written less recently), and
// get returns a copy that a later put does not change.
func TestRecentScores(t *testing.T) {
	r := newRecentScores(3)
	for i := range 10 {
		id := fmt.Sprintf("v%d", i%5)
		r.put([]byte(id), []byte(fmt.Sprintf(`{"video_id":%q,"seq":%d}`, id, i)))
		if n := recentKept(r); n > 3 {
			t.Fatalf("after put %d: %d videos kept, max 3", i, n)
		}
		got, ok := r.get(id)
		if want := fmt.Sprintf(`{"video_id":%q,"seq":%d}`, id, i); !ok || string(got) != want {
			t.Fatalf("after put %d: get(%s) = %q, %v; want %q", i, id, got, ok, want)
		}
	}
	got, _ := r.get("v4")
	r.put([]byte("v4"), []byte("a longer record than the one before it"))
	if want := `{"video_id":"v4","seq":9}`; string(got) != want {
		t.Fatalf("a copy from get changed to %q by a later put; want %q", got, want)
	}
	if got, ok := r.get("v4"); !ok || string(got) != "a longer record than the one before it" {
		t.Fatalf("get(v4) = %q, %v after it was written over", got, ok)
	}
	// A record too long for a slot is not kept, nor its video's older one.
	r.put([]byte("v4"), bytes.Repeat([]byte("y"), recentSlot))
	if got, ok := r.get("v4"); ok {
		t.Fatalf("get(v4) = %q after a record too long to keep; want none", got)
	}
	// In a set of two, a new video takes the slot written less recently.
	two := newRecentScores(2)
	for _, id := range []string{"a", "b", "a", "c"} {
		two.put([]byte(id), []byte(id+"'s record"))
	}
	for id, want := range map[string]bool{"a": true, "b": false, "c": true} {
		if _, ok := two.get(id); ok != want {
			t.Errorf("after a, b, a, c in one set of two: get(%s) found %v, want %v", id, ok, want)
		}
	}
	two.forget(func(id string) bool { return id == "a" })
	if _, ok := two.get("a"); ok || recentKept(two) != 1 {
		t.Errorf("after forgetting a: get(a) found %v, %d kept; want none and 1", ok, recentKept(two))
	}
	none := newRecentScores(0)
	none.put([]byte("v1"), []byte("x"))
	if _, ok := none.get("v1"); ok {
		t.Fatal("a cache of 0 videos kept one")
	}
}

// recentKept is how many videos have a record kept.
func recentKept(r *recentScores) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	n := 0
	for _, m := range r.meta {
		if m.hash != 0 {
			n++
		}
	}
	return n
}

// BenchmarkRecentScores: a put of every score the live service emits, as
// B3 has it: records of about 370 bytes for 130,000 videos, some liked far
// more than others, into the share a 512 MiB budget gives (16,000).
func BenchmarkRecentScores(b *testing.B) {
	const videos = 130_000
	r := newRecentScores(16_000)
	ids := make([][]byte, videos)
	for i := range ids {
		ids[i] = []byte(fmt.Sprintf("v%07d", i))
	}
	rec := bytes.Repeat([]byte("x"), 370)
	zipf := rand.NewZipf(rand.New(rand.NewSource(1)), 1.1, 8, videos-1)
	order := make([]int, 1<<16)
	for i := range order {
		order[i] = int(zipf.Uint64())
	}
	b.ResetTimer()
	for i := range b.N {
		r.put(ids[order[i&(len(order)-1)]], rec)
	}
}
