package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"

	"virality/processor"
)

// Writer settings. kafka-go's defaults are traps for a synchronous writer:
// a batch waits up to 1 s for more records (BatchTimeout), and a batch of
// 100 records caps throughput.
const (
	defaultBatchTimeout = 5 * time.Millisecond
	writerBatchSize     = 1000
	// maxBatchBytes bounds the records of one produce batch. Brokers
	// reject a batch larger than the topic's max.message.bytes, 1 MB by
	// default (1048588 bytes with the batch header), so a batch is kept
	// under that; it is also the largest single record a writer accepts.
	maxBatchBytes = 1_000_000
	// chunkRecords bounds one WriteMessages call, so that a large flush
	// does not hand kafka-go a huge slice at once.
	chunkRecords = 10_000
	// recordOverhead over-estimates the per-record bytes besides key,
	// value and headers that count against maxBatchBytes.
	recordOverhead = 64
)

// SinkOptions tune a Sink. The zero value is the default.
type SinkOptions struct {
	// BatchTimeout is how long a partial batch of a partition waits for
	// more records during a Flush (0: 5ms).
	BatchTimeout time.Duration
	// Balancer chooses the partition of each record (nil: &kafka.Hash{},
	// so the same key always goes to the same partition, as kafka-go and
	// Sarama hash keys).
	Balancer kafka.Balancer
}

// Sink writes processor messages to one topic. It implements
// processor.Sink: Write copies the message into a buffer, and Flush sends
// everything buffered and returns once every record is acknowledged by
// all in-sync replicas (acks=all).
//
// A Flush that fails keeps its records: the next Flush sends them again,
// in the same order. Records that were written before the failure may then
// appear twice, but never out of order for a key: whatever is resent is
// resent after everything that preceded it, so the last record of a key is
// always the newest. A Sink is used by one goroutine at a time.
type Sink struct {
	b *batcher
}

// NewSink returns a Sink writing to topic, which must exist.
func NewSink(c Config, topic string, opts SinkOptions) (*Sink, error) {
	bal := opts.Balancer
	if bal == nil {
		bal = &kafka.Hash{}
	}
	b, err := newBatcher(c, topic, bal, opts.BatchTimeout)
	if err != nil {
		return nil, err
	}
	return &Sink{b: b}, nil
}

// Write buffers a copy of m: the caller may reuse m's buffers when Write
// returns. The record's time is m.Time (its event time); a Time of 0 or
// less lets the client stamp the record with the wall clock.
func (s *Sink) Write(m *processor.Message) error {
	var t time.Time
	if m.Time > 0 {
		t = time.UnixMilli(m.Time)
	}
	return s.b.add(m.Key, m.Value, t, m.Headers)
}

// Flush sends the buffered records and waits for their acknowledgement.
func (s *Sink) Flush(ctx context.Context) error { return s.b.flush(ctx) }

// Buffered returns the number of records written but not yet flushed.
func (s *Sink) Buffered() int { return s.b.buffered() }

// Writes returns the number of records acknowledged so far. It may be
// called from any goroutine.
func (s *Sink) Writes() int64 { return s.b.writes.Load() }

// Bytes returns the key, value and header bytes of the records
// acknowledged so far. It may be called from any goroutine.
func (s *Sink) Bytes() int64 { return s.b.bytes.Load() }

// Close releases the writer. Records not flushed are dropped.
func (s *Sink) Close() error { return s.b.close() }

var _ processor.Sink = (*Sink)(nil)

// batcher buffers copies of records and writes them with one kafka.Writer.
//
// Records are copied into arena (bytes) and hdrs (headers); the buffered
// kafka.Messages point into them. When arena must grow, append moves it,
// but the messages already buffered keep pointing into the old array,
// which stays valid. After a fully acknowledged flush the buffers are
// reused, unless a write failed since the last reuse: kafka-go may still
// be sending a batch of a failed or cancelled call from the old buffers,
// so those are dropped to the garbage collector instead.
type batcher struct {
	topic string
	sh    *shared
	w     *kafka.Writer

	msgs    []kafka.Message // msgs[sent:] are not acknowledged
	sent    int
	arena   []byte
	hdrs    []kafka.Header
	size    int  // bytes of msgs[sent:], as counted by bytes
	tainted bool // a write failed since the buffers were last reset
	closed  bool

	writes, bytes atomic.Int64
}

func newBatcher(c Config, topic string, bal kafka.Balancer, batchTimeout time.Duration) (*batcher, error) {
	if topic == "" {
		return nil, errors.New("kafkaio: no topic given")
	}
	if batchTimeout <= 0 {
		batchTimeout = defaultBatchTimeout
	}
	sh, err := acquire(c)
	if err != nil {
		return nil, err
	}
	w := &kafka.Writer{
		Addr:                   kafka.TCP(c.Brokers...),
		Topic:                  topic,
		Balancer:               bal,
		BatchSize:              writerBatchSize,
		BatchBytes:             maxBatchBytes,
		BatchTimeout:           batchTimeout,
		WriteTimeout:           30 * time.Second,
		RequiredAcks:           kafka.RequireAll,
		Transport:              sh.t,
		AllowAutoTopicCreation: false,
	}
	return &batcher{topic: topic, sh: sh, w: w}, nil
}

func (b *batcher) buffered() int { return len(b.msgs) - b.sent }

// add buffers a copy of one record. A record time in the future becomes
// the wall clock: brokers refuse timestamps ahead of their own clock
// (Kafka 4 by an hour, log.message.timestamp.after.max.ms), and a consumer
// that checks event times against record times then sees such an event as
// from the future.
func (b *batcher) add(key, value []byte, t time.Time, hs []processor.Header) error {
	if now := time.Now(); t.After(now) {
		t = now
	}
	if b.closed {
		return fmt.Errorf("write to topic %q: sink closed", b.topic)
	}
	n := len(key) + len(value)
	for _, h := range hs {
		n += len(h.Key) + len(h.Value)
	}
	if n+recordOverhead > maxBatchBytes {
		return fmt.Errorf("write to topic %q: a record of %d bytes is larger than the %d bytes a batch may hold", b.topic, n, maxBatchBytes)
	}
	m := kafka.Message{Key: b.copy(key), Value: b.copy(value), Time: t}
	if len(hs) > 0 {
		i := len(b.hdrs)
		for _, h := range hs {
			b.hdrs = append(b.hdrs, kafka.Header{Key: h.Key, Value: b.copy(h.Value)})
		}
		m.Headers = b.hdrs[i:len(b.hdrs):len(b.hdrs)]
	}
	b.msgs = append(b.msgs, m)
	b.size += n
	return nil
}

// copy returns a copy of p in the arena, nil for nil.
func (b *batcher) copy(p []byte) []byte {
	if p == nil {
		return nil
	}
	if len(p) == 0 {
		return []byte{}
	}
	i := len(b.arena)
	b.arena = append(b.arena, p...)
	return b.arena[i:len(b.arena):len(b.arena)]
}

// flush writes the buffered records in chunks, in order, and resets the
// buffers once all are acknowledged.
func (b *batcher) flush(ctx context.Context) error {
	if b.closed {
		return fmt.Errorf("write to topic %q: sink closed", b.topic)
	}
	var unknownSince, failingSince time.Time
	for b.sent < len(b.msgs) {
		chunk := b.msgs[b.sent:min(len(b.msgs), b.sent+chunkRecords)]
		err := b.w.WriteMessages(ctx, chunk...)
		if err != nil {
			b.tainted = true
			if ctx.Err() != nil {
				return fmt.Errorf("write to topic %q: %w", b.topic, ctx.Err())
			}
			// A broker that restarts refuses connections for a while,
			// and the transport keeps what it knew of the old one:
			// forget it and try again, for as long as a source would.
			if retriable(err) && !errors.Is(err, protocol.ErrNoTopic) {
				if failingSince.IsZero() {
					failingSince = time.Now()
				}
				if time.Since(failingSince) < defaultRetryFor {
					b.sh.refresh()
					if err := sleep(ctx, 500*time.Millisecond); err != nil {
						return fmt.Errorf("write to topic %q: %w", b.topic, err)
					}
					continue
				}
			}
			// The writer looks partitions up in the transport's
			// metadata cache, which may predate the topic.
			if errors.Is(err, kafka.UnknownTopicOrPartition) || errors.Is(err, protocol.ErrNoTopic) {
				if unknownSince.IsZero() {
					unknownSince = time.Now()
				}
				if time.Since(unknownSince) < 10*time.Second {
					b.sh.refresh()
					if err := sleep(ctx, 200*time.Millisecond); err != nil {
						return fmt.Errorf("write to topic %q: %w", b.topic, err)
					}
					continue
				}
				return &hintError{err: err, msg: fmt.Sprintf("write to topic %q: the topic does not exist; create it", b.topic)}
			}
			return writeError(b.topic, len(chunk), err)
		}
		var n int64
		for i := range chunk {
			m := &chunk[i]
			n += int64(len(m.Key) + len(m.Value))
			for _, h := range m.Headers {
				n += int64(len(h.Key) + len(h.Value))
			}
		}
		b.writes.Add(int64(len(chunk)))
		b.bytes.Add(n)
		b.size -= int(n)
		b.sent += len(chunk)
	}
	b.reset()
	return nil
}

// reset empties the buffers after a fully acknowledged flush.
func (b *batcher) reset() {
	clear(b.msgs) // drop references into old arenas
	b.msgs, b.sent, b.size = b.msgs[:0], 0, 0
	if b.tainted || cap(b.arena) > 64<<20 {
		b.arena, b.hdrs, b.tainted = nil, nil, false
		return
	}
	b.arena = b.arena[:0]
	clear(b.hdrs)
	b.hdrs = b.hdrs[:0]
}

// writeError reports a failed WriteMessages on one line.
func writeError(topic string, n int, err error) error {
	var werr kafka.WriteErrors
	if errors.As(err, &werr) {
		for _, e := range werr {
			if e != nil {
				return fmt.Errorf("write %d records to topic %q: %d failed: %w", n, topic, werr.Count(), e)
			}
		}
	}
	return fmt.Errorf("write %d records to topic %q: %w", n, topic, err)
}

func (b *batcher) close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	err := b.w.Close()
	b.sh.release()
	b.msgs, b.arena, b.hdrs = nil, nil, nil
	if err != nil {
		return fmt.Errorf("close writer of topic %q: %w", b.topic, err)
	}
	return nil
}
