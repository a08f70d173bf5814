package processor

import (
	"container/heap"
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
	// The position in the trees, which lags the fields above until the
	// next snapshot: a video that changes many times between two ticks
	// moves in the trees once.
	treeScore  float64
	treeRegion string
	encoded    []byte // the list entry at treeScore, as JSON
	inTree     bool
	queued     bool
	at         int64 // tick index at which it expires unless it changes
	dirty      bool
	gone       bool // unlisted
}

func candLess(a, b *candidate) bool {
	if a.treeScore != b.treeScore {
		return a.treeScore > b.treeScore
	}
	return a.video < b.video
}

// ranking keeps the candidates of one partition ordered, globally and per
// home region, and drops those whose latest event falls out of the horizon.
//
// A video's trending score is the one computed at its latest change, so
// the ranking changes only when a video does: a snapshot costs O(K) plus
// O(log n) for each video changed since the last one, whatever the number
// of videos. A video leaves the lists once its latest event is a horizon
// older than the tick.
type ranking struct {
	tick, horizon int64
	cands         map[string]*candidate
	global        *btree.BTreeG[*candidate]
	regions       map[string]*btree.BTreeG[*candidate]
	changed       []*candidate
	// expiry holds, per tick index, the candidates that may expire then;
	// stale entries are skipped when their candidate changed since.
	expiry  map[int64][]*candidate
	pending int64Heap
	dirty   []*candidate
}

func newRanking(tick, horizon int64) *ranking {
	return &ranking{
		tick:    tick,
		horizon: horizon,
		cands:   map[string]*candidate{},
		global:  btree.NewG(16, candLess),
		regions: map[string]*btree.BTreeG[*candidate]{},
		expiry:  map[int64][]*candidate{},
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
// places in the trees.
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
	if !c.inTree {
		return
	}
	r.global.Delete(c)
	if t := r.regions[c.treeRegion]; t != nil {
		t.Delete(c)
		if t.Len() == 0 {
			delete(r.regions, c.treeRegion)
		}
	}
	c.inTree = false
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
	if c.treeScore != c.score || c.encoded == nil {
		// A fresh slice: pending snapshots may still hold the old one.
		c.encoded = appendRanked(nil, c.video, c.score)
	}
	c.treeScore, c.treeRegion, c.inTree = c.score, c.region, true
	r.global.ReplaceOrInsert(c)
	if c.region == "" {
		return
	}
	t := r.regions[c.region]
	if t == nil {
		t = btree.NewG(16, candLess)
		r.regions[c.region] = t
	}
	t.ReplaceOrInsert(c)
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

// snapshot ranks the candidates at tick t.
func (r *ranking) snapshot(t int64, k int) *Snapshot {
	r.settle()
	r.expire(t)
	s := &Snapshot{Tick: t}
	s.Lists = append(s.Lists, List{Region: GlobalRegion, Videos: top(r.global, k)})
	names := make([]string, 0, len(r.regions))
	for n := range r.regions {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s.Lists = append(s.Lists, List{Region: n, Videos: top(r.regions[n], k)})
	}
	return s
}

func (r *ranking) empty() bool { return len(r.cands) == 0 }

func top(t *btree.BTreeG[*candidate], k int) []Ranked {
	out := make([]Ranked, 0, min(k, t.Len()))
	t.Ascend(func(c *candidate) bool {
		out = append(out, Ranked{Video: c.video, Score: c.treeScore, encoded: c.encoded})
		return len(out) < k
	})
	return out
}

// load restores a candidate from the store.
func (r *ranking) load(c store.Candidate) {
	if c.Score <= 0 {
		// Committed between its last change and the snapshot that would
		// have unlisted it.
		return
	}
	n := &candidate{video: c.Video, score: c.Score, last: c.LastLike, region: c.Region}
	r.cands[c.Video] = n
	r.place(n)
}

// save writes the candidates changed since the last commit.
func (r *ranking) save(w *store.Writer) error {
	for _, c := range r.dirty {
		c.dirty = false
		if r.cands[c.video] == c {
			sc := store.Candidate{Video: c.video, Score: c.score, LastLike: c.last, Region: c.region}
			if err := w.SetCandidate(&sc); err != nil {
				return err
			}
		} else if r.cands[c.video] == nil {
			if err := w.DeleteCandidate(c.video); err != nil {
				return err
			}
		}
	}
	r.dirty = r.dirty[:0]
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
