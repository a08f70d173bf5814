package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
)

// like is one standing like of a likesBackend.
type like struct {
	ts     int64
	weight float64
}

// likesBackend is a fakeBackend that also reads like times.
type likesBackend struct {
	*fakeBackend
	likes map[string][]like // oldest first
	clock map[string]int64
	err   error
}

func (l *likesBackend) RecentLikes(ctx context.Context, id string, fn func(int64, float64)) (int64, bool, error) {
	if l.err != nil {
		return 0, false, l.err
	}
	c, ok := l.clock[id]
	if !ok {
		return 0, false, nil
	}
	for _, lk := range l.likes[id] {
		fn(lk.ts, lk.weight)
	}
	return c, true, nil
}

const tick = 1790000010000 // of newFake's snapshots

func newLikes() *likesBackend {
	return &likesBackend{fakeBackend: newFake(),
		likes: map[string][]like{"v12": {
			{tick - 61*60_000, 1}, // before the hour
			{tick - 90_000, 0.5},  // the minute before the last, damped by half
			{tick - 30_000, 1},    // the last minute
		}},
		clock: map[string]int64{"v12": tick - 30_000, "v7": tick - 5_000},
	}
}

func TestSeries(t *testing.T) {
	s, ok, err := readSeries(context.Background(), newLikes(), "v12", tick)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if s.End != tick {
		t.Errorf("End %d, want the tick %d (later than the video's clock)", s.End, int64(tick))
	}
	last, prev := s.Points[SeriesPoints-1], s.Points[SeriesPoints-2]
	if last.T != tick || prev.T != tick-60_000 || s.Points[0].T != tick-59*60_000 {
		t.Errorf("minute ends %d, %d ... %d", s.Points[0].T, prev.T, last.T)
	}
	if last.Likes != 1 || last.Counted != 1 || prev.Likes != 1 || prev.Counted != 0.5 {
		t.Errorf("last minutes: %+v, %+v", prev, last)
	}
	for _, p := range s.Points[:SeriesPoints-2] {
		if p.Likes != 0 {
			t.Errorf("minute ending %d: %d likes, want 0", p.T, p.Likes)
		}
	}
	if s.Likes1h != 2 || s.Weighted1h != 1.5 || s.DampedShare != 0.25 {
		t.Errorf("hour: %d likes, %v counted, %v damped; want 2, 1.5, 0.25", s.Likes1h, s.Weighted1h, s.DampedShare)
	}
	if s.Likes5m != 2 || s.DampedShare5m != 0.25 {
		t.Errorf("5 min: %d likes, %v damped", s.Likes5m, s.DampedShare5m)
	}
	// The rates are the decayed sums of README's formula, read at each
	// minute's end: λ·Σ 2^(-(t-t_i)/h), likes per minute.
	want := func(t int64, h float64) float64 {
		var sum float64
		for _, lk := range newLikes().likes["v12"] {
			if lk.ts <= t {
				sum += math.Exp2(-float64(t-lk.ts) / h)
			}
		}
		return sum * math.Ln2 * 60_000 / h
	}
	for _, p := range []SeriesPoint{s.Points[0], prev, last} {
		if w := want(p.T, 300_000); math.Abs(p.Rate5m-w) > 1e-9 {
			t.Errorf("rate_5m at %d: %v, want %v", p.T, p.Rate5m, w)
		}
		if w := want(p.T, 3_600_000); math.Abs(p.Rate1h-w) > 1e-9 {
			t.Errorf("rate_1h at %d: %v, want %v", p.T, p.Rate1h, w)
		}
	}
}

// A steady rate of r likes per minute reads as r, as the score record's
// rates do.
func TestSeriesSteadyRate(t *testing.T) {
	b := newLikes()
	var likes []like
	for ts := int64(tick - 24*3_600_000 + 1); ts <= tick; ts += 2_000 { // 30 a minute
		likes = append(likes, like{ts, 1})
	}
	b.likes["v1"], b.clock["v1"] = likes, tick
	s, _, err := readSeries(context.Background(), b, "v1", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range s.Points {
		if math.Abs(p.Rate5m-30) > 0.1 || math.Abs(p.Rate1h-30) > 0.1 || p.Likes != 30 || p.Counted != 30 {
			t.Fatalf("point %+v: want rates near 30 and 30 likes a minute", p)
		}
	}
	if s.DampedShare != 0 || s.Likes1h != 1800 {
		t.Errorf("damped %v of %d likes", s.DampedShare, s.Likes1h)
	}
}

func TestSeriesRoutes(t *testing.T) {
	const js = "application/json"
	for _, tc := range []struct {
		name, target string
		backend      func() Backend
		status       int
		contains     []string
	}{
		{name: "video series", target: "/v1/videos/v12/series", status: 200,
			contains: []string{`"video_id":"v12","end":1790000010000,"step_ms":60000,"likes_1h":2,"counted_1h":1.5,"damped_share_1h":0.25`,
				`"units":{"t":"end of the minute`, `"record":{"video_id":"v12"`,
				`{"t":1790000010000,"likes":1,"counted":1,"rate_5m":`}},
		{name: "video series unknown", target: "/v1/videos/x/series", status: 404,
			contains: []string{`no likes of video \"x\" in the state this instance holds`}},
		{name: "video series without like times", target: "/v1/videos/v12/series", status: 501,
			backend: func() Backend { return newFake() }, contains: []string{"no series"}},
		{name: "video series error", target: "/v1/videos/v12/series", status: 500,
			backend:  func() Backend { b := newLikes(); b.err = errors.New("store: closed"); return b },
			contains: []string{`read the likes of video \"v12\": store: closed`}},
		{name: "trending series", target: "/v1/trending/series?k=2", status: 200,
			contains: []string{`{"ts":1790000010000,"region":"global","step_ms":60000,"units":{`,
				`{"video_id":"v12","score":31.2,"likes":40,"damping":{"likes_1h":40,"damped_likes_5m":6,"damped_likes_1h":10,"damped_reason":"account_rate"},"end":1790000010000,"likes_1h":2,"counted_1h":1.5,"damped_share_1h":0.25,"damped_share_5m":0.25,"velocity":[0.1051,`,
				`{"video_id":"v7","score":20.1235,"likes":null,"damping":null,"end":1790000010000,"likes_1h":0,`}},
		{name: "trending series without like times", target: "/v1/trending/series?region=US", status: 200,
			backend:  func() Backend { return newFake() },
			contains: []string{`{"video_id":"v7","score":20,"likes":null,"damping":null,"end":null,"velocity":null}`}},
		{name: "trending series k too big", target: "/v1/trending/series?k=101", status: 400,
			contains: []string{"from 1 to 100"}},
		{name: "trending series unknown region", target: "/v1/trending/series?region=FR", status: 404,
			contains: []string{`no trending list for region \"FR\"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b Backend = newLikes()
			if tc.backend != nil {
				b = tc.backend()
			}
			r := get(t, New("127.0.0.1:0", b, nil).Handler(), "GET", tc.target)
			if r.status != tc.status || r.contentType != js {
				t.Errorf("%d %s, want %d %s: %s", r.status, r.contentType, tc.status, js, r.body)
			}
			for _, want := range tc.contains {
				if !strings.Contains(r.body, want) {
					t.Errorf("body\n%s\ndoes not contain\n%s", r.body, want)
				}
			}
			if !json.Valid([]byte(r.body)) {
				t.Errorf("not JSON: %s", r.body)
			}
			if r.status == 200 && strings.Contains(tc.target, "/v1/videos/") {
				var s struct {
					Points []map[string]float64 `json:"points"`
				}
				if err := json.Unmarshal([]byte(r.body), &s); err != nil || len(s.Points) != SeriesPoints {
					t.Errorf("%d points (%v), want %d", len(s.Points), err, SeriesPoints)
				}
			}
		})
	}
}
