package kafkaio

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
)

// Producer publishes keyed records to one topic, partitioned the way
// Java clients partition them (murmur2 of the key, kafka.Murmur2Balancer),
// so that its records and other clients' records of the same key land in
// the same partition. Records without a key go to random partitions.
//
// Produce buffers; the buffer is sent when it holds 10000 records or
// 8 MiB, when a Produce comes more than Linger after the oldest buffered
// record, and on Flush. Every send waits for acks from all in-sync
// replicas. A Producer is used by one goroutine at a time.
type Producer struct {
	// Linger bounds how long a record waits in the buffer while Produce
	// keeps being called (0: 100ms). Call Flush to send without waiting.
	Linger time.Duration

	b      *batcher
	oldest time.Time // when the oldest buffered record was produced
}

const (
	producerMaxBytes      = 8 << 20
	defaultProducerLinger = 100 * time.Millisecond
)

// NewProducer returns a Producer writing to topic, which must exist. It
// reads the topic's max.message.bytes (1,000,000 when it cannot be read):
// see MaxMessageBytes.
func NewProducer(c Config, topic string) (*Producer, error) {
	b, err := newBatcher(c, topic, batcherOptions{balancer: kafka.Murmur2Balancer{}, oversize: OversizeFail})
	if err != nil {
		return nil, err
	}
	return &Producer{b: b}, nil
}

// Produce buffers a copy of a record with the given key (nil: none),
// value and record time (zero: the wall clock when it is sent), and sends
// the buffer when it is due. A record time in the future becomes the wall
// clock (see batcher.add). A record too large for one record batch of the
// topic is refused with a *TooLargeError, and nothing is buffered: the
// caller may skip it and go on.
func (p *Producer) Produce(ctx context.Context, key, value []byte, t time.Time) error {
	if err := p.b.add(key, value, t, nil); err != nil {
		return err
	}
	now := time.Now()
	if p.oldest.IsZero() {
		p.oldest = now
	}
	linger := p.Linger
	if linger <= 0 {
		linger = defaultProducerLinger
	}
	if p.b.buffered() >= chunkRecords || p.b.size >= producerMaxBytes || now.Sub(p.oldest) >= linger {
		return p.Flush(ctx)
	}
	return nil
}

// Flush sends the buffered records and waits for their acknowledgement.
// After an error the records stay buffered, and the next Flush resends
// them.
func (p *Producer) Flush(ctx context.Context) error {
	if err := p.b.flush(ctx); err != nil {
		return err
	}
	p.oldest = time.Time{}
	return nil
}

// Buffered returns the number of records produced but not yet sent.
func (p *Producer) Buffered() int { return p.b.buffered() }

// Writes returns the number of records acknowledged so far.
func (p *Producer) Writes() int64 { return p.b.writes.Load() }

// Bytes returns the key and value bytes of the records acknowledged so far.
func (p *Producer) Bytes() int64 { return p.b.bytes.Load() }

// MaxMessageBytes returns the record batch limit in use: the topic's
// max.message.bytes, or 1,000,000 when that could not be read.
func (p *Producer) MaxMessageBytes() int { return int(p.b.limit.Load()) }

// Close releases the producer. Records not flushed are dropped.
func (p *Producer) Close() error { return p.b.close() }

// PartitionOf returns the partition, among partitions 0 to partitions-1,
// that a Producer (and a Java client's default partitioner) chooses for a
// record with this key. A nil key is treated as empty here, while a
// Producer spreads records without a key at random.
func PartitionOf(key []byte, partitions int) int {
	if partitions <= 1 {
		return 0
	}
	if key == nil {
		key = []byte{}
	}
	return kafka.Murmur2Balancer{Consistent: true}.Balance(kafka.Message{Key: key}, partitionList(partitions)...)
}

var (
	partitionsMu sync.Mutex // held to grow partitionIDs
	// partitionIDs is 0, 1, 2, ...: the ids a balancer chooses among. A
	// slice is never changed once stored (a longer one replaces it), so
	// readers take no lock: a routing goroutine calls PartitionOf twice a
	// like, and a mutex shared by two of them took 1% of a backfill's CPU.
	partitionIDs atomic.Pointer[[]int]
)

// partitionList returns [0, n) without allocating once grown.
func partitionList(n int) []int {
	if ids := partitionIDs.Load(); ids != nil && len(*ids) >= n {
		return (*ids)[:n:n]
	}
	partitionsMu.Lock()
	defer partitionsMu.Unlock()
	var ids []int
	if p := partitionIDs.Load(); p != nil {
		ids = *p
	}
	if len(ids) < n {
		grown := make([]int, max(n, 2*len(ids)))
		for i := range grown {
			grown[i] = i
		}
		partitionIDs.Store(&grown)
		ids = grown
	}
	return ids[:n:n]
}
