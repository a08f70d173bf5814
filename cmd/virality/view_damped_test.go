package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/viralityhq/virality/processor"
	"github.com/viralityhq/virality/service"
)

// The demo's view gets its marks from the service.
var _ viewDampedSource = (*service.Service)(nil)

// dampedView is a fakeView that has the videos' score records, as
// service.Service does.
type dampedView struct {
	*fakeView
	damping map[string]processor.Damping
}

func (d *dampedView) Damping(video string) (processor.Damping, bool) {
	dm, ok := d.damping[video]
	return dm, ok
}

// The view explains its columns in one line and marks the videos whose
// records say that damping took 10% or more of their likes of the last
// hour (damped_likes_1h / likes_1h), as on the page, with the share and
// the record's damped_reason.
func TestViewDampedMarks(t *testing.T) {
	src := &dampedView{fakeView: newFakeView(), damping: map[string]processor.Damping{
		"vc":   {Likes1h: 1000, Damped5m: 300, Damped1h: 374, Reason: "account_rate"},
		"vd":   {Likes1h: 1000, Damped5m: 90, Damped1h: 99, Reason: "account_rate"},
		"vBR1": {Likes1h: 10, Damped5m: 5, Damped1h: 5, Reason: "account_rate"},
		"v12":  {Likes1h: 100},
	}}
	var out bytes.Buffer
	(&viewState{tty: true}).draw(&out, src, testStats)
	frame := out.String()
	t.Logf("frame:\n%s", frame)
	for _, want := range []string{
		"Trending at 06:00:10Z (event time), global top 10\n" + viewLegend + "\n",
		"  3  vc                       34.00  " + strings.Repeat("█", 26) + " ⚑37% bought: account_rate\n",
		"  4  vd                       31.00  " + strings.Repeat("█", 23) + "\n",
		"  1  v12                      40.00  " + strings.Repeat("█", 30) + "\n",
		"  1 vBR1          25.00 ⚑   1 vDE1           5.00     1 vGB1          10.00\n",
	} {
		if !strings.Contains(frame, want) {
			t.Errorf("frame lacks %q", want)
		}
	}
	if n := strings.Count(viewLegend, "\n"); n != 1 || len([]rune(viewLegend)) > 110 {
		t.Errorf("legend %q: want one line of at most 110 characters", viewLegend)
	}

	out.Reset()
	(&viewState{}).draw(&out, src, testStats)
	if want := "trending @06:00:10Z: v12(40.0) a-very-long-video-identifier-0001(37.0) vc(34.0 ⚑37% account_rate) vd(31.0) ve(28.0) |"; !strings.HasPrefix(out.String(), want) {
		t.Errorf("summary\n%s\nwant it to start with\n%s", out.String(), want)
	}
}
