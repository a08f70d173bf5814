package store

import (
	"encoding/binary"
	"fmt"
)

// Creator state (format 3). The creator merger, which sits with the
// trending merger, keeps one record per creator and the creator lists of
// partitions not yet merged; each engine keeps the creator likes it has
// applied since it last closed a tick:
//
//	P<part> 'c' creator      a creator's state (opaque to the store, versioned by its first byte)
//	P<part> 'q' tick part chunk  a chunk of a partition's creator likes of a tick, not yet merged
//	P<part> 'y' chunk            a chunk of the partition's creator likes since its last closed tick
//
// Likes are split into chunks of bounded size, so that no record of the
// changelog or the partials topic grows with the traffic.
const (
	kindCreator       = 'c'
	kindCreatorReport = 'q'
	kindCreatorTally  = 'y'
)

// Creator returns a creator's stored state.
func (p *Partition) Creator(id string) ([]byte, bool, error) {
	return p.get(p.keyOf(kindCreator, id), nil)
}

// ScanCreators calls fn with every stored creator, by id.
func (p *Partition) ScanCreators(fn func(id string, value []byte) error) error {
	return p.scan(kindCreator, func(k, v []byte) error { return fn(string(k), v) })
}

// SetCreator writes a creator's state.
func (w *Writer) SetCreator(id string, value []byte) error {
	return w.set(w.keyOf(kindCreator, id), value, nil)
}

// ScanCreatorReports calls fn with every stored creator report chunk, by
// tick, partition and chunk.
func (p *Partition) ScanCreatorReports(fn func(tick int64, part, chunk int32, value []byte) error) error {
	return p.scan(kindCreatorReport, func(k, v []byte) error {
		if len(k) != 16 {
			return fmt.Errorf("creator report key: %w", errCorrupt)
		}
		return fn(int64(binary.BigEndian.Uint64(k)), int32(binary.BigEndian.Uint32(k[8:])), int32(binary.BigEndian.Uint32(k[12:])), v)
	})
}

// SetCreatorReport stores a chunk of a partition's creator likes of a
// tick until merged.
func (w *Writer) SetCreatorReport(tick int64, part, chunk int32, value []byte) error {
	w.key = append(w.key[:0], w.p.prefix[:]...)
	w.key = append(w.key, kindCreatorReport)
	w.key = binary.BigEndian.AppendUint64(w.key, uint64(tick))
	w.key = binary.BigEndian.AppendUint32(w.key, uint32(part))
	w.key = binary.BigEndian.AppendUint32(w.key, uint32(chunk))
	return w.set(w.key, value, nil)
}

// DeleteCreatorReportsThrough drops the stored creator reports of every
// tick up to and including tick: one range deletion.
func (w *Writer) DeleteCreatorReportsThrough(tick int64) error {
	lo := append(append([]byte{}, w.p.prefix[:]...), kindCreatorReport)
	hi := binary.BigEndian.AppendUint64(append([]byte{}, lo...), uint64(tick+1))
	return w.deleteRange(lo, hi, nil)
}

// ScanCreatorTally calls fn with each chunk of the partition's creator
// likes since its last closed tick.
func (p *Partition) ScanCreatorTally(fn func(value []byte) error) error {
	return p.scan(kindCreatorTally, func(_, v []byte) error { return fn(v) })
}

func (w *Writer) tallyKey(chunk int32) []byte {
	w.key = append(w.key[:0], w.p.prefix[:]...)
	w.key = append(w.key, kindCreatorTally)
	w.key = binary.BigEndian.AppendUint32(w.key, uint32(chunk))
	return w.key
}

// SetCreatorTally writes a chunk of the partition's creator likes since
// its last closed tick.
func (w *Writer) SetCreatorTally(chunk int32, value []byte) error {
	return w.set(w.tallyKey(chunk), value, nil)
}

// DeleteCreatorTally deletes a chunk of the partition's creator likes.
func (w *Writer) DeleteCreatorTally(chunk int32) error {
	return w.delete(w.tallyKey(chunk), nil)
}
