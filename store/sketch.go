package store

import (
	"encoding/binary"
	"fmt"
)

// Key sketches (format 9). An account stage counts the likes it weighs by
// lockstep key in a sketch per bucket of event time, and sums every
// stage's once they report them; each is one record, opaque to the store
// and versioned by its first byte:
//
//	P<part> 's' 0 bucket  the stage's own sketch of a bucket it has not reported
//	P<part> 's' 1 bucket  every stage's sketches of a bucket, summed
const kindSketch = 's'

func (w *Writer) sketchKey(global bool, bucket int64) []byte {
	w.key = append(w.key[:0], w.p.prefix[:]...)
	w.key = append(w.key, kindSketch)
	if global {
		w.key = append(w.key, 1)
	} else {
		w.key = append(w.key, 0)
	}
	w.key = binary.BigEndian.AppendUint64(w.key, uint64(bucket))
	return w.key
}

// SetKeySketch writes a key sketch.
func (w *Writer) SetKeySketch(global bool, bucket int64, value []byte) error {
	return w.set(w.sketchKey(global, bucket), value, nil)
}

// DeleteKeySketch deletes a key sketch.
func (w *Writer) DeleteKeySketch(global bool, bucket int64) error {
	return w.delete(w.sketchKey(global, bucket), nil)
}

// ScanKeySketches calls fn with every stored key sketch.
func (p *Partition) ScanKeySketches(fn func(global bool, bucket int64, value []byte) error) error {
	return p.scan(kindSketch, func(k, v []byte) error {
		if len(k) != 9 || k[0] > 1 {
			return fmt.Errorf("key sketch key: %w", errCorrupt)
		}
		return fn(k[0] == 1, int64(binary.BigEndian.Uint64(k[1:])), v)
	})
}
