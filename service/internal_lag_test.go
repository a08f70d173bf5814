package service

import (
	"sync/atomic"
	"testing"
)

// TestInternalLag: the published lag is the most records any one internal
// partition left unread at its last fetch, kept apart by topic and
// partition, and falls back when that partition catches up; a generation's
// end forgets them all.
func TestInternalLag(t *testing.T) {
	var to atomic.Int64
	l := internalLag{to: &to}
	fetch := func(part int32, byUser, repart, partials bool, hw, next int64) int64 {
		l.fetched(&fetched{part: part, byUser: byUser, repart: repart, partials: partials, hw: hw, next: next})
		return to.Load()
	}
	if got := fetch(0, true, false, false, 500, 100); got != 400 {
		t.Fatalf("by-user partition 0 400 behind: got %d", got)
	}
	// The repartition topic's partition 0 is another partition.
	if got := fetch(0, false, true, false, 1000, 900); got != 400 {
		t.Fatalf("repartition partition 0 100 behind, by-user 400: got %d", got)
	}
	if got := fetch(3, false, false, true, 2000, 1000); got != 1000 {
		t.Fatalf("partials partition 3 1000 behind: got %d", got)
	}
	if got := fetch(3, false, false, true, 2000, 2000); got != 400 {
		t.Fatalf("partials caught up, by-user 400 behind: got %d", got)
	}
	if got := fetch(0, true, false, false, 500, 500); got != 100 {
		t.Fatalf("by-user caught up, repartition 100 behind: got %d", got)
	}
	if got := fetch(0, false, true, false, 10, 20); got != 0 {
		t.Fatalf("a next offset past the high watermark read at fetch: got %d", got)
	}
	fetch(1, false, true, false, 70, 0)
	l.reset()
	if got := to.Load(); got != 0 {
		t.Fatalf("after reset: %d", got)
	}
	if got := fetch(2, true, false, false, 30, 0); got != 30 {
		t.Fatalf("after reset, one partition 30 behind: got %d", got)
	}
}
