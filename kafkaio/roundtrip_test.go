package kafkaio

import (
	"bytes"
	"fmt"
	"testing"
	"time"

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
		src, err := NewPartitionSource(c, "out", p, 0)
		if err != nil {
			t.Fatal(err)
		}
		var buf []processor.Record
		for {
			buf, err = src.Next(ctx, buf)
			if err != nil {
				t.Fatal(err)
			}
			if len(buf) == 0 {
				break
			}
			for _, r := range buf {
				var i int
				if _, err := fmt.Sscanf(string(r.Value), `{"i":%d}`, &i); err != nil {
					t.Fatalf("value %q: %v", r.Value, err)
				}
				r.Key, r.Value = bytes.Clone(r.Key), bytes.Clone(r.Value)
				r.Headers = cloneHeaders(r.Headers)
				got[i] = r
				if kp, ok := keyPart[string(r.Key)]; ok && kp != r.Partition {
					t.Errorf("key %s in partitions %d and %d", r.Key, kp, r.Partition)
				}
				keyPart[string(r.Key)] = r.Partition
			}
		}
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
