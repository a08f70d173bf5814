package processor

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"runtime"
	"testing"

	"github.com/viralityhq/virality/store"
)

// randomPair returns a pair whose encoding is between a few and a few
// hundred bytes: liked or not, with or without later likes.
func randomPair(rng *rand.Rand) store.Pair {
	p := store.Pair{EverLiked: true, LastUnlike: rng.Int64N(1 << 40)}
	if rng.IntN(3) > 0 {
		p.Liked = true
		p.Like = store.Like{TS: rng.Int64N(1 << 41), Weight: rng.Int64N(1 << 20), Region: "JP", EventID: fmt.Sprintf("e%d", rng.IntN(1e9))}
	}
	for range rng.IntN(4) / 3 * rng.IntN(8) {
		p.Later = append(p.Later, store.Like{TS: rng.Int64N(1 << 41), EventID: fmt.Sprintf("late%d", rng.IntN(1e6))})
	}
	return p
}

// TestPairCache changes, writes and lets go pairs at random against a map
// of what each should hold: every pair held reads back as last set,
// through the arena's compactions; a write stores exactly the pairs set
// since the last, trimmed of the event IDs of likes before the watermark
// (store.TrimPair), and the cache holds them trimmed; evict keeps every
// pair changed since the last write.
func TestPairCache(t *testing.T) {
	db := openMemStore(t)
	part := db.Partition(3)
	c := newPairCache()
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[string]store.Pair{}   // what the cache should hold
	stored := map[string]store.Pair{} // what the store should hold
	dirty := map[string]bool{}
	key := func(n int) []byte { return store.PairKey(nil, fmt.Sprintf("v%d", n%5000), fmt.Sprintf("u%d", n)) }
	compactions, trimmed := 0, 0
	const wm = 1 << 40
	for round := range 40 {
		for range 2000 {
			k := key(rng.IntN(20_000))
			p := randomPair(rng)
			before := len(c.data)
			if err := c.set(c.find(k), k, &p); err != nil {
				t.Fatal(err)
			}
			if len(c.data) < before {
				compactions++
			}
			want[string(k)], dirty[string(k)] = p, true
		}
		for k, p := range want {
			i := c.find([]byte(k))
			if i < 0 {
				t.Fatalf("round %d: pair %q let go", round, k)
			}
			var got store.Pair
			if err := c.get(i, &got); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, p) {
				t.Fatalf("round %d: pair %q reads %+v, want %+v", round, k, got, p)
			}
		}
		if c.Len() != len(want) {
			t.Fatalf("round %d: %d pairs held, want %d", round, c.Len(), len(want))
		}
		if round%3 == 2 {
			// A commit: what it wrote is in the store, then changes made
			// while it was in flight, then the cache trimmed.
			// The watermark passes half the like times: those likes keep
			// no event ID, in the store and in the cache alike.
			w := part.NewWriter()
			if err := c.write(w, wm); err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			for k := range dirty {
				p := want[k]
				if p.Liked && p.Like.TS < wm && len(p.Later) == 0 {
					p.Like.EventID = ""
					trimmed++
				}
				want[k], stored[k] = p, p
			}
			clear(dirty)
			for range 100 {
				k := key(rng.IntN(20_000))
				p := randomPair(rng)
				if err := c.set(c.find(k), k, &p); err != nil {
					t.Fatal(err)
				}
				want[string(k)], dirty[string(k)] = p, true
			}
			before := len(c.data)
			c.evict(1000)
			if len(c.data) < before {
				compactions++
			}
			if c.Len() < len(dirty) || c.Len() > max(1000, len(dirty)) {
				t.Fatalf("round %d: %d pairs held after evict(1000), %d changed since the write", round, c.Len(), len(dirty))
			}
			for k := range want {
				if c.find([]byte(k)) < 0 {
					if dirty[k] {
						t.Fatalf("round %d: pair %q changed since the write was let go", round, k)
					}
					delete(want, k)
				}
			}
		}
	}
	if compactions == 0 {
		t.Error("the arena was never compacted")
	}
	if trimmed == 0 {
		t.Error("no pair was trimmed")
	}
	n := 0
	if err := part.ScanPairs(func(k []byte) {
		n++
		if _, ok := stored[string(k)]; !ok {
			t.Errorf("pair %q stored, never written", k)
		}
	}); err != nil {
		t.Fatal(err)
	}
	if n != len(stored) {
		t.Errorf("%d pairs stored, want %d", n, len(stored))
	}
	for k, p := range stored {
		video, user := splitPairKey(t, []byte(k))
		got, ok, err := part.Pair(video, user)
		if err != nil || !ok {
			t.Fatalf("pair %q: %v, %v", k, ok, err)
		}
		if !reflect.DeepEqual(got, p) {
			t.Fatalf("pair %q stored as %+v, want %+v", k, got, p)
		}
	}
}

// splitPairKey splits a [store.PairKey] of test IDs (shorter than 128
// bytes: a length of one byte).
func splitPairKey(t *testing.T, k []byte) (video, user string) {
	t.Helper()
	n := int(k[0])
	if n >= 128 || 1+n > len(k) {
		t.Fatalf("pair key %q", k)
	}
	return string(k[1 : 1+n]), string(k[1+n:])
}

// BenchmarkPairCacheBytes reports the heap a cached pair takes (PairBytes)
// when the cache holds pairs of generated IDs, each liked once, filled to
// its bound and trimmed to half of it as a commit does, again and again.
func BenchmarkPairCacheBytes(b *testing.B) {
	const bound = 200_000
	var ms runtime.MemStats
	for b.Loop() {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		before := ms.HeapAlloc
		c := newPairCache()
		n, peak := 0, 0.0
		for range 6 {
			for c.Len() < bound {
				n++
				p := store.Pair{Liked: true, EverLiked: true, Like: store.Like{TS: 1793491200000 + int64(n)*37, Weight: 1 << 20, Region: "US", EventID: fmt.Sprintf("e%d", 3*n)}}
				k := store.PairKey(nil, fmt.Sprintf("v%d", n*7919%1_000_000), fmt.Sprintf("u%d", n*104729%5_000_000))
				if err := c.set(-1, k, &p); err != nil {
					b.Fatal(err)
				}
			}
			runtime.GC()
			runtime.ReadMemStats(&ms)
			peak = max(peak, float64(ms.HeapAlloc-before)/float64(c.Len()))
			for i := range c.Len() {
				c.t.Val(i).dirty = false
			}
			c.evict(bound / 2)
		}
		b.ReportMetric(peak, "bytes/pair")
		runtime.KeepAlive(c)
	}
}
