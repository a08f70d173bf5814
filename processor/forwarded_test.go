package processor

import (
	"testing"

	"github.com/viralityhq/virality/event"
)

// TestForwarded: Forwarded counts, for each partition of the by-user and
// the repartition topics, the records the coordinator wrote to it, as the
// records' forwarding headers name them.
func TestForwarded(t *testing.T) {
	out := newTestOutputs().outputs()
	byUser, repart := &memSink{}, &memSink{}
	out.ByUser, out.Repartition = byUser, repart
	c, err := NewCoordinator(DefaultConfig(), openMemStore(t), out, perSource(4, 1))
	if err != nil {
		t.Fatal(err)
	}
	r := &routed{ev: event.Event{VideoID: "v", UserID: "u", TS: 1000}, src: 1, srcMax: 1000}
	for _, w := range []struct {
		byUser bool
		part   int32
		value  []byte // nil: a progress marker
	}{
		{true, 2, []byte("like")}, {true, 2, nil}, {true, 0, []byte("like")},
		{false, 1, []byte("like")}, {false, 1, []byte("like")}, {false, 3, nil},
	} {
		sink := c.out.Repartition
		if w.byUser {
			sink = c.out.ByUser
		}
		if err := c.forward(sink, w.part, w.value, 0, r, false); err != nil {
			t.Fatal(err)
		}
	}
	for _, topic := range []struct {
		byUser bool
		sink   *memSink
	}{{true, byUser}, {false, repart}} {
		want := map[int32]int64{}
		for _, m := range topic.sink.msgs {
			p, ok := ForwardPartition(m.Headers[0].Value)
			if !ok {
				t.Fatalf("a forwarded record without its header: %+v", m)
			}
			want[p]++
		}
		for p := range int32(5) { // 4: no such partition
			if got := c.Forwarded(topic.byUser, p); got != want[p] {
				t.Errorf("Forwarded(byUser %v, partition %d) = %d, the sink has %d", topic.byUser, p, got, want[p])
			}
		}
	}
}
