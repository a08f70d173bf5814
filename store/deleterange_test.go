package store

import (
	"fmt"
	"slices"
	"testing"
)

// TestLoggedDeleteRange: a logged commit's range deletion (here of stored
// reports) deletes, and lists in its changes in key order, exactly the
// keys the range holds at that point of the commit: those the state has
// that the commit did not delete before it, and those the commit set
// before it; keys set after it stay.
func TestLoggedDeleteRange(t *testing.T) {
	db := openMem(t)
	p := db.Partition(0)
	// The state: reports of ticks 1, 3, 4 and 9.
	w := p.NewWriter()
	for _, tick := range []int64{1, 3, 4, 9} {
		if err := w.SetReport(tick, 0, []byte("stored")); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Commit(); err != nil {
		t.Fatal(err)
	}

	commit := p.NewWriter()
	w = commit.Fork(p, true)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(w.SetReport(3, 0, []byte("again"))) // stored, set again
	must(w.SetReport(2, 0, []byte("new")))   // set by the commit alone
	must(w.SetReport(5, 1, []byte("new")))   // set, then deleted below
	must(w.delete(w.key, nil))               // (w.key is report 5/1's)
	must(w.SetReport(4, 0, nil))             // stored...
	must(w.delete(w.key, nil))               // ...and deleted first
	start := changes(t, w)
	must(w.DeleteReportsThrough(5))
	must(w.SetReport(5, 2, []byte("after"))) // after the deletion: stays

	var deleted []string
	for _, c := range changes(t, w)[len(start):] {
		if !c.Delete {
			break
		}
		tick, part := reportKey(t, c.Key)
		deleted = append(deleted, fmt.Sprintf("%d/%d", tick, part))
	}
	must(commit.Join(w))
	must(commit.Commit())
	if want := []string{"1/0", "2/0", "3/0"}; !slices.Equal(deleted, want) {
		t.Errorf("the range deletion listed %v, want %v", deleted, want)
	}
	var left []string
	must(p.ScanReports(func(tick int64, part int32, value []byte) error {
		left = append(left, fmt.Sprintf("%d/%d %s", tick, part, value))
		return nil
	}))
	if want := []string{"5/2 after", "9/0 stored"}; !slices.Equal(left, want) {
		t.Errorf("reports left %v, want %v", left, want)
	}
}

// changes returns a fork's changes so far, copied.
func changes(t *testing.T, w *Writer) []Change {
	t.Helper()
	var cs []Change
	if err := w.Changes(func(c Change) error {
		cs = append(cs, Change{Key: slices.Clone(c.Key), Value: slices.Clone(c.Value), Delete: c.Delete})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return cs
}

// reportKey reads the tick and partition of a stored report's key.
func reportKey(t *testing.T, k []byte) (int64, int32) {
	t.Helper()
	var tick int64
	var part int32
	for _, b := range k[len(k)-12 : len(k)-4] {
		tick = tick<<8 | int64(b)
	}
	for _, b := range k[len(k)-4:] {
		part = part<<8 | int32(b)
	}
	return tick, part
}
