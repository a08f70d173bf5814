package processor

import (
	"container/heap"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"sync/atomic"
	"unsafe"

	"github.com/viralityhq/virality/store"
)

// merger combines the trending lists of partitions into one snapshot per
// tick. A partition reports its lists at each tick it closes and then its
// progress: every tick before its next one is reported (a tick it skipped,
// having nothing to list, contributes nothing). The snapshot of tick T is
// emitted once every partition has passed T; partitions close a tick only
// when every event before it is applied, so the snapshot is the same
// whatever order the partitions' records were interleaved in. Reports for
// a tick already emitted are dropped.
type merger struct {
	topK    int
	emit    func(*Snapshot) error
	next    map[int32]int64
	pending map[int64]map[int32]pendingReport
	ticks   int64Heap // the keys of pending, to emit them in order
	// written reports whether a tick's snapshot is written to the
	// outputs; the others only update latest, and a tick merged together
	// with a later one is not merged at all (nil: every tick is merged).
	written func(tick int64) bool
	done    int64 // last tick emitted
	// Persistence is incremental: reports still pending at a commit are
	// stored once each, and dropped with one range deletion once merged.
	// Reports read from the partials topic are not stored: after a
	// restart the merger reads the topic again from the first of them
	// still pending (reread).
	unsaved   []report
	savedDone int64
	stored    bool // reports may be stored that the next range deletion drops
	buf       []byte
	// spareRaw are the arrays of reports read from the partials topic and
	// merged (or passed over), for the next ones: copied anew, they were
	// 6% of all a catch-up allocated (bench/RESULTS.md).
	spareRaw [][]byte

	// remote: fed by the partials topic, from offset on; after a
	// restart, the reports of offsets reread to offset, read before it and
	// not merged then, are read again.
	remote bool
	offset int64
	reread int64

	creators *creatorMerger // creators.go
	// pipe: the creator merger runs on a goroutine of its own (see
	// creatorPipe), fed at the end of each drain.
	pipe *creatorPipe

	latest *atomic.Pointer[latest] // shared with the coordinator
}

// creatorPipe runs the creator merger beside the coordinator: a bounded
// run's creator records are as many as its score records, and merging
// them on the coordinator's goroutine held up every step (a quarter of a
// backfill's time, bench/RESULTS.md). The coordinator queues the reports
// it takes and the frontier the partitions reach; at the end of a drain
// a job takes both, on its own goroutine, while the partitions apply the
// next step. Whatever else touches the creator merger or its outputs
// (a commit, a flush of the outputs, the end of the input) waits for the
// job first. A job merges the same reports up to the same frontier, in
// the same order, as the merger would in line, so the outputs do not
// change.
//
// The live service's merger, fed by the partials topic, runs one too: a
// tick's creators took 40-60 ms to merge on the goroutine that applies,
// six times a minute, and every like waited. Its flushes leave the
// creator outputs alone while a job writes to them (creatorsBusy).
type creatorPipe struct {
	queue   []creatorAdd
	front   int64 // the frontier to merge before
	started int64 // the frontier of the last job
	running bool
	done    chan error
	err     error // of a job that ended, seen by creatorsBusy
}

// maxQueuedCreators is how many reports (chunks of at most
// creatorChunkBytes) the pipe queues while a job runs.
const maxQueuedCreators = 64

type creatorAdd struct {
	part int32
	r    *creatorReport
	// raw: a record of the partials topic (at offset), which the job
	// decodes into r: the reports of a tick took 40-80 ms to decode on the
	// goroutine that applies.
	raw    []byte
	offset int64
}

// latest is the last emitted snapshot, for readers on other goroutines.
type latest struct {
	tick    int64
	lists   map[string]List
	regions []string
}

// pendingReport is a partition's lists at a tick not yet merged, as the
// engine took them, or (fed by the partials topic, or loaded from the
// store) encoded, to be decoded only if its tick is merged.
type pendingReport struct {
	lists []List
	raw   []byte // encodeLists; nil when lists holds the lists
	// offset is the report's offset in the partials topic, -1 for one
	// taken from an engine or loaded from the store.
	offset int64
}

// decode returns the report's lists.
func (r pendingReport) decode() ([]List, error) {
	if r.raw == nil {
		return r.lists, nil
	}
	return decodeLists(r.raw)
}

type report struct {
	tick int64
	part int32
}

// mergerState is what the group's meta record keeps of the merger; the
// pending reports are stored as records of their own.
type mergerState struct {
	Done int64 `json:"done"`
	// Next and Offset: of a merger fed by the partials topic, each
	// partition's next tick and the next offset of the topic to read.
	// Reread is the offset of the first report read and not yet merged
	// (Offset when there is none): the merger reads the topic from there,
	// and takes only the reports of the records before Offset.
	Next   map[int32]int64 `json:"next,omitempty"`
	Offset int64           `json:"offset,omitempty"`
	Reread int64           `json:"reread,omitempty"`
}

func newMerger(topK int, state []byte, emit func(*Snapshot) error) (*merger, error) {
	m := &merger{
		topK:    topK,
		emit:    emit,
		next:    map[int32]int64{},
		pending: map[int64]map[int32]pendingReport{},
		latest:  &atomic.Pointer[latest]{},
	}
	if len(state) > 0 {
		var st mergerState
		if err := json.Unmarshal(state, &st); err != nil {
			return nil, err
		}
		m.done = st.Done
		m.savedDone = st.Done
		m.offset = st.Offset
		m.reread = min(st.Reread, st.Offset)
		for id, n := range st.Next {
			m.next[id] = n
		}
	}
	return m, nil
}

func (m *merger) marshal(dst []byte) []byte {
	st := mergerState{Done: m.done}
	if m.remote {
		st.Next, st.Offset, st.Reread = m.next, m.offset, m.rereadFrom()
	}
	b, _ := json.Marshal(st)
	return append(dst, b...)
}

// rereadFrom returns the offset of the partials topic from which a
// restarted merger reads: that of the first report read and not yet
// merged, or the next offset when there is none.
func (m *merger) rereadFrom() int64 {
	from := m.offset
	for _, byPart := range m.pending {
		for _, r := range byPart {
			if r.offset >= 0 {
				from = min(from, r.offset)
			}
		}
	}
	return from
}

// holdsStored reports whether a pending report may be in the store: one
// not read from the partials topic.
func (m *merger) holdsStored() bool {
	for _, byPart := range m.pending {
		for _, r := range byPart {
			if r.offset < 0 {
				return true
			}
		}
	}
	return false
}

// load restores a stored report.
func (m *merger) load(tick int64, part int32, value []byte) error {
	if err := checkLists(value); err != nil {
		return err
	}
	m.stored = true
	if tick > m.done {
		m.add(tick, part, pendingReport{raw: slices.Clone(value), offset: -1})
	}
	return nil
}

// add keeps a report until its tick is merged.
func (m *merger) add(tick int64, part int32, r pendingReport) {
	byPart := m.pending[tick]
	if byPart == nil {
		byPart = map[int32]pendingReport{}
		m.pending[tick] = byPart
		heap.Push(&m.ticks, tick)
	}
	byPart[part] = r
}

// save stores the reports received since the last commit that are still
// pending, and drops those merged since.
func (m *merger) save(w *store.Writer) error {
	if m.done > m.savedDone {
		if m.stored {
			if err := w.DeleteReportsThrough(m.done); err != nil {
				return err
			}
			m.stored = m.holdsStored()
		}
		m.savedDone = m.done
	}
	for _, r := range m.unsaved {
		p, ok := m.pending[r.tick][r.part]
		if !ok {
			continue
		}
		v := p.raw
		if v == nil {
			m.buf = encodeLists(m.buf[:0], p.lists)
			v = m.buf
		}
		if err := w.SetReport(r.tick, r.part, v); err != nil {
			return err
		}
		m.stored = true
	}
	m.unsaved = m.unsaved[:0]
	if err := m.settleCreators(); err != nil {
		return err
	}
	if m.creators != nil {
		return m.creators.save(w)
	}
	return nil
}

func (m *merger) join(id int32, next int64) { m.next[id] = next }

func (m *merger) leave(id int32) error {
	delete(m.next, id)
	return m.flush()
}

func (m *merger) report(id int32, s *Snapshot) {
	if s.Tick <= m.done {
		return
	}
	m.add(s.Tick, id, pendingReport{lists: s.Lists, offset: -1})
	m.unsaved = append(m.unsaved, report{s.Tick, id})
}

// reportEncoded keeps a partition's report read from the partials topic
// at offset, as encodeLists wrote it (lists, checked by checkLists),
// copied: it is decoded only if its tick is merged. It is not stored: a
// restarted merger reads it again (rereadFrom).
func (m *merger) reportEncoded(id int32, tick int64, lists []byte, offset int64) {
	if tick <= m.done {
		return
	}
	var raw []byte // a spare array, grown by append if short
	if n := len(m.spareRaw); n > 0 {
		raw, m.spareRaw = m.spareRaw[n-1], m.spareRaw[:n-1]
	}
	m.add(tick, id, pendingReport{raw: append(raw[:0], lists...), offset: offset})
}

// maxSpareRaw is how many arrays of merged reports a merger keeps: those
// of a tick's reports, and a few more.
const maxSpareRaw = 64

// spare keeps the arrays of a merged tick's reports read from the
// partials topic, which nothing refers to once decoded (decodeLists
// copies what it keeps).
func (m *merger) spare(byPart map[int32]pendingReport) {
	for _, r := range byPart {
		if r.raw != nil && r.offset >= 0 && len(m.spareRaw) < maxSpareRaw {
			m.spareRaw = append(m.spareRaw, r.raw)
		}
	}
}

func (m *merger) progress(id int32, next int64) error {
	if prev, ok := m.next[id]; ok && prev == next {
		return nil // most events do not reach a new tick
	}
	m.next[id] = next
	return m.flush()
}

// frontier is the first tick some partition has not passed.
func (m *merger) frontier() int64 {
	f := int64(math.MaxInt64)
	for _, n := range m.next {
		f = min(f, n)
	}
	return f
}

func (m *merger) flush() error {
	if len(m.pending) == 0 && (m.creators == nil || m.pipe == nil && !m.creators.hasPending()) {
		return nil
	}
	return m.emitBefore(m.frontier())
}

// finish emits every pending tick: a bounded input has ended.
func (m *merger) finish() error {
	if err := m.emitBefore(math.MaxInt64); err != nil {
		return err
	}
	if err := m.settleCreators(); err != nil {
		return err
	}
	if m.creators != nil {
		return m.creators.finish()
	}
	return nil
}

// addCreators hands a partition's creator report to the creator merger,
// or queues it for the next job of the pipe.
func (m *merger) addCreators(part int32, r *creatorReport) {
	if m.pipe != nil {
		m.pipe.queue = append(m.pipe.queue, creatorAdd{part: part, r: r})
		return
	}
	m.creators.add(part, r, true)
}

// pipeCreators starts (on) or stops (off) running the creator merger
// on a goroutine of its own; stopping waits for its last job.
func (m *merger) pipeCreators(on bool) error {
	switch {
	case on && m.pipe == nil && m.creators != nil:
		m.pipe = &creatorPipe{front: math.MinInt64, started: math.MinInt64, done: make(chan error, 1)}
	case !on && m.pipe != nil:
		err := m.settleCreators()
		m.pipe = nil
		return err
	}
	return nil
}

// kickCreators starts a job of the pipe with the reports queued and the
// frontier reached since the last one. While that one still runs, what is
// queued waits for the next call (the next partials taken, the next
// flush, or settleCreators) and the partitions go on applying, up to
// maxQueuedCreators reports; past them it waits for the job.
func (m *merger) kickCreators() error {
	if m == nil || m.pipe == nil {
		return nil
	}
	p := m.pipe
	if len(p.queue) == 0 && p.front == p.started || len(p.queue) < maxQueuedCreators && m.creatorsBusy() {
		return nil
	}
	if err := m.waitCreators(); err != nil {
		return err
	}
	adds, f, cm := p.queue, p.front, m.creators
	p.queue, p.started, p.running = nil, f, true
	go func() {
		for _, a := range adds {
			part, r := a.part, a.r
			if a.raw != nil {
				var err error
				if part, r, err = decodeCreatorPartial(a.raw); err != nil {
					p.done <- fmt.Errorf("creator partial at offset %d: %w", a.offset, err)
					return
				}
			}
			cm.add(part, r, true)
		}
		var err error
		if f > math.MinInt64 {
			err = cm.emitBefore(f)
		}
		p.done <- err
	}()
	return nil
}

// settleCreators runs whatever the pipe holds, the job running and then
// the reports queued and the frontier reached since, and waits for it.
func (m *merger) settleCreators() error {
	if err := m.waitCreators(); err != nil {
		return err
	}
	return errors.Join(m.kickCreators(), m.waitCreators())
}

// waitCreators waits for the pipe's job, if one runs: after it, the
// creator merger and its outputs may be touched. It returns the error of
// the last job, if it failed.
func (m *merger) waitCreators() error {
	if m == nil || m.pipe == nil {
		return nil
	}
	p := m.pipe
	if p.running {
		p.running = false
		p.err = errors.Join(p.err, <-p.done)
	}
	err := p.err
	p.err = nil
	return err
}

// creatorsBusy reports whether a job of the pipe is still running, and
// so writing to the creator outputs; it never waits.
func (m *merger) creatorsBusy() bool {
	if m == nil || m.pipe == nil || !m.pipe.running {
		return false
	}
	p := m.pipe
	select {
	case err := <-p.done:
		p.running = false
		p.err = errors.Join(p.err, err)
		return false
	default:
		return true
	}
}

func (m *merger) emitBefore(f int64) error {
	if m.pipe != nil {
		m.pipe.front = max(m.pipe.front, f)
	} else if m.creators != nil {
		if err := m.creators.emitBefore(f); err != nil {
			return err
		}
	}
	for m.ticks.Len() > 0 && m.ticks[0] < f {
		t := heap.Pop(&m.ticks).(int64)
		byPart := m.pending[t]
		delete(m.pending, t)
		m.done = t
		if m.written != nil && !m.written(t) && m.ticks.Len() > 0 && m.ticks[0] < f {
			// Neither written nor the latest once this call returns (a
			// catch-up closes many ticks at once): nothing would read it.
			m.spare(byPart)
			continue
		}
		s, err := m.merge(t, byPart)
		if err != nil {
			return err
		}
		m.spare(byPart)
		if err := m.emit(s); err != nil {
			return err
		}
		l := &latest{tick: t, lists: map[string]List{}}
		for _, x := range s.Lists {
			l.lists[x.Region] = x
			l.regions = append(l.regions, x.Region)
		}
		m.latest.Store(l)
	}
	return nil
}

func (m *merger) merge(tick int64, byPart map[int32]pendingReport) (*Snapshot, error) {
	ids := make([]int32, 0, len(byPart))
	for id := range byPart {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	lists := make([][]List, len(ids)) // by partition, in ids' order
	for i, id := range ids {
		l, err := byPart[id].decode()
		if err != nil {
			return nil, fmt.Errorf("report of partition %d for tick %d: %w", id, tick, err)
		}
		lists[i] = l
	}
	if len(ids) == 1 {
		// One partition: its lists are already the answer.
		return &Snapshot{Tick: tick, Lists: lists[0]}, nil
	}
	// Each partition's list is ranked already: merge the heads.
	all := map[string][][]Ranked{GlobalRegion: nil}
	for _, ls := range lists {
		for _, l := range ls {
			all[l.Region] = append(all[l.Region], l.Videos)
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
		s.Lists = append(s.Lists, List{Region: r, Videos: mergeRanked(all[r], m.topK)})
	}
	return s, nil
}

// rankedBefore is the order of trending lists: score, then video id.
func rankedBefore(a, b *Ranked) bool {
	if a.Score != b.Score {
		return a.Score > b.Score
	}
	return a.Video < b.Video
}

// mergeRanked takes the first k of ranked lists, in order.
func mergeRanked(lists [][]Ranked, k int) []Ranked {
	out := make([]Ranked, 0, k)
	heads := make([]int, len(lists))
	for len(out) < k {
		best := -1
		for i, l := range lists {
			if heads[i] < len(l) && (best < 0 || rankedBefore(&l[heads[i]], &lists[best][heads[best]])) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		out = append(out, lists[best][heads[best]])
		heads[best]++
	}
	return out
}

// encodeLists appends lists in a compact binary form: a report is stored
// once for every partition and tick still pending at a commit.
func encodeLists(b []byte, lists []List) []byte {
	b = binary.AppendUvarint(b, uint64(len(lists)))
	for _, l := range lists {
		b = binary.AppendUvarint(b, uint64(len(l.Region)))
		b = append(b, l.Region...)
		b = binary.AppendUvarint(b, uint64(len(l.Videos)))
		for _, v := range l.Videos {
			b = binary.AppendUvarint(b, uint64(len(v.Video)))
			b = append(b, v.Video...)
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v.Score))
		}
	}
	return b
}

var errBadReport = errors.New("processor: corrupt trending report")

func decodeLists(b []byte) ([]List, error) { return readLists(b, true) }

// checkLists reports whether b is a report that decodeLists can decode,
// without decoding it.
func checkLists(b []byte) error {
	_, err := readLists(b, false)
	return err
}

func readLists(b []byte, decode bool) ([]List, error) {
	// A merger decodes every partition's report of each tick it merges:
	// the report's regions and video ids are copied into one array,
	// strings of which they are, and its lists share one array of videos.
	// A first pass checks the report and counts, the second takes.
	var (
		text   []byte
		lists  []List
		videos []Ranked
	)
	for pass := range 2 {
		pos, total, chars := 0, 0, 0
		str := func() (string, bool) {
			n, k := binary.Uvarint(b[pos:])
			if k <= 0 || uint64(len(b)-pos-k) < n {
				return "", false
			}
			pos += k + int(n)
			chars += int(n)
			if pass == 0 || n == 0 {
				return "", true
			}
			t := text[chars-int(n) : chars]
			copy(t, b[pos-int(n):pos])
			return unsafe.String(&t[0], len(t)), true
		}
		count := func() (int, bool) {
			n, k := binary.Uvarint(b[pos:])
			if k <= 0 || n > uint64(len(b)-pos) {
				return 0, false
			}
			pos += k
			return int(n), true
		}
		nl, ok := count()
		if !ok {
			return nil, errBadReport
		}
		for range nl {
			region, ok := str()
			if !ok {
				return nil, errBadReport
			}
			nv, ok := count()
			if !ok {
				return nil, errBadReport
			}
			for range nv {
				id, ok := str()
				if !ok || len(b)-pos < 8 {
					return nil, errBadReport
				}
				if pass == 1 {
					videos = append(videos, Ranked{Video: id, Score: math.Float64frombits(binary.LittleEndian.Uint64(b[pos:]))})
				}
				pos += 8
			}
			total += nv
			if pass == 1 {
				lists = append(lists, List{Region: region, Videos: videos[total-nv : total : total]})
			}
		}
		if pos != len(b) {
			return nil, errBadReport
		}
		if pass == 0 {
			if !decode {
				return nil, nil
			}
			text, lists, videos = make([]byte, chars), make([]List, 0, nl), make([]Ranked, 0, total)
		}
	}
	return lists, nil
}
