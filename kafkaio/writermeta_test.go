package kafkaio

import (
	"context"
	"fmt"
	"net"
	"testing"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/metadata"
	"github.com/segmentio/kafka-go/protocol/produce"
)

// countingRT answers metadata requests with a topic of three partitions
// (or an error code) and counts what reaches it.
type countingRT struct {
	meta, other int
	errCode     int16
}

func (c *countingRT) RoundTrip(_ context.Context, _ net.Addr, req kafka.Request) (kafka.Response, error) {
	if r, ok := req.(*metadata.Request); ok {
		c.meta++
		t := metadata.ResponseTopic{Name: r.TopicNames[0], ErrorCode: c.errCode}
		if c.errCode == 0 {
			t.Partitions = make([]metadata.ResponsePartition, 3)
		}
		return &metadata.Response{Topics: []metadata.ResponseTopic{t}}, nil
	}
	c.other++
	return &produce.Response{}, nil
}

func TestWriterTransportCachesItsTopic(t *testing.T) {
	ctx := context.Background()
	inner := &countingRT{}
	wt := &writerTransport{RoundTripper: inner, topic: "scores"}
	if wt.knownPartitions() != 0 {
		t.Fatal("partitions known before any answer")
	}
	for range 100 {
		res, err := wt.RoundTrip(ctx, nil, &metadata.Request{TopicNames: []string{"scores"}})
		if err != nil || len(res.(*metadata.Response).Topics[0].Partitions) != 3 {
			t.Fatalf("answer %v, %v", res, err)
		}
	}
	if inner.meta != 1 || wt.knownPartitions() != 3 {
		t.Errorf("100 asks reached the transport %d times (want 1); partitions %d", inner.meta, wt.knownPartitions())
	}
	// Another topic, and anything but metadata, always pass through.
	wt.RoundTrip(ctx, nil, &metadata.Request{TopicNames: []string{"other"}})
	wt.RoundTrip(ctx, nil, &metadata.Request{TopicNames: []string{"other"}})
	wt.RoundTrip(ctx, nil, &produce.Request{})
	if inner.meta != 3 || inner.other != 1 {
		t.Errorf("passed through: %d metadata (want 3), %d other (want 1)", inner.meta, inner.other)
	}
	wt.forget()
	wt.RoundTrip(ctx, nil, &metadata.Request{TopicNames: []string{"scores"}})
	if inner.meta != 4 {
		t.Errorf("after forget: %d metadata asks, want 4", inner.meta)
	}
	// An answer with an error is never kept.
	inner2 := &countingRT{errCode: 3}
	wt2 := &writerTransport{RoundTripper: inner2, topic: "gone"}
	for range 3 {
		wt2.RoundTrip(ctx, nil, &metadata.Request{TopicNames: []string{"gone"}})
	}
	if inner2.meta != 3 || wt2.knownPartitions() != 0 {
		t.Errorf("error answers: %d asks (want 3), partitions %d (want 0)", inner2.meta, wt2.knownPartitions())
	}
}

func TestBatchSizeFor(t *testing.T) {
	msgs := func(n int) []kafka.Message {
		m := make([]kafka.Message, n)
		for i := range m {
			m[i].Key = []byte(fmt.Sprintf("video-%d", i))
		}
		return m
	}
	// most is the largest partition of chunk, as the writer places it.
	most := func(chunk []kafka.Message, parts int) int {
		counts := map[int]int{}
		ids := make([]int, parts)
		for i := range ids {
			ids[i] = i
		}
		n := 0
		for _, m := range chunk {
			p := (&kafka.Hash{}).Balance(m, ids...)
			counts[p]++
			n = max(n, counts[p])
		}
		return n
	}
	var scratch []int
	for _, c := range []struct{ n, parts, want int }{
		{0, 0, 1},
		{5, 0, 5},
		{5, 1, 5},
		{800, 8, most(msgs(800), 8)},
		{800, 3, most(msgs(800), 3)},
		{10_000, 8, 1000}, // the writer's cap
		{10_000, 1, 1000}, // the writer's cap
		{50, 1, 50},
	} {
		if got := batchSizeFor(msgs(c.n), c.parts, &kafka.Hash{}, &scratch); got != c.want {
			t.Errorf("batchSizeFor(%d records, %d partitions) = %d, want %d", c.n, c.parts, got, c.want)
		}
	}
	// Within bounds: at least an even share, at most the chunk.
	if got := batchSizeFor(msgs(800), 8, &kafka.Hash{}, &scratch); got < 100 || got > 200 {
		t.Errorf("batchSizeFor(800 records, 8 partitions) = %d, want between an even share (100) and twice it", got)
	}
	// A chunk all for one partition needs a batch as large as the chunk.
	one := kafka.BalancerFunc(func(kafka.Message, ...int) int { return 2 })
	if got := batchSizeFor(msgs(300), 8, one, &scratch); got != 300 {
		t.Errorf("batchSizeFor(300 records to one partition) = %d, want 300", got)
	}
}
