package event

import (
	"encoding/binary"
	"errors"
	"fmt"
	"unicode/utf8"
)

// The binary encoding of an event is what the internal topics carry
// between the stages of one job: the event as Decode returned it, already
// checked, so that the next stage reads it back without parsing JSON. It
// is:
//
//	action  1 byte (0 like, 1 unlike)
//	ts      varint, milliseconds since the Unix epoch
//	lengths 5 uvarints: event_id, video_id, user_id, creator_id, region
//	strings their bytes, in that order, one after another
//
// It has no version of its own: the record that carries it says which
// encoding its value has (processor's HeaderForward).

// ErrBinary is the error of DecodeBinary for bytes that are not an event
// AppendBinary wrote.
var ErrBinary = errors.New("event: corrupt binary event")

// AppendBinary appends the binary encoding of ev.
func AppendBinary(dst []byte, ev *Event) []byte {
	dst = append(dst, byte(ev.Action))
	dst = binary.AppendVarint(dst, ev.TS)
	for _, s := range [...]string{ev.EventID, ev.VideoID, ev.UserID, ev.CreatorID, ev.Region} {
		dst = binary.AppendUvarint(dst, uint64(len(s)))
	}
	dst = append(dst, ev.EventID...)
	dst = append(dst, ev.VideoID...)
	dst = append(dst, ev.UserID...)
	dst = append(dst, ev.CreatorID...)
	return append(dst, ev.Region...)
}

// DecodeBinary reads an event that AppendBinary wrote into ev (overwriting
// every field). It checks what Decode checks of the fields, so that a
// corrupt record cannot pass for an event Decode would have refused; on
// error ev is zero and the error wraps ErrBinary.
func DecodeBinary(data []byte, ev *Event) error {
	if err := decodeBinary(data, ev); err != nil {
		*ev = Event{}
		return fmt.Errorf("%w: %s", ErrBinary, err)
	}
	return nil
}

func decodeBinary(data []byte, ev *Event) error {
	if len(data) == 0 {
		return errors.New("empty")
	}
	action := Action(data[0])
	if action != Like && action != Unlike {
		return fmt.Errorf("action %d", data[0])
	}
	ts, n := binary.Varint(data[1:])
	if n <= 0 || ts <= 0 || ts >= maxTS {
		return errors.New("bad ts")
	}
	b := data[1+n:]
	var ends [numStored]int // each string's end in the strings' bytes
	end := 0
	for f := range numStored {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(fieldLimits[f]) {
			return fmt.Errorf("bad length of %s", fieldNames[f])
		}
		b = b[n:]
		end += int(l)
		ends[f] = end
	}
	if end != len(b) {
		return fmt.Errorf("%d bytes of strings, %d left", end, len(b))
	}
	if ends[fieldVideoID] == ends[fieldEventID] || ends[fieldUserID] == ends[fieldVideoID] {
		return errors.New("no video_id or user_id")
	}
	start := 0
	for f := range numStored {
		if !utf8.Valid(b[start:ends[f]]) {
			return fmt.Errorf("%s is not UTF-8", fieldNames[f])
		}
		start = ends[f]
	}
	ev.set(string(b), &ends, action, ts)
	return nil
}
