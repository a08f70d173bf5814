package processor

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/viralityhq/virality/store"
)

// TestLeftAccounts checks the filters of accounts let go against the
// records they stand for: an account whose stored newest bucket a like
// still needs (at least b-keyKeep) is always reported, whatever the
// order of the lets-go and the likes, very late ones too; and most of
// those stale by more than a span are not.
func TestLeftAccounts(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	l := newLeftAccounts(math.MinInt64)
	stored := map[string]int64{} // accounts let go: their stored newest bucket
	now := int64(6_000_000)
	var stale, skipped, needed int
	for step := range 400_000 {
		if step%1000 == 0 {
			now++
		}
		user := fmt.Sprintf("u%d", rng.IntN(30_000))
		if rng.IntN(2) == 0 {
			// Let go: its newest bucket lies at or before now, by up to
			// an hour and a half; one like in 50 made it very late.
			newest := now - rng.Int64N(18)
			if rng.IntN(50) == 0 {
				newest = now - rng.Int64N(300)
			}
			if old, ok := stored[user]; ok && old > newest {
				newest = old
			}
			stored[user] = newest
			l.add([]byte(user), newest, 20_000)
			continue
		}
		b := now - rng.Int64N(3)
		if rng.IntN(50) == 0 {
			b = now - rng.Int64N(300)
		}
		upTo, got := l.may([]byte(user), b)
		newest, ok := stored[user]
		switch {
		case ok && newest >= b-keyKeep:
			needed++
			if !got {
				t.Fatalf("step %d: %s stored with newest bucket %d is not reported for a like in %d (from %d, spans to %d)",
					step, user, newest, b, l.from, l.hi)
			}
			if upTo < newest {
				t.Fatalf("step %d: %s stored with newest bucket %d is reported with a last like up to %d", step, user, newest, upTo)
			}
		case b-keyKeep >= l.from && (!ok || newest < b-keyKeep-leftSpan):
			// Stale by more than a span, and within what the filters cover.
			stale++
			if !got {
				skipped++
			}
		}
	}
	if needed == 0 || stale == 0 {
		t.Fatalf("%d likes needed a record, %d did not: want both", needed, stale)
	}
	if float64(skipped) < 0.9*float64(stale) {
		t.Errorf("%d of %d likes that need no record were not reported: want at least 90%%", skipped, stale)
	}
	t.Logf("needed %d, not needed %d, of which not reported %d", needed, stale, skipped)
}

// TestAccountsReadOnlyWhatMatters: accounts that like again hours after
// they were let go are not read back from the store; those let go while
// their likes still count are, with the weights of the definition; and a
// partition opened on stored state reads those of its last buckets.
func TestAccountsReadOnlyWhatMatters(t *testing.T) {
	db := openMemStore(t)
	part := db.Partition(0)
	const users = 2000
	a := newAccounts(part, accountBucketMS, 100)
	ref := newRefAccounts()
	like := func(a *accounts, user string, b int64) {
		t.Helper()
		ts := b * accountBucketMS
		var keys lockKeys
		got, _, _, _, err := a.like(user, lockKey("v", ts), ts, 3, &keys, func(int64, uint32) uint8 { return 0 })
		if err != nil {
			t.Fatal(err)
		}
		if want, _ := ref.like(user, "v", ts, accountBucketMS, a.counted(3)); got != want {
			t.Fatalf("weight of %s at bucket %d: %d, want %d", user, b, got, want)
		}
	}
	commit := func(a *accounts, current int64) { t.Helper(); commitAccounts(t, part, a, current) }
	b0 := int64(6_000_000)
	// Three likes each in an hour, let go by the bound as they come.
	for k := range int64(3) {
		for i := range users {
			like(a, fmt.Sprintf("u%d", i), b0+4*k)
			if i%100 == 99 {
				commit(a, b0+4*k)
			}
		}
	}
	if a.reads == 0 {
		t.Fatal("no account let go within the hour was read back")
	}
	// Four hours later: none of their records matters.
	reads := a.reads
	for i := range users {
		like(a, fmt.Sprintf("u%d", i), b0+48)
		if i%100 == 99 {
			commit(a, b0+48)
		}
	}
	if n := a.reads - reads; n > users/20 {
		t.Errorf("%d of %d accounts were read back four hours after their last like: want at most 5%%", n, users)
	}
	commit(a, b0+48)

	// Opened on the stored state: an account's last like is 2 buckets
	// back, and its record is read. Without what open says, it would not be.
	b := newAccounts(part, accountBucketMS, 100)
	b.open(b0 + 48 - accountLag)
	like(b, "u7", b0+50)
	if b.reads != 1 {
		t.Errorf("a partition opened on its state read %d accounts for a like 2 buckets after the last: want 1", b.reads)
	}
}

// TestAccountsKeepTheBusiest: beyond the bound, the accounts that liked
// in more of their recent buckets stay, and those that liked once go
// first: the busy ones like again soonest, and each let go would be read
// back from the store.
func TestAccountsKeepTheBusiest(t *testing.T) {
	db := openMemStore(t)
	part := db.Partition(0)
	const busy, once, bound = 50, 500, 100
	a := newAccounts(part, accountBucketMS, bound)
	like := func(user string, b int64) {
		t.Helper()
		var keys lockKeys
		ts := b * accountBucketMS
		if _, _, _, _, err := a.like(user, lockKey("v", ts), ts, 3, &keys, func(int64, uint32) uint8 { return 0 }); err != nil {
			t.Fatal(err)
		}
	}
	b0 := int64(6_000_000)
	// Those who like once come first into the table, and are as recent.
	for i := range once {
		like(fmt.Sprint("once", i), b0+5)
	}
	for i := range busy {
		for k := range int64(6) {
			like(fmt.Sprint("busy", i), b0+k)
		}
	}
	w := part.NewWriter()
	if err := a.save(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	a.evict(b0 + 5)
	if a.load() > bound {
		t.Fatalf("%d accounts held after eviction, bound %d", a.load(), bound)
	}
	reads := a.reads
	for i := range busy {
		like(fmt.Sprint("busy", i), b0+6)
	}
	if n := a.reads - reads; n > 0 {
		t.Errorf("%d of the %d busy accounts were read back from the store: want none", n, busy)
	}
}

// TestAccountsEpochsDropped: over twelve hours of likes, some as late as
// the lateness, from accounts that like again minutes to hours apart (so
// that some read records of the epoch before theirs, kept until no like
// can read them: it fails when an epoch goes four buckets early),
// weights stay those of the definition while the bound lets accounts go
// (read back from the store) and each commit deletes the epochs of
// records no like can read: those more than keyKeep buckets before the
// earliest like still to come.
func TestAccountsEpochsDropped(t *testing.T) {
	db := openMemStore(t)
	part := db.Partition(0)
	a := newAccounts(part, accountBucketMS, 20)
	ref := newRefAccounts()
	rng := rand.New(rand.NewPCG(5, 6))
	const lateness = 2 * 60_000
	t0 := int64(6_000_000) * accountBucketMS
	maxTS := t0
	for i := range 20_000 {
		maxTS += int64(rng.IntN(4_500)) // twelve hours, in all
		ts := maxTS - int64(rng.IntN(lateness))
		user := fmt.Sprintf("u%d", rng.IntN(3000)) // a like every two hours or so
		video := fmt.Sprintf("v%d", rng.IntN(100))
		var keys lockKeys
		got, _, _, _, err := a.like(user, lockKey(video, ts), ts, 3, &keys, func(int64, uint32) uint8 { return 0 })
		if err != nil {
			t.Fatal(err)
		}
		want, wantKeys := ref.like(user, video, ts, accountBucketMS, a.counted(3))
		if got != want || !slices.Equal(keys.slice(), wantKeys) {
			t.Fatalf("like %d: weight of %s at %d: %d, lockstep keys %x; want %d, %x", i, user, ts, got, keys.slice(), want, wantKeys)
		}
		if i%50 == 49 {
			low := floorDiv(maxTS-lateness, accountBucketMS)
			a.readableFrom(low)
			commitAccounts(t, part, a, low)
		}
	}
	eps, err := part.AccountEpochs()
	if err != nil {
		t.Fatal(err)
	}
	if first := epochOf(floorDiv(t0, accountBucketMS)); len(eps) == 0 || eps[0] <= first+2 || len(eps) > 3 {
		t.Errorf("the store holds accounts of epochs %v; the likes began in epoch %d, and at most the last three may be left", eps, first)
	}
	if !slices.Equal(eps, a.epochs) {
		t.Errorf("the store holds epochs %v, the accounts know of %v", eps, a.epochs)
	}
	if a.reads < 1000 {
		t.Errorf("%d accounts read back from the store: the test checks too little", a.reads)
	}
}

// commitAccounts commits the accounts' changes to part, then lets go what
// they hold beyond their bound, as a stage does once a commit is durable.
func commitAccounts(t *testing.T, part *store.Partition, a *accounts, current int64) {
	t.Helper()
	w := part.NewWriter()
	if err := a.save(w); err != nil {
		t.Fatal(err)
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}
	a.evict(current)
}
