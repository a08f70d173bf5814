package processor

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/viralityhq/virality/scoring"
)

// TestTableMatchesMap drives a table and a Go map with the same random
// puts, changes and deletes (enough to grow the index and compact the key
// arena) and checks after each step that both hold the same entries.
// With a hint, the table grows its entries and keys by doubling up to it,
// by append's growth past it.
func TestTableMatchesMap(t *testing.T) {
	for _, hint := range []int{0, 3000} {
		t.Run(fmt.Sprintf("hint=%d", hint), func(t *testing.T) { testTableMatchesMap(t, hint) })
	}
}

func testTableMatchesMap(t *testing.T, hint int) {
	rng := rand.New(rand.NewPCG(1, 2))
	tb := newTable[int64]()
	tb.hint = hint
	ref := map[string]int64{}
	check := func(step int) {
		if tb.Len() != len(ref) {
			t.Fatalf("step %d: %d entries, want %d", step, tb.Len(), len(ref))
		}
		for i := range tb.Len() {
			k := string(tb.Key(i))
			if v, ok := ref[k]; !ok || v != *tb.Val(i) {
				t.Fatalf("step %d: entry %d %q=%d, map has %d %v", step, i, k, *tb.Val(i), v, ok)
			}
			if j := tb.Find([]byte(k)); j != i {
				t.Fatalf("step %d: Find(%q) = %d, want %d", step, k, j, i)
			}
		}
	}
	for step := range 200_000 {
		k := fmt.Sprintf("user-%d", rng.IntN(5000+step/20))
		switch r := rng.IntN(10); {
		case r < 6:
			i, added := tb.Put([]byte(k))
			if _, ok := ref[k]; ok == added {
				t.Fatalf("step %d: Put(%q) added %v, map had it: %v", step, k, added, ok)
			}
			*tb.Val(i) += int64(step)
			ref[k] += int64(step)
		default:
			i := tb.Find([]byte(k))
			if _, ok := ref[k]; ok != (i >= 0) {
				t.Fatalf("step %d: Find(%q) = %d, map has it: %v", step, k, i, ok)
			}
			if i >= 0 {
				tb.Delete(i)
				delete(ref, k)
			}
		}
		if step%5000 == 0 {
			check(step)
		}
	}
	check(-1)
	if tb.dead > len(tb.keys)/2+1<<16 {
		t.Errorf("key arena: %d of %d bytes dead", tb.dead, len(tb.keys))
	}
}

// TestTableGrowth: a table with a hint grows to it in doublings, and its
// entries take no more room than the hint when it holds that many.
// Append's own growth (a quarter at a time past 256) would take 22
// copies to 10,000 entries, and five times their size in all.
func TestTableGrowth(t *testing.T) {
	const n = 10_000
	tb := newTable[int64]()
	tb.hint = n
	grown, last := 0, cap(tb.ents)
	for i := range n {
		tb.Put(fmt.Appendf(nil, "user-%d", i))
		if c := cap(tb.ents); c != last {
			grown, last = grown+1, c
		}
	}
	if grown > 11 {
		t.Errorf("entries grown %d times to %d, want at most 11 (doublings from 16)", grown, n)
	}
	if c := cap(tb.ents); c != n {
		t.Errorf("entries' capacity %d for %d entries, hint %d", c, n, n)
	}
	if c, l := cap(tb.keys), len(tb.keys); c > 2*l {
		t.Errorf("keys' capacity %d for %d bytes", c, l)
	}
	// Past the hint, append's growth.
	tb.Put([]byte("one more"))
	if c := cap(tb.ents); c <= n || c > n*3/2 {
		t.Errorf("past the hint: capacity %d for %d entries", c, n+1)
	}
}

// refAccounts is the definition of an account's weight and lockstep keys,
// written plainly: the weight of a like in bucket b counts the account's
// likes in buckets b-13 .. b-2 among those it keeps (the last
// accountKeep+1 buckets up to its newest); its keys are those of the
// newest like (by time, then key) of each of the buckets b-2 .. b-25 among
// those it keeps (keyKeep+1 up to its newest), at most lockKeyCount
// different ones.
type refAccounts struct {
	m      map[string]map[int64]int64
	newest map[string]map[int64][2]int64 // (ts, key) of the bucket's newest like
}

func newRefAccounts() *refAccounts {
	return &refAccounts{m: map[string]map[int64]int64{}, newest: map[string]map[int64][2]int64{}}
}

func (r *refAccounts) like(user, video string, ts, bucket, c0 int64) (int64, []uint32) {
	b := floorDiv(ts, bucket)
	bs := r.m[user]
	if bs == nil {
		bs = map[int64]int64{}
		r.m[user] = bs
		r.newest[user] = map[int64][2]int64{}
	}
	nw := r.newest[user]
	var recent int64
	for k, n := range bs {
		if k >= b-accountLag-accountBuckets+1 && k <= b-accountLag {
			recent += n
		}
	}
	var keys []uint32
	for k := b - accountLag; k > b-accountLag-lockBuckets && len(keys) < lockKeyCount; k-- {
		if x, ok := nw[k]; ok && !slices.Contains(keys, uint32(x[1])) {
			keys = append(keys, uint32(x[1]))
		}
	}
	bs[b]++
	x := [2]int64{(ts - b*bucket) / 1000, int64(lockKey(video, ts))}
	if old, ok := nw[b]; !ok || x[0] > old[0] || (x[0] == old[0] && x[1] > old[1]) {
		nw[b] = x
	}
	newest := int64(-1 << 62)
	for k := range bs {
		newest = max(newest, k)
	}
	for k := range bs {
		if k < newest-accountKeep {
			delete(bs, k)
		}
	}
	for k := range nw {
		if k < newest-keyKeep {
			delete(nw, k)
		}
	}
	return scoring.AccountWeight(recent, c0), keys
}

// TestAccountsMatchDefinition: likes of many accounts in random order of
// time, with commits, evictions beyond a small bound and reads back from
// the store, get the weights of the definition; accounts are held whole
// when their buckets do not fit an entry, and in their entries again once
// they do.
func TestAccountsMatchDefinition(t *testing.T) {
	db := openMemStore(t)
	part := db.Partition(0)
	a := newAccounts(part, accountBucketMS, 300)
	ref := newRefAccounts()
	rng := rand.New(rand.NewPCG(3, 4))
	now := int64(1_000 * accountBucketMS)
	wasWhole := map[string]bool{}
	var whole, back int
	for step := range 100_000 {
		now += rng.Int64N(20_000)
		ts := now - rng.Int64N(3*accountBucketMS)
		veryLate := rng.IntN(50) == 0
		if veryLate {
			ts = now - rng.Int64N(30*accountBucketMS)
		}
		user := fmt.Sprintf("u%d", rng.IntN(1000))
		if rng.IntN(4) == 0 {
			// A crowd that changes every few buckets: its accounts like
			// in many buckets, then go quiet.
			user = fmt.Sprintf("c%d-%d", step/20_000, rng.IntN(20))
		}
		if rng.IntN(3) == 0 {
			user = fmt.Sprintf("farm%d", rng.IntN(5))
		}
		video := fmt.Sprintf("v%d", rng.IntN(200))
		var keys lockKeys
		got, _, _, _, err := a.like(user, lockKey(video, ts), ts, 3, &keys, func(int64, uint32) uint8 { return 0 })
		if err != nil {
			t.Fatal(err)
		}
		switch e := a.t.Val(a.t.Find([]byte(user))); {
		case e.full > 0 && !wasWhole[user]:
			whole++
			wasWhole[user] = true
		case e.full == 0 && wasWhole[user]:
			back++
			wasWhole[user] = false
		}
		want, wantKeys := ref.like(user, video, ts, accountBucketMS, a.counted(3))
		if got != want {
			t.Fatalf("step %d: weight of %s at %d: %d, want %d", step, user, ts, got, want)
		}
		// A like later than every bucket kept (an account swept as quiet
		// forgets its buckets, as a stage forgets them once closed) is
		// weighed with what is left: its keys may miss some.
		if !veryLate && !slices.Equal(keys.slice(), wantKeys) {
			t.Fatalf("step %d: lockstep keys of %s at %d: %x, want %x", step, user, ts, keys.slice(), wantKeys)
		}
		if step%500 == 499 {
			w := part.NewWriter()
			if err := a.save(w); err != nil {
				t.Fatal(err)
			}
			if err := w.Commit(); err != nil {
				t.Fatal(err)
			}
			a.evict(floorDiv(now, accountBucketMS))
		}
	}
	if a.reads == 0 {
		t.Error("no account was read back from the store: the bound of 300 accounts never evicted one")
	}
	if whole == 0 || back == 0 {
		t.Errorf("accounts held whole %d times, back in their entries %d times: want both", whole, back)
	}
}

// BenchmarkTableLookup looks up keys at random in a table of 1M entries
// of 96 bytes (the size of an account's), far larger than the CPU's
// caches: hits, and misses (keys it does not hold) as often.
func BenchmarkTableLookup(b *testing.B) {
	const n = 1 << 20
	tb := newTable[[96]byte]()
	keys := make([][]byte, 2*n)
	for i := range keys {
		keys[i] = fmt.Appendf(nil, "u%d", i)
	}
	for _, k := range keys[:n] {
		tb.Put(k)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	order := make([]int32, 1<<16)
	for i := range order {
		order[i] = int32(rng.IntN(2 * n))
	}
	b.ResetTimer()
	found := 0
	for i := range b.N {
		if tb.Find(keys[order[i&(len(order)-1)]]) >= 0 {
			found++
		}
	}
	if b.N >= len(order) && (found < b.N/3 || found > 2*b.N/3) {
		b.Fatalf("%d of %d found, want about half", found, b.N)
	}
}
