package processor

import (
	"testing"

	"github.com/viralityhq/virality/event"
)

// TestSpareMarkers: a marker taken back is handed out again with every
// field of its last use cleared, so that no event, weight or report of a
// routed record it once was leaks into the progress it now carries.
func TestSpareMarkers(t *testing.T) {
	var m spareMarkers
	a := m.marker(3, 7, 100, true)
	if *a != (routed{src: 3, off: 7, srcMax: 100, marker: true, idle: true}) {
		t.Fatalf("new marker: %+v", *a)
	}
	// As if it had been used for more than a marker.
	a.ev = event.Event{Action: event.Like, VideoID: "v1", UserID: "u1", TS: 5}
	a.weight, a.seq, a.report = 9, 4, &rateReport{}
	m.keep(a)
	b := m.marker(1, 0, 200, false)
	if b != a {
		t.Fatal("a marker taken back was not handed out again")
	}
	if *b != (routed{src: 1, srcMax: 200, marker: true}) {
		t.Fatalf("marker handed out again: %+v", *b)
	}
	if c := m.marker(2, 0, 300, false); c == b {
		t.Fatal("a marker in use was handed out twice")
	}
}
