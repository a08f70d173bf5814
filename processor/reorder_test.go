package processor

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/viralityhq/virality/event"
)

// TestSpares: a routed record taken back is handed out again with every
// field of its last use cleared, so that no event, weight, key or report
// of what it carried before leaks into what it carries next; and a
// partition keeps at most maxSpares.
func TestSpares(t *testing.T) {
	var s spares
	a := s.marker(3, 7, 100, true)
	if *a != (routed{src: 3, off: 7, srcMax: 100, marker: true, idle: true}) {
		t.Fatalf("new marker: %+v", *a)
	}
	// As if it had carried a like.
	a.ev = event.Event{Action: event.Like, VideoID: "v1", UserID: "u1", TS: 5}
	a.weight, a.seq, a.report = 9, 4, &rateReport{}
	a.keys.add(1, 2)
	s.keep(a)
	b := s.marker(1, 0, 200, false)
	if b != a {
		t.Fatal("a record taken back was not handed out again")
	}
	if *b != (routed{src: 1, srcMax: 200, marker: true}) {
		t.Fatalf("marker handed out again: %+v", *b)
	}
	if c := s.get(); c == b || *c != (routed{}) {
		t.Fatalf("get: %p (in use: %p) %+v", c, b, *c)
	}
	for range maxSpares + 10 {
		s.keep(new(routed))
	}
	if len(s) != maxSpares {
		t.Fatalf("%d spares kept, want at most %d", len(s), maxSpares)
	}
}

// refHeap is the reorder buffer as container/heap kept it, the order
// reorder must keep: the same events taken in the same order, exact
// duplicates too.
type refHeap []*routed

func (h refHeap) Len() int           { return len(h) }
func (h refHeap) Less(i, j int) bool { return routedLess(h[i], h[j]) }
func (h refHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *refHeap) Push(x any)        { *h = append(*h, x.(*routed)) }
func (h *refHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// TestReorderOrder pushes events out of order (times drawn from a narrow
// range, so that many tie, and some exact duplicates) and takes them
// before a rising time, and checks that reorder gives back the very
// events container/heap did, in the same order.
func TestReorderOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	var r reorder
	var ref refHeap
	now, taken := int64(0), 0
	for round := range 20000 {
		for range rng.IntN(4) {
			ev := &routed{ev: event.Event{
				TS:      now + int64(rng.IntN(50)),
				Action:  event.Action(rng.IntN(2)),
				EventID: fmt.Sprint("e", rng.IntN(20)),
				VideoID: fmt.Sprint("v", rng.IntN(3)),
				UserID:  fmt.Sprint("u", rng.IntN(3)),
			}, seq: int64(round)}
			r.push(ev)
			heap.Push(&ref, ev)
		}
		now += int64(rng.IntN(3))
		for {
			got, ok := r.popBefore(now)
			var want *routed
			if len(ref) > 0 && ref[0].ev.TS < now {
				want = heap.Pop(&ref).(*routed)
			}
			if got != want || ok != (want != nil) {
				t.Fatalf("round %d: took %+v, container/heap took %+v", round, got, want)
			}
			if !ok {
				break
			}
			taken++
		}
		if f, ok := r.first(); ok != (len(ref) > 0) || ok && f != ref[0] {
			t.Fatalf("round %d: first %+v, container/heap's %+v", round, f, ref[0])
		}
	}
	if taken < 10000 || r.len() == 0 {
		t.Fatalf("took %d, holds %d: the test checks too little", taken, r.len())
	}
}
