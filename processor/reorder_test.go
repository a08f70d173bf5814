package processor

import (
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
