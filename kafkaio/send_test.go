package kafkaio

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
	"unsafe"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	produceapi "github.com/segmentio/kafka-go/protocol/produce"
	"github.com/segmentio/kafka-go/protocol/rawproduce"

	"github.com/viralityhq/virality/processor"
)

// lateRT holds the first Produce request and says its attempt timed out,
// as a transport does whose connection goroutine may still be encoding
// the request after the attempt's deadline: the sink retries, and the test
// reads the held request's records later, as that goroutine would.
type lateRT struct {
	kafka.RoundTripper
	held    *rawproduce.Request
	request *produceRequest // the held request, to send late
}

func (r *lateRT) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	if p, ok := req.(*produceRequest); ok && r.held == nil {
		r.held, r.request = &p.Request, p
		return nil, context.DeadlineExceeded
	}
	return r.RoundTripper.RoundTrip(ctx, addr, req)
}

// writeNumbered writes records k<i> with value {"i":<i>}, i in [from,
// from+n), to s.
func writeNumbered(t *testing.T, s *Sink, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		m := processor.Message{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, `{"i":%d}`, i), Time: 1}
		if err := s.Write(&m); err != nil {
			t.Fatal(err)
		}
	}
}

// checkOnceInOrder checks that every partition of topic holds the records
// i in [0, n) written to it once each, in the order written.
func checkOnceInOrder(t *testing.T, ctx context.Context, c Config, topic string, parts, n int) {
	t.Helper()
	seen := make([]int, n)
	for p := range parts {
		last := -1
		readNumbered(t, ctx, c, topic, p, func(i int, r processor.Record) {
			if i <= last {
				t.Errorf("partition %d: record %d at offset %d, after record %d", p, i, r.Offset, last)
			}
			last = i
			seen[i]++
		})
	}
	for i, k := range seen {
		if k != 1 {
			t.Errorf("record %d is in the topic %d times, want once", i, k)
		}
	}
}

// TestSendLateRequestIsNotAppended: a request of an attempt given up (past
// its deadline, or its context cancelled) that the connection writes only
// after the retry has sent its records and more, as kafka-go's transport
// may, is not appended: the batches' sequence numbers tell the broker it
// has them, or that they come out of order. Each record is in its
// partition once, in order. Without them, the late request's records
// landed again after newer ones: in a compacted changelog, a late copy
// of a commit's first batch after the commit's meta record made a
// restore leave the whole commit out (TestRestoreFromChangelog, a run in
// a few hundred under load).
func TestSendLateRequestIsNotAppended(t *testing.T) { onBrokers(t, sendLateRequest) }

func sendLateRequest(t *testing.T, c Config, topic string) {
	ctx := testCtx(t, 60*time.Second)
	const parts = 2
	mustTopics(t, c, TopicSpec{Name: topic, Partitions: parts})
	s, err := NewSink(c, topic, SinkOptions{MaxMessageBytes: 2000}) // about 40 records a batch
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rt := &lateRT{RoundTripper: s.b.meta.RoundTripper}
	s.b.meta.RoundTripper = rt
	writeNumbered(t, s, 0, 150)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if rt.request == nil {
		t.Fatal("no Produce request was held")
	}
	writeNumbered(t, s, 150, 600) // more batches than the broker remembers of a producer (5)
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The connection writes the held request now.
	res, err := rt.RoundTripper.RoundTrip(ctx, kafka.TCP(c.Brokers...), rt.request)
	if err != nil {
		t.Fatal(err)
	}
	for _, tp := range res.(*produceapi.Response).Topics {
		for _, p := range tp.Partitions {
			// Kafka answers a batch it has among a producer's last five
			// as a duplicate (an error, or none from kfake, with the
			// batch's first offset), and one before them as out of order.
			switch err := kafka.Error(p.ErrorCode); {
			case p.ErrorCode == 0, errors.Is(err, kafka.DuplicateSequenceNumber), errors.Is(err, kafka.OutOfOrderSequenceNumber):
				t.Logf("the late batch of partition %d: code %d, offset %d", p.Partition, p.ErrorCode, p.BaseOffset)
			default:
				t.Errorf("the late batch of partition %d: %v", p.Partition, err)
			}
		}
	}
	checkOnceInOrder(t, ctx, c, topic, parts, 750)
}

// cancelAfter passes on Produce requests, and after the first n answered
// cancels the send's context and says so, as when a stop comes while a
// send is in the air: the broker has the last request's records.
type cancelAfter struct {
	kafka.RoundTripper
	n, seen int
	cancel  context.CancelFunc
	records int // in the requests passed on after the cancel
}

func (r *cancelAfter) RoundTrip(ctx context.Context, addr net.Addr, req kafka.Request) (kafka.Response, error) {
	p, ok := req.(*produceRequest)
	if !ok {
		return r.RoundTripper.RoundTrip(ctx, addr, req)
	}
	if r.seen >= r.n {
		for _, tp := range p.Topics {
			for _, part := range tp.Partitions {
				r.records += len(part.RecordSet.Reader.(*batchSet).idx)
			}
		}
	}
	res, err := r.RoundTripper.RoundTrip(ctx, addr, req)
	if r.seen++; r.seen == r.n {
		r.cancel()
		return nil, context.Canceled
	}
	return res, err
}

// TestSendAgainSendsOnlyTheRest: a send cut short after some batches were
// acknowledged, and the last one written but not acknowledged, is sent
// again from where it stopped: the batches acknowledged are not sent
// again, and the one the broker has is acknowledged as a duplicate, not
// appended twice. (The retry sent the whole chunk again, appended a
// second time.)
func TestSendAgainSendsOnlyTheRest(t *testing.T) { onBrokers(t, sendAgain) }

func sendAgain(t *testing.T, c Config, topic string) {
	ctx := testCtx(t, 60*time.Second)
	const parts, n = 2, 300
	mustTopics(t, c, TopicSpec{Name: topic, Partitions: parts})
	s, err := NewSink(c, topic, SinkOptions{MaxMessageBytes: 2000}) // about 40 records a batch
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	cctx, cancel := context.WithCancel(ctx)
	rt := &cancelAfter{RoundTripper: s.b.meta.RoundTripper, n: 2, cancel: cancel}
	s.b.meta.RoundTripper = rt
	writeNumbered(t, s, 0, n)
	if err := s.Flush(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("flush: %v, want it cancelled", err)
	}
	if err := s.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The first request's batches were acknowledged: the rest, with the
	// second's (written, not acknowledged), went again.
	if sent := rt.records; sent <= 0 || sent >= n-parts {
		t.Errorf("%d records sent after the cancel, want fewer than the %d of the first request's", sent, n)
	}
	checkOnceInOrder(t, ctx, c, topic, parts, n)
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
