package gen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// testConfig is a small but complete run: six hours, every kind of traffic.
func testConfig() Config {
	c := DefaultConfig()
	c.Seed = 7
	c.Events = 200_000
	c.Videos = 20_000
	c.Users = 100_000
	c.Duration = 6 * time.Hour
	c.Bursts = 3
	c.Campaigns = 3
	c.FarmAccounts = 500
	return c
}

// line is one generated line, decoded by encoding/json.
type line struct {
	raw  string
	next int64 // ts returned by Next
	ok   bool  // a well-formed event
	e    struct {
		EventID   *string `json:"event_id"`
		VideoID   *string `json:"video_id"`
		UserID    *string `json:"user_id"`
		CreatorID *string `json:"creator_id"`
		Action    *string `json:"action"`
		TS        *string `json:"ts"`
		Region    *string `json:"region"`
	}
	ts int64 // parsed ts, epoch ms
}

var wellFormed = regexp.MustCompile(`^\{"event_id":"e\d+","video_id":"v[bcsl]?\d+","user_id":"[uf]\d+","creator_id":"c\d+","action":"(like|unlike)","ts":"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z","region":"(US|BR|IN|ID|MX|GB|DE|JP)"\}$`)

// generate runs cfg through Next and decodes every line.
func generate(t testing.TB, cfg Config) ([]line, []Truth) {
	t.Helper()
	lines, truth, err := decodeAll(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return lines, truth
}

func decodeAll(cfg Config) ([]line, []Truth, error) {
	g, err := New(cfg)
	if err != nil {
		return nil, nil, err
	}
	var out []line
	var buf []byte
	for {
		var ts int64
		var ok bool
		buf, ts, ok = g.Next(buf[:0])
		if !ok {
			return out, g.Truth(), nil
		}
		l := line{raw: string(buf), next: ts}
		if json.Unmarshal(buf, &l.e) == nil && wellFormed.MatchString(l.raw) {
			if p, err := time.Parse(time.RFC3339Nano, *l.e.TS); err == nil {
				l.ts, l.ok = p.UnixMilli(), true
			}
		}
		out = append(out, l)
	}
}

// sample is the output of testConfig, shared by the tests that only read it.
func sample(t *testing.T) ([]line, []Truth) {
	t.Helper()
	s := sampleOnce()
	if s.err != nil {
		t.Fatal(s.err)
	}
	return s.lines, s.truth
}

type decoded struct {
	lines []line
	truth []Truth
	err   error
}

var sampleOnce = sync.OnceValue(func() decoded {
	lines, truth, err := decodeAll(testConfig())
	return decoded{lines, truth, err}
})

func TestDeterministic(t *testing.T) {
	c := testConfig()
	c.Events, c.Bursts, c.Campaigns = 60_000, 2, 2
	c.BadShare, c.LateShare = 0.01, 0.01
	run := func(c Config) []byte {
		t.Helper()
		var b bytes.Buffer
		if _, err := c.Run(&b); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	a, b := run(c), run(c)
	if !bytes.Equal(a, b) {
		t.Fatal("same config gave different output")
	}
	c.Seed++
	if bytes.Equal(a, run(c)) {
		t.Fatal("different seeds gave the same output")
	}
}

func TestEventCount(t *testing.T) {
	tiny := Config{Seed: 1, Events: 1, Videos: 1, Users: 1, Start: DefaultConfig().Start, Duration: time.Minute}
	noFarm := testConfig()
	noFarm.FarmAccounts, noFarm.Campaigns = 0, 0
	noise := testConfig()
	noise.Events, noise.BadShare, noise.LateShare = 100_000, 0.05, 0.05
	for _, tc := range []struct {
		name string
		c    Config
	}{
		{"one event", tiny},
		{"seven events", func() Config { c := tiny; c.Events, c.Videos, c.Users = 7, 5, 10; return c }()},
		{"test config", testConfig()},
		{"no farm", noFarm},
		{"bad and late lines", noise},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			n, err := tc.c.Run(&b)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(b.Len()) {
				t.Errorf("Run reported %d bytes, wrote %d", n, b.Len())
			}
			if got := bytes.Count(b.Bytes(), []byte{'\n'}); got != tc.c.Events {
				t.Errorf("got %d lines, want %d", got, tc.c.Events)
			}
			for i, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
				if want := fmt.Sprintf(`{"event_id":"e%d",`, i); !strings.HasPrefix(l, want) {
					t.Fatalf("line %d = %.60s, want prefix %s", i, l, want)
				}
			}
		})
	}
}

func TestLinesWellFormed(t *testing.T) {
	lines, _ := sample(t)
	c := testConfig()
	lo := c.Start.Add(-c.Jitter - 30*time.Minute).UnixMilli()
	hi := c.Start.Add(c.Duration).UnixMilli()
	maxTS := c.Start.UnixMilli()
	for i, l := range lines {
		if !l.ok {
			t.Fatalf("line %d is not a well-formed event: %s", i, l.raw)
		}
		if *l.e.EventID != fmt.Sprintf("e%d", i) {
			t.Fatalf("line %d: event_id %s", i, *l.e.EventID)
		}
		if l.ts < lo || l.ts > hi {
			t.Fatalf("line %d: ts %s outside [start-jitter-30m, start+duration]", i, *l.e.TS)
		}
		if l.next != l.ts {
			t.Fatalf("line %d: Next returned ts %d, line says %d", i, l.next, l.ts)
		}
		// Without late lines, arrival is out of order by at most Jitter.
		if l.ts < maxTS-c.Jitter.Milliseconds() {
			t.Fatalf("line %d: ts %d is more than jitter before an earlier line's %d", i, l.ts, maxTS)
		}
		maxTS = max(maxTS, l.ts)
	}
}

func TestUnlikes(t *testing.T) {
	lines, _ := sample(t)
	c := testConfig()
	type pair struct{ user, video string }
	firstLike := map[pair]int64{}
	var unlikes, strays, repeats, within1m, after1h int
	for i, l := range lines {
		p := pair{*l.e.UserID, *l.e.VideoID}
		liked, seen := firstLike[p]
		switch *l.e.Action {
		case "like":
			if seen {
				repeats++
			} else {
				firstLike[p] = l.ts
			}
		case "unlike":
			unlikes++
			if strings.HasPrefix(p.video, "vb") || strings.HasPrefix(p.video, "vc") {
				t.Fatalf("line %d unlikes a planted video: %s", i, l.raw)
			}
			if !seen {
				strays++
				continue
			}
			if l.ts <= liked {
				t.Errorf("line %d: unlike at %d is not after the like at %d: %s", i, l.ts, liked, l.raw)
			}
			if l.ts-liked < time.Minute.Milliseconds() {
				within1m++
			}
			if l.ts-liked > time.Hour.Milliseconds() {
				after1h++
			}
		}
	}
	n := float64(c.Events)
	near := func(name string, got int, want float64) {
		t.Helper()
		if float64(got) < 0.8*want || float64(got) > 1.25*want {
			t.Errorf("%s: got %d, want about %.0f", name, got, want)
		}
	}
	near("unlikes of earlier likes", unlikes-strays, n*c.UnlikeShare)
	near("stray unlikes", strays, n*c.StrayUnlikeShare)
	// Repeats also include users who happen to like a video twice.
	if want := n * c.RepeatShare; float64(repeats) < want || float64(repeats) > 3*want {
		t.Errorf("repeated likes: got %d, want %.0f to %.0f", repeats, want, 3*want)
	}
	if within1m == 0 || after1h == 0 {
		t.Errorf("unlikes should come both seconds and hours after the like: %d within 1m, %d after 1h", within1m, after1h)
	}
}

func TestStrayUnlikesOnlyWhenAsked(t *testing.T) {
	c := testConfig()
	c.Events, c.Bursts, c.Campaigns, c.StrayUnlikeShare = 50_000, 0, 0, 0
	lines, _ := generate(t, c)
	liked := map[string]bool{}
	for i, l := range lines {
		k := *l.e.UserID + " " + *l.e.VideoID
		switch *l.e.Action {
		case "like":
			liked[k] = true
		case "unlike":
			if !liked[k] {
				t.Fatalf("line %d unlikes a like never given: %s", i, l.raw)
			}
		}
	}
}

func TestTruthMatchesOutput(t *testing.T) {
	lines, truth := sample(t)
	c := testConfig()
	if len(truth) != c.Bursts+c.Campaigns {
		t.Fatalf("got %d truth entries, want %d", len(truth), c.Bursts+c.Campaigns)
	}
	if !slices.IsSortedFunc(truth, func(a, b Truth) int {
		if a.Start != b.Start {
			return int(a.Start - b.Start)
		}
		return strings.Compare(a.VideoID, b.VideoID)
	}) {
		t.Error("truth is not sorted by Start, VideoID")
	}
	type agg struct {
		likes      int
		users      map[string]bool
		start, end int64
	}
	got := map[string]*agg{}
	for _, l := range lines {
		v := *l.e.VideoID
		if !strings.HasPrefix(v, "vb") && !strings.HasPrefix(v, "vc") {
			continue
		}
		a := got[v]
		if a == nil {
			a = &agg{users: map[string]bool{}, start: math.MaxInt64, end: math.MinInt64}
			got[v] = a
		}
		a.likes++
		a.users[*l.e.UserID] = true
		a.start, a.end = min(a.start, l.ts), max(a.end, l.ts)
	}
	if len(got) != len(truth) {
		t.Errorf("output has %d planted videos, truth %d", len(got), len(truth))
	}
	for _, tr := range truth {
		t.Run(tr.VideoID, func(t *testing.T) {
			a := got[tr.VideoID]
			if a == nil {
				t.Fatal("no likes in the output")
			}
			if a.likes != tr.Likes || len(a.users) != tr.Accounts || a.start != tr.Start || a.end != tr.End {
				t.Errorf("output: %d likes from %d accounts in [%d, %d]; truth %+v", a.likes, len(a.users), a.start, a.end, tr)
			}
			switch tr.Kind {
			case KindBurst:
				if !strings.HasPrefix(tr.VideoID, "vb") || tr.Peak <= tr.Start || tr.Peak >= tr.End {
					t.Errorf("burst truth %+v: want a vb video with Start < Peak < End", tr)
				}
			case KindCampaign:
				span := time.Duration(tr.End-tr.Start) * time.Millisecond
				if !strings.HasPrefix(tr.VideoID, "vc") || tr.Peak != tr.Start || span > 10*time.Minute+c.Jitter ||
					tr.Likes < campaignMinLikes || tr.Likes > min(campaignMaxLikes, c.FarmAccounts) || tr.Accounts != tr.Likes {
					t.Errorf("campaign truth %+v (%s long): want a vc video, 300-1500 likes from as many accounts in at most 10m", tr, span)
				}
			default:
				t.Errorf("unknown kind %q", tr.Kind)
			}
		})
	}
}

// TestShapes checks what makes trending detection meaningful: bursts ramp
// up slowly to tens of likes a minute, campaigns arrive at full rate.
func TestShapes(t *testing.T) {
	lines, truth := sample(t)
	likes := map[string][]int64{} // planted video -> ts of its likes
	for _, l := range lines {
		if v := *l.e.VideoID; strings.HasPrefix(v, "vb") || strings.HasPrefix(v, "vc") {
			likes[v] = append(likes[v], l.ts)
		}
	}
	count := func(v string, from int64, d time.Duration) int {
		n := 0
		for _, ts := range likes[v] {
			if ts >= from && ts < from+d.Milliseconds() {
				n++
			}
		}
		return n
	}
	for _, tr := range truth {
		switch tr.Kind {
		case KindBurst:
			early, peak := count(tr.VideoID, tr.Start, 10*time.Minute), count(tr.VideoID, tr.Peak, 10*time.Minute)
			if peak < 200 || peak > 1000 || early*5 > peak {
				t.Errorf("burst %s: %d likes in its first 10m, %d in 10m from its peak; want a slow start and 30-80/min at the peak", tr.VideoID, early, peak)
			}
		case KindCampaign:
			// At least half its average rate from the first minutes on.
			span := time.Duration(tr.End-tr.Start) * time.Millisecond
			first := count(tr.VideoID, tr.Start, 2*time.Minute)
			if want := float64(tr.Likes) * (2 * time.Minute).Minutes() / span.Minutes() / 2; float64(first) < want {
				t.Errorf("campaign %s: %d of %d likes in its first 2m of %s; want an abrupt start (at least %.0f)", tr.VideoID, first, tr.Likes, span, want)
			}
		}
	}
}

func TestFarmOutpacesHumans(t *testing.T) {
	lines, _ := sample(t)
	c := testConfig()
	likes := map[string]int{}
	for _, l := range lines {
		if *l.e.Action == "like" {
			likes[*l.e.UserID]++
		}
	}
	var humans, farms []int
	for u, n := range likes {
		if u[0] == 'f' {
			farms = append(farms, n)
		} else {
			humans = append(humans, n)
		}
	}
	slices.Sort(humans)
	slices.Sort(farms)
	if len(farms) != c.FarmAccounts {
		t.Errorf("%d farm accounts liked, want all %d", len(farms), c.FarmAccounts)
	}
	rate := func(s []int, q float64) float64 { return float64(s[int(q*float64(len(s)-1))]) / c.Duration.Minutes() }
	t.Logf("likes/min: humans median %.4f p99.9 %.4f max %.4f; farm min %.4f median %.4f",
		rate(humans, 0.5), rate(humans, 0.999), rate(humans, 1), rate(farms, 0), rate(farms, 0.5))
	if rate(humans, 1) > 1 {
		t.Errorf("a human likes %.2f/min on average, want at most 1", rate(humans, 1))
	}
	// Expected rates differ 5x between the slowest farm account and the
	// most active human; counts over a run add Poisson noise on top.
	if rate(farms, 0) <= rate(humans, 1) || rate(farms, 0.5) < 20*rate(humans, 0.5) {
		t.Errorf("farm accounts must like far faster than humans: farm min %.4f, median %.4f; humans max %.4f, median %.4f",
			rate(farms, 0), rate(farms, 0.5), rate(humans, 1), rate(humans, 0.5))
	}
}

func TestBadLines(t *testing.T) {
	c := testConfig()
	c.Events, c.Bursts, c.Campaigns, c.BadShare = 40_000, 0, 0, 0.05
	lines, _ := generate(t, c)
	hi := c.Start.Add(c.Duration).UnixMilli()
	reasons := map[string]int{}
	for _, l := range lines {
		if l.ok && l.ts <= hi {
			continue
		}
		var r string
		switch e := l.e; {
		case !json.Valid([]byte(l.raw)):
			r = "broken json"
		case e.VideoID == nil:
			r = "missing video_id"
		case e.UserID == nil:
			r = "missing user_id"
		case len(*e.VideoID) > 128 || len(*e.UserID) > 128:
			r = "oversized id"
		case *e.Action != "like" && *e.Action != "unlike":
			r = "bad action"
		case l.ts == 0:
			r = "bad ts"
		case l.ts > hi:
			r = "future ts"
		default:
			t.Fatalf("unexpected malformed line: %s", l.raw)
		}
		reasons[r]++
	}
	bad := 0
	for _, n := range reasons {
		bad += n
	}
	if want := c.BadShare * float64(c.Events); float64(bad) < 0.85*want || float64(bad) > 1.15*want {
		t.Errorf("got %d malformed lines, want about %.0f", bad, want)
	}
	if len(reasons) != 7 {
		t.Errorf("got malformed lines %v, want all 7 kinds", reasons)
	}
}

func TestLateLines(t *testing.T) {
	c := testConfig()
	c.Events, c.Bursts, c.Campaigns, c.LateShare = 40_000, 0, 0, 0.02
	lines, _ := generate(t, c)
	late := 0
	maxTS := c.Start.UnixMilli()
	for _, l := range lines {
		if l.ts < maxTS-(5*time.Minute+c.Jitter).Milliseconds() {
			late++
			if l.ts < maxTS-(30*time.Minute+c.Jitter).Milliseconds() {
				t.Errorf("late line more than 30m late: %s", l.raw)
			}
		}
		maxTS = max(maxTS, l.ts)
	}
	if want := c.LateShare * float64(c.Events); float64(late) < 0.8*want || float64(late) > 1.2*want {
		t.Errorf("got %d late lines, want about %.0f", late, want)
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Config)
		want string // substring of the error; "" = valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"no events", func(c *Config) { c.Events = 0 }, "events must be > 0"},
		{"no videos", func(c *Config) { c.Videos = 0 }, "videos must be"},
		{"no start", func(c *Config) { c.Start = time.Time{} }, "start must be set"},
		{"short duration", func(c *Config) { c.Duration = time.Second }, "duration must be at least 1m"},
		{"negative jitter", func(c *Config) { c.Jitter = -1 }, "jitter"},
		{"share over 1", func(c *Config) { c.BadShare = 1.5 }, "bad share must be in [0, 1)"},
		{"NaN share", func(c *Config) { c.LateShare = math.NaN() }, "late share"},
		{"shares too large", func(c *Config) { c.BadShare, c.UnlikeShare = 0.2, 0.2 }, "add up to"},
		{"too few events for the plan", func(c *Config) { c.Events = 100_000 }, "raise events to 280000"},
		{"burst in a short run", func(c *Config) { c.Duration = time.Hour }, "too short for viral bursts"},
		{"campaigns without a farm", func(c *Config) { c.FarmAccounts = 10 }, "campaigns need at least 300 farm accounts"},
		{"too few users", func(c *Config) { c.Users = 1000 }, "raise users"},
		{"short run without bursts", func(c *Config) { c.Duration, c.Bursts = 10*time.Minute, 0 }, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := DefaultConfig()
			tc.edit(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "gen: ")):
				t.Errorf("Validate: %v, want an error with %q", err, tc.want)
			}
			if _, err2 := New(c); (err2 == nil) != (err == nil) {
				t.Errorf("New: %v, Validate: %v", err2, err)
			}
		})
	}
}

func TestAppendTS(t *testing.T) {
	g := &Generator{tsDay: math.MinInt64}
	r := rand.New(rand.NewPCG(1, 2))
	lo := time.Date(1971, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	hi := time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC).UnixMilli()
	cases := []int64{lo, hi, 0, time.Date(2000, 2, 29, 23, 59, 59, 999e6, time.UTC).UnixMilli(),
		time.Date(2026, 12, 31, 23, 59, 59, 1e6, time.UTC).UnixMilli()}
	for range 100_000 {
		cases = append(cases, lo+r.Int64N(hi-lo))
	}
	for _, ms := range cases {
		want := time.UnixMilli(ms).UTC().Format("2006-01-02T15:04:05.000Z")
		if got := string(g.appendTS(nil, ms)); got != want {
			t.Fatalf("appendTS(%d) = %s, want %s", ms, got, want)
		}
	}
}

func TestWriteTruth(t *testing.T) {
	var b bytes.Buffer
	err := WriteTruth(&b, []Truth{{Kind: KindBurst, VideoID: "vb0", Start: 1, Peak: 2, End: 3, Likes: 4, Accounts: 4}})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"kind":"burst","video_id":"vb0","start":1,"peak":2,"end":3,"likes":4,"accounts":4}` + "\n"
	if b.String() != want {
		t.Errorf("got %s, want %s", b.String(), want)
	}
}

func BenchmarkGenerate(b *testing.B) {
	c := DefaultConfig()
	c.Events = 10_000_000
	g, err := New(c)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	buf := make([]byte, 0, 512)
	n := 0
	for b.Loop() {
		var ok bool
		if buf, _, ok = g.Next(buf[:0]); !ok {
			b.StopTimer()
			g, _ = New(c)
			b.StartTimer()
		}
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
}
