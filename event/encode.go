package event

import "unicode/utf8"

// AppendJSON appends the canonical JSON encoding of ev (fields in the order
// event_id, video_id, user_id, creator_id, action, ts, region; empty optional
// strings omitted; ts as RFC 3339 UTC with exactly 3 fractional digits, e.g.
// "2026-11-26T06:00:00.123Z"); strings escaped as JSON requires.
//
// For any event Decode returns, Decode of the output yields the same event.
// Invalid UTF-8, which Decode never returns, is written as U+FFFD so that
// the output is always valid JSON.
func AppendJSON(dst []byte, ev *Event) []byte {
	dst = append(dst, '{')
	if ev.EventID != "" {
		dst = append(dst, `"event_id":`...)
		dst = AppendString(dst, ev.EventID)
		dst = append(dst, ',')
	}
	dst = append(dst, `"video_id":`...)
	dst = AppendString(dst, ev.VideoID)
	dst = append(dst, `,"user_id":`...)
	dst = AppendString(dst, ev.UserID)
	if ev.CreatorID != "" {
		dst = append(dst, `,"creator_id":`...)
		dst = AppendString(dst, ev.CreatorID)
	}
	dst = append(dst, `,"action":`...)
	dst = AppendString(dst, ev.Action.String())
	dst = append(dst, `,"ts":"`...)
	dst = appendTimestamp(dst, ev.TS)
	dst = append(dst, '"')
	if ev.Region != "" {
		dst = append(dst, `,"region":`...)
		dst = AppendString(dst, ev.Region)
	}
	return append(dst, '}')
}

// safe holds the ASCII bytes written as they are inside a JSON string.
var safe = func() (t [utf8.RuneSelf]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// AppendString appends s as a JSON string: quotes, the escapes JSON needs,
// and U+FFFD for bytes that are not UTF-8. Runs of bytes that need no
// escape are copied in one append.
func AppendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if safe[c] {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
