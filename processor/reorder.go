package processor

import (
	"encoding/binary"
	"errors"

	"github.com/viralityhq/virality/event"
)

// routed is an event on its way from the source partition that read it to
// the partition that owns its video, with where it came from.
type routed struct {
	ev  event.Event
	src int32 // source partition
	off int64 // offset in the source partition
	// srcMax is the source's largest agreed event time once it had taken
	// the record: the source promises no later record before srcMax minus
	// the lateness.
	srcMax int64
	seq    int64 // number in the reorder buffer, for its store key
	// weight is a like's account weight (scoring.WeightOne for a normal
	// account), given by the account stage.
	weight int64
	// keys are a like's lockstep keys (lockstep.go), given with its weight.
	keys lockKeys
	// marker: no event, only the source's progress (srcMax), or that it is
	// idle; on the account stage's input only. wake: the marker is the
	// first of a source that was idle and has records again (stage.wake).
	marker, idle, wake bool
	// report: a stage's report of its account rates (rates.go), on the
	// account stages' input only.
	report *rateReport
}

// spares are routed records a partition has done with, for the
// coordinator to route to it again, rather than allocate each anew (in
// B3 the live service allocated 6% of its bytes for progress markers and
// 11% for events, one for each hop a like takes): markers its engine or
// account stage has read from its inbox, events it has applied, and those
// it dropped as repeated. A partition's engine and stage share its
// spares: they never run at the same time, and the coordinator takes from
// them only between their steps.
type spares []*routed

// maxSpares bounds a partition's spares (184 bytes each): events go to
// the partition of their video, not always the one they were routed to
// first, and a step of a catch-up routes thousands.
const maxSpares = 1 << 12

// get returns a routed record, cleared.
func (s *spares) get() *routed {
	n := len(*s)
	if n == 0 {
		return new(routed)
	}
	r := (*s)[n-1]
	(*s)[n-1] = nil
	*s = (*s)[:n-1]
	return r
}

// marker returns a progress marker of source src.
func (s *spares) marker(src int32, off, srcMax int64, idle bool) *routed {
	r := s.get()
	r.src, r.off, r.srcMax, r.marker, r.idle = src, off, srcMax, true, idle
	return r
}

// keep takes back a routed record nothing refers to any more, cleared so
// that it holds no event's strings alive.
func (s *spares) keep(r *routed) {
	if len(*s) < maxSpares {
		*r = routed{}
		*s = append(*s, r)
	}
}

// routedLess is the order in which a partition applies events: by event
// time, a like before an unlike, then by every field, so that the order
// depends on the events alone and not on how sources interleaved them.
// Only exact duplicates tie, and they change nothing.
func routedLess(a, b *routed) bool {
	x, y := &a.ev, &b.ev
	if x.TS != y.TS {
		return x.TS < y.TS
	}
	if x.Action != y.Action {
		return x.Action == event.Like
	}
	// In turn, each only when those before it tie: an array of the five
	// comparisons made all five every time, in a function that was 1.6%
	// of a catch-up's CPU.
	if x.EventID != y.EventID {
		return x.EventID < y.EventID
	}
	if x.VideoID != y.VideoID {
		return x.VideoID < y.VideoID
	}
	if x.UserID != y.UserID {
		return x.UserID < y.UserID
	}
	if x.Region != y.Region {
		return x.Region < y.Region
	}
	if x.CreatorID != y.CreatorID {
		return x.CreatorID < y.CreatorID
	}
	return false
}

// reorder holds a partition's events until its watermark passes them,
// then gives them back sorted (routedLess). Events from several sources
// thus apply in one order whatever their interleaving.
//
// It is a binary heap, sifted as container/heap sifts (so the order of
// exact duplicates is as it was), of the events with their times beside
// them: a comparison reads the time from the heap's own array, and an
// event only when two times tie. Behind container/heap's interface each
// comparison read both events, and taking the first event from B1's
// buffers was 1.3% of its CPU, all but a tenth of it in comparisons and
// the misses of reading events.
type reorder struct{ h []held }

// held is an event in a reorder buffer, and its event time.
type held struct {
	ts int64
	r  *routed
}

func heldLess(a, b *held) bool {
	if a.ts != b.ts {
		return a.ts < b.ts
	}
	return routedLess(a.r, b.r)
}

func (r *reorder) push(ev *routed) {
	r.h = append(r.h, held{ev.ev.TS, ev})
	h := r.h
	for j := len(h) - 1; ; {
		i := (j - 1) / 2 // parent
		if i == j || !heldLess(&h[j], &h[i]) {
			break
		}
		h[i], h[j] = h[j], h[i]
		j = i
	}
}

// popBefore returns the first held event if its time is before t.
func (r *reorder) popBefore(t int64) (*routed, bool) {
	if len(r.h) == 0 || r.h[0].ts >= t {
		return nil, false
	}
	h := r.h
	n := len(h) - 1
	h[0], h[n] = h[n], h[0]
	for i := 0; ; {
		j := 2*i + 1 // left child
		if j >= n {
			break
		}
		if j2 := j + 1; j2 < n && heldLess(&h[j2], &h[j]) {
			j = j2
		}
		if !heldLess(&h[j], &h[i]) {
			break
		}
		h[i], h[j] = h[j], h[i]
		i = j
	}
	ev := h[n].r
	h[n] = held{}
	r.h = h[:n]
	return ev, true
}

// first returns the event that would be taken first.
func (r *reorder) first() (*routed, bool) {
	if len(r.h) == 0 {
		return nil, false
	}
	return r.h[0].r, true
}

// each calls fn with every held event, in no order.
func (r *reorder) each(fn func(*routed)) {
	for i := range r.h {
		fn(r.h[i].r)
	}
}

func (r *reorder) len() int { return len(r.h) }

// bufferVersion is the version of a buffered event's encoding.
//
// 2: the event's account weight.
// 3: its lockstep keys. 4: each key's popularity.
const bufferVersion = 4

// appendRouted encodes a held event for the store.
func appendRouted(b []byte, r *routed) []byte {
	b = append(b, bufferVersion)
	b = binary.AppendVarint(b, int64(r.src))
	b = binary.AppendVarint(b, r.off)
	b = binary.AppendVarint(b, r.srcMax)
	b = binary.AppendVarint(b, r.seq)
	b = binary.AppendVarint(b, r.weight)
	b = appendKeys(b, &r.keys)
	b = binary.AppendVarint(b, r.ev.TS)
	b = append(b, byte(r.ev.Action))
	for _, s := range [...]string{r.ev.EventID, r.ev.VideoID, r.ev.UserID, r.ev.CreatorID, r.ev.Region} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

var errBadBuffered = errors.New("processor: corrupt buffered event")

func decodeRouted(b []byte) (*routed, error) {
	if len(b) == 0 || b[0] != bufferVersion {
		return nil, errBadBuffered
	}
	b = b[1:]
	bad := false
	varint := func() int64 {
		v, n := binary.Varint(b)
		if n <= 0 {
			bad = true
			return 0
		}
		b = b[n:]
		return v
	}
	str := func() string {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			bad = true
			return ""
		}
		s := string(b[k : k+int(n)])
		b = b[k+int(n):]
		return s
	}
	r := &routed{src: int32(varint()), off: varint(), srcMax: varint(), seq: varint(), weight: varint()}
	var ok bool
	if b, ok = readKeys(b, &r.keys); !ok {
		return nil, errBadBuffered
	}
	r.ev.TS = varint()
	if len(b) == 0 {
		return nil, errBadBuffered
	}
	r.ev.Action = event.Action(b[0])
	b = b[1:]
	r.ev.EventID, r.ev.VideoID, r.ev.UserID, r.ev.CreatorID, r.ev.Region = str(), str(), str(), str(), str()
	if bad || len(b) != 0 {
		return nil, errBadBuffered
	}
	return r, nil
}
