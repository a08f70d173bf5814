package kafkaio

import (
	"encoding/binary"
	"hash/crc32"
)

// Record batches. A sink encodes each partition's share of a Produce
// request itself, as one record batch (magic 2, uncompressed), straight
// from its buffered records into one array, and sends it with kafka-go's
// raw produce request (protocol/rawproduce). kafka-go's own encoder
// (protocol.RecordSet) takes each record through a protocol.Record of
// readers and writes it a field, often a byte, at a time into its paged
// buffer, then reads the batch back for its checksum: 5% of a catch-up's
// CPU, for five to six records produced a like (bench/RESULTS.md). The
// bytes are the same as kafka-go's (TestAppendBatchAsKafkaGo).

// castagnoli is the CRC-32C table of record batch checksums.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Offsets in a record batch, from its start (its base offset).
const (
	batchLengthAt = 8  // int32: the bytes that follow it
	batchCRCAt    = 17 // uint32: CRC-32C of the bytes from batchAttrsAt
	batchAttrsAt  = 21 // int16 attributes, then the fields the checksum covers
	batchHeadLen  = 61 // base offset to the first record
)

// appendBatch appends the records idx of chunk to dst as the record set
// of a Produce request: its size (int32), then one record batch. Records
// without a time get now (Unix milliseconds).
func (r *records) appendBatch(dst []byte, chunk []rec, idx []int32, now int64) []byte {
	start := len(dst)
	dst = append(dst, make([]byte, 4+batchHeadLen)...)
	b := start + 4 // the batch
	var first, maxTime int64
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
		dst = r.appendRecord(dst, x, t-first, int64(i))
	}
	h := dst[b : b+batchHeadLen]
	// Base offset 0, then the length.
	binary.BigEndian.PutUint32(h[batchLengthAt:], uint32(len(dst)-b-12))
	binary.BigEndian.PutUint32(h[12:], ^uint32(0)) // partition leader epoch: -1
	h[16] = 2                                      // magic
	// Attributes 0: no compression, create time, not transactional.
	binary.BigEndian.PutUint32(h[23:], uint32(len(idx)-1)) // last offset delta
	binary.BigEndian.PutUint64(h[27:], uint64(first))
	binary.BigEndian.PutUint64(h[35:], uint64(maxTime))
	binary.BigEndian.PutUint64(h[43:], ^uint64(0)) // producer ID: -1
	binary.BigEndian.PutUint16(h[51:], ^uint16(0)) // producer epoch: -1
	binary.BigEndian.PutUint32(h[53:], ^uint32(0)) // base sequence: -1
	binary.BigEndian.PutUint32(h[57:], uint32(len(idx)))
	binary.BigEndian.PutUint32(h[batchCRCAt:], crc32.Checksum(dst[b+batchAttrsAt:], castagnoli))
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-b))
	return dst
}

// appendRecord appends x as a record of a batch, at tsDelta milliseconds
// after the batch's first and offsetDelta records after it.
func (r *records) appendRecord(dst []byte, x *rec, tsDelta, offsetDelta int64) []byte {
	hs := r.hdrs[x.h0 : x.h0+x.nh]
	n := 1 + varintLen(int(tsDelta)) + varintLen(int(offsetDelta)) +
		varintLen(int(x.kn)) + max(int(x.kn), 0) + varintLen(int(x.vn)) + max(int(x.vn), 0) +
		varintLen(len(hs))
	for _, h := range hs {
		k := len(r.keys[h.key])
		n += varintLen(k) + k + varintLen(int(h.n)) + max(int(h.n), 0)
	}
	dst = binary.AppendVarint(dst, int64(n))
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
