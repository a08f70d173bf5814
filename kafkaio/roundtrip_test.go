package kafkaio

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	produceapi "github.com/segmentio/kafka-go/protocol/produce"

	"github.com/viralityhq/virality/processor"
)

func TestSinkToSourceRoundTrip(t *testing.T) {
	c := broker(t)
	mustTopics(t, c, TopicSpec{Name: "out", Partitions: 3})
	ctx := testCtx(t, 20*time.Second)

	s, err := NewSink(c, "out", SinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n = 300
	key, val := make([]byte, 0, 16), make([]byte, 0, 64)
	for i := range n {
		// Reuse the buffers, as the engine does: Write must copy.
		key = fmt.Appendf(key[:0], "v%d", i%7)
		val = fmt.Appendf(val[:0], `{"i":%d}`, i)
		m := &processor.Message{Key: key, Value: val, Time: 1_700_000_000_000 + int64(i),
			Headers: []processor.Header{{Key: "h", Value: []byte(fmt.Sprint(i))}}}
		if err := s.Write(m); err != nil {
			t.Fatal(err)
		}
	}
	if s.Buffered() != n {
		t.Fatalf("buffered %d, want %d", s.Buffered(), n)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if s.Writes() != n || s.Buffered() != 0 {
		t.Fatalf("writes %d buffered %d", s.Writes(), s.Buffered())
	}

	ends, err := s.EndOffsets(ctx, []int32{0, 1, 2})
	if err != nil {
		t.Fatal(err)
	}
	got := map[int]processor.Record{}
	keyPart := map[string]int32{}
	for p := range 3 {
		src := readNumbered(t, ctx, c, "out", p, func(i int, r processor.Record) {
			r.Key, r.Value = bytes.Clone(r.Key), bytes.Clone(r.Value)
			r.Headers = cloneHeaders(r.Headers)
			got[i] = r
			if kp, ok := keyPart[string(r.Key)]; ok && kp != r.Partition {
				t.Errorf("key %s in partitions %d and %d", r.Key, kp, r.Partition)
			}
			keyPart[string(r.Key)] = r.Partition
		})
		if hw := src.HighWatermark(); hw != src.Offset() {
			t.Errorf("partition %d: high watermark %d, offset %d", p, hw, src.Offset())
		}
		if ends[int32(p)] != src.Offset() {
			t.Errorf("partition %d: EndOffsets says %d, read to %d", p, ends[int32(p)], src.Offset())
		}
		src.Close()
	}
	if len(got) != n {
		t.Fatalf("read %d records, want %d", len(got), n)
	}
	for i, r := range got {
		if want := fmt.Sprintf("v%d", i%7); string(r.Key) != want {
			t.Errorf("record %d: key %q, want %q", i, r.Key, want)
		}
		if want := int64(1_700_000_000_000 + i); r.Time != want {
			t.Errorf("record %d: time %d, want %d", i, r.Time, want)
		}
		if len(r.Headers) != 1 || r.Headers[0].Key != "h" || string(r.Headers[0].Value) != fmt.Sprint(i) {
			t.Errorf("record %d: headers %v", i, r.Headers)
		}
		if r.Topic != "out" {
			t.Errorf("record %d: topic %q", i, r.Topic)
		}
	}
}

// cloneHeaders deep-copies headers that alias a source's buffers.
func cloneHeaders(hs []processor.Header) []processor.Header {
	out := make([]processor.Header, len(hs))
	for i, h := range hs {
		out[i] = processor.Header{Key: h.Key, Value: bytes.Clone(h.Value)}
	}
	return out
}

// TestSinkDetach writes records while detached ones are sent on another
// goroutine, retries a send that failed, and reads every record back, in
// the order written for each key (those of the failed send may come
// twice, as a Sink says).
func TestSinkDetach(t *testing.T) {
	c := broker(t)
	mustTopics(t, c, TopicSpec{Name: "out", Partitions: 2})
	ctx := testCtx(t, 20*time.Second)
	s, err := NewSink(c, "out", SinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Detach() != nil {
		t.Fatal("Detach of an empty sink returned a send")
	}
	const rounds, each = 20, 50
	val := make([]byte, 0, 64)
	write := func(i int) {
		val = fmt.Appendf(val[:0], `{"i":%d}`, i)
		if err := s.Write(&processor.Message{Key: []byte(fmt.Sprintf("k%d", i%5)), Value: val}); err != nil {
			t.Error(err)
		}
	}
	// The first send fails (its context is done), and is sent again.
	for i := range each {
		write(i)
	}
	send := s.Detach()
	if s.Buffered() != 0 {
		t.Fatalf("buffered %d after Detach", s.Buffered())
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := send(done); err == nil {
		t.Fatal("a send with its context done succeeded")
	}
	for r := 1; r < rounds; r++ {
		errc := make(chan error, 1)
		go func() { errc <- send(ctx) }()
		for i := r * each; i < (r+1)*each; i++ {
			write(i) // while the last ones are sent
		}
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		send = s.Detach()
	}
	if err := send(ctx); err != nil {
		t.Fatal(err)
	}
	if n := s.Writes(); n != rounds*each {
		t.Fatalf("%d records acknowledged, want %d", n, rounds*each)
	}
	last := map[string]int{}
	seen := map[int]bool{}
	for p := range 2 {
		readNumbered(t, ctx, c, "out", p, func(i int, r processor.Record) {
			// The failed send may have delivered some: they come
			// twice, the second time in order.
			if seen[i] && i >= each {
				t.Errorf("record %d read twice", i)
			}
			seen[i] = true
			if l, ok := last[string(r.Key)]; ok && l > i && l >= each {
				t.Errorf("key %s: record %d after %d", r.Key, i, l)
			}
			last[string(r.Key)] = i
		}).Close()
	}
	if len(seen) != rounds*each {
		t.Fatalf("read %d records, want %d", len(seen), rounds*each)
	}
	for k, l := range last {
		if want := rounds*each - 5 + int(k[1]-'0'); l != want {
			t.Errorf("key %s: last record %d, want %d", k, l, want)
		}
	}
}

// readNumbered reads partition p of topic from its start to its end and
// calls each with every record (its bytes valid for the call) and the
// number in its value, {"i":N}. It returns the source, to close.
func readNumbered(t *testing.T, ctx context.Context, c Config, topic string, p int, each func(i int, r processor.Record)) *PartitionSource {
	t.Helper()
	src, err := NewPartitionSource(c, topic, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	var buf []processor.Record
	for {
		if buf, err = src.Next(ctx, buf); err != nil {
			t.Fatal(err)
		}
		if len(buf) == 0 {
			return src
		}
		for _, r := range buf {
			var i int
			if _, err := fmt.Sscanf(string(r.Value), `{"i":%d}`, &i); err != nil {
				t.Fatalf("value %q: %v", r.Value, err)
			}
			each(i, r)
		}
	}
}

// producesCounted counts the Produce requests that reach a transport.
type producesCounted struct {
	kafka.RoundTripper
	n atomic.Int32
}

func (c *producesCounted) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	switch req.(type) {
	case *produceapi.Request, *produceRequest:
		c.n.Add(1)
	}
	return c.RoundTripper.RoundTrip(ctx, addr, req)
}

// TestSinkSendDone: a send whose context is done sends no request. kafka-go's
// transport would hand it to an idle connection all the same, which sends
// it while the send returns its context's error: the records could then
// land after those sent after them, out of order for their keys (seen once
// in TestSinkDetach on a loaded machine).
func TestSinkSendDone(t *testing.T) {
	c := broker(t)
	mustTopics(t, c, TopicSpec{Name: "out", Partitions: 2})
	ctx := testCtx(t, 20*time.Second)
	s, err := NewSink(c, "out", SinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	// A first flush: the topic's metadata known, a connection idle.
	if err := s.Write(&processor.Message{Key: []byte("k"), Value: []byte("v0")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	counted := &producesCounted{RoundTripper: s.b.meta.RoundTripper}
	s.b.meta.RoundTripper = counted
	if err := s.Write(&processor.Message{Key: []byte("k"), Value: []byte("v1")}); err != nil {
		t.Fatal(err)
	}
	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Detach()(done); err == nil {
		t.Fatal("a send with its context done succeeded")
	}
	if n := counted.n.Load(); n != 0 {
		t.Fatalf("a send with its context done sent %d Produce requests", n)
	}
}
