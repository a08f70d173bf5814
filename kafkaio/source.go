package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"

	"github.com/viralityhq/virality/processor"
)

// Special starting offsets for NewPartitionSource.
const (
	// FirstOffset starts at the first record the partition still holds.
	FirstOffset int64 = kafka.FirstOffset // -2
	// EndOffset starts after the last record: only new records are read.
	EndOffset int64 = kafka.LastOffset // -1
)

// Defaults of PartitionSource.
const (
	defaultMaxWait  = 200 * time.Millisecond
	defaultMaxBytes = 1 << 20
	defaultRetryFor = 30 * time.Second
	// requestSlack is added to MaxWait to bound one fetch round trip.
	requestSlack = 30 * time.Second
)

// ErrOffsetOutOfRange is returned (wrapped in an *OffsetOutOfRangeError)
// by PartitionSource.Next when the offset to read is not in the partition:
// retention deleted it, or the topic was recreated. The caller decides:
// start again from FirstOffset, or stop.
var ErrOffsetOutOfRange = errors.New("kafkaio: offset out of range")

// OffsetOutOfRangeError says which offset was asked for and what the
// partition holds.
type OffsetOutOfRangeError struct {
	Topic     string
	Partition int
	Offset    int64
	// First and End are the partition's range, [First, End), as listed
	// after the failed fetch (-1 when they could not be listed).
	First, End int64
}

func (e *OffsetOutOfRangeError) Error() string {
	return fmt.Sprintf("kafkaio: offset %d of %s/%d is out of range: the partition holds offsets %d to %d (records before %d were deleted by retention, or the topic was recreated)",
		e.Offset, e.Topic, e.Partition, e.First, e.End-1, e.First)
}

// Unwrap makes errors.Is(err, ErrOffsetOutOfRange) true.
func (e *OffsetOutOfRangeError) Unwrap() error { return ErrOffsetOutOfRange }

// PartitionSource reads one partition of a topic from an exact offset, one
// fetch request per call of Next. It implements processor.Source for an
// unbounded input: Next never returns io.EOF.
//
// It reads with isolation level read_uncommitted and skips control
// records (transaction markers); the records of aborted transactions are
// not filtered out. It decodes the fetch responses itself (fetch.go).
// Use it from one goroutine; HighWatermark and Offset may be read from
// any.
type PartitionSource struct {
	// MaxWait is how long a fetch waits for a first record before Next
	// returns no records (0: 200ms).
	MaxWait time.Duration
	// MaxBytes bounds the records of one fetch (0: 1 MiB). A single
	// record batch larger than this is still returned whole.
	MaxBytes int
	// RetryFor is how long Next retries failures that may pass (leader
	// moves, network errors) before it returns an error (0: 30s).
	RetryFor time.Duration

	topic     string
	partition int
	sh        *shared
	next      int64 // offset of the next record; FirstOffset or EndOffset until resolved

	offset, hw atomic.Int64

	// x is the fetch request; it holds the records of the last call, their
	// headers and their bytes, until the next call (or Detach).
	x      *fetchExchange
	closed bool
}

// NewPartitionSource returns a source of topic's partition starting at
// offset: an offset the partition holds, its end offset, or one of
// FirstOffset and EndOffset. It does not connect until the first Next.
func NewPartitionSource(c Config, topic string, partition int, offset int64) (*PartitionSource, error) {
	if topic == "" {
		return nil, errors.New("kafkaio: no topic given")
	}
	if partition < 0 {
		return nil, fmt.Errorf("kafkaio: partition %d of topic %q: must not be negative", partition, topic)
	}
	if offset < 0 && offset != FirstOffset && offset != EndOffset {
		return nil, fmt.Errorf("kafkaio: start offset %d of %s/%d: want an offset, FirstOffset or EndOffset", offset, topic, partition)
	}
	sh, err := acquire(c)
	if err != nil {
		return nil, err
	}
	s := &PartitionSource{topic: topic, partition: partition, sh: sh, next: offset,
		x: newFetchExchange(topic, int32(partition), sh.clientID)}
	s.offset.Store(offset)
	s.hw.Store(-1)
	return s, nil
}

// Offset returns the offset of the next record to be returned (negative
// until the start offset is resolved).
func (s *PartitionSource) Offset() int64 { return s.offset.Load() }

// HighWatermark returns the partition's high watermark (the offset the
// next record written will get) as of the last fetch, -1 before the first.
// HighWatermark() - Offset() is the lag.
func (s *PartitionSource) HighWatermark() int64 { return s.hw.Load() }

// SetOffset moves the source to offset: an offset the partition holds, its end
// offset, or one of FirstOffset and EndOffset, as for NewPartitionSource.
// The next call of Next reads from there. After an *OffsetOutOfRangeError,
// SetOffset(err.First) resumes at the first record the partition still holds.
func (s *PartitionSource) SetOffset(offset int64) error {
	if offset < 0 && offset != FirstOffset && offset != EndOffset {
		return fmt.Errorf("kafkaio: set offset of %s to %d: want an offset, FirstOffset or EndOffset", s.name(), offset)
	}
	s.next = offset
	s.offset.Store(offset)
	return nil
}

// Close releases the source's share of the connections.
func (s *PartitionSource) Close() error {
	if !s.closed {
		s.closed = true
		s.sh.release()
	}
	return nil
}

func (s *PartitionSource) name() string { return fmt.Sprintf("%s/%d", s.topic, s.partition) }

// Next fetches once and returns the records fetched, and moves the offset
// past them. They are in an array the source had (given to an earlier
// call, or its own): buf becomes the source's, for a later fetch. When
// MaxWait passes with no new record it returns no records and a nil
// error, so the caller notices idleness. The records' byte slices stay
// valid until the next call (see Detach).
//
// Failures that may pass are retried inside Next, with backoff, for up to
// RetryFor; it returns ctx.Err() as soon as ctx is done, and an
// *OffsetOutOfRangeError (ErrOffsetOutOfRange) when the offset is not in
// the partition.
func (s *PartitionSource) Next(ctx context.Context, buf []processor.Record) ([]processor.Record, error) {
	buf = buf[:0]
	if s.closed {
		return buf, fmt.Errorf("fetch %s: source closed", s.name())
	}
	var failing time.Time
	backoff := 50 * time.Millisecond
	for {
		if err := ctx.Err(); err != nil {
			return buf, err
		}
		err := s.resolve(ctx)
		if err == nil {
			if err = s.fetch(ctx); err == nil {
				x := s.x
				s.hw.Store(x.hw)
				if err = x.bad; err == nil || len(x.recs) > 0 {
					s.next = x.next
					s.offset.Store(s.next)
					// The connection may be given up on while it reads
					// into x: it never reads into an array the caller
					// still has.
					recs := x.recs
					x.recs = buf
					return recs, nil
				}
			}
		}
		if ctx.Err() != nil {
			return buf, ctx.Err()
		}
		if errors.Is(err, kafka.OffsetOutOfRange) {
			return buf, s.outOfRange(ctx)
		}
		if !retriable(err) {
			return buf, fmt.Errorf("fetch %s at offset %d: %w", s.name(), s.next, err)
		}
		if failing.IsZero() {
			failing = time.Now()
		} else if d := time.Since(failing); d > s.retryFor() {
			return buf, fmt.Errorf("fetch %s at offset %d: still failing after %v: %w", s.name(), s.next, d.Round(time.Second), err)
		}
		// Stale metadata, or a broker that restarted: the transport may
		// hold on to what it knew, or wait on connections that are gone.
		// Forget it (at most once a second for all users).
		s.sh.refresh()
		if err := sleep(ctx, backoff); err != nil {
			return buf, err
		}
		backoff = min(2*backoff, time.Second)
	}
}

func (s *PartitionSource) retryFor() time.Duration {
	if s.RetryFor > 0 {
		return s.RetryFor
	}
	return defaultRetryFor
}

// resolve turns FirstOffset or EndOffset into an offset.
func (s *PartitionSource) resolve(ctx context.Context) error {
	if s.next >= 0 {
		return nil
	}
	first, end, err := firstLast(ctx, s.sh.client, s.topic, s.partition)
	if err != nil {
		return err
	}
	if s.next == FirstOffset {
		s.next = first
	} else {
		s.next = end
	}
	s.offset.Store(s.next)
	return nil
}

// fetch sends one fetch request from s.next; s.x then holds what it
// read. The last call's records are no longer used: their memory serves
// other sources and sinks.
func (s *PartitionSource) fetch(ctx context.Context) error {
	maxWait := s.MaxWait
	if maxWait <= 0 {
		maxWait = defaultMaxWait
	}
	maxBytes := s.MaxBytes
	if maxBytes <= 0 {
		maxBytes = defaultMaxBytes
	}
	ctx, cancel := context.WithTimeout(ctx, maxWait+requestSlack)
	defer cancel()
	x := s.x
	x.reset(s.next, maxWait, maxBytes)
	_, err := s.sh.t.RoundTrip(ctx, s.sh.client.Addr, x)
	if !x.finished.Load() {
		// Given up on while the connection may still read into it: its
		// memory goes to the garbage collector once the connection is done.
		s.x = newFetchExchange(s.topic, int32(s.partition), x.clientID)
	}
	if err != nil {
		return err
	}
	return x.err()
}

// Detach takes the memory the bytes of the records the last call of Next
// returned lie in (keys, values and header values) out of the source:
// they stay valid after the next call, until the Chunks are released. The
// records' Headers slices are the source's still, valid until the next
// call.
func (s *PartitionSource) Detach() Chunks {
	c := Chunks{a: s.x.data}
	s.x.data = arena{}
	return c
}

// outOfRange builds the error for an offset the partition does not hold.
func (s *PartitionSource) outOfRange(ctx context.Context) error {
	e := &OffsetOutOfRangeError{Topic: s.topic, Partition: s.partition, Offset: s.next, First: -1, End: -1}
	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if first, end, err := firstLast(lctx, s.sh.client, s.topic, s.partition); err == nil {
		e.First, e.End = first, end
	}
	return e
}

// retriable reports whether a fetch failure may pass by itself.
func retriable(err error) bool {
	var te interface{ Temporary() bool }
	var ne net.Error
	switch {
	case errors.As(err, &te) && te.Temporary(),
		errors.As(err, &ne),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, kafka.BrokerNotAvailable), errors.Is(err, kafka.ReplicaNotAvailable),
		errors.Is(err, protocol.ErrNoTopic), errors.Is(err, protocol.ErrNoPartition), errors.Is(err, protocol.ErrNoLeader):
		return true
	}
	// A record set that failed to decode is read again by the next fetch.
	return errors.Is(err, errReadRecords)
}

var errReadRecords = errors.New("kafkaio: cannot decode fetched records")

// OffsetForTime returns the offset of the first record of the partition
// whose record time is at or after t, or the partition's end offset (the
// offset the next record will get) when there is none. Reading
// [OffsetForTime(t1), OffsetForTime(t2)) thus reads the records from the
// first at or after t1 to the last before the first at or after t2.
// Record times need not grow with offsets (they are event times), so the
// range may hold a few records outside [t1, t2).
func OffsetForTime(ctx context.Context, c Config, topic string, partition int, t time.Time) (int64, error) {
	var off int64
	err := withClient(ctx, c, func(ctx context.Context, cl *kafka.Client) error {
		ms := max(t.UnixMilli(), 0)
		res, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
			topic: {{Partition: partition, Timestamp: ms}},
		}})
		if err != nil {
			return fmt.Errorf("offset for time %s in %s/%d: %w", t.UTC().Format(time.RFC3339Nano), topic, partition, err)
		}
		p, err := partitionOffsets(res, topic, partition)
		if err != nil {
			return err
		}
		for o := range p.Offsets {
			if o >= 0 {
				off = o
				return nil
			}
		}
		_, off, err = firstLast(ctx, cl, topic, partition)
		return err
	})
	return off, err
}

// FirstLastOffsets returns the range of offsets the partition holds:
// first is the offset of its first record (after retention), last the
// offset the next record will get (its high watermark). It holds
// last-first records, fewer if compacted; first == last when empty.
func FirstLastOffsets(ctx context.Context, c Config, topic string, partition int) (first, last int64, err error) {
	err = withClient(ctx, c, func(ctx context.Context, cl *kafka.Client) error {
		first, last, err = firstLast(ctx, cl, topic, partition)
		return err
	})
	return first, last, err
}

func firstLast(ctx context.Context, cl *kafka.Client, topic string, partition int) (first, last int64, err error) {
	res, err := cl.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		topic: {kafka.FirstOffsetOf(partition), kafka.LastOffsetOf(partition)},
	}})
	if err != nil {
		return 0, 0, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, err)
	}
	p, err := partitionOffsets(res, topic, partition)
	if err != nil {
		return 0, 0, err
	}
	return p.FirstOffset, p.LastOffset, nil
}

// partitionOffsets finds the partition in a ListOffsets response.
func partitionOffsets(res *kafka.ListOffsetsResponse, topic string, partition int) (kafka.PartitionOffsets, error) {
	for _, p := range res.Topics[topic] {
		if p.Partition != partition {
			continue
		}
		if p.Error != nil {
			if errors.Is(p.Error, kafka.UnknownTopicOrPartition) {
				return p, &hintError{err: p.Error, msg: fmt.Sprintf("list offsets of %s/%d: no such topic or partition", topic, partition)}
			}
			return p, fmt.Errorf("list offsets of %s/%d: %w", topic, partition, p.Error)
		}
		return p, nil
	}
	return kafka.PartitionOffsets{}, &hintError{err: kafka.UnknownTopicOrPartition, msg: fmt.Sprintf("list offsets of %s/%d: no such topic or partition", topic, partition)}
}
