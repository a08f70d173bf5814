package processor

import (
	"bytes"
	"context"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"testing"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/store"
)

// fnvPartitioner stands in for Kafka's murmur2 (which lives in kafkaio).
func fnvPartitioner(video string, n int) int32 {
	h := fnv.New32a()
	h.Write([]byte(video))
	return int32(h.Sum32() % uint32(n))
}

// oneSource is the topology of a backfill: one stream of records over n
// partitions of state (and n sources, as if keyed by video), applied on
// the given number of workers.
func oneSource(n, workers int) Topology {
	return Topology{Partitions: n, Partitioner: fnvPartitioner, Stream: true, Workers: workers, Expect: n}
}

// perSource is the topology of a topic of n partitions read in process:
// n sources, each routed to the n partitions of state.
func perSource(n, workers int) Topology {
	t := Topology{Partitions: n, Partitioner: fnvPartitioner, Workers: workers, Expect: n}
	for p := range n {
		t.Sources = append(t.Sources, int32(p))
	}
	return t
}

func openCoordinator(t testing.TB, cfg Config, db *store.DB, out testOutputs, topo Topology) *Coordinator {
	t.Helper()
	c, err := NewCoordinator(cfg, db, out.outputs(), topo)
	if err != nil {
		t.Fatal(err)
	}
	for p := range topo.Partitions {
		if _, err := c.Open(int32(p)); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// runTopology runs records as one stream through a coordinator.
func runTopology(t *testing.T, cfg Config, recs []Record, topo Topology) testOutputs {
	t.Helper()
	out := newTestOutputs()
	c := openCoordinator(t, cfg, openMemStore(t), out, topo)
	if err := Run(context.Background(), c, &sliceSource{recs: recs, step: 500}, RunOptions{Decoders: 1}); err != nil {
		t.Fatal(err)
	}
	return out
}

// runSources splits records into n sources by key (as a producer keyed by
// it splits a topic), and feeds the sources to a coordinator in turns of
// run(p) records each.
func runSources(t *testing.T, cfg Config, recs []Record, n int, key func(*event.Event) string, run func(p int) int) testOutputs {
	t.Helper()
	out := newTestOutputs()
	c := openCoordinator(t, cfg, openMemStore(t), out, perSource(n, 2))
	feedSources(t, c, recs, n, key, run, nil)
	return out
}

// feedSources feeds records to c as runSources does, then finishes. After
// each turn it calls after, if set, with the turn's error, which is
// otherwise fatal.
func feedSources(t *testing.T, c *Coordinator, recs []Record, n int, key func(*event.Event) string, run func(p int) int, after func(error)) {
	t.Helper()
	bySrc := make([][]Record, n)
	for _, r := range recs {
		var ev event.Event
		k := string(r.Value)
		if event.Decode(r.Value, 0, &ev) == nil {
			k = key(&ev)
		}
		p := fnvPartitioner(k+"/source", n)
		r.Partition = p
		r.Offset = int64(len(bySrc[p]))
		bySrc[p] = append(bySrc[p], r)
	}
	ctx := context.Background()
	b := &Batch{}
	for i, left := 0, len(recs); left > 0; i++ {
		p := i % n
		take := min(run(p), len(bySrc[p]))
		if take == 0 {
			continue
		}
		b.Fill(bySrc[p][:take], 0)
		b.Decode()
		bySrc[p] = bySrc[p][take:]
		left -= take
		err := c.TakeInput(ctx, int32(p), b)
		if after != nil {
			after(err)
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if err := c.Finish(ctx); err != nil {
		t.Fatal(err)
	}
}

// perVideo splits score records by video, keeping each video's order.
func perVideo(msgs []Message) map[string][]string {
	m := map[string][]string{}
	for _, x := range msgs {
		m[string(x.Key)] = append(m[string(x.Key)], string(x.Value))
	}
	return m
}

func sameMessages(t *testing.T, name string, a, b []Message) {
	t.Helper()
	if len(a) != len(b) {
		t.Fatalf("%s: %d records vs %d", name, len(a), len(b))
	}
	for i := range a {
		if !bytes.Equal(a[i].Key, b[i].Key) || !bytes.Equal(a[i].Value, b[i].Value) {
			t.Fatalf("%s record %d:\n%s\n%s", name, i, a[i].Value, b[i].Value)
		}
	}
}

func samePerVideo(t *testing.T, a, b []Message) int {
	t.Helper()
	va, vb := perVideo(a), perVideo(b)
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
	return len(va)
}

// TestWorkersIdentical: the outputs of a partitioned run are byte-identical
// whatever the number of workers applying the partitions.
func TestWorkersIdentical(t *testing.T) {
	recs := generated(t, nil)
	cfg := DefaultConfig()
	one := runTopology(t, cfg, recs, oneSource(4, 1))
	two := runTopology(t, cfg, recs, oneSource(4, 2))
	sameMessages(t, "scores", one.scores.msgs, two.scores.msgs)
	sameMessages(t, "trending", one.trending.msgs, two.trending.msgs)
	sameMessages(t, "dead letters", one.dead.msgs, two.dead.msgs)
	if len(one.scores.msgs) == 0 || len(one.trending.msgs) == 0 {
		t.Fatal("no output")
	}
}

// TestKeyingAndInterleaving: a topic keyed by user, by video or by nothing
// in particular, read in any interleaving of its partitions, gives every
// video the same records and the same trending snapshots as one stream of
// the same likes: each partition applies its events in event-time order,
// whatever order its sources delivered them in.
func TestKeyingAndInterleaving(t *testing.T) {
	recs := generated(t, nil)
	cfg := DefaultConfig()
	const n = 4
	want := runTopology(t, cfg, recs, oneSource(n, 2))
	for _, tc := range []struct {
		name string
		key  func(*event.Event) string
		run  func(p int) int
	}{
		{"by user", func(ev *event.Event) string { return ev.UserID }, func(p int) int { return 50 + 37*p }},
		{"by video", func(ev *event.Event) string { return ev.VideoID }, func(int) int { return 300 }},
		{"by event", func(ev *event.Event) string { return ev.EventID + ev.UserID + ev.VideoID }, func(p int) int { return 1 + 500*(p%2) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := runSources(t, cfg, recs, n, tc.key, tc.run)
			videos := samePerVideo(t, want.scores.msgs, got.scores.msgs)
			sameMessages(t, "trending", want.trending.msgs, got.trending.msgs)
			t.Logf("%d videos, %d trending records identical", videos, len(got.trending.msgs))
		})
	}
}

// TestPartitionedRestartAfterCrash: a crash and a resume on the same state
// and outputs end byte-identical to an uninterrupted run, with partitions
// applied in parallel and trending reports pending at commits.
func TestPartitionedRestartAfterCrash(t *testing.T) {
	recs := generated(t, nil)
	cfg := DefaultConfig()
	cfg.CommitEvery = 1_500
	topo := oneSource(3, 2)
	want := newTestOutputs()
	if err := Run(context.Background(), openCoordinator(t, cfg, openMemStore(t), want, topo), &sliceSource{recs: recs, step: 250}, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	db, got := openMemStore(t), newTestOutputs()
	for _, at := range []int{7_777, 20_001, 41_234} {
		src := &stopAfter{sliceSource: sliceSource{recs: recs, step: 250}, budget: at}
		if err := Run(context.Background(), openCoordinator(t, cfg, db, got, topo), src, RunOptions{}); err != errCrash {
			t.Fatalf("run until crash: %v", err)
		}
	}
	if err := Run(context.Background(), openCoordinator(t, cfg, db, got, topo), &sliceSource{recs: recs, step: 250}, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	sameMessages(t, "scores", want.scores.msgs, got.scores.msgs)
	sameMessages(t, "trending", want.trending.msgs, got.trending.msgs)
	if len(want.scores.msgs) == 0 || len(want.trending.msgs) == 0 {
		t.Fatal("no output")
	}
}

// TestBatchFillAndRefer: Fill copies the records' bytes, skipping those
// before the resume offset; Refer copies the records and their headers
// but points at the bytes given.
func TestBatchFillAndRefer(t *testing.T) {
	recs := []Record{
		{Offset: 4, Key: []byte("a"), Value: []byte(`{"v":1}`), Headers: []Header{{Key: "h", Value: []byte("x")}}},
		{Offset: 5, Key: []byte("b"), Value: []byte(`{"v":2}`)},
	}
	var filled, referred Batch
	filled.Fill(recs, 5)
	referred.Refer(recs)
	if len(filled.Recs) != 1 || string(filled.Recs[0].Value) != `{"v":2}` {
		t.Fatalf("Fill from offset 5 kept %d records", len(filled.Recs))
	}
	if len(referred.Recs) != 2 || len(referred.Events) != 0 || len(referred.Errs) != 0 {
		t.Fatalf("Refer kept %d records, %d events, %d errors; want 2, then none decoded", len(referred.Recs), len(referred.Events), len(referred.Errs))
	}
	if referred.Decode(); len(referred.Events) != 2 || len(referred.Errs) != 2 {
		t.Fatalf("Decode gave %d events, %d errors; want 2 each", len(referred.Events), len(referred.Errs))
	}
	recs[1].Value[5] = '9'
	recs[0].Headers[0].Value[0] = 'y'
	recs[0].Headers[0] = Header{Key: "other"}
	if got := string(filled.Recs[0].Value); got != `{"v":2}` {
		t.Errorf("Fill's copy changed with its source: %s", got)
	}
	if got := string(referred.Recs[1].Value); got != `{"v":9}` {
		t.Errorf("Refer's record reads %s, want the bytes given, changed to {\"v\":9}", got)
	}
	if h := referred.Recs[0].Headers[0]; h.Key != "h" || string(h.Value) != "y" {
		t.Errorf("Refer's header is %s=%s, want its own entry h pointing at the value given (y)", h.Key, h.Value)
	}
}

// TestParallel: parallel runs fn once on every partition, whatever the
// number of workers, and returns the errors fn returned (one worker stops
// at the first).
func TestParallel(t *testing.T) {
	for _, workers := range []int{1, 2, 3, 8} {
		c := openCoordinator(t, DefaultConfig(), openMemStore(t), newTestOutputs(), oneSource(6, workers))
		for round := range 60 {
			failing := int32(round%4) - 1 // -1: none fails
			var mu sync.Mutex
			ran := map[int32]int{}
			err := c.parallel(func(e *Engine) error {
				mu.Lock()
				ran[e.id]++
				mu.Unlock()
				if e.id%4 == failing {
					return fmt.Errorf("partition %d failed", e.id)
				}
				return nil
			})
			if (err != nil) != (failing >= 0) {
				t.Fatalf("%d workers, round %d: error %v", workers, round, err)
			}
			for _, id := range c.ids {
				if ran[id] > 1 || ran[id] == 0 && (workers > 1 || failing < 0) {
					t.Fatalf("%d workers, round %d: partition %d ran %d times", workers, round, id, ran[id])
				}
				if workers > 1 && id%4 == failing && !strings.Contains(err.Error(), fmt.Sprintf("partition %d failed", id)) {
					t.Fatalf("%d workers, round %d: error %v without partition %d's", workers, round, err, id)
				}
			}
		}
	}
}
