package service

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/viralityhq/virality/processor"
	"github.com/viralityhq/virality/store"
)

// TestLiveCreators: the live service over 4 input partitions writes creator
// score records and rising-creators lists, and they are the records of a
// backfill of the same input, each creator's in the same order (the live
// run lacks only what a bounded input's end adds: the last tick's and the
// final records).
func TestLiveCreators(t *testing.T) {
	kc := testBroker(t)
	cfg := testConfig(t, kc)
	suffix := strings.TrimPrefix(cfg.Group, "virality")
	cfg.CreatorScoresTopic += suffix
	cfg.RisingCreatorsTopic += suffix
	const n = 4
	lines := generatedLines(t, 40_000)
	createInput(t, kc, cfg.InputTopic, n)
	produceKeyed(t, kc, cfg.InputTopic, lines, byUser)

	wantCreators, wantRising := backfillCreators(t, cfg.Engine, lines, n)
	perCreator := func(keys, values [][]byte) map[string][][]byte {
		m := map[string][][]byte{}
		for i := range keys {
			m[string(keys[i])] = append(m[string(keys[i])], values[i])
		}
		return m
	}
	var wk, wv [][]byte
	for _, m := range wantCreators {
		wk, wv = append(wk, m.Key), append(wv, m.Value)
	}
	want := perCreator(wk, wv)

	svc, stop := startService(t, cfg, t.TempDir())
	waitFor(t, "all likes consumed", 2*time.Minute, func() bool { return svc.EventsIn.Load() == int64(len(lines)) })
	var got map[string][][]byte
	var rising []processor.Record
	var total int
	enough := func() bool {
		var gk, gv [][]byte
		for _, r := range readTopic(t, kc, cfg.CreatorScoresTopic) {
			gk, gv = append(gk, r.Key), append(gv, r.Value)
		}
		got, total = perCreator(gk, gv), len(gk)
		rising = readTopic(t, kc, cfg.RisingCreatorsTopic)
		return total >= len(wantCreators)*9/10 && len(rising) >= len(wantRising)*9/10
	}
	eventually(time.Minute, enough)
	// The HTTP interface's answers (this instance holds partition 0).
	if l, _, ok := svc.RisingCreators("global"); !ok || len(l.Creators) == 0 {
		t.Errorf("no global rising-creators list from the service: %v %+v", ok, l)
	}
	// A creator's state is in the store once a commit after its records
	// has landed (the creator pipe merges beside the partitions): the
	// service answers within a commit or two.
	for id := range want {
		var rec []byte
		var ok bool
		var err error
		waitFor(t, "creator "+id+" from the service", time.Minute, func() bool {
			rec, ok, err = svc.Creator(context.Background(), id)
			return err != nil || ok
		})
		if err != nil || !bytes.Contains(rec, []byte(`"creator_id":"`+id+`"`)) {
			t.Errorf("creator %s from the service: %s %v %v", id, rec, ok, err)
		}
		break
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if total < len(wantCreators)*9/10 || len(rising) < len(wantRising)*9/10 {
		t.Fatalf("live: %d creator records, %d rising lists; backfill: %d and %d", total, len(rising), len(wantCreators), len(wantRising))
	}
	for id, recs := range got {
		w := want[id]
		if len(recs) > len(w) {
			t.Fatalf("creator %s: %d live records, %d in the backfill", id, len(recs), len(w))
		}
		for i := range recs {
			if !bytes.Equal(recs[i], w[i]) {
				t.Fatalf("creator %s record %d:\n live:     %s\n backfill: %s", id, i, recs[i], w[i])
			}
		}
	}
	for i, r := range rising {
		if !bytes.Equal(r.Value, wantRising[i].Value) {
			t.Fatalf("rising list %d:\n live:     %.300s\n backfill: %.300s", i, r.Value, wantRising[i].Value)
		}
	}
	t.Logf("%d creator records of %d creators and %d rising lists agree with the backfill (%d and %d)",
		total, len(got), len(rising), len(wantCreators), len(wantRising))
}

// backfillCreators runs the lines through the engine as `virality
// backfill --partitions n` does, keeping the creator outputs.
func backfillCreators(t *testing.T, cfg processor.Config, lines []line, n int) (creators, rising []processor.Message) {
	t.Helper()
	db, err := store.Open(t.TempDir(), store.DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	c, r := &collect{}, &collect{}
	g, err := processor.NewCoordinator(cfg, db, processor.Outputs{Scores: &collect{}, Trending: &collect{}, DeadLetters: &collect{},
		Creators: c, RisingCreators: r},
		processor.Topology{Partitions: n, Partitioner: Partitioner, Stream: true, Workers: 2, Expect: n})
	if err != nil {
		t.Fatal(err)
	}
	for p := range n {
		if _, err := g.Open(int32(p)); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	now := time.Now().UnixMilli()
	recs := make([]processor.Record, len(lines))
	for i, l := range lines {
		recs[i] = processor.Record{Value: l.value, Time: min(l.ts, now), Offset: int64(i)}
	}
	b := &processor.Batch{}
	b.Fill(recs, 0)
	b.Decode()
	if err := g.TakeInput(ctx, 0, b); err != nil {
		t.Fatal(err)
	}
	if err := g.Finish(ctx); err != nil {
		t.Fatal(err)
	}
	return c.msgs, r.msgs
}

// TestLiveCreatorsTwoInstances: two instances of one group share the 8
// input partitions (input keyed by user, so most likes cross between
// them); every creator record and rising list they write is the backfill's
// record of the same creator and seq, or of the same tick and region
// (outputs may repeat around a rebalance, never differ).
func TestLiveCreatorsTwoInstances(t *testing.T) {
	kc := testBroker(t)
	cfg := testConfig(t, kc)
	suffix := strings.TrimPrefix(cfg.Group, "virality")
	cfg.CreatorScoresTopic += suffix
	cfg.RisingCreatorsTopic += suffix
	const n = 8
	createInput(t, kc, cfg.InputTopic, n)
	a, stopA := startService(t, cfg, t.TempDir())
	b, stopB := startService(t, cfg, t.TempDir())
	owned := func(s *Service) int {
		if p := s.owned.Load(); p != nil {
			return len(*p)
		}
		return 0
	}
	waitFor(t, "both instances to own partitions", time.Minute, func() bool {
		return owned(a) > 0 && owned(b) > 0 && owned(a)+owned(b) == n
	})
	lines := generatedLines(t, 40_000)
	produceKeyed(t, kc, cfg.InputTopic, lines, byUser)
	waitFor(t, "all likes consumed", 2*time.Minute, func() bool {
		return a.EventsIn.Load()+b.EventsIn.Load() == int64(len(lines))
	})
	wantCreators, wantRising := backfillCreators(t, cfg.Engine, lines, n)
	want := map[string]string{}
	for _, m := range wantCreators {
		var r struct {
			Seq int64 `json:"seq"`
		}
		if err := json.Unmarshal(m.Value, &r); err != nil {
			t.Fatal(err)
		}
		want[fmt.Sprintf("%s/%d", m.Key, r.Seq)] = string(m.Value)
	}
	wantLists := map[string]string{}
	for _, m := range wantRising {
		wantLists[fmt.Sprintf("%s/%d", m.Key, m.Time)] = string(m.Value)
	}
	var got, lists []processor.Record
	eventually(time.Minute, func() bool {
		got, lists = readTopic(t, kc, cfg.CreatorScoresTopic), readTopic(t, kc, cfg.RisingCreatorsTopic)
		return len(got) >= len(wantCreators)*9/10 && len(lists) >= len(wantRising)*9/10
	})
	if err := errorsJoin(stopA(), stopB()); err != nil {
		t.Fatal(err)
	}
	if len(got) < len(wantCreators)*9/10 || len(lists) < len(wantRising)*9/10 {
		t.Fatalf("live: %d creator records, %d rising lists; backfill: %d and %d", len(got), len(lists), len(wantCreators), len(wantRising))
	}
	for _, r := range got {
		var x struct {
			Seq int64 `json:"seq"`
		}
		if err := json.Unmarshal(r.Value, &x); err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprintf("%s/%d", r.Key, x.Seq)
		if want[k] != string(r.Value) {
			t.Fatalf("creator record %s:\n live:     %s\n backfill: %s", k, r.Value, want[k])
		}
	}
	for _, r := range lists {
		var x struct {
			TS int64 `json:"ts"`
		}
		if err := json.Unmarshal(r.Value, &x); err != nil {
			t.Fatal(err)
		}
		k := fmt.Sprintf("%s/%d", r.Key, x.TS)
		if wantLists[k] != string(r.Value) {
			t.Fatalf("rising list %s:\n live:     %.300s\n backfill: %.300s", k, r.Value, wantLists[k])
		}
	}
	t.Logf("%d creator records and %d rising lists from two instances (%d and %d events) are the backfill's",
		len(got), len(lists), a.EventsIn.Load(), b.EventsIn.Load())
}
