package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/viralityhq/virality/processor"
)

// fakeView serves a global list and region lists at a tick that tests move.
type fakeView struct {
	mu     sync.Mutex
	tick   int64
	lists  map[string][]processor.Ranked
	global bool // whether the global snapshot exists yet
}

func (f *fakeView) Trending(region string) (processor.Snapshot, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	l, ok := f.lists[region]
	if !ok || (region == processor.GlobalRegion && !f.global) {
		return processor.Snapshot{}, false
	}
	return processor.Snapshot{Tick: f.tick, Lists: []processor.List{{Region: region, Videos: l}}}, true
}

func (f *fakeView) Regions() []string {
	return []string{"global", "BR", "DE", "GB", "ID", "IN", "JP", "MX", "US"}
}

func (f *fakeView) setTick(t int64) {
	f.mu.Lock()
	f.tick = t
	f.mu.Unlock()
}

// 2026-11-01T06:00:10Z
const viewTick = 1793512810000

func newFakeView() *fakeView {
	global := make([]processor.Ranked, 12)
	for i := range global {
		global[i] = processor.Ranked{Video: "v" + string(rune('a'+i)), Score: float64(40 - 3*i)}
	}
	global[0].Video = "v12"
	global[1].Video = "a-very-long-video-identifier-0001"
	lists := map[string][]processor.Ranked{processor.GlobalRegion: global}
	// Region heat: US 30, BR 25, IN 20, ...; the two coldest (MX, JP) are left out.
	for i, r := range []string{"US", "BR", "IN", "ID", "GB", "DE", "MX", "JP"} {
		top := float64(30 - 5*i)
		lists[r] = []processor.Ranked{{Video: "v" + r + "1", Score: top}, {Video: "v" + r + "2", Score: top / 2}, {Video: "v" + r + "3", Score: top / 3}, {Video: "v" + r + "4", Score: 0.1}}
	}
	lists["MX"] = lists["MX"][:1]
	return &fakeView{tick: viewTick, lists: lists, global: true}
}

var testStats = viewStats{
	Broker: "127.0.0.1:40123", HTTPAddr: "127.0.0.1:8080",
	EventsIn: 1234567, Applied: 1234000, DeadLetters: 567, ScoresOut: 98765, Lag: 12, EventsPerSec: 12345.4,
}

func TestViewFrame(t *testing.T) {
	var out bytes.Buffer
	v := &viewState{tty: true}
	v.draw(&out, newFakeView(), testStats)
	got := out.String()
	t.Logf("frame:\n%s", got)

	if !strings.HasPrefix(got, "\x1b[H\x1b[2J") {
		t.Errorf("frame does not start by clearing the screen: %q", got[:min(len(got), 20)])
	}
	for _, want := range []string{
		"broker 127.0.0.1:40123", "http://127.0.0.1:8080/",
		"events in 1,234,567 (12,345/s)", "lag 12", "dead letters 567", "scores out 98,765",
		"Trending at 06:00:10Z",
		"  1  v12                      40.00  " + strings.Repeat("█", 30) + "\n",
		"  2  a-very-long-video-i…     37.00  " + strings.Repeat("█", 28) + "\n",
		" 10  vj                       13.00  " + strings.Repeat("█", 10) + "\n",
		// The six hottest regions, by name, three side by side.
		" BR                        DE                        GB\n",
		"  1 vBR1          25.00     1 vDE1           5.00     1 vGB1          10.00\n",
		" ID                        IN                        US\n",
		"  3 vID3           5.00     3 vIN3           6.67     3 vUS3          10.00\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("frame lacks %q", want)
		}
	}
	for _, absent := range []string{" 11  ", "vJP1", "vMX1", "vUS4"} {
		if strings.Contains(got, absent) {
			t.Errorf("frame shows %q, beyond what fits", absent)
		}
	}
}

func TestViewFrameBeforeFirstSnapshot(t *testing.T) {
	f := newFakeView()
	f.global = false
	var out bytes.Buffer
	(&viewState{tty: true}).draw(&out, f, viewStats{})
	if !strings.Contains(out.String(), "waiting for the first trending snapshot") {
		t.Errorf("frame before any snapshot:\n%s", out.String())
	}
}

func TestViewSummary(t *testing.T) {
	var out bytes.Buffer
	v := &viewState{}
	f := newFakeView()
	v.draw(&out, f, testStats)
	v.draw(&out, f, testStats) // same tick: nothing
	f.setTick(viewTick + 10_000)
	v.draw(&out, f, testStats)

	want := "trending @06:00:10Z: v12(40.0) a-very-long-video-identifier-0001(37.0) vc(34.0) vd(31.0) ve(28.0) | in 1234567 (12345/s) lag 12 dead 567 out 98765\n" +
		"trending @06:00:20Z: v12(40.0) a-very-long-video-identifier-0001(37.0) vc(34.0) vd(31.0) ve(28.0) | in 1234567 (12345/s) lag 12 dead 567 out 98765\n"
	if got := out.String(); got != want {
		t.Errorf("summary\n%s\nwant\n%s", got, want)
	}
	if strings.Contains(out.String(), "\x1b") {
		t.Error("summary contains terminal escapes")
	}
}

// runView refreshes every interval, prints a summary only for a new tick,
// and returns when its context is done.
func TestRunView(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFakeView()
		f.global = false
		var out bytes.Buffer
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan struct{})
		go func() {
			defer close(done)
			runView(ctx, &out, f, nil, time.Second, false)
		}()

		time.Sleep(1500 * time.Millisecond) // two refreshes, no snapshot
		f.mu.Lock()
		f.global = true
		f.mu.Unlock()
		time.Sleep(2 * time.Second) // two refreshes of one tick
		f.setTick(viewTick + 10_000)
		time.Sleep(time.Second)
		cancel()
		<-done

		lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "trending @06:00:10Z: v12(40.0)") ||
			!strings.HasPrefix(lines[1], "trending @06:00:20Z: ") {
			t.Errorf("output:\n%s\nwant one line at 06:00:10Z then one at 06:00:20Z", out.String())
		}
		if !strings.Contains(lines[0], "| in 0 (0/s) lag 0 dead 0 out 0") {
			t.Errorf("nil stats should show zeros: %q", lines[0])
		}
	})
}

func TestViewHelpers(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1,000"}, {1234567, "1,234,567"}, {-12345, "-12,345"}} {
		if got := viewGrouped(tc.n); got != tc.want {
			t.Errorf("viewGrouped(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
	for _, tc := range []struct{ addr, want string }{
		{"127.0.0.1:8080", "http://127.0.0.1:8080/"},
		{":8080", "http://localhost:8080/"},
		{"http://x:1/", "http://x:1/"},
	} {
		if got := viewURL(tc.addr); got != tc.want {
			t.Errorf("viewURL(%q) = %q, want %q", tc.addr, got, tc.want)
		}
	}
	for _, tc := range []struct {
		score, top float64
		want       int
	}{{10, 10, 30}, {5, 10, 15}, {0.01, 10, 1}, {0, 10, 0}, {-1, 10, 0}, {1, 0, 0}} {
		if got := len([]rune(viewBar(tc.score, tc.top, 30))); got != tc.want {
			t.Errorf("viewBar(%v, %v) has %d blocks, want %d", tc.score, tc.top, got, tc.want)
		}
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if isTerminal(f) {
		t.Error("a regular file is a terminal")
	}
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	if isTerminal(null) {
		t.Errorf("%s is a terminal", os.DevNull)
	}
}
