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
// CPU, against 2.6% for this encoder (bench/RESULTS.md). The bytes are
// the same as kafka-go's (TestBatchSetAsKafkaGo).

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
// writes the request (WriteTo, straight into its buffer), as kafka-go's
// encoder did. So the records must stay as they are until the request is
// written, also after a failed attempt (send.go). Records without a time
// get now (Unix milliseconds).
type batchSet struct {
	r     *records
	chunk []rec
	idx   []int32
	now   int64

	read []byte // Read's encoding, made at its first call
	done bool   // written or read once
}

// encodeScratch holds the arrays WriteTo encodes records into before
// writing them, about encodeBlock bytes each.
var encodeScratch = sync.Pool{New: func() any { return new([]byte) }}

// encodeBlock is how many bytes of records WriteTo encodes before it
// writes them or adds them to the checksum.
const encodeBlock = 16 << 10

// WriteTo writes the record set: its size (int32), then the batch. The
// records are encoded twice, first for the checksum, which comes before
// them: that costs less than holding them encoded.
func (s *batchSet) WriteTo(w io.Writer) (int64, error) {
	if s.done {
		return 0, nil
	}
	s.done = true
	scratch := encodeScratch.Get().(*[]byte)
	defer encodeScratch.Put(scratch)
	var first, maxTime int64
	for i, j := range s.idx {
		t := s.time(&s.chunk[j])
		if i == 0 {
			first, maxTime = t, t
		}
		maxTime = max(maxTime, t)
	}
	var h [4 + batchHeadLen]byte
	// The batch: base offset 0, length, then the partition leader epoch.
	b := h[4:]
	binary.BigEndian.PutUint32(b[12:], ^uint32(0)) // -1
	b[16] = 2                                      // magic
	// Attributes 0: no compression, create time, not transactional.
	binary.BigEndian.PutUint32(b[23:], uint32(len(s.idx)-1)) // last offset delta
	binary.BigEndian.PutUint64(b[27:], uint64(first))
	binary.BigEndian.PutUint64(b[35:], uint64(maxTime))
	binary.BigEndian.PutUint64(b[43:], ^uint64(0)) // producer ID: -1
	binary.BigEndian.PutUint16(b[51:], ^uint16(0)) // producer epoch: -1
	binary.BigEndian.PutUint32(b[53:], ^uint32(0)) // base sequence: -1
	binary.BigEndian.PutUint32(b[57:], uint32(len(s.idx)))
	crc := crc32.Checksum(b[batchAttrsAt:], castagnoli)
	size := batchHeadLen
	err := s.encode(first, scratch, func(p []byte) error {
		crc = crc32.Update(crc, castagnoli, p)
		size += len(p)
		return nil
	})
	if err != nil {
		return 0, err
	}
	binary.BigEndian.PutUint32(h[:], uint32(size))
	binary.BigEndian.PutUint32(b[batchLengthAt:], uint32(size-12))
	binary.BigEndian.PutUint32(b[batchCRCAt:], crc)
	n, err := w.Write(h[:])
	written := int64(n)
	if err != nil {
		return written, err
	}
	err = s.encode(first, scratch, func(p []byte) error {
		n, err := w.Write(p)
		written += int64(n)
		return err
	})
	return written, err
}

// encode encodes the records in blocks of about encodeBlock bytes, in
// scratch (grown when short, kept unless a record made it large), and
// gives each block to fn.
func (s *batchSet) encode(first int64, scratch *[]byte, fn func([]byte) error) error {
	p := (*scratch)[:0]
	defer func() {
		if cap(p) <= 4*encodeBlock {
			*scratch = p[:0]
		}
	}()
	for i, j := range s.idx {
		x := &s.chunk[j]
		p = s.r.appendRecord(p, x, s.time(x)-first, int64(i))
		if len(p) >= encodeBlock || i == len(s.idx)-1 {
			if err := fn(p); err != nil {
				return err
			}
			p = p[:0]
		}
	}
	return nil
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
// length.
func (r *records) recordLen(x *rec, tsDelta, offsetDelta int64) int {
	hs := r.hdrs[x.h0 : x.h0+x.nh]
	n := 1 + varintLen(int(tsDelta)) + varintLen(int(offsetDelta)) +
		varintLen(int(x.kn)) + max(int(x.kn), 0) + varintLen(int(x.vn)) + max(int(x.vn), 0) +
		varintLen(len(hs))
	for _, h := range hs {
		k := len(r.keys[h.key])
		n += varintLen(k) + k + varintLen(int(h.n)) + max(int(h.n), 0)
	}
	return n
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
