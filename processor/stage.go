package processor

import (
	"cmp"
	"fmt"
	"math"
	"slices"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/store"
)

// The account stage. A like's weight depends on its account's likes in the
// hour before it (accounts.go), and an account likes videos of every
// partition, so weights are given where all of an account's likes meet:
// the stage of the partition that owns the user (Partitioner(user, n)).
// Routers send every event there; the stage weighs each like and sends it
// on to the partition of its video, whose engine applies it. Partition k
// thus holds three things, committed together: the router of source k,
// the account stage of the users of k and the engine of the videos of k.
//
// Exactness. The weight of a like in bucket b reads buckets b-13 .. b-2,
// so the stage gives it only once those are closed: once the smallest
// largest-event-time of its active sources, minus the lateness, has passed
// the end of b-2 (no source may then send a like in b-2 or before). Until
// then it holds the like. In a live stream whose sources keep step that is
// at once, as the lateness is at most a bucket; a source that lags holds
// back the likes of the last few minutes. Each like is counted for its
// account when it is weighed, so the counts a weight reads are complete
// and the weight depends neither on the partitioning nor on the order of
// arrival. A like from a source that was idle, in a bucket already
// closed, is weighed at once and counted (Stats.LateWeighed): weights
// given before it stay as they were.
//
// Replays. What a stage sends is numbered (the offsets its engines see
// from it, so that they recognise an event sent again after a crash).
// The numbers are the same in every replay because the stage's output is
// a function of its input order alone: it takes each record in turn and
// releases held likes as each record moves its watermark, never at batch
// ends. In the live service its input is one log, its share of the
// by-user topic, even for its own source's records.
type stage struct {
	id       int32
	part     *store.Partition
	lateness int64
	bucket   int64
	sources  []int32
	inputs   map[int32]*store.InputPos
	st       *store.StageState // the engine's meta record holds it
	acc      *accounts
	rates    *rates

	held     reorder  // likes waiting for their buckets to close
	savedSeq int64    // HeldSeq of the last commit
	gone     []bufKey // released likes still in the store
	unsaved  []*routed

	low  int64 // smallest largest-event-time of the active sources (all: largest)
	idle bool  // every source is idle
	// inbox: events and progress markers routed here since the last step;
	// out: events sent on since the coordinator last drained them.
	inbox  []*routed
	out    []*routed
	spares *spares // its engine's

	lateWeighed, repeated int64
	// woke: a source woke (wake) since the coordinator last looked.
	woke bool
}

func newStage(cfg Config, id int32, part *store.Partition, sources []int32, partitions int, st *store.StageState, bucket int64) (*stage, error) {
	s := &stage{
		id:       id,
		part:     part,
		lateness: cfg.Lateness.Milliseconds(),
		bucket:   bucket,
		sources:  slices.Clone(sources),
		inputs:   map[int32]*store.InputPos{},
		st:       st,
		acc:      newAccounts(part, bucket, cfg.MaxAccounts),
		rates:    newRates(id, int64(cfg.AccountThreshold), partitions, keyKeep+(cfg.Lateness.Milliseconds()+bucket-1)/bucket+accountLag),
		savedSeq: st.HeldSeq,
		spares:   new(spares),
	}
	if err := s.rates.unmarshal(st.Rates); err != nil {
		return nil, err
	}
	for i := range st.Inputs {
		in := st.Inputs[i]
		s.inputs[in.Source] = &in
	}
	for _, src := range sources {
		if s.inputs[src] == nil {
			s.inputs[src] = &store.InputPos{Source: src}
		}
	}
	s.low, s.idle = s.frontier()
	return s, nil
}

// open loads the stage's held likes from committed state.
func (s *stage) open() error {
	if err := s.acc.open(s.st.Closed); err != nil {
		return err
	}
	if err := s.part.ScanKeySketches(s.rates.loadSketch); err != nil {
		return err
	}
	return s.part.ScanHeld(func(v []byte) error {
		r, err := decodeRouted(v)
		if err != nil {
			return err
		}
		s.held.push(r)
		return nil
	})
}

// frontier is the smallest largest-event-time of the active sources (0
// while one has said nothing), or, when every source is idle, the largest.
func (s *stage) frontier() (low int64, idle bool) {
	low, high, active := int64(math.MaxInt64), int64(0), false
	for _, src := range s.sources {
		in := s.inputs[src]
		high = max(high, in.MaxTS)
		if in.Idle {
			continue
		}
		active = true
		low = min(low, in.MaxTS)
	}
	if !active {
		return high, true
	}
	return low, false
}

// run takes the stage's inbox, in order.
func (s *stage) run() error {
	for i, r := range s.inbox {
		s.inbox[i] = nil
		if err := s.take(r); err != nil {
			return err
		}
		if r.marker {
			s.spares.keep(r)
		}
	}
	s.inbox = s.inbox[:0]
	return nil
}

// take takes one event or progress marker of a source.
func (s *stage) take(r *routed) error {
	in := s.inputs[r.src]
	if in == nil {
		return fmt.Errorf("processor: the account stage of partition %d got an event from source %d, which does not feed it", s.id, r.src)
	}
	if r.report != nil {
		s.rates.absorb(r.report)
		return s.settle()
	}
	if r.marker {
		if r.wake && !r.idle && in.Idle {
			s.wake(r.src)
		}
		in.MaxTS = max(in.MaxTS, r.srcMax)
		in.Idle = r.idle
		return s.advance()
	}
	if r.off < in.Offset {
		s.repeated++
		s.spares.keep(r)
		return nil
	}
	if in.Idle {
		s.wake(r.src)
	}
	in.Offset = r.off + 1
	// The watermark moves only when the source's progress does.
	moved := r.srcMax > in.MaxTS || in.Idle
	in.MaxTS = max(in.MaxTS, r.srcMax)
	in.Idle = false
	if moved {
		if err := s.advance(); err != nil {
			return err
		}
	}
	if r.ev.Action != event.Like {
		return s.send(r)
	}
	b := floorDiv(r.ev.TS, s.bucket)
	if b-accountLag > s.rates.closed() {
		s.st.HeldSeq++
		r.seq = s.st.HeldSeq
		s.held.push(r)
		return nil
	}
	if b <= s.st.Closed {
		s.lateWeighed++
	}
	return s.weigh(r)
}

// wake: source src was idle and has records again (an event of it, or
// its marker saying so). The other idle sources may have records as old,
// not yet read: they count as active again, holding back the likes of
// the others, until their own markers say they are still idle (their
// instances, told by their stages, mark them so once a read finds
// nothing) or their records come. Markers that make a source active
// for another's sake do not wake the others in turn.
func (s *stage) wake(src int32) {
	for _, q := range s.sources {
		if in := s.inputs[q]; q != src && in.Idle {
			in.Idle = false
		}
	}
	s.woke = true
}

// advance moves the stage's watermark with its sources' progress and
// weighs the held likes whose buckets it closed, in event-time order.
func (s *stage) advance() error {
	s.low, s.idle = s.frontier()
	if s.low == 0 {
		return nil
	}
	closed := floorDiv(s.low-s.lateness, s.bucket) - 1
	if s.idle {
		// Caught up and quiet (live only): the buckets up to the largest
		// event time count as closed, so that the last likes before a
		// pause are weighed (every stage, told the same, closes the same).
		closed = floorDiv(s.low, s.bucket) - accountLag
	}
	s.st.Closed = max(s.st.Closed, closed)
	return s.settle()
}

// settle reports the buckets whose likes are all weighed and weighs the
// held likes that the reports of every stage free, until neither moves.
func (s *stage) settle() error {
	for {
		done := s.st.Closed
		if r, ok := s.held.first(); ok {
			done = min(done, floorDiv(r.ev.TS, s.bucket)-1)
		}
		s.rates.report(done)
		g := s.rates.closed()
		if g == math.MinInt64 {
			return nil
		}
		n, err := s.release((g + accountLag + 1) * s.bucket)
		if err != nil || n == 0 {
			return err
		}
	}
}

// quiet reports whether the stage is idle to its engines: every source is
// idle and it holds no like up to their largest event time (one ahead of
// it, such as a record time far ahead, waits as it would in an engine).
func (s *stage) quiet() bool {
	r, ok := s.held.first()
	return s.idle && (!ok || r.ev.TS > s.low)
}

// promise is the event time the stage promises its engines: no event it
// sends later lies more than the lateness before it, and no like it holds
// or may yet hold (one of a bucket after G+2) lies before it, so that the
// engines wait for the likes it holds.
func (s *stage) promise() int64 {
	g := s.rates.closed()
	if g == math.MinInt64 {
		return 0
	}
	p := min(s.low, (g+accountLag+1)*s.bucket)
	if r, ok := s.held.first(); ok {
		p = min(p, r.ev.TS)
	}
	return p
}

// release weighs and sends the held likes before upTo, in event-time
// order. A held like lies ahead of the watermark it waited for, but the
// watermark may then jump past many at once (a lagging source caught up):
// each goes out promising no more than its own time, so that the engines
// do not release past the likes still to come in the same burst.
func (s *stage) release(upTo int64) (n int, err error) {
	for {
		r, ok := s.held.popBefore(upTo)
		if !ok {
			return n, nil
		}
		if r.seq <= s.savedSeq {
			s.gone = append(s.gone, bufKey{r.ev.TS, r.seq})
		}
		if err := s.weigh(r); err != nil {
			return n, err
		}
		r.srcMax = min(r.srcMax, r.ev.TS)
		n++
	}
}

// weigh counts a like for its account and sends it on with its weight.
func (s *stage) weigh(r *routed) error {
	b := floorDiv(r.ev.TS, s.bucket)
	key := lockKey(r.ev.VideoID, r.ev.TS)
	w, recent, active, first, err := s.acc.like(r.ev.UserID, key, r.ev.TS, s.rates.threshold(b), &r.keys, s.rates.popularity)
	if err != nil {
		return err
	}
	if first {
		s.rates.count(b, recent, active)
	}
	s.rates.countKey(b, key, first)
	r.weight = w
	return s.send(r)
}

// send passes an event on to the partition of its video, numbered.
func (s *stage) send(r *routed) error {
	r.src, r.off, r.srcMax, r.seq = s.id, s.st.Sent, s.promise(), 0
	s.st.Sent++
	s.out = append(s.out, r)
	return nil
}

// finish closes every bucket: the input has ended. Held likes are weighed
// as the other stages' last reports come (Coordinator.Finish).
func (s *stage) finish() error {
	if err := s.run(); err != nil {
		return err
	}
	s.st.Closed = math.MaxInt64/4/s.bucket - accountKeep
	return s.settle()
}

// write adds the stage's changes since the last commit to w; the engine's
// meta record, written after, holds its positions.
func (s *stage) write(w *store.Writer) error {
	if b, ok := s.lowestBucket(); ok {
		s.acc.readableFrom(b)
	}
	if err := s.acc.save(w); err != nil {
		return err
	}
	if err := s.rates.saveSketches(w); err != nil {
		return err
	}
	for _, k := range s.gone {
		if err := w.DeleteHeld(k.ts, k.seq); err != nil {
			return err
		}
	}
	s.gone = s.gone[:0]
	s.held.each(func(r *routed) {
		if r.seq > s.savedSeq {
			s.unsaved = append(s.unsaved, r)
		}
	})
	slices.SortFunc(s.unsaved, func(a, b *routed) int { return cmp.Compare(a.seq, b.seq) })
	var buf []byte
	for _, r := range s.unsaved {
		buf = appendRouted(buf[:0], r)
		if err := w.SetHeld(r.ev.TS, r.seq, buf); err != nil {
			return err
		}
	}
	clear(s.unsaved)
	s.unsaved = s.unsaved[:0]
	s.savedSeq = s.st.HeldSeq
	s.st.Rates = s.rates.marshal(s.st.Rates[:0])
	s.st.Inputs = s.st.Inputs[:0]
	for _, src := range s.sources {
		s.st.Inputs = append(s.st.Inputs, *s.inputs[src])
	}
	return nil
}

// lowestBucket returns the earliest bucket of any like the stage may
// still weigh: of those it holds, and of those still to come. A source,
// idle or not, routes no record more than the lateness before its
// largest event time (router.route), which its markers and events carry
// (srcMax): a record still to come from it lies at or after the largest
// the stage has taken less the lateness. ok is false while a source has
// said nothing (it may yet send any event time).
func (s *stage) lowestBucket() (b int64, ok bool) {
	low := int64(math.MaxInt64)
	for _, src := range s.sources {
		in := s.inputs[src]
		if in.MaxTS == 0 {
			return 0, false
		}
		low = min(low, in.MaxTS-s.lateness)
	}
	if r, ok := s.held.first(); ok {
		low = min(low, r.ev.TS)
	}
	if low == math.MaxInt64 {
		return 0, false
	}
	return floorDiv(low, s.bucket), true
}

// evict trims the account cache once a commit is durable.
func (s *stage) evict(maxAccounts int) {
	s.acc.setMax(maxAccounts)
	if g := s.rates.closed(); g > math.MinInt64 {
		// No like still to weigh, unless late, lies before G+1: the
		// held ones are of later buckets.
		s.acc.evict(g + 1)
	}
}
