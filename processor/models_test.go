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

// modelWorkload is the generated day used to compare models, with its
// ground truth.
func modelWorkload(t testing.TB) ([]Record, []gen.Truth, int) {
	t.Helper()
	cfg := gen.DefaultConfig()
	cfg.Events = 400_000
	cfg.Videos = 50_000
	cfg.Users = 200_000
	cfg.Duration = 6 * time.Hour
	cfg.Bursts = 12
	cfg.Campaigns = 12
	cfg.FarmAccounts = 300
	// The generator scales every account's pace to the traffic it makes;
	// the threshold sits above what its humans reach by chance in an hour
	// (Poisson tail of the most active one), as 60 an hour does for people.
	threshold := int(math.Ceil(2*cfg.HumanCeiling())) + 2
	recs, truth := generate(t, cfg)
	return recs, truth, threshold
}

const (
	compareTopK = 20
	compareTick = time.Minute
)

// topLists maps each tick to the global top list of a model's run.
func topLists(t testing.TB, recs []Record, model string, threshold int) map[int64][]string {
	t.Helper()
	cfg := DefaultConfig()
	cfg.AccountThreshold = threshold
	cfg.Model = model
	cfg.TopK = compareTopK
	cfg.Tick = compareTick
	cfg.TrendingEvery = 1 // every tick's list, not every sixth
	return globalLists(t, runRecords(t, cfg, recs).trending.msgs)
}

// globalLists maps each tick to the global list of trending records.
func globalLists(t testing.TB, msgs []Message) map[int64][]string {
	t.Helper()
	lists := map[int64][]string{}
	for _, m := range msgs {
		var s struct {
			TS     int64  `json:"ts"`
			Region string `json:"region"`
			Videos []struct {
				VideoID string `json:"video_id"`
			} `json:"videos"`
		}
		if err := json.Unmarshal(m.Value, &s); err != nil {
			t.Fatal(err)
		}
		if s.Region != GlobalRegion {
			continue
		}
		for _, v := range s.Videos {
			lists[s.TS] = append(lists[s.TS], v.VideoID)
		}
	}
	return lists
}

// recentLikesLists ranks videos by their like events in the last 15
// minutes, the naive trending list, at the same ticks.
func recentLikesLists(t testing.TB, recs []Record) map[int64][]string {
	t.Helper()
	type ev struct {
		Video, Action string
		ts            int64
	}
	evs := make([]ev, 0, len(recs))
	for _, r := range recs {
		var e struct {
			Video  string `json:"video_id"`
			Action string `json:"action"`
			TS     string `json:"ts"`
		}
		if json.Unmarshal(r.Value, &e) != nil {
			continue
		}
		ts, err := time.Parse(time.RFC3339Nano, e.TS)
		if err != nil || e.Action == "unlike" {
			continue
		}
		evs = append(evs, ev{e.Video, e.Action, ts.UnixMilli()})
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].ts < evs[j].ts })
	tick := compareTick.Milliseconds()
	window := (15 * time.Minute).Milliseconds()
	counts := map[string]int{}
	lists := map[int64][]string{}
	lo, hi := 0, 0
	for T := (evs[0].ts/tick + 1) * tick; T <= evs[len(evs)-1].ts; T += tick {
		for hi < len(evs) && evs[hi].ts < T {
			counts[evs[hi].Video]++
			hi++
		}
		for lo < hi && evs[lo].ts <= T-window {
			if counts[evs[lo].Video]--; counts[evs[lo].Video] == 0 {
				delete(counts, evs[lo].Video)
			}
			lo++
		}
		ids := make([]string, 0, len(counts))
		for id := range counts {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool {
			if counts[ids[i]] != counts[ids[j]] {
				return counts[ids[i]] > counts[ids[j]]
			}
			return ids[i] < ids[j]
		})
		lists[T] = ids[:min(compareTopK, len(ids))]
	}
	return lists
}

// detection summarises a ranking against the ground truth.
type detection struct {
	name            string
	burstsFound     int
	medianDelay     time.Duration // from a burst's start to its first top-20 tick
	campaignsListed int           // campaigns that entered the top 20
	campaignTicks   int           // ticks a campaign spent in the top 20
}

func detect(name string, lists map[int64][]string, truth []gen.Truth) detection {
	d := detection{name: name}
	in := func(T int64, video string) bool {
		for _, id := range lists[T] {
			if id == video {
				return true
			}
		}
		return false
	}
	ticks := make([]int64, 0, len(lists))
	for T := range lists {
		ticks = append(ticks, T)
	}
	sort.Slice(ticks, func(i, j int) bool { return ticks[i] < ticks[j] })
	var delays []time.Duration
	for _, tr := range truth {
		switch tr.Kind {
		case "burst":
			for _, T := range ticks {
				if T >= tr.Start && T <= tr.End+int64(time.Hour/time.Millisecond) && in(T, tr.VideoID) {
					delays = append(delays, time.Duration(T-tr.Start)*time.Millisecond)
					break
				}
			}
		case "campaign":
			listed := false
			for _, T := range ticks {
				if T >= tr.Start && T <= tr.End+int64(30*time.Minute/time.Millisecond) && in(T, tr.VideoID) {
					listed = true
					d.campaignTicks++
				}
			}
			if listed {
				d.campaignsListed++
			}
		}
	}
	d.burstsFound = len(delays)
	sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
	if len(delays) > 0 {
		d.medianDelay = delays[len(delays)/2]
	}
	return d
}

// TestModelsOnGroundTruth: on generated data with planted bursts and
// campaigns, the default model lists organic bursts in the global top 20
// sooner than hn and reddit-hot, and keeps bought-like campaigns out more
// often than the naive "most likes in the last 15 minutes" list.
func TestModelsOnGroundTruth(t *testing.T) {
	if testing.Short() {
		t.Skip("compares four full runs; skipped with -short")
	}
	recs, truth, threshold := modelWorkload(t)
	var bursts, campaigns int
	for _, tr := range truth {
		if tr.Kind == "burst" {
			bursts++
		} else {
			campaigns++
		}
	}
	results := []detection{
		detect("trending (default)", topLists(t, recs, "trending", threshold), truth),
		detect("hn", topLists(t, recs, "hn", threshold), truth),
		detect("reddit-hot", topLists(t, recs, "reddit-hot", threshold), truth),
		detect("likes in last 15 min", recentLikesLists(t, recs), truth),
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d bursts, %d campaigns; global top %d at every %v tick; account threshold %d/h\n", bursts, campaigns, compareTopK, compareTick, threshold)
	fmt.Fprintf(&b, "| ranking | bursts listed | median time to list a burst | campaigns listed | campaign-ticks listed |\n|---|---|---|---|---|\n")
	for _, r := range results {
		delay := "never"
		if r.burstsFound > 0 {
			delay = r.medianDelay.String()
		}
		fmt.Fprintf(&b, "| %s | %d/%d | %s | %d/%d | %d |\n", r.name, r.burstsFound, bursts, delay, r.campaignsListed, campaigns, r.campaignTicks)
	}
	t.Log("\n" + b.String())

	def, hn, reddit, naive := results[0], results[1], results[2], results[3]
	sooner := func(a, o detection) bool {
		// More bursts found, or as many and a shorter median delay.
		return a.burstsFound > o.burstsFound || (a.burstsFound == o.burstsFound && a.medianDelay < o.medianDelay)
	}
	if !sooner(def, hn) {
		t.Errorf("default model does not list bursts sooner than hn: %+v vs %+v", def, hn)
	}
	if !sooner(def, reddit) {
		t.Errorf("default model does not list bursts sooner than reddit-hot: %+v vs %+v", def, reddit)
	}
	if def.campaignsListed >= naive.campaignsListed || def.campaignTicks >= naive.campaignTicks {
		t.Errorf("default model lists campaigns as often as the naive list: %+v vs %+v", def, naive)
	}
	if def.burstsFound < bursts*3/4 {
		t.Errorf("default model lists only %d of %d bursts", def.burstsFound, bursts)
	}
}
