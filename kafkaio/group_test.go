package kafkaio

import (
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// TestConsumerGroup checks that kafka-go's consumer group protocol works
// against the embedded broker: two members share the partitions of a
// topic, and offsets committed in one generation are the starting offsets
// of the next.
func TestConsumerGroup(t *testing.T) {
	c := broker(t)
	mustTopics(t, c, TopicSpec{Name: "likes", Partitions: 4})
	ctx := testCtx(t, 30*time.Second)
	d, err := c.Dialer()
	if err != nil {
		t.Fatal(err)
	}
	member := func() *kafka.ConsumerGroup {
		t.Helper()
		g, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
			ID: "virality", Brokers: c.Brokers, Dialer: d, Topics: []string{"likes"},
			HeartbeatInterval: 100 * time.Millisecond,
			SessionTimeout:    6 * time.Second, // the broker's minimum
			RebalanceTimeout:  5 * time.Second,
			JoinGroupBackoff:  100 * time.Millisecond,
			StartOffset:       kafka.FirstOffset,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { g.Close() })
		return g
	}

	a := member()
	gen1, err := a.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	as := gen1.Assignments["likes"]
	if len(as) != 4 {
		t.Fatalf("generation %d: the only member got %v, want all 4 partitions", gen1.ID, as)
	}
	commit := map[int]int64{}
	for _, p := range as {
		if p.Offset != kafka.FirstOffset {
			t.Errorf("partition %d starts at %d before any commit, want FirstOffset", p.ID, p.Offset)
		}
		commit[p.ID] = int64(100 + p.ID)
	}
	if err := gen1.CommitOffsets(map[string]map[int]int64{"likes": commit}); err != nil {
		t.Fatal(err)
	}

	b := member()
	type result struct {
		gen *kafka.Generation
		err error
	}
	bc := make(chan result, 1)
	go func() {
		g, err := b.Next(ctx)
		bc <- result{g, err}
	}()
	gen2a, err := a.Next(ctx) // after the rebalance that b's join starts
	if err != nil {
		t.Fatal(err)
	}
	rb := <-bc
	if rb.err != nil {
		t.Fatal(rb.err)
	}
	gen2b := rb.gen
	if gen2a.ID == gen1.ID || gen2a.ID != gen2b.ID {
		t.Fatalf("generations: first %d, then %d and %d", gen1.ID, gen2a.ID, gen2b.ID)
	}
	var ids []int
	for _, g := range []*kafka.Generation{gen2a, gen2b} {
		as := g.Assignments["likes"]
		if len(as) == 0 {
			t.Errorf("member %s got no partition", g.MemberID)
		}
		for _, p := range as {
			ids = append(ids, p.ID)
			if want := int64(100 + p.ID); p.Offset != want {
				t.Errorf("partition %d starts at %d, want the committed %d", p.ID, p.Offset, want)
			}
		}
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []int{0, 1, 2, 3}) {
		t.Errorf("partitions assigned: %v, want each of 0..3 once", ids)
	}
}
