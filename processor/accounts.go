package processor

import (
	"math"
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
	// lockBuckets are the buckets a like's lockstep keys come from: b-2
	// back over two hours; keyKeep is how many buckets back any future
	// like can look for them, and how long an account kept in memory
	// must be quiet to be dropped.
	lockBuckets = 24
	keyKeep     = lockBuckets + accountLag + 2
	// accountEpoch is the span, in buckets, of an epoch of the accounts'
	// records in the store: a record is kept under the epoch of its
	// newest bucket, and a like reads only records whose newest bucket is
	// at most keyKeep before its own, so from at most two epochs (or
	// more, for an account that liked later than the like), and an epoch
	// is deleted whole once no like can read it (accounts.save). An
	// account that never likes again so leaves the store within three
	// epochs, about seven hours of event time; until format 12 its record
	// was kept for ever, a record for every account ever seen.
	accountEpoch = keyKeep + 1
)

func epochOf(bucket int64) int64 { return floorDiv(bucket, accountEpoch) }

type acctBucket = store.AccountBucket

// acctRec is an account's likes in the buckets newest-accountKeep ..
// newest: n[i] likes in bucket newest-i. Counts past what a uint32 holds
// (4 billion likes of one account in one bucket) stay at its maximum.
// key[i] is the lockstep key of its newest like in bucket newest-i (by
// event time, then key: lockstep.go) and sec[i] 1 + that like's second in
// the bucket (0: no like), kept over keyKeep buckets. It is the form the
// account's like works on; in memory most accounts are held smaller, in
// an acctEntry.
type acctRec struct {
	newest int64
	n      [accountKeep + 1]uint32
	key    [keyKeep + 1]uint32
	sec    [keyKeep + 1]uint16
}

// entrySlots is the most buckets an acctEntry holds itself. Most accounts
// like in few of their last keyKeep buckets (in a generated hour of 1M
// accounts, 7 buckets at most for all but the busiest); one that likes in
// more is held whole, in accounts.full.
const entrySlots = 8

// acctSlot is one bucket of an acctEntry: its lockstep key, and packed in
// meta its distance from newest (5 bits), its sec (9 bits) and its count
// (18 bits). A bucket whose values do not fit (a second past 511 of a
// longer bucket, more than 262,143 likes) makes its account held whole.
type acctSlot struct{ key, meta uint32 }

const (
	slotSecShift = 5
	slotNShift   = 14
	slotMaxSec   = 1<<(slotNShift-slotSecShift) - 1
	slotMaxN     = 1<<(32-slotNShift) - 1
)

// acctEntry is an account in memory: its buckets with a like or a key
// (newest first), or, when full > 0, an index (+1) of accounts.full that
// holds it whole. An entry takes 80 bytes, a whole record 256 more.
type acctEntry struct {
	newest int64
	slot   [entrySlots]acctSlot
	full   int32
	n      uint8
	dirty  bool // liked since the last commit
}

// fullUnits is what an account held whole counts for against the bound
// on accounts (Config.MaxAccounts): its entry and its record take about
// four times the bytes of an entry alone.
const fullUnits = 4

// pack holds r in e if its buckets fit, and reports whether they did.
func (e *acctEntry) pack(r *acctRec) bool {
	var n uint8
	for d := 0; d <= keyKeep; d++ {
		var c uint32
		if d <= accountKeep {
			c = r.n[d]
		}
		if c == 0 && r.sec[d] == 0 && r.key[d] == 0 {
			continue
		}
		if n == entrySlots || c > slotMaxN || r.sec[d] > slotMaxSec {
			return false
		}
		e.slot[n] = acctSlot{key: r.key[d], meta: uint32(d) | uint32(r.sec[d])<<slotSecShift | c<<slotNShift}
		n++
	}
	e.newest, e.n = r.newest, n
	return true
}

// unpack sets r to the account e holds itself.
func (e *acctEntry) unpack(r *acctRec) {
	*r = acctRec{newest: e.newest}
	for _, s := range e.slot[:e.n] {
		d := s.meta & (1<<slotSecShift - 1)
		if d <= accountKeep {
			r.n[d] = s.meta >> slotNShift
		}
		r.key[d], r.sec[d] = s.key, uint16(s.meta>>slotSecShift&slotMaxSec)
	}
}

// accounts holds the recent like counts of accounts. Accounts with no like
// in the last keyKeep buckets are dropped: they cannot change a weight or
// a like's lockstep keys.
// Each account's counts are stored in one record (store.Account), written
// at each commit the account liked something, so that an account evicted
// from memory, or not loaded after a restart, costs a lookup or two (one
// an epoch: see accountEpoch). In memory they are a table without
// pointers, which the garbage collector skips.
type accounts struct {
	part   *store.Partition
	bucket int64
	max    int // bound on len(t) + (fullUnits-1) * the accounts held whole
	t      *table[acctEntry]
	// full holds the accounts with more buckets than an entry holds;
	// free lists its unused records.
	full  []acctRec
	free  []int32
	cur   acctRec // the account being changed, unpacked from its entry
	dirty []int32 // entries liked since the last commit
	// left tells which accounts not in memory the store may hold a
	// record of that a like still needs (leftaccounts.go): a miss reads
	// the store only for those.
	left  *leftAccounts
	reads int64 // accounts read from the store
	// epochs are those the store holds records of, in order: a read
	// looks from the latest back. dropBelow is the first epoch a like may
	// still read (readableFrom), dropped the epoch the store's records are
	// deleted before, as of the last commit.
	epochs             []int64
	dropBelow, dropped int64
	swept              int64 // bucket of the last sweep for accounts gone quiet
	scratch            []acctBucket
	key                []byte
	// filter: the partition's filter of keys (shared with its engine,
	// which never runs at the same time as its stage), which holds every
	// account the store may hold, so that a new account is not read.
	filter *filter
	fkey   []byte
}

// rec returns the record of entry i: its whole one, or the entry unpacked
// into a.cur. Call put after changing it.
func (a *accounts) rec(i int) *acctRec {
	e := a.t.Val(i)
	if e.full > 0 {
		return &a.full[e.full-1]
	}
	e.unpack(&a.cur)
	return &a.cur
}

// put keeps r, returned by rec(i) and changed, in entry i: in the entry
// if it fits (an account held whole whose old buckets have gone as it
// liked again is held in its entry again), else whole.
func (a *accounts) put(i int, r *acctRec) {
	e := a.t.Val(i)
	if k := e.full; e.pack(r) {
		if k > 0 {
			e.full = 0
			a.free = append(a.free, k-1)
		}
		return
	}
	if e.full > 0 {
		e.newest, e.n = r.newest, 0
		return
	}
	var k int32
	if n := len(a.free); n > 0 {
		k, a.free = a.free[n-1], a.free[:n-1]
	} else {
		a.full = append(a.full, acctRec{})
		k = int32(len(a.full) - 1)
	}
	a.full[k] = *r
	e.full, e.newest, e.n = k+1, r.newest, 0
}

// drop deletes entry i, and its whole record if it has one.
func (a *accounts) drop(i int) {
	e := a.t.Val(i)
	if e.full > 0 {
		a.free = append(a.free, e.full-1)
	}
	a.left.add(a.t.Key(i), e.newest, a.max)
	a.t.Delete(i)
}

// load is what the accounts in memory count against max.
func (a *accounts) load() int { return a.t.Len() + (fullUnits-1)*(len(a.full)-len(a.free)) }

func newAccounts(part *store.Partition, bucket int64, maxAccounts int) *accounts {
	a := &accounts{part: part, bucket: bucket, t: newTable[acctEntry](), left: newLeftAccounts(math.MinInt64),
		dropBelow: math.MinInt64, dropped: math.MinInt64}
	a.setMax(maxAccounts)
	return a
}

// setMax sets the bound on the accounts in memory, and the table's hint.
func (a *accounts) setMax(maxAccounts int) {
	a.max = maxAccounts
	a.t.hint = maxAccounts
}

// counted converts a threshold in likes an hour to likes in the counted
// buckets, which span an hour only when a bucket is 5 minutes.
func (a *accounts) counted(perHour int64) int64 {
	return max(perHour*accountBuckets*a.bucket/3_600_000, 1)
}

// like counts a like by user at ts, of lockstep key key (its video's and
// time's: lockKey), and returns its weight for the
// threshold perHour, the account's likes in the counted buckets before it
// and the number of those buckets it liked in, and whether it is the
// account's first like of its bucket; keys gets its lockstep keys, each
// with its popularity in its bucket as pop gives it.
func (a *accounts) like(user string, key uint32, ts, perHour int64, keys *lockKeys, pop func(bucket int64, key uint32) uint8) (w, recent int64, active int, first bool, err error) {
	b := floorDiv(ts, a.bucket)
	a.key = append(a.key[:0], user...)
	i, added := a.t.Put(a.key)
	r := &a.cur
	if !added {
		r = a.rec(i)
	} else {
		a.cur = acctRec{}
		// The filter of keys learns every account (seen adds it); the
		// filters of those let go are asked only about one it knew.
		read := true
		if a.filter != nil {
			a.fkey = store.AccountKey(a.fkey[:0], user)
			read = a.filter.seen(a.fkey)
		}
		upTo := int64(0)
		if read {
			upTo, read = a.left.may(a.key, b)
		}
		if read {
			// The record is of the last like's epoch; that like is in
			// the latest span of the filters that knows the account (a
			// false positive only costs a lookup).
			a.reads++
			hi := epochOf(upTo)
			if upTo == math.MaxInt64 {
				hi = math.MaxInt64
			}
			var err error
			if a.scratch, err = a.part.Account(user, a.epochs, epochOf(b-keyKeep), hi, a.scratch[:0]); err != nil {
				a.t.Delete(i) // the last entry, just added: no other moves
				return 0, 0, 0, false, err
			}
			r.set(a.scratch)
		}
	}
	for k := b - accountLag - accountBuckets + 1; k <= b-accountLag; k++ {
		if n := r.count(k); n > 0 {
			recent += n
			active++
		}
	}
	*keys = lockKeys{}
	for k := b - accountLag; k > b-accountLag-lockBuckets && keys.n < lockKeyCount; k-- {
		if d := r.newest - k; d >= 0 && d <= keyKeep && r.sec[d] > 0 {
			keys.add(r.key[d], pop(k, r.key[d]))
		}
	}
	first = r.count(b) == 0
	r.add(b)
	r.mark(b, key, uint16(min(floorDiv(ts-b*a.bucket, 1000)+1, 1<<16-1)))
	a.put(i, r)
	if e := a.t.Val(i); !e.dirty {
		e.dirty = true
		a.dirty = append(a.dirty, int32(i))
	}
	return scoring.AccountWeight(recent, a.counted(perHour)), recent, active, first, nil
}

// count returns the likes in bucket b.
func (r *acctRec) count(b int64) int64 {
	if d := r.newest - b; d >= 0 && d <= accountKeep {
		return int64(r.n[d])
	}
	return 0
}

// mark makes key, of a like at second sec-1 of bucket b, the bucket's
// newest if it is: later, or as late with a larger key. Call after add(b).
func (r *acctRec) mark(b int64, key uint32, sec uint16) {
	d := r.newest - b
	if d < 0 || d > keyKeep {
		return
	}
	if sec > r.sec[d] || (sec == r.sec[d] && key > r.key[d]) {
		r.key[d], r.sec[d] = key, sec
	}
}

// add counts a like in bucket b. Buckets older than newest-accountKeep
// (keys: newest-keyKeep) are dropped: no future like can look at them.
func (r *acctRec) add(b int64) {
	empty := r.n == [accountKeep + 1]uint32{} && r.sec == [keyKeep + 1]uint16{}
	switch d := r.newest - b; {
	case empty:
		r.newest = b
	case d < 0:
		shift := min(-d, accountKeep+1)
		copy(r.n[shift:], r.n[:accountKeep+1-shift])
		clear(r.n[:shift])
		ks := min(-d, keyKeep+1)
		copy(r.key[ks:], r.key[:keyKeep+1-ks])
		clear(r.key[:ks])
		copy(r.sec[ks:], r.sec[:keyKeep+1-ks])
		clear(r.sec[:ks])
		r.newest = b
	case d > accountKeep:
		return
	}
	if d := r.newest - b; r.n[d] < ^uint32(0) {
		r.n[d]++
	}
}

// set loads stored counts.
func (r *acctRec) set(bs []acctBucket) {
	*r = acctRec{}
	if len(bs) == 0 {
		return
	}
	r.newest = bs[len(bs)-1].Bucket
	for _, x := range bs {
		if d := r.newest - x.Bucket; d >= 0 && d <= accountKeep {
			r.n[d] = uint32(min(x.N, int64(^uint32(0))))
		}
		if d := r.newest - x.Bucket; d >= 0 && d <= keyKeep {
			r.key[d], r.sec[d] = x.Key, x.Sec
		}
	}
}

// buckets appends the non-empty buckets, oldest first, as stored.
func (r *acctRec) buckets(dst []acctBucket) []acctBucket {
	for d := keyKeep; d >= 0; d-- {
		var n uint32
		if d <= accountKeep {
			n = r.n[d]
		}
		if n > 0 || r.sec[d] > 0 {
			dst = append(dst, acctBucket{Bucket: r.newest - int64(d), N: int64(n), Key: r.key[d], Sec: r.sec[d]})
		}
	}
	return dst
}

// save writes the accounts that liked since the last commit, in the order
// they first liked since (the order of the events, so the same in every
// run; sorting them by id took half of this, while the partitions waited
// for a live commit). Buckets too old to matter are dropped as accounts
// like again. Then it deletes the epochs of records no like can read any
// more, once dropBelow has moved: after the records it writes, so that an
// account written into such an epoch goes too. So an account that never
// likes again leaves the store with its epoch (see accountEpoch).
func (a *accounts) save(w *store.Writer) error {
	for _, i := range a.dirty {
		r := a.rec(int(i))
		ep := epochOf(r.newest)
		if at, found := slices.BinarySearch(a.epochs, ep); !found {
			a.epochs = slices.Insert(a.epochs, at, ep)
		}
		a.scratch = r.buckets(a.scratch[:0])
		if err := w.SetAccount(ep, string(a.t.Key(int(i))), a.scratch); err != nil {
			return err
		}
		a.t.Val(int(i)).dirty = false
	}
	a.dirty = a.dirty[:0]
	if a.dropBelow > a.dropped {
		if err := w.DeleteAccountEpochs(a.dropBelow); err != nil {
			return err
		}
		a.dropped = a.dropBelow
		at, _ := slices.BinarySearch(a.epochs, a.dropped)
		a.epochs = a.epochs[at:]
	}
	return nil
}

// readableFrom sets the first bucket a like may still be weighed in: the
// records of epochs wholly more than keyKeep before it are deleted at the
// next commit.
func (a *accounts) readableFrom(bucket int64) {
	a.dropBelow = max(a.dropBelow, epochOf(bucket-keyKeep))
}

// evict drops saved accounts that cannot change a weight any more and,
// beyond the bound, recent ones too (they are then read back when needed).
// It is called once a commit is durable; accounts liked since it was
// written stay.
func (a *accounts) evict(current int64) {
	n0 := a.t.Len()
	defer func() {
		if a.t.Len() < n0 && len(a.dirty) > 0 {
			a.reindexDirty()
		}
	}()
	// An account goes quiet for good only as buckets close: sweep once a
	// bucket, not at every commit.
	if current > a.swept {
		a.swept = current
		for i := a.t.Len() - 1; i >= 0; i-- {
			if e := a.t.Val(i); e.newest < current-keyKeep && !e.dirty {
				a.drop(i)
			}
		}
	}
	if n := a.load() - a.max*3/4; a.load() > a.max && n > 0 {
		// Which go does not matter for correctness, only for speed: those
		// least worth keeping (keepValue) first.
		units := func(e *acctEntry) int {
			if e.full > 0 {
				return fullUnits
			}
			return 1
		}
		var values [maxKeepValue + 1]int
		for i := range a.t.Len() {
			e := a.t.Val(i)
			values[keepValue(e, current)] += units(e)
		}
		cut, below := 0, 0 // delete values below cut, and some of cut
		for cut < maxKeepValue && below+values[cut] <= n {
			below += values[cut]
			cut++
		}
		some := n - below
		for i := a.t.Len() - 1; i >= 0; i-- {
			e := a.t.Val(i)
			switch v := keepValue(e, current); {
			case e.dirty:
			case v < cut:
				a.drop(i)
			case v == cut && some > 0:
				some -= units(e)
				a.drop(i)
			}
		}
	}
}

// keepValue is what keeping an account in memory is worth, a unit of the
// bound's: the buckets it liked in over the last keyKeep (how likely it is
// to like again) times those left before its last like is too old for any
// like to read its record (how long a like would need it), over the units
// it takes. Going by age alone (the oldest last like first, a day's
// active accounts being more than the bound holds), B1 read 1.24M
// accounts back from the store; by this, 1.03M (bench/RESULTS.md).
func keepValue(e *acctEntry, current int64) int {
	left := keyKeep + 1 - int(min(max(current-e.newest, 0), keyKeep+1))
	if e.full > 0 {
		return (entrySlots + 1) * left // more buckets than an entry holds, fullUnits units
	}
	return int(e.n) * left * fullUnits
}

// maxKeepValue bounds keepValue.
const maxKeepValue = entrySlots * (keyKeep + 1) * fullUnits

// reindexDirty lists the dirty accounts again after deletions, which move
// entries to other indexes.
func (a *accounts) reindexDirty() {
	a.dirty = a.dirty[:0]
	for i := range a.t.Len() {
		if a.t.Val(i).dirty {
			a.dirty = append(a.dirty, int32(i))
		}
	}
}

// open prepares the accounts of a partition opened on stored state whose
// stage had closed the buckets up to closed (math.MinInt64: none): they
// are read from the store as they like again, while their records may
// matter. A like is weighed at most accountLag buckets after the buckets
// closed (a held one waits until its b-accountLag is), so no stored
// account has a like after closed+accountLag.
//
// The epochs the store holds records of are read from it; the first
// commit deletes those before dropBelow again.
func (a *accounts) open(closed int64) error {
	from := int64(math.MinInt64)
	if closed > math.MinInt64 {
		from = closed + accountLag + 1
	}
	a.left = newLeftAccounts(from)
	a.dropped = math.MinInt64
	var err error
	a.epochs, err = a.part.AccountEpochs()
	return err
}
