package kafkaio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/initproducerid"
)

// A batcher writes as an idempotent producer, as Kafka's own clients do
// by default: it asks the broker for a producer id, and numbers each
// partition's records in sequence. The broker keeps the sequences of a
// producer's last batches in each partition, and appends a batch only if
// it comes next: one sent again is acknowledged without being appended a
// second time, and one that comes late is refused.
//
// Without it, a send given up (cancelled by a stop, or past its deadline)
// could still reach the broker: kafka-go's transport writes a request it
// has handed to a connection whatever its context. Sent again by the
// retry, its records landed twice, and once out of order, after records
// that followed them. In a compacted changelog, that late copy of a
// commit's first batch landed after the commit's meta record; compaction
// then removed the first copy and the meta record, and a restore took the
// commit for one cut short and left it out (TestRestoreFromChangelog, one
// run in a few hundred under load).

// sequence is a batch's place in its producer's records of a partition:
// the producer's id and epoch, and the sequence number of the batch's
// first record. The zero value is no producer (a batch without one).
type sequence struct {
	id    int64
	epoch int16
	first int32
	ok    bool
}

// producer is a batcher's idempotent identity, used by one send at a
// time (batcher.sendMu).
type producer struct {
	id    int64
	epoch int16
	valid bool            // id and epoch are the broker's
	off   bool            // the broker cannot give one: batches carry none
	next  map[int32]int32 // each partition's next sequence number
}

// errProducerReset is a batch the broker refused for its producer's
// sequence: the producer starts again under a new id, and the batch is
// sent again.
var errProducerReset = errors.New("the broker lost this producer's sequence; sending again under a new producer id")

// sequences returns the sequences of the next batches of queues, each of
// its taken records, after asking the broker for an id if there is none
// (or a partition's sequence would pass the largest). With idempotence
// off, every sequence is the zero value.
func (b *batcher) sequences(ctx context.Context, queues []*partQueue) ([]sequence, error) {
	p := &b.prod
	seqs := make([]sequence, len(queues))
	if p.off {
		return seqs, nil
	}
	for _, q := range queues {
		if int64(p.next[q.id])+int64(q.taken) > math.MaxInt32 {
			p.valid = false // a new id numbers every partition from 0 again
		}
	}
	if !p.valid {
		id, epoch, err := b.initProducerID(ctx)
		switch {
		case errors.Is(err, errNoIdempotence):
			p.off = true
			return seqs, nil
		case err != nil:
			return nil, err
		}
		p.id, p.epoch, p.valid = id, epoch, true
		p.next = map[int32]int32{}
	}
	for i, q := range queues {
		seqs[i] = sequence{id: p.id, epoch: p.epoch, first: p.next[q.id], ok: true}
	}
	return seqs, nil
}

// acknowledged moves partition part's sequence past n records the broker
// took in a batch of sequence s.
func (b *batcher) acknowledged(part int32, s sequence, n int) {
	p := &b.prod
	if s.ok && s.id == p.id && s.epoch == p.epoch { // a new id starts from 0
		p.next[part] = s.first + int32(n)
	}
}

// refused reports whether err, a partition's answer to a batch of
// sequence s, says that the broker refused the batch for its producer's
// sequence; if so, the producer is dropped, and the next batch asks for a
// new id.
func (b *batcher) refused(s sequence, err error) bool {
	if !s.ok || !(errors.Is(err, kafka.OutOfOrderSequenceNumber) || errors.Is(err, kafka.UnknownProducerId) ||
		errors.Is(err, kafka.InvalidProducerEpoch) || errors.Is(err, kafka.InvalidProducerIDMapping)) {
		return false
	}
	p := &b.prod
	if p.valid && s.id == p.id && s.epoch == p.epoch {
		p.valid = false
	}
	return true
}

// errNoIdempotence: the broker gives no producer ids (it predates them,
// or this client may not write idempotently): batches go without one.
var errNoIdempotence = errors.New("the broker gives no producer id")

// initProducerID asks the broker for a producer id for idempotent writes.
func (b *batcher) initProducerID(ctx context.Context) (int64, int16, error) {
	res, err := b.meta.RoundTrip(ctx, kafka.TCP(b.brokers...), &initProducerIDRequest{clientID: b.sh.clientID})
	if err != nil {
		return 0, 0, fmt.Errorf("ask for a producer id: %w", err)
	}
	r := res.(*initproducerid.Response)
	switch err := kafka.Error(r.ErrorCode); {
	case r.ErrorCode == 0:
		return r.ProducerID, r.ProducerEpoch, nil
	case errors.Is(err, kafka.ClusterAuthorizationFailed), errors.Is(err, kafka.UnsupportedVersion):
		return 0, 0, errNoIdempotence
	default:
		return 0, 0, fmt.Errorf("ask for a producer id: %w", err)
	}
}

// initProducerIDRequest is an InitProducerId request without a
// transactional id, which any broker answers. kafka-go's request type
// names the transaction, and its transport would first look for the
// coordinator of a transaction named ""; this one is sent to any broker,
// and written with kafka-go's encoding.
type initProducerIDRequest struct {
	clientID  string
	version   int16
	supported bool
}

func (r *initProducerIDRequest) ApiKey() protocol.ApiKey { return protocol.InitProducerId }

// Required is part of protocol.RawExchanger.
func (r *initProducerIDRequest) Required(versions map[protocol.ApiKey]int16) bool {
	r.version, r.supported = versions[protocol.InitProducerId]
	return true
}

// RawExchange is part of protocol.RawExchanger.
func (r *initProducerIDRequest) RawExchange(rw io.ReadWriter) (protocol.Message, error) {
	if !r.supported {
		return &initproducerid.Response{ErrorCode: int16(kafka.UnsupportedVersion)}, nil
	}
	id := correlationIDs.Add(1)
	req := &initproducerid.Request{TransactionTimeoutMs: 60_000, ProducerID: -1, ProducerEpoch: -1} // no transaction: Java's defaults
	if err := protocol.WriteRequest(rw, r.version, id, r.clientID, req); err != nil {
		return nil, err
	}
	got, res, err := protocol.ReadResponse(rw, protocol.InitProducerId, r.version)
	if err == nil && got != id {
		err = fmt.Errorf("kafkaio: init producer id: a response to request %d, want %d", got, id)
	}
	return res, err
}
