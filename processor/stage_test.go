package processor

import (
	"encoding/json"
	"testing"

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
	damped := 0
	for _, v := range want {
		var r struct {
			Damped int64 `json:"damped_likes_1h"`
		}
		if err := json.Unmarshal([]byte(v), &r); err != nil {
			t.Fatal(err)
		}
		if r.Damped > 0 {
			damped++
		}
	}
	if damped == 0 {
		t.Fatal("no video's final record has damped likes: the test needs a farm above the threshold")
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
			t.Logf("%d videos identical, %d of them with damped likes", len(want), damped)
		})
	}
}
