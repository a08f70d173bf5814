package processor

import (
	"bytes"
	"context"
	"hash/fnv"
	"testing"

	"virality/event"
	"virality/store"
)

func videoHashRoute(n int) Route {
	return func(rec *Record, ev *event.Event) int32 {
		if ev == nil {
			return 0
		}
		h := fnv.New32a()
		h.Write([]byte(ev.VideoID))
		return int32(h.Sum32() % uint32(n))
	}
}

// runPartitioned runs records through a group of n partitions routed by
// video, the way a topic keyed by video splits them.
func runPartitioned(t *testing.T, cfg Config, recs []Record, n int) testOutputs {
	t.Helper()
	out := newTestOutputs()
	g, err := NewGroup(cfg, openMemStore(t), out.outputs(), videoHashRoute(n), n)
	if err != nil {
		t.Fatal(err)
	}
	for p := range n {
		if _, err := g.Open(int32(p)); err != nil {
			t.Fatal(err)
		}
	}
	if err := Run(context.Background(), g, &sliceSource{recs: recs, step: 500}, RunOptions{Decoders: 1}); err != nil {
		t.Fatal(err)
	}
	return out
}

// interleave splits records by route, keeping each partition's order, and
// lets the partitions take turns with runs of run(p) records; offsets are
// renumbered in the new order.
func interleave(recs []Record, n int, route Route, run func(p int) int) []Record {
	byPart := make([][]Record, n)
	for _, r := range recs {
		var ev event.Event
		var evp *event.Event
		if event.Decode(r.Value, 0, &ev) == nil {
			evp = &ev
		}
		p := route(&r, evp)
		byPart[p] = append(byPart[p], r)
	}
	out := make([]Record, 0, len(recs))
	for i := 0; len(out) < len(recs); i++ {
		p := i % n
		take := min(run(p), len(byPart[p]))
		out = append(out, byPart[p][:take]...)
		byPart[p] = byPart[p][take:]
	}
	for i := range out {
		out[i].Offset = int64(i)
	}
	return out
}

// perVideo splits score records by video, keeping each video's order.
func perVideo(msgs []Message) map[string][]string {
	m := map[string][]string{}
	for _, x := range msgs {
		m[string(x.Key)] = append(m[string(x.Key)], string(x.Value))
	}
	return m
}

// TestPartitionInterleaving: with input split into partitions, how the
// partitions' records interleave does not change any video's records nor
// the merged trending snapshots, which is what lets a live run over a
// partitioned topic agree with a backfill of the same partitions.
func TestPartitionInterleaving(t *testing.T) {
	recs := generated(t, nil)
	const n = 4
	route := videoHashRoute(n)
	// Another interleaving: each partition's records keep their order,
	// but partitions take turns in uneven runs.
	other := interleave(recs, n, route, func(p int) int { return 50 + 37*p })

	cfg := DefaultConfig()
	a := runPartitioned(t, cfg, recs, n)
	b := runPartitioned(t, cfg, other, n)

	va, vb := perVideo(a.scores.msgs), perVideo(b.scores.msgs)
	if len(va) != len(vb) {
		t.Fatalf("%d videos vs %d", len(va), len(vb))
	}
	for id, ra := range va {
		rb := vb[id]
		if len(ra) != len(rb) {
			t.Fatalf("video %s: %d records vs %d", id, len(ra), len(rb))
		}
		for i := range ra {
			if ra[i] != rb[i] {
				t.Fatalf("video %s record %d:\n%s\n%s", id, i, ra[i], rb[i])
			}
		}
	}
	if len(a.trending.msgs) == 0 || len(a.trending.msgs) != len(b.trending.msgs) {
		t.Fatalf("trending: %d vs %d records", len(a.trending.msgs), len(b.trending.msgs))
	}
	for i := range a.trending.msgs {
		if !bytes.Equal(a.trending.msgs[i].Value, b.trending.msgs[i].Value) {
			t.Fatalf("trending record %d:\n%s\n%s", i, a.trending.msgs[i].Value, b.trending.msgs[i].Value)
		}
	}
	t.Logf("%d videos, %d trending records identical", len(va), len(a.trending.msgs))
}

// TestPartitionedRestartAfterCrash: partitions that drift apart leave
// trending reports pending in the merger at commits; a crash and a resume
// on the same state and outputs end byte-identical to an uninterrupted run.
func TestPartitionedRestartAfterCrash(t *testing.T) {
	recs := generated(t, nil)
	const n = 3
	route := videoHashRoute(n)
	// Long runs of one partition at a time: the others fall far behind.
	drifted := interleave(recs, n, route, func(int) int { return 4_000 })
	cfg := DefaultConfig()
	cfg.CommitEvery = 1_500
	open := func(db *store.DB, out testOutputs) *Group {
		g, err := NewGroup(cfg, db, out.outputs(), route, n)
		if err != nil {
			t.Fatal(err)
		}
		for p := range n {
			if _, err := g.Open(int32(p)); err != nil {
				t.Fatal(err)
			}
		}
		return g
	}
	want := newTestOutputs()
	if err := Run(context.Background(), open(openMemStore(t), want), &sliceSource{recs: drifted, step: 250}, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	db, got := openMemStore(t), newTestOutputs()
	for _, at := range []int{7_777, 20_001, 41_234} {
		src := &stopAfter{sliceSource: sliceSource{recs: drifted, step: 250}, budget: at}
		if err := Run(context.Background(), open(db, got), src, RunOptions{}); err != errCrash {
			t.Fatalf("run until crash: %v", err)
		}
	}
	if err := Run(context.Background(), open(db, got), &sliceSource{recs: drifted, step: 250}, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, pair := range map[string][2]*memSink{"scores": {want.scores, got.scores}, "trending": {want.trending, got.trending}} {
		a, b := pair[0].msgs, pair[1].msgs
		if len(a) != len(b) || len(a) == 0 {
			t.Fatalf("%s: %d records uninterrupted, %d with crashes", name, len(a), len(b))
		}
		for i := range a {
			if !bytes.Equal(a[i].Value, b[i].Value) {
				t.Fatalf("%s record %d differs:\n%s\n%s", name, i, a[i].Value, b[i].Value)
			}
		}
	}
}
