package gen

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestPlants: bursts and campaigns planted at chosen times start there,
// are named after the random ones, leave the random ones as they were,
// and a burst planted with a starting rate catches on at once.
func TestPlants(t *testing.T) {
	c := testConfig()
	base, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	c.Plants = []Plant{
		{Kind: KindBurst, At: 2 * time.Hour, Rate: 6},
		{Kind: KindCampaign, At: 2*time.Hour + 90*time.Second},
		{Kind: KindBurst, At: 5*time.Hour + 50*time.Minute}, // cut at the end of the run
	}
	lines, truth := generate(t, c)
	if len(truth) != c.Bursts+c.Campaigns+len(c.Plants) {
		t.Fatalf("%d truth entries, want %d", len(truth), c.Bursts+c.Campaigns+len(c.Plants))
	}
	for _, tr := range base.Truth() {
		if !slices.Contains(truth, tr) {
			t.Errorf("random %s %s changed with plants: %+v", tr.Kind, tr.VideoID, tr)
		}
	}
	byVideo := map[string]Truth{}
	for _, tr := range truth {
		byVideo[tr.VideoID] = tr
	}
	start := c.Start.UnixMilli()
	for i, want := range []struct {
		video string
		at    time.Duration
	}{{"vb3", 2 * time.Hour}, {"vc3", 2*time.Hour + 90*time.Second}, {"vb4", 5*time.Hour + 50*time.Minute}} {
		tr, ok := byVideo[want.video]
		if !ok || tr.Kind != c.Plants[i].Kind {
			t.Fatalf("plant %d: no %s %s in the truth: %+v", i, c.Plants[i].Kind, want.video, truth)
		}
		at := start + want.at.Milliseconds()
		// The first like comes within a few minutes of At (a burst at
		// a third of a like a minute may take longer), jitter aside.
		if tr.Start < at-c.Jitter.Milliseconds() || tr.Start > at+10*time.Minute.Milliseconds() || tr.End > start+c.Duration.Milliseconds() {
			t.Errorf("%s: starts %v after the start of the run, ends %v; planted at %v",
				want.video, time.Duration(tr.Start-start)*time.Millisecond, time.Duration(tr.End-start)*time.Millisecond, want.at)
		}
	}
	// The burst planted at 6 likes a minute has dozens of likes in its
	// first five minutes.
	vb3 := byVideo["vb3"]
	n := 0
	for _, l := range lines {
		if l.ok && *l.e.VideoID == "vb3" && l.ts < vb3.Start+5*time.Minute.Milliseconds() {
			n++
		}
	}
	if n < 20 {
		t.Errorf("vb3: %d likes in its first 5 minutes, want at least 20 (planted at 6 a minute)", n)
	}
}

func TestPlantsValidate(t *testing.T) {
	for _, tc := range []struct {
		p    Plant
		want string
	}{
		{Plant{Kind: "viral", At: time.Hour}, `kind "viral"`},
		{Plant{Kind: KindBurst, At: -time.Second}, "must lie within the run"},
		{Plant{Kind: KindBurst, At: 6 * time.Hour}, "must lie within the run"},
		{Plant{Kind: KindBurst, At: time.Hour, Rate: 500}, "rate 500"},
		{Plant{Kind: KindCampaign, At: time.Hour, Rate: 5}, "a campaign has no rate"},
	} {
		c := testConfig()
		c.Plants = []Plant{tc.p}
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one containing %q", tc.p, err, tc.want)
		}
	}
	c := testConfig()
	c.Campaigns, c.FarmAccounts = 0, 100
	c.Plants = []Plant{{Kind: KindCampaign, At: time.Hour}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "campaigns need at least") {
		t.Errorf("a planted campaign with 100 farm accounts: %v", err)
	}
}
