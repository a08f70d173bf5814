package event

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzDecode checks Decode against reference, a slow decoder built on
// encoding/json and time.Parse, and checks that what Decode accepts
// survives AppendJSON.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		typical,
		`{"video_id":"v","user_id":"u","ts":1795672800123}`,
		`{"video_id":"v","user_id":"u","ts":"2026-11-26T08:00:00.5+02:00","action":"unlike"}`,
		`{"video_id":"\ud83d\ude00\ud800","user_id":"\u0075","x":[{"y":null},1e5,true]}`,
		`{"video_id":"v","user_id":"u","video_id":null,"ts":"1795672800123"}`,
		"{\"video_id\":\"\xff\",\"user_id\":\"u\"}",
		`{"video_id":"v","user_id":"u","ts":1.5}`,
		`{"video_id":"v","user_id":"u"} {}`,
		`[1,2,3]`,
	} {
		f.Add([]byte(s), int64(0))
	}
	f.Add([]byte(`{"video_id":"v","user_id":"u"}`), int64(1795672800123))
	f.Fuzz(func(t *testing.T, data []byte, recordTS int64) {
		var ev Event
		err := Decode(data, recordTS, &ev)
		want, wantReason := reference(data, recordTS)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Decode(%q) = %v, not an *Error", data, err)
			}
			if e.Reason != wantReason {
				t.Fatalf("Decode(%q): %v, want reason %q (reference %+v)", data, err, wantReason, want)
			}
			if ev != (Event{}) {
				t.Fatalf("Decode(%q) failed but left %+v", data, ev)
			}
			return
		}
		if wantReason != "" {
			t.Fatalf("Decode(%q) = %+v, want reason %q", data, ev, wantReason)
		}
		if ev != want {
			t.Fatalf("Decode(%q):\n got %+v\nwant %+v", data, ev, want)
		}

		out := AppendJSON(nil, &ev)
		if !json.Valid(out) {
			t.Fatalf("AppendJSON(%+v) = %s: invalid JSON", ev, out)
		}
		var back Event
		if err := Decode(out, 0, &back); err != nil || back != ev {
			t.Fatalf("Decode(AppendJSON(%+v) = %s) = %+v, %v", ev, out, back, err)
		}
		bin := AppendBinary(nil, &ev)
		back = Event{}
		if err := DecodeBinary(bin, &back); err != nil || back != ev {
			t.Fatalf("DecodeBinary(AppendBinary(%+v) = %x) = %+v, %v", ev, bin, back, err)
		}
	})
}

// FuzzDecodeBinary: DecodeBinary accepts only events that Decode could
// have returned (the same event comes back through JSON), and what it
// accepts survives AppendBinary.
func FuzzDecodeBinary(f *testing.F) {
	var ev Event
	if err := Decode([]byte(typical), 0, &ev); err != nil {
		f.Fatal(err)
	}
	f.Add(AppendBinary(nil, &ev))
	f.Add(AppendBinary(nil, &Event{VideoID: "\u00e9", UserID: "u", Action: Unlike, TS: 1}))
	f.Add([]byte{0, 2, 0, 1, 1, 0, 0, 'v', 'u'})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var ev Event
		if err := DecodeBinary(data, &ev); err != nil {
			if !errors.Is(err, ErrBinary) || ev != (Event{}) {
				t.Fatalf("DecodeBinary(%x) = %+v, %v", data, ev, err)
			}
			return
		}
		var back Event
		if err := Decode(AppendJSON(nil, &ev), 0, &back); err != nil || back != ev {
			t.Fatalf("DecodeBinary(%x) = %+v, which Decode gives back as %+v, %v", data, ev, back, err)
		}
		back = Event{}
		if err := DecodeBinary(AppendBinary(nil, &ev), &back); err != nil || back != ev {
			t.Fatalf("DecodeBinary(%x) = %+v, and through AppendBinary %+v, %v", data, ev, back, err)
		}
	})
}

// reference decodes data by the rules of the package, but with encoding/json
// and time.Parse, and returns the event or the reason to reject it.
func reference(data []byte, recordTS int64) (Event, Reason) {
	trimmed := bytes.TrimLeft(data, " \t\r\n")
	if !json.Valid(data) || trimmed[0] != '{' {
		return Event{}, ReasonBadJSON
	}
	var m map[string]json.RawMessage // like Decode, the last duplicate wins
	if err := json.Unmarshal(data, &m); err != nil {
		panic(err) // json.Valid said yes
	}

	type stringField struct {
		name  string
		limit int
		dst   *string
	}
	var ev Event
	fields := []stringField{
		{"event_id", MaxIDLen, &ev.EventID},
		{"video_id", MaxIDLen, &ev.VideoID},
		{"user_id", MaxIDLen, &ev.UserID},
		{"creator_id", MaxIDLen, &ev.CreatorID},
		{"region", MaxRegionLen, &ev.Region},
	}
	for _, name := range []string{"event_id", "video_id", "user_id", "creator_id", "region", "action"} {
		if raw, ok := m[name]; ok && raw[0] != '"' && string(raw) != "null" {
			return Event{}, ReasonBadField
		}
	}
	for _, fld := range fields {
		raw, ok := m[fld.name]
		if !ok || raw[0] != '"' {
			continue
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			panic(err)
		}
		// encoding/json turns each byte of invalid UTF-8 into U+FFFD (3
		// bytes); undo that to get the length Decode sees.
		n, invalid := len(s), 0
		for r := []byte(raw); len(r) > 0; {
			c, size := utf8.DecodeRune(r)
			if c == utf8.RuneError && size == 1 {
				invalid++
			}
			r = r[size:]
		}
		if n -= 2 * invalid; n > fld.limit {
			return Event{}, ReasonTooLong
		}
		if invalid > 0 {
			return Event{}, ReasonInvalidUTF8
		}
		*fld.dst = s
	}
	if ev.VideoID == "" {
		return Event{}, ReasonMissingVideo
	}
	if ev.UserID == "" {
		return Event{}, ReasonMissingUser
	}
	if raw, ok := m["action"]; ok && raw[0] == '"' {
		var s string
		json.Unmarshal(raw, &s)
		switch s {
		case "like":
		case "unlike":
			ev.Action = Unlike
		default:
			return Event{}, ReasonBadAction
		}
	}

	raw, ok := m["ts"]
	switch {
	case !ok || string(raw) == "null":
		if recordTS <= 0 {
			return Event{}, ReasonMissingTS
		}
		ev.TS = recordTS
	case raw[0] == '"':
		var s string
		json.Unmarshal(raw, &s)
		if s != "" && strings.Trim(s, "0123456789") == "" {
			s = strings.TrimLeft(s, "0")
			if s == "" {
				s = "0"
			}
			ms, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				return Event{}, ReasonBadTS
			}
			ev.TS = ms
		} else {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return Event{}, ReasonBadTS
			}
			ev.TS = t.UnixMilli()
		}
	case raw[0] == '-' || '0' <= raw[0] && raw[0] <= '9':
		ms, err := strconv.ParseInt(string(raw), 10, 64)
		if err != nil { // a fraction, an exponent or too many digits
			return Event{}, ReasonBadTS
		}
		ev.TS = ms
	default:
		return Event{}, ReasonBadTS
	}
	if ev.TS <= 0 || ev.TS >= time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli() {
		return Event{}, ReasonBadTS
	}
	return ev, ""
}
