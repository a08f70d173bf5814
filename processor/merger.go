package processor

import (
	"encoding/json"
	"math"
	"slices"
	"sort"
	"sync/atomic"

	"virality/store"
)

// merger combines the trending lists of a group's partitions into one
// snapshot per tick. A partition reports its lists at each tick its event
// time reaches and then its progress: every tick before its next one is
// reported (a tick it skipped, having nothing to list, contributes
// nothing). The snapshot of tick T is emitted once every partition that is
// not idle has passed T, so it is the same whatever order the partitions'
// records were interleaved in. An idle partition does not hold the others
// back: before a tick is emitted, idle partitions are asked to report it
// from their state as it is (advance). Reports for a tick already emitted
// (from a partition that was idle) are dropped.
type merger struct {
	topK     int
	emit     func(*Snapshot) error
	advance  func(id int32, upTo int64) error
	next     map[int32]int64
	idle     map[int32]bool
	pending  map[int64]map[int32][]List
	done     int64 // last tick emitted
	flushing bool
	// Persistence is incremental: reports still pending at a commit are
	// stored once each, and dropped with one range deletion once merged.
	unsaved   []report
	savedDone int64

	written int64
	latest  atomic.Pointer[latest]
}

// latest is the last emitted snapshot, for readers on other goroutines.
type latest struct {
	tick    int64
	lists   map[string]List
	regions []string
}

type report struct {
	tick int64
	part int32
}

// mergerState is what the group's meta record keeps of the merger; the
// pending reports are stored as records of their own.
type mergerState struct {
	Done int64 `json:"done"`
}

func newMerger(topK int, state []byte, emit func(*Snapshot) error) (*merger, error) {
	m := &merger{
		topK:    topK,
		emit:    emit,
		next:    map[int32]int64{},
		idle:    map[int32]bool{},
		pending: map[int64]map[int32][]List{},
	}
	if len(state) > 0 {
		var st mergerState
		if err := json.Unmarshal(state, &st); err != nil {
			return nil, err
		}
		m.done = st.Done
		m.savedDone = st.Done
	}
	return m, nil
}

func (m *merger) marshal(dst []byte) []byte {
	b, _ := json.Marshal(mergerState{Done: m.done})
	return append(dst, b...)
}

// load restores a stored report.
func (m *merger) load(tick int64, part int32, value []byte) error {
	var lists []List
	if err := json.Unmarshal(value, &lists); err != nil {
		return err
	}
	if tick > m.done {
		if m.pending[tick] == nil {
			m.pending[tick] = map[int32][]List{}
		}
		m.pending[tick][part] = lists
	}
	return nil
}

// save stores the reports received since the last commit that are still
// pending, and drops those merged since.
func (m *merger) save(w *store.Writer) error {
	if m.done > m.savedDone {
		if err := w.DeleteReportsThrough(m.done); err != nil {
			return err
		}
		m.savedDone = m.done
	}
	for _, r := range m.unsaved {
		lists, ok := m.pending[r.tick][r.part]
		if !ok {
			continue
		}
		b, err := json.Marshal(lists)
		if err != nil {
			return err
		}
		if err := w.SetReport(r.tick, r.part, b); err != nil {
			return err
		}
	}
	m.unsaved = m.unsaved[:0]
	return nil
}

func (m *merger) join(id int32, next int64) {
	m.next[id] = next
	delete(m.idle, id)
}

func (m *merger) leave(id int32) error {
	delete(m.next, id)
	delete(m.idle, id)
	return m.flush()
}

func (m *merger) setIdle(id int32, idle bool) error {
	if _, ok := m.next[id]; !ok {
		return nil
	}
	if idle {
		m.idle[id] = true
	} else {
		delete(m.idle, id)
	}
	return m.flush()
}

func (m *merger) report(id int32, s *Snapshot) {
	if s.Tick <= m.done {
		return
	}
	byPart := m.pending[s.Tick]
	if byPart == nil {
		byPart = map[int32][]List{}
		m.pending[s.Tick] = byPart
	}
	byPart[id] = s.Lists
	m.unsaved = append(m.unsaved, report{s.Tick, id})
}

func (m *merger) progress(id int32, next int64) error {
	m.next[id] = next
	return m.flush()
}

// frontier is the first tick some active partition has not passed.
func (m *merger) frontier() int64 {
	f := int64(math.MaxInt64)
	for id, n := range m.next {
		if !m.idle[id] {
			f = min(f, n)
		}
	}
	return f
}

func (m *merger) flush() error {
	if m.flushing {
		return nil
	}
	m.flushing = true
	defer func() { m.flushing = false }()
	f := m.frontier()
	if f == math.MaxInt64 {
		// Every partition is idle: close the ticks some have reported.
		return m.emitBefore(f)
	}
	if m.advance != nil {
		ids := make([]int32, 0, len(m.idle))
		for id := range m.idle {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		for _, id := range ids {
			if m.next[id] > 0 && m.next[id] < f {
				if err := m.advance(id, f); err != nil {
					return err
				}
			}
		}
	}
	if len(m.pending) == 0 {
		return nil
	}
	return m.emitBefore(f)
}

// finish emits every pending tick: a bounded input has ended.
func (m *merger) finish() error { return m.emitBefore(math.MaxInt64) }

func (m *merger) emitBefore(f int64) error {
	var ticks []int64
	for t := range m.pending {
		if t < f {
			ticks = append(ticks, t)
		}
	}
	slices.Sort(ticks)
	for _, t := range ticks {
		s := m.merge(t, m.pending[t])
		delete(m.pending, t)
		m.done = t
		if err := m.emit(s); err != nil {
			return err
		}
		m.written += int64(len(s.Lists))
		l := &latest{tick: t, lists: map[string]List{}}
		for _, x := range s.Lists {
			l.lists[x.Region] = x
			l.regions = append(l.regions, x.Region)
		}
		m.latest.Store(l)
	}
	return nil
}

func (m *merger) merge(tick int64, byPart map[int32][]List) *Snapshot {
	ids := make([]int32, 0, len(byPart))
	for id := range byPart {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	if len(ids) == 1 {
		// One partition: its lists are already the answer.
		return &Snapshot{Tick: tick, Lists: byPart[ids[0]]}
	}
	all := map[string][]Ranked{GlobalRegion: nil}
	for _, id := range ids {
		for _, l := range byPart[id] {
			all[l.Region] = append(all[l.Region], l.Videos...)
		}
	}
	regions := make([]string, 0, len(all))
	for r := range all {
		if r != GlobalRegion {
			regions = append(regions, r)
		}
	}
	sort.Strings(regions)
	s := &Snapshot{Tick: tick}
	for _, r := range append([]string{GlobalRegion}, regions...) {
		vs := all[r]
		sort.Slice(vs, func(i, j int) bool {
			if vs[i].Score != vs[j].Score {
				return vs[i].Score > vs[j].Score
			}
			return vs[i].Video < vs[j].Video
		})
		if len(vs) > m.topK {
			vs = vs[:m.topK]
		}
		if vs == nil {
			vs = []Ranked{}
		}
		s.Lists = append(s.Lists, List{Region: r, Videos: vs})
	}
	return s
}
