package processor

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
)

// The partials topic carries each partition's trending lists to the one
// instance that merges them (the live service: the holder of partition
// 0, chosen by the consumer group). A record is a report (a partition's
// lists at a tick it closed) or a progress (the partition's next tick).
// Key: the partition. Value: a format byte, the kind, the partition, the
// tick, and for a report the lists.
const (
	partialsVersion  = 1
	partialReport    = 'r'
	partialProgress  = 'p'
	mergePartition   = 0
	errPartialFormat = "processor: corrupt trending partial"
)

func appendPartial(b []byte, kind byte, part int32, tick int64, lists []List) []byte {
	b = append(b, partialsVersion, kind)
	b = binary.AppendUvarint(b, uint64(part))
	b = binary.AppendVarint(b, tick)
	if kind == partialReport {
		b = encodeLists(b, lists)
	}
	return b
}

// decodePartial decodes a record of the partials topic; a report's lists
// are checked, not decoded (encodeLists, a slice of b).
func decodePartial(b []byte) (kind byte, part int32, tick int64, lists []byte, err error) {
	if len(b) < 2 || b[0] != partialsVersion {
		return 0, 0, 0, nil, errors.New(errPartialFormat)
	}
	kind, b = b[1], b[2:]
	p, n := binary.Uvarint(b)
	if n <= 0 {
		return 0, 0, 0, nil, errors.New(errPartialFormat)
	}
	b = b[n:]
	tick, n = binary.Varint(b)
	if n <= 0 {
		return 0, 0, 0, nil, errors.New(errPartialFormat)
	}
	b = b[n:]
	switch kind {
	case partialReport:
		lists, err = b, checkLists(b)
	case partialProgress:
		if len(b) != 0 {
			err = errors.New(errPartialFormat)
		}
	default:
		err = errors.New(errPartialFormat)
	}
	return kind, int32(p), tick, lists, err
}

// sendPartials writes what a partition's outbox holds for the merge to
// the partials topic.
func (c *Coordinator) sendPartials(id int32, e *Engine) error {
	key := strconv.AppendInt(nil, int64(id), 10)
	for _, r := range e.box.partials {
		if err := c.out.Partials.Write(&Message{Key: key, Value: e.box.bytes[r.v0:r.v1:r.v1], Time: r.time}); err != nil {
			return err
		}
	}
	e.box.partials = e.box.partials[:0]
	if e.box.next != e.sentNext {
		e.sentNext = e.box.next
		c.rbuf = appendPartial(c.rbuf[:0], partialProgress, id, e.box.next, nil)
		if err := c.out.Partials.Write(&Message{Key: key, Value: c.rbuf}); err != nil {
			return err
		}
	}
	return nil
}

// Merging reports whether this coordinator merges the partials of all
// partitions (it holds partition 0), and from which offset of the
// partials topic it reads them: that of the first report it had read and
// not merged when its state was committed, since reports are not stored.
func (c *Coordinator) Merging() (offset int64, ok bool) {
	if c.out.Partials == nil || c.merger == nil || !c.merger.remote {
		return 0, false
	}
	return c.merger.reread, true
}

// openMerger makes this coordinator the merger, on the state kept with
// partition 0 (so that it follows partition 0 through the changelog).
func (c *Coordinator) openMerger(e *Engine) error {
	m, err := newMerger(c.cfg.TopK, e.meta.Merger, c.writeSnapshot)
	if err != nil {
		return fmt.Errorf("load trending merger: %w", err)
	}
	m.remote = true
	m.latest = c.latest
	m.written = c.cfg.writtenTick
	for q := range int32(c.topo.Partitions) {
		if _, ok := m.next[q]; !ok {
			m.next[q] = 0
		}
	}
	if err := e.part.ScanReports(m.load); err != nil {
		return fmt.Errorf("load trending reports: %w", err)
	}
	if err := c.openCreators(m, c.db.Partition(mergePartition)); err != nil {
		return err
	}
	c.merger = m
	return m.pipeCreators(c.pipeCreators)
}

// TakePartials feeds the merger a batch of the partials topic.
func (c *Coordinator) TakePartials(_ context.Context, b *Batch) error {
	m := c.merger
	if m == nil || !m.remote {
		return errors.New("processor: partials taken by a coordinator that does not merge")
	}
	for i := range b.Recs {
		rec := &b.Recs[i]
		if rec.Offset < m.offset {
			// Read before the restart: only the reports are taken
			// again (those merged since are dropped); the rest is
			// in the state.
			if rec.Offset >= m.reread && !isCreatorPartial(rec.Value) {
				if kind, part, tick, lists, err := decodePartial(rec.Value); err == nil && kind == partialReport {
					m.reportEncoded(part, tick, lists, rec.Offset)
				}
			}
			continue
		}
		m.offset = rec.Offset + 1
		m.reread = m.offset
		if isCreatorPartial(rec.Value) {
			if err := m.takeCreatorPartial(rec.Value, rec.Offset); err != nil {
				return fmt.Errorf("creator partial at offset %d: %w", rec.Offset, err)
			}
			continue
		}
		kind, part, tick, lists, err := decodePartial(rec.Value)
		if err != nil {
			return fmt.Errorf("trending partial at offset %d: %w", rec.Offset, err)
		}
		if kind == partialReport {
			m.reportEncoded(part, tick, lists, rec.Offset)
			continue
		}
		if err := m.progress(part, tick); err != nil {
			return err
		}
	}
	return m.kickCreators()
}
