package processor

import (
	"container/heap"
	"slices"
	"sort"

	"github.com/google/btree"

	"github.com/viralityhq/virality/store"
)

// Ranked is one entry of a trending list.
type Ranked struct {
	Video string
	Score float64
	// encoded is the entry as JSON, kept with the candidate so that a video
	// that stays listed tick after tick is formatted once.
	encoded []byte
}

// List is the trending list of one region ("global" for all).
type List struct {
	Region string
	Videos []Ranked
}

// Snapshot is the trending lists at one tick of event time.
type Snapshot struct {
	Tick  int64
	Lists []List // global first, then regions by name
}

// GlobalRegion names the list of all regions.
const GlobalRegion = "global"

// candidate is a video that may be listed: its score as of its latest
// change, its latest event time and its home region.
type candidate struct {
	video  string
	score  float64
	last   int64
	region string
	// The position in the boards, which lags the fields above until the
	// next snapshot: a video that changes many times between two ticks
	// moves once.
	treeScore  float64
	treeRegion string
	board      *board // treeRegion's, while listed; nil for none
	encoded    []byte // the list entry at treeScore, as JSON; nil until it enters a tree
	listed     bool   // counted in the global board and treeRegion's
	inGlobal   bool   // in the global board's tree
	inRegion   bool   // in treeRegion's board's tree
	queued     bool
	at         int64 // tick index at which it expires unless it changes
	dirty      bool
	gone       bool // unlisted
	// stored: the store holds this candidate's record (loaded, or written
	// by a commit), so that its drop must delete it. Most candidates a
	// catch-up drops were listed and unlisted between two commits: their
	// deletions were 95% of the candidate keys it wrote, each a tombstone
	// in Pebble and a record on the changelog.
	stored bool
}

func candLess(a, b *candidate) bool {
	if a.treeScore != b.treeScore {
		return a.treeScore > b.treeScore
	}
	return a.video < b.video
}

// board is the candidates of one list: of all regions, or of one home
// region. Only those that can reach the top k are kept ordered, so that
// the many candidates far below it (videos with a like or two in the
// horizon) cost a comparison when they change, not moves in a tree.
//
// Invariant: while bounded, every candidate in the tree ranks at or
// before floor and every other one of the board after it; unbounded, the
// tree holds them all. A snapshot first fits the board: a tree that grew
// past trimAt×k is cut back to keepAt×k (floor: the last one kept), and a
// bounded tree that fell below k (its members dropped or expired) is
// refilled with the best keepAt×k from a scan of the candidates. So the
// first k of the tree are the first k of the board.
type board struct {
	tree    *btree.BTreeG[*candidate]
	n       int // listed candidates, in the tree or not
	bounded bool
	floor   candidate // treeScore and video: the key of the last one kept
	// list is the top k at the last snapshot, shared with it; full: it
	// has k entries; stale: a change since may have moved it.
	list  []Ranked
	full  bool
	stale bool
}

const (
	keepAt = 2 // a fitted tree holds keepAt × k candidates...
	trimAt = 4 // ...and is cut back when it holds more than trimAt × k
)

func newBoard() *board { return &board{tree: btree.NewG(16, candLess), stale: true} }

func (b *board) add(c *candidate, in *bool) {
	b.n++
	if b.bounded && candLess(&b.floor, c) {
		return
	}
	b.insert(c, in)
}

func (b *board) remove(c *candidate, in *bool) {
	b.n--
	if *in {
		b.delete(c, in)
	}
}

func (b *board) insert(c *candidate, in *bool) {
	if c.encoded == nil {
		c.encoded = appendRanked(nil, c.video, c.treeScore)
	}
	b.tree.ReplaceOrInsert(c)
	*in = true
	b.touch(c)
}

func (b *board) delete(c *candidate, in *bool) {
	b.tree.Delete(c)
	*in = false
	b.touch(c)
}

// touch marks the list stale if c, at its position in the tree, is or
// would be in it.
func (b *board) touch(c *candidate) {
	if b.stale {
		return
	}
	if !b.full {
		// Any change may lengthen or shorten a short list.
		b.stale = true
		return
	}
	l := &b.list[len(b.list)-1]
	if c.treeScore > l.Score || (c.treeScore == l.Score && c.video <= l.Video) {
		b.stale = true
	}
}

// needsRefill reports whether the tree lacks candidates for a list of k
// that only a scan can find.
func (b *board) needsRefill(k int) bool {
	if b.bounded && b.tree.Len() == b.n {
		b.bounded = false
	}
	return b.bounded && b.tree.Len() < k
}

// trim cuts a tree of more than trimAt×k candidates back to keepAt×k.
func (b *board) trim(k int, flag func(*candidate) *bool) {
	if b.tree.Len() <= trimAt*k {
		return
	}
	for b.tree.Len() > keepAt*k {
		c, _ := b.tree.DeleteMax()
		*flag(c) = false
		b.touch(c)
	}
	last, _ := b.tree.Max()
	b.floor = candidate{video: last.video, treeScore: last.treeScore}
	b.bounded = true
}

// refill adds to the tree the best of the candidates outside it, given
// all of them (in any order), so that it holds keepAt×k again.
func (b *board) refill(k int, outside []*candidate, flag func(*candidate) *bool) {
	need := keepAt*k - b.tree.Len()
	if len(outside) <= need {
		for _, c := range outside {
			b.insert(c, flag(c))
		}
		b.bounded = false
		return
	}
	slices.SortFunc(outside, func(x, y *candidate) int {
		if candLess(x, y) {
			return -1
		}
		return 1
	})
	for _, c := range outside[:need] {
		b.insert(c, flag(c))
	}
	last, _ := b.tree.Max()
	b.floor = candidate{video: last.video, treeScore: last.treeScore}
}

// top returns the first k of the board: the last list if nothing that
// could move it changed.
func (b *board) top(k int, reuse bool) []Ranked {
	if !b.stale {
		return b.list
	}
	var out []Ranked
	if n := min(k, b.tree.Len()); reuse && cap(b.list) >= n {
		out = b.list[:0]
	} else {
		out = make([]Ranked, 0, n)
	}
	b.tree.Ascend(func(c *candidate) bool {
		out = append(out, Ranked{Video: c.video, Score: c.treeScore, encoded: c.encoded})
		return len(out) < k
	})
	b.list, b.full, b.stale = out, len(out) == k, false
	return out
}

// ranking keeps the candidates of one partition on boards, globally and
// per home region, and drops those whose latest event falls out of the
// horizon.
//
// A video's trending score is the one computed at its latest change, so
// the ranking changes only when a video does: a snapshot costs O(K) plus,
// for each video changed since the last one, O(log K) if it can reach a
// list and O(1) if not, and now and then a scan of the candidates to
// refill a board (see board). A video leaves the lists once its latest
// event is a horizon older than the tick.
type ranking struct {
	tick, horizon int64
	cands         map[string]*candidate
	global        *board
	regions       map[string]*board
	changed       []*candidate
	// expiry holds, per tick index, the candidates that may expire then;
	// stale entries are skipped when their candidate changed since.
	expiry  map[int64][]*candidate
	pending int64Heap
	dirty   []*candidate
	// unlisted: videos whose stored record, loaded, was not listed (a
	// score of 0, committed before the drop that would have deleted it):
	// the next commit deletes it unless the video is listed again.
	unlisted []string
	scratch  map[*board][]*candidate
	// reuse: a snapshot is encoded before the next is taken (the live
	// service's partials), so the next one reuses its arrays: the lists'
	// and the boards' (board.top).
	reuse bool
	snap  Snapshot
	names []string
}

func newRanking(tick, horizon int64) *ranking {
	return &ranking{
		tick:    tick,
		horizon: horizon,
		cands:   map[string]*candidate{},
		global:  newBoard(),
		regions: map[string]*board{},
		expiry:  map[int64][]*candidate{},
		scratch: map[*board][]*candidate{},
	}
}

func (r *ranking) expiresAt(last int64) int64 {
	return ceilDiv(last+r.horizon, r.tick)
}

// update sets a video's score; a score of 0 or less unlists it.
func (r *ranking) update(video string, score float64, last int64, region string) {
	c := r.cands[video]
	if c == nil {
		if score <= 0 {
			return
		}
		c = &candidate{video: video}
		r.cands[video] = c
	} else if c.score == score && c.last == last && c.region == region {
		return
	}
	c.score, c.last, c.region = score, last, region
	if !c.queued {
		c.queued = true
		r.changed = append(r.changed, c)
	}
	r.markDirty(c)
}

// settle moves the candidates changed since the last snapshot to their
// places on the boards.
func (r *ranking) settle() {
	for _, c := range r.changed {
		c.queued = false
		if c.gone {
			continue
		}
		r.unplace(c)
		if c.score <= 0 {
			r.drop(c)
			continue
		}
		r.place(c)
	}
	r.changed = r.changed[:0]
}

func (r *ranking) unplace(c *candidate) {
	if !c.listed {
		return
	}
	r.global.remove(c, &c.inGlobal)
	if b := c.board; b != nil {
		b.remove(c, &c.inRegion)
		if b.n == 0 {
			delete(r.regions, c.treeRegion)
		}
		c.board = nil
	}
	c.listed = false
}

func (r *ranking) place(c *candidate) {
	if at := r.expiresAt(c.last); at != c.at {
		// Entries under the old tick go stale and are skipped there.
		c.at = at
		if len(r.expiry[at]) == 0 {
			heap.Push(&r.pending, at)
		}
		r.expiry[at] = append(r.expiry[at], c)
	}
	if c.treeScore != c.score {
		// Encoded again when it enters a tree: a fresh slice, as pending
		// snapshots may still hold the old one.
		c.encoded = nil
	}
	c.treeScore, c.treeRegion, c.listed = c.score, c.region, true
	r.global.add(c, &c.inGlobal)
	if c.region == "" {
		return
	}
	b := r.regions[c.region]
	if b == nil {
		b = newBoard()
		r.regions[c.region] = b
	}
	c.board = b
	b.add(c, &c.inRegion)
}

func (r *ranking) drop(c *candidate) {
	delete(r.cands, c.video)
	c.gone = true
	r.markDirty(c)
}

func (r *ranking) markDirty(c *candidate) {
	if !c.dirty {
		c.dirty = true
		r.dirty = append(r.dirty, c)
	}
}

// expire drops candidates whose latest event is a horizon or more before
// tick t (in ms).
func (r *ranking) expire(t int64) {
	idx := t / r.tick
	for r.pending.Len() > 0 && r.pending[0] <= idx {
		at := heap.Pop(&r.pending).(int64)
		for _, c := range r.expiry[at] {
			if c.gone || c.at != at {
				continue
			}
			r.unplace(c)
			r.drop(c)
		}
		delete(r.expiry, at)
	}
}

func inGlobal(c *candidate) *bool { return &c.inGlobal }
func inRegion(c *candidate) *bool { return &c.inRegion }

// fit trims the boards that grew and refills those that fell short of k,
// with one scan of the candidates for all that need one.
func (r *ranking) fit(k int) {
	r.global.trim(k, inGlobal)
	for _, b := range r.regions {
		b.trim(k, inRegion)
	}
	refillGlobal := r.global.needsRefill(k)
	clear(r.scratch)
	for _, b := range r.regions {
		if b.needsRefill(k) {
			r.scratch[b] = nil
		}
	}
	if !refillGlobal && len(r.scratch) == 0 {
		return
	}
	var global []*candidate
	for _, c := range r.cands {
		if !c.listed {
			continue
		}
		if refillGlobal && !c.inGlobal {
			global = append(global, c)
		}
		if c.board == nil || c.inRegion {
			continue
		}
		b := c.board
		if out, ok := r.scratch[b]; ok {
			r.scratch[b] = append(out, c)
		}
	}
	if refillGlobal {
		r.global.refill(k, global, inGlobal)
	}
	for b, out := range r.scratch {
		b.refill(k, out, inRegion)
	}
}

// advance closes tick t without listing: the candidates changed since the
// last tick take their places and the expired ones leave, as a snapshot
// at t would have it.
func (r *ranking) advance(t int64) {
	r.settle()
	r.expire(t)
}

// snapshot ranks the candidates at tick t.
func (r *ranking) snapshot(t int64, k int) *Snapshot {
	r.advance(t)
	r.fit(k)
	s, names := &Snapshot{Tick: t}, make([]string, 0, len(r.regions))
	if r.reuse {
		r.snap.Tick, r.snap.Lists = t, r.snap.Lists[:0]
		s, names = &r.snap, r.names[:0]
	}
	s.Lists = append(s.Lists, List{Region: GlobalRegion, Videos: r.global.top(k, r.reuse)})
	for n := range r.regions {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s.Lists = append(s.Lists, List{Region: n, Videos: r.regions[n].top(k, r.reuse)})
	}
	if r.reuse {
		r.names = names
	}
	return s
}

func (r *ranking) empty() bool { return len(r.cands) == 0 }

// load restores a candidate from the store.
func (r *ranking) load(c store.Candidate) {
	if c.Score <= 0 {
		// Committed between its last change and the snapshot that would
		// have unlisted it.
		r.unlisted = append(r.unlisted, c.Video)
		return
	}
	n := &candidate{video: c.Video, score: c.Score, last: c.LastLike, region: c.Region, stored: true}
	r.cands[c.Video] = n
	r.place(n)
}

// save writes the candidates changed since the last commit. A dropped
// candidate's record is deleted if the store has it; when the video has
// a candidate again, that one's record replaces it.
func (r *ranking) save(w *store.Writer) error {
	for _, c := range r.dirty {
		c.dirty = false
		if !c.gone { // r.cands[c.video] == c: only drop takes it out
			sc := store.Candidate{Video: c.video, Score: c.score, LastLike: c.last, Region: c.region}
			if err := w.SetCandidate(&sc); err != nil {
				return err
			}
			c.stored = true
		} else if r.cands[c.video] == nil && c.stored {
			if err := w.DeleteCandidate(c.video); err != nil {
				return err
			}
			c.stored = false
		}
	}
	r.dirty = r.dirty[:0]
	for _, v := range r.unlisted {
		if r.cands[v] != nil {
			// Listed again: written above, over the old record.
			continue
		}
		if err := w.DeleteCandidate(v); err != nil {
			return err
		}
	}
	r.unlisted = r.unlisted[:0]
	return nil
}

type int64Heap []int64

func (h int64Heap) Len() int           { return len(h) }
func (h int64Heap) Less(i, j int) bool { return h[i] < h[j] }
func (h int64Heap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *int64Heap) Push(x any)        { *h = append(*h, x.(int64)) }
func (h *int64Heap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func ceilDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) == (b < 0) {
		q++
	}
	return q
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// writtenTick reports whether the lists of tick t (in ms) are written to
// the trending output: every TrendingEvery-th tick since the epoch.
func (c *Config) writtenTick(t int64) bool {
	n := int64(c.TrendingEvery)
	return n <= 1 || (t/c.Tick.Milliseconds())%n == 0
}
