package kafkaio

import (
	"context"
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
	for _, c := range []struct{ n, parts, want int }{
		{0, 0, 1},
		{5, 0, 5},
		{5, 8, 5},         // 2*5/8+16 = 17: the chunk
		{800, 8, 216},     // 2*800/8+16
		{10_000, 8, 1000}, // the writer's cap
		{10_000, 1, 1000},
		{50, 1, 50},
	} {
		if got := batchSizeFor(c.n, c.parts); got != c.want {
			t.Errorf("batchSizeFor(%d, %d) = %d, want %d", c.n, c.parts, got, c.want)
		}
	}
}
