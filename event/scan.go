package event

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/bits"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth is the deepest nesting accepted, the same as encoding/json's, so
// that both accept the same documents. Skipping recurses once per level.
const maxDepth = 10000

// plain holds the bytes that stand for themselves inside a JSON string:
// everything but the quote, the backslash and control characters. Bytes of
// 0x80 and above are plain; UTF-8 is checked only for the known fields.
var plain = func() (t [256]bool) {
	for c := 0x20; c < 256; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// hexValue maps a hex digit to its value and anything else to -1.
var hexValue = func() (t [256]int8) {
	for c := range t {
		switch {
		case '0' <= c && c <= '9':
			t[c] = int8(c - '0')
		case 'a' <= c && c <= 'f':
			t[c] = int8(c - 'a' + 10)
		case 'A' <= c && c <= 'F':
			t[c] = int8(c - 'A' + 10)
		default:
			t[c] = -1
		}
	}
	return t
}()

// scanObject checks that data is exactly one JSON object and records in vals
// the last value of each known field.
func scanObject(data []byte, vals *[numFields]value) *Error {
	i := skipSpace(data, 0)
	if i == len(data) {
		return newError(ReasonBadJSON, "empty input")
	}
	if data[i] != '{' {
		return newError(ReasonBadJSON, "value starts with "+describe(data[i])+", want an object")
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		i++
	} else {
		for {
			if i >= len(data) || data[i] != '"' {
				return syntaxError(data, i, "a string key")
			}
			end, escaped, err := scanString(data, i+1)
			if err != nil {
				return err
			}
			f := lookupField(data[i+1:end], escaped)
			i = skipSpace(data, end+1)
			if i >= len(data) || data[i] != ':' {
				return syntaxError(data, i, "':'")
			}
			i = skipSpace(data, i+1)
			if f == fieldUnknown {
				i, err = skipValue(data, i, 1)
			} else {
				i, err = scanValue(data, i, &vals[f])
			}
			if err != nil {
				return err
			}
			i = skipSpace(data, i)
			if i < len(data) && data[i] == ',' {
				i = skipSpace(data, i+1)
				continue
			}
			if i < len(data) && data[i] == '}' {
				i++
				break
			}
			return syntaxError(data, i, "',' or '}'")
		}
	}
	if i = skipSpace(data, i); i != len(data) {
		return newError(ReasonBadJSON, fmt.Sprintf("trailing data at offset %d", i))
	}
	return nil
}

// lookupField returns the field named by a key, whose bytes are those
// between its quotes.
func lookupField(key []byte, escaped bool) field {
	if escaped {
		// Every unescaped byte takes at most 6 escaped bytes ("\u0041"),
		// so a longer key cannot spell a field name, and a shorter one
		// unescapes within tmp without allocating.
		const longest = len("creator_id")
		if len(key) > 6*longest {
			return fieldUnknown
		}
		var tmp [6 * longest]byte
		key = unescape(tmp[:0], key)
	}
	switch string(key) {
	case "event_id":
		return fieldEventID
	case "video_id":
		return fieldVideoID
	case "user_id":
		return fieldUserID
	case "creator_id":
		return fieldCreatorID
	case "region":
		return fieldRegion
	case "action":
		return fieldAction
	case "ts":
		return fieldTS
	}
	return fieldUnknown
}

// scanValue scans the value of a known field starting at data[i] into v and
// returns the index just after it.
func scanValue(data []byte, i int, v *value) (int, *Error) {
	if i >= len(data) {
		return i, syntaxError(data, i, "a value")
	}
	switch c := data[i]; {
	case c == '"':
		end, escaped, err := scanString(data, i+1)
		if err != nil {
			return i, err
		}
		*v = value{start: i + 1, end: end, kind: kindString, escaped: escaped}
		return end + 1, nil
	case c == '-' || c-'0' <= 9:
		end, isInt, err := scanNumber(data, i)
		if err != nil {
			return i, err
		}
		*v = value{start: i, end: end, kind: kindNumber}
		if isInt {
			v.kind = kindInt
		}
		return end, nil
	case c == 'n':
		*v = value{kind: kindNull}
		return scanLiteral(data, i, "null")
	case c == 't':
		*v = value{kind: kindBool}
		return scanLiteral(data, i, "true")
	case c == 'f':
		*v = value{kind: kindBool}
		return scanLiteral(data, i, "false")
	case c == '{':
		*v = value{kind: kindObject}
		return skipValue(data, i, 1)
	case c == '[':
		*v = value{kind: kindArray}
		return skipValue(data, i, 1)
	}
	return i, syntaxError(data, i, "a value")
}

// skipValue validates the value starting at data[i], which is nested depth
// levels deep, and returns the index just after it.
func skipValue(data []byte, i, depth int) (int, *Error) {
	if i >= len(data) {
		return i, syntaxError(data, i, "a value")
	}
	switch c := data[i]; {
	case c == '"':
		end, _, err := scanString(data, i+1)
		return end + 1, err
	case c == '-' || c-'0' <= 9:
		end, _, err := scanNumber(data, i)
		return end, err
	case c == 'n':
		return scanLiteral(data, i, "null")
	case c == 't':
		return scanLiteral(data, i, "true")
	case c == 'f':
		return scanLiteral(data, i, "false")
	case c == '{':
		if depth >= maxDepth {
			return i, newError(ReasonBadJSON, fmt.Sprintf("nesting deeper than %d at offset %d", maxDepth, i))
		}
		i = skipSpace(data, i+1)
		if i < len(data) && data[i] == '}' {
			return i + 1, nil
		}
		for {
			if i >= len(data) || data[i] != '"' {
				return i, syntaxError(data, i, "a string key")
			}
			end, _, err := scanString(data, i+1)
			if err != nil {
				return i, err
			}
			i = skipSpace(data, end+1)
			if i >= len(data) || data[i] != ':' {
				return i, syntaxError(data, i, "':'")
			}
			if i, err = skipValue(data, skipSpace(data, i+1), depth+1); err != nil {
				return i, err
			}
			i = skipSpace(data, i)
			if i < len(data) && data[i] == ',' {
				i = skipSpace(data, i+1)
				continue
			}
			if i < len(data) && data[i] == '}' {
				return i + 1, nil
			}
			return i, syntaxError(data, i, "',' or '}'")
		}
	case c == '[':
		if depth >= maxDepth {
			return i, newError(ReasonBadJSON, fmt.Sprintf("nesting deeper than %d at offset %d", maxDepth, i))
		}
		i = skipSpace(data, i+1)
		if i < len(data) && data[i] == ']' {
			return i + 1, nil
		}
		for {
			var err *Error
			if i, err = skipValue(data, i, depth+1); err != nil {
				return i, err
			}
			i = skipSpace(data, i)
			if i < len(data) && data[i] == ',' {
				i = skipSpace(data, i+1)
				continue
			}
			if i < len(data) && data[i] == ']' {
				return i + 1, nil
			}
			return i, syntaxError(data, i, "',' or ']'")
		}
	}
	return i, syntaxError(data, i, "a value")
}

// scanString scans the string whose contents start at data[i] and returns
// the index of its closing quote and whether it holds escapes.
func scanString(data []byte, i int) (end int, escaped bool, err *Error) {
	for {
		if i = skipPlain(data, i); i >= len(data) {
			return i, escaped, newError(ReasonBadJSON, "unterminated string")
		}
		switch c := data[i]; c {
		case '"':
			return i, escaped, nil
		case '\\':
			escaped = true
			if i+1 >= len(data) {
				return i, escaped, syntaxError(data, i+1, "an escape")
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(data) || !isHex4(data[i+2:i+6]) {
					return i, escaped, newError(ReasonBadJSON, fmt.Sprintf("invalid \\u escape at offset %d", i))
				}
				i += 6
			default:
				return i, escaped, newError(ReasonBadJSON, fmt.Sprintf("invalid escape %s at offset %d", describe(data[i+1]), i))
			}
		default:
			return i, escaped, newError(ReasonBadJSON, fmt.Sprintf("control character 0x%02x in string at offset %d", c, i))
		}
	}
}

// skipPlain returns the index of the first byte from data[i] on that is not
// plain, or len(data). It looks at eight bytes at a time, which is most of
// the speed of the decoder.
func skipPlain(data []byte, i int) int {
	for i+8 <= len(data) {
		if m := notPlain(binary.LittleEndian.Uint64(data[i:])); m != 0 {
			return i + bits.TrailingZeros64(m)>>3
		}
		i += 8
	}
	for i < len(data) && plain[data[i]] {
		i++
	}
	return i
}

// notPlain sets the high bit of the bytes of w that are a quote, a backslash
// or a control character. Each test (x - 0x01) &^ x sets the high bit of
// the bytes that are zero in x; a borrow can also set bits above the first
// hit, never below it, so the lowest bit set is exact.
func notPlain(w uint64) uint64 {
	const ones = 0x0101010101010101
	q := w ^ (ones * '"')
	b := w ^ (ones * '\\')
	return ((q-ones)&^q | (b-ones)&^b | (w-ones*0x20)&^w) & (ones * 0x80)
}

// scanNumber scans the number starting at data[i] and returns the index just
// after it and whether it is an integer (no fraction, no exponent).
func scanNumber(data []byte, i int) (end int, isInt bool, err *Error) {
	if data[i] == '-' {
		i++
	}
	switch {
	case i < len(data) && data[i] == '0':
		i++
	case i < len(data) && data[i]-'1' < 9:
		i = skipDigits(data, i+1)
	default:
		return i, false, syntaxError(data, i, "a digit")
	}
	isInt = true
	if i < len(data) && data[i] == '.' {
		isInt = false
		if i++; i >= len(data) || data[i]-'0' > 9 {
			return i, false, syntaxError(data, i, "a digit")
		}
		i = skipDigits(data, i+1)
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		isInt = false
		if i++; i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i >= len(data) || data[i]-'0' > 9 {
			return i, false, syntaxError(data, i, "a digit")
		}
		i = skipDigits(data, i+1)
	}
	return i, isInt, nil
}

func skipDigits(data []byte, i int) int {
	for i < len(data) && data[i]-'0' <= 9 {
		i++
	}
	return i
}

// scanLiteral checks that lit (null, true or false) starts at data[i].
func scanLiteral(data []byte, i int, lit string) (int, *Error) {
	for j := 0; j < len(lit); j++ {
		if i+j >= len(data) || data[i+j] != lit[j] {
			return i, syntaxError(data, i+j, lit)
		}
	}
	return i + len(lit), nil
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t') {
		i++
	}
	return i
}

func isHex4(b []byte) bool {
	return hexValue[b[0]]|hexValue[b[1]]|hexValue[b[2]]|hexValue[b[3]] >= 0
}

func hex4(b []byte) rune {
	return rune(hexValue[b[0]])<<12 | rune(hexValue[b[1]])<<8 | rune(hexValue[b[2]])<<4 | rune(hexValue[b[3]])
}

// unescape appends the contents of a scanned JSON string to dst, decoding
// its escapes. Like encoding/json, it turns a surrogate that is not half of
// a pair into U+FFFD. Raw bytes are copied as they are, valid UTF-8 or not.
func unescape(dst, s []byte) []byte {
	for {
		i := bytes.IndexByte(s, '\\')
		if i < 0 {
			return append(dst, s...)
		}
		dst = append(dst, s[:i]...)
		c := s[i+1]
		s = s[i+2:]
		switch c {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r := hex4(s)
			s = s[4:]
			if utf16.IsSurrogate(r) {
				pair := utf8.RuneError
				if len(s) >= 6 && s[0] == '\\' && s[1] == 'u' {
					pair = utf16.DecodeRune(r, hex4(s[2:]))
				}
				if pair == utf8.RuneError {
					r = utf8.RuneError
				} else {
					r = pair
					s = s[6:]
				}
			}
			dst = utf8.AppendRune(dst, r)
		default: // '"', '\\' or '/'
			dst = append(dst, c)
		}
	}
}

// syntaxError describes what was found at data[i] where want was expected.
func syntaxError(data []byte, i int, want string) *Error {
	if i >= len(data) {
		return newError(ReasonBadJSON, "unexpected end of input, want "+want)
	}
	return newError(ReasonBadJSON, fmt.Sprintf("unexpected %s at offset %d, want %s", describe(data[i]), i, want))
}

func describe(c byte) string {
	if ' ' <= c && c < 0x7f {
		return fmt.Sprintf("'%c'", c)
	}
	return fmt.Sprintf("byte 0x%02x", c)
}
