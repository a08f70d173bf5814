package processor

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/gen"
)

// TestAccountsAcrossPartitions: an account's likes are counted where all
// of them meet, its user's account stage, so a like farm is damped alike
// over 1, 4 and 8 partitions of state and whatever the keying and
// interleaving of the input: every video's final record is the same
// (apart from seq), and the farm's likes are damped in it.
func TestAccountsAcrossPartitions(t *testing.T) {
	// A farm of 300 accounts liking 60-120 times an hour, above the default
	// threshold of 60.
	recs := generated(t, func(c *gen.Config) { c.FarmAccounts, c.FarmRate, c.Events = 300, 1.5, 200_000 })
	cfg := DefaultConfig()
	want := finalRecords(runTopology(t, cfg, recs, oneSource(1, 1)).scores.msgs)
	reasons := map[string]int{}
	for _, v := range want {
		var r struct {
			Reason string `json:"damped_reason"`
		}
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			t.Fatal(err)
		}
		for _, x := range strings.Split(r.Reason, ",") {
			reasons[x]++
		}
	}
	t.Logf("final records by damping reason: %v", reasons)
	if reasons["account_rate"] == 0 || reasons["lockstep"] == 0 {
		t.Fatalf("final records by damping reason %v: the test needs a farm above the threshold and lockstep crews", reasons)
	}
	for _, tc := range []struct {
		name string
		run  func() testOutputs
	}{
		{"4 partitions", func() testOutputs { return runTopology(t, cfg, recs, oneSource(4, 2)) }},
		{"8 partitions", func() testOutputs { return runTopology(t, cfg, recs, oneSource(8, 2)) }},
		{"8 sources keyed by user, interleaved", func() testOutputs {
			return runSources(t, cfg, recs, 8, func(ev *event.Event) string { return ev.UserID }, func(p int) int { return 40 + 29*p })
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := finalRecords(tc.run().scores.msgs)
			if len(got) != len(want) {
				t.Fatalf("%d videos, one partition has %d", len(got), len(want))
			}
			diffs := 0
			for id, w := range want {
				if g := got[id]; g != w {
					if diffs < 3 {
						t.Errorf("video %s:\n 1 partition: %s\n %s: %s", id, w, tc.name, g)
					}
					diffs++
				}
			}
			if diffs > 0 {
				t.Fatalf("%d of %d final records differ", diffs, len(want))
			}
			t.Logf("%d videos identical", len(want))
		})
	}
}

// TestBoughtLikesDefaults: on generated ground truth with 8 partitions of
// state and the default configuration (the account threshold follows the
// traffic), organic bursts reach the global top 20 and campaigns of farms
// that like faster than people do not: at least 95% of bursts, within a
// median of 10 minutes; at most 5% of the rate farm's campaigns and of the
// spread farm's; and at most 10% of the campaigns of lockstep crews,
// whose accounts like at human rates (lockstep.go, Config.TrendingMinAge).
// The lists are those of every 1-minute tick.
func TestBoughtLikesDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("a 6-hour stream over 8 partitions; skipped with -short")
	}
	g := gen.DefaultConfig()
	g.Events = 600_000
	g.Videos, g.Users = 50_000, 250_000
	g.Duration = 6 * time.Hour
	g.Bursts = 20
	g.Campaigns, g.FarmAccounts, g.FarmRate = 20, 300, 0.8
	g.SpreadCampaigns, g.SpreadAccounts = 20, 300
	g.CrewCampaigns, g.CrewAccounts = 20, 600
	recs, truth := generate(t, g)
	cfg := DefaultConfig()
	cfg.TopK, cfg.Tick = compareTopK, compareTick
	cfg.TrendingEvery = 1 // every tick's list, not every sixth
	out := runTopology(t, cfg, recs, oneSource(8, 2))
	lists := map[int64]map[string]bool{}
	var ticks []int64
	for T, ids := range globalLists(t, out.trending.msgs) {
		lists[T] = map[string]bool{}
		for _, id := range ids {
			lists[T][id] = true
		}
		ticks = append(ticks, T)
	}
	slices.Sort(ticks)
	kinds := map[string][2]int{} // listed, planted
	var delays []time.Duration
	for _, tr := range truth {
		k := kinds[tr.Kind]
		k[1]++
		for _, T := range ticks {
			if T >= tr.Start && T <= tr.End+time.Hour.Milliseconds() && lists[T][tr.VideoID] {
				k[0]++
				if tr.Kind == gen.KindBurst {
					delays = append(delays, time.Duration(T-tr.Start)*time.Millisecond)
				}
				break
			}
		}
		kinds[tr.Kind] = k
	}
	slices.Sort(delays)
	median := time.Duration(-1)
	if len(delays) > 0 {
		median = delays[len(delays)/2]
	}
	t.Logf("bursts listed %d/%d, median %v; rate-farm campaigns listed %d/%d, spread-farm %d/%d, lockstep crews %d/%d",
		kinds[gen.KindBurst][0], kinds[gen.KindBurst][1], median,
		kinds[gen.KindCampaign][0], kinds[gen.KindCampaign][1],
		kinds[gen.KindSpreadCampaign][0], kinds[gen.KindSpreadCampaign][1],
		kinds[gen.KindCrewCampaign][0], kinds[gen.KindCrewCampaign][1])
	if b := kinds[gen.KindBurst]; b[1] == 0 || b[0]*100 < b[1]*95 || median > 10*time.Minute {
		t.Errorf("bursts: %d of %d listed with a median delay of %v; want at least 95%% within a median of 10 min", b[0], b[1], median)
	}
	for _, kind := range []string{gen.KindCampaign, gen.KindSpreadCampaign} {
		if c := kinds[kind]; c[1] == 0 || c[0]*100 > c[1]*5 {
			t.Errorf("%s: %d of %d listed; want at most 5%%", kind, c[0], c[1])
		}
	}
	if c := kinds[gen.KindCrewCampaign]; c[1] == 0 || c[0]*100 > c[1]*10 {
		t.Errorf("%s: %d of %d listed; want at most 10%%", gen.KindCrewCampaign, c[0], c[1])
	}
}
