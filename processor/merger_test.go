package processor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// TestListsRoundTrip: a report's lists decode as they were encoded, and
// every truncation or extension of the encoding is a corrupt report, not
// a panic.
func TestListsRoundTrip(t *testing.T) {
	lists := []List{
		{Region: GlobalRegion, Videos: []Ranked{{Video: "v1", Score: 3.5}, {Video: "v22", Score: 2}, {Video: "v3", Score: 0.25}}},
		{Region: "BR", Videos: []Ranked{}},
		{Region: "US", Videos: []Ranked{{Video: "v22", Score: 2}, {Video: "", Score: 1e-300}}},
	}
	b := encodeLists(nil, lists)
	got, err := decodeLists(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, lists) {
		t.Fatalf("decoded %+v, want %+v", got, lists)
	}
	// The lists do not share their arrays: one cannot grow into the next.
	got[0].Videos = append(got[0].Videos, Ranked{Video: "x"})
	if got[1].Region != "BR" || len(got[1].Videos) != 0 || got[2].Videos[0].Video != "v22" {
		t.Fatalf("appending to one list changed another: %+v", got)
	}
	for n := range len(b) {
		if _, err := decodeLists(b[:n]); !errors.Is(err, errBadReport) {
			t.Errorf("the first %d of %d bytes: err %v, want errBadReport", n, len(b), err)
		}
	}
	if _, err := decodeLists(append(b[:len(b):len(b)], 0)); !errors.Is(err, errBadReport) {
		t.Errorf("a byte more: err %v, want errBadReport", err)
	}
	if got, err := decodeLists(encodeLists(nil, nil)); err != nil || len(got) != 0 {
		t.Errorf("no lists: %v, %v", got, err)
	}
}

// BenchmarkDecodeLists decodes a report of a global list of 100 videos
// and 20 regional lists of 10.
func BenchmarkDecodeLists(b *testing.B) {
	lists := []List{{Region: GlobalRegion}}
	for i := range 100 {
		lists[0].Videos = append(lists[0].Videos, Ranked{Video: "v" + strconv.Itoa(100000+i), Score: float64(100 - i)})
	}
	for r := range 20 {
		l := List{Region: "R" + strconv.Itoa(r)}
		for i := range 10 {
			l.Videos = append(l.Videos, Ranked{Video: "v" + strconv.Itoa(200000+10*r+i), Score: float64(10 - i)})
		}
		lists = append(lists, l)
	}
	enc := encodeLists(nil, lists)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeLists(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// TestMergerSkipsSupersededTicks: of the ticks one call closes, the
// merger merges those written to the outputs and the last (the latest
// list), not a tick between that is neither; reports from the partials
// topic are decoded only then.
func TestMergerSkipsSupersededTicks(t *testing.T) {
	var emitted []int64
	var last *Snapshot
	m, err := newMerger(2, nil, func(s *Snapshot) error {
		emitted, last = append(emitted, s.Tick), s
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m.written = func(tick int64) bool { return tick%3 == 0 }
	m.join(0, 0)
	m.join(1, 0)
	for tick := int64(1); tick <= 7; tick++ {
		m.report(0, &Snapshot{Tick: tick, Lists: []List{{Region: GlobalRegion, Videos: []Ranked{{Video: "a", Score: float64(tick)}}}}})
		m.reportEncoded(1, tick, encodeLists(nil, []List{{Region: GlobalRegion, Videos: []Ranked{{Video: "b", Score: 10}}}}), tick)
	}
	if err := m.progress(0, 8); err != nil {
		t.Fatal(err)
	}
	if len(emitted) != 0 {
		t.Fatalf("merged %v before every partition passed them", emitted)
	}
	if err := m.progress(1, 6); err != nil { // closes ticks 1-5
		t.Fatal(err)
	}
	if err := m.progress(1, 8); err != nil { // closes ticks 6 and 7
		t.Fatal(err)
	}
	if want := []int64{3, 5, 6, 7}; !reflect.DeepEqual(emitted, want) {
		t.Fatalf("merged ticks %v, want %v", emitted, want)
	}
	want := []Ranked{{Video: "b", Score: 10}, {Video: "a", Score: 7}}
	if got := last.Lists[0].Videos; last.Tick != 7 || !reflect.DeepEqual(got, want) {
		t.Fatalf("tick %d: %+v, want tick 7: %+v", last.Tick, got, want)
	}
	if len(m.pending) != 0 || m.done != 7 {
		t.Fatalf("%d ticks pending, done %d", len(m.pending), m.done)
	}
}

// TestMergerReusesMergedReports: the arrays of reports read from the
// partials topic are reused once their tick is merged or passed over, and
// never while a report still pending holds one: every tick's lists are
// those of its own reports, whichever arrays carried them, and what a
// snapshot emitted holds is not changed by later reports.
func TestMergerReusesMergedReports(t *testing.T) {
	var snaps []*Snapshot
	m, err := newMerger(3, nil, func(s *Snapshot) error {
		snaps = append(snaps, s)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m.written = func(tick int64) bool { return tick%2 == 0 }
	m.join(0, 0)
	m.join(1, 0)
	list := func(p int32, tick int64) []List {
		// Lists of varying length, so that arrays are reused at
		// sizes both below and above the next report's.
		var vs []Ranked
		for i := range 1 + (tick*7+int64(p))%5 {
			vs = append(vs, Ranked{Video: fmt.Sprintf("v%d-%d-%d", p, tick, i), Score: float64(1000*tick + 10*int64(p) - i)})
		}
		return []List{{Region: GlobalRegion, Videos: vs}}
	}
	var buf []byte
	offset := int64(0)
	for tick := int64(1); tick <= 60; tick++ {
		for p := range int32(2) {
			// One array for every report read, as a fetch's buffer is
			// reused: the merger must keep a copy.
			buf = encodeLists(buf[:0], list(p, tick))
			m.reportEncoded(p, tick, buf, offset)
			offset++
		}
		if tick%5 == 0 { // partitions pass their ticks a few at a time
			for p := range int32(2) {
				if err := m.progress(p, tick+1-int64(p)); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if len(m.spareRaw) == 0 {
		t.Fatal("no array kept for reuse")
	}
	for _, s := range snaps {
		want := mergeRanked([][]Ranked{list(0, s.Tick)[0].Videos, list(1, s.Tick)[0].Videos}, 3)
		if got := s.Lists[0].Videos; !reflect.DeepEqual(got, want) {
			t.Fatalf("tick %d: %+v, want %+v", s.Tick, got, want)
		}
	}
	if len(snaps) < 25 {
		t.Fatalf("%d snapshots, want the even ticks and the latest of each call", len(snaps))
	}
}

// TestMergerRereadsPendingReports: a merger fed by the partials topic
// stores none of the reports it reads; its state says from which offset
// to read the topic again, that of the first report not yet merged, and a
// merger restarted on that state takes the reports read again (only
// them: the progress records and the reports of merged ticks before its
// offset are in its state already) and merges as if it had never stopped.
func TestMergerRereadsPendingReports(t *testing.T) {
	list := func(video string, score float64) []List {
		return []List{{Region: GlobalRegion, Videos: []Ranked{{Video: video, Score: score}}}}
	}
	var recs []Record
	add := func(kind byte, part int32, tick int64, lists []List) {
		recs = append(recs, Record{Offset: int64(len(recs)), Value: appendPartial(nil, kind, part, tick, lists)})
	}
	add(partialReport, 0, 1, list("a", 1)) // 0
	add(partialReport, 0, 2, list("c", 3)) // 1: pending at the stop
	add(partialProgress, 0, 3, nil)        // 2
	add(partialReport, 1, 1, list("b", 2)) // 3
	add(partialProgress, 1, 2, nil)        // 4: tick 1 merged
	add(partialReport, 1, 2, list("d", 4)) // 5: after the stop
	add(partialProgress, 1, 3, nil)        // 6: tick 2 merged
	start := func(state []byte) (*Coordinator, *[]*Snapshot) {
		var got []*Snapshot
		m, err := newMerger(2, state, func(s *Snapshot) error { got = append(got, s); return nil })
		if err != nil {
			t.Fatal(err)
		}
		m.remote = true
		for q := range int32(2) {
			if _, ok := m.next[q]; !ok {
				m.next[q] = 0
			}
		}
		return &Coordinator{merger: m, out: Outputs{Partials: &memSink{}}}, &got
	}

	first, got := start(nil)
	if err := first.TakePartials(context.Background(), &Batch{Recs: recs[:5]}); err != nil {
		t.Fatal(err)
	}
	if len(*got) != 1 || (*got)[0].Tick != 1 {
		t.Fatalf("merged %d snapshots before the stop, want tick 1's", len(*got))
	}
	if n := len(first.merger.unsaved); n != 0 {
		t.Errorf("%d reports read from the topic wait to be stored, want none", n)
	}
	state := first.merger.marshal(nil)
	var st mergerState
	if err := json.Unmarshal(state, &st); err != nil {
		t.Fatal(err)
	}
	if st.Offset != 5 || st.Reread != 1 {
		t.Fatalf("state %s: offset %d, reread %d; want 5 and 1, tick 2's report of partition 0", state, st.Offset, st.Reread)
	}

	second, got := start(state)
	if from, ok := second.Merging(); !ok || from != 1 {
		t.Fatalf("the restarted merger reads the partials topic from offset %d (%v), want 1", from, ok)
	}
	if err := second.TakePartials(context.Background(), &Batch{Recs: recs[1:]}); err != nil {
		t.Fatal(err)
	}
	if len(*got) != 1 || (*got)[0].Tick != 2 {
		t.Fatalf("merged %d snapshots after the restart, want tick 2's", len(*got))
	}
	want := []Ranked{{Video: "d", Score: 4}, {Video: "c", Score: 3}}
	if v := (*got)[0].Lists[0].Videos; !reflect.DeepEqual(v, want) {
		t.Fatalf("tick 2 after the restart: %+v, want both partitions' %+v", v, want)
	}
	if m := second.merger; m.offset != 7 || m.reread != 7 || m.rereadFrom() != 7 {
		t.Fatalf("after the restart: offset %d, reread %d, rereadFrom %d; want 7", m.offset, m.reread, m.rereadFrom())
	}
}

// TestCreatorPipeDecodes: a merger fed by the partials topic queues the
// creator reports it reads for the pipe's job, which decodes them; every
// report queued, while a job runs or not, is merged once the pipe
// settles, and one that does not decode fails with its offset.
func TestCreatorPipeDecodes(t *testing.T) {
	db := openMemStore(t)
	cm, err := newCreatorMerger(DefaultConfig(), db.Partition(groupPartition))
	if err != nil {
		t.Fatal(err)
	}
	m, err := newMerger(2, nil, func(*Snapshot) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	m.remote, m.creators = true, cm
	if err := m.pipeCreators(true); err != nil {
		t.Fatal(err)
	}
	const tick = int64(1793491210000)
	report := func(part int32, creator string) []byte {
		r := &creatorReport{Tick: tick, Counts: []creatorCount{{creator, "US", tick/minuteMS - 1, 1}}}
		return appendCreatorPartial(nil, part, r)
	}
	for i, part := range []int32{0, 1, 2} {
		v := report(part, fmt.Sprintf("c%d", part))
		if err := m.takeCreatorPartial(v, int64(i)); err != nil {
			t.Fatal(err)
		}
		clear(v) // the batch's buffer is used again: the queue holds a copy
		if err := m.kickCreators(); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.settleCreators(); err != nil {
		t.Fatal(err)
	}
	if n := len(cm.pending[tick]); n != 3 {
		t.Fatalf("%d reports of tick %d merged, want the 3 queued", n, tick)
	}

	bad := report(3, "c3")
	bad = bad[:len(bad)-1]
	if err := m.takeCreatorPartial(bad, 41); err != nil {
		t.Fatalf("a creator partial with a good header was refused before its job: %v", err)
	}
	if err := m.settleCreators(); err == nil || !strings.Contains(err.Error(), "offset 41") {
		t.Fatalf("a creator partial cut short: %v, want an error at offset 41", err)
	}
	if err := m.takeCreatorPartial([]byte("not a partial"), 42); err == nil {
		t.Fatal("a record that is no creator partial was queued")
	}
}
