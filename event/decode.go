package event

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// field is a known key. The string fields come first, in the order of their
// checks and of their bytes in the shared string of a decoded Event.
type field uint8

const (
	fieldEventID field = iota
	fieldVideoID
	fieldUserID
	fieldCreatorID
	fieldRegion
	fieldAction
	fieldTS
	numFields

	numStored    = fieldRegion + 1 // fields kept as strings in the Event
	fieldUnknown = numFields
)

var fieldNames = [numFields]string{"event_id", "video_id", "user_id", "creator_id", "region", "action", "ts"}

var fieldLimits = [numStored]int{MaxIDLen, MaxIDLen, MaxIDLen, MaxIDLen, MaxRegionLen}

// maxStored bounds the stored fields together, so that they fit in a buffer
// on the stack until the one allocation of a successful decode.
const maxStored = 4*MaxIDLen + MaxRegionLen

// kind is the JSON type of a value, with integers told apart from other
// numbers because only they are valid timestamps.
type kind uint8

const (
	kindAbsent kind = iota
	kindNull
	kindString
	kindInt    // a number without fraction or exponent
	kindNumber // a number with fraction or exponent
	kindBool
	kindObject
	kindArray
)

var kindNames = [...]string{
	kindAbsent: "absent",
	kindNull:   "null",
	kindString: "a string",
	kindInt:    "a number",
	kindNumber: "a number",
	kindBool:   "a boolean",
	kindObject: "an object",
	kindArray:  "an array",
}

// value is where the last value of a known field lies in the input.
type value struct {
	start, end int // the literal; for a string, the bytes between the quotes
	kind       kind
	escaped    bool // the string holds backslash escapes
}

// Decode parses one record value into ev (overwriting every field). recordTS
// is the Kafka record timestamp in ms (0 when there is none); it is used when
// the value has no "ts". On rejection it returns an *Error.
func Decode(data []byte, recordTS int64, ev *Event) error {
	if err := decode(data, recordTS, ev); err != nil {
		*ev = Event{}
		return err
	}
	return nil
}

// decode is Decode returning the concrete type, so that no path can return
// a nil *Error as a non-nil error.
func decode(data []byte, recordTS int64, ev *Event) *Error {
	var vals [numFields]value
	if err := scanObject(data, &vals); err != nil {
		return err
	}
	for f := range fieldAction + 1 {
		if k := vals[f].kind; k > kindString {
			return newError(ReasonBadField, fmt.Sprintf("%s is %s, want a string", fieldNames[f], kindNames[k]))
		}
	}

	// Unescape the stored fields into buf, each into a window of its limit.
	// A value that overflows its window is moved to the heap by append; it
	// is rejected as too long, so only bad records pay for that.
	var buf [maxStored]byte
	var ends [numStored]int
	n := 0
	for f := range numStored {
		v := &vals[f]
		if v.kind == kindString {
			limit := fieldLimits[f]
			raw := data[v.start:v.end]
			var s []byte
			switch {
			case v.escaped:
				s = unescape(buf[n:n:n+limit], raw)
			case len(raw) <= limit:
				s = buf[n : n+copy(buf[n:n+limit], raw)]
			default:
				s = raw
			}
			if len(s) > limit {
				return newError(ReasonTooLong, fmt.Sprintf("%s is %d bytes, more than %d", fieldNames[f], len(s), limit))
			}
			if !utf8.Valid(s) {
				return newError(ReasonInvalidUTF8, fieldNames[f]+" is not valid UTF-8")
			}
			n += len(s)
		}
		ends[f] = n
	}
	if ends[fieldVideoID] == ends[fieldEventID] {
		return missing(ReasonMissingVideo, fieldVideoID, vals[fieldVideoID].kind)
	}
	if ends[fieldUserID] == ends[fieldVideoID] {
		return missing(ReasonMissingUser, fieldUserID, vals[fieldUserID].kind)
	}
	action, err := decodeAction(data, &vals[fieldAction])
	if err != nil {
		return err
	}
	ts, err := decodeTS(data, &vals[fieldTS], recordTS)
	if err != nil {
		return err
	}

	ev.set(string(buf[:n]), &ends, action, ts)
	return nil
}

// set fills ev from s, the stored fields one after another (each ending
// at its ends): one string, allocated once, holds them all.
func (ev *Event) set(s string, ends *[numStored]int, action Action, ts int64) {
	ev.EventID = s[:ends[fieldEventID]]
	ev.VideoID = s[ends[fieldEventID]:ends[fieldVideoID]]
	ev.UserID = s[ends[fieldVideoID]:ends[fieldUserID]]
	ev.CreatorID = s[ends[fieldUserID]:ends[fieldCreatorID]]
	ev.Region = s[ends[fieldCreatorID]:ends[fieldRegion]]
	ev.Action = action
	ev.TS = ts
}

func decodeAction(data []byte, v *value) (Action, *Error) {
	if v.kind != kindString {
		return Like, nil // absent or null; other kinds were rejected as bad_field
	}
	raw := data[v.start:v.end]
	if v.escaped {
		var tmp [16]byte
		raw = unescape(tmp[:0], raw)
	}
	switch string(raw) {
	case "like":
		return Like, nil
	case "unlike":
		return Unlike, nil
	}
	return 0, newError(ReasonBadAction, "action "+quote(raw)+` is not "like" or "unlike"`)
}

func decodeTS(data []byte, v *value, recordTS int64) (int64, *Error) {
	raw := data[v.start:v.end]
	switch v.kind {
	case kindAbsent, kindNull:
		if recordTS <= 0 {
			return 0, newError(ReasonMissingTS, "no ts field and no record timestamp")
		}
		if recordTS >= maxTS {
			return 0, newError(ReasonBadTS, fmt.Sprintf("record timestamp %d is after year 9999", recordTS))
		}
		return recordTS, nil
	case kindInt:
		// The scanner has checked the grammar: an optional minus, then digits.
		neg := raw[0] == '-'
		digits := raw
		if neg {
			digits = raw[1:]
		}
		ms, _ := parseDigits(digits)
		if neg {
			ms = -ms
		}
		if ms <= 0 || ms >= maxTS {
			return 0, newError(ReasonBadTS, "ts "+string(raw)+" is out of range (years 1970 to 9999)")
		}
		return ms, nil
	case kindNumber:
		return 0, newError(ReasonBadTS, "ts "+quote(raw)+" is not an integer of epoch milliseconds")
	case kindString:
		if v.escaped {
			var tmp [64]byte
			raw = unescape(tmp[:0], raw)
		}
		ms, ok := parseTimestamp(raw)
		if !ok {
			return 0, newError(ReasonBadTS, "ts "+quote(raw)+" is neither RFC 3339 nor epoch milliseconds")
		}
		if ms <= 0 || ms >= maxTS {
			return 0, newError(ReasonBadTS, "ts "+quote(raw)+" is out of range (years 1970 to 9999)")
		}
		return ms, nil
	}
	return 0, newError(ReasonBadTS, "ts is "+kindNames[v.kind]+", want a string or number")
}

func missing(r Reason, f field, k kind) *Error {
	switch k {
	case kindAbsent, kindNull:
		return newError(r, fieldNames[f]+" is "+kindNames[k])
	}
	return newError(r, fieldNames[f]+" is empty")
}

func newError(r Reason, detail string) *Error {
	return &Error{Reason: r, Detail: detail}
}

// quote quotes b for an error detail, shortened so that details stay short
// whatever the input.
func quote(b []byte) string {
	const max = 40
	if len(b) > max {
		return strconv.Quote(string(b[:max])) + "..."
	}
	return strconv.Quote(string(b))
}
