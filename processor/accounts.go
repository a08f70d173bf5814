package processor

import (
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

type acctBucket struct{ idx, n int64 }

type accountKey struct {
	user   string
	bucket int64
}

// accounts holds the recent like counts of accounts. Accounts with no like
// in the last accountKeep buckets are dropped: they cannot change a weight.
type accounts struct {
	part    *store.Partition
	bucket  int64
	max     int
	c0      int64 // account threshold, likes in accountBuckets
	m       map[string][]acctBucket
	dirty   []accountKey
	partial bool // accounts were evicted while recent: a miss reads the store
	deleted int64
}

func newAccounts(part *store.Partition, bucket int64, maxAccounts, perHour int) *accounts {
	// The counted buckets span an hour only when a bucket is 5 minutes.
	c0 := max(int64(perHour)*accountBuckets*bucket/3_600_000, 1)
	return &accounts{part: part, bucket: bucket, max: maxAccounts, c0: c0, m: map[string][]acctBucket{}}
}

// like counts a like by user at ts and returns its weight.
func (a *accounts) like(user string, ts int64) (int64, error) {
	b := floorDiv(ts, a.bucket)
	bs, ok := a.m[user]
	if !ok && a.partial {
		for idx := b - accountKeep; idx <= b+accountLag; idx++ {
			n, err := a.part.AccountCount(idx, user)
			if err != nil {
				return 0, err
			}
			if n > 0 {
				bs = append(bs, acctBucket{idx, n})
			}
		}
	}
	var recent int64
	i := 0
	for ; i < len(bs) && bs[i].idx < b; i++ {
		if bs[i].idx >= b-accountLag-accountBuckets+1 && bs[i].idx <= b-accountLag {
			recent += bs[i].n
		}
	}
	if i < len(bs) && bs[i].idx == b {
		bs[i].n++
	} else {
		bs = append(bs, acctBucket{})
		copy(bs[i+1:], bs[i:])
		bs[i] = acctBucket{b, 1}
	}
	// Drop buckets no future like can look at.
	newest := bs[len(bs)-1].idx
	k := 0
	for k < len(bs) && bs[k].idx < newest-accountKeep {
		k++
	}
	if k > 0 {
		bs = append(bs[:0], bs[k:]...)
	}
	a.m[user] = bs
	a.dirty = append(a.dirty, accountKey{user, b})
	return scoring.AccountWeight(recent, a.c0), nil
}

func (a *accounts) count(user string, b int64) int64 {
	for _, bk := range a.m[user] {
		if bk.idx == b {
			return bk.n
		}
	}
	return 0
}

// save writes the counts changed since the last commit and drops buckets
// too old to matter, with one range deletion.
func (a *accounts) save(w *store.Writer, current int64) error {
	for _, k := range a.dirty {
		if err := w.SetAccountCount(k.bucket, k.user, a.count(k.user, k.bucket)); err != nil {
			return err
		}
	}
	a.dirty = a.dirty[:0]
	if cut := current - accountKeep; cut > a.deleted {
		if err := w.DeleteAccountsBefore(cut); err != nil {
			return err
		}
		a.deleted = cut
	}
	return nil
}

// evict drops accounts that cannot change a weight any more and, beyond
// the bound, recent ones too (they are then read back when needed).
func (a *accounts) evict(current int64) {
	for user, bs := range a.m {
		if bs[len(bs)-1].idx < current-accountKeep {
			delete(a.m, user)
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

// load reads the recent counts back after a restart.
func (a *accounts) load(current int64) error {
	a.deleted = current - accountKeep
	return a.part.ScanAccounts(current-accountKeep, func(b int64, user string, n int64) error {
		a.m[user] = append(a.m[user], acctBucket{b, n})
		return nil
	})
}

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
