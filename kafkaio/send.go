package kafkaio

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/metadata"
	produceapi "github.com/segmentio/kafka-go/protocol/produce"
	"github.com/segmentio/kafka-go/protocol/rawproduce"
)

// A batcher sends a chunk of records with one Produce request for all of
// its partitions (per broker that leads them), where kafka-go's Writer
// sends one request per partition and copies every message into its
// batches. The live service flushes its outputs twenty times a second to
// eight partitions of each topic: with the Writer that was most of the
// 1,200 requests a second it sent the broker at 5,000 likes/s, and a
// fifth of all it allocated (bench/RESULTS.md).
//
// A chunk's records are placed on partitions once (the balancer may keep
// state, as round robin does), and each partition's are sent in order, in
// record batches of at most room bytes as recordSize counts them. A
// partition whose batch the broker acknowledged is not sent again when
// another one's failed: the retry sends only what is not acknowledged.

// batchRecords bounds the records of one record batch, as kafka-go's
// Writer did (its BatchSize): the sizes recordSize counts hold only for
// offset deltas under 1000 (see batcher).
const batchRecords = 1000

// outgoing is a chunk being sent: its records by partition, and how many
// of each partition's the broker acknowledged.
type outgoing struct {
	records // the buffer's arrays, as they were when the chunk was placed
	chunk   []rec
	parts   []partQueue
}

// partQueue is one partition's records of a chunk, as indexes into it.
type partQueue struct {
	id     int32
	leader int32
	idx    []int32
	acked  int
	taken  int // records of idx[acked:] in the request in the air
}

// done reports whether every record of the chunk is acknowledged.
func (o *outgoing) done() bool {
	for i := range o.parts {
		if o.parts[i].acked < len(o.parts[i].idx) {
			return false
		}
	}
	return true
}

// plan places the records of chunk on the topic's partitions.
func (b *batcher) plan(ctx context.Context, rs records, chunk []rec) (*outgoing, error) {
	ids, leaders, err := b.partitions(ctx)
	if err != nil {
		return nil, err
	}
	o := &outgoing{records: rs, chunk: chunk}
	at := make(map[int]int, len(ids)) // partition -> index in o.parts
	// Each record's partition first, then each partition's indexes in a
	// share of one array: appended one at a time to an array of each
	// partition's, they were 3% of the bytes the live service allocated.
	of := make([]int32, 2*len(chunk)) // o.parts index of each record; then the indexes
	var n []int
	var hs []kafka.Header
	for i := range chunk {
		var m kafka.Message
		m, hs = rs.message(&chunk[i], hs)
		p := b.opts.balancer.Balance(m, ids...)
		j, ok := at[p]
		if !ok {
			j = len(o.parts)
			at[p] = j
			o.parts = append(o.parts, partQueue{id: int32(p), leader: leaders[p]})
			n = append(n, 0)
		}
		of[i] = int32(j)
		n[j]++
	}
	idx := of[len(chunk):]
	for j := range o.parts {
		o.parts[j].idx, idx = idx[:0:n[j]], idx[n[j]:]
	}
	for i := range chunk {
		q := &o.parts[of[i]]
		q.idx = append(q.idx, int32(i))
	}
	return o, nil
}

// partitions returns the topic's partition ids, sorted as kafka-go's
// Writer gives them to a balancer, and the broker that leads each, from
// metadata the writer transport keeps for a second.
func (b *batcher) partitions(ctx context.Context) ([]int, map[int]int32, error) {
	res, err := b.meta.RoundTrip(ctx, kafka.TCP(b.brokers...), &metadata.Request{TopicNames: []string{b.topic}})
	if err != nil {
		return nil, nil, err
	}
	for _, t := range res.(*metadata.Response).Topics {
		if t.Name != b.topic {
			continue
		}
		if t.ErrorCode != 0 {
			return nil, nil, kafka.Error(t.ErrorCode)
		}
		ids := make([]int, 0, len(t.Partitions))
		leaders := make(map[int]int32, len(t.Partitions))
		for _, p := range t.Partitions {
			ids = append(ids, int(p.PartitionIndex))
			leaders[int(p.PartitionIndex)] = p.LeaderID
		}
		if len(ids) == 0 {
			return nil, nil, protocol.ErrNoPartition
		}
		slices.Sort(ids)
		return ids, leaders, nil
	}
	return nil, nil, kafka.UnknownTopicOrPartition
}

// produce sends what o has not had acknowledged, in rounds of one request
// to each leader with the next batch of each of its partitions, until all
// is acknowledged or a round fails. The partitions refused come back as
// errors, and those acknowledged move on. Leaders are looked up again
// each time: a retry follows a partition that moved.
func (b *batcher) produce(ctx context.Context, o *outgoing) error {
	for !o.done() {
		if err := b.round(ctx, o); err != nil {
			return err
		}
	}
	return nil
}

// round sends the next batch of each partition of o not all acknowledged.
func (b *batcher) round(ctx context.Context, o *outgoing) error {
	_, lead, err := b.partitions(ctx)
	if err != nil {
		return err
	}
	for i := range o.parts {
		o.parts[i].leader = lead[int(o.parts[i].id)]
	}
	var leaders []int32
	for i := range o.parts {
		q := &o.parts[i]
		if q.acked < len(q.idx) && !slices.Contains(leaders, q.leader) {
			leaders = append(leaders, q.leader)
		}
	}
	slices.Sort(leaders)
	var errs []error
	for _, l := range leaders {
		if err := b.produceTo(ctx, o, l); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// produceTo sends one request with the next batch of each partition of o
// that leader leads, each encoded by a batchSet as the request is written.
func (b *batcher) produceTo(ctx context.Context, o *outgoing, leader int32) error {
	room := b.room()
	now := time.Now().UnixMilli() // the time of the records without one
	var queues []*partQueue
	for i := range o.parts {
		q := &o.parts[i]
		if q.leader != leader || q.acked == len(q.idx) {
			continue
		}
		n, size := 0, 0
		for _, j := range q.idx[q.acked:] {
			s := o.recordSize(&o.chunk[j])
			if n > 0 && (size+s > room || n == batchRecords) {
				break
			}
			n, size = n+1, size+s
		}
		q.taken = n
		queues = append(queues, q)
	}
	seqs, err := b.sequences(ctx, queues)
	if err != nil {
		return err
	}
	topic := rawproduce.RequestTopic{Topic: b.topic}
	for i, q := range queues {
		topic.Partitions = append(topic.Partitions, rawproduce.RequestPartition{
			Partition: q.id,
			RecordSet: protocol.RawRecordSet{Reader: &batchSet{r: &o.records, chunk: o.chunk, idx: q.idx[q.acked : q.acked+q.taken], now: now, seq: seqs[i]}},
		})
	}
	timeout := writeAttemptTimeout
	if d, ok := ctx.Deadline(); ok {
		timeout = min(timeout, time.Until(d))
	}
	// kafka-go's transport hands a request to an idle connection whatever
	// its context, and the connection sends it: a context already done
	// returns at once, and the request, sent behind the caller's back,
	// could reach the broker after those that follow it (a send retried,
	// the next flush). Its batches' sequence numbers have the broker
	// refuse it then (idempotence.go); none is sent that way here.
	if err := ctx.Err(); err != nil {
		return err
	}
	res, err := b.meta.RoundTrip(ctx, kafka.TCP(b.brokers...), &produceRequest{clientID: b.sh.clientID, Request: rawproduce.Request{
		Acks:    int16(kafka.RequireAll),
		Timeout: int32(max(timeout.Milliseconds(), 1)),
		Topics:  []rawproduce.RequestTopic{topic},
	}})
	if err != nil {
		return err
	}
	acked := make(map[int32]error, len(queues))
	for _, t := range res.(*produceapi.Response).Topics {
		if t.Topic != b.topic {
			continue
		}
		for _, p := range t.Partitions {
			var err error
			if p.ErrorCode != 0 {
				err = kafka.Error(p.ErrorCode)
				if p.ErrorMessage != "" {
					err = fmt.Errorf("%w: %s", err, p.ErrorMessage)
				}
			}
			acked[p.Partition] = err
		}
	}
	var errs []error
	for i, q := range queues {
		err, ok := acked[q.id]
		switch {
		case !ok:
			errs = append(errs, fmt.Errorf("partition %d: no answer from the broker", q.id))
		case errors.Is(err, kafka.DuplicateSequenceNumber):
			// The broker has the batch already, from an earlier attempt.
			fallthrough
		case err == nil:
			b.acknowledged(q.id, seqs[i], q.taken)
			q.acked += q.taken
		case b.refused(seqs[i], err):
			errs = append(errs, fmt.Errorf("partition %d: %w: %w", q.id, errProducerReset, err))
		default:
			errs = append(errs, fmt.Errorf("partition %d: %w", q.id, err))
		}
		q.taken = 0
	}
	return errors.Join(errs...)
}

// produceRequest is a raw produce request of batchSets that writes
// itself. kafka-go's transport routes it (the embedded request gives its
// API key, its leader and whether it has a response) and hands it the
// connection (protocol.RawExchanger): it writes the request in parts of
// about writePart bytes, its batches encoded into an array of the free
// list as the connection writes them, and reads the response with
// kafka-go's decoder. kafka-go wrote the request through its paged
// buffer, the batches copied into pages of a sync.Pool that the collector
// emptied several times a second in a catch-up (3% of the bytes it
// allocated, bench/RESULTS.md).
type produceRequest struct {
	rawproduce.Request
	clientID string
	version  int16
}

// Produce versions produceRequest writes: those of kafka-go's raw produce
// request.
const (
	minProduceVersion = 3
	maxProduceVersion = 8
)

// writePart is the size past which a produce request's bytes are written
// before the next batch is encoded, so that the array they are encoded
// into holds about a batch, not the whole request.
const writePart = 64 << 10

// correlationIDs numbers the requests that write themselves.
var correlationIDs atomic.Int32

// Required is part of protocol.RawExchanger: every request is written
// here, at the version the connection negotiated.
func (r *produceRequest) Required(versions map[protocol.ApiKey]int16) bool {
	r.version = versions[protocol.Produce]
	return true
}

// RawExchange is part of protocol.RawExchanger. An error leaves the
// connection out of step; kafka-go's transport then closes it.
func (r *produceRequest) RawExchange(rw io.ReadWriter) (protocol.Message, error) {
	if r.version < minProduceVersion || r.version > maxProduceVersion {
		return nil, fmt.Errorf("kafkaio: produce: the broker offers produce version %d, want %d to %d", r.version, minProduceVersion, maxProduceVersion)
	}
	id := correlationIDs.Add(1)
	p := getScratch()
	p, err := r.write(rw, p, id)
	putScratch(p)
	if err != nil || !r.HasResponse() {
		return nil, err
	}
	got, res, err := protocol.ReadResponse(rw, protocol.Produce, r.version)
	if err == nil && got != id {
		err = fmt.Errorf("kafkaio: produce: a response to request %d, want %d", got, id)
	}
	return res, err
}

// write writes the request to w in parts, encoded into p, and returns p.
func (r *produceRequest) write(w io.Writer, p []byte, id int32) ([]byte, error) {
	type sized struct {
		set            *batchSet
		n              int
		first, maxTime int64
	}
	sets := make([]sized, 0, 8)
	size := 4 + 2 + 2 + 4 + 2 + len(r.clientID) + 2 + 2 + 4 + 4 // the header to the topics' count
	for _, t := range r.Topics {
		size += 2 + len(t.Topic) + 4
		for _, part := range t.Partitions {
			set, ok := part.RecordSet.Reader.(*batchSet)
			if !ok {
				return p, fmt.Errorf("kafkaio: produce: a record set of %T", part.RecordSet.Reader)
			}
			first, maxTime := set.times()
			sets = append(sets, sized{set, set.size(first), first, maxTime})
			size += 4 + sets[len(sets)-1].n
		}
	}
	p = binary.BigEndian.AppendUint32(p[:0], uint32(size-4))
	p = binary.BigEndian.AppendUint16(p, uint16(protocol.Produce))
	p = binary.BigEndian.AppendUint16(p, uint16(r.version))
	p = binary.BigEndian.AppendUint32(p, uint32(id))
	p = appendString16(p, r.clientID)
	p = binary.BigEndian.AppendUint16(p, 0xffff) // transactional ID: null
	p = binary.BigEndian.AppendUint16(p, uint16(r.Acks))
	p = binary.BigEndian.AppendUint32(p, uint32(r.Timeout))
	p = binary.BigEndian.AppendUint32(p, uint32(len(r.Topics)))
	written := 0
	for _, t := range r.Topics {
		p = appendString16(p, t.Topic)
		p = binary.BigEndian.AppendUint32(p, uint32(len(t.Partitions)))
		for _, part := range t.Partitions {
			s := sets[0]
			sets = sets[1:]
			if len(p) >= writePart {
				if _, err := w.Write(p); err != nil {
					return p, err
				}
				written += len(p)
				p = p[:0]
			}
			p = binary.BigEndian.AppendUint32(p, uint32(part.Partition))
			p = s.set.appendSet(slices.Grow(p, s.n), s.first, s.maxTime)
		}
	}
	if written+len(p) != size {
		return p, fmt.Errorf("kafkaio: produce: a request of %d bytes, counted %d", written+len(p), size)
	}
	_, err := w.Write(p)
	return p, err
}

// misrouted reports whether err says that a request was not sent because
// the transport's metadata did not place its partitions on one broker (a
// leader moved, or is not known yet): worth a retry once it is refreshed.
func misrouted(err error) bool {
	var e *rawproduce.Error
	return errors.As(err, &e)
}
