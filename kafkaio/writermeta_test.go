package kafkaio

import (
	"context"
	"fmt"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol/metadata"
	"github.com/segmentio/kafka-go/protocol/produce"

	"github.com/viralityhq/virality/processor"
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

// refusingRT counts the Produce requests that pass through it, and makes
// the broker's answer for one partition an error the first time.
type refusingRT struct {
	kafka.RoundTripper
	refuse   int32 // partition whose first answer is refused; -1: none
	requests int
	refused  bool
}

func (r *refusingRT) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	res, err := r.RoundTripper.RoundTrip(ctx, addr, req)
	if _, ok := req.(*produceRequest); !ok || err != nil {
		return res, err
	}
	r.requests++
	for i := range res.(*produce.Response).Topics {
		ps := res.(*produce.Response).Topics[i].Partitions
		for j := range ps {
			if ps[j].Partition == r.refuse && !r.refused {
				// Acknowledged by the broker all the same: a record sent
				// again shows as read twice.
				r.refused = true
				ps[j].ErrorCode = int16(kafka.NotLeaderForPartition)
			}
		}
	}
	return res, err
}

// TestSendOneRequestAFlush checks that a flush sends the records of every
// partition in one Produce request, in batches within the topic's limit,
// each partition's in order and on the partition kafka-go's Writer chose;
// and that when the broker refuses one partition, only that partition's
// records are sent again, and kept once.
func TestSendOneRequestAFlush(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	c := broker(t)
	const parts, n = 8, 800
	mustTopics(t, c, TopicSpec{Name: "one", Partitions: parts}, TopicSpec{Name: "small", Partitions: parts}, TopicSpec{Name: "refused", Partitions: parts})
	for _, tc := range []struct {
		topic    string
		limit    int // MaxMessageBytes; 0: the topic's
		refuse   int32
		requests int // Produce requests of the flush; 0: more than one
	}{
		{"one", 0, -1, 1},
		{"small", 2000, -1, 0}, // about 40 records a batch, 100 a partition: rounds
		{"refused", 0, 5, 2},
	} {
		s, err := NewSink(c, tc.topic, SinkOptions{MaxMessageBytes: tc.limit})
		if err != nil {
			t.Fatal(err)
		}
		rt := &refusingRT{RoundTripper: s.b.meta.RoundTripper, refuse: tc.refuse}
		s.b.meta.RoundTripper = rt
		want := make([][]int, parts)
		ids := make([]int, parts)
		for i := range ids {
			ids[i] = i
		}
		hash := &kafka.Hash{}
		for i := range n {
			m := processor.Message{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, `{"i":%d}`, i), Time: 1}
			if err := s.Write(&m); err != nil {
				t.Fatal(err)
			}
			p := hash.Balance(kafka.Message{Key: m.Key}, ids...)
			want[p] = append(want[p], i)
		}
		if err := s.Flush(ctx); err == nil {
			// A refused partition is retried within the flush.
		} else {
			t.Fatalf("%s: flush: %v", tc.topic, err)
		}
		switch {
		case tc.requests > 0 && rt.requests != tc.requests:
			t.Errorf("%s: %d Produce requests, want %d", tc.topic, rt.requests, tc.requests)
		case tc.requests == 0 && rt.requests <= 1:
			t.Errorf("%s: %d Produce requests for batches of at most %d bytes, want more", tc.topic, rt.requests, tc.limit)
		}
		for p := range parts {
			var got []int
			readNumbered(t, ctx, c, tc.topic, p, func(i int, _ processor.Record) { got = append(got, i) })
			// A refused partition's batch was kept by the broker and
			// sent again: its sequence number tells the broker it has
			// it, and the records are there once.
			w := want[p]
			if int32(p) == tc.refuse && !rt.refused {
				t.Errorf("%s: partition %d was never refused", tc.topic, p)
			}
			if !slices.Equal(got, w) {
				t.Errorf("%s: partition %d holds %v, want %v", tc.topic, p, got, w)
			}
		}
		s.Close()
	}
}
