package processor

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"regexp"
	"sort"
	"testing"
	"time"

	"github.com/viralityhq/virality/gen"
)

// generated returns the records of a small generated workload.
func generated(t testing.TB, mod func(*gen.Config)) []Record {
	t.Helper()
	cfg := gen.DefaultConfig()
	cfg.Events = 60_000
	cfg.Videos = 3_000
	cfg.Users = 20_000
	cfg.Duration = 3 * time.Hour
	cfg.Bursts = 3
	cfg.Campaigns = 3
	cfg.FarmAccounts = 300
	// Lockstep crews: fifteen of about 40 accounts, three to six of them
	// serving each of two campaigns (as people like, at most 0.2 of the
	// ceiling can be campaigns), so that the second may be found lockstep.
	cfg.CrewCampaigns, cfg.CrewAccounts = 2, 600
	if mod != nil {
		mod(&cfg)
	}
	recs, _ := generate(t, cfg)
	return recs
}

// generate returns the records cfg generates, and its ground truth.
func generate(t testing.TB, cfg gen.Config) ([]Record, []gen.Truth) {
	t.Helper()
	g, err := gen.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var recs []Record
	for {
		line, _, ok := g.Next(nil)
		if !ok {
			break
		}
		recs = append(recs, Record{Value: line, Topic: "gen", Offset: int64(len(recs))})
	}
	return recs, g.Truth()
}

var seqField = regexp.MustCompile(`"seq":\d+,`)

// finalRecords returns each video's last score record without its seq,
// which counts emissions and so depends on the order of arrival.
func finalRecords(msgs []Message) map[string]string {
	out := map[string]string{}
	for id, v := range lastScores(msgs) {
		out[id] = seqField.ReplaceAllString(string(v), "")
	}
	return out
}

// TestOrderIndependence: the same events shuffled within the allowed
// lateness reach the same final state and the same final score records.
func TestOrderIndependence(t *testing.T) {
	recs := generated(t, nil)
	cfg := DefaultConfig()
	inOrder := runRecords(t, cfg, recs)

	// Arrival order: event time plus a random delay under half the
	// lateness, so that no record becomes late.
	type keyed struct {
		r   Record
		key int64
	}
	rng := rand.New(rand.NewPCG(7, 7))
	ks := make([]keyed, len(recs))
	for i, r := range recs {
		var ev struct {
			TS string `json:"ts"`
		}
		if err := json.Unmarshal(r.Value, &ev); err != nil {
			t.Fatal(err)
		}
		ts, err := time.Parse(time.RFC3339Nano, ev.TS)
		if err != nil {
			t.Fatal(err)
		}
		ks[i] = keyed{r, ts.UnixMilli() + rng.Int64N(cfg.Lateness.Milliseconds()/2)}
	}
	sort.SliceStable(ks, func(i, j int) bool { return ks[i].key < ks[j].key })
	shuffled := make([]Record, len(ks))
	moved := 0
	for i := range ks {
		shuffled[i] = ks[i].r
		shuffled[i].Offset = int64(i)
		if !bytes.Equal(shuffled[i].Value, recs[i].Value) {
			moved++
		}
	}
	if moved < len(recs)/2 {
		t.Fatalf("only %d of %d records moved", moved, len(recs))
	}
	reordered := runRecords(t, cfg, shuffled)

	if n := len(inOrder.dead.msgs) + len(reordered.dead.msgs); n != 0 {
		t.Fatalf("%d records were dead-lettered; the test needs none", n)
	}
	a, b := finalRecords(inOrder.scores.msgs), finalRecords(reordered.scores.msgs)
	if len(a) != len(b) {
		t.Fatalf("%d videos in order, %d reordered", len(a), len(b))
	}
	diffs := 0
	for id, ra := range a {
		if rb := b[id]; ra != rb {
			if diffs < 5 {
				t.Errorf("video %s:\n in order:  %s\n reordered: %s", id, ra, rb)
			}
			diffs++
		}
	}
	if diffs > 0 {
		t.Fatalf("%d of %d final records differ", diffs, len(a))
	}
	t.Logf("%d videos, %d records moved, identical final records", len(a), moved)
}

// TestRecomputation checks the engine against an independent recomputation
// with plain maps: per pair, sort the events as the SPEC says and fold;
// per video, count.
func TestRecomputation(t *testing.T) {
	recs := generated(t, func(c *gen.Config) { c.LateShare = 0.002 })
	cfg := DefaultConfig()
	out := runRecords(t, cfg, recs)

	type ev struct {
		EventID string `json:"event_id"`
		Video   string `json:"video_id"`
		User    string `json:"user_id"`
		Action  string `json:"action"`
		TS      string `json:"ts"`
		ts      int64
	}
	lateness := cfg.Lateness.Milliseconds()
	var maxTS int64
	pairs := map[[2]string][]ev{}
	clock := map[string]int64{}
	late := 0
	for _, r := range recs {
		var e ev
		if err := json.Unmarshal(r.Value, &e); err != nil {
			t.Fatal(err)
		}
		ts, err := time.Parse(time.RFC3339Nano, e.TS)
		if err != nil {
			t.Fatal(err)
		}
		e.ts = ts.UnixMilli()
		if maxTS > 0 && e.ts < maxTS-lateness {
			late++
			continue
		}
		maxTS = max(maxTS, e.ts)
		k := [2]string{e.Video, e.User}
		pairs[k] = append(pairs[k], e)
		clock[e.Video] = max(clock[e.Video], e.ts)
	}
	type want struct{ likes, unique, w1m, w5m, w1h, w24h int64 }
	wants := map[string]*want{}
	for k, evs := range pairs {
		sort.Slice(evs, func(i, j int) bool {
			a, b := evs[i], evs[j]
			if a.ts != b.ts {
				return a.ts < b.ts
			}
			if a.Action != b.Action {
				return a.Action != "unlike" // like first
			}
			return a.EventID < b.EventID
		})
		liked, ever := false, false
		var likeTS int64
		for _, e := range evs {
			switch e.Action {
			case "unlike":
				liked = false
			default:
				ever = true
				if !liked {
					liked, likeTS = true, e.ts
				}
			}
		}
		w := wants[k[0]]
		if w == nil {
			w = &want{}
			wants[k[0]] = w
		}
		if ever {
			w.unique++
		}
		if liked {
			w.likes++
			c := clock[k[0]]
			for _, win := range []struct {
				n *int64
				d int64
			}{{&w.w1m, 60_000}, {&w.w5m, 300_000}, {&w.w1h, 3_600_000}, {&w.w24h, 86_400_000}} {
				if likeTS > c-win.d {
					*win.n++
				}
			}
		}
	}
	if late == 0 || int(out.dead.flushes) == 0 {
		t.Fatalf("expected late records in the workload (late=%d)", late)
	}
	if len(out.dead.msgs) != late {
		t.Errorf("engine dead-lettered %d records, recomputation found %d late", len(out.dead.msgs), late)
	}
	type rec struct {
		Likes  int64 `json:"likes"`
		Unique int64 `json:"unique_likers"`
		Unl    int64 `json:"unlikes"`
		TS     int64 `json:"ts"`
		W1m    int64 `json:"likes_1m"`
		W5m    int64 `json:"likes_5m"`
		W1h    int64 `json:"likes_1h"`
		W24h   int64 `json:"likes_24h"`
	}
	last := lastScores(out.scores.msgs)
	checked := 0
	for id, w := range wants {
		if w.unique == 0 {
			if _, ok := last[id]; ok {
				t.Errorf("video %s never liked but has a record", id)
			}
			continue
		}
		var r rec
		if err := json.Unmarshal(last[id], &r); err != nil {
			t.Fatalf("video %s: %v", id, err)
		}
		got := want{r.Likes, r.Unique, r.W1m, r.W5m, r.W1h, r.W24h}
		if got != *w || r.Unl != w.unique-w.likes || r.TS != clock[id] {
			t.Errorf("video %s: engine %+v (ts %d), recomputed %+v (ts %d)", id, got, r.TS, *w, clock[id])
		}
		checked++
	}
	t.Logf("checked %d videos, %d late records", checked, late)
}
