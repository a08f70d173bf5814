package store

import "encoding/binary"

// AppendPacked appends v, as it is in memory, in a compact form that
// UnpackVideo reads back: its record as stored, all its like times (a
// bucketed video's too, which the store keeps under keys of their own),
// and what v tracks of its keys in the store. A cache keeps videos it lets
// go in this form, at a few bytes a like time against the 16 of an
// Entry, so that taking one back costs no read of the store. Only a video
// written since its last change (clean) may be packed: what it tracks of
// the store must be true of the store.
//
// The form lives in memory only, never on disk, so it has no version. Its
// first byte says which of two it is: most videos have never had their
// like times under keys of their own, and are packed as their record
// alone (packedPlain), 22 bytes less than with what v tracks of the store
// (packedTracked), which is then as for a video never bucketed.
func (v *Video) AppendPacked(b []byte) []byte {
	if v.plain() {
		if v.writtenOK {
			return append(append(b, packedPlain), v.written...)
		}
		return v.marshal(append(b, packedPlain))
	}
	b = append(b, packedTracked)
	start := len(b)
	b = append(b, 0, 0, 0, 0) // the record's length, set below
	b = v.marshal(b)
	binary.LittleEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	if v.bucketed {
		b = appendEntryList(b, v.Entries, v.Clock)
		b = v.appendSealed(b)
	}
	b = binary.AppendVarint(b, v.dirtyFrom)
	b = binary.AppendVarint(b, v.bucketsLo)
	b = binary.AppendVarint(b, v.bucketsHi)
	for _, w := range v.stored {
		b = binary.AppendUvarint(b, w)
	}
	b = binary.AppendUvarint(b, uint64(len(v.many)))
	for _, m := range v.many {
		b = binary.AppendVarint(b, m.bucket)
		b = binary.AppendVarint(b, int64(m.parts))
	}
	return b
}

// The forms of a packed video (its first byte).
const (
	packedPlain   = 1
	packedTracked = 2
)

// plain reports whether v is packed as its record alone: it is not
// bucketed, is clean, and tracks no keys of like times in the store, as a
// video read back from a record of inline like times (unmarshal).
func (v *Video) plain() bool {
	return !v.bucketed && v.sealed == nil && v.dirtyFrom == noneDirty && v.bucketsLo == 0 && v.bucketsHi == -1 &&
		v.stored == [storedWords]uint64{} && len(v.many) == 0
}

// UnpackVideo reads a video that AppendPacked wrote.
func UnpackVideo(id string, b []byte) (*Video, error) {
	v := new(Video) // Unpack resets it
	if err := v.Unpack(id, b); err != nil {
		return nil, err
	}
	return v, nil
}

// Unpack reads into v a video that AppendPacked wrote, reusing the arrays
// v holds (see Reset).
func (v *Video) Unpack(id string, b []byte) error {
	v.Reset(id)
	if len(b) < 1 {
		return errCorrupt
	}
	form := b[0]
	b = b[1:]
	switch {
	case form == packedPlain:
		return v.unmarshal(b)
	case form != packedTracked || len(b) < 4 || uint64(binary.LittleEndian.Uint32(b)) > uint64(len(b)-4):
		return errCorrupt
	}
	n := int(binary.LittleEndian.Uint32(b))
	if err := v.unmarshal(b[4 : 4+n]); err != nil {
		return err
	}
	r := reader{b: b[4+n:]}
	if v.bucketed {
		var err error
		if v.Entries, err = r.entryList(v.Entries, v.Clock); err != nil {
			return err
		}
		r.sealed(v)
	}
	v.dirtyFrom = r.varint()
	v.bucketsLo = r.varint()
	v.bucketsHi = r.varint()
	for i := range v.stored {
		v.stored[i] = r.uvarint()
	}
	if m := r.uvarint(); m > uint64(len(r.b)) {
		r.fail()
	} else if m > 0 {
		v.many = make([]bucketParts, m)
		for i := range v.many {
			v.many[i] = bucketParts{bucket: r.varint(), parts: int32(r.varint())}
		}
	}
	return r.done()
}

// appendSealed appends v's sealed buckets, as they are.
func (v *Video) appendSealed(b []byte) []byte {
	if v.sealed == nil {
		return binary.AppendUvarint(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(len(v.sealed.buckets)))
	for _, sb := range v.sealed.buckets {
		b = binary.AppendVarint(b, sb.bucket)
		b = binary.AppendUvarint(b, uint64(sb.n))
		b = binary.AppendUvarint(b, uint64(len(sb.data)))
		b = append(b, sb.data...)
	}
	return b
}

// sealed reads the sealed buckets appendSealed wrote into v, their data
// in one allocation of their own.
func (r *reader) sealed(v *Video) {
	n := r.uvarint()
	if n == 0 || r.err != nil {
		return
	}
	if n > uint64(len(r.b)) {
		r.fail()
		return
	}
	s := &sealedTimes{buckets: make([]sealedBucket, n)}
	for i := range s.buckets {
		s.buckets[i] = sealedBucket{bucket: r.varint(), n: int32(r.uvarint())}
		size := r.uvarint()
		if r.err != nil || size > uint64(len(r.b)) {
			r.fail()
			return
		}
		s.buckets[i].data = r.b[:size:size] // copied below
		s.bytes += int64(size)
		s.n += int(s.buckets[i].n)
		r.b = r.b[size:]
	}
	data := make([]byte, 0, s.bytes)
	for i := range s.buckets {
		b := &s.buckets[i]
		start := len(data)
		data = append(data, b.data...)
		b.data = data[start:len(data):len(data)]
	}
	v.sealed = s
}
