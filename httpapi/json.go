package httpapi

import (
	"math"
	"strconv"
	"unicode/utf8"

	"virality/processor"
)

// The JSON here is written by hand, byte for byte as processor/encode.go
// writes the trending records, so that the API and the topics agree.

// appendList appends a trending record: {"ts":..,"region":..,"videos":[..]}.
func appendList(b []byte, tick int64, l *processor.List) []byte {
	b = append(b, `{"ts":`...)
	b = strconv.AppendInt(b, tick, 10)
	b = append(b, `,"region":`...)
	b = appendString(b, l.Region)
	b = append(b, `,"videos":[`...)
	for i, r := range l.Videos {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"video_id":`...)
		b = appendString(b, r.Video)
		b = append(b, `,"score":`...)
		b = appendFloat(b, r.Score)
		b = append(b, '}')
	}
	return append(b, "]}"...)
}

// appendStrings appends a JSON array of strings.
func appendStrings(b []byte, ss []string) []byte {
	b = append(b, '[')
	for i, s := range ss {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendString(b, s)
	}
	return append(b, ']')
}

// appendError appends {"error":msg}.
func appendError(b []byte, msg string) []byte {
	b = append(b, `{"error":`...)
	b = appendString(b, msg)
	return append(b, '}')
}

// appendFloat writes f with 10 significant digits, as the records do.
func appendFloat(b []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) || f == 0 {
		return append(b, '0')
	}
	return strconv.AppendFloat(b, f, 'g', 10, 64)
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
