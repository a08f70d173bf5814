package kafkaio

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"

	"github.com/viralityhq/virality/processor"
)

// Sink settings.
const (
	// defaultMaxMessageBytes is the record batch limit assumed when the
	// topic's max.message.bytes cannot be read: under Kafka's default of
	// 1048588 bytes.
	defaultMaxMessageBytes = 1_000_000
	// maxMaxMessageBytes caps the limit a sink uses, whatever the topic
	// allows: a record stays far below 128 MiB, where the record sizes
	// that batchOverhead and recordSize count on would grow.
	maxMaxMessageBytes = 64 << 20
	// batchOverhead is what a record batch (v2, uncompressed, as kafka-go
	// writes it) holds besides its records: 61 bytes, the 12 of base
	// offset and length included, as max.message.bytes counts them.
	batchOverhead = 61
	// limitLookupTimeout bounds the read of a topic's max.message.bytes
	// when a sink or producer is made.
	limitLookupTimeout = 5 * time.Second

	// writeAttemptTimeout bounds one Produce request of a chunk: its
	// sending and the wait for acknowledgement.
	writeAttemptTimeout = 20 * time.Second
	// chunkRecords bounds the records of one chunk, so that a large flush
	// is sent in requests of bounded size.
	chunkRecords = 10_000
)

// Headers added to a record cut to fit its topic (OversizeTruncate).
const (
	// HeaderTruncated is "true" on a record whose value (and perhaps
	// key) was cut.
	HeaderTruncated = "virality-truncated"
	// HeaderOriginalLength is the length in bytes, in decimal, of the
	// value before it was cut.
	HeaderOriginalLength = "virality-original-length"
	// HeaderOriginalKeyLength is the length in bytes, in decimal, of the
	// key before it was cut; only on records whose key was cut too.
	HeaderOriginalKeyLength = "virality-original-key-length"
)

// Oversize says what a Sink does with a record too large for one record
// batch of its topic (SinkOptions.MaxMessageBytes).
type Oversize int

const (
	// OversizeAuto, the default, treats dead letters (records with a
	// processor.HeaderReason header) as OversizeTruncate does and every
	// other record as OversizeFail does: a dead letter always gets
	// through, and a score or trending record is never silently cut.
	OversizeAuto Oversize = iota
	// OversizeFail refuses the record: Write returns a *TooLargeError
	// and buffers nothing.
	OversizeFail
	// OversizeTruncate cuts the record's value to the longest prefix
	// with which the whole record fits, and adds the headers
	// HeaderTruncated ("true") and HeaderOriginalLength after the
	// record's own. When the key and headers alone do not fit, the value
	// is emptied and the key is cut too, with HeaderOriginalKeyLength.
	// Only a record whose headers alone exceed the limit is refused.
	OversizeTruncate
)

// TooLargeError is returned by Sink.Write and Producer.Produce for a
// record that does not fit in one record batch of the topic and is not
// truncated. Nothing of the record was buffered.
type TooLargeError struct {
	Topic string
	// Size is the bytes of a batch holding just this record, as the
	// writer counts them; Max is the limit in use (max.message.bytes).
	Size, Max int
	// KeyLen, ValueLen and HeadersLen are the bytes of the record's key,
	// value and headers.
	KeyLen, ValueLen, HeadersLen int
}

func (e *TooLargeError) Error() string {
	return fmt.Sprintf("write to topic %q: a record of %d bytes (key %d, value %d, headers %d) needs a record batch of %d bytes, more than the %d the topic accepts (max.message.bytes)",
		e.Topic, e.KeyLen+e.ValueLen+e.HeadersLen, e.KeyLen, e.ValueLen, e.HeadersLen, e.Size, e.Max)
}

// SinkOptions tune a Sink. The zero value is the default.
type SinkOptions struct {
	// Balancer chooses the partition of each record (nil: &kafka.Hash{},
	// so the same key always goes to the same partition, as kafka-go and
	// Sarama hash keys).
	Balancer kafka.Balancer
	// MaxMessageBytes is the largest record batch the topic accepts, as
	// Kafka's max.message.bytes counts it (0: the topic's
	// max.message.bytes, read by NewSink; 1,000,000 when it cannot be
	// read). Batches are kept within it, and a single record that does not
	// fit in a batch of its own is handled as Oversize says. If the broker
	// refuses a batch as too large all the same (the option or the topic
	// is off), Flush reads the topic's limit again and applies it to the
	// records it still holds.
	MaxMessageBytes int
	// Oversize says what Write does with a record too large for one
	// batch (zero: OversizeAuto).
	Oversize Oversize
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
// always the newest. A Sink is used by one goroutine at a time, but for
// the sends Detach returns.
//
// A record too large for one record batch of the topic (see
// SinkOptions.MaxMessageBytes) is cut or refused by Write, as
// SinkOptions.Oversize says, so that it never makes a Flush fail.
type Sink struct {
	b *batcher
}

// NewSink returns a Sink writing to topic, which must exist.
func NewSink(c Config, topic string, opts SinkOptions) (*Sink, error) {
	bal := opts.Balancer
	if bal == nil {
		bal = &kafka.Hash{}
	}
	switch opts.Oversize {
	case OversizeAuto, OversizeFail, OversizeTruncate:
	default:
		return nil, fmt.Errorf("kafkaio: sink of topic %q: unknown Oversize %d", topic, opts.Oversize)
	}
	if opts.MaxMessageBytes < 0 {
		return nil, fmt.Errorf("kafkaio: sink of topic %q: MaxMessageBytes %d is negative", topic, opts.MaxMessageBytes)
	}
	b, err := newBatcher(c, topic, batcherOptions{
		balancer: bal, maxMessageBytes: opts.MaxMessageBytes, oversize: opts.Oversize,
	})
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

// Detach takes the buffered records out of the sink and returns the
// function that sends them and waits for their acknowledgement, nil when
// none are buffered; Write goes on into new buffers meanwhile, on its own
// goroutine. After an error the function may be called again: it sends
// what was not acknowledged. Sends, and Flush, must run one at a time, in
// the order of the Detach calls: they share one writer.
func (s *Sink) Detach() func(ctx context.Context) error { return s.b.detach() }

// Buffered returns the number of records written but not yet flushed or
// detached.
func (s *Sink) Buffered() int { return s.b.buffered() }

// BufferedBytes returns the memory the records written but not yet
// flushed or detached take: their keys, values and headers, and the
// sink's small fixed-size entry for each record and header.
func (s *Sink) BufferedBytes() int {
	return s.b.size + s.b.buffered()*int(unsafe.Sizeof(rec{})) + len(s.b.hdrs)*int(unsafe.Sizeof(hdr{}))
}

// Writes returns the number of records acknowledged so far. It may be
// called from any goroutine.
func (s *Sink) Writes() int64 { return s.b.writes.Load() }

// Bytes returns the key, value and header bytes of the records
// acknowledged so far. It may be called from any goroutine.
func (s *Sink) Bytes() int64 { return s.b.bytes.Load() }

// MaxMessageBytes returns the record batch limit in use: the option, the
// topic's max.message.bytes, or 1,000,000 when that could not be read.
func (s *Sink) MaxMessageBytes() int { return int(s.b.limit.Load()) }

// Fits reports whether m fits in one record batch of the topic as it is:
// whether Write would take it whole, neither cut nor refused. A caller
// that may not cut a record (one forwarded to be read again) can check
// it first and dead-letter it instead.
func (s *Sink) Fits(m *processor.Message) bool {
	hs := m.Headers
	return recordSize(len(m.Key), len(m.Value), headersSize(len(hs), func(i int) (int, int) { return len(hs[i].Key), len(hs[i].Value) })) <= s.b.room()
}

// Truncated returns the number of records cut to fit so far. It may be
// called from any goroutine.
func (s *Sink) Truncated() int64 { return s.b.truncated.Load() }

// EndOffsets returns the end offset of each of the given partitions of
// the sink's topic: after a Flush, the offset its next record will take.
// It asks once for all, on the connections the sink already holds (a
// changelog asks at every commit: a new client per partition took tens of
// milliseconds each).
func (s *Sink) EndOffsets(ctx context.Context, partitions []int32) (map[int32]int64, error) {
	reqs := make([]kafka.OffsetRequest, len(partitions))
	for i, p := range partitions {
		reqs[i] = kafka.LastOffsetOf(int(p))
	}
	res, err := s.b.sh.client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{s.b.topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", s.b.topic, err)
	}
	ends := make(map[int32]int64, len(partitions))
	for _, p := range partitions {
		po, err := partitionOffsets(res, s.b.topic, int(p))
		if err != nil {
			return nil, err
		}
		ends[p] = po.LastOffset
	}
	return ends, nil
}

// Close releases the writer. Records not flushed are dropped.
func (s *Sink) Close() error { return s.b.close() }

var _ processor.Sink = (*Sink)(nil)

// batcher buffers copies of records and sends them (send.go).
//
// Records are copied into an arena of chunks (chunks.go: keys, values,
// header values); a buffered record is a rec that says where its parts
// lie, and its headers hdr entries. Neither holds a pointer, so that the
// garbage collector does not scan them: as kafka.Messages (152 bytes
// each, and 40 a header, all pointers) a catch-up's buffers held 200 MB
// the collector went through at every cycle (bench/RESULTS.md). After a
// fully acknowledged send the chunks go back to the free list and the
// entries are kept for reuse, unless a write failed since the last reuse:
// kafka-go may still be sending a batch of a failed or cancelled call
// from the old buffers, so those are dropped to the garbage collector
// instead.
//
// Sizes. A batch holds records while the sum of their recordSize stays
// within limit-batchOverhead (as kafka-go's Writer, which sent them
// before, counted against its BatchBytes). A record takes at most that many bytes in a v2
// batch: its varints (length, time and offset deltas, key and value
// lengths) take at most 4+7+2+4+4 bytes for records under 64 MiB, batches
// of at most 1000 records and time deltas under 4000 years, against the
// 22 bytes recordSize counts besides key, value and headers (whose
// varints it counts exactly). So a batch never exceeds limit bytes on the
// wire, and a single record fits when recordSize is at most
// limit-batchOverhead.
type batcher struct {
	topic   string
	brokers []string
	sh      *shared
	meta    *writerTransport // the shared transport, with the topic's metadata kept a second
	opts    batcherOptions
	limit   atomic.Int64 // max.message.bytes in use; set by sends
	prod    producer     // the idempotent producer it writes as (idempotence.go)
	// sendMu keeps sends one at a time, as the producer's sequence
	// numbers need: a second send at once would number its batches as the
	// first does, and the broker would take one for the other's duplicate
	// and drop it. (Flush and Detach's sends are called one at a time;
	// this makes sure of it.)
	sendMu sync.Mutex

	buffer // what Write adds to
	closed bool
	now    time.Time // the clock's last reading (add)
	// spares are detached buffers sent and reset, at most two: the next
	// add into an empty buffer takes one (see detach).
	mu     sync.Mutex
	spares []*buffer

	writes, bytes, truncated atomic.Int64
}

// buffer holds records written and not yet acknowledged: the batcher's
// own, or one detached from it and sent on another goroutine.
type buffer struct {
	records // recs[sent:] are not acknowledged
	sent    int
	// out is the chunk at recs[sent:] as it is being sent: what the
	// broker acknowledged of it, kept when a send fails, so that the next
	// sends only the rest, under the same sequence numbers.
	out     *outgoing
	size    int  // bytes of recs[sent:], as counted by bytes
	fitted  int  // the largest limit its records were fitted to
	tainted bool // a write failed since the buffers were last reset
}

// records are buffered records and the arrays their parts lie in.
type records struct {
	recs []rec
	data arena // the bytes of keys, values and header values
	hdrs []hdr
	keys []string // header keys, each once: hdr.key indexes it
}

// rec is a buffered record: its key and value as spans of the data (a
// length of -1 is nil, a null field), its headers as hdrs[h0:h0+nh], its
// time in Unix milliseconds (noTime: the broker's clock stamps it).
type rec struct {
	ms         int64
	koff, voff int
	kn, vn     int32
	h0, nh     int32
}

// hdr is a header of a buffered record: its key, an index into keys, and
// its value, a span of the data.
type hdr struct {
	off    int
	n, key int32
}

// noTime is the time of a record without one.
const noTime = math.MinInt64

// put copies p into the data and returns its span: a length of -1 for
// nil.
func (r *records) put(p []byte) (int, int32) {
	if p == nil {
		return 0, -1
	}
	_, off := r.data.put(p)
	return off, int32(len(p))
}

// span returns the bytes of a span, nil for a length of -1, in place.
func (r *records) span(off int, n int32) []byte {
	if n < 0 {
		return nil
	}
	return r.data.at(off, int(n))
}

// keyIndex returns the index of header key k in keys, adding it when new.
func (r *records) keyIndex(k string) int32 {
	for i, x := range r.keys {
		if x == k {
			return int32(i)
		}
	}
	r.keys = append(r.keys, k)
	return int32(len(r.keys) - 1)
}

// addHeader appends a header with key k and a copy of value v.
func (r *records) addHeader(k string, v []byte) {
	off, n := r.put(v)
	r.hdrs = append(r.hdrs, hdr{off: off, n: n, key: r.keyIndex(k)})
}

// headers returns the headers of x as kafka.Headers, appended to hs;
// their values point into the data.
func (r *records) headers(x *rec, hs []kafka.Header) []kafka.Header {
	for _, h := range r.hdrs[x.h0 : x.h0+x.nh] {
		hs = append(hs, kafka.Header{Key: r.keys[h.key], Value: r.span(h.off, h.n)})
	}
	return hs
}

// message returns x as a kafka.Message whose key, value and headers
// point into the arrays; its headers are appended to hs, which it returns
// for reuse.
func (r *records) message(x *rec, hs []kafka.Header) (kafka.Message, []kafka.Header) {
	hs = r.headers(x, hs[:0])
	m := kafka.Message{Key: r.span(x.koff, x.kn), Value: r.span(x.voff, x.vn), Headers: hs}
	if x.ms != noTime {
		m.Time = time.UnixMilli(x.ms)
	}
	return m, hs
}

// headerLens returns the key and value lengths of the headers of x, as
// headersSize and fitRecord take them, and how many there are.
func (r *records) headerLens(x *rec) (n int, each func(i int) (keyLen, valueLen int)) {
	hs := r.hdrs[x.h0 : x.h0+x.nh]
	return len(hs), func(i int) (int, int) { return len(r.keys[hs[i].key]), max(int(hs[i].n), 0) }
}

// headersSize returns what kafka-go counts for the headers of x.
func (r *records) headersSize(x *rec) int { return headersSize(r.headerLens(x)) }

// recordSize returns what x counts against a batch's room (recordSize).
func (r *records) recordSize(x *rec) int {
	return recordSize(max(int(x.kn), 0), max(int(x.vn), 0), r.headersSize(x))
}

// recordBytes returns the key, value and header bytes of x, as Bytes
// counts them.
func (r *records) recordBytes(x *rec) int {
	n := max(int(x.kn), 0) + max(int(x.vn), 0)
	for _, h := range r.hdrs[x.h0 : x.h0+x.nh] {
		n += len(r.keys[h.key]) + max(int(h.n), 0)
	}
	return n
}

// batcherOptions are a batcher's settings; zero values are defaults.
type batcherOptions struct {
	balancer        kafka.Balancer
	maxMessageBytes int // 0: the topic's
	oversize        Oversize
}

func newBatcher(c Config, topic string, opts batcherOptions) (*batcher, error) {
	if topic == "" {
		return nil, errors.New("kafkaio: no topic given")
	}
	sh, err := acquire(c)
	if err != nil {
		return nil, err
	}
	b := &batcher{topic: topic, brokers: c.Brokers, sh: sh, opts: opts}
	b.meta = &writerTransport{RoundTripper: sh.t, topic: topic}
	limit := opts.maxMessageBytes
	if limit <= 0 {
		ctx, cancel := context.WithTimeout(context.Background(), limitLookupTimeout)
		limit = b.lookupLimit(ctx)
		cancel()
		if limit <= 0 {
			limit = defaultMaxMessageBytes
		}
	}
	b.setLimit(limit)
	return b, nil
}

// lookupLimit returns the topic's max.message.bytes, 0 when it cannot be
// read.
func (b *batcher) lookupLimit(ctx context.Context) int {
	l, err := describeLimits(ctx, b.sh.client, b.topic)
	if err != nil {
		return 0
	}
	return l.MaxMessageBytes
}

// setLimit makes limit the batch limit.
func (b *batcher) setLimit(limit int) {
	b.limit.Store(int64(min(max(limit, batchOverhead+1), maxMaxMessageBytes)))
}

// room is the most recordSize may count for a record to fit in a batch.
func (b *batcher) room() int { return int(b.limit.Load()) - batchOverhead }

// recordSize returns the bytes a record counts against a batch's room
// (as kafka-go's kafka.Message totalSize counts them): 22 bytes of fixed
// fields, key, value, and the headers with their varint lengths.
func recordSize(keyLen, valueLen, headersSize int) int {
	return 22 + keyLen + valueLen + headersSize
}

// headersSize returns what kafka-go counts for n headers whose keys and
// values have the given lengths: varint-prefixed, after a varint count.
func headersSize(n int, each func(i int) (keyLen, valueLen int)) int {
	size := varintLen(n)
	for i := range n {
		k, v := each(i)
		size += varintLen(k) + k + varintLen(v) + v
	}
	return size
}

// varintLen returns the bytes of n as a zig-zag varint.
func varintLen(n int) int {
	u := uint64(n) << 1
	if n < 0 {
		u = ^u
	}
	l := 1
	for ; u >= 0x80; u >>= 7 {
		l++
	}
	return l
}

// fit is how a record too large for one batch is cut: its value to
// valueLen bytes, its key to keyLen, with extra headers after its own.
type fit struct {
	keyLen, valueLen int
	extra            []kafka.Header
}

// fitRecord returns how to cut a record with keyLen bytes of key,
// valueLen of value and headers hs (keys and value lengths given by
// each) so that recordSize is at most room, or false when even its
// headers do not fit.
func fitRecord(room, keyLen, valueLen, n int, each func(i int) (keyLen, valueLen int)) (fit, bool) {
	f := fit{keyLen: keyLen, extra: []kafka.Header{
		{Key: HeaderTruncated, Value: []byte("true")},
		{Key: HeaderOriginalLength, Value: strconv.AppendInt(nil, int64(valueLen), 10)},
	}}
	hsize := func() int {
		return headersSize(n+len(f.extra), func(i int) (int, int) {
			if i < n {
				return each(i)
			}
			h := f.extra[i-n]
			return len(h.Key), len(h.Value)
		})
	}
	if v := room - recordSize(keyLen, 0, hsize()); v >= 0 {
		f.valueLen = min(v, valueLen)
		return f, true
	}
	f.extra = append(f.extra, kafka.Header{Key: HeaderOriginalKeyLength, Value: strconv.AppendInt(nil, int64(keyLen), 10)})
	k := room - recordSize(0, 0, hsize())
	if k < 0 {
		return fit{}, false
	}
	f.keyLen, f.valueLen = min(k, keyLen), 0
	return f, true
}

// truncates reports whether a record with headers hs is cut, rather than
// refused, when too large.
func (b *batcher) truncates(n int, key func(i int) string) bool {
	switch b.opts.oversize {
	case OversizeTruncate:
		return true
	case OversizeAuto:
		for i := range n {
			if key(i) == processor.HeaderReason {
				return true
			}
		}
	}
	return false
}

func (b *batcher) buffered() int { return len(b.recs) - b.sent }

// detach takes the buffered records out, for another goroutine to send
// with the function returned while add fills a new buffer; nil when there
// are none. Once sent, the buffer's entries serve the next add into an
// empty buffer: taken then, not at the detach, a sink written only
// between sends (the changelog: a commit's records, then nothing until
// it has landed) keeps one buffer of a commit's size, not two. Two are
// kept: a sink written while a send is in flight fills a second, and
// one that then gets nothing until the next send lands has both back.
// With one kept, that sink dropped a buffer each time and grew a new one
// from nothing: as much allocated as it sent (bench/RESULTS.md).
func (b *batcher) detach() func(ctx context.Context) error {
	if b.closed || b.buffered() == 0 {
		return nil
	}
	f := new(buffer)
	*f = b.buffer
	b.buffer = buffer{}
	return func(ctx context.Context) error {
		if err := b.send(ctx, f); err != nil {
			return err
		}
		b.reset(f)
		b.mu.Lock()
		// The two largest are kept, smallest first.
		b.spares = append(b.spares, f)
		slices.SortFunc(b.spares, func(x, y *buffer) int { return cmp.Compare(cap(x.recs), cap(y.recs)) })
		if len(b.spares) > 2 {
			b.spares = slices.Delete(b.spares, 0, 1)
		}
		b.mu.Unlock()
		return nil
	}
}

// add buffers a copy of one record, cut or refused (*TooLargeError) when
// it does not fit in a batch, as opts.oversize says. A record time in the
// future becomes the wall clock: brokers refuse timestamps ahead of their
// own clock (Kafka 4 by an hour, log.message.timestamp.after.max.ms), and
// a consumer that checks event times against record times then sees such
// an event as from the future. The clock is read again only for a time
// after the last reading (a catch-up's records are all in the past, and
// reading it for each was 1% of its CPU).
func (b *batcher) add(key, value []byte, t time.Time, hs []processor.Header) error {
	if t.After(b.now) {
		if b.now = time.Now(); t.After(b.now) {
			t = b.now
		}
	}
	if b.closed {
		return fmt.Errorf("write to topic %q: sink closed", b.topic)
	}
	if cap(b.recs) == 0 {
		b.takeSpare()
	}
	each := func(i int) (int, int) { return len(hs[i].Key), len(hs[i].Value) }
	var extra []kafka.Header
	if size := recordSize(len(key), len(value), headersSize(len(hs), each)); size > b.room() {
		f, ok := fitRecord(b.room(), len(key), len(value), len(hs), each)
		if !ok || !b.truncates(len(hs), func(i int) string { return hs[i].Key }) {
			return b.tooLarge(size, len(key), len(value), hs)
		}
		key, value, extra = cut(key, f.keyLen), cut(value, f.valueLen), f.extra
		b.truncated.Add(1)
	}
	x := rec{ms: noTime, h0: int32(len(b.hdrs)), nh: int32(len(hs) + len(extra))}
	if !t.IsZero() {
		x.ms = t.UnixMilli()
	}
	x.koff, x.kn = b.put(key)
	x.voff, x.vn = b.put(value)
	for _, h := range hs {
		b.addHeader(h.Key, h.Value)
	}
	for _, h := range extra {
		b.addHeader(h.Key, h.Value)
	}
	b.recs = append(b.recs, x)
	b.size += b.recordBytes(&x)
	b.fitted = max(b.fitted, int(b.limit.Load()))
	return nil
}

// takeSpare makes the larger spare buffer, if there is one, the buffer
// add fills; add calls it when its own has no memory (a detach took it).
func (b *batcher) takeSpare() {
	b.mu.Lock()
	var spare *buffer
	if n := len(b.spares); n > 0 {
		spare = b.spares[n-1]
		b.spares = b.spares[:n-1]
	}
	b.mu.Unlock()
	if spare != nil {
		b.buffer = *spare
	}
}

// tooLarge returns the error of a record refused for its size.
func (b *batcher) tooLarge(size, keyLen, valueLen int, hs []processor.Header) error {
	e := &TooLargeError{Topic: b.topic, Size: size + batchOverhead, Max: int(b.limit.Load()), KeyLen: keyLen, ValueLen: valueLen}
	for _, h := range hs {
		e.HeadersLen += len(h.Key) + len(h.Value)
	}
	return e
}

// cut returns the first n bytes of p, keeping nil nil and an empty
// prefix non-nil (a nil value is a tombstone).
func cut(p []byte, n int) []byte {
	if p == nil {
		return nil
	}
	return p[:n:n]
}

// refit applies the limit to the records of f not yet acknowledged,
// after it went down: records that no longer fit are cut, or, when they
// may not be, reported in an error (they stay buffered).
func (b *batcher) refit(f *buffer) error {
	for i := f.sent; i < len(f.recs); i++ {
		if i == f.sent {
			// The records change in place below: a request still
			// encoded from the old array keeps reading it unchanged.
			f.recs = slices.Clone(f.recs)
		}
		x := &f.recs[i]
		size := f.recordSize(x)
		if size <= b.room() {
			continue
		}
		hs := f.hdrs[x.h0 : x.h0+x.nh]
		n, each := f.headerLens(x)
		fit, ok := fitRecord(b.room(), max(int(x.kn), 0), max(int(x.vn), 0), n, each)
		if !ok || !b.truncates(n, func(i int) string { return f.keys[hs[i].key] }) {
			return fmt.Errorf("write to topic %q: the topic accepts record batches of at most %d bytes (max.message.bytes), and a buffered record of %d bytes needs %d",
				b.topic, b.limit.Load(), f.recordBytes(x), size+batchOverhead)
		}
		f.size -= f.recordBytes(x)
		if x.kn >= 0 {
			x.kn = int32(fit.keyLen)
		}
		if x.vn >= 0 {
			x.vn = int32(fit.valueLen)
		}
		// The headers, the record's own then the new ones, at the end of
		// hdrs: entries a request may still read stay as they were.
		h0 := len(f.hdrs)
		f.hdrs = append(f.hdrs, hs...)
		for _, h := range fit.extra {
			f.addHeader(h.Key, h.Value)
		}
		x.h0, x.nh = int32(h0), int32(len(f.hdrs)-h0)
		f.size += f.recordBytes(x)
		b.truncated.Add(1)
	}
	f.fitted = int(b.limit.Load())
	if o := f.out; o != nil {
		// The chunk in the air reads the records changed: what the
		// broker acknowledged of it stays so, and the rest goes in
		// batches of the new size.
		o.records, o.chunk = f.records, f.recs[f.sent:f.sent+len(o.chunk)]
	}
	return nil
}

// tooLargeForBroker reports whether err says that the broker refused a
// batch as too large for the topic.
func tooLargeForBroker(err error) bool {
	var werr kafka.WriteErrors
	if errors.As(err, &werr) {
		for _, e := range werr {
			if e != nil && tooLargeForBroker(e) {
				return true
			}
		}
		return false
	}
	return errors.Is(err, kafka.MessageSizeTooLarge) || errors.Is(err, kafka.RecordListTooLarge)
}

// flush writes the buffered records in chunks, in order, and resets the
// buffers once all are acknowledged.
func (b *batcher) flush(ctx context.Context) error {
	if b.closed {
		return fmt.Errorf("write to topic %q: sink closed", b.topic)
	}
	if err := b.send(ctx, &b.buffer); err != nil {
		return err
	}
	b.reset(&b.buffer)
	return nil
}

// send writes the records of f not yet acknowledged in chunks, in order.
// Sends run one at a time.
func (b *batcher) send(ctx context.Context, f *buffer) error {
	b.sendMu.Lock()
	defer b.sendMu.Unlock()
	if f.fitted > int(b.limit.Load()) { // a send of another buffer lowered it
		if err := b.refit(f); err != nil {
			return err
		}
	}
	var unknownSince, failingSince time.Time
	relooked := false
	for f.sent < len(f.recs) {
		chunk := f.recs[f.sent:min(len(f.recs), f.sent+chunkRecords)]
		// A request can wait without end for metadata it never gets (a
		// topic just created, a broker that went away; kafka-go's issue
		// 806): each attempt has a deadline, and one that passes is
		// retried like a refused connection.
		wctx, cancel := context.WithTimeout(ctx, writeAttemptTimeout)
		var err error
		if f.out == nil {
			f.out, err = b.plan(wctx, f.records, chunk)
		}
		if err == nil {
			err = b.produce(wctx, f.out)
		}
		cancel()
		if err != nil {
			f.tainted = true
			if ctx.Err() != nil {
				return fmt.Errorf("write to topic %q: %w", b.topic, ctx.Err())
			}
			if errors.Is(err, context.DeadlineExceeded) {
				if failingSince.IsZero() {
					failingSince = time.Now()
				}
				if time.Since(failingSince) < defaultRetryFor {
					b.sh.refresh()
					b.meta.forget()
					continue
				}
				return fmt.Errorf("write %d records to topic %q: not acknowledged within %v: %w", len(chunk), b.topic, defaultRetryFor, err)
			}
			// The topic's limit is below the one in use (the option
			// was off, it could not be read, or it went down): read it
			// again, once a flush, and cut what it holds to the new one.
			if tooLargeForBroker(err) && !relooked {
				relooked = true
				if limit := b.lookupLimit(ctx); limit > 0 && limit < int(b.limit.Load()) {
					b.setLimit(limit)
					if err := b.refit(f); err != nil {
						return err
					}
					continue
				}
			}
			// A broker that restarts refuses connections for a while,
			// and the transport keeps what it knew of the old one:
			// forget it and try again, for as long as a source would.
			if (retriable(err) || misrouted(err) || errors.Is(err, errProducerReset)) && !errors.Is(err, protocol.ErrNoTopic) {
				if failingSince.IsZero() {
					failingSince = time.Now()
				}
				if time.Since(failingSince) < defaultRetryFor {
					b.sh.refresh()
					b.meta.forget()
					if err := sleep(ctx, 500*time.Millisecond); err != nil {
						return fmt.Errorf("write to topic %q: %w", b.topic, err)
					}
					continue
				}
			}
			// Partitions are looked up in the transport's metadata
			// cache, which may predate the topic.
			if errors.Is(err, kafka.UnknownTopicOrPartition) || errors.Is(err, protocol.ErrNoTopic) {
				if unknownSince.IsZero() {
					unknownSince = time.Now()
				}
				if time.Since(unknownSince) < 10*time.Second {
					b.sh.refresh()
					b.meta.forget()
					if err := sleep(ctx, 200*time.Millisecond); err != nil {
						return fmt.Errorf("write to topic %q: %w", b.topic, err)
					}
					continue
				}
				return &hintError{err: err, msg: fmt.Sprintf("write to topic %q: the topic does not exist; create it", b.topic)}
			}
			if tooLargeForBroker(err) {
				return fmt.Errorf("%w (batches were kept within %d bytes, the topic's max.message.bytes as this client read it; give the sink a lower MaxMessageBytes)",
					writeError(b.topic, len(chunk), err), b.limit.Load())
			}
			return writeError(b.topic, len(chunk), err)
		}
		f.out = nil
		n := 0
		for i := range chunk {
			n += f.recordBytes(&chunk[i])
		}
		b.writes.Add(int64(len(chunk)))
		b.bytes.Add(int64(n))
		f.size -= n
		f.sent += len(chunk)
	}
	return nil
}

// reset empties a buffer after a fully acknowledged send: its chunks go
// back to the free list.
func (b *batcher) reset(f *buffer) {
	f.sent, f.size, f.fitted, f.out = 0, 0, 0, nil
	if f.tainted || cap(f.recs) > 1<<20 {
		// A request of an attempt that failed or was cancelled may still
		// be encoded on the transport's goroutine, from the records
		// themselves (send.go reads them in place): leave every array to
		// it and the garbage collector. Cleared, it once sent records
		// without key, value or headers.
		f.records, f.tainted = records{}, false
		return
	}
	f.recs = f.recs[:0]
	f.data.release()
	f.hdrs = f.hdrs[:0]
}

// writeError reports a failed send on one line.
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
	b.sh.release()
	b.records = records{}
	return nil
}
