package kafkaio

import (
	"encoding/binary"
	"hash/crc32"
	"io"
)

// Record batches. A sink encodes each partition's share of a Produce
// request itself, as one record batch (magic 2, uncompressed), straight
// from its buffered records, and sends it with kafka-go's
// raw produce request (protocol/rawproduce). kafka-go's own encoder
// (protocol.RecordSet) takes each record through a protocol.Record of
// readers and writes it a field, often a byte, at a time into its paged
// buffer, then reads the batch back for its checksum: 5% of a catch-up's
// CPU, for five to six records produced a like (bench/RESULTS.md). The
// bytes are the same as kafka-go's (TestEncodeBatchAsKafkaGo). They go
// into chunks of the process's free list (chunks.go), given back once the
// broker has answered.

// castagnoli is the CRC-32C table of record batch checksums.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Offsets in a record batch, from its start (its base offset).
const (
	batchLengthAt = 8  // int32: the bytes that follow it
	batchCRCAt    = 17 // uint32: CRC-32C of the bytes from batchAttrsAt
	batchAttrsAt  = 21 // int16 attributes, then the fields the checksum covers
	batchHeadLen  = 61 // base offset to the first record
)

// rawSet is a record set encoded into an arena's chunks: its bytes are
// pieces, in order (a record that does not fit in what is left of a
// chunk goes into the next). It is the reader of a raw produce request's
// protocol.RawRecordSet, read once.
type rawSet struct{ pieces [][]byte }

func (s *rawSet) Read(p []byte) (int, error) {
	n := 0
	for len(s.pieces) > 0 && n < len(p) {
		c := copy(p[n:], s.pieces[0])
		n += c
		if s.pieces[0] = s.pieces[0][c:]; len(s.pieces[0]) == 0 {
			s.pieces = s.pieces[1:]
		}
	}
	if n == 0 && len(p) > 0 {
		return 0, io.EOF
	}
	return n, nil
}

func (s *rawSet) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for len(s.pieces) > 0 {
		m, err := w.Write(s.pieces[0])
		n += int64(m)
		if err != nil {
			s.pieces[0] = s.pieces[0][m:]
			return n, err
		}
		s.pieces = s.pieces[1:]
	}
	return n, nil
}

// encodeBatch encodes the records idx of chunk into a as the record set
// of a Produce request: its size (int32), then one record batch. Records
// without a time get now (Unix milliseconds).
func (r *records) encodeBatch(a *arena, chunk []rec, idx []int32, now int64) *rawSet {
	set := &rawSet{}
	var last int // span of the piece being grown
	add := func(n int) []byte {
		p, span := a.grow(n)
		if k := len(set.pieces); k > 0 && span == last+len(set.pieces[k-1]) {
			// Right after the last piece, in the same chunk.
			set.pieces[k-1] = a.at(last, len(set.pieces[k-1])+n)
		} else {
			set.pieces = append(set.pieces, p)
			last = span
		}
		return p[:0]
	}
	h := add(4 + batchHeadLen)[:4+batchHeadLen]
	clear(h) // a chunk comes back from the free list as it was left
	var first, maxTime int64
	size := batchHeadLen
	for i, j := range idx {
		x := &chunk[j]
		t := x.ms
		if t == noTime {
			t = now
		}
		if i == 0 {
			first, maxTime = t, t
		}
		maxTime = max(maxTime, t)
		n := r.recordLen(x, t-first, int64(i))
		n += varintLen(n)
		if p := r.appendRecord(add(n), x, t-first, int64(i)); len(p) != n {
			panic("kafkaio: a record encoded is not of the length counted")
		}
		size += n
	}
	binary.BigEndian.PutUint32(h, uint32(size))
	b := h[4:] // the batch: base offset 0
	binary.BigEndian.PutUint32(b[batchLengthAt:], uint32(size-12))
	binary.BigEndian.PutUint32(b[12:], ^uint32(0)) // partition leader epoch: -1
	b[16] = 2                                      // magic
	// Attributes 0: no compression, create time, not transactional.
	binary.BigEndian.PutUint32(b[23:], uint32(len(idx)-1)) // last offset delta
	binary.BigEndian.PutUint64(b[27:], uint64(first))
	binary.BigEndian.PutUint64(b[35:], uint64(maxTime))
	binary.BigEndian.PutUint64(b[43:], ^uint64(0)) // producer ID: -1
	binary.BigEndian.PutUint16(b[51:], ^uint16(0)) // producer epoch: -1
	binary.BigEndian.PutUint32(b[53:], ^uint32(0)) // base sequence: -1
	binary.BigEndian.PutUint32(b[57:], uint32(len(idx)))
	crc := crc32.Checksum(set.pieces[0][4+batchAttrsAt:], castagnoli)
	for _, p := range set.pieces[1:] {
		crc = crc32.Update(crc, castagnoli, p)
	}
	binary.BigEndian.PutUint32(b[batchCRCAt:], crc)
	return set
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
