package kafkaio

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"io"
	"sync"
)

// Record batches. A sink encodes each partition's share of a Produce
// request itself, as one record batch (magic 2, uncompressed), from its
// buffered records straight into the request's buffer, with kafka-go's
// raw produce request (protocol/rawproduce). kafka-go's own encoder
// (protocol.RecordSet) takes each record through a protocol.Record of
// readers and writes it a field, often a byte, at a time into its paged
// buffer, then reads the batch back for its checksum: 5% of a catch-up's
// CPU, against 2.6% for this encoder when it encoded twice
// (bench/RESULTS.md). The bytes are the same as kafka-go's
// (TestBatchSetAsKafkaGo).

// castagnoli is the CRC-32C table of record batch checksums.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Offsets in a record batch, from its start (its base offset).
const (
	batchLengthAt = 8  // int32: the bytes that follow it
	batchCRCAt    = 17 // uint32: CRC-32C of the bytes from batchAttrsAt
	batchAttrsAt  = 21 // int16 attributes, then the fields the checksum covers
	batchHeadLen  = 61 // base offset to the first record
)

// batchSet is the record set of one partition in a raw produce request:
// the records idx of chunk, encoded as one batch when the connection
// writes the request (produceRequest; WriteTo and Read for any other
// writer), as kafka-go's encoder did. So the records
// must stay as they are until the request is written, also after a
// failed attempt (send.go). Records without a time get now (Unix
// milliseconds).
type batchSet struct {
	r     *records
	chunk []rec
	idx   []int32
	now   int64
	seq   sequence // the batch's place in its producer's sequence, if any

	read []byte // Read's encoding, made at its first call
	done bool   // written or read once
}

// encodeScratch holds the arrays batches are encoded into, one a
// connection writing a request, each about as large as a batch (at most
// max.message.bytes) and a part of a request (writePart). It is a free list, not a sync.Pool: in a catch-up
// the collector ran several times a second and emptied the pool, and the
// batches grew new arrays: 13% of the bytes the catch-up allocated
// (bench/RESULTS.md).
var encodeScratch struct {
	mu   sync.Mutex
	free [][]byte
}

// The free list keeps up to maxScratchFree arrays of at most
// maxScratchKept bytes.
const (
	maxScratchFree = 4
	maxScratchKept = 2 << 20
)

// getScratch returns an empty array from the free list, or nil.
func getScratch() []byte {
	encodeScratch.mu.Lock()
	defer encodeScratch.mu.Unlock()
	n := len(encodeScratch.free)
	if n == 0 {
		return nil
	}
	p := encodeScratch.free[n-1]
	encodeScratch.free[n-1] = nil
	encodeScratch.free = encodeScratch.free[:n-1]
	return p
}

// putScratch gives p back to the free list, unless it is too large or the
// list is full.
func putScratch(p []byte) {
	encodeScratch.mu.Lock()
	defer encodeScratch.mu.Unlock()
	if cap(p) <= maxScratchKept && len(encodeScratch.free) < maxScratchFree {
		encodeScratch.free = append(encodeScratch.free, p[:0])
	}
}

// WriteTo writes the record set: its size (int32), then the batch,
// encoded whole into a scratch array for its checksum, which comes before
// the records.
func (s *batchSet) WriteTo(w io.Writer) (int64, error) {
	if s.done {
		return 0, nil
	}
	first, maxTime := s.times()
	p := s.appendSet(getScratch(), first, maxTime)
	n, err := w.Write(p)
	putScratch(p)
	return int64(n), err
}

// times returns the first time of the batch and its largest.
func (s *batchSet) times() (first, maxTime int64) {
	for i, j := range s.idx {
		t := s.time(&s.chunk[j])
		if i == 0 {
			first, maxTime = t, t
		}
		maxTime = max(maxTime, t)
	}
	return first, maxTime
}

// size returns the bytes appendSet appends, for the batch's first time
// (times).
func (s *batchSet) size(first int64) int {
	n := 4 + batchHeadLen
	for i, j := range s.idx {
		x := &s.chunk[j]
		l := s.r.recordLen(x, s.time(x)-first, int64(i))
		n += varintLen(l) + l
	}
	return n
}

// appendSet appends the record set to p: its size (int32), then the
// batch, of the times the batch's times returns.
func (s *batchSet) appendSet(p []byte, first, maxTime int64) []byte {
	s.done = true
	at := len(p)
	p = append(p, make([]byte, 4+batchHeadLen)...)
	for i, j := range s.idx {
		x := &s.chunk[j]
		p = s.r.appendRecord(p, x, s.time(x)-first, int64(i))
	}
	binary.BigEndian.PutUint32(p[at:], uint32(len(p)-at-4))
	// The batch: base offset 0, length, then the partition leader epoch.
	b := p[at+4:]
	binary.BigEndian.PutUint32(b[batchLengthAt:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[12:], ^uint32(0)) // -1
	b[16] = 2                                      // magic
	// Attributes 0: no compression, create time, not transactional.
	binary.BigEndian.PutUint32(b[23:], uint32(len(s.idx)-1)) // last offset delta
	binary.BigEndian.PutUint64(b[27:], uint64(first))
	binary.BigEndian.PutUint64(b[35:], uint64(maxTime))
	id, epoch, seq := int64(-1), int16(-1), int32(-1) // no producer
	if s.seq.ok {
		id, epoch, seq = s.seq.id, s.seq.epoch, s.seq.first
	}
	binary.BigEndian.PutUint64(b[43:], uint64(id)) // producer ID
	binary.BigEndian.PutUint16(b[51:], uint16(epoch))
	binary.BigEndian.PutUint32(b[53:], uint32(seq)) // base sequence
	binary.BigEndian.PutUint32(b[57:], uint32(len(s.idx)))
	binary.BigEndian.PutUint32(b[batchCRCAt:], crc32.Checksum(b[batchAttrsAt:], castagnoli))
	return p
}

// time returns the time of x in the batch.
func (s *batchSet) time(x *rec) int64 {
	if x.ms == noTime {
		return s.now
	}
	return x.ms
}

// Read reads the record set as WriteTo writes it (tests, and any writer
// that reads its source).
func (s *batchSet) Read(p []byte) (int, error) {
	if s.read == nil && !s.done {
		var b bytes.Buffer
		s.WriteTo(&b)
		s.read = b.Bytes()
	}
	if len(s.read) == 0 {
		return 0, io.EOF
	}
	n := copy(p, s.read)
	s.read = s.read[n:]
	return n, nil
}

// recordLen returns the bytes of x as a record of a batch, after its
// length. A null key, value or header value (length -1) takes as many
// bytes as an empty one, so headersSize counts its headers exactly.
func (r *records) recordLen(x *rec, tsDelta, offsetDelta int64) int {
	return 1 + varintLen(int(tsDelta)) + varintLen(int(offsetDelta)) +
		varintLen(int(x.kn)) + max(int(x.kn), 0) + varintLen(int(x.vn)) + max(int(x.vn), 0) +
		r.headersSize(x)
}

// appendRecord appends x as a record of a batch, at tsDelta milliseconds
// after the batch's first and offsetDelta records after it.
func (r *records) appendRecord(dst []byte, x *rec, tsDelta, offsetDelta int64) []byte {
	hs := r.hdrs[x.h0 : x.h0+x.nh]
	dst = binary.AppendVarint(dst, int64(r.recordLen(x, tsDelta, offsetDelta)))
	dst = append(dst, 0) // attributes
	dst = binary.AppendVarint(dst, tsDelta)
	dst = binary.AppendVarint(dst, offsetDelta)
	dst = binary.AppendVarint(dst, int64(x.kn))
	dst = append(dst, r.span(x.koff, x.kn)...)
	dst = binary.AppendVarint(dst, int64(x.vn))
	dst = append(dst, r.span(x.voff, x.vn)...)
	dst = binary.AppendVarint(dst, int64(len(hs)))
	for _, h := range hs {
		k := r.keys[h.key]
		dst = binary.AppendVarint(dst, int64(len(k)))
		dst = append(dst, k...)
		dst = binary.AppendVarint(dst, int64(h.n))
		dst = append(dst, r.span(h.off, h.n)...)
	}
	return dst
}
