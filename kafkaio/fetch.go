package kafkaio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/protocol"
	"github.com/segmentio/kafka-go/protocol/fetch"

	"github.com/viralityhq/virality/processor"
)

// Fetches. A source sends its fetch requests through kafka-go's transport
// (its connections, its metadata, the partition's leader), but writes the
// request and reads the response itself, as kafka-go's raw exchange
// (protocol.RawExchanger) lets a request do. kafka-go's decoder reads each
// record a field, often a byte, at a time, and allocates for each one
// (page references, a record, its headers): 5.7% of a catch-up's CPU and
// 18% of the bytes it allocated (bench/RESULTS.md). Here each record is
// read from the connection's buffer straight into the source's chunks,
// and its key, value and header values are slices of that copy.
//
// Record batches of magic 2 are decoded here, compressed or not; a record
// set from its first batch of magic 0 or 1 on (written by producers older
// than Kafka 0.11 to brokers that still keep that format) goes to
// kafka-go's decoder. The records are those kafka-go's decoder returns
// (TestFetchAsKafkaGo), with one difference: a source moves past a batch
// whose records were all removed by compaction, or past the removed
// records at the end of a batch, where kafka-go's reader read the same
// batch again and again.

// Fetch versions this file writes and reads: 4 (Kafka 0.11, the first
// with record headers, which the internal topics need) to 11, the most
// kafka-go negotiates.
const (
	minFetchVersion = 4
	maxFetchVersion = 11
)

// maxResponseBytes bounds the size of a fetch response: a larger one is
// taken as a broken connection.
const maxResponseBytes = 1 << 30

// Parts of a record batch (see batchHeadLen).
const (
	batchPrefixLen = 17                // base offset, length, leader epoch, magic
	batchFieldsLen = 40                // attributes to the record count: what the checksum covers before the records
	batchLengthMin = batchHeadLen - 12 // the bytes its length counts before the records
)

// errMalformed says a response or record batch breaks the protocol.
var errMalformed = errors.New("malformed fetch response")

// fetchExchange is one fetch request of one partition, and what it read.
// kafka-go's transport routes it (the embedded fetch.Request gives its
// API key and leader) and hands it the connection (RawExchange); a source
// reuses it from fetch to fetch while it finishes, and makes another when
// a fetch gave up waiting on it (the connection may still write into it).
type fetchExchange struct {
	fetch.Request

	topic     string
	partition int32
	clientID  string
	version   int16
	id        int32 // correlation ID of the last request

	offset   int64 // the first offset asked for
	maxWait  int32 // milliseconds
	maxBytes int32

	// What the response said, valid once finished.
	errCode int16 // the partition's error, or the response's
	found   bool  // the response had the partition
	hw      int64
	next    int64 // the offset after the last record read or skipped
	recs    []processor.Record
	hdrs    []processor.Header
	data    arena // the records' bytes
	bad     error // why a record set was not read to its end (errReadRecords: fetched again)

	keys     map[string]string // header keys, each one string
	finished atomic.Bool

	r                   responseReader
	head                [batchPrefixLen + 4 + batchFieldsLen]byte // a batch's first bytes
	req, scratch, plain []byte
}

func newFetchExchange(topic string, partition int32, clientID string) *fetchExchange {
	x := &fetchExchange{topic: topic, partition: partition, clientID: clientID}
	x.Topics = []fetch.RequestTopic{{Topic: topic, Partitions: []fetch.RequestPartition{{Partition: partition}}}}
	return x
}

// reset readies x for a request from offset, giving back what its last
// fetch read.
func (x *fetchExchange) reset(offset int64, maxWait time.Duration, maxBytes int) {
	x.release()
	x.offset, x.next = offset, offset
	x.maxWait = int32(min(maxWait.Milliseconds(), 1<<31-1))
	x.maxBytes = int32(min(maxBytes, 1<<31-1))
	x.errCode, x.found, x.hw, x.bad = 0, false, -1, nil
	x.finished.Store(false)
}

// release gives back the records and their memory: they must no longer
// be used.
func (x *fetchExchange) release() {
	x.data.release()
	clear(x.recs)
	x.recs = x.recs[:0]
	clear(x.hdrs)
	x.hdrs = x.hdrs[:0]
}

// err is the partition's error, as kafka-go reports it.
func (x *fetchExchange) err() error {
	switch {
	case x.errCode != 0:
		return kafka.Error(x.errCode)
	case !x.found:
		return fmt.Errorf("fetch %s/%d: %w", x.topic, x.partition, protocol.ErrNoPartition)
	}
	return nil
}

// Required is part of protocol.RawExchanger: every fetch is exchanged
// raw, at the version the connection negotiated.
func (x *fetchExchange) Required(versions map[protocol.ApiKey]int16) bool {
	x.version = versions[protocol.Fetch]
	return true
}

// RawExchange is part of protocol.RawExchanger: it writes the request to
// rw and reads the response. An error leaves the connection out of step;
// kafka-go's transport then closes it. A response it cannot use is read
// to its end, and its error is x's.
func (x *fetchExchange) RawExchange(rw io.ReadWriter) (protocol.Message, error) {
	defer x.finished.Store(true)
	br, ok := rw.(peeker)
	if !ok {
		return nil, fmt.Errorf("kafkaio: fetch: cannot read a %T", rw)
	}
	if x.version < minFetchVersion || x.version > maxFetchVersion {
		return nil, fmt.Errorf("kafkaio: fetch: the broker offers fetch version %d, want %d to %d (Kafka 0.11 or later)", x.version, minFetchVersion, maxFetchVersion)
	}
	x.id++
	x.req = x.appendRequest(x.req[:0])
	if _, err := rw.Write(x.req); err != nil {
		return nil, err
	}
	x.r = responseReader{br: br, remain: 4}
	r := &x.r
	size := r.int32()
	if r.err == nil && (size < 4 || size > maxResponseBytes) {
		return nil, fmt.Errorf("%w: %d bytes", errMalformed, size)
	}
	r.remain = int(size)
	if id := r.int32(); r.err == nil && id != x.id {
		return nil, fmt.Errorf("%w: correlation ID %d, want %d", errMalformed, id, x.id)
	}
	x.readResponse(r)
	r.discard(r.remain)
	r.br = nil
	if r.err != nil {
		return nil, r.err
	}
	return x, nil
}

// appendRequest appends the fetch request (its size first) to b.
func (x *fetchExchange) appendRequest(b []byte) []byte {
	v := x.version
	b = binary.BigEndian.AppendUint32(b, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(protocol.Fetch))
	b = binary.BigEndian.AppendUint16(b, uint16(v))
	b = binary.BigEndian.AppendUint32(b, uint32(x.id))
	b = appendString16(b, x.clientID)
	b = binary.BigEndian.AppendUint32(b, 0xffffffff) // replica: a consumer
	b = binary.BigEndian.AppendUint32(b, uint32(x.maxWait))
	b = binary.BigEndian.AppendUint32(b, 1) // min bytes
	b = binary.BigEndian.AppendUint32(b, uint32(x.maxBytes))
	b = append(b, 0) // isolation level: read uncommitted
	if v >= 7 {
		b = binary.BigEndian.AppendUint32(b, 0)          // session ID: none
		b = binary.BigEndian.AppendUint32(b, 0xffffffff) // session epoch -1: a full fetch, no session
	}
	b = binary.BigEndian.AppendUint32(b, 1)
	b = appendString16(b, x.topic)
	b = binary.BigEndian.AppendUint32(b, 1)
	b = binary.BigEndian.AppendUint32(b, uint32(x.partition))
	if v >= 9 {
		b = binary.BigEndian.AppendUint32(b, 0xffffffff) // current leader epoch: unknown
	}
	b = binary.BigEndian.AppendUint64(b, uint64(x.offset))
	if v >= 5 {
		b = binary.BigEndian.AppendUint64(b, 1<<64-1) // log start offset: a consumer's -1
	}
	b = binary.BigEndian.AppendUint32(b, uint32(x.maxBytes))
	if v >= 7 {
		b = binary.BigEndian.AppendUint32(b, 0) // forgotten topics
	}
	if v >= 11 {
		b = appendString16(b, "") // rack
	}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

func appendString16(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

// readResponse reads the response after its correlation ID.
func (x *fetchExchange) readResponse(r *responseReader) {
	v := x.version
	r.int32() // throttle time
	var top int16
	if v >= 7 {
		top = r.int16()
		r.int32() // session ID
	}
	for range r.count() {
		name := r.string16()
		match := r.err == nil && string(name) == x.topic
		for range r.count() {
			part, code, hw := r.int32(), r.int16(), r.int64()
			r.discard(8) // last stable offset
			if v >= 5 {
				r.discard(8) // log start offset
			}
			if n := r.int32(); n > 0 { // aborted transactions (-1: none)
				r.discard(16 * int(n))
			}
			if v >= 11 {
				r.int32() // preferred read replica
			}
			size := int(r.int32()) // -1: no records
			if r.err != nil {
				return
			}
			if size > r.remain {
				r.fail(fmt.Errorf("%w: a record set of %d bytes in %d", errMalformed, size, r.remain))
				return
			}
			if !match || part != x.partition || x.found {
				r.discard(max(size, 0))
				continue
			}
			x.found, x.errCode, x.hw = true, code, hw
			if size > 0 {
				x.readRecordSet(r, size)
			}
		}
	}
	if x.errCode == 0 {
		x.errCode = top
	}
}

// readRecordSet reads the record set of x's partition, size bytes.
func (x *fetchExchange) readRecordSet(r *responseReader, size int) {
	end := r.remain - size
	for r.err == nil && x.bad == nil && r.remain-end >= batchPrefixLen {
		left := r.remain - end
		prefix := x.head[:batchPrefixLen]
		r.read(prefix)
		base := int64(binary.BigEndian.Uint64(prefix[0:]))
		length := int(int32(binary.BigEndian.Uint32(prefix[8:])))
		if r.err != nil || length > left-12 {
			break // the last batch, cut short by the broker's limit
		}
		if magic := prefix[16]; magic != 2 {
			x.readLegacy(r, prefix, left)
			break
		}
		if length < batchLengthMin {
			x.bad = fmt.Errorf("%w: %w: a record batch of %d bytes", errReadRecords, errMalformed, length)
			break
		}
		x.readBatch(r, base, length-batchLengthMin)
	}
	r.discard(r.remain - end)
}

// readBatch reads a batch of magic 2 after its magic byte: body bytes of
// records after the fields.
func (x *fetchExchange) readBatch(r *responseReader, base int64, body int) {
	f := x.head[batchPrefixLen:]
	r.read(f)
	if r.err != nil {
		return
	}
	want := binary.BigEndian.Uint32(f[0:])
	crc := crc32.Update(0, castagnoli, f[4:])
	attrs := protocol.Attributes(binary.BigEndian.Uint16(f[4:]))
	last := base + int64(int32(binary.BigEndian.Uint32(f[6:])))
	first := int64(binary.BigEndian.Uint64(f[10:]))
	count := int(int32(binary.BigEndian.Uint32(f[40:])))
	recs, hdrs := len(x.recs), len(x.hdrs)
	var err error
	switch {
	case attrs.Control():
		// Transaction markers: no records for the caller.
		r.discard(body)
	case attrs.Compression() != 0:
		err = x.readCompressed(r, attrs, body, count, base, first, crc, want)
	default:
		err = x.readPlain(r, body, count, base, first, crc, want)
	}
	if r.err != nil {
		return
	}
	if err != nil {
		clear(x.recs[recs:])
		x.recs = x.recs[:recs]
		clear(x.hdrs[hdrs:])
		x.hdrs = x.hdrs[:hdrs]
		x.bad = fmt.Errorf("%w: record batch at offset %d of %s/%d: %w", errReadRecords, base, x.topic, x.partition, err)
		return
	}
	x.next = max(x.next, last+1)
}

// readPlain reads count uncompressed records, body bytes, each into the
// data as it comes.
func (x *fetchExchange) readPlain(r *responseReader, body, count int, base, first int64, crc, want uint32) error {
	for range count {
		p := r.peek(min(binary.MaxVarintLen64, body))
		n, k := binary.Varint(p)
		if k <= 0 || n < 0 || n > int64(body-k) {
			return fmt.Errorf("%w: a record's length", errMalformed)
		}
		crc = crc32.Update(crc, castagnoli, p[:k])
		r.discard(k)
		q, _ := x.data.grow(int(n))
		r.read(q)
		if r.err != nil {
			return r.err
		}
		crc = crc32.Update(crc, castagnoli, q)
		body -= k + int(n)
		if err := x.addRecord(q, base, first); err != nil {
			return err
		}
	}
	if body != 0 {
		return fmt.Errorf("%w: %d bytes after the records", errMalformed, body)
	}
	if crc != want {
		return fmt.Errorf("checksum %#x, want %#x", crc, want)
	}
	return nil
}

// readCompressed reads a compressed batch whole, checks it, and reads
// its count records from what it decompresses to.
func (x *fetchExchange) readCompressed(r *responseReader, attrs protocol.Attributes, body, count int, base, first int64, crc, want uint32) error {
	x.scratch = grown(x.scratch, body)
	r.read(x.scratch)
	if r.err != nil {
		return r.err
	}
	if crc = crc32.Update(crc, castagnoli, x.scratch); crc != want {
		return fmt.Errorf("checksum %#x, want %#x", crc, want)
	}
	codec := attrs.Compression().Codec()
	if codec == nil {
		return fmt.Errorf("unknown compression codec %d", attrs.Compression())
	}
	dec := codec.NewReader(bytes.NewReader(x.scratch))
	buf := bytes.NewBuffer(x.plain[:0])
	_, err := buf.ReadFrom(dec)
	err = errors.Join(err, dec.Close())
	x.plain = buf.Bytes()
	if err != nil {
		return fmt.Errorf("decompress %s: %w", codec.Name(), err)
	}
	p := x.plain
	for range count {
		n, k := binary.Varint(p)
		if k <= 0 || n < 0 || n > int64(len(p)-k) {
			return fmt.Errorf("%w: a record's length", errMalformed)
		}
		q, _ := x.data.put(p[k : k+int(n)])
		p = p[k+int(n):]
		if err := x.addRecord(q, base, first); err != nil {
			return err
		}
	}
	if len(p) != 0 {
		return fmt.Errorf("%w: %d bytes after the records", errMalformed, len(p))
	}
	return nil
}

// grown returns b with length n, reallocated if too small.
func grown(b []byte, n int) []byte {
	if cap(b) < n {
		return make([]byte, n)
	}
	return b[:n]
}

// addRecord decodes the record q (after its length) of a batch of base
// offset base and first time first, and appends it to the records unless
// it comes before the offset asked for. Its parts are slices of q.
func (x *fetchExchange) addRecord(q []byte, base, first int64) error {
	d := recordReader{p: q[min(1, len(q)):]} // after its attributes
	ts := d.varint()
	off := base + d.varint()
	key := d.bytes()
	value := d.bytes()
	rec := processor.Record{
		Topic: x.topic, Partition: x.partition, Offset: off,
		Key: key, Value: value, Time: max(first+ts, 0),
	}
	if n := d.varint(); n > 0 {
		i := len(x.hdrs)
		for range n {
			k := d.bytes()
			v := d.bytes()
			if d.bad {
				break
			}
			x.hdrs = append(x.hdrs, processor.Header{Key: x.key(k), Value: v})
		}
		rec.Headers = x.hdrs[i:len(x.hdrs):len(x.hdrs)]
	}
	if d.bad || len(q) == 0 || len(d.p) != 0 {
		return fmt.Errorf("%w: record at offset %d", errMalformed, off)
	}
	if off >= x.offset {
		x.recs = append(x.recs, rec)
	}
	return nil
}

// key returns k as a string, the same string for the same key.
func (x *fetchExchange) key(k []byte) string {
	if s, ok := x.keys[string(k)]; ok {
		return s
	}
	s := string(k)
	if len(x.keys) < 64 {
		if x.keys == nil {
			x.keys = map[string]string{}
		}
		x.keys[s] = s
	}
	return s
}

// readLegacy hands the rest of the record set, from a batch of magic 0 or
// 1 whose first bytes were read (prefix), to kafka-go's decoder; left is
// what was left of the set before prefix.
func (x *fetchExchange) readLegacy(r *responseReader, prefix []byte, left int) {
	set := make([]byte, 4+left)
	binary.BigEndian.PutUint32(set, uint32(left))
	copy(set[4:], prefix)
	r.read(set[4+len(prefix):])
	if r.err != nil {
		return
	}
	var rs protocol.RecordSet
	if _, err := rs.ReadFrom(bytes.NewBuffer(set)); err != nil {
		x.bad = fmt.Errorf("%w: %v", errReadRecords, err)
		return
	}
	if rs.Records != nil {
		x.bad = x.readRecords(rs.Records)
	}
}

// readRecords appends the records of rs (kafka-go's decoding) at or after
// x.next to the records, and moves x.next past them and past control
// records.
func (x *fetchExchange) readRecords(rs protocol.RecordReader) error {
	batches := []protocol.RecordReader{rs}
	if s, ok := rs.(*protocol.RecordStream); ok {
		batches = s.Records
	}
	for _, rb := range batches {
		_, control := rb.(*protocol.ControlBatch)
		for {
			r, err := rb.ReadRecord()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return fmt.Errorf("%w: %v", errReadRecords, err)
			}
			if r.Offset < x.next || control {
				closeBytes(r.Key)
				closeBytes(r.Value)
				x.next = max(x.next, r.Offset+1)
				continue
			}
			rec := processor.Record{
				Topic: x.topic, Partition: x.partition, Offset: r.Offset,
				Key: x.bytes(r.Key), Value: x.bytes(r.Value),
				Time: max(r.Time.UnixMilli(), 0),
			}
			if len(r.Headers) > 0 {
				i := len(x.hdrs)
				for _, h := range r.Headers {
					v, _ := x.data.put(h.Value)
					x.hdrs = append(x.hdrs, processor.Header{Key: h.Key, Value: v})
				}
				rec.Headers = x.hdrs[i:len(x.hdrs):len(x.hdrs)]
			}
			x.recs = append(x.recs, rec)
			x.next = r.Offset + 1
		}
	}
	return nil
}

// bytes reads b into the data and closes it; nil stays nil.
func (x *fetchExchange) bytes(b protocol.Bytes) []byte {
	if b == nil {
		return nil
	}
	defer b.Close()
	p, _ := x.data.grow(b.Len())
	if _, err := io.ReadFull(b, p); err != nil {
		// The bytes are in memory already; a short read cannot happen.
		return p[:0]
	}
	return p
}

func closeBytes(b protocol.Bytes) {
	if b != nil {
		b.Close()
	}
}

// peeker is the buffered reader of kafka-go's connections.
type peeker interface {
	io.Reader
	Peek(n int) ([]byte, error)
	Discard(n int) (int, error)
}

// responseReader reads a response of remain bytes; after its first
// error it reads nothing more.
type responseReader struct {
	br     peeker
	remain int
	err    error
	tmp    [8]byte
}

func (r *responseReader) fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// read fills p.
func (r *responseReader) read(p []byte) {
	if r.err != nil {
		clear(p)
		return
	}
	if len(p) > r.remain {
		r.fail(fmt.Errorf("%w: %d bytes left, want %d", errMalformed, r.remain, len(p)))
		clear(p)
		return
	}
	n, err := io.ReadFull(r.br, p)
	r.remain -= n
	if err != nil {
		r.fail(unexpectedEOF(err))
	}
}

// peek returns the next n bytes (at most the reader's buffer), valid
// until the next read.
func (r *responseReader) peek(n int) []byte {
	if r.err != nil {
		return nil
	}
	p, err := r.br.Peek(min(n, r.remain))
	if err != nil {
		r.fail(unexpectedEOF(err))
		return nil
	}
	return p
}

func (r *responseReader) discard(n int) {
	if r.err != nil || n <= 0 {
		return
	}
	if n > r.remain {
		r.fail(fmt.Errorf("%w: %d bytes left, want %d", errMalformed, r.remain, n))
		return
	}
	m, err := r.br.Discard(n)
	r.remain -= m
	if err != nil {
		r.fail(unexpectedEOF(err))
	}
}

func unexpectedEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

func (r *responseReader) int16() int16 {
	r.read(r.tmp[:2])
	return int16(binary.BigEndian.Uint16(r.tmp[:]))
}

func (r *responseReader) int32() int32 {
	r.read(r.tmp[:4])
	return int32(binary.BigEndian.Uint32(r.tmp[:]))
}

func (r *responseReader) int64() int64 {
	r.read(r.tmp[:8])
	return int64(binary.BigEndian.Uint64(r.tmp[:]))
}

// count reads an array's length (-1, null, is 0).
func (r *responseReader) count() int {
	n := int(r.int32())
	if r.err != nil || n < 0 {
		return 0
	}
	if n > r.remain {
		r.fail(fmt.Errorf("%w: %d items in %d bytes", errMalformed, n, r.remain))
		return 0
	}
	return n
}

// string16 reads a string of int16 length, valid until the next read.
func (r *responseReader) string16() []byte {
	n := int(r.int16())
	if n <= 0 || r.err != nil {
		return nil
	}
	p := r.peek(n)
	if len(p) < n {
		r.fail(fmt.Errorf("%w: a string of %d bytes", errMalformed, n))
		return nil
	}
	r.discard(n)
	return p
}

// recordReader decodes the fields of a record in memory.
type recordReader struct {
	p   []byte
	bad bool
}

func (d *recordReader) varint() int64 {
	v, k := binary.Varint(d.p)
	if k <= 0 {
		d.bad = true
		d.p = nil
		return 0
	}
	d.p = d.p[k:]
	return v
}

// bytes returns the next length-prefixed bytes (nil for length -1), as a
// slice of the record.
func (d *recordReader) bytes() []byte {
	n := d.varint()
	switch {
	case d.bad || n < -1 || n > int64(len(d.p)):
		d.bad = true
		return nil
	case n == -1:
		return nil
	}
	b := d.p[:n:n]
	d.p = d.p[n:]
	return b
}
