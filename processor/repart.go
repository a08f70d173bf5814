package processor

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/viralityhq/virality/event"
)

// HeaderForward is the header of a record of the internal topics: the
// partition it is for, the source partition and offset it came from (on
// the by-video topic: the account stage and its count of events sent), the
// source's largest event time then, a like's account weight and
// lockstep keys (by-video topic), and whether it is only a progress
// marker. Its first byte is the format version, which also says how the
// record's value holds its event.
const HeaderForward = "virality-forward"

// forwardVersion 2: the account weight. 3: the lockstep keys. 4: each
// key's popularity. 5: the value is the event in event.AppendBinary's
// encoding, not JSON (the by-user topic carried the input record's own
// bytes); a record of version 4 is still read, so that an instance of
// this version takes over topics an older one wrote.
const (
	forwardVersion     = 5
	forwardVersionJSON = 4
)

const (
	forwardMarker = 1 << iota // no event: progress only
	forwardIdle               // the source is idle
	forwardReport             // an account stage's report of its rates (rates.go)
	forwardWake               // the source was idle and has records again
)

// forward is a decoded HeaderForward. recTime is the source record's own
// time, from which an event without ts takes its time: the repartition
// topic stamps records with their append time.
type forward struct {
	part, src            int32
	off, srcMax, recTime int64
	weight               int64
	keys                 lockKeys
	marker, idle, report bool
	wake                 bool
	// jsonValue: the value is the event as JSON (version 4), else in
	// event.AppendBinary's encoding.
	jsonValue bool
}

// decodeEvent reads the event of a forwarded record's value into ev.
func (f *forward) decodeEvent(value []byte, ev *event.Event) error {
	if f.jsonValue {
		return event.Decode(value, f.recTime, ev)
	}
	return event.DecodeBinary(value, ev)
}

func appendForward(b []byte, f *forward) []byte {
	b = append(b, forwardVersion)
	b = binary.AppendUvarint(b, uint64(f.part))
	b = binary.AppendUvarint(b, uint64(f.src))
	b = binary.AppendVarint(b, f.off)
	b = binary.AppendVarint(b, f.srcMax)
	b = binary.AppendVarint(b, f.recTime)
	b = binary.AppendVarint(b, f.weight)
	b = appendKeys(b, &f.keys)
	var flags byte
	if f.marker {
		flags |= forwardMarker
	}
	if f.idle {
		flags |= forwardIdle
	}
	if f.report {
		flags |= forwardReport
	}
	if f.wake {
		flags |= forwardWake
	}
	return append(b, flags)
}

var errForward = errors.New("processor: corrupt repartition header")

func decodeForward(b []byte) (forward, error) {
	var f forward
	if len(b) == 0 {
		return f, errForward
	}
	if b[0] != forwardVersion && b[0] != forwardVersionJSON {
		return f, fmt.Errorf("%w: version %d, this binary reads %d and %d", errForward, b[0], forwardVersionJSON, forwardVersion)
	}
	f.jsonValue = b[0] == forwardVersionJSON
	b = b[1:]
	u := func() uint64 {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			b = nil
			return 0
		}
		b = b[n:]
		return v
	}
	s := func() int64 {
		v, n := binary.Varint(b)
		if n <= 0 {
			b = nil
			return 0
		}
		b = b[n:]
		return v
	}
	f.part, f.src = int32(u()), int32(u())
	f.off, f.srcMax, f.recTime, f.weight = s(), s(), s(), s()
	var ok bool
	if b, ok = readKeys(b, &f.keys); !ok || len(b) != 1 {
		return f, errForward
	}
	f.marker, f.idle, f.report = b[0]&forwardMarker != 0, b[0]&forwardIdle != 0, b[0]&forwardReport != 0
	f.wake = b[0]&forwardWake != 0
	return f, nil
}

// ForwardPartition reads the partition a repartition record is for from
// its HeaderForward value: the repartition sink's balancer.
func ForwardPartition(header []byte) (int32, bool) {
	f, err := decodeForward(header)
	return f.part, err == nil
}

func parseForward(rec *Record) (forward, error) {
	for _, h := range rec.Headers {
		if h.Key == HeaderForward {
			return decodeForward(h.Value)
		}
	}
	return forward{}, errors.New("processor: repartitioned record without its header")
}

// forward sends an event (value: its record's bytes) or a progress
// marker (value nil) to partition part of an internal topic (out: the
// by-user or the repartition output), with the source record's time; an
// event is keyed by its user on the by-user topic, by its video on the
// other.
func (c *Coordinator) forward(out Sink, part int32, value []byte, recTime int64, r *routed, idle bool) error {
	f := forward{part: part, src: r.src, off: r.off, srcMax: r.srcMax, recTime: recTime, weight: r.weight, keys: r.keys, marker: value == nil, idle: idle, wake: value == nil && r.wake}
	c.rbuf = appendForward(c.rbuf[:0], &f)
	c.hdr[0] = Header{Key: HeaderForward, Value: c.rbuf}
	m := &c.fwd
	*m = Message{Value: value, Headers: c.hdr[:1], Time: r.srcMax}
	if value != nil {
		id := r.ev.VideoID
		if out == c.out.ByUser {
			id = r.ev.UserID
		}
		c.key = append(c.key[:0], id...)
		m.Key = c.key
		m.Time = r.ev.TS
	}
	if err := out.Write(m); err != nil {
		return err
	}
	c.countForward(out == c.out.ByUser, part)
	return nil
}

// forwardKind indexes Coordinator.forwarded: 0 the by-user topic, 1 the
// repartition topic.
func forwardKind(byUser bool) int {
	if byUser {
		return 0
	}
	return 1
}

// countForward counts a record written to partition part of the by-user
// or the repartition topic.
func (c *Coordinator) countForward(byUser bool, part int32) {
	if f := c.forwarded[forwardKind(byUser)]; int(part) < len(f) {
		f[part].Add(1)
	}
}

// Forwarded returns how many records the coordinator has written to
// partition part of the by-user topic (byUser) or of the repartition
// topic since it was made. Any goroutine may call it. A driver pacing on
// the internal topics' backlog adds what was written after a fetch to the
// end that fetch saw: while the fetched batch waits behind others, the
// coordinator may write thousands.
func (c *Coordinator) Forwarded(byUser bool, part int32) int64 {
	if f := c.forwarded[forwardKind(byUser)]; int(part) < len(f) {
		return f[part].Load()
	}
	return 0
}
