package processor

import (
	"context"
)

// Record is one input record, from a file line or a Kafka message.
type Record struct {
	Key     []byte
	Value   []byte
	Headers []Header
	// Time is the record's own timestamp in ms (Kafka's), 0 when it has none.
	Time int64
	// Topic, Partition and Offset locate the record in its source. For
	// files, Topic is the file's path, Partition 0, and Offset the record's
	// index over all input files, from 0. The engine resumes after the
	// offset of the last committed record.
	Topic     string
	Partition int32
	Offset    int64
}

// Header is a record header.
type Header struct {
	Key   string
	Value []byte
}

// Source yields the records of one input partition in order.
type Source interface {
	// Next returns the next records, appended to buf[:0]. It returns io.EOF
	// when a bounded input is exhausted. The records' byte slices stay
	// valid until the next call of Next.
	Next(ctx context.Context, buf []Record) ([]Record, error)
}

// Message is one output record.
type Message struct {
	Key     []byte
	Value   []byte
	Time    int64 // event time, ms
	Headers []Header
}

// Sink is an ordered output: scores, trending snapshots or dead letters.
// Writes may be buffered; Flush returns once everything written before it
// is durable (written and flushed to a file, or acknowledged by every
// in-sync replica), so that the engine may commit state that reflects it.
// Write copies what it keeps: the message and its bytes are reused once
// it returns.
type Sink interface {
	Write(m *Message) error
	Flush(ctx context.Context) error
}

// Positioned is a Sink that can report how much it has durably written and
// be cut back to such a position, so that a restart after a crash rewrites
// exactly what the state does not reflect, rather than repeating it.
type Positioned interface {
	Sink
	// Position is the durable position after the last Flush.
	Position() int64
	// Restore cuts the output back to pos, a Position recorded by an
	// earlier commit (0 for a fresh start), and continues from there.
	Restore(pos int64) error
}

// Dead-letter headers, on every dead-letter record.
const (
	HeaderReason    = "virality-reason"
	HeaderError     = "virality-error"
	HeaderTopic     = "virality-source-topic"
	HeaderPartition = "virality-source-partition"
	HeaderOffset    = "virality-source-offset"
)
