package view

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
)

var decodeSeeds = []string{
	`{"video_id":"v42","ts":1793491260000,"seq":7,"model":"trending","score":12.5,"likes":40,"unique_likers":42,"unlikes":2,"likes_1m":5,"likes_5m":21,"likes_1h":40,"likes_24h":40,"rate_5m":4.1,"rate_1h":0.62,"rate_24h":0.027,"velocity":4.1,"acceleration":3.48,"damped_likes_5m":0,"damped_likes_1h":0,"damped_reason":""}`,
	`{"video_id":"vc","seq":3,"likes_5m":30,"likes_1h":31,"damped_likes_5m":29,"damped_likes_1h":29,"damped_reason":"account_rate"}`,
	`{"video_id":"vc","seq":3,"damped_likes_1h":2,"damped_reason":"account_rate,coordination"}`,
	`{"video_id":"vc","damped_reason":null}`,
	`{"video_id":"vc","damped_reason":1}`,
	` { "video_id" : "v1" , "seq" : 1 , "score" : -1.5e-3 , "acceleration" : -0 } `,
	`{}`,
	`{"video_id":"v\u00e9","seq":1}`,
	`{"video_id":"vé","seq":1}`,
	`{"Video_ID":"v1","SEQ":2}`,
	`{"video_id":"v1","seq":1.0}`,
	`{"video_id":"v1","seq":1e2}`,
	`{"video_id":"v1","seq":01}`,
	`{"video_id":"v1","seq":+1}`,
	`{"video_id":"v1","seq":99999999999999999999}`,
	`{"video_id":"v1","score":1e999}`,
	`{"video_id":"v1","score":.5}`,
	`{"video_id":"v1","score":5.}`,
	`{"video_id":"v1","seq":null}`,
	`{"video_id":"v1","extra":{"a":[1,2]},"seq":3}`,
	`{"video_id":"v1","seq":1,"seq":2}`,
	`{"video_id":"v1","seq":1,}`,
	`{"video_id":"v1" "seq":1}`,
	`{"video_id":"v1","seq":1}x`,
	`{"video_id":"v1","seq":1}{}`,
	`[1]`,
	`null`,
	``,
	`{"model":"hn","seq":-3}`,
	"{\"video_id\":\"a\tb\",\"seq\":1}",
}

// The fast path decodes exactly as json.Unmarshal does.
func checkDecode(t *testing.T, data []byte) {
	var got, want Score
	gerr := unmarshalScore(data, &got)
	werr := json.Unmarshal(data, &want)
	if (gerr == nil) != (werr == nil) {
		t.Fatalf("%q: error %v, json.Unmarshal: %v", data, gerr, werr)
	}
	if gerr != nil {
		return
	}
	same := func(a, b float64) bool { return a == b && math.Signbit(a) == math.Signbit(b) || a != a && b != b }
	g, w := got, want
	for _, p := range [][2]*float64{{&g.Score, &w.Score}, {&g.Rate5m, &w.Rate5m}, {&g.Rate1h, &w.Rate1h}, {&g.Rate24h, &w.Rate24h}, {&g.Velocity, &w.Velocity}, {&g.Acceleration, &w.Acceleration}} {
		if !same(*p[0], *p[1]) {
			t.Fatalf("%q: decoded %+v, json.Unmarshal %+v", data, got, want)
		}
		*p[0], *p[1] = 0, 0
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("%q: decoded %+v, json.Unmarshal %+v", data, got, want)
	}
}

func TestDecodeScore(t *testing.T) {
	for _, s := range decodeSeeds {
		checkDecode(t, []byte(s))
	}
	var s Score
	if !fastScore([]byte(decodeSeeds[0]), &s) {
		t.Error("a record as the service writes it missed the fast path")
	}
}

func FuzzDecodeScore(f *testing.F) {
	for _, s := range decodeSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(checkDecode)
}
