package processor

import (
	"context"
	"slices"
	"testing"

	"github.com/viralityhq/virality/event"
	"github.com/viralityhq/virality/gen"
)

// TestIdleSourcesWake: four sources pause halfway and go idle, then
// resume. When the first has records again, the account stages make the
// others active again, and the coordinator lists them (Woken): the
// sources end with the final records of a run without the pause, however
// their records come back, in turns or one source's whole second half
// before the others'. Marked idle again at once (as if a read of them had
// found nothing), they would not: the first source's records pass theirs
// by.
func TestIdleSourcesWake(t *testing.T) {
	recs := generated(t, func(c *gen.Config) { c.LateShare = 0.001 })
	const n = 4
	// Split by video, as a producer keyed by it splits a topic; halfway
	// is where the whole input is, so that every source pauses at about
	// the same event time.
	bySrc := make([][]Record, n)
	half := make([]int, n)
	for i, r := range recs {
		var ev event.Event
		k := string(r.Value)
		if event.Decode(r.Value, 0, &ev) == nil {
			k = ev.VideoID
		}
		p := fnvPartitioner(k+"/source", n)
		r.Partition, r.Offset = p, int64(len(bySrc[p]))
		bySrc[p] = append(bySrc[p], r)
		if i < len(recs)/2 {
			half[p] = len(bySrc[p])
		}
	}
	type resume struct {
		name    string
		pause   bool // the sources go idle halfway
		first   bool // source 0's second half comes before the others'
		reIdled bool // the others, woken by source 0, are marked idle again
	}
	run := func(rs resume) map[string]string {
		out := newTestOutputs()
		c := openCoordinator(t, DefaultConfig(), openMemStore(t), out, perSource(n, 2))
		ctx := context.Background()
		b := &Batch{}
		pos := make([]int, n)
		feed := func(p, upTo int) {
			take := min(upTo, len(bySrc[p])) - pos[p]
			if take <= 0 {
				return
			}
			b.Fill(bySrc[p][pos[p]:pos[p]+take], 0)
			b.Decode()
			pos[p] += take
			if err := c.TakeInput(ctx, int32(p), b); err != nil {
				t.Fatal(err)
			}
		}
		inTurns := func(limit func(p int) int) {
			for more := true; more; {
				more = false
				for p := range n {
					if pos[p] < limit(p) {
						feed(p, min(pos[p]+200, limit(p)))
						more = true
					}
				}
			}
		}
		if rs.pause {
			inTurns(func(p int) int { return half[p] })
			for p := range n {
				if err := c.SetIdle(ctx, int32(p), true); err != nil {
					t.Fatal(err)
				}
			}
		}
		if rs.first {
			feed(0, pos[0]+1)
			woken := c.Woken()
			if !slices.Equal(woken, []int32{1, 2, 3}) {
				t.Errorf("%s: sources %v woken with source 0, want 1, 2 and 3", rs.name, woken)
			}
			if rs.reIdled {
				for _, p := range woken {
					if err := c.SetIdle(ctx, p, true); err != nil {
						t.Fatal(err)
					}
				}
			}
			feed(0, len(bySrc[0]))
		}
		inTurns(func(p int) int { return len(bySrc[p]) })
		if err := c.Finish(ctx); err != nil {
			t.Fatal(err)
		}
		return finalRecords(out.scores.msgs)
	}
	want := run(resume{name: "no pause"})
	differ := func(got map[string]string) int {
		d := 0
		for id, w := range want {
			if got[id] != w {
				d++
			}
		}
		return d
	}
	for _, rs := range []resume{
		{name: "in turns", pause: true},
		{name: "source 0 first", pause: true, first: true},
	} {
		if d := differ(run(rs)); d > 0 {
			t.Errorf("%s: %d of %d videos end unlike a run without the pause", rs.name, d, len(want))
		}
	}
	// The scenario is sharp: idle again, the others let source 0 pass.
	d := differ(run(resume{name: "source 0 first, the others idle again", pause: true, first: true, reIdled: true}))
	if d == 0 {
		t.Errorf("source 0 first, the others idle again: every video ends as without the pause; the test no longer shows why sources wake")
	}
	t.Logf("%d videos; with the others idle again while source 0 resumed, %d would end otherwise", len(want), d)
}
