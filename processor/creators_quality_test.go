package processor

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/viralityhq/virality/gen"
)

// risingTopK is the length of the global rising list the quality test
// looks at.
const risingTopK = 20

// TestRisingCreatorsOnGroundTruth measures how soon planted rising
// creators (likes rising together over several videos, no single video
// bursting) reach the global top 20 of the rising-creators list, against
// the naive list of creators with most likes in the last 15 minutes.
func TestRisingCreatorsOnGroundTruth(t *testing.T) {
	if testing.Short() {
		t.Skip("a full run of 400,000 likes; skipped with -short")
	}
	cfg := gen.DefaultConfig()
	cfg.Events = 400_000
	cfg.Videos = 50_000
	cfg.Users = 200_000
	cfg.Duration = 6 * time.Hour
	cfg.Bursts = 12
	cfg.Campaigns = 12
	cfg.FarmAccounts = 300
	cfg.RisingCreators = 12
	recs, truth := generate(t, cfg)

	pc := DefaultConfig()
	pc.AccountThreshold = int(math.Ceil(2*cfg.HumanCeiling())) + 2
	out := runCreators(t, pc, recs, oneSource(4, 2))
	momentum := map[int64][]string{}
	for _, m := range out.rising.msgs {
		var l struct {
			TS       int64  `json:"ts"`
			Region   string `json:"region"`
			Creators []struct {
				ID string `json:"creator_id"`
			} `json:"creators"`
		}
		if err := json.Unmarshal(m.Value, &l); err != nil {
			t.Fatal(err)
		}
		if l.Region != GlobalRegion {
			continue
		}
		for i, c := range l.Creators {
			if i == risingTopK {
				break
			}
			momentum[l.TS] = append(momentum[l.TS], c.ID)
		}
	}
	// The creators of the bought-like campaigns' videos.
	creatorOf := map[string]string{}
	for _, r := range recs {
		var e struct {
			Video   string `json:"video_id"`
			Creator string `json:"creator_id"`
		}
		if json.Unmarshal(r.Value, &e) == nil && strings.HasPrefix(e.Video, "vc") {
			creatorOf[e.Video] = e.Creator
		}
	}
	results := []risingDetection{
		detectRising("momentum (rising-creators list)", momentum, truth, creatorOf),
		detectRising("likes in last 15 min", recentCreatorLists(t, recs, momentum), truth, creatorOf),
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d rising creators planted; global top %d at every minute\n", cfg.RisingCreators, risingTopK)
	fmt.Fprintf(&b, "| creator ranking | rising creators listed | median time to list | slowest | planted creators' share of the list while they rise | creators of campaigns listed |\n|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %d/%d | %s | %s | %.0f%% | %d/%d |\n", r.name, r.found, cfg.RisingCreators, r.median, r.slowest, 100*r.share, r.campaigns, cfg.Campaigns)
	}
	t.Log("\n" + b.String())
	m, naive := results[0], results[1]
	if m.found < cfg.RisingCreators*3/4 {
		t.Errorf("the rising list lists only %d of %d planted rising creators", m.found, cfg.RisingCreators)
	}
	if m.found < naive.found || (m.found == naive.found && m.median >= naive.median) {
		t.Errorf("the rising list is no sooner than the naive list: %+v vs %+v", m, naive)
	}
}

type risingDetection struct {
	name            string
	found           int
	median, slowest time.Duration // from a creator's first planted like to its first listing
	share           float64       // of the list's entries between the first like and the peak's end
	campaigns       int           // campaigns whose video's creator was listed during it or 30 min after
}

func detectRising(name string, lists map[int64][]string, truth []gen.Truth, creatorOf map[string]string) risingDetection {
	d := risingDetection{name: name}
	ticks := make([]int64, 0, len(lists))
	for T := range lists {
		ticks = append(ticks, T)
	}
	sort.Slice(ticks, func(i, j int) bool { return ticks[i] < ticks[j] })
	planted := map[string]bool{}
	for _, tr := range truth {
		if tr.Kind == gen.KindRisingCreator {
			planted[tr.CreatorID] = true
		}
	}
	var delays []time.Duration
	var entries, plantedEntries int
	for _, tr := range truth {
		if tr.Kind != gen.KindRisingCreator {
			continue
		}
		for _, T := range ticks {
			if T < tr.Start || T > tr.End {
				continue
			}
			if contains(lists[T], tr.CreatorID) {
				delays = append(delays, time.Duration(T-tr.Start)*time.Millisecond)
				break
			}
		}
	}
	for _, T := range ticks {
		rising := false
		for _, tr := range truth {
			if tr.Kind == gen.KindRisingCreator && T >= tr.Start && T <= tr.Peak {
				rising = true
			}
		}
		if !rising {
			continue
		}
		for _, id := range lists[T] {
			entries++
			if planted[id] {
				plantedEntries++
			}
		}
	}
	for _, tr := range truth {
		if tr.Kind != gen.KindCampaign {
			continue
		}
		for _, T := range ticks {
			if T >= tr.Start && T <= tr.End+30*60_000 && contains(lists[T], creatorOf[tr.VideoID]) {
				d.campaigns++
				break
			}
		}
	}
	d.found = len(delays)
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	if len(delays) > 0 {
		d.median, d.slowest = delays[len(delays)/2], delays[len(delays)-1]
	}
	if entries > 0 {
		d.share = float64(plantedEntries) / float64(entries)
	}
	return d
}

func contains(ids []string, id string) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}

// recentCreatorLists ranks creators by their like events in the 15 minutes
// before each tick of lists, the naive list.
func recentCreatorLists(t *testing.T, recs []Record, at map[int64][]string) map[int64][]string {
	t.Helper()
	byCreator := map[string][]int64{}
	for _, r := range recs {
		var e struct {
			Creator string `json:"creator_id"`
			Action  string `json:"action"`
			TS      string `json:"ts"`
		}
		if err := json.Unmarshal(r.Value, &e); err != nil || e.Action == "unlike" {
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, e.TS)
		if err != nil {
			continue
		}
		byCreator[e.Creator] = append(byCreator[e.Creator], ts.UnixMilli())
	}
	for _, ts := range byCreator {
		sort.Slice(ts, func(i, j int) bool { return ts[i] < ts[j] })
	}
	out := map[int64][]string{}
	for T := range at {
		type cnt struct {
			id string
			n  int
		}
		var cs []cnt
		for id, ts := range byCreator {
			lo := sort.Search(len(ts), func(i int) bool { return ts[i] >= T-15*60_000 })
			hi := sort.Search(len(ts), func(i int) bool { return ts[i] >= T })
			if hi > lo {
				cs = append(cs, cnt{id, hi - lo})
			}
		}
		sort.Slice(cs, func(i, j int) bool { return cs[i].n > cs[j].n || (cs[i].n == cs[j].n && cs[i].id < cs[j].id) })
		for i := 0; i < len(cs) && i < risingTopK; i++ {
			out[T] = append(out[T], cs[i].id)
		}
	}
	return out
}
