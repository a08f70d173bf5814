package processor

import (
	"slices"

	"github.com/viralityhq/virality/scoring"
	"github.com/viralityhq/virality/store"
)

// Account weights need each account's likes in the hour before a like, and
// must not depend on arrival order. Likes are counted in buckets of event
// time at least as long as the lateness; the weight of a like in bucket b
// uses the account's likes in buckets b-13 .. b-2 only. Those buckets are
// closed when the like is applied: a like in b means the largest event time
// is at least b's start, so the watermark is past the end of b-2 and no
// like of b-2 or before can still arrive. The weight is therefore the same
// whatever order the likes came in, and stays fixed once given.
const (
	accountBucketMS = 5 * 60_000
	accountLag      = 2  // buckets between a like and the first one counted
	accountBuckets  = 12 // buckets counted: an hour
	// accountKeep is how many buckets back any future like can look.
	accountKeep = accountBuckets + accountLag + 2
)

type acctBucket = store.AccountBucket

// accounts holds the recent like counts of accounts. Accounts with no like
// in the last accountKeep buckets are dropped: they cannot change a weight.
// Each account's counts are stored in one record (store.Account), written
// at each commit the account liked something, so that an account evicted
// from memory, or not loaded after a restart, costs one lookup.
type accounts struct {
	part   *store.Partition
	bucket int64
	max    int
	c0     int64 // account threshold, likes in accountBuckets
	m      map[string][]acctBucket
	dirty  map[string]struct{}
	// partial: the store may hold accounts that are not in memory (some
	// were evicted, or the state was opened on an earlier commit), so a
	// miss reads the store.
	partial bool
	order   []string // scratch for save
	swept   int64    // bucket of the last sweep for accounts gone quiet
}

func newAccounts(part *store.Partition, bucket int64, maxAccounts, perHour int) *accounts {
	// The counted buckets span an hour only when a bucket is 5 minutes.
	c0 := max(int64(perHour)*accountBuckets*bucket/3_600_000, 1)
	return &accounts{part: part, bucket: bucket, max: maxAccounts, c0: c0,
		m: map[string][]acctBucket{}, dirty: map[string]struct{}{}}
}

// like counts a like by user at ts and returns its weight.
func (a *accounts) like(user string, ts int64) (int64, error) {
	b := floorDiv(ts, a.bucket)
	bs, ok := a.m[user]
	if !ok && a.partial {
		var err error
		if bs, err = a.part.Account(user, nil); err != nil {
			return 0, err
		}
	}
	var recent int64
	i := 0
	for ; i < len(bs) && bs[i].Bucket < b; i++ {
		if bs[i].Bucket >= b-accountLag-accountBuckets+1 && bs[i].Bucket <= b-accountLag {
			recent += bs[i].N
		}
	}
	if i < len(bs) && bs[i].Bucket == b {
		bs[i].N++
	} else {
		bs = append(bs, acctBucket{})
		copy(bs[i+1:], bs[i:])
		bs[i] = acctBucket{Bucket: b, N: 1}
	}
	// Drop buckets no future like can look at.
	newest := bs[len(bs)-1].Bucket
	k := 0
	for k < len(bs) && bs[k].Bucket < newest-accountKeep {
		k++
	}
	if k > 0 {
		bs = append(bs[:0], bs[k:]...)
	}
	a.m[user] = bs
	a.dirty[user] = struct{}{}
	return scoring.AccountWeight(recent, a.c0), nil
}

// save writes the accounts that liked since the last commit, in the order
// of their ids. Buckets too old to matter are dropped as accounts like
// again; an account that never does keeps its last record, which no
// weight reads any more (like the pairs, the records grow with the
// accounts ever seen, not with the likes).
func (a *accounts) save(w *store.Writer) error {
	a.order = a.order[:0]
	for user := range a.dirty {
		a.order = append(a.order, user)
	}
	slices.Sort(a.order)
	for _, user := range a.order {
		if err := w.SetAccount(user, a.m[user]); err != nil {
			return err
		}
	}
	clear(a.dirty)
	return nil
}

// evict drops accounts that cannot change a weight any more and, beyond
// the bound, recent ones too (they are then read back when needed).
func (a *accounts) evict(current int64) {
	// An account goes quiet for good only as buckets close: sweep once a
	// bucket, not at every commit.
	if current > a.swept {
		a.swept = current
		for user, bs := range a.m {
			if bs[len(bs)-1].Bucket < current-accountKeep {
				delete(a.m, user)
			}
		}
	}
	if n := len(a.m) - a.max*3/4; len(a.m) > a.max && n > 0 {
		for user := range a.m {
			if n <= 0 {
				break
			}
			delete(a.m, user)
			n--
		}
		a.partial = true
	}
}

// open prepares the accounts of a partition opened on stored state: they
// are read from the store as they like again.
func (a *accounts) open(stored bool) { a.partial = stored }

// windowDamping names the signals that damped likes of a window of n likes
// whose weights sum to w. The account rate is the only signal so far and
// the only way a like's weight falls below one, so it is read off the
// window's sums: nothing is stored per like for it. A second signal (such
// as coordinated accounts) needs its own bit per like, in store.Like and
// store.Entry (a new store.FormatVersion), and a count of likes per signal
// in each window, kept beside n and w.
func windowDamping(n, w int64) scoring.Damping {
	if w < n*scoring.WeightOne {
		return scoring.DampedAccountRate
	}
	return 0
}
