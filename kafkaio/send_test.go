package kafkaio

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
	"unsafe"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/rawproduce"

	"github.com/viralityhq/virality/processor"
)

// lateRT holds the first Produce request and says its attempt timed out,
// as a transport does whose connection goroutine may still be encoding
// the request after the attempt's deadline: the sink retries, and the test
// reads the held request's records later, as that goroutine would.
type lateRT struct {
	kafka.RoundTripper
	held *rawproduce.Request
}

func (r *lateRT) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	if p, ok := req.(*produceRequest); ok && r.held == nil {
		r.held = &p.Request
		return nil, context.DeadlineExceeded
	}
	return r.RoundTripper.RoundTrip(ctx, addr, req)
}

// TestSendTimedOutRequestKeepsItsRecords: a request whose attempt timed
// out still reads the records it was given after the sink has sent them
// again, had them acknowledged, and buffered and sent more. (send.go
// encodes records in place, as the request is written; the buffers of a
// flush with a failed attempt must not be reused. They were cleared once, and a record went out
// without its headers: TestRunRestarts saw it after a restart.)
func TestSendTimedOutRequestKeepsItsRecords(t *testing.T) {
	ctx := testCtx(t, 60*time.Second)
	c := broker(t)
	mustTopics(t, c, TopicSpec{Name: "late", Partitions: 2})
	s, err := NewSink(c, "late", SinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rt := &lateRT{RoundTripper: s.b.meta.RoundTripper}
	s.b.meta.RoundTripper = rt
	write := func(from, n int) {
		for i := from; i < from+n; i++ {
			m := processor.Message{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, `{"i":%d}`, i), Time: 1,
				Headers: []processor.Header{{Key: "h", Value: fmt.Appendf(nil, "h%d", i)}}}
			if err := s.Write(&m); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(0, 100)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if rt.held == nil {
		t.Fatal("no Produce request was sent")
	}
	write(100, 100) // into the buffers, unless they were left to the request
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, tp := range rt.held.Topics {
		for _, p := range tp.Partitions {
			// The request's records as its connection would encode
			// them now.
			var rs protocol.RecordSet
			if _, err := rs.ReadFrom(p.RecordSet.Reader); err != nil {
				t.Fatal(err)
			}
			for {
				rec, err := rs.Records.ReadRecord()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatal(err)
				}
				if rec.Key == nil || rec.Value == nil {
					t.Fatalf("the timed-out request reads a record without key or value (headers %v): cleared under it", rec.Headers)
				}
				k, _ := io.ReadAll(rec.Key)
				v, _ := io.ReadAll(rec.Value)
				var i int
				if _, err := fmt.Sscanf(string(k), "k%d", &i); err != nil || i >= 100 || string(v) != fmt.Sprintf(`{"i":%d}`, i) ||
					len(rec.Headers) != 1 || string(rec.Headers[0].Value) != fmt.Sprintf("h%d", i) {
					t.Fatalf("the timed-out request reads key %q, value %q, headers %v: not a record it was given", k, v, rec.Headers)
				}
				n++
			}
		}
	}
	if n != 100 {
		t.Errorf("the timed-out request holds %d records, want 100", n)
	}
}

// TestDetachedBuffersAreReused: a sink written while its last detached
// records are in flight, as the live service's outputs are, fills two
// buffers of record entries by turns once both have grown, and its bytes
// go into chunks given back once acknowledged: it allocates no more, also
// when it gets nothing while some flights are in the air (then both come
// back before the next write).
func TestDetachedBuffersAreReused(t *testing.T) {
	c := broker(t)
	mustTopics(t, c, TopicSpec{Name: "reuse", Partitions: 2})
	s, err := NewSink(c, "reuse", SinkOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := testCtx(t, 30*time.Second)
	write := func() {
		for i := range 200 {
			m := processor.Message{Key: fmt.Appendf(nil, "k%d", i), Value: bytes.Repeat([]byte("v"), 100), Time: 1,
				Headers: []processor.Header{{Key: "h", Value: []byte("x")}}}
			if err := s.Write(&m); err != nil {
				t.Fatal(err)
			}
		}
	}
	land := func(send func(context.Context) error) {
		if send != nil {
			if err := send(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	arrays := map[*rec]bool{}
	var inFlight func(context.Context) error
	written := 0
	var made int64
	for round := range 15 {
		if round == 3 {
			made = chunks.made.Load()
		}
		// Every third round nothing is written while the last records
		// are in flight.
		if round%3 != 2 {
			write()
			written += 200
			if round >= 3 {
				arrays[unsafe.SliceData(s.b.recs)] = true
			}
		}
		land(inFlight)
		inFlight = s.Detach()
	}
	land(inFlight)
	if len(arrays) > 2 {
		t.Errorf("rounds 3-14 wrote into %d arrays of entries, want at most 2, by turns", len(arrays))
	}
	if n := chunks.made.Load() - made; n > 0 {
		t.Errorf("rounds 3-14 allocated %d chunks, want none: those of the rounds before come back", n)
	}
	if got := s.Writes(); got != int64(written) {
		t.Errorf("%d records acknowledged, want %d", got, written)
	}
}
