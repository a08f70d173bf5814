package service

import (
	"sync/atomic"
	"testing"
)

// TestInternalLag: the published lag is the most records any one internal
// partition has yet to fetch, kept apart by topic and partition: the high
// watermark its last fetch saw, plus what the instance wrote to it since
// that fetch began, less the fetch's next offset. It falls back when that
// partition catches up; a generation's end forgets them all.
func TestInternalLag(t *testing.T) {
	var to atomic.Int64
	written := map[[2]int32]int64{} // (0 by-user / 1 repartition, partition)
	kind := func(byUser bool) int32 {
		if byUser {
			return 0
		}
		return 1
	}
	var partials atomic.Int64
	l := internalLag{to: &to, partials: &partials, forwarded: func(byUser bool, part int32) int64 {
		return written[[2]int32{kind(byUser), part}]
	}}
	fetch := func(part int32, byUser, repart, partials bool, hw, next int64) int64 {
		b := &fetched{part: part, byUser: byUser, repart: repart, partials: partials, hw: hw, next: next}
		if !partials {
			b.written = written[[2]int32{kind(byUser), part}]
		}
		l.fetched(b)
		l.update()
		return to.Load()
	}
	write := func(part int32, byUser bool, n int64) int64 {
		written[[2]int32{kind(byUser), part}] += n
		l.update()
		return to.Load()
	}
	if got := fetch(0, true, false, false, 500, 100); got != 400 {
		t.Fatalf("by-user partition 0 400 behind: got %d", got)
	}
	// The repartition topic's partition 0 is another partition.
	if got := fetch(0, false, true, false, 1000, 900); got != 400 {
		t.Fatalf("repartition partition 0 100 behind, by-user 400: got %d", got)
	}
	// What the instance writes after a fetch counts before the next
	// fetch sees it; writes to a partition not fetched yet wait for it.
	if got := write(0, true, 3000); got != 3400 {
		t.Fatalf("3,000 records written to by-user partition 0 since its fetch 400 behind: got %d", got)
	}
	if got := write(5, true, 9000); got != 3400 {
		t.Fatalf("records written to a partition never fetched: got %d", got)
	}
	if got := write(0, false, 50); got != 3400 {
		t.Fatalf("50 written to repartition 0, 150 behind, by-user 3,400: got %d", got)
	}
	// The next fetch sees them in its high watermark, and counts only
	// what was written after it began.
	if got := fetch(0, true, false, false, 3500, 3000); got != 500 {
		t.Fatalf("by-user 500 behind at its fetch, repartition 150: got %d", got)
	}
	if got := partials.Load(); got != 0 {
		t.Fatalf("partials lag %d before the partials topic was fetched", got)
	}
	if got := fetch(3, false, false, true, 2000, 1000); got != 1000 || partials.Load() != 1000 {
		t.Fatalf("partials partition 3 1000 behind: got %d, partials lag %d", got, partials.Load())
	}
	if got := fetch(3, false, false, true, 2000, 1960); got != 500 || partials.Load() != 40 {
		t.Fatalf("partials 40 behind, by-user 500: got %d, partials lag %d", got, partials.Load())
	}
	if got := fetch(3, false, false, true, 2000, 2000); got != 500 || partials.Load() != 0 {
		t.Fatalf("partials caught up, by-user 500 behind: got %d, partials lag %d", got, partials.Load())
	}
	if got := fetch(0, true, false, false, 3500, 3500); got != 150 {
		t.Fatalf("by-user caught up, repartition 150 behind: got %d", got)
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
