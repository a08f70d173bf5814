package event

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

const typical = `{"event_id":"e1","video_id":"v42","user_id":"u7","creator_id":"c3","action":"like","ts":"2026-11-26T06:00:00.123Z","region":"US"}`

// typicalTS is 2026-11-26T06:00:00.123Z.
const typicalTS = 1795672800123

func TestDecode(t *testing.T) {
	long := strings.Repeat("x", MaxIDLen)
	for _, tc := range []struct {
		name     string
		in       string
		recordTS int64
		want     Event
	}{
		{
			name: "all fields",
			in:   typical,
			want: Event{EventID: "e1", VideoID: "v42", UserID: "u7", CreatorID: "c3", Region: "US", Action: Like, TS: typicalTS},
		},
		{
			name: "minimal",
			in:   `{"video_id":"v","user_id":"u","ts":1}`,
			want: Event{VideoID: "v", UserID: "u", TS: 1},
		},
		{
			name: "unlike",
			in:   `{"video_id":"v","user_id":"u","action":"unlike","ts":1795672800123}`,
			want: Event{VideoID: "v", UserID: "u", Action: Unlike, TS: typicalTS},
		},
		{
			name: "epoch ms as digit string",
			in:   `{"video_id":"v","user_id":"u","ts":"1795672800123"}`,
			want: Event{VideoID: "v", UserID: "u", TS: typicalTS},
		},
		{
			name: "epoch ms at the end of year 9999",
			in:   `{"video_id":"v","user_id":"u","ts":253402300799999}`,
			want: Event{VideoID: "v", UserID: "u", TS: maxTS - 1},
		},
		{
			name: "RFC 3339 without fraction",
			in:   `{"video_id":"v","user_id":"u","ts":"2026-11-26T06:00:00Z"}`,
			want: Event{VideoID: "v", UserID: "u", TS: typicalTS - 123},
		},
		{
			name: "RFC 3339 nanoseconds truncated",
			in:   `{"video_id":"v","user_id":"u","ts":"2026-11-26T06:00:00.123999999Z"}`,
			want: Event{VideoID: "v", UserID: "u", TS: typicalTS},
		},
		{
			name: "RFC 3339 one fractional digit",
			in:   `{"video_id":"v","user_id":"u","ts":"2026-11-26T06:00:00.1Z"}`,
			want: Event{VideoID: "v", UserID: "u", TS: typicalTS - 23},
		},
		{
			name: "RFC 3339 with offset",
			in:   `{"video_id":"v","user_id":"u","ts":"2026-11-26T08:00:00.123+02:00"}`,
			want: Event{VideoID: "v", UserID: "u", TS: typicalTS},
		},
		{
			name: "RFC 3339 with negative offset",
			in:   `{"video_id":"v","user_id":"u","ts":"2026-11-25T23:30:00.123-06:30"}`,
			want: Event{VideoID: "v", UserID: "u", TS: typicalTS},
		},
		{
			name: "RFC 3339 leap day",
			in:   `{"video_id":"v","user_id":"u","ts":"2024-02-29T00:00:00Z"}`,
			want: Event{VideoID: "v", UserID: "u", TS: 1709164800000},
		},
		{
			name: "escaped ts",
			in:   `{"video_id":"v","user_id":"u","ts":"2026\u002d11-26T06:00:00.123Z"}`,
			want: Event{VideoID: "v", UserID: "u", TS: typicalTS},
		},
		{
			name: "escapes",
			in:   `{"video_id":"a\"b\\c\/d\b\f\n\r\t","user_id":"\u0041\u00e9\u4e16","ts":1}`,
			want: Event{VideoID: "a\"b\\c/d\b\f\n\r\t", UserID: "Aé世", TS: 1},
		},
		{
			name: "surrogate pair",
			in:   `{"video_id":"\ud83d\ude00","user_id":"u","ts":1}`,
			want: Event{VideoID: "😀", UserID: "u", TS: 1},
		},
		{
			name: "lone surrogates become U+FFFD",
			in:   `{"video_id":"\ud800x\udc00\ud800\ud800","user_id":"u","ts":1}`,
			want: Event{VideoID: "\ufffdx\ufffd\ufffd\ufffd", UserID: "u", TS: 1},
		},
		{
			name: "raw unicode",
			in:   `{"video_id":"vidéo","user_id":"ユーザー","region":"ü","ts":1}`,
			want: Event{VideoID: "vidéo", UserID: "ユーザー", Region: "ü", TS: 1},
		},
		{
			name: "escaped action and keys",
			in:   `{"vide\u006f_id":"v","\u0075ser_id":"u","action":"un\u006cike","ts":1}`,
			want: Event{VideoID: "v", UserID: "u", Action: Unlike, TS: 1},
		},
		{
			name: "unknown fields of every type",
			in: `{"x":{"a":[1,-2.5e+3,{"b":null}],"c":{}},"video_id":"v","y":[],"z":true,"w":false,` +
				`"n":null,"s":"\u00ff\n","f":-0.0E-1,"user_id":"u","ts":1,"q":"raw ` + "\xff" + ` bytes"}`,
			want: Event{VideoID: "v", UserID: "u", TS: 1},
		},
		{
			name: "nesting as deep as encoding/json allows",
			in:   `{"video_id":"v","user_id":"u","ts":1,"x":` + strings.Repeat("[", maxDepth-1) + strings.Repeat("]", maxDepth-1) + `}`,
			want: Event{VideoID: "v", UserID: "u", TS: 1},
		},
		{
			name: "keys are case-sensitive",
			in:   `{"Video_ID":"x","video_id":"v","USER_ID":7,"user_id":"u","TS":"bad","ts":1}`,
			want: Event{VideoID: "v", UserID: "u", TS: 1},
		},
		{
			name: "duplicate keys: last wins",
			in:   `{"video_id":"a","user_id":"u","video_id":"b","ts":5,"action":"unlike","ts":6,"action":"like"}`,
			want: Event{VideoID: "b", UserID: "u", TS: 6},
		},
		{
			name: "duplicate key: null after value is absent",
			in:   `{"video_id":"v","user_id":"u","region":"US","region":null,"ts":1}`,
			want: Event{VideoID: "v", UserID: "u", TS: 1},
		},
		{
			name: "whitespace",
			in:   " \t\r\n{ \"video_id\" :\n\"v\" ,\t\"user_id\"\r: \"u\" , \"ts\" : 1 } \n",
			want: Event{VideoID: "v", UserID: "u", TS: 1},
		},
		{
			name: "nulls are absent",
			in:   `{"event_id":null,"video_id":"v","user_id":"u","creator_id":null,"region":null,"action":null,"ts":1}`,
			want: Event{VideoID: "v", UserID: "u", TS: 1},
		},
		{
			name:     "record timestamp when ts is absent",
			in:       `{"video_id":"v","user_id":"u"}`,
			recordTS: 1234,
			want:     Event{VideoID: "v", UserID: "u", TS: 1234},
		},
		{
			name:     "record timestamp when ts is null",
			in:       `{"video_id":"v","user_id":"u","ts":null}`,
			recordTS: 1234,
			want:     Event{VideoID: "v", UserID: "u", TS: 1234},
		},
		{
			name:     "ts beats record timestamp",
			in:       `{"video_id":"v","user_id":"u","ts":99}`,
			recordTS: 1234,
			want:     Event{VideoID: "v", UserID: "u", TS: 99},
		},
		{
			name: "fields at their limits",
			in:   `{"event_id":"` + long + `","video_id":"` + long + `","user_id":"` + long + `","creator_id":"` + long + `","region":"0123456789abcdef","ts":1}`,
			want: Event{EventID: long, VideoID: long, UserID: long, CreatorID: long, Region: "0123456789abcdef", TS: 1},
		},
		{
			name: "escaped field at its limit",
			in:   `{"video_id":"` + strings.Repeat(`\u00e9`, MaxIDLen/2) + `","user_id":"u","ts":1}`,
			want: Event{VideoID: strings.Repeat("é", MaxIDLen/2), UserID: "u", TS: 1},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := Event{EventID: "stale", Action: Unlike, TS: -1}
			if err := Decode([]byte(tc.in), tc.recordTS, &ev); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if ev != tc.want {
				t.Fatalf("Decode:\n got %+v\nwant %+v", ev, tc.want)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	long := strings.Repeat("x", MaxIDLen+1)
	for _, tc := range []struct {
		name string
		in   string
		want Reason
	}{
		{"empty", ``, ReasonBadJSON},
		{"only whitespace", " \n\t", ReasonBadJSON},
		{"array", `[{"video_id":"v","user_id":"u","ts":1}]`, ReasonBadJSON},
		{"string", `"video_id"`, ReasonBadJSON},
		{"null", `null`, ReasonBadJSON},
		{"truncated", `{"video_id":"v","user_id":"u"`, ReasonBadJSON},
		{"unterminated string", `{"video_id":"v`, ReasonBadJSON},
		{"trailing garbage", `{"video_id":"v","user_id":"u","ts":1}x`, ReasonBadJSON},
		{"two objects", `{"video_id":"v","user_id":"u","ts":1}{}`, ReasonBadJSON},
		{"trailing comma", `{"video_id":"v","user_id":"u","ts":1,}`, ReasonBadJSON},
		{"missing colon", `{"video_id" "v"}`, ReasonBadJSON},
		{"single quotes", `{'video_id':'v'}`, ReasonBadJSON},
		{"unquoted key", `{video_id:"v"}`, ReasonBadJSON},
		{"control character in string", "{\"video_id\":\"a\nb\",\"user_id\":\"u\",\"ts\":1}", ReasonBadJSON},
		{"bad escape", `{"video_id":"a\x","user_id":"u","ts":1}`, ReasonBadJSON},
		{"short unicode escape", `{"video_id":"\u12","user_id":"u","ts":1}`, ReasonBadJSON},
		{"bad escape in unknown field", `{"video_id":"v","user_id":"u","ts":1,"x":"\q"}`, ReasonBadJSON},
		{"leading zero", `{"video_id":"v","user_id":"u","ts":01}`, ReasonBadJSON},
		{"plus sign", `{"video_id":"v","user_id":"u","ts":+1}`, ReasonBadJSON},
		{"bare minus", `{"video_id":"v","user_id":"u","x":-}`, ReasonBadJSON},
		{"fraction without digits", `{"video_id":"v","user_id":"u","x":1.}`, ReasonBadJSON},
		{"exponent without digits", `{"video_id":"v","user_id":"u","x":1e}`, ReasonBadJSON},
		{"hex number", `{"video_id":"v","user_id":"u","x":0x1}`, ReasonBadJSON},
		{"NaN", `{"video_id":"v","user_id":"u","x":NaN}`, ReasonBadJSON},
		{"bad literal", `{"video_id":"v","user_id":"u","x":nul}`, ReasonBadJSON},
		{"unclosed nested array", `{"video_id":"v","user_id":"u","x":[1,2}`, ReasonBadJSON},
		{"too deep", `{"x":` + strings.Repeat("[", maxDepth) + strings.Repeat("]", maxDepth) + `}`, ReasonBadJSON},
		{"bad json beats other problems", `{"video_id":1,"user_id":"u","ts":1`, ReasonBadJSON},

		{"video_id is a number", `{"video_id":42,"user_id":"u","ts":1}`, ReasonBadField},
		{"user_id is an object", `{"video_id":"v","user_id":{},"ts":1}`, ReasonBadField},
		{"region is a boolean", `{"video_id":"v","user_id":"u","region":true,"ts":1}`, ReasonBadField},
		{"action is an array", `{"video_id":"v","user_id":"u","action":["like"],"ts":1}`, ReasonBadField},
		{"bad field beats missing", `{"event_id":1,"ts":1}`, ReasonBadField},

		{"video_id too long", `{"video_id":"` + long + `","user_id":"u","ts":1}`, ReasonTooLong},
		{"escaped video_id too long", `{"video_id":"` + strings.Repeat(`\u00e9`, MaxIDLen/2) + `x","user_id":"u","ts":1}`, ReasonTooLong},
		{"event_id too long", `{"event_id":"` + long + `","video_id":"v","user_id":"u","ts":1}`, ReasonTooLong},
		{"creator_id too long", `{"creator_id":"` + long + `","video_id":"v","user_id":"u","ts":1}`, ReasonTooLong},
		{"region too long", `{"region":"0123456789abcdefg","video_id":"v","user_id":"u","ts":1}`, ReasonTooLong},
		{"too long beats missing", `{"video_id":"` + long + `","ts":1}`, ReasonTooLong},

		{"invalid UTF-8 in video_id", "{\"video_id\":\"v\xff\",\"user_id\":\"u\",\"ts\":1}", ReasonInvalidUTF8},
		{"invalid UTF-8 beside escapes", "{\"video_id\":\"\\u00e9\xc3\",\"user_id\":\"u\",\"ts\":1}", ReasonInvalidUTF8},
		{"encoded surrogate", "{\"user_id\":\"\xed\xa0\x80\",\"video_id\":\"v\",\"ts\":1}", ReasonInvalidUTF8},
		{"invalid UTF-8 in region", "{\"region\":\"\xc0\xaf\",\"video_id\":\"v\",\"user_id\":\"u\",\"ts\":1}", ReasonInvalidUTF8},
		{"invalid UTF-8 beats missing", "{\"event_id\":\"\xff\",\"ts\":1}", ReasonInvalidUTF8},

		{"no video_id", `{"user_id":"u","ts":1}`, ReasonMissingVideo},
		{"null video_id", `{"video_id":null,"user_id":"u","ts":1}`, ReasonMissingVideo},
		{"empty video_id", `{"video_id":"","user_id":"u","ts":1}`, ReasonMissingVideo},
		{"missing video beats missing user", `{}`, ReasonMissingVideo},
		{"no user_id", `{"video_id":"v","ts":1}`, ReasonMissingUser},
		{"empty user_id", `{"video_id":"v","user_id":"","ts":1}`, ReasonMissingUser},
		{"missing user beats bad action", `{"video_id":"v","action":"share"}`, ReasonMissingUser},

		{"unknown action", `{"video_id":"v","user_id":"u","action":"share","ts":1}`, ReasonBadAction},
		{"action in capitals", `{"video_id":"v","user_id":"u","action":"LIKE","ts":1}`, ReasonBadAction},
		{"empty action", `{"video_id":"v","user_id":"u","action":"","ts":1}`, ReasonBadAction},
		{"invalid UTF-8 action", "{\"video_id\":\"v\",\"user_id\":\"u\",\"action\":\"\xff\",\"ts\":1}", ReasonBadAction},
		{"bad action beats bad ts", `{"video_id":"v","user_id":"u","action":"x","ts":"x"}`, ReasonBadAction},

		{"ts is garbage", `{"video_id":"v","user_id":"u","ts":"yesterday"}`, ReasonBadTS},
		{"ts is empty", `{"video_id":"v","user_id":"u","ts":""}`, ReasonBadTS},
		{"ts fraction", `{"video_id":"v","user_id":"u","ts":1.5}`, ReasonBadTS},
		{"ts exponent", `{"video_id":"v","user_id":"u","ts":1e12}`, ReasonBadTS},
		{"ts zero", `{"video_id":"v","user_id":"u","ts":0}`, ReasonBadTS},
		{"ts minus zero", `{"video_id":"v","user_id":"u","ts":-0}`, ReasonBadTS},
		{"ts negative", `{"video_id":"v","user_id":"u","ts":-1}`, ReasonBadTS},
		{"ts year 10000", `{"video_id":"v","user_id":"u","ts":253402300800000}`, ReasonBadTS},
		{"ts huge", `{"video_id":"v","user_id":"u","ts":123456789012345678901234567890}`, ReasonBadTS},
		{"ts huge digit string", `{"video_id":"v","user_id":"u","ts":"99999999999999999999999"}`, ReasonBadTS},
		{"ts digit string zero", `{"video_id":"v","user_id":"u","ts":"000"}`, ReasonBadTS},
		{"ts before 1970", `{"video_id":"v","user_id":"u","ts":"1969-12-31T23:59:59.999Z"}`, ReasonBadTS},
		{"ts at the epoch", `{"video_id":"v","user_id":"u","ts":"1970-01-01T00:00:00Z"}`, ReasonBadTS},
		{"ts offset past year 9999", `{"video_id":"v","user_id":"u","ts":"9999-12-31T23:59:59-01:00"}`, ReasonBadTS},
		{"ts February 30", `{"video_id":"v","user_id":"u","ts":"2026-02-30T00:00:00Z"}`, ReasonBadTS},
		{"ts February 29 of a common year", `{"video_id":"v","user_id":"u","ts":"2100-02-29T00:00:00Z"}`, ReasonBadTS},
		{"ts hour 24", `{"video_id":"v","user_id":"u","ts":"2026-11-26T24:00:00Z"}`, ReasonBadTS},
		{"ts leap second", `{"video_id":"v","user_id":"u","ts":"2016-12-31T23:59:60Z"}`, ReasonBadTS},
		{"ts without zone", `{"video_id":"v","user_id":"u","ts":"2026-11-26T06:00:00.123"}`, ReasonBadTS},
		{"ts date only", `{"video_id":"v","user_id":"u","ts":"2026-11-26"}`, ReasonBadTS},
		{"ts point without digits", `{"video_id":"v","user_id":"u","ts":"2026-11-26T06:00:00.Z"}`, ReasonBadTS},
		{"ts boolean", `{"video_id":"v","user_id":"u","ts":true}`, ReasonBadTS},
		{"ts object", `{"video_id":"v","user_id":"u","ts":{"ms":1}}`, ReasonBadTS},
		{"no ts and no record timestamp", `{"video_id":"v","user_id":"u"}`, ReasonMissingTS},
		{"null ts and no record timestamp", `{"video_id":"v","user_id":"u","ts":null}`, ReasonMissingTS},
	} {
		t.Run(tc.name, func(t *testing.T) {
			testReject(t, tc.in, 0, tc.want)
		})
	}
}

func TestDecodeRejectsRecordTS(t *testing.T) {
	const in = `{"video_id":"v","user_id":"u","ts":null}`
	for _, tc := range []struct {
		recordTS int64
		want     Reason
	}{
		{-5, ReasonMissingTS},
		{maxTS, ReasonBadTS},
	} {
		t.Run(strconv.FormatInt(tc.recordTS, 10), func(t *testing.T) {
			testReject(t, in, tc.recordTS, tc.want)
		})
	}
}

func testReject(t *testing.T, in string, recordTS int64, want Reason) {
	t.Helper()
	ev := Event{VideoID: "stale", TS: 7}
	err := Decode([]byte(in), recordTS, &ev)
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Decode = %v (%+v), want an *Error", err, ev)
	}
	if e.Reason != want {
		t.Fatalf("Decode: reason %q (%v), want %q", e.Reason, e, want)
	}
	if e.Detail == "" || len(e.Detail) > 200 {
		t.Errorf("Decode: detail %q: want a short description", e.Detail)
	}
	if ev != (Event{}) {
		t.Errorf("Decode left %+v in the event, want the zero Event", ev)
	}
}

func TestErrorDetail(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want string
	}{
		{`{"video_id":"` + strings.Repeat("v", 200) + `","user_id":"u"}`, "field_too_long: video_id is 200 bytes, more than 128"},
		{`{"video_id":7,"user_id":"u"}`, "bad_field: video_id is a number, want a string"},
		{`{"user_id":"u"}`, "missing_video_id: video_id is absent"},
		{`{"video_id":"v","user_id":null}`, "missing_user_id: user_id is null"},
		{`{"video_id":"v","user_id":""}`, "missing_user_id: user_id is empty"},
		{`{"video_id":"v","user_id":"u","action":"share"}`, `bad_action: action "share" is not "like" or "unlike"`},
		{`{"video_id":"v","user_id":"u","ts":1.5}`, `bad_ts: ts "1.5" is not an integer of epoch milliseconds`},
		{`{"video_id":"v","user_id":"u"}`, "missing_ts: no ts field and no record timestamp"},
		{`{"video_id":"v"} x`, "bad_json: trailing data at offset 17"},
		{`{"video_id" 1}`, "bad_json: unexpected '1' at offset 12, want ':'"},
		{`{"video_id":"v",`, "bad_json: unexpected end of input, want a string key"},
	} {
		t.Run(tc.want, func(t *testing.T) {
			var ev Event
			err := Decode([]byte(tc.in), 0, &ev)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("Decode(%s) = %v, want %s", tc.in, err, tc.want)
			}
		})
	}
}

func TestDecodeAllocs(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
	}{
		{"typical", typical},
		{"epoch ms", `{"event_id":"e1","video_id":"v42","user_id":"u7","creator_id":"c3","action":"like","ts":1795672800123,"region":"US"}`},
		{"escapes", `{"video_id":"\u00e9\ud83d\ude00\n","user_id":"u\"","action":"\u0075nlike","\u0074s":"2026\u002d11-26T06:00:00Z"}`},
		{"unknown fields", `{"video_id":"v","user_id":"u","ts":1,"x":{"a":[1,2,{"b":"c"}]}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := []byte(tc.in)
			var ev Event
			allocs := testing.AllocsPerRun(100, func() {
				if err := Decode(data, 1, &ev); err != nil {
					t.Fatal(err)
				}
			})
			if allocs > 1 {
				t.Errorf("Decode: %v allocations, want at most 1", allocs)
			}
		})
	}
}

func TestAppendJSON(t *testing.T) {
	ev := Event{EventID: "e1", VideoID: "v42", UserID: "u7", CreatorID: "c3", Region: "US", TS: typicalTS}
	if got := string(AppendJSON(nil, &ev)); got != typical {
		t.Errorf("AppendJSON:\n got %s\nwant %s", got, typical)
	}
	ev = Event{VideoID: "v", UserID: "u", Action: Unlike, TS: 1}
	const want = `{"video_id":"v","user_id":"u","action":"unlike","ts":"1970-01-01T00:00:00.001Z"}`
	if got := string(AppendJSON([]byte("x"), &ev)); got != "x"+want {
		t.Errorf("AppendJSON:\n got %s\nwant x%s", got, want)
	}
}

func TestAppendJSONRoundTrip(t *testing.T) {
	events := []Event{
		{VideoID: "v", UserID: "u", TS: 1},
		{EventID: "e", VideoID: "v", UserID: "u", CreatorID: "c", Region: "BR", Action: Unlike, TS: typicalTS},
		{VideoID: "quote\" backslash\\ slash/", UserID: "ctl\x00\x01\x1f\x7f\b\f\n\r\t", TS: 1709164800000},
		{VideoID: "é世😀\u2028\ufffd", UserID: "<>&", Region: "ü", TS: maxTS - 1},
		{VideoID: strings.Repeat("é", MaxIDLen/2), UserID: strings.Repeat("\n", MaxIDLen), EventID: strings.Repeat("e", MaxIDLen), TS: 951782400000},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []rune("az09 \"\\/\x00\x1f\n\té世😀\u2028")
	randString := func(n int) string {
		var b []byte
		for {
			r := alphabet[rng.IntN(len(alphabet))]
			if len(b)+utf8.RuneLen(r) > n {
				return string(b)
			}
			b = utf8.AppendRune(b, r)
		}
	}
	randID := func() string {
		if s := randString(1 + rng.IntN(MaxIDLen)); s != "" {
			return s
		}
		return "x"
	}
	for range 200 {
		events = append(events, Event{
			EventID:   randString(rng.IntN(MaxIDLen)),
			VideoID:   randID(),
			UserID:    randID(),
			CreatorID: randString(rng.IntN(MaxIDLen)),
			Region:    randString(rng.IntN(MaxRegionLen)),
			Action:    Action(rng.IntN(2)),
			TS:        1 + rng.Int64N(maxTS-1),
		})
	}
	for i, ev := range events {
		t.Run(ev.VideoID[:min(len(ev.VideoID), 8)], func(t *testing.T) {
			data := AppendJSON(nil, &ev)
			var got Event
			if err := Decode(data, 0, &got); err != nil {
				t.Fatalf("event %d: Decode(%s): %v", i, data, err)
			}
			if got != ev {
				t.Fatalf("event %d: round trip of %s:\n got %+v\nwant %+v", i, data, got, ev)
			}
			var std struct {
				EventID   string    `json:"event_id"`
				VideoID   string    `json:"video_id"`
				UserID    string    `json:"user_id"`
				CreatorID string    `json:"creator_id"`
				Action    string    `json:"action"`
				TS        time.Time `json:"ts"`
				Region    string    `json:"region"`
			}
			if err := json.Unmarshal(data, &std); err != nil {
				t.Fatalf("event %d: encoding/json rejects %s: %v", i, data, err)
			}
			if std.VideoID != ev.VideoID || std.UserID != ev.UserID || std.EventID != ev.EventID ||
				std.CreatorID != ev.CreatorID || std.Region != ev.Region || std.Action != ev.Action.String() ||
				std.TS.UnixMilli() != ev.TS {
				t.Fatalf("event %d: encoding/json reads %s as %+v, want %+v", i, data, std, ev)
			}
		})
	}
}

func TestAppendJSONInvalidUTF8(t *testing.T) {
	ev := Event{VideoID: "a\xffb", UserID: "\xe4\xb8", TS: 1}
	data := AppendJSON(nil, &ev)
	if !json.Valid(data) {
		t.Fatalf("AppendJSON wrote invalid JSON: %s", data)
	}
	var got Event
	if err := Decode(data, 0, &got); err != nil {
		t.Fatal(err)
	}
	if got.VideoID != "a\ufffdb" || got.UserID != "\ufffd\ufffd" {
		t.Errorf("invalid UTF-8 came back as %q, %q", got.VideoID, got.UserID)
	}
}

func TestAppendJSONOutOfRange(t *testing.T) {
	// Not valid event times, but AppendJSON must still write valid JSON.
	for _, ts := range []int64{-1, -62135596800001, maxTS, 1 << 62} {
		ev := Event{VideoID: "v", UserID: "u", TS: ts}
		if data := AppendJSON(nil, &ev); !json.Valid(data) {
			t.Errorf("TS %d: invalid JSON %s", ts, data)
		}
	}
}

// TestRFC3339FastPath checks the hand-written parser against time.Parse.
func TestRFC3339FastPath(t *testing.T) {
	inputs := []string{
		"2026-11-26T06:00:00.123Z", "2026-11-26T06:00:00Z", "1970-01-01T00:00:00Z",
		"0000-01-01T00:00:00Z", "0000-03-01T00:00:00Z", "9999-12-31T23:59:59.999999999999Z",
		"2000-02-29T12:00:00Z", "1900-02-29T12:00:00Z", "2026-04-31T00:00:00Z",
		"2026-11-26T06:00:00.Z", "2026-11-26T06:00:00,123Z", "2026-11-26t06:00:00Z",
		"2026-11-26T06:00:00.12a3Z", "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z",
		"2026-01-00T00:00:00Z", "2026-11-26T06:60:00Z", "2026-11-26 06:00:00Z",
		"+026-11-26T06:00:00Z", "2026-11-26T06:00:00.5z",
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 10000 {
		ms := rng.Int64N(maxTS+62135596800000+86400000) - 62135596800000 // from year 0
		layout := "2006-01-02T15:04:05Z"
		switch rng.IntN(3) {
		case 1:
			layout = "2006-01-02T15:04:05.000Z"
		case 2:
			layout = "2006-01-02T15:04:05.000000000Z"
		}
		inputs = append(inputs, time.UnixMilli(ms).UTC().Format(layout))
	}
	for _, in := range inputs {
		got, ok := parseRFC3339UTC([]byte(in))
		tm, err := time.Parse(time.RFC3339Nano, in)
		if !ok {
			if err == nil && strings.HasSuffix(in, "Z") && len(in) >= 20 && in[19] != ',' && in[10] == 'T' {
				t.Errorf("%s: fast path refused what time.Parse accepts", in)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: fast path accepted what time.Parse refuses: %v", in, err)
		} else if want := tm.UnixMilli(); got != want {
			t.Errorf("%s: fast path %d, time.Parse %d", in, got, want)
		}
	}
}

func TestCivilRoundTrip(t *testing.T) {
	for days := int64(-719468); days < maxTS/msPerDay+400; days += 1 {
		y, m, d := civilFromDays(days)
		if got := daysFromCivil(y, m, d); got != days {
			t.Fatalf("daysFromCivil(civilFromDays(%d) = %d-%d-%d) = %d", days, y, m, d, got)
		}
		if d < 1 || d > daysIn(y, m) {
			t.Fatalf("civilFromDays(%d) = %d-%d-%d", days, y, m, d)
		}
	}
	if got := daysFromCivil(1970, 1, 1); got != 0 {
		t.Errorf("daysFromCivil(1970-01-01) = %d", got)
	}
}

func TestActionString(t *testing.T) {
	for a, want := range map[Action]string{Like: "like", Unlike: "unlike", 7: "Action(7)"} {
		if got := a.String(); got != want {
			t.Errorf("Action(%d).String() = %q, want %q", a, got, want)
		}
	}
}
